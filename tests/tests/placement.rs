//! The optimiser is exact. On thousands of random small programs (≤ 10 services, ≤ 12 policies of
//! random kinds, with pins, ordering dependencies and external edges), the plan's objective equals
//! the lexicographic optimum found by an exhaustive search written here, independently of the
//! compiler's model; and an independent checker accepts every plan: each unit on a legal side,
//! every ordering constraint held, an ADM wherever a policy runs and nowhere else. Both solving
//! paths are tested: enumeration of small components and the 0-1 program (microlp).

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used, reason = "tests fail by panicking")]

use std::collections::{BTreeMap, BTreeSet};

use adm_bench::Rng;
use adm_syntax::ast::Side;
use admc::db;
use admc::place::{PlaceOptions, Status};
use admc::sema::model::{Node, Unit};
use admc::Sources;

fn random_program(rng: &mut Rng) -> String {
    let n = 2 + rng.below(9);
    let mut out = String::new();
    let mut externals = Vec::new();
    for i in 0..n {
        let ext = match rng.below(10) {
            0 => ", external: ingress",
            1 => ", external: egress",
            2 => ", external: both",
            _ => "",
        };
        if !ext.is_empty() {
            externals.push(i);
        }
        let cost = if rng.chance(20) { format!(", adm_cost: {}", rng.below(3)) } else { String::new() };
        out.push_str(&format!("service s{i} {{ port: {}{ext}{cost} }}\n", 1000 + i));
    }
    let mut calls: Vec<(usize, usize, bool)> = Vec::new();
    for a in 0..n {
        for b in 0..n {
            if a != b && rng.chance(25) {
                let methods = rng.chance(40);
                calls.push((a, b, methods));
                let m = if methods { "methods: [Get, Put], " } else { "" };
                out.push_str(&format!("call s{a} -> s{b} {{ {m}rate: {}/s }}\n", 1 + rng.below(100)));
            }
        }
    }
    if calls.is_empty() {
        return out;
    }
    let kinds = [
        "allow(from: [s0])",
        "deny(from: [s1])",
        "rate_limit(limit: 10/s)",
        "retry(attempts: 2, per_try_timeout: 10ms)",
        "timeout(after: 100ms)",
        "circuit_breaker(max_pending: 1, consecutive_errors: 1, eject_for: 1s)",
        "load_balance(algorithm: random)",
        "set_header(name: \"x-a\", value: \"1\")",
        "require_header(name: \"x-a\")",
        "fault(abort: 1%)",
        "access_log()",
        "mirror(to: s0)",
    ];
    for p in 0..1 + rng.below(12) {
        let kind = kinds[rng.below(kinds.len())];
        let mut selectors = Vec::new();
        for _ in 0..1 + rng.below(2) {
            let (a, b, methods) = calls[rng.below(calls.len())];
            let method = if methods && rng.chance(30) { ".Get" } else { "" };
            let sel = match rng.below(8) {
                0 => format!("* -> s{b}{method}"),
                1 => format!("s{a} -> *"),
                2 if !externals.is_empty() => format!("external -> s{}", externals[rng.below(externals.len())]),
                3 if !externals.is_empty() => format!("s{} -> external", externals[rng.below(externals.len())]),
                _ => format!("s{a} -> s{b}{method}"),
            };
            selectors.push(sel);
        }
        let pin = match rng.below(10) {
            0 => " at ingress",
            1 => " at egress",
            _ => "",
        };
        out.push_str(&format!("policy p{p} = {kind} on {}{pin}\n", selectors.join(", ")));
    }
    out
}

type UnitId = ((u32, u32), u32);

