//! The server: the workspace's files in a salsa database, the protocol's messages, and the
//! background planner.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use adm_syntax::ast::ItemKind;
use admc::db::{self, Database, Program, SourceText, PRELUDE_FILE};
use admc::sema::names::{DefKind, Namespace};
use crossbeam_channel::{select, unbounded, Receiver, Sender};
use lsp_server::{Connection, ErrorCode, Message, Notification, Request, Response};
use lsp_types::notification::{self as notif, Notification as _};
use lsp_types::request::{self as req, Request as _};
use lsp_types::*;
use salsa::Setter;

use crate::convert::{self, Encoding, Lines};
use crate::ide::{self, Analysis, Context, Occurrence, PlanView, ITEM_KEYWORDS};

/// One file of the workspace's program.
struct Doc {
    uri: Uri,
    path: Option<PathBuf>,
    source: SourceText,
    /// Open in the editor: its text is the buffer's, not the disk's.
    open: bool,
}

/// A plan computed in the background for one generation of the texts.
struct Planned {
    generation: u64,
    view: PlanView,
}

pub struct Server {
    connection: Connection,
    encoding: Encoding,
    db: Database,
    program: Program,
    docs: Vec<Doc>,
    /// Diagnostics last published, per file.
    published: BTreeMap<String, Vec<lsp_types::Diagnostic>>,
    /// Bumped on every change of any text.
    generation: u64,
    plan: Option<Planned>,
    plan_tx: Sender<Planned>,
    plan_rx: Receiver<Planned>,
}

fn params<P: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<P, String> {
    serde_json::from_value(value).map_err(|e| format!("invalid parameters: {e}"))
}

/// Runs the protocol on a connection until `exit`.
pub fn serve(connection: Connection) -> Result<(), String> {
    let (id, init) = connection.initialize_start().map_err(|e| format!("initialize failed: {e}"))?;
    let init: InitializeParams = params(init)?;
    let utf8 = init
        .capabilities
        .general
        .as_ref()
        .and_then(|g| g.position_encodings.as_ref())
        .is_some_and(|e| e.contains(&PositionEncodingKind::UTF8));
    let encoding = if utf8 { Encoding::Utf8 } else { Encoding::Utf16 };
    let capabilities = ServerCapabilities {
        position_encoding: Some(if utf8 { PositionEncodingKind::UTF8 } else { PositionEncodingKind::UTF16 }),
        text_document_sync: Some(TextDocumentSyncCapability::Options(TextDocumentSyncOptions {
            open_close: Some(true),
            change: Some(TextDocumentSyncKind::INCREMENTAL),
            save: Some(TextDocumentSyncSaveOptions::Supported(true)),
            ..TextDocumentSyncOptions::default()
        })),
        hover_provider: Some(HoverProviderCapability::Simple(true)),
        definition_provider: Some(OneOf::Left(true)),
        references_provider: Some(OneOf::Left(true)),
        rename_provider: Some(OneOf::Right(RenameOptions {
            prepare_provider: Some(true),
            work_done_progress_options: Default::default(),
        })),
        completion_provider: Some(CompletionOptions {
            trigger_characters: Some(vec![".".into(), ":".into(), " ".into(), ">".into(), "[".into(), "(".into()]),
            ..CompletionOptions::default()
        }),
        document_symbol_provider: Some(OneOf::Left(true)),
        workspace_symbol_provider: Some(OneOf::Left(true)),
        document_formatting_provider: Some(OneOf::Left(true)),
        inlay_hint_provider: Some(OneOf::Left(true)),
        code_action_provider: Some(CodeActionProviderCapability::Simple(true)),
        ..ServerCapabilities::default()
    };
    let result = serde_json::json!({
        "capabilities": capabilities,
        "serverInfo": { "name": "admc", "version": env!("CARGO_PKG_VERSION") },
    });
    connection.initialize_finish(id, result).map_err(|e| format!("initialize failed: {e}"))?;
    #[allow(deprecated, reason = "root_uri is what most clients still send")]
    let root = init
        .workspace_folders
        .as_ref()
        .and_then(|f| f.first())
        .map(|f| f.uri.clone())
        .or(init.root_uri.clone())
        .and_then(|u| convert::uri_to_path(&u));
    let mut server = Server::new(connection, encoding, root.as_deref());
    server.refresh();
    server.run()
}

