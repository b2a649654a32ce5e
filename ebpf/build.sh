#!/usr/bin/env bash
# Builds the eBPF object ebpf/adm.bpf.o from ebpf/src/main.rs, reproducibly (paths remapped), with
# the pinned nightly and bpf-linker:
#   rustup toolchain install nightly-2026-05-20 --component rust-src
#   cargo install bpf-linker@0.10.4 --locked
#   bash ebpf/build.sh            rebuild and replace the checked-in object
#   bash ebpf/build.sh --check    rebuild and fail if it differs from the checked-in object
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
registry=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/ | head -1)
sep=$'\x1f'
flags="--cfg=bpf_target_arch=\"x86_64\"${sep}-Cdebuginfo=2${sep}-Clink-arg=--btf${sep}--remap-path-prefix=${repo}=/adm${sep}--remap-path-prefix=${registry%/}=/registry"
CARGO_ENCODED_RUSTFLAGS="$flags" cargo +nightly-2026-05-20 build -q --package adm-ebpf --bins --release \
  --target bpfel-unknown-none -Z build-std=core --target-dir target/ebpf
built=target/ebpf/bpfel-unknown-none/release/adm-ebpf
if [ "${1:-}" = --check ]; then
  if cmp -s "$built" ebpf/adm.bpf.o; then
    echo "ebpf/adm.bpf.o is what ebpf/src/main.rs builds to"
  else
    echo "error: ebpf/adm.bpf.o differs from a fresh build of ebpf/src/main.rs; run bash ebpf/build.sh" >&2
    exit 1
  fi
else
  cp "$built" ebpf/adm.bpf.o
  echo "wrote ebpf/adm.bpf.o"
fi
