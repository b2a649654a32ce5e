//! Generates the parser from `src/adm.lalrpop` into `OUT_DIR`.
fn main() {
    // An unbuildable grammar is a build failure: there is nothing to fall back to.
    #[allow(clippy::unwrap_used, reason = "a build script reports failure by panicking")]
    lalrpop::Configuration::new().use_cargo_dir_conventions().emit_rerun_directives(true).process().unwrap();
}
