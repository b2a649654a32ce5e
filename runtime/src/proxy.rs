//! The proxy: listeners, the policy chain of each request, and forwarding.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use adm_artifacts::{Direction, Forward};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::config::{Action, Algorithm, Breaker, Protocol, RetryBudget, Runtime, Upstream};

pub type Body = BoxBody<Bytes, hyper::Error>;

/// The current configuration; a reload swaps it, and requests in flight keep the one they began with.
pub type Shared = Arc<RwLock<Arc<Runtime>>>;

/// Clients to upstreams: HTTP/1.1, and HTTP/2 with prior knowledge for gRPC.
pub struct Clients {
    http1: Client<HttpConnector, Body>,
    http2: Client<HttpConnector, Body>,
}

impl Clients {
    pub fn new() -> Clients {
        Clients::from(None)
    }

    /// Clients whose connections leave from `local`: the ADM's service address, so that the next
    /// hop (a receiver's ingress ADM) knows the sender by its address as by any of its requests.
    /// `local` is a specific address (`Context` leaves out an unspecified one).
    pub fn from(local: Option<std::net::IpAddr>) -> Clients {
        // Small requests and replies: no Nagle delay on either side of the proxy.
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(limits::CONNECT_TIMEOUT));
        connector.set_local_address(local);
        Clients {
            http1: Client::builder(TokioExecutor::new()).build(connector.clone()),
            http2: Client::builder(TokioExecutor::new()).http2_only(true).build(connector),
        }
    }
}

impl Default for Clients {
    fn default() -> Self {
        Clients::new()
    }
}

/// Upper bounds of the latency histogram's buckets, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0];

/// Counters exposed on `/metrics`.
#[derive(Default)]
pub struct Metrics {
    pub requests: AtomicU64,
    /// Of `requests`, those the lean HTTP/1.1 path served (the rest went through hyper).
    pub lean: AtomicU64,
    pub refused: AtomicU64,
    pub upstream_errors: AtomicU64,
    /// Request durations (to the response's headers): a count per bucket, then the sum in µs.
    latency: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    latency_sum_us: AtomicU64,
}

impl Metrics {
    fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let i = LATENCY_BUCKETS.iter().position(|b| secs <= *b).unwrap_or(LATENCY_BUCKETS.len());
        self.latency[i].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// Prometheus text format; decisions per policy come from the steps of `rt`.
    pub fn render(&self, rt: Option<&Runtime>) -> String {
        let mut out = String::new();
        out.push_str("# TYPE admd_requests_total counter\n");
        out.push_str(&format!("admd_requests_total {}\n", self.requests.load(Ordering::Relaxed)));
        out.push_str("# TYPE admd_lean_requests_total counter\n");
        out.push_str(&format!("admd_lean_requests_total {}\n", self.lean.load(Ordering::Relaxed)));
        out.push_str("# TYPE admd_refused_total counter\n");
        out.push_str(&format!("admd_refused_total {}\n", self.refused.load(Ordering::Relaxed)));
        out.push_str("# TYPE admd_upstream_errors_total counter\n");
        out.push_str(&format!("admd_upstream_errors_total {}\n", self.upstream_errors.load(Ordering::Relaxed)));
        out.push_str("# TYPE admd_policy_decisions_total counter\n");
        let mut per_policy: std::collections::BTreeMap<(&str, &str), u64> = std::collections::BTreeMap::new();
        for step in rt.into_iter().flat_map(Runtime::steps) {
            *per_policy.entry((&step.policy, "passed")).or_default() += step.passed.load(Ordering::Relaxed);
            *per_policy.entry((&step.policy, "refused")).or_default() += step.refused.load(Ordering::Relaxed);
        }
        for ((policy, decision), n) in per_policy {
            out.push_str(&format!("admd_policy_decisions_total{{policy=\"{policy}\",decision=\"{decision}\"}} {n}\n"));
        }
        out.push_str("# TYPE admd_request_duration_seconds histogram\n");
        let mut cumulative = 0;
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += self.latency[i].load(Ordering::Relaxed);
            out.push_str(&format!("admd_request_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}\n"));
        }
        cumulative += self.latency[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
        out.push_str(&format!("admd_request_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}\n"));
        out.push_str(&format!(
            "admd_request_duration_seconds_sum {}\n",
            self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6
        ));
        out.push_str(&format!("admd_request_duration_seconds_count {cumulative}\n"));
        out
    }
}

/// Everything a request handler needs.
pub struct Context {
    pub runtime: Shared,
    pub clients: Clients,
    pub metrics: Metrics,
    /// The eBPF data plane, when `admd --ebpf` found it: callers are identified by the kernel.
    pub kernel: Option<crate::kernel::Kernel>,
    /// The address upstream connections leave from (the ADM's service address).
    local: Option<std::net::IpAddr>,
    random: AtomicU64,
    /// Upstream connections of the lean HTTP/1.1 path that no client connection holds.
    pub(crate) idle: crate::h1::Idle,
    /// Whether HTTP/1.1 requests take the lean path (`h1.rs`); else hyper serves every request.
    pub lean: std::sync::atomic::AtomicBool,
    /// The most of a request body a retry or a mirror buffers (`admd --max-buffered`).
    pub max_buffered: std::sync::atomic::AtomicUsize,
}

impl Context {
    pub fn new(runtime: Runtime) -> Arc<Context> {
        Context::with_kernel(runtime, None)
    }

    /// A context whose callers are identified by the eBPF data plane when `kernel` is given.
    pub fn with_kernel(runtime: Runtime, kernel: Option<crate::kernel::Kernel>) -> Arc<Context> {
        let seed =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1;
        let local = runtime.ingress.or(runtime.egress).map(|a| a.ip()).filter(|ip| !ip.is_unspecified());
        Arc::new(Context {
            runtime: Arc::new(RwLock::new(Arc::new(runtime))),
            clients: Clients::from(local),
            metrics: Metrics::default(),
            kernel,
            local,
            random: AtomicU64::new(seed),
            idle: crate::h1::Idle::default(),
            lean: std::sync::atomic::AtomicBool::new(true),
            max_buffered: std::sync::atomic::AtomicUsize::new(MAX_BUFFERED),
        })
    }

