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

use aya::maps::{Array, HashMap, IterableMap, MapData, PerCpuArray, SockHash};
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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
struct Pair {
    from: u32,
    to: u32,
}

/// A connection's 4-tuple as its client sees it (addresses in network order, ports in host order).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct SockKey {
    local_ip: u32,
    remote_ip: u32,
    local_port: u32,
    remote_port: u32,
}

impl SockKey {
    fn client_view(client: SocketAddrV4, server: SocketAddrV4) -> SockKey {
        let (c, s) = (endpoint(client), endpoint(server));
        SockKey { local_ip: c.ip, remote_ip: s.ip, local_port: c.port, remote_port: s.port }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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
// SAFETY: as above.
#[allow(unsafe_code, reason = "aya reads and writes map entries as plain bytes")]
unsafe impl aya::Pod for SockKey {}

/// Set in a `SERVICE_OF_CGROUP` value for the cgroup of a service's ADM (as in the programs).
const ADM_FLAG: u32 = 1 << 31;

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
    /// The cgroups of ADMs → the id of their service: their connects are identified, never
    /// steered nor refused.
    pub adm_cgroups: Vec<(u64, u32)>,
    /// (sender id, receiver id) → route, for every declared call between services.
    pub pairs: Vec<(u32, u32, Route)>,
    /// A service id → its ADM's ingress and egress listeners.
    pub adms: Vec<(u32, Option<SocketAddrV4>, Option<SocketAddrV4>)>,
    /// Refuse connects between services that no declared call joins.
    pub deny_undeclared: bool,
}

/// The cgroup of a service's processes under the mesh's cgroup root: `<root>/<service>`.
pub fn service_cgroup(root: &Path, service: &str) -> PathBuf {
    root.join(service)
}

/// The cgroup of a service's ADM: `<root>/<service>.adm` (a service name has no dot).
pub fn adm_cgroup(root: &Path, service: &str) -> PathBuf {
    root.join(format!("{service}.adm"))
}

/// The service whose processes (or ADM) run in each cgroup directly under `root`, by cgroup id.
pub fn services_by_cgroup(root: &Path) -> Vec<(u64, String)> {
    use std::os::unix::fs::MetadataExt;
    let Ok(dir) = std::fs::read_dir(root) else { return Vec::new() };
    dir.filter_map(Result::ok)
        .filter_map(|e| {
            let meta = e.metadata().ok().filter(std::fs::Metadata::is_dir)?;
            let name = e.file_name().into_string().ok()?;
            let service = name.strip_suffix(".adm").unwrap_or(&name).to_string();
            Some((meta.ino(), service))
        })
        .collect()
}

impl Seed {
    /// The seed of `ebpf/maps.json` (as `admc build` writes it) for a mesh whose cgroups live under
    /// `root`: each service's cgroup and its ADM's are created when missing, so processes can be
    /// moved in before or after. Also returns warnings: endpoints that are not IPv4 addresses, which
    /// the programs cannot match (calls to them are neither steered nor refused).
    pub fn from_maps(
        maps: &adm_artifacts::EbpfMaps,
        root: &Path,
        deny_undeclared: bool,
    ) -> Result<(Seed, Vec<String>), Error> {
        let mut seed = Seed { deny_undeclared, ..Seed::default() };
        let mut warnings = Vec::new();
        let mut ids = std::collections::HashMap::new();
        let v4 =
            |e: &adm_artifacts::Endpoint| e.address.parse::<Ipv4Addr>().ok().map(|ip| SocketAddrV4::new(ip, e.port));
        for s in &maps.services {
            if s.id & ADM_FLAG != 0 {
                return Err(Error::Seed(format!("service `{}` has id {}, beyond the maps' range", s.name, s.id)));
            }
            if s.name.is_empty() || s.name.contains(['/', '.']) {
                return Err(Error::Seed(format!("`{}` cannot name a cgroup", s.name)));
            }
            ids.insert(s.name.as_str(), s.id);
            for e in &s.endpoints {
                match v4(e) {
                    Some(addr) => seed.endpoints.push((addr, s.id)),
                    None => warnings.push(format!(
                        "service `{}`: endpoint {}:{} is not an IPv4 address; its calls are not steered",
                        s.name, e.address, e.port
                    )),
                }
            }
            if let Some(adm) = &s.adm {
                let listener = |l: &Option<adm_artifacts::Endpoint>| l.as_ref().and_then(v4);
                seed.adms.push((s.id, listener(&adm.ingress), listener(&adm.egress)));
            }
        }
        for p in &maps.pairs {
            let (Some(&from), Some(&to)) = (ids.get(p.from.as_str()), ids.get(p.to.as_str())) else {
                return Err(Error::Seed(format!(
                    "pair `{} -> {}` names a service missing from `services`",
                    p.from, p.to
                )));
            };
            let route = match p.route {
                adm_artifacts::PairRoute::Direct => Route::Direct,
                adm_artifacts::PairRoute::ViaSender => Route::ViaSender,
                adm_artifacts::PairRoute::ViaReceiver => Route::ViaReceiver,
                adm_artifacts::PairRoute::ViaBoth => Route::ViaBoth,
            };
            seed.pairs.push((from, to, route));
        }
        // Only a valid file creates cgroups.
        for s in &maps.services {
            for (dir, into) in
                [(service_cgroup(root, &s.name), &mut seed.cgroups), (adm_cgroup(root, &s.name), &mut seed.adm_cgroups)]
            {
                std::fs::create_dir_all(&dir).map_err(|e| cgroup_io("create", &dir, e))?;
                into.push((DataPlane::cgroup_id(&dir)?, s.id));
            }
        }
        Ok((seed, warnings))
    }
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
    /// No data plane is attached where an ADM looked for its pinned maps.
    NotAttached(String),
    /// `ebpf/maps.json` does not describe a mesh the maps can hold.
    Seed(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unprivileged(e) => {
                write!(f, "no privileges for eBPF ({e}); run as root or grant CAP_BPF and CAP_NET_ADMIN")
            }
            Error::NoCgroup(e) => write!(f, "no cgroup v2 to attach to ({e})"),
            Error::Kernel(e) => write!(f, "the kernel refused the eBPF data plane ({e})"),
            Error::NotAttached(e) => write!(f, "no eBPF data plane is attached ({e})"),
            Error::Seed(e) => write!(f, "cannot seed the maps: {e}"),
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

/// The mount points of file systems of type `kind` (`cgroup2`, `bpf`), from `/proc/self/mounts`.
pub fn mount_points(kind: &str) -> Vec<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            let (_, path, fs) = (fields.next()?, fields.next()?, fields.next()?);
            (fs == kind).then(|| PathBuf::from(path))
        })
        .collect()
}

