//! eBPF programs of the ADM data plane, built for the BPF target with the pinned nightly and
//! bpf-linker (see ARCHITECTURE.md); on the host this crate is a stub binary.
//!
//! - `adm_sockops` (sock_ops): registers every established TCP socket whose both ends are on
//!   loopback in the `SOCKETS` hash, keyed by its (local, remote) address and port.
//! - `adm_redirect` (sk_msg, on `SOCKETS`): sends a message straight into the receive queue of
//!   the peer socket (the one whose local end is this socket's remote end), without crossing the
//!   TCP/IP stack; when no peer is known the message passes normally, never dropped.
//!
//! `COUNTERS[0]` counts redirected messages, `COUNTERS[1]` messages passed without a peer.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

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
    };
    use aya_ebpf::macros::{map, sk_msg, sock_ops};
    use aya_ebpf::maps::{PerCpuArray, SockHash};
    use aya_ebpf::programs::{SkMsgContext, SockOpsContext};

    use super::SockKey;

    #[map(name = "SOCKETS")]
    static SOCKETS: SockHash<SockKey> = SockHash::with_max_entries(65_536, 0);

    #[map(name = "COUNTERS")]
    static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(2, 0);

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
        if op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB && op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB {
            return 0;
        }
        if ctx.family() != AF_INET || !loopback(ctx.local_ip4()) || !loopback(ctx.remote_ip4()) {
            return 0;
        }
        let mut key = SockKey {
            local_ip: ctx.local_ip4(),
            remote_ip: ctx.remote_ip4(),
            local_port: ctx.local_port(),
            remote_port: host_port(ctx.remote_port()),
        };
        // SAFETY: the context's pointer is the kernel's bpf_sock_ops for this call.
        let ops = unsafe { &mut *ctx.ops };
        let _ = SOCKETS.update(&mut key, ops, u64::from(BPF_NOEXIST));
        0
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
