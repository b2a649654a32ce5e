//! Policies that contradict each other on a call: where Istio warns of undefined behaviour, we
//! refuse the program.

use std::collections::BTreeSet;

use super::model::{methods_overlap, CallGraph, CallIdx, Node, PolicyFacts, PolicyOrder};
use super::sides::by_call;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ConflictKind {
    /// An `allow` and a `deny` (or two allow-lists) decide requests from `source` differently: one
    /// lets them through, the other refuses them. (A deny-list has no say on sources it omits.)
    Access { source: Node, earlier_permits: bool },
    /// Two policies of an `exclusive` kind act on the same call and method.
    Exclusive { kind: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Conflict {
    pub earlier: PolicyOrder,
    pub later: PolicyOrder,
    /// The first call on which they conflict.
    pub call: CallIdx,
    pub kind: ConflictKind,
}

/// Every conflicting pair of policies, once, at the first call where they conflict.
pub fn find(facts: &[&PolicyFacts], graph: &CallGraph) -> Vec<Conflict> {
    let mut seen: BTreeSet<(PolicyOrder, PolicyOrder)> = BTreeSet::new();
    let mut out = Vec::new();
    for (call, on_call) in by_call(facts) {
        let Some(edge) = graph.call(call) else { continue };
        for (i, p) in on_call.iter().enumerate() {
            for q in &on_call[i + 1..] {
                if seen.contains(&(p.order, q.order)) {
                    continue;
                }
                let (Some(pm), Some(qm)) = (p.covered_methods(call), q.covered_methods(call)) else { continue };
                if !methods_overlap(pm, qm) {
                    continue;
                }
                let decisions = (
                    p.access.as_ref().and_then(|a| a.decides(edge.from)),
                    q.access.as_ref().and_then(|a| a.decides(edge.from)),
                );
                let kind = match decisions {
                    (Some(a), Some(b)) if a != b => {
                        Some(ConflictKind::Access { source: edge.from, earlier_permits: a })
                    }
                    _ if p.exclusive && p.kind == q.kind => Some(ConflictKind::Exclusive { kind: p.kind.to_string() }),
                    _ => None,
                };
                if let Some(kind) = kind {
                    seen.insert((p.order, q.order));
                    out.push(Conflict { earlier: p.order, later: q.order, call, kind });
                }
            }
        }
    }
    out.sort_by_key(|c| (c.later, c.earlier));
    out
}
