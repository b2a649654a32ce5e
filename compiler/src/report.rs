//! Plain-text views of what the checker derived, for people and for snapshot tests.

use adm_syntax::ast::SmolStr;
use std::fmt::Write;

use crate::db;
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
            let key = crate::plan::unit_label(graph, unit);
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
            let name = |o| names.get(&o).map_or("?", SmolStr::as_str);
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

fn thousands(x: f64) -> String {
    let whole = x.round() as i64;
    let s = whole.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if whole < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// The `admc plan` table: each policy's units, the ADMs, and the objective against the baselines.
pub fn plan_table(plan: &adm_artifacts::PlanFile) -> String {
    use adm_artifacts::Direction;
    let dir = |d: Direction| if d == Direction::Ingress { "ingress" } else { "egress" };
    let mut rows: Vec<[String; 4]> = vec![["policy".into(), "unit".into(), "side".into(), "runs at".into()]];
    for p in &plan.policies {
        for (i, u) in p.units.iter().enumerate() {
            let name = if i == 0 { format!("{} ({})", p.name, p.kind) } else { String::new() };
            let side =
                if u.legal_sides.len() == 1 { format!("{} (only)", dir(u.side)) } else { dir(u.side).to_string() };
            rows.push([name, u.unit.clone(), side, u.hosts.join(", ")]);
        }
    }
    let widths: Vec<usize> = (0..3).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in &rows {
        let _ = writeln!(
            out,
            "{:w0$}  {:w1$}  {:w2$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
    }
    let names: Vec<String> = plan
        .adms
        .iter()
        .map(|a| match a.direction {
            Some(d) => format!("{}/{}", a.service, dir(d)),
            None => a.service.clone(),
        })
        .collect();
    let _ = writeln!(
        out,
        "\nADMs ({}): {}",
        names.len(),
        if names.is_empty() { "none".to_string() } else { names.join(", ") }
    );
    let status = if plan.status.optimal {
        "optimal".to_string()
    } else {
        format!(
            "best found, not proven optimal: ADM cost >= {}, gap {:.2}%",
            plan.status.lower_bound_adm_cost.unwrap_or(0.0),
            plan.status.gap.unwrap_or(0.0) * 100.0
        )
    };
    let _ = writeln!(out, "\n{:<28} {:>10} {:>6} {:>16}", "", "ADM cost", "ADMs", "traffic (req/s)");
    let line = |out: &mut String, label: &str, o: &adm_artifacts::ObjectiveValues, note: &str| {
        let _ = writeln!(
            out,
            "{label:<28} {:>10} {:>6} {:>16}{note}",
            thousands(o.adm_cost),
            o.adms,
            thousands(o.traffic_rps)
        );
    };
    line(&mut out, &format!("this plan ({status})"), &plan.objective, "");
    let s = &plan.baselines.static_placement;
    let note = if s.ordering_violations > 0 {
        format!("  (runs {} policy pairs out of declared order)", s.ordering_violations)
    } else {
        String::new()
    };
    line(&mut out, "static placement", &s.objective, &note);
    line(&mut out, "sidecar at every service", &plan.baselines.sidecar, "");
    let v = &plan.solver;
    let _ = writeln!(
        out,
        "\nsolver: {} units ({} with one legal side); {} ADM sites forced, {} settled by exact reductions; {} components left (largest {} sites): {} enumerated, {} by {}",
        v.units,
        v.fixed_units,
        v.forced_sites,
        v.reduced_sites,
        v.components,
        v.largest_component,
        v.enumerated_components,
        v.ilp_components,
        v.backend
    );
    out
}
