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

/// An upstream that answers with what it saw; `/slow` takes two seconds, `/fail` answers 500,
/// `/flaky` answers 503 to every other request, `/whoami` names the upstream, `/peer` names the
/// address the request came from, `/close` names the upstream and closes the connection.
async fn upstream(ip: &str) -> SocketAddr {
    upstream_counting(ip).await.0
}

/// The same, with the number of requests it received.
async fn upstream_counting(ip: &str) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind(format!("{ip}:0")).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else { return };
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    async move {
                        match req.uri().path() {
                            "/slow" => tokio::time::sleep(std::time::Duration::from_secs(2)).await,
                            "/fail" => {
                                let mut r = http::Response::new(Full::new(Bytes::from("failed")));
                                *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                                return Ok::<_, std::convert::Infallible>(r);
                            }
                            "/flaky" if n.is_multiple_of(2) => {
                                let mut r = http::Response::new(Full::new(Bytes::from("flaky")));
                                *r.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                                return Ok(r);
                            }
                            "/whoami" => return Ok(http::Response::new(Full::new(Bytes::from(addr.to_string())))),
                            "/peer" => return Ok(http::Response::new(Full::new(Bytes::from(peer.ip().to_string())))),
                            "/close" => {
                                let mut r = http::Response::new(Full::new(Bytes::from(addr.to_string())));
                                r.headers_mut().insert("connection", http::HeaderValue::from_static("close"));
                                return Ok(r);
                            }
                            _ => {}
                        }
                        let seen: Vec<String> = req
                            .headers()
                            .iter()
                            .filter(|(k, _)| k.as_str().starts_with("x-"))
                            .map(|(k, v)| format!("{}={}", k, v.to_str().unwrap_or("")))
                            .collect();
                        let body = format!("path={} headers={}", req.uri().path(), seen.join(","));
                        Ok(http::Response::new(Full::new(Bytes::from(body))))
                    }
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    (addr, count)
}

fn step(policy: &str, kind: &str, args: Value) -> Value {
    json!({ "policy": policy, "kind": kind, "unit": format!("call frontend -> svc"), "args": args })
}

/// A proxy for service `svc` with one ingress route from `frontend` (at 127.0.0.3) carrying
/// `steps`; returns the proxy's address.
async fn proxy(up: SocketAddr, chains: Value) -> (SocketAddr, Arc<admd::proxy::Context>) {
    proxy_to(&[up], &[], chains).await
}

fn endpoints(addrs: &[SocketAddr]) -> Value {
    Value::Array(addrs.iter().map(|a| json!({ "address": a.ip().to_string(), "port": a.port() })).collect())
}

/// A proxy whose service `svc` runs on `replicas`; `others` are more upstreams (name, address).
async fn proxy_to(
    replicas: &[SocketAddr],
    others: &[(&str, SocketAddr)],
    chains: Value,
) -> (SocketAddr, Arc<admd::proxy::Context>) {
    let up = replicas[0];
    let mut upstreams = vec![json!({ "service": "svc", "protocol": "http", "endpoints": endpoints(replicas) })];
    for (name, addr) in others {
        upstreams.push(json!({ "service": name, "protocol": "http", "endpoints": endpoints(&[*addr]) }));
    }
    let _ = up;
    let listener = tokio::net::TcpListener::bind("127.0.0.10:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = json!({
        "schema_version": 1,
        "service": "svc",
        "listeners": { "ingress": { "address": "127.0.0.10", "port": addr.port() }, "egress": null },
        "upstreams": upstreams,
        "peers": [{ "service": "frontend", "addresses": ["127.0.0.3"] }, { "service": "backend", "addresses": ["127.0.0.5"] }],
        "routes": [
            { "from": "frontend", "to": "svc", "direction": "ingress", "chains": chains.clone(), "forward": { "to": "service", "service": "svc" } },
            { "from": "backend", "to": "svc", "direction": "ingress", "chains": chains, "forward": { "to": "service", "service": "svc" } }
        ]
    });
    let runtime = admd::config::parse(&config.to_string()).unwrap();
    let ctx = admd::proxy::Context::new(runtime);
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let timeout = std::time::Duration::from_millis(300);
    tokio::spawn(admd::proxy::serve_with(ctx.clone(), Direction::Ingress, listener, stopped, timeout));
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
    let metrics = ctx.metrics.render(ctx.current().as_deref());
    assert!(metrics.contains("admd_policy_decisions_total{policy=\"acl\",decision=\"refused\"} 1"), "{metrics}");
    assert!(metrics.contains("admd_request_duration_seconds_count 1"), "one request reached an upstream: {metrics}");
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
    // Not acting: no abort at 0%.
    let calm = json!({ "abort": { "fraction": 0.0 }, "status": 418, "delay": { "us": 0 }, "delay_percent": { "fraction": 0.0 } });
    let (p, _) = proxy(up, chains(vec![step("chaos", "fault", calm)])).await;
    assert_eq!(send("127.0.0.3", p, "/", &[]).await.0, 200);
    // A delay on every request: the answer cannot come sooner than it.
    let slow = json!({ "abort": { "fraction": 0.0 }, "status": 418, "delay": { "us": 200_000 }, "delay_percent": { "fraction": 1.0 } });
    let (p, _) = proxy(up, chains(vec![step("chaos", "fault", slow)])).await;
    let started = std::time::Instant::now();
    assert_eq!(send("127.0.0.3", p, "/", &[]).await.0, 200);
    assert!(started.elapsed() >= std::time::Duration::from_millis(200));
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

