//! eBPF programs of the ADM data plane, built for the BPF target with the pinned nightly and
//! bpf-linker (see ARCHITECTURE.md); on the host this crate is a stub binary.
//!
//! - `adm_sockops` (sock_ops): registers every established TCP socket whose both ends are on
//!   loopback in the `SOCKETS` hash, keyed by its (local, remote) address and port.
//! - `adm_redirect` (sk_msg, on `SOCKETS`): sends a message straight into the receive queue of
//!   the peer socket (the one whose local end is this socket's remote end), without crossing the
//!   TCP/IP stack; when no peer is known the message passes normally, never dropped.
//!
//! - `adm_connect4` (cgroup/connect4): applies the plan's decision to a connect from a mesh
//!   service (its cgroup is in `SERVICE_OF_CGROUP`) to a service endpoint (`ENDPOINTS`): direct,
//!   or rewritten to the sender's egress ADM or the receiver's ingress ADM (`PAIRS`, `ADMS`),
//!   recording the original destination; a pair that no declared call allows is refused when
//!   `SETTINGS[0]` is 1 (`--undeclared=deny`).
//!
//! Identity: every connect from a registered cgroup (a service's, or its ADM's, flagged with
//! `ADM_FLAG`) is remembered by socket cookie; once established, `adm_sockops` files the caller's
//! cgroup id under the connection's 4-tuple in `PEER_CGROUP` and the original destination of a
//! steered connect in `ORIGINAL_DST`, both removed when the socket closes. An ADM looks up its
//! peer there: who called, as the kernel saw it, and where the call was going.
//!
//! `COUNTERS`: 0 redirected messages, 1 messages passed without a peer, 2 connects steered to an
//! ADM, 3 connects left direct, 4 connects refused as undeclared, 5 undeclared connects let
//! through (`--undeclared=allow`, with the pair counted in `UNDECLARED`).
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

/// An IPv4 endpoint: the address in network order, the port in host order.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Endpoint {
    pub ip: u32,
    pub port: u32,
}

/// A (sender, receiver) pair of service ids.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Pair {
    pub from: u32,
    pub to: u32,
}

/// The listeners of a service's ADM; a port of 0 means no such listener.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Adm {
    pub ingress: Endpoint,
    pub egress: Endpoint,
}

/// Set in a `SERVICE_OF_CGROUP` value for the cgroup of a service's ADM: its connects are
/// identified but never steered nor refused (the ADM forwards to the addresses its plan names).
pub const ADM_FLAG: u32 = 1 << 31;

/// How a pair's traffic flows, as `ebpf/maps.json` says.
pub const DIRECT: u32 = 0;
pub const VIA_SENDER: u32 = 1;
pub const VIA_RECEIVER: u32 = 2;
pub const VIA_BOTH: u32 = 3;

/// A socket's ends: IPv4 addresses as the kernel holds them (network order), ports in host order.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SockKey {
    pub local_ip: u32,
    pub remote_ip: u32,
    pub local_port: u32,
    pub remote_port: u32,
}

#[cfg(target_arch = "bpf")]
mod programs {
    use aya_ebpf::bindings::{
        sk_action, BPF_F_INGRESS, BPF_NOEXIST, BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB, BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB,
        BPF_SOCK_OPS_STATE_CB, BPF_SOCK_OPS_STATE_CB_FLAG, BPF_TCP_CLOSE,
    };
    use aya_ebpf::helpers::{bpf_get_current_cgroup_id, bpf_get_socket_cookie};
    use aya_ebpf::macros::{cgroup_sock_addr, map, sk_msg, sock_ops};
    use aya_ebpf::maps::{Array, HashMap, LruHashMap, PerCpuArray, SockHash};
    use aya_ebpf::programs::{SkMsgContext, SockAddrContext, SockOpsContext};

    use super::{Adm, Endpoint, Pair, SockKey, ADM_FLAG, VIA_BOTH, VIA_RECEIVER, VIA_SENDER};

    #[map(name = "SERVICE_OF_CGROUP")]
    static SERVICE_OF_CGROUP: HashMap<u64, u32> = HashMap::with_max_entries(65_536, 0);

