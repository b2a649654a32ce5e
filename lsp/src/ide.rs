//! What the editor asks about, answered from the compiler's database: names under the cursor,
//! definitions, references, completions, hovers, symbols. Positions here are byte offsets and
//! spans; the server converts them.

use std::collections::{BTreeMap, BTreeSet};

use adm_syntax::ast::{Endpoint, Item, ItemKind, SourceFile, TypeExpr, Value, ValueKind};
use adm_syntax::lexer::{self, Tok};
use adm_syntax::{FileId, Span};
use admc::db::{self, Database, Program};
use admc::sema::names::{DefKind, Namespace, BUILTIN_TYPES};

/// A name written in a file: a definition or a use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Occurrence {
    pub span: Span,
    pub name: String,
    pub ns: Namespace,
    pub def: bool,
}

fn push(out: &mut Vec<Occurrence>, name: &adm_syntax::ast::Name, ns: Namespace, def: bool) {
    out.push(Occurrence { span: name.span, name: name.text.to_string(), ns, def });
}

fn value_names(v: &Value, is_service: &dyn Fn(&str) -> bool, out: &mut Vec<Occurrence>) {
    match &v.kind {
        ValueKind::Name(n) if is_service(n) => {
            out.push(Occurrence { span: v.span, name: n.to_string(), ns: Namespace::Service, def: false })
        }
        ValueKind::List(items) => items.iter().for_each(|i| value_names(i, is_service, out)),
        _ => {}
    }
}

fn type_names(t: &TypeExpr, out: &mut Vec<Occurrence>) {
    match t {
        TypeExpr::Named(n) if !BUILTIN_TYPES.contains(&n.text.as_str()) => push(out, n, Namespace::Type, false),
        TypeExpr::List(inner, _) => type_names(inner, out),
        TypeExpr::Named(_) => {}
    }
}

/// Every name written in a file, with its namespace.
pub fn occurrences(file: &SourceFile, is_service: &dyn Fn(&str) -> bool) -> Vec<Occurrence> {
    let mut out = Vec::new();
    for item in &file.items {
        match &item.kind {
            ItemKind::Service(s) => push(&mut out, &s.name, Namespace::Service, true),
            ItemKind::Group(g) => {
                push(&mut out, &g.name, Namespace::Service, true);
                g.members.iter().for_each(|m| push(&mut out, m, Namespace::Service, false));
            }
            ItemKind::Call(c) => {
                for end in [&c.from, &c.to] {
                    if let Endpoint::Name(n) = end {
                        push(&mut out, n, Namespace::Service, false);
                    }
                }
            }
            ItemKind::Kind(k) => {
                push(&mut out, &k.name, Namespace::Kind, true);
                for p in &k.params {
                    type_names(&p.ty, &mut out);
                }
            }
            ItemKind::Enum(e) => push(&mut out, &e.name, Namespace::Type, true),
            ItemKind::Policy(p) => {
                push(&mut out, &p.name, Namespace::Policy, true);
                push(&mut out, &p.kind, Namespace::Kind, false);
                for a in &p.args {
                    value_names(&a.value, is_service, &mut out);
                }
                for s in &p.selectors {
                    for end in [&s.from, &s.to] {
                        if let Endpoint::Name(n) = end {
                            push(&mut out, n, Namespace::Service, false);
                        }
                    }
                }
            }
            ItemKind::App(_) | ItemKind::Error => {}
        }
    }
    out
}

/// The analysis of one database state.
pub struct Analysis<'a> {
    pub db: &'a Database,
    pub program: Program,
}

/// A place in a file of the program: its position in the program (0 = prelude) and a span.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Place {
    pub file: u32,
    pub span: Span,
}

