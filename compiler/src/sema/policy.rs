//! One policy: its kind, its arguments, the calls its selectors cover, and its facts.

use std::collections::BTreeMap;

use adm_syntax::ast::{Endpoint, Policy, Selector, SmolStr};
use adm_syntax::{Diagnostic, FileId};

use super::model::{
    Access, Args, CallGraph, CallIdx, Covered, Fact, FactPattern, KindDef, Node, PolicyFacts, PolicyOrder, TypedValue,
};
use super::names::Namespace;
use super::suggest;
use super::values::{self, Scope};

/// The kinds of the program: `None` for a kind declared with errors (its policies go unchecked).
pub type KindTable = BTreeMap<String, Option<KindDef>>;

/// Checks a policy. Returns its facts and arguments when it is well-formed enough to place.
pub fn check(
    p: &Policy,
    order: PolicyOrder,
    scope: &Scope<'_>,
    kinds: &KindTable,
    graph: &CallGraph,
    diags: &mut Vec<Diagnostic>,
) -> Option<(PolicyFacts, Args)> {
    let file = scope.file;
    let kind = match kinds.get(p.kind.text.as_str()) {
        Some(Some(k)) => Some(k),
        Some(None) => None,
        None => {
            let mut d = Diagnostic::error("E0102", file, p.kind.span, format!("unknown kind `{}`", p.kind.text))
                .with_primary("no kind has this name");
            d = match suggest::help(&p.kind.text, "kind", kinds.keys().map(String::as_str)) {
                Some((help, name)) => d.with_help(help).with_replacement(name),
                None => {
                    d.with_help("`admc prelude` lists the built-in kinds; a program may declare its own with `kind`")
                }
            };
            diags.push(d);
            None
        }
    };
    // Selectors are checked even when the kind is unusable: their errors are independent.
    let covered = cover(p, scope, graph, diags);
    let kind = kind?;
    let args = check_args(p, kind, scope, diags)?;
    let header = |pat: &FactPattern| match pat {
        FactPattern::Fixed(f) => Some(f.clone()),
        FactPattern::HeaderParam(param) => match args.get(param) {
            Some(TypedValue::Str(h)) => Some(Fact::Header(h.to_ascii_lowercase())),
            _ => None,
        },
    };
    let mut reads: Vec<Fact> = kind.reads.iter().filter_map(header).collect();
    if !reads.contains(&Fact::Outcome) {
        reads.push(Fact::Outcome);
    }
    let writes: Vec<Fact> = kind.writes.iter().filter_map(header).collect();
    let access = match (kind.builtin, kind.name.as_str(), args.get("from")) {
        (true, "allow" | "deny", Some(TypedValue::List(from))) => {
            let mut services = Vec::new();
            for v in from {
                if let TypedValue::Service(name) = v {
                    services.extend(graph.expand(name).unwrap_or_default());
                }
            }
            services.sort();
            services.dedup();
            Some(Access { allow: kind.name == "allow", from: services })
        }
        _ => None,
    };
    if access.as_ref().is_some_and(|a| a.allow) {
        warn_useless_sources(p, &covered, graph, file, diags);
    }
    let facts = PolicyFacts {
        name: p.name.text.clone(),
        access,
        kind: SmolStr::new(&kind.name),
        order,
        covered,
        at: p.at.map(|a| a.side),
        placement: kind.placement,
        state: kind.state,
        reads,
        writes,
        exclusive: kind.exclusive,
    };
    Some((facts, args))
}

fn check_args(p: &Policy, kind: &KindDef, scope: &Scope<'_>, diags: &mut Vec<Diagnostic>) -> Option<Args> {
    let file = scope.file;
    let mut args = Args::default();
    let mut spans = BTreeMap::new();
    let mut ok = true;
    for a in &p.args {
        let name = a.name.text.as_str();
        if let Some(first) = spans.get(name) {
            diags.push(
                Diagnostic::error("E0203", file, a.name.span, format!("argument `{name}` given twice")).with_label(
                    file,
                    *first,
                    "first given here",
                ),
            );
            ok = false;
            continue;
        }
        spans.insert(name.to_string(), a.name.span);
        let Some(param) = kind.param(name) else {
            let mut d =
                Diagnostic::error("E0202", file, a.name.span, format!("`{}` has no parameter `{name}`", kind.name))
                    .with_primary("unknown argument");
            d = match suggest::help(name, "parameter", kind.params.iter().map(|p| p.name.as_str())) {
                Some((help, name)) => d.with_help(help).with_replacement(name),
                None => d.with_help(format!("the parameters are: {}", kind.signature())),
            };
            diags.push(d);
            ok = false;
            continue;
        };
        match values::check(&param.ty, &a.value, scope, diags) {
            Some(v) => {
                if kind.positive.iter().any(|n| n == name) && !v.is_positive() {
                    diags.push(
                        Diagnostic::error("E0204", file, a.value.span, format!("`{name}` must be above zero"))
                            .with_primary(format!("`{}` is meaningless at zero", kind.name)),
                    );
                    ok = false;
                }
                args.insert(name, v);
            }
            None => ok = false,
        }
    }
    let missing: Vec<String> = kind
        .params
        .iter()
        .filter(|d| d.default.is_none() && !spans.contains_key(&d.name))
        .map(|d| format!("`{}: {}`", d.name, d.ty))
        .collect();
    if !missing.is_empty() {
        let (noun, list) =
            if missing.len() == 1 { ("argument", missing[0].clone()) } else { ("arguments", missing.join(", ")) };
        diags.push(
            Diagnostic::error("E0201", file, p.args_span, format!("missing {noun} {list}"))
                .with_primary(format!("`{}` needs {list}", kind.name))
                .with_help(format!("the signature is {}", kind.signature())),
        );
        ok = false;
    }
    for d in &kind.params {
        if let (false, Some(default)) = (args.contains_key(&d.name), &d.default) {
            args.insert(&d.name, default.clone());
        }
    }
    args.shrink_to_fit();
    ok.then_some(args)
}

