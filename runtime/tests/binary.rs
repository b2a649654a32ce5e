//! The `admd` binary: validation before listening, reloads (SIGHUP and file change), and drain on
//! SIGTERM.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used, reason = "tests fail by panicking")]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn config(port: u16, allowed: &str) -> String {
    config_to(port, allowed, 9)
}

/// The same, with the service's endpoint at `127.0.0.52:upstream`.
fn config_to(port: u16, allowed: &str, upstream: u16) -> String {
    serde_json::json!({
        "schema_version": 1,
        "service": "svc",
        "listeners": { "ingress": { "address": "127.0.0.51", "port": port }, "egress": null },
        "upstreams": [{ "service": "svc", "protocol": "http", "endpoints": [{ "address": "127.0.0.52", "port": upstream }] }],
        "peers": [],
        "routes": [{ "from": "external", "to": "svc", "direction": "ingress",
            "chains": [{ "methods": null, "chain": [{ "policy": "acl", "kind": "allow", "unit": "call external -> svc",
                "args": { "from": [{ "service": allowed, "members": [allowed] }] } }] }],
            "forward": { "to": "service", "service": "svc" } }]
    })
    .to_string()
}

/// `admd --config path --admin admin`, its stderr piped.
fn spawn(path: &std::path::Path, admin: &str, stdout: Stdio) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_admd"))
        .arg("--config")
        .arg(path)
        .args(["--admin", admin])
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.51:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn a_bad_configuration_is_one_line_and_exit_2() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("admd-bad");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.json");
    std::fs::write(&path, config(15006, "frontend").replace("\"port\":9}", "\"port\":0}")).unwrap();
    assert!(std::fs::read_to_string(&path).unwrap().contains("\"port\":0}"), "the test must break the file");
    let out = Command::new(env!("CARGO_BIN_EXE_admd")).arg("--config").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("upstreams[0].endpoints[0].port"), "{err}");
    let missing = Command::new(env!("CARGO_BIN_EXE_admd")).args(["--config", "/nonexistent.json"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(2));
    let good = dir.join("good.json");
    std::fs::write(&good, config(15006, "frontend")).unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_admd")).arg("--config").arg(&good).arg("--check").output().unwrap();
    assert_eq!(check.status.code(), Some(0));
}

#[test]
fn reloads_keep_serving_and_sigterm_drains() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("admd-reload");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("svc.json");
    let port = free_port();
    std::fs::write(&path, config(port, "frontend")).unwrap();
    let admin = format!("127.0.0.51:{}", free_port());
    let mut child = spawn(&path, &admin, Stdio::null());
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut next_line = move |wanted: &str| -> String {
        for line in lines.by_ref() {
            let line = line.unwrap();
            if line.contains(wanted) {
                return line;
            }
        }
        panic!("admd never said `{wanted}`")
    };
    next_line("ready");
    let pid = child.id().to_string();
    // A bad new configuration is refused; the old one keeps serving.
    std::fs::write(&path, "{ not json").unwrap();
    assert!(next_line("reload refused").contains("old configuration keeps serving"));
    // A good one is taken, on SIGHUP as on the file's change.
    std::fs::write(&path, config(port, "backend")).unwrap();
    next_line("configuration reloaded");
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    next_line("configuration reloaded");
    // The admin port answers.
    let mut s = std::net::TcpStream::connect(&admin).unwrap();
    std::io::Write::write_all(&mut s, b"GET /healthz HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut s, &mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    next_line("draining");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

/// An ADM for `svc` on 127.0.0.51:`port` whose chain logs every request but those of `Quiet`;
/// its upstream is not there.
fn access_log_config(port: u16) -> serde_json::Value {
    let log = |fraction: f64| {
        serde_json::json!({ "policy": "log", "kind": "access_log", "unit": "call external -> svc",
        "args": { "sample": { "fraction": fraction } } })
    };
    serde_json::json!({
        "schema_version": 1,
        "service": "svc",
        "listeners": { "ingress": { "address": "127.0.0.51", "port": port }, "egress": null },
        "upstreams": [{ "service": "svc", "protocol": "http", "endpoints": [{ "address": "127.0.0.52", "port": 9 }] }],
        "peers": [],
        "routes": [{ "from": "external", "to": "svc", "direction": "ingress",
            "chains": [{ "methods": ["Quiet"], "chain": [log(0.0)] }, { "methods": null, "chain": [log(1.0)] }],
            "forward": { "to": "service", "service": "svc" } }]
    })
}

/// `access_log` writes one JSON line per sampled request on stdout, and none when unsampled.
#[test]
fn access_log_writes_json_lines_for_sampled_requests() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("admd-access-log");
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let config = access_log_config(port);
    let path = dir.join("svc.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let admin = format!("127.0.0.51:{}", free_port());
    let mut child = spawn(&path, &admin, Stdio::piped());
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    assert!(err.by_ref().map_while(Result::ok).any(|l| l.contains("ready")), "admd never got ready");
    let get = |target: &str| {
        let mut s = std::net::TcpStream::connect(("127.0.0.51", port)).unwrap();
        let request = format!("GET {target} HTTP/1.1\r\nhost: svc\r\nconnection: close\r\n\r\n");
        std::io::Write::write_all(&mut s, request.as_bytes()).unwrap();
        let mut answer = String::new();
        std::io::Read::read_to_string(&mut s, &mut answer).unwrap();
        answer
    };
    // The upstream is not there: 503, and logged as such.
    assert!(get("/api/Quiet").starts_with("HTTP/1.1 503"));
    assert!(get("/api/Loud").starts_with("HTTP/1.1 503"));
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    assert!(child.wait().unwrap().success());
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1, "only the sampled request is logged: {out}");
    let line = &lines[0];
    assert_eq!(
        (&line["policy"], &line["from"], &line["to"], &line["method"], &line["status"]),
        (
            &serde_json::json!("log"),
            &serde_json::json!("external"),
            &serde_json::json!("svc"),
            &serde_json::json!("Loud"),
            &serde_json::json!(503)
        )
    );
    assert!(line["duration_us"].is_u64(), "{line}");
}

