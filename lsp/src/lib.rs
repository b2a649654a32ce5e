//! The `.adm` language server: `admc lsp`, over stdio, on the compiler's salsa database.
//!
//! This crate is the only one that knows the protocol. Every answer comes from the same queries
//! as `admc check`; placement-dependent answers (hovers, inlay hints) come from the last plan
//! completed in the background, so no request waits for a solve.

mod convert;
pub mod ide;
mod server;

pub use server::{serve, Server};

/// The `file://` URI of a path, as the server writes them.
pub fn uri(path: &std::path::Path) -> Option<lsp_types::Uri> {
    convert::path_to_uri(path)
}

/// Runs the server on standard input and output until the client says `exit`.
pub fn run_stdio() -> Result<(), String> {
    let (connection, io_threads) = lsp_server::Connection::stdio();
    serve(connection)?;
    io_threads.join().map_err(|e| format!("the connection failed: {e}"))
}