/// The mount point of the cgroup v2 hierarchy.
pub fn cgroup2_root() -> Option<PathBuf> {
    mount_points("cgroup2").into_iter().next()
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

/// The maps that say who called and where: pinned by the process that attached the programs
/// (`admd ebpf attach`) and opened by every ADM (`admd --ebpf`).
pub struct Observer {
    peers: HashMap<MapData, SockKey, u64>,
    destinations: HashMap<MapData, SockKey, Endpoint>,
    counters: PerCpuArray<MapData, u64>,
    undeclared: HashMap<MapData, Pair, u64>,
}

/// The maps an [`Observer`] reads, by the names they are pinned under.
const OBSERVED: [&str; 4] = ["PEER_CGROUP", "ORIGINAL_DST", "COUNTERS", "UNDECLARED"];

impl Observer {
    fn from_maps(mut take: impl FnMut(&str) -> Result<aya::maps::Map, Error>) -> Result<Observer, Error> {
        Ok(Observer {
            peers: HashMap::try_from(take("PEER_CGROUP")?).map_err(classify)?,
            destinations: HashMap::try_from(take("ORIGINAL_DST")?).map_err(classify)?,
            counters: PerCpuArray::try_from(take("COUNTERS")?).map_err(classify)?,
            undeclared: HashMap::try_from(take("UNDECLARED")?).map_err(classify)?,
        })
    }

    /// Opens the maps that `DataPlane::pin` pinned under `dir` (on a bpffs).
    pub fn open(dir: &Path) -> Result<Observer, Error> {
        Observer::from_maps(|name| {
            let path = dir.join(name);
            if !path.exists() {
                return Err(Error::NotAttached(format!(
                    "{} does not exist: is `admd ebpf attach` running with --pin {}?",
                    path.display(),
                    dir.display()
                )));
            }
            let data = MapData::from_pin(&path).map_err(classify)?;
            aya::maps::Map::from_map_data(data).map_err(classify)
        })
    }

    /// The cgroup of the process that opened the connection from `client` to `server` (both as
    /// the accepting side sees them: its peer and its own address), when it is a registered one.
    pub fn peer_cgroup(&self, client: SocketAddrV4, server: SocketAddrV4) -> Option<u64> {
        self.peers.get(&SockKey::client_view(client, server), 0).ok()
    }

    /// Where a connection steered to an ADM was going.
    pub fn original_destination(&self, client: SocketAddrV4, server: SocketAddrV4) -> Option<SocketAddrV4> {
        let dst = self.destinations.get(&SockKey::client_view(client, server), 0).ok()?;
        Some(SocketAddrV4::new(Ipv4Addr::from(dst.ip.to_ne_bytes()), u16::try_from(dst.port).ok()?))
    }

    /// The programs' counters, summed over CPUs.
    pub fn counters(&self) -> Result<Counters, Error> {
        let sum = |i: u32| self.counters.get(&i, 0).map(|v| v.iter().sum::<u64>()).map_err(classify);
        Ok(Counters {
            redirected: sum(0)?,
            passed: sum(1)?,
            steered: sum(2)?,
            direct: sum(3)?,
            refused: sum(4)?,
            undeclared_allowed: sum(5)?,
        })
    }

    /// Connects on undeclared pairs that were let through (`deny_undeclared` off): (sender id,
    /// receiver id, connects so far).
    pub fn undeclared(&self) -> Vec<(u32, u32, u64)> {
        let mut out: Vec<_> =
            self.undeclared.iter().filter_map(Result::ok).map(|(pair, n)| (pair.from, pair.to, n)).collect();
        out.sort_unstable();
        out
    }
}

/// The maps the plan seeds.
struct Steering {
    endpoints: HashMap<MapData, Endpoint, u32>,
    cgroups: HashMap<MapData, u64, u32>,
    pairs: HashMap<MapData, Pair, u32>,
    adms: HashMap<MapData, u32, Adm>,
    settings: Array<MapData, u32>,
}

/// Makes `map` hold exactly `entries`: new and changed entries first, then the stale ones go, so
/// an entry in both the old and the new plan is never missing in between.
fn replace<K: aya::Pod + PartialEq, V: aya::Pod>(
    map: &mut HashMap<MapData, K, V>,
    entries: &[(K, V)],
) -> Result<(), Error> {
    for (k, v) in entries {
        map.insert(k, v, 0).map_err(classify)?;
    }
    let stale: Vec<K> = map.keys().filter_map(Result::ok).filter(|k| !entries.iter().any(|(e, _)| e == k)).collect();
    for k in stale {
        // Gone already is fine: the goal is its absence.
        let _ = map.remove(&k);
    }
    Ok(())
}

/// The data plane, attached to one cgroup until dropped.
pub struct DataPlane {
    /// Owns the programs and their attachments.
    _ebpf: Ebpf,
    steering: Steering,
    observer: Observer,
    cgroup: PathBuf,
    pinned: Option<PathBuf>,
}

impl fmt::Debug for DataPlane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataPlane").field("cgroup", &self.cgroup).field("pinned", &self.pinned).finish()
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
    /// Connects on undeclared pairs let through (`deny_undeclared` off).
    pub undeclared_allowed: u64,
}

