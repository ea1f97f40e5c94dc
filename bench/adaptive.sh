#!/usr/bin/env bash
# Adaptive concurrency in front of an upstream with a fixed capacity.
#
# bench/capacity is a model server with WORKERS workers, each request
# holding one for SERVICE_MS (±10 %); requests beyond the workers wait in
# arrival order, so its capacity is WORKERS × 1000 / SERVICE_MS requests/s.
# penstock forwards to it on loopback and `penstock bench run` drives it open
# loop (latency from each request's intended send time), in these cases, each
# with a freshly started upstream and penstock:
#
#   unloaded  UNLOADED × capacity, no limit: the upstream's no-load latency
#   none      LOAD × capacity, no limit: the backlog grows for the whole run
#   adaptive  LOAD × capacity, concurrency.adaptive on (the defaults, with
#             min_limit 3 and initial_limit WORKERS)
#   fixed     LOAD × capacity, concurrency.max_in_flight = WORKERS
#   slowdown  as adaptive, but the upstream's service time doubles halfway
#             through the measured part (its capacity halves); the admitted
#             latency is reported for each half (not in the default CASES)
#
# For each it prints the client's view (all responses: P50, P99, max, %
# 503) and, from penstock's access log, the latency of the admitted (200)
# requests of the measured part: the figure the adaptive limit is meant to
# keep near the unloaded one, while the excess gets fast 503s.
#
# Only loopback addresses are used; every load run is bounded in time, and
# every process started here is stopped by its PID on exit.
#
# Usage: bash bench/adaptive.sh
# Knobs (environment):
#   WORKERS=16 SERVICE_MS=40 LOAD=2 UNLOADED=0.25 DURATION=20 WARMUP=3
#   CASES="unloaded none adaptive fixed" PORT=18390 UPSTREAM_PORT=18391
#   ADMIN_PORT=18392 KEEP=1
set -euo pipefail

WORKERS=${WORKERS:-16}
SERVICE_MS=${SERVICE_MS:-40}
LOAD=${LOAD:-2}
UNLOADED=${UNLOADED:-0.25}
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-3}
CASES=${CASES:-unloaded none adaptive fixed}
PORT=${PORT:-18390}
UPSTREAM_PORT=${UPSTREAM_PORT:-18391}
ADMIN_PORT=${ADMIN_PORT:-18392}
KEEP=${KEEP:-0}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

for v in WORKERS SERVICE_MS DURATION WARMUP PORT UPSTREAM_PORT ADMIN_PORT; do
	[[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 ]] || die "$v must be a positive integer (got '${!v}')"
done
((DURATION <= 120)) || die "DURATION is at most 120 (seconds)"
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

log "building penstock and bench/capacity"
(cd "$repo" && go build -o "$tmp/penstock" ./cmd/penstock && go build -o "$tmp/capacity" ./bench/capacity)

capacity=$(python3 -c "print($WORKERS * 1000 / $SERVICE_MS)")
rate_loaded=$(python3 -c "print(round($capacity * $LOAD))")
rate_unloaded=$(python3 -c "print(max(1, round($capacity * $UNLOADED)))")
log "capacity $capacity req/s ($WORKERS workers × ${SERVICE_MS}ms); loaded rate $rate_loaded, unloaded $rate_unloaded"

# stop PID: stops one process started here and forgets it.
stop() {
	kill "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
	local keep=()
	for p in "${pids[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
	pids=("${keep[@]}")
}

wait_http() {
	for _ in $(seq 100); do
		curl -s -o /dev/null "$1" && return 0
		sleep 0.1
	done
	die "$1 did not answer"
}

run_case() {
	local name=$1 rate limit="" slow=()
	case $name in
	unloaded) rate=$rate_unloaded ;;
	none) rate=$rate_loaded ;;
	adaptive)
		rate=$rate_loaded
		limit="    concurrency: {adaptive: {enabled: true, min_limit: 3, initial_limit: $WORKERS}}"
		;;
	fixed)
		rate=$rate_loaded
		limit="    concurrency: {max_in_flight: $WORKERS}"
		;;
	slowdown)
		rate=$rate_loaded
		limit="    concurrency: {adaptive: {enabled: true, min_limit: 3, initial_limit: $WORKERS}}"
		slow=(-slow-after "$((WARMUP + DURATION / 2))s" -slow-factor 2)
		;;
	*) die "unknown case $name" ;;
	esac
	cat >"$tmp/$name.yaml" <<EOF