#[tokio::test]
async fn load_balancing_spreads_or_sticks() {
    let a = upstream("127.0.0.21").await;
    let b = upstream("127.0.0.22").await;
    let lb = |algorithm: &str| chains(vec![step("lb", "load_balance", json!({ "algorithm": algorithm }))]);
    let (p, _) = proxy_to(&[a, b], &[], lb("round_robin")).await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(send("127.0.0.3", p, "/whoami", &[]).await.2);
    }
    assert_eq!(seen, vec![a.to_string(), b.to_string(), a.to_string(), b.to_string()]);
    let (p, _) = proxy_to(&[a, b], &[], lb("ring_hash")).await;
    let first = send("127.0.0.3", p, "/whoami", &[]).await.2;
    for _ in 0..5 {
        assert_eq!(send("127.0.0.3", p, "/whoami", &[]).await.2, first, "the same key keeps its endpoint");
    }
}

#[tokio::test]
async fn circuit_breaker_ejects_failing_endpoints() {
    let a = upstream("127.0.0.23").await;
    let args = json!({ "max_pending": 10, "consecutive_errors": 2, "eject_for": { "us": 60_000_000 } });
    let (p, _) = proxy_to(&[a], &[], chains(vec![step("cb", "circuit_breaker", args)])).await;
    assert_eq!(send("127.0.0.3", p, "/fail", &[]).await.0, 500);
    assert_eq!(send("127.0.0.3", p, "/fail", &[]).await.0, 500);
    // Two consecutive errors: the only endpoint is out for a minute.
    let (status, _, body) = send("127.0.0.3", p, "/fine", &[]).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("ejected"), "{body}");
}

#[tokio::test]
async fn circuit_breaker_bounds_pending_requests() {
    let (a, received) = upstream_counting("127.0.0.24").await;
    let args = json!({ "max_pending": 1, "consecutive_errors": 5, "eject_for": { "us": 1_000_000 } });
    let (p, _) = proxy_to(&[a], &[], chains(vec![step("cb", "circuit_breaker", args)])).await;
    let slow = tokio::spawn(send("127.0.0.3", p, "/slow", &[]));
    // Once the upstream holds the slow request, it holds the only pending slot.
    while received.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let (status, _, body) = send("127.0.0.3", p, "/", &[]).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("too many pending"), "{body}");
    assert_eq!(slow.await.unwrap().0, 200);
    // The slot is free again.
    assert_eq!(send("127.0.0.3", p, "/", &[]).await.0, 200);
}

#[tokio::test]
async fn retry_resends_retryable_failures() {
    let a = upstream("127.0.0.25").await;
    let retry = json!({ "attempts": 2, "per_try_timeout": { "us": 1_000_000 }, "retry_on": [502, 503, 504] });
    let (p, _) = proxy_to(&[a], &[], chains(vec![step("again", "retry", retry)])).await;
    for _ in 0..3 {
        assert_eq!(send("127.0.0.3", p, "/flaky", &[]).await.0, 200, "a 503 is retried");
    }
    // Without the retry, every other request fails.
    let b = upstream("127.0.0.26").await;
    let (q, _) =
        proxy_to(&[b], &[], chains(vec![step("log", "access_log", json!({ "sample": { "fraction": 0.0 } }))])).await;
    let statuses: Vec<u16> =
        [send("127.0.0.3", q, "/flaky", &[]).await.0, send("127.0.0.3", q, "/flaky", &[]).await.0].to_vec();
    assert!(statuses.contains(&503), "{statuses:?}");
}

