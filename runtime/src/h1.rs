//! The lean HTTP/1.1 path: most requests a mesh carries, served without hyper.
//!
//! One task per client connection parses each request head (httparse), runs the same policy
//! chain as every other request (`proxy::admit`), and exchanges it on an upstream connection the
//! client connection holds for itself (taken from a shared idle pool, given back when the client
//! leaves): bodies stream through unchanged, in both directions, and nothing is buffered beyond
//! one read. Whatever this path does not do is handed to hyper with the bytes read so far, for
//! the rest of the connection: HTTP/2 (prior knowledge), HTTP/1.0, the h2c upgrade, `Expect`,
//! chunked request bodies, gRPC, and chains with a retry or a mirror (they buffer the body).
//! Other upgrades (WebSocket) are tunnelled here: the upgrade request passes the chain like any
//! other, and once the upstream answers 101 the bytes flow both ways untouched. The hand-off happens before any policy has acted on the request, so nothing counts twice.
//!
//! Why a second path: on loopback the proxy's own work is most of what a mesh adds to a call,
//! and hyper's general machinery (a task and a channel per upstream connection, a header map
//! per message) cost admd a third more CPU per request than nginx (see `benches/proxy`).

use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use adm_artifacts::Direction;
use bytes::{Buf, Bytes, BytesMut};
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::proxy::{admit, limits, Admit, Admitted, Context, Origin, Refusal};

/// The most headers a request or response may have (hyper's default too).
const MAX_HEADERS: usize = 100;
/// A keep-alive client connection idle this long between requests is closed.
pub const KEEP_ALIVE_IDLE: Duration = Duration::from_secs(300);
/// Idle upstream connections kept per upstream address.
const IDLE_PER_UPSTREAM: usize = 128;
/// Upstream connections a client connection holds (one per replica it used most recently).
const HELD_MAX: usize = 4;
/// What a connection's buffers start with, and what reads of a head ask room for.
const HEAD_READ: usize = 4 * 1024;
/// What reads of a body ask room for.
const READ_SIZE: usize = 16 * 1024;
/// A buffer that grew past this (a long head, a large read) is let go after the exchange, so
/// that idle connections stay small.
const KEEP_BUFFER: usize = 64 * 1024;

/// How a connection left the lean path.
pub enum Outcome {
    /// It is finished: closed, or the proxy shuts down.
    Done,
    /// hyper serves the rest of it: `prefix` is what was read from it and not yet served.
    Handoff(Bytes, TcpStream),
}

/// Upstream connections no client connection holds, by upstream address.
#[derive(Default)]
pub struct Idle(Mutex<std::collections::HashMap<SocketAddr, Vec<TcpStream>>>);

impl Idle {
    fn take(&self, addr: SocketAddr) -> Option<TcpStream> {
        let mut idle = self.0.lock().ok()?;
        let list = idle.get_mut(&addr)?;
        while let Some(stream) = list.pop() {
            if alive(&stream) {
                return Some(stream);
            }
        }
        None
    }

    /// How many connections wait in the pool.
    pub fn count(&self) -> usize {
        self.0.lock().map_or(0, |idle| idle.values().map(Vec::len).sum())
    }

    /// Closes the idle connections to every address not in `addresses` (after a reload).
    pub(crate) fn keep_only(&self, addresses: &std::collections::HashSet<SocketAddr>) {
        if let Ok(mut idle) = self.0.lock() {
            idle.retain(|addr, _| addresses.contains(addr));
        }
    }

    fn put(&self, addr: SocketAddr, stream: TcpStream) {
        if let Ok(mut idle) = self.0.lock() {
            let list = idle.entry(addr).or_default();
            // Connections the upstream closed meanwhile go first.
            list.retain(alive);
            if list.len() < IDLE_PER_UPSTREAM {
                list.push(stream);
            }
        }
    }
}

