//! The salsa database: inputs are file texts; every stage is a tracked query.
//!
//! The queries are cut so that an edit recomputes little. Program-wide tables (names, call graph,
//! kinds, legal sides, conflicts) are built from per-file or per-policy results that carry no
//! source positions, so an edit that only changes one argument, or only moves text, leaves them
//! as they were and salsa reuses everything built on them. Diagnostics, which need positions, are
//! made per file.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use adm_syntax::ast::{Endpoint, Item, ItemKind, Side, SmolStr};
use adm_syntax::{Diagnostic, FileId, Parse, Span};

use crate::sema::conflicts::{self as conflict_rules, Conflict, ConflictKind};
use crate::sema::graph::{self, CallDecl, End, GraphDecls};
use crate::sema::kinds;
use crate::sema::model::{Args, CallGraph, KindDef, PolicyFacts, PolicyOrder, Rule, Unit, UnitKey};
use crate::sema::names::{self, DefKind, DefSite, Symbols};
use crate::sema::policy::{self, KindTable};
use crate::sema::sides::{self as side_rules, LegalSides};
use crate::sema::values::Scope;

/// The file id of the prelude in diagnostics.
pub const PRELUDE_FILE: FileId = FileId(u32::MAX);
/// The prelude's text: the built-in kinds and enums.
pub const PRELUDE: &str = include_str!("prelude.adm");

/// One source file.
#[salsa::input(debug)]
pub struct SourceText {
    #[returns(copy)]
    pub id: FileId,
    #[returns(ref)]
    pub name: String,
    #[returns(ref)]
    pub text: Arc<str>,
}

/// The files of a program, the prelude first.
#[salsa::input(debug)]
pub struct Program {
    #[returns(ref)]
    pub files: Vec<SourceText>,
}

/// The database of the compiler and (later) the language server.
#[salsa::db]
#[derive(Clone, Default)]
pub struct Database {
    storage: salsa::Storage<Self>,
}

#[salsa::db]
impl salsa::Database for Database {}

/// The names of the queries salsa executed, in order, for tests and benchmarks that check what
/// an edit recomputes.
pub type ExecutionLog = Arc<Mutex<Vec<String>>>;

impl Database {
    /// A database that records every query execution in the returned log.
    pub fn with_execution_log() -> (Database, ExecutionLog) {
        let log: ExecutionLog = Arc::default();
        let sink = log.clone();
        let storage = salsa::Storage::new(Some(Box::new(move |event: salsa::Event| {
            if let salsa::EventKind::WillExecute { database_key } = event.kind {
                if let Ok(mut log) = sink.lock() {
                    log.push(format!("{database_key:?}"));
                }
            }
        })));
        (Database { storage }, log)
    }

    /// A program of the given files (name, text); their ids are their positions in the list.
    pub fn program<N: Into<String>, T: Into<Arc<str>>>(&self, files: impl IntoIterator<Item = (N, T)>) -> Program {
        let mut inputs = vec![SourceText::new(self, PRELUDE_FILE, "<prelude>".to_string(), PRELUDE.into())];
        for (i, (name, text)) in files.into_iter().enumerate() {
            inputs.push(SourceText::new(self, FileId(i as u32), name.into(), text.into()));
        }
        Program::new(self, inputs)
    }
}

fn file_at(db: &dyn salsa::Database, program: Program, pos: u32) -> Option<SourceText> {
    program.files(db).get(pos as usize).copied()
}

/// A file's syntax tree and syntax errors.
#[salsa::tracked(returns(ref))]
pub fn parse_file(db: &dyn salsa::Database, file: SourceText) -> Parse {
    adm_syntax::parse(file.id(db), file.text(db))
}

#[salsa::tracked(returns(ref))]
fn file_defs(db: &dyn salsa::Database, file: SourceText) -> Vec<(SmolStr, DefKind, u32)> {
    names::file_defs(&parse_file(db, file).file)
}