#[tokio::test]
async fn mirror_copies_without_delaying() {
    let a = upstream("127.0.0.27").await;
    let (shadow, count) = upstream_counting("127.0.0.28").await;
    let args = json!({ "to": service("shadow"), "percent": { "fraction": 1.0 } });
    let (p, _) = proxy_to(&[a], &[("shadow", shadow)], chains(vec![step("copy", "mirror", args)])).await;
    // The copy goes to /slow on the shadow, which takes two seconds; the main request does not wait.
    let started = std::time::Instant::now();
    assert_eq!(send("127.0.0.3", p, "/slow-not", &[]).await.0, 200);
    assert_eq!(send("127.0.0.3", p, "/slow", &[]).await.0, 200);
    let _ = started;
    for _ in 0..200 {
        if count.load(std::sync::atomic::Ordering::SeqCst) >= 2 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the mirror received {} copies", count.load(std::sync::atomic::Ordering::SeqCst));
}

/// Raw bytes from `source` to the proxy; what comes back before the connection closes (or a
/// second passes).
async fn raw(source: &str, proxy: SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(proxy).await.unwrap();
    let _ = stream.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn bad_requests_get_400_and_oversized_heads_431() {
    let a = upstream("127.0.0.31").await;
    let (p, _) = proxy(a, chains(vec![])).await;
    let garbage = raw("127.0.0.3", p, b"NOT A REQUEST\r\n\r\n").await;
    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage}");
    let huge = format!("GET / HTTP/1.1\r\nhost: svc\r\nx-big: {}\r\n\r\n", "a".repeat(100_000));
    let answer = raw("127.0.0.3", p, huge.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    // The proxy still serves.
    assert_eq!(send("127.0.0.3", p, "/", &[]).await.0, 200);
}

#[tokio::test]
async fn slow_clients_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let a = upstream("127.0.0.32").await;
    let (p, _) = proxy(a, chains(vec![])).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.3:0".parse().unwrap()).unwrap();
    let mut stream = socket.connect(p).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nhost: svc\r\n").await.unwrap();
    // A slowloris client: one header line, then nothing. The proxy gives up on it (300 ms here).
    let mut buf = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection was kept open");
    let text = String::from_utf8_lossy(&buf);
    assert!(text.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
}

#[tokio::test]
async fn an_upstream_that_dies_mid_response_does_not_take_the_proxy_down() {
    // An upstream that promises 1000 bytes, sends 10, and closes.
    let dying =
        scripted_upstream("127.0.0.33", b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n0123456789", false).await;
    let healthy = upstream("127.0.0.34").await;
    let (p, _) = proxy_to(&[dying], &[], chains(vec![])).await;
    let answer = raw("127.0.0.3", p, b"GET / HTTP/1.1\r\nhost: svc\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.len() < 1000, "the truncated body is not passed off as complete");
    // The proxy is still up, and other upstreams are served as before.
    let again = raw("127.0.0.3", p, b"GET / HTTP/1.1\r\nhost: svc\r\n\r\n").await;
    assert!(again.starts_with("HTTP/1.1 200"), "{again}");
    let (q, _) = proxy_to(&[healthy], &[], chains(vec![])).await;
    assert_eq!(send("127.0.0.3", q, "/", &[]).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_fails_no_request() {
    let a = upstream("127.0.0.35").await;
    let (p, ctx) =
        proxy(a, chains(vec![step("acl", "allow", json!({ "from": [service("frontend"), service("backend")] }))]))
            .await;
    let load = tokio::spawn(async move {
        let mut statuses = Vec::new();
        for _ in 0..300 {
            statuses.push(send("127.0.0.3", p, "/", &[]).await.0);
        }
        statuses
    });
    // Swap the configuration again and again while requests flow, as SIGHUP does.
    let config = ctx.current().unwrap();
    for _ in 0..50 {
        let fresh = admd::config::parse(&reload_config(&config)).unwrap();
        ctx.install(fresh);
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let statuses = load.await.unwrap();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
}

/// The configuration text of a runtime built by `proxy`: the same routes, rebuilt.
fn reload_config(rt: &admd::config::Runtime) -> String {
    let up = rt.upstreams.get("svc").unwrap().endpoints[0];
    let ingress = rt.ingress.unwrap();
    json!({
        "schema_version": 1,
        "service": "svc",
        "listeners": { "ingress": { "address": ingress.ip().to_string(), "port": ingress.port() }, "egress": null },
        "upstreams": [{ "service": "svc", "protocol": "http", "endpoints": endpoints(&[up]) }],
        "peers": [{ "service": "frontend", "addresses": ["127.0.0.3"] }],
        "routes": [{ "from": "frontend", "to": "svc", "direction": "ingress",
            "chains": chains(vec![step("acl", "allow", json!({ "from": [service("frontend")] }))]),
            "forward": { "to": "service", "service": "svc" } }]
    })
    .to_string()
}

#[tokio::test]
async fn egress_routes_by_authority_and_names_unknown_ones() {
    let a = upstream("127.0.0.36").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.37:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = json!({
        "schema_version": 1,
        "service": "frontend",
        "listeners": { "ingress": null, "egress": { "address": "127.0.0.37", "port": addr.port() } },
        "upstreams": [{ "service": "svc", "protocol": "http", "endpoints": endpoints(&[a]) }],
        "peers": [{ "service": "frontend", "addresses": ["127.0.0.3"] }],
        "routes": [{ "from": "frontend", "to": "svc", "direction": "egress",
            "chains": chains(vec![step("tag", "set_header", json!({ "name": "x-from", "value": "frontend" }))]),
            "forward": { "to": "service", "service": "svc" } }]
    });
    let ctx = admd::proxy::Context::new(admd::config::parse(&config.to_string()).unwrap());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(admd::proxy::serve(ctx, Direction::Egress, listener, stopped));
    let (status, _, body) = send("127.0.0.3", addr, "/x", &[]).await;
    assert_eq!((status, body.as_str()), (200, "path=/x headers=x-from=frontend"));
    // Requests leave from the service's own address: the next hop knows the sender by it.
    let (status, _, body) = send("127.0.0.3", addr, "/peer", &[]).await;
    assert_eq!((status, body.as_str()), (200, "127.0.0.37"));
    let answer = raw("127.0.0.3", addr, b"GET / HTTP/1.1\r\nhost: payments:8080\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert!(answer.contains("unknown destination `payments`"), "{answer}");
    drop(stop);
}

#[test]
fn bad_configurations_are_refused_naming_the_field() {
    let base = json!({
        "schema_version": 1,
        "service": "svc",
        "listeners": { "ingress": { "address": "127.0.0.10", "port": 15006 }, "egress": null },
        "upstreams": [{ "service": "svc", "protocol": "http", "endpoints": [{ "address": "127.0.0.11", "port": 80 }] }],
        "peers": [],
        "routes": [{ "from": "a", "to": "svc", "direction": "ingress", "chains": chains(vec![step("r", "my_kind", json!({}))]), "forward": { "to": "service", "service": "svc" } }]
    });
    let e = admd::config::parse(&base.to_string()).unwrap_err();
    assert_eq!(e.field, "routes[0].chains[0].chain[0].kind");
    assert!(e.message.contains("not enforced by this version"), "{e}");
    let mut bad_retry = base.clone();
    bad_retry["routes"][0]["chains"] =
        chains(vec![step("r", "retry", json!({ "attempts": 0, "per_try_timeout": { "us": 1 }, "retry_on": [] }))]);
    let e = admd::config::parse(&bad_retry.to_string()).unwrap_err();
    assert_eq!(e.field, "routes[0].chains[0].chain[0].args.attempts");
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
fn every_example_configuration_loads() {
    for example in ["bookinfo", "hotel-reservation"] {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples").join(example);
        for (path, text) in admc_sources(&dir) {
            if let Err(e) = admd::config::parse(&text) {
                panic!("{example}/{path}: {e}");
            }
        }
    }
}

fn admc_sources(dir: &std::path::Path) -> Vec<(String, String)> {
    let root = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("admd-{}", dir.file_name().unwrap().to_string_lossy()));
    let _ = std::fs::remove_dir_all(&root);
    let out = std::process::Command::new(env!("CARGO"))
        .args(["run", "-q", "-p", "admc-cli", "--", "build", "-o"])
        .arg(&root)
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
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

/// Reads one HTTP/2 frame: (type, flags, stream, payload).
async fn frame(stream: &mut tokio::net::TcpStream) -> (u8, u8, u32, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let mut head = [0u8; 9];
    stream.read_exact(&mut head).await.unwrap();
    let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
    let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await.unwrap();
    (head[3], head[4], id, payload)
}

/// `Upgrade: h2c` (RFC 7540 §3.2): 101, then HTTP/2, with the upgrade request's answer (and its
/// body, through the policy chain) on stream 1; hop-by-hop headers never reach the upstream.
#[tokio::test]
async fn h2c_upgrade_answers_the_request_on_stream_one() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = upstream("127.0.0.41").await;
    let (p, _) = proxy(up, chains(vec![step("tag", "set_header", json!({ "name": "x-tag", "value": "t" }))])).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.3:0".parse().unwrap()).unwrap();
    let mut stream = socket.connect(p).await.unwrap();
    stream
        .write_all(
            b"POST /up HTTP/1.1\r\nhost: svc\r\nconnection: Upgrade, HTTP2-Settings, x-hop\r\nupgrade: h2c\r\n\
              http2-settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nx-hop: 1\r\ncontent-length: 4\r\n\r\nbody",
        )
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        stream.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101") && head.contains("upgrade: h2c"), "{head}");
    // The client's connection preface and an empty SETTINGS frame.
    stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0").await.unwrap();
    let mut body = Vec::new();
    let mut headers_on_one = false;
    loop {
        let (kind, flags, id, payload) =
            tokio::time::timeout(std::time::Duration::from_secs(5), frame(&mut stream)).await.unwrap();
        match kind {
            0x4 if flags & 0x1 == 0 => stream.write_all(b"\0\0\0\x04\x01\0\0\0\0").await.unwrap(),
            0x1 if id == 1 => headers_on_one = true,
            0x0 if id == 1 => {
                body.extend_from_slice(&payload);
                if flags & 0x1 != 0 {
                    break;
                }
            }
            0x7 => panic!("GOAWAY: {payload:?}"),
            _ => {}
        }
    }
    assert!(headers_on_one);
    // The upstream echoes the path and the x- headers it received: the chain ran, x-hop did not pass.
    assert_eq!(String::from_utf8_lossy(&body), "path=/up headers=x-tag=t");
}

/// A keep-alive client's requests travel on upstream connections of its own, still spread over
/// the replicas by the balancer, and an upstream that closes its connection costs no request.
#[tokio::test]
async fn keep_alive_clients_keep_their_upstream_connections_correct() {
    let (a, _) = upstream_counting("127.0.0.45").await;
    let (b, _) = upstream_counting("127.0.0.46").await;
    let lb = chains(vec![step("lb", "load_balance", json!({ "algorithm": "round_robin" }))]);
    let (p, _) = proxy_to(&[a, b], &[], lb).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.3:0".parse().unwrap()).unwrap();
    let stream = socket.connect(p).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let mut seen = Vec::new();
    for path in ["/whoami", "/whoami", "/whoami", "/whoami", "/close", "/close", "/whoami", "/whoami"] {
        sender.ready().await.unwrap();
        let req = http::Request::builder().uri(path).header("host", "svc").body(Empty::<Bytes>::new()).unwrap();
        let response = sender.send_request(req).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        seen.push(String::from_utf8_lossy(&body).into_owned());
    }
    let (on_a, on_b) =
        (seen.iter().filter(|s| **s == a.to_string()).count(), seen.iter().filter(|s| **s == b.to_string()).count());
    assert_eq!((on_a, on_b), (4, 4), "{seen:?}");
}

// The lean HTTP/1.1 path (`h1.rs`): framing, streaming, connection reuse, and what it hands to hyper.

/// An upstream that answers each request with `reply(path, body)`, over hyper.
async fn upstream_with<F>(ip: &str, reply: F) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>)
where
    F: Fn(
            &http::request::Parts,
            Bytes,
        ) -> http::Response<http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>>
        + Send
        + Sync
        + 'static,
{
    let listener = tokio::net::TcpListener::bind(format!("{ip}:0")).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (reply, count) = (Arc::new(reply), accepted.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let reply = reply.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let reply = reply.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        Ok::<_, std::convert::Infallible>(reply(&parts, body))
                    }
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    (addr, accepted)
}

fn boxed(body: impl Into<Bytes>) -> http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible> {
    Full::new(body.into()).boxed()
}

/// A raw connection from `source` to `proxy`.
async fn connect(source: &str, proxy: SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(proxy).await.unwrap()
}

/// The responses in `bytes`, in order: (status, headers, body); bodies framed by content-length
/// or chunked, or running to the end.
/// A response as a test reads it: status, header fields (lower-case names), body.
type Parsed = (u16, Vec<(String, String)>, Vec<u8>);

fn responses(mut bytes: &[u8], heads: &[bool]) -> Vec<Parsed> {
    let mut out = Vec::new();
    for head_request in heads {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut res = httparse::Response::new(&mut headers);
        let len = match res.parse(bytes) {
            Ok(httparse::Status::Complete(len)) => len,
            other => panic!("not a response ({other:?}): {}", String::from_utf8_lossy(bytes)),
        };
        let fields: Vec<(String, String)> = res
            .headers
            .iter()
            .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
            .collect();
        let code = res.code.unwrap();
        bytes = &bytes[len..];
        let field = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        let body = if *head_request || code == 204 || code == 304 {
            Vec::new()
        } else if field("transfer-encoding").is_some() {
            let mut body = Vec::new();
            loop {
                let Ok(httparse::Status::Complete((used, size))) = httparse::parse_chunk_size(bytes) else {
                    panic!("bad chunk")
                };
                let size = size as usize;
                if size == 0 {
                    // Trailer lines, then an empty one.
                    bytes = &bytes[used..];
                    while !bytes.starts_with(b"\r\n") {
                        bytes = &bytes[bytes.windows(2).position(|w| w == b"\r\n").unwrap() + 2..];
                    }
                    bytes = &bytes[2..];
                    break;
                }
                body.extend_from_slice(&bytes[used..used + size]);
                bytes = &bytes[used + size + 2..];
            }
            body
        } else if let Some(n) = field("content-length") {
            let n: usize = n.parse().unwrap();
            let body = bytes[..n].to_vec();
            bytes = &bytes[n..];
            body
        } else {
            std::mem::take(&mut bytes).to_vec()
        };
        out.push((code, fields, body));
    }
    assert!(bytes.is_empty(), "unexpected bytes after the responses: {}", String::from_utf8_lossy(bytes));
    out
}

/// Pipelined requests keep their order and their framing: HEAD, 204 and 304 have no body, and a
/// chunked response passes through as it came.
#[tokio::test]
async fn pipelined_requests_keep_the_framing_of_each_response() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (up, _) = upstream_with("127.0.0.71", |parts, _| {
        let mut r = http::Response::new(boxed("hello"));
        match parts.uri.path() {
            "/none" => *r.status_mut() = http::StatusCode::NO_CONTENT,
            "/same" => *r.status_mut() = http::StatusCode::NOT_MODIFIED,
            "/chunked" => {
                let frames =
                    ["ab", "cde"].map(|s| Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(Bytes::from(s))));
                *r.body_mut() = http_body_util::StreamBody::new(futures_stream(frames)).boxed();
            }
            _ => {}
        }
        r
    })
    .await;
    let (p, ctx) =
        proxy(up, chains(vec![step("tag", "set_header", json!({ "name": "x-mesh", "value": "adm" }))])).await;
    let mut client = connect("127.0.0.3", p).await;
    let requests = "HEAD / HTTP/1.1\r\nhost: svc\r\n\r\nGET /none HTTP/1.1\r\nhost: svc\r\n\r\nGET /same HTTP/1.1\r\nhost: svc\r\n\r\n\
                    GET /chunked HTTP/1.1\r\nhost: svc\r\n\r\nGET /last HTTP/1.1\r\nhost: svc\r\nconnection: close\r\n\r\n";
    client.write_all(requests.as_bytes()).await.unwrap();
    let mut bytes = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(5), client.read_to_end(&mut bytes)).await.unwrap().unwrap();
    let got = responses(&bytes, &[true, false, false, false, false]);
    let summary: Vec<(u16, String)> =
        got.iter().map(|(s, _, b)| (*s, String::from_utf8_lossy(b).into_owned())).collect();
    assert_eq!(
        summary,
        [(200, ""), (204, ""), (304, ""), (200, "abcde"), (200, "hello")].map(|(s, b)| (s, b.to_string())),
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    assert!(got[3].1.iter().any(|(n, v)| n == "transfer-encoding" && v == "chunked"));
    assert!(got[4].1.iter().any(|(n, v)| n == "connection" && v == "close"), "the last response says close");
    let served = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!((served(&ctx.metrics.requests), served(&ctx.metrics.lean)), (5, 5));
}

fn futures_stream<T: Send + 'static>(items: impl IntoIterator<Item = T>) -> tokio_stream::Iter<std::vec::IntoIter<T>> {
    tokio_stream::iter(items.into_iter().collect::<Vec<_>>())
}

/// A response streams to the client as the upstream sends it: the first part arrives while the
/// upstream still holds back the rest.
#[tokio::test]
async fn responses_stream_as_they_come() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (release, gate) = tokio::sync::mpsc::channel::<()>(1);
    let gate = Arc::new(tokio::sync::Mutex::new(gate));
    let (up, _) = upstream_with("127.0.0.72", move |_, _| {
        let gate = gate.clone();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<hyper::body::Frame<Bytes>, std::convert::Infallible>>(2);
        tokio::spawn(async move {
            let _ = tx.send(Ok(hyper::body::Frame::data(Bytes::from("first part;")))).await;
            let _ = gate.lock().await.recv().await;
            let _ = tx.send(Ok(hyper::body::Frame::data(Bytes::from("second part")))).await;
        });
        http::Response::new(http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)).boxed())
    })
    .await;
    let (p, _) = proxy(up, chains(vec![])).await;
    let mut client = connect("127.0.0.3", p).await;
    client.write_all(b"GET / HTTP/1.1\r\nhost: svc\r\nconnection: close\r\n\r\n").await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&seen).contains("first part;") {
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), client.read(&mut buf))
            .await
            .expect("the first part was held back")
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(!String::from_utf8_lossy(&seen).contains("second"));
    release.send(()).await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), client.read_to_end(&mut seen)).await.unwrap().unwrap();
    let got = responses(&seen, &[false]);
    assert_eq!(String::from_utf8_lossy(&got[0].2), "first part;second part");
}

