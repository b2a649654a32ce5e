//! `admc build`: the runtime configuration of every ADM and the seeds of the eBPF maps, from a
//! placed program. Deterministic: the same input gives the same bytes.

use std::collections::{BTreeMap, BTreeSet};

use adm_artifacts::{
    AdmConfig, Direction, EbpfMaps, Endpoint, Forward, Listeners, MethodChain, PairEntry, PairRoute, Peer, PolicyStep,
    Route, ServiceEntry, Upstream, SCHEMA_VERSION,
};
use adm_syntax::ast::{Side, SmolStr};
use serde_json::{json, Value};

use crate::db;
use crate::place::UnitId;
use crate::plan::{direction, Planned};
use crate::sema::model::{CallGraph, CallIdx, Node, ServiceIdx, TypedValue};
use crate::Checked;

/// Where ADMs listen, on their service's address (moved by 10 when the service itself uses the
/// port).
pub const INGRESS_PORT: u16 = 15006;
pub const EGRESS_PORT: u16 = 15001;

/// The ADM's listener ports for a service: never the service's own port.
pub fn adm_ports(service_port: u16) -> (u16, u16) {
    let pick = |p: u16| if p == service_port { p + 10 } else { p };
    (pick(INGRESS_PORT), pick(EGRESS_PORT))
}

/// The loopback address of the `k`-th endpoint (service replicas in declaration order), in the
/// pod-IP model of local runs: 127.0.1.1, 127.0.1.2, … (the last octet skips 0 and 255).
pub fn endpoint_address(k: usize) -> String {
    let c = 1 + k % 254;
    let high = 1 + k / 254;
    format!("127.{}.{}.{c}", (high / 256) % 256, high % 256)
}

/// Every service's replica endpoints.
pub fn endpoints(graph: &CallGraph) -> Vec<Vec<Endpoint>> {
    let mut k = 0;
    graph
        .services
        .iter()
        .map(|s| {
            (0..s.replicas)
                .map(|_| {
                    let e = Endpoint { address: endpoint_address(k), port: s.port };
                    k += 1;
                    e
                })
                .collect()
        })
        .collect()
}

/// A typed argument in canonical JSON; a service or group lists the services it stands for.
pub fn canonical(v: &TypedValue, graph: &CallGraph) -> Value {
    match v {
        TypedValue::Int(n) => json!(n),
        TypedValue::Bool(b) => json!(b),
        TypedValue::Str(s) | TypedValue::Method(s) | TypedValue::Enum(s) => json!(s),
        TypedValue::Duration(us) => json!({ "us": us }),
        TypedValue::Rate(r) => json!({ "per_second": r.per_second() }),
        TypedValue::Percent(p) => json!({ "fraction": p.fraction() }),
        TypedValue::Size(b) => json!({ "bytes": b }),
        TypedValue::Service(s) => {
            let members: Vec<&str> = graph
                .expand(s)
                .unwrap_or_default()
                .iter()
                .filter_map(|m| graph.service(*m))
                .map(|m| m.name.as_str())
                .collect();
            json!({ "service": s, "members": members })
        }
        TypedValue::List(items) => Value::Array(items.iter().map(|i| canonical(i, graph)).collect()),
    }
}

/// A unit placed on a call's side, with the methods its policy covers there (`None`: all).
type Placed = (UnitId, Option<Vec<SmolStr>>);

