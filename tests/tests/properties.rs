//! Properties of the front end: no input makes it panic, and formatting is a faithful, stable
//! canonical form (parse ∘ format is the identity on trees, format is idempotent, comments survive).

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used, reason = "tests fail by panicking")]

use std::path::{Path, PathBuf};

use adm_syntax::{format, parse, FileId};
use proptest::prelude::*;

/// The tree's debug form without byte offsets: two files with the same items compare equal.
fn shape(src: &str) -> String {
    let parse = parse(FileId(0), src);
    let debug = format!("{:?}", parse.file);
    let mut out = String::with_capacity(debug.len());
    let mut rest = debug.as_str();
    while let Some(i) = rest.find("Span { start: ") {
        out.push_str(&rest[..i]);
        out.push_str("Span");
        let after = &rest[i..];
        let end = after.find('}').map_or(after.len(), |j| j + 1);
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

fn comment_texts(src: &str) -> Vec<String> {
    let parse = parse(FileId(0), src);
    parse.comments.iter().map(|c| src[c.span.range()].trim_end().to_string()).collect()
}

/// Checks every promise of the formatter on one input that parses without errors.
fn assert_format_faithful(src: &str) {
    let Ok(formatted) = format::format(src) else { return };
    let reparsed = parse(FileId(0), &formatted);
    assert!(!reparsed.has_errors(), "formatted text does not parse:\n{formatted}\n{:?}", reparsed.diagnostics);
    assert_eq!(shape(src), shape(&formatted), "formatting changed the tree of:\n{src}\n---\n{formatted}");
    assert_eq!(comment_texts(src), comment_texts(&formatted), "formatting changed comments of:\n{src}");
    let again = format::format(&formatted).unwrap_or_default();
    assert_eq!(formatted, again, "formatting is not idempotent on:\n{src}");
}

const VOCAB: &[&str] = &[
    "app",
    "service",
    "group",
    "call",
    "kind",
    "enum",
    "policy",
    "on",
    "at",
    "external",
    "true",
    "false",
    "a",
    "b-c",
    "d_1",
    "ingress",
    "egress",
    "list",
    "int",
    "header",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ",",
    ":",
    "=",
    "->",
    ".",
    "*",
    "<",
    ">",
    "42",
    "0",
    "250ms",
    "1s",
    "100/s",
    "5%",
    "12.5%",
    "4KB",
    "\"x\"",
    "\"a\\\"b\"",
    "// note\n",
    "/// doc\n",
    "\n",
    "\n\n",
    "$",
    "\"open",
    "1.5s",
    "7/min",
];

/// Programs in the language's own shapes, so the formatter sees comments in every position.
fn valid_program() -> impl Strategy<Value = String> {
    let name = prop::sample::select(vec!["a", "b", "frontend", "mongodb-rate", "x_1"]);
    let comment = prop::option::weighted(0.3, prop::sample::select(vec![" // c1", " // trailing", "\n// own line"]));
    let value = prop::sample::select(vec![
        "1",
        "\"s\"",
        "1s",
        "20ms",
        "100/s",
        "5%",
        "0.25%",
        "4KB",
        "true",
        "round_robin",
        "[a, b]",
        "[]",
        "header(\"x\")",
        "[header(name), outcome]",
    ]);
    let field = (name.clone(), value, comment.clone()).prop_map(|(n, v, c)| format!("{n}: {v},{}\n", c.unwrap_or("")));
    let fields = prop::collection::vec(field, 0..4).prop_map(|f| f.concat());
    let selector = (name.clone(), name.clone(), prop::sample::select(vec!["", ".Get", ".{Get, Put}"]))
        .prop_map(|(a, b, m)| format!("{a} -> {b}{m}"));
    let item = prop_oneof![
        (name.clone(), fields.clone()).prop_map(|(n, f)| format!("service {n} {{{f}}}")),
        (name.clone(), name.clone(), prop::option::of(fields.clone()))
            .prop_map(|(a, b, f)| format!("call {a} -> {b} {}", f.map(|f| format!("{{{f}}}")).unwrap_or_default())),
        (name.clone(), prop::collection::vec(name.clone(), 0..4))
            .prop_map(|(n, m)| format!("group {n} = [{}]", m.join(", "))),
        (
            name.clone(),
            fields.clone(),
            prop::collection::vec(selector, 1..4),
            prop::option::of(prop::sample::select(vec!["ingress", "egress"]))
        )
            .prop_map(|(n, f, s, at)| format!(
                "policy {n} = allow({}) on {}{}",
                f.replace('\n', " "),
                s.join(", "),
                at.map(|a| format!(" at {a}")).unwrap_or_default()
            )
            .replace("// c1 ", "")
            .replace("// trailing ", "")
            .replace("// own line ", "")),
        (name.clone(), fields).prop_map(|(n, f)| format!("kind {n}(p: list<service> = [a], q: int) {{{f}}}")),
    ];
    let doc = prop::option::weighted(0.3, prop::sample::select(vec!["/// Documented.\n", "// plain\n\n"]));
    prop::collection::vec((doc, item, comment), 0..6).prop_map(|items| {
        items.into_iter().map(|(d, i, c)| format!("{}{i}{}\n", d.unwrap_or(""), c.unwrap_or(""))).collect()
    })
}

/// The suite's number of cases, or `PROPTEST_CASES` for a longer hunt (`PROPTEST_CASES=20000`).
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(512), .. ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse(FileId(0), &text);
        let _ = format::format(&text);
    }

    #[test]
    fn random_token_soup_never_panics(tokens in prop::collection::vec(prop::sample::select(VOCAB), 0..60)) {
        let text = tokens.join(" ");
        let parsed = parse(FileId(0), &text);
        for d in &parsed.diagnostics {
            prop_assert!(d.span.end as usize <= text.len(), "span out of the file: {d:?}");
        }
        assert_format_faithful(&text);
    }

    #[test]
    fn format_is_faithful_on_valid_programs(text in valid_program()) {
        let parsed = parse(FileId(0), &text);
        prop_assert!(!parsed.has_errors(), "generator made an invalid program:\n{text}\n{:?}", parsed.diagnostics);
        assert_format_faithful(&text);
    }
}

