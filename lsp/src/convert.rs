//! Conversions between the compiler's byte offsets and spans and the protocol's positions, URIs
//! and diagnostics.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use adm_syntax::{Diagnostic, LineIndex, Severity, Span};
use lsp_types::{DiagnosticRelatedInformation, DiagnosticSeverity, Location, NumberOrString, Position, Range, Uri};

/// How the client counts columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    Utf16,
}

/// A file's text with its line index, for position conversions.
pub struct Lines<'a> {
    pub text: &'a str,
    pub index: LineIndex,
    pub encoding: Encoding,
}

impl<'a> Lines<'a> {
    pub fn new(text: &'a str, encoding: Encoding) -> Lines<'a> {
        Lines { text, index: LineIndex::new(text), encoding }
    }

    pub fn position(&self, offset: u32) -> Position {
        let offset = offset.min(self.text.len() as u32);
        let line = self.index.line_of(offset);
        let start = self.index.line_start(line) as usize;
        let mut end = offset as usize;
        while end > start && !self.text.is_char_boundary(end) {
            end -= 1;
        }
        let prefix = &self.text[start..end];
        let character = match self.encoding {
            Encoding::Utf8 => prefix.len(),
            Encoding::Utf16 => prefix.encode_utf16().count(),
        };
        Position { line: line as u32, character: character as u32 }
    }

    pub fn range(&self, span: Span) -> Range {
        Range { start: self.position(span.start), end: self.position(span.end) }
    }

    /// The byte offset of a position; past the end of a line it is the line's end.
    pub fn offset(&self, p: Position) -> u32 {
        let line = p.line as usize;
        if line >= self.index.line_count() {
            return self.text.len() as u32;
        }
        let start = self.index.line_start(line) as usize;
        let line_text = self.text[start..].split_inclusive('\n').next().unwrap_or("");
        let line_text = line_text.strip_suffix('\n').unwrap_or(line_text);
        let mut units = 0u32;
        for (i, c) in line_text.char_indices() {
            if units >= p.character {
                return (start + i) as u32;
            }
            units += match self.encoding {
                Encoding::Utf8 => c.len_utf8() as u32,
                Encoding::Utf16 => c.len_utf16() as u32,
            };
        }
        (start + line_text.len()) as u32
    }
}

/// `file:///a%20b/c.adm` → `/a b/c.adm`.
pub fn uri_to_path(uri: &Uri) -> Option<PathBuf> {
    let s = uri.as_str();
    let rest = s.strip_prefix("file://")?;
    let bytes = rest.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let path = String::from_utf8(out).ok()?;
    Some(PathBuf::from(path))
}

/// `/a b/c.adm` → `file:///a%20b/c.adm`.
pub fn path_to_uri(path: &Path) -> Option<Uri> {
    let mut s = String::from("file://");
    for b in path.to_string_lossy().bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    Uri::from_str(&s).ok()
}

/// A compiler diagnostic as the protocol's, with related information for its labels (whose
/// locations `locate` resolves) and the fix text in `data`.
pub fn diagnostic(
    d: &Diagnostic,
    lines: &Lines<'_>,
    locate: &dyn Fn(&adm_syntax::Label) -> Option<Location>,
) -> lsp_types::Diagnostic {
    let mut message = d.message.clone();
    if let Some(primary) = &d.primary_label {
        message.push_str(&format!("\n{primary}"));
    }
    if let Some(help) = &d.help {
        message.push_str(&format!("\nhelp: {help}"));
    }
    let related: Vec<DiagnosticRelatedInformation> = d
        .labels
        .iter()
        .filter_map(|l| Some(DiagnosticRelatedInformation { location: locate(l)?, message: l.message.clone() }))
        .collect();
    lsp_types::Diagnostic {
        range: lines.range(d.span),
        severity: Some(match d.severity {
            Severity::Error => DiagnosticSeverity::ERROR,
            Severity::Warning => DiagnosticSeverity::WARNING,
        }),
        code: Some(NumberOrString::String(d.code.to_string())),
        source: Some("admc".to_string()),
        message,
        related_information: (!related.is_empty()).then_some(related),
        data: d.replacement.as_ref().map(|r| serde_json::json!({ "replacement": r })),
        ..lsp_types::Diagnostic::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_in_both_encodings() {
        let text = "a 😀 b\nsecond line\n";
        for encoding in [Encoding::Utf8, Encoding::Utf16] {
            let lines = Lines::new(text, encoding);
            for (offset, _) in text.char_indices() {
                let p = lines.position(offset as u32);
                assert_eq!(lines.offset(p), offset as u32, "{encoding:?} {p:?}");
            }
        }
        let utf16 = Lines::new(text, Encoding::Utf16);
        assert_eq!(utf16.position(7).character, 5, "the emoji is two UTF-16 units");
    }

    #[test]
    fn uris_round_trip() {
        let path = Path::new("/tmp/a dir/ü.adm");
        let uri = path_to_uri(path).unwrap();
        assert_eq!(uri.as_str(), "file:///tmp/a%20dir/%C3%BC.adm");
        assert_eq!(uri_to_path(&uri).as_deref(), Some(path));
    }
}