/// Whether an idle connection is still open, as far as the runtime has seen: no read readiness
/// (the common case, no system call), or a read that would block. An upstream that closed it, or
/// sent something unasked, makes it unusable.
fn alive(stream: &TcpStream) -> bool {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match stream.poll_read_ready(&mut cx) {
        std::task::Poll::Pending => true,
        std::task::Poll::Ready(Err(_)) => false,
        std::task::Poll::Ready(Ok(())) => {
            matches!(stream.try_read(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        }
    }
}

/// Serves a client connection until it closes, the proxy shuts down, or a request needs hyper.
pub async fn serve(
    ctx: &Context,
    direction: Direction,
    origin: &Origin,
    client: TcpStream,
    shutdown: &tokio::sync::watch::Receiver<bool>,
    header_read_timeout: Duration,
) -> Outcome {
    let mut conn = Conn {
        shutdown: shutdown.clone(),
        ctx,
        direction,
        origin,
        client,
        buf: BytesMut::with_capacity(HEAD_READ),
        up: BytesMut::with_capacity(HEAD_READ),
        out: Vec::with_capacity(1024),
        held: Vec::new(),
    };
    let next = conn.run(header_read_timeout).await;
    for held in conn.held.drain(..) {
        ctx.idle.put(held.addr, held.stream);
    }
    match next {
        Next::Close => Outcome::Done,
        Next::Handoff => Outcome::Handoff(conn.buf.freeze(), conn.client),
    }
}

enum Next {
    Close,
    Handoff,
}

struct Conn<'a> {
    /// Says when the proxy shuts down: an idle connection closes, and the response in flight
    /// is the connection's last.
    shutdown: tokio::sync::watch::Receiver<bool>,
    ctx: &'a Context,
    direction: Direction,
    origin: &'a Origin,
    client: TcpStream,
    /// Read from the client and not yet served.
    buf: BytesMut,
    /// Read from the upstream and not yet passed on.
    up: BytesMut,
    /// What goes to the upstream or the client next.
    out: Vec<u8>,
    held: Vec<Held>,
}

/// An upstream connection the client connection holds.
struct Held {
    addr: SocketAddr,
    stream: TcpStream,
}

/// A request head, parsed.
struct Head {
    parts: http::request::Parts,
    length: u64,
    /// The client asked to close the connection after this request.
    close: bool,
    /// The protocol the client asks to switch to (`upgrade`, named in `connection`), not h2c.
    upgrade: Option<http::HeaderValue>,
}

/// Why a request head is not served here.
enum Unserved {
    /// hyper serves it.
    Defer,
    /// It is refused, and the connection closed after the answer.
    Bad(StatusCode, &'static str),
}

/// How the upstream frames the body of its response.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    /// Until the upstream closes the connection.
    Close,
}

/// A response head from the upstream, rewritten for the client.
struct ResponseHead {
    status: StatusCode,
    /// Its length in `Conn::up`.
    len: usize,
    framing: Framing,
    /// The upstream connection can carry another request afterwards.
    reusable: bool,
}

/// Why an exchange with the upstream failed.
enum Failed {
    /// The upstream did not answer properly; with the status the client gets.
    Upstream(StatusCode),
    /// The client went away (or stopped sending its body).
    Client,
}

impl Conn<'_> {
    async fn run(&mut self, header_read_timeout: Duration) -> Next {
        loop {
            let (len, mut head) = match self.read_head(header_read_timeout).await {
                Ok(Some(head)) => head,
                Ok(None) => return Next::Close,
                Err(Unserved::Defer) => return Next::Handoff,
                Err(Unserved::Bad(status, why)) => {
                    self.out.clear();
                    Refusal { status, grpc_status: 3, message: why.to_string() }.write_h1(&mut self.out, true);
                    let _ = self.client.write_all(&self.out).await;
                    return Next::Close;
                }
            };
            let Some(rt) = self.ctx.current() else { return Next::Handoff };
            let admitted = match admit(self.ctx, &rt, self.direction, self.origin, &mut head.parts, true).await {
                Admit::Defer => return Next::Handoff,
                Admit::Go(admitted) => Ok(admitted),
                Admit::Refused(refusal) => Err(refusal),
            };
            self.ctx.metrics.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.ctx.metrics.lean.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.buf.advance(len);
            let keep = match admitted {
                Ok(admitted) => self.exchange(&admitted, &mut head).await,
                Err(refusal) => {
                    let close = !self.skip_body(head.length) || head.close;
                    self.out.clear();
                    refusal.write_h1(&mut self.out, close);
                    self.client.write_all(&self.out).await.is_ok() && !close
                }
            };
            if !keep {
                return Next::Close;
            }
        }
    }

    /// Reads until `buf` starts with a whole request head: its length and the head, or `None`
    /// when the client closed (or idled, or the proxy shuts down) between requests.
    async fn read_head(&mut self, header_read_timeout: Duration) -> Result<Option<(usize, Head)>, Unserved> {
        let mut deadline = None;
        loop {
            if !self.buf.is_empty() {
                if let Some(head) = parse_request(&self.buf)? {
                    return Ok(Some(head));
                }
            }
            if self.buf.is_empty() && self.buf.capacity() > KEEP_BUFFER {
                self.buf = BytesMut::with_capacity(HEAD_READ);
            }
            self.buf.reserve(HEAD_READ);
            let read = if self.buf.is_empty() {
                tokio::select! {
                    read = tokio::time::timeout(KEEP_ALIVE_IDLE, self.client.read_buf(&mut self.buf)) => read,
                    _ = self.shutdown.changed() => return Ok(None),
                }
            } else {
                // Once a request has begun, all of its head must come within the timeout.
                let deadline = *deadline.get_or_insert_with(|| Instant::now() + header_read_timeout);
                match tokio::time::timeout_at(deadline, self.client.read_buf(&mut self.buf)).await {
                    Ok(read) => Ok(read),
                    Err(_) => {
                        return Err(Unserved::Bad(StatusCode::REQUEST_TIMEOUT, "the request head came too slowly"))
                    }
                }
            };
            match read {
                Ok(Ok(n)) if n > 0 => {}
                // Closed or idle between requests, or in the middle of a head: nothing to answer.
                _ => return Ok(None),
            }
        }
    }

    /// Forwards an admitted request and passes the response back; whether the client connection
    /// can carry another request.
    async fn exchange(&mut self, admitted: &Admitted<'_>, head: &mut Head) -> bool {
        let path = head.parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let (addr, _, slot) = match admitted.endpoint(self.ctx, path, false) {
            Ok(endpoint) => endpoint,
            Err(refusal) => {
                head.close |= !self.skip_body(head.length);
                return self.fail(admitted, refusal, head).await;
            }
        };
        crate::h2c::strip_hop_by_hop(&mut head.parts.headers);
        if let Some(protocol) = &head.upgrade {
            let headers = &mut head.parts.headers;
            headers.insert(http::header::CONNECTION, http::HeaderValue::from_static("upgrade"));
            headers.insert(http::header::UPGRADE, protocol.clone());
        }
        self.out.clear();
        write_request(&mut self.out, &head.parts, path, addr);
        // The body's first bytes often came with the head: they go out in the same write.
        let buffered = usize::try_from(head.length).unwrap_or(usize::MAX).min(self.buf.len());
        self.out.extend_from_slice(&self.buf[..buffered]);
        self.buf.advance(buffered);
        let rest = head.length - buffered as u64;
        let idempotent = head.parts.method.is_idempotent();
        let head_request = head.parts.method == http::Method::HEAD;
        if let Some(s) = slot {
            s.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let round_trip = self.round_trip(addr, rest, idempotent, head_request, head.upgrade.is_some());
        let result = match admitted.timeout {
            Some(t) => {
                tokio::time::timeout(t, round_trip).await.unwrap_or(Err(Failed::Upstream(StatusCode::GATEWAY_TIMEOUT)))
            }
            None => round_trip.await,
        };
        if let Some(s) = slot {
            s.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
        let (upstream, response) = match result {
            Ok(ok) => ok,
            Err(Failed::Client) => return false,
            Err(Failed::Upstream(status)) => {
                let refusal = admitted.failed(addr, status);
                // A body the client was still sending leaves its connection out of step.
                head.close |= rest > 0;
                return self.fail(admitted, refusal, head).await;
            }
        };
        admitted.record(addr, response.status);
        admitted.finish(self.ctx, response.status);
        if response.status == StatusCode::SWITCHING_PROTOCOLS {
            return self.tunnel(upstream, response).await;
        }
        self.relay(upstream, addr, response, head.close).await
    }

    /// Skips the body of a request that is not forwarded, when all of it is here; whether it was
    /// (else the connection must close after the answer).
    fn skip_body(&mut self, length: u64) -> bool {
        match usize::try_from(length).ok().filter(|n| *n <= self.buf.len()) {
            Some(n) => {
                self.buf.advance(n);
                true
            }
            None => false,
        }
    }

    /// Answers a forwarded request's failure with `refusal`; whether the connection stays open.
    async fn fail(&mut self, admitted: &Admitted<'_>, refusal: Refusal, head: &Head) -> bool {
        self.ctx.metrics.upstream_errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        admitted.finish(self.ctx, refusal.status);
        self.out.clear();
        refusal.write_h1(&mut self.out, head.close);
        self.client.write_all(&self.out).await.is_ok() && !head.close
    }

    /// An upstream connection to `addr`: the one this client connection holds, an idle one, or a
    /// new one (`fresh` asks for a new one). With whether it carried requests before.
    async fn upstream(&mut self, addr: SocketAddr, fresh: bool) -> Result<(TcpStream, bool), Failed> {
        if !fresh {
            if let Some(i) = self.held.iter().position(|h| h.addr == addr) {
                let held = self.held.swap_remove(i);
                if alive(&held.stream) {
                    return Ok((held.stream, true));
                }
            }
            if let Some(stream) = self.ctx.idle.take(addr) {
                return Ok((stream, true));
            }
        }
        // From the ADM's address: the next hop knows the sender by it.
        let stream = crate::proxy::connect(addr, self.ctx.local())
            .await
            .map_err(|_| Failed::Upstream(StatusCode::SERVICE_UNAVAILABLE))?;
        Ok((stream, false))
    }

    /// Sends the request in `out` (and `rest` more body bytes from the client) and reads the
    /// response head into `up`. A request that found its reused connection closed, before any
    /// answer, goes once more on a new one when it is idempotent and all of it was in `out`.
    async fn round_trip(
        &mut self,
        addr: SocketAddr,
        rest: u64,
        idempotent: bool,
        head_request: bool,
        upgrading: bool,
    ) -> Result<(TcpStream, ResponseHead), Failed> {
        let again = idempotent && rest == 0;
        for fresh in [false, true] {
            let (mut upstream, reused) = self.upstream(addr, fresh).await?;
            self.up.clear();
            if upstream.write_all(&self.out).await.is_err() {
                if reused && again {
                    continue;
                }
                return Err(Failed::Upstream(StatusCode::BAD_GATEWAY));
            }
            if rest > 0 {
                self.copy_body(&mut upstream, rest).await?;
            }
            match read_response(&mut upstream, &mut self.up, &mut self.out, head_request, upgrading).await {
                Ok(response) => return Ok((upstream, response)),
                Err(true) if reused && again && !fresh => continue,
                Err(_) => return Err(Failed::Upstream(StatusCode::BAD_GATEWAY)),
            }
        }
        Err(Failed::Upstream(StatusCode::BAD_GATEWAY))
    }

    /// Streams `n` more request body bytes from the client to the upstream.
    async fn copy_body(&mut self, upstream: &mut TcpStream, mut n: u64) -> Result<(), Failed> {
        while n > 0 {
            self.buf.reserve(READ_SIZE);
            match self.client.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return Err(Failed::Client),
                Ok(_) => {}
            }
            let take = usize::try_from(n).unwrap_or(usize::MAX).min(self.buf.len());
            upstream.write_all(&self.buf[..take]).await.map_err(|_| Failed::Upstream(StatusCode::BAD_GATEWAY))?;
            self.buf.advance(take);
            n -= take as u64;
        }
        Ok(())
    }

    /// Passes the upstream's 101 (its head is in `up`) to the client, then the bytes of the new
    /// protocol both ways, as they come, until both sides have closed. The connection is done.
    async fn tunnel(&mut self, mut upstream: TcpStream, response: ResponseHead) -> bool {
        // The 101 as the upstream sent it: its `connection` and `upgrade` are the point.
        let head = self.up.split_to(response.len);
        let early = async {
            self.client.write_all(&head).await?;
            // Bytes either side sent right behind its head go first.
            self.client.write_all(&self.up).await?;
            upstream.write_all(&self.buf).await
        };
        if early.await.is_ok() {
            let _ = tokio::io::copy_bidirectional(&mut self.client, &mut upstream).await;
        }
        self.up.clear();
        self.buf.clear();
        false
    }

    /// Passes the response (its head is in `up`) to the client, its body as it comes; whether the
    /// client connection can carry another request. The upstream connection is kept when the
    /// response ended cleanly.
    async fn relay(&mut self, mut upstream: TcpStream, addr: SocketAddr, response: ResponseHead, close: bool) -> bool {
        let close = close || response.framing == Framing::Close || *self.shutdown.borrow();
        // `out` holds the head `read_response` rewrote.
        end_head(&mut self.out, close);
        self.up.advance(response.len);
        let mut chunked = Chunked::default();
        let mut remaining = match response.framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        // Ok(()) when the body ended where its framing says; Err(()) when either side failed.
        let ended: Result<(), ()> = async {
            loop {
                // Pass on what is here, up to the end of the body.
                let (take, done) = match response.framing {
                    Framing::Empty => (0, true),
                    Framing::Length(_) => {
                        let take = usize::try_from(remaining).unwrap_or(usize::MAX).min(self.up.len());
                        remaining -= take as u64;
                        (take, remaining == 0)
                    }
                    Framing::Chunked => match chunked.feed(&self.up) {
                        Ok(Some(end)) => (end, true),
                        Ok(None) => (self.up.len(), false),
                        Err(()) => return Err(()),
                    },
                    Framing::Close => (self.up.len(), false),
                };
                // The head and a small first part of the body go out in one write.
                let small = take <= HEAD_READ;
                if small {
                    self.out.extend_from_slice(&self.up[..take]);
                }
                if !self.out.is_empty() {
                    self.client.write_all(&self.out).await.map_err(|_| ())?;
                    self.out.clear();
                }
                if !small {
                    self.client.write_all(&self.up[..take]).await.map_err(|_| ())?;
                }
                self.up.advance(take);
                if done {
                    return Ok(());
                }
                self.up.reserve(READ_SIZE);
                match upstream.read_buf(&mut self.up).await {
                    Ok(0) if response.framing == Framing::Close => return Ok(()),
                    Ok(0) | Err(_) => return Err(()),
                    Ok(_) => {}
                }
            }
        }
        .await;
        match ended {
            Ok(()) => {
                // Anything more from the upstream is a protocol error: the connection is dropped.
                if response.reusable && self.up.is_empty() {
                    if self.held.len() >= HELD_MAX {
                        let oldest = self.held.remove(0);
                        self.ctx.idle.put(oldest.addr, oldest.stream);
                    }
                    self.held.push(Held { addr, stream: upstream });
                }
                if self.up.capacity() > KEEP_BUFFER {
                    self.up = BytesMut::with_capacity(HEAD_READ);
                }
                self.up.clear();
                !close
            }
            // A truncated body is not passed off as complete: the client connection closes.
            Err(()) => {
                self.up.clear();
                false
            }
        }
    }
}

/// Parses the request head at the start of `bytes`: its length and the head, or `None` while it
/// is incomplete.
fn parse_request(bytes: &[u8]) -> Result<Option<(usize, Head)>, Unserved> {
    let bad = |why| Unserved::Bad(StatusCode::BAD_REQUEST, why);
    let too_large = |why| Unserved::Bad(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, why);
    let mut headers = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(bytes, &mut headers) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if bytes.len() >= limits::MAX_HEAD_BYTES => {
            return Err(too_large("the request head is too large"))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(too_large("the request has too many headers")),
        // HTTP/2 with prior knowledge, and whatever else hyper knows better.
        Err(_) if bytes.starts_with(b"PRI * HTTP/2") => return Err(Unserved::Defer),
        Err(_) => return Err(bad("malformed request")),
    };
    // HTTP/1.0 keeps its connections otherwise: hyper serves it.
    if req.version != Some(1) {
        return Err(Unserved::Defer);
    }
    let method = http::Method::from_bytes(req.method.unwrap_or("").as_bytes()).map_err(|_| bad("invalid method"))?;
    if method == http::Method::CONNECT {
        return Err(Unserved::Defer);
    }
    let uri: http::Uri = req.path.unwrap_or("").parse().map_err(|_| bad("invalid request target"))?;
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.version = http::Version::HTTP_11;
    parts.headers.reserve(req.headers.len());
    let mut length = None;
    let mut close = false;
    let (mut upgrade, mut upgrading) = (None, false);
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| bad("invalid content-length"))?;
            // Repeated lengths are hyper's to judge.
            if length.replace(n).is_some() {
                return Err(Unserved::Defer);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") || name.eq_ignore_ascii_case("expect") {
            return Err(Unserved::Defer);
        } else if name.eq_ignore_ascii_case("upgrade") {
            // h2c is hyper's (`h2c.rs`); other protocols are tunnelled here.
            if h.value.split(|b| *b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(b"h2c")) {
                return Err(Unserved::Defer);
            }
            upgrade = Some(http::HeaderValue::from_bytes(h.value).map_err(|_| bad("invalid header value"))?);
        } else if name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|b| *b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                upgrading |= token.eq_ignore_ascii_case(b"upgrade");
            }
        } else if name.eq_ignore_ascii_case("content-type") && h.value.starts_with(b"application/grpc") {
            return Err(Unserved::Defer);
        }
        let name = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad("invalid header name"))?;
        let value = http::HeaderValue::from_bytes(h.value).map_err(|_| bad("invalid header value"))?;
        parts.headers.append(name, value);
    }
    // An upgrade counts only when `connection` names it (RFC 9110 §7.8).
    let upgrade = upgrade.filter(|_| upgrading);
    Ok(Some((len, Head { parts, length: length.unwrap_or(0), close, upgrade })))
}