/// Request bodies reach the upstream whole, by length or chunked (which hyper serves), however
/// large; and every request counts once, whichever path served it.
#[tokio::test]
async fn request_bodies_arrive_whole_on_either_path() {
    let (up, _) = upstream_with("127.0.0.73", |_, body| http::Response::new(boxed(body))).await;
    let (p, ctx) = proxy(up, chains(vec![])).await;
    let stream = connect("127.0.0.3", p).await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let big: Bytes = (0..3_000_000u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>().into();
    for chunked in [false, true, false] {
        sender.ready().await.unwrap();
        let body = if chunked {
            let frames = big
                .chunks(100_000)
                .map(|c| Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(Bytes::copy_from_slice(c))));
            http_body_util::StreamBody::new(futures_stream(frames)).boxed()
        } else {
            boxed(big.clone())
        };
        let req = http::Request::builder().method("POST").uri("/echo").header("host", "svc").body(body).unwrap();
        let response = sender.send_request(req).await.unwrap();
        assert_eq!(response.status(), 200);
        let echoed = response.into_body().collect().await.unwrap().to_bytes();
        assert!(echoed == big, "chunked: {chunked}, {} bytes came back", echoed.len());
    }
    // The chunked one went to hyper, and the rest of its connection with it.
    let served = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!((served(&ctx.metrics.requests), served(&ctx.metrics.lean)), (3, 1));
}

