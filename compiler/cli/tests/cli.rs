//! The `admc` command line as build pipelines and people use it: exit codes, output streams,
//! JSON shape, colour, in-place formatting.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used, reason = "tests fail by panicking")]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn admc(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_admc"))
        .args(args)
        .env_remove("NO_COLOR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run admc: {e}"));
    if let Some(mut pipe) = child.stdin.take() {
        let _ = pipe.write_all(stdin.unwrap_or("").as_bytes());
    }
    child.wait_with_output().unwrap_or_else(|e| panic!("admc did not finish: {e}"))
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A fresh folder under the target directory.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    dir
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
    path.to_string_lossy().into_owned()
}

const CLEAN: &str = "service a { port: 1 }\nservice b { port: 2 }\ncall a -> b\n";
const BROKEN: &str = "service a { port: 1 }\nservice b { port 2 }\ncall a -> { }\n";
const WARNS: &str = "service a { port: 1 }\n/// documents nothing\n";

#[test]
fn check_clean_program_exits_0() {
    let dir = scratch("clean");
    let file = write(&dir, "a.adm", CLEAN);
    let out = admc(&["check", &file], None);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("checked 1 file: no problems"));
    let quiet = admc(&["check", "-q", &file], None);
    assert_eq!((code(&quiet), stderr(&quiet).as_str()), (0, ""));
}

#[test]
fn check_errors_exit_1_and_report_each() {
    let dir = scratch("errors");
    let file = write(&dir, "bad.adm", BROKEN);
    let out = admc(&["check", "--color", "never", &file], None);
    assert_eq!(code(&out), 1);
    let err = stderr(&out);
    assert_eq!(err.matches("[E0010]").count(), 2, "{err}");
    assert!(err.contains("bad.adm:2:18"), "{err}");
    assert!(err.contains("checked 1 file: 2 errors"), "{err}");
    assert!(!err.contains('\u{1b}'), "colour despite --color never");
}

#[test]
fn warnings_pass_unless_denied() {
    let dir = scratch("warnings");
    let file = write(&dir, "w.adm", WARNS);
    let out = admc(&["check", &file], None);
    assert_eq!(code(&out), 0);
    assert!(stderr(&out).contains("W0001"));
    let denied = admc(&["check", "--deny-warnings", &file], None);
    assert_eq!(code(&denied), 1);
}

#[test]
fn missing_file_is_a_one_line_usage_error() {
    let out = admc(&["check", "/nonexistent/x.adm"], None);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("`/nonexistent/x.adm`: no such file or directory"), "{err}");
    assert!(!err.contains("panicked") && !err.contains("backtrace"));
}

#[test]
fn folder_without_adm_files_is_an_error() {
    let dir = scratch("empty-dir");
    let out = admc(&["check", &dir.to_string_lossy()], None);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("no `.adm` files"));
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let out = admc(&["check", "--no-such-flag"], None);
    assert_eq!(code(&out), 2);
}

#[test]
fn a_folder_is_every_adm_file_below_it_as_one_program() {
    let dir = scratch("folder");
    write(&dir, "a.adm", CLEAN);
    std::fs::create_dir_all(dir.join("sub/.hidden")).unwrap_or_else(|e| panic!("{e}"));
    // Names of its own: the two files form one program.
    let broken_elsewhere = "service c { port 3 }\ncall c -> { }\n";
    write(&dir.join("sub"), "b.adm", broken_elsewhere);
    write(&dir.join("sub/.hidden"), "c.adm", BROKEN);
    write(&dir.join("sub"), "notes.txt", BROKEN);
    let out = admc(&["check", "--format", "json", &dir.to_string_lossy()], None);
    assert_eq!(code(&out), 1);
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report["files"], 2);
    assert_eq!(report["errors"], 2);
    let files: Vec<&str> =
        report["diagnostics"].as_array().into_iter().flatten().filter_map(|d| d["file"].as_str()).collect();
    assert!(files.iter().all(|f| f.ends_with("sub/b.adm")), "{files:?}");
}