/// Every name of the program.
#[salsa::tracked(returns(ref))]
pub fn symbols(db: &dyn salsa::Database, program: Program) -> Symbols {
    let mut symbols = Symbols::default();
    for (pos, file) in program.files(db).iter().enumerate() {
        for (name, kind, item) in file_defs(db, *file) {
            symbols.add(name, DefSite { file: pos as u32, item: *item, kind: *kind });
        }
    }
    symbols
}

/// The names of services, groups, kinds and enums, without policies: what checking a declaration
/// or a policy needs. Policies' own names only matter for duplicates, so editing (or breaking) a
/// policy leaves this table, and every check that reads it, as it was.
#[salsa::tracked(returns(ref))]
pub fn declaration_symbols(db: &dyn salsa::Database, program: Program) -> Symbols {
    Symbols { policies: Default::default(), ..symbols(db, program).clone() }
}

#[salsa::tracked(returns(ref))]
fn file_enums(db: &dyn salsa::Database, file: SourceText) -> Vec<(String, Vec<String>)> {
    let mut ignored = Vec::new();
    parse_file(db, file)
        .file
        .items
        .iter()
        .filter_map(|i| match &i.kind {
            ItemKind::Enum(e) => Some((e.name.text.to_string(), kinds::lower_enum(e, file.id(db), &mut ignored))),
            _ => None,
        })
        .collect()
}

/// Every enum with its variants (the first definition of a name counts).
#[salsa::tracked(returns(ref))]
pub fn enums(db: &dyn salsa::Database, program: Program) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for file in program.files(db) {
        for (name, variants) in file_enums(db, *file) {
            out.entry(name.clone()).or_insert_with(|| variants.clone());
        }
    }
    out
}

type CheckedKinds = (Vec<(String, Option<KindDef>)>, Vec<Diagnostic>);

#[salsa::tracked(returns(ref))]
fn file_kinds_checked(db: &dyn salsa::Database, program: Program, pos: u32) -> CheckedKinds {
    let Some(file) = file_at(db, program, pos) else { return (Vec::new(), Vec::new()) };
    let scope = Scope { file: file.id(db), symbols: declaration_symbols(db, program), enums: enums(db, program) };
    let mut diags = Vec::new();
    let mut out = Vec::new();
    for item in &parse_file(db, file).file.items {
        match &item.kind {
            ItemKind::Kind(k) => {
                let def = kinds::lower_kind(k, &item.doc, pos == 0, &scope, &mut diags);
                out.push((k.name.text.to_string(), def));
            }
            ItemKind::Enum(e) => {
                kinds::lower_enum(e, scope.file, &mut diags);
            }
            _ => {}
        }
    }
    (out, diags)
}

#[salsa::tracked(returns(ref))]
fn file_kinds(db: &dyn salsa::Database, program: Program, pos: u32) -> Vec<(String, Option<KindDef>)> {
    file_kinds_checked(db, program, pos).0.clone()
}

/// Every kind of the program (the first definition of a name counts).
#[salsa::tracked(returns(ref))]
pub fn kind_table(db: &dyn salsa::Database, program: Program) -> KindTable {
    let mut table = KindTable::new();
    for pos in 0..program.files(db).len() as u32 {
        for (name, def) in file_kinds(db, program, pos) {
            table.entry(name.clone()).or_insert_with(|| def.clone());
        }
    }
    table
}

/// A file's graph items and their diagnostics. The items are shared with [`file_graph`], which
/// holds them without the diagnostics, so that an edit that only moves text stops there.
#[salsa::tracked(returns(ref))]
fn file_graph_checked(db: &dyn salsa::Database, program: Program, pos: u32) -> (Arc<GraphDecls>, Vec<Diagnostic>) {
    let Some(file) = file_at(db, program, pos) else { return (Arc::default(), Vec::new()) };
    let mut diags = Vec::new();
    let decls =
        graph::check_file(file.id(db), &parse_file(db, file).file, declaration_symbols(db, program), &mut diags);
    (Arc::new(decls), diags)
}

#[salsa::tracked(returns(ref))]
fn file_graph(db: &dyn salsa::Database, program: Program, pos: u32) -> Arc<GraphDecls> {
    file_graph_checked(db, program, pos).0.clone()
}