    #[map(name = "ENDPOINTS")]
    static ENDPOINTS: HashMap<Endpoint, u32> = HashMap::with_max_entries(262_144, 0);

    #[map(name = "PAIRS")]
    static PAIRS: HashMap<Pair, u32> = HashMap::with_max_entries(262_144, 0);

    #[map(name = "ADMS")]
    static ADMS: HashMap<u32, Adm> = HashMap::with_max_entries(65_536, 0);

    #[map(name = "SETTINGS")]
    static SETTINGS: Array<u32> = Array::with_max_entries(1, 0);

    /// Original destinations of steered connects, by socket cookie until the connection is
    /// established, then by its 4-tuple as the client sees it (what the ADM sees, reversed).
    #[map(name = "DST_BY_COOKIE")]
    static DST_BY_COOKIE: LruHashMap<u64, Endpoint> = LruHashMap::with_max_entries(65_536, 0);

    #[map(name = "ORIGINAL_DST")]
    static ORIGINAL_DST: LruHashMap<SockKey, Endpoint> = LruHashMap::with_max_entries(65_536, 0);

    /// The cgroup of a registered caller, by socket cookie until established, then by 4-tuple.
    #[map(name = "CGROUP_BY_COOKIE")]
    static CGROUP_BY_COOKIE: LruHashMap<u64, u64> = LruHashMap::with_max_entries(65_536, 0);

    #[map(name = "PEER_CGROUP")]
    static PEER_CGROUP: LruHashMap<SockKey, u64> = LruHashMap::with_max_entries(65_536, 0);

    /// Connects on undeclared pairs let through, per pair (`--undeclared=allow` logs them).
    #[map(name = "UNDECLARED")]
    static UNDECLARED: LruHashMap<Pair, u64> = LruHashMap::with_max_entries(4_096, 0);

    #[map(name = "SOCKETS")]
    static SOCKETS: SockHash<SockKey> = SockHash::with_max_entries(65_536, 0);

    #[map(name = "COUNTERS")]
    static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(6, 0);

    const AF_INET: u32 = 2;

    /// 127.0.0.0/8, with the address in network order.
    fn loopback(ip: u32) -> bool {
        ip & 0xff == 127
    }

    /// `remote_port` in host order. The kernel loads the socket's 16-bit network-order port and,
    /// on little-endian machines, shifts it into the upper half; swapping the bytes of the 32-bit
    /// value gives the port.
    fn host_port(remote_port: u32) -> u32 {
        u32::from_be(remote_port)
    }

    fn count(index: u32) {
        if let Some(n) = COUNTERS.get_ptr_mut(index) {
            // SAFETY: a per-CPU slot, written by this CPU only.
            unsafe { *n += 1 };
        }
    }

    #[sock_ops]
    pub fn adm_sockops(ctx: SockOpsContext) -> u32 {
        let op = ctx.op();
        if op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB
            && op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB
            && op != BPF_SOCK_OPS_STATE_CB
        {
            return 0;
        }
        if ctx.family() != AF_INET {
            return 0;
        }
        let mut key = SockKey {
            local_ip: ctx.local_ip4(),
            remote_ip: ctx.remote_ip4(),
            local_port: ctx.local_port(),
            remote_port: host_port(ctx.remote_port()),
        };
        if op == BPF_SOCK_OPS_STATE_CB {
            // The connection is gone: its 4-tuple may come back for another caller.
            if ctx.arg(1) == BPF_TCP_CLOSE {
                let _ = PEER_CGROUP.remove(&key);
                let _ = ORIGINAL_DST.remove(&key);
            }
            return 0;
        }
        if op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB {
            // From now on the ADM finds who called and where the call was going by the 4-tuple.
            // SAFETY: the helper reads the socket of this context.
            let cookie = unsafe { bpf_get_socket_cookie(ctx.ops.cast()) };
            let mut known = false;
            // SAFETY: a plain read of a map value.
            if let Some(dst) = unsafe { DST_BY_COOKIE.get(&cookie) } {
                known = ORIGINAL_DST.insert(&key, dst, 0).is_ok();
                let _ = DST_BY_COOKIE.remove(&cookie);
            } else {
                let _ = ORIGINAL_DST.remove(&key);
            }
            // SAFETY: as above.
            if let Some(cgroup) = unsafe { CGROUP_BY_COOKIE.get(&cookie) } {
                known |= PEER_CGROUP.insert(&key, cgroup, 0).is_ok();
                let _ = CGROUP_BY_COOKIE.remove(&cookie);
            } else {
                let _ = PEER_CGROUP.remove(&key);
            }
            if known {
                // Ask for state changes, to forget the entries when the socket closes.
                let _ = ctx.set_cb_flags(BPF_SOCK_OPS_STATE_CB_FLAG as i32);
            }
        }
        if !loopback(key.local_ip) || !loopback(key.remote_ip) {
            return 0;
        }
        // SAFETY: the context's pointer is the kernel's bpf_sock_ops for this call.
        let ops = unsafe { &mut *ctx.ops };
        let _ = SOCKETS.update(&mut key, ops, u64::from(BPF_NOEXIST));
        0
    }

