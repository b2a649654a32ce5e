//! The data plane in the kernel, as root: a loopback TCP pair inside a test cgroup exchanges
//! 10 MB of random data, byte for byte, and the counters show the messages went socket to socket.
//! Nothing stays attached afterwards. Without root, attaching fails cleanly with `Unprivileged`.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used, reason = "tests fail by panicking")]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;

use adm_ebpf_loader::{cgroup2_root, DataPlane, Error, TempCgroup};

mod common;
use common::is_root;

/// Random bytes (xorshift), reproducible.
fn payload(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn ten_megabytes_cross_a_redirected_pair_byte_for_byte() {
    if !is_root() {
        // Unprivileged: no half-attached state, one clear reason.
        let root = cgroup2_root().unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup"));
        match DataPlane::attach(&root) {
            Err(Error::Unprivileged(_)) => return,
            other => panic!("expected Unprivileged without root, got {other:?}"),
        }
    }
    let cgroup = TempCgroup::new("adm-test").unwrap();
    cgroup.enter(cgroup.path()).unwrap();
    let plane = DataPlane::attach(cgroup.path()).unwrap();
    let before = plane.counters().unwrap();

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let echo = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                return;
            }
            s.write_all(&buf[..n]).unwrap();
        }
    });
    let data = payload(10 * 1024 * 1024);
    let mut client = TcpStream::connect(addr).unwrap();
    let mut reader = client.try_clone().unwrap();
    let expected = data.clone();
    let receiver = std::thread::spawn(move || {
        let mut got = vec![0u8; expected.len()];
        reader.read_exact(&mut got).unwrap();
        got == expected
    });
    for chunk in data.chunks(16 * 1024) {
        client.write_all(chunk).unwrap();
    }
    assert!(receiver.join().unwrap(), "the echoed bytes differ from the sent ones");
    client.shutdown(std::net::Shutdown::Both).unwrap();
    echo.join().unwrap();

    let after = plane.counters().unwrap();
    assert!(after.redirected > before.redirected + 100, "messages were not redirected: {before:?} -> {after:?}");
    drop(plane);
    drop(cgroup);
    // Nothing left: the test cgroup is gone with its attachments.
    assert!(!cgroup2_root().unwrap().join(format!("adm-test-{}", std::process::id())).exists());
}

/// As root, the same test runs again as an unprivileged user (setpriv): attaching must fail with
/// `Unprivileged`, and nothing may be left behind.
#[test]
fn without_privileges_attaching_fails_cleanly() {
    if !is_root() {
        let root = cgroup2_root().unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup"));
        assert!(matches!(DataPlane::attach(&root), Err(Error::Unprivileged(_))));
        return;
    }
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "without_privileges_attaching_fails_cleanly", "--test-threads=1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("1 passed"), "{stdout}");
}