/// The call graph: services, groups, declared calls and implicit external edges.
#[salsa::tracked(returns(ref))]
pub fn call_graph(db: &dyn salsa::Database, program: Program) -> CallGraph {
    let decls: Vec<&GraphDecls> =
        (0..program.files(db).len() as u32).map(|pos| &**file_graph(db, program, pos)).collect();
    graph::build(&decls)
}

/// Where each call is declared first: (file position, item index).
#[salsa::tracked(returns(ref))]
fn first_declarations(db: &dyn salsa::Database, program: Program) -> BTreeMap<(End, End), (u32, u32)> {
    let mut out = BTreeMap::new();
    for pos in 0..program.files(db).len() as u32 {
        for c in &file_graph(db, program, pos).calls {
            out.entry((c.from.clone(), c.to.clone())).or_insert((pos, c.item));
        }
    }
    out
}

/// The first `app` name of the program.
#[salsa::tracked(returns(ref))]
fn app_name(db: &dyn salsa::Database, program: Program) -> Option<(SmolStr, u32, u32)> {
    (0..program.files(db).len() as u32)
        .find_map(|pos| file_graph(db, program, pos).apps.first().map(|(name, item)| (name.clone(), pos, *item)))
}

/// The item indices of a file's policies.
#[salsa::tracked(returns(ref))]
fn file_policies(db: &dyn salsa::Database, file: SourceText) -> Vec<u32> {
    let items = &parse_file(db, file).file.items;
    (0..items.len() as u32).filter(|i| matches!(items[*i as usize].kind, ItemKind::Policy(_))).collect()
}

/// Every policy of the program, in declaration order.
#[salsa::tracked(returns(ref))]
pub fn policies(db: &dyn salsa::Database, program: Program) -> Vec<PolicyOrder> {
    let mut out = Vec::new();
    for (pos, file) in program.files(db).iter().enumerate() {
        out.extend(file_policies(db, *file).iter().map(|i| (pos as u32, *i)));
    }
    out
}

/// One policy checked: its item index, its facts and arguments (when placeable), and its own
/// diagnostics. Facts and arguments are shared with [`file_facts`] and [`file_args`], not copied.
pub type CheckedPolicy = (u32, Option<(Arc<PolicyFacts>, Arc<Args>)>, Vec<Diagnostic>);

/// Every policy of a file, checked. Policies are checked a file at a time: an edit re-parses its
/// file anyway, and program-wide queries then depend on one query per file rather than one per
/// policy, which keeps salsa's validation of an unchanged program cheap.
#[salsa::tracked(returns(ref))]
pub fn file_policy_checks(db: &dyn salsa::Database, program: Program, pos: u32) -> Vec<CheckedPolicy> {
    let Some(file) = file_at(db, program, pos) else { return Vec::new() };
    let items = &parse_file(db, file).file.items;
    let scope = Scope { file: file.id(db), symbols: declaration_symbols(db, program), enums: enums(db, program) };
    let (kinds, graph) = (kind_table(db, program), call_graph(db, program));
    let broken = broken_items(parse_file(db, file));
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let ItemKind::Policy(p) = &item.kind else { continue };
        // A policy with a syntax error lost some of its parts: it takes no part in placement
        // until it parses, so it cannot make other policies unplaceable.
        if broken.contains(&item.span) {
            out.push((i as u32, None, Vec::new()));
            continue;
        }
        let mut diags = Vec::new();
        let checked = policy::check(p, (pos, i as u32), &scope, kinds, graph, &mut diags);
        out.push((i as u32, checked.map(|(facts, args)| (Arc::new(facts), Arc::new(args))), diags));
    }
    out
}

/// The facts of a file's placeable policies, without argument values, in item order.
#[salsa::tracked(returns(ref))]
pub fn file_facts(db: &dyn salsa::Database, program: Program, pos: u32) -> Vec<Arc<PolicyFacts>> {
    file_policy_checks(db, program, pos).iter().filter_map(|(_, c, _)| c.as_ref().map(|(f, _)| f.clone())).collect()
}

