//! Loads the ADM data plane (`ebpf/adm.bpf.o`, built from `ebpf/src/main.rs` with the pinned
//! nightly and bpf-linker, and checked in so that a stable `cargo build` needs neither) and
//! attaches it to a cgroup v2: `adm_sockops` registers the loopback sockets of processes in the
//! cgroup, and `adm_redirect` moves their messages straight to the peer socket.
//!
//! Attaching is all or nothing: on any failure nothing stays attached, and the error says why
//! (no privileges, no cgroup v2, an old kernel), so the caller can fall back to plain TCP loudly.
//! Dropping the [`DataPlane`] detaches everything.

use std::fmt;
use std::path::{Path, PathBuf};

use aya::maps::{MapData, PerCpuArray, SockHash};
use aya::programs::{CgroupAttachMode, SkMsg, SockOps};
use aya::Ebpf;

/// The compiled programs.
pub const OBJECT: &[u8] = include_bytes!("../../adm.bpf.o");

/// Why the data plane could not be attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The process may not create BPF maps or programs (EPERM): not root, no CAP_BPF.
    Unprivileged(String),
    /// No cgroup v2 hierarchy is mounted, or the cgroup does not exist.
    NoCgroup(String),
    /// The kernel refused a program or a map (too old, or BPF disabled).
    Kernel(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unprivileged(e) => {
                write!(f, "no privileges for eBPF ({e}); run as root or grant CAP_BPF and CAP_NET_ADMIN")
            }
            Error::NoCgroup(e) => write!(f, "no cgroup v2 to attach to ({e})"),
            Error::Kernel(e) => write!(f, "the kernel refused the eBPF data plane ({e})"),
        }
    }
}

impl std::error::Error for Error {}

fn classify(e: impl std::error::Error) -> Error {
    // The causes say what the kernel answered ("Operation not permitted", …).
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    if text.contains("Operation not permitted") || text.contains("EPERM") || text.contains("os error 1)") {
        Error::Unprivileged(text)
    } else {
        Error::Kernel(text)
    }
}

/// The mount point of the cgroup v2 hierarchy, from `/proc/self/mounts`.
pub fn cgroup2_root() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let mut fields = l.split_whitespace();
        let (_, path, kind) = (fields.next()?, fields.next()?, fields.next()?);
        (kind == "cgroup2").then(|| PathBuf::from(path))
    })
}

/// The data plane, attached to one cgroup until dropped.
pub struct DataPlane {
    ebpf: Ebpf,
    cgroup: PathBuf,
}

impl fmt::Debug for DataPlane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataPlane").field("cgroup", &self.cgroup).finish()
    }
}

/// Message counters of the redirect program.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Messages moved to the peer socket inside the kernel.
    pub redirected: u64,
    /// Messages that went through the TCP/IP stack (no peer known).
    pub passed: u64,
}

impl DataPlane {
    /// Loads the programs and attaches them to `cgroup` (a directory of the cgroup v2 hierarchy).
    pub fn attach(cgroup: &Path) -> Result<DataPlane, Error> {
        let cgroup_dir =
            std::fs::File::open(cgroup).map_err(|e| Error::NoCgroup(format!("{}: {e}", cgroup.display())))?;
        let mut ebpf = Ebpf::load(OBJECT).map_err(classify)?;
        let sockets_fd = {
            let map = ebpf.map("SOCKETS").ok_or_else(|| Error::Kernel("the object has no SOCKETS map".into()))?;
            let sockets: SockHash<&MapData, [u32; 4]> = SockHash::try_from(map).map_err(classify)?;
            sockets.fd().try_clone().map_err(classify)?
        };
        let sockops: &mut SockOps = ebpf
            .program_mut("adm_sockops")
            .ok_or_else(|| Error::Kernel("the object has no adm_sockops program".into()))?
            .try_into()
            .map_err(classify)?;
        sockops.load().map_err(classify)?;
        sockops.attach(&cgroup_dir, CgroupAttachMode::Single).map_err(classify)?;
        let redirect: &mut SkMsg = ebpf
            .program_mut("adm_redirect")
            .ok_or_else(|| Error::Kernel("the object has no adm_redirect program".into()))?
            .try_into()
            .map_err(classify)?;
        redirect.load().map_err(classify)?;
        redirect.attach(&sockets_fd).map_err(classify)?;
        Ok(DataPlane { ebpf, cgroup: cgroup.to_path_buf() })
    }

    /// The redirect program's counters, summed over CPUs.
    pub fn counters(&self) -> Result<Counters, Error> {
        let map = self.ebpf.map("COUNTERS").ok_or_else(|| Error::Kernel("no COUNTERS map".into()))?;
        let counters: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(map).map_err(classify)?;
        let sum = |i: u32| counters.get(&i, 0).map(|v| v.iter().sum::<u64>()).map_err(classify);
        Ok(Counters { redirected: sum(0)?, passed: sum(1)? })
    }

    pub fn cgroup(&self) -> &Path {
        &self.cgroup
    }
}