    /// The address upstream connections leave from.
    pub(crate) fn local(&self) -> Option<std::net::IpAddr> {
        self.local
    }

    /// Upstream connections in the lean path's idle pool (held by no client connection).
    pub fn idle_upstreams(&self) -> usize {
        self.idle.count()
    }

    pub fn current(&self) -> Option<Arc<Runtime>> {
        self.runtime.read().ok().map(|r| r.clone())
    }

    /// Swaps in a new configuration atomically: requests in flight finish on the one they started
    /// with. Idle upstream connections to addresses the new one no longer names are closed.
    pub fn install(&self, runtime: Runtime) {
        let keep: std::collections::HashSet<SocketAddr> =
            runtime.upstreams.values().flat_map(|u| u.endpoints.iter().copied()).collect();
        if let Ok(mut current) = self.runtime.write() {
            *current = Arc::new(runtime);
        }
        self.idle.keep_only(&keep);
    }

    /// Uniform in [0, 1): xorshift, good enough for percentages of requests.
    fn chance(&self) -> f64 {
        let mut x = self.random.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.random.store(x, Ordering::Relaxed);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn full(text: impl Into<Bytes>) -> Body {
    Full::new(text.into()).map_err(|never| match never {}).boxed()
}

fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// An answer the proxy gives itself: a policy's refusal, or an upstream's failure.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub status: StatusCode,
    /// The grpc-status a gRPC caller gets instead.
    pub grpc_status: u8,
    pub message: String,
}

impl Refusal {
    fn new(status: StatusCode, grpc_status: u8, message: impl Into<String>) -> Refusal {
        Refusal { status, grpc_status, message: message.into() }
    }

    /// An HTTP status with a short text naming the policy, or for gRPC a trailers-only response
    /// with the matching grpc-status.
    fn response(self, grpc: bool) -> Response<Body> {
        let mut response = if grpc {
            let mut r = Response::new(full(Bytes::new()));
            r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/grpc"));
            r.headers_mut().insert("grpc-status", http::HeaderValue::from(u16::from(self.grpc_status)));
            if let Ok(v) = http::HeaderValue::from_str(&self.message) {
                r.headers_mut().insert("grpc-message", v);
            }
            r
        } else {
            let mut r = Response::new(full(format!("{}\n", self.message)));
            *r.status_mut() = self.status;
            r.headers_mut()
                .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
            r
        };
        response.headers_mut().insert("x-adm-refused", http::HeaderValue::from_static("1"));
        response
    }

    /// The same HTTP answer as HTTP/1.1 bytes (the lean path never carries gRPC).
    pub(crate) fn write_h1(&self, out: &mut Vec<u8>, close: bool) {
        use std::io::Write;
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\nx-adm-refused: 1\r\ncontent-length: {}\r\n{}\r\n{}\n",
            self.status.as_u16(),
            self.status.canonical_reason().unwrap_or(""),
            self.message.len() + 1,
            if close { "connection: close\r\n" } else { "" },
            self.message
        );
    }
}

/// The method a request calls: the last segment of its path (`/hotel.Search/Nearby` → `Nearby`).
pub fn method_of(uri: &http::Uri) -> String {
    uri.path().rsplit('/').find(|s| !s.is_empty()).unwrap_or("").to_string()
}

/// The service a request is for, from its authority (`reviews:9080` → `reviews`).
fn authority_service(parts: &http::request::Parts) -> Option<String> {
    let host = parts.uri.authority().map(|a| a.host().to_string()).or_else(|| {
        parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| h.split(':').next().unwrap_or(h).to_string())
    })?;
    Some(host.split('.').next().unwrap_or(&host).to_string())
}

/// Where a connection came from.
#[derive(Debug)]
pub struct Origin {
    /// The peer's address.
    pub peer: SocketAddr,
    /// What the eBPF data plane knows of it, when it is active.
    pub kernel: Option<crate::kernel::Caller>,
    /// HTTP/1.1 upstream connections of this client connection's own, by upstream address (at
    /// most `AFFINE_MAX`): its requests come one at a time, so they need no shared pool.
    affinity: tokio::sync::Mutex<Vec<Affine>>,
    /// Requests seen on the connection: a connection's first request goes through the shared
    /// pool (a client that sends one request per connection must not cost an upstream connect).
    requests: AtomicU64,
}

#[derive(Debug)]
struct Affine {
    addr: SocketAddr,
    sender: hyper::client::conn::http1::SendRequest<Body>,
}

impl Origin {
    pub fn new(peer: SocketAddr, kernel: Option<crate::kernel::Caller>) -> Origin {
        Origin { peer, kernel, affinity: tokio::sync::Mutex::new(Vec::new()), requests: AtomicU64::new(0) }
    }

    /// The sending service: the kernel's word when the data plane is active (a process outside
    /// every service cgroup is `external`, whatever address it binds), else the peer address
    /// through the endpoint table. Never a header.
    fn source<'a>(&'a self, rt: &'a Runtime) -> &'a str {
        match &self.kernel {
            Some(k) => k.service.as_deref().unwrap_or("external"),
            None => rt.peers.get(&self.peer.ip()).map_or("external", String::as_str),
        }
    }

    /// The service a steered connect was going to, by its original destination.
    fn destination(&self, rt: &Runtime) -> Option<Result<String, String>> {
        let dst = self.kernel.as_ref()?.destination?;
        let service = rt.upstreams.iter().find(|(_, u)| u.endpoints.contains(&SocketAddr::V4(dst))).map(|(s, _)| s);
        Some(service.cloned().ok_or_else(|| dst.to_string()))
    }
}

