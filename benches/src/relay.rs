//! `adm-bench relay`: a proxy that does nothing but copy bytes, the floor of what any proxy built
//! the same way can add to a request's latency. `benches/proxy/run.sh` measures it beside admd
//! and nginx: admd's lean path is HTTP on the tokio relay's stack, so the relay bounds how close
//! that stack can get to a goal, whatever the HTTP path does.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};

/// How the relay waits for bytes.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Mode {
    /// One tokio task per connection on a current-thread runtime (admd's `--threads 1`), bytes
    /// copied both ways with `copy_bidirectional`.
    Tokio,
    /// Two blocking threads per connection, one per direction: no readiness polling at all, a
    /// read sleeps in the socket until bytes arrive.
    Blocking,
}

/// Accepts connections on `listen` forever, relaying each to a new connection to `upstream`.
pub fn run(listen: SocketAddr, upstream: SocketAddr, mode: Mode) -> Result<(), String> {
    let listener = TcpListener::bind(listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    eprintln!("relaying {listen} -> {upstream} ({mode:?})");
    match mode {
        Mode::Blocking => blocking(listener, upstream),
        Mode::Tokio => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start a runtime: {e}"))?;
            runtime.block_on(tokio_relay(listener, upstream))
        }
    }
}

fn blocking(listener: TcpListener, upstream: SocketAddr) -> Result<(), String> {
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        let Ok(server) = TcpStream::connect(upstream) else {
            eprintln!("cannot connect to {upstream}");
            continue;
        };
        for s in [&client, &server] {
            let _ = s.set_nodelay(true);
        }
        let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else { continue };
        std::thread::spawn(move || pump(client, server));
        std::thread::spawn(move || pump(server2, client2));
    }
    Ok(())
}

/// Copies `from` to `to` until `from` ends, then ends `to`'s writing side.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

async fn tokio_relay(listener: TcpListener, upstream: SocketAddr) -> Result<(), String> {
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
    loop {
        let Ok((mut client, _)) = listener.accept().await else { continue };
        tokio::spawn(async move {
            let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                eprintln!("cannot connect to {upstream}");
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        });
    }
}
