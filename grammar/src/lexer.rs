//! The lexer: source text → significant tokens, comments (trivia), and lexical errors.
//!
//! Lexing never fails. A character that starts no token becomes [`Tok::Error`] with its span and a
//! diagnostic, so the parser still sees the rest of the file and recovers at the next field or item.

use logos::Logos;

use crate::ast::{DurationLit, PercentLit, RateLit, SizeLit, SizeUnit, TimeUnit};
use crate::diagnostic::{Diagnostic, FileId, Span};

/// A significant token, as the grammar sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tok<'a> {
    Ident(&'a str),
    Int(u64),
    Str(String),
    Duration(DurationLit),
    Rate(RateLit),
    Percent(PercentLit),
    Size(SizeLit),
    App,
    Service,
    Group,
    Call,
    Kind,
    Enum,
    Policy,
    On,
    At,
    External,
    True,
    False,
    LBrace,
    RBrace,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Colon,
    Eq,
    Arrow,
    Dot,
    Star,
    Lt,
    Gt,
    /// Text that is no token; already reported by the lexer.
    Error,
}

/// Reserved words. They cannot name services, groups, kinds, enums or policies.
pub const KEYWORDS: &[&str] =
    &["app", "service", "group", "call", "kind", "enum", "policy", "on", "at", "external", "true", "false"];

/// Keywords that start an item; the parser splits the token stream before each of them.
pub(crate) fn starts_item(tok: &Tok<'_>) -> bool {
    matches!(tok, Tok::App | Tok::Service | Tok::Group | Tok::Call | Tok::Kind | Tok::Enum | Tok::Policy)
}

impl Tok<'_> {
    /// How the token is named in "expected …" messages and by the formatter's tests.
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Int(n) => format!("`{n}`"),
            Tok::Str(_) => "a string".to_string(),
            Tok::Duration(_) => "a duration".to_string(),
            Tok::Rate(_) => "a rate".to_string(),
            Tok::Percent(_) => "a percent".to_string(),
            Tok::Size(_) => "a size".to_string(),
            Tok::Error => "an invalid token".to_string(),
            other => format!("`{}`", other.fixed_text().unwrap_or("?")),
        }
    }

    /// The text of keywords and punctuation.
    pub fn fixed_text(&self) -> Option<&'static str> {
        Some(match self {
            Tok::App => "app",
            Tok::Service => "service",
            Tok::Group => "group",
            Tok::Call => "call",
            Tok::Kind => "kind",
            Tok::Enum => "enum",
            Tok::Policy => "policy",
            Tok::On => "on",
            Tok::At => "at",
            Tok::External => "external",
            Tok::True => "true",
            Tok::False => "false",
            Tok::LBrace => "{",
            Tok::RBrace => "}",
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::LBracket => "[",
            Tok::RBracket => "]",
            Tok::Comma => ",",
            Tok::Colon => ":",
            Tok::Eq => "=",
            Tok::Arrow => "->",
            Tok::Dot => ".",
            Tok::Star => "*",
            Tok::Lt => "<",
            Tok::Gt => ">",
            _ => return None,
        })
    }
}

#[derive(Logos, Clone, Copy, Debug, PartialEq, Eq)]
#[logos(skip r"[ \t\r\n\f]+")]
enum Raw {
    #[regex(r"//[^\n]*", allow_greedy = true)]
    Comment,
    #[regex(r"[A-Za-z_][A-Za-z0-9_]*(-[A-Za-z0-9_]+)*")]
    Ident,
    /// Any number with an optional unit; classified by [`number`].
    #[regex(r"[0-9]+(\.[0-9]+)?([A-Za-z%]+|/[A-Za-z]+)?")]
    Number,
    #[regex(r#""([^"\\\n]|\\[^\n])*""#)]
    Str,
    #[regex(r#""([^"\\\n]|\\[^\n])*\\?"#)]
    UnterminatedStr,
    #[token("{")]
    LBrace,
    #[token("}")]
    RBrace,
    #[token("(")]
    LParen,
    #[token(")")]
    RParen,
    #[token("[")]
    LBracket,
    #[token("]")]
    RBracket,
    #[token(",")]
    Comma,
    #[token(":")]
    Colon,
    #[token("=")]
    Eq,
    #[token("->")]
    Arrow,
    #[token(".")]
    Dot,
    #[token("*")]
    Star,
    #[token("<")]
    Lt,
    #[token(">")]
    Gt,
}

