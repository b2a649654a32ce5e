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

use std::net::{Ipv4Addr, SocketAddrV4};

use aya::maps::{Array, HashMap, MapData, PerCpuArray, SockHash};
use aya::programs::{CgroupAttachMode, CgroupSockAddr, SkMsg, SockOps};
use aya::Ebpf;

/// The map layouts shared with `ebpf/src/main.rs` (same field order, `repr(C)`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Endpoint {
    ip: u32,
    port: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct Pair {
    from: u32,
    to: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct Adm {
    ingress: Endpoint,
    egress: Endpoint,
}

// SAFETY: plain `repr(C)` integers without padding: any bit pattern is a valid value.
#[allow(unsafe_code, reason = "aya reads and writes map entries as plain bytes")]
unsafe impl aya::Pod for Endpoint {}
// SAFETY: as above.
#[allow(unsafe_code, reason = "aya reads and writes map entries as plain bytes")]
unsafe impl aya::Pod for Pair {}
// SAFETY: as above.
#[allow(unsafe_code, reason = "aya reads and writes map entries as plain bytes")]
unsafe impl aya::Pod for Adm {}

fn endpoint(addr: SocketAddrV4) -> Endpoint {
    // The address as the kernel holds it (network order), the port in host order.
    Endpoint { ip: u32::from_ne_bytes(addr.ip().octets()), port: u32::from(addr.port()) }
}

/// How a pair's traffic flows (`ebpf/maps.json`'s `route`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Direct = 0,
    ViaSender = 1,
    ViaReceiver = 2,
    ViaBoth = 3,
}

/// What the maps hold: services by id.
#[derive(Clone, Debug, Default)]
pub struct Seed {
    /// A service's endpoint → the service's id.
    pub endpoints: Vec<(SocketAddrV4, u32)>,
    /// A cgroup (its id: the inode of its directory) → the id of the service running in it.
    pub cgroups: Vec<(u64, u32)>,
    /// (sender id, receiver id) → route, for every declared call between services.
    pub pairs: Vec<(u32, u32, Route)>,
    /// A service id → its ADM's ingress and egress listeners.
    pub adms: Vec<(u32, Option<SocketAddrV4>, Option<SocketAddrV4>)>,
    /// Refuse connects between services that no declared call joins.
    pub deny_undeclared: bool,
}

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

fn cgroup_io(what: &str, dir: &Path, e: std::io::Error) -> Error {
    let text = format!("cannot {what} {}: {e}", dir.display());
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        Error::Unprivileged(text)
    } else {
        Error::NoCgroup(text)
    }
}

/// A cgroup made for a test or a benchmark (`<root>/<prefix>-<pid>`, with optional children),
/// removed when dropped after moving this process back to the cgroup it started in.
#[derive(Debug)]
pub struct TempCgroup {
    path: PathBuf,
    home: PathBuf,
    children: Vec<PathBuf>,
}

