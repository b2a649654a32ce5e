//! `admd ebpf …`: runs the host's eBPF data plane from the compiler's `ebpf/maps.json`.
//!
//! - `attach` loads and attaches the programs to the mesh's cgroup root, creates each service's
//!   cgroups (`<root>/<service>`, and `<root>/<service>.adm` for its ADM), seeds the maps, pins
//!   what ADMs read, then follows the file: a new plan is seeded live, without detaching. It logs
//!   undeclared calls let through (`--undeclared=allow`) and detaches everything on exit.
//! - `exec` starts a service's process inside its cgroup.
//! - `status` prints the data plane's counters.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use adm_artifacts::EbpfMaps;
use adm_ebpf_loader::{adm_cgroup, service_cgroup, DataPlane, Observer, Seed};
use clap::{Args, Subcommand, ValueEnum};

#[derive(Subcommand)]
pub enum Command {
    /// Attach the data plane to the mesh's cgroups and seed it from ebpf/maps.json; runs until
    /// SIGTERM or Ctrl-C, re-seeding live when the file changes (or on SIGHUP)
    #[command(after_help = "Services must run in their cgroup to be steered: start them with `admd ebpf exec \
                           --service NAME -- CMD`, or write their pid to <root>/<service>/cgroup.procs. ADMs \
                           started with `admd --ebpf` move into <root>/<service>.adm themselves.\n\n\
                           Exit status: 0 detached cleanly, 2 bad maps file or the kernel refused the data plane.")]
    Attach(Attach),
    /// Run a command inside a service's cgroup (or, with --adm, its ADM's), so that the data plane
    /// knows and steers its connections
    Exec(Exec),
    /// Print the counters of the running data plane
    Status(Status),
}

#[derive(Args)]
pub struct Attach {
    /// The seeds, as `admc build` writes them (ebpf/maps.json)
    #[arg(long, value_name = "FILE")]
    maps: PathBuf,
    #[command(flatten)]
    root: Root,
    /// Where to pin the maps ADMs read (a bpffs; mounted there when it is not one yet)
    #[arg(long, value_name = "DIR", default_value = admd::kernel::DEFAULT_PIN)]
    pin: PathBuf,
    /// A connect between two services that no declared call joins: refused in the kernel
    /// (`deny`), or let through and logged (`allow`)
    #[arg(long, value_name = "MODE", default_value = "deny")]
    undeclared: Undeclared,
}

#[derive(Args)]
pub struct Exec {
    /// The service whose cgroup the command runs in
    #[arg(long, value_name = "NAME")]
    service: String,
    /// Run in the service's ADM cgroup instead (identified, never steered)
    #[arg(long)]
    adm: bool,
    #[command(flatten)]
    root: Root,
    /// The command and its arguments
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

#[derive(Args)]
pub struct Status {
    /// Where `admd ebpf attach` pinned its maps
    #[arg(long, value_name = "DIR", default_value = admd::kernel::DEFAULT_PIN)]
    pin: PathBuf,
}

#[derive(Args)]
struct Root {
    /// The mesh's cgroups; default: `adm` under the cgroup v2 mount
    #[arg(long, value_name = "DIR")]
    cgroup_root: Option<PathBuf>,
}

impl Root {
    fn path(&self) -> Result<PathBuf, String> {
        self.cgroup_root
            .clone()
            .or_else(admd::kernel::default_cgroup_root)
            .ok_or_else(|| "no cgroup v2 hierarchy is mounted (see /proc/self/mounts)".to_string())
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Undeclared {
    Deny,
    Allow,
}

pub fn main(command: Command) -> ExitCode {
    let result = match command {
        Command::Attach(a) => attach(&a),
        Command::Exec(e) => exec(&e),
        Command::Status(s) => status(&s),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn read_maps(path: &Path) -> Result<EbpfMaps, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let maps: EbpfMaps =
        serde_json::from_str(&text).map_err(|e| format!("`{}` is not an ebpf/maps.json: {e}", path.display()))?;
    if maps.schema_version != adm_artifacts::SCHEMA_VERSION {
        return Err(format!(
            "`{}` has schema_version {}; this admd reads version {}",
            path.display(),
            maps.schema_version,
            adm_artifacts::SCHEMA_VERSION
        ));
    }
    Ok(maps)
}

/// Whether `dir` is on a bpffs.
fn on_bpffs(dir: &Path) -> bool {
    adm_ebpf_loader::mount_points("bpf").iter().any(|m| dir.starts_with(m))
}

/// Makes sure the pin directory's parent is a bpffs, mounting one there when needed.
fn bpffs(pin: &Path) -> Result<(), String> {
    let parent = pin.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("/"));
    if on_bpffs(parent) {
        return Ok(());
    }
    std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    let status = std::process::Command::new("mount")
        .args(["-t", "bpf", "bpf"])
        .arg(parent)
        .status()
        .map_err(|e| format!("{} is not a bpffs and `mount` could not run: {e}", parent.display()))?;
    if !status.success() {
        return Err(format!("{} is not a bpffs and mounting one there failed", parent.display()));
    }
    eprintln!("admd ebpf: mounted a bpffs on {}", parent.display());
    Ok(())
}

/// The seed of `maps` and what it means, in one line.
fn seed(maps: &EbpfMaps, root: &Path, deny: bool) -> Result<(Seed, String), String> {
    let (seed, warnings) = Seed::from_maps(maps, root, deny).map_err(|e| e.to_string())?;
    for w in warnings {
        eprintln!("admd ebpf: warning: {w}");
    }
    let steered = seed.pairs.iter().filter(|p| p.2 != adm_ebpf_loader::Route::Direct).count();
    let summary = format!(
        "{} services, {} calls ({steered} through ADMs, {} direct), undeclared calls {}",
        maps.services.len(),
        seed.pairs.len(),
        seed.pairs.len() - steered,
        if deny { "refused" } else { "let through and logged" }
    );
    Ok((seed, summary))
}

fn attach(a: &Attach) -> Result<(), String> {
    let maps = read_maps(&a.maps)?;
    let root = a.root.path()?;
    let made_root = !root.exists();
    std::fs::create_dir_all(&root).map_err(|e| format!("cannot create the cgroup root {}: {e}", root.display()))?;
    let result = attach_and_follow(a, &root, maps);
    // The service cgroups go when empty (a service still running keeps its own), and the root
    // too when this run made it.
    let mut kept = 0;
    for entry in std::fs::read_dir(&root).into_iter().flatten().filter_map(Result::ok) {
        if entry.path().is_dir() && std::fs::remove_dir(entry.path()).is_err() {
            kept += 1;
        }
    }
    if kept > 0 {
        eprintln!("admd ebpf: {kept} cgroups under {} still hold processes and were left", root.display());
    } else if made_root {
        let _ = std::fs::remove_dir(&root);
    }
    result
}

fn attach_and_follow(a: &Attach, root: &Path, maps: EbpfMaps) -> Result<(), String> {
    let deny = a.undeclared == Undeclared::Deny;
    let (first, summary) = seed(&maps, root, deny)?;
    let mut plane = DataPlane::attach(root).map_err(|e| e.to_string())?;
    plane.seed(&first).map_err(|e| e.to_string())?;
    bpffs(&a.pin)?;
    plane.pin(&a.pin).map_err(|e| e.to_string())?;
    eprintln!("admd ebpf: attached to {}: {summary}; maps pinned under {}", root.display(), a.pin.display());
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| format!("cannot start: {e}"))?;
    rt.block_on(follow(a, root, maps, &mut plane))?;
    drop(plane);
    eprintln!("admd ebpf: detached");
    Ok(())
}

/// Re-seeds on a new plan, logs undeclared calls, until asked to stop.
async fn follow(a: &Attach, root: &Path, mut maps: EbpfMaps, plane: &mut DataPlane) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut seen = modified(&a.maps);
    let mut logged: BTreeMap<(u32, u32), u64> = BTreeMap::new();
    let mut poll = tokio::time::interval(Duration::from_millis(500));
    let deny = a.undeclared == Undeclared::Deny;
    loop {
        let mut reseed = false;
        tokio::select! {
            _ = hangup.recv() => reseed = true,
            _ = poll.tick() => {
                let now = modified(&a.maps);
                if now != seen {
                    seen = now;
                    reseed = true;
                }
                log_undeclared(plane.observer(), &maps, &mut logged);
            }
            _ = terminate.recv() => return Ok(()),
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
        if reseed {
            // A bad or half-written file is refused; the plan in the kernel stays as it was.
            match read_maps(&a.maps).and_then(|m| seed(&m, root, deny).map(|s| (m, s))) {
                Ok((new, (next, summary))) => match plane.seed(&next) {
                    Ok(()) => {
                        maps = new;
                        eprintln!("admd ebpf: new plan seeded: {summary}");
                    }
                    Err(e) => eprintln!("admd ebpf: the new plan could not be seeded completely: {e}"),
                },
                Err(e) => eprintln!("admd ebpf: new plan refused, the old one stays: {e}"),
            }
        }
    }
}

/// One line per undeclared pair whose count grew since the last look.
fn log_undeclared(observer: &Observer, maps: &EbpfMaps, logged: &mut BTreeMap<(u32, u32), u64>) {
    let name = |id: u32| maps.services.iter().find(|s| s.id == id).map_or_else(|| format!("#{id}"), |s| s.name.clone());
    for (from, to, n) in observer.undeclared() {
        let before = logged.insert((from, to), n).unwrap_or(0);
        if n > before {
            eprintln!(
                "admd ebpf: undeclared call {} -> {} let through ({} connects, {n} in all)",
                name(from),
                name(to),
                n - before
            );
        }
    }
}

fn exec(e: &Exec) -> Result<(), String> {
    let root = e.root.path()?;
    let dir = if e.adm { adm_cgroup(&root, &e.service) } else { service_cgroup(&root, &e.service) };
    if !dir.is_dir() {
        return Err(format!(
            "no cgroup {}: is `admd ebpf attach` running with maps that list `{}`?",
            dir.display(),
            e.service
        ));
    }
    std::fs::write(dir.join("cgroup.procs"), std::process::id().to_string())
        .map_err(|err| format!("cannot move into {}: {err}", dir.display()))?;
    let (program, args) = e.command.split_first().ok_or("no command to run")?;
    let err = std::process::Command::new(program).args(args).exec();
    Err(format!("cannot run `{program}`: {err}"))
}

fn status(s: &Status) -> Result<(), String> {
    let observer = Observer::open(&s.pin).map_err(|e| e.to_string())?;
    let c = observer.counters().map_err(|e| e.to_string())?;
    let lines = [
        ("messages redirected in the kernel", c.redirected),
        ("messages through the TCP/IP stack", c.passed),
        ("connects steered to an ADM", c.steered),
        ("connects left direct", c.direct),
        ("connects refused (undeclared)", c.refused),
        ("undeclared connects let through", c.undeclared_allowed),
    ];
    let mut out = std::io::stdout().lock();
    for (what, n) in lines {
        // A reader that stopped early (`| head -2`) is no error.
        if std::io::Write::write_fmt(&mut out, format_args!("{what:<35}{n}\n")).is_err() {
            break;
        }
    }
    Ok(())
}