/// Upstream connections a client connection keeps for itself (one per upstream replica it used).
const AFFINE_MAX: usize = 4;

/// What became of a request given to the client connection's own upstream connection.
enum Affined {
    /// The upstream answered.
    Answered(Response<Incoming>),
    /// The request was sent and the exchange failed.
    Failed,
    /// No connection to the upstream could be opened.
    Refused,
    /// The connection is in use (an HTTP/2 client's concurrent streams): the shared pool serves.
    Busy(Request<Body>),
}

/// The request in absolute form (`http://addr/path`): what the shared pool needs to know where
/// to connect.
fn absolute(mut request: Request<Body>, addr: SocketAddr) -> Request<Body> {
    if request.uri().authority().is_none() {
        let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
        if let Ok(uri) = format!("http://{addr}{path}").parse() {
            *request.uri_mut() = uri;
        }
    }
    request
}

/// A request in origin form names its host in `host`; one that came without gets the upstream's
/// address.
fn default_host(request: &mut Request<Body>, addr: SocketAddr) {
    if !request.headers().contains_key(http::header::HOST) {
        if let Ok(host) = addr.to_string().parse() {
            request.headers_mut().insert(http::header::HOST, host);
        }
    }
}

/// Opens the client connection's own connection to `addr`, from the ADM's address.
async fn open_affine(ctx: &Context, addr: SocketAddr) -> Option<Affine> {
    let stream = connect(addr, ctx.local).await.ok()?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.ok()?;
    // With upgrades: `tunnel` joins a 101's connection to its client's.
    tokio::spawn(conn.with_upgrades());
    Some(Affine { addr, sender })
}

/// Sends an HTTP/1.1 request to `addr` on the client connection's own upstream connection,
/// opened on first use and again when the upstream closed it: an HTTP/1.1 client's requests come
/// one at a time, so they need no shared pool. A request the old connection could not take (it
/// closed meanwhile) goes once more on a fresh one.
async fn send_affine(ctx: &Context, origin: &Origin, addr: SocketAddr, mut request: Request<Body>) -> Affined {
    let first = origin.requests.fetch_add(1, Ordering::Relaxed) == 0;
    let pooled = |request: Request<Body>| Affined::Busy(absolute(request, addr));
    let Ok(mut slots) = origin.affinity.try_lock() else { return pooled(request) };
    let found = slots.iter().position(|a| a.addr == addr && !a.sender.is_closed());
    // A client's first request goes to the shared pool, which needs the absolute form; `OPTIONS *`
    // has none, so it opens the client connection's own.
    if found.is_none() && first && request.uri() != "*" {
        return pooled(request);
    }
    default_host(&mut request, addr);
    slots.retain(|a| !a.sender.is_closed());
    let mut index = slots.iter().position(|a| a.addr == addr);
    for fresh in [false, true] {
        let i = match index {
            Some(i) if !fresh => i,
            _ => {
                if let Some(i) = index.take() {
                    slots.swap_remove(i);
                }
                let Some(a) = open_affine(ctx, addr).await else { return Affined::Refused };
                if slots.len() >= AFFINE_MAX {
                    slots.remove(0);
                }
                slots.push(a);
                slots.len() - 1
            }
        };
        index = Some(i);
        let sender = &mut slots[i].sender;
        if sender.ready().await.is_err() {
            continue;
        }
        match sender.try_send_request(request).await {
            Ok(response) => return Affined::Answered(response),
            Err(mut e) => match e.take_message() {
                Some(unsent) if !fresh => request = unsent,
                _ => {
                    slots.swap_remove(i);
                    return Affined::Failed;
                }
            },
        }
    }
    Affined::Failed
}

/// What the chain decided for a request.
#[expect(clippy::large_enum_variant, reason = "made once per request and moved once: a box would cost an allocation")]
pub(crate) enum Admit<'rt> {
    /// Forward it, as `Admitted` says.
    Go(Admitted<'rt>),
    /// Answer it with this refusal.
    Refused(Refusal),
    /// The lean HTTP/1.1 path cannot forward it (a retry or mirror buffers the body, or the
    /// upstream speaks gRPC): hyper serves it. Nothing of the chain has run yet.
    Defer,
}

/// A request the chain let through, and what the forwarding must do.
pub(crate) struct Admitted<'rt> {
    pub from: String,
    pub to: String,
    /// The sending service (the access log's and ring hash's key).
    pub source: String,
    pub method: String,
    pub started: Instant,
    pub timeout: Option<Duration>,
    log_sample: Option<(String, f64)>,
    plan: Plan<'rt>,
    pub target: Target<'rt>,
    /// The circuit breaker's pending slot, released when the request is done.
    _pending: Option<Pending>,
}

