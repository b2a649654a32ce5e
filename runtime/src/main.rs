//! `admd --config adm/<service>.json`: validates the configuration in full, then serves its
//! listeners and an admin port; SIGHUP reloads, SIGTERM drains and stops.
//! `admd ebpf attach|exec|status`: the eBPF data plane of a host (see `ebpf.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use adm_artifacts::Direction;
use clap::{Parser, Subcommand, ValueEnum};

mod ebpf;

#[derive(Parser)]
#[command(
    name = "admd",
    version,
    about = "The ADM runtime: enforces the policies admc placed on one service",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "Examples:\n  admd --config target/hotel/adm/frontend.json\n  \
                  admd ebpf attach --maps target/hotel/ebpf/maps.json     (as root, once per host)\n  \
                  admd --config target/hotel/adm/frontend.json --ebpf\n  \
                  admd ebpf exec --service frontend -- ./frontend\n\n\
                  Exit status: 0 stopped cleanly, 2 bad configuration, usage or start-up error."
)]
struct Cli {
    /// The ADM's configuration, as `admc build` writes it (adm/<service>.json)
    #[arg(long, value_name = "FILE", required = true)]
    config: Option<PathBuf>,
    /// Where to serve /metrics, /healthz and /ready
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:15020")]
    admin: SocketAddr,
    /// Validate the configuration and exit
    #[arg(long)]
    check: bool,
    /// Worker threads; 1 runs everything on the calling thread (lowest latency on a pinned core);
    /// default: one per CPU
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Identify callers (and steered destinations) through the eBPF data plane that `admd ebpf
    /// attach` runs. `auto` (what `--ebpf` alone means) warns once and falls back to addresses
    /// when it is not there; `require` refuses to start without it
    #[arg(long, value_name = "MODE", num_args = 0..=1, default_value = "off", default_missing_value = "auto")]
    ebpf: EbpfMode,
    /// Where `admd ebpf attach` pinned its maps
    #[arg(long, value_name = "DIR", default_value = admd::kernel::DEFAULT_PIN)]
    bpf_pin: PathBuf,
    /// The mesh's cgroups (`<root>/<service>`); default: `adm` under the cgroup v2 mount
    #[arg(long, value_name = "DIR")]
    cgroup_root: Option<PathBuf>,
    /// Serve every request through hyper's general path. By default plain HTTP/1.1 requests take
    /// a lean path of admd's own (same policies, less CPU); this rules it out, or compares the two
    #[arg(long)]
    hyper_only: bool,
    /// The most of a request body that a `retry` or `mirror` buffers (to send it again), as bytes
    /// or with a unit: 512KB, 4MB. A larger body is refused with 413 (gRPC: RESOURCE_EXHAUSTED)
    #[arg(long, value_name = "SIZE", default_value = "1MB", value_parser = parse_size)]
    max_buffered: usize,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum EbpfMode {
    Off,
    Auto,
    Require,
}

#[derive(Subcommand)]
enum Command {
    /// The eBPF data plane of this host: steering by the plan, in-kernel redirection, identity
    #[command(subcommand)]
    Ebpf(ebpf::Command),
}

/// A size in bytes: `65536`, `64KB`, `1MB`, `1GB` (units of 1024, as in `.adm` sizes).
fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let scale: usize = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        other => return Err(format!("unknown unit `{other}` (B, KB, MB or GB)")),
    };
    let n: usize = digits.parse().map_err(|_| format!("`{text}` is not a size (like 65536, 512KB or 4MB)"))?;
    n.checked_mul(scale).ok_or_else(|| format!("`{text}` is too large"))
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    if let Some(Command::Ebpf(command)) = cli.command.take() {
        return ebpf::main(command);
    }
    let Some(config) = cli.config.clone() else { return ExitCode::from(2) };
    let runtime = match admd::config::load(&config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: invalid configuration `{}`: {e}", config.display());
            return ExitCode::from(2);
        }
    };
    if cli.check {
        return ExitCode::SUCCESS;
    }
    let kernel = match kernel(&cli, &runtime.service) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let builder = match cli.threads {
        Some(1) => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread().worker_threads(n.max(1)).enable_all().build(),
        None => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
    };
    let rt = match builder {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(cli, config, runtime, kernel)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// The data plane as `--ebpf` asks: this ADM moves into its cgroup (`<root>/<service>.adm`,
/// where its own connects are identified but never steered) and opens the pinned maps. Under
/// `auto`, a failure is one warning and addresses identify callers; under `require`, an error.
fn kernel(cli: &Cli, service: &str) -> Result<Option<admd::kernel::Kernel>, String> {
    if cli.ebpf == EbpfMode::Off {
        return Ok(None);
    }
    let attempt = || -> Result<admd::kernel::Kernel, String> {
        let root = cli
            .cgroup_root
            .clone()
            .or_else(admd::kernel::default_cgroup_root)
            .ok_or("no cgroup v2 hierarchy is mounted")?;
        let kernel = admd::kernel::Kernel::open(&cli.bpf_pin, &root).map_err(|e| e.to_string())?;
        let cgroup = adm_ebpf_loader::adm_cgroup(&root, service);
        std::fs::write(cgroup.join("cgroup.procs"), std::process::id().to_string()).map_err(|e| {
            format!(
                "cannot move into {} ({e}); is `{service}` in the maps `admd ebpf attach` seeded?",
                cgroup.display()
            )
        })?;
        Ok(kernel)
    };
    match attempt() {
        Ok(k) => {
            eprintln!("admd: eBPF data plane in use: callers identified by the kernel");
            Ok(Some(k))
        }
        Err(e) if cli.ebpf == EbpfMode::Require => Err(format!("--ebpf=require: {e}")),
        Err(e) => {
            eprintln!("admd: warning: eBPF data plane not used, callers identified by address over plain TCP: {e}");
            Ok(None)
        }
    }
}

async fn run(
    cli: Cli,
    config: PathBuf,
    runtime: admd::config::Runtime,
    kernel: Option<admd::kernel::Kernel>,
) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    let listeners = [(Direction::Ingress, runtime.ingress), (Direction::Egress, runtime.egress)];
    let ctx = admd::proxy::Context::with_kernel(runtime, kernel);
    ctx.lean.store(!cli.hyper_only, std::sync::atomic::Ordering::Relaxed);
    ctx.max_buffered.store(cli.max_buffered, std::sync::atomic::Ordering::Relaxed);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for (direction, addr) in listeners {
        let Some(addr) = addr else { continue };
        let listener =
            tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        eprintln!("admd: {} listener on {addr}", if direction == Direction::Ingress { "ingress" } else { "egress" });
        tasks.push(tokio::spawn(admd::proxy::serve(ctx.clone(), direction, listener, stopped.clone())));
    }
    let admin =
        tokio::net::TcpListener::bind(cli.admin).await.map_err(|e| format!("cannot listen on {}: {e}", cli.admin))?;
    tasks.push(tokio::spawn(admin_server(ctx.clone(), admin, stopped.clone())));
    let mut hangup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let modified = |path: &std::path::Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let mut seen = modified(&config);
    let mut poll = tokio::time::interval(std::time::Duration::from_millis(500));
    eprintln!("admd: ready");
    loop {
        tokio::select! {
            _ = hangup.recv() => reload(&ctx, &config),
            _ = poll.tick() => {
                // A changed file reloads too (editors and config managers replace it).
                let now = modified(&config);
                if now != seen {
                    seen = now;
                    reload(&ctx, &config);
                }
            }
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    eprintln!("admd: draining");
    let _ = stop.send(true);
    // Requests in flight get ten seconds to finish; idle connections close at once.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    for t in tasks {
        if tokio::time::timeout_at(deadline, t).await.is_err() {
            eprintln!("admd: requests still in flight after 10 s are cut off");
            break;
        }
    }
    eprintln!("admd: stopped");
    Ok(())
}

/// Loads the configuration again and swaps it in atomically; a bad one is refused and the old one
/// keeps serving.
fn reload(ctx: &admd::proxy::Context, path: &std::path::Path) {
    match admd::config::load(path) {
        Ok(new) => {
            let same_listeners =
                ctx.current().is_some_and(|old| old.ingress == new.ingress && old.egress == new.egress);
            if !same_listeners {
                eprintln!("admd: reload refused: the listeners changed; restart admd to move them");
            } else {
                ctx.install(new);
                eprintln!("admd: configuration reloaded");
            }
        }
        Err(e) => eprintln!("admd: reload refused, the old configuration keeps serving: {e}"),
    }
}

async fn admin_server(
    ctx: std::sync::Arc<admd::proxy::Context>,
    listener: tokio::net::TcpListener,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let ctx = ctx.clone();
                        async move {
                            let (status, body) = match req.uri().path() {
                                "/metrics" => {
                                    let mut text = ctx.metrics.render(ctx.current().as_deref());
                                    text.push_str("# TYPE admd_idle_upstream_connections gauge\n");
                                    text.push_str(&format!("admd_idle_upstream_connections {}\n", ctx.idle_upstreams()));
                                    if let Some(k) = &ctx.kernel {
                                        text.push_str(&k.render());
                                    }
                                    (http::StatusCode::OK, text)
                                }
                                "/healthz" | "/ready" => (http::StatusCode::OK, "ok\n".to_string()),
                                _ => (http::StatusCode::NOT_FOUND, "not found\n".to_string()),
                            };
                            let mut r = http::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
                            *r.status_mut() = status;
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
                });
            }
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_read_like_adm_sizes() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("512KB"), Ok(512 << 10));
        assert_eq!(parse_size("4MB"), Ok(4 << 20));
        assert_eq!(parse_size("1GB"), Ok(1 << 30));
        assert!(parse_size("4 XB").is_err());
        assert!(parse_size("MB").is_err());
        assert!(parse_size("99999999999999999999GB").is_err());
    }
}
