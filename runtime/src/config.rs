//! `adm/<service>.json` loaded, validated in full before anything listens, and turned into the
//! tables the proxy runs on. Every error names the field.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use adm_artifacts::{AdmConfig, Direction, Forward, PolicyStep, SCHEMA_VERSION};
use serde_json::Value;

/// A configuration error: the field (a JSON path) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn err(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError { field: field.into(), message: message.into() }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Grpc,
    Tcp,
}

#[derive(Debug)]
pub struct Upstream {
    pub protocol: Protocol,
    pub endpoints: Vec<SocketAddr>,
    /// Round-robin position.
    pub next: AtomicUsize,
    /// Requests in flight per endpoint (for `least_request`).
    pub in_flight: Vec<AtomicUsize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    RoundRobin,
    LeastRequest,
    Random,
    RingHash,
}

/// A circuit breaker's state, shared by every step of one policy unit.
#[derive(Debug)]
pub struct Breaker {
    pub max_pending: usize,
    pub consecutive_errors: u32,
    pub eject_for: Duration,
    pub pending: AtomicUsize,
    /// Per endpoint: consecutive errors, and when an ejection ends.
    pub endpoints: Mutex<HashMap<SocketAddr, (u32, Option<Instant>)>>,
}

impl Breaker {
    /// Whether an endpoint is ejected now.
    pub fn ejected(&self, e: SocketAddr) -> bool {
        self.endpoints
            .lock()
            .ok()
            .and_then(|m| m.get(&e).and_then(|(_, until)| *until))
            .is_some_and(|until| Instant::now() < until)
    }

    /// Records an outcome; enough consecutive errors eject the endpoint for `eject_for`.
    pub fn record(&self, e: SocketAddr, error: bool) {
        let Ok(mut m) = self.endpoints.lock() else { return };
        let entry = m.entry(e).or_insert((0, None));
        if error {
            entry.0 += 1;
            if entry.0 >= self.consecutive_errors {
                entry.1 = Some(Instant::now() + self.eject_for);
                entry.0 = 0;
            }
        } else {
            *entry = (0, None);
        }
    }
}

/// Bounds retries to a share of the requests, so that retries cannot multiply an outage: each
/// request earns a fifth of a retry, and at most ten are saved up.
#[derive(Debug)]
pub struct RetryBudget {
    tokens: Mutex<f64>,
}

impl RetryBudget {
    pub fn new() -> RetryBudget {
        RetryBudget { tokens: Mutex::new(10.0) }
    }

    pub fn earn(&self) {
        if let Ok(mut t) = self.tokens.lock() {
            *t = (*t + 0.2).min(10.0);
        }
    }

    pub fn spend(&self) -> bool {
        let Ok(mut t) = self.tokens.lock() else { return false };
        if *t >= 1.0 {
            *t -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget::new()
    }
}

/// A token bucket shared by every step of one policy unit.
#[derive(Debug)]
pub struct TokenBucket {
    pub per_second: f64,
    pub capacity: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    pub fn new(per_second: f64, burst: u64) -> TokenBucket {
        let capacity = 1.0 + burst as f64;
        TokenBucket { per_second, capacity, state: Mutex::new((capacity, Instant::now())) }
    }

