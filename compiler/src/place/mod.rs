//! Placement: for every unit, the side that lets the mesh run with the fewest ADMs and then the
//! least traffic through them — solved exactly.
//!
//! Scale comes from structure, then the solver:
//! 1. presolve fixes every unit with one legal side and the ADM sites it forces; a unit with a
//!    forced host on either side is then decided at no ADM cost;
//! 2. every other unit covers one call and has one host per side (rules 2 and 3 fix all others),
//!    so the ADM cost is a minimum-weight vertex cover of the sites ([`cover`]): exact reductions,
//!    then small components by enumeration and larger ones by a 0-1 program ([`solve`]);
//! 3. each unit takes a side whose host has an ADM; when both do, all units of a call take the
//!    same side (the side of the call's forced traversal, if any, else ingress), which keeps every
//!    ordering constraint (they link units of one call) and puts the call through one ADM per
//!    forced side and at least one — the least traffic possible. So the traffic objective is the
//!    same for every minimum cover, and the plan is optimal for both objectives, in order.

pub mod baseline;
pub mod cover;
pub mod model;
pub mod solve;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use adm_syntax::ast::Side;

use crate::sema::model::{CallGraph, CallIdx, Node, PolicyOrder, ServiceIdx, Unit};
use crate::sema::sides::LegalSides;
use model::{lp_name, Model};

/// How ADMs are counted and how long the solver may search.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PlaceOptions {
    /// Count ingress and egress ADMs apart (a strict reading of the ADM paper).
    pub adm_per_direction: bool,
    /// A budget for the whole solve; past it the best plan found is returned, marked not optimal.
    pub time_limit: Option<Duration>,
    /// Components with at most this many sites are solved by enumeration, larger ones by the 0-1
    /// program (tests set 0 to put every component through the solver).
    pub max_enumerated_sites: usize,
}

impl Default for PlaceOptions {
    fn default() -> Self {
        PlaceOptions { adm_per_direction: false, time_limit: None, max_enumerated_sites: cover::ENUMERATION_LIMIT }
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
    /// Units with one legal side.
    pub fixed_units: usize,
    /// Units with two legal sides.
    pub free_units: usize,
    /// Sites that must host an ADM whatever the plan (they host a fixed unit).
    pub forced_sites: usize,
    /// Sites the exact reductions settled.
    pub reduced_sites: usize,
    /// Components left for enumeration or the solver, and the size of the largest (in sites).
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

/// Progress for long solves.
pub use solve::Progress;

/// Places every unit. The program must have no unit without a legal side (E0400).
pub fn place(graph: &CallGraph, legal: &LegalSides, options: &PlaceOptions, progress: Option<&Progress>) -> Placement {
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

    // The edges of the cover: free units whose hosts are both unforced. A free unit has one
    // call and one host per side; one that did not would be placed at ingress, and the plan
    // then not claimed optimal.
    let mut site_ids: BTreeMap<Site, usize> = BTreeMap::new();
    let mut edges: Vec<(usize, usize)> = Vec::new();
    let mut general = false;
    for id in &free {
        let unit = units[id];
        let (ins, egs) = (sites(graph, unit, Side::Ingress, per_dir), sites(graph, unit, Side::Egress, per_dir));
        let ([i], [e]) = (ins.as_slice(), egs.as_slice()) else {
            general = true;
            forced.extend(ins);
            sides.insert(*id, Side::Ingress);
            continue;
        };
        if forced.contains(i) || forced.contains(e) {
            continue;
        }
        let next = site_ids.len();
        let a = *site_ids.entry(*i).or_insert(next);
        let next = site_ids.len();
        let b = *site_ids.entry(*e).or_insert(next);
        edges.push((a, b));
    }
    let site_list: Vec<Site> = {
        let mut v = vec![Site { service: ServiceIdx(0), direction: None }; site_ids.len()];
        for (s, i) in &site_ids {
            v[*i] = *s;
        }
        v
    };
    let weights: Vec<f64> = site_list.iter().map(|s| site_cost(graph, *s)).collect();
    let names: Vec<String> = site_list
        .iter()
        .map(|s| {
            let name = graph.service(s.service).map_or("?", |d| d.name.as_str());
            let dir = match s.direction {
                None => "",
                Some(Side::Ingress) => "in",
                Some(Side::Egress) => "out",
            };
            lp_name("y", &[name, dir])
        })
        .collect();
    let cover = cover::solve(&weights, &names, &edges, options.max_enumerated_sites, options.time_limit, progress);
    let mut adm: BTreeSet<Site> = forced.clone();
    adm.extend(cover.sites.iter().map(|i| site_list[*i]));

    // Sides of the free units (see the module documentation).
    for id in &free {
        if sides.contains_key(id) {
            continue;
        }
        let unit = units[id];
        let hosted = |side| sites(graph, unit, side, per_dir).iter().all(|s| adm.contains(s));
        let call = unit.calls.first().copied();
        let side = match (hosted(Side::Ingress), hosted(Side::Egress)) {
            (true, false) => Side::Ingress,
            (false, true) => Side::Egress,
            _ => match call {
                Some(c) if !forced_in.contains(&c) && forced_eg.contains(&c) => Side::Egress,
                _ => Side::Ingress,
            },
        };
        sides.insert(*id, side);
    }

    let objective = evaluate(graph, &units, &sides, per_dir);
    let adms = adm_sites(graph, &units, &sides, per_dir);
    let fixed_cost: f64 = forced.iter().map(|s| site_cost(graph, *s)).sum();
    let optimal = cover.optimal && !general;
    let status = if optimal { Status::Optimal } else { Status::TimeLimit { bound: fixed_cost + cover.bound } };
    let model = Model { fixed_cost: fixed_cost + cover.model.fixed_cost, ..cover.model };
    let stats = Stats {
        units: units.len(),
        fixed_units: units.len() - free.len(),
        free_units: free.len(),
        forced_sites: forced.len(),
        reduced_sites: site_list.len() - model.vars.len(),
        components: model.components.len(),
        largest_component: model.components.iter().map(|c| c.vars.len()).max().unwrap_or(0),
        enumerated_components: cover.enumerated,
        ilp_components: cover.ilp,
    };
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
