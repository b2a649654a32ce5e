//! Placement: for every unit, the side that lets the mesh run with the fewest ADMs and then the
//! least traffic through them — solved exactly.
//!
//! Scale comes from structure first: presolve fixes every unit with one legal side and the ADMs it
//! forces; units whose hosts are all forced then only move traffic; the rest splits into
//! independent components (units linked by a shared unforced ADM site, a shared call, or an
//! ordering constraint). Small components are solved by exhaustive enumeration, larger ones by
//! the 0-1 program of [`model`] through [`solve`], lexicographically (ADM cost, then traffic).

pub mod baseline;
pub mod model;
pub mod solve;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use adm_syntax::ast::Side;

use crate::sema::model::{CallGraph, CallIdx, Node, PolicyOrder, ServiceIdx, Unit};
use crate::sema::sides::LegalSides;
use model::{lp_name, Cmp, Component, Constraint, Model, Var, VarKind};

/// How ADMs are counted and how long the solver may search.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PlaceOptions {
    /// Count ingress and egress ADMs apart (a strict reading of the ADM paper).
    pub adm_per_direction: bool,
    /// A budget for the whole solve; past it the best plan found is returned, marked not optimal.
    pub time_limit: Option<Duration>,
    /// Components with at most this many free units are solved by enumeration, larger ones by the
    /// 0-1 program (tests set 0 to put every component through the solver).
    pub max_enumerated_units: usize,
}

impl Default for PlaceOptions {
    fn default() -> Self {
        PlaceOptions { adm_per_direction: false, time_limit: None, max_enumerated_units: ENUMERATION_LIMIT }
    }
}

/// Where an ADM runs: a service, and in per-direction mode the direction it handles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Site {
    pub service: ServiceIdx,
    pub direction: Option<Side>,
}

/// A unit, by its policy and index among the policy's units.
pub type UnitId = (PolicyOrder, u32);

/// Whether the plan is proven optimal.
#[derive(Clone, Debug, PartialEq)]
pub enum Status {
    Optimal,
    /// The time limit stopped the search: `bound` is a lower bound on the ADM cost.
    TimeLimit {
        bound: f64,
    },
}

/// Objective values of a placement (or a baseline).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Objective {
    pub adm_cost: f64,
    pub adms: usize,
    /// Requests per second passing through ADMs (a call counts once per ADM it traverses).
    pub traffic: f64,
}

/// Numbers about the solve; all deterministic (no timings).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Stats {
    pub units: usize,
    pub fixed_units: usize,
    pub free_units: usize,
    pub forced_sites: usize,
    pub components: usize,
    pub largest_component: usize,
    pub enumerated_components: usize,
    pub ilp_components: usize,
}

/// The solved placement.
#[derive(Clone, Debug, PartialEq)]
pub struct Placement {
    pub sides: BTreeMap<UnitId, Side>,
    pub adms: BTreeSet<Site>,
    pub objective: Objective,
    pub status: Status,
    pub stats: Stats,
    pub model: Model,
}

/// Free units up to this many are solved by enumeration (2^14 assignments at most).
pub const ENUMERATION_LIMIT: usize = 14;

/// The sites a unit needs on a side.
pub fn sites(graph: &CallGraph, unit: &Unit, side: Side, per_direction: bool) -> Vec<Site> {
    unit.hosts(graph, side)
        .into_iter()
        .filter_map(|n| match n {
            Node::Service(s) => Some(Site { service: s, direction: per_direction.then_some(side) }),
            Node::External => None,
        })
        .collect()
}

/// The ADM cost of a site.
pub fn site_cost(graph: &CallGraph, site: Site) -> f64 {
    graph.service(site.service).map_or(1.0, |s| f64::from(s.adm_cost))
}

pub fn rate(graph: &CallGraph, call: CallIdx) -> f64 {
    graph.call(call).map_or(0.0, |c| c.rate.per_second())
}

