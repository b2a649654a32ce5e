//! The meaning of a program: names, types, the call graph, what each policy covers, where each of
//! its units may run, and the conflicts between policies. Pure functions over syntax trees; the
//! salsa queries in [`crate::db`] decide what to recompute.

pub mod conflicts;
pub mod graph;
pub mod kinds;
pub mod model;
pub mod names;
pub mod policy;
pub mod sides;
pub mod suggest;
pub mod values;
