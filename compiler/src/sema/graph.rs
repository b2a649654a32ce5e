//! Services, groups and calls: checked one file at a time, then joined into the [`CallGraph`].

use std::collections::BTreeMap;
use std::sync::Arc;

use adm_syntax::ast::{Endpoint, Field, ItemKind, Name, RateLit, SmolStr, SourceFile, TimeUnit, ValueKind};
use adm_syntax::{Diagnostic, FileId};

use super::model::{CallEdge, CallGraph, CallIdx, ExternalTraffic, Node, Protocol, ServiceDef, ServiceIdx};
use super::names::{DefKind, Namespace, Symbols};
use super::suggest;

/// One end of a declared call, by name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum End {
    External,
    Service(SmolStr),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CallDecl {
    pub from: End,
    pub to: End,
    pub methods: Option<Arc<[SmolStr]>>,
    pub rate: RateLit,
    /// Item index in its file.
    pub item: u32,
}

/// The graph items of one file, checked, without positions.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct GraphDecls {
    pub services: Vec<(ServiceDef, u32)>,
    pub groups: Vec<(SmolStr, Vec<SmolStr>, u32)>,
    pub calls: Vec<CallDecl>,
    pub apps: Vec<(SmolStr, u32)>,
}

/// The default rate of a call that declares none.
pub const DEFAULT_RATE: RateLit = RateLit { value: 1, per: TimeUnit::Seconds };

const SERVICE_FIELDS: &[&str] = &["protocol", "port", "external", "replicas", "adm_cost"];
const CALL_FIELDS: &[&str] = &["methods", "rate"];

/// The node a call's end names, if it names a service of the graph.
fn node(g: &CallGraph, end: &End) -> Option<Node> {
    match end {
        End::External => Some(Node::External),
        End::Service(s) => g.service_index.get(s).map(|i| Node::Service(*i)),
    }
}

/// Checks the services, groups, calls and `app` of one file.
pub fn check_file(file: FileId, ast: &SourceFile, symbols: &Symbols, diags: &mut Vec<Diagnostic>) -> GraphDecls {
    let mut out = GraphDecls::default();
    for (i, item) in ast.items.iter().enumerate() {
        let i = i as u32;
        match &item.kind {
            ItemKind::App(app) => out.apps.push((app.name.text.clone(), i)),
            ItemKind::Service(s) => {
                if let Some(def) = check_service(file, &s.name, &s.fields, diags) {
                    out.services.push((def, i));
                }
            }
            ItemKind::Group(g) => {
                let mut members: Vec<SmolStr> = Vec::new();
                for m in &g.members {
                    match symbols.service_like(&m.text) {
                        Some(DefKind::Service) => {
                            if !members.contains(&m.text) {
                                members.push(m.text.clone());
                            }
                        }
                        Some(_) => diags.push(
                            Diagnostic::error(
                                "E0104",
                                file,
                                m.span,
                                format!("`{}` is a group; groups hold services", m.text),
                            )
                            .with_primary("a group cannot be a member of a group")
                            .with_help(format!("list the services of `{}` here instead", m.text)),
                        ),
                        None => diags.push(unknown_service(file, m, symbols)),
                    }
                }
                out.groups.push((g.name.text.clone(), members, i));
            }
            ItemKind::Call(c) => {
                let from = call_end(file, &c.from, symbols, diags);
                let to = call_end(file, &c.to, symbols, diags);
                let (methods, rate) = check_call_fields(file, c.fields.as_deref().unwrap_or_default(), diags);
                if let (Some(from), Some(to)) = (from, to) {
                    if from == End::External && to == End::External {
                        diags.push(Diagnostic::error(
                            "E0106",
                            file,
                            item.span,
                            "a call needs a service at one end at least",
                        ));
                    } else {
                        out.calls.push(CallDecl { from, to, methods, rate: rate.unwrap_or(DEFAULT_RATE), item: i });
                    }
                }
            }
            ItemKind::Kind(_) | ItemKind::Enum(_) | ItemKind::Policy(_) | ItemKind::Error => {}
        }
    }
    // Held for the program's life: no room left from growing.
    out.services.shrink_to_fit();
    out.calls.shrink_to_fit();
    out
}

pub fn unknown_service(file: FileId, name: &Name, symbols: &Symbols) -> Diagnostic {
    let mut d = Diagnostic::error("E0101", file, name.span, format!("unknown service `{}`", name.text))
        .with_primary("no service has this name");
    if let Some((help, name)) = suggest::help(&name.text, "service", symbols.names_of(DefKind::Service)) {
        d = d.with_help(help).with_replacement(name);
    } else if let Some((help, name)) = suggest::help(&name.text, "group", symbols.names(Namespace::Service)) {
        d = d.with_help(help).with_replacement(name);
    }
    d
}