/// One component being built.
#[derive(Default)]
struct Part {
    units: Vec<UnitId>,
    sites: BTreeSet<Site>,
    calls: BTreeSet<CallIdx>,
    constraints: Vec<(UnitId, UnitId)>,
}

struct UnionFind(Vec<usize>);

impl UnionFind {
    fn find(&mut self, mut i: usize) -> usize {
        while self.0[i] != i {
            self.0[i] = self.0[self.0[i]];
            i = self.0[i];
        }
        i
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.0[ra.max(rb)] = ra.min(rb);
        }
    }
}

/// Progress for long solves, printed by [`solve::Progress`].
pub use solve::Progress;

/// Places every unit. The program must have no unit without a legal side (E0400).
pub fn place(graph: &CallGraph, legal: &LegalSides, options: &PlaceOptions, progress: Option<&Progress>) -> Placement {
    let started = Instant::now();
    let per_dir = options.adm_per_direction;
    let units: BTreeMap<UnitId, &Unit> = legal
        .units
        .iter()
        .flat_map(|(order, us)| us.iter().enumerate().map(move |(i, u)| ((*order, i as u32), u)))
        .collect();
    let mut sides: BTreeMap<UnitId, Side> = BTreeMap::new();
    let mut forced: BTreeSet<Site> = BTreeSet::new();
    let mut forced_in: BTreeSet<CallIdx> = BTreeSet::new();
    let mut forced_eg: BTreeSet<CallIdx> = BTreeSet::new();
    let mut free: Vec<UnitId> = Vec::new();
    for (id, unit) in &units {
        match (unit.ingress, unit.egress) {
            (true, true) => free.push(*id),
            (true, false) | (false, true) => {
                let side = if unit.ingress { Side::Ingress } else { Side::Egress };
                sides.insert(*id, side);
                forced.extend(sites(graph, unit, side, per_dir));
                let set = if side == Side::Ingress { &mut forced_in } else { &mut forced_eg };
                set.extend(unit.calls.iter().copied());
            }
            // Unplaceable: reported as E0400; planning refuses such programs before this.
            (false, false) => {}
        }
    }
    let fixed_cost: f64 = forced.iter().map(|s| site_cost(graph, *s)).sum();
    let all_calls: BTreeSet<CallIdx> = units.values().flat_map(|u| u.calls.iter().copied()).collect();
    let fixed_traffic: f64 = all_calls
        .iter()
        .map(|c| {
            rate(graph, *c) * (f64::from(u8::from(forced_in.contains(c))) + f64::from(u8::from(forced_eg.contains(c))))
        })
        .sum();

    // Components of the free units.
    let index: BTreeMap<UnitId, usize> = free.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let mut uf = UnionFind((0..free.len()).collect());
    let mut by_site: BTreeMap<Site, usize> = BTreeMap::new();
    let mut by_call: BTreeMap<CallIdx, usize> = BTreeMap::new();
    for (i, id) in free.iter().enumerate() {
        let unit = units[id];
        for side in [Side::Ingress, Side::Egress] {
            for s in sites(graph, unit, side, per_dir) {
                if forced.contains(&s) {
                    continue;
                }
                let first = *by_site.entry(s).or_insert(i);
                uf.union(first, i);
            }
        }
        for c in &unit.calls {
            if forced_in.contains(c) && forced_eg.contains(c) {
                continue;
            }
            let first = *by_call.entry(*c).or_insert(i);
            uf.union(first, i);
        }
    }
    let mut constraints = Vec::new();
    for k in &legal.constraints {
        if let (Some(&a), Some(&b)) = (index.get(&k.earlier), index.get(&k.later)) {
            uf.union(a, b);
            constraints.push((k.earlier, k.later));
        }
    }
    let mut parts: BTreeMap<usize, Part> = BTreeMap::new();
    for (i, id) in free.iter().enumerate() {
        let root = uf.find(i);
        let part = parts.entry(root).or_default();
        part.units.push(*id);
        let unit = units[id];
        for side in [Side::Ingress, Side::Egress] {
            part.sites.extend(sites(graph, unit, side, per_dir).into_iter().filter(|s| !forced.contains(s)));
        }
        part.calls.extend(unit.calls.iter().copied().filter(|c| !(forced_in.contains(c) && forced_eg.contains(c))));
    }
    for (p, q) in constraints {
        if let Some(&i) = index.get(&p) {
            let root = uf.find(i);
            if let Some(part) = parts.get_mut(&root) {
                part.constraints.push((p, q));
            }
        }
    }

    // The model of every component, then its solution.
    let mut model = Model { fixed_cost, fixed_traffic, ..Model::default() };
    let mut stats = Stats {
        units: units.len(),
        fixed_units: units.len() - free.len(),
        free_units: free.len(),
        forced_sites: forced.len(),
        components: parts.len(),
        largest_component: parts.values().map(|p| p.units.len()).max().unwrap_or(0),
        ..Stats::default()
    };
    let mut bound_total = fixed_cost;
    let mut optimal = true;
    if let Some(p) = progress {
        p.start(parts.len());
    }
    for part in parts.values() {
        let built = build_component(&mut model, graph, &units, part, &forced_in, &forced_eg, per_dir);
        let remaining = options.time_limit.map(|t| t.saturating_sub(started.elapsed()));
        let solved = if part.units.len() <= options.max_enumerated_units.min(ENUMERATION_LIMIT) {
            stats.enumerated_components += 1;
            enumerate(graph, &units, part, &forced_in, &forced_eg, per_dir)
        } else {
            stats.ilp_components += 1;
            solve::solve_component(&model, &built.component, &built.unit_vars, remaining)
        };
        bound_total += solved.bound;
        optimal &= solved.optimal;
        for (id, side) in part.units.iter().zip(&solved.sides) {
            sides.insert(*id, *side);
        }
        model.components.push(built.component);
        if let Some(p) = progress {
            p.done_one();
        }
    }

    // The plan's ADMs and objective, recomputed from the chosen sides (the solver's values are
    // not trusted).
    let objective = evaluate(graph, &units, &sides, per_dir);
    let adms = adm_sites(graph, &units, &sides, per_dir);
    let status = if optimal { Status::Optimal } else { Status::TimeLimit { bound: bound_total } };
    Placement { sides, adms, objective, status, stats, model }
}

