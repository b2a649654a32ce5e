//! Kinds, enums and types: from their declarations to [`KindDef`]s.

use std::collections::BTreeSet;

use adm_syntax::ast::{EnumDecl, Field, KindDecl, TypeExpr, ValueKind};
use adm_syntax::{Diagnostic, FileId};

use super::model::{Fact, FactPattern, KindDef, ParamDef, Placement, StateScope, Ty};
use super::names::{Namespace, BUILTIN_TYPES};
use super::suggest;
use super::values::{self, Scope};

/// Resolves a type as written.
pub fn lower_type(t: &TypeExpr, scope: &Scope<'_>, diags: &mut Vec<Diagnostic>) -> Option<Ty> {
    match t {
        TypeExpr::List(inner, _) => Some(Ty::List(Box::new(lower_type(inner, scope, diags)?))),
        TypeExpr::Named(n) => Some(match n.text.as_str() {
            "int" => Ty::Int,
            "bool" => Ty::Bool,
            "string" => Ty::String,
            "duration" => Ty::Duration,
            "rate" => Ty::Rate,
            "percent" => Ty::Percent,
            "size" => Ty::Size,
            "service" => Ty::Service,
            "method" => Ty::Method,
            "list" => {
                diags.push(
                    Diagnostic::error("E0103", scope.file, n.span, "`list` needs an element type")
                        .with_help("write `list<service>`, `list<int>`, …"),
                );
                return None;
            }
            other if scope.enums.contains_key(other) => Ty::Enum(other.to_string()),
            other => {
                let mut d = Diagnostic::error("E0103", scope.file, n.span, format!("unknown type `{other}`"))
                    .with_primary("no type has this name");
                let candidates =
                    BUILTIN_TYPES.iter().copied().filter(|t| *t != "list").chain(scope.symbols.names(Namespace::Type));
                d = match suggest::help(other, "type", candidates) {
                    Some((help, name)) => d.with_help(help).with_replacement(name),
                    None => d.with_help(format!("the types are {}<T> and enums", BUILTIN_TYPES.join(", "))),
                };
                diags.push(d);
                return None;
            }
        }),
    }
}

/// An enum's variants (each once).
pub fn lower_enum(e: &EnumDecl, file: FileId, diags: &mut Vec<Diagnostic>) -> Vec<String> {
    let mut seen: Vec<&adm_syntax::ast::Name> = Vec::new();
    for v in &e.variants {
        if let Some(first) = seen.iter().find(|s| s.text == v.text) {
            diags.push(
                Diagnostic::error("E0203", file, v.span, format!("variant `{}` listed twice", v.text)).with_label(
                    file,
                    first.span,
                    "first listed here",
                ),
            );
        } else {
            seen.push(v);
        }
    }
    if BUILTIN_TYPES.contains(&e.name.text.as_str()) {
        diags.push(
            Diagnostic::error("E0100", file, e.name.span, format!("`{}` is a built-in type", e.name.text))
                .with_help("give the enum another name"),
        );
    }
    seen.into_iter().map(|n| n.text.to_string()).collect()
}

const PROPERTIES: &[&str] = &["placement", "state", "reads", "writes", "exclusive", "positive"];