/// A refused request's body is skipped: the next request on the connection is read right.
#[tokio::test]
async fn a_refused_request_with_a_body_leaves_the_connection_in_step() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (up, _) =
        upstream_with("127.0.0.74", |parts, _| http::Response::new(boxed(parts.uri.path().to_string()))).await;
    let (p, _) =
        proxy(up, chains(vec![step("auth", "require_header", json!({ "name": "x-token", "value": "t" }))])).await;
    let mut client = connect("127.0.0.3", p).await;
    let requests = "POST /refused HTTP/1.1\r\nhost: svc\r\ncontent-length: 11\r\n\r\nhello world\
                    GET /next HTTP/1.1\r\nhost: svc\r\nx-token: t\r\nconnection: close\r\n\r\n";
    client.write_all(requests.as_bytes()).await.unwrap();
    let mut bytes = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(5), client.read_to_end(&mut bytes)).await.unwrap().unwrap();
    let got = responses(&bytes, &[false, false]);
    assert_eq!((got[0].0, got[1].0), (403, 200), "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(got[1].2, b"/next");
}

/// Informational responses are dropped, and a body that runs to the close reaches the client,
/// which is told the connection closes.
#[tokio::test]
async fn informational_and_close_delimited_responses_pass_correctly() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let reply = b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nx-up: 1\r\n\r\nall of it, until the close";
    let up = scripted_upstream("127.0.0.75", reply, false).await;
    let (p, _) = proxy(up, chains(vec![])).await;
    for _ in 0..2 {
        let mut client = connect("127.0.0.3", p).await;
        client.write_all(b"GET / HTTP/1.1\r\nhost: svc\r\n\r\n").await.unwrap();
        let mut bytes = Vec::new();
        tokio::time::timeout(std::time::Duration::from_secs(5), client.read_to_end(&mut bytes)).await.unwrap().unwrap();
        let got = responses(&bytes, &[false]);
        assert_eq!(got[0].0, 200);
        assert_eq!(got[0].2, b"all of it, until the close");
        assert!(got[0].1.iter().any(|(n, v)| n == "connection" && v == "close"));
    }
}

