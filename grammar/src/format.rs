//! The canonical form of `.adm` files (`admc fmt`).
//!
//! The tree is turned into a document of groups (a small Wadler/Prettier-style printer): a group
//! goes on one line when it fits in [`WIDTH`] columns and holds no comment, and otherwise breaks one
//! element per line with a trailing comma. Every comment is kept: a comment that ended a line in the
//! source still ends that line; one that stood on its own line still does, before the element that
//! followed it. A blank line between items (or comments) is kept, several collapse into one.
//!
//! Invariant: `format` is idempotent, and its output parses to the same tree (spans aside).

use crate::ast::*;
use crate::diagnostic::{Diagnostic, FileId};
use crate::lexer::Comment;

/// Maximum line width the formatter aims for.
pub const WIDTH: usize = 100;
const INDENT: usize = 2;

/// Formats a file. Files with syntax errors are not formatted: their diagnostics come back.
pub fn format(src: &str) -> Result<String, Vec<Diagnostic>> {
    let parse = crate::parse(FileId(0), src);
    if parse.has_errors() {
        return Err(parse.diagnostics);
    }
    Ok(format_parsed(src, &parse.file, &parse.comments))
}

/// Formats an already parsed, error-free file.
pub fn format_parsed(src: &str, file: &SourceFile, comments: &[Comment]) -> String {
    let mut f = Formatter { src, comments, next: 0 };
    let doc = f.file(file);
    let mut out = print(&doc);
    while out.ends_with("\n\n") {
        out.pop();
    }
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// The document language.
#[derive(Clone, Debug)]
enum Doc {
    Text(String),
    /// A space on one line, a newline when the enclosing group breaks.
    Line,
    /// Nothing on one line, a newline when the enclosing group breaks.
    SoftLine,
    /// Always a newline; the enclosing groups break.
    HardLine,
    /// First text when broken, second when flat.
    IfBreak(&'static str, &'static str),
    Indent(Vec<Doc>),
    Group(Vec<Doc>),
    /// Text put at the end of the current line (a trailing comment); breaks the enclosing groups.
    LineSuffix(String),
    /// Prints nothing; breaks the enclosing groups.
    BreakParent,
}

fn text(s: impl Into<String>) -> Doc {
    Doc::Text(s.into())
}

struct Formatter<'a> {
    src: &'a str,
    comments: &'a [Comment],
    /// The first comment not printed yet.
    next: usize,
}

