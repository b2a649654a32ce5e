//! `admc plan`: the checked program placed, with its baselines, as the data of `plan.json`.

use std::collections::BTreeMap;

use adm_artifacts::{
    AdmEntry, AdmMode, Baselines, Direction, ObjectiveValues, PlanFile, PlanStatus, PolicyPlan, SolverStats,
    StaticBaseline, UnitPlan, SCHEMA_VERSION,
};
use adm_syntax::ast::Side;

use crate::db;
use crate::place::{self, baseline, Objective, PlaceOptions, Placement, Progress, Status, UnitId};
use crate::sema::model::{CallGraph, PolicyFacts, PolicyOrder, Unit, UnitKey};
use crate::Checked;

/// A placed program: the placement, the static baseline's sides, and the plan as data.
pub struct Planned {
    pub placement: Placement,
    pub static_sides: BTreeMap<UnitId, Side>,
    pub file: PlanFile,
}

pub fn direction(side: Side) -> Direction {
    match side {
        Side::Ingress => Direction::Ingress,
        Side::Egress => Direction::Egress,
    }
}

fn values(o: &Objective) -> ObjectiveValues {
    ObjectiveValues { adm_cost: o.adm_cost, adms: o.adms, traffic_rps: o.traffic }
}

pub fn unit_label(graph: &CallGraph, unit: &Unit) -> String {
    match unit.key {
        UnitKey::Call(c) => format!("call {}", graph.call_name(c)),
        UnitKey::Receiver(n) => format!("calls into {}", graph.node_name(n)),
        UnitKey::Sender(n) => format!("calls out of {}", graph.node_name(n)),
    }
}

/// Every placeable policy's facts, by order.
pub fn facts(checked: &Checked) -> BTreeMap<PolicyOrder, &PolicyFacts> {
    let (db, program) = (&checked.db, checked.program);
    db::policies(db, program)
        .iter()
        .filter_map(|&(pos, item)| db::policy_facts(db, program, pos, item).map(|f| ((pos, item), f)))
        .collect()
}

/// Places a checked program. The program must have no errors.
pub fn plan(checked: &Checked, options: &PlaceOptions, progress: Option<&Progress>) -> Planned {
    let (db, program) = (&checked.db, checked.program);
    let graph = db::call_graph(db, program);
    let legal = db::legal_sides(db, program);
    let per_dir = options.adm_per_direction;
    let placement = place::place(graph, legal, options, progress);
    let facts = facts(checked);
    let (static_objective, static_sides, violations) = baseline::static_placement(graph, legal, &facts, per_dir);

    let mut policies = Vec::new();
    let mut adm_policies: BTreeMap<place::Site, Vec<String>> = BTreeMap::new();
    for (order, units) in &legal.units {
        let Some(f) = facts.get(order) else { continue };
        let mut planned = Vec::new();
        for (i, unit) in units.iter().enumerate() {
            let Some(side) = placement.sides.get(&(*order, i as u32)).copied() else { continue };
            let hosts = place::sites(graph, unit, side, per_dir);
            for site in &hosts {
                let list = adm_policies.entry(*site).or_default();
                if !list.iter().any(|n| *n == f.name) {
                    list.push(f.name.to_string());
                }
            }
            planned.push(UnitPlan {
                unit: unit_label(graph, unit),
                calls: unit.calls.iter().map(|c| graph.call_name(*c)).collect(),
                legal_sides: unit.sides().into_iter().map(direction).collect(),
                side: direction(side),
                hosts: hosts.iter().filter_map(|s| graph.service(s.service)).map(|s| s.name.to_string()).collect(),
            });
        }
        policies.push(PolicyPlan { name: f.name.to_string(), kind: f.kind.to_string(), units: planned });
    }
    let adms = placement
        .adms
        .iter()
        .map(|site| AdmEntry {
            service: graph.service(site.service).map_or_else(String::new, |s| s.name.to_string()),
            direction: site.direction.map(direction),
            policies: adm_policies.get(site).cloned().unwrap_or_default(),
        })
        .collect();
    let status = match &placement.status {
        Status::Optimal => PlanStatus { optimal: true, lower_bound_adm_cost: None, gap: None },
        Status::TimeLimit { bound } => {
            let cost = placement.objective.adm_cost;
            let gap = if cost > 0.0 { (cost - bound).max(0.0) / cost } else { 0.0 };
            PlanStatus { optimal: false, lower_bound_adm_cost: Some(*bound), gap: Some(gap) }
        }
    };
    let s = &placement.stats;
    let file = PlanFile {
        schema_version: SCHEMA_VERSION,
        app: app_name(checked),
        mode: if per_dir { AdmMode::PerDirection } else { AdmMode::PerService },
        status,
        objective: values(&placement.objective),
        baselines: Baselines {
            sidecar: values(&baseline::sidecar(graph, per_dir)),
            static_placement: StaticBaseline { objective: values(&static_objective), ordering_violations: violations },
        },
        adms,
        policies,
        solver: SolverStats {
            backend: "microlp".to_string(),
            units: s.units,
            fixed_units: s.fixed_units,
            free_units: s.free_units,
            forced_sites: s.forced_sites,
            reduced_sites: s.reduced_sites,
            components: s.components,
            largest_component: s.largest_component,
            enumerated_components: s.enumerated_components,
            ilp_components: s.ilp_components,
        },
    };
    Planned { placement, static_sides, file }
}

fn app_name(checked: &Checked) -> Option<String> {
    let (db, program) = (&checked.db, checked.program);
    program.files(db).iter().find_map(|f| {
        db::parse_file(db, *f).file.items.iter().find_map(|i| match &i.kind {
            adm_syntax::ast::ItemKind::App(a) => Some(a.name.text.to_string()),
            _ => None,
        })
    })
}