/// The arguments of a file's placeable policies, by item index.
#[salsa::tracked(returns(ref))]
pub fn file_args(db: &dyn salsa::Database, program: Program, pos: u32) -> BTreeMap<u32, Arc<Args>> {
    file_policy_checks(db, program, pos)
        .iter()
        .filter_map(|(i, c, _)| c.as_ref().map(|(_, a)| (*i, a.clone())))
        .collect()
}

/// A policy's facts, without argument values; `None` when it is not placeable.
pub fn policy_facts(db: &dyn salsa::Database, program: Program, pos: u32, item: u32) -> Option<&PolicyFacts> {
    let facts = file_facts(db, program, pos);
    facts.binary_search_by_key(&item, |f| f.order.1).ok().map(|i| &*facts[i])
}

/// A policy's arguments; `None` when it is not placeable.
pub fn policy_args(db: &dyn salsa::Database, program: Program, pos: u32, item: u32) -> Option<&Args> {
    file_args(db, program, pos).get(&item).map(|a| &**a)
}

fn all_facts(db: &dyn salsa::Database, program: Program) -> Vec<&PolicyFacts> {
    (0..program.files(db).len() as u32).flat_map(|pos| file_facts(db, program, pos).iter().map(|f| &**f)).collect()
}

/// The units of every policy with their legal sides, and the rule-4 constraints.
#[salsa::tracked(returns(ref))]
pub fn legal_sides(db: &dyn salsa::Database, program: Program) -> LegalSides {
    side_rules::legal_sides(&all_facts(db, program), call_graph(db, program))
}

/// Every pair of conflicting policies.
#[salsa::tracked(returns(ref))]
pub fn conflicts(db: &dyn salsa::Database, program: Program) -> Vec<Conflict> {
    conflict_rules::find(&all_facts(db, program), call_graph(db, program))
}

/// The units of one file's policies that have no legal side: the part of [`legal_sides`] that the
/// file's diagnostics need, so that a change elsewhere in the placement leaves them as they were.
#[salsa::tracked(returns(ref))]
fn file_unplaceable(db: &dyn salsa::Database, program: Program, pos: u32) -> Vec<(u32, Vec<Unit>)> {
    legal_sides(db, program)
        .units
        .range((pos, 0)..=(pos, u32::MAX))
        .filter(|(_, units)| units.iter().any(|u| !u.ingress && !u.egress))
        .map(|((_, item), units)| (*item, units.clone()))
        .collect()
}

/// The conflicts reported in one file (at its later policy).
#[salsa::tracked(returns(ref))]
fn file_conflicts(db: &dyn salsa::Database, program: Program, pos: u32) -> Vec<Conflict> {
    conflicts(db, program).iter().filter(|c| c.later.0 == pos).cloned().collect()
}

/// The span of an item, and of its name, in another file (for labels).
fn item_spans(db: &dyn salsa::Database, program: Program, pos: u32, item: u32) -> Option<(FileId, &Item)> {
    let file = file_at(db, program, pos)?;
    let item = parse_file(db, file).file.items.get(item as usize)?;
    Some((file.id(db), item))
}

fn name_span(item: &Item) -> Span {
    item.name().map_or(item.span, |n| n.span)
}

/// Every diagnostic of one file, in source order.
#[salsa::tracked(returns(ref))]
pub fn file_diagnostics(db: &dyn salsa::Database, program: Program, pos: u32) -> Vec<Diagnostic> {
    let Some(file) = file_at(db, program, pos) else { return Vec::new() };
    let id = file.id(db);
    let parse = parse_file(db, file);
    let mut diags = parse.diagnostics.clone();
    duplicates(db, program, pos, file, &mut diags);
    diags.extend(file_kinds_checked(db, program, pos).1.iter().cloned());
    diags.extend(file_graph_checked(db, program, pos).1.iter().cloned());
    calls_and_app(db, program, pos, id, &mut diags);
    for (_, _, policy_diags) in file_policy_checks(db, program, pos) {
        diags.extend(policy_diags.iter().cloned());
    }
    for (item, units) in file_unplaceable(db, program, pos) {
        unplaceable(db, program, (pos, *item), units, &mut diags);
    }
    for c in file_conflicts(db, program, pos) {
        diags.extend(conflict(db, program, c));
    }
    // An item with a syntax error lost some of its parts: what the later stages say of it would
    // mostly repeat that error, so only the syntax errors are shown until it parses.
    let broken = broken_items(parse);
    if !broken.is_empty() {
        diags.retain(|d| {
            d.code.starts_with("E00")
                || d.code.starts_with("W00")
                || !broken.iter().any(|s| s.start <= d.span.start && d.span.end <= s.end)
        });
    }
    diags.sort_by_key(|d| (d.span.start, d.span.end, d.code));
    diags
}

