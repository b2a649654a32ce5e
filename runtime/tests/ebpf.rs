//! `admd` with the eBPF data plane, end to end (as root): `admd ebpf attach` seeds the kernel from
//! a maps file, `admd --ebpf=require` identifies callers by their cgroup, a service started with
//! `admd ebpf exec` is steered to the receiver's ADM and allowed there although it connects from
//! an address that names nobody, a process outside the mesh that borrows a service's address is
//! not, an undeclared call is refused in the kernel until a new plan, seeded live, declares it.
//! Without the data plane, `--ebpf` warns once and serves, and `--ebpf=require` refuses to start.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used, reason = "tests fail by panicking")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::json;

const ADMD: &str = env!("CARGO_BIN_EXE_admd");

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// A plain HTTP server that answers every request with `name`.
fn server(ip: &str, name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind(format!("{ip}:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let reply =
                    format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{name}", name.len());
                let _ = stream.write_all(reply.as_bytes());
            });
        }
    });
    addr
}

fn free_port(ip: &str) -> u16 {
    TcpListener::bind(format!("{ip}:0")).unwrap().local_addr().unwrap().port()
}

/// A child process, killed if the test fails before it stops it.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A child's stderr, line by line, on a channel.
fn lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("  | {line}");
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits for a line containing `wanted` (a safeguard against hanging, not a measurement).
fn expect(rx: &mpsc::Receiver<String>, wanted: &str) -> String {
    loop {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) if line.contains(wanted) => return line,
            Ok(_) => {}
            Err(e) => panic!("never said `{wanted}`: {e}"),
        }
    }
}

/// `GET /` to `ip:port` from a process in `service`'s cgroup; the reply, or the error.
fn get_as(service: &str, root: &Path, ip: &str, port: u16) -> String {
    let script = "exec 3<>/dev/tcp/$1/$2 || exit 7; \
                  printf 'GET / HTTP/1.1\\r\\nhost: x\\r\\nconnection: close\\r\\n\\r\\n' >&3; cat <&3";
    let out = Command::new(ADMD)
        .args(["ebpf", "exec", "--service", service, "--cgroup-root"])
        .arg(root)
        .args(["--", "bash", "-c", script, "_", ip, &port.to_string()])
        .output()
        .unwrap();
    if out.status.success() {
        String::from_utf8_lossy(&out.stdout).into_owned()
    } else {
        format!("failed: {}", String::from_utf8_lossy(&out.stderr))
    }
}

/// `GET /` from this process (in no mesh cgroup), from a chosen source address.
fn get_from(source: &str, to: SocketAddr) -> String {
    let mut s = connect_from(source, to);
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
    // std cannot bind before connecting; a tokio socket can, then hand the stream back.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        socket.connect(to).await.unwrap().into_std().unwrap()
    });
    stream.set_nonblocking(false).unwrap();
    stream
}

