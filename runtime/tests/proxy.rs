//! `admd` with real sockets on loopback: an upstream server, the proxy, and clients connecting
//! from chosen loopback addresses (the pod-IP model: a client's address is its identity).

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used, reason = "tests fail by panicking")]

use std::net::SocketAddr;
use std::sync::Arc;

use adm_artifacts::Direction;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

/// An upstream that answers with what it saw; `/slow` takes two seconds.
async fn upstream(ip: &str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(format!("{ip}:0")).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    if req.uri().path() == "/slow" {
                        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                    }
                    let seen: Vec<String> = req
                        .headers()
                        .iter()
                        .filter(|(k, _)| k.as_str().starts_with("x-"))
                        .map(|(k, v)| format!("{}={}", k, v.to_str().unwrap_or("")))
                        .collect();
                    let body = format!("path={} headers={}", req.uri().path(), seen.join(","));
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(body))))
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    addr
}

fn step(policy: &str, kind: &str, args: Value) -> Value {
    json!({ "policy": policy, "kind": kind, "unit": format!("call frontend -> svc"), "args": args })
}

/// A proxy for service `svc` with one ingress route from `frontend` (at 127.0.0.3) carrying
/// `steps`; returns the proxy's address.
async fn proxy(up: SocketAddr, chains: Value) -> (SocketAddr, Arc<admd::proxy::Context>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.10:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = json!({
        "schema_version": 1,
        "service": "svc",
        "listeners": { "ingress": { "address": "127.0.0.10", "port": addr.port() }, "egress": null },
        "upstreams": [{ "service": "svc", "protocol": "http", "endpoints": [{ "address": up.ip().to_string(), "port": up.port() }] }],
        "peers": [{ "service": "frontend", "addresses": ["127.0.0.3"] }, { "service": "backend", "addresses": ["127.0.0.5"] }],
        "routes": [
            { "from": "frontend", "to": "svc", "direction": "ingress", "chains": chains.clone(), "forward": { "to": "service", "service": "svc" } },
            { "from": "backend", "to": "svc", "direction": "ingress", "chains": chains, "forward": { "to": "service", "service": "svc" } }
        ]
    });
    let runtime = admd::config::parse(&config.to_string()).unwrap();
    let ctx = admd::proxy::Context::new(runtime);
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(admd::proxy::serve(ctx.clone(), Direction::Ingress, listener, stopped));
    // Keep the shutdown sender alive for the test's duration.
    std::mem::forget(_stop);
    (addr, ctx)
}

/// A request from `source` (a loopback address) to the proxy: (status, headers, body).
async fn send(source: &str, proxy: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, http::HeaderMap, String) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let stream = socket.connect(proxy).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::builder().uri(path).header("host", "svc");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let response = sender.send_request(req.body(Empty::<Bytes>::new()).unwrap()).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn chains(steps: Vec<Value>) -> Value {
    json!([{ "methods": null, "chain": steps }])
}

fn service(name: &str) -> Value {
    json!({ "service": name, "members": [name] })
}

#[tokio::test]
async fn allow_trusts_the_peer_address_not_the_headers() {
    let up = upstream("127.0.0.11").await;
    let (p, ctx) = proxy(up, chains(vec![step("acl", "allow", json!({ "from": [service("frontend")] }))])).await;
    let (status, _, body) = send("127.0.0.3", p, "/hello", &[]).await;
    assert_eq!((status, body.as_str()), (200, "path=/hello headers="));
    // Another service of the mesh is refused by the allow-list, whatever its headers claim.
    let (status, _, body) = send("127.0.0.5", p, "/hello", &[("x-source", "frontend")]).await;
    assert_eq!(status, 403);
    assert!(body.contains("refused by policy `acl` (allow): `backend` is not allowed"), "{body}");
    assert!(ctx.metrics.render().contains("admd_policy_decisions_total{policy=\"acl\",decision=\"refused\"} 1"));
    // An address outside the mesh has no declared call at all.
    let (status, _, body) = send("127.0.0.4", p, "/hello", &[]).await;
    assert_eq!(status, 403);
    assert!(body.contains("no declared call `external -> svc`"), "{body}");
}

#[tokio::test]
async fn deny_refuses_the_listed_sources_only() {
    let up = upstream("127.0.0.12").await;
    let (p, _) = proxy(up, chains(vec![step("no_front", "deny", json!({ "from": [service("frontend")] }))])).await;
    assert_eq!(send("127.0.0.3", p, "/", &[]).await.0, 403);
    assert_eq!(send("127.0.0.5", p, "/", &[]).await.0, 200);
}

#[tokio::test]
async fn header_policies_check_set_and_remove() {
    let up = upstream("127.0.0.13").await;
    let steps = vec![
        step("key", "require_header", json!({ "name": "x-api-key", "value": "" })),
        step("tag", "set_header", json!({ "name": "x-trace", "value": "on" })),
        step("strip", "remove_header", json!({ "name": "x-debug" })),
    ];
    let (p, _) = proxy(up, chains(steps)).await;
    let (status, _, body) = send("127.0.0.3", p, "/", &[]).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("`key`"));
    let (status, _, body) = send("127.0.0.3", p, "/", &[("x-api-key", "k"), ("x-debug", "1")]).await;
    assert_eq!(status, 200);
    assert_eq!(body, "path=/ headers=x-api-key=k,x-trace=on");
}