/// The nodes a selector end stands for.
enum Nodes {
    /// `*`: every service (not `external`), kept symbolic: a mesh may have many thousands.
    AnyService,
    /// Sorted.
    Listed(Vec<Node>),
}

impl Nodes {
    fn contains(&self, n: Node) -> bool {
        match self {
            Nodes::AnyService => matches!(n, Node::Service(_)),
            Nodes::Listed(v) => v.binary_search(&n).is_ok(),
        }
    }

    fn is_empty(&self) -> bool {
        matches!(self, Nodes::Listed(v) if v.is_empty())
    }

    fn has_external(&self) -> bool {
        matches!(self, Nodes::Listed(v) if v.contains(&Node::External))
    }
}

/// What a selector end stands for; `None` when a name is unknown (reported).
fn nodes(end: &Endpoint, scope: &Scope<'_>, graph: &CallGraph, diags: &mut Vec<Diagnostic>) -> Option<Nodes> {
    match end {
        Endpoint::Any(_) => Some(Nodes::AnyService),
        Endpoint::External(_) => Some(Nodes::Listed(vec![Node::External])),
        Endpoint::Name(n) => match graph.expand(&n.text) {
            Some(services) => {
                let mut v: Vec<Node> = services.into_iter().map(Node::Service).collect();
                v.sort();
                Some(Nodes::Listed(v))
            }
            None => {
                if scope.symbols.service_like(&n.text).is_none() {
                    let mut d = Diagnostic::error(
                        "E0101",
                        scope.file,
                        n.span,
                        format!("unknown service or group `{}`", n.text),
                    )
                    .with_primary("no service or group has this name");
                    if let Some((help, name)) =
                        suggest::help(&n.text, "service", scope.symbols.names(Namespace::Service))
                    {
                        d = d.with_help(help).with_replacement(name);
                    }
                    diags.push(d);
                }
                // A name that is defined but broken (a service without a port, say) was reported
                // where it is defined.
                None
            }
        },
    }
}

/// The calls a selector matches (before methods), walking the adjacency of the listed side.
fn matched_calls(from: &Nodes, to: &Nodes, graph: &CallGraph) -> Vec<CallIdx> {
    let empty = Vec::new();
    let mut out: Vec<CallIdx> = match (from, to) {
        (Nodes::AnyService, Nodes::AnyService) => (0..graph.calls.len() as u32)
            .map(CallIdx)
            .filter(|c| graph.call(*c).is_some_and(|e| from.contains(e.from) && to.contains(e.to)))
            .collect(),
        (Nodes::Listed(f), Nodes::Listed(t)) if f.len() <= t.len() => f
            .iter()
            .flat_map(|n| graph.outgoing.get(n).unwrap_or(&empty))
            .copied()
            .filter(|c| graph.call(*c).is_some_and(|e| to.contains(e.to)))
            .collect(),
        (Nodes::Listed(f), Nodes::AnyService) => f
            .iter()
            .flat_map(|n| graph.outgoing.get(n).unwrap_or(&empty))
            .copied()
            .filter(|c| graph.call(*c).is_some_and(|e| to.contains(e.to)))
            .collect(),
        (_, Nodes::Listed(t)) => t
            .iter()
            .flat_map(|n| graph.incoming.get(n).unwrap_or(&empty))
            .copied()
            .filter(|c| graph.call(*c).is_some_and(|e| from.contains(e.from)))
            .collect(),
    };
    out.sort();
    out.dedup();
    out
}