/// The request line and headers for the upstream, in origin form.
fn write_request(out: &mut Vec<u8>, parts: &http::request::Parts, path: &str, addr: SocketAddr) {
    use std::io::Write;
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if !parts.headers.contains_key(http::header::HOST) {
        let _ = write!(out, "host: {addr}\r\n");
    }
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Reads a response head into `up` (final responses only: 1xx ones are dropped, but for the 101
/// that accepts an upgrade the client asked for), and writes its rewritten form into `out` (not
/// for a 101, which passes as it came). `Err(true)` when the connection ended before any byte of
/// an answer (a reused connection the upstream had closed).
async fn read_response(
    upstream: &mut TcpStream,
    up: &mut BytesMut,
    out: &mut Vec<u8>,
    head_request: bool,
    upgrading: bool,
) -> Result<ResponseHead, bool> {
    let mut answered = false;
    loop {
        if !up.is_empty() {
            let mut headers = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
            let mut res = httparse::Response::new(&mut []);
            match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut res, up, &mut headers) {
                Ok(httparse::Status::Complete(len)) => {
                    let code = res.code.unwrap_or(0);
                    let status = StatusCode::from_u16(code).map_err(|_| false)?;
                    if status == StatusCode::SWITCHING_PROTOCOLS {
                        if !upgrading {
                            return Err(false);
                        }
                        return Ok(ResponseHead { status, len, framing: Framing::Empty, reusable: false });
                    }
                    if status.is_informational() {
                        up.advance(len);
                        continue;
                    }
                    let (framing, reusable) = framing(&res, status, head_request)?;
                    out.clear();
                    rewrite_response_head(out, &res);
                    return Ok(ResponseHead { status, len, framing, reusable });
                }
                Ok(httparse::Status::Partial) if up.len() < limits::MAX_HEAD_BYTES => {}
                _ => return Err(false),
            }
        }
        up.reserve(HEAD_READ);
        match upstream.read_buf(up).await {
            Ok(n) if n > 0 => answered = true,
            _ => return Err(!answered),
        }
    }
}

/// How a response's body is framed (RFC 9112 §6.3), and whether its connection can be reused.
fn framing(res: &httparse::Response, status: StatusCode, head_request: bool) -> Result<(Framing, bool), bool> {
    let mut length: Option<u64> = None;
    let mut chunked = None;
    let mut reusable = res.version == Some(1);
    for h in res.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse::<u64>().ok()).ok_or(false)?;
            if length.is_some_and(|l| l != n) {
                return Err(false);
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked when it is the last coding; any other last coding runs to the close.
            let last = h.value.rsplit(|b| *b == b',').next().unwrap_or(b"").trim_ascii();
            chunked = Some(last.eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            reusable &= !h.value.split(|b| *b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
        }
    }
    let framing = if head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        Framing::Empty
    } else {
        match (chunked, length) {
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) => Framing::Close,
            (None, Some(n)) => Framing::Length(n),
            (None, None) => Framing::Close,
        }
    };
    Ok((framing, reusable && framing != Framing::Close))
}

