//! The artifacts of `admc build`, as serde types: the compiler writes them, the runtime and the
//! eBPF loader read them. Every type refuses unknown fields, so a reader never silently ignores
//! something a newer writer meant. `docs/artifacts.md` documents them and `docs/schemas/` holds
//! their JSON Schemas; a test validates every example's output against those.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change to any artifact.
pub const SCHEMA_VERSION: u32 = 1;

/// A side of a call.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Ingress,
    Egress,
}

/// How ADMs are counted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AdmMode {
    /// One ADM per service handles both directions.
    PerService,
    /// Ingress and egress ADMs are counted apart.
    PerDirection,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ObjectiveValues {
    /// Sum of the ADM costs of the sites that host an ADM.
    pub adm_cost: f64,
    pub adms: usize,
    /// Requests per second passing through ADMs; a call counts once per ADM it traverses.
    pub traffic_rps: f64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PlanStatus {
    /// Whether the plan is proven optimal (both objectives, lexicographically).
    pub optimal: bool,
    /// When the time limit stopped the search: a lower bound on the ADM cost, and the relative gap
    /// `(adm_cost - bound) / adm_cost`.
    pub lower_bound_adm_cost: Option<f64>,
    pub gap: Option<f64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StaticBaseline {
    #[serde(flatten)]
    pub objective: ObjectiveValues,
    /// Rule-4 ordering constraints that the static placement breaks (policies that would run in
    /// an order other than the declared one).
    pub ordering_violations: usize,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Baselines {
    pub sidecar: ObjectiveValues,
    pub static_placement: StaticBaseline,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdmEntry {
    pub service: String,
    /// `None` in per-service mode.
    pub direction: Option<Direction>,
    /// The policies with a unit at this ADM.
    pub policies: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UnitPlan {
    /// What groups the unit: `call a -> b`, `calls into b`, `calls out of a`.
    pub unit: String,
    /// `a -> b`, in call order.
    pub calls: Vec<String>,
    pub legal_sides: Vec<Direction>,
    pub side: Direction,
    /// The services that run the unit on its side.
    pub hosts: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicyPlan {
    pub name: String,
    pub kind: String,
    pub units: Vec<UnitPlan>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SolverStats {
    pub backend: String,
    pub units: usize,
    pub fixed_units: usize,
    pub free_units: usize,
    pub forced_sites: usize,
    pub reduced_sites: usize,
    pub components: usize,
    pub largest_component: usize,
    pub enumerated_components: usize,
    pub ilp_components: usize,
}

/// `plan.json`
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PlanFile {
    pub schema_version: u32,
    pub app: Option<String>,
    pub mode: AdmMode,
    pub status: PlanStatus,
    pub objective: ObjectiveValues,
    pub baselines: Baselines,
    pub adms: Vec<AdmEntry>,
    pub policies: Vec<PolicyPlan>,
    pub solver: SolverStats,
}

/// An address and port to listen on or connect to.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub address: String,
    pub port: u16,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Listeners {
    /// In front of the service: requests to it that have policies at its ingress.
    pub ingress: Option<Endpoint>,
    /// For the service's outbound calls that have policies at its egress.
    pub egress: Option<Endpoint>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    pub service: String,
    pub protocol: String,
    /// One per replica.
    pub endpoints: Vec<Endpoint>,
}

/// One policy of a chain with its arguments in canonical units: durations `{"us": n}`, rates
/// `{"per_second": x}`, percents `{"fraction": x}`, sizes `{"bytes": n}`, services and groups
/// `{"service": name, "members": [service, …]}`; integers, booleans, strings, methods and enum
/// values as themselves.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicyStep {
    pub policy: String,
    pub kind: String,
    /// The placement unit the step belongs to (`call a -> b`, `calls into b`, `calls out of a`):
    /// steps with the same `policy` and `unit` share one state (a rate limit's bucket, a circuit
    /// breaker's counters), wherever they appear in the file.
    pub unit: String,
    pub args: BTreeMap<String, serde_json::Value>,
}

/// The chain for some methods of a call: `methods` lists them, or is `None` for every method not
/// listed by another chain of the route.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MethodChain {
    pub methods: Option<Vec<String>>,
    pub chain: Vec<PolicyStep>,
}

/// Where an ADM sends a request that its chain let through.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "to", rename_all = "snake_case", deny_unknown_fields)]
pub enum Forward {
    /// To one of the receiver's replicas (listed in `upstreams`).
    Service { service: String },
    /// To the receiver's ingress ADM, which runs the call's ingress policies (a `via_both` pair).
    Adm { service: String, endpoint: Endpoint },
    /// Out of the mesh, to the request's original destination.
    External,
}

/// What the ADM does on one call, on one side.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// The sender (`external` for traffic from outside the mesh).
    pub from: String,
    /// The receiver (`external` for traffic leaving the mesh).
    pub to: String,
    pub direction: Direction,
    pub chains: Vec<MethodChain>,
    pub forward: Forward,
}

/// A service that sends requests through this ADM, with the addresses its requests come from:
/// how the ADM knows a request's source without trusting anything the client sends.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    pub service: String,
    pub addresses: Vec<String>,
}

/// `adm/<service>.json`: the runtime configuration of one ADM.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdmConfig {
    pub schema_version: u32,
    pub service: String,
    pub listeners: Listeners,
    /// Every destination the ADM may forward to, with its replicas.
    pub upstreams: Vec<Upstream>,
    /// The senders of the calls the ADM handles; a request from any other address comes from
    /// outside the mesh.
    pub peers: Vec<Peer>,
    pub routes: Vec<Route>,
}

/// How traffic of one (sender, receiver) pair flows.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PairRoute {
    /// No policy on the call: straight to the receiver, bypassing every ADM.
    Direct,
    /// Through the sender's egress ADM, then straight to the receiver.
    ViaSender,
    /// Straight to the receiver's ingress ADM.
    ViaReceiver,
    /// Through both.
    ViaBoth,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServiceEntry {
    /// Dense id, the index of the service in this table.
    pub id: u32,
    pub name: String,
    pub port: u16,
    /// One endpoint per replica (the service's port on each replica's address).
    pub endpoints: Vec<Endpoint>,
    /// The ADM of the service, if it has one.
    pub adm: Option<Listeners>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PairEntry {
    pub from: String,
    pub to: String,
    pub route: PairRoute,
}

/// `ebpf/maps.json`: the seeds of the eBPF maps.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EbpfMaps {
    pub schema_version: u32,
    pub services: Vec<ServiceEntry>,
    /// Every declared call between two services of the mesh.
    pub pairs: Vec<PairEntry>,
}
