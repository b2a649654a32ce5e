//! `admd`, the ADM runtime: a small L7 proxy that enforces the policies `admc` placed on its
//! service, as `adm/<service>.json` describes them.
//!
//! It enforces every built-in kind over HTTP/1.1 and HTTP/2 (h2c, prior knowledge or upgrade), with gRPC
//! refusals as trailers-only responses. A configuration with a user-declared kind is refused at
//! load (never silently ignored): the runtime cannot know what such a kind does.

pub mod config;
pub mod h1;
pub mod h2c;
pub mod kernel;
pub mod proxy;