impl DataPlane {
    /// Loads the programs and attaches them to `cgroup` (a directory of the cgroup v2 hierarchy).
    /// The maps start empty: nothing is steered until [`DataPlane::seed`].
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
        let mut take = |name: &str| -> Result<aya::maps::Map, Error> {
            ebpf.take_map(name).ok_or_else(|| Error::Kernel(format!("the object has no {name} map")))
        };
        let steering = Steering {
            endpoints: HashMap::try_from(take("ENDPOINTS")?).map_err(classify)?,
            cgroups: HashMap::try_from(take("SERVICE_OF_CGROUP")?).map_err(classify)?,
            pairs: HashMap::try_from(take("PAIRS")?).map_err(classify)?,
            adms: HashMap::try_from(take("ADMS")?).map_err(classify)?,
            settings: Array::try_from(take("SETTINGS")?).map_err(classify)?,
        };
        let observer = Observer::from_maps(take)?;
        Ok(DataPlane { _ebpf: ebpf, steering, observer, cgroup: cgroup.to_path_buf(), pinned: None })
    }

    /// Makes the maps hold exactly `seed`: entries of an earlier seed that the new one lacks are
    /// removed, so a new plan takes effect without detaching anything.
    pub fn seed(&mut self, seed: &Seed) -> Result<(), Error> {
        let m = &mut self.steering;
        let endpoints: Vec<_> = seed.endpoints.iter().map(|(a, id)| (endpoint(*a), *id)).collect();
        replace(&mut m.endpoints, &endpoints)?;
        let cgroups: Vec<_> = seed
            .cgroups
            .iter()
            .copied()
            .chain(seed.adm_cgroups.iter().map(|&(cgroup, id)| (cgroup, id | ADM_FLAG)))
            .collect();
        replace(&mut m.cgroups, &cgroups)?;
        let pairs: Vec<_> = seed.pairs.iter().map(|&(from, to, route)| (Pair { from, to }, route as u32)).collect();
        replace(&mut m.pairs, &pairs)?;
        let e = |a: &Option<SocketAddrV4>| a.map(endpoint).unwrap_or_default();
        let adms: Vec<_> = seed
            .adms
            .iter()
            .map(|(id, ingress, egress)| (*id, Adm { ingress: e(ingress), egress: e(egress) }))
            .collect();
        replace(&mut m.adms, &adms)?;
        m.settings.set(0, u32::from(seed.deny_undeclared), 0).map_err(classify)?;
        Ok(())
    }

    /// Pins the maps an [`Observer`] reads under `dir` (created on a bpffs if missing; the pins
    /// are removed when the data plane is dropped). An earlier run's stale pins are replaced.
    pub fn pin(&mut self, dir: &Path) -> Result<(), Error> {
        std::fs::create_dir_all(dir).map_err(|e| Error::Kernel(format!("cannot create {}: {e}", dir.display())))?;
        for name in OBSERVED {
            let _ = std::fs::remove_file(dir.join(name));
        }
        let o = &self.observer;
        let maps: [&MapData; 4] = [
            IterableMap::map(&o.peers),
            IterableMap::map(&o.destinations),
            IterableMap::map(&o.counters),
            IterableMap::map(&o.undeclared),
        ];
        let failed = OBSERVED.iter().zip(maps).find_map(|(name, map)| map.pin(dir.join(name)).err().map(|e| (name, e)));
        self.pinned = Some(dir.to_path_buf());
        if let Some((name, e)) = failed {
            let text = format!("cannot pin {name} under {} (is it a bpffs?): {e}", dir.display());
            self.unpin();
            return Err(Error::Kernel(text));
        }
        Ok(())
    }

    fn unpin(&mut self) {
        if let Some(dir) = self.pinned.take() {
            for name in OBSERVED {
                let _ = std::fs::remove_file(dir.join(name));
            }
            let _ = std::fs::remove_dir(&dir);
        }
    }

    /// What the programs observed: identities, original destinations, counters.
    pub fn observer(&self) -> &Observer {
        &self.observer
    }

    /// Where a connection steered to an ADM was going (see [`Observer::original_destination`]).
    pub fn original_destination(&self, client: SocketAddrV4, server: SocketAddrV4) -> Option<SocketAddrV4> {
        self.observer.original_destination(client, server)
    }

    /// The counters of the programs, summed over CPUs.
    pub fn counters(&self) -> Result<Counters, Error> {
        self.observer.counters()
    }

    /// The cgroup id of a cgroup v2 directory: its inode number.
    pub fn cgroup_id(dir: &Path) -> Result<u64, Error> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(dir).map(|m| m.ino()).map_err(|e| Error::NoCgroup(format!("{}: {e}", dir.display())))
    }

    pub fn cgroup(&self) -> &Path {
        &self.cgroup
    }
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        self.unpin();
    }
}
