//! The one place where the model meets a solver: good_lp with its pure-Rust `microlp` backend.
//!
//! Each component is solved twice: first for the least ADM cost, then, with the cost held at that
//! optimum, for the least traffic. Solver output is checked, never trusted: values are rounded and
//! the caller recomputes the objective from the chosen sides. When the time limit stops a solve,
//! the LP relaxation gives the lower bound that the plan reports.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use adm_syntax::ast::Side;
use good_lp::{constraint, microlp, variable, Expression, ProblemVariables, Solution, SolutionStatus, SolverModel};
use good_lp::{WithInitialSolution, WithTimeLimit};

use super::model::{Cmp, Component, Model, Var, VarKind};
use super::Solved;

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

/// A solution of one phase: rounded values of the component's variables.
struct PhaseResult {
    values: BTreeMap<Var, bool>,
    optimal: bool,
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

/// Solves `minimise objective` over the component, optionally with `extra` (a bound on another
/// objective), as a 0-1 program (`relax` = false) or its LP relaxation.
fn run(
    comp: &Component,
    objective: &[(f64, Var)],
    extra: Option<(&[(f64, Var)], f64)>,
    warm: &BTreeMap<Var, bool>,
    relax: bool,
    limit: Option<Duration>,
) -> Option<(PhaseResult, f64)> {
    let mut problem_vars = ProblemVariables::new();
    let vars: BTreeMap<Var, good_lp::Variable> = comp
        .vars
        .iter()
        .map(|v| {
            let def = if relax { variable().min(0.0).max(1.0) } else { variable().binary() };
            (*v, problem_vars.add(def))
        })
        .collect();
    let mut problem = problem_vars.minimise(expression(objective, &vars)).using(microlp);
    for c in &comp.constraints {
        let lhs = expression(&c.terms, &vars);
        problem = match c.cmp {
            Cmp::Ge => problem.with(constraint!(lhs >= c.rhs)),
            Cmp::Le => problem.with(constraint!(lhs <= c.rhs)),
        };
    }
    if let Some((terms, bound)) = extra {
        problem = problem.with(constraint!(expression(terms, &vars) <= bound + 1e-6));
    }
    if let Some(limit) = limit {
        problem = problem.with_time_limit(limit.as_secs_f64().max(0.001));
    }
    if !relax {
        let initial: Vec<(good_lp::Variable, f64)> =
            warm.iter().filter_map(|(v, b)| vars.get(v).map(|x| (*x, f64::from(u8::from(*b))))).collect();
        problem = problem.with_initial_solution(initial);
    }
    let solution = problem.solve().ok()?;
    let optimal = matches!(solution.status(), SolutionStatus::Optimal);
    let values: BTreeMap<Var, bool> = vars.iter().map(|(v, x)| (*v, solution.value(*x) > 0.5)).collect();
    let value: f64 = objective
        .iter()
        .map(|(c, v)| if relax { c * solution.value(vars[v]) } else { c * f64::from(u8::from(values[v])) })
        .sum();
    Some((PhaseResult { values, optimal }, value))
}

/// A feasible assignment to start from: every unit at ingress (it satisfies every ordering
/// constraint), with the ADM and traversal variables it implies.
fn all_ingress(model: &Model, comp: &Component) -> BTreeMap<Var, bool> {
    let mut values: BTreeMap<Var, bool> = comp
        .vars
        .iter()
        .map(|v| (*v, matches!(model.vars.get(v.0 as usize).map(|d| &d.kind), Some(VarKind::UnitSide))))
        .collect();
    // Raise each ADM or traversal variable that a constraint needs.
    for c in &comp.constraints {
        let lhs: f64 = c.terms.iter().map(|(k, v)| k * f64::from(u8::from(values[v]))).sum();
        if c.cmp == Cmp::Ge && lhs < c.rhs {
            if let Some((_, v)) =
                c.terms.iter().find(|(k, v)| *k > 0.0 && !matches!(model.vars[v.0 as usize].kind, VarKind::UnitSide))
            {
                values.insert(*v, true);
            }
        }
    }
    values
}

/// Solves one component lexicographically within `limit`.
pub fn solve_component(model: &Model, comp: &Component, unit_vars: &[Var], limit: Option<Duration>) -> Solved {
    let started = Instant::now();
    let left = |limit: Option<Duration>| limit.map(|l| l.saturating_sub(started.elapsed()));
    let warm = all_ingress(model, comp);
    let sides_of = |values: &BTreeMap<Var, bool>| {
        unit_vars
            .iter()
            .map(|v| if values.get(v).copied().unwrap_or(true) { Side::Ingress } else { Side::Egress })
            .collect()
    };
    let Some((phase1, cost)) = run(comp, &comp.cost, None, &warm, false, limit) else {
        // No solution in time: the feasible start, with the LP bound.
        let bound = run(comp, &comp.cost, None, &warm, true, None).map_or(0.0, |(_, b)| b);
        return Solved { sides: sides_of(&warm), optimal: false, bound };
    };
    if !phase1.optimal {
        let bound = run(comp, &comp.cost, None, &warm, true, None).map_or(0.0, |(_, b)| b);
        return Solved { sides: sides_of(&phase1.values), optimal: false, bound: bound.min(cost) };
    }
    match run(comp, &comp.traffic, Some((&comp.cost, cost)), &phase1.values, false, left(limit)) {
        Some((phase2, _)) => Solved { sides: sides_of(&phase2.values), optimal: phase2.optimal, bound: cost },
        None => Solved { sides: sides_of(&phase1.values), optimal: false, bound: cost },
    }
}
