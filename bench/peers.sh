#!/usr/bin/env bash
# Reverse proxies side by side: NGINX, HAProxy, Caddy and penstock in front of
# the same fast upstream, one core each, measured by `penstock bench run`.
#
# Layout (needs at least 2 cores):
#   core 0: the proxy under test, one at a time (NGINX: master + 1 worker;
#           HAProxy: nbthread 1; Caddy and penstock: GOMAXPROCS=1);
#   core 1: the upstream (bench/upstream, 64-byte JSON bodies), the load tool
#           (penstock bench run, built from this repository) and holdconns.
#
# For each proxy, ROUNDS times, proxies interleaved within each round:
#   1. warm-up: closed loop, 50 workers, 2 s;
#   2. max req/s: closed loop, MAX_CONC workers, MAX_SECONDS; the proxy's CPU
#      time (utime + stime from /proc/PID/stat) over that run, divided by
#      the responses, is "CPU µs/req at max";
#   3. latency at a fixed rate: open loop, RATE req/s for DURATION after
#      WARMUP, 50 connections, latency from each request's intended send
#      time (no coordinated omission): P50, P99, P99.9;
#      the proxy's CPU time over that run (warm-up included) divided by the
#      requests sent, RATE × (WARMUP + DURATION), is "CPU µs/req @ RATE/s";
#   4. RSS after load: VmRSS from /proc/PID/status (NGINX: master + worker);
#   5. memory per idle keep-alive connection: holdconns opens IDLE_CONNS
#      connections, one request each, and holds them; (RSS with them - RSS
#      before) / IDLE_CONNS.
#   6. HTTP/2 over TLS: after H2_WARMUP requests (10,000, not measured),
#      h2load (nghttp2-client) sends H2_REQUESTS GETs over H2_CONNS
#      connections with H2_STREAMS streams each to the proxy's TLS port
#      (ALPN h2, one self-signed certificate for all); the proxy's CPU time
#      over that run divided by the requests is "h2 CPU µs/req" (TLS
#      handshakes included, amortised over the requests).
#   7. memory per idle HTTP/2 connection: on a freshly started proxy (after
#      100 connections opened and closed as a warm-up), holdconns -proto h2
#      opens H2_IDLE_CONNS TLS connections (ALPN h2), one GET each, and
#      holds them; (RSS with them - RSS before) / H2_IDLE_CONNS.
# Each figure in the table is the median of the rounds; "× nginx" columns
# divide by NGINX's median. One Markdown table on stdout, progress and notes
# on stderr. Bounded: every tool run has its own duration, every process
# started is stopped by PID on exit. About 30 s per proxy and round.
#
# Usage: bash bench/peers.sh     (ROUNDS=3 by default: about 6 minutes)
#   knobs: ROUNDS RATE DURATION WARMUP MAX_SECONDS MAX_CONC IDLE_CONNS PROXIES KEEP=1
#   CASES (default "h1 h2 idle h2idle") picks the measurements: h1 is steps
#   1-3, h2 step 6, idle steps 4-5, h2idle step 7; those left out show as NA.
#   CASES=h2 measures HTTP/2 alone (about 10 s per proxy and round);
#   CASES=h2idle the idle HTTP/2 figure alone (about 25 s per proxy and
#   round) and prints only that column. H2_IDLE_CONNS (5000, at most
#   IDLE_CONNS) is step 7's connection count.
#   PROXIES may name "guarded": penstock with traffic control on the route
#   (one local rate limit per client IP, never reached, and circuit breakers
#   with outlier detection on the pool), to measure what they cost.
#   BASELINE=REV (a git revision) also builds penstock at REV and measures it
#   as the proxy "baseline", interleaved with the others in every round, with
#   the same config: before/after figures for a change from one run.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
RATE=${RATE:-2000}
DURATION=${DURATION:-8}
WARMUP=${WARMUP:-2}
MAX_SECONDS=${MAX_SECONDS:-5}
MAX_CONC=${MAX_CONC:-50}
H2_REQUESTS=${H2_REQUESTS:-100000}
H2_CONNS=${H2_CONNS:-10}
H2_STREAMS=${H2_STREAMS:-10}
H2_WARMUP=${H2_WARMUP:-10000}
PROXIES=${PROXIES:-nginx haproxy caddy penstock}
BASELINE=${BASELINE:-}
[[ -z $BASELINE || " $PROXIES " == *" baseline "* ]] || PROXIES="$PROXIES baseline"
KEEP=${KEEP:-0}
UPSTREAM_PORT=18281
declare -A PORT=([nginx]=18282 [haproxy]=18283 [caddy]=18284 [penstock]=18285 [baseline]=18286 [guarded]=18287)
# HTTP/2 over TLS: each proxy's port + 100.
H2_OFFSET=100
PROXY_CORE=0
LOAD_CORE=1

