//! The checked program: services, calls, kinds and policies with their meaning resolved.
//!
//! These types carry no source positions, so that a query whose result is one of them keeps its
//! value (and salsa keeps everything computed from it) when an edit only moves text around.
//! Diagnostics, which do need positions, are made by the per-file queries.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use adm_syntax::ast::{PercentLit, RateLit, Side, SmolStr};

/// A service of the mesh, by its index in [`CallGraph::services`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceIdx(pub u32);

/// One end of a call: a service, or the world outside the mesh.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Node {
    External,
    Service(ServiceIdx),
}

/// A call of the graph, by its index in [`CallGraph::calls`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallIdx(pub u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Http,
    Grpc,
    Tcp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
            Protocol::Tcp => "tcp",
        }
    }
}

/// Which traffic of a service crosses the edge of the mesh.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExternalTraffic {
    Ingress,
    Egress,
    Both,
}

impl ExternalTraffic {
    pub fn inbound(self) -> bool {
        matches!(self, ExternalTraffic::Ingress | ExternalTraffic::Both)
    }

    pub fn outbound(self) -> bool {
        matches!(self, ExternalTraffic::Egress | ExternalTraffic::Both)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServiceDef {
    pub name: SmolStr,
    pub protocol: Protocol,
    pub port: u16,
    pub external: Option<ExternalTraffic>,
    pub replicas: u32,
    /// What an ADM at this service costs the objective (default 1).
    pub adm_cost: u32,
}

/// One edge of the call graph, declared or implicit (the external edges of services marked
/// `external`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CallEdge {
    pub from: Node,
    pub to: Node,
    /// `None`: the call declares no methods, so it carries any method. Shared with the
    /// declaration it comes from.
    pub methods: Option<Arc<[SmolStr]>>,
    pub rate: RateLit,
    /// Whether a `call` item declares it (implicit external edges are not declared).
    pub declared: bool,
}

impl CallEdge {
    /// Whether the call can carry `method`.
    pub fn carries(&self, method: &str) -> bool {
        self.methods.as_ref().is_none_or(|ms| ms.iter().any(|m| m == method))
    }
}

/// The call graph of the program.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CallGraph {
    pub services: Vec<ServiceDef>,
    pub service_index: BTreeMap<SmolStr, ServiceIdx>,
    /// Each group with its member services (resolved, duplicates removed, in declaration order).
    pub groups: BTreeMap<SmolStr, Vec<ServiceIdx>>,
    /// Declared calls in declaration order, then the implicit external edges.
    pub calls: Vec<CallEdge>,
    pub call_index: BTreeMap<(Node, Node), CallIdx>,
    /// Calls out of each node and into each node, in call order.
    pub outgoing: BTreeMap<Node, Vec<CallIdx>>,
    pub incoming: BTreeMap<Node, Vec<CallIdx>>,
}

impl CallGraph {
    pub fn service(&self, idx: ServiceIdx) -> Option<&ServiceDef> {
        self.services.get(idx.0 as usize)
    }

    pub fn call(&self, idx: CallIdx) -> Option<&CallEdge> {
        self.calls.get(idx.0 as usize)
    }

    pub fn node_name(&self, node: Node) -> &str {
        match node {
            Node::External => "external",
            Node::Service(s) => self.service(s).map_or("?", |s| s.name.as_str()),
        }
    }

    /// `frontend -> search`
    pub fn call_name(&self, idx: CallIdx) -> String {
        match self.call(idx) {
            Some(c) => format!("{} -> {}", self.node_name(c.from), self.node_name(c.to)),
            None => "?".to_string(),
        }
    }

    /// The services a name stands for: a service, or a group's members.
    pub fn expand(&self, name: &str) -> Option<Vec<ServiceIdx>> {
        if let Some(s) = self.service_index.get(name) {
            return Some(vec![*s]);
        }
        self.groups.get(name).cloned()
    }

    /// Whether any call goes from `from` to `to`.
    pub fn calls_between(&self, from: Node, to: Node) -> Option<CallIdx> {
        self.call_index.get(&(from, to)).copied()
    }
}