fn call_end(file: FileId, end: &Endpoint, symbols: &Symbols, diags: &mut Vec<Diagnostic>) -> Option<End> {
    match end {
        Endpoint::External(_) => Some(End::External),
        Endpoint::Any(span) => {
            diags.push(
                Diagnostic::error("E0106", file, *span, "a call joins two services, not `*`")
                    .with_help("declare one call per pair of services; `*` belongs to policy selectors"),
            );
            None
        }
        Endpoint::Name(n) => match symbols.service_like(&n.text) {
            Some(DefKind::Service) => Some(End::Service(n.text.clone())),
            Some(_) => {
                diags.push(
                    Diagnostic::error(
                        "E0106",
                        file,
                        n.span,
                        format!("`{}` is a group; a call joins two services", n.text),
                    )
                    .with_help("declare one call per member of the group"),
                );
                None
            }
            None => {
                diags.push(unknown_service(file, n, symbols));
                None
            }
        },
    }
}

/// Reports fields given twice and unknown fields; returns the fields to use.
fn known_fields<'a>(
    file: FileId,
    fields: &'a [Field],
    allowed: &[&str],
    what: &str,
    diags: &mut Vec<Diagnostic>,
) -> Vec<&'a Field> {
    let mut out: Vec<&Field> = Vec::new();
    for f in fields {
        if let Some(first) = out.iter().find(|o| o.name.text == f.name.text) {
            diags.push(
                Diagnostic::error("E0203", file, f.name.span, format!("field `{}` given twice", f.name.text))
                    .with_label(file, first.name.span, "first given here"),
            );
        } else if !allowed.contains(&f.name.text.as_str()) {
            let mut d =
                Diagnostic::error("E0202", file, f.name.span, format!("unknown {what} field `{}`", f.name.text));
            d = match suggest::help(&f.name.text, "field", allowed.iter().copied()) {
                Some((help, name)) => d.with_help(help).with_replacement(name),
                None => d.with_help(format!("the fields of a {what} are {}", allowed.join(", "))),
            };
            diags.push(d);
        } else {
            out.push(f);
        }
    }
    out
}

fn field_error(file: FileId, f: &Field, expected: &str) -> Diagnostic {
    Diagnostic::error("E0200", file, f.value.span, format!("invalid value for `{}`", f.name.text))
        .with_primary(format!("expected {expected}"))
}

fn check_service(file: FileId, name: &Name, fields: &[Field], diags: &mut Vec<Diagnostic>) -> Option<ServiceDef> {
    let mut def = ServiceDef {
        name: name.text.clone(),
        protocol: Protocol::Http,
        port: 0,
        external: None,
        replicas: 1,
        adm_cost: 1,
    };
    let mut port = None;
    for f in known_fields(file, fields, SERVICE_FIELDS, "service", diags) {
        let word = match &f.value.kind {
            ValueKind::Name(w) => Some(w.as_str()),
            _ => None,
        };
        match f.name.text.as_str() {
            "protocol" => match word {
                Some("http") => def.protocol = Protocol::Http,
                Some("grpc") => def.protocol = Protocol::Grpc,
                Some("tcp") => def.protocol = Protocol::Tcp,
                _ => diags.push(field_error(file, f, "`http`, `grpc` or `tcp`")),
            },
            "external" => match word {
                Some("ingress") => def.external = Some(ExternalTraffic::Ingress),
                Some("egress") => def.external = Some(ExternalTraffic::Egress),
                Some("both") => def.external = Some(ExternalTraffic::Both),
                _ => diags.push(field_error(file, f, "`ingress`, `egress` or `both`")),
            },
            "port" => match f.value.kind {
                ValueKind::Int(n @ 1..=65535) => port = Some(n as u16),
                ValueKind::Int(n) => diags.push(
                    Diagnostic::error("E0204", file, f.value.span, format!("port {n} is out of range"))
                        .with_primary("ports are 1 to 65535"),
                ),
                _ => diags.push(field_error(file, f, "a port number")),
            },
            "replicas" => match f.value.kind {
                ValueKind::Int(n @ 1..=1_000_000) => def.replicas = n as u32,
                ValueKind::Int(n) => diags.push(
                    Diagnostic::error("E0204", file, f.value.span, format!("{n} replicas is out of range"))
                        .with_primary("a service runs 1 to 1,000,000 replicas"),
                ),
                _ => diags.push(field_error(file, f, "a number of replicas")),
            },
            "adm_cost" => match f.value.kind {
                ValueKind::Int(n @ 0..=1_000_000) => def.adm_cost = n as u32,
                ValueKind::Int(n) => diags.push(
                    Diagnostic::error("E0204", file, f.value.span, format!("an ADM cost of {n} is out of range"))
                        .with_primary("costs are 0 to 1,000,000"),
                ),
                _ => diags.push(field_error(file, f, "a whole number (the cost of an ADM at this service)")),
            },
            _ => {}
        }
    }
    match port {
        Some(p) => def.port = p,
        None if !fields.iter().any(|f| f.name.text == "port") => {
            diags.push(
                Diagnostic::error("E0208", file, name.span, format!("service `{}` has no `port`", name.text))
                    .with_help("add the port it listens on, as in `{ port: 8080 }`"),
            );
            return None;
        }
        None => return None,
    }
    Some(def)
}

