//! gRPC through `admd` between a real tonic client and a real tonic server (messages written
//! with prost's derive, so no `protoc` is needed): unary and server-streaming calls pass with
//! their messages and their status (a stream's error after its messages arrives in the
//! trailers), and each policy refusal reaches the tonic client as the status its kind implies.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used, reason = "tests fail by panicking")]

mod common;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::PathAndQuery;
use serde_json::{json, Value};
use tonic::codegen::Service;
use tonic::{Code, Request, Response, Status};
use tonic_prost::ProstCodec;

#[derive(Clone, PartialEq, prost::Message)]
struct Point {
    #[prost(int32, tag = "1")]
    lat: i32,
    #[prost(string, tag = "2")]
    name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Hotels {
    #[prost(string, repeated, tag = "1")]
    ids: Vec<String>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

/// `Nearby` answers hotels around the point (`Missing` always fails, `Slow` takes two seconds).
#[derive(Clone)]
struct Unary(&'static str);

impl Service<Request<Point>> for Unary {
    type Response = Response<Hotels>;
    type Error = Status;
    type Future = BoxFuture<Response<Hotels>, Status>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Point>) -> Self::Future {
        let method = self.0;
        Box::pin(async move {
            let p = req.into_inner();
            match method {
                "Missing" => Err(Status::not_found(format!("no hotel near {}", p.lat))),
                "Slow" => {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    Ok(Response::new(Hotels::default()))
                }
                _ => Ok(Response::new(Hotels { ids: vec![format!("{}-{}", p.name, p.lat), "h2".into()] })),
            }
        })
    }
}

/// `Stream` sends three hotels, then fails with ABORTED: the status travels in the trailers.
#[derive(Clone)]
struct Streaming;

type HotelStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<Hotels, Status>> + Send>>;

impl Service<Request<Point>> for Streaming {
    type Response = Response<HotelStream>;
    type Error = Status;
    type Future = BoxFuture<Response<HotelStream>, Status>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<Point>) -> Self::Future {
        let items: Vec<Result<Hotels, Status>> = vec![
            Ok(Hotels { ids: vec!["a".into()] }),
            Ok(Hotels { ids: vec!["b".into()] }),
            Ok(Hotels { ids: vec!["c".into()] }),
            Err(Status::aborted("index rebuilt mid-stream")),
        ];
        let stream: HotelStream = Box::pin(tokio_stream::iter(items));
        Box::pin(async move { Ok(Response::new(stream)) })
    }
}

/// The tonic server: what generated code would route, written out.
#[derive(Clone)]
struct Search;

impl Service<http::Request<tonic::body::Body>> for Search {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<Hotels, Point>::default());
            Ok(match req.uri().path() {
                "/hotel.Search/Nearby" => grpc.unary(Unary("Nearby"), req).await,
                "/hotel.Search/Missing" => grpc.unary(Unary("Missing"), req).await,
                "/hotel.Search/Slow" => grpc.unary(Unary("Slow"), req).await,
                "/hotel.Search/Stream" => grpc.server_streaming(Streaming, req).await,
                _ => Status::unimplemented("no such method").into_http(),
            })
        })
    }
}

async fn tonic_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.61:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(tonic::transport::Server::builder().serve_with_incoming(Search, incoming));
    addr
}

async fn proxy(up: SocketAddr, steps: serde_json::Value) -> SocketAddr {
    common::grpc_proxy("127.0.0.62", up, steps).await
}

/// A tonic client in `frontend` (it sends from frontend's address).
async fn client(proxy: SocketAddr) -> tonic::client::Grpc<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{proxy}"))
        .unwrap()
        .local_address(Some("127.0.0.3".parse().unwrap()))
        .connect()
        .await
        .unwrap();
    tonic::client::Grpc::new(channel)
}

async fn unary(proxy: SocketAddr, method: &'static str) -> Result<Hotels, Status> {
    let mut c = client(proxy).await;
    c.ready().await.unwrap();
    let point = Point { lat: 37, name: "sf".into() };
    let path = PathAndQuery::from_static(method);
    c.unary(Request::new(point), path, ProstCodec::<Point, Hotels>::default()).await.map(Response::into_inner)
}

fn step(policy: &str, kind: &str, args: Value) -> Value {
    json!({ "policy": policy, "kind": kind, "unit": "call frontend -> search", "args": args })
}

fn frontend() -> Value {
    json!([{ "service": "frontend", "members": ["frontend"] }])
}

#[tokio::test]
async fn tonic_calls_pass_with_their_messages_and_statuses() {
    let up = tonic_server().await;
    let p = proxy(up, json!([step("acl", "allow", json!({ "from": frontend() }))])).await;
    let hotels = unary(p, "/hotel.Search/Nearby").await.unwrap();
    assert_eq!(hotels.ids, ["sf-37", "h2"]);
    let missing = unary(p, "/hotel.Search/Missing").await.unwrap_err();
    assert_eq!((missing.code(), missing.message()), (Code::NotFound, "no hotel near 37"));

    let mut c = client(p).await;
    c.ready().await.unwrap();
    let path = PathAndQuery::from_static("/hotel.Search/Stream");
    let mut stream = c
        .server_streaming(Request::new(Point::default()), path, ProstCodec::<Point, Hotels>::default())
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    let end = loop {
        match stream.message().await {
            Ok(Some(h)) => seen.extend(h.ids),
            Ok(None) => panic!("the stream ended without its status"),
            Err(status) => break status,
        }
    };
    assert_eq!(seen, ["a", "b", "c"]);
    assert_eq!((end.code(), end.message()), (Code::Aborted, "index rebuilt mid-stream"));
}

#[tokio::test]
async fn tonic_clients_see_the_status_of_each_refusal() {
    let up = tonic_server().await;
    let denied = proxy(up, json!([step("acl", "deny", json!({ "from": frontend() }))])).await;
    let e = unary(denied, "/hotel.Search/Nearby").await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("`acl`"), "{e:?}");

    let quota = json!([step("quota", "rate_limit", json!({ "limit": { "per_second": 0.001 }, "burst": 0 }))]);
    let limited = proxy(up, quota).await;
    assert!(unary(limited, "/hotel.Search/Nearby").await.is_ok());
    assert_eq!(unary(limited, "/hotel.Search/Nearby").await.unwrap_err().code(), Code::ResourceExhausted);

    let deadline = proxy(up, json!([step("deadline", "timeout", json!({ "after": { "us": 100_000 } }))])).await;
    assert_eq!(unary(deadline, "/hotel.Search/Slow").await.unwrap_err().code(), Code::DeadlineExceeded);

    let gone = std::net::TcpListener::bind("127.0.0.61:0").unwrap().local_addr().unwrap();
    let down = proxy(gone, json!([])).await;
    assert_eq!(unary(down, "/hotel.Search/Nearby").await.unwrap_err().code(), Code::Unavailable);
}