impl Server {
    fn new(connection: Connection, encoding: Encoding, root: Option<&Path>) -> Server {
        let db = Database::default();
        let files = match root {
            Some(root) => admc::Sources::load(&[root.to_path_buf()]).unwrap_or_default(),
            None => admc::Sources::new(),
        };
        let program = db.program(std::iter::empty::<(String, String)>());
        let (plan_tx, plan_rx) = unbounded();
        let mut server = Server {
            connection,
            encoding,
            db,
            program,
            docs: Vec::new(),
            published: BTreeMap::new(),
            generation: 0,
            plan: None,
            plan_tx,
            plan_rx,
        };
        for (_, source) in files.iter() {
            if let Some(uri) =
                source.path.as_ref().and_then(|p| std::fs::canonicalize(p).ok()).and_then(|p| convert::path_to_uri(&p))
            {
                server.add_doc(uri, source.path.clone(), source.text.clone(), false);
            }
        }
        server.sync_program();
        server
    }

    fn add_doc(&mut self, uri: Uri, path: Option<PathBuf>, text: Arc<str>, open: bool) -> usize {
        let id = adm_syntax::FileId(self.docs.len() as u32);
        let name = path.as_ref().map_or_else(|| uri.as_str().to_string(), |p| p.display().to_string());
        let source = SourceText::new(&self.db, id, name, text);
        self.docs.push(Doc { uri, path, source, open });
        self.docs.len() - 1
    }

    /// Gives the program the current list of files (the prelude first).
    fn sync_program(&mut self) {
        let prelude = self.program.files(&self.db).first().copied();
        let mut files: Vec<SourceText> = prelude.into_iter().collect();
        files.extend(self.docs.iter().map(|d| d.source));
        self.program.set_files(&mut self.db).to(files);
    }

    fn doc_index(&self, uri: &Uri) -> Option<usize> {
        self.docs.iter().position(|d| d.uri == *uri)
    }