/// Every artifact of a placed program: (relative path, JSON text).
pub fn artifacts(checked: &Checked, planned: &Planned) -> Vec<(String, String)> {
    let (db, program) = (&checked.db, checked.program);
    let graph = db::call_graph(db, program);
    let legal = db::legal_sides(db, program);
    let facts = crate::plan::facts(checked);
    let eps = endpoints(graph);

    // Per call and side: the policies placed there, in declaration order, with their methods.
    let mut on: BTreeMap<(CallIdx, Side), Vec<Placed>> = BTreeMap::new();
    for (id, side) in &planned.placement.sides {
        let Some(unit) = legal.units.get(&id.0).and_then(|u| u.get(id.1 as usize)) else { continue };
        let Some(f) = facts.get(&id.0) else { continue };
        for c in &unit.calls {
            let methods = f.covered_methods(*c).cloned().unwrap_or(None);
            on.entry((*c, *side)).or_default().push((*id, methods));
        }
    }
    for list in on.values_mut() {
        list.sort_by_key(|(id, _)| *id);
    }
    let step = |id: &UnitId| -> Option<PolicyStep> {
        let f = facts.get(&id.0)?;
        let args = db::policy_args(db, program, id.0 .0, id.0 .1)?;
        let unit = legal.unit(*id)?;
        Some(PolicyStep {
            policy: f.name.to_string(),
            kind: f.kind.to_string(),
            unit: crate::plan::unit_label(graph, unit),
            args: args.iter().map(|(k, v)| (k.to_string(), canonical(v, graph))).collect(),
        })
    };
    // The ingress listener of a service's ADM, when the service has ingress routes.
    let ingress_listener = |s: ServiceIdx| -> Option<Endpoint> {
        let service = graph.service(s)?;
        let address = eps.get(s.0 as usize)?.first()?.address.clone();
        Some(Endpoint { address, port: adm_ports(service.port).0 })
    };

    // Routes per ADM host.
    let mut routes: BTreeMap<ServiceIdx, Vec<Route>> = BTreeMap::new();
    let mut upstreams: BTreeMap<ServiceIdx, BTreeSet<ServiceIdx>> = BTreeMap::new();
    for ((call, side), list) in &on {
        let Some(edge) = graph.call(*call) else { continue };
        let host = if *side == Side::Ingress { edge.to } else { edge.from };
        let Node::Service(host) = host else { continue };
        let chains = method_chains(edge.methods.as_deref(), list, &step);
        let forward = match (edge.to, *side) {
            (Node::External, _) => Forward::External,
            (Node::Service(to), Side::Egress) if on.contains_key(&(*call, Side::Ingress)) => match ingress_listener(to)
            {
                Some(endpoint) => Forward::Adm { service: graph.node_name(edge.to).to_string(), endpoint },
                None => Forward::Service { service: graph.node_name(edge.to).to_string() },
            },
            (Node::Service(_), _) => Forward::Service { service: graph.node_name(edge.to).to_string() },
        };
        routes.entry(host).or_default().push(Route {
            from: graph.node_name(edge.from).to_string(),
            to: graph.node_name(edge.to).to_string(),
            direction: direction(*side),
            chains,
            forward,
        });
        if let Node::Service(to) = edge.to {
            upstreams.entry(host).or_default().insert(to);
        }
        // A mirror copies requests to another service: the ADM must reach it too.
        for (id, _) in list {
            if let Some(args) = db::policy_args(db, program, id.0 .0, id.0 .1) {
                for v in args.values() {
                    if let TypedValue::Service(name) = v {
                        for s in graph.expand(name).unwrap_or_default() {
                            upstreams.entry(host).or_default().insert(s);
                        }
                    }
                }
            }
        }
    }

    let mut out = Vec::new();
    let plan_json = serde_json::to_string_pretty(&planned.file).unwrap_or_default();
    out.push(("plan.json".to_string(), plan_json + "\n"));
    let mut listeners_of: BTreeMap<ServiceIdx, Listeners> = BTreeMap::new();
    for (host, host_routes) in &routes {
        let Some(service) = graph.service(*host) else { continue };
        let address = eps.get(host.0 as usize).and_then(|e| e.first()).map(|e| e.address.clone()).unwrap_or_default();
        let has = |d: Direction| host_routes.iter().any(|r| r.direction == d);
        let (ingress_port, egress_port) = adm_ports(service.port);
        let listeners = Listeners {
            ingress: has(Direction::Ingress).then(|| Endpoint { address: address.clone(), port: ingress_port }),
            egress: has(Direction::Egress).then(|| Endpoint { address: address.clone(), port: egress_port }),
        };
        let senders: BTreeSet<ServiceIdx> =
            host_routes.iter().filter_map(|r| graph.service_index.get(r.from.as_str()).copied()).collect();
        let peers = senders
            .iter()
            .filter_map(|s| {
                Some(Peer {
                    service: graph.service(*s)?.name.to_string(),
                    addresses: eps.get(s.0 as usize)?.iter().map(|e| e.address.clone()).collect(),
                })
            })
            .collect();
        listeners_of.insert(*host, listeners.clone());
        let ups = upstreams
            .get(host)
            .into_iter()
            .flatten()
            .filter_map(|s| {
                Some(Upstream {
                    service: graph.service(*s)?.name.to_string(),
                    protocol: graph.service(*s)?.protocol.as_str().to_string(),
                    endpoints: eps.get(s.0 as usize)?.clone(),
                })
            })
            .collect();
        let config = AdmConfig {
            schema_version: SCHEMA_VERSION,
            service: service.name.to_string(),
            listeners,
            upstreams: ups,
            peers,
            routes: host_routes.clone(),
        };
        out.push((
            format!("adm/{}.json", service.name),
            serde_json::to_string_pretty(&config).unwrap_or_default() + "\n",
        ));
    }

    let services = graph
        .services
        .iter()
        .enumerate()
        .map(|(i, s)| ServiceEntry {
            id: i as u32,
            name: s.name.to_string(),
            port: s.port,
            endpoints: eps.get(i).cloned().unwrap_or_default(),
            adm: listeners_of.get(&ServiceIdx(i as u32)).cloned(),
        })
        .collect();
    let pairs = graph
        .calls
        .iter()
        .enumerate()
        .filter(|(_, c)| c.from != Node::External && c.to != Node::External)
        .map(|(i, c)| {
            let call = CallIdx(i as u32);
            let via_sender = on.contains_key(&(call, Side::Egress));
            let via_receiver = on.contains_key(&(call, Side::Ingress));
            PairEntry {
                from: graph.node_name(c.from).to_string(),
                to: graph.node_name(c.to).to_string(),
                route: match (via_sender, via_receiver) {
                    (false, false) => PairRoute::Direct,
                    (true, false) => PairRoute::ViaSender,
                    (false, true) => PairRoute::ViaReceiver,
                    (true, true) => PairRoute::ViaBoth,
                },
            }
        })
        .collect();
    let maps = EbpfMaps { schema_version: SCHEMA_VERSION, services, pairs };
    out.push(("ebpf/maps.json".to_string(), serde_json::to_string_pretty(&maps).unwrap_or_default() + "\n"));
    out.sort();
    out
}

