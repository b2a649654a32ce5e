//! Drives the generated parser over one file.
//!
//! The token stream is split before every item keyword and each chunk is parsed on its own, so a
//! syntax error is contained in its item and the items after it are always parsed. Brackets left
//! open at the end of a chunk are reported once and closed with synthetic tokens, so the item's
//! complete parts still reach the tree (the language server relies on that while a user types).

use lalrpop_util::ParseError;

use crate::ast::{Item, ItemKind, SourceFile};
use crate::diagnostic::{Diagnostic, FileId, Span};
use crate::grammar::ItemParser;
use crate::lexer::{self, starts_item, Comment, Lexer, Tok};

/// The result of parsing one file: always a tree, plus every problem found on the way.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parse {
    pub file: SourceFile,
    /// Every `//` and `///` comment in source order (the formatter and the language server use them).
    pub comments: Vec<Comment>,
    /// Lexical and syntax errors, in source order.
    pub diagnostics: Vec<Diagnostic>,
}

impl Parse {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

type Spanned<'a> = (usize, Tok<'a>, usize);

/// Parses one file. Never fails and never panics: problems come back as diagnostics.
///
/// Tokens stream from the lexer into one item's chunk at a time, so memory holds the tree, not the
/// token stream.
pub fn parse(file: FileId, src: &str) -> Parse {
    let mut lexer = Lexer::new(file, src);
    let parser = ItemParser::new();
    let mut items = Vec::new();
    let mut diagnostics = Vec::new();
    let mut chunk: Vec<Spanned<'_>> = Vec::new();
    let mut tokens = lexer.by_ref().peekable();
    while let Some(tok) = tokens.next() {
        if !chunk.is_empty() && starts_chunk(&tok.1, chunk.last().map(|t| &t.1), tokens.peek().map(|t| &t.1)) {
            items.push(parse_chunk(&parser, file, &mut chunk, Some(&tok), &mut diagnostics));
        }
        chunk.push(tok);
    }
    if !chunk.is_empty() {
        items.push(parse_chunk(&parser, file, &mut chunk, None, &mut diagnostics));
    }
    drop(tokens);
    diagnostics.append(&mut lexer.errors);
    check_single_app(file, &items, &mut diagnostics);
    attach_docs(file, src, &lexer.comments, &mut items, &mut diagnostics);
    diagnostics.sort_by_key(|d| (d.span.start, d.span.end));
    Parse { file: SourceFile { items: tight(items) }, comments: tight(lexer.comments), diagnostics }
}

/// A vector without spare capacity. A file's tree holds hundreds of thousands of short lists
/// (fields, arguments, methods), which grow by doubling from four while they are parsed: without
/// this, about a third of the tree's memory would be capacity nothing uses.
pub(crate) fn tight<T>(mut v: Vec<T>) -> Vec<T> {
    v.shrink_to_fit();
    v
}

/// The parts of a list that parsed (the others are already reported), in a tight vector.
pub(crate) fn parts<T>(v: Vec<Option<T>>) -> Vec<T> {
    tight(v.into_iter().flatten().collect())
}

/// Whether `tok` starts a new item. `service` is also a type (`to: service`, `list<service>`):
/// after `:` or `<` it starts an item only when a name follows. A keyword right after an item
/// keyword stands where the name belongs (`service policy {`): a misused name, not an item.
fn starts_chunk(tok: &Tok<'_>, prev: Option<&Tok<'_>>, next: Option<&Tok<'_>>) -> bool {
    if !starts_item(tok) {
        return false;
    }
    match (tok, prev) {
        (Tok::Service, Some(Tok::Colon | Tok::Lt)) => matches!(next, Some(Tok::Ident(_))),
        (_, Some(prev)) => !starts_item(prev),
        _ => true,
    }
}