    /// Takes a token if there is one.
    pub fn take(&self) -> bool {
        let Ok(mut state) = self.state.lock() else { return false };
        let now = Instant::now();
        let (tokens, last) = *state;
        let tokens = (tokens + now.duration_since(last).as_secs_f64() * self.per_second).min(self.capacity);
        if tokens >= 1.0 {
            *state = (tokens - 1.0, now);
            true
        } else {
            *state = (tokens, now);
            false
        }
    }
}

/// One policy of a chain, ready to run.
#[derive(Debug)]
pub enum Action {
    Allow { from: Vec<String> },
    Deny { from: Vec<String> },
    RequireHeader { name: http::HeaderName, value: Option<String> },
    SetHeader { name: http::HeaderName, value: http::HeaderValue },
    RemoveHeader { name: http::HeaderName },
    RateLimit { bucket: Arc<TokenBucket> },
    Timeout { after: Duration },
    Fault { abort: f64, status: u16, delay: Duration, delay_fraction: f64 },
    AccessLog { sample: f64 },
    LoadBalance { algorithm: Algorithm },
    CircuitBreaker { breaker: Arc<Breaker> },
    Retry { attempts: u32, per_try_timeout: Duration, retry_on: Vec<u16>, budget: Arc<RetryBudget> },
    Mirror { to: Vec<String>, fraction: f64 },
}

/// Shared states of policy units, by (policy, unit).
#[derive(Default)]
struct States {
    buckets: HashMap<(String, String), Arc<TokenBucket>>,
    breakers: HashMap<(String, String), Arc<Breaker>>,
    budgets: HashMap<(String, String), Arc<RetryBudget>>,
}

#[derive(Debug)]
pub struct Step {
    pub policy: String,
    pub kind: String,
    pub action: Action,
    /// Requests this step let through and refused (for `/metrics`).
    pub passed: std::sync::atomic::AtomicU64,
    pub refused: std::sync::atomic::AtomicU64,
}

#[derive(Debug)]
pub struct Chain {
    /// `None`: every method no other chain lists.
    pub methods: Option<Vec<String>>,
    pub steps: Vec<Step>,
}

#[derive(Debug)]
pub struct Route {
    pub chains: Vec<Chain>,
    pub forward: Forward,
}

impl Route {
    /// The chain for a method.
    pub fn chain(&self, method: &str) -> Option<&Chain> {
        self.chains
            .iter()
            .find(|c| c.methods.as_ref().is_some_and(|ms| ms.iter().any(|m| m == method)))
            .or_else(|| self.chains.iter().find(|c| c.methods.is_none()))
    }
}

/// Everything the proxy needs, built from one configuration file.
#[derive(Debug)]
pub struct Runtime {
    pub service: String,
    pub ingress: Option<SocketAddr>,
    pub egress: Option<SocketAddr>,
    pub upstreams: HashMap<String, Upstream>,
    /// Source identity: the address a request comes from → the service that sent it.
    pub peers: HashMap<IpAddr, String>,
    /// Ingress routes by sender (the receiver is this service).
    pub ingress_routes: HashMap<String, Route>,
    /// Egress routes by receiver (the sender is this service).
    pub egress_routes: HashMap<String, Route>,
}

impl Runtime {
    /// The route of a call through this ADM on one side.
    pub fn route(&self, direction: Direction, from: &str, to: &str) -> Option<&Route> {
        match direction {
            Direction::Ingress => self.ingress_routes.get(from).filter(|_| to == self.service),
            Direction::Egress => self.egress_routes.get(to).filter(|_| from == self.service),
        }
    }

    /// Every step of every route, for `/metrics`.
    pub fn steps(&self) -> impl Iterator<Item = &Step> {
        self.ingress_routes
            .values()
            .chain(self.egress_routes.values())
            .flat_map(|r| r.chains.iter())
            .flat_map(|c| c.steps.iter())
    }
}

fn endpoint(field: &str, e: &adm_artifacts::Endpoint) -> Result<SocketAddr, ConfigError> {
    let ip: IpAddr = e
        .address
        .parse()
        .map_err(|_| err(format!("{field}.address"), format!("`{}` is not an IP address", e.address)))?;
    if e.port == 0 {
        return Err(err(format!("{field}.port"), "port 0 is not a port"));
    }
    Ok(SocketAddr::new(ip, e.port))
}

/// Reads and validates a configuration file.
pub fn load(path: &std::path::Path) -> Result<Runtime, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| err(path.display().to_string(), format!("cannot read: {e}")))?;
    parse(&text)
}

/// Validates a configuration text.
pub fn parse(text: &str) -> Result<Runtime, ConfigError> {
    let config: AdmConfig = serde_json::from_str(text).map_err(|e| {
        let message = e.to_string();
        // serde names the offending field in its message ("unknown field `x`", "missing field `y`").
        err(format!("line {}, column {}", e.line(), e.column()), message)
    })?;
    build(config)
}

fn arg<'a>(step: &'a PolicyStep, field: &str, name: &str) -> Result<&'a Value, ConfigError> {
    step.args.get(name).ok_or_else(|| err(format!("{field}.args.{name}"), format!("`{}` needs `{name}`", step.kind)))
}

fn micros(v: &Value, field: &str) -> Result<Duration, ConfigError> {
    v.get("us")
        .and_then(Value::as_u64)
        .map(Duration::from_micros)
        .ok_or_else(|| err(field, "expected a duration `{\"us\": n}`"))
}

fn fraction(v: &Value, field: &str) -> Result<f64, ConfigError> {
    v.get("fraction")
        .and_then(Value::as_f64)
        .filter(|f| (0.0..=1.0).contains(f))
        .ok_or_else(|| err(field, "expected a percent `{\"fraction\": 0..1}`"))
}

fn string<'a>(v: &'a Value, field: &str) -> Result<&'a str, ConfigError> {
    v.as_str().ok_or_else(|| err(field, "expected a string"))
}

fn header_name(v: &Value, field: &str) -> Result<http::HeaderName, ConfigError> {
    let s = string(v, field)?;
    http::HeaderName::from_bytes(s.as_bytes()).map_err(|_| err(field, format!("`{s}` is not a header name")))
}

