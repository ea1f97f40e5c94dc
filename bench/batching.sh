#!/usr/bin/env bash
# Dynamic batching in front of a model whose cost is per batch.
#
# The demo backend's "encoder" model (internal/demo/batched.go) takes 20 ms
# + 0.5 ms per instance for each request and runs one request at a time:
# alone, its capacity is about 48 single-instance requests a second; fed
# batches of 64, about 1200 instances a second. penstock forwards to it on
# loopback, in two cases, each with a freshly started backend and penstock:
#
#   plain    the route forwards each request as it comes
#   batched  the same route with batch: {format: kserve_v1,
#            max_batch_size: MAX_BATCH, max_queue_delay: DELAY}
#
# `penstock bench run` drives the same open-loop load at both (one instance
# per request, latency from each request's intended send time), stepping
# the rate up (RATES_PLAIN, RATES_BATCHED; each step WARMUP + DURATION
# seconds) until two steps in a row miss the bound. A step passes when its
# P99 is at most P99_MS and at least 99 % of its requests got 200. The table
# gives, per case, the highest passing step's throughput (200s a second),
# P50 and P99, and the ratio batched / plain.
#
# Then the priority queue, in front of bench/capacity (WORKERS workers of
# SERVICE_MS each, FIFO beyond them; capacity WORKERS × 1000 / SERVICE_MS
# req/s), with concurrency.max_in_flight = WORKERS:
#
#   unloaded     interactive requests alone (IRATE req/s), through the queue
#   queue-flood  the same, while batch-class requests (x-priority: batch)
#                arrive at FLOOD × capacity
#   reserve-flood  the same flood, with RESERVE of the WORKERS slots kept
#                for the interactive level (queue.levels[].reserve)
#   fifo-flood   the same flood, with the plain FIFO concurrency queue
#                (max_queue 200, queue_timeout 1s) instead of the
#                priority queue
#
# It prints the interactive requests' P50 and P99 in each case (the issue's
# bound: the flooded P99 within 2× the unloaded one) and what the batch
# class got (200s, and 503s by reason; none left to time out).
#
# Only loopback addresses are used; every load run is bounded in time, and
# every process started here is stopped by its PID on exit.
#
# Usage: bash bench/batching.sh
# Knobs (environment):
#   RATES_PLAIN="10 20 30 35 40 45 50 55" RATES_BATCHED="100 200 300 400 500
#   600 700 800 900 1000 1100 1200" P99_MS=200 MAX_BATCH=64 DELAY=5ms
#   DURATION=6 WARMUP=2 CONNECTIONS=400 PORT=18490 BACKEND_PORT=18491 KEEP=1
#   PRIORITY=1 (0 skips the queue part) BATCHING=1 (0 skips the batching
#   part) WORKERS=8 SERVICE_MS=40 FLOOD=3 IRATE=20 PDURATION=10 RESERVE=2
set -euo pipefail

RATES_PLAIN=${RATES_PLAIN:-10 20 30 35 40 45 50 55}
RATES_BATCHED=${RATES_BATCHED:-100 200 300 400 500 600 700 800 900 1000 1100 1200}
P99_MS=${P99_MS:-200}
MAX_BATCH=${MAX_BATCH:-64}
DELAY=${DELAY:-5ms}
DURATION=${DURATION:-6}
WARMUP=${WARMUP:-2}
CONNECTIONS=${CONNECTIONS:-400}
PORT=${PORT:-18490}
BACKEND_PORT=${BACKEND_PORT:-18491}
KEEP=${KEEP:-0}
PRIORITY=${PRIORITY:-1}
BATCHING=${BATCHING:-1}
RESERVE=${RESERVE:-2}
WORKERS=${WORKERS:-8}
SERVICE_MS=${SERVICE_MS:-40}
FLOOD=${FLOOD:-3}
IRATE=${IRATE:-20}
PDURATION=${PDURATION:-10}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

for v in P99_MS MAX_BATCH DURATION WARMUP CONNECTIONS PORT BACKEND_PORT WORKERS SERVICE_MS FLOOD IRATE PDURATION RESERVE; do
	[[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 ]] || die "$v must be a positive integer (got '${!v}')"
done
((DURATION <= 60)) || die "DURATION is at most 60 (seconds)"
command -v go >/dev/null 2>&1 || die "go is not on PATH"
command -v curl >/dev/null 2>&1 || die "curl is missing (Debian package curl)"
command -v python3 >/dev/null 2>&1 || die "python3 is missing (Debian package python3)"

