//! `admd`, the ADM runtime: a small L7 proxy that enforces the policies `admc` placed on its
//! service, as `adm/<service>.json` describes them.
//!
//! Today it enforces `allow`, `deny`, `require_header`, `set_header`, `remove_header`,
//! `rate_limit`, `timeout`, `fault` and `access_log` over HTTP/1.1 and HTTP/2 (h2c with prior
//! knowledge), with gRPC refusals as trailers-only responses. A configuration with any other kind
//! is refused at load (never silently ignored) until the runtime enforces it.

pub mod config;
pub mod proxy;
