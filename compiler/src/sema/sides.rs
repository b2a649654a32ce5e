//! Placement units and their legal sides: the contract's four rules.
//!
//! Rules 1–3 look at one unit; rule 4 links the units of dependent policies on a shared call and
//! is both returned as pairwise constraints for the optimiser and propagated here, so that a unit
//! whose every side is excluded is reported before any solving.

use std::collections::BTreeMap;

use adm_syntax::ast::{Side, SmolStr};

use super::model::{
    methods_overlap, CallGraph, CallIdx, Node, OrderingConstraint, Placement, PolicyFacts, PolicyOrder, Removal, Rule,
    StateScope, Unit, UnitKey,
};

/// The legal sides of every unit of every placeable policy, and the rule-4 constraints.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct LegalSides {
    pub units: BTreeMap<PolicyOrder, Vec<Unit>>,
    /// "if `earlier`'s unit is at ingress then `later`'s unit is at ingress", per shared call.
    pub constraints: Vec<OrderingConstraint>,
}

impl LegalSides {
    pub fn unit(&self, (order, index): (PolicyOrder, u32)) -> Option<&Unit> {
        self.units.get(&order).and_then(|u| u.get(index as usize))
    }
}

/// Splits a policy into units by its kind's state, and applies rules 1 to 3.
pub fn units_of(f: &PolicyFacts, graph: &CallGraph) -> Vec<Unit> {
    let mut groups: BTreeMap<UnitKey, Vec<CallIdx>> = BTreeMap::new();
    for c in &f.covered {
        let Some(edge) = graph.call(c.call) else { continue };
        let key = match f.state {
            StateScope::None | StateScope::PerRequest => UnitKey::Call(c.call),
            StateScope::PerReceiver => UnitKey::Receiver(edge.to),
            StateScope::PerSender => UnitKey::Sender(edge.from),
        };
        groups.entry(key).or_default().push(c.call);
    }
    groups
        .into_iter()
        .map(|(key, calls)| {
            let mut unit = Unit { key, calls, ingress: true, egress: true, removed: Vec::new() };
            apply_local_rules(&mut unit, f, graph);
            unit
        })
        .collect()
}

fn remove(unit: &mut Unit, side: Side, rule: Rule, reason: String, because_of: Option<PolicyOrder>) {
    let present = match side {
        Side::Ingress => std::mem::replace(&mut unit.ingress, false),
        Side::Egress => std::mem::replace(&mut unit.egress, false),
    };
    if present {
        unit.removed.push(Removal { side, rule, reason, because_of });
    }
}

fn other(side: Side) -> Side {
    match side {
        Side::Ingress => Side::Egress,
        Side::Egress => Side::Ingress,
    }
}

fn names(graph: &CallGraph, nodes: &[Node]) -> String {
    let shown: Vec<String> = nodes.iter().take(3).map(|n| format!("`{}`", graph.node_name(*n))).collect();
    if nodes.len() > 3 {
        format!("{}, …", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

fn apply_local_rules(unit: &mut Unit, f: &PolicyFacts, graph: &CallGraph) {
    // Rule 1: the kind's placement, then the policy's pin.
    for side in [Side::Ingress, Side::Egress] {
        if !f.placement.allows(side) {
            let only = if f.placement == Placement::Ingress { "ingress" } else { "egress" };
            remove(unit, side, Rule::KindPlacement, format!("kind `{}` runs only at {only}", f.kind), None);
        }
    }
    if let Some(pin) = f.at {
        remove(unit, other(pin), Rule::Pin, format!("the policy is pinned `at {pin}`"), None);
    }
    // Rule 2: one shared budget cannot be split across several senders (receivers).
    let senders = unit.hosts(graph, Side::Egress);
    let receivers = unit.hosts(graph, Side::Ingress);
    match f.state {
        StateScope::PerReceiver if senders.len() > 1 => {
            let reason = format!(
                "state is `per_receiver` and its calls into {} come from {} senders ({}), which cannot share one state",
                names(graph, &receivers),
                senders.len(),
                names(graph, &senders)
            );
            remove(unit, Side::Egress, Rule::SharedState, reason, None);
        }
        StateScope::PerSender if receivers.len() > 1 => {
            let reason = format!(
                "state is `per_sender` and its calls out of {} go to {} receivers ({}), which cannot share one state",
                names(graph, &senders),
                receivers.len(),
                names(graph, &receivers)
            );
            remove(unit, Side::Ingress, Rule::SharedState, reason, None);
        }
        _ => {}
    }
    // Rule 3: outside the mesh there is no ADM.
    for c in unit.calls.clone() {
        let Some(edge) = graph.call(c) else { continue };
        if edge.from == Node::External {
            let reason = format!("`{}` comes from outside the mesh, where no ADM runs", graph.call_name(c));
            remove(unit, Side::Egress, Rule::External, reason, None);
        }
        if edge.to == Node::External {
            let reason = format!("`{}` leaves the mesh, and no ADM runs outside it", graph.call_name(c));
            remove(unit, Side::Ingress, Rule::External, reason, None);
        }
    }
}

/// Per call, the (policy, unit index) pairs that act on it, in declaration order.
pub fn by_call<'a>(facts: &[&'a PolicyFacts]) -> BTreeMap<CallIdx, Vec<&'a PolicyFacts>> {
    let mut sorted: Vec<&PolicyFacts> = facts.to_vec();
    sorted.sort_by_key(|f| f.order);
    let mut out: BTreeMap<CallIdx, Vec<&PolicyFacts>> = BTreeMap::new();
    for f in sorted {
        for c in &f.covered {
            out.entry(c.call).or_default().push(f);
        }
    }
    out
}

