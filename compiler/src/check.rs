//! `admc check`: a program checked through the salsa database.

use adm_syntax::{Diagnostic, FileId, Parse};

use crate::db::{self, Database, Program};
use crate::source::Sources;

/// A checked program: the database that holds every stage's results, and all diagnostics
/// (file by file, each in source order).
pub struct Checked {
    pub db: Database,
    pub program: Program,
    pub diagnostics: Vec<Diagnostic>,
}

impl Checked {
    pub fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    pub fn warnings(&self) -> usize {
        self.diagnostics.len() - self.errors()
    }

    /// The syntax tree of a file of the program.
    pub fn parse(&self, file: FileId) -> Option<&Parse> {
        let files = self.program.files(&self.db);
        let source = files.iter().find(|f| f.id(&self.db) == file)?;
        Some(db::parse_file(&self.db, *source))
    }
}

/// Checks all files as one program.
pub fn check(sources: &Sources) -> Checked {
    let db = Database::default();
    let program = db.program(sources.iter().map(|(_, s)| (s.name.as_str(), s.text.clone())));
    let diagnostics = db::program_diagnostics(&db, program).clone();
    Checked { db, program, diagnostics }
}