impl<'a> Analysis<'a> {
    pub fn parse(&self, pos: u32) -> Option<&'a SourceFile> {
        let file = *self.program.files(self.db).get(pos as usize)?;
        Some(&db::parse_file(self.db, file).file)
    }

    pub fn text(&self, pos: u32) -> Option<&'a str> {
        let file = *self.program.files(self.db).get(pos as usize)?;
        Some(&**file.text(self.db))
    }

    pub fn file_id(&self, pos: u32) -> Option<FileId> {
        Some(self.program.files(self.db).get(pos as usize)?.id(self.db))
    }

    pub fn file_count(&self) -> u32 {
        self.program.files(self.db).len() as u32
    }

    fn is_service(&self) -> impl Fn(&str) -> bool + 'a {
        let symbols = db::symbols(self.db, self.program);
        move |n: &str| symbols.service_like(n).is_some()
    }

    pub fn occurrences(&self, pos: u32) -> Vec<Occurrence> {
        let is_service = self.is_service();
        self.parse(pos).map(|f| occurrences(f, &is_service)).unwrap_or_default()
    }

    /// The name under the cursor.
    pub fn at(&self, pos: u32, offset: u32) -> Option<Occurrence> {
        self.occurrences(pos).into_iter().find(|o| o.span.start <= offset && offset <= o.span.end)
    }

    /// Where a name is defined (the definition that counts).
    pub fn definition(&self, ns: Namespace, name: &str) -> Option<Place> {
        let site = db::symbols(self.db, self.program).get(ns, name)?;
        let item = self.parse(site.file)?.items.get(site.item as usize)?;
        Some(Place { file: site.file, span: item.name().map_or(item.span, |n| n.span) })
    }

    /// Every occurrence of a name in the program's files (not the prelude), definitions included.
    pub fn references(&self, ns: Namespace, name: &str) -> Vec<(Place, bool)> {
        let mut out = Vec::new();
        for pos in 1..self.file_count() {
            for o in self.occurrences(pos) {
                if o.ns == ns && o.name == name {
                    out.push((Place { file: pos, span: o.span }, o.def));
                }
            }
        }
        out
    }

    /// The item that contains an offset.
    pub fn item_at(&self, pos: u32, offset: u32) -> Option<&'a Item> {
        self.parse(pos)?.items.iter().find(|i| i.span.start <= offset && offset <= i.span.end)
    }

    /// Why a rename cannot be done, if it cannot.
    pub fn check_rename(&self, target: &Occurrence, new_name: &str) -> Result<(), String> {
        let valid = {
            let mut tokens = lexer::lex(FileId(0), new_name).tokens.into_iter();
            matches!((tokens.next(), tokens.next()), (Some((0, Tok::Ident(_), end)), None) if end == new_name.len())
        };
        if !valid {
            return Err(format!("`{new_name}` is not a valid name (letters, digits, `_`, inner `-`; not a keyword)"));
        }
        let symbols = db::symbols(self.db, self.program);
        if symbols.get(target.ns, &target.name).is_some_and(|s| s.file == 0) {
            return Err(format!("`{}` is defined by the prelude and cannot be renamed", target.name));
        }
        if symbols.get(target.ns, new_name).is_some()
            || (target.ns == Namespace::Type && BUILTIN_TYPES.contains(&new_name))
        {
            return Err(format!("`{new_name}` is already defined"));
        }
        Ok(())
    }

    /// Markdown for the name under the cursor.
    pub fn hover(&self, target: &Occurrence, plan: Option<&PlanView>) -> Option<String> {
        let symbols = db::symbols(self.db, self.program);
        let site = symbols.get(target.ns, &target.name)?;
        let item = self.parse(site.file)?.items.get(site.item as usize)?;
        let mut out = String::new();
        let doc = if item.doc.is_empty() { String::new() } else { format!("\n\n{}", item.doc.join("\n")) };
        match (&item.kind, site.kind) {
            (ItemKind::Service(_), DefKind::Service) => {
                let graph = db::call_graph(self.db, self.program);
                let def = graph.service_index.get(target.name.as_str()).and_then(|i| graph.service(*i));
                out.push_str(&format!("```adm\nservice {}\n```", target.name));
                if let Some(s) = def {
                    out.push_str(&format!(
                        "\n{} on port {}, {} replica{}{}",
                        s.protocol.as_str(),
                        s.port,
                        s.replicas,
                        if s.replicas == 1 { "" } else { "s" },
                        s.external.map_or(String::new(), |e| format!(", external {:?}", e).to_lowercase())
                    ));
                }
                out.push_str(&doc);
                if let Some(plan) = plan {
                    let hosts = plan.adm_services.contains(&target.name);
                    out.push_str(if hosts {
                        "\n\nhosts an ADM in the last plan"
                    } else {
                        "\n\nno ADM in the last plan"
                    });
                }
            }
            (ItemKind::Group(g), _) => {
                let members: Vec<&str> = g.members.iter().map(|m| m.text.as_str()).collect();
                out.push_str(&format!("```adm\ngroup {} = [{}]\n```{doc}", target.name, members.join(", ")));
            }
            (ItemKind::Kind(_), _) => {
                let kinds = db::kind_table(self.db, self.program);
                if let Some(Some(k)) = kinds.get(&target.name) {
                    out.push_str(&format!("```adm\nkind {}\n```\n", k.signature()));
                    out.push_str(&format!("placement `{}`, state `{}`", k.placement.as_str(), k.state.as_str()));
                    if k.exclusive {
                        out.push_str(", at most one per call and method");
                    }
                    out.push_str(&doc);
                }
            }
            (ItemKind::Enum(e), _) => {
                let variants: Vec<&str> = e.variants.iter().map(|v| v.text.as_str()).collect();
                out.push_str(&format!("```adm\nenum {} {{ {} }}\n```{doc}", target.name, variants.join(", ")));
            }
            (ItemKind::Policy(p), _) => {
                out.push_str(&format!("```adm\npolicy {} = {}(…)\n```{doc}", target.name, p.kind.text));
                let graph = db::call_graph(self.db, self.program);
                let facts = db::policy_facts(self.db, self.program, site.file, site.item);
                if let Some(f) = facts {
                    let calls: Vec<String> = f
                        .covered
                        .iter()
                        .map(|c| {
                            let methods =
                                c.methods.as_ref().map_or(String::new(), |m| format!(".{{{}}}", m.join(", ")));
                            format!("`{}{methods}`", graph.call_name(c.call))
                        })
                        .collect();
                    out.push_str(&format!(
                        "\n\n**covers** {}",
                        if calls.is_empty() { "no call".to_string() } else { calls.join(", ") }
                    ));
                }
                let sides = db::legal_sides(self.db, self.program);
                for (i, unit) in sides.units.get(&(site.file, site.item)).into_iter().flatten().enumerate() {
                    out.push_str(&format!(
                        "\n\n**{}**: may run at {}",
                        admc::plan::unit_label(graph, unit),
                        db::sides_text(unit)
                    ));
                    for r in &unit.removed {
                        out.push_str(&format!("\n- {} excluded (rule {}): {}", r.side, r.rule.number(), r.reason));
                    }
                    if let Some(placed) = plan.and_then(|p| p.units.get(&((site.file, site.item), i as u32))) {
                        out.push_str(&format!("\n- **placed at {}**", placed));
                    }
                }
            }
            _ => return None,
        }
        Some(out)
    }
}

