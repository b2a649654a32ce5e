#!/usr/bin/env bash
# admd against nginx as a plain reverse proxy, side by side in one run, on loopback.
#
#   bash benches/proxy/run.sh            (needs: nginx and wrk from Debian, taskset; a 2-core machine)
#
# Fixed rates: `adm-bench load` (open loop, so queueing shows; RATES="2000 10000 20000").
# Four paths to the same upstream (an nginx answering 200 from memory):
#   direct   client -> upstream
#   admd     client -> admd (a 3-policy chain: allow, rate_limit, set_header) -> upstream
#   hyper    the same admd with --hyper-only (its general path, which HTTP/2 and gRPC take)
#   nginx    client -> nginx (proxy_pass, upstream keepalive) -> upstream
# and, in the latency runs, two floors: proxies that only copy bytes (`adm-bench relay`), one on
# tokio as admd is built, one with blocking threads. No HTTP proxy on a stack adds less than its
# relay, so they show what the stack leaves for the HTTP path.
#   relay    client -> tokio byte relay -> upstream
#   blocking client -> blocking byte relay -> upstream
# Latency: wrk with one connection, every process pinned to CPU 0 (waking a thread on the other
# CPU costs 50-80 us here, which would drown the difference). Throughput: the proxy alone on CPU 1
# (one core), wrk and the upstream on CPU 0, 64 connections. CPU seconds per 100k requests come
# from /proc (utime + stime of the proxy's processes); RSS from VmRSS. As root (unless NO_EBPF=1)
# the latency runs again with every process in one mesh cgroup under `admd ebpf attach`, so each
# loopback hop is redirected by the eBPF data plane: admd as the mesh deploys it, against nginx
# both with the same redirect and as a sidecar mesh runs it (plain TCP: a second upstream and
# nginx outside the mesh's cgroup), all in the same interleaved rounds.
set -euo pipefail
cd "$(dirname "$0")/../.."
for tool in nginx wrk taskset; do
  command -v "$tool" >/dev/null || { echo "error: $tool is missing (apt-get install nginx wrk util-linux)" >&2; exit 2; }
