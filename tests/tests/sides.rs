//! The units and legal sides the checker derives for every valid program of the corpus and every
//! example (multi-file programs), as snapshots: each policy's units, the rule behind every
//! removed side, and the rule-4 constraints.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used, reason = "tests fail by panicking")]

use std::path::Path;

use admc::Sources;

fn sides_of(path: &Path) -> String {
    let sources = Sources::load(&[path.to_path_buf()]).unwrap_or_else(|e| panic!("{e}"));
    let checked = admc::check(&sources);
    assert!(
        checked.diagnostics.iter().all(|d| !d.is_error()),
        "{}:\n{}",
        path.display(),
        admc::render::human_plain(&sources, &checked.diagnostics)
    );
    admc::report::legal_sides(&checked)
}

#[test]
fn legal_sides_of_valid_programs() {
    insta::glob!("../corpus/ok", "*.adm", |path| {
        insta::assert_snapshot!(sides_of(path));
    });
}

#[test]
fn legal_sides_of_the_examples() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    for example in ["hotel-reservation", "bookinfo"] {
        insta::assert_snapshot!(example, sides_of(&root.join(example)));
    }
}