/// The ADM sites a placement needs.
pub fn adm_sites(
    graph: &CallGraph,
    units: &BTreeMap<UnitId, &Unit>,
    sides: &BTreeMap<UnitId, Side>,
    per_dir: bool,
) -> BTreeSet<Site> {
    let mut adms = BTreeSet::new();
    for (id, side) in sides {
        if let Some(unit) = units.get(id) {
            adms.extend(sites(graph, unit, *side, per_dir));
        }
    }
    adms
}

/// The objective of a placement: ADM cost and count, and the traffic through ADMs.
pub fn evaluate(
    graph: &CallGraph,
    units: &BTreeMap<UnitId, &Unit>,
    sides: &BTreeMap<UnitId, Side>,
    per_dir: bool,
) -> Objective {
    let adms = adm_sites(graph, units, sides, per_dir);
    let mut through: BTreeMap<CallIdx, (bool, bool)> = BTreeMap::new();
    for (id, side) in sides {
        let Some(unit) = units.get(id) else { continue };
        for c in &unit.calls {
            let e = through.entry(*c).or_default();
            match side {
                Side::Ingress => e.0 = true,
                Side::Egress => e.1 = true,
            }
        }
    }
    let traffic = through.iter().map(|(c, (i, e))| rate(graph, *c) * f64::from(u8::from(*i) + u8::from(*e))).sum();
    Objective { adm_cost: adms.iter().map(|s| site_cost(graph, *s)).sum(), adms: adms.len(), traffic }
}

/// A component's solution: a side per unit (in `Part::units` order), and what is proven.
pub struct Solved {
    pub sides: Vec<Side>,
    pub optimal: bool,
    /// Lower bound on the component's ADM cost (its optimum when `optimal`).
    pub bound: f64,
}

