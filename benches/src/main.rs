//! `adm-bench`: benchmarks of the toolchain, printed as tables to quote.
//!
//! `adm-bench gen --services N` prints a synthetic program; `adm-bench check` measures the front end
//! on a generated 10,000-service program (lexing+parsing throughput in process, then the whole
//! `admc check` command: wall time and peak memory against the file size).

use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use adm_bench::{generate, MeshShape};

mod relay;

/// Counts live heap bytes, to report the parse's memory apart from the process's.
struct Counting;

static LIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static PEAK: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

// SAFETY: defers to the system allocator and only adds bookkeeping.
#[allow(unsafe_code, reason = "a counting wrapper around the system allocator")]
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        use std::sync::atomic::Ordering::Relaxed;
        let live = LIVE.fetch_add(layout.size(), Relaxed) + layout.size();
        PEAK.fetch_max(live, Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        LIVE.fetch_sub(layout.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "adm-bench", about = "Benchmarks of the .adm toolchain")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print a generated program
    Gen {
        #[arg(long, default_value_t = 10_000)]
        services: usize,
        #[arg(long, default_value_t = 4.0)]
        calls_per_service: f64,
        #[arg(long, default_value_t = 1.0)]
        policies_per_service: f64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Place generated meshes of 200, 2,000 and 20,000 services, and build the hotel example
    Plan {
        /// Sizes to place
        #[arg(long, value_delimiter = ',', default_values_t = [200usize, 2_000, 20_000])]
        sizes: Vec<usize>,
        /// Repetitions of the hotel build; the median is reported
        #[arg(long, default_value_t = 21)]
        runs: usize,
    },
    /// Open-loop HTTP/1.1 load at a fixed request rate: latency from each request's scheduled
    /// start, so a slow server cannot hide its queueing (no coordinated omission)
    Load {
        /// `host:port` of the server (requests are `GET /`)
        addr: std::net::SocketAddr,
        /// Requests per second, spread evenly over the connections
        #[arg(long, default_value_t = 5_000)]
        rate: u64,
        /// Seconds of load (after a one-second warm-up)
        #[arg(long, default_value_t = 5)]
        duration: u64,
        /// Keep-alive connections, one thread each
        #[arg(long, default_value_t = 8)]
        connections: u64,
    },
    /// Echo ping-pong over loopback with and without the eBPF redirect (root; pin with taskset)
    Redirect {
        /// Round trips per message size
        #[arg(long, default_value_t = 50_000)]
        round_trips: usize,
    },
    /// Time the language server from a one-character edit to published diagnostics
    Lsp {
        /// Lines of the generated workspace
        #[arg(long, default_value_t = 10_000)]
        lines: usize,
        /// Files it is split into
        #[arg(long, default_value_t = 20)]
        files: usize,
        #[arg(long, default_value_t = 200)]
        edits: usize,
    },
    /// A proxy that only copies bytes: the floor of what a proxy on the same stack adds
    /// (`benches/proxy/run.sh` runs it beside admd and nginx)
    Relay {
        /// Address to listen on
        listen: std::net::SocketAddr,
        /// Address to relay each connection to
        upstream: std::net::SocketAddr,
        #[arg(long, value_enum, default_value_t = relay::Mode::Tokio)]
        mode: relay::Mode,
    },
    /// Time lexing+parsing and the whole `admc check` of a generated program
    Check {
        #[arg(long, default_value_t = 10_000)]
        services: usize,
        /// Repetitions; the median is reported
        #[arg(long, default_value_t = 7)]
        runs: usize,
        /// The admc binary (default: next to this one; build both with --release)
        #[arg(long)]
        admc: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Cmd::Gen { services, calls_per_service, policies_per_service, seed } => {
            print!("{}", generate(MeshShape { services, calls_per_service, policies_per_service, seed }));
            Ok(())
        }
        Cmd::Load { addr, rate, duration, connections } => load(addr, rate.max(1), duration.max(1), connections.max(1)),
        Cmd::Redirect { round_trips } => redirect(round_trips.max(100)),
        Cmd::Lsp { lines, files, edits } => lsp(lines, files.max(1), edits.max(2)),
        Cmd::Plan { sizes, runs } => plan(&sizes, runs.max(1)),
        Cmd::Relay { listen, upstream, mode } => relay::run(listen, upstream, mode),
        Cmd::Check { services, runs, admc } => check(services, runs.max(1), admc),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn check(services: usize, runs: usize, admc: Option<PathBuf>) -> Result<(), String> {
    let text = generate(MeshShape { services, calls_per_service: 4.0, policies_per_service: 1.0, seed: 1 });
    let mb = text.len() as f64 / 1e6;
    let items = text.lines().filter(|l| !l.is_empty() && !l.starts_with("//")).count();
    println!("program: {services} services, {items} items, {mb:.2} MB");

    let admc = match admc {
        Some(p) => p,
        None => std::env::current_exe().map_err(|e| e.to_string())?.with_file_name("admc"),
    };
    if !admc.exists() {
        return Err(format!("`{}` not found; run `cargo build --release -p admc-cli` first", admc.display()));
    }
    let dir = std::env::temp_dir().join(format!("adm-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let file = dir.join("mesh.adm");
    std::fs::write(&file, &text).map_err(|e| e.to_string())?;
    drop(text);
    let mut walls = Vec::new();
    let mut peak_kb = 0i64;
    for _ in 0..runs {
        let t = Instant::now();
        let status = Command::new(&admc)
            .arg("check")
            .arg("-q")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("cannot run `{}`: {e}", admc.display()))?;
        walls.push(t.elapsed());
        if !status.status.success() {
            return Err(format!("admc check failed: {}", String::from_utf8_lossy(&status.stderr)));
        }
        peak_kb = peak_kb.max(children_max_rss_kb());
    }
    let wall = median(walls);
    let peak_mb = peak_kb as f64 / 1024.0;
    println!("admc check:  {:>8.1} ms  (median of {runs})", wall.as_secs_f64() * 1e3);
    println!("peak RSS:    {:>8.1} MB  ({:.1}x the file)", peak_mb, peak_mb * 1.048_576 / mb);

    // In-process figures come after the child runs: a child's peak RSS counts the parent's pages
    // at spawn time, so the parent stays small until then.
    let text = std::fs::read_to_string(&file).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&dir);
    let mut lex = Vec::new();
    let mut parse = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let lexed = adm_syntax::lexer::lex(adm_syntax::FileId(0), &text);
        lex.push(t.elapsed());
        std::hint::black_box(lexed.tokens.len());
        let t = Instant::now();
        let parsed = adm_syntax::parse(adm_syntax::FileId(0), &text);
        parse.push(t.elapsed());
        if parsed.has_errors() {
            return Err(format!("the generated program has syntax errors: {:?}", parsed.diagnostics.first()));
        }
    }
    let (lex, parse) = (median(lex), median(parse));
    {
        use std::sync::atomic::Ordering::Relaxed;
        let before = LIVE.load(Relaxed);
        PEAK.store(before, Relaxed);
        let parsed = adm_syntax::parse(adm_syntax::FileId(0), &text);
        let (live, peak) = (LIVE.load(Relaxed) - before, PEAK.load(Relaxed) - before);
        std::hint::black_box(&parsed);
        println!(
            "parse heap:  {:>8.1} MB tree, {:.1} MB peak while parsing ({:.1}x the file)",
            live as f64 / 1e6,
            peak as f64 / 1e6,
            peak as f64 / 1e6 / mb
        );
        drop(parsed);
        let before = LIVE.load(Relaxed);
        PEAK.store(before, Relaxed);
        let mut sources = admc::Sources::new();
        sources.add("mesh.adm", text.clone());
        let checked = admc::check(&sources);
        let (live, peak) = (LIVE.load(Relaxed) - before, PEAK.load(Relaxed) - before);
        std::hint::black_box(&checked);
        println!(
            "check heap:  {:>8.1} MB held by the database, {:.1} MB peak ({:.1}x the file)",
            live as f64 / 1e6,
            peak as f64 / 1e6,
            peak as f64 / 1e6 / mb
        );
    }
    println!("lex:         {:>8.1} ms  {:>7.1} MB/s", lex.as_secs_f64() * 1e3, mb / lex.as_secs_f64());
    println!("lex+parse:   {:>8.1} ms  {:>7.1} MB/s", parse.as_secs_f64() * 1e3, mb / parse.as_secs_f64());
    semantic(&text, runs)?;

    Ok(())
}

/// Round-trip times of `n` echoes of `size` bytes over a fresh loopback connection.
fn ping_pong(size: usize, n: usize) -> Result<Vec<Duration>, String> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut buf = vec![0u8; size];
        loop {
            if s.read_exact(&mut buf).is_err() {
                return Ok(());
            }
            s.write_all(&buf)?;
        }
    });
    let mut c = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    c.set_nodelay(true).map_err(|e| e.to_string())?;
    let out = vec![7u8; size];
    let mut back = vec![0u8; size];
    let mut times = Vec::with_capacity(n);
    for i in 0..n + n / 10 {
        let t = Instant::now();
        c.write_all(&out).map_err(|e| e.to_string())?;
        c.read_exact(&mut back).map_err(|e| e.to_string())?;
        // The first tenth warms up.
        if i >= n / 10 {
            times.push(t.elapsed());
        }
    }
    drop(c);
    let _ = server.join();
    times.sort();
    Ok(times)
}