/// SIGTERM lets the requests in flight finish (an upstream that takes a second to answer), on
/// the lean path and on hyper's, then admd exits cleanly.
#[test]
fn sigterm_lets_requests_in_flight_finish() {
    use std::io::{Read, Write};
    let upstream = std::net::TcpListener::bind("127.0.0.52:0").unwrap();
    let upstream_port = upstream.local_addr().unwrap().port();
    let (arrived, arrivals) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in upstream.incoming() {
            let Ok(mut stream) = stream else { return };
            let arrived = arrived.clone();
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                let _ = arrived.send(());
                std::thread::sleep(std::time::Duration::from_secs(1));
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nslow");
            });
        }
    });
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("admd-drain");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("svc.json");
    let port = free_port();
    std::fs::write(&path, config_to(port, "external", upstream_port)).unwrap();
    let admin = format!("127.0.0.51:{}", free_port());
    let mut child = spawn(&path, &admin, Stdio::null());
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    assert!(lines.by_ref().map(Result::unwrap).any(|l| l.contains("ready")));
    // One request on the lean path, one that hyper serves (a chunked body).
    let requests = [
        "GET / HTTP/1.1\r\nhost: svc\r\n\r\n",
        "POST / HTTP/1.1\r\nhost: svc\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
    ];
    let clients: Vec<_> = requests
        .iter()
        .map(|request| {
            let mut s = std::net::TcpStream::connect(("127.0.0.51", port)).unwrap();
            s.write_all(request.as_bytes()).unwrap();
            std::thread::spawn(move || {
                let mut answer = Vec::new();
                let mut buf = [0u8; 4096];
                // Until the body has come (the connection may stay open).
                while !String::from_utf8_lossy(&answer).ends_with("slow") {
                    match s.read(&mut buf) {
                        Ok(n) if n > 0 => answer.extend_from_slice(&buf[..n]),
                        _ => break,
                    }
                }
                String::from_utf8_lossy(&answer).into_owned()
            })
        })
        .collect();
    for _ in &requests {
        arrivals.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
    }
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    for client in clients {
        let answer = client.join().unwrap();
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("slow"), "{answer}");
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let said: Vec<String> = lines.map(Result::unwrap).collect();
    assert!(said.iter().any(|l| l.contains("stopped")), "{said:?}");
    assert!(!said.iter().any(|l| l.contains("cut off")), "{said:?}");
}

/// A closed stdout loses access-log lines, never requests.
#[test]
fn a_closed_stdout_costs_no_request() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("admd-closed-stdout");
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let path = dir.join("svc.json");
    std::fs::write(&path, access_log_config(port).to_string()).unwrap();
    let admin = format!("127.0.0.51:{}", free_port());
    let mut child = spawn(&path, &admin, Stdio::piped());
    drop(child.stdout.take());
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    assert!(err.by_ref().map_while(Result::ok).any(|l| l.contains("ready")), "admd never got ready");
    for _ in 0..3 {
        let mut s = std::net::TcpStream::connect(("127.0.0.51", port)).unwrap();
        std::io::Write::write_all(&mut s, b"GET /api/Loud HTTP/1.1\r\nhost: svc\r\nconnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        let _ = std::io::Read::read_to_string(&mut s, &mut answer);
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    }
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(child.wait().unwrap().success());
}