/// Exhaustive search of a small component, lexicographic (cost, then traffic); ties go to the
/// first assignment in counting order, so the result is deterministic.
fn enumerate(
    graph: &CallGraph,
    units: &BTreeMap<UnitId, &Unit>,
    part: &Part,
    forced_in: &BTreeSet<CallIdx>,
    forced_eg: &BTreeSet<CallIdx>,
    per_dir: bool,
) -> Solved {
    let n = part.units.len();
    let pos: BTreeMap<UnitId, usize> = part.units.iter().enumerate().map(|(i, u)| (*u, i)).collect();
    let cons: Vec<(usize, usize)> =
        part.constraints.iter().filter_map(|(p, q)| Some((*pos.get(p)?, *pos.get(q)?))).collect();
    // Per unit and side: the unforced sites it needs, and the unforced traversals it causes.
    let site_index: BTreeMap<Site, usize> = part.sites.iter().enumerate().map(|(i, s)| (*s, i)).collect();
    let call_index: BTreeMap<CallIdx, usize> = part.calls.iter().enumerate().map(|(i, c)| (*c, i)).collect();
    let site_costs: Vec<f64> = part.sites.iter().map(|s| site_cost(graph, *s)).collect();
    let call_rates: Vec<f64> = part.calls.iter().map(|c| rate(graph, *c)).collect();
    let needs: Vec<[Vec<usize>; 2]> = part
        .units
        .iter()
        .map(|id| {
            let unit = units[id];
            [Side::Ingress, Side::Egress].map(|side| {
                sites(graph, unit, side, per_dir).iter().filter_map(|s| site_index.get(s).copied()).collect()
            })
        })
        .collect();
    let calls_of: Vec<Vec<usize>> = part
        .units
        .iter()
        .map(|id| units[id].calls.iter().filter_map(|c| call_index.get(c).copied()).collect())
        .collect();
    let mut best: Option<(f64, f64, u32)> = None;
    let mut used_sites = vec![false; site_costs.len()];
    let mut through = vec![(false, false); call_rates.len()];
    for mask in 0..(1u32 << n) {
        // bit i set = unit i at ingress
        if cons.iter().any(|(p, q)| mask >> p & 1 == 1 && mask >> q & 1 == 0) {
            continue;
        }
        used_sites.iter_mut().for_each(|u| *u = false);
        through.iter_mut().for_each(|t| *t = (false, false));
        for i in 0..n {
            let ingress = mask >> i & 1 == 1;
            for s in &needs[i][usize::from(!ingress)] {
                used_sites[*s] = true;
            }
            for c in &calls_of[i] {
                if ingress {
                    through[*c].0 = true;
                } else {
                    through[*c].1 = true;
                }
            }
        }
        let cost: f64 = used_sites.iter().zip(&site_costs).filter(|(u, _)| **u).map(|(_, c)| c).sum();
        let traffic: f64 = part
            .calls
            .iter()
            .zip(&through)
            .zip(&call_rates)
            .map(|((c, (i, e)), r)| {
                let i = *i && !forced_in.contains(c);
                let e = *e && !forced_eg.contains(c);
                r * f64::from(u8::from(i) + u8::from(e))
            })
            .sum();
        let better = match best {
            None => true,
            Some((bc, bt, _)) => cost < bc - 1e-9 || (cost <= bc + 1e-9 && traffic < bt - 1e-9),
        };
        if better {
            best = Some((cost, traffic, mask));
        }
    }
    // All-ingress always satisfies the ordering constraints, so `best` is set.
    let (cost, _, mask) = best.unwrap_or((0.0, 0.0, (1u32 << n) - 1));
    Solved {
        sides: (0..n).map(|i| if mask >> i & 1 == 1 { Side::Ingress } else { Side::Egress }).collect(),
        optimal: true,
        bound: cost,
    }
}

/// A component's part of the model.
struct Built {
    component: Component,
    /// The side variable of each unit, in `Part::units` order.
    unit_vars: Vec<Var>,
}