/// One keep-alive connection's share of an open-loop load: requests start on schedule (or at
/// once when behind), and each latency counts from the scheduled start.
fn load_connection(
    addr: std::net::SocketAddr,
    interval: Duration,
    start: Instant,
    warmup: Duration,
    end: Instant,
) -> Result<(Vec<Duration>, u64), String> {
    use std::io::{Read, Write};
    let connect = || -> Result<std::net::TcpStream, String> {
        let c = std::net::TcpStream::connect(addr).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        c.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(c)
    };
    // Wake up on time: the default 50 us timer slack would count as latency.
    // SAFETY: prctl with PR_SET_TIMERSLACK only sets this thread's timer slack.
    #[allow(unsafe_code, reason = "a plain prctl call")]
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1u64);
    }
    let mut c = connect()?;
    let request = format!("GET / HTTP/1.1\r\nhost: {addr}\r\n\r\n");
    let mut buf = vec![0u8; 16 * 1024];
    let mut times = Vec::new();
    let mut errors = 0;
    let mut next = start;
    while next < end {
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        c.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
        // One response: its head, then content-length bytes of body.
        let mut got: Vec<u8> = Vec::new();
        let close;
        let (head_end, length) = loop {
            let k = c.read(&mut buf).map_err(|e| e.to_string())?;
            if k == 0 {
                return Err("the server closed the connection".into());
            }
            got.extend_from_slice(&buf[..k]);
            if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..i]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse::<usize>()))
                    .ok_or("a response without content-length")?
                    .map_err(|e| e.to_string())?;
                if !head.starts_with("http/1.1 200") {
                    errors += 1;
                }
                // Servers end keep-alive connections now and then (nginx: every 1,000 requests).
                close = head.lines().any(|l| l.starts_with("connection:") && l.contains("close"));
                break (i + 4, length);
            }
        };
        while got.len() < head_end + length {
            let k = c.read(&mut buf).map_err(|e| e.to_string())?;
            if k == 0 {
                return Err("the server closed the connection".into());
            }
            got.extend_from_slice(&buf[..k]);
        }
        if next >= start + warmup {
            times.push(next.elapsed());
        }
        if close {
            c = connect()?;
        }
        next += interval;
    }
    Ok((times, errors))
}

