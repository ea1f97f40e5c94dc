#!/usr/bin/env bash
# HTTP/3 vs HTTP/2 through penstock, on loopback, in one run.
#
# One penstock (GOMAXPROCS=1, pinned to core 0) with one TLS listener serving
# h2 and h3 on the same port, in front of bench/upstream (64-byte JSON). The
# load tool bench/h3load and the upstream share core 1. For each protocol in
# turn, on a freshly started penstock, the same tool measures:
#   1. memory per idle connection: penstock's VmRSS before and while
#      IDLE_CONNS connections that each carried one request are held idle,
#      divided by IDLE_CONNS (what the kernel charges; no forced GC), and the
#      live Go heap and goroutines per connection (go_memstats_alloc_bytes
#      and go_goroutines from the admin API, each read after a forced GC);
#   2. max requests/s: closed loop, CONCURRENCY requests in flight over
#      CONNS connections, MAX_SECONDS;
#   3. latency at a fixed rate: open loop at RATE req/s for WARMUP +
#      DURATION over CONNS connections; P50/P99/P99.9 from each request's
#      intended send time (no coordinated omission).
# Then prints one Markdown table on stdout; progress goes to stderr.
#
# Only loopback addresses are used; every load run is bounded in time, and
# every process started here is stopped by its PID on exit.
#
# Usage: bash bench/h3-vs-h2.sh
# Knobs (environment):
#   RATE=1000 DURATION=10 WARMUP=2 CONNS=10 CONCURRENCY=50 MAX_SECONDS=8
#   IDLE_CONNS=1000 IDLE_HOLD=8 PORT=18443 UPSTREAM_PORT=18081 ADMIN_PORT=19901
#   KEEP=1
set -euo pipefail

RATE=${RATE:-1000}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-10}
CONCURRENCY=${CONCURRENCY:-50}
MAX_SECONDS=${MAX_SECONDS:-8}
IDLE_CONNS=${IDLE_CONNS:-1000}
IDLE_HOLD=${IDLE_HOLD:-8}
PORT=${PORT:-18443}
UPSTREAM_PORT=${UPSTREAM_PORT:-18081}
ADMIN_PORT=${ADMIN_PORT:-19901}
KEEP=${KEEP:-0}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

for v in RATE DURATION CONNS CONCURRENCY MAX_SECONDS IDLE_CONNS IDLE_HOLD PORT UPSTREAM_PORT ADMIN_PORT; do
	[[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 ]] || die "$v must be a positive integer (got '${!v}')"
done
(($(nproc) >= 2)) || die "needs at least 2 cores (found $(nproc))"
command -v go >/dev/null 2>&1 || die "go is not on PATH"
command -v taskset >/dev/null 2>&1 || die "taskset is missing (Debian package util-linux)"
command -v curl >/dev/null 2>&1 || die "curl is missing (Debian package curl)"
# Each idle HTTP/2 connection is a descriptor on both sides.
ulimit -n $((IDLE_CONNS * 2 + 1024)) 2>/dev/null || log "could not raise the descriptor limit; IDLE_CONNS may fail"

work=$(mktemp -d "${TMPDIR:-/tmp}/penstock-h3bench.XXXXXX")
pids=()

