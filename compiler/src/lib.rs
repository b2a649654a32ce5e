//! The `.adm` compiler as a library: what the `admc` command line (and, later, the language
//! server) calls. The stages are pure functions of file texts, run as salsa queries ([`db`]);
//! only [`source`] reads files.

pub mod check;
pub mod db;
pub mod emit;
pub mod explain;
pub mod place;
pub mod plan;
pub mod render;
pub mod report;
pub mod sema;
pub mod source;

pub use check::{check, Checked};
pub use source::{LoadError, Sources};