tmp=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	if [[ $KEEP == 1 ]]; then
		log "kept $tmp"
	else
		rm -rf "$tmp"
	fi
}
trap cleanup EXIT

log "building penstock"
(cd "$repo" && go build -o "$tmp/penstock" ./cmd/penstock && go build -o "$tmp/capacity" ./bench/capacity)

stop() {
	kill "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
	local keep=()
	for p in "${pids[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
	pids=("${keep[@]}")
}

wait_port() {
	for _ in $(seq 100); do
		curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0
		sleep 0.1
	done
	die "127.0.0.1:$1 did not answer"
}

body='{"instances":[[1,2,3,4]]}'
url="http://127.0.0.1:$PORT/v1/batched/encoder/infer"

run_case() {
	local name=$1 rates=$2 batch=""
	if [[ $name == batched ]]; then
		batch="    batch: {format: kserve_v1, max_batch_size: $MAX_BATCH, max_queue_delay: $DELAY, max_queue: 100000}"
	fi
	cat >"$tmp/$name.yaml" <<EOF
listeners: [{name: main, address: "127.0.0.1:$PORT"}]
upstreams:
  - name: model
    endpoints: [{address: "127.0.0.1:$BACKEND_PORT"}]
    pool: {max_idle_per_endpoint: 2048}
routes:
  - name: infer
    match: {path_prefix: /}
    upstream: model
    timeouts: {response_header: 300s}
$batch
access_log: {enabled: false}
logging: {level: error}
EOF
	"$tmp/penstock" demo-backend -addr "127.0.0.1:$BACKEND_PORT" >"$tmp/$name.backend.log" 2>&1 &
	local be=$!
	pids+=("$be")
	"$tmp/penstock" serve -c "$tmp/$name.yaml" >"$tmp/$name.penstock.log" 2>&1 &
	local ps=$!
	pids+=("$ps")
	wait_port "$BACKEND_PORT"
	wait_port "$PORT"
	local misses=0
	for rate in $rates; do
		log "$name: open loop at $rate req/s for ${WARMUP}s + ${DURATION}s"
		"$tmp/penstock" bench run --method POST --body "$body" -H 'Content-Type: application/json' \
			--rate "$rate" --duration "${DURATION}s" --warmup "${WARMUP}s" \
			--connections "$CONNECTIONS" --timeout 10s --quiet --json "$tmp/$name.$rate.json" "$url" >&2
		echo "$rate" >>"$tmp/$name.rates"
		if python3 - "$tmp/$name.$rate.json" "$P99_MS" <<'EOF'; then misses=0; else misses=$((misses + 1)); fi
import json, sys
r = json.load(open(sys.argv[1]))
ok = r["status"].get("200", 0)
sys.exit(0 if r["requests"] and ok >= 0.99 * r["requests"] and r["phases"]["total"]["p99_ms"] <= float(sys.argv[2]) else 1)
EOF
		((misses < 2)) || break
		sleep 1 # the backlog of a missed step drains
	done
	stop "$ps"
	stop "$be"
}

if ((BATCHING == 1)); then
run_case plain "$RATES_PLAIN"
run_case batched "$RATES_BATCHED"

python3 - "$tmp" "$P99_MS" <<'EOF'
import json, sys

tmp, bound = sys.argv[1], float(sys.argv[2])
best = {}
print(f"| case | highest rate with P99 ≤ {bound:g} ms | throughput (200/s) | P50 | P99 | steps passed |")
print("|---|---:|---:|---:|---:|---|")
for case in ("plain", "batched"):
    rates = [int(x) for x in open(f"{tmp}/{case}.rates").read().split()]
    passed = []
    for rate in rates:
        r = json.load(open(f"{tmp}/{case}.{rate}.json"))
        ok = r["status"].get("200", 0)
        t = r["phases"]["total"]
        good = r["requests"] and ok >= 0.99 * r["requests"] and t["p99_ms"] <= bound
        if good:
            passed.append(rate)
            best[case] = (rate, ok / r["seconds"], t["p50_ms"], t["p99_ms"])
    if case in best:
        rate, thr, p50, p99 = best[case]
        print(f"| {case} | {rate} req/s | {thr:.0f} | {p50:.1f} ms | {p99:.1f} ms | {' '.join(map(str, passed))} |")
    else:
        print(f"| {case} | none | — | — | — | — |")