impl Admitted<'_> {
    /// The endpoint for this attempt, with its in-flight counter; or the refusal when every
    /// endpoint is ejected.
    pub(crate) fn endpoint(
        &self,
        ctx: &Context,
        path: &str,
        grpc: bool,
    ) -> Result<(SocketAddr, Protocol, Option<&std::sync::atomic::AtomicUsize>), Refusal> {
        match &self.target {
            Target::Upstream(u) => {
                let breaker = self.plan.breaker.as_ref().map(|(_, b)| b.as_ref());
                match pick(ctx, u, self.plan.algorithm, breaker, (&self.source, path)) {
                    Some(i) => Ok((u.endpoints[i], u.protocol, Some(&u.in_flight[i]))),
                    None => Err(Refusal::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        14,
                        format!("every endpoint of `{}` is ejected by the circuit breaker", self.to),
                    )),
                }
            }
            Target::Fixed(addr) => Ok((*addr, if grpc { Protocol::Grpc } else { Protocol::Http }, None)),
        }
    }

    /// Tells the circuit breaker how an attempt at `addr` ended.
    pub(crate) fn record(&self, addr: SocketAddr, status: StatusCode) {
        if let Some((_, b)) = &self.plan.breaker {
            b.record(addr, status.is_server_error());
        }
    }

    /// The failure of an attempt that got no response: 504 when it timed out, 503 when the
    /// connection was refused, 502 otherwise.
    pub(crate) fn failure(&self, status: StatusCode) -> Refusal {
        let why = match status {
            StatusCode::GATEWAY_TIMEOUT => "did not answer in time",
            StatusCode::SERVICE_UNAVAILABLE => "refused the connection or did not accept it in time",
            _ => "sent a bad response",
        };
        let grpc_status = if status == StatusCode::GATEWAY_TIMEOUT { 4 } else { 14 };
        Refusal::new(status, grpc_status, format!("`{}` {why}", self.to))
    }

    /// Records an attempt at `addr` that got no response (`status` says why: 504 when the
    /// timeout policy ran out) and gives the client's answer.
    pub(crate) fn failed(&self, addr: SocketAddr, status: StatusCode) -> Refusal {
        self.record(addr, status);
        match (status, self.timeout) {
            (StatusCode::GATEWAY_TIMEOUT, Some(t)) => self.timed_out(t),
            _ => self.failure(status),
        }
    }

    /// The refusal when the request's timeout policy ran out.
    pub(crate) fn timed_out(&self, after: Duration) -> Refusal {
        Refusal::new(
            StatusCode::GATEWAY_TIMEOUT,
            4,
            format!("`{}` did not answer within {} ms", self.to, after.as_millis()),
        )
    }

    /// Records the request's duration (to its response's head) and writes its access-log line.
    pub(crate) fn finish(&self, ctx: &Context, status: StatusCode) {
        ctx.metrics.observe(self.started.elapsed());
        if let Some((policy, sample)) = &self.log_sample {
            if ctx.chance() < *sample {
                use std::io::Write;
                // A closed stdout loses the line, never the request.
                let _ = writeln!(
                    std::io::stdout().lock(),
                    "{{\"policy\":\"{policy}\",\"from\":\"{}\",\"to\":\"{}\",\"method\":\"{}\",\"status\":{},\"duration_us\":{}}}",
                    self.from,
                    self.to,
                    self.method,
                    status.as_u16(),
                    self.started.elapsed().as_micros()
                );
            }
        }
    }
}

