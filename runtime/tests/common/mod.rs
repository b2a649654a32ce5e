//! What the gRPC tests share.

use std::net::SocketAddr;

use adm_artifacts::Direction;
use serde_json::{json, Value};

/// An ingress ADM for `search` on `ip` (any port), forwarding over gRPC to `up`, with `steps` as
/// the chain of every method of `frontend -> search` (frontend sends from 127.0.0.3).
pub async fn grpc_proxy(ip: &str, up: SocketAddr, steps: Value) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(format!("{ip}:0")).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = json!({
        "schema_version": 1,
        "service": "search",
        "listeners": { "ingress": { "address": ip, "port": addr.port() }, "egress": null },
        "upstreams": [{ "service": "search", "protocol": "grpc",
            "endpoints": [{ "address": up.ip().to_string(), "port": up.port() }] }],
        "peers": [{ "service": "frontend", "addresses": ["127.0.0.3"] }],
        "routes": [{ "from": "frontend", "to": "search", "direction": "ingress",
            "chains": [{ "methods": null, "chain": steps }], "forward": { "to": "service", "service": "search" } }]
    });
    let ctx = admd::proxy::Context::new(admd::config::parse(&config.to_string()).unwrap());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(admd::proxy::serve(ctx, Direction::Ingress, listener, stopped));
    // The proxy serves for the rest of the test.
    std::mem::forget(stop);
    addr
}