/// The last completed plan, by policy unit: "egress@frontend,search".
#[derive(Clone, Debug, Default)]
pub struct PlanView {
    pub units: BTreeMap<((u32, u32), u32), String>,
    pub adm_services: BTreeSet<String>,
}

impl PlanView {
    /// The hint after a policy: its units' placements, merged.
    pub fn policy_hint(&self, order: (u32, u32)) -> Option<String> {
        let mut parts: Vec<&str> = self.units.range((order, 0)..=(order, u32::MAX)).map(|(_, s)| s.as_str()).collect();
        parts.sort_unstable();
        parts.dedup();
        (!parts.is_empty()).then(|| parts.join(" · "))
    }
}

/// What can be typed at a place, from the tokens of the item before the cursor.
pub fn completion_context(text: &str, item_start: u32, offset: u32) -> Context {
    let prefix = text.get(item_start as usize..offset as usize).unwrap_or("");
    let toks: Vec<Tok<'_>> = lexer::lex(FileId(0), prefix).tokens.into_iter().map(|(_, t, _)| t).collect();
    let typing = prefix.chars().last().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    // Drop the word being typed.
    let toks = if typing && matches!(toks.last(), Some(Tok::Ident(_))) { &toks[..toks.len() - 1] } else { &toks[..] };
    let first = toks.first();
    match (first, toks.last()) {
        (None, _) => Context::ItemStart,
        (Some(Tok::Policy), Some(Tok::Eq)) => Context::Kind,
        (Some(Tok::Policy), last) => {
            let kind = toks.iter().position(|t| *t == Tok::Eq).and_then(|i| match toks.get(i + 1) {
                Some(Tok::Ident(k)) => Some(k.to_string()),
                _ => None,
            });
            let depth = toks.iter().fold(0i32, |d, t| match t {
                Tok::LParen | Tok::LBracket => d + 1,
                Tok::RParen | Tok::RBracket => d - 1,
                _ => d,
            });
            let on = toks.contains(&Tok::On);
            match last {
                Some(Tok::Dot) => match toks.get(toks.len().wrapping_sub(2)) {
                    Some(Tok::Ident(dst)) => Context::Method(dst.to_string()),
                    _ => Context::None,
                },
                Some(Tok::LParen | Tok::Comma) if depth == 1 && !on => Context::Argument(kind.unwrap_or_default()),
                Some(Tok::Colon) if depth >= 1 && !on => {
                    let arg = toks.iter().rev().nth(1).and_then(|t| match t {
                        Tok::Ident(a) => Some(a.to_string()),
                        _ => None,
                    });
                    Context::ArgumentValue(kind.unwrap_or_default(), arg.unwrap_or_default())
                }
                Some(Tok::LBracket | Tok::Comma) if depth >= 2 && !on => Context::ServiceName,
                Some(Tok::On | Tok::Arrow | Tok::Comma) if on => Context::Endpoint,
                _ => Context::None,
            }
        }
        (Some(Tok::Group), Some(Tok::LBracket | Tok::Comma)) => Context::ServiceName,
        (Some(Tok::Call), Some(Tok::Call | Tok::Arrow)) => Context::ServiceName,
        (Some(Tok::Service | Tok::Call), Some(Tok::LBrace | Tok::Comma)) => {
            Context::Field(if first == Some(&Tok::Service) { "service" } else { "call" })
        }
        (Some(Tok::Service), Some(Tok::Colon)) => match toks.iter().rev().nth(1) {
            Some(Tok::Ident("protocol")) => Context::Words(&["http", "grpc", "tcp"]),
            Some(Tok::External) => Context::Words(&["ingress", "egress", "both"]),
            _ => Context::None,
        },
        (Some(Tok::Kind), Some(Tok::Colon)) => match toks.iter().rev().nth(1) {
            Some(Tok::Ident("placement")) => Context::Words(&["either", "ingress", "egress"]),
            Some(Tok::Ident("state")) => Context::Words(&["none", "per_request", "per_sender", "per_receiver"]),
            Some(Tok::Ident("exclusive")) => Context::Words(&["true", "false"]),
            _ => Context::Type,
        },
        (Some(Tok::Kind), Some(Tok::LBracket | Tok::Comma)) if toks.contains(&Tok::LBrace) => {
            Context::Words(&["source", "method", "path", "headers", "body", "outcome", "destination", "header(\"\")"])
        }
        (Some(Tok::Kind), Some(Tok::LBrace | Tok::Comma)) if toks.contains(&Tok::LBrace) => {
            Context::Words(&["placement", "state", "reads", "writes", "exclusive", "positive"])
        }
        (Some(Tok::Kind), Some(Tok::Lt)) => Context::Type,
        _ => Context::None,
    }
}

/// A completion context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Context {
    ItemStart,
    Kind,
    /// Argument names of a kind.
    Argument(String),
    /// The value of an argument (kind, argument).
    ArgumentValue(String, String),
    /// A selector end.
    Endpoint,
    ServiceName,
    /// Methods of the calls into a service or group.
    Method(String),
    Field(&'static str),
    Type,
    Words(&'static [&'static str]),
    None,
}

pub const ITEM_KEYWORDS: &[&str] = &["app", "service", "group", "call", "kind", "enum", "policy"];