/// Runs the policy chain of a request (its head is `parts`) that arrived on a listener of the
/// given direction from `origin`: the one place where policies act, whichever path serves the
/// request. Header policies change `parts`. With `lean`, a request that needs what only the
/// hyper path does is deferred before any policy acts.
pub(crate) async fn admit<'rt>(
    ctx: &Context,
    rt: &'rt Runtime,
    direction: Direction,
    origin: &Origin,
    parts: &mut http::request::Parts,
    lean: bool,
) -> Admit<'rt> {
    let refused = |status, grpc_status, message: String| {
        ctx.metrics.refused.fetch_add(1, Ordering::Relaxed);
        Admit::Refused(Refusal::new(status, grpc_status, message))
    };
    let started = Instant::now();
    let source: &str = origin.source(rt);
    let (from, to) = match direction {
        Direction::Ingress => (source.to_string(), rt.service.clone()),
        // A connect the kernel steered here goes where the caller connected, whatever its Host says.
        Direction::Egress => match origin.destination(rt) {
            Some(Ok(s)) => (rt.service.clone(), s),
            Some(Err(dst)) => {
                return Admit::Refused(Refusal::new(
                    StatusCode::NOT_FOUND,
                    5,
                    format!("no upstream service at `{dst}`"),
                ))
            }
            None => match authority_service(parts) {
                Some(s) if rt.upstreams.contains_key(&s) || rt.egress_routes.contains_key(&s) => {
                    (rt.service.clone(), s)
                }
                Some(s) => {
                    return Admit::Refused(Refusal::new(StatusCode::NOT_FOUND, 5, format!("unknown destination `{s}`")))
                }
                None => {
                    return Admit::Refused(Refusal::new(
                        StatusCode::BAD_REQUEST,
                        3,
                        "the request names no destination (Host)",
                    ))
                }
            },
        },
    };
    // With the data plane, an egress listener serves its own service's calls only: another
    // process cannot borrow the service's egress policies, nor its identity downstream.
    if direction == Direction::Egress && origin.kernel.is_some() && source != rt.service {
        return refused(
            StatusCode::FORBIDDEN,
            7,
            format!("the egress ADM of `{}` serves its calls only, not `{source}`'s", rt.service),
        );
    }
    let route = rt.route(direction, &from, &to);
    // The ingress listener serves the calls whose policies run here; anything else reaching it is
    // a call that no declaration routes through this ADM, and is refused rather than let by.
    if direction == Direction::Ingress && route.is_none() {
        return refused(
            StatusCode::FORBIDDEN,
            7,
            format!("no declared call `{from} -> {to}` is routed through this ADM"),
        );
    }
    let method = method_of(&parts.uri);
    let chain = route.and_then(|r| r.chain(&method));
    // Without a route, straight to the destination's endpoints.
    let direct;
    let forward = match route {
        Some(r) => &r.forward,
        None => {
            direct = Forward::Service { service: to.clone() };
            &direct
        }
    };
    if lean {
        let buffers = chain
            .is_some_and(|c| c.steps.iter().any(|s| matches!(s.action, Action::Retry { .. } | Action::Mirror { .. })));
        let grpc_upstream = match forward {
            Forward::Service { service } => rt.upstreams.get(service).is_some_and(|u| u.protocol == Protocol::Grpc),
            _ => false,
        };
        if buffers || grpc_upstream {
            return Admit::Defer;
        }
    }
    let mut timeout: Option<Duration> = None;
    let mut log_sample: Option<(String, f64)> = None;
    let mut plan = Plan::default();
    for step in chain.iter().flat_map(|c| &c.steps) {
        let refused = |status, grpc_status, why: &str| {
            step.refused.fetch_add(1, Ordering::Relaxed);
            refused(status, grpc_status, format!("refused by policy `{}` ({}): {why}", step.policy, step.kind))
        };
        match &step.action {
            Action::Allow { from } if !from.iter().any(|f| f == source) => {
                return refused(StatusCode::FORBIDDEN, 7, &format!("`{source}` is not allowed"));
            }
            Action::Deny { from } if from.iter().any(|f| f == source) => {
                return refused(StatusCode::FORBIDDEN, 7, &format!("`{source}` is denied"));
            }
            Action::RequireHeader { name, value } => {
                let present = parts.headers.get(name).and_then(|v| v.to_str().ok());
                let ok = match (present, value) {
                    (Some(v), Some(want)) => v == want,
                    (Some(_), None) => true,
                    (None, _) => false,
                };
                if !ok {
                    return refused(StatusCode::FORBIDDEN, 7, &format!("header `{name}` missing or wrong"));
                }
            }
            Action::SetHeader { name, value } => {
                parts.headers.insert(name.clone(), value.clone());
            }
            Action::RemoveHeader { name } => {
                parts.headers.remove(name);
            }
            Action::RateLimit { bucket } => {
                if !bucket.take() {
                    return refused(StatusCode::TOO_MANY_REQUESTS, 8, "rate limit exceeded");
                }
            }
            Action::Timeout { after } => timeout = Some(timeout.map_or(*after, |t| t.min(*after))),
            Action::Fault { abort, status, delay, delay_fraction } => {
                if *delay_fraction > 0.0 && ctx.chance() < *delay_fraction {
                    tokio::time::sleep(*delay).await;
                }
                if *abort > 0.0 && ctx.chance() < *abort {
                    let code = StatusCode::from_u16(*status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                    return refused(code, 14, "fault injected");
                }
            }
            Action::AccessLog { sample } => log_sample = Some((step.policy.clone(), *sample)),
            Action::LoadBalance { algorithm } => plan.algorithm = Some(*algorithm),
            Action::CircuitBreaker { breaker } => plan.breaker = Some((step, breaker.clone())),
            Action::Retry { attempts, per_try_timeout, retry_on, budget } => {
                plan.retry = Some(Retry {
                    attempts: *attempts,
                    per_try: *per_try_timeout,
                    on: retry_on.clone(),
                    budget: budget.clone(),
                });
            }
            Action::Mirror { to, fraction } => plan.mirrors.push((to.clone(), *fraction)),
            Action::Allow { .. } | Action::Deny { .. } => {}
        }
        step.passed.fetch_add(1, Ordering::Relaxed);
    }
    let target = match forward {
        Forward::Service { service } => match rt.upstreams.get(service) {
            Some(u) => Target::Upstream(u),
            None => {
                return Admit::Refused(Refusal::new(StatusCode::NOT_FOUND, 5, format!("no endpoints for `{service}`")))
            }
        },
        Forward::Adm { endpoint, .. } => match format!("{}:{}", endpoint.address, endpoint.port).parse() {
            Ok(addr) => Target::Fixed(addr),
            Err(_) => return Admit::Refused(Refusal::new(StatusCode::BAD_GATEWAY, 14, "invalid ADM endpoint")),
        },
        Forward::External => {
            match parts.headers.get(http::header::HOST).and_then(|h| h.to_str().ok()).and_then(resolve) {
                Some(addr) => Target::Fixed(addr),
                None => {
                    return Admit::Refused(Refusal::new(
                        StatusCode::BAD_REQUEST,
                        3,
                        "the request names no reachable destination (Host)",
                    ))
                }
            }
        }
    };
    // At most `max_pending` requests wait on a circuit breaker's unit.
    let pending = match &plan.breaker {
        Some((step, b)) => {
            if b.pending.fetch_add(1, Ordering::AcqRel) >= b.max_pending {
                b.pending.fetch_sub(1, Ordering::AcqRel);
                step.refused.fetch_add(1, Ordering::Relaxed);
                return refused(
                    StatusCode::SERVICE_UNAVAILABLE,
                    14,
                    format!("refused by policy `{}` (circuit_breaker): too many pending requests", step.policy),
                );
            }
            Some(Pending(b.clone()))
        }
        None => None,
    };
    Admit::Go(Admitted {
        from,
        to,
        source: source.to_string(),
        method,
        started,
        timeout,
        log_sample,
        plan,
        target,
        _pending: pending,
    })
}

/// Handles one request that arrived on a listener of the given direction from `origin`: the
/// hyper path, for HTTP/2, gRPC, upgrades and whatever the lean HTTP/1.1 path defers.
pub async fn handle(
    ctx: Arc<Context>,
    direction: Direction,
    origin: Arc<Origin>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    if crate::h2c::wants_upgrade(&req) {
        return Ok(upgrade(ctx, direction, origin, req).await);
    }
    ctx.metrics.requests.fetch_add(1, Ordering::Relaxed);
    let grpc = is_grpc(req.headers());
    let Some(rt) = ctx.current() else {
        return Ok(Refusal::new(StatusCode::SERVICE_UNAVAILABLE, 14, "no configuration").response(grpc));
    };
    let mut req = req;
    // An HTTP/1.1 upgrade other than h2c (WebSocket and the like): the client's side of it, to
    // join to the upstream's once both have switched.
    let upgrade = upgrade_protocol(&req).map(|protocol| (protocol, hyper::upgrade::on(&mut req)));
    let (mut parts, body) = req.into_parts();
    let admitted = match admit(&ctx, &rt, direction, &origin, &mut parts, false).await {
        Admit::Go(a) => a,
        Admit::Refused(r) => return Ok(r.response(grpc)),
        // Only the lean path is ever deferred (`lean` is false here).
        Admit::Defer => {
            return Ok(Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, 13, "no path serves this request").response(grpc))
        }
    };
    let forwarded = match upgrade {
        Some((protocol, client)) if !grpc => tunnel(&ctx, &admitted, parts, body, protocol, client).await,
        _ => forward(&ctx, &rt, &origin, &admitted, parts, body, grpc).await,
    };
    let response = match forwarded {
        Ok(r) => r,
        Err(refusal) => {
            ctx.metrics.upstream_errors.fetch_add(1, Ordering::Relaxed);
            refusal.response(grpc)
        }
    };
    admitted.finish(&ctx, response.status());
    Ok(response)
}

