//! `admc`, the command line of the `.adm` compiler.
//!
//! Exit codes are a stable interface for build pipelines:
//! 0 = clean (warnings allowed), 1 = problems in the input (or warnings under `--deny-warnings`,
//! or files that `fmt --check` would change), 2 = usage or I/O error.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use admc::{render, Sources};
use clap::{Parser, Subcommand, ValueEnum};

const AFTER_HELP: &str = "\
Exit status: 0 clean (warnings allowed), 1 problems in the input, 2 usage or I/O error.

Examples:
  admc check examples/hotel-reservation        every *.adm below the folder, as one program
  admc check --format json policies.adm         machine-readable diagnostics on stdout
  admc fmt --check examples/                    list the files whose layout is not canonical";

#[derive(Parser, Debug)]
#[command(
    name = "admc",
    version,
    about = "Compiler for the .adm service-mesh policy language",
    long_about = "Compiler for the .adm service-mesh policy language.\n\n\
        A program is every .adm file given on the command line (a folder stands for every .adm \
        file below it). admc checks it, formats it, and (in later releases) places each policy on \
        the side of a call that needs the fewest application-defined middleboxes.",
    after_help = AFTER_HELP
)]
struct Cli {
    /// When to colour diagnostics.
    #[arg(long, value_enum, global = true, default_value_t = ColorChoice::Auto)]
    color: ColorChoice,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check a program: parse every file and report every problem found
    #[command(after_help = "\
Every problem is reported, not only the first. Human diagnostics go to stderr; with
`--format json` one JSON document goes to stdout:
  {\"diagnostics\": [{\"code\", \"severity\", \"message\", \"file\", \"start\": {\"line\", \"column\",
  \"offset\"}, \"end\": {…}, \"labels\": [{\"file\", \"start\", \"end\", \"message\"}], \"help\"}],
   \"errors\": N, \"warnings\": N, \"files\": N}
Lines and columns are 1-based; columns count characters. Codes are listed in docs/diagnostics.md.

Exit status: 0 clean (warnings allowed), 1 errors (or warnings with --deny-warnings), 2 usage or I/O error.")]
    Check {
        /// Files, folders (every *.adm below) or `-` for standard input; all form one program
        #[arg(value_name = "FILE|DIR|-", default_value = ".")]
        paths: Vec<PathBuf>,
        /// Output format of the diagnostics
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// Treat warnings as errors (exit 1 when there is any)
        #[arg(long)]
        deny_warnings: bool,
        /// Print nothing on success
        #[arg(short, long)]
        quiet: bool,
        /// Also print each policy's placement units and their legal sides (to stdout)
        #[arg(long)]
        sides: bool,
    },
    /// Format files in the canonical layout, keeping every comment
    #[command(after_help = "\
Files are rewritten in place (only when their layout changes); `-` reads standard input and
prints the result. Files with syntax errors are left untouched and their errors reported.

Exit status: 0 done, 1 syntax errors (or, with --check, files that would change), 2 usage or I/O error.")]
    Fmt {
        /// Files, folders (every *.adm below) or `-` for standard input
        #[arg(value_name = "FILE|DIR|-", required = true)]
        paths: Vec<PathBuf>,
        /// Change nothing; list the files whose layout differs and exit 1 if there is any
        #[arg(long)]
        check: bool,
        /// Print the formatted text to stdout instead of rewriting the files
        #[arg(long, conflicts_with = "check")]
        stdout: bool,
    },
    /// Place every policy: the fewest ADMs, then the least traffic through them
    #[command(after_help = "\
Prints, for each policy, where each of its units runs (side and host services), the ADMs, and the
objective against two baselines: a sidecar at every service, and the static placement of today's
meshes (access control, rate limits and header checks at the receiver; retries, timeouts, circuit
breaking, load balancing and mirroring at the sender). The plan is exact: `optimal` means proven.

Exit status: 0 placed, 1 the program has errors (nothing is placed), 2 usage or I/O error.")]
    Plan {
        #[command(flatten)]
        input: PlanInput,
        /// Output format
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// Write the 0-1 program in CPLEX LP format to this file (`-` for stdout) and stop
        #[arg(long, value_name = "FILE")]
        emit_model: Option<PathBuf>,
    },
    /// Write the plan, each ADM's configuration and the eBPF map seeds into a folder
    #[command(after_help = "\
Writes DIR/plan.json, DIR/adm/<service>.json for every service that hosts an ADM, and
DIR/ebpf/maps.json; the same input gives the same bytes. docs/artifacts.md describes them. A
program with errors (including a policy that can run on no side) writes nothing.

Exit status: 0 written, 1 the program has errors, 2 usage or I/O error.")]
    Build {
        #[command(flatten)]
        input: PlanInput,
        /// The folder to write into (created if missing)
        #[arg(short, long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Explain where a policy runs and why, or why a service hosts an ADM
    #[command(after_help = "\
For a policy: each unit's legal sides, the rule (1-4) behind every excluded side, the side chosen,
and what the other side would have cost. For a service: the units its ADM runs and whether each
could run elsewhere, or why it needs no ADM.

Exit status: 0 explained, 1 the program has errors or NAME is unknown, 2 usage or I/O error.")]
    Explain {
        /// A policy or service name
        name: String,
        #[command(flatten)]
        input: PlanInput,
    },
    /// Run the language server (LSP over standard input and output) for editors
    #[command(after_help = "\
Every *.adm file under the workspace folder the editor opens forms one program; unsaved buffers
override the files on disk. Diagnostics, hover (kind signatures, covered calls, legal sides and
placement), go to definition, references, rename, completion, symbols, formatting, inlay hints
with each policy's placement, and quick fixes for \"did you mean\" errors.

Exit status: 0 when the editor ends the session, 2 on a protocol error.")]
    Lsp,
    /// Print the prelude: the built-in kinds and enums, written in .adm
    #[command(after_help = "\
Every program is checked together with the prelude. A program may declare its own kinds and
enums with the same syntax, under names of its own (or repeat a built-in one exactly).

Exit status: 0.")]
    Prelude,
}

/// What `plan` and `build` read and how they place.
#[derive(clap::Args, Debug)]
struct PlanInput {
    /// Files, folders (every *.adm below) or `-` for standard input; all form one program
    #[arg(value_name = "FILE|DIR|-", default_value = ".")]
    paths: Vec<PathBuf>,
    /// Count ingress and egress ADMs apart (a strict reading of the ADM paper)
    #[arg(long)]
    adm_per_direction: bool,
    /// Stop searching after this many seconds and report the best plan with its optimality gap
    #[arg(long, value_name = "SECONDS")]
    time_limit: Option<f64>,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Format {
    Human,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let color = match cli.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let result = match cli.command {
        Command::Check { paths, format, deny_warnings, quiet, sides } => {
            check(&paths, format, deny_warnings, quiet, sides, color)
        }
        Command::Fmt { paths, check, stdout } => fmt(&paths, check, stdout, color),
        Command::Plan { input, format, emit_model } => plan_command(&input, format, emit_model.as_deref(), color),
        Command::Build { input, out } => build_command(&input, &out, color),
        Command::Explain { name, input } => explain_command(&name, &input, color),
        Command::Lsp => adm_lsp::run_stdio().map(|()| ExitCode::SUCCESS),
        Command::Prelude => {
            print!("{}", admc::db::PRELUDE);
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn load(paths: &[PathBuf]) -> Result<Sources, String> {
    Sources::load(paths).map_err(|e| e.to_string())
}

fn check(
    paths: &[PathBuf],
    format: Format,
    deny_warnings: bool,
    quiet: bool,
    sides: bool,
    color: bool,
) -> Result<ExitCode, String> {
    let sources = load(paths)?;
    let checked = admc::check(&sources);
    if sides && format == Format::Human {
        print!("{}", admc::report::legal_sides(&checked));
    }
    let (errors, warnings) = (checked.errors(), checked.warnings());
    match format {
        Format::Json => {
            let report = render::json(&sources, &checked.diagnostics);
            let mut stdout = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut stdout, &report).map_err(|e| format!("cannot write output: {e}"))?;
            writeln!(stdout).map_err(|e| format!("cannot write output: {e}"))?;
        }
        Format::Human => {
            let mut stderr = std::io::stderr().lock();
            render::human(&sources, &checked.diagnostics, color, &mut stderr)
                .map_err(|e| format!("cannot write diagnostics: {e}"))?;
            if errors + warnings > 0 || !quiet {
                let _ = writeln!(stderr, "{}", summary(sources.len(), errors, warnings));
            }
        }
    }
    let failed = errors > 0 || (deny_warnings && warnings > 0);
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn summary(files: usize, errors: usize, warnings: usize) -> String {
    let files = plural(files, "file");
    match (errors, warnings) {
        (0, 0) => format!("checked {files}: no problems"),
        (0, w) => format!("checked {files}: {}", plural(w, "warning")),
        (e, 0) => format!("checked {files}: {}", plural(e, "error")),
        (e, w) => format!("checked {files}: {}, {}", plural(e, "error"), plural(w, "warning")),
    }
}

fn fmt(paths: &[PathBuf], check: bool, to_stdout: bool, color: bool) -> Result<ExitCode, String> {
    let sources = load(paths)?;
    let mut failed = false;
    let mut differ = Vec::new();
    for (id, source) in sources.iter() {
        let formatted = match adm_syntax::format::format(&source.text) {
            Ok(text) => text,
            Err(mut diagnostics) => {
                // The formatter parses each file alone, as file 0.
                for d in &mut diagnostics {
                    d.file = id;
                    for l in &mut d.labels {
                        l.file = id;
                    }
                }
                let mut stderr = std::io::stderr().lock();
                render::human(&sources, &diagnostics, color, &mut stderr)
                    .map_err(|e| format!("cannot write diagnostics: {e}"))?;
                let _ = writeln!(stderr, "`{}` was not formatted: it has syntax errors", source.name);
                failed = true;
                continue;
            }
        };
        let changed = *formatted != *source.text;
        match (&source.path, check, to_stdout) {
            (_, true, _) => {
                if changed {
                    differ.push(source.name.clone());
                }
            }
            (None, _, _) | (_, _, true) => {
                print!("{formatted}");
            }
            (Some(path), false, false) => {
                if changed {
                    write_atomically(path, &formatted)?;
                }
            }
        }
    }
    if check && !differ.is_empty() {
        for name in &differ {
            println!("{name}");
        }
        eprintln!(
            "{} not in canonical form; run `admc fmt` on {}",
            plural(differ.len(), "file"),
            if differ.len() == 1 { "it" } else { "them" }
        );
        failed = true;
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// Replaces a file's contents so that a crash never leaves it half written.
fn write_atomically(path: &Path, text: &str) -> Result<(), String> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.admc-fmt.{}", std::process::id()));
    let result = std::fs::write(&tmp, text).and_then(|()| {
        if let Ok(meta) = std::fs::metadata(path) {
            std::fs::set_permissions(&tmp, meta.permissions())?;
        }
        std::fs::rename(&tmp, path)
    });
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write `{}`: {e}", path.display())
    })
}

/// Checks the program; on errors, renders them and returns `None` (exit 1).
fn checked_or_report(sources: &Sources, color: bool) -> Result<Option<admc::Checked>, String> {
    let checked = admc::check(sources);
    if checked.diagnostics.is_empty() {
        return Ok(Some(checked));
    }
    let mut stderr = std::io::stderr().lock();
    render::human(sources, &checked.diagnostics, color, &mut stderr)
        .map_err(|e| format!("cannot write diagnostics: {e}"))?;
    if checked.errors() > 0 {
        let _ = writeln!(stderr, "{}; nothing placed", summary(sources.len(), checked.errors(), checked.warnings()));
        return Ok(None);
    }
    Ok(Some(checked))
}

fn place_options(input: &PlanInput) -> Result<admc::place::PlaceOptions, String> {
    let time_limit = match input.time_limit {
        Some(s) if s.is_finite() && s > 0.0 => Some(std::time::Duration::from_secs_f64(s)),
        Some(s) => return Err(format!("--time-limit must be a positive number of seconds, not {s}")),
        None => None,
    };
    Ok(admc::place::PlaceOptions { adm_per_direction: input.adm_per_direction, time_limit, ..Default::default() })
}

/// Places the program, printing a progress line on stderr every second once a solve runs long.
fn plan_with_progress(checked: &admc::Checked, options: &admc::place::PlaceOptions) -> admc::plan::Planned {
    let progress = admc::place::Progress::default();
    let finished = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let started = std::time::Instant::now();
            let mut shown = false;
            while !finished.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(50));
                if started.elapsed().as_millis() / 1000 > u128::from(shown)
                    && !finished.load(std::sync::atomic::Ordering::Relaxed)
                {
                    let (done, total) = progress.snapshot();
                    eprintln!(
                        "admc: placing... {done}/{total} components solved ({:.0} s)",
                        started.elapsed().as_secs_f64()
                    );
                    shown = true;
                }
            }
        });
        let planned = admc::plan::plan(checked, options, Some(&progress));
        finished.store(true, std::sync::atomic::Ordering::Relaxed);
        planned
    })
}

