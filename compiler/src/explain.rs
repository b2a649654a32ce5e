//! `admc explain NAME`: why a policy runs where it runs, or why a service hosts an ADM.

use std::collections::BTreeMap;
use std::fmt::Write;

use adm_syntax::ast::{Side, SmolStr};

use crate::db;
use crate::place::{self, Objective, PlaceOptions, UnitId};
use crate::plan::{unit_label, Planned};
use crate::sema::model::{Node, PolicyOrder};
use crate::sema::names::Namespace;
use crate::sema::sides::{self, LegalSides};
use crate::sema::suggest;
use crate::Checked;

/// Counterfactuals are computed for at most this many units of one policy.
const MAX_COUNTERFACTUALS: usize = 24;

fn other(side: Side) -> Side {
    match side {
        Side::Ingress => Side::Egress,
        Side::Egress => Side::Ingress,
    }
}

fn delta(now: &Objective, then: &Objective) -> String {
    let adms = then.adm_cost - now.adm_cost;
    let traffic = then.traffic - now.traffic;
    let adm_text = if adms.abs() < 1e-9 {
        "the same ADM cost".to_string()
    } else {
        let n = adms.abs();
        let word = if (n - 1.0).abs() < 1e-9 { "ADM" } else { "ADMs" };
        format!("{n:.0} {} {word} (in cost)", if adms > 0.0 { "more" } else { "fewer" })
    };
    let traffic_text = if traffic.abs() < 1e-9 {
        "the same traffic".to_string()
    } else {
        format!("{:.0} req/s {} through ADMs", traffic.abs(), if traffic > 0.0 { "more" } else { "less" })
    };
    format!("{adm_text}, {traffic_text}")
}

/// What the plan would become with one unit on its other side: `Err` names the unit that would
/// then have no side.
fn counterfactual(checked: &Checked, options: &PlaceOptions, id: UnitId, side: Side) -> Result<Objective, String> {
    let (dbr, program) = (&checked.db, checked.program);
    let graph = db::call_graph(dbr, program);
    let legal = db::legal_sides(dbr, program);
    let mut units = legal.units.clone();
    let mut constraints = legal.constraints.clone();
    if let Some(u) = units.get_mut(&id.0).and_then(|us| us.get_mut(id.1 as usize)) {
        match side {
            Side::Ingress => u.egress = false,
            Side::Egress => u.ingress = false,
        }
    }
    let names: BTreeMap<PolicyOrder, SmolStr> =
        crate::plan::facts(checked).iter().map(|(o, f)| (*o, f.name.clone())).collect();
    sides::propagate(&mut units, &mut constraints, &names, graph);
    for (order, us) in &units {
        for u in us {
            if !u.ingress && !u.egress {
                return Err(format!(
                    "it would leave `{}` with no side {} (rule 4)",
                    names.get(order).map_or("?", SmolStr::as_str),
                    unit_label(graph, u)
                ));
            }
        }
    }
    let changed = LegalSides { units, constraints };
    Ok(place::place(graph, &changed, options, None).objective)
}