/// Clients that send one request per connection share the upstream connections: the upstream
/// sees one connection, not one per client.
#[tokio::test]
async fn short_lived_clients_share_idle_upstream_connections() {
    let (up, accepted) = upstream_with("127.0.0.76", |_, _| http::Response::new(boxed("ok"))).await;
    let (p, ctx) = proxy(up, chains(vec![])).await;
    for _ in 0..5 {
        assert_eq!(send("127.0.0.3", p, "/", &[]).await.0, 200);
        // The client connection closed: its upstream connection goes back to the idle pool.
        for _ in 0..500 {
            if ctx.idle_upstreams() == 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(ctx.idle_upstreams(), 1);
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    // A reload that keeps the upstream keeps its idle connection; one that drops it closes it.
    let config = ctx.current().unwrap();
    ctx.install(admd::config::parse(&reload_config(&config)).unwrap());
    assert_eq!(ctx.idle_upstreams(), 1);
    let moved = reload_config(&config).replace("\"address\":\"127.0.0.76\"", "\"address\":\"127.0.0.75\"");
    assert_ne!(moved, reload_config(&config));
    ctx.install(admd::config::parse(&moved).unwrap());
    assert_eq!(ctx.idle_upstreams(), 0);
}

/// With the lean path off, hyper serves every request, under the same policies.
#[tokio::test]
async fn hyper_alone_serves_the_same_chain() {
    let (up, _) = upstream_counting("127.0.0.77").await;
    let tag = chains(vec![step("tag", "set_header", json!({ "name": "x-mesh", "value": "adm" }))]);
    let (p, ctx) = proxy(up, tag).await;
    ctx.lean.store(false, std::sync::atomic::Ordering::Relaxed);
    let (status, _, body) = send("127.0.0.3", p, "/", &[]).await;
    assert_eq!((status, body.as_str()), (200, "path=/ headers=x-mesh=adm"));
    assert_eq!(send("127.0.0.4", p, "/", &[]).await.0, 403);
    assert_eq!(ctx.metrics.lean.load(std::sync::atomic::Ordering::Relaxed), 0);
}

/// What a raw server reads up to the end of a request head (and any bytes that came behind it);
/// `None` when the connection ends first.
async fn request_head(s: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf).await {
            Ok(n) if n > 0 => seen.extend_from_slice(&buf[..n]),
            _ => return None,
        }
    }
    Some(seen)
}

