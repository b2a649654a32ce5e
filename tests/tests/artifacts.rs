#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used, reason = "tests fail by panicking")]

//! The artifacts of `admc build` for every bundled example, built in-process exactly as the
//! command line builds them: each file is valid against its JSON Schema in `docs/schemas/`, reads
//! back into its `adm-artifacts` type and writes out to the same bytes, and is snapshotted so that
//! any change to a plan or an artifact is reviewed. The schemas and the serde types both refuse
//! unknown fields.

use std::path::{Path, PathBuf};

use adm_artifacts::{AdmConfig, EbpfMaps, PairRoute, PlanFile, SCHEMA_VERSION};
use serde_json::{json, Value};

const EXAMPLES: &[&str] = &["bookinfo", "hotel-reservation"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `admc build DIR` without the file system: (relative path, JSON text), sorted by path.
fn build(dir: &Path) -> Vec<(String, String)> {
    let sources = admc::Sources::load(&[dir.to_path_buf()]).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let checked = admc::check(&sources);
    assert!(
        checked.diagnostics.is_empty(),
        "{}:\n{}",
        dir.display(),
        admc::render::human_plain(&sources, &checked.diagnostics)
    );
    let planned = admc::plan::plan(&checked, &admc::place::PlaceOptions::default(), None);
    admc::emit::artifacts(&checked, &planned)
}

fn example(name: &str) -> Vec<(String, String)> {
    build(&root().join("examples").join(name))
}

/// Which artifact a relative path is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Artifact {
    Plan,
    Adm,
    Maps,
}

impl Artifact {
    fn of(path: &str) -> Artifact {
        match path {
            "plan.json" => Artifact::Plan,
            "ebpf/maps.json" => Artifact::Maps,
            p if p.starts_with("adm/") && p.ends_with(".json") && !p["adm/".len()..].contains('/') => Artifact::Adm,
            p => panic!("unexpected artifact `{p}`"),
        }
    }

    fn schema_file(self) -> &'static str {
        match self {
            Artifact::Plan => "plan.schema.json",
            Artifact::Adm => "adm.schema.json",
            Artifact::Maps => "maps.schema.json",
        }
    }

    fn schema(self) -> Value {
        let path = root().join("docs/schemas").join(self.schema_file());
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn validator(self) -> jsonschema::Validator {
        jsonschema::draft202012::new(&self.schema()).unwrap_or_else(|e| panic!("{}: {e}", self.schema_file()))
    }

    /// Reads `text` into the artifact's serde type and writes it back as `admc build` does.
    fn round_trip(self, text: &str) -> Result<String, serde_json::Error> {
        let pretty = match self {
            Artifact::Plan => serde_json::to_string_pretty(&serde_json::from_str::<PlanFile>(text)?)?,
            Artifact::Adm => serde_json::to_string_pretty(&serde_json::from_str::<AdmConfig>(text)?)?,
            Artifact::Maps => serde_json::to_string_pretty(&serde_json::from_str::<EbpfMaps>(text)?)?,
        };
        Ok(pretty + "\n")
    }
}

/// Every violation of `artifact`'s schema by `instance`, one per line (empty when valid).
fn violations(validator: &jsonschema::Validator, instance: &Value) -> String {
    validator.iter_errors(instance).map(|e| format!("at `{}`: {e}\n", e.instance_path())).collect()
}

#[test]
fn the_schemas_are_valid_draft_2020_12_schemas() {
    for artifact in [Artifact::Plan, Artifact::Adm, Artifact::Maps] {
        let schema = artifact.schema();
        assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema", "{}", artifact.schema_file());
        if let Err(e) = jsonschema::meta::validate(&schema) {
            panic!("{} is not a valid schema: {e}", artifact.schema_file());
        }
    }
}

