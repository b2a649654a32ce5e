//! The files of a program, as the command line names them.
//!
//! This is the only module of the compiler library that touches the file system; every stage after
//! it takes texts, never paths.

use std::collections::BTreeSet;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use adm_syntax::FileId;

/// One source file: the name shown in diagnostics and its text.
#[derive(Clone, Debug)]
pub struct Source {
    pub name: String,
    /// Where it was read from; `None` for standard input.
    pub path: Option<PathBuf>,
    /// Shared with the compiler's database, which holds the same text.
    pub text: Arc<str>,
}

/// All files of one program, indexed by [`FileId`].
#[derive(Clone, Debug, Default)]
pub struct Sources {
    files: Vec<Source>,
}

impl Sources {
    pub fn new() -> Sources {
        Sources::default()
    }

    /// Adds a file from memory.
    pub fn add(&mut self, name: impl Into<String>, text: impl Into<Arc<str>>) -> FileId {
        self.push(Source { name: name.into(), path: None, text: text.into() })
    }

    fn push(&mut self, source: Source) -> FileId {
        let id = FileId(u32::try_from(self.files.len()).unwrap_or(u32::MAX));
        self.files.push(source);
        id
    }

    /// A file of the program, or the prelude (which every program includes).
    pub fn get(&self, id: FileId) -> Option<&Source> {
        if id == crate::db::PRELUDE_FILE {
            return Some(prelude());
        }
        self.files.get(id.0 as usize)
    }

    pub fn name(&self, id: FileId) -> &str {
        self.get(id).map_or("<unknown>", |s| s.name.as_str())
    }

    pub fn text(&self, id: FileId) -> &str {
        self.get(id).map_or("", |s| &*s.text)
    }

    /// The program's files (without the prelude).
    pub fn iter(&self) -> impl Iterator<Item = (FileId, &Source)> {
        self.files.iter().enumerate().map(|(i, s)| (FileId(i as u32), s))
    }

    /// The program's files and the prelude, for rendering labels that point into it.
    pub fn iter_with_prelude(&self) -> impl Iterator<Item = (FileId, &Source)> {
        std::iter::once((crate::db::PRELUDE_FILE, prelude())).chain(self.iter())
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Reads every file the arguments name: a file, a directory (every `*.adm` below it, in
    /// name order, hidden folders skipped) or `-` for standard input. A file named twice is read once.
    pub fn load(args: &[PathBuf]) -> Result<Sources, LoadError> {
        let mut sources = Sources::new();
        let mut seen = BTreeSet::new();
        for arg in args {
            if arg.as_os_str() == "-" {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .map_err(|e| LoadError::new("<stdin>", format!("cannot read standard input: {e}")))?;
                sources.add("<stdin>", text);
                continue;
            }
            let meta = std::fs::metadata(arg).map_err(|e| LoadError::io(arg, &e))?;
            let files = if meta.is_dir() {
                let mut found = Vec::new();
                collect_adm_files(arg, &mut found)?;
                if found.is_empty() {
                    return Err(LoadError::new(arg.display(), "no `.adm` files in this directory"));
                }
                found
            } else {
                vec![arg.clone()]
            };
            for path in files {
                let key = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
                if !seen.insert(key) {
                    continue;
                }
                let bytes = std::fs::read(&path).map_err(|e| LoadError::io(&path, &e))?;
                let text = String::from_utf8(bytes).map_err(|e| {
                    LoadError::new(
                        path.display(),
                        format!("not UTF-8 text (invalid byte at offset {})", e.utf8_error().valid_up_to()),
                    )
                })?;
                sources.push(Source { name: display_name(&path), path: Some(path), text: text.into() });
            }
        }
        Ok(sources)
    }
}

/// The prelude as a source, for diagnostics whose labels point into it.
fn prelude() -> &'static Source {
    static PRELUDE: std::sync::OnceLock<Source> = std::sync::OnceLock::new();
    PRELUDE.get_or_init(|| Source { name: "<prelude>".to_string(), path: None, text: crate::db::PRELUDE.into() })
}

fn display_name(path: &Path) -> String {
    let s = path.display().to_string();
    s.strip_prefix("./").map(str::to_string).unwrap_or(s)
}

fn collect_adm_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let mut entries: Vec<_> =
        std::fs::read_dir(dir).map_err(|e| LoadError::io(dir, &e))?.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        let hidden = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'));
        // Symbolic links to folders are not followed, so a link loop cannot hang the walk.
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        if meta.is_dir() {
            if !hidden {
                collect_adm_files(&path, out)?;
            }
        } else if path.extension().is_some_and(|e| e == "adm") && !hidden {
            out.push(path);
        }
    }
    Ok(())
}

/// A file that could not be read: a one-line message for the user, exit code 2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadError {
    pub path: String,
    pub message: String,
}

impl LoadError {
    fn new(path: impl fmt::Display, message: impl Into<String>) -> LoadError {
        LoadError { path: path.to_string(), message: message.into() }
    }

    fn io(path: &Path, e: &std::io::Error) -> LoadError {
        let message = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            _ => e.to_string(),
        };
        LoadError::new(path.display(), message)
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.path, self.message)
    }
}

impl std::error::Error for LoadError {}