/// Checks a kind declaration and builds its definition. `None` when it is too broken to use;
/// policies of such a kind are then not checked further (their errors would only repeat).
pub fn lower_kind(
    k: &KindDecl,
    doc: &[String],
    builtin: bool,
    scope: &Scope<'_>,
    diags: &mut Vec<Diagnostic>,
) -> Option<KindDef> {
    let file = scope.file;
    let mut ok = true;
    let mut params: Vec<ParamDef> = Vec::new();
    let mut param_spans = Vec::new();
    for p in &k.params {
        if let Some((_, first)) = param_spans.iter().find(|(n, _)| *n == p.name.text) {
            diags.push(
                Diagnostic::error("E0203", file, p.name.span, format!("parameter `{}` declared twice", p.name.text))
                    .with_label(file, *first, "first declared here"),
            );
            ok = false;
            continue;
        }
        param_spans.push((p.name.text.clone(), p.name.span));
        let Some(ty) = lower_type(&p.ty, scope, diags) else {
            ok = false;
            continue;
        };
        let default = match &p.default {
            Some(v) => match values::check(&ty, v, scope, diags) {
                Some(v) => Some(v),
                None => {
                    ok = false;
                    continue;
                }
            },
            None => None,
        };
        params.push(ParamDef { name: p.name.text.to_string(), ty, default });
    }

    let mut placement = None;
    let mut state = None;
    let mut reads = Vec::new();
    let mut writes = Vec::new();
    let mut exclusive = false;
    let mut positive = Vec::new();
    let mut seen: Vec<&Field> = Vec::new();
    let props = k.properties.as_deref().unwrap_or_default();
    for f in props {
        let name = f.name.text.as_str();
        if let Some(first) = seen.iter().find(|s| s.name.text == name) {
            diags.push(
                Diagnostic::error("E0203", file, f.name.span, format!("property `{name}` given twice")).with_label(
                    file,
                    first.name.span,
                    "first given here",
                ),
            );
            ok = false;
            continue;
        }
        seen.push(f);
        let word = match &f.value.kind {
            ValueKind::Name(w) => Some(w.as_str()),
            _ => None,
        };
        match name {
            "placement" => {
                placement = match word {
                    Some("either") => Some(Placement::Either),
                    Some("ingress") => Some(Placement::Ingress),
                    Some("egress") => Some(Placement::Egress),
                    _ => {
                        bad_property(file, f, "`either`, `ingress` or `egress`", diags);
                        ok = false;
                        None
                    }
                }
            }
            "state" => {
                state = match word {
                    Some("none") => Some(StateScope::None),
                    Some("per_request") => Some(StateScope::PerRequest),
                    Some("per_sender") => Some(StateScope::PerSender),
                    Some("per_receiver") => Some(StateScope::PerReceiver),
                    _ => {
                        bad_property(file, f, "`none`, `per_request`, `per_sender` or `per_receiver`", diags);
                        ok = false;
                        None
                    }
                }
            }
            "reads" | "writes" => {
                let is_reads = name == "reads";
                let ValueKind::List(items) = &f.value.kind else {
                    bad_property(file, f, "a list of request facts, as in `[outcome]`", diags);
                    ok = false;
                    continue;
                };
                for item in items {
                    match lower_fact(item, is_reads, &params, file, diags) {
                        Some(fact) => {
                            let list = if is_reads { &mut reads } else { &mut writes };
                            if !list.contains(&fact) {
                                list.push(fact);
                            }
                        }
                        None => ok = false,
                    }
                }
            }
            "exclusive" => match f.value.kind {
                ValueKind::Bool(b) => exclusive = b,
                _ => {
                    bad_property(file, f, "`true` or `false`", diags);
                    ok = false;
                }
            },
            "positive" => {
                let ValueKind::List(items) = &f.value.kind else {
                    bad_property(file, f, "a list of parameter names, as in `[attempts]`", diags);
                    ok = false;
                    continue;
                };
                for item in items {
                    let ValueKind::Name(p) = &item.kind else {
                        diags.push(Diagnostic::error("E0206", file, item.span, "expected a parameter name"));
                        ok = false;
                        continue;
                    };
                    match params.iter().find(|d| &d.name == p) {
                        Some(d) if matches!(d.ty, Ty::Int | Ty::Duration | Ty::Rate | Ty::Percent | Ty::Size) => {
                            positive.push(p.to_string());
                        }
                        Some(d) => {
                            diags.push(
                                Diagnostic::error(
                                    "E0206",
                                    file,
                                    item.span,
                                    format!("`{p}` is of type `{}`, which has no sign", d.ty),
                                )
                                .with_help("`positive` lists numeric parameters: int, duration, rate, percent, size"),
                            );
                            ok = false;
                        }
                        None => {
                            let mut d = Diagnostic::error(
                                "E0206",
                                file,
                                item.span,
                                format!("`{p}` is not a parameter of `{}`", k.name.text),
                            );
                            if let Some((help, name)) =
                                suggest::help(p, "parameter", params.iter().map(|d| d.name.as_str()))
                            {
                                d = d.with_help(help).with_replacement(name);
                            }
                            diags.push(d);
                            ok = false;
                        }
                    }
                }
            }
            other => {
                let mut d = Diagnostic::error("E0202", file, f.name.span, format!("unknown kind property `{other}`"))
                    .with_primary("not a property of kinds");
                d = match suggest::help(other, "property", PROPERTIES.iter().copied()) {
                    Some((help, name)) => d.with_help(help).with_replacement(name),
                    None => d.with_help(format!("the properties are {}", PROPERTIES.join(", "))),
                };
                diags.push(d);
                ok = false;
            }
        }
    }
    for (prop, missing) in [("placement", placement.is_none()), ("state", state.is_none())] {
        let given = seen.iter().any(|f| f.name.text == prop);
        if missing && !given {
            diags.push(
                Diagnostic::error("E0208", file, k.name.span, format!("kind `{}` has no `{prop}`", k.name.text))
                    .with_help(
                        "every kind says its `placement` and `state`, as in `{ placement: either, state: none }`",
                    ),
            );
            ok = false;
        }
    }
    let (Some(placement), Some(state), true) = (placement, state, ok) else { return None };
    Some(KindDef {
        name: k.name.text.to_string(),
        params,
        placement,
        state,
        reads,
        writes,
        exclusive,
        positive,
        doc: doc.to_vec(),
        builtin,
    })
}

