//! Minimum-weight vertex cover of the ADM sites, the core of placement.
//!
//! After presolve, every undecided unit covers one call and has one host per side (rules 2 and 3
//! fix every unit with several senders, several receivers or an external end), so it is an edge
//! between its ingress site and its egress site, and a plan needs an ADM at one end of every edge:
//! the ADM cost of a plan is the weight of a vertex cover. Exact reductions come first (zero-cost
//! sites join the cover; a site with one neighbour that costs no more than it gives way to that
//! neighbour), then each remaining component becomes a part of the [`Model`] and is solved
//! exactly: by enumeration when small, by the 0-1 program otherwise.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::model::{Cmp, Component, Constraint, Model, Var};
use super::solve::{self, Progress};

/// The solved cover.
pub struct Cover {
    pub sites: BTreeSet<usize>,
    pub optimal: bool,
    /// Lower bound on the cover's weight (reductions included).
    pub bound: f64,
    pub model: Model,
    pub enumerated: usize,
    pub ilp: usize,
}

/// Components of at most this many sites are enumerated (2^16 subsets at most).
pub const ENUMERATION_LIMIT: usize = 16;

/// Minimum-weight cover of `edges` over sites `0..weights.len()`; `names` name the sites in the
/// model.
pub fn solve(
    weights: &[f64],
    names: &[String],
    edges: &[(usize, usize)],
    max_enumerated: usize,
    limit: Option<Duration>,
    progress: Option<&Progress>,
) -> Cover {
    let started = Instant::now();
    let n = weights.len();
    let mut adj: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
    let mut in_cover: BTreeSet<usize> = BTreeSet::new();
    for &(a, b) in edges {
        if a == b {
            in_cover.insert(a);
        } else {
            adj[a].insert(b);
            adj[b].insert(a);
        }
    }
    fn remove(adj: &mut [BTreeSet<usize>], v: usize) -> Vec<usize> {
        let neighbours: Vec<usize> = std::mem::take(&mut adj[v]).into_iter().collect();
        for u in &neighbours {
            adj[*u].remove(&v);
        }
        neighbours
    }
    for &v in &in_cover {
        remove(&mut adj, v);
    }
    // Reductions to a fixed point, with a work list.
    let mut work: Vec<usize> = (0..n).rev().collect();
    while let Some(v) = work.pop() {
        if adj[v].is_empty() || in_cover.contains(&v) {
            continue;
        }
        if weights[v] <= 0.0 {
            // A free site covers its edges at no cost.
            in_cover.insert(v);
            work.extend(remove(&mut adj, v));
        } else if adj[v].len() == 1 {
            let u = adj[v].iter().next().copied().unwrap_or(v);
            if weights[u] <= weights[v] {
                // Any cover with `v` stays a cover, no heavier, with `u` instead.
                in_cover.insert(u);
                work.extend(remove(&mut adj, u));
            }
        }
    }
    let fixed_cost: f64 = in_cover.iter().map(|v| weights[*v]).sum();
    // The model: one component per connected part of what is left.
    let mut model = Model { fixed_cost, ..Model::default() };
    let mut var_of: BTreeMap<usize, Var> = BTreeMap::new();
    let mut seen = vec![false; n];
    for start in 0..n {
        if seen[start] || adj[start].is_empty() {
            continue;
        }
        let mut sites = Vec::new();
        let mut stack = vec![start];
        seen[start] = true;
        while let Some(v) = stack.pop() {
            sites.push(v);
            for &u in &adj[v] {
                if !seen[u] {
                    seen[u] = true;
                    stack.push(u);
                }
            }
        }
        sites.sort_unstable();
        let mut comp = Component::default();
        for v in &sites {
            let var = model.add_var(names.get(*v).cloned().unwrap_or_else(|| format!("y_{v}")));
            var_of.insert(*v, var);
            comp.vars.push(var);
            comp.cost.push((weights[*v], var));
        }
        for v in &sites {
            for u in adj[*v].iter().filter(|u| **u > *v) {
                let (a, b) = (var_of[v], var_of[u]);
                comp.constraints.push(Constraint {
                    terms: vec![(1.0, a), (1.0, b)],
                    cmp: Cmp::Ge,
                    rhs: 1.0,
                    name: format!("c{}_{}", a.0, b.0),
                });
            }
        }
        model.components.push(comp);
    }
    let mut cover = Cover { sites: in_cover, optimal: true, bound: fixed_cost, model, enumerated: 0, ilp: 0 };
    if let Some(p) = progress {
        p.start(cover.model.components.len());
    }
    let site_of: BTreeMap<Var, usize> = var_of.iter().map(|(s, v)| (*v, *s)).collect();
    for comp in &cover.model.components {
        let solved = match (comp.vars.len() <= max_enumerated.min(ENUMERATION_LIMIT))
            .then(|| solve::enumerate(comp))
            .flatten()
        {
            Some(solved) => {
                cover.enumerated += 1;
                solved
            }
            None => {
                cover.ilp += 1;
                let remaining = limit.map(|l| l.saturating_sub(started.elapsed()));
                solve::integer_program(comp, greedy(comp), remaining)
            }
        };
        cover.optimal &= solved.optimal;
        cover.bound += solved.bound;
        cover.sites.extend(solved.values.iter().filter(|(_, on)| **on).filter_map(|(v, _)| site_of.get(v).copied()));
        if let Some(p) = progress {
            p.done_one();
        }
    }
    cover
}