fn check_call_fields(
    file: FileId,
    fields: &[Field],
    diags: &mut Vec<Diagnostic>,
) -> (Option<Arc<[SmolStr]>>, Option<RateLit>) {
    let mut methods = None;
    let mut rate = None;
    for f in known_fields(file, fields, CALL_FIELDS, "call", diags) {
        match (f.name.text.as_str(), &f.value.kind) {
            ("methods", ValueKind::List(items)) => {
                let mut names: Vec<SmolStr> = Vec::new();
                let mut spans = Vec::new();
                for item in items {
                    match &item.kind {
                        ValueKind::Name(m) => {
                            if let Some((_, first)) = spans.iter().find(|(n, _)| n == m) {
                                diags.push(
                                    Diagnostic::error("E0203", file, item.span, format!("method `{m}` listed twice"))
                                        .with_label(file, *first, "first listed here"),
                                );
                            } else {
                                spans.push((m.clone(), item.span));
                                names.push(m.clone());
                            }
                        }
                        _ => diags.push(
                            Diagnostic::error("E0200", file, item.span, "expected a method name")
                                .with_help("methods are names, as in `[GetRates, Nearby]`"),
                        ),
                    }
                }
                methods = Some(names.into());
            }
            ("methods", _) => diags.push(field_error(file, f, "a list of method names, as in `[Nearby]`")),
            ("rate", ValueKind::Rate(r)) if r.value > 0 => rate = Some(*r),
            ("rate", ValueKind::Rate(_)) => diags.push(
                Diagnostic::error("E0204", file, f.value.span, "a rate of zero")
                    .with_primary("a call's rate must be above zero")
                    .with_help("a call that carries no traffic need not be declared"),
            ),
            ("rate", _) => diags.push(field_error(file, f, "a rate, as in `100/s`")),
            _ => {}
        }
    }
    (methods, rate)
}

/// Joins every file's declarations (in program order; the first of duplicates counts) into the
/// call graph, adding each service's implicit external edges.
pub fn build(files: &[&GraphDecls]) -> CallGraph {
    let mut g = CallGraph::default();
    for decls in files {
        for (def, _) in &decls.services {
            if !g.service_index.contains_key(&def.name) {
                let idx = ServiceIdx(g.services.len() as u32);
                g.service_index.insert(def.name.clone(), idx);
                g.services.push(def.clone());
            }
        }
    }
    for decls in files {
        for (name, members, _) in &decls.groups {
            if g.groups.contains_key(name) || g.service_index.contains_key(name) {
                continue;
            }
            let resolved: Vec<ServiceIdx> = members.iter().filter_map(|m| g.service_index.get(m).copied()).collect();
            g.groups.insert(name.clone(), resolved);
        }
    }
    let mut declared_external: BTreeMap<(Node, Node), CallEdge> = BTreeMap::new();
    for decls in files {
        for c in &decls.calls {
            let (Some(from), Some(to)) = (node(&g, &c.from), node(&g, &c.to)) else { continue };
            let edge = CallEdge { from, to, methods: c.methods.clone(), rate: c.rate, declared: true };
            if from == Node::External || to == Node::External {
                declared_external.entry((from, to)).or_insert(edge);
                continue;
            }
            if g.call_index.contains_key(&(from, to)) {
                continue;
            }
            g.call_index.insert((from, to), CallIdx(g.calls.len() as u32));
            g.calls.push(edge);
        }
    }
    // The implicit external edges, in service order; a declared `call external -> S` gives its
    // methods and rate.
    for (i, s) in g.services.clone().iter().enumerate() {
        let svc = Node::Service(ServiceIdx(i as u32));
        let Some(ext) = s.external else { continue };
        let mut edges = Vec::new();
        if ext.inbound() {
            edges.push((Node::External, svc));
        }
        if ext.outbound() {
            edges.push((svc, Node::External));
        }
        for (from, to) in edges {
            let edge = declared_external.get(&(from, to)).cloned().unwrap_or(CallEdge {
                from,
                to,
                methods: None,
                rate: DEFAULT_RATE,
                declared: false,
            });
            g.call_index.insert((from, to), CallIdx(g.calls.len() as u32));
            g.calls.push(edge);
        }
    }
    for (i, c) in g.calls.iter().enumerate() {
        g.outgoing.entry(c.from).or_default().push(CallIdx(i as u32));
        g.incoming.entry(c.to).or_default().push(CallIdx(i as u32));
    }
    g.calls.shrink_to_fit();
    for list in g.outgoing.values_mut().chain(g.incoming.values_mut()) {
        list.shrink_to_fit();
    }
    g
}
