//! The language server in a real editor: Neovim (Debian's package), headless, attaches `admc lsp`
//! to a copy of the Bookinfo example with one broken file, and reports a diagnostic, a hover and
//! a definition jump (tests/nvim/check.lua).

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used, reason = "tests fail by panicking")]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `admc` binary next to this test's, brought up to date (a no-op after `cargo test`, which
/// builds it for the CLI's own tests).
fn admc() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let status = Command::new(env!("CARGO")).args(["build", "-q", "-p", "admc-cli"]).status().unwrap();
    assert!(status.success(), "cannot build admc");
    dir.join("admc")
}

#[test]
fn neovim_shows_a_diagnostic_a_hover_and_a_definition() {
    let nvim = Command::new("nvim").arg("--version").output();
    assert!(
        nvim.as_ref().is_ok_and(|o| o.status.success()),
        "Neovim is not installed: run `apt-get install neovim` (.ci/run does)"
    );
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("nvim-workspace");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    for entry in std::fs::read_dir(repo.join("examples/bookinfo")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "adm") {
            std::fs::copy(&path, root.join(path.file_name().unwrap())).unwrap();
        }
    }
    let broken = "/// A typo in a source name.\npolicy details_audit = allow(from: [productpag]) on * -> details\n";
    std::fs::write(root.join("broken.adm"), broken).unwrap();
    let root = std::fs::canonicalize(root).unwrap();
    let out = root.join("result.tsv");
    // The cursor on `details` in the selector.
    let (line, col) = (1, broken.lines().nth(1).unwrap().rfind("details").unwrap());
    let status = Command::new("nvim")
        .args(["--headless", "--clean", "-c"])
        .arg(format!("luafile {}", repo.join("tests/nvim/check.lua").display()))
        .env("ADMC", admc())
        .env("ADM_ROOT", &root)
        .env("ADM_FILE", "broken.adm")
        .env("ADM_LINE", line.to_string())
        .env("ADM_COL", col.to_string())
        .env("ADM_OUT", &out)
        .status()
        .unwrap();
    assert!(status.success(), "nvim failed");
    let result = std::fs::read_to_string(&out).unwrap_or_default();
    let get = |key: &str| -> Vec<&str> {
        result.lines().filter_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('\t'))).collect()
    };
    assert!(get("error").is_empty(), "{result}");
    assert_eq!(get("client"), vec!["true"], "{result}");
    let diagnostics = get("diagnostic");
    assert!(diagnostics.iter().any(|d| d.starts_with("1:36 E0101 unknown service or group `productpag`")), "{result}");
    let hover = get("hover").join("\n");
    assert!(hover.contains("service details"), "{result}");
    let definition = get("definition");
    let bookinfo = root.join("bookinfo.adm").display().to_string();
    assert!(definition.iter().any(|d| d.starts_with(&format!("{bookinfo}:"))), "{result}");
}