#[test]
fn json_output_has_the_documented_fields() {
    let out = admc(&["check", "--format", "json", "-"], Some("service a { port: 1 }\nservice b { port 2 }\n"));
    assert_eq!(code(&out), 1);
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{e}"));
    let d = &report["diagnostics"][0];
    assert_eq!(d["code"], "E0010");
    assert_eq!(d["severity"], "error");
    assert_eq!(d["file"], "<stdin>");
    assert_eq!((d["start"]["line"].as_u64(), d["start"]["column"].as_u64()), (Some(2), Some(18)));
    assert_eq!((d["end"]["line"].as_u64(), d["end"]["column"].as_u64()), (Some(2), Some(19)));
    assert!(d["message"].as_str().is_some_and(|m| m.contains("expected `:`")));
    assert!(d["labels"].is_array());
    assert!(d.get("help").is_some());
    assert_eq!(report["warnings"], 0);
    assert!(stderr(&out).is_empty(), "json mode writes nothing to stderr: {}", stderr(&out));
}

#[test]
fn colour_is_on_only_when_asked_or_on_a_terminal() {
    let always = admc(&["check", "--color", "always", "-"], Some(BROKEN));
    assert!(stderr(&always).contains('\u{1b}'));
    // Auto, with stderr a pipe: no colour.
    let auto = admc(&["check", "-"], Some(BROKEN));
    assert!(!stderr(&auto).contains('\u{1b}'));
}

#[test]
fn fmt_rewrites_in_place_and_check_names_the_files_that_differ() {
    let dir = scratch("fmt");
    let messy = write(&dir, "messy.adm", "service   a {port:1,}\n\n\n\ncall a->b   // why\n");
    let tidy = write(&dir, "tidy.adm", CLEAN);
    let check = admc(&["fmt", "--check", &messy, &tidy], None);
    assert_eq!(code(&check), 1);
    assert_eq!(stdout(&check).trim(), messy);
    assert_eq!(
        std::fs::read_to_string(&messy).unwrap_or_default(),
        "service   a {port:1,}\n\n\n\ncall a->b   // why\n"
    );

    let out = admc(&["fmt", &messy, &tidy], None);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&messy).unwrap_or_default(), "service a { port: 1 }\n\ncall a -> b // why\n");
    let again = admc(&["fmt", "--check", &messy, &tidy], None);
    assert_eq!(code(&again), 0);
}

#[test]
fn fmt_leaves_files_with_syntax_errors_untouched() {
    let dir = scratch("fmt-broken");
    let bad = write(&dir, "bad.adm", BROKEN);
    let out = admc(&["fmt", &bad], None);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("was not formatted"));
    assert_eq!(std::fs::read_to_string(&bad).unwrap_or_default(), BROKEN);
}

#[test]
fn fmt_of_stdin_prints_the_result() {
    let out = admc(&["fmt", "-"], Some("group g=[a,b,]"));
    assert_eq!(code(&out), 0);
    assert_eq!(stdout(&out), "group g = [a, b]\n");
    let printed = admc(&["fmt", "--stdout", "-"], Some("app x"));
    assert_eq!(stdout(&printed), "app x\n");
}

#[test]
fn the_prelude_is_a_valid_program_of_its_own() {
    let out = admc(&["prelude"], None);
    assert_eq!(code(&out), 0);
    let prelude = stdout(&out);
    assert!(prelude.contains("kind rate_limit(limit: rate, burst: int = 0)"), "{prelude}");
    // Checked as a user file, every kind repeats the built-in definition exactly: allowed.
    let check = admc(&["check", "--deny-warnings", "-"], Some(&prelude));
    assert_eq!(code(&check), 0, "{}", stderr(&check));
    // A different definition under a built-in name is refused.
    let changed = prelude.replace("kind timeout(after: duration)", "kind timeout(after: int)");
    let check = admc(&["check", "-"], Some(&changed));
    assert_eq!(code(&check), 1);
    assert!(stderr(&check).contains("E0105"), "{}", stderr(&check));
}

/// Three services calling round in a triangle, each call with a policy that may run on either side:
/// no reduction applies, so the model keeps a component.
const TRIANGLE: &str = "service a { port: 1 }
service b { port: 2 }
service c { port: 3 }
call a -> b { rate: 10/s }
call b -> c { rate: 20/s }
call c -> a { rate: 30/s }
policy ab = access_log() on a -> b
policy bc = access_log() on b -> c
policy ca = access_log() on c -> a
";

