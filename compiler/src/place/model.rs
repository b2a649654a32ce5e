//! The placement problem as a solver-neutral 0-1 integer program: what is left after presolve
//! and the exact reductions of [`super::cover`], in independent components.
//!
//! Variables are binary (`y_SITE` = an ADM at that site). Every constraint is `Σ coeff·var ≥ rhs`
//! or `≤ rhs`; the objective is the ADM cost. The model prints itself in CPLEX LP format
//! (`admc plan --emit-model`), one `\ component` section at a time, and is lowered to a solver in
//! exactly one place ([`super::solve`]).

use std::fmt::Write;

/// A binary variable, by index in [`Model::vars`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Var(pub u32);

#[derive(Clone, Debug, PartialEq)]
pub struct VarDef {
    /// A name valid in LP format.
    pub name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Ge,
    Le,
}

/// `Σ terms cmp rhs`
#[derive(Clone, Debug, PartialEq)]
pub struct Constraint {
    pub terms: Vec<(f64, Var)>,
    pub cmp: Cmp,
    pub rhs: f64,
    /// Why the constraint exists, for the printed model.
    pub name: String,
}

/// One independent part of the problem.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Component {
    pub vars: Vec<Var>,
    pub constraints: Vec<Constraint>,
    /// The objective: ADM cost.
    pub cost: Vec<(f64, Var)>,
}

/// The whole model: variables, and the components that partition them.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Model {
    pub vars: Vec<VarDef>,
    pub components: Vec<Component>,
    /// The ADM cost already decided by presolve and the reductions.
    pub fixed_cost: f64,
}

impl Model {
    pub fn add_var(&mut self, name: String) -> Var {
        let v = Var(self.vars.len() as u32);
        self.vars.push(VarDef { name });
        v
    }

    pub fn name(&self, v: Var) -> &str {
        self.vars.get(v.0 as usize).map_or("?", |d| d.name.as_str())
    }

    /// The model in CPLEX LP format.
    pub fn to_lp(&self) -> String {
        let mut out = String::new();
        let term = |out: &mut String, first: &mut bool, c: f64, v: &str| {
            let sign = if c < 0.0 {
                "-"
            } else if *first {
                ""
            } else {
                "+"
            };
            let c = c.abs();
            if (c - 1.0).abs() < f64::EPSILON {
                let _ = write!(out, " {sign} {v}");
            } else {
                let _ = write!(out, " {sign} {c} {v}");
            }
            *first = false;
        };
        let _ = writeln!(out, "\\ ADM placement: {} variables, {} components", self.vars.len(), self.components.len());
        let _ = writeln!(out, "\\ ADM cost fixed by presolve and reductions: {}", self.fixed_cost);
        let _ = writeln!(
            out,
            "\\ y_SITE = 1: an ADM at SITE; each constraint is a unit that needs an ADM at one of its two hosts"
        );
        out.push_str("Minimize\n adm_cost:");
        let mut first = true;
        for comp in &self.components {
            for (c, v) in &comp.cost {
                term(&mut out, &mut first, *c, self.name(*v));
            }
        }
        if first {
            out.push_str(" 0");
        }
        out.push_str("\nSubject To\n");
        for (k, comp) in self.components.iter().enumerate() {
            let _ = writeln!(out, "\\ component {k}: {} variables", comp.vars.len());
            for c in &comp.constraints {
                let _ = write!(out, " {}:", c.name);
                let mut first = true;
                for (coeff, v) in &c.terms {
                    term(&mut out, &mut first, *coeff, self.name(*v));
                }
                let op = if c.cmp == Cmp::Ge { ">=" } else { "<=" };
                let _ = writeln!(out, " {op} {}", c.rhs);
            }
        }
        out.push_str("Binary\n");
        for comp in &self.components {
            for v in &comp.vars {
                let _ = writeln!(out, " {}", self.name(*v));
            }
        }
        out.push_str("End\n");
        out
    }
}

/// A name made of LP-format-safe characters.
pub fn lp_name(prefix: &str, parts: &[&str]) -> String {
    let mut s = String::from(prefix);
    for p in parts {
        s.push('_');
        s.extend(p.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }));
    }
    s
}
