//! The `.adm` language server (`admc lsp`). Empty shell: it arrives with the LSP issue (#7).