/// Units of every policy (rules 1–3), the rule-4 constraints, and their propagation.
pub fn legal_sides(facts: &[&PolicyFacts], graph: &CallGraph) -> LegalSides {
    let mut units: BTreeMap<PolicyOrder, Vec<Unit>> = facts.iter().map(|f| (f.order, units_of(f, graph))).collect();
    let unit_index = |units: &BTreeMap<PolicyOrder, Vec<Unit>>, order: PolicyOrder, call: CallIdx| {
        units.get(&order).and_then(|us| us.iter().position(|u| u.calls.contains(&call))).map(|i| i as u32)
    };
    let mut constraints = Vec::new();
    for (call, on_call) in by_call(facts) {
        for (i, p) in on_call.iter().enumerate() {
            for q in &on_call[i + 1..] {
                let (Some(pm), Some(qm)) = (p.covered_methods(call), q.covered_methods(call)) else { continue };
                if !methods_overlap(pm, qm) || !p.depends_on(q) {
                    continue;
                }
                let (Some(pu), Some(qu)) = (unit_index(&units, p.order, call), unit_index(&units, q.order, call))
                else {
                    continue;
                };
                constraints.push(OrderingConstraint { call, earlier: (p.order, pu), later: (q.order, qu) });
            }
        }
    }
    let names: BTreeMap<PolicyOrder, SmolStr> = facts.iter().map(|f| (f.order, f.name.clone())).collect();
    propagate(&mut units, &mut constraints, &names, graph);
    LegalSides { units, constraints }
}

fn get(units: &BTreeMap<PolicyOrder, Vec<Unit>>, (order, i): (PolicyOrder, u32)) -> Option<&Unit> {
    units.get(&order).and_then(|u| u.get(i as usize))
}

fn get_mut(units: &mut BTreeMap<PolicyOrder, Vec<Unit>>, (order, i): (PolicyOrder, u32)) -> Option<&mut Unit> {
    units.get_mut(&order).and_then(|u| u.get_mut(i as usize))
}

/// Rule 4 propagation to a fixed point: an earlier unit that can only run at ingress forbids egress
/// to the later one; a later unit that can only run at egress forbids ingress to the earlier one.
/// Then drops the constraints that always hold (earlier unit never at ingress, or later never at
/// egress), which the optimiser need not see.
pub fn propagate(
    units: &mut BTreeMap<PolicyOrder, Vec<Unit>>,
    constraints: &mut Vec<OrderingConstraint>,
    names: &BTreeMap<PolicyOrder, SmolStr>,
    graph: &CallGraph,
) {
    let name = |o: &PolicyOrder| names.get(o).map_or("?", SmolStr::as_str).to_string();
    loop {
        let mut changed = false;
        for k in constraints.iter() {
            let (Some(p), Some(q)) = (get(units, k.earlier), get(units, k.later)) else { continue };
            let p_only_ingress = p.ingress && !p.egress;
            let q_only_egress = q.egress && !q.ingress;
            let call = graph.call_name(k.call);
            if p_only_ingress && q.egress {
                let reason = format!(
                    "`{}` comes first on `{call}`, depends on this policy, and can only run at ingress",
                    name(&k.earlier.0)
                );
                if let Some(q) = get_mut(units, k.later) {
                    remove(q, Side::Egress, Rule::Ordering, reason, Some(k.earlier.0));
                    changed = true;
                }
            } else if q_only_egress && p.ingress {
                let reason = format!(
                    "`{}` comes later on `{call}`, depends on this policy, and can only run at egress",
                    name(&k.later.0)
                );
                if let Some(p) = get_mut(units, k.earlier) {
                    remove(p, Side::Ingress, Rule::Ordering, reason, Some(k.later.0));
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    constraints
        .retain(|k| get(units, k.earlier).is_some_and(|p| p.ingress) && get(units, k.later).is_some_and(|q| q.egress));
}