fn bad_property(file: FileId, f: &Field, expected: &str, diags: &mut Vec<Diagnostic>) {
    diags.push(
        Diagnostic::error("E0206", file, f.value.span, format!("invalid value for `{}`", f.name.text))
            .with_primary(format!("expected {expected}")),
    );
}

/// A fact in `reads` or `writes`.
fn lower_fact(
    v: &adm_syntax::ast::Value,
    is_reads: bool,
    params: &[ParamDef],
    file: FileId,
    diags: &mut Vec<Diagnostic>,
) -> Option<FactPattern> {
    let allowed: &[&str] = if is_reads {
        &["source", "method", "path", "headers", "body", "outcome"]
    } else {
        &["headers", "body", "destination", "outcome"]
    };
    match &v.kind {
        ValueKind::Name(n) if allowed.contains(&n.as_str()) => Some(FactPattern::Fixed(match n.as_str() {
            "source" => Fact::Source,
            "method" => Fact::Method,
            "path" => Fact::Path,
            "headers" => Fact::Headers,
            "body" => Fact::Body,
            "destination" => Fact::Destination,
            _ => Fact::Outcome,
        })),
        ValueKind::Apply(app) if app.name.text == "header" => match app.args.as_slice() {
            [arg] => match &arg.kind {
                ValueKind::Str(h) if valid_header(h) => Some(FactPattern::Fixed(Fact::Header(h.to_ascii_lowercase()))),
                ValueKind::Str(h) => {
                    diags.push(
                        Diagnostic::error("E0207", file, arg.span, format!("`{h}` is not a header name"))
                            .with_help("header names are letters, digits and `!#$%&'*+-.^_`|~`, as in `x-api-key`"),
                    );
                    None
                }
                ValueKind::Name(p) => match params.iter().find(|d| &d.name == p) {
                    Some(d) if d.ty == Ty::String => Some(FactPattern::HeaderParam(p.to_string())),
                    Some(d) => {
                        diags.push(Diagnostic::error(
                            "E0207",
                            file,
                            arg.span,
                            format!(
                                "`header({p})` names a header by a parameter of type `{}`; it must be a `string`",
                                d.ty
                            ),
                        ));
                        None
                    }
                    None => {
                        let mut d = Diagnostic::error(
                            "E0207",
                            file,
                            arg.span,
                            format!("`{p}` is not a parameter of this kind"),
                        );
                        if let Some((help, name)) =
                            suggest::help(p, "parameter", params.iter().map(|d| d.name.as_str()))
                        {
                            d = d.with_help(help).with_replacement(name);
                        }
                        diags.push(d);
                        None
                    }
                },
                _ => {
                    header_form(file, v.span, diags);
                    None
                }
            },
            _ => {
                header_form(file, v.span, diags);
                None
            }
        },
        _ => {
            let list = if is_reads { "reads" } else { "writes" };
            let mut d = Diagnostic::error("E0206", file, v.span, format!("invalid fact in `{list}`"))
                .with_primary(format!("expected one of {}, or `header(\"x\")`", allowed.join(", ")));
            if let ValueKind::Name(n) = &v.kind {
                let other: &[&str] = if is_reads { &["destination"] } else { &["source", "method", "path"] };
                if other.contains(&n.as_str()) {
                    d = d.with_help(if is_reads {
                        format!("`{n}` is a fact a kind may write, not read")
                    } else {
                        format!("`{n}` is a fact a kind may read, not write")
                    });
                }
            }
            diags.push(d);
            None
        }
    }
}

fn header_form(file: FileId, span: adm_syntax::Span, diags: &mut Vec<Diagnostic>) {
    diags.push(
        Diagnostic::error("E0207", file, span, "invalid header fact")
            .with_help("write `header(\"x-name\")` for a fixed header, or `header(param)` for a string parameter"),
    );
}

/// RFC 9110 token characters.
fn valid_header(h: &str) -> bool {
    !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether two kinds say the same thing (a program may repeat a built-in kind word for word).
pub fn same_definition(a: &KindDef, b: &KindDef) -> bool {
    let strip = |k: &KindDef| KindDef { doc: Vec::new(), builtin: false, ..k.clone() };
    strip(a) == strip(b)
}

/// The set of parameter names, for suggestions.
pub fn param_names(k: &KindDef) -> BTreeSet<&str> {
    k.params.iter().map(|p| p.name.as_str()).collect()
}
