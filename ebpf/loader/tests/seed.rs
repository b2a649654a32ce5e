//! `Seed::from_maps`: `ebpf/maps.json` as the maps will hold it (runs anywhere: the cgroup
//! directories are plain directories here, and a cgroup's id is its directory's inode).

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used, reason = "tests fail by panicking")]

use std::net::SocketAddrV4;

use adm_ebpf_loader::{DataPlane, Error, Route, Seed};

fn maps(text: &str) -> adm_artifacts::EbpfMaps {
    serde_json::from_str(text).unwrap()
}

const MESH: &str = r#"{ "schema_version": 1,
  "services": [
    { "id": 0, "name": "frontend", "port": 5000, "endpoints": [{ "address": "127.0.1.1", "port": 5000 }],
      "adm": { "ingress": null, "egress": { "address": "127.0.1.1", "port": 15001 } } },
    { "id": 1, "name": "search", "port": 8082,
      "endpoints": [{ "address": "127.0.1.2", "port": 8082 }, { "address": "search-2.local", "port": 8082 }],
      "adm": null } ],
  "pairs": [{ "from": "frontend", "to": "search", "route": "via_sender" }] }"#;

#[test]
fn a_plan_becomes_the_seed_of_every_map() {
    let root = std::env::temp_dir().join(format!("adm-seed-{}", std::process::id()));
    let (seed, warnings) = Seed::from_maps(&maps(MESH), &root, true).unwrap();
    let v4 = |s: &str| s.parse::<SocketAddrV4>().unwrap();
    assert_eq!(seed.endpoints, vec![(v4("127.0.1.1:5000"), 0), (v4("127.0.1.2:8082"), 1)]);
    assert_eq!(seed.pairs, vec![(0, 1, Route::ViaSender)]);
    assert_eq!(seed.adms, vec![(0, None, Some(v4("127.0.1.1:15001")))]);
    assert!(seed.deny_undeclared);
    // One cgroup per service and one per ADM, made under the root, known by their inode.
    let id = |name: &str| DataPlane::cgroup_id(&root.join(name)).unwrap();
    assert_eq!(seed.cgroups, vec![(id("frontend"), 0), (id("search"), 1)]);
    assert_eq!(seed.adm_cgroups, vec![(id("frontend.adm"), 0), (id("search.adm"), 1)]);
    // A host name cannot be matched in the kernel: said, not silently dropped.
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("search-2.local:8082"), "{warnings:?}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_broken_plan_is_refused_before_anything_is_made() {
    let root = std::env::temp_dir().join(format!("adm-seed-bad-{}", std::process::id()));
    let bad_pair = MESH.replace(r#""to": "search""#, r#""to": "nowhere""#);
    let e = Seed::from_maps(&maps(&bad_pair), &root, false).unwrap_err();
    assert!(matches!(&e, Error::Seed(m) if m.contains("frontend -> nowhere")), "{e}");
    let bad_name = MESH.replace(r#""name": "search""#, r#""name": "../search""#);
    let e = Seed::from_maps(&maps(&bad_name), &root, false).unwrap_err();
    assert!(matches!(&e, Error::Seed(m) if m.contains("cannot name a cgroup")), "{e}");
    assert!(!root.exists(), "no cgroup was created for a plan that was refused");
}