/// A `//` or `///` comment, kept for the formatter and the language server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Comment {
    pub span: Span,
    /// `///` (but not `////`): documents the next item.
    pub doc: bool,
}

/// Everything the lexer found in one file.
#[derive(Clone, Debug, Default)]
pub struct Lexed<'a> {
    /// Significant tokens with their byte offsets.
    pub tokens: Vec<(usize, Tok<'a>, usize)>,
    pub comments: Vec<Comment>,
    pub errors: Vec<Diagnostic>,
}

/// Lexes one file into a vector. A leading byte-order mark is skipped.
pub fn lex(file: FileId, src: &str) -> Lexed<'_> {
    let mut lexer = Lexer::new(file, src);
    let tokens = lexer.by_ref().collect();
    Lexed { tokens, comments: lexer.comments, errors: lexer.errors }
}

/// The lexer as an iterator of significant tokens, for the parser to consume as it goes: the
/// token stream of a large file is never held in memory whole. Comments and errors accumulate in
/// the public fields.
pub struct Lexer<'a> {
    raw: logos::Lexer<'a, Raw>,
    file: FileId,
    /// An error token not handed out yet, so that a run of bad characters becomes one token.
    pending: Option<(usize, Tok<'a>, usize)>,
    pub comments: Vec<Comment>,
    pub errors: Vec<Diagnostic>,
}

