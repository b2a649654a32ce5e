//! Connects steered by the plan, in the kernel, checked from the receiving side (as root): a call
//! with policies at the receiver lands on the receiver's ADM (which can recover the original
//! destination), a policy-free call goes direct, and a call no declaration allows is refused.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used, reason = "tests fail by panicking")]

use std::net::{SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use adm_ebpf_loader::{cgroup2_root, DataPlane, Error, Route, Seed, TempCgroup};

mod common;
use common::is_root;

fn v4(addr: SocketAddr) -> SocketAddrV4 {
    match addr {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => panic!("IPv4 only"),
    }
}

/// Accepts a pending connection, or `None` when none arrives within a second (a safeguard, not a
/// measurement).
fn accept(listener: &TcpListener) -> Option<TcpStream> {
    listener.set_nonblocking(true).unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(1) {
        if let Ok((s, _)) = listener.accept() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

#[test]
fn connects_are_steered_by_the_plan() {
    if !is_root() {
        let root = cgroup2_root().unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup"));
        assert!(matches!(DataPlane::attach(&root), Err(Error::Unprivileged(_))));
        return;
    }
    // `<root>/adm-steer-PID/frontend`, with this process in `frontend` while connecting.
    let mut cgroups = TempCgroup::new("adm-steer").unwrap();
    let frontend = cgroups.child("frontend").unwrap();
    let frontend_adm = cgroups.child("frontend.adm").unwrap();
    let search = TcpListener::bind("127.0.0.71:0").unwrap();
    let search_adm = TcpListener::bind("127.0.0.72:0").unwrap();
    let details = TcpListener::bind("127.0.0.73:0").unwrap();
    let secret = TcpListener::bind("127.0.0.74:0").unwrap();
    let addr = |l: &TcpListener| v4(l.local_addr().unwrap());
    let mut plane = DataPlane::attach(cgroups.path()).unwrap();
    // Services: frontend 0, search 1, details 2, secret 3. frontend -> search has policies at
    // search's ingress; frontend -> details has none; no call joins frontend and secret.
    plane
        .seed(&Seed {
            endpoints: vec![(addr(&search), 1), (addr(&details), 2), (addr(&secret), 3)],
            cgroups: vec![(DataPlane::cgroup_id(&frontend).unwrap(), 0)],
            adm_cgroups: vec![(DataPlane::cgroup_id(&frontend_adm).unwrap(), 0)],
            pairs: vec![(0, 1, Route::ViaReceiver), (0, 2, Route::Direct)],
            adms: vec![(1, Some(addr(&search_adm)), None)],
            deny_undeclared: true,
        })
        .unwrap();
    cgroups.enter(&frontend).unwrap();

    let to_search = TcpStream::connect(addr(&search)).unwrap();
    let arrived = accept(&search_adm).expect("the connect to search reached search's ADM");
    assert!(accept(&search).is_none(), "the connect also reached search directly");
    let (client, server) = (v4(arrived.peer_addr().unwrap()), v4(arrived.local_addr().unwrap()));
    assert_eq!(client, v4(to_search.local_addr().unwrap()));
    assert_eq!(
        plane.original_destination(client, server),
        Some(addr(&search)),
        "the ADM recovers where the client was going"
    );
    let frontend_id = DataPlane::cgroup_id(&frontend).unwrap();
    assert_eq!(plane.observer().peer_cgroup(client, server), Some(frontend_id), "the ADM knows who called");
    drop(to_search);
    drop(arrived);

    let _to_details = TcpStream::connect(addr(&details)).unwrap();
    assert!(accept(&details).is_some(), "a policy-free call goes direct");

    let refused = TcpStream::connect(addr(&secret));
    assert!(refused.is_err(), "a connect on an undeclared edge is refused in the kernel");
    assert!(accept(&secret).is_none());

    let counters = plane.counters().unwrap();
    assert!(counters.steered >= 1 && counters.direct >= 1 && counters.refused >= 1, "{counters:?}");

    // The ADM's own connects are identified but never steered: it forwards where its plan says.
    cgroups.enter(&frontend_adm).unwrap();
    let from_adm = TcpStream::connect(addr(&search)).unwrap();
    let arrived = accept(&search).expect("the ADM's connect reached search directly");
    let (client, server) = (v4(arrived.peer_addr().unwrap()), v4(arrived.local_addr().unwrap()));
    assert_eq!(plane.observer().peer_cgroup(client, server), Some(DataPlane::cgroup_id(&frontend_adm).unwrap()));
    assert_eq!(plane.original_destination(client, server), None);
    drop(from_adm);

    // A new plan, seeded live: frontend -> search loses its policies, undeclared pairs only logged.
    plane
        .seed(&Seed {
            endpoints: vec![(addr(&search), 1), (addr(&details), 2), (addr(&secret), 3)],
            cgroups: vec![(frontend_id, 0)],
            pairs: vec![(0, 1, Route::Direct), (0, 2, Route::Direct)],
            ..Seed::default()
        })
        .unwrap();
    cgroups.enter(&frontend).unwrap();
    let _to_search = TcpStream::connect(addr(&search)).unwrap();
    assert!(accept(&search).is_some(), "after the new plan, the call goes direct");
    assert!(accept(&search_adm).is_none(), "the old ADM route was removed");
    let _to_secret = TcpStream::connect(addr(&secret)).expect("undeclared connects are let through when allowed");
    assert!(accept(&secret).is_some());
    assert_eq!(plane.observer().undeclared(), vec![(0, 3, 1)], "the undeclared pair is logged");
    drop(plane);
    drop(cgroups);
}
