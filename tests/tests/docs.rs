//! The documentation stays true: every diagnostic code the compiler can emit is documented in
//! `docs/diagnostics.md`, and each documented example really produces its code.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used, reason = "tests fail by panicking")]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use admc::Sources;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for path in entries.filter_map(Result::ok).map(|e| e.path()) {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs" || e == "lalrpop") {
            out.push(path);
        }
    }
}

/// Every `"E0123"` / `"W0123"` string literal in the compiler's sources.
fn codes_in_sources() -> BTreeSet<String> {
    let mut files = Vec::new();
    for krate in ["grammar/src", "compiler/src"] {
        rust_files(&root().join(krate), &mut files);
    }
    let mut codes = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let bytes = text.as_bytes();
        for i in 0..bytes.len().saturating_sub(6) {
            let lit = &bytes[i..i + 7];
            if lit[0] == b'"'
                && (lit[1] == b'E' || lit[1] == b'W')
                && lit[2..6].iter().all(u8::is_ascii_digit)
                && lit[6] == b'"'
            {
                codes.insert(String::from_utf8_lossy(&lit[1..6]).into_owned());
            }
        }
    }
    codes
}

/// (code, first ```adm example after its heading)
fn documented() -> Vec<(String, String)> {
    let doc = std::fs::read_to_string(root().join("docs/diagnostics.md")).unwrap_or_default();
    let mut out = Vec::new();
    for section in doc.split("\n## ").skip(1) {
        let code = section.split(':').next().unwrap_or("").trim().to_string();
        let example = section
            .split("```adm\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .unwrap_or_else(|| panic!("{code} has no ```adm example"))
            .to_string();
        out.push((code, example));
    }
    out
}

#[test]
fn every_emitted_code_is_documented() {
    let documented: BTreeSet<String> = documented().into_iter().map(|(c, _)| c).collect();
    let emitted = codes_in_sources();
    assert!(emitted.len() >= 10, "found too few codes: {emitted:?}");
    let missing: Vec<&String> = emitted.difference(&documented).collect();
    assert!(missing.is_empty(), "codes emitted but not documented in docs/diagnostics.md: {missing:?}");
    let stale: Vec<&String> = documented.difference(&emitted).collect();
    assert!(stale.is_empty(), "codes documented but never emitted: {stale:?}");
}

#[test]
fn every_documented_example_produces_its_code() {
    for (code, example) in documented() {
        // An example of several files marks each with a `// file: NAME` line.
        let mut sources = Sources::new();
        let mut files: Vec<(String, String)> = Vec::new();
        for line in example.lines() {
            match line.strip_prefix("// file: ") {
                Some(name) => files.push((name.trim().to_string(), String::new())),
                None => {
                    if files.is_empty() {
                        files.push(("example.adm".to_string(), String::new()));
                    }
                    if let Some((_, text)) = files.last_mut() {
                        text.push_str(line);
                        text.push('\n');
                    }
                }
            }
        }
        for (name, text) in files {
            sources.add(name, text);
        }
        let checked = admc::check(&sources);
        assert!(
            checked.diagnostics.iter().any(|d| d.code == code),
            "the example of {code} does not produce it:\n{example}\n{:?}",
            checked.diagnostics
        );
    }
}

/// The reference's examples are real programs: every ```adm block of docs/language.md parses.
#[test]
fn language_reference_examples_parse() {
    let doc = std::fs::read_to_string(root().join("docs/language.md")).unwrap_or_default();
    let blocks: Vec<&str> = doc.split("```adm\n").skip(1).filter_map(|b| b.split("```").next()).collect();
    assert!(blocks.len() >= 5, "docs/language.md has too few examples");
    for block in blocks {
        let parse = adm_syntax::parse(adm_syntax::FileId(0), block);
        assert!(!parse.has_errors(), "example does not parse:\n{block}\n{:?}", parse.diagnostics);
    }
}