fn adm_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            adm_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "adm") {
            out.push(path);
        }
    }
}

fn all_adm_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    adm_files(&root.join("examples"), &mut files);
    adm_files(&root.join("tests/corpus"), &mut files);
    assert!(files.len() >= 10, "corpus not found: {files:?}");
    files
}

/// Every prefix of every example and corpus file: the states a user passes through while typing.
#[test]
fn every_truncation_of_every_file_never_panics() {
    for path in all_adm_files() {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for (i, _) in text.char_indices() {
            let prefix = &text[..i];
            let parsed = parse(FileId(0), prefix);
            assert!(parsed.diagnostics.iter().all(|d| d.span.end as usize <= prefix.len()));
            assert_format_faithful(prefix);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), .. ProptestConfig::default() })]

    /// Deleting, inserting or replacing a few characters of a real file never makes the front end
    /// panic, and whatever still parses still formats faithfully.
    #[test]
    fn mutations_of_real_files_never_panic(
        file in prop::sample::select(all_adm_files()),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, prop::sample::select(vec!["", "{", "}", ",", "\"", "->", "//", "\n", "é", "$", "1", "a"])), 1..5),
    ) {
        let mut text = std::fs::read_to_string(&file).unwrap_or_default();
        for (at, op, insert) in edits {
            if text.is_empty() {
                break;
            }
            let mut i = at.index(text.len());
            while !text.is_char_boundary(i) {
                i -= 1;
            }
            let next = text[i..].chars().next().map_or(0, char::len_utf8);
            match op {
                0 => { text.replace_range(i..i + next, ""); }
                1 => text.insert_str(i, insert),
                _ => text.replace_range(i..i + next, insert),
            }
        }
        let _ = parse(FileId(0), &text);
        assert_format_faithful(&text);
    }
}
