//! The language server through its protocol, in process: a fixture workspace, requests as an
//! editor sends them, and the responses as insta snapshots (URIs relative to the workspace).

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used, reason = "tests fail by panicking")]

use std::path::{Path, PathBuf};
use std::time::Duration;

use lsp_server::{Connection, Message, Notification, Request, RequestId};
use serde_json::{json, Value};

struct Client {
    conn: Connection,
    root: PathBuf,
    next_id: i32,
    /// Notifications received while waiting for responses.
    notifications: Vec<Notification>,
    server: Option<std::thread::JoinHandle<Result<(), String>>>,
}

/// A copy of the fixture workspace, fresh for each test.
fn workspace(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("lsp-{name}"));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mesh");
    for entry in std::fs::read_dir(fixtures).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), root.join(entry.file_name())).unwrap();
    }
    std::fs::canonicalize(root).unwrap()
}

fn uri(path: &Path) -> String {
    adm_lsp::uri(path).unwrap().as_str().to_string()
}

impl Client {
    fn start(name: &str) -> Client {
        let root = workspace(name);
        let (server_end, client_end) = Connection::memory();
        let server = std::thread::spawn(move || adm_lsp::serve(server_end));
        let mut client = Client { conn: client_end, root, next_id: 0, notifications: Vec::new(), server: Some(server) };
        let root_uri = uri(&client.root);
        let init = client.request(
            "initialize",
            json!({ "capabilities": { "general": { "positionEncodings": ["utf-16"] } }, "rootUri": root_uri }),
        );
        assert!(init["capabilities"]["hoverProvider"].as_bool().unwrap_or(false), "{init}");
        client.notify("initialized", json!({}));
        client
    }

    fn file_uri(&self, file: &str) -> String {
        uri(&self.root.join(file))
    }

    fn notify(&self, method: &str, params: Value) {
        self.conn.sender.send(Message::Notification(Notification::new(method.to_string(), params))).unwrap();
    }

    fn receive(&mut self) -> Message {
        // A safeguard against a hung server, not a measurement.
        self.conn.receiver.recv_timeout(Duration::from_secs(30)).expect("the server stopped answering")
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = RequestId::from(self.next_id);
        self.conn.sender.send(Message::Request(Request::new(id.clone(), method.to_string(), params))).unwrap();
        loop {
            match self.receive() {
                Message::Response(r) if r.id == id => {
                    return match r.response_result {
                        Ok(v) => v,
                        Err(e) => json!({ "error": e.message }),
                    };
                }
                Message::Notification(n) => self.notifications.push(n),
                _ => {}
            }
        }
    }

    /// The next notification of a method (already received or to come).
    fn wait_for(&mut self, method: &str) -> Value {
        if let Some(i) = self.notifications.iter().position(|n| n.method == method) {
            return self.notifications.remove(i).params;
        }
        loop {
            if let Message::Notification(n) = self.receive() {
                if n.method == method {
                    return n.params;
                }
                self.notifications.push(n);
            }
        }
    }

    /// The first diagnostics published for a file that satisfy `wanted` (earlier publications,
    /// such as the empty lists at start-up, are skipped).
    fn diagnostics_for(&mut self, file: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let uri = self.file_uri(file);
        loop {
            let p = self.wait_for("textDocument/publishDiagnostics");
            if p["uri"] == uri && wanted(&p["diagnostics"]) {
                return p["diagnostics"].clone();
            }
        }
    }

    fn open(&mut self, file: &str, text: &str) {
        let uri = self.file_uri(file);
        self.notify(
            "textDocument/didOpen",
            json!({ "textDocument": { "uri": uri, "languageId": "adm", "version": 1, "text": text } }),
        );
    }

    fn at(&self, file: &str, line: u32, character: u32) -> Value {
        json!({ "textDocument": { "uri": self.file_uri(file) }, "position": { "line": line, "character": character } })
    }

    /// The position of the `n`-th occurrence of `needle` in a file (plus `shift` characters).
    fn find(&self, file: &str, needle: &str, shift: u32) -> (u32, u32) {
        let text = std::fs::read_to_string(self.root.join(file)).unwrap();
        for (line, l) in text.lines().enumerate() {
            if let Some(col) = l.find(needle) {
                return (line as u32, col as u32 + shift);
            }
        }
        panic!("`{needle}` not in {file}")
    }