done
DURATION=${DURATION:-10}
cargo build --release -q -p admd -p adm-bench
work=$(mktemp -d)
# Killed processes leave their cgroup once reaped: try for a few seconds.
remove_cgroup() {
  for _ in $(seq 50); do
    rmdir "$cgroot"/* 2>/dev/null || true; rmdir "$cgroot" 2>/dev/null && return 0; sleep 0.1
  done
  echo "warning: could not remove $cgroot" >&2
}
cleanup() {
  for pidfile in "$work"/*.pid; do [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true; done
  [ -n "${ADMD:-}" ] && kill "$ADMD" 2>/dev/null || true
  [ -n "${HYPER:-}" ] && kill "$HYPER" 2>/dev/null || true
  for pid in ${RELAY:-} ${BLOCKING:-}; do kill "$pid" 2>/dev/null || true; done
  [ -n "${ATTACH:-}" ] && kill "$ATTACH" 2>/dev/null && sleep 0.5 || true
  [ -n "${cgroot:-}" ] && remove_cgroup
  mountpoint -q "$work/bpf" && umount "$work/bpf" || true
  rm -rf "$work"
}
trap cleanup EXIT

nginx_conf() { # name listen body [upstream]
  cat > "$work/$1.conf" <<CONF
daemon on;
worker_processes 1;
pid $work/$1.pid;
error_log $work/$1.error.log;
events { worker_connections 4096; }
http {
  access_log off;
  upstream backend { server ${4:-127.0.0.61:8080}; keepalive 128; }
  server {
    listen $2;
    $3
  }
}
CONF
}
nginx_conf upstream 127.0.0.61:8080 'location / { return 200 "ok"; }'
PROXY_PASS='location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }'
nginx_conf proxy 127.0.0.60:8081 "$PROXY_PASS"
# The same pair outside the mesh's cgroup, for the data plane's runs: nginx as a sidecar mesh runs it.
nginx_conf upstream-tcp 127.0.0.62:8080 'location / { return 200 "ok"; }'
nginx_conf proxy-tcp 127.0.0.60:8082 "$PROXY_PASS" 127.0.0.62:8080
taskset -c 0 nginx -c "$work/upstream.conf"

cat > "$work/admd.json" <<JSON
{
  "schema_version": 1,
  "service": "svc",
  "listeners": { "ingress": { "address": "127.0.0.60", "port": 15006 }, "egress": null },
  "upstreams": [{ "service": "svc", "protocol": "http", "endpoints": [{ "address": "127.0.0.61", "port": 8080 }] }],
  "peers": [{ "service": "client", "addresses": ["127.0.0.1"] }],
  "routes": [{ "from": "client", "to": "svc", "direction": "ingress", "forward": { "to": "service", "service": "svc" },
    "chains": [{ "methods": null, "chain": [
      { "policy": "acl", "kind": "allow", "unit": "call client -> svc", "args": { "from": [{ "service": "client", "members": ["client"] }] } },
      { "policy": "quota", "kind": "rate_limit", "unit": "calls into svc", "args": { "limit": { "per_second": 1000000000.0 }, "burst": 1000000 } },
      { "policy": "tag", "kind": "set_header", "unit": "call client -> svc", "args": { "name": "x-mesh", "value": "adm" } }
    ] }] }]
}
JSON

sed 's/"port": 15006/"port": 15016/' "$work/admd.json" > "$work/admd-hyper.json"

rss_kb() { awk '/VmRSS/ { print $2 }' "/proc/$1/status"; }
cpu_ticks() { local t=0; for p in "$@"; do t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat"))); done; echo "$t"; }
# wrk's latency percentile in microseconds, and its request count
percentile() { awk -v q="$2" '$1 == q { v = $2; if (v ~ /us$/) { sub(/us/, "", v); print v } else if (v ~ /ms$/) { sub(/ms/, "", v); print v * 1000 } else if (v ~ /s$/) { sub(/s/, "", v); print v * 1000000 } }' "$1"; }
requests() { awk '/requests in/ { print $1 }' "$1"; }
rps() { awk '/Requests\/sec/ { print $2 }' "$1"; }

start_proxies() { # cpu
  taskset -c "$1" target/release/admd --threads 1 --config "$work/admd.json" --admin 127.0.0.60:15020 2>"$work/admd.log" &
  ADMD=$!
  taskset -c "$1" target/release/admd --threads 1 --hyper-only --config "$work/admd-hyper.json" --admin 127.0.0.60:15021 2>"$work/admd-hyper.log" &
  HYPER=$!
  taskset -c "$1" nginx -c "$work/proxy.conf"
  taskset -c "$1" target/release/adm-bench relay 127.0.0.60:15030 127.0.0.61:8080 --mode tokio 2>/dev/null &
  RELAY=$!
  taskset -c "$1" target/release/adm-bench relay 127.0.0.60:15031 127.0.0.61:8080 --mode blocking 2>/dev/null &
  BLOCKING=$!
  for _ in $(seq 50); do curl -s -o /dev/null http://127.0.0.60:15006/ 2>/dev/null && break; sleep 0.1; done
  kill -0 "$ADMD" 2>/dev/null || { echo "error: admd did not start:" >&2; cat "$work/admd.log" >&2; exit 2; }
}
stop_proxies() {
  for pid in ${ADMD:-} ${HYPER:-} ${RELAY:-} ${BLOCKING:-}; do kill "$pid"; wait "$pid" 2>/dev/null || true; done
  ADMD= HYPER= RELAY= BLOCKING=
  kill "$(cat "$work/proxy.pid")"; sleep 0.5
}
nginx_pids() { echo "$(cat "$work/proxy.pid") $(pgrep -P "$(cat "$work/proxy.pid")" | tr '\n' ' ')"; }

declare -A URL=([direct]=http://127.0.0.61:8080/ [admd]=http://127.0.0.60:15006/ [hyper]=http://127.0.0.60:15016/ [nginx]=http://127.0.0.60:8081/
  [relay]=http://127.0.0.60:15030/ [blocking]=http://127.0.0.60:15031/)

ROUNDS=${ROUNDS:-5}
# The median over interleaved rounds of a path's percentile (`median_pct lat admd 50%`): the
# paths share whatever the machine does meanwhile, and one bad second does not decide.
median_pct() {
  for r in $(seq "$ROUNDS"); do percentile "$work/$1-$2-$r.txt" "$3"; done | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
# Latency rounds of every path in $2.. into files named $1-<path>-<round>.txt; wrk starts in
# the mesh's cgroup for the paths in MESH (the data plane's runs).
declare -A MESH=()
latency_rounds() {
  local prefix=$1; shift
  for r in $(seq "$ROUNDS"); do
    for name in "$@"; do
      if [ -n "${MESH[$name]:-}" ]; then run=(in_mesh); else run=(); fi
      "${run[@]}" taskset -c 0 wrk -t1 -c1 -d"$((DURATION / ROUNDS > 0 ? DURATION / ROUNDS : 1))s" --latency "${URL[$name]}" > "$work/$prefix-$name-$r.txt"
    done
  done
}

echo "== latency: 1 connection, all on CPU 0, ${DURATION}s each in $ROUNDS interleaved rounds (medians)"
start_proxies 0
idle_admd=$(rss_kb "$ADMD")
latency_rounds lat direct admd hyper nginx relay blocking
stop_proxies
printf '%-8s %10s %10s\n' path "p50 (us)" "p99 (us)"
for name in direct admd hyper nginx relay blocking; do
  printf '%-8s %10s %10s\n' "$name" "$(median_pct lat "$name" 50%)" "$(median_pct lat "$name" 99%)"
done
d50=$(median_pct lat direct 50%); d99=$(median_pct lat direct 99%)
n50=$(median_pct lat nginx 50%); n99=$(median_pct lat nginx 99%)
for name in admd hyper relay blocking; do
  awk -v name="$name" -v d50="$d50" -v d99="$d99" -v a50="$(median_pct lat "$name" 50%)" -v a99="$(median_pct lat "$name" 99%)" -v n50="$n50" -v n99="$n99" 'BEGIN {
    printf "added p50: %s %.1f us, nginx %.1f us (ratio %.2f); added p99: %s %.1f us, nginx %.1f us (ratio %.2f)\n",
      name, a50 - d50, n50 - d50, (a50 - d50) / (n50 - d50), name, a99 - d99, n99 - d99, (a99 - d99) / (n99 - d99) }'
done

echo "== fixed request rates (open loop, latency from each request's scheduled start): servers on CPU 0, 8 client connections on CPU 1, ${DURATION}s each"
start_proxies 0
for rate in ${RATES:-2000 10000 20000}; do
  for name in direct admd hyper nginx; do
    printf '%-8s ' "$name"
    hostport=${URL[$name]#http://}
    taskset -c 1 target/release/adm-bench load "${hostport%/}" --rate "$rate" --duration "$DURATION" 2>&1 | tr -d '\n'
    echo
  done
done
stop_proxies

if [ "$(id -u)" = 0 ] && [ -z "${NO_EBPF:-}" ]; then
  # The same latency runs with the eBPF data plane: every process starts in one mesh cgroup, so
  # each loopback hop (client -> proxy -> upstream and back) is redirected socket to socket.
  echo "== latency with the eBPF data plane (sk_msg redirect of every hop), all on CPU 0, ${DURATION}s each in $ROUNDS rounds"
  cat > "$work/maps.json" <<JSON
{ "schema_version": 1, "services": [{ "id": 0, "name": "bench", "port": 1, "endpoints": [], "adm": null }], "pairs": [] }
JSON
  cgroot="$(awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts)/adm-proxy-bench-$$"
  target/release/admd ebpf attach --maps "$work/maps.json" --cgroup-root "$cgroot" --pin "$work/bpf/adm" 2>"$work/attach.log" &
  ATTACH=$!
  for _ in $(seq 50); do grep -q attached "$work/attach.log" 2>/dev/null && break; sleep 0.1; done
  in_mesh() { target/release/admd ebpf exec --service bench --cgroup-root "$cgroot" -- "$@"; }
  kill "$(cat "$work/upstream.pid")"; sleep 0.5
  in_mesh taskset -c 0 nginx -c "$work/upstream.conf"
  target/release/admd ebpf exec --service bench --cgroup-root "$cgroot" -- \
    taskset -c 0 target/release/admd --threads 1 --config "$work/admd.json" --admin 127.0.0.60:15020 2>"$work/admd-bpf.log" &
  ADMD=$!
  in_mesh taskset -c 0 nginx -c "$work/proxy.conf"
  for _ in $(seq 50); do curl -s -o /dev/null http://127.0.0.60:15006/ 2>/dev/null && break; sleep 0.1; done
  # In the same rounds, outside the mesh: the plain direct path and nginx as a sidecar (TCP).
  taskset -c 0 nginx -c "$work/upstream-tcp.conf"
  taskset -c 0 nginx -c "$work/proxy-tcp.conf"
  URL[direct-tcp]=http://127.0.0.62:8080/ URL[nginx-tcp]=http://127.0.0.60:8082/
  MESH=([direct]=1 [admd]=1 [nginx]=1)
  latency_rounds bpf direct admd nginx direct-tcp nginx-tcp
  MESH=()
  stop_proxies
  for conf in upstream-tcp proxy-tcp; do kill "$(cat "$work/$conf.pid")"; done
  target/release/admd ebpf status --pin "$work/bpf/adm" | head -2
  printf '%-10s %10s %10s\n' path "p50 (us)" "p99 (us)"
  for name in direct admd nginx direct-tcp nginx-tcp; do
    printf '%-10s %10s %10s\n' "$name" "$(median_pct bpf "$name" 50%)" "$(median_pct bpf "$name" 99%)"
  done
  awk -v t50="$(median_pct bpf direct-tcp 50%)" -v t99="$(median_pct bpf direct-tcp 99%)" \
    -v n50="$(median_pct bpf nginx-tcp 50%)" -v n99="$(median_pct bpf nginx-tcp 99%)" \
    -v a50="$(median_pct bpf admd 50%)" -v a99="$(median_pct bpf admd 99%)" \
    -v b50="$(median_pct bpf direct 50%)" -v bn50="$(median_pct bpf nginx 50%)" 'BEGIN {
    printf "admd with the data plane vs nginx without it (a sidecar mesh), added over the plain direct path, same rounds:\n"
    printf "  p50: admd %.1f us, nginx %.1f us (ratio %.2f); p99: admd %.1f us, nginx %.1f us (ratio %.2f)\n",
      a50 - t50, n50 - t50, (a50 - t50) / (n50 - t50), a99 - t99, n99 - t99, (a99 - t99) / (n99 - t99)
    printf "  with the data plane for both: admd %.1f us, nginx %.1f us added at p50 (ratio %.2f)\n",
      a50 - b50, bn50 - b50, (a50 - b50) / (bn50 - b50) }'
  kill "$ATTACH"; wait "$ATTACH" 2>/dev/null || true; ATTACH=
  # The upstream ran in the mesh cgroup: restart it outside for the throughput runs.
  kill "$(cat "$work/upstream.pid")" 2>/dev/null || true; sleep 0.5
  remove_cgroup; cgroot=
  taskset -c 0 nginx -c "$work/upstream.conf"
fi

echo "== throughput: the proxy alone on CPU 1, wrk and the upstream on CPU 0, 64 connections, ${DURATION}s each in $ROUNDS interleaved rounds"
# When CPU 0 (the client and the upstream) is the busier one, req/s measures it, not the proxy:
# a proxy's capacity on its core is then the requests per second of its own CPU time.
cpu0_busy() { awk '$1 == "cpu0" { print $2 + $3 + $4 + $7 + $8, $5 + $6 }' /proc/stat; }
start_proxies 1
proxy_pids() { case $1 in admd) echo "$ADMD" ;; hyper) echo "$HYPER" ;; nginx) nginx_pids ;; esac; }
declare -A TICKS=() COUNT=() BUSY0=() ALL0=()
for r in $(seq "$ROUNDS"); do
  for name in admd hyper nginx; do
    pids=$(proxy_pids "$name")
    before=$(cpu_ticks $pids)
    read -r busy0 idle0 < <(cpu0_busy)
    taskset -c 0 wrk -t1 -c64 -d"$((DURATION / ROUNDS > 0 ? DURATION / ROUNDS : 1))s" "${URL[$name]}" > "$work/tp-$name-$r.txt"
    after=$(cpu_ticks $pids)
    read -r busy1 idle1 < <(cpu0_busy)
    BUSY0[$name]=$(( ${BUSY0[$name]:-0} + busy1 - busy0 ))
    ALL0[$name]=$(( ${ALL0[$name]:-0} + busy1 - busy0 + idle1 - idle0 ))
    TICKS[$name]=$(( ${TICKS[$name]:-0} + after - before ))
    COUNT[$name]=$(( ${COUNT[$name]:-0} + $(requests "$work/tp-$name-$r.txt") ))
  done
done
for name in admd hyper nginx; do
  pids=$(proxy_pids "$name")
  rss=0; for p in $pids; do rss=$((rss + $(rss_kb "$p"))); done
  median=$(for r in $(seq "$ROUNDS"); do rps "$work/tp-$name-$r.txt"; done | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
  awk -v name="$name" -v r="$median" -v t="${TICKS[$name]}" -v n="${COUNT[$name]}" -v hz="$(getconf CLK_TCK)" -v rss="$rss" \
    -v secs="$(( (DURATION / ROUNDS > 0 ? DURATION / ROUNDS : 1) * ROUNDS ))" -v b0="${BUSY0[$name]}" -v a0="${ALL0[$name]}" \
    'BEGIN { printf "%-8s %8.0f req/s (median)  %5.2f CPU s per 100k requests = %6.0f req per CPU second  proxy busy %3.0f%%, CPU 0 %3.0f%%  RSS %.1f MB\n",
      name, r, t / hz / n * 100000, n / (t / hz), t / hz / secs * 100, b0 / a0 * 100, rss / 1024 }'
done
stop_proxies
awk -v i="$idle_admd" 'BEGIN { printf "admd idle RSS: %.1f MB\n", i / 1024 }'