repo=$(cd "$(dirname "$0")/.." && pwd)
log() { echo "peers: $*" >&2; }
die() {
	log "$*"
	exit 1
}
(($(nproc) >= 2)) || die "needs at least 2 cores (found $(nproc))"
for name in $PROXIES; do
	[[ -n ${PORT[$name]:-} ]] || die "unknown proxy '$name' (nginx haproxy caddy penstock guarded baseline)"
done
[[ " $PROXIES " != *" baseline "* || -n $BASELINE ]] || die "proxy 'baseline' needs BASELINE=REV"
if [[ -n $BASELINE ]]; then
	git -C "$(dirname "$0")/.." rev-parse --verify -q "$BASELINE^{commit}" >/dev/null || die "BASELINE=$BASELINE is not a commit"
fi

# Idle connections: 10,000 unless the open-file limit is too low for
# HAProxy, which reserves two descriptors per connection (maxconn).
hard=$(ulimit -Hn)
ulimit -n "$hard" 2>/dev/null || true
if [[ -z ${IDLE_CONNS:-} ]]; then
	IDLE_CONNS=10000
	if [[ $hard != unlimited ]] && ((hard < 2 * (IDLE_CONNS + 100) + 20)); then
		IDLE_CONNS=$((((hard - 20) / 2 - 100) / 100 * 100))
	fi
fi
H2_IDLE_CONNS=${H2_IDLE_CONNS:-$((IDLE_CONNS < 5000 ? IDLE_CONNS : 5000))}
((H2_IDLE_CONNS > 0 && H2_IDLE_CONNS <= IDLE_CONNS)) || die "H2_IDLE_CONNS must be in 1..IDLE_CONNS ($IDLE_CONNS)"
CASES=${CASES:-h1 h2 idle h2idle}
has_case() { [[ " $CASES " == *" $1 "* ]]; }
for c in $CASES; do
	[[ " h1 h2 idle h2idle " == *" $c "* ]] || die "unknown case '$c' in CASES (h1 h2 idle h2idle)"
done

# --- tools -------------------------------------------------------------------