impl Formatter<'_> {
    fn comment_text(&self, c: &Comment) -> String {
        self.src.get(c.span.range()).unwrap_or("").trim_end().to_string()
    }

    /// Whether a comment shares its line with code before it.
    fn is_trailing(&self, c: &Comment) -> bool {
        let start = c.span.start as usize;
        let line_start = self.src[..start].rfind('\n').map_or(0, |i| i + 1);
        !self.src[line_start..start].trim().is_empty()
    }

    /// Whether the source has an empty line right before `pos` (white space only).
    fn blank_line_before(&self, pos: u32) -> bool {
        let before = &self.src[..pos as usize];
        let trimmed = before.trim_end_matches([' ', '\t', '\r', '\n']);
        before[trimmed.len()..].matches('\n').count() >= 2
    }

    /// Comments that end the line of the code just printed, up to `limit`.
    fn trailing(&mut self, limit: u32, out: &mut Vec<Doc>) {
        while let Some(c) = self.comments.get(self.next) {
            if c.span.start >= limit || !self.is_trailing(c) {
                break;
            }
            out.push(Doc::LineSuffix(format!(" {}", self.comment_text(c))));
            self.next += 1;
        }
    }

    /// Comments before `limit` not printed yet, each on a line of its own.
    fn leading(&mut self, limit: u32, out: &mut Vec<Doc>) {
        while let Some(c) = self.comments.get(self.next) {
            if c.span.start >= limit {
                break;
            }
            out.push(text(self.comment_text(c)));
            out.push(Doc::HardLine);
            self.next += 1;
        }
    }

    fn file(&mut self, file: &SourceFile) -> Vec<Doc> {
        let mut out = Vec::new();
        let mut first = true;
        for (i, item) in file.items.iter().enumerate() {
            let next_item = file.items.get(i + 1).map_or(u32::MAX, |n| n.span.start);
            // Comments standing between items, with their blank lines.
            while let Some(c) = self.comments.get(self.next) {
                if c.span.start >= item.span.start {
                    break;
                }
                if !first && self.blank_line_before(c.span.start) {
                    out.push(Doc::HardLine);
                }
                out.push(text(self.comment_text(c)));
                out.push(Doc::HardLine);
                self.next += 1;
                first = false;
            }
            if !first && self.blank_line_before(item.span.start) {
                out.push(Doc::HardLine);
            }
            out.push(Doc::Group(self.item(item)));
            self.trailing(next_item, &mut out);
            out.push(Doc::HardLine);
            first = false;
        }
        while let Some(c) = self.comments.get(self.next) {
            if !first && self.blank_line_before(c.span.start) {
                out.push(Doc::HardLine);
            }
            out.push(text(self.comment_text(c)));
            out.push(Doc::HardLine);
            self.next += 1;
            first = false;
        }
        out
    }

    fn item(&mut self, item: &Item) -> Vec<Doc> {
        let end = item.span.end;
        match &item.kind {
            ItemKind::App(app) => vec![text(format!("app {}", app.name))],
            ItemKind::Service(s) => {
                let mut out = vec![text(format!("service {} ", s.name))];
                out.push(self.fields(&s.fields, end));
                out
            }
            ItemKind::Group(g) => {
                let mut out = vec![text(format!("group {} = ", g.name))];
                let starts: Vec<u32> = g.members.iter().map(|m| m.span.start).collect();
                out.push(self.seq("[", "]", &starts, end, false, |_, i| text(g.members[i].text.as_str())));
                out
            }
            ItemKind::Call(c) => {
                let mut out = vec![text(format!("call {} -> {}", c.from, c.to))];
                if let Some(fields) = &c.fields {
                    out.push(text(" "));
                    out.push(self.fields(fields, end));
                }
                out
            }
            ItemKind::Kind(k) => {
                let mut out = vec![text(format!("kind {}", k.name))];
                let starts: Vec<u32> = k.params.iter().map(|p| p.span.start).collect();
                let close = k.properties.as_ref().and_then(|p| p.first()).map_or(end, |f| f.span.start);
                out.push(self.seq("(", ")", &starts, close, false, |f, i| f.param(&k.params[i])));
                if let Some(props) = &k.properties {
                    // A kind's properties are its placement semantics: one per line, always.
                    out.push(text(" "));
                    let block = self.fields(props, end);
                    out.push(match block {
                        Doc::Group(mut parts) if !props.is_empty() => {
                            parts.push(Doc::BreakParent);
                            Doc::Group(parts)
                        }
                        other => other,
                    });
                }
                out
            }
            ItemKind::Enum(e) => {
                let mut out = vec![text(format!("enum {} ", e.name))];
                let starts: Vec<u32> = e.variants.iter().map(|v| v.span.start).collect();
                out.push(self.seq("{", "}", &starts, end, true, |_, i| text(e.variants[i].text.as_str())));
                out
            }
            ItemKind::Policy(p) => self.policy(p, end),
            // Unreachable for error-free files; printing nothing would lose text, so keep the source.
            ItemKind::Error => vec![text(self.src.get(item.span.range()).unwrap_or("").to_string())],
        }
    }

    fn policy(&mut self, p: &Policy, end: u32) -> Vec<Doc> {
        let mut out = vec![text(format!("policy {} = {}", p.name, p.kind))];
        let starts: Vec<u32> = p.args.iter().map(|a| a.span.start).collect();
        let args_end = p.selectors.first().map_or(end, |s| s.span.start);
        out.push(self.seq("(", ")", &starts, args_end.min(p.args_span.end), false, |f, i| f.field(&p.args[i])));
        let first_selector = p.selectors.first().map_or(end, |s| s.span.start);
        let mut rest = Vec::new();
        self.trailing(first_selector, &mut rest);
        rest.push(Doc::Line);
        self.leading(first_selector, &mut rest);
        rest.push(text("on "));
        let mut sels = Vec::new();
        let count = p.selectors.len();
        for (i, s) in p.selectors.iter().enumerate() {
            if i > 0 {
                self.leading(s.span.start, &mut sels);
            }
            sels.push(self.selector(s));
            if i + 1 < count {
                sels.push(text(","));
                let next = p.selectors[i + 1].span.start;
                self.trailing(next, &mut sels);
                sels.push(Doc::Line);
            }
        }
        rest.push(Doc::Group(vec![Doc::Indent(sels)]));
        if let Some(at) = p.at {
            self.trailing(at.span.start, &mut rest);
            rest.push(Doc::Line);
            self.leading(at.span.start, &mut rest);
            rest.push(text(format!("at {}", at.side)));
        }
        out.push(Doc::Indent(rest));
        out
    }

    fn selector(&mut self, s: &Selector) -> Doc {
        let mut parts = vec![text(format!("{} -> {}", s.from, s.to))];
        if let Some(methods) = &s.methods {
            if let [one] = methods.as_slice() {
                parts.push(text(format!(".{one}")));
            } else {
                parts.push(text("."));
                let starts: Vec<u32> = methods.iter().map(|m| m.span.start).collect();
                parts.push(self.seq("{", "}", &starts, s.span.end, false, |_, i| text(methods[i].text.as_str())));
            }
        }
        Doc::Group(parts)
    }

    fn fields(&mut self, fields: &[Field], end: u32) -> Doc {
        let starts: Vec<u32> = fields.iter().map(|f| f.span.start).collect();
        self.seq("{", "}", &starts, end, true, |f, i| f.field(&fields[i]))
    }

    fn field(&mut self, f: &Field) -> Doc {
        Doc::Group(vec![text(format!("{}: ", f.name)), self.value(&f.value)])
    }

    fn param(&mut self, p: &Param) -> Doc {
        let mut parts = vec![text(format!("{}: {}", p.name, p.ty))];
        if let Some(d) = &p.default {
            parts.push(text(" = "));
            parts.push(self.value(d));
        }
        Doc::Group(parts)
    }

    fn value(&mut self, v: &Value) -> Doc {
        match &v.kind {
            ValueKind::Int(n) => text(n.to_string()),
            ValueKind::Str(s) => text(quote(s)),
            ValueKind::Bool(b) => text(b.to_string()),
            ValueKind::Duration(d) => text(d.to_string()),
            ValueKind::Rate(r) => text(r.to_string()),
            ValueKind::Percent(p) => text(p.to_string()),
            ValueKind::Size(s) => text(s.to_string()),
            ValueKind::Name(n) => text(n.clone()),
            ValueKind::List(items) => {
                let starts: Vec<u32> = items.iter().map(|i| i.span.start).collect();
                self.seq("[", "]", &starts, v.span.end, false, |f, i| f.value(&items[i]))
            }
            ValueKind::Apply(app) => {
                let args = &app.args;
                let starts: Vec<u32> = args.iter().map(|i| i.span.start).collect();
                Doc::Group(vec![
                    text(app.name.text.as_str()),
                    self.seq("(", ")", &starts, v.span.end, false, |f, i| f.value(&args[i])),
                ])
            }
            ValueKind::Error => text(self.src.get(v.span.range()).unwrap_or("").to_string()),
        }
    }

    /// `open elem, elem close`: flat `{ a, b }` (with `spaced`) or `[a, b]`; broken one element
    /// per line with a trailing comma. `starts` are where the elements begin in the source, `end`
    /// bounds the comments that belong inside, and `elem` lays out element `i`. Elements are laid out
    /// in order, as comments are taken in source order.
    fn seq(
        &mut self,
        open: &str,
        close: &str,
        starts: &[u32],
        end: u32,
        spaced: bool,
        mut elem: impl FnMut(&mut Self, usize) -> Doc,
    ) -> Doc {
        let mut inner = Vec::new();
        let count = starts.len();
        if count == 0 {
            // Comments inside an empty pair of brackets.
            // A comment on the opening bracket's line stays there; the others go one per line.
            let mut head = Vec::new();
            self.trailing(end, &mut head);
            let mut comments = Vec::new();
            self.leading(end, &mut comments);
            if head.is_empty() && comments.is_empty() {
                return text(format!("{open}{close}"));
            }
            let mut out = vec![text(open)];
            out.extend(head);
            if !comments.is_empty() {
                out.push(Doc::Indent(vec![Doc::HardLine].into_iter().chain(trim_hardline(comments)).collect()));
            }
            out.push(Doc::HardLine);
            out.push(text(close));
            return Doc::Group(out);
        }
        let first_start = starts[0];
        let mut head = Vec::new();
        self.trailing(first_start, &mut head);
        inner.push(if spaced { Doc::Line } else { Doc::SoftLine });
        for (i, &start) in starts.iter().enumerate() {
            self.leading(start, &mut inner);
            let doc = elem(self, i);
            inner.push(doc);
            let next = starts.get(i + 1).copied().unwrap_or(end);
            if i + 1 < count {
                inner.push(text(","));
                self.trailing(next, &mut inner);
                inner.push(Doc::Line);
            } else {
                inner.push(Doc::IfBreak(",", ""));
                self.trailing(end, &mut inner);
                let mut dangling = Vec::new();
                self.leading(end, &mut dangling);
                if !dangling.is_empty() {
                    inner.push(Doc::HardLine);
                    inner.extend(trim_hardline(dangling));
                }
            }
        }
        let mut out = vec![text(open)];
        out.extend(head);
        out.push(Doc::Indent(inner));
        out.push(if spaced { Doc::Line } else { Doc::SoftLine });
        out.push(text(close));
        Doc::Group(out)
    }
}