/// Parses one item's tokens (and empties `chunk` for the next one).
fn parse_chunk<'a>(
    parser: &ItemParser,
    file: FileId,
    chunk: &mut Vec<Spanned<'a>>,
    next: Option<&Spanned<'a>>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Item {
    let chunk_span = match (chunk.first(), chunk.last()) {
        (Some(first), Some(last)) => Span::new(first.0, last.2),
        _ => Span::default(),
    };
    let unclosed = close_brackets(file, chunk, diagnostics);
    let mut recovered = Vec::new();
    let mut syntax = Vec::new();
    let result = parser.parse(file, &mut recovered, &mut syntax, chunk.drain(..).map(Ok::<_, ()>));
    // Once a bracket is reported unclosed, errors at the end of the item only repeat it.
    let at_end = |d: &Diagnostic| unclosed && d.span.start >= chunk_span.end;
    for e in recovered {
        diagnostics.extend(syntax_error(file, e.error, next).filter(|d| !at_end(d)));
    }
    diagnostics.extend(syntax);
    match result {
        Ok(mut item) => {
            if item.kind == ItemKind::Error {
                item.span = chunk_span;
            }
            item
        }
        Err(e) => {
            diagnostics.extend(syntax_error(file, e, next).filter(|d| !at_end(d)));
            Item::new(ItemKind::Error, chunk_span.start as usize, chunk_span.end as usize)
        }
    }
}