/// An upstream that reads a request head, answers `reply` (one byte per write when `trickle`),
/// then closes.
async fn scripted_upstream(ip: &str, reply: &'static [u8], trickle: bool) -> SocketAddr {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind(format!("{ip}:0")).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                if request_head(&mut s).await.is_none() {
                    return;
                }
                let pieces = if trickle { reply.chunks(1) } else { reply.chunks(reply.len().max(1)) };
                for piece in pieces {
                    if s.write_all(piece).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Heads and bodies split at every byte, both ways, are read the same: the client's request
/// arrives one byte per write, and the upstream's chunked answer (with an extension and a trailer)
/// one byte per write too.
#[tokio::test]
async fn messages_split_at_every_byte_are_read_the_same() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const REPLY: &[u8] =
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nx-sum: 9\r\n\r\n";
    let up = scripted_upstream("127.0.0.78", REPLY, true).await;
    let (p, _) = proxy(up, chains(vec![])).await;
    let mut client = connect("127.0.0.3", p).await;
    client.set_nodelay(true).unwrap();
    for byte in b"GET /split HTTP/1.1\r\nhost: svc\r\nx-long-header: aaaaaaaaaaaaaaaa\r\nconnection: close\r\n\r\n" {
        client.write_all(&[*byte]).await.unwrap();
        tokio::task::yield_now().await;
    }
    let mut bytes = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(5), client.read_to_end(&mut bytes)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.ends_with("4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nx-sum: 9\r\n\r\n"), "{text}");
    assert_eq!(responses(&bytes, &[false])[0].2, b"Wikipedia");
}

