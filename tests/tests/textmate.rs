#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used, reason = "tests fail by panicking")]

//! The VS Code extension's TextMate grammar (`editors/vscode/syntaxes/adm.tmLanguage.json`)
//! tokenizes every bundled `.adm` file as the lexer does: `editors/vscode/test/tokenize.mjs` runs it
//! through `vscode-textmate`, the tokenizer VS Code uses, and checks the scopes. It needs Node.js
//! and the extension's npm packages (`npm ci --prefix editors/vscode`); without them this test
//! fails rather than passing unchecked.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn textmate_grammar_scopes_every_bundled_file() {
    let root = root();
    let modules = root.join("editors/vscode/node_modules");
    assert!(
        modules.join("vscode-textmate").is_dir() && modules.join("vscode-oniguruma").is_dir(),
        "{} is missing or incomplete: run `npm ci --prefix editors/vscode` first",
        modules.display()
    );
    let output = Command::new("node")
        .arg("editors/vscode/test/tokenize.mjs")
        .current_dir(&root)
        .output()
        .unwrap_or_else(|err| panic!("cannot run `node` (Node.js 20 or newer is needed): {err}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        output.status.success(),
        "node editors/vscode/test/tokenize.mjs failed ({}):\n{stdout}{stderr}",
        output.status
    );
}