/// Where a kind's action keeps its meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Placement {
    Either,
    Ingress,
    Egress,
}

impl Placement {
    pub fn allows(self, side: Side) -> bool {
        match self {
            Placement::Either => true,
            Placement::Ingress => side == Side::Ingress,
            Placement::Egress => side == Side::Egress,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Placement::Either => "either",
            Placement::Ingress => "ingress",
            Placement::Egress => "egress",
        }
    }
}

/// What state a kind's action shares across requests; it fixes the grain of placement units.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StateScope {
    None,
    PerRequest,
    PerSender,
    PerReceiver,
}

impl StateScope {
    pub fn as_str(self) -> &'static str {
        match self {
            StateScope::None => "none",
            StateScope::PerRequest => "per_request",
            StateScope::PerSender => "per_sender",
            StateScope::PerReceiver => "per_receiver",
        }
    }
}

/// A request fact a kind reads or writes. Header names are lowercase (HTTP compares them without
/// regard to case).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fact {
    Source,
    Method,
    Path,
    Headers,
    Header(String),
    Body,
    Outcome,
    Destination,
}

impl Fact {
    /// Whether writing one and reading or writing the other touch the same thing.
    pub fn overlaps(&self, other: &Fact) -> bool {
        match (self, other) {
            (Fact::Headers, Fact::Header(_) | Fact::Headers) | (Fact::Header(_), Fact::Headers) => true,
            (Fact::Header(a), Fact::Header(b)) => a == b,
            (a, b) => a == b,
        }
    }
}

impl fmt::Display for Fact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fact::Source => f.write_str("source"),
            Fact::Method => f.write_str("method"),
            Fact::Path => f.write_str("path"),
            Fact::Headers => f.write_str("headers"),
            Fact::Header(h) => write!(f, "header(\"{h}\")"),
            Fact::Body => f.write_str("body"),
            Fact::Outcome => f.write_str("outcome"),
            Fact::Destination => f.write_str("destination"),
        }
    }
}

/// A fact as a kind declares it: a header may be named by one of the kind's parameters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FactPattern {
    Fixed(Fact),
    /// `header(name)`: the header the policy's `name` argument gives.
    HeaderParam(String),
}

/// The type of a kind parameter.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Ty {
    Int,
    Bool,
    String,
    Duration,
    Rate,
    Percent,
    Size,
    Service,
    Method,
    List(Box<Ty>),
    Enum(String),
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ty::Int => f.write_str("int"),
            Ty::Bool => f.write_str("bool"),
            Ty::String => f.write_str("string"),
            Ty::Duration => f.write_str("duration"),
            Ty::Rate => f.write_str("rate"),
            Ty::Percent => f.write_str("percent"),
            Ty::Size => f.write_str("size"),
            Ty::Service => f.write_str("service"),
            Ty::Method => f.write_str("method"),
            Ty::List(t) => write!(f, "list<{t}>"),
            Ty::Enum(e) => f.write_str(e),
        }
    }
}

/// A checked value in canonical units.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TypedValue {
    Int(u64),
    Bool(bool),
    Str(String),
    /// Microseconds.
    Duration(u64),
    Rate(RateLit),
    Percent(PercentLit),
    /// Bytes.
    Size(u64),
    /// A service or group name.
    Service(String),
    Method(String),
    List(Vec<TypedValue>),
    /// An enum variant.
    Enum(String),
}

impl TypedValue {
    /// Whether the value is above zero (for `positive` parameters).
    pub fn is_positive(&self) -> bool {
        match self {
            TypedValue::Int(n) | TypedValue::Duration(n) | TypedValue::Size(n) => *n > 0,
            TypedValue::Rate(r) => r.value > 0,
            TypedValue::Percent(p) => p.units > 0,
            _ => true,
        }
    }
}