/// A fixed request rate over keep-alive connections; prints p50, p99 and the achieved rate.
fn load(addr: std::net::SocketAddr, rate: u64, duration: u64, connections: u64) -> Result<(), String> {
    let interval = Duration::from_secs_f64(connections as f64 / rate as f64);
    let warmup = Duration::from_secs(1);
    let start = Instant::now() + Duration::from_millis(100);
    let end = start + warmup + Duration::from_secs(duration);
    let threads: Vec<_> = (0..connections)
        .map(|i| {
            // Offsets spread the connections' requests evenly over an interval.
            let offset = interval.mul_f64(i as f64 / connections as f64);
            std::thread::spawn(move || load_connection(addr, interval, start + offset, warmup, end))
        })
        .collect();
    let mut times = Vec::new();
    let mut errors = 0;
    for t in threads {
        let (mut part, e) = t.join().map_err(|_| "a load thread panicked")??;
        times.append(&mut part);
        errors += e;
    }
    if times.is_empty() {
        return Err("no request completed".into());
    }
    times.sort();
    let q = |f: f64| times[((times.len() - 1) as f64 * f) as usize].as_secs_f64() * 1e6;
    println!(
        "rate {rate}/s: p50 {:.1} us, p99 {:.1} us, achieved {:.0}/s, {} requests, {errors} not 200",
        q(0.5),
        q(0.99),
        times.len() as f64 / duration as f64,
        times.len()
    );
    Ok(())
}