stop_pid() { # stop_pid PID: TERM, up to 5 s to exit, then KILL
	local pid=$1 i
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

cleanup() {
	local pid
	for pid in "${pids[@]}"; do
		stop_pid "$pid"
	done
	if [[ $KEEP == 1 ]]; then log "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "building penstock, the upstream and h3load into $work"
(cd "$repo" && go build -o "$work/penstock" ./cmd/penstock && go build -o "$work/upstream" ./bench/upstream &&
	go build -o "$work/h3load" ./bench/h3load)

taskset -c 1 "$work/upstream" -addr "127.0.0.1:$UPSTREAM_PORT" 2>"$work/upstream.log" &
pids+=($!)

cat >"$work/penstock.yaml" <<EOF
listeners:
  - name: bench
    address: 127.0.0.1:$PORT
    protocols: [h1, h2, h3]
    tls: {self_signed: true}
    limits: {idle_timeout: 300s, max_concurrent_streams: 1000}
    http3: {max_idle_timeout: 300s, max_incoming_streams: 1000, handshake_rate_limit: 0}
upstreams:
  - name: up
    endpoints: [{address: 127.0.0.1:$UPSTREAM_PORT}]
    pool: {max_idle_per_endpoint: 128}
routes:
  - name: all
    match: {path_prefix: /}
    upstream: up
logging: {level: warn}
access_log: {enabled: false}
shutdown: {drain_timeout: 2s}
admin: {address: 127.0.0.1:$ADMIN_PORT}
EOF
url="https://127.0.0.1:$PORT/"
start_penstock() { # a fresh process per protocol, so memory figures start equal
	GOMAXPROCS=1 taskset -c 0 "$work/penstock" serve -c "$work/penstock.yaml" >"$work/penstock.out" 2>"$work/penstock.log" &
	ppid=$!
	pids+=("$ppid")
	for ((i = 0; i < 100; i++)); do
		kill -0 "$ppid" 2>/dev/null || die "penstock exited: $(cat "$work/penstock.log")"
		timeout 2 "$work/h3load" -proto h2 -mode max -url "$url" -connections 1 -concurrency 1 -duration 100ms >/dev/null 2>&1 && return
		sleep 0.1
	done
	die "penstock did not answer"
}
load() { taskset -c 1 "$work/h3load" -url "$url" "$@"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$ppid/status"; }
gauge() { # gauge NAME: its value from the admin API's /metrics, after a forced GC
	curl -s -o /dev/null "http://127.0.0.1:$ADMIN_PORT/debug/pprof/heap?gc=1"
	curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk -v k="$1" '$1 == k {printf "%d", $2}'
}
field() { sed -E "s/.*\"$1\":([0-9.]+).*/\\1/" <<<"$2"; }

declare -A rps p50 p99 p999 perconn heap gor errs
for proto in h2 h3; do
	start_penstock
	log "$proto: $IDLE_CONNS idle connections on a fresh penstock"
	sleep 1
	before=$(rss_kib)
	heap_before=$(gauge go_memstats_alloc_bytes)
	gor_before=$(gauge go_goroutines)
	ready="$work/idle-$proto"
	load -proto "$proto" -mode idle -connections "$IDLE_CONNS" -hold "${IDLE_HOLD}s" >"$ready" 2>"$work/idle-$proto.log" &
	lpid=$!
	pids+=("$lpid")
	for ((i = 0; i < 600; i++)); do
		grep -q ready "$ready" 2>/dev/null && break
		kill -0 "$lpid" 2>/dev/null || die "h3load idle failed: $(cat "$work/idle-$proto.log")"
		sleep 0.1
	done
	sleep 1
	during=$(rss_kib)
	perconn[$proto]=$(awk -v a="$before" -v b="$during" -v n="$IDLE_CONNS" 'BEGIN {printf "%.1f", (b - a) / n}')
	heap[$proto]=$(awk -v a="$heap_before" -v b="$(gauge go_memstats_alloc_bytes)" -v n="$IDLE_CONNS" 'BEGIN {printf "%.1f", (b - a) / n / 1024}')
	gor[$proto]=$(awk -v a="$gor_before" -v b="$(gauge go_goroutines)" -v n="$IDLE_CONNS" 'BEGIN {printf "%.1f", (b - a) / n}')
	wait "$lpid" || true
	log "$proto: RSS $before KiB -> $during KiB"

	log "$proto: warm-up and max requests/s (${MAX_SECONDS}s, $CONCURRENCY in flight over $CONNS connections)"
	load -proto "$proto" -mode max -connections "$CONNS" -concurrency "$CONCURRENCY" -duration 2s >/dev/null
	out=$(load -proto "$proto" -mode max -connections "$CONNS" -concurrency "$CONCURRENCY" -duration "${MAX_SECONDS}s")
	log "$out"
	rps[$proto]=$(field rps "$out")
	e=$(field errors "$out")
	log "$proto: fixed rate $RATE req/s for ${WARMUP}s + ${DURATION}s over $CONNS connections"
	out=$(load -proto "$proto" -mode rate -rate "$RATE" -connections "$CONNS" -warmup "${WARMUP}s" -duration "${DURATION}s")
	log "$out"
	p50[$proto]=$(field p50_us "$out")
	p99[$proto]=$(field p99_us "$out")
	p999[$proto]=$(field p999_us "$out")
	errs[$proto]=$((e + $(field errors "$out")))
	stop_pid "$ppid"
done

cat <<EOF
| protocol | max req/s | P50 µs at $RATE req/s | P99 µs | P99.9 µs | RSS per idle conn (KiB) | live heap per idle conn (KiB) | goroutines per idle conn | errors |
|---|---|---|---|---|---|---|---|---|
| HTTP/2 | ${rps[h2]} | ${p50[h2]} | ${p99[h2]} | ${p999[h2]} | ${perconn[h2]} | ${heap[h2]} | ${gor[h2]} | ${errs[h2]} |
| HTTP/3 | ${rps[h3]} | ${p50[h3]} | ${p99[h3]} | ${p999[h3]} | ${perconn[h3]} | ${heap[h3]} | ${gor[h3]} | ${errs[h3]} |
EOF