fn trim_hardline(mut docs: Vec<Doc>) -> Vec<Doc> {
    if matches!(docs.last(), Some(Doc::HardLine)) {
        docs.pop();
    }
    docs
}

/// A string literal that lexes back to `s`.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Flat,
    Break,
}

/// Lays the document out.
fn print(docs: &[Doc]) -> String {
    let mut out = String::new();
    let mut column = 0usize;
    let mut suffix: Vec<String> = Vec::new();
    let mut stack: Vec<(usize, Mode, &Doc)> = docs.iter().rev().map(|d| (0, Mode::Break, d)).collect();
    while let Some((indent, mode, doc)) = stack.pop() {
        match doc {
            Doc::Text(s) => {
                out.push_str(s);
                column += s.chars().count();
            }
            Doc::Line | Doc::SoftLine if mode == Mode::Flat => {
                if matches!(doc, Doc::Line) {
                    out.push(' ');
                    column += 1;
                }
            }
            Doc::Line | Doc::SoftLine | Doc::HardLine => {
                for s in suffix.drain(..) {
                    out.push_str(&s);
                }
                let trimmed = out.trim_end_matches(' ').len();
                out.truncate(trimmed);
                out.push('\n');
                out.push_str(&" ".repeat(indent));
                column = indent;
            }
            Doc::IfBreak(broken, flat) => {
                let s = if mode == Mode::Break { broken } else { flat };
                out.push_str(s);
                column += s.len();
            }
            Doc::Indent(inner) => {
                stack.extend(inner.iter().rev().map(|d| (indent + INDENT, mode, d)));
            }
            Doc::Group(inner) => {
                let mode = if mode == Mode::Flat || fits(inner, WIDTH.saturating_sub(column)) {
                    Mode::Flat
                } else {
                    Mode::Break
                };
                stack.extend(inner.iter().rev().map(|d| (indent, mode, d)));
            }
            Doc::LineSuffix(s) => suffix.push(s.clone()),
            Doc::BreakParent => {}
        }
    }
    for s in suffix.drain(..) {
        out.push_str(&s);
    }
    let trimmed = out.trim_end_matches(' ').len();
    out.truncate(trimmed);
    out
}

/// Whether `docs` printed flat take at most `width` columns and hold no forced line break.
fn fits(docs: &[Doc], width: usize) -> bool {
    let mut remaining = width as isize;
    let mut stack: Vec<&Doc> = docs.iter().rev().collect();
    while let Some(doc) = stack.pop() {
        match doc {
            Doc::Text(s) => remaining -= s.chars().count() as isize,
            Doc::Line => remaining -= 1,
            Doc::SoftLine => {}
            Doc::HardLine | Doc::LineSuffix(_) | Doc::BreakParent => return false,
            Doc::IfBreak(_, flat) => remaining -= flat.len() as isize,
            Doc::Indent(inner) | Doc::Group(inner) => stack.extend(inner.iter().rev()),
        }
        if remaining < 0 {
            return false;
        }
    }
    true
}
