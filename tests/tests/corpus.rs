//! The `.adm` corpus. Every file under `corpus/ok` is a valid program that formats stably; every
//! file under `corpus/err` reports at least one diagnostic (an error or a warning); every file
//! under `corpus/fmt` parses and exercises the formatter. Each snapshot shows the source, then
//! the rendered diagnostics (no colour), then (for `ok` and `fmt`) the canonical form.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used, reason = "tests fail by panicking")]

use std::path::Path;

use admc::{render, Sources};

/// The snapshot text of one case and its number of diagnostics.
fn render_case(path: &Path) -> (String, usize) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let name = format!(
        "{}/{}",
        path.parent().and_then(Path::file_name).map(|s| s.to_string_lossy()).unwrap_or_default(),
        path.file_name().map(|s| s.to_string_lossy()).unwrap_or_default()
    );
    let mut sources = Sources::new();
    sources.add(name, text.clone());
    let checked = admc::check(&sources);
    let rendered = render::human_plain(&sources, &checked.diagnostics);
    (format!("{text}\n=== diagnostics ===\n{rendered}"), checked.diagnostics.len())
}

#[test]
fn ok_cases_check_clean_and_format_stably() {
    insta::glob!("../corpus/ok", "*.adm", |path| {
        let (mut shown, count) = render_case(path);
        assert_eq!(count, 0, "{}: expected no diagnostics\n{shown}", path.display());
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let formatted = adm_syntax::format::format(&text).unwrap_or_else(|d| panic!("{d:?}"));
        let again = adm_syntax::format::format(&formatted).unwrap_or_else(|d| panic!("{d:?}"));
        assert_eq!(formatted, again, "{}: formatting is not idempotent", path.display());
        shown.push_str("=== formatted ===\n");
        shown.push_str(&formatted);
        insta::assert_snapshot!(shown);
    });
}

#[test]
fn fmt_cases_format_stably() {
    insta::glob!("../corpus/fmt", "*.adm", |path| {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let formatted = adm_syntax::format::format(&text).unwrap_or_else(|d| panic!("{}: {d:?}", path.display()));
        let again = adm_syntax::format::format(&formatted).unwrap_or_else(|d| panic!("{d:?}"));
        assert_eq!(formatted, again, "{}: formatting is not idempotent", path.display());
        insta::assert_snapshot!(format!("{text}\n=== formatted ===\n{formatted}"));
    });
}

#[test]
fn err_cases_report_diagnostics() {
    insta::glob!("../corpus/err", "*.adm", |path| {
        let (shown, count) = render_case(path);
        assert!(count > 0, "{}: expected diagnostics\n{shown}", path.display());
        insta::assert_snapshot!(shown);
    });
}

/// Programs of several files: each folder under `corpus/ok` or `corpus/err` is one program.
#[test]
fn multi_file_cases() {
    for kind in ["ok", "err"] {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(kind);
        let mut dirs: Vec<_> =
            std::fs::read_dir(&root).unwrap().filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_dir()).collect();
        dirs.sort();
        for dir in dirs {
            let sources = Sources::load(std::slice::from_ref(&dir)).unwrap_or_else(|e| panic!("{e}"));
            let checked = admc::check(&sources);
            let rendered = render::human_plain(&sources, &checked.diagnostics);
            let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if kind == "ok" {
                assert!(checked.diagnostics.is_empty(), "{name}:\n{rendered}");
            } else {
                assert!(!checked.diagnostics.is_empty(), "{name}: expected diagnostics");
            }
            let mut shown = String::new();
            for (_, s) in sources.iter() {
                let file = Path::new(&s.name).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                shown.push_str(&format!("=== {file} ===\n{}", s.text));
            }
            shown.push_str("=== diagnostics ===\n");
            shown.push_str(&rendered.replace(&format!("{}/", dir.display()), ""));
            insta::assert_snapshot!(format!("{kind}-{name}"), shown);
        }
    }
}

/// The front end's promise: independent syntax errors are each reported, at the right place, and
/// the rest of the file still parses.
#[test]
fn five_independent_errors_are_five_diagnostics_at_their_lines() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/err/five-errors.adm");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let mut sources = Sources::new();
    sources.add("five-errors.adm", text.clone());
    let checked = admc::check(&sources);
    let report = render::json(&sources, &checked.diagnostics);
    let places: Vec<(usize, usize)> = report
        .diagnostics
        .iter()
        .filter(|d| d.code.starts_with("E00"))
        .map(|d| (d.start.line, d.start.column))
        .collect();
    assert_eq!(places, vec![(3, 33), (5, 18), (7, 22), (8, 48), (10, 10)], "{report:#?}");
    let parse = checked.parse(adm_syntax::FileId(0)).expect("the file was parsed");
    let names: Vec<String> = parse.file.items.iter().filter_map(|i| i.name().map(|n| n.text.to_string())).collect();
    // Every item with a correct header still reaches the tree, including those after the errors.
    for expected in ["frontend", "search", "geo", "g", "a", "b", "k", "c"] {
        assert!(names.iter().any(|n| n == expected), "`{expected}` missing from {names:?}");
    }
    // Items after an error are whole, and a broken item keeps the parts before its error.
    let item = |name: &str| parse.file.items.iter().find(|i| i.name().is_some_and(|n| n.text == name));
    let Some(adm_syntax::ast::ItemKind::Service(geo)) = item("geo").map(|i| &i.kind) else {
        panic!("geo is not a service")
    };
    assert_eq!(geo.fields.len(), 2);
    let Some(adm_syntax::ast::ItemKind::Policy(a)) = item("a").map(|i| &i.kind) else { panic!("a is not a policy") };
    assert_eq!((a.kind.text.as_str(), a.args.len(), a.selectors.len()), ("allow", 1, 0));
}
