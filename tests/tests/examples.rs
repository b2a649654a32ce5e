//! Every bundled example is a clean program in canonical layout.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used, reason = "tests fail by panicking")]

use std::path::{Path, PathBuf};

use admc::Sources;

#[test]
fn every_example_checks_clean_and_is_formatted() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&examples)
        .unwrap_or_else(|e| panic!("{}: {e}", examples.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let names: Vec<String> =
        dirs.iter().filter_map(|d| d.file_name()).map(|n| n.to_string_lossy().into_owned()).collect();
    assert!(names.contains(&"hotel-reservation".to_string()) && names.contains(&"bookinfo".to_string()), "{names:?}");
    for dir in dirs {
        let sources = Sources::load(std::slice::from_ref(&dir)).unwrap_or_else(|e| panic!("{e}"));
        let checked = admc::check(&sources);
        let rendered = admc::render::human_plain(&sources, &checked.diagnostics);
        assert!(checked.diagnostics.is_empty(), "{}:\n{rendered}", dir.display());
        for (_, source) in sources.iter() {
            let formatted = adm_syntax::format::format(&source.text).unwrap_or_default();
            assert_eq!(formatted, &*source.text, "{} is not in canonical form", source.name);
        }
    }
}

/// The hotel reservation example models the paper's deployment: 18 services, 9 of them stores,
/// and a rate limit on every store.
#[test]
fn hotel_reservation_has_the_papers_shape() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hotel-reservation");
    let sources = Sources::load(&[dir]).unwrap_or_else(|e| panic!("{e}"));
    let checked = admc::check(&sources);
    let items: Vec<&adm_syntax::ast::Item> =
        sources.iter().filter_map(|(id, _)| checked.parse(id)).flat_map(|p| p.file.items.iter()).collect();
    let services = items.iter().filter(|i| matches!(i.kind, adm_syntax::ast::ItemKind::Service(_))).count();
    assert_eq!(services, 18);
    let databases = items.iter().find_map(|i| match &i.kind {
        adm_syntax::ast::ItemKind::Group(g) if g.name.text == "databases" => Some(g.members.len()),
        _ => None,
    });
    assert_eq!(databases, Some(9));
    let limited = items.iter().any(|i| match &i.kind {
        adm_syntax::ast::ItemKind::Policy(p) => {
            p.kind.text == "rate_limit"
                && p.selectors
                    .iter()
                    .any(|s| matches!(&s.to, adm_syntax::ast::Endpoint::Name(n) if n.text == "databases"))
        }
        _ => false,
    });
    assert!(limited, "no rate_limit on * -> databases");
}
