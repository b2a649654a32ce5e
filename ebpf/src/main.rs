//! eBPF programs of the data plane. Empty shell: the programs arrive with the eBPF issue (#6).
//! On the BPF target this crate is `no_std`/`no_main`; on the host it is a stub binary.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(not(target_arch = "bpf"))]
fn main() {}