fn services(v: &Value, field: &str) -> Result<Vec<String>, ConfigError> {
    let list = v.as_array().ok_or_else(|| err(field, "expected a list of services"))?;
    let mut out = Vec::new();
    for (i, s) in list.iter().enumerate() {
        let members = s
            .get("members")
            .and_then(Value::as_array)
            .ok_or_else(|| err(format!("{field}[{i}]"), "expected `{\"service\", \"members\"}`"))?;
        for m in members {
            out.push(string(m, &format!("{field}[{i}].members"))?.to_string());
        }
    }
    Ok(out)
}

fn action(step: &PolicyStep, field: &str, states: &mut States) -> Result<Action, ConfigError> {
    let key = (step.policy.clone(), step.unit.clone());
    let a = |name: &str| arg(step, field, name);
    let f = |name: &str| format!("{field}.args.{name}");
    Ok(match step.kind.as_str() {
        "allow" => Action::Allow { from: services(a("from")?, &f("from"))? },
        "deny" => Action::Deny { from: services(a("from")?, &f("from"))? },
        "require_header" => {
            let value = string(a("value")?, &f("value"))?;
            Action::RequireHeader { name: header_name(a("name")?, &f("name"))?, value: (!value.is_empty()).then(|| value.to_string()) }
        }
        "set_header" => {
            let value = string(a("value")?, &f("value"))?;
            Action::SetHeader {
                name: header_name(a("name")?, &f("name"))?,
                value: http::HeaderValue::from_str(value).map_err(|_| err(f("value"), "not a valid header value"))?,
            }
        }
        "remove_header" => Action::RemoveHeader { name: header_name(a("name")?, &f("name"))? },
        "rate_limit" => {
            let per_second = a("limit")?.get("per_second").and_then(Value::as_f64).filter(|r| *r > 0.0).ok_or_else(|| err(f("limit"), "expected a rate `{\"per_second\": x}`"))?;
            let burst = a("burst")?.as_u64().ok_or_else(|| err(f("burst"), "expected an integer"))?;
            // One bucket per policy unit, shared by every route where the unit's steps appear.
            let bucket = states.buckets.entry(key).or_insert_with(|| Arc::new(TokenBucket::new(per_second, burst)));
            Action::RateLimit { bucket: bucket.clone() }
        }
        "timeout" => Action::Timeout { after: micros(a("after")?, &f("after"))? },
        "fault" => Action::Fault {
            abort: fraction(a("abort")?, &f("abort"))?,
            status: a("status")?.as_u64().filter(|s| (100..=599).contains(s)).ok_or_else(|| err(f("status"), "expected an HTTP status (100 to 599)"))? as u16,
            delay: micros(a("delay")?, &f("delay"))?,
            delay_fraction: fraction(a("delay_percent")?, &f("delay_percent"))?,
        },
        "access_log" => Action::AccessLog { sample: fraction(a("sample")?, &f("sample"))? },
        "load_balance" => Action::LoadBalance {
            algorithm: match string(a("algorithm")?, &f("algorithm"))? {
                "round_robin" => Algorithm::RoundRobin,
                "least_request" => Algorithm::LeastRequest,
                "random" => Algorithm::Random,
                "ring_hash" => Algorithm::RingHash,
                other => return Err(err(f("algorithm"), format!("unknown algorithm `{other}`"))),
            },
        },
        "circuit_breaker" => {
            let count = |name: &str| {
                a(name).and_then(|v| v.as_u64().filter(|n| *n > 0).ok_or_else(|| err(f(name), "expected a positive integer")))
            };
            let max_pending = count("max_pending")? as usize;
            let consecutive_errors = count("consecutive_errors")? as u32;
            let eject_for = micros(a("eject_for")?, &f("eject_for"))?;
            let breaker = states.breakers.entry(key).or_insert_with(|| {
                Arc::new(Breaker {
                    max_pending,
                    consecutive_errors,
                    eject_for,
                    pending: AtomicUsize::new(0),
                    endpoints: Mutex::new(HashMap::new()),
                })
            });
            Action::CircuitBreaker { breaker: breaker.clone() }
        }
        "retry" => {
            let attempts = a("attempts")?
                .as_u64()
                .filter(|n| (1..=10).contains(n))
                .ok_or_else(|| err(f("attempts"), "expected 1 to 10 attempts"))? as u32;
            let per_try_timeout = micros(a("per_try_timeout")?, &f("per_try_timeout"))?;
            let codes = a("retry_on")?.as_array().ok_or_else(|| err(f("retry_on"), "expected a list of statuses"))?;
            let retry_on = codes
                .iter()
                .map(|c| {
                    c.as_u64()
                        .filter(|s| (100..=599).contains(s))
                        .map(|s| s as u16)
                        .ok_or_else(|| err(f("retry_on"), "expected HTTP statuses"))
                })
                .collect::<Result<_, _>>()?;
            let budget = states.budgets.entry(key).or_default().clone();
            Action::Retry { attempts, per_try_timeout, retry_on, budget }
        }
        "mirror" => Action::Mirror {
            to: services(&Value::Array(vec![a("to")?.clone()]), &f("to"))?,
            fraction: fraction(a("percent")?, &f("percent"))?,
        },
        other => {
            return Err(err(
                format!("{field}.kind"),
                format!("kind `{other}` (policy `{}`) is not enforced by this version of admd; refusing the configuration rather than ignoring the policy", step.policy),
            ))
        }
    })
}