/// The response head for the client, but for its end (`end_head`): the upstream's, less its
/// hop-by-hop headers (RFC 9110 §7.6.1) and any length a chunked body overrides.
fn rewrite_response_head(out: &mut Vec<u8>, res: &httparse::Response) {
    let _ = std::io::Write::write_fmt(
        out,
        format_args!("HTTP/1.1 {} {}\r\n", res.code.unwrap_or(502), res.reason.unwrap_or("")),
    );
    let named: Vec<&[u8]> = res
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| h.value.split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
        .collect();
    let chunked = res.headers.iter().any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"));
    for h in res.headers.iter() {
        let hop = ["connection", "keep-alive", "proxy-connection", "upgrade", "http2-settings", "te"]
            .iter()
            .any(|n| h.name.eq_ignore_ascii_case(n))
            || named.iter().any(|n| n.eq_ignore_ascii_case(h.name.as_bytes()))
            || (chunked && h.name.eq_ignore_ascii_case("content-length"));
        if !hop {
            out.extend_from_slice(h.name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(h.value);
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// Ends a response head; `connection: close` when the response is the connection's last.
fn end_head(out: &mut Vec<u8>, close: bool) {
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Finds where a chunked body ends while its bytes pass through unchanged (RFC 9112 §7.1).
#[derive(Debug, Default)]
struct Chunked {
    state: ChunkState,
    /// Bytes of the current size or trailer line (bounded).
    line: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq)]
enum ChunkState {
    /// A chunk's size: its hex digits so far, their value, and whether an extension began.
    #[default]
    SizeStart,
    Size(u64, bool),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    /// A trailer line; `true` while it is empty so far.
    Trailer(bool),
    TrailerLf(bool),
    Done,
}

/// The longest chunk-size line or trailer section accepted.
const MAX_CHUNK_LINE: usize = 64 * 1024;

impl Chunked {
    /// Reads `bytes` on from where the body stands: `Some(n)` when the body ends after the first
    /// `n` of them, `None` when it goes on, `Err` when they are not a chunked body.
    fn feed(&mut self, bytes: &[u8]) -> Result<Option<usize>, ()> {
        use ChunkState::*;
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            self.state = match self.state {
                Data(n) => {
                    let take = usize::try_from(n).unwrap_or(usize::MAX).min(bytes.len() - i);
                    i += take;
                    let left = n - take as u64;
                    self.state = if left == 0 { DataCr } else { Data(left) };
                    continue;
                }
                SizeStart => Size(u64::from(hex(b).ok_or(())?), false),
                Size(v, false) if hex(b).is_some() => {
                    Size(v.checked_mul(16).ok_or(())? + u64::from(hex(b).unwrap_or(0)), false)
                }
                Size(v, _) if b == b'\r' => SizeLf(v),
                Size(v, false) if b == b';' || b == b' ' || b == b'\t' => Size(v, true),
                Size(v, true) if b != b'\n' => Size(v, true),
                SizeLf(0) if b == b'\n' => Trailer(true),
                SizeLf(v) if b == b'\n' => Data(v),
                DataCr if b == b'\r' => DataLf,
                DataLf if b == b'\n' => SizeStart,
                Trailer(empty) if b == b'\r' => TrailerLf(empty),
                Trailer(_) if b != b'\n' => Trailer(false),
                TrailerLf(true) if b == b'\n' => Done,
                TrailerLf(false) if b == b'\n' => Trailer(true),
                _ => return Err(()),
            };
            i += 1;
            match self.state {
                Done => return Ok(Some(i)),
                Size(..) | SizeLf(_) | Trailer(_) | TrailerLf(_) => {
                    self.line += 1;
                    if self.line > MAX_CHUNK_LINE {
                        return Err(());
                    }
                }
                _ => self.line = 0,
            }
        }
        Ok(None)
    }
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = b"4\r\nWiki\r\n5;name=value\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nExpires: never\r\n\r\n";

    #[test]
    fn a_chunked_body_ends_where_it_ends_however_it_is_split() {
        let mut stream = BODY.to_vec();
        stream.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        for split in 0..=BODY.len() {
            let mut c = Chunked::default();
            let first = c.feed(&stream[..split]).unwrap();
            let end = match first {
                Some(n) => n,
                None => split + c.feed(&stream[split..]).unwrap().unwrap(),
            };
            assert_eq!(end, BODY.len(), "split at {split}");
        }
        let mut c = Chunked::default();
        assert_eq!(c.feed(b"0\r\n\r\nrest").unwrap(), Some(5));
    }

    #[test]
    fn bytes_that_are_not_a_chunked_body_are_refused() {
        for bad in [&b"x\r\n"[..], b"4\r\nWikiXX", b"4\nWiki\r\n", b"ffffffffffffffffff\r\n", b"0\r\nTrailer\n"] {
            assert!(Chunked::default().feed(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let long = vec![b'a'; MAX_CHUNK_LINE + 10];
        let mut c = Chunked::default();
        assert!(c.feed(b"0\r\n").unwrap().is_none());
        assert!(c.feed(&long).is_err());
    }

    fn response(head: &str) -> (Framing, bool) {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut res = httparse::Response::new(&mut headers);
        res.parse(head.as_bytes()).unwrap();
        let status = StatusCode::from_u16(res.code.unwrap()).unwrap();
        framing(&res, status, false).unwrap()
    }

    #[test]
    fn responses_are_framed_by_the_rules_of_http_1_1() {
        assert_eq!(response("HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n"), (Framing::Length(3), true));
        assert_eq!(
            response("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\ncontent-length: 3\r\n\r\n"),
            (Framing::Chunked, true)
        );
        assert_eq!(response("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n"), (Framing::Close, false));
        assert_eq!(response("HTTP/1.1 200 OK\r\n\r\n"), (Framing::Close, false));
        assert_eq!(response("HTTP/1.1 204 No Content\r\n\r\n"), (Framing::Empty, true));
        assert_eq!(response("HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n"), (Framing::Empty, true));
        assert_eq!(
            response("HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"),
            (Framing::Length(0), false)
        );
        assert_eq!(response("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n"), (Framing::Length(0), false));
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut res = httparse::Response::new(&mut headers);
        res.parse(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\n").unwrap();
        assert!(framing(&res, StatusCode::OK, false).is_err());
    }

    #[test]
    fn hop_by_hop_headers_stay_behind_and_the_last_response_says_close() {
        let mut out = Vec::new();
        let head = b"HTTP/1.1 200 Fine\r\nConnection: keep-alive, x-hop\r\nx-hop: 1\r\nKeep-Alive: timeout=5\r\ntransfer-encoding: chunked\r\ncontent-length: 12\r\nx-kept: yes\r\n\r\n";
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut res = httparse::Response::new(&mut headers);
        res.parse(head).unwrap();
        rewrite_response_head(&mut out, &res);
        end_head(&mut out, true);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 Fine\r\ntransfer-encoding: chunked\r\nx-kept: yes\r\nconnection: close\r\n\r\n"
        );
    }

    #[test]
    fn requests_this_path_does_not_serve_go_to_hyper() {
        for head in [
            "GET / HTTP/1.0\r\n\r\n",
            "POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nconnection: upgrade, http2-settings\r\nupgrade: h2c\r\nhttp2-settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
            "POST / HTTP/1.1\r\nexpect: 100-continue\r\ncontent-length: 1\r\n\r\n",
            "POST /a.B/C HTTP/1.1\r\ncontent-type: application/grpc\r\n\r\n",
            "POST / HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 1\r\n\r\n",
            "CONNECT a:1 HTTP/1.1\r\n\r\n",
        ] {
            assert!(matches!(parse_request(head.as_bytes()), Err(Unserved::Defer)), "{head}");
        }
        for partial in ["", "GET / HTTP/1.1\r\nhost: a\r\n"] {
            assert!(matches!(parse_request(partial.as_bytes()), Ok(None)), "{partial}");
        }
        assert!(matches!(
            parse_request(b"POST / HTTP/1.1\r\ncontent-length: -1\r\n\r\n"),
            Err(Unserved::Bad(StatusCode::BAD_REQUEST, _))
        ));
        let served = |text: &[u8]| match parse_request(text) {
            Ok(Some((len, head))) if len == text.len() => head,
            _ => panic!("served here: {}", String::from_utf8_lossy(text)),
        };
        let head = served(b"PUT /x?y HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: close\r\n\r\n");
        assert_eq!((head.length, head.close, head.parts.uri.to_string()), (5, true, "/x?y".to_string()));
        // A WebSocket upgrade is served (tunnelled) here, when `connection` names it.
        let ws = |connection: &str| {
            let text = format!("GET /chat HTTP/1.1\r\nconnection: {connection}\r\nupgrade: websocket\r\n\r\n");
            served(text.as_bytes()).upgrade
        };
        assert_eq!(ws("Upgrade").as_ref().map(|v| v.as_bytes()), Some(&b"websocket"[..]));
        assert_eq!(ws("keep-alive"), None);
    }
}