/// The spans of the items that have a syntax error.
fn broken_items(parse: &Parse) -> Vec<Span> {
    parse
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .filter_map(|d| parse.file.items.iter().find(|i| i.span.start <= d.span.start && d.span.start <= i.span.end))
        .map(|i| i.span)
        .collect()
}

/// Every diagnostic of the program: file by file (the prelude first), each in source order.
#[salsa::tracked(returns(ref))]
pub fn program_diagnostics(db: &dyn salsa::Database, program: Program) -> Vec<Diagnostic> {
    (0..program.files(db).len() as u32).flat_map(|pos| file_diagnostics(db, program, pos).iter().cloned()).collect()
}

/// E0100 and E0105: a name defined twice, reported at every definition after the first.
fn duplicates(db: &dyn salsa::Database, program: Program, pos: u32, file: SourceText, diags: &mut Vec<Diagnostic>) {
    let symbols = symbols(db, program);
    let id = file.id(db);
    let items = &parse_file(db, file).file.items;
    for (name, kind, item) in file_defs(db, file) {
        let Some(first) = symbols.get(kind.namespace(), name) else { continue };
        if first.file == pos && first.item == *item {
            continue;
        }
        let Some(here) = items.get(*item as usize) else { continue };
        let Some((first_file, first_item)) = item_spans(db, program, first.file, first.item) else { continue };
        if first.file == 0 && matches!(kind, DefKind::Kind | DefKind::Enum) {
            if same_as_builtin(db, program, pos, *item, name, *kind) {
                continue;
            }
            diags.push(
                Diagnostic::error("E0105", id, name_span(here), format!("`{name}` is a built-in {}", kind.as_str()))
                    .with_primary(format!("this {} differs from the built-in one", kind.as_str()))
                    .with_label(first_file, name_span(first_item), "the prelude defines it here")
                    .with_help(
                        "choose another name, or repeat the built-in definition exactly (`admc prelude` shows it)",
                    ),
            );
            continue;
        }
        let what = if first.kind == *kind { String::new() } else { format!(" as a {}", first.kind.as_str()) };
        diags.push(
            Diagnostic::error("E0100", id, name_span(here), format!("`{name}` is defined twice"))
                .with_primary(format!("this {} reuses the name", kind.as_str()))
                .with_label(first_file, name_span(first_item), format!("first defined here{what}"))
                .with_help(match kind.namespace() {
                    names::Namespace::Service => "services and groups share one namespace; rename one of them",
                    _ => "rename one of them",
                }),
        );
    }
}

/// Whether a redefinition of a prelude kind or enum says exactly what the prelude says.
fn same_as_builtin(db: &dyn salsa::Database, program: Program, pos: u32, item: u32, name: &str, kind: DefKind) -> bool {
    match kind {
        DefKind::Kind => {
            let builtin = kind_table(db, program).get(name).and_then(Option::as_ref);
            let Some(file) = file_at(db, program, pos) else { return false };
            let Some(ItemKind::Kind(k)) = parse_file(db, file).file.items.get(item as usize).map(|i| &i.kind) else {
                return false;
            };
            let own =
                file_kinds(db, program, pos).iter().find(|(n, _)| *n == k.name.text).and_then(|(_, d)| d.as_ref());
            matches!((builtin, own), (Some(a), Some(b)) if kinds::same_definition(a, b))
        }
        DefKind::Enum => {
            let builtin = enums(db, program).get(name);
            let Some(file) = file_at(db, program, pos) else { return false };
            let own = file_enums(db, file).iter().find(|(n, _)| n == name).map(|(_, v)| v);
            builtin.is_some() && builtin == own
        }
        _ => false,
    }
}