fn plan_command(input: &PlanInput, format: Format, emit_model: Option<&Path>, color: bool) -> Result<ExitCode, String> {
    let options = place_options(input)?;
    let sources = load(&input.paths)?;
    let Some(checked) = checked_or_report(&sources, color)? else { return Ok(ExitCode::from(1)) };
    let planned = plan_with_progress(&checked, &options);
    if let Some(path) = emit_model {
        let lp = planned.placement.model.to_lp();
        if path.as_os_str() == "-" {
            print!("{lp}");
        } else {
            std::fs::write(path, lp).map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    match format {
        Format::Json => {
            let text = serde_json::to_string_pretty(&planned.file).map_err(|e| format!("cannot write output: {e}"))?;
            println!("{text}");
        }
        Format::Human => print!("{}", admc::report::plan_table(&planned.file)),
    }
    Ok(ExitCode::SUCCESS)
}

fn build_command(input: &PlanInput, out: &Path, color: bool) -> Result<ExitCode, String> {
    let options = place_options(input)?;
    let sources = load(&input.paths)?;
    let Some(checked) = checked_or_report(&sources, color)? else { return Ok(ExitCode::from(1)) };
    let planned = plan_with_progress(&checked, &options);
    let files = admc::emit::artifacts(&checked, &planned);
    write_artifacts(out, &files)?;
    let adms = files.iter().filter(|(p, _)| p.starts_with("adm/")).count();
    eprintln!(
        "wrote {} files to `{}`: plan.json, {adms} ADM configuration{}, ebpf/maps.json",
        files.len(),
        out.display(),
        if adms == 1 { "" } else { "s" }
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes the artifacts; ADM configurations of an earlier build that no longer apply are removed,
/// so the folder always describes one plan.
fn write_artifacts(out: &Path, files: &[(String, String)]) -> Result<(), String> {
    for dir in [out.to_path_buf(), out.join("adm"), out.join("ebpf")] {
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
    }
    if let Ok(entries) = std::fs::read_dir(out.join("adm")) {
        for entry in entries.filter_map(Result::ok) {
            let name = format!("adm/{}", entry.file_name().to_string_lossy());
            if name.ends_with(".json") && !files.iter().any(|(p, _)| *p == name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    for (path, text) in files {
        write_atomically(&out.join(path), text)?;
    }
    Ok(())
}

fn explain_command(name: &str, input: &PlanInput, color: bool) -> Result<ExitCode, String> {
    let options = place_options(input)?;
    let sources = load(&input.paths)?;
    let Some(checked) = checked_or_report(&sources, color)? else { return Ok(ExitCode::from(1)) };
    let planned = plan_with_progress(&checked, &options);
    match admc::explain::explain(&checked, &planned, &options, name) {
        Ok(text) => {
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Err(message) => {
            eprintln!("error: {message}");
            Ok(ExitCode::from(1))
        }
    }
}