/// The eBPF redirect against the plain TCP path, side by side in one run.
fn redirect(n: usize) -> Result<(), String> {
    let cgroup = adm_ebpf_loader::TempCgroup::new("adm-bench").map_err(|e| e.to_string())?;
    cgroup.enter(cgroup.path()).map_err(|e| e.to_string())?;
    println!(
        "{:>7} {:>12} {:>12} {:>12} {:>12} {:>9}",
        "size", "tcp p50 us", "tcp p99 us", "bpf p50 us", "bpf p99 us", "speedup"
    );
    for size in [64usize, 1024, 4096, 10 * 1024] {
        let plain = ping_pong(size, n)?;
        let plane = adm_ebpf_loader::DataPlane::attach(cgroup.path()).map_err(|e| e.to_string())?;
        let fast = ping_pong(size, n)?;
        let counters = plane.counters().map_err(|e| e.to_string())?;
        drop(plane);
        if counters.redirected == 0 {
            return Err("nothing was redirected".into());
        }
        let q = |t: &[Duration], f: f64| t[((t.len() - 1) as f64 * f) as usize].as_secs_f64() * 1e6;
        println!(
            "{size:>7} {:>12.1} {:>12.1} {:>12.1} {:>12.1} {:>8.2}x",
            q(&plain, 0.5),
            q(&plain, 0.99),
            q(&fast, 0.5),
            q(&fast, 0.99),
            q(&plain, 0.5) / q(&fast, 0.5)
        );
    }
    // HTTP through admd (a two-step chain): both hops, client -> ADM and ADM -> service, on
    // loopback, plain and then redirected in the kernel.
    let requests = (n / 2).max(100);
    let plain = http_round_trips(requests)?;
    let plane = adm_ebpf_loader::DataPlane::attach(cgroup.path()).map_err(|e| e.to_string())?;
    let fast = http_round_trips(requests)?;
    let counters = plane.counters().map_err(|e| e.to_string())?;
    drop(plane);
    if counters.redirected == 0 {
        return Err("no HTTP message was redirected".into());
    }
    let q = |t: &[Duration], f: f64| t[((t.len() - 1) as f64 * f) as usize].as_secs_f64() * 1e6;
    println!(
        "{:>7} {:>12.1} {:>12.1} {:>12.1} {:>12.1} {:>8.2}x",
        "admd",
        q(&plain, 0.5),
        q(&plain, 0.99),
        q(&fast, 0.5),
        q(&fast, 0.99),
        q(&plain, 0.5) / q(&fast, 0.5)
    );
    println!("(admd: HTTP/1.1 keep-alive requests through an ingress ADM with allow + set_header, {requests} each)");
    Ok(())
}