if "plain" in best and "batched" in best:
    print(f"\nbatched / plain throughput at P99 ≤ {bound:g} ms: {best['batched'][1] / best['plain'][1]:.1f}×")
EOF
fi

((PRIORITY == 1)) || exit 0

capacity=$((WORKERS * 1000 / SERVICE_MS))
flood=$((capacity * FLOOD))
log "priority: capacity $capacity req/s, flood $flood req/s of batch class, interactive $IRATE req/s"

run_priority() {
	local name=$1 admission
	case $name in
	fifo-flood) admission="    concurrency: {max_in_flight: $WORKERS, max_queue: 200, queue_timeout: 1s}" ;;
	*)
		local reserve=0
		[[ $name == reserve-flood ]] && reserve=$RESERVE
		admission="    concurrency: {max_in_flight: $WORKERS}
    queue:
      levels: [{name: interactive, max_queue: 100, max_wait: 5s, reserve: $reserve}, {name: batch, max_queue: 50, max_wait: 1s}]
      level_header: x-priority"
		;;
	esac
	cat >"$tmp/$name.yaml" <<EOF
listeners: [{name: main, address: "127.0.0.1:$PORT"}]
upstreams:
  - name: model
    endpoints: [{address: "127.0.0.1:$BACKEND_PORT"}]
    pool: {max_idle_per_endpoint: 2048}
routes:
  - name: infer
    match: {path_prefix: /}
    upstream: model
    timeouts: {response_header: 300s}
$admission
access_log: {enabled: false}
logging: {level: error}
EOF
	"$tmp/capacity" -addr "127.0.0.1:$BACKEND_PORT" -workers "$WORKERS" -service "${SERVICE_MS}ms" 2>"$tmp/$name.capacity.log" &
	local be=$!
	pids+=("$be")
	"$tmp/penstock" serve -c "$tmp/$name.yaml" >"$tmp/$name.penstock.log" 2>&1 &
	local ps=$!
	pids+=("$ps")
	wait_port "$BACKEND_PORT"
	wait_port "$PORT"
	local fl=""
	if [[ $name != unloaded ]]; then
		"$tmp/penstock" bench run -H 'x-priority: batch' --rate "$flood" --duration "$((WARMUP + PDURATION + 1))s" \
			--connections 2000 --timeout 30s --quiet --json "$tmp/$name.flood.json" "http://127.0.0.1:$PORT/v1/infer" >/dev/null 2>&1 &
		fl=$!
		pids+=("$fl")
	fi
	log "$name: interactive at $IRATE req/s for ${WARMUP}s + ${PDURATION}s"
	"$tmp/penstock" bench run -H 'x-priority: interactive' --rate "$IRATE" --duration "${PDURATION}s" --warmup "${WARMUP}s" \
		--connections 50 --timeout 30s --quiet --json "$tmp/$name.json" "http://127.0.0.1:$PORT/v1/infer" >&2
	if [[ -n $fl ]]; then
		wait "$fl" || true
	fi
	stop "$ps"
	stop "$be"
}

for c in unloaded queue-flood reserve-flood fifo-flood; do
	run_priority "$c"
done

python3 - "$tmp" <<'EOF'
import json, os, sys

tmp = sys.argv[1]
base = json.load(open(f"{tmp}/unloaded.json"))["phases"]["total"]["p99_ms"]
print()
print("| case | interactive P50 | interactive P99 | P99 / unloaded | interactive non-200 | batch class: responses by status |")
print("|---|---:|---:|---:|---:|---|")
for case in ("unloaded", "queue-flood", "reserve-flood", "fifo-flood"):
    r = json.load(open(f"{tmp}/{case}.json"))
    t = r["phases"]["total"]
    bad = r["requests"] - r["status"].get("200", 0)
    batch = "—"
    if os.path.exists(f"{tmp}/{case}.flood.json"):
        f = json.load(open(f"{tmp}/{case}.flood.json"))
        batch = ", ".join(f"{k}: {v}" for k, v in sorted(f["status"].items()))
        other = {k: v for k, v in f["errors"].items() if not k.startswith("status_")}
        if other:
            batch += ", " + ", ".join(f"{k}: {v}" for k, v in sorted(other.items()))
    print(f"| {case} | {t['p50_ms']:.1f} ms | {t['p99_ms']:.1f} ms | {t['p99_ms'] / base:.2f}× | {bad} | {batch} |")
EOF
