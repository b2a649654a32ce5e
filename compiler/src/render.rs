//! Draws diagnostics for people (ariadne) and for machines (JSON).

use std::io::Write;

use adm_syntax::{Diagnostic, LineIndex, Severity, Span};
use ariadne::{CharSet, Color, Config, IndexType, Label, Report, ReportKind};
use serde::Serialize;

use crate::source::Sources;

/// Draws each diagnostic the way a terminal user reads it: the code, the message, the source lines
/// with the spans underlined and labelled, then the help.
pub fn human(sources: &Sources, diagnostics: &[Diagnostic], color: bool, out: &mut dyn Write) -> std::io::Result<()> {
    let mut cache = ariadne::sources(sources.iter_with_prelude().map(|(_, s)| (s.name.clone(), s.text.clone())));
    for d in diagnostics {
        let name = sources.name(d.file).to_string();
        let (kind, main_color) = match d.severity {
            Severity::Error => (ReportKind::Error, Color::Red),
            Severity::Warning => (ReportKind::Warning, Color::Yellow),
        };
        let primary = visible(sources.text(d.file), d.span);
        // ariadne draws no underline for a label without text.
        let text = d.primary_label.as_deref().unwrap_or("here");
        let label = Label::new((name.clone(), primary.clone())).with_color(main_color).with_order(0).with_message(text);
        let mut report = Report::build(kind, (name.clone(), primary))
            .with_code(d.code)
            .with_message(&d.message)
            .with_config(Config::default().with_color(color).with_index_type(IndexType::Byte).with_char_set(if color {
                CharSet::Unicode
            } else {
                CharSet::Ascii
            }))
            .with_label(label);
        for (i, l) in d.labels.iter().enumerate() {
            let span = visible(sources.text(l.file), l.span);
            report = report.with_label(
                Label::new((sources.name(l.file).to_string(), span))
                    .with_message(&l.message)
                    .with_color(Color::Blue)
                    .with_order(i as i32 + 1),
            );
        }
        if let Some(help) = &d.help {
            report = report.with_help(help);
        }
        report.finish().write(&mut cache, &mut *out)?;
    }
    Ok(())
}

/// A span ariadne can underline: empty spans widen to the next (or, at the end, the last) character.
fn visible(text: &str, span: Span) -> std::ops::Range<usize> {
    let range = span.range();
    if !range.is_empty() {
        return range.start.min(text.len())..range.end.min(text.len());
    }
    let at = range.start.min(text.len());
    if let Some(c) = text[at..].chars().next().filter(|c| *c != '\n') {
        return at..at + c.len_utf8();
    }
    match text[..at].char_indices().next_back() {
        Some((i, c)) if c != '\n' => i..at,
        _ => at..at,
    }
}

/// A position in a file: 1-based line and column (in characters), and the byte offset.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
    pub offset: u32,
}

#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct JsonLabel {
    pub file: String,
    pub start: Position,
    pub end: Position,
    pub message: String,
}

/// One diagnostic as `--format json` prints it. The field names are a stable interface.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct JsonDiagnostic {
    pub code: &'static str,
    pub severity: &'static str,
    pub message: String,
    pub file: String,
    pub start: Position,
    pub end: Position,
    pub labels: Vec<JsonLabel>,
    pub help: Option<String>,
}

/// The whole `--format json` document of `admc check`.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct JsonReport {
    pub diagnostics: Vec<JsonDiagnostic>,
    pub errors: usize,
    pub warnings: usize,
    pub files: usize,
}

/// Converts diagnostics to their JSON form. Line indexes are built once per file.
pub fn json(sources: &Sources, diagnostics: &[Diagnostic]) -> JsonReport {
    let indexes: std::collections::BTreeMap<adm_syntax::FileId, LineIndex> =
        sources.iter_with_prelude().map(|(id, s)| (id, LineIndex::new(&s.text))).collect();
    let position = |file: adm_syntax::FileId, offset: u32| {
        let text = sources.text(file);
        let (line, column) = match indexes.get(&file) {
            Some(index) => index.line_col(text, offset),
            None => (1, 1),
        };
        Position { line, column, offset }
    };
    let converted = diagnostics
        .iter()
        .map(|d| JsonDiagnostic {
            code: d.code,
            severity: d.severity.as_str(),
            message: d.message.clone(),
            file: sources.name(d.file).to_string(),
            start: position(d.file, d.span.start),
            end: position(d.file, d.span.end),
            labels: d
                .labels
                .iter()
                .map(|l| JsonLabel {
                    file: sources.name(l.file).to_string(),
                    start: position(l.file, l.span.start),
                    end: position(l.file, l.span.end),
                    message: l.message.clone(),
                })
                .collect(),
            help: d.help.clone(),
        })
        .collect();
    JsonReport {
        diagnostics: converted,
        errors: diagnostics.iter().filter(|d| d.severity == Severity::Error).count(),
        warnings: diagnostics.iter().filter(|d| d.severity == Severity::Warning).count(),
        files: sources.len(),
    }
}

/// [`human`] into a string, without colour: what snapshot tests and editors show.
pub fn human_plain(sources: &Sources, diagnostics: &[Diagnostic]) -> String {
    let mut buf = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = human(sources, diagnostics, false, &mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}