/// Round trips of a small HTTP/1.1 request through an in-process admd ingress to an upstream, on
/// fresh connections (made after the data plane, if any, was attached).
fn http_round_trips(n: usize) -> Result<Vec<Duration>, String> {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, Ordering};
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let up = upstream.local_addr().map_err(|e| e.to_string())?;
    // A keep-alive upstream for every connection admd opens (its pool and its per-client ones).
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let stop = done.clone();
    let server = std::thread::spawn(move || {
        for stream in upstream.incoming() {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let Ok(mut s) = stream else { continue };
            std::thread::spawn(move || {
                let _ = s.set_nodelay(true);
                let mut buf = vec![0u8; 4096];
                let mut pending = Vec::new();
                loop {
                    let Ok(k) = s.read(&mut buf) else { return };
                    if k == 0 {
                        return;
                    }
                    pending.extend_from_slice(&buf[..k]);
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        pending.drain(..end + 4);
                        if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let adm = listener.local_addr().map_err(|e| e.to_string())?;
    let config = serde_json::json!({
        "schema_version": 1, "service": "svc",
        "listeners": { "ingress": { "address": "127.0.0.1", "port": adm.port() }, "egress": null },
        "upstreams": [{ "service": "svc", "protocol": "http",
            "endpoints": [{ "address": "127.0.0.1", "port": up.port() }] }],
        "peers": [{ "service": "client", "addresses": ["127.0.0.1"] }],
        "routes": [{ "from": "client", "to": "svc", "direction": "ingress", "chains": [{ "methods": null, "chain": [
            { "policy": "acl", "kind": "allow", "unit": "call client -> svc",
              "args": { "from": [{ "service": "client", "members": ["client"] }] } },
            { "policy": "tag", "kind": "set_header", "unit": "call client -> svc",
              "args": { "name": "x-via", "value": "adm" } }] }],
            "forward": { "to": "service", "service": "svc" } }],
    });
    let runtime = admd::config::parse(&config.to_string()).map_err(|e| e.to_string())?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let proxy = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        rt.block_on(async move {
            let _ = listener.set_nonblocking(true);
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
            let ctx = admd::proxy::Context::new(runtime);
            admd::proxy::serve(ctx, adm_artifacts::Direction::Ingress, listener, stopped).await;
        });
    });
    let mut c = std::net::TcpStream::connect(adm).map_err(|e| e.to_string())?;
    c.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut times = Vec::with_capacity(n);
    let mut buf = vec![0u8; 4096];
    for i in 0..n + n / 10 {
        let t = Instant::now();
        c.write_all(b"GET /x HTTP/1.1\r\nhost: svc\r\n\r\n").map_err(|e| e.to_string())?;
        let mut got = Vec::new();
        while !got.ends_with(b"\r\n\r\nok") {
            let k = c.read(&mut buf).map_err(|e| e.to_string())?;
            if k == 0 {
                return Err(format!("admd closed the connection: {}", String::from_utf8_lossy(&got)));
            }
            got.extend_from_slice(&buf[..k]);
        }
        if !got.starts_with(b"HTTP/1.1 200") {
            return Err(format!("admd answered {}", String::from_utf8_lossy(&got)));
        }
        // The first tenth warms up.
        if i >= n / 10 {
            times.push(t.elapsed());
        }
    }
    drop(c);
    let _ = stop.send(true);
    let _ = proxy.join();
    // Wake the acceptor so that it sees it is done.
    done.store(true, Ordering::SeqCst);
    let _ = std::net::TcpStream::connect(up);
    let _ = server.join();
    times.sort();
    Ok(times)
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The language server in process, driven as an editor drives it: open a file of a generated
/// workspace, then type and delete one character again and again, timing each edit until the
/// server publishes the file's new diagnostics.
fn lsp(lines: usize, files: usize, edits: usize) -> Result<(), String> {
    use lsp_server::{Connection, Message, Notification, Request};
    use serde_json::json;
    // About six lines per service in the generated programs.
    let services = (lines / 6).max(10);
    let text = generate(MeshShape { services, calls_per_service: 4.0, policies_per_service: 1.0, seed: 3 });
    let parts = adm_bench::split(&text, files);
    let root = std::env::temp_dir().join(format!("adm-bench-lsp-{}", std::process::id()));
    std::fs::create_dir_all(&root).map_err(|e| e.to_string())?;
    let total_lines: usize = parts.iter().map(|(_, t)| t.lines().count()).sum();
    for (name, part) in &parts {
        std::fs::write(root.join(name), part).map_err(|e| e.to_string())?;
    }
    let root = std::fs::canonicalize(&root).map_err(|e| e.to_string())?;
    let uri = |p: &std::path::Path| adm_lsp::uri(p).map(|u| u.as_str().to_string()).unwrap_or_default();
    let before = rss_kb();
    let (server_end, client) = Connection::memory();
    let server = std::thread::spawn(move || adm_lsp::serve(server_end));
    let send = |m: Message| client.sender.send(m).map_err(|e| e.to_string());
    let recv = || client.receiver.recv_timeout(Duration::from_secs(60)).map_err(|e| format!("the server stopped: {e}"));
    send(Message::Request(Request::new(
        1.into(),
        "initialize".into(),
        json!({ "capabilities": {}, "rootUri": uri(&root) }),
    )))?;
    loop {
        if let Message::Response(_) = recv()? {
            break;
        }
    }
    send(Message::Notification(Notification::new("initialized".into(), json!({}))))?;
    // The file to edit: the last one, where the policies are.
    let (name, original) = parts.last().cloned().ok_or("no files")?;
    let file_uri = uri(&root.join(&name));
    let opened = Instant::now();
    send(Message::Notification(Notification::new(
        "textDocument/didOpen".into(),
        json!({ "textDocument": { "uri": file_uri, "languageId": "adm", "version": 1, "text": original } }),
    )))?;
    // Wait until the server has published for every file once.
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < parts.len() {
        if let Message::Notification(n) = recv()? {
            if n.method == "textDocument/publishDiagnostics" {
                seen.insert(n.params["uri"].as_str().unwrap_or_default().to_string());
            }
        }
    }
    let ready = opened.elapsed();
    let after_open = rss_kb();
    // Edits at a policy's argument: a stray character (a syntax error), then its removal.
    let line = original.lines().position(|l| l.starts_with("policy ")).ok_or("no policy to edit")? as u32;
    let col = original.lines().nth(line as usize).and_then(|l| l.find('(')).ok_or("no arguments")? as u32 + 1;
    let mut times = Vec::with_capacity(edits);
    for i in 0..edits {
        let version = i as i64 + 2;
        let change = if i % 2 == 0 {
            json!({ "range": { "start": { "line": line, "character": col }, "end": { "line": line, "character": col } }, "text": "$" })
        } else {
            json!({ "range": { "start": { "line": line, "character": col }, "end": { "line": line, "character": col + 1 } }, "text": "" })
        };
        let t = Instant::now();
        send(Message::Notification(Notification::new(
            "textDocument/didChange".into(),
            json!({ "textDocument": { "uri": file_uri, "version": version }, "contentChanges": [change] }),
        )))?;
        loop {
            if let Message::Notification(n) = recv()? {
                if n.method == "textDocument/publishDiagnostics" && n.params["uri"] == file_uri {
                    break;
                }
            }
        }
        times.push(t.elapsed());
    }
    send(Message::Request(Request::new(2.into(), "shutdown".into(), json!(null))))?;
    send(Message::Notification(Notification::new("exit".into(), json!(null))))?;
    let _ = server.join();
    let _ = std::fs::remove_dir_all(&root);
    times.sort();
    let p = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
    println!("workspace: {total_lines} lines in {} files ({services} services)", parts.len());
    println!("open to first diagnostics of every file: {:.0} ms", ready.as_secs_f64() * 1e3);
    println!(
        "edit -> publishDiagnostics over {edits} edits: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        p(0.5),
        p(0.99),
        p(1.0)
    );
    println!(
        "server memory after opening: {:.1} MB (process RSS {:.1} MB)",
        after_open.saturating_sub(before) as f64 / 1024.0,
        after_open as f64 / 1024.0
    );
    Ok(())
}

/// Placement at production scale, and the hotel example's whole build.
fn plan(sizes: &[usize], runs: usize) -> Result<(), String> {
    println!(
        "{:>8} {:>8} {:>8} {:>9} {:>9} {:>11} {:>9} {:>8} {:>9} {:>6} {:>8}",
        "services",
        "calls",
        "units",
        "check ms",
        "place ms",
        "components",
        "largest",
        "ILP",
        "ADMs",
        "static",
        "optimal"
    );
    for &services in sizes {
        let text = generate(MeshShape { services, calls_per_service: 4.0, policies_per_service: 1.5, seed: 7 });
        let parts = adm_bench::split(&text, (services / 100).max(1));
        let mut sources = admc::Sources::new();
        for (name, part) in parts {
            sources.add(name, part);
        }
        let t = Instant::now();
        let checked = admc::check(&sources);
        let check_time = t.elapsed();
        if checked.errors() > 0 {
            return Err(format!("the generated {services}-service program has {} errors", checked.errors()));
        }
        let t = Instant::now();
        let planned = admc::plan::plan(&checked, &admc::place::PlaceOptions::default(), None);
        let place_time = t.elapsed();
        let f = &planned.file;
        println!(
            "{services:>8} {:>8} {:>8} {:>9.0} {:>9.0} {:>11} {:>9} {:>8} {:>9} {:>6} {:>8}",
            admc::db::call_graph(&checked.db, checked.program).calls.len(),
            f.solver.units,
            check_time.as_secs_f64() * 1e3,
            place_time.as_secs_f64() * 1e3,
            f.solver.components,
            f.solver.largest_component,
            f.solver.ilp_components,
            format!("{}/{}", f.objective.adms, f.baselines.sidecar.adms),
            f.baselines.static_placement.objective.adms,
            f.status.optimal
        );
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hotel-reservation");
    let mut times = Vec::new();
    let mut summary = String::new();
    for _ in 0..runs {
        let t = Instant::now();
        let sources = admc::Sources::load(std::slice::from_ref(&dir)).map_err(|e| e.to_string())?;
        let checked = admc::check(&sources);
        let planned = admc::plan::plan(&checked, &admc::place::PlaceOptions::default(), None);
        let files = admc::emit::artifacts(&checked, &planned);
        times.push(t.elapsed());
        let f = &planned.file;
        summary = format!(
            "{} ADMs (sidecars: {}, static placement: {}), optimal: {}, {} files",
            f.objective.adms,
            f.baselines.sidecar.adms,
            f.baselines.static_placement.objective.adms,
            f.status.optimal,
            files.len()
        );
    }
    println!(
        "hotel reservation build (load, check, place, emit): {:.2} ms median of {runs}; {summary}",
        median(times).as_secs_f64() * 1e3
    );
    Ok(())
}

/// Full checks (parse, names, types, legal sides, conflicts) and re-checks after a one-argument
/// edit through salsa, with the program in one file and in 100 files.
fn semantic(text: &str, runs: usize) -> Result<(), String> {
    use admc::db::{self, Database};
    use salsa::Setter;
    for files in [1usize, 100] {
        let parts = adm_bench::split(text, files);
        let mut full = Vec::new();
        for _ in 0..runs {
            let db = Database::default();
            let t = Instant::now();
            let program = db.program(parts.iter().map(|(n, t)| (n.as_str(), t.as_str())));
            let errors = db::program_diagnostics(&db, program).iter().filter(|d| d.is_error()).count();
            full.push(t.elapsed());
            if errors > 0 {
                return Err(format!("the generated program has {errors} errors"));
            }
        }
        // Edit the `after:` of one timeout, again and again, re-checking each time.
        let mut db = Database::default();
        let program = db.program(parts.iter().map(|(n, t)| (n.as_str(), t.as_str())));
        db::program_diagnostics(&db, program);
        let (pos, original) = parts
            .iter()
            .enumerate()
            .rev()
            .find(|(_, (_, t))| t.contains("timeout(after: "))
            .map(|(i, (_, t))| (i + 1, t.clone()))
            .ok_or("no timeout policy to edit")?;
        let file = program.files(&db)[pos];
        let at = original.find("timeout(after: ").ok_or("no timeout")? + "timeout(after: ".len();
        let end = at + original[at..].find("ms").ok_or("no ms")?;
        let mut edits = Vec::new();
        for i in 0..20u64 {
            let edited = format!("{}{}{}", &original[..at], 1000 + i, &original[end..]);
            file.set_text(&mut db).to(edited.into());
            let t = Instant::now();
            let errors = db::program_diagnostics(&db, program).iter().filter(|d| d.is_error()).count();
            edits.push(t.elapsed());
            if errors > 0 {
                return Err("an edit produced errors".to_string());
            }
        }
        let max = edits.iter().max().copied().unwrap_or_default();
        println!(
            "check ({files:>3} file{}): {:>7.1} ms full, re-check after a one-argument edit {:>6.2} ms median, {:>6.2} ms max (20 edits)",
            if files == 1 { " " } else { "s" },
            median(full).as_secs_f64() * 1e3,
            median(edits).as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3
        );
    }
    Ok(())
}

/// The largest resident set of any waited-for child, in KiB (Linux `getrusage`).
fn children_max_rss_kb() -> i64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; a zeroed rusage is a valid value.
    #[allow(unsafe_code, reason = "getrusage has no safe wrapper in std")]
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr());
        usage.assume_init()
    };
    usage.ru_maxrss
}
