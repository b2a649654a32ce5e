//! `admc check`: every file of a program parsed, every problem collected.
//!
//! Today this is the syntax stage; name resolution and type checking join it with the typed
//! semantics issue (#3).

use adm_syntax::{Diagnostic, FileId, Parse};

use crate::source::Sources;

/// A checked program: the parse of every file and all diagnostics, in file then source order.
#[derive(Debug, Default)]
pub struct Checked {
    pub files: Vec<(FileId, Parse)>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Checked {
    pub fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    pub fn warnings(&self) -> usize {
        self.diagnostics.len() - self.errors()
    }
}

/// Checks all files as one program.
pub fn check(sources: &Sources) -> Checked {
    let mut checked = Checked::default();
    for (id, source) in sources.iter() {
        let parse = adm_syntax::parse(id, &source.text);
        checked.diagnostics.extend(parse.diagnostics.iter().cloned());
        checked.files.push((id, parse));
    }
    checked
}
