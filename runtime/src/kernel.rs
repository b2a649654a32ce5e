//! The eBPF data plane as an ADM sees it (`admd --ebpf`): for each accepted connection, the
//! service whose cgroup opened it and, for a connect the kernel steered here, where it was going.
//! Both come from maps that `admd ebpf attach` pinned; no byte the client sent is trusted.

use std::collections::HashMap;
use std::net::{SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use adm_ebpf_loader::{services_by_cgroup, Counters, Error, Observer};

/// Where the pinned maps live by default (a bpffs).
pub const DEFAULT_PIN: &str = "/sys/fs/bpf/adm";

/// The mesh's cgroups by default: `adm` under the cgroup v2 mount.
pub fn default_cgroup_root() -> Option<PathBuf> {
    adm_ebpf_loader::cgroup2_root().map(|r| r.join("adm"))
}

/// What the kernel knows about one inbound connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    /// The service whose cgroup (or whose ADM's cgroup) opened the connection.
    pub service: Option<String>,
    /// The address the caller connected to, when the kernel steered the connect here.
    pub destination: Option<SocketAddrV4>,
}

/// The pinned maps and the names of the mesh's cgroups.
pub struct Kernel {
    observer: Observer,
    root: PathBuf,
    /// Cgroup id → service, and when it was last read from the cgroup tree.
    names: Mutex<(Instant, HashMap<u64, String>)>,
}

/// A cgroup id the table does not know is looked up again at most this often.
const RESCAN: Duration = Duration::from_secs(1);

impl Kernel {
    /// Opens the maps pinned under `pin`, for a mesh whose cgroups are under `root`.
    pub fn open(pin: &Path, root: &Path) -> Result<Kernel, Error> {
        let observer = Observer::open(pin)?;
        let names = services_by_cgroup(root).into_iter().collect();
        Ok(Kernel { observer, root: root.to_path_buf(), names: Mutex::new((Instant::now(), names)) })
    }

    fn service_of(&self, cgroup: u64) -> Option<String> {
        let mut names = self.names.lock().ok()?;
        if let Some(s) = names.1.get(&cgroup) {
            return Some(s.clone());
        }
        // A service added to a live plan: its cgroup appeared after this ADM started.
        if names.0.elapsed() >= RESCAN {
            *names = (Instant::now(), services_by_cgroup(&self.root).into_iter().collect());
        }
        names.1.get(&cgroup).cloned()
    }

    /// Who opened the connection from `peer` to `local` (this ADM's address).
    pub fn caller(&self, peer: SocketAddr, local: SocketAddr) -> Caller {
        let (SocketAddr::V4(client), SocketAddr::V4(server)) = (peer, local) else { return Caller::default() };
        Caller {
            service: self.observer.peer_cgroup(client, server).and_then(|c| self.service_of(c)),
            destination: self.observer.original_destination(client, server),
        }
    }

    pub fn counters(&self) -> Result<Counters, Error> {
        self.observer.counters()
    }

    /// Prometheus lines for the data plane's counters.
    pub fn render(&self) -> String {
        let Ok(c) = self.counters() else { return String::new() };
        let mut out = String::from("# TYPE admd_ebpf_messages_total counter\n");
        out.push_str(&format!("admd_ebpf_messages_total{{outcome=\"redirected\"}} {}\n", c.redirected));
        out.push_str(&format!("admd_ebpf_messages_total{{outcome=\"passed\"}} {}\n", c.passed));
        out.push_str("# TYPE admd_ebpf_connects_total counter\n");
        for (outcome, n) in [
            ("steered", c.steered),
            ("direct", c.direct),
            ("refused", c.refused),
            ("undeclared_allowed", c.undeclared_allowed),
        ] {
            out.push_str(&format!("admd_ebpf_connects_total{{outcome=\"{outcome}\"}} {n}\n"));
        }
        out
    }
}
