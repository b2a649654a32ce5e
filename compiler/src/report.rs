//! Plain-text views of what the checker derived, for people and for snapshot tests.

use std::fmt::Write;

use crate::db;
use crate::sema::model::UnitKey;
use crate::Checked;

/// Every policy's units with their calls and legal sides, the rules that removed sides, and the
/// rule-4 constraints between units.
pub fn legal_sides(checked: &Checked) -> String {
    let (db, program) = (&checked.db, checked.program);
    let graph = db::call_graph(db, program);
    let sides = db::legal_sides(db, program);
    let mut out = String::new();
    let mut names = std::collections::BTreeMap::new();
    for &(pos, item) in db::policies(db, program) {
        let Some(facts) = db::policy_facts(db, program, pos, item) else { continue };
        names.insert((pos, item), facts.name.clone());
        let _ = writeln!(
            out,
            "{} = {} ({}, placement {})",
            facts.name,
            facts.kind,
            facts.state.as_str(),
            facts.placement.as_str()
        );
        for unit in sides.units.get(&(pos, item)).into_iter().flatten() {
            let key = match unit.key {
                UnitKey::Call(c) => format!("call `{}`", graph.call_name(c)),
                UnitKey::Receiver(n) => format!("calls into `{}`", graph.node_name(n)),
                UnitKey::Sender(n) => format!("calls out of `{}`", graph.node_name(n)),
            };
            let calls: Vec<String> = unit.calls.iter().map(|c| graph.call_name(*c)).collect();
            let _ = writeln!(out, "  {key} [{}]: {}", calls.join(", "), db::sides_text(unit));
            for r in &unit.removed {
                let _ = writeln!(out, "    {} excluded by rule {}: {}", r.side, r.rule.number(), r.reason);
            }
        }
    }
    if !sides.constraints.is_empty() {
        out.push_str("ordering constraints (rule 4):\n");
        for k in &sides.constraints {
            let name = |o| names.get(&o).map_or("?", String::as_str);
            let _ = writeln!(
                out,
                "  on `{}`: `{}` at ingress => `{}` at ingress",
                graph.call_name(k.call),
                name(k.earlier.0),
                name(k.later.0)
            );
        }
    }
    out
}