impl<'a> Lexer<'a> {
    pub fn new(file: FileId, src: &'a str) -> Lexer<'a> {
        let mut raw = Raw::lexer(src);
        if src.starts_with('\u{feff}') {
            raw.bump('\u{feff}'.len_utf8());
        }
        Lexer { raw, file, pending: None, comments: Vec::new(), errors: Vec::new() }
    }

    /// The next significant token, with bad characters reported and merged.
    fn next_token(&mut self) -> Option<(usize, Tok<'a>, usize)> {
        let file = self.file;
        loop {
            let result = self.raw.next()?;
            let range = self.raw.span();
            let text = self.raw.slice();
            let span = Span::new(range.start, range.end);
            let tok = match result {
                Ok(Raw::Comment) => {
                    let doc = text.starts_with("///") && !text.starts_with("////");
                    self.comments.push(Comment { span, doc });
                    continue;
                }
                Ok(Raw::Ident) => keyword(text).unwrap_or(Tok::Ident(text)),
                Ok(Raw::Number) => number(text).unwrap_or_else(|err| {
                    self.errors.push(err.into_diagnostic(file, span, text));
                    Tok::Error
                }),
                Ok(Raw::Str) => match unescape(&text[1..text.len() - 1]) {
                    Ok(s) => Tok::Str(s),
                    Err((offset, len, msg)) => {
                        let at = range.start + 1 + offset;
                        self.errors.push(
                            Diagnostic::error("E0003", file, Span::new(at, at + len), msg)
                                .with_help("the escapes are \\\" \\\\ \\n \\r \\t \\0 and \\u{…}"),
                        );
                        Tok::Error
                    }
                },
                Ok(Raw::UnterminatedStr) => {
                    self.errors.push(
                        Diagnostic::error("E0002", file, span, "unterminated string")
                            .with_primary("this string has no closing `\"` on its line")
                            .with_help("strings end on the line they start; write a newline as `\\n`"),
                    );
                    Tok::Error
                }
                Ok(Raw::LBrace) => Tok::LBrace,
                Ok(Raw::RBrace) => Tok::RBrace,
                Ok(Raw::LParen) => Tok::LParen,
                Ok(Raw::RParen) => Tok::RParen,
                Ok(Raw::LBracket) => Tok::LBracket,
                Ok(Raw::RBracket) => Tok::RBracket,
                Ok(Raw::Comma) => Tok::Comma,
                Ok(Raw::Colon) => Tok::Colon,
                Ok(Raw::Eq) => Tok::Eq,
                Ok(Raw::Arrow) => Tok::Arrow,
                Ok(Raw::Dot) => Tok::Dot,
                Ok(Raw::Star) => Tok::Star,
                Ok(Raw::Lt) => Tok::Lt,
                Ok(Raw::Gt) => Tok::Gt,
                Err(()) => {
                    // A run of bad characters is one error token and one diagnostic.
                    if let Some((_, Tok::Error, end)) = &mut self.pending {
                        if *end == range.start && self.errors.last().is_some_and(|d| d.code == "E0001") {
                            *end = range.end;
                            if let Some(d) = self.errors.last_mut() {
                                d.span.end = span.end;
                            }
                            continue;
                        }
                    }
                    self.errors.push(bad_character(file, span, text));
                    Tok::Error
                }
            };
            return Some((range.start, tok, range.end));
        }
    }
}

impl<'a> Iterator for Lexer<'a> {
    type Item = (usize, Tok<'a>, usize);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let Some(tok) = self.next_token() else { return self.pending.take() };
            // Hold bad-character tokens back one step so that the next one can extend them.
            let hold = matches!(tok.1, Tok::Error)
                && self.errors.last().is_some_and(|d| d.code == "E0001" && d.span.start as usize == tok.0);
            let out = self.pending.take();
            if hold {
                self.pending = Some(tok);
                if out.is_some() {
                    return out;
                }
                continue;
            }
            match out {
                Some(prev) => {
                    self.pending = Some(tok);
                    return Some(prev);
                }
                None => return Some(tok),
            }
        }
    }
}

fn bad_character(file: FileId, span: Span, text: &str) -> Diagnostic {
    let shown = text.chars().next().map_or_else(String::new, |c| c.escape_debug().to_string());
    let d = Diagnostic::error("E0001", file, span, format!("unexpected character `{shown}`"));
    if text.starts_with('-') {
        d.with_help("a hyphen may only join two parts of a name, as in `mongodb-rate`; a call arrow is `->`")
    } else if text.starts_with('/') {
        d.with_help("comments start with `//`; a rate is written without spaces, as in `100/s`")
    } else if !text.is_ascii() {
        d.with_help("names are ASCII letters, digits, `_` and inner `-`; other text goes in a string")
    } else {
        d
    }
}

fn keyword(text: &str) -> Option<Tok<'_>> {
    Some(match text {
        "app" => Tok::App,
        "service" => Tok::Service,
        "group" => Tok::Group,
        "call" => Tok::Call,
        "kind" => Tok::Kind,
        "enum" => Tok::Enum,
        "policy" => Tok::Policy,
        "on" => Tok::On,
        "at" => Tok::At,
        "external" => Tok::External,
        "true" => Tok::True,
        "false" => Tok::False,
        _ => return None,
    })
}