impl TempCgroup {
    /// Creates `<root>/<prefix>-<pid>`; the process stays where it is until [`TempCgroup::enter`].
    pub fn new(prefix: &str) -> Result<TempCgroup, Error> {
        let root = cgroup2_root().ok_or_else(|| Error::NoCgroup("no cgroup v2 hierarchy is mounted".into()))?;
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let home = root.join(own.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or("/").trim_start_matches('/'));
        let path = root.join(format!("{prefix}-{}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(|e| cgroup_io("create", &path, e))?;
        Ok(TempCgroup { path, home, children: Vec::new() })
    }

    /// The cgroup's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the child cgroup `name`, removed with its parent.
    pub fn child(&mut self, name: &str) -> Result<PathBuf, Error> {
        let dir = self.path.join(name);
        std::fs::create_dir_all(&dir).map_err(|e| cgroup_io("create", &dir, e))?;
        self.children.push(dir.clone());
        Ok(dir)
    }

    /// Moves this process into `dir` (the cgroup itself or one of its children).
    pub fn enter(&self, dir: &Path) -> Result<(), Error> {
        std::fs::write(dir.join("cgroup.procs"), std::process::id().to_string()).map_err(|e| cgroup_io("enter", dir, e))
    }
}

impl Drop for TempCgroup {
    fn drop(&mut self) {
        let _ = std::fs::write(self.home.join("cgroup.procs"), std::process::id().to_string());
        for child in self.children.iter().rev() {
            let _ = std::fs::remove_dir(child);
        }
        let _ = std::fs::remove_dir(&self.path);
    }
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

/// Counters of the programs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Messages moved to the peer socket inside the kernel.
    pub redirected: u64,
    /// Messages that went through the TCP/IP stack (no peer known).
    pub passed: u64,
    /// Connects rewritten to an ADM.
    pub steered: u64,
    /// Connects between services left direct.
    pub direct: u64,
    /// Connects refused: no declared call joins the two services.
    pub refused: u64,
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
        let connect: &mut CgroupSockAddr = ebpf
            .program_mut("adm_connect4")
            .ok_or_else(|| Error::Kernel("the object has no adm_connect4 program".into()))?
            .try_into()
            .map_err(classify)?;
        connect.load().map_err(classify)?;
        connect.attach(&cgroup_dir, CgroupAttachMode::Single).map_err(classify)?;
        Ok(DataPlane { ebpf, cgroup: cgroup.to_path_buf() })
    }

    /// Fills the steering maps; entries already there are replaced, so a new plan can be seeded
    /// without detaching anything.
    pub fn seed(&mut self, seed: &Seed) -> Result<(), Error> {
        let map = |ebpf: &mut Ebpf, name: &str| -> Result<aya::maps::Map, Error> {
            ebpf.take_map(name).ok_or_else(|| Error::Kernel(format!("the object has no {name} map")))
        };
        let mut endpoints: HashMap<MapData, Endpoint, u32> =
            HashMap::try_from(map(&mut self.ebpf, "ENDPOINTS")?).map_err(classify)?;
        for (addr, id) in &seed.endpoints {
            endpoints.insert(endpoint(*addr), id, 0).map_err(classify)?;
        }
        let mut cgroups: HashMap<MapData, u64, u32> =
            HashMap::try_from(map(&mut self.ebpf, "SERVICE_OF_CGROUP")?).map_err(classify)?;
        for (cgroup, id) in &seed.cgroups {
            cgroups.insert(cgroup, id, 0).map_err(classify)?;
        }
        let mut pairs: HashMap<MapData, Pair, u32> =
            HashMap::try_from(map(&mut self.ebpf, "PAIRS")?).map_err(classify)?;
        for (from, to, route) in &seed.pairs {
            pairs.insert(Pair { from: *from, to: *to }, *route as u32, 0).map_err(classify)?;
        }
        let mut adms: HashMap<MapData, u32, Adm> = HashMap::try_from(map(&mut self.ebpf, "ADMS")?).map_err(classify)?;
        for (id, ingress, egress) in &seed.adms {
            let e = |a: &Option<SocketAddrV4>| a.map(endpoint).unwrap_or_default();
            adms.insert(id, Adm { ingress: e(ingress), egress: e(egress) }, 0).map_err(classify)?;
        }
        let mut settings: Array<MapData, u32> = Array::try_from(map(&mut self.ebpf, "SETTINGS")?).map_err(classify)?;
        settings.set(0, u32::from(seed.deny_undeclared), 0).map_err(classify)?;
        Ok(())
    }

    /// Where a connection steered to an ADM was going, by the client's address (the ADM's peer).
    pub fn original_destination(&self, client: SocketAddrV4) -> Option<SocketAddrV4> {
        let map = self.ebpf.map("ORIGINAL_DST")?;
        let dsts: HashMap<&MapData, Endpoint, Endpoint> = HashMap::try_from(map).ok()?;
        let dst = dsts.get(&endpoint(client), 0).ok()?;
        Some(SocketAddrV4::new(Ipv4Addr::from(dst.ip.to_ne_bytes()), dst.port as u16))
    }

    /// The cgroup id of a cgroup v2 directory: its inode number.
    pub fn cgroup_id(dir: &Path) -> Result<u64, Error> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(dir).map(|m| m.ino()).map_err(|e| Error::NoCgroup(format!("{}: {e}", dir.display())))
    }

    /// The redirect program's counters, summed over CPUs.
    pub fn counters(&self) -> Result<Counters, Error> {
        let map = self.ebpf.map("COUNTERS").ok_or_else(|| Error::Kernel("no COUNTERS map".into()))?;
        let counters: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(map).map_err(classify)?;
        let sum = |i: u32| counters.get(&i, 0).map(|v| v.iter().sum::<u64>()).map_err(classify);
        Ok(Counters { redirected: sum(0)?, passed: sum(1)?, steered: sum(2)?, direct: sum(3)?, refused: sum(4)? })
    }

    pub fn cgroup(&self) -> &Path {
        &self.cgroup
    }
}
