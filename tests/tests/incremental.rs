//! Incrementality, proved from salsa's own execution events: editing one policy's argument
//! re-parses only its file, re-checks only that file's policies, and leaves the program-wide
//! tables (names, call graph, kinds, legal sides, conflicts) untouched.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used, reason = "tests fail by panicking")]

use admc::db::{self, Database, SourceText};
use salsa::plumbing::AsId;
use salsa::Setter;

const SERVICES: &str = "service frontend { port: 5000, external: ingress }
service search { protocol: grpc, port: 8082 }
service geo { protocol: grpc, port: 8083 }
";
const CALLS: &str = "call frontend -> search { methods: [Nearby], rate: 800/s }
call search -> geo { methods: [Nearby], rate: 800/s }
";
const POLICIES: &str = "policy search_deadline = timeout(after: 300ms) on frontend -> search
policy search_retry = retry(attempts: 2, per_try_timeout: 100ms) on frontend -> search
policy geo_acl = allow(from: [search]) on * -> geo
";

fn executed(log: &db::ExecutionLog) -> Vec<String> {
    std::mem::take(&mut *log.lock().unwrap())
}

fn count(log: &[String], query: &str) -> usize {
    log.iter().filter(|e| e.starts_with(&format!("{query}("))).count()
}

fn setup() -> (Database, db::ExecutionLog, db::Program, SourceText) {
    let (db, log) = Database::with_execution_log();
    let files = [("services.adm", SERVICES), ("calls.adm", CALLS), ("policies.adm", POLICIES)];
    let program = db.program(files);
    let policies = program.files(&db)[3];
    assert!(db::program_diagnostics(&db, program).is_empty(), "{:?}", db::program_diagnostics(&db, program));
    (db, log, program, policies)
}

#[test]
fn editing_an_argument_reparses_one_file_and_keeps_the_program_tables() {
    let (mut db, log, program, policies) = setup();
    let first = executed(&log);
    assert_eq!(count(&first, "parse_file"), 4, "every file and the prelude are parsed once: {first:#?}");

    policies.set_text(&mut db).to(POLICIES.replace("after: 300ms", "after: 250ms").into());
    assert!(db::program_diagnostics(&db, program).is_empty());
    let after_edit = executed(&log);

    let parsed: Vec<&String> = after_edit.iter().filter(|e| e.starts_with("parse_file(")).collect();
    assert_eq!(parsed, vec![&format!("parse_file({:?})", policies.as_id())], "{after_edit:#?}");
    for untouched in ["symbols", "call_graph", "kind_table", "enums", "legal_sides", "conflicts", "policies"] {
        assert_eq!(count(&after_edit, untouched), 0, "`{untouched}` re-ran: {after_edit:#?}");
    }
    // The edited file's policies are re-checked; no other file's diagnostics are recomputed.
    assert_eq!(count(&after_edit, "file_policy_checks"), 1, "{after_edit:#?}");
    assert_eq!(count(&after_edit, "file_diagnostics"), 1, "{after_edit:#?}");
    // The new value is what the program now says.
    let args = db::policy_args(&db, program, 3, 0).expect("checked");
    assert_eq!(args.get("after").map(ToString::to_string).as_deref(), Some("250ms"));
}

#[test]
fn editing_a_selector_recomputes_placement() {
    let (mut db, log, program, policies) = setup();
    executed(&log);
    policies.set_text(&mut db).to(POLICIES.replace("on * -> geo", "on search -> geo").into());
    assert!(db::program_diagnostics(&db, program).is_empty());
    let after_edit = executed(&log);
    assert_eq!(count(&after_edit, "call_graph"), 0, "{after_edit:#?}");
    assert_eq!(count(&after_edit, "legal_sides"), 0, "the coverage is the same: {after_edit:#?}");

    // A selector that covers another call changes the placement problem.
    policies.set_text(&mut db).to(POLICIES.replace("on * -> geo", "on * -> search").into());
    let diags = db::program_diagnostics(&db, program).clone();
    let after_second = executed(&log);
    assert_eq!(count(&after_second, "legal_sides"), 1, "{after_second:#?}");
    // `allow(from: [search])` on `frontend -> search` now refuses frontend: W0500 says so.
    assert!(diags.iter().any(|d| d.code == "W0500"), "{diags:?}");
}

/// Breaking a policy (a syntax error) takes it out of placement, but no declaration depends on a
/// policy's name: the other files' checks are not repeated.
#[test]
fn breaking_a_policy_rechecks_only_its_file() {
    let (mut db, log, program, policies) = setup();
    executed(&log);
    policies.set_text(&mut db).to(POLICIES.replace("timeout(after: 300ms)", "timeout($after: 300ms)").into());
    let diags = db::program_diagnostics(&db, program).clone();
    assert!(diags.iter().any(|d| d.code == "E0001"), "{diags:?}");
    let after_edit = executed(&log);
    for untouched in ["call_graph", "kind_table", "enums"] {
        assert_eq!(count(&after_edit, untouched), 0, "`{untouched}` re-ran: {after_edit:#?}");
    }
    // Only the broken file's checks run again (the name table without policies is unchanged).
    for per_file in ["file_graph_checked", "file_kinds_checked", "file_policy_checks"] {
        assert_eq!(count(&after_edit, per_file), 1, "`{per_file}`: {after_edit:#?}");
    }
}

#[test]
fn editing_a_service_file_leaves_other_files_parsed() {
    let (mut db, log, program, _) = setup();
    executed(&log);
    let services = program.files(&db)[1];
    services.set_text(&mut db).to(SERVICES.replace("port: 8083", "port: 9083").into());
    assert!(db::program_diagnostics(&db, program).is_empty());
    let after_edit = executed(&log);
    assert_eq!(count(&after_edit, "parse_file"), 1, "{after_edit:#?}");
    // The call graph changed (a port), so the graph query re-ran once.
    assert_eq!(count(&after_edit, "call_graph"), 1, "{after_edit:#?}");
}