/// The lexicographic optimum (ADM cost, traffic) over every assignment of legal sides that keeps
/// the ordering constraints, computed from the units' calls directly.
fn exhaustive(
    units: &BTreeMap<UnitId, &Unit>,
    constraints: &[(UnitId, UnitId)],
    graph: &admc::sema::model::CallGraph,
    per_dir: bool,
) -> Option<(f64, f64)> {
    let ids: Vec<UnitId> = units.keys().copied().collect();
    let choices: Vec<Vec<Side>> = ids.iter().map(|id| units[id].sides()).collect();
    let total: usize = choices.iter().map(Vec::len).product();
    assert!(total <= 1 << 16, "too many assignments to enumerate: {total}");
    let mut best: Option<(f64, f64)> = None;
    for mut k in 0..total {
        let mut side: BTreeMap<UnitId, Side> = BTreeMap::new();
        for (id, c) in ids.iter().zip(&choices) {
            side.insert(*id, c[k % c.len()]);
            k /= c.len();
        }
        if constraints.iter().any(|(p, q)| side[p] == Side::Ingress && side[q] == Side::Egress) {
            continue;
        }
        let mut sites: BTreeSet<(usize, Option<Side>)> = BTreeSet::new();
        let mut through: BTreeMap<usize, (bool, bool)> = BTreeMap::new();
        for (id, s) in &side {
            for c in &units[id].calls {
                let edge = graph.call(*c).unwrap();
                let host = if *s == Side::Ingress { edge.to } else { edge.from };
                if let Node::Service(h) = host {
                    sites.insert((h.0 as usize, per_dir.then_some(*s)));
                }
                let t = through.entry(c.0 as usize).or_default();
                if *s == Side::Ingress {
                    t.0 = true;
                } else {
                    t.1 = true;
                }
            }
        }
        let cost: f64 = sites.iter().map(|(h, _)| f64::from(graph.services[*h].adm_cost)).sum();
        let traffic: f64 = through
            .iter()
            .map(|(c, (i, e))| graph.calls[*c].rate.per_second() * f64::from(u8::from(*i) + u8::from(*e)))
            .sum();
        let better = best.is_none_or(|(bc, bt)| cost < bc - 1e-9 || (cost < bc + 1e-9 && traffic < bt - 1e-9));
        if better {
            best = Some((cost, traffic));
        }
    }
    best
}

/// The independent plan checker: every unit on a legal side, every ordering constraint held, an
/// ADM wherever a policy runs and nowhere else, and the reported objective recomputed.
fn check_plan(checked: &admc::Checked, planned: &admc::plan::Planned, per_dir: bool, text: &str) {
    let (dbr, program) = (&checked.db, checked.program);
    let graph = db::call_graph(dbr, program);
    let legal = db::legal_sides(dbr, program);
    let units: BTreeMap<UnitId, &Unit> =
        legal.units.iter().flat_map(|(o, us)| us.iter().enumerate().map(move |(i, u)| ((*o, i as u32), u))).collect();
    let p = &planned.placement;
    assert_eq!(p.sides.len(), units.len(), "every unit is placed\n{text}");
    let mut adms = BTreeSet::new();
    let mut through: BTreeMap<u32, (bool, bool)> = BTreeMap::new();
    for (id, side) in &p.sides {
        let unit = units[id];
        assert!(unit.allows(*side), "unit {id:?} on an excluded side\n{text}");
        for c in &unit.calls {
            let edge = graph.call(*c).unwrap();
            if let Node::Service(h) = if *side == Side::Ingress { edge.to } else { edge.from } {
                adms.insert((h, per_dir.then_some(*side)));
            }
            let t = through.entry(c.0).or_default();
            if *side == Side::Ingress {
                t.0 = true;
            } else {
                t.1 = true;
            }
        }
    }
    for k in &legal.constraints {
        assert!(
            !(p.sides[&k.earlier] == Side::Ingress && p.sides[&k.later] == Side::Egress),
            "ordering broken: {:?} {:?}\n{text}",
            k.earlier,
            k.later
        );
    }
    let planned_adms: BTreeSet<_> = p.adms.iter().map(|s| (s.service, s.direction)).collect();
    assert_eq!(planned_adms, adms, "ADMs are exactly where policies run\n{text}");
    let cost: f64 = adms.iter().map(|(h, _)| f64::from(graph.services[h.0 as usize].adm_cost)).sum();
    let traffic: f64 = through
        .iter()
        .map(|(c, (i, e))| graph.calls[*c as usize].rate.per_second() * f64::from(u8::from(*i) + u8::from(*e)))
        .sum();
    assert!((p.objective.adm_cost - cost).abs() < 1e-9 && (p.objective.traffic - traffic).abs() < 1e-6, "{text}");
    assert_eq!(planned.file.objective.adms, adms.len());
}