/// A feasible cover to start the solver from: repeatedly the site with the most uncovered edges per
/// unit of cost.
fn greedy(comp: &Component) -> BTreeMap<Var, bool> {
    let weight: BTreeMap<Var, f64> = comp.cost.iter().map(|(c, v)| (*v, *c)).collect();
    let edges: Vec<(Var, Var)> =
        comp.constraints.iter().filter_map(|c| Some((c.terms.first()?.1, c.terms.get(1)?.1))).collect();
    let mut chosen: BTreeMap<Var, bool> = comp.vars.iter().map(|v| (*v, false)).collect();
    let mut uncovered = vec![true; edges.len()];
    loop {
        let mut degree: BTreeMap<Var, usize> = BTreeMap::new();
        for (i, (a, b)) in edges.iter().enumerate() {
            if uncovered[i] {
                *degree.entry(*a).or_default() += 1;
                *degree.entry(*b).or_default() += 1;
            }
        }
        let best = degree
            .iter()
            .max_by(|(x, dx), (y, dy)| {
                let score = |v: &Var, d: usize| d as f64 / weight.get(v).copied().unwrap_or(1.0).max(1e-9);
                score(x, **dx).total_cmp(&score(y, **dy)).then(y.cmp(x))
            })
            .map(|(v, _)| *v);
        let Some(v) = best else { break };
        chosen.insert(v, true);
        for (i, (a, b)) in edges.iter().enumerate() {
            if *a == v || *b == v {
                uncovered[i] = false;
            }
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On random weighted graphs, the 0-1 program, enumeration and the reductions agree, and
    /// every result is a cover.
    #[test]
    fn solver_enumeration_and_reductions_agree() {
        let mut state = 7u64;
        let mut next = |n: u64| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) % n
        };
        for _ in 0..400 {
            let n = 3 + next(12) as usize;
            let weights: Vec<f64> = (0..n).map(|_| next(4) as f64).collect();
            let names: Vec<String> = (0..n).map(|i| format!("y{i}")).collect();
            let mut edges = Vec::new();
            for a in 0..n {
                for b in a + 1..n {
                    if next(100) < 35 {
                        edges.push((a, b));
                    }
                }
            }
            let by_solver = solve(&weights, &names, &edges, 0, None, None);
            let by_enumeration = solve(&weights, &names, &edges, ENUMERATION_LIMIT, None, None);
            let weight = |c: &Cover| c.sites.iter().map(|v| weights[*v]).sum::<f64>();
            for c in [&by_solver, &by_enumeration] {
                assert!(c.optimal);
                assert!(
                    edges.iter().all(|(a, b)| c.sites.contains(a) || c.sites.contains(b)),
                    "not a cover: {edges:?}"
                );
            }
            assert!((weight(&by_solver) - weight(&by_enumeration)).abs() < 1e-9, "{weights:?} {edges:?}");
            // Brute force over the whole graph, without reductions.
            let best = (0..1u32 << n)
                .filter(|m| edges.iter().all(|(a, b)| m >> a & 1 == 1 || m >> b & 1 == 1))
                .map(|m| (0..n).filter(|i| m >> i & 1 == 1).map(|i| weights[i]).sum::<f64>())
                .fold(f64::INFINITY, f64::min);
            assert!((weight(&by_solver) - best).abs() < 1e-9, "{weights:?} {edges:?}");
        }
    }
}