/// The chains of one route: per method (merged where they are equal), and for every other method.
fn method_chains(
    declared: Option<&[SmolStr]>,
    list: &[Placed],
    step: &dyn Fn(&UnitId) -> Option<PolicyStep>,
) -> Vec<MethodChain> {
    let chain_for = |method: Option<&str>| -> Vec<PolicyStep> {
        list.iter()
            .filter(|(_, ms)| match (ms, method) {
                (None, _) => true,
                (Some(ms), Some(m)) => ms.iter().any(|x| x == m),
                (Some(_), None) => false,
            })
            .filter_map(|(id, _)| step(id))
            .collect()
    };
    let named: Vec<SmolStr> = match declared {
        Some(ms) => ms.to_vec(),
        None => {
            let mut set: Vec<SmolStr> = Vec::new();
            for (_, ms) in list {
                for m in ms.iter().flatten() {
                    if !set.contains(m) {
                        set.push(m.clone());
                    }
                }
            }
            set.sort();
            set
        }
    };
    let mut chains: Vec<MethodChain> = Vec::new();
    for m in &named {
        let chain = chain_for(Some(m));
        if chain.is_empty() {
            continue;
        }
        match chains.iter_mut().find(|c| c.chain == chain) {
            Some(existing) => existing.methods.get_or_insert_with(Vec::new).push(m.to_string()),
            None => chains.push(MethodChain { methods: Some(vec![m.to_string()]), chain }),
        }
    }
    if declared.is_none() {
        let rest = chain_for(None);
        if !rest.is_empty() {
            chains.push(MethodChain { methods: None, chain: rest });
        }
    }
    chains
}
