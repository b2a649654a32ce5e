//! The two baselines every plan is reported against, on the same input: a sidecar at every
//! service, and the static placement of today's meshes.

use std::collections::BTreeMap;

use adm_syntax::ast::Side;

use super::{evaluate, Objective, UnitId};
use crate::sema::model::{CallGraph, Node, PolicyFacts, PolicyOrder, Unit};
use crate::sema::sides::LegalSides;

/// A sidecar beside every service: every service hosts a proxy (two in per-direction mode), and
/// every call passes the proxies at both of its in-mesh ends, policy or not.
pub fn sidecar(graph: &CallGraph, per_dir: bool) -> Objective {
    let per_service = if per_dir { 2.0 } else { 1.0 };
    let adm_cost = graph.services.iter().map(|s| f64::from(s.adm_cost) * per_service).sum();
    let traffic = graph
        .calls
        .iter()
        .map(|c| {
            let ends = u8::from(c.from != Node::External) + u8::from(c.to != Node::External);
            c.rate.per_second() * f64::from(ends)
        })
        .sum();
    Objective { adm_cost, adms: graph.services.len() * if per_dir { 2 } else { 1 }, traffic }
}

/// The side today's meshes give a kind: access control, rate limits and header checks at the
/// receiver; retries, timeouts, circuit breaking, load balancing and mirroring at the sender;
/// anything else at the receiver (a kind that runs on one side only, on that side).
pub fn conventional_side(f: &PolicyFacts) -> Side {
    match f.kind.as_str() {
        "retry" | "timeout" | "circuit_breaker" | "load_balance" | "mirror" => Side::Egress,
        "allow" | "deny" | "rate_limit" | "require_header" => Side::Ingress,
        _ => match f.placement {
            crate::sema::model::Placement::Egress => Side::Egress,
            _ => Side::Ingress,
        },
    }
}

/// The static placement: each unit on its kind's conventional side, or on its only legal side
/// when the conventional one is excluded (a pin, an external edge). Returns the objective and the
/// number of rule-4 ordering constraints it violates.
pub fn static_placement(
    graph: &CallGraph,
    legal: &LegalSides,
    facts: &BTreeMap<PolicyOrder, &PolicyFacts>,
    per_dir: bool,
) -> (Objective, BTreeMap<UnitId, Side>, usize) {
    let units: BTreeMap<UnitId, &Unit> = legal
        .units
        .iter()
        .flat_map(|(order, us)| us.iter().enumerate().map(move |(i, u)| ((*order, i as u32), u)))
        .collect();
    let mut sides = BTreeMap::new();
    for (id, unit) in &units {
        let Some(f) = facts.get(&id.0) else { continue };
        let wanted = conventional_side(f);
        let side = if unit.allows(wanted) || !unit.allows(other(wanted)) { wanted } else { other(wanted) };
        sides.insert(*id, side);
    }
    let violations = legal
        .constraints
        .iter()
        .filter(|k| sides.get(&k.earlier) == Some(&Side::Ingress) && sides.get(&k.later) == Some(&Side::Egress))
        .count();
    (evaluate(graph, &units, &sides, per_dir), sides, violations)
}

fn other(side: Side) -> Side {
    match side {
        Side::Ingress => Side::Egress,
        Side::Egress => Side::Ingress,
    }
}