fn build_component(
    model: &mut Model,
    graph: &CallGraph,
    units: &BTreeMap<UnitId, &Unit>,
    part: &Part,
    forced_in: &BTreeSet<CallIdx>,
    forced_eg: &BTreeSet<CallIdx>,
    per_dir: bool,
) -> Built {
    let k = model.components.len();
    let mut comp = Component::default();
    let mut unit_vars = Vec::new();
    let mut var_of: BTreeMap<UnitId, Var> = BTreeMap::new();
    for (j, id) in part.units.iter().enumerate() {
        let v = model.add_var(format!("x{k}_{j}_p{}_{}_u{}", id.0 .0, id.0 .1, id.1), VarKind::UnitSide);
        comp.vars.push(v);
        unit_vars.push(v);
        var_of.insert(*id, v);
    }
    let mut site_var: BTreeMap<Site, Var> = BTreeMap::new();
    for s in &part.sites {
        let name = graph.service(s.service).map_or("?", |d| d.name.as_str());
        let dir = match s.direction {
            None => "",
            Some(Side::Ingress) => "in",
            Some(Side::Egress) => "out",
        };
        let v = model.add_var(lp_name("adm", &[name, dir]), VarKind::Adm);
        comp.vars.push(v);
        comp.cost.push((site_cost(graph, *s), v));
        site_var.insert(*s, v);
    }
    let mut trav: BTreeMap<(CallIdx, Side), Var> = BTreeMap::new();
    for c in &part.calls {
        let r = rate(graph, *c);
        for (side, forced) in [(Side::Ingress, forced_in), (Side::Egress, forced_eg)] {
            if forced.contains(c) {
                continue;
            }
            let tag = if side == Side::Ingress { "in" } else { "out" };
            let v = model.add_var(format!("t{k}_c{}_{tag}", c.0), VarKind::Traverse);
            comp.vars.push(v);
            comp.traffic.push((r, v));
            trav.insert((*c, side), v);
        }
    }
    for id in &part.units {
        let (x, unit) = (var_of[id], units[id]);
        for s in sites(graph, unit, Side::Ingress, per_dir) {
            if let Some(&y) = site_var.get(&s) {
                comp.constraints.push(Constraint {
                    terms: vec![(1.0, y), (-1.0, x)],
                    cmp: Cmp::Ge,
                    rhs: 0.0,
                    name: format!("host_{}_{}", model.name(y), model.name(x)),
                });
            }
        }
        for s in sites(graph, unit, Side::Egress, per_dir) {
            if let Some(&y) = site_var.get(&s) {
                comp.constraints.push(Constraint {
                    terms: vec![(1.0, y), (1.0, x)],
                    cmp: Cmp::Ge,
                    rhs: 1.0,
                    name: format!("host_{}_{}", model.name(y), model.name(x)),
                });
            }
        }
        for c in &unit.calls {
            if let Some(&t) = trav.get(&(*c, Side::Ingress)) {
                comp.constraints.push(Constraint {
                    terms: vec![(1.0, t), (-1.0, x)],
                    cmp: Cmp::Ge,
                    rhs: 0.0,
                    name: format!("pass_{}_{}", model.name(t), model.name(x)),
                });
            }
            if let Some(&t) = trav.get(&(*c, Side::Egress)) {
                comp.constraints.push(Constraint {
                    terms: vec![(1.0, t), (1.0, x)],
                    cmp: Cmp::Ge,
                    rhs: 1.0,
                    name: format!("pass_{}_{}", model.name(t), model.name(x)),
                });
            }
        }
    }
    for (p, q) in &part.constraints {
        if let (Some(&xp), Some(&xq)) = (var_of.get(p), var_of.get(q)) {
            comp.constraints.push(Constraint {
                terms: vec![(1.0, xq), (-1.0, xp)],
                cmp: Cmp::Ge,
                rhs: 0.0,
                name: format!("order_{}_{}", model.name(xp), model.name(xq)),
            });
        }
    }
    Built { component: comp, unit_vars }
}