/// Forwards an admitted request through hyper: mirrors, retries within their budget, the
/// timeout policy, and the load balancer's choice of endpoint for each attempt.
async fn forward(
    ctx: &Context,
    rt: &Runtime,
    origin: &Origin,
    admitted: &Admitted<'_>,
    mut parts: http::request::Parts,
    body: Incoming,
    grpc: bool,
) -> Result<Response<Body>, Refusal> {
    let plan = &admitted.plan;
    // Once for every attempt and mirror: they all carry these headers.
    crate::h2c::strip_hop_by_hop(&mut parts.headers);
    // A retry or a mirror needs the body again: it is buffered, up to a bound.
    let (buffered, mut streaming) = if plan.retry.is_some() || !plan.mirrors.is_empty() {
        let limit = ctx.max_buffered.load(Ordering::Relaxed);
        match http_body_util::Limited::new(body, limit).collect().await {
            Ok(b) => (Some(b.to_bytes()), None),
            Err(_) => {
                return Err(Refusal::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    8,
                    format!("the body is over {limit} bytes, the most a retry or mirror buffers (admd --max-buffered)"),
                ));
            }
        }
    } else {
        (None, Some(body.boxed()))
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    for (services, fraction) in &plan.mirrors {
        if ctx.chance() >= *fraction {
            continue;
        }
        for service in services {
            let Some(u) = rt.upstreams.get(service) else { continue };
            let Some(addr) = u.endpoints.first().copied() else { continue };
            let Some(request) = build(
                &parts,
                &path,
                addr,
                u.protocol,
                buffered.clone().map(full).unwrap_or_else(|| full(Bytes::new())),
            ) else {
                continue;
            };
            // Mirrors go through the shared pool.
            let request = absolute(request, addr);
            let client =
                if u.protocol == Protocol::Grpc { ctx.clients.http2.clone() } else { ctx.clients.http1.clone() };
            // Fire and forget: a mirror never delays or fails the request.
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(30), client.request(request)).await;
            });
        }
    }
    let attempts = plan.retry.as_ref().map_or(1, |r| 1 + r.attempts);
    if let Some(r) = &plan.retry {
        r.budget.earn();
    }
    let exchange = async {
        let mut last = None;
        for attempt in 0..attempts {
            let (addr, protocol, slot) = admitted.endpoint(ctx, &path, grpc)?;
            let body = match (&buffered, streaming.take()) {
                (Some(b), _) => full(b.clone()),
                (None, Some(s)) => s,
                (None, None) => break,
            };
            let Some(request) = build(&parts, &path, addr, protocol, body) else {
                return Err(Refusal::new(StatusCode::BAD_REQUEST, 3, "invalid request target"));
            };
            let client = if protocol == Protocol::Grpc { &ctx.clients.http2 } else { &ctx.clients.http1 };
            if let Some(s) = slot {
                s.fetch_add(1, Ordering::Relaxed);
            }
            // Ok(response), or Err(whether the connection was refused).
            let call = async {
                let request = if protocol == Protocol::Http {
                    match send_affine(ctx, origin, addr, request).await {
                        Affined::Answered(r) => return Ok(r),
                        Affined::Failed => return Err(false),
                        Affined::Refused => return Err(true),
                        Affined::Busy(request) => request,
                    }
                } else {
                    request
                };
                client.request(request).await.map_err(|e| e.is_connect())
            };
            let outcome = match &plan.retry {
                Some(r) => tokio::time::timeout(r.per_try, call).await.map_err(|_| ()),
                None => Ok(call.await),
            };
            if let Some(s) = slot {
                s.fetch_sub(1, Ordering::Relaxed);
            }
            let (status, response) = match outcome {
                Ok(Ok(resp)) => (resp.status(), Some(resp)),
                Ok(Err(refused)) => {
                    (if refused { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::BAD_GATEWAY }, None)
                }
                Err(()) => (StatusCode::GATEWAY_TIMEOUT, None),
            };
            admitted.record(addr, status);
            let retryable = plan.retry.as_ref().is_some_and(|r| r.on.contains(&status.as_u16()));
            if retryable && attempt + 1 < attempts && plan.retry.as_ref().is_some_and(|r| r.budget.spend()) {
                last = Some(status);
                continue;
            }
            return match response {
                Some(mut resp) => {
                    crate::h2c::strip_hop_by_hop(resp.headers_mut());
                    Ok(resp.map(|b| b.boxed()))
                }
                None => Err(admitted.failure(status)),
            };
        }
        Err(Refusal::new(last.unwrap_or(StatusCode::BAD_GATEWAY), 14, format!("`{}` failed", admitted.to)))
    };
    match admitted.timeout {
        Some(t) => tokio::time::timeout(t, exchange).await.unwrap_or_else(|_| Err(admitted.timed_out(t))),
        None => exchange.await,
    }
}

/// The protocol an HTTP/1.1 request asks to switch to, when `connection` names the upgrade
/// (RFC 9110 §7.8).
fn upgrade_protocol<B>(req: &Request<B>) -> Option<http::HeaderValue> {
    // Every request of hyper's path passes here: the cheap test first.
    let protocol = req.headers().get(http::header::UPGRADE)?;
    let named = crate::h2c::has_token(req.headers(), http::header::CONNECTION, "upgrade");
    (req.version() == http::Version::HTTP_11 && named).then(|| protocol.clone())
}

