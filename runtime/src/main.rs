//! `admd --config adm/<service>.json`: validates the configuration in full, then serves its
//! listeners and an admin port; SIGHUP reloads, SIGTERM drains and stops.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use adm_artifacts::Direction;
use clap::Parser;

#[derive(Parser)]
#[command(name = "admd", version, about = "The ADM runtime: enforces the policies admc placed on one service")]
struct Cli {
    /// The ADM's configuration, as `admc build` writes it (adm/<service>.json)
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match admd::config::load(&cli.config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: invalid configuration `{}`: {e}", cli.config.display());
            return ExitCode::from(2);
        }
    };
    if cli.check {
        return ExitCode::SUCCESS;
    }
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
    match rt.block_on(run(cli, runtime)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli, runtime: admd::config::Runtime) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    let listeners = [(Direction::Ingress, runtime.ingress), (Direction::Egress, runtime.egress)];
    let ctx = admd::proxy::Context::new(runtime);
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
    let mut seen = modified(&cli.config);
    let mut poll = tokio::time::interval(std::time::Duration::from_millis(500));
    eprintln!("admd: ready");
    loop {
        tokio::select! {
            _ = hangup.recv() => reload(&ctx, &cli.config),
            _ = poll.tick() => {
                // A changed file reloads too (editors and config managers replace it).
                let now = modified(&cli.config);
                if now != seen {
                    seen = now;
                    reload(&ctx, &cli.config);
                }
            }
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    eprintln!("admd: draining");
    let _ = stop.send(true);
    for t in tasks {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), t).await;
    }
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
            } else if let Ok(mut current) = ctx.runtime.write() {
                *current = std::sync::Arc::new(new);
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
                                "/metrics" => (http::StatusCode::OK, ctx.metrics.render(ctx.current().as_deref())),
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