#[tokio::test]
async fn rate_limit_refuses_beyond_the_bucket() {
    let up = upstream("127.0.0.14").await;
    let (p, _) =
        proxy(up, chains(vec![step("slowly", "rate_limit", json!({ "limit": { "per_second": 0.001 }, "burst": 1 }))]))
            .await;
    assert_eq!(send("127.0.0.3", p, "/", &[]).await.0, 200);
    assert_eq!(send("127.0.0.3", p, "/", &[]).await.0, 200, "burst 1: two at once");
    let (status, _, body) = send("127.0.0.3", p, "/", &[]).await;
    assert_eq!(status, 429);
    assert!(body.contains("`slowly` (rate_limit)"));
}

#[tokio::test]
async fn timeout_answers_504_and_grpc_gets_deadline_exceeded() {
    let up = upstream("127.0.0.15").await;
    let (p, _) = proxy(up, chains(vec![step("quick", "timeout", json!({ "after": { "us": 100_000 } }))])).await;
    assert_eq!(send("127.0.0.3", p, "/fast", &[]).await.0, 200);
    assert_eq!(send("127.0.0.3", p, "/slow", &[]).await.0, 504);
    let (status, headers, _) = send("127.0.0.3", p, "/slow", &[("content-type", "application/grpc")]).await;
    assert_eq!(status, 200);
    assert_eq!(headers.get("grpc-status").unwrap(), "4");
}

#[tokio::test]
async fn fault_aborts_with_its_status() {
    let up = upstream("127.0.0.16").await;
    let args = json!({ "abort": { "fraction": 1.0 }, "status": 418, "delay": { "us": 0 }, "delay_percent": { "fraction": 0.0 } });
    let (p, _) = proxy(up, chains(vec![step("chaos", "fault", args)])).await;
    assert_eq!(send("127.0.0.3", p, "/", &[]).await.0, 418);
}

#[tokio::test]
async fn chains_apply_per_method() {
    let up = upstream("127.0.0.17").await;
    let only_get =
        json!([{ "methods": ["Get"], "chain": [step("acl", "deny", json!({ "from": [service("frontend")] }))] }]);
    let (p, _) = proxy(up, only_get).await;
    assert_eq!(send("127.0.0.3", p, "/api/Get", &[]).await.0, 403);
    assert_eq!(send("127.0.0.3", p, "/api/Put", &[]).await.0, 200);
}

#[test]
fn bad_configurations_are_refused_naming_the_field() {
    let base = json!({
        "schema_version": 1,
        "service": "svc",
        "listeners": { "ingress": { "address": "127.0.0.10", "port": 15006 }, "egress": null },
        "upstreams": [{ "service": "svc", "protocol": "http", "endpoints": [{ "address": "127.0.0.11", "port": 80 }] }],
        "peers": [],
        "routes": [{ "from": "a", "to": "svc", "direction": "ingress", "chains": chains(vec![step("r", "retry", json!({}))]), "forward": { "to": "service", "service": "svc" } }]
    });
    let e = admd::config::parse(&base.to_string()).unwrap_err();
    assert_eq!(e.field, "routes[0].chains[0].chain[0].kind");
    assert!(e.message.contains("not enforced by this version"), "{e}");
    let mut extra = base.clone();
    extra["surprise"] = json!(1);
    let e = admd::config::parse(&extra.to_string()).unwrap_err();
    assert!(e.message.contains("unknown field `surprise`"), "{e}");
    let mut bad_address = base.clone();
    bad_address["upstreams"][0]["endpoints"][0]["address"] = json!("nowhere");
    bad_address["routes"] = json!([]);
    let e = admd::config::parse(&bad_address.to_string()).unwrap_err();
    assert_eq!(e.field, "upstreams[0].endpoints[0].address");
}

#[test]
fn every_example_configuration_of_supported_kinds_loads() {
    // Bookinfo's productpage ADM runs only an allow-list: it loads as `admc build` writes it.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/bookinfo");
    let sources = admc_sources(&dir);
    let config = sources.iter().find(|(p, _)| p == "adm/productpage.json").map(|(_, t)| t.clone()).unwrap();
    admd::config::parse(&config).unwrap();
}

fn admc_sources(dir: &std::path::Path) -> Vec<(String, String)> {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["run", "-q", "-p", "admc-cli", "--", "build", "-o"])
        .arg(std::env::temp_dir().join(format!("admd-test-{}", std::process::id())))
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let root = std::env::temp_dir().join(format!("admd-test-{}", std::process::id()));
    let mut files = Vec::new();
    for entry in std::fs::read_dir(root.join("adm")).unwrap() {
        let path = entry.unwrap().path();
        files.push((
            format!("adm/{}", path.file_name().unwrap().to_string_lossy()),
            std::fs::read_to_string(&path).unwrap(),
        ));
    }
    files
}