/// E0107 (a call declared twice), E0302 (an external call to a service not marked so), E0108
/// (two `app` names).
fn calls_and_app(db: &dyn salsa::Database, program: Program, pos: u32, id: FileId, diags: &mut Vec<Diagnostic>) {
    let decls = file_graph(db, program, pos);
    let declared = first_declarations(db, program);
    let graph = call_graph(db, program);
    let Some(file) = file_at(db, program, pos) else { return };
    let items = &parse_file(db, file).file.items;
    for c in &decls.calls {
        let Some(here) = items.get(c.item as usize) else { continue };
        if let Some(&(first_pos, first_item)) = declared.get(&(c.from.clone(), c.to.clone())) {
            if (first_pos, first_item) != (pos, c.item) {
                if let Some((first_file, first)) = item_spans(db, program, first_pos, first_item) {
                    diags.push(
                        Diagnostic::error("E0107", id, here.span, format!("call `{}` is declared twice", call_text(c)))
                            .with_label(first_file, first.span, "first declared here")
                            .with_help("merge the two declarations: one call lists all its methods"),
                    );
                }
                continue;
            }
        }
        let external_ok = |service: &str, inbound: bool| {
            graph.service_index.get(service).and_then(|s| graph.service(*s)).and_then(|s| s.external).is_some_and(|e| {
                if inbound {
                    e.inbound()
                } else {
                    e.outbound()
                }
            })
        };
        let wrong = match (&c.from, &c.to) {
            (End::External, End::Service(s)) if !external_ok(s, true) => Some((s, "ingress")),
            (End::Service(s), End::External) if !external_ok(s, false) => Some((s, "egress")),
            _ => None,
        };
        if let Some((service, marking)) = wrong {
            if graph.service_index.contains_key(service) {
                diags.push(
                    Diagnostic::error(
                        "E0302",
                        id,
                        here.span,
                        format!("`{}` is not an external edge of the mesh", call_text(c)),
                    )
                    .with_primary(format!("`{service}` is not marked `external: {marking}`"))
                    .with_help(format!(
                        "mark the service `external: {marking}` (or `both`) to let traffic cross the mesh's edge"
                    )),
                );
            }
        }
    }
    if let Some((app, first_pos, first_item)) = app_name(db, program) {
        for (name, item) in &decls.apps {
            // Two names in one file are already E0014.
            if name == app || *first_pos == pos {
                continue;
            }
            let Some(here) = items.get(*item as usize) else { continue };
            let mut d =
                Diagnostic::error("E0108", id, name_span(here), format!("the program is named `{app}`, not `{name}`"))
                    .with_help("every file of a program names the same mesh (or none)");
            if let Some((first_file, first)) = item_spans(db, program, *first_pos, *first_item) {
                d = d.with_label(first_file, name_span(first), "named here");
            }
            diags.push(d);
        }
    }
}

fn call_text(c: &CallDecl) -> String {
    fn end(e: &End) -> &str {
        match e {
            End::External => "external",
            End::Service(s) => s,
        }
    }
    format!("{} -> {}", end(&c.from), end(&c.to))
}

fn unit_text(graph: &CallGraph, unit: &Unit) -> String {
    match unit.key {
        UnitKey::Call(c) => format!("on `{}`", graph.call_name(c)),
        UnitKey::Receiver(n) => format!("for its calls into `{}`", graph.node_name(n)),
        UnitKey::Sender(n) => format!("for its calls out of `{}`", graph.node_name(n)),
    }
}