#[test]
fn plan_prints_the_table_and_json() {
    let out = admc(&["plan", "-"], Some(TRIANGLE));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let table = stdout(&out);
    assert!(table.contains("this plan (optimal)"), "{table}");
    assert!(table.contains("sidecar at every service"), "{table}");
    assert!(table.contains("ADMs (2)"), "a triangle is covered by two of its corners: {table}");
    let json = admc(&["plan", "--format", "json", "-"], Some(TRIANGLE));
    let plan: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(plan["schema_version"], 1);
    assert_eq!(plan["status"]["optimal"], true);
    assert_eq!(plan["objective"]["adms"], 2);
    assert_eq!(plan["baselines"]["sidecar"]["adms"], 3);
    assert_eq!(plan["objective"]["traffic_rps"], 60.0);
    let per_direction = admc(&["plan", "--format", "json", "--adm-per-direction", "-"], Some(TRIANGLE));
    let plan: serde_json::Value = serde_json::from_str(&stdout(&per_direction)).unwrap();
    assert_eq!(plan["mode"], "per_direction");
    assert_eq!(plan["baselines"]["sidecar"]["adms"], 6);
}

#[test]
fn plan_emits_the_model_in_lp_format() {
    let out = admc(&["plan", "--emit-model", "-", "-"], Some(TRIANGLE));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let lp = stdout(&out);
    for needle in ["Minimize", "Subject To", "Binary", "End", "y_a", "y_b", "y_c", ">= 1"] {
        assert!(lp.contains(needle), "`{needle}` missing:\n{lp}");
    }
}

#[test]
fn an_unplaceable_program_builds_nothing() {
    let dir = scratch("unplaceable");
    let out_dir = dir.join("out");
    let program = "service a { port: 1, external: ingress }\npolicy r = retry(attempts: 1, per_try_timeout: 1s) on external -> a\n";
    let out = admc(&["build", "-o", &out_dir.to_string_lossy(), "-"], Some(program));
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("E0400"), "{}", stderr(&out));
    assert!(stderr(&out).contains("nothing placed"));
    assert!(!out_dir.exists(), "an unplaceable program wrote files");
}

#[test]
fn build_writes_every_artifact_and_removes_stale_ones() {
    let dir = scratch("build");
    let out_dir = dir.join("out");
    std::fs::create_dir_all(out_dir.join("adm")).unwrap();
    std::fs::write(out_dir.join("adm/gone.json"), "{}").unwrap();
    let out = admc(&["build", "-o", &out_dir.to_string_lossy(), "-"], Some(TRIANGLE));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(out_dir.join("plan.json").is_file());
    assert!(out_dir.join("ebpf/maps.json").is_file());
    let adms: Vec<String> = std::fs::read_dir(out_dir.join("adm"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(adms.len(), 2, "{adms:?}");
    assert!(!adms.contains(&"gone.json".to_string()), "a stale configuration survived");
    // Same input, same bytes.
    let first = std::fs::read(out_dir.join("plan.json")).unwrap();
    admc(&["build", "-o", &out_dir.to_string_lossy(), "-"], Some(TRIANGLE));
    assert_eq!(first, std::fs::read(out_dir.join("plan.json")).unwrap());
}

#[test]
fn explain_answers_for_policies_and_services() {
    let out = admc(&["explain", "ab", "-"], Some(TRIANGLE));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("legal sides: ingress, egress"), "{text}");
    assert!(text.contains("instead:"), "{text}");
    let service = admc(&["explain", "b", "-"], Some(TRIANGLE));
    assert!(stdout(&service).contains("service `b`"), "{}", stdout(&service));
    let unknown = admc(&["explain", "abb", "-"], Some(TRIANGLE));
    assert_eq!(code(&unknown), 1);
    assert!(stderr(&unknown).contains("did you mean `ab`?"), "{}", stderr(&unknown));
}

#[test]
fn a_bad_time_limit_is_a_usage_error() {
    let out = admc(&["plan", "--time-limit=0", "-"], Some(TRIANGLE));
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("--time-limit"), "{}", stderr(&out));
}

#[test]
fn version_and_help_teach() {
    let version = admc(&["--version"], None);
    assert_eq!(code(&version), 0);
    assert!(stdout(&version).starts_with("admc "));
    for sub in [
        &["--help"][..],
        &["check", "--help"],
        &["fmt", "--help"],
        &["prelude", "--help"],
        &["plan", "--help"],
        &["build", "--help"],
        &["explain", "--help"],
        &["lsp", "--help"],
    ] {
        let out = admc(sub, None);
        assert_eq!(code(&out), 0);
        let help = stdout(&out);
        assert!(help.contains("Exit status"), "{sub:?}: {help}");
    }
}