impl fmt::Display for TypedValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TypedValue::Int(n) => write!(f, "{n}"),
            TypedValue::Bool(b) => write!(f, "{b}"),
            TypedValue::Str(s) => f.write_str(&adm_syntax::format::quote(s)),
            TypedValue::Duration(us) => {
                if us % 1_000 == 0 {
                    write!(f, "{}ms", us / 1_000)
                } else {
                    write!(f, "{us}us")
                }
            }
            TypedValue::Rate(r) => write!(f, "{r}"),
            TypedValue::Percent(p) => write!(f, "{p}"),
            TypedValue::Size(b) => write!(f, "{b}B"),
            TypedValue::Service(s) | TypedValue::Method(s) | TypedValue::Enum(s) => f.write_str(s),
            TypedValue::List(items) => {
                f.write_str("[")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ParamDef {
    pub name: String,
    pub ty: Ty,
    pub default: Option<TypedValue>,
}

/// A policy kind with its placement semantics.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KindDef {
    pub name: String,
    pub params: Vec<ParamDef>,
    pub placement: Placement,
    pub state: StateScope,
    pub reads: Vec<FactPattern>,
    pub writes: Vec<FactPattern>,
    /// At most one policy of this kind on a call and method.
    pub exclusive: bool,
    /// Parameters whose value must be above zero.
    pub positive: Vec<String>,
    pub doc: Vec<String>,
    /// Declared by the prelude.
    pub builtin: bool,
}

impl KindDef {
    pub fn param(&self, name: &str) -> Option<&ParamDef> {
        self.params.iter().find(|p| p.name == name)
    }

    /// `rate_limit(limit: rate, burst: int = 0)`
    pub fn signature(&self) -> String {
        let params: Vec<String> = self
            .params
            .iter()
            .map(|p| match &p.default {
                Some(d) => format!("{}: {} = {d}", p.name, p.ty),
                None => format!("{}: {}", p.name, p.ty),
            })
            .collect();
        format!("{}({})", self.name, params.join(", "))
    }
}

/// The order of a policy in the program: file position, then position in the file.
pub type PolicyOrder = (u32, u32);

/// Which calls a policy covers, and for which methods (`None`: every method of the call).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Covered {
    pub call: CallIdx,
    pub methods: Option<Vec<SmolStr>>,
}

/// Whether two method sets (`None` = all) share a method.
pub fn methods_overlap(a: &Option<Vec<SmolStr>>, b: &Option<Vec<SmolStr>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.iter().any(|m| b.contains(m)),
        _ => true,
    }
}

/// What groups a unit's calls: the state its policy shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UnitKey {
    /// `state: none` or `per_request`: one unit per call.
    Call(CallIdx),
    /// `per_receiver`: every covered call into this node.
    Receiver(Node),
    /// `per_sender`: every covered call out of this node.
    Sender(Node),
}

/// Why a side was taken from a unit: the contract's four rules (and the kind/pin split of rule 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// Rule 1: the kind's `placement`.
    KindPlacement,
    /// Rule 1: the policy's `at`.
    Pin,
    /// Rule 2: shared state needs a single sender (receiver).
    SharedState,
    /// Rule 3: outside the mesh there is no ADM.
    External,
    /// Rule 4: declaration order between dependent policies on a shared call.
    Ordering,
}

impl Rule {
    pub fn number(self) -> u8 {
        match self {
            Rule::KindPlacement | Rule::Pin => 1,
            Rule::SharedState => 2,
            Rule::External => 3,
            Rule::Ordering => 4,
        }
    }
}

/// One side removed from a unit, and why.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Removal {
    pub side: Side,
    pub rule: Rule,
    /// What made the rule apply, in words (names in backticks).
    pub reason: String,
    /// For rule 4: the other policy (its order) whose placement forced this.
    pub because_of: Option<PolicyOrder>,
}

/// A part of a policy that is placed as a whole.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Unit {
    pub key: UnitKey,
    pub calls: Vec<CallIdx>,
    pub ingress: bool,
    pub egress: bool,
    pub removed: Vec<Removal>,
}

impl Unit {
    pub fn allows(&self, side: Side) -> bool {
        match side {
            Side::Ingress => self.ingress,
            Side::Egress => self.egress,
        }
    }