/// An upstream that refuses the connection gets 503, one that answers garbage or an endless head
/// gets 502; the client's connection serves on after each.
#[tokio::test]
async fn upstream_failures_are_named_and_the_client_connection_serves_on() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let closed = {
        let l = tokio::net::TcpListener::bind("127.0.0.79:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let garbage = scripted_upstream("127.0.0.80", b"SPDY/9 what\r\n\r\n", true).await;
    let endless: &'static [u8] =
        Box::leak(format!("HTTP/1.1 200 OK\r\nx: {}\r\n\r\n", "a".repeat(70_000)).into_bytes().into());
    let endless = scripted_upstream("127.0.0.81", endless, true).await;
    for (up, status, why) in
        [(closed, 503, "refused the connection"), (garbage, 502, "bad response"), (endless, 502, "bad response")]
    {
        let (p, ctx) = proxy(up, chains(vec![])).await;
        let mut client = connect("127.0.0.3", p).await;
        client
            .write_all(b"GET /a HTTP/1.1\r\nhost: svc\r\n\r\nGET /b HTTP/1.1\r\nhost: svc\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut bytes = Vec::new();
        tokio::time::timeout(std::time::Duration::from_secs(5), client.read_to_end(&mut bytes)).await.unwrap().unwrap();
        let got = responses(&bytes, &[false, false]);
        for (code, _, body) in &got {
            assert_eq!(*code, status, "{}", String::from_utf8_lossy(body));
            assert!(String::from_utf8_lossy(body).contains(why), "{}", String::from_utf8_lossy(body));
        }
        assert_eq!(ctx.metrics.upstream_errors.load(std::sync::atomic::Ordering::Relaxed), 2);
    }
}

/// A retry buffers the body to send it again, up to `max_buffered`: a larger body is refused
/// with 413, a smaller one goes through whole.
#[tokio::test]
async fn a_retry_buffers_bodies_up_to_the_configured_bound() {
    let (up, _) = upstream_with("127.0.0.82", |_, body| http::Response::new(boxed(body))).await;
    let retry = json!({ "attempts": 1, "per_try_timeout": { "us": 1_000_000 }, "retry_on": [503] });
    let (p, ctx) = proxy(up, chains(vec![step("again", "retry", retry)])).await;
    ctx.max_buffered.store(1000, std::sync::atomic::Ordering::Relaxed);
    for (size, status) in [(1000usize, 200u16), (1001, 413)] {
        let stream = connect("127.0.0.3", p).await;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        let body = boxed(vec![b'x'; size]);
        let req = http::Request::builder().method("POST").uri("/").header("host", "svc").body(body).unwrap();
        let response = sender.send_request(req).await.unwrap();
        assert_eq!(response.status(), status, "{size} bytes");
        let text = response.into_body().collect().await.unwrap().to_bytes();
        if status == 200 {
            assert_eq!(text.len(), size);
        } else {
            assert!(String::from_utf8_lossy(&text).contains("over 1000 bytes"), "{text:?}");
        }
    }
}

/// A WebSocket upgrade passes the chain once, then the connection is a tunnel: bytes sent right
/// behind the request and later ones reach the upstream, its answers come back, until the close.
/// A refused upgrade opens nothing.
#[tokio::test]
async fn websocket_upgrades_are_tunnelled_after_the_chain() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.83:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let Some(seen) = request_head(&mut s).await else { return };
                let mut buf = [0u8; 4096];
                let head = String::from_utf8_lossy(&seen).to_ascii_lowercase();
                let asked = head.contains("connection: upgrade") && head.contains("upgrade: websocket");
                if !asked || !head.contains("x-mesh: adm") {
                    let _ = s.write_all(b"HTTP/1.1 426 Upgrade Required\r\ncontent-length: 0\r\n\r\n").await;
                    return;
                }
                let _ = s
                    .write_all(b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n")
                    .await;
                // Echo, upper-cased, what came behind the head and what comes after.
                let end = seen.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                let mut pending = seen[end..].to_vec();
                loop {
                    if !pending.is_empty() && s.write_all(&pending.to_ascii_uppercase()).await.is_err() {
                        return;
                    }
                    match s.read(&mut buf).await {
                        Ok(n) if n > 0 => pending = buf[..n].to_vec(),
                        _ => return,
                    }
                }
            });
        }
    });
    let allow = step("acl", "allow", json!({ "from": [service("frontend")] }));
    let tag = step("tag", "set_header", json!({ "name": "x-mesh", "value": "adm" }));
    let (p, ctx) = proxy(up, chains(vec![allow, tag])).await;
    // The lean path, then hyper's (`--hyper-only`, or a connection handed to hyper earlier).
    for lean in [true, false] {
        ctx.lean.store(lean, std::sync::atomic::Ordering::Relaxed);
        let served_lean = ctx.metrics.lean.load(std::sync::atomic::Ordering::Relaxed);
        let mut client = connect("127.0.0.3", p).await;
        client
            .write_all(b"GET /chat HTTP/1.1\r\nhost: svc\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\r\nhello")
            .await
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        for wanted in ["HELLO", "AGAIN"] {
            while !String::from_utf8_lossy(&got).ends_with(wanted) {
                let n = tokio::time::timeout(std::time::Duration::from_secs(5), client.read(&mut buf))
                    .await
                    .unwrap()
                    .unwrap();
                assert!(n > 0, "lean {lean}, closed: {}", String::from_utf8_lossy(&got));
                got.extend_from_slice(&buf[..n]);
            }
            client.write_all(b"again").await.unwrap();
        }
        assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 101"), "{}", String::from_utf8_lossy(&got));
        // The client closes its side: the tunnel closes the other.
        client.shutdown().await.unwrap();
        let rest = tokio::time::timeout(std::time::Duration::from_secs(5), client.read_to_end(&mut got)).await;
        assert!(rest.is_ok(), "lean {lean}: the tunnel stayed open");
        assert_eq!(ctx.metrics.lean.load(std::sync::atomic::Ordering::Relaxed), served_lean + u64::from(lean));
        // From a source the chain refuses, no tunnel: a 403, and the upstream never sees it.
        let refused = raw(
            "127.0.0.5",
            p,
            b"GET /chat HTTP/1.1\r\nhost: svc\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
        )
        .await;
        assert!(refused.starts_with("HTTP/1.1 403"), "lean {lean}: {refused}");
    }
}

/// `OPTIONS *` (asterisk form) reaches the upstream as it was sent, on either path.
#[tokio::test]
async fn asterisk_form_requests_pass_on_either_path() {
    let up = upstream("127.0.0.79").await;
    let (p, ctx) =
        proxy(up, chains(vec![step("tag", "set_header", json!({ "name": "x-mesh", "value": "adm" }))])).await;
    let request = b"OPTIONS * HTTP/1.1\r\nhost: svc\r\nconnection: close\r\n\r\n";
    for lean in [true, false] {
        ctx.lean.store(lean, std::sync::atomic::Ordering::Relaxed);
        let answer = raw("127.0.0.3", p, request).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "lean {lean}: {answer}");
        assert!(answer.ends_with("path=* headers=x-mesh=adm"), "lean {lean}: {answer}");
    }
}

/// An upstream that drops connection attempts (its accept queue is full, so the kernel drops
/// every SYN) gets 503 once the connect timeout runs out, not after the kernel's two minutes of
/// retries, on either path.
#[tokio::test]
async fn an_upstream_that_never_accepts_gets_503_after_the_connect_timeout() {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.74:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let up = listener.local_addr().unwrap();
    // The one connection a backlog of 0 queues; the queue is full after it.
    let _queued = tokio::net::TcpStream::connect(up).await.unwrap();
    let (p, ctx) = proxy(up, chains(vec![])).await;
    let lean = send("127.0.0.3", p, "/", &[]);
    let answer = tokio::time::timeout(std::time::Duration::from_secs(30), lean).await.expect("no answer in 30 s");
    assert_eq!(answer.0, 503, "lean path: {}", answer.2);
    assert!(answer.2.contains("did not accept it in time"), "{}", answer.2);
    ctx.lean.store(false, std::sync::atomic::Ordering::Relaxed);
    let hyper = send("127.0.0.3", p, "/", &[]);
    let answer = tokio::time::timeout(std::time::Duration::from_secs(30), hyper).await.expect("no answer in 30 s");
    assert_eq!(answer.0, 503, "hyper path: {}", answer.2);
    drop(listener);
}