    /// A JSON value with the workspace's URIs made relative, for snapshots.
    fn relative(&self, v: &Value) -> String {
        serde_json::to_string_pretty(v).unwrap().replace(&uri(&self.root), "<workspace>")
    }

    fn stop(mut self) {
        let _ = self.request("shutdown", Value::Null);
        self.notify("exit", Value::Null);
        if let Some(server) = self.server.take() {
            server.join().unwrap().unwrap();
        }
    }
}

#[test]
fn diagnostics_follow_edits_and_offer_fixes() {
    let mut c = Client::start("diagnostics");
    let text = std::fs::read_to_string(c.root.join("policies.adm")).unwrap();
    c.open("policies.adm", &text);
    // Incremental change: misspell `frontend` in the first policy's `from` list.
    let (line, col) = c.find("policies.adm", "from: [frontend]", 7);
    c.notify(
        "textDocument/didChange",
        json!({
            "textDocument": { "uri": c.file_uri("policies.adm"), "version": 2 },
            "contentChanges": [{ "range": { "start": { "line": line, "character": col }, "end": { "line": line, "character": col + 8 } }, "text": "frontnd" }]
        }),
    );
    let diagnostics = c.diagnostics_for("policies.adm", |d| d != &json!([]));
    insta::assert_snapshot!("diagnostics_after_edit", c.relative(&diagnostics));
    let actions = c.request(
        "textDocument/codeAction",
        json!({
            "textDocument": { "uri": c.file_uri("policies.adm") },
            "range": diagnostics[0]["range"],
            "context": { "diagnostics": diagnostics }
        }),
    );
    insta::assert_snapshot!("quick_fix", c.relative(&actions));
    // Undo: the diagnostics are cleared.
    c.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": c.file_uri("policies.adm"), "version": 3 }, "contentChanges": [{ "text": text }] }),
    );
    assert_eq!(c.diagnostics_for("policies.adm", |d| d == &json!([])), json!([]));
    c.stop();
}

#[test]
fn an_unsaved_buffer_overrides_the_disk() {
    let mut c = Client::start("buffers");
    // On disk `db` exists; the open buffer of services.adm drops it, so the policies file (not
    // open) now refers to an unknown service.
    let text = std::fs::read_to_string(c.root.join("services.adm")).unwrap();
    let without_db = text.lines().filter(|l| !l.contains("db")).collect::<Vec<_>>().join("\n");
    c.open("services.adm", &without_db);
    let diagnostics = c.diagnostics_for("policies.adm", |d| d != &json!([]));
    let codes: Vec<&str> = diagnostics.as_array().unwrap().iter().filter_map(|d| d["code"].as_str()).collect();
    assert_eq!(codes, vec!["E0101"], "{diagnostics}");
    c.stop();
}

#[test]
fn hover_shows_kinds_coverage_sides_and_placement() {
    let mut c = Client::start("hover");
    c.wait_for("adm/planned");
    let (line, col) = c.find("policies.adm", "db_guard", 2);
    let policy = c.request("textDocument/hover", c.at("policies.adm", line, col));
    insta::assert_snapshot!("hover_policy", c.relative(&policy));
    let (line, col) = c.find("policies.adm", "rate_limit", 2);
    let kind = c.request("textDocument/hover", c.at("policies.adm", line, col));
    insta::assert_snapshot!("hover_kind", c.relative(&kind));
    let (line, col) = c.find("services.adm", "service frontend", 10);
    let service = c.request("textDocument/hover", c.at("services.adm", line, col));
    insta::assert_snapshot!("hover_service", c.relative(&service));
    c.stop();
}