/// Why a number literal is invalid.
enum NumberError {
    TooLarge,
    Fraction(&'static str),
    UnknownUnit(String),
}

impl NumberError {
    fn into_diagnostic(self, file: FileId, span: Span, text: &str) -> Diagnostic {
        match self {
            NumberError::TooLarge => Diagnostic::error("E0004", file, span, format!("number `{text}` is too large"))
                .with_help("numbers must fit in 64 bits once converted to the canonical unit (microseconds, bytes)"),
            NumberError::Fraction(what) => {
                Diagnostic::error("E0004", file, span, format!("`{text}` has a fraction, but {what} are whole numbers"))
                    .with_help("only percents take decimals; use a smaller unit, as in `1500ms` for one and a half seconds")
            }
            NumberError::UnknownUnit(unit) => {
                Diagnostic::error("E0004", file, span, format!("unknown unit `{unit}` in `{text}`")).with_help(
                    "durations take `us`, `ms`, `s`, `m`, `h`; rates `/s`, `/m`, `/h`; sizes `B`, `KB`, `MB`, `GB`; percents `%`",
                )
            }
        }
    }
}

fn number(text: &str) -> Result<Tok<'static>, NumberError> {
    let digits_end = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (num, unit) = text.split_at(digits_end);
    let (whole, frac) = match num.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (num, None),
    };
    if unit == "%" {
        let frac = frac.unwrap_or("");
        let decimals = u8::try_from(frac.len()).map_err(|_| NumberError::TooLarge)?;
        let units: u64 = format!("{whole}{frac}").parse().map_err(|_| NumberError::TooLarge)?;
        if decimals > 9 {
            return Err(NumberError::TooLarge);
        }
        return Ok(Tok::Percent(PercentLit { units, decimals }));
    }
    let value: u64 = whole.parse().map_err(|_| NumberError::TooLarge)?;
    let whole_only = |what| if frac.is_some() { Err(NumberError::Fraction(what)) } else { Ok(()) };
    let tok = match unit {
        "" => {
            whole_only("integers")?;
            Tok::Int(value)
        }
        "us" | "ms" | "s" | "m" | "h" => {
            whole_only("durations")?;
            let unit = TimeUnit::from_suffix(unit).ok_or(NumberError::TooLarge)?;
            let lit = DurationLit { value, unit };
            lit.micros().ok_or(NumberError::TooLarge)?;
            Tok::Duration(lit)
        }
        "/s" | "/m" | "/h" => {
            whole_only("rates")?;
            let per = TimeUnit::from_suffix(&unit[1..]).ok_or(NumberError::TooLarge)?;
            Tok::Rate(RateLit { value, per })
        }
        "B" | "KB" | "MB" | "GB" => {
            whole_only("sizes")?;
            let unit = SizeUnit::from_suffix(unit).ok_or(NumberError::TooLarge)?;
            let lit = SizeLit { value, unit };
            lit.bytes().ok_or(NumberError::TooLarge)?;
            Tok::Size(lit)
        }
        other => return Err(NumberError::UnknownUnit(other.to_string())),
    };
    Ok(tok)
}

/// Resolves escapes. On error: (byte offset in `body`, length, message).
fn unescape(body: &str) -> Result<String, (usize, usize, String)> {
    let mut out = String::with_capacity(body.len());
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some((_, e)) = chars.next() else {
            return Err((i, 1, "a string cannot end in a lone `\\`".to_string()));
        };
        match e {
            '"' => out.push('"'),
            '\\' => out.push('\\'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            '0' => out.push('\0'),
            'u' => {
                let rest = &body[i + 2..];
                let close = rest.find('}');
                let hex = match (rest.starts_with('{'), close) {
                    (true, Some(close)) => &rest[1..close],
                    _ => return Err((i, 2, "`\\u` needs braces, as in `\\u{1F600}`".to_string())),
                };
                let len = 2 + hex.len() + 2;
                let ch = u32::from_str_radix(hex, 16).ok().and_then(char::from_u32);
                match ch {
                    Some(ch) if !hex.is_empty() && hex.len() <= 6 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                        out.push(ch)
                    }
                    _ => return Err((i, len, format!("`\\u{{{hex}}}` is not a Unicode scalar value"))),
                }
                for _ in 0..hex.len() + 2 {
                    chars.next();
                }
            }
            other => {
                return Err((i, 1 + other.len_utf8(), format!("unknown escape `\\{}`", other.escape_debug())));
            }
        }
    }
    Ok(out)
}