    pub fn sides(&self) -> Vec<Side> {
        [Side::Ingress, Side::Egress].into_iter().filter(|s| self.allows(*s)).collect()
    }

    /// The services that host the unit on `side`: the receivers at ingress, the senders at egress.
    pub fn hosts(&self, graph: &CallGraph, side: Side) -> Vec<Node> {
        let mut hosts: Vec<Node> = self
            .calls
            .iter()
            .filter_map(|c| graph.call(*c))
            .map(|c| if side == Side::Ingress { c.to } else { c.from })
            .collect();
        hosts.sort();
        hosts.dedup();
        hosts
    }
}

/// Everything the program-wide stages need to know of one policy, without positions. Argument
/// values are apart ([`Args`]), so that editing one leaves placement and conflicts untouched.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PolicyFacts {
    pub name: SmolStr,
    /// For `allow` and `deny`: whether it allows, and the services of its `from` list.
    pub access: Option<Access>,
    pub kind: SmolStr,
    pub order: PolicyOrder,
    pub covered: Vec<Covered>,
    pub at: Option<Side>,
    pub placement: Placement,
    pub state: StateScope,
    /// Facts with header parameters resolved; `outcome` is always among the reads.
    pub reads: Vec<Fact>,
    pub writes: Vec<Fact>,
    pub exclusive: bool,
}

impl PolicyFacts {
    /// Whether the two policies depend on each other: one writes what the other reads or writes.
    pub fn depends_on(&self, other: &PolicyFacts) -> bool {
        let touches = |w: &[Fact], r: &[Fact]| w.iter().any(|a| r.iter().any(|b| a.overlaps(b)));
        touches(&self.writes, &other.reads)
            || touches(&self.writes, &other.writes)
            || touches(&other.writes, &self.reads)
    }

    pub fn covered_methods(&self, call: CallIdx) -> Option<&Option<Vec<SmolStr>>> {
        self.covered.iter().find(|c| c.call == call).map(|c| &c.methods)
    }
}

/// A rule-4 constraint between two units: `earlier` on ingress forbids `later` on egress.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OrderingConstraint {
    pub call: CallIdx,
    /// (policy order, unit index) of the policy declared first.
    pub earlier: (PolicyOrder, u32),
    pub later: (PolicyOrder, u32),
}

/// A policy's arguments, typed, defaults filled in, in canonical units, in name order.
///
/// A sorted vector rather than a map: a policy has a handful of arguments and a program has tens
/// of thousands of policies, and a map's smallest node holds room for eleven.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Args(Vec<(SmolStr, TypedValue)>);

impl Args {
    fn find(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(name))
    }

    pub fn get(&self, name: &str) -> Option<&TypedValue> {
        self.find(name).ok().map(|i| &self.0[i].1)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.find(name).is_ok()
    }

    /// Sets an argument, replacing the value it had.
    pub fn insert(&mut self, name: &str, value: TypedValue) {
        match self.find(name) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => self.0.insert(i, (SmolStr::new(name), value)),
        }
    }

    /// The arguments in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &TypedValue)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn values(&self) -> impl Iterator<Item = &TypedValue> {
        self.0.iter().map(|(_, v)| v)
    }

    /// Drops the room the vector grew while the arguments were added.
    pub fn shrink_to_fit(&mut self) {
        self.0.shrink_to_fit();
    }
}

/// What an access-control policy decides.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Access {
    pub allow: bool,
    /// The services named by `from`, groups expanded.
    pub from: Vec<ServiceIdx>,
}

impl Access {
    /// What the policy decides for requests from `source`: an allow-list lets its sources through
    /// and refuses every other; a deny-list refuses its sources and has no say on the others.
    pub fn decides(&self, source: Node) -> Option<bool> {
        let listed = match source {
            Node::Service(s) => self.from.contains(&s),
            Node::External => false,
        };
        match (self.allow, listed) {
            (true, listed) => Some(listed),
            (false, true) => Some(false),
            (false, false) => None,
        }
    }
}