    fn analysis(&self) -> Analysis<'_> {
        Analysis { db: &self.db, program: self.program }
    }

    /// The program position of a document (0 is the prelude).
    fn pos(index: usize) -> u32 {
        index as u32 + 1
    }

    fn lines(&self, index: usize) -> Lines<'_> {
        Lines::new(self.docs[index].source.text(&self.db), self.encoding)
    }

    fn run(&mut self) -> Result<(), String> {
        loop {
            select! {
                recv(self.connection.receiver) -> msg => {
                    let Ok(msg) = msg else { return Ok(()) };
                    match msg {
                        Message::Request(request) => {
                            if self.connection.handle_shutdown(&request).map_err(|e| e.to_string())? {
                                return Ok(());
                            }
                            let id = request.id.clone();
                            let response = match self.request(request) {
                                Ok(value) => Response::new_ok(id, value),
                                Err((code, message)) => Response::new_err(id, code as i32, message),
                            };
                            self.send(Message::Response(response));
                        }
                        Message::Notification(n) => {
                            if n.method == notif::Exit::METHOD {
                                return Ok(());
                            }
                            if let Err(e) = self.notification(n) {
                                self.log(&e);
                            }
                        }
                        Message::Response(_) => {}
                    }
                }
                recv(self.plan_rx) -> planned => {
                    if let Ok(planned) = planned {
                        if planned.generation == self.generation {
                            let generation = planned.generation;
                            self.plan = Some(planned);
                            self.send(Message::Notification(Notification::new(
                                "adm/planned".to_string(),
                                serde_json::json!({ "generation": generation }),
                            )));
                        }
                    }
                }
            }
        }
    }

    fn send(&self, message: Message) {
        // The client is gone when sending fails; the receiver loop then ends.
        let _ = self.connection.sender.send(message);
    }

    fn log(&self, message: &str) {
        let params = LogMessageParams { typ: MessageType::WARNING, message: message.to_string() };
        self.send(Message::Notification(Notification::new(notif::LogMessage::METHOD.to_string(), params)));
    }

    fn notification(&mut self, n: Notification) -> Result<(), String> {
        match n.method.as_str() {
            notif::DidOpenTextDocument::METHOD => {
                let p: DidOpenTextDocumentParams = params(n.params)?;
                match self.doc_index(&p.text_document.uri) {
                    Some(i) => {
                        self.docs[i].open = true;
                        self.docs[i].source.set_text(&mut self.db).to(p.text_document.text.into());
                    }
                    None => {
                        let path = convert::uri_to_path(&p.text_document.uri);
                        self.add_doc(p.text_document.uri, path, p.text_document.text.into(), true);
                        self.sync_program();
                    }
                }
                self.refresh();
            }
            notif::DidChangeTextDocument::METHOD => {
                let p: DidChangeTextDocumentParams = params(n.params)?;
                let Some(i) = self.doc_index(&p.text_document.uri) else {
                    return Err(format!("change of a document that is not open: {}", p.text_document.uri.as_str()));
                };
                let mut text = self.docs[i].source.text(&self.db).to_string();
                for change in p.content_changes {
                    match change.range {
                        Some(range) => {
                            let lines = Lines::new(&text, self.encoding);
                            let (start, end) = (lines.offset(range.start) as usize, lines.offset(range.end) as usize);
                            text.replace_range(start..end.max(start), &change.text);
                        }
                        None => text = change.text,
                    }
                }
                self.docs[i].source.set_text(&mut self.db).to(text.into());
                self.refresh();
            }
            notif::DidCloseTextDocument::METHOD => {
                let p: DidCloseTextDocumentParams = params(n.params)?;
                if let Some(i) = self.doc_index(&p.text_document.uri) {
                    self.docs[i].open = false;
                    // Back to the disk's text; a file that is not on disk leaves the program.
                    match self.docs[i].path.as_ref().and_then(|path| std::fs::read_to_string(path).ok()) {
                        Some(text) => {
                            self.docs[i].source.set_text(&mut self.db).to(text.into());
                        }
                        None => self.remove_doc(i),
                    }
                    self.refresh();
                }
            }
            notif::DidSaveTextDocument::METHOD | notif::Initialized::METHOD | notif::DidChangeConfiguration::METHOD => {
            }
            notif::DidChangeWatchedFiles::METHOD => {
                let p: DidChangeWatchedFilesParams = params(n.params)?;
                for change in p.changes {
                    let i = self.doc_index(&change.uri);
                    match (i, change.typ) {
                        (Some(i), FileChangeType::DELETED) if !self.docs[i].open => self.remove_doc(i),
                        (Some(i), _) if !self.docs[i].open => {
                            if let Some(text) = self.docs[i].path.as_ref().and_then(|p| std::fs::read_to_string(p).ok())
                            {
                                self.docs[i].source.set_text(&mut self.db).to(text.into());
                            }
                        }
                        (None, FileChangeType::CREATED) => {
                            if let Some(path) = convert::uri_to_path(&change.uri) {
                                if let Ok(text) = std::fs::read_to_string(&path) {
                                    self.add_doc(change.uri, Some(path), text.into(), false);
                                    self.sync_program();
                                }
                            }
                        }
                        _ => {}
                    }
                }
                self.refresh();
            }
            _ => {}
        }
        Ok(())
    }

    /// Removes a document; the remaining ones are renumbered (file ids are positions).
    fn remove_doc(&mut self, index: usize) {
        let removed = self.docs.remove(index);
        let texts: Vec<(Uri, Option<PathBuf>, Arc<str>, bool)> =
            self.docs.drain(..).map(|d| (d.uri, d.path, d.source.text(&self.db).clone(), d.open)).collect();
        for (uri, path, text, open) in texts {
            self.add_doc(uri, path, text, open);
        }
        self.sync_program();
        self.publish(&removed.uri, Vec::new());
    }

    /// After any change: new diagnostics for every file whose diagnostics changed, and a plan
    /// in the background.
    fn refresh(&mut self) {
        self.generation += 1;
        let diagnostics = db::program_diagnostics(&self.db, self.program).clone();
        let mut by_file: BTreeMap<usize, Vec<lsp_types::Diagnostic>> = BTreeMap::new();
        for d in &diagnostics {
            let i = d.file.0 as usize;
            if d.file == PRELUDE_FILE || i >= self.docs.len() {
                continue;
            }
            let lines = self.lines(i);
            let locate = |l: &adm_syntax::Label| -> Option<Location> {
                let j = l.file.0 as usize;
                let doc = self.docs.get(j)?;
                Some(Location { uri: doc.uri.clone(), range: self.lines(j).range(l.span) })
            };
            by_file.entry(i).or_default().push(convert::diagnostic(d, &lines, &locate));
        }
        for i in 0..self.docs.len() {
            let list = by_file.remove(&i).unwrap_or_default();
            let uri = self.docs[i].uri.clone();
            if self.published.get(uri.as_str()) != Some(&list) {
                self.publish(&uri, list);
            }
        }
        if !diagnostics.iter().any(|d| d.is_error()) {
            self.start_plan();
        }
    }

    fn publish(&mut self, uri: &Uri, diagnostics: Vec<lsp_types::Diagnostic>) {
        self.published.insert(uri.as_str().to_string(), diagnostics.clone());
        let params = PublishDiagnosticsParams { uri: uri.clone(), diagnostics, version: None };
        self.send(Message::Notification(Notification::new(notif::PublishDiagnostics::METHOD.to_string(), params)));
    }

    /// Plans on a snapshot of the database in another thread. Reading the snapshot is cancelled
    /// by salsa when a text changes; the solve itself works on copied data, and a result for an
    /// older generation is dropped.
    fn start_plan(&self) {
        let snapshot = self.db.clone();
        let program = self.program;
        let generation = self.generation;
        let tx = self.plan_tx.clone();
        std::thread::spawn(move || {
            let inputs = salsa::Cancelled::catch(|| {
                let graph = db::call_graph(&snapshot, program).clone();
                let legal = db::legal_sides(&snapshot, program).clone();
                (graph, legal)
            });
            drop(snapshot);
            let Ok((graph, legal)) = inputs else { return };
            let placement = admc::place::place(&graph, &legal, &admc::place::PlaceOptions::default(), None);
            let mut view = PlanView::default();
            for ((order, i), side) in &placement.sides {
                let Some(unit) = legal.unit((*order, *i)) else { continue };
                let hosts: Vec<String> = admc::place::sites(&graph, unit, *side, false)
                    .iter()
                    .filter_map(|s| graph.service(s.service).map(|d| d.name.to_string()))
                    .collect();
                view.units.insert((*order, *i), format!("{}@{}", side, hosts.join(",")));
            }
            view.adm_services =
                placement.adms.iter().filter_map(|s| graph.service(s.service).map(|d| d.name.to_string())).collect();
            let _ = tx.send(Planned { generation, view });
        });
    }

    fn request(&mut self, r: Request) -> Result<serde_json::Value, (ErrorCode, String)> {
        let invalid = |e: String| (ErrorCode::InvalidParams, e);
        let json = |v: serde_json::Result<serde_json::Value>| v.map_err(|e| (ErrorCode::InternalError, e.to_string()));
        match r.method.as_str() {
            req::HoverRequest::METHOD => {
                let p: HoverParams = params(r.params).map_err(invalid)?;
                json(serde_json::to_value(self.hover(&p.text_document_position_params)))
            }
            req::GotoDefinition::METHOD => {
                let p: GotoDefinitionParams = params(r.params).map_err(invalid)?;
                json(serde_json::to_value(self.definition(&p.text_document_position_params)))
            }
            req::References::METHOD => {
                let p: ReferenceParams = params(r.params).map_err(invalid)?;
                json(serde_json::to_value(self.references(&p.text_document_position, p.context.include_declaration)))
            }
            req::PrepareRenameRequest::METHOD => {
                let p: TextDocumentPositionParams = params(r.params).map_err(invalid)?;
                json(serde_json::to_value(self.prepare_rename(&p)?))
            }
            req::Rename::METHOD => {
                let p: RenameParams = params(r.params).map_err(invalid)?;
                json(serde_json::to_value(self.rename(&p)?))
            }
            req::Completion::METHOD => {
                let p: CompletionParams = params(r.params).map_err(invalid)?;
                json(serde_json::to_value(self.completion(&p.text_document_position)))
            }
            req::DocumentSymbolRequest::METHOD => {
                let p: DocumentSymbolParams = params(r.params).map_err(invalid)?;
                json(serde_json::to_value(self.document_symbols(&p.text_document.uri)))
            }
            req::WorkspaceSymbolRequest::METHOD => {
                let p: WorkspaceSymbolParams = params(r.params).map_err(invalid)?;
                json(serde_json::to_value(self.workspace_symbols(&p.query)))
            }
            req::Formatting::METHOD => {
                let p: DocumentFormattingParams = params(r.params).map_err(invalid)?;
                json(serde_json::to_value(self.format(&p.text_document.uri)))
            }
            req::InlayHintRequest::METHOD => {
                let p: InlayHintParams = params(r.params).map_err(invalid)?;
                json(serde_json::to_value(self.inlay_hints(&p.text_document.uri)))
            }
            req::CodeActionRequest::METHOD => {
                let p: CodeActionParams = params(r.params).map_err(invalid)?;
                json(serde_json::to_value(self.code_actions(&p)))
            }
            other => Err((ErrorCode::MethodNotFound, format!("`{other}` is not supported"))),
        }
    }

    /// (document index, byte offset) of a position.
    fn locate(&self, p: &TextDocumentPositionParams) -> Option<(usize, u32)> {
        let i = self.doc_index(&p.text_document.uri)?;
        Some((i, self.lines(i).offset(p.position)))
    }

    fn location(&self, place: ide::Place) -> Option<Location> {
        let i = (place.file as usize).checked_sub(1)?;
        let doc = self.docs.get(i)?;
        Some(Location { uri: doc.uri.clone(), range: self.lines(i).range(place.span) })
    }

    fn target(&self, p: &TextDocumentPositionParams) -> Option<(usize, Occurrence)> {
        let (i, offset) = self.locate(p)?;
        Some((i, self.analysis().at(Self::pos(i), offset)?))
    }

    fn hover(&self, p: &TextDocumentPositionParams) -> Option<Hover> {
        let (i, target) = self.target(p)?;
        let plan = self.plan.as_ref().map(|p| &p.view);
        let text = self.analysis().hover(&target, plan)?;
        Some(Hover {
            contents: HoverContents::Markup(MarkupContent { kind: MarkupKind::Markdown, value: text }),
            range: Some(self.lines(i).range(target.span)),
        })
    }

    fn definition(&self, p: &TextDocumentPositionParams) -> Option<GotoDefinitionResponse> {
        let (_, target) = self.target(p)?;
        let place = self.analysis().definition(target.ns, &target.name)?;
        Some(GotoDefinitionResponse::Scalar(self.location(place)?))
    }

    fn references(&self, p: &TextDocumentPositionParams, include_declaration: bool) -> Option<Vec<Location>> {
        let (_, target) = self.target(p)?;
        let refs = self.analysis().references(target.ns, &target.name);
        Some(
            refs.into_iter()
                .filter(|(_, def)| include_declaration || !def)
                .filter_map(|(place, _)| self.location(place))
                .collect(),
        )
    }

    fn prepare_rename(
        &self,
        p: &TextDocumentPositionParams,
    ) -> Result<Option<PrepareRenameResponse>, (ErrorCode, String)> {
        let Some((i, target)) = self.target(p) else { return Ok(None) };
        if db::symbols(&self.db, self.program).get(target.ns, &target.name).is_some_and(|s| s.file == 0) {
            return Err((ErrorCode::InvalidRequest, format!("`{}` is built in and cannot be renamed", target.name)));
        }
        Ok(Some(PrepareRenameResponse::Range(self.lines(i).range(target.span))))
    }

    #[allow(clippy::mutable_key_type, reason = "lsp-types keys WorkspaceEdit changes by Uri")]
    fn rename(&self, p: &RenameParams) -> Result<Option<WorkspaceEdit>, (ErrorCode, String)> {
        let Some((_, target)) = self.target(&p.text_document_position) else { return Ok(None) };
        let analysis = self.analysis();
        analysis.check_rename(&target, &p.new_name).map_err(|e| (ErrorCode::InvalidRequest, e))?;
        let mut changes: std::collections::HashMap<Uri, Vec<TextEdit>> = std::collections::HashMap::new();
        for (place, _) in analysis.references(target.ns, &target.name) {
            if let Some(loc) = self.location(place) {
                changes.entry(loc.uri).or_default().push(TextEdit { range: loc.range, new_text: p.new_name.clone() });
            }
        }
        Ok(Some(WorkspaceEdit { changes: Some(changes), ..WorkspaceEdit::default() }))
    }

    fn completion(&self, p: &TextDocumentPositionParams) -> Option<CompletionResponse> {
        let (i, offset) = self.locate(p)?;
        let analysis = self.analysis();
        let pos = Self::pos(i);
        let text = analysis.text(pos)?;
        let item_start = analysis.item_at(pos, offset.saturating_sub(1)).map_or_else(
            || {
                // Between items: from the start of the current line.
                text[..offset as usize].rfind('\n').map_or(0, |n| n as u32 + 1)
            },
            |item| item.span.start,
        );
        let symbols = db::symbols(&self.db, self.program);
        let kinds = db::kind_table(&self.db, self.program);
        let graph = db::call_graph(&self.db, self.program);
        let word = |label: &str, kind: CompletionItemKind, detail: Option<String>| CompletionItem {
            label: label.to_string(),
            kind: Some(kind),
            detail,
            ..CompletionItem::default()
        };
        let services = || {
            symbols
                .names(Namespace::Service)
                .map(|n| {
                    let is_group = symbols.service_like(n) == Some(DefKind::Group);
                    word(
                        n,
                        if is_group { CompletionItemKind::MODULE } else { CompletionItemKind::CLASS },
                        Some(if is_group { "group".into() } else { "service".into() }),
                    )
                })
                .collect::<Vec<_>>()
        };
        let items: Vec<CompletionItem> = match ide::completion_context(text, item_start, offset) {
            Context::ItemStart => ITEM_KEYWORDS.iter().map(|k| word(k, CompletionItemKind::KEYWORD, None)).collect(),
            Context::Kind => kinds
                .iter()
                .filter_map(|(name, k)| {
                    k.as_ref().map(|k| word(name, CompletionItemKind::FUNCTION, Some(k.signature())))
                })
                .collect(),
            Context::Argument(kind) => kinds
                .get(&kind)
                .and_then(Option::as_ref)
                .map(|k| {
                    k.params
                        .iter()
                        .map(|p| CompletionItem {
                            insert_text: Some(format!("{}: ", p.name)),
                            ..word(&p.name, CompletionItemKind::FIELD, Some(p.ty.to_string()))
                        })
                        .collect()
                })
                .unwrap_or_default(),
            Context::ArgumentValue(kind, arg) => {
                let ty = kinds.get(&kind).and_then(Option::as_ref).and_then(|k| k.param(&arg)).map(|p| p.ty.clone());
                match ty {
                    Some(admc::sema::model::Ty::Enum(e)) => db::enums(&self.db, self.program)
                        .get(&e)
                        .map(|vs| {
                            vs.iter().map(|v| word(v, CompletionItemKind::ENUM_MEMBER, Some(e.clone()))).collect()
                        })
                        .unwrap_or_default(),
                    Some(admc::sema::model::Ty::Service | admc::sema::model::Ty::List(_)) => services(),
                    Some(admc::sema::model::Ty::Bool) => {
                        ["true", "false"].iter().map(|w| word(w, CompletionItemKind::VALUE, None)).collect()
                    }
                    _ => Vec::new(),
                }
            }
            Context::Endpoint => {
                let mut items = services();
                items.push(word("*", CompletionItemKind::KEYWORD, Some("any service".into())));
                items.push(word("external", CompletionItemKind::KEYWORD, Some("outside the mesh".into())));
                items
            }
            Context::ServiceName => services(),
            Context::Method(dst) => {
                let mut methods: Vec<adm_syntax::ast::SmolStr> = Vec::new();
                for s in graph.expand(&dst).unwrap_or_default() {
                    for c in graph.incoming.get(&admc::sema::model::Node::Service(s)).into_iter().flatten() {
                        for m in graph.call(*c).and_then(|e| e.methods.as_deref()).unwrap_or_default() {
                            if !methods.contains(m) {
                                methods.push(m.clone());
                            }
                        }
                    }
                }
                methods
                    .iter()
                    .map(|m| word(m, CompletionItemKind::METHOD, Some(format!("a method of `{dst}`"))))
                    .collect()
            }
            Context::Field(what) => {
                let fields: &[&str] = if what == "service" {
                    &["protocol", "port", "external", "replicas", "adm_cost"]
                } else {
                    &["methods", "rate"]
                };
                fields
                    .iter()
                    .map(|f| CompletionItem {
                        insert_text: Some(format!("{f}: ")),
                        ..word(f, CompletionItemKind::FIELD, None)
                    })
                    .collect()
            }
            Context::Type => admc::sema::names::BUILTIN_TYPES
                .iter()
                .map(|t| word(t, CompletionItemKind::TYPE_PARAMETER, None))
                .chain(symbols.names(Namespace::Type).map(|t| word(t, CompletionItemKind::ENUM, None)))
                .collect(),
            Context::Words(words) => words.iter().map(|w| word(w, CompletionItemKind::VALUE, None)).collect(),
            Context::None => Vec::new(),
        };
        Some(CompletionResponse::Array(items))
    }

    fn document_symbols(&self, uri: &Uri) -> Option<DocumentSymbolResponse> {
        let i = self.doc_index(uri)?;
        let file = self.analysis().parse(Self::pos(i))?;
        let lines = self.lines(i);
        #[allow(deprecated, reason = "the `deprecated` field must still be set")]
        let symbols = file
            .items
            .iter()
            .filter_map(|item| {
                let name = item.name()?;
                Some(DocumentSymbol {
                    name: name.text.to_string(),
                    detail: Some(item_detail(&item.kind)),
                    kind: symbol_kind(&item.kind),
                    tags: None,
                    deprecated: None,
                    range: lines.range(item.span),
                    selection_range: lines.range(name.span),
                    children: None,
                })
            })
            .collect();
        Some(DocumentSymbolResponse::Nested(symbols))
    }

    fn workspace_symbols(&self, query: &str) -> Option<WorkspaceSymbolResponse> {
        let query = query.to_lowercase();
        let mut out = Vec::new();
        for (i, _) in self.docs.iter().enumerate() {
            let Some(file) = self.analysis().parse(Self::pos(i)) else { continue };
            let lines = self.lines(i);
            for item in &file.items {
                let Some(name) = item.name() else { continue };
                if !name.text.to_lowercase().contains(&query) {
                    continue;
                }
                #[allow(deprecated, reason = "the `deprecated` field must still be set")]
                out.push(SymbolInformation {
                    name: name.text.to_string(),
                    kind: symbol_kind(&item.kind),
                    tags: None,
                    deprecated: None,
                    location: Location { uri: self.docs[i].uri.clone(), range: lines.range(name.span) },
                    container_name: Some(item_detail(&item.kind)),
                });
            }
        }
        Some(WorkspaceSymbolResponse::Flat(out))
    }

    fn format(&self, uri: &Uri) -> Option<Vec<TextEdit>> {
        let i = self.doc_index(uri)?;
        let text = self.docs[i].source.text(&self.db);
        let formatted = adm_syntax::format::format(text).ok()?;
        if *formatted == **text {
            return Some(Vec::new());
        }
        let lines = self.lines(i);
        Some(vec![TextEdit { range: lines.range(adm_syntax::Span::new(0, text.len())), new_text: formatted }])
    }

    fn inlay_hints(&self, uri: &Uri) -> Option<Vec<InlayHint>> {
        let i = self.doc_index(uri)?;
        let plan = &self.plan.as_ref()?.view;
        let file = self.analysis().parse(Self::pos(i))?;
        let lines = self.lines(i);
        let mut hints = Vec::new();
        for (j, item) in file.items.iter().enumerate() {
            if !matches!(item.kind, ItemKind::Policy(_)) {
                continue;
            }
            let Some(label) = plan.policy_hint((Self::pos(i), j as u32)) else { continue };
            hints.push(InlayHint {
                position: lines.position(item.span.end),
                label: InlayHintLabel::String(label),
                kind: None,
                text_edits: None,
                tooltip: Some(InlayHintTooltip::String("where the last plan runs this policy".to_string())),
                padding_left: Some(true),
                padding_right: None,
                data: None,
            });
        }
        Some(hints)
    }

    #[allow(clippy::mutable_key_type, reason = "lsp-types keys WorkspaceEdit changes by Uri")]
    fn code_actions(&self, p: &CodeActionParams) -> Option<CodeActionResponse> {
        let mut actions = Vec::new();
        for d in &p.context.diagnostics {
            let Some(replacement) = d.data.as_ref().and_then(|v| v.get("replacement")).and_then(|v| v.as_str()) else {
                continue;
            };
            let edit = TextEdit { range: d.range, new_text: replacement.to_string() };
            let mut changes = std::collections::HashMap::new();
            changes.insert(p.text_document.uri.clone(), vec![edit]);
            actions.push(CodeActionOrCommand::CodeAction(CodeAction {
                title: format!("Replace with `{replacement}`"),
                kind: Some(CodeActionKind::QUICKFIX),
                diagnostics: Some(vec![d.clone()]),
                edit: Some(WorkspaceEdit { changes: Some(changes), ..WorkspaceEdit::default() }),
                is_preferred: Some(true),
                ..CodeAction::default()
            }));
        }
        Some(actions)
    }
}

fn symbol_kind(kind: &ItemKind) -> SymbolKind {
    match kind {
        ItemKind::Service(_) => SymbolKind::CLASS,
        ItemKind::Group(_) => SymbolKind::MODULE,
        ItemKind::Kind(_) => SymbolKind::INTERFACE,
        ItemKind::Enum(_) => SymbolKind::ENUM,
        ItemKind::Policy(_) => SymbolKind::FUNCTION,
        ItemKind::App(_) => SymbolKind::NAMESPACE,
        ItemKind::Call(_) | ItemKind::Error => SymbolKind::NULL,
    }
}

fn item_detail(kind: &ItemKind) -> String {
    match kind {
        ItemKind::Service(_) => "service".to_string(),
        ItemKind::Group(_) => "group".to_string(),
        ItemKind::Kind(_) => "kind".to_string(),
        ItemKind::Enum(_) => "enum".to_string(),
        ItemKind::Policy(p) => format!("policy ({})", p.kind.text),
        ItemKind::App(_) => "app".to_string(),
        ItemKind::Call(_) | ItemKind::Error => String::new(),
    }
}