/// The explanation of a policy or a service; `Err` for a name that is neither.
pub fn explain(checked: &Checked, planned: &Planned, options: &PlaceOptions, name: &str) -> Result<String, String> {
    let (dbr, program) = (&checked.db, checked.program);
    let graph = db::call_graph(dbr, program);
    let legal = db::legal_sides(dbr, program);
    let facts = crate::plan::facts(checked);
    if let Some((order, f)) = facts.iter().find(|(_, f)| f.name == name) {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "policy `{}`: kind `{}` (placement {}, state {})",
            f.name,
            f.kind,
            f.placement.as_str(),
            f.state.as_str()
        );
        let units = legal.units.get(order).map(Vec::as_slice).unwrap_or_default();
        if units.is_empty() {
            let _ = writeln!(out, "  it covers no call, so it runs nowhere");
        }
        for (i, unit) in units.iter().enumerate() {
            let id = (*order, i as u32);
            let Some(side) = planned.placement.sides.get(&id).copied() else { continue };
            let hosts = place::sites(graph, unit, side, options.adm_per_direction);
            let host_names: Vec<&str> =
                hosts.iter().filter_map(|s| graph.service(s.service)).map(|s| s.name.as_str()).collect();
            let _ = writeln!(out, "\n  unit: {}", unit_label(graph, unit));
            let legal_text: Vec<&str> = unit.sides().into_iter().map(Side::as_str).collect();
            let _ = writeln!(out, "    legal sides: {}", legal_text.join(", "));
            for r in &unit.removed {
                let _ = writeln!(out, "    {} excluded by rule {}: {}", r.side, r.rule.number(), r.reason);
            }
            let _ = writeln!(out, "    placed at {side}, on {}", host_names.join(", "));
            if unit.allows(other(side)) {
                if i < MAX_COUNTERFACTUALS {
                    match counterfactual(checked, options, id, other(side)) {
                        Ok(then) => {
                            let _ = writeln!(
                                out,
                                "    at {} instead: {}",
                                other(side),
                                delta(&planned.placement.objective, &then)
                            );
                        }
                        Err(why) => {
                            let _ = writeln!(out, "    at {} instead: impossible, {why}", other(side));
                        }
                    }
                }
            } else {
                let _ = writeln!(out, "    {} is excluded, so this side was not a choice", other(side));
            }
        }
        if units.len() > MAX_COUNTERFACTUALS {
            let _ =
                writeln!(out, "\n  (the cost of the other side is shown for the first {MAX_COUNTERFACTUALS} units)");
        }
        return Ok(out);
    }
    if let Some(&idx) = graph.service_index.get(name) {
        let mut out = String::new();
        let hosted: Vec<(UnitId, Side)> = planned
            .placement
            .sides
            .iter()
            .filter(|(id, side)| {
                legal.unit(**id).is_some_and(|u| {
                    place::sites(graph, u, **side, options.adm_per_direction).iter().any(|s| s.service == idx)
                })
            })
            .map(|(id, side)| (*id, *side))
            .collect();
        if hosted.is_empty() {
            let _ = writeln!(out, "service `{name}` hosts no ADM: no policy runs there");
            let direct: Vec<String> = graph
                .calls
                .iter()
                .enumerate()
                .filter(|(_, c)| c.from == Node::Service(idx) || c.to == Node::Service(idx))
                .map(|(i, _)| graph.call_name(crate::sema::model::CallIdx(i as u32)))
                .collect();
            if !direct.is_empty() {
                let _ =
                    writeln!(out, "  its calls go direct unless a policy runs at the other end: {}", direct.join(", "));
            }
            return Ok(out);
        }
        let _ = writeln!(
            out,
            "service `{name}` hosts an ADM for {} unit{}:",
            hosted.len(),
            if hosted.len() == 1 { "" } else { "s" }
        );
        let mut movable = 0;
        for (id, side) in &hosted {
            let Some(unit) = legal.unit(*id) else { continue };
            let policy = facts.get(&id.0).map_or("?", |f| f.name.as_str());
            let _ = writeln!(out, "\n  `{policy}`, {}, at {side}", unit_label(graph, unit));
            if unit.allows(other(*side)) {
                movable += 1;
                let elsewhere: Vec<String> =
                    unit.hosts(graph, other(*side)).into_iter().map(|n| graph.node_name(n).to_string()).collect();
                let _ = writeln!(
                    out,
                    "    could run at {} on {}, but the optimum keeps it here",
                    other(*side),
                    elsewhere.join(", ")
                );
            } else {
                for r in unit.removed.iter().filter(|r| r.side == other(*side)) {
                    let _ =
                        writeln!(out, "    cannot move: {} excluded by rule {}: {}", r.side, r.rule.number(), r.reason);
                }
            }
        }
        if movable == hosted.len() {
            let _ = writeln!(
                out,
                "\n  every unit here could move; moving them all costs ADMs elsewhere (see `admc explain POLICY`)"
            );
        }
        return Ok(out);
    }
    let symbols = db::symbols(dbr, program);
    let mut message = format!("`{name}` is neither a policy nor a service of the program");
    let candidates = symbols.names(Namespace::Policy).chain(symbols.names(Namespace::Service));
    if let Some(c) = suggest::closest(name, candidates) {
        let _ = write!(message, "; did you mean `{c}`?");
    }
    Err(message)
}