/// The checker accepts the plan of every example, in both counting modes.
#[test]
fn example_plans_pass_the_independent_checker() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    for example in ["hotel-reservation", "bookinfo"] {
        let sources = Sources::load(&[root.join(example)]).unwrap();
        let checked = admc::check(&sources);
        for per_dir in [false, true] {
            let options = PlaceOptions { adm_per_direction: per_dir, ..PlaceOptions::default() };
            let planned = admc::plan::plan(&checked, &options, None);
            assert_eq!(planned.placement.status, Status::Optimal);
            check_plan(&checked, &planned, per_dir, example);
        }
    }
}

#[test]
fn plans_are_optimal_and_valid_on_random_programs() {
    let mut rng = Rng(20261126);
    let mut tested = 0;
    let mut attempts = 0;
    let mut ilp_components = 0;
    while tested < 2000 {
        attempts += 1;
        assert!(attempts < 40_000, "the generator makes too few valid programs ({tested} of {attempts})");
        let text = random_program(&mut rng);
        let mut sources = Sources::new();
        sources.add("random.adm", text.clone());
        let checked = admc::check(&sources);
        if checked.errors() > 0 {
            continue;
        }
        let (dbr, program) = (&checked.db, checked.program);
        let graph = db::call_graph(dbr, program);
        let legal = db::legal_sides(dbr, program);
        let units: BTreeMap<UnitId, &Unit> = legal
            .units
            .iter()
            .flat_map(|(o, us)| us.iter().enumerate().map(move |(i, u)| ((*o, i as u32), u)))
            .collect();
        if units.values().map(|u| u.sides().len()).product::<usize>() > 1 << 14 {
            continue;
        }
        let constraints: Vec<(UnitId, UnitId)> = legal.constraints.iter().map(|k| (k.earlier, k.later)).collect();
        let per_dir = rng.chance(30);
        let best = exhaustive(&units, &constraints, graph, per_dir).expect("all-ingress is always feasible");
        for max_enumerated_sites in [0, admc::place::cover::ENUMERATION_LIMIT] {
            let options = PlaceOptions { adm_per_direction: per_dir, max_enumerated_sites, ..PlaceOptions::default() };
            let planned = admc::plan::plan(&checked, &options, None);
            let p = &planned.placement;
            ilp_components += p.stats.ilp_components;
            assert_eq!(p.status, Status::Optimal, "{text}");
            assert!(
                (p.objective.adm_cost - best.0).abs() < 1e-9 && (p.objective.traffic - best.1).abs() < 1e-6,
                "not optimal (enumerate ≤ {max_enumerated_sites}, per direction {per_dir}): plan {:?}, exhaustive {best:?}\n{text}",
                p.objective
            );
            check_plan(&checked, &planned, per_dir, &text);
        }
        tested += 1;
    }
    // Most random programs reduce completely; the cycles that remain go through the solver.
    assert!(ilp_components >= 25, "the 0-1 program path was barely exercised: {ilp_components}");
}

/// Same input, same plan, byte for byte.
#[test]
fn plans_are_deterministic() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hotel-reservation");
    let sources = Sources::load(&[dir]).unwrap();
    let render = || {
        let checked = admc::check(&sources);
        let planned = admc::plan::plan(&checked, &PlaceOptions::default(), None);
        admc::emit::artifacts(&checked, &planned)
    };
    assert_eq!(render(), render());
}