/// Reports brackets still open at the end of an item and appends the closing tokens.
/// Returns whether there were any.
fn close_brackets(file: FileId, chunk: &mut Vec<Spanned<'_>>, diagnostics: &mut Vec<Diagnostic>) -> bool {
    let mut open: Vec<(usize, usize, Tok<'static>)> = Vec::new();
    for (l, tok, r) in chunk.iter() {
        let closer = match tok {
            Tok::LBrace => Some(Tok::RBrace),
            Tok::LParen => Some(Tok::RParen),
            Tok::LBracket => Some(Tok::RBracket),
            _ => None,
        };
        if let Some(closer) = closer {
            open.push((*l, *r, closer));
        } else if open.last().is_some_and(|(_, _, c)| c == tok) {
            open.pop();
        }
    }
    let Some(end) = chunk.last().map(|t| t.2) else { return false };
    let any = !open.is_empty();
    for (l, r, closer) in open.into_iter().rev() {
        let (Some(opener), Some(closer_text)) = (chunk_opener(&closer), closer.fixed_text()) else { continue };
        diagnostics.push(
            Diagnostic::error("E0011", file, Span::new(l, r), format!("unclosed `{opener}`"))
                .with_primary(format!("this `{opener}` is never closed"))
                .with_help(format!("add `{closer_text}` before the next item")),
        );
        chunk.push((end, closer, end));
    }
    any
}

fn chunk_opener(closer: &Tok<'_>) -> Option<&'static str> {
    match closer {
        Tok::RBrace => Some("{"),
        Tok::RParen => Some("("),
        Tok::RBracket => Some("["),
        _ => None,
    }
}

/// Turns a parser error into a diagnostic. Errors at an invalid token were reported by the lexer.
fn syntax_error(
    file: FileId,
    error: ParseError<usize, Tok<'_>, ()>,
    next_item: Option<&Spanned<'_>>,
) -> Option<Diagnostic> {
    let mut from_next_item = false;
    let (span, found, expected) = match error {
        ParseError::UnrecognizedToken { token: (_, Tok::Error, _), .. } => return None,
        ParseError::UnrecognizedToken { token: (l, tok, r), expected } => (Span::new(l, r), tok.describe(), expected),
        // The item ends early: point just after its last token, where something is missing.
        ParseError::UnrecognizedEof { location, expected } => match next_item {
            Some((_, tok, _)) => {
                from_next_item = true;
                (
                    Span::new(location, location),
                    format!("the next item `{}`", tok.describe().trim_matches('`')),
                    expected,
                )
            }
            None => (Span::new(location, location), "end of file".to_string(), expected),
        },
        ParseError::ExtraToken { token: (_, Tok::Error, _) } => return None,
        ParseError::ExtraToken { token: (l, tok, r) } => (Span::new(l, r), tok.describe(), Vec::new()),
        ParseError::InvalidToken { location } => {
            (Span::new(location, location), "an invalid token".to_string(), Vec::new())
        }
        ParseError::User { .. } => return None,
    };
    let expected_text = describe_expected(&expected);
    let message = match &expected_text {
        Some(exp) => format!("expected {exp}, found {found}"),
        None => format!("unexpected {found}"),
    };
    let mut d = Diagnostic::error("E0010", file, span, message);
    if let Some(exp) = &expected_text {
        d = d.with_primary(format!("expected {exp}"));
    }
    if from_next_item {
        d = d.with_help("this item is incomplete: the next item starts before it ends");
    } else if found == "end of file" {
        d = d.with_help("the file ends in the middle of an item");
    } else if expected.iter().any(|e| e == "Ident") && is_keyword(&found) {
        d = d.with_help(format!("{found} is a reserved word and cannot be used as a name"));
    }
    Some(d)
}

fn is_keyword(described: &str) -> bool {
    let word = described.trim_matches('`');
    lexer::KEYWORDS.contains(&word)
}

/// "`,` or `}`", "one of …", or `None` when nothing is expected.
fn describe_expected(expected: &[String]) -> Option<String> {
    const VALUE_STARTS: &[&str] =
        &["Int", "Str", "Duration", "Rate", "Percent", "Size", "\"true\"", "\"false\"", "\"[\""];
    let is_value = VALUE_STARTS.iter().all(|v| expected.iter().any(|e| e == v));
    let mut names: Vec<String> = Vec::new();
    if is_value {
        names.push("a value".to_string());
    }
    for e in expected {
        if is_value && (VALUE_STARTS.contains(&e.as_str()) || e == "Ident" || e == "\"service\"") {
            continue;
        }
        let name = match e.as_str() {
            "Ident" => "a name".to_string(),
            "Int" => "an integer".to_string(),
            "Str" => "a string".to_string(),
            "Duration" => "a duration".to_string(),
            "Rate" => "a rate".to_string(),
            "Percent" => "a percent".to_string(),
            "Size" => "a size".to_string(),
            quoted => format!("`{}`", quoted.trim_matches('"')),
        };
        if !names.contains(&name) {
            names.push(name);
        }
    }
    // Names and values first, then the separator, then closing brackets, then the rest.
    let rank = |n: &String| match n.as_str() {
        "a name" | "a value" => 0,
        "`,`" => 1,
        "`}`" | "`]`" | "`)`" => 2,
        _ => 3,
    };
    names.sort_by_key(rank);
    // `name(` (as in `header("x")`) is rarely what was meant; mention it only when it is the only way on.
    if names.len() > 1 {
        names.retain(|n| n != "`(`");
    }
    match names.len() {
        0 => None,
        1 => names.pop(),
        2 => Some(format!("{} or {}", names[0], names[1])),
        _ => Some(format!("one of {}", names.join(", "))),
    }
}

fn check_single_app(file: FileId, items: &[Item], diagnostics: &mut Vec<Diagnostic>) {
    let mut first: Option<&Item> = None;
    for item in items {
        let ItemKind::App(app) = &item.kind else { continue };
        match first {
            None => first = Some(item),
            Some(prev) => diagnostics.push(
                Diagnostic::error(
                    "E0014",
                    file,
                    app.name.span,
                    format!("second `app` item `{}` in one file", app.name),
                )
                .with_label(file, prev.span, "the file's `app` is declared here")
                .with_help("a file names its mesh at most once; remove one of them"),
            ),
        }
    }
}

/// Gives each item the `///` lines directly above it (only white space between them), and warns
/// about doc comments that document nothing.
fn attach_docs(file: FileId, src: &str, comments: &[Comment], items: &mut [Item], diagnostics: &mut Vec<Diagnostic>) {
    let mut attached = vec![false; comments.len()];
    let mut prev_end = 0usize;
    let mut ci = 0;
    for item in items.iter_mut() {
        let start = item.span.start as usize;
        let mut before = Vec::new();
        while ci < comments.len() && (comments[ci].span.start as usize) < start {
            if comments[ci].span.start as usize >= prev_end {
                before.push(ci);
            }
            ci += 1;
        }
        let mut doc = Vec::new();
        let mut next_start = start;
        for &i in before.iter().rev() {
            let c = &comments[i];
            let between = src.get(c.span.end as usize..next_start).unwrap_or("x");
            if !c.doc || !between.trim().is_empty() {
                break;
            }
            let text = src.get(c.span.range()).unwrap_or("");
            let text = text.strip_prefix("///").unwrap_or(text);
            doc.push(text.strip_prefix(' ').unwrap_or(text).trim_end().to_string());
            attached[i] = true;
            next_start = c.span.start as usize;
        }
        doc.reverse();
        item.doc = doc;
        prev_end = item.span.end as usize;
    }
    for (c, attached) in comments.iter().zip(attached) {
        if c.doc && !attached {
            diagnostics.push(
                Diagnostic::warning("W0001", file, c.span, "doc comment documents no item")
                    .with_primary("nothing to document follows this `///`")
                    .with_help("write `//` for a plain comment, or put the doc comment right above an item"),
            );
        }
    }
}