listeners: [{name: main, address: "127.0.0.1:$PORT"}]
upstreams:
  - name: model
    endpoints: [{address: "127.0.0.1:$UPSTREAM_PORT"}]
    pool: {max_idle_per_endpoint: 2048}
routes:
  - name: infer
    match: {path_prefix: /}
    upstream: model
    timeouts: {response_header: 300s}
$limit
admin: {address: "127.0.0.1:$ADMIN_PORT"}
access_log: {output: "$tmp/$name.access.log", buffer: 65536}
logging: {level: error}
EOF
	"$tmp/capacity" -addr "127.0.0.1:$UPSTREAM_PORT" -workers "$WORKERS" -service "${SERVICE_MS}ms" "${slow[@]}" 2>"$tmp/capacity.log" &
	local up=$!
	pids+=("$up")
	"$tmp/penstock" serve -c "$tmp/$name.yaml" >"$tmp/$name.penstock.log" 2>&1 &
	local ps=$!
	pids+=("$ps")
	wait_http "http://127.0.0.1:$UPSTREAM_PORT/"
	wait_http "http://127.0.0.1:$PORT/"
	log "$name: open loop at $rate req/s for ${WARMUP}s + ${DURATION}s"
	# The limit and minRTT, once a second (kept with KEEP=1).
	(
		for _ in $(seq $((WARMUP + DURATION + 2))); do
			printf '%s ' "$(date +%T)"
			curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | grep -E '^penstock_concurrency_(limit|in_flight|min_rtt_seconds)' | awk '{printf "%s=%s ", $1, $2}'
			echo
			sleep 1
		done
	) >"$tmp/$name.limits.log" 2>&1 &
	local scraper=$!
	pids+=("$scraper")
	"$tmp/penstock" bench run --rate "$rate" --duration "${DURATION}s" --warmup "${WARMUP}s" \
		--connections 2000 --timeout 120s --quiet --json "$tmp/$name.json" \
		"http://127.0.0.1:$PORT/v1/infer" >&2
	sleep 1 # the access log's last lines
	cut -d' ' -f1 /proc/loadavg >"$tmp/$name.load"
	stop "$scraper"
	stop "$ps"
	stop "$up"
}

for c in $CASES; do
	run_case "$c"
done

python3 - "$tmp" $CASES <<'EOF'
import json, sys
from datetime import datetime

tmp, cases = sys.argv[1], sys.argv[2:]

def when(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00"))

def pct(xs, q):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(q * len(xs) + 0.999999) - 1))]

rows = []
for c in cases:
    r = json.load(open(f"{tmp}/{c}.json"))
    start = when(r["start"])
    ok, shed = [], []
    for line in open(f"{tmp}/{c}.access.log"):
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if when(e["time"]) < start:
            continue
        (ok if e["status"] == 200 else shed if e["status"] == 503 else []).append(e["duration_s"] * 1000)
    tot = r["phases"]["total"]
    status = r.get("status", {})
    n = sum(status.values()) or 1
    if c == "slowdown":
        # Each half of the measured part on its own: before and after the
        # upstream slowed down.
        mid = start.timestamp() + r["seconds"] / 2
        halves = ([], [])
        for line in open(f"{tmp}/{c}.access.log"):
            try:
                e = json.loads(line)
            except ValueError:
                continue
            t = when(e["time"]).timestamp()
            if t >= start.timestamp() and e["status"] == 200:
                halves[t >= mid].append(e["duration_s"] * 1000)
        for i, h in enumerate(halves):
            print(f"slowdown, {'first' if i == 0 else 'second'} half: {len(h)} admitted, P50 {pct(h, 0.5):.1f} ms, P99 {pct(h, 0.99):.1f} ms", file=sys.stderr)
    rows.append((c, r.get("rate", 0), r["requests"], 100 * status.get("503", 0) / n,
                 tot["p50_ms"], tot["p99_ms"], tot["max_ms"],
                 pct(ok, 0.5), pct(ok, 0.99), pct(shed, 0.99), r["errors_total"] - status.get("503", 0),
                 float(open(f"{tmp}/{c}.load").read())))

print("| case | rate req/s | requests | 503 % | client P50 ms | client P99 ms | client max ms | admitted P50 ms | admitted P99 ms | 503 P99 ms | other errors | load avg |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for row in rows:
    print("| %s | %g | %d | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.2f | %d | %.1f |" % row)
EOF