/// The calls a policy covers, with methods; reports unknown names, undeclared methods and
/// selectors that cover nothing.
fn cover(p: &Policy, scope: &Scope<'_>, graph: &CallGraph, diags: &mut Vec<Diagnostic>) -> Vec<Covered> {
    let mut covered: BTreeMap<CallIdx, Option<Vec<SmolStr>>> = BTreeMap::new();
    for sel in &p.selectors {
        let (Some(from), Some(to)) = (nodes(&sel.from, scope, graph, diags), nodes(&sel.to, scope, graph, diags))
        else {
            continue;
        };
        let calls = matched_calls(&from, &to, graph);
        if calls.is_empty() {
            diags.push(nothing_covered(sel, scope.file, &from, &to));
            continue;
        }
        let methods = sel.methods.as_ref().map(|ms| ms.iter().map(|m| m.text.clone()).collect::<Vec<_>>());
        if let Some(ms) = &sel.methods {
            for m in ms {
                let lacking: Vec<CallIdx> =
                    calls.iter().copied().filter(|c| graph.call(*c).is_some_and(|e| !e.carries(&m.text))).collect();
                if lacking.is_empty() {
                    continue;
                }
                let names: Vec<String> = lacking.iter().take(3).map(|c| format!("`{}`", graph.call_name(*c))).collect();
                let more = if lacking.len() > 3 { format!(" and {} more", lacking.len() - 3) } else { String::new() };
                let mut d = Diagnostic::error(
                    "E0300",
                    scope.file,
                    m.span,
                    format!("method `{}` is not declared by {}{more}", m.text, names.join(", ")),
                )
                .with_primary("a selector may name only methods that every call it matches declares");
                if let Some(declared) = lacking.first().and_then(|c| graph.call(*c)).and_then(|e| e.methods.as_ref()) {
                    d = match suggest::help(&m.text, "method", declared.iter().map(SmolStr::as_str)) {
                        Some((help, name)) => d.with_help(help).with_replacement(name),
                        None => {
                            d.with_help(format!("`{}` declares: {}", graph.call_name(lacking[0]), declared.join(", ")))
                        }
                    };
                }
                diags.push(d);
            }
        }
        for c in calls {
            let entry = covered.entry(c).or_insert_with(|| Some(Vec::new()));
            match (&methods, entry.as_mut()) {
                (None, _) => *entry = None,
                (Some(ms), Some(existing)) => {
                    for m in ms {
                        if !existing.contains(m) {
                            existing.push(m.clone());
                        }
                    }
                }
                (Some(_), None) => {}
            }
        }
    }
    covered.into_iter().map(|(call, methods)| Covered { call, methods }).collect()
}

fn nothing_covered(sel: &Selector, file: FileId, from: &Nodes, to: &Nodes) -> Diagnostic {
    let d = Diagnostic::warning("W0300", file, sel.span, format!("`{}` covers no call", selector_text(sel)))
        .with_primary("no declared call matches this selector");
    let external_end = from.has_external() || to.has_external();
    if external_end {
        d.with_help("external edges exist only for services marked `external: ingress` (`egress`, `both`)")
    } else if from.is_empty() || to.is_empty() {
        d.with_help("the group is empty")
    } else {
        d.with_help("an edge that no `call` declares does not exist; declare the call, or drop the selector")
    }
}

pub fn selector_text(sel: &Selector) -> String {
    let methods = match &sel.methods {
        None => String::new(),
        Some(ms) if ms.len() == 1 => format!(".{}", ms[0].text),
        Some(ms) => format!(".{{{}}}", ms.iter().map(|m| m.text.as_str()).collect::<Vec<_>>().join(", ")),
    };
    format!("{} -> {}{methods}", sel.from, sel.to)
}

/// W0500: an `allow` that names a source which sends none of the covered calls.
fn warn_useless_sources(p: &Policy, covered: &[Covered], graph: &CallGraph, file: FileId, diags: &mut Vec<Diagnostic>) {
    let Some(from) = p.args.iter().find(|a| a.name.text == "from") else { return };
    let adm_syntax::ast::ValueKind::List(items) = &from.value.kind else { return };
    let senders: std::collections::BTreeSet<Node> =
        covered.iter().filter_map(|c| graph.call(c.call)).map(|e| e.from).collect();
    if covered.is_empty() {
        return;
    }
    for item in items {
        let adm_syntax::ast::ValueKind::Name(name) = &item.kind else { continue };
        let Some(services) = graph.expand(name) else { continue };
        if services.iter().any(|s| senders.contains(&Node::Service(*s))) {
            continue;
        }
        let targets: std::collections::BTreeSet<&str> =
            covered.iter().filter_map(|c| graph.call(c.call)).map(|e| graph.node_name(e.to)).collect();
        let targets: Vec<String> = targets.into_iter().take(3).map(|t| format!("`{t}`")).collect();
        let message = if graph.groups.contains_key(name) {
            format!("no service of group `{name}` calls {}", targets.join(", "))
        } else {
            format!("`{name}` never calls {}", targets.join(", "))
        };
        diags.push(
            Diagnostic::warning("W0500", file, item.span, message)
                .with_primary("this source sends none of the calls the policy covers")
                .with_help("declare the call if it exists, or remove the source from the list"),
        );
    }
}