/// Forwards an admitted upgrade request on a connection of its own; after the upstream's 101,
/// bytes flow both ways between the two switched connections until both sides close. Any other
/// answer is passed back as it came.
async fn tunnel(
    ctx: &Context,
    admitted: &Admitted<'_>,
    mut parts: http::request::Parts,
    body: Incoming,
    protocol: http::HeaderValue,
    client: hyper::upgrade::OnUpgrade,
) -> Result<Response<Body>, Refusal> {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let (addr, _, slot) = admitted.endpoint(ctx, &path, false)?;
    crate::h2c::strip_hop_by_hop(&mut parts.headers);
    parts.headers.insert(http::header::CONNECTION, http::HeaderValue::from_static("upgrade"));
    parts.headers.insert(http::header::UPGRADE, protocol);
    let Some(mut request) = build(&parts, &path, addr, Protocol::Http, body.boxed()) else {
        return Err(Refusal::new(StatusCode::BAD_REQUEST, 3, "invalid request target"));
    };
    default_host(&mut request, addr);
    if let Some(s) = slot {
        s.fetch_add(1, Ordering::Relaxed);
    }
    let exchange = async {
        let mut upstream = open_affine(ctx, addr).await.ok_or(StatusCode::SERVICE_UNAVAILABLE)?;
        upstream.sender.send_request(request).await.map_err(|_| StatusCode::BAD_GATEWAY)
    };
    let outcome = match admitted.timeout {
        Some(t) => tokio::time::timeout(t, exchange).await.unwrap_or(Err(StatusCode::GATEWAY_TIMEOUT)),
        None => exchange.await,
    };
    if let Some(s) = slot {
        s.fetch_sub(1, Ordering::Relaxed);
    }
    let mut response = outcome.map_err(|status| admitted.failed(addr, status))?;
    admitted.record(addr, response.status());
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let upstream = hyper::upgrade::on(&mut response);
        tokio::spawn(async move {
            let (Ok(client), Ok(upstream)) = (client.await, upstream.await) else { return };
            let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(client), &mut TokioIo::new(upstream)).await;
        });
    }
    Ok(response.map(BodyExt::boxed))
}

/// Answers an `Upgrade: h2c` request with 101 and serves the connection as HTTP/2 from then on,
/// the request itself as its stream 1 (see `h2c.rs`).
/// Boxed, and `Send` by its signature: the HTTP/2 connection it starts calls `handle` again.
fn upgrade(
    ctx: Arc<Context>,
    direction: Direction,
    origin: Arc<Origin>,
    mut req: Request<Incoming>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response<Body>> + Send>> {
    Box::pin(async move {
        let pending = hyper::upgrade::on(&mut req);
        let (parts, body) = req.into_parts();
        let body = match http_body_util::Limited::new(body, crate::h2c::MAX_BODY as usize).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return Refusal::new(StatusCode::BAD_REQUEST, 3, "the upgrade request's body is incomplete")
                    .response(false)
            }
        };
        let first = crate::h2c::stream_one(&parts, &body);
        tokio::spawn(async move {
            let Ok(upgraded) = pending.await else { return };
            let mut io = TokioIo::new(upgraded);
            let start = crate::h2c::client_start(&mut io, first);
            let Ok(Ok(prefix)) = tokio::time::timeout(limits::HEADER_READ_TIMEOUT, start).await else { return };
            let io = TokioIo::new(crate::h2c::Prefixed::new(prefix, io));
            type Handled =
                std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response<Body>, Infallible>> + Send>>;
            let service = hyper::service::service_fn(move |req| -> Handled {
                Box::pin(handle(ctx.clone(), direction, origin.clone(), req))
            });
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .timer(hyper_util::rt::TokioTimer::new())
                .serve_connection(io, service)
                .await;
        });
        let mut r = Response::new(full(Bytes::new()));
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        r.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("Upgrade"));
        r.headers_mut().insert(http::header::UPGRADE, http::HeaderValue::from_static("h2c"));
        r
    })
}

/// The most a retry or a mirror buffers of a request body, unless `admd --max-buffered` says.
pub const MAX_BUFFERED: usize = 1 << 20;

/// What the chain asks of the forwarding.
#[derive(Default)]
struct Plan<'a> {
    algorithm: Option<Algorithm>,
    breaker: Option<(&'a crate::config::Step, Arc<Breaker>)>,
    retry: Option<Retry>,
    mirrors: Vec<(Vec<String>, f64)>,
}

struct Retry {
    attempts: u32,
    per_try: Duration,
    on: Vec<u16>,
    budget: Arc<RetryBudget>,
}

/// Where an admitted request goes: a service's endpoints, or one address (an ADM, or an
/// external host); to a fixed address a request travels in its own protocol.
pub(crate) enum Target<'a> {
    Upstream(&'a Upstream),
    Fixed(SocketAddr),
}

/// Releases a circuit breaker's pending slot.
struct Pending(Arc<Breaker>);

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

fn resolve(host: &str) -> Option<SocketAddr> {
    use std::net::ToSocketAddrs;
    let with_port = if host.contains(':') { host.to_string() } else { format!("{host}:80") };
    with_port.to_socket_addrs().ok()?.next()
}