export PATH="$PATH:/usr/sbin:/sbin"
need=()
command -v nginx >/dev/null || need+=(nginx)
command -v haproxy >/dev/null || need+=(haproxy)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v caddy >/dev/null || need+=(caddy)
command -v curl >/dev/null || need+=(curl)
command -v taskset >/dev/null || need+=(util-linux)
if ((${#need[@]})); then
	sudo=()
	((EUID == 0)) || sudo=(sudo)
	log "installing ${need[*]} with apt-get"
	"${sudo[@]}" apt-get update -qq
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${need[@]}" >&2
fi
# The Debian packages start their services; this benchmark runs its own.
for svc in nginx haproxy caddy; do
	if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
		log "note: the system's $svc service is running; it is left alone"
	fi
done

# --- processes and cleanup ---------------------------------------------------

work=$(mktemp -d "${TMPDIR:-/tmp}/penstock-peers.XXXXXX")
pids=()
stop_pid() { # TERM, up to 5 s, then KILL
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
	for pid in "${pids[@]}"; do stop_pid "$pid"; done
	if [[ $KEEP == 1 ]]; then log "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

on_proxy_core=(taskset -c "$PROXY_CORE")
on_load_core=(taskset -c "$LOAD_CORE")

wait_http() { # URL PID: until it answers 200, at most 10 s
	local i
	for ((i = 0; i < 100; i++)); do
		kill -0 "$2" 2>/dev/null || return 1
		[[ $(curl -s -o /dev/null -m 1 -w '%{http_code}' "$1" || true) == 200 ]] && return 0
		sleep 0.1
	done
	return 1
}
children() { cat /proc/"$1"/task/*/children 2>/dev/null | tr ' ' '\n' | grep -E '^[0-9]+$' || true; }
clk_tck=$(getconf CLK_TCK)
cpu_ticks() { # utime+stime of the PIDs, clock ticks
	local total=0 pid rest f
	for pid in "$@"; do
		rest=$(<"/proc/$pid/stat")
		rest=${rest##*) }
		read -r -a f <<<"$rest"
		total=$((total + f[14 - 3] + f[15 - 3]))
	done
	echo "$total"
}
rss_kib() {
	local total=0 pid
	for pid in "$@"; do
		total=$((total + $(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")))
	done
	echo "$total"
}
# JSON summary fields of penstock bench run --json: top level, and the
# total phase's percentiles.
jtop() { sed -nE "s/^  \"$1\": ([0-9.eE+-]+),?$/\1/p" "$2" | head -n1; }
jtotal() {
	awk -v k="\"$1\":" '/^    "total": \{/ {on = 1; next} on && /^    }/ {on = 0} on && $1 == k {gsub(",", "", $2); print $2}' "$2"
}

# --- build and upstream ------------------------------------------------------

for p in "$UPSTREAM_PORT" "${PORT[@]}"; do
	! (: <"/dev/tcp/127.0.0.1/$p") 2>/dev/null || die "port $p on 127.0.0.1 is in use"
	! (: <"/dev/tcp/127.0.0.1/$((p + H2_OFFSET))") 2>/dev/null || die "port $((p + H2_OFFSET)) on 127.0.0.1 is in use"
done
# One self-signed certificate for every proxy's HTTP/2 port.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=127.0.0.1 \
	-keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
cat "$work/cert.pem" "$work/key.pem" >"$work/haproxy.pem"
log "building into $work"
(
	cd "$repo"
	go build -o "$work/penstock" ./cmd/penstock
	go build -o "$work/upstream" ./bench/upstream
	go build -o "$work/holdconns" ./bench/holdconns
	if [[ -n $BASELINE ]]; then
		mkdir "$work/baseline-src"
		git archive "$BASELINE" | tar -x -C "$work/baseline-src"
		(cd "$work/baseline-src" && go build -o "$work/penstock-baseline" ./cmd/penstock)
	fi
)
GOMAXPROCS=1 "${on_load_core[@]}" "$work/upstream" -addr "127.0.0.1:$UPSTREAM_PORT" 2>"$work/upstream.log" &
upstream_pid=$!
pids+=("$upstream_pid")
wait_http "http://127.0.0.1:$UPSTREAM_PORT/" "$upstream_pid" || die "upstream did not start"

# --- proxies: start_NAME sets proxy_pid, proxy_pids, version -----------------

start_nginx() {
	local dir="$work/nginx" user_line=""
	mkdir -p "$dir/logs" "$dir/tmp"
	((EUID == 0)) && user_line="user root;"
	cat >"$dir/nginx.conf" <<EOF
$user_line
worker_processes 1;
worker_rlimit_nofile $hard;
daemon off;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections $((IDLE_CONNS + 1000)); }
http {
    access_log off;
    client_body_temp_path $dir/tmp/cb;
    proxy_temp_path $dir/tmp/p;
    fastcgi_temp_path $dir/tmp/f;
    uwsgi_temp_path $dir/tmp/u;
    scgi_temp_path $dir/tmp/s;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    upstream up {
        server 127.0.0.1:$UPSTREAM_PORT;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:${PORT[nginx]};
        listen 127.0.0.1:$((PORT[nginx] + H2_OFFSET)) ssl http2;
        ssl_certificate $work/cert.pem;
        ssl_certificate_key $work/key.pem;
        http2_max_concurrent_streams 250;
        location / {
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
	"${on_proxy_core[@]}" nginx -p "$dir/" -e "$dir/logs/error.log" -c "$dir/nginx.conf" 2>"$dir/logs/stderr.log" &
	proxy_pid=$!
	pids+=("$proxy_pid")
	wait_http "http://127.0.0.1:${PORT[nginx]}/" "$proxy_pid" || die "nginx did not start: $(cat "$dir/logs/"*)"
	local workers
	mapfile -t workers < <(children "$proxy_pid")
	proxy_pids=("$proxy_pid" "${workers[@]}")
	pids+=("${workers[@]}")
	version=$( (nginx -v 2>&1 || true) | sed -E 's/^nginx version: nginx\///')
}

start_haproxy() {
	local cfg="$work/haproxy.cfg"
	cat >"$cfg" <<EOF
global
    nbthread 1
    maxconn $((IDLE_CONNS + 90))
defaults
    mode http
    timeout connect 5s
    timeout client 120s
    timeout server 60s
    timeout http-keep-alive 120s
    http-reuse always
frontend fe
    bind 127.0.0.1:${PORT[haproxy]}
    bind 127.0.0.1:$((PORT[haproxy] + H2_OFFSET)) ssl crt $work/haproxy.pem alpn h2,http/1.1
    default_backend be
backend be
    server up 127.0.0.1:$UPSTREAM_PORT
EOF
	"${on_proxy_core[@]}" haproxy -db -f "$cfg" >"$work/haproxy.log" 2>&1 &
	proxy_pid=$!
	pids+=("$proxy_pid")
	wait_http "http://127.0.0.1:${PORT[haproxy]}/" "$proxy_pid" || die "haproxy did not start: $(cat "$work/haproxy.log")"
	proxy_pids=("$proxy_pid")
	version=$( (haproxy -v 2>&1 || true) | awk 'NR == 1 {print $3}')
}

start_caddy() {
	local cfg="$work/Caddyfile"
	cat >"$cfg" <<EOF
{
    admin off
    auto_https off
}
http://127.0.0.1:${PORT[caddy]} {
    reverse_proxy 127.0.0.1:$UPSTREAM_PORT
}
https://127.0.0.1:$((PORT[caddy] + H2_OFFSET)) {
    tls $work/cert.pem $work/key.pem
    reverse_proxy 127.0.0.1:$UPSTREAM_PORT
}
EOF
	XDG_DATA_HOME="$work/caddy-data" XDG_CONFIG_HOME="$work/caddy-config" GOMAXPROCS=1 \
		"${on_proxy_core[@]}" caddy run --config "$cfg" --adapter caddyfile >"$work/caddy.log" 2>&1 &
	proxy_pid=$!
	pids+=("$proxy_pid")
	wait_http "http://127.0.0.1:${PORT[caddy]}/" "$proxy_pid" || die "caddy did not start: $(cat "$work/caddy.log")"
	proxy_pids=("$proxy_pid")
	version=$( (caddy version 2>&1 || true) | awk 'NR == 1 {print $1}')
}

start_penstock() { start_penstock_binary penstock "$work/penstock"; }

# The same binary with traffic control on: one local rate limit (per client
# IP, far above any rate here) and the pool's breakers and outlier
# detection.
start_guarded() {
	extra_upstream="    circuit_breaker: {}
    outlier_detection: {}"
	extra_route="    limits: [per-client]
limits: [{name: per-client, algorithm: token_bucket, rate: 100000000, burst: 100000000, key: {from: client_ip}}]"
	start_penstock_binary guarded "$work/penstock"
	extra_upstream="" extra_route=""
}

# The same config, served by penstock built at BASELINE.
start_baseline() { start_penstock_binary baseline "$work/penstock-baseline"; }

start_penstock_binary() { # NAME BINARY
	local name=$1 bin=$2 cfg="$work/$1.yaml"
	cat >"$cfg" <<EOF
listeners:
  - name: bench
    address: 127.0.0.1:${PORT[$name]}
    limits: {idle_timeout: 120s}
  - name: bench-h2
    address: 127.0.0.1:$((PORT[$name] + H2_OFFSET))
    protocols: [h1, h2]
    tls: {certificates: [{cert_file: $work/cert.pem, key_file: $work/key.pem}]}
    limits: {idle_timeout: 120s}
upstreams:
  - name: up
    endpoints: [{address: 127.0.0.1:$UPSTREAM_PORT}]
    pool: {max_idle_per_endpoint: 128}
${extra_upstream:-}
routes:
  - name: all
    match: {path_prefix: /}
    upstream: up
${extra_route:-}
logging: {level: warn}
access_log: {enabled: false}
EOF
	GOMAXPROCS=1 "${on_proxy_core[@]}" "$bin" serve -c "$cfg" >"$work/$name.out" 2>"$work/$name.log" &
	proxy_pid=$!
	pids+=("$proxy_pid")
	wait_http "http://127.0.0.1:${PORT[$name]}/" "$proxy_pid" || die "$name did not start: $(cat "$work/$name.log")"
	proxy_pids=("$proxy_pid")
	if [[ $name == baseline ]]; then
		version="$(git -C "$repo" rev-parse --short "$BASELINE")"
	else
		version="devel @ $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
	fi
}

stop_proxy() {
	local pid keep=()
	for pid in "${proxy_pids[@]}"; do stop_pid "$pid"; done
	for pid in "${pids[@]}"; do
		[[ " ${proxy_pids[*]} " == *" $pid "* ]] || keep+=("$pid")
	done
	pids=("${keep[@]}")
}

bench() { # bench OUT.json ARGS...: penstock bench run on the load core
	local out=$1
	shift
	GOMAXPROCS=1 "${on_load_core[@]}" "$work/penstock" bench run --quiet --json "$out" "$@" >/dev/null
}

# --- one proxy, one round ----------------------------------------------------

# measure_h2idle NAME TAG: bytes per idle HTTP/2 connection over TLS, on a
# proxy started for it (freed memory of earlier steps would hide the cost).
measure_h2idle() {
	local name=$1 tag=$2 addr hold_pid i rss0 rss1
	"start_$name"
	addr="127.0.0.1:$((PORT[$name] + H2_OFFSET))"
	"${on_load_core[@]}" "$work/holdconns" -proto h2 -addr "$addr" -n 100 -hold 0s >"$work/$tag.h2warm" 2>&1 || true
	sleep 0.5
	rss0=$(rss_kib "${proxy_pids[@]}")
	"${on_load_core[@]}" "$work/holdconns" -proto h2 -addr "$addr" -n "$H2_IDLE_CONNS" -hold 90s -timeout 90s >"$work/$tag.h2hold" 2>&1 &
	hold_pid=$!
	pids+=("$hold_pid")
	for ((i = 0; i < 600; i++)); do
		grep -qs "^held" "$work/$tag.h2hold" && break
		kill -0 "$hold_pid" 2>/dev/null || break
		sleep 0.1
	done
	h2idle=NA
	if grep -qs "^held" "$work/$tag.h2hold"; then
		sleep 1
		rss1=$(rss_kib "${proxy_pids[@]}")
		h2idle=$(((rss1 - rss0) * 1024 / H2_IDLE_CONNS))
	else
		notes+=("- $name: idle HTTP/2 holdconns failed: $(tail -n1 "$work/$tag.h2hold")")
	fi
	stop_pid "$hold_pid"
	stop_proxy
}

results="$work/results.tsv"
: >"$results"
declare -A versions
notes=()

measure() { # measure NAME ROUND
	local name=$1 round=$2 url tag="$1.r$2" h2idle=NA
	if [[ $CASES == h2idle ]]; then
		measure_h2idle "$name" "$tag"
		versions[$name]=$version
		printf '%s\tNA\tNA\tNA\tNA\tNA\tNA\tNA\t0\tNA\tNA\t%s\n' "$name" "$h2idle" >>"$results"
		notes+=("- $name, round $round: idle h2 conn $h2idle B")
		return
	fi
	"start_$name"
	versions[$name]=$version
	url="http://127.0.0.1:${PORT[$name]}/"
	log "[round $round/$ROUNDS] $name $version (pids ${proxy_pids[*]})"

	local t0 t1 max=NA n cpu=NA
	local j="$work/$tag.rate.json" p50=NA p99=NA p999=NA errs=0 cpu_rate=NA late=NA
	if has_case h1; then
	bench "$work/$tag.warm.json" --concurrency 50 --duration 2s "$url"

	t0=$(cpu_ticks "${proxy_pids[@]}")
	bench "$work/$tag.max.json" --concurrency "$MAX_CONC" --duration "${MAX_SECONDS}s" "$url"
	t1=$(cpu_ticks "${proxy_pids[@]}")
	max=$(jtop throughput "$work/$tag.max.json")
	n=$(jtop responses "$work/$tag.max.json")
	((n > 0)) || die "$name: no response in the max run"
	cpu=$(awk -v t=$((t1 - t0)) -v hz="$clk_tck" -v n="$n" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')

	t0=$(cpu_ticks "${proxy_pids[@]}")
	bench "$j" --rate "$RATE" --duration "${DURATION}s" --warmup "${WARMUP}s" --connections 50 "$url"
	t1=$(cpu_ticks "${proxy_pids[@]}")
	# The open loop sends RATE requests a second, warm-up included.
	cpu_rate=$(awk -v t=$((t1 - t0)) -v hz="$clk_tck" -v n="$((RATE * (DURATION + WARMUP)))" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')
	p50=$(jtotal p50_ms "$j")
	p99=$(jtotal p99_ms "$j")
	p999=$(jtotal p99_9_ms "$j")
	errs=$(($(jtop errors_total "$j") + $(jtop unfinished "$j")))
	late=$(jtop late_starts "$j")
	fi

	# HTTP/2 over TLS with h2load.
	local h2out="$work/$tag.h2load" h2cpu="NA" h2ok
	: >"$h2out"
	if has_case h2; then
	# Warm-up, not measured, as the HTTP/1.1 case has: the cost per
	# request is the steady state's, not a fresh process's first
	# connections and pools.
	"${on_load_core[@]}" timeout 60 h2load -n "$H2_WARMUP" -c "$H2_CONNS" -m "$H2_STREAMS" \
		"https://127.0.0.1:$((PORT[$name] + H2_OFFSET))/" >/dev/null 2>&1 || true
	t0=$(cpu_ticks "${proxy_pids[@]}")
	"${on_load_core[@]}" timeout 120 h2load -n "$H2_REQUESTS" -c "$H2_CONNS" -m "$H2_STREAMS" \
		"https://127.0.0.1:$((PORT[$name] + H2_OFFSET))/" >"$h2out" 2>&1 || true
	t1=$(cpu_ticks "${proxy_pids[@]}")
	h2ok=$(sed -nE 's/^requests: .* ([0-9]+) succeeded.*/\1/p' "$h2out")
	if [[ -n $h2ok ]] && ((h2ok > 0)) && grep -q 'Application protocol: h2' "$h2out"; then
		h2cpu=$(awk -v t=$((t1 - t0)) -v hz="$clk_tck" -v n="$h2ok" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')
	else
		notes+=("- $name, round $round: h2load failed: $(tail -n3 "$h2out" | tr '\n' ' ')")
	fi
	fi

	local rss rss0 rss1 hold_pid i per_conn=""
	rss=$(rss_kib "${proxy_pids[@]}")
	if has_case idle; then
	rss0=$rss
	"${on_load_core[@]}" "$work/holdconns" -addr "127.0.0.1:${PORT[$name]}" -n "$IDLE_CONNS" -hold 90s >"$work/$tag.hold" 2>&1 &
	hold_pid=$!
	pids+=("$hold_pid")
	for ((i = 0; i < 1000; i++)); do
		grep -qs "^held" "$work/$tag.hold" && break
		kill -0 "$hold_pid" 2>/dev/null || break
		sleep 0.1
	done
	if grep -qs "^held" "$work/$tag.hold"; then
		sleep 1
		rss1=$(rss_kib "${proxy_pids[@]}")
		per_conn=$(((rss1 - rss0) * 1024 / IDLE_CONNS))
	else
		notes+=("- $name, round $round: holdconns failed: $(tail -n1 "$work/$tag.hold")")
	fi
	stop_pid "$hold_pid"
	fi
	stop_proxy
	if has_case h2idle; then
		measure_h2idle "$name" "$tag"
	fi

	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$max" "$cpu" "$p50" "$p99" "$p999" "$rss" "${per_conn:-NA}" "$errs" "$cpu_rate" "$h2cpu" "$h2idle" >>"$results"
	notes+=("- $name, round $round: max $max req/s, $cpu µs/req; @ $RATE/s $cpu_rate µs/req, P50/P99/P99.9 $p50 / $p99 / $p999 ms, $late late starts, $errs errors or unfinished; h2 $h2cpu µs/req ($(sed -nE 's/^finished in ([^,]+), ([0-9.]+ req\/s).*/\2/p' "$h2out")); RSS $((rss / 1024)) MiB; idle conn ${per_conn:-NA} B; idle h2 conn $h2idle B")
}

for ((round = 1; round <= ROUNDS; round++)); do
	for name in $PROXIES; do
		measure "$name" "$round"
	done
done

# --- report ------------------------------------------------------------------

median() { { grep -v NA || true; } | sort -g | awk '{v[NR] = $1} END {if (NR == 0) print "NA"; else print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
col() { awk -F '\t' -v n="$1" -v c="$2" '$1 == n {print $c}' "$results"; }
num() { if [[ $2 == NA ]]; then echo NA; else printf "$1" "$2"; fi; } # FORMAT VALUE (NA stays NA)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "NA" || b == "NA" || b == 0) print "–"; else printf "%.2f", a / b}'; }

if [[ $CASES == h2idle ]]; then
	ref_h2idle=$(col nginx 12 | median)
	echo
	echo "Idle HTTP/2 connections over TLS, $(date -u +%Y-%m-%d): $(nproc) cores, Linux $(uname -r), $(go version | awk '{print $3}'). $H2_IDLE_CONNS connections (ALPN h2, one GET each) held by holdconns -proto h2 on a freshly started proxy pinned to core $PROXY_CORE; (RSS with them - RSS before) / $H2_IDLE_CONNS. Median of $ROUNDS interleaved rounds."
	echo
	echo "| proxy | version | bytes / idle h2 conn | × nginx |"
	echo "|---|---|---:|---:|"
	for name in $PROXIES; do
		h2i=$(col "$name" 12 | median)
		echo "| $name | ${versions[$name]} | $h2i | $(ratio "$h2i" "$ref_h2idle") |"
	done
	echo
	echo "Raw figures per round:"
	printf '%s\n' "${notes[@]}"
	exit 0
fi

cat <<EOF

Reverse proxies, $(date -u +%Y-%m-%d): $(nproc) cores, $(lscpu | sed -nE 's/^Model name:[[:space:]]+//p' | head -n1), Linux $(uname -r), $(go version | awk '{print $3}').
Proxy pinned to core $PROXY_CORE (one worker / thread / GOMAXPROCS=1); upstream, load tool and holdconns on core $LOAD_CORE. 64-byte JSON responses, HTTP/1.1 keep-alive, access logs off.
Load: penstock bench run; HTTP/2 over TLS: h2load, $H2_REQUESTS requests over $H2_CONNS connections × $H2_STREAMS streams. Max: closed loop, $MAX_CONC connections, ${MAX_SECONDS}s. Latency: open loop at $RATE req/s for ${DURATION}s after ${WARMUP}s, 50 connections, from intended send times. Idle: $IDLE_CONNS keep-alive connections held; idle h2: $H2_IDLE_CONNS HTTP/2 connections over TLS held. Median of $ROUNDS interleaved rounds.

| proxy | version | max req/s | × nginx | CPU µs/req at max | × nginx | CPU µs/req @ $RATE/s | × nginx | P50 @ $RATE/s | P99 @ $RATE/s | P99.9 @ $RATE/s | RSS after load | bytes / idle conn | × nginx | h2 CPU µs/req | × nginx | bytes / idle h2 conn | × nginx |
|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
EOF
flagged=0
ref_max=$(col nginx 2 | median)
ref_cpu=$(col nginx 3 | median)
ref_cpu_rate=$(col nginx 10 | median)
ref_conn=$(col nginx 8 | median)
ref_h2=$(col nginx 11 | median)
ref_h2idle=$(col nginx 12 | median)
for name in $PROXIES; do
	m=$(col "$name" 2 | median)
	c=$(col "$name" 3 | median)
	cr=$(col "$name" 10 | median)
	b=$(col "$name" 8 | median)
	h2=$(col "$name" 11 | median)
	h2i=$(col "$name" 12 | median)
	label=$name
	if [[ $(col "$name" 9 | awk '{s += $1} END {print s + 0}') != 0 ]]; then
		label="$name (!)"
		flagged=1
	fi
	printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s ms | %s ms | %s ms | %.1f MiB | %s | %s | %s | %s | %s | %s |\n' \
		"$label" "${versions[$name]}" "$(num %.0f "$m")" "$(ratio "$m" "$ref_max")" "$(num %.1f "$c")" "$(ratio "$c" "$ref_cpu")" \
		"$(num %.1f "$cr")" "$(ratio "$cr" "$ref_cpu_rate")" \
		"$(num %.2f "$(col "$name" 4 | median)")" "$(num %.2f "$(col "$name" 5 | median)")" "$(num %.2f "$(col "$name" 6 | median)")" \
		"$(awk -v k="$(col "$name" 7 | median)" 'BEGIN {printf "%.1f", k / 1024}')" \
		"$(awk -v b="$b" 'BEGIN {if (b == "NA") print "NA"; else printf "%.0f", b}')" "$(ratio "$b" "$ref_conn")" \
		"$h2" "$(ratio "$h2" "$ref_h2")" "$h2i" "$(ratio "$h2i" "$ref_h2idle")"
done
echo
((flagged)) && echo "(!) some fixed-rate requests failed or did not finish (see the rounds below)."
echo "Raw figures per round:"
printf '%s\n' "${notes[@]}"