    #[cgroup_sock_addr(connect4)]
    pub fn adm_connect4(ctx: SockAddrContext) -> i32 {
        // SAFETY: the context's pointer is the kernel's bpf_sock_addr for this call.
        let sa = unsafe { &mut *ctx.sock_addr };
        let dst = Endpoint { ip: sa.user_ip4, port: u32::from(u16::from_be(sa.user_port as u16)) };
        // SAFETY: plain reads of map values.
        let Some(&to) = (unsafe { ENDPOINTS.get(&dst) }) else { return 1 };
        // SAFETY: the helper reads the current task's cgroup.
        let cgroup = unsafe { bpf_get_current_cgroup_id() };
        // SAFETY: as above.
        let Some(&registered) = (unsafe { SERVICE_OF_CGROUP.get(&cgroup) }) else { return 1 };
        // SAFETY: the helper reads the socket of this context.
        let cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr.cast()) };
        let _ = CGROUP_BY_COOKIE.insert(&cookie, &cgroup, 0);
        if registered & ADM_FLAG != 0 {
            return 1;
        }
        let pair = Pair { from: registered, to };
        // SAFETY: as above.
        let Some(&route) = (unsafe { PAIRS.get(&pair) }) else {
            if SETTINGS.get(0).copied().unwrap_or(0) == 1 {
                count(4);
                return 0;
            }
            count(5);
            // SAFETY: as above.
            let seen = unsafe { UNDECLARED.get(&pair) }.copied().unwrap_or(0);
            let _ = UNDECLARED.insert(&pair, &(seen + 1), 0);
            return 1;
        };
        let from = registered;
        let target = match route {
            // SAFETY: as above.
            VIA_SENDER | VIA_BOTH => unsafe { ADMS.get(&from) }.map(|a| a.egress),
            // SAFETY: as above.
            VIA_RECEIVER => unsafe { ADMS.get(&to) }.map(|a| a.ingress),
            _ => None,
        };
        match target {
            Some(t) if t.port != 0 => {
                let _ = DST_BY_COOKIE.insert(&cookie, &dst, 0);
                sa.user_ip4 = t.ip;
                sa.user_port = u32::from((t.port as u16).to_be());
                count(2);
            }
            _ => count(3),
        }
        1
    }

    #[sk_msg]
    pub fn adm_redirect(ctx: SkMsgContext) -> u32 {
        // SAFETY: the context's pointer is the kernel's sk_msg_md for this call.
        let md = unsafe { &*ctx.msg };
        // The peer's local end is this socket's remote end.
        let mut peer = SockKey {
            local_ip: md.remote_ip4,
            remote_ip: md.local_ip4,
            local_port: host_port(md.remote_port),
            remote_port: md.local_port,
        };
        if SOCKETS.redirect_msg(&ctx, &mut peer, u64::from(BPF_F_INGRESS)) == i64::from(sk_action::SK_PASS) {
            count(0);
        } else {
            count(1);
        }
        sk_action::SK_PASS
    }

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        loop {}
    }
}

#[cfg(target_arch = "bpf")]
#[unsafe(no_mangle)]
#[unsafe(link_section = "license")]
pub static LICENSE: [u8; 4] = *b"GPL\0";

#[cfg(not(target_arch = "bpf"))]
fn main() {}
