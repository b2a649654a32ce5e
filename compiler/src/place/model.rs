//! The placement problem as a solver-neutral 0-1 integer program.
//!
//! Variables are binary. Every constraint is `Σ coeff·var ≥ rhs` or `≤ rhs`; the objective is
//! lexicographic: first the ADM cost, then the request rate through ADMs. The model prints itself in
//! CPLEX LP format (`admc plan --emit-model`), one `\ component` section at a time, and is lowered
//! to a solver in exactly one place ([`super::solve`]).

use std::fmt::Write;

/// A binary variable, by index in [`Model::vars`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Var(pub u32);

#[derive(Clone, Debug, PartialEq)]
pub enum VarKind {
    /// 1 = the unit runs at ingress, 0 = at egress.
    UnitSide,
    /// 1 = an ADM at this site.
    Adm,
    /// 1 = the call passes an ADM on this side.
    Traverse,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VarDef {
    /// A name valid in LP format.
    pub name: String,
    pub kind: VarKind,
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
    /// Primary objective: ADM cost.
    pub cost: Vec<(f64, Var)>,
    /// Secondary objective: requests per second through ADMs.
    pub traffic: Vec<(f64, Var)>,
}

/// The whole model: variables, and the components that partition them.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Model {
    pub vars: Vec<VarDef>,
    pub components: Vec<Component>,
    /// Objective terms already decided by presolve (forced ADMs, forced traversals).
    pub fixed_cost: f64,
    pub fixed_traffic: f64,
}

impl Model {
    pub fn add_var(&mut self, name: String, kind: VarKind) -> Var {
        let v = Var(self.vars.len() as u32);
        self.vars.push(VarDef { name, kind });
        v
    }

    pub fn name(&self, v: Var) -> &str {
        self.vars.get(v.0 as usize).map_or("?", |d| d.name.as_str())
    }

    /// The model in CPLEX LP format. The two objectives are printed as two problems' objectives
    /// in comments: LP format has one objective, so the ADM cost is the objective and the traffic
    /// objective follows as a comment (phase 2 minimises it with the cost fixed at its optimum).
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
        let _ =
            writeln!(out, "\\ fixed by presolve: ADM cost {}, traffic {} req/s", self.fixed_cost, self.fixed_traffic);
        let _ = writeln!(out, "\\ phase 2 objective (with the phase 1 optimum as a constraint): minimize traffic:");
        let mut line = String::from("\\  ");
        let mut first = true;
        for comp in &self.components {
            for (c, v) in &comp.traffic {
                term(&mut line, &mut first, *c, self.name(*v));
            }
        }
        let _ = writeln!(out, "{line}");
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
