//! The one place where the model meets a solver: good_lp with its pure-Rust `microlp` backend,
//! or, for small components, exhaustive enumeration.
//!
//! Solver output is checked, never trusted: values are rounded, every constraint is verified, and
//! a violated one falls back to the caller's feasible start. When the time limit stops a solve,
//! the LP relaxation gives the lower bound that the plan reports.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use good_lp::{constraint, microlp, variable, Expression, ProblemVariables, Solution, SolutionStatus, SolverModel};
use good_lp::{WithInitialSolution, WithTimeLimit};

use super::model::{Cmp, Component, Var};

/// Counts solved components, for a progress line on long solves.
#[derive(Debug, Default)]
pub struct Progress {
    total: AtomicUsize,
    done: AtomicUsize,
}

impl Progress {
    pub fn start(&self, total: usize) {
        self.total.store(total, Ordering::Relaxed);
    }

    pub fn done_one(&self) {
        self.done.fetch_add(1, Ordering::Relaxed);
    }

    /// (solved, total)
    pub fn snapshot(&self) -> (usize, usize) {
        (self.done.load(Ordering::Relaxed), self.total.load(Ordering::Relaxed))
    }
}

/// A component's solution.
pub struct Solved {
    pub values: BTreeMap<Var, bool>,
    pub optimal: bool,
    /// Lower bound on the component's objective (its optimum when `optimal`).
    pub bound: f64,
}

fn satisfied(comp: &Component, values: &BTreeMap<Var, bool>) -> bool {
    comp.constraints.iter().all(|c| {
        let lhs: f64 =
            c.terms.iter().map(|(k, v)| k * f64::from(u8::from(values.get(v).copied().unwrap_or(false)))).sum();
        match c.cmp {
            Cmp::Ge => lhs >= c.rhs - 1e-9,
            Cmp::Le => lhs <= c.rhs + 1e-9,
        }
    })
}

fn cost(comp: &Component, values: &BTreeMap<Var, bool>) -> f64 {
    comp.cost.iter().filter(|(_, v)| values.get(v).copied().unwrap_or(false)).map(|(c, _)| c).sum()
}

/// Every assignment of the component's variables (at most 2^`ENUMERATION_LIMIT`); ties go to the
/// first in counting order, so the result is deterministic.
pub fn enumerate(comp: &Component) -> Option<Solved> {
    let n = comp.vars.len();
    let mut best: Option<(f64, BTreeMap<Var, bool>)> = None;
    for mask in 0..(1u64 << n) {
        let values: BTreeMap<Var, bool> = comp.vars.iter().enumerate().map(|(i, v)| (*v, mask >> i & 1 == 1)).collect();
        if !satisfied(comp, &values) {
            continue;
        }
        let c = cost(comp, &values);
        if best.as_ref().is_none_or(|(b, _)| c < b - 1e-9) {
            best = Some((c, values));
        }
    }
    best.map(|(bound, values)| Solved { values, optimal: true, bound })
}

fn expression(terms: &[(f64, Var)], vars: &BTreeMap<Var, good_lp::Variable>) -> Expression {
    let mut e = Expression::from(0.0);
    for (c, v) in terms {
        if let Some(x) = vars.get(v) {
            e += *c * *x;
        }
    }
    e
}

/// Solves the 0-1 program of a component (or its LP relaxation): (values, proven optimal).
fn run(
    comp: &Component,
    start: &BTreeMap<Var, bool>,
    relax: bool,
    limit: Option<Duration>,
) -> Option<(BTreeMap<Var, f64>, bool)> {
    let mut problem_vars = ProblemVariables::new();
    let vars: BTreeMap<Var, good_lp::Variable> = comp
        .vars
        .iter()
        .map(|v| (*v, problem_vars.add(if relax { variable().min(0.0).max(1.0) } else { variable().binary() })))
        .collect();
    let mut problem = problem_vars.minimise(expression(&comp.cost, &vars)).using(microlp);
    for c in &comp.constraints {
        let lhs = expression(&c.terms, &vars);
        problem = match c.cmp {
            Cmp::Ge => problem.with(constraint!(lhs >= c.rhs)),
            Cmp::Le => problem.with(constraint!(lhs <= c.rhs)),
        };
    }
    if let Some(limit) = limit {
        problem = problem.with_time_limit(limit.as_secs_f64().max(0.001));
    }
    if !relax {
        let initial: Vec<(good_lp::Variable, f64)> =
            start.iter().filter_map(|(v, b)| vars.get(v).map(|x| (*x, f64::from(u8::from(*b))))).collect();
        problem = problem.with_initial_solution(initial);
    }
    let solution = problem.solve().ok()?;
    let optimal = matches!(solution.status(), SolutionStatus::Optimal);
    Some((vars.iter().map(|(v, x)| (*v, solution.value(*x))).collect(), optimal))
}

/// Solves a component with the solver, from a feasible `start`, within `limit`.
pub fn integer_program(comp: &Component, start: BTreeMap<Var, bool>, limit: Option<Duration>) -> Solved {
    let lp_bound = || {
        run(comp, &start, true, None)
            .map_or(0.0, |(x, _)| comp.cost.iter().map(|(c, v)| c * x.get(v).copied().unwrap_or(0.0)).sum())
    };
    match run(comp, &start, false, limit) {
        Some((values, optimal)) => {
            let values: BTreeMap<Var, bool> = values.into_iter().map(|(v, x)| (v, x > 0.5)).collect();
            if !satisfied(comp, &values) {
                return Solved { bound: lp_bound(), values: start, optimal: false };
            }
            let c = cost(comp, &values);
            let bound = if optimal { c } else { lp_bound().min(c) };
            Solved { values, optimal, bound }
        }
        None => Solved { bound: lp_bound(), values: start, optimal: false },
    }
}