fn hash(s: &str) -> u64 {
    // FNV-1a: stable across runs and processes.
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The endpoint for a request, skipping ejected ones.
fn pick(
    ctx: &Context,
    u: &Upstream,
    algorithm: Option<Algorithm>,
    breaker: Option<&Breaker>,
    key: (&str, &str),
) -> Option<usize> {
    let n = u.endpoints.len();
    let usable = |i: usize| breaker.is_none_or(|b| !b.ejected(u.endpoints[i]));
    let candidates: Vec<usize> = (0..n).filter(|i| usable(*i)).collect();
    if candidates.is_empty() {
        return None;
    }
    Some(match algorithm.unwrap_or(Algorithm::RoundRobin) {
        Algorithm::RoundRobin => candidates[u.next.fetch_add(1, Ordering::Relaxed) % candidates.len()],
        Algorithm::Random => candidates[(ctx.chance() * candidates.len() as f64) as usize % candidates.len()],
        Algorithm::LeastRequest => {
            // The less loaded of two random choices (power of two choices).
            let a = candidates[(ctx.chance() * candidates.len() as f64) as usize % candidates.len()];
            let b = candidates[(ctx.chance() * candidates.len() as f64) as usize % candidates.len()];
            if u.in_flight[b].load(Ordering::Relaxed) < u.in_flight[a].load(Ordering::Relaxed) {
                b
            } else {
                a
            }
        }
        Algorithm::RingHash => {
            // A ring of 64 points per endpoint; the request goes to the first point at or after
            // its key's hash, so most keys keep their endpoint when the set changes.
            let mut ring: Vec<(u64, usize)> = candidates
                .iter()
                .flat_map(|i| (0..64).map(move |v| (hash(&format!("{}#{v}", u.endpoints[*i])), *i)))
                .collect();
            ring.sort_unstable();
            let h = hash(key.0) ^ hash(key.1).rotate_left(17);
            ring.iter().find(|(p, _)| *p >= h).or(ring.first()).map_or(candidates[0], |(_, i)| *i)
        }
    })
}

/// The request to send to `addr`.
fn build(
    parts: &http::request::Parts,
    path: &str,
    addr: SocketAddr,
    protocol: Protocol,
    body: Body,
) -> Option<Request<Body>> {
    // HTTP/1.1 upstreams are asked on a connection of their own first (`send_affine`): the
    // origin form; the shared pool gets the absolute form.
    let uri = match protocol {
        Protocol::Http => {
            parts.uri.path_and_query().cloned().map_or_else(|| http::Uri::from_static("/"), http::Uri::from)
        }
        _ => format!("http://{addr}{path}").parse().ok()?,
    };
    let mut request = Request::builder()
        .method(parts.method.clone())
        .uri(uri)
        .version(if protocol == Protocol::Grpc { http::Version::HTTP_2 } else { http::Version::HTTP_11 })
        .body(body)
        .ok()?;
    *request.headers_mut() = parts.headers.clone();
    Some(request)
}

/// Limits that protect the proxy from clients.
pub mod limits {
    use std::time::Duration;

    /// Connections served at once per listener; more are closed at once.
    pub const MAX_CONNECTIONS: usize = 16_384;
    /// The most a request head may take (request line and headers): larger ones get 431.
    pub const MAX_HEAD_BYTES: usize = 64 * 1024;
    /// A client must send its whole request head within this time (slow clients are cut off).
    pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
    /// An upstream must accept a connection within this time (Envoy's default too): an address
    /// that drops connection attempts answers 503 after it, not after the kernel's two minutes
    /// of retries, and counts as a failure for a circuit breaker.
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
}

/// Connects to `addr` from `local` (when given), within [`limits::CONNECT_TIMEOUT`].
pub(crate) async fn connect(
    addr: SocketAddr,
    local: Option<std::net::IpAddr>,
) -> std::io::Result<tokio::net::TcpStream> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }?;
    if let Some(local) = local {
        socket.bind(SocketAddr::new(local, 0))?;
    }
    let stream = tokio::time::timeout(limits::CONNECT_TIMEOUT, socket.connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Serves one listener until `shutdown` resolves, then until its connections have finished the
/// requests they were serving (idle ones close at once).
pub async fn serve(
    ctx: Arc<Context>,
    direction: Direction,
    listener: tokio::net::TcpListener,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    serve_with(ctx, direction, listener, shutdown, limits::HEADER_READ_TIMEOUT).await;
}

/// [`serve`] with a chosen header read timeout (tests use a short one).
pub async fn serve_with(
    ctx: Arc<Context>,
    direction: Direction,
    listener: tokio::net::TcpListener,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    header_read_timeout: Duration,
) {
    let connections = Arc::new(tokio::sync::Semaphore::new(limits::MAX_CONNECTIONS));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                // Asked once per connection, at once: the kernel forgets a connection when it closes.
                let kernel = ctx.kernel.as_ref().map(|k| {
                    let local = stream.local_addr().unwrap_or(peer);
                    k.caller(peer, local)
                });
                let origin = Arc::new(Origin::new(peer, kernel));
                // Past the connection limit the connection is closed at once.
                let Ok(permit) = connections.clone().try_acquire_owned() else { continue };
                let ctx = ctx.clone();
                let mut shutdown = shutdown.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    // The lean path first; hyper serves what it hands over.
                    let (prefix, stream) = if ctx.lean.load(Ordering::Relaxed) {
                        match crate::h1::serve(&ctx, direction, &origin, stream, &shutdown, header_read_timeout).await {
                            crate::h1::Outcome::Done => return,
                            crate::h1::Outcome::Handoff(prefix, stream) => (prefix, stream),
                        }
                    } else {
                        (Bytes::new(), stream)
                    };
                    let service = hyper::service::service_fn(move |req| handle(ctx.clone(), direction, origin.clone(), req));
                    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    builder
                        .http1()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(header_read_timeout)
                        .max_buf_size(limits::MAX_HEAD_BYTES);
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(crate::h2c::Prefixed::new(prefix, stream)), service);
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        _ = shutdown.changed() => {
                            conn.as_mut().graceful_shutdown();
                            let _ = conn.await;
                        }
                    }
                });
            }
            _ = shutdown.changed() => {
                // Drain: every connection holds a permit until it ends; requests in flight finish.
                let _ = connections.acquire_many(limits::MAX_CONNECTIONS as u32).await;
                return;
            }
        }
    }
}
