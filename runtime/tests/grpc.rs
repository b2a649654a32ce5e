//! gRPC through `admd`: HTTP/2 with prior knowledge on both sides, response trailers preserved,
//! and policy refusals as trailers-only responses with the matching grpc-status.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used, reason = "tests fail by panicking")]

mod common;

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;

/// A unary gRPC reply: one length-prefixed message, then the trailers.
struct Reply {
    frames: Vec<Frame<Bytes>>,
}

impl Body for Reply {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.frames.is_empty() {
            Poll::Ready(None)
        } else {
            Poll::Ready(Some(Ok(self.frames.remove(0))))
        }
    }
}

/// A gRPC upstream over h2c: answers `hello` with grpc-status 0 and a custom trailer.
async fn grpc_upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.41:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req: http::Request<hyper::body::Incoming>| async move {
                    let mut message = vec![0u8, 0, 0, 0, 5];
                    message.extend_from_slice(b"hello");
                    let mut trailers = http::HeaderMap::new();
                    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                    trailers.insert("x-served-by", http::HeaderValue::from_static("upstream"));
                    let body = Reply { frames: vec![Frame::data(Bytes::from(message)), Frame::trailers(trailers)] };
                    let mut r = http::Response::new(body);
                    r.headers_mut().insert("content-type", http::HeaderValue::from_static("application/grpc"));
                    Ok::<_, std::convert::Infallible>(r)
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

async fn proxy(up: SocketAddr, steps: serde_json::Value) -> SocketAddr {
    common::grpc_proxy("127.0.0.42", up, steps).await
}

/// A unary call over h2c: (http status, headers, body bytes, trailers).
async fn call(proxy: SocketAddr) -> (u16, http::HeaderMap, Bytes, Option<http::HeaderMap>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.3:0".parse().unwrap()).unwrap();
    let stream = socket.connect(proxy).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{proxy}/hotel.Search/Nearby"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let collected = response.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    (status, headers, collected.to_bytes(), trailers)
}

#[tokio::test]
async fn grpc_passes_through_with_its_trailers() {
    let up = grpc_upstream().await;
    let p = proxy(up, json!([{ "policy": "log", "kind": "access_log", "unit": "call frontend -> search", "args": { "sample": { "fraction": 0.0 } } }])).await;
    let (status, headers, body, trailers) = call(p).await;
    assert_eq!(status, 200);
    assert_eq!(headers.get("content-type").unwrap(), "application/grpc");
    assert_eq!(&body[5..], b"hello");
    let trailers = trailers.expect("the trailers reach the client");
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");
    assert_eq!(trailers.get("x-served-by").unwrap(), "upstream");
}

#[tokio::test]
async fn grpc_refusals_carry_the_status_of_the_policy() {
    let up = grpc_upstream().await;
    let deny = json!([{ "policy": "acl", "kind": "deny", "unit": "call frontend -> search", "args": { "from": [{ "service": "frontend", "members": ["frontend"] }] } }]);
    let (status, headers, _, _) = call(proxy(up, deny).await).await;
    assert_eq!(status, 200);
    assert_eq!(headers.get("grpc-status").unwrap(), "7", "PERMISSION_DENIED");
    assert!(headers.get("grpc-message").unwrap().to_str().unwrap().contains("`acl`"));
    let limit = json!([{ "policy": "quota", "kind": "rate_limit", "unit": "calls into search", "args": { "limit": { "per_second": 0.001 }, "burst": 0 } }]);
    let p = proxy(up, limit).await;
    assert_eq!(call(p).await.1.get("grpc-status"), None, "the first call passes");
    assert_eq!(call(p).await.1.get("grpc-status").unwrap(), "8", "RESOURCE_EXHAUSTED");
}