fn build(config: AdmConfig) -> Result<Runtime, ConfigError> {
    if config.schema_version != SCHEMA_VERSION {
        return Err(err(
            "schema_version",
            format!("this admd reads version {SCHEMA_VERSION}, not {}", config.schema_version),
        ));
    }
    let ingress = config.listeners.ingress.as_ref().map(|e| endpoint("listeners.ingress", e)).transpose()?;
    let egress = config.listeners.egress.as_ref().map(|e| endpoint("listeners.egress", e)).transpose()?;
    if ingress.is_none() && egress.is_none() {
        return Err(err("listeners", "an ADM needs an ingress or an egress listener"));
    }
    let mut upstreams = HashMap::new();
    for (i, u) in config.upstreams.iter().enumerate() {
        let field = format!("upstreams[{i}]");
        let protocol = match u.protocol.as_str() {
            "http" => Protocol::Http,
            "grpc" => Protocol::Grpc,
            "tcp" => Protocol::Tcp,
            other => return Err(err(format!("{field}.protocol"), format!("unknown protocol `{other}`"))),
        };
        if u.endpoints.is_empty() {
            return Err(err(format!("{field}.endpoints"), "an upstream needs at least one endpoint"));
        }
        let endpoints = u
            .endpoints
            .iter()
            .enumerate()
            .map(|(j, e)| endpoint(&format!("{field}.endpoints[{j}]"), e))
            .collect::<Result<_, _>>()?;
        let endpoints: Vec<SocketAddr> = endpoints;
        let in_flight = endpoints.iter().map(|_| AtomicUsize::new(0)).collect();
        upstreams.insert(u.service.clone(), Upstream { protocol, endpoints, next: AtomicUsize::new(0), in_flight });
    }
    let mut peers = HashMap::new();
    for (i, p) in config.peers.iter().enumerate() {
        for (j, a) in p.addresses.iter().enumerate() {
            let ip: IpAddr = a
                .parse()
                .map_err(|_| err(format!("peers[{i}].addresses[{j}]"), format!("`{a}` is not an IP address")))?;
            peers.insert(ip, p.service.clone());
        }
    }
    let mut states = States::default();
    let mut ingress_routes = HashMap::new();
    let mut egress_routes = HashMap::new();
    for (i, r) in config.routes.iter().enumerate() {
        let field = format!("routes[{i}]");
        match (&r.direction, ingress, egress) {
            (Direction::Ingress, None, _) => {
                return Err(err(format!("{field}.direction"), "an ingress route needs an ingress listener"))
            }
            (Direction::Egress, _, None) => {
                return Err(err(format!("{field}.direction"), "an egress route needs an egress listener"))
            }
            _ => {}
        }
        if let Forward::Service { service } = &r.forward {
            if !upstreams.contains_key(service) {
                return Err(err(format!("{field}.forward.service"), format!("`{service}` is not among the upstreams")));
            }
        }
        let mut chains = Vec::new();
        for (j, c) in r.chains.iter().enumerate() {
            let mut steps = Vec::new();
            for (k, s) in c.chain.iter().enumerate() {
                let step_field = format!("{field}.chains[{j}].chain[{k}]");
                steps.push(Step {
                    policy: s.policy.clone(),
                    kind: s.kind.clone(),
                    action: action(s, &step_field, &mut states)?,
                    passed: Default::default(),
                    refused: Default::default(),
                });
            }
            chains.push(Chain { methods: c.methods.clone(), steps });
        }
        let route = Route { chains, forward: r.forward.clone() };
        let duplicate = match r.direction {
            Direction::Ingress if r.to != config.service => {
                return Err(err(
                    format!("{field}.to"),
                    format!("an ingress route of `{}` must end at it", config.service),
                ));
            }
            Direction::Egress if r.from != config.service => {
                return Err(err(
                    format!("{field}.from"),
                    format!("an egress route of `{}` must start at it", config.service),
                ));
            }
            Direction::Ingress => ingress_routes.insert(r.from.clone(), route).is_some(),
            Direction::Egress => egress_routes.insert(r.to.clone(), route).is_some(),
        };
        if duplicate {
            return Err(err(field, format!("a second route for `{} -> {}`", r.from, r.to)));
        }
    }
    Ok(Runtime { service: config.service, ingress, egress, upstreams, peers, ingress_routes, egress_routes })
}