/// E0400: a unit with no legal side, with a label for every rule that removed a side.
fn unplaceable(
    db: &dyn salsa::Database,
    program: Program,
    order: PolicyOrder,
    units: &[Unit],
    diags: &mut Vec<Diagnostic>,
) {
    let graph = call_graph(db, program);
    let Some((file, item)) = item_spans(db, program, order.0, order.1) else { return };
    let ItemKind::Policy(p) = &item.kind else { return };
    for unit in units.iter().filter(|u| !u.ingress && !u.egress) {
        let mut d = Diagnostic::error(
            "E0400",
            file,
            p.name.span,
            format!("policy `{}` has no side to run {}", p.name.text, unit_text(graph, unit)),
        )
        .with_primary("both ingress and egress are excluded for this unit");
        for r in &unit.removed {
            let label = format!("{} excluded by rule {}: {}", r.side, r.rule.number(), r.reason);
            let at = match r.rule {
                Rule::KindPlacement => Some((file, p.kind.span)),
                Rule::Pin => p.at.map(|a| (file, a.span)),
                Rule::SharedState => p.selectors.first().map(|s| (file, s.span)),
                Rule::External => p
                    .selectors
                    .iter()
                    .find(|s| matches!(s.from, Endpoint::External(_)) || matches!(s.to, Endpoint::External(_)))
                    .or(p.selectors.first())
                    .map(|s| (file, s.span)),
                Rule::Ordering => {
                    r.because_of.and_then(|o| item_spans(db, program, o.0, o.1)).map(|(f, other)| (f, name_span(other)))
                }
            };
            if let Some((f, span)) = at {
                d = d.with_label(f, span, label);
            }
        }
        let has = |rule: Rule| unit.removed.iter().any(|r| r.rule == rule);
        d = d.with_help(if has(Rule::Pin) {
            "remove the `at` pin, or pin the side the kind allows"
        } else if has(Rule::Ordering) {
            "declare the dependent policies in the other order on this call, or make one of them able to run on either side"
        } else if has(Rule::External) {
            "this call crosses the edge of the mesh, where only one side has an ADM: use a kind that can run on that side"
        } else if has(Rule::SharedState) {
            "narrow the selectors so that the shared state has one sender (or one receiver), or use a kind that can run on the other side"
        } else {
            "use a kind whose placement allows a side this unit can take"
        });
        diags.push(d);
    }
}

/// E0500 and E0501, reported at the later policy.
fn conflict(db: &dyn salsa::Database, program: Program, c: &Conflict) -> Option<Diagnostic> {
    let graph = call_graph(db, program);
    let (file, later) = item_spans(db, program, c.later.0, c.later.1)?;
    let (efile, earlier) = item_spans(db, program, c.earlier.0, c.earlier.1)?;
    let (ItemKind::Policy(p), ItemKind::Policy(q)) = (&later.kind, &earlier.kind) else { return None };
    let call = graph.call_name(c.call);
    Some(match &c.kind {
        ConflictKind::Access { source, earlier_permits } => {
            let verdict = |permits: bool| if permits { "lets them through" } else { "refuses them" };
            Diagnostic::error(
                "E0500",
                file,
                p.name.span,
                format!(
                    "`{}` and `{}` decide requests from `{}` on `{call}` differently",
                    q.name.text,
                    p.name.text,
                    graph.node_name(*source)
                ),
            )
            .with_primary(format!("`{}` {}", p.name.text, verdict(!earlier_permits)))
            .with_label(efile, q.name.span, format!("`{}` {}", q.name.text, verdict(*earlier_permits)))
            .with_help("access control must be unambiguous: make the lists agree, or narrow one policy's selectors")
        }
        ConflictKind::Exclusive { kind } => Diagnostic::error(
            "E0501",
            file,
            p.name.span,
            format!("two `{kind}` policies act on `{call}`: `{}` and `{}`", q.name.text, p.name.text),
        )
        .with_primary(format!("a request gets at most one `{kind}`"))
        .with_label(efile, q.name.span, format!("`{}` already acts on `{call}`", q.name.text))
        .with_help("keep one of them, or give them selectors with different methods"),
    })
}

/// For `admc` and tests: the side names of a unit.
pub fn sides_text(unit: &Unit) -> String {
    let sides: Vec<&str> = unit.sides().into_iter().map(Side::as_str).collect();
    if sides.is_empty() {
        "none".to_string()
    } else {
        sides.join(" or ")
    }
}