#[test]
fn every_example_is_tested() {
    let mut on_disk: Vec<String> = std::fs::read_dir(root().join("examples"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    assert_eq!(on_disk, EXAMPLES, "a new example needs its artifacts tested here");
}

#[test]
fn artifacts_match_their_schemas() {
    let validators = [Artifact::Plan, Artifact::Adm, Artifact::Maps].map(|a| (a, a.validator()));
    for name in EXAMPLES {
        for (path, text) in example(name) {
            let artifact = Artifact::of(&path);
            let instance: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}/{path}: {e}"));
            let validator = &validators.iter().find(|(a, _)| *a == artifact).unwrap().1;
            let errors = violations(validator, &instance);
            assert!(
                errors.is_empty(),
                "{name}/{path} breaks {}:\n{errors:?} {}",
                artifact.schema_file(),
                validator.is_valid(&instance)
            );
        }
    }
}

/// `--adm-per-direction` changes `plan.json` (each ADM has a direction): still valid, still read back.
#[test]
fn per_direction_artifacts_match_their_schemas() {
    let dir = root().join("examples/hotel-reservation");
    let sources = admc::Sources::load(&[dir]).unwrap();
    let checked = admc::check(&sources);
    let options = admc::place::PlaceOptions { adm_per_direction: true, ..admc::place::PlaceOptions::default() };
    let planned = admc::plan::plan(&checked, &options, None);
    let files = admc::emit::artifacts(&checked, &planned);
    assert!(files.iter().any(|(p, t)| p == "plan.json" && t.contains("\"mode\": \"per_direction\"")));
    for (path, text) in files {
        let artifact = Artifact::of(&path);
        let errors = violations(&artifact.validator(), &serde_json::from_str(&text).unwrap());
        assert!(errors.is_empty(), "{path} breaks {}:\n{errors}", artifact.schema_file());
        assert_eq!(artifact.round_trip(&text).unwrap(), text, "{path}");
    }
}

#[test]
fn artifacts_round_trip_through_their_types() {
    for name in EXAMPLES {
        for (path, text) in example(name) {
            let again = Artifact::of(&path).round_trip(&text).unwrap_or_else(|e| panic!("{name}/{path}: {e}"));
            assert_eq!(again, text, "{name}/{path} does not round-trip through its adm-artifacts type");
        }
    }
}

#[test]
fn artifacts_snapshots() {
    for name in EXAMPLES {
        let files = example(name);
        let listing: String = files.iter().map(|(path, _)| format!("{path}\n")).collect();
        insta::assert_snapshot!(format!("{name}__files"), listing);
        for (path, text) in &files {
            insta::assert_snapshot!(format!("{name}__{path}").replace('/', "__"), text);
        }
    }
}

#[test]
fn builds_are_deterministic() {
    for name in EXAMPLES {
        assert_eq!(example(name), example(name), "{name}: two builds differ");
    }
}

/// What the three files say about one another agrees: one ADM configuration per ADM host of the
/// plan, the same listeners in the configuration and in the eBPF maps, dense service ids, and a
/// pair route through an ADM only where that ADM has a listener for it.
#[test]
fn artifacts_agree_with_one_another() {
    for name in EXAMPLES {
        let files = example(name);
        let text = |p: &str| &files.iter().find(|(path, _)| path == p).unwrap_or_else(|| panic!("{name}: no {p}")).1;
        let plan: PlanFile = serde_json::from_str(text("plan.json")).unwrap();
        let maps: EbpfMaps = serde_json::from_str(text("ebpf/maps.json")).unwrap();
        let adms: Vec<AdmConfig> = files
            .iter()
            .filter(|(p, _)| Artifact::of(p) == Artifact::Adm)
            .map(|(p, t)| {
                let config: AdmConfig = serde_json::from_str(t).unwrap();
                assert_eq!(*p, format!("adm/{}.json", config.service), "{name}: file named after another service");
                config
            })
            .collect();
        assert_eq!(plan.schema_version, SCHEMA_VERSION);
        assert_eq!(maps.schema_version, SCHEMA_VERSION);

        let mut hosts: Vec<&str> = plan.adms.iter().map(|a| a.service.as_str()).collect();
        hosts.dedup();
        let configured: Vec<&str> = maps
            .services
            .iter()
            .filter(|s| adms.iter().any(|a| a.service == s.name))
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(hosts, configured, "{name}: the plan's ADM hosts and the ADM configurations differ");

        for (i, service) in maps.services.iter().enumerate() {
            assert_eq!(service.id as usize, i, "{name}: ids are not dense");
            assert!(service.endpoints.iter().all(|e| e.port == service.port), "{name}: {}", service.name);
            let config = adms.iter().find(|a| a.service == service.name);
            assert_eq!(service.adm.as_ref(), config.map(|c| &c.listeners), "{name}: listeners of {}", service.name);
        }
        for pair in &maps.pairs {
            let listeners = |s: &str| maps.services.iter().find(|e| e.name == s).and_then(|e| e.adm.clone());
            let (sender, receiver) = (listeners(&pair.from), listeners(&pair.to));
            let through_sender = sender.is_some_and(|l| l.egress.is_some());
            let through_receiver = receiver.is_some_and(|l| l.ingress.is_some());
            match pair.route {
                PairRoute::Direct => {}
                PairRoute::ViaSender => assert!(through_sender, "{name}: {pair:?}"),
                PairRoute::ViaReceiver => assert!(through_receiver, "{name}: {pair:?}"),
                PairRoute::ViaBoth => assert!(through_sender && through_receiver, "{name}: {pair:?}"),
            }
        }
    }
}

/// A reader refuses a field it does not know, so that it never silently ignores something a
/// newer writer meant: the schema and the serde type agree, at the top and deep inside.
#[test]
fn an_unknown_field_is_refused_by_schema_and_type() {
    let files = example("bookinfo");
    let text = |p: &str| files.iter().find(|(path, _)| path == p).unwrap().1.clone();
    let adm = files.iter().find(|(p, _)| Artifact::of(p) == Artifact::Adm).unwrap().0.clone();
    let cases: Vec<(&str, Artifact, Vec<&str>)> = vec![
        ("plan.json", Artifact::Plan, vec![]),
        ("plan.json", Artifact::Plan, vec!["status"]),
        // StaticBaseline flattens the objective: the extra field must not slip in through it.
        ("plan.json", Artifact::Plan, vec!["baselines", "static_placement"]),
        ("plan.json", Artifact::Plan, vec!["policies", "0", "units", "0"]),
        (&adm, Artifact::Adm, vec![]),
        (&adm, Artifact::Adm, vec!["listeners"]),
        (&adm, Artifact::Adm, vec!["routes", "0", "chains", "0"]),
        (&adm, Artifact::Adm, vec!["routes", "0", "chains", "0", "chain", "0"]),
        ("ebpf/maps.json", Artifact::Maps, vec![]),
        ("ebpf/maps.json", Artifact::Maps, vec!["services", "0", "endpoints", "0"]),
        ("ebpf/maps.json", Artifact::Maps, vec!["pairs", "0"]),
    ];
    for (path, artifact, at) in cases {
        let mut doc: Value = serde_json::from_str(&text(path)).unwrap();
        let pointer: String = at.iter().map(|k| format!("/{k}")).collect();
        let object =
            doc.pointer_mut(&pointer).and_then(Value::as_object_mut).unwrap_or_else(|| panic!("{path}{pointer}"));
        object.insert("priority".to_string(), json!(1));
        let validator = artifact.validator();
        assert!(!validator.is_valid(&doc), "{} accepts an extra field at {path}{pointer}", artifact.schema_file());
        let extra = serde_json::to_string_pretty(&doc).unwrap();
        let err = artifact.round_trip(&extra).expect_err("the serde type accepts an extra field");
        assert!(err.to_string().contains("unknown field `priority`"), "{path}{pointer}: {err}");
    }
}

/// An ADM configuration with every form of argument value.
fn every_value() -> Value {
    json!({
        "schema_version": 1,
        "service": "front-end",
        "listeners": { "ingress": null, "egress": { "address": "127.0.1.1", "port": 15001 } },
        "upstreams": [{
            "service": "back_end",
            "protocol": "grpc",
            "endpoints": [{ "address": "127.0.1.2", "port": 8080 }, { "address": "127.0.1.3", "port": 8080 }],
        }],
        "peers": [{ "service": "front-end", "addresses": ["127.0.1.1"] }],
        "routes": [{
            "from": "front-end",
            "to": "back_end",
            "direction": "egress",
            "chains": [
                {
                    "methods": ["Get", "List"],
                    "chain": [{
                        "policy": "p",
                        "kind": "k",
                        "unit": "call front-end -> back_end",
                        "args": {
                            "b": { "bytes": 4096 },
                            "codes": [502, 503],
                            "d": { "us": 500_000 },
                            "f": { "fraction": 0.125 },
                            "flag": true,
                            "n": 3,
                            "nested": [[{ "us": 1 }], []],
                            "r": { "per_second": 0.016_666_666_666_666_666 },
                            "s": { "service": "back_end", "members": ["back_end"] },
                            "text": "",
                        },
                    }],
                },
                {
                    "methods": null,
                    "chain": [{ "policy": "q", "kind": "timeout", "unit": "call front-end -> back_end", "args": { "after": { "us": 1 } } }],
                },
            ],
            "forward": { "to": "service", "service": "back_end" },
        }],
    })
}

/// The schemas say more than the types: argument values must be in canonical units, addresses
/// dotted quads, ports in range, versions known.
#[test]
fn the_schemas_refuse_what_the_types_cannot() {
    let validator = Artifact::Adm.validator();
    let base = every_value();
    assert!(validator.is_valid(&base), "{}", violations(&validator, &base));
    let config: AdmConfig = serde_json::from_value(base.clone()).unwrap();
    assert_eq!(serde_json::to_value(&config).unwrap(), base);
    let args = "/routes/0/chains/0/chain/0/args";
    let adm: Vec<(&str, String, Value)> = vec![
        ("a duration not in microseconds", format!("{args}/d"), json!({ "ms": 500 })),
        ("a negative duration", format!("{args}/d"), json!({ "us": -1 })),
        ("a fractional duration", format!("{args}/d"), json!({ "us": 0.5 })),
        ("a percent above 100%", format!("{args}/f"), json!({ "fraction": 1.5 })),
        ("a percent as a bare number", format!("{args}/f"), json!(0.5)),
        ("a zero rate", format!("{args}/r"), json!({ "per_second": 0 })),
        ("a unit object with two units", format!("{args}/b"), json!({ "bytes": 1, "us": 1 })),
        ("a service as a bare number", format!("{args}/s"), json!({ "service": 7 })),
        ("a null argument", format!("{args}/n"), json!(null)),
        ("a negative int", format!("{args}/n"), json!(-3)),
        ("a non-integral number", format!("{args}/n"), json!(2.5)),
        ("a bad list element", format!("{args}/codes"), json!([502, { "nothing": 1 }])),
        ("a bad parameter name", format!("{args}/two words"), json!(1)),
        ("a bad address", "/listeners/egress/address".to_string(), json!("localhost")),
        ("an address out of range", "/upstreams/0/endpoints/0/address".to_string(), json!("127.0.1.256")),
        ("port 0", "/upstreams/0/endpoints/0/port".to_string(), json!(0)),
        ("port 65536", "/listeners/egress/port".to_string(), json!(65536)),
        ("an unknown protocol", "/upstreams/0/protocol".to_string(), json!("udp")),
        ("a service without endpoints", "/upstreams/0/endpoints".to_string(), json!([])),
        ("an unknown direction", "/routes/0/direction".to_string(), json!("sideways")),
        ("an empty method list", "/routes/0/chains/0/methods".to_string(), json!([])),
        ("an empty chain", "/routes/0/chains/0/chain".to_string(), json!([])),
        ("a forward to nowhere", "/routes/0/forward".to_string(), json!({ "to": "moon" })),
        (
            "an ADM forward without its endpoint",
            "/routes/0/forward".to_string(),
            json!({ "to": "adm", "service": "back_end" }),
        ),
        ("a peer without addresses", "/peers/0/addresses".to_string(), json!([])),
        ("a step without its unit", "/routes/0/chains/1/chain/0/unit".to_string(), json!(null)),
        ("no listener at all", "/listeners".to_string(), json!({ "ingress": null, "egress": null })),
        ("another schema version", "/schema_version".to_string(), json!(2)),
    ];
    for (what, pointer, value) in adm {
        let mut doc = base.clone();
        match doc.pointer_mut(&pointer) {
            Some(slot) => *slot = value,
            None => {
                let (parent, key) = pointer.rsplit_once('/').unwrap();
                doc.pointer_mut(parent).and_then(Value::as_object_mut).unwrap().insert(key.to_string(), value);
            }
        }
        assert!(!validator.is_valid(&doc), "adm.schema.json accepts {what}");
    }

    let files = example("bookinfo");
    let text = |p: &str| files.iter().find(|(path, _)| path == p).unwrap().1.clone();
    let validator = Artifact::Plan.validator();
    let base: Value = serde_json::from_str(&text("plan.json")).unwrap();
    assert_eq!((&base["mode"], &base["status"]["optimal"]), (&json!("per_service"), &json!(true)));
    let plan: Vec<(&str, &str, Value)> = vec![
        ("an optimal plan with a gap", "/status/gap", json!(0.5)),
        ("a direction in per_service mode", "/adms/0/direction", json!("egress")),
        ("an unknown mode", "/mode", json!("per_pod")),
        ("a unit with no legal side", "/policies/0/units/0/legal_sides", json!([])),
        ("a malformed unit label", "/policies/0/units/0/unit", json!("productpage to reviews")),
        ("a negative cost", "/objective/adm_cost", json!(-1.0)),
    ];
    for (what, pointer, value) in plan {
        let mut doc = base.clone();
        *doc.pointer_mut(pointer).unwrap_or_else(|| panic!("{pointer}")) = value;
        assert!(!validator.is_valid(&doc), "plan.schema.json accepts {what}");
    }
    let mut stopped = base.clone();
    stopped["status"] = json!({ "optimal": false, "lower_bound_adm_cost": 1.0, "gap": 0.5 });
    assert!(validator.is_valid(&stopped), "{}", violations(&validator, &stopped));
    stopped["status"]["gap"] = json!(null);
    assert!(!validator.is_valid(&stopped), "plan.schema.json accepts a stopped search without its gap");

    let validator = Artifact::Maps.validator();
    let base: Value = serde_json::from_str(&text("ebpf/maps.json")).unwrap();
    let maps: Vec<(&str, &str, Value)> = vec![
        ("an unknown pair route", "/pairs/0/route", json!("via_nobody")),
        ("a negative id", "/services/0/id", json!(-1)),
        ("a service without endpoints", "/services/0/endpoints", json!([])),
        ("a missing field", "/services/1", json!({ "id": 1, "name": "details", "port": 9080, "endpoints": [] })),
    ];
    for (what, pointer, value) in maps {
        let mut doc = base.clone();
        *doc.pointer_mut(pointer).unwrap_or_else(|| panic!("{pointer}")) = value;
        assert!(!validator.is_valid(&doc), "maps.schema.json accepts {what}");
    }
}