#[test]
fn definitions_references_and_rename() {
    let mut c = Client::start("navigation");
    let (line, col) = c.find("policies.adm", "-> db", 4);
    let definition = c.request("textDocument/definition", c.at("policies.adm", line, col));
    insta::assert_snapshot!("definition", c.relative(&definition));
    let mut params =
        c.at("services.adm", c.find("services.adm", "service db", 9).0, c.find("services.adm", "service db", 9).1);
    params["context"] = json!({ "includeDeclaration": true });
    let references = c.request("textDocument/references", params);
    insta::assert_snapshot!("references", c.relative(&references));
    let (line, col) = c.find("services.adm", "service db", 9);
    let prepare = c.request("textDocument/prepareRename", c.at("services.adm", line, col));
    assert!(prepare.get("start").is_some(), "{prepare}");
    let mut rename = c.at("services.adm", line, col);
    rename["newName"] = json!("postgres");
    let edit = c.request("textDocument/rename", rename.clone());
    insta::assert_snapshot!("rename", c.relative(&edit));
    rename["newName"] = json!("catalog");
    assert_eq!(c.request("textDocument/rename", rename.clone())["error"], "`catalog` is already defined");
    rename["newName"] = json!("not a name");
    assert!(c.request("textDocument/rename", rename)["error"].as_str().unwrap().contains("not a valid name"));
    let (line, col) = c.find("policies.adm", "rate_limit", 2);
    let builtin = c.request("textDocument/prepareRename", c.at("policies.adm", line, col));
    assert!(builtin["error"].as_str().unwrap().contains("built in"), "{builtin}");
    c.stop();
}

#[test]
fn completion_in_context() {
    let mut c = Client::start("completion");
    let text = "policy extra = load_balance(algorithm: ) on frontend -> catalog.\npolicy more = timeout( ";
    c.open("extra.adm", text);
    let labels = |v: &Value| -> Vec<String> {
        let mut l: Vec<String> =
            v.as_array().unwrap().iter().map(|i| i["label"].as_str().unwrap().to_string()).collect();
        l.sort();
        l
    };
    let values = c.request("textDocument/completion", c.at("extra.adm", 0, 39));
    assert_eq!(labels(&values), vec!["least_request", "random", "ring_hash", "round_robin"]);
    let methods = c.request("textDocument/completion", c.at("extra.adm", 0, 64));
    assert_eq!(labels(&methods), vec!["Get", "List"]);
    let endpoints = c.request("textDocument/completion", c.at("extra.adm", 0, 44));
    assert_eq!(labels(&endpoints), vec!["*", "backends", "catalog", "db", "external", "frontend", "orders"]);
    let args = c.request("textDocument/completion", c.at("extra.adm", 1, 22));
    assert_eq!(labels(&args), vec!["after"]);
    let kinds = c.request("textDocument/completion", c.at("extra.adm", 1, 14));
    assert!(labels(&kinds).contains(&"rate_limit".to_string()), "{kinds}");
    c.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": c.file_uri("extra.adm"), "version": 2 }, "contentChanges": [{ "text": "\nser" }] }),
    );
    let keywords = c.request("textDocument/completion", c.at("extra.adm", 1, 3));
    assert!(labels(&keywords).contains(&"service".to_string()), "{keywords}");
    c.stop();
}

#[test]
fn symbols_formatting_and_inlay_hints() {
    let mut c = Client::start("symbols");
    c.wait_for("adm/planned");
    let symbols =
        c.request("textDocument/documentSymbol", json!({ "textDocument": { "uri": c.file_uri("services.adm") } }));
    insta::assert_snapshot!("document_symbols", c.relative(&symbols));
    let found = c.request("workspace/symbol", json!({ "query": "guard" }));
    insta::assert_snapshot!("workspace_symbols", c.relative(&found));
    let hints = c.request(
        "textDocument/inlayHint",
        json!({
            "textDocument": { "uri": c.file_uri("policies.adm") },
            "range": { "start": { "line": 0, "character": 0 }, "end": { "line": 100, "character": 0 } }
        }),
    );
    insta::assert_snapshot!("inlay_hints", c.relative(&hints));
    c.open("messy.adm", "service   x {port:1,}\n");
    let formatting = c.request(
        "textDocument/formatting",
        json!({
            "textDocument": { "uri": c.file_uri("messy.adm") }, "options": { "tabSize": 2, "insertSpaces": true }
        }),
    );
    assert_eq!(formatting[0]["newText"], "service x { port: 1 }\n");
    c.stop();
}