fn write_maps(path: &Path, search: SocketAddr, adm: SocketAddr, secret: SocketAddr, declare_secret: bool) {
    let endpoint = |a: SocketAddr| json!({ "address": a.ip().to_string(), "port": a.port() });
    let mut pairs = vec![json!({ "from": "frontend", "to": "search", "route": "via_receiver" })];
    if declare_secret {
        pairs.push(json!({ "from": "frontend", "to": "secret", "route": "direct" }));
    }
    let maps = json!({
        "schema_version": 1,
        "services": [
            { "id": 0, "name": "frontend", "port": 5000, "endpoints": [{ "address": "127.0.2.1", "port": 5000 }], "adm": null },
            { "id": 1, "name": "search", "port": search.port(), "endpoints": [endpoint(search)],
              "adm": { "ingress": endpoint(adm), "egress": null } },
            { "id": 2, "name": "secret", "port": secret.port(), "endpoints": [endpoint(secret)], "adm": null },
        ],
        "pairs": pairs,
    });
    // Written whole, then renamed: the watcher never sees half a plan.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, maps.to_string()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A scratch mesh: its folder, its cgroups (every service's and every ADM's) and the bpffs where
/// `attach` pins (mounted by attach itself, so /sys/fs/bpf is left alone).
struct Mesh {
    dir: std::path::PathBuf,
    cgroups: adm_ebpf_loader::TempCgroup,
    bpffs: std::path::PathBuf,
}

impl Mesh {
    fn new(name: &str) -> Mesh {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut cgroups = adm_ebpf_loader::TempCgroup::new(name).unwrap();
        for service in ["frontend", "frontend.adm", "search", "search.adm", "secret", "secret.adm"] {
            cgroups.child(service).unwrap();
        }
        let bpffs = dir.join(format!("bpf-{}", std::process::id()));
        Mesh { dir, cgroups, bpffs }
    }

    fn root(&self) -> std::path::PathBuf {
        self.cgroups.path().to_path_buf()
    }

    fn pin(&self) -> std::path::PathBuf {
        self.bpffs.join("adm")
    }

    /// `admd ebpf attach` on `maps` with `extra` arguments, and its log once it has attached.
    fn attach(&self, maps: &Path, extra: &[&str]) -> (Guard, mpsc::Receiver<String>, String) {
        let mut child = Command::new(ADMD)
            .args(["ebpf", "attach"])
            .args(extra)
            .arg("--maps")
            .arg(maps)
            .arg("--cgroup-root")
            .arg(self.root())
            .arg("--pin")
            .arg(self.pin())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = lines(&mut child);
        let attached = expect(&log, "attached");
        (Guard(child), log, attached)
    }

    /// Stops `attach` as an operator would (SIGTERM): it must detach and exit cleanly.
    fn detach(&self, mut attach: Guard, log: &mpsc::Receiver<String>) {
        Command::new("kill").args(["-TERM", &attach.0.id().to_string()]).status().unwrap();
        expect(log, "detached");
        assert!(attach.0.wait().unwrap().success());
        assert!(!self.pin().exists(), "the pins are removed on exit");
        Command::new("umount").arg(&self.bpffs).status().unwrap();
        let _ = std::fs::remove_dir(&self.bpffs);
    }
}

#[test]
fn the_kernel_steers_identifies_and_refuses_by_the_plan() {
    if !is_root() {
        eprintln!("skipped: needs root (the unprivileged path is tested below)");
        return;
    }
    let mesh = Mesh::new("adm-e2e");
    let (dir, root) = (mesh.dir.clone(), mesh.root());
    let pin = mesh.pin().to_string_lossy().into_owned();

    let search = server("127.0.2.2", "search");
    let secret = server("127.0.2.3", "secret");
    let adm: SocketAddr = format!("127.0.2.2:{}", free_port("127.0.2.2")).parse().unwrap();
    let maps = dir.join("maps.json");
    write_maps(&maps, search, adm, secret, false);
    let config = dir.join("search.json");
    let acl = json!({ "policy": "acl", "kind": "allow", "unit": "call frontend -> search",
        "args": { "from": [{ "service": "frontend", "members": ["frontend"] }] } });
    std::fs::write(
        &config,
        json!({
            "schema_version": 1, "service": "search",
            "listeners": { "ingress": { "address": "127.0.2.2", "port": adm.port() }, "egress": null },
            "upstreams": [{ "service": "search", "protocol": "http",
                "endpoints": [{ "address": "127.0.2.2", "port": search.port() }] }],
            "peers": [{ "service": "frontend", "addresses": ["127.0.2.1"] }],
            "routes": [{ "from": "frontend", "to": "search", "direction": "ingress",
                "chains": [{ "methods": null, "chain": [acl] }], "forward": { "to": "service", "service": "search" } }],
        })
        .to_string(),
    )
    .unwrap();

    let (attach, attach_log, attached) = mesh.attach(&maps, &[]);
    assert!(attached.contains("3 services, 1 calls (1 through ADMs, 0 direct)"), "{attached}");

    let admin = format!("127.0.2.2:{}", free_port("127.0.2.2"));
    let mut proxy = Command::new(ADMD)
        .arg("--config")
        .arg(&config)
        .args(["--ebpf=require", "--bpf-pin", &pin, "--admin", &admin, "--cgroup-root"])
        .arg(&root)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let proxy_log = lines(&mut proxy);
    let mut proxy = Guard(proxy);
    expect(&proxy_log, "callers identified by the kernel");
    expect(&proxy_log, "ready");

    // frontend connects to search's own address from 127.0.0.1: the kernel steers it to search's
    // ADM, which knows it is frontend by its cgroup, and lets it through.
    let reply = get_as("frontend", &root, "127.0.2.2", search.port());
    assert!(reply.starts_with("HTTP/1.1 200") && reply.ends_with("search"), "{reply}");
    // A process in no mesh cgroup that borrows frontend's address is a stranger to the ADM.
    let reply = get_from("127.0.2.1", adm);
    assert!(reply.starts_with("HTTP/1.1 403"), "{reply}");
    // No declared call joins frontend and secret: refused in the kernel.
    let reply = get_as("frontend", &root, "127.0.2.3", secret.port());
    assert!(reply.starts_with("failed"), "{reply}");

    let mut s = TcpStream::connect(&admin).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n").unwrap();
    let mut metrics = String::new();
    s.read_to_string(&mut metrics).unwrap();
    let value = |line: &str| -> u64 {
        metrics.lines().find_map(|l| l.strip_prefix(line)).map_or(0, |v| v.trim().parse().unwrap())
    };
    assert!(value("admd_ebpf_connects_total{outcome=\"steered\"}") >= 1, "{metrics}");
    assert!(value("admd_ebpf_connects_total{outcome=\"refused\"}") >= 1, "{metrics}");
    assert!(value("admd_policy_decisions_total{policy=\"acl\",decision=\"passed\"}") >= 1, "{metrics}");

    // A new plan declares frontend -> secret; seeded live, the same connect now goes through.
    write_maps(&maps, search, adm, secret, true);
    assert!(expect(&attach_log, "new plan seeded").contains("2 calls (1 through ADMs, 1 direct)"));
    let reply = get_as("frontend", &root, "127.0.2.3", secret.port());
    assert!(reply.ends_with("secret"), "{reply}");

    Command::new("kill").args(["-TERM", &proxy.0.id().to_string()]).status().unwrap();
    assert!(proxy.0.wait().unwrap().success());
    mesh.detach(attach, &attach_log);
    assert!(!root.join("frontend").exists() && !root.join("search.adm").exists(), "empty cgroups are removed on exit");
    drop(mesh);
    assert!(!root.exists(), "no cgroup is left behind");
}

/// Without privileges (setpriv, as nobody), `admd ebpf attach` fails with one error naming the
/// reason and exit status 2, and `admd --ebpf` falls back with one warning.
#[test]
fn unprivileged_attach_names_the_reason() {
    if !is_root() {
        eprintln!("skipped: needs root to drop privileges with setpriv");
        return;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("admd-unprivileged");
    std::fs::create_dir_all(&dir).unwrap();
    let maps = dir.join("maps.json");
    let any: SocketAddr = "127.0.2.20:1".parse().unwrap();
    write_maps(&maps, any, any, any, false);
    let mut perms = std::fs::metadata(&dir).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&dir, perms).unwrap();
    // A cgroup root the unprivileged user may create service cgroups in, so that what fails is BPF.
    let cgroups = adm_ebpf_loader::TempCgroup::new("adm-unpriv").unwrap();
    let root = cgroups.path().to_path_buf();
    std::process::Command::new("chown").arg("65534:65534").arg(&root).status().unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", ADMD])
        .args(["ebpf", "attach", "--maps"])
        .arg(&maps)
        .arg("--cgroup-root")
        .arg(&root)
        .arg("--pin")
        .arg(dir.join("bpf/adm"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no privileges for eBPF"), "{err}");
    assert!(!dir.join("bpf/adm").exists(), "nothing half attached");
    for entry in std::fs::read_dir(&root).unwrap().filter_map(Result::ok) {
        if entry.path().is_dir() {
            std::fs::remove_dir(entry.path()).unwrap();
        }
    }
    drop(cgroups);
}

#[test]
fn without_the_data_plane_ebpf_warns_once_or_refuses_when_required() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("admd-no-ebpf");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("svc.json");
    let port = free_port("127.0.2.9");
    std::fs::write(
        &config,
        json!({
            "schema_version": 1, "service": "svc",
            "listeners": { "ingress": { "address": "127.0.2.9", "port": port }, "egress": null },
            "upstreams": [{ "service": "svc", "protocol": "http", "endpoints": [{ "address": "127.0.2.9", "port": 9 }] }],
            "peers": [], "routes": [],
        })
        .to_string(),
    )
    .unwrap();
    let nowhere = dir.join("no-pins-here");
    let required = Command::new(ADMD)
        .arg("--config")
        .arg(&config)
        .args(["--ebpf=require", "--bpf-pin"])
        .arg(&nowhere)
        .output()
        .unwrap();
    assert_eq!(required.status.code(), Some(2));
    let err = String::from_utf8_lossy(&required.stderr);
    assert!(err.contains("--ebpf=require") && err.contains("admd ebpf attach"), "{err}");

    let admin = format!("127.0.2.9:{}", free_port("127.0.2.9"));
    let mut auto = Command::new(ADMD)
        .arg("--config")
        .arg(&config)
        .args(["--ebpf", "--admin", &admin, "--bpf-pin"])
        .arg(&nowhere)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = lines(&mut auto);
    let warning = expect(&log, "warning");
    assert!(warning.contains("eBPF data plane not used") && warning.contains("identified by address"), "{warning}");
    expect(&log, "ready");
    Command::new("kill").args(["-TERM", &auto.id().to_string()]).status().unwrap();
    assert!(auto.wait().unwrap().success());
}

/// `--undeclared=allow`: a call that no declaration joins goes through, and `attach` logs it once
/// per pair with the services' names.
#[test]
fn undeclared_calls_are_let_through_and_logged_when_allowed() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let mesh = Mesh::new("adm-allow");
    let root = mesh.root();
    let search = server("127.0.2.12", "search");
    let secret = server("127.0.2.13", "secret");
    let maps = mesh.dir.join("maps.json");
    write_maps(&maps, search, search, secret, false);
    let (attach, log, attached) = mesh.attach(&maps, &["--undeclared", "allow"]);
    assert!(attached.contains("undeclared calls let through and logged"), "{attached}");
    let reply = get_as("frontend", &root, "127.0.2.13", secret.port());
    assert!(reply.ends_with("secret"), "{reply}");
    let line = expect(&log, "undeclared call");
    assert!(line.contains("frontend -> secret") && line.contains("1 connects"), "{line}");
    mesh.detach(attach, &log);
}
