#!/usr/bin/env bash
# Proxy benchmark: penstock vs NGINX in front of the same upstream, small
# responses, HTTP/1.1 keep-alive, on this machine, in one run.
#
# Layout (needs at least 2 cores):
#   core 0: the proxy under test (nginx: master + 1 worker; penstock with
#           GOMAXPROCS=1), one proxy at a time;
#   core 1: the upstream, wrk and the load generator (they share the core).
#
# For each proxy, in turn (both run in the same way, with the same tools):
#   1. warm-up with wrk (3 s);
#   2. max throughput: wrk -t1 -c50 -d10s, requests/s;
#   3. fixed-rate run with bench/loadgen (RATE req/s for DURATION after a
#      WARMUP at the same rate): P50/P99/P99.9 measured from each request's
#      intended send time; the proxy's CPU time (utime+stime from
#      /proc/PID/stat; nginx: master + worker) over that run divided by the
#      requests it carried gives CPU µs per request;
#   4. RSS after load (VmRSS; nginx: master + worker).
# Then prints one Markdown table on stdout. Progress goes to stderr.
#
# Only loopback addresses are used; every load run is bounded in time, and
# every process started here is stopped by its PID on exit.
#
# Usage: bash bench/proxy-vs-nginx.sh
# Knobs (environment):
#   RATE=2000        fixed rate for latency and CPU, requests/s
#   DURATION=15      measured seconds of the fixed-rate run
#   WARMUP=3         seconds at the fixed rate before measuring latency
#   CONNS=50         loadgen keep-alive connections
#   WRK_SECONDS=10   duration of the max-throughput run
#   WRK_CONNS=50     wrk connections
#   ROUNDS=1         rounds; with more than one, the proxies alternate within
#                    each round and the table shows each column's median
#   PROXIES="nginx penstock"   which proxies to run, in this order
#   NICE=-10         nice value of every process started here (proxy,
#                    upstream, load tools), to be disturbed less by other work
#                    on the machine; default -10 as root, 0 otherwise
#   UPSTREAM_PORT=18081 NGINX_PORT=18082 PENSTOCK_PORT=18083
#   KEEP=1           keep the temporary directory (configs, logs, JSON)
set -euo pipefail

RATE=${RATE:-2000}
DURATION=${DURATION:-15}
WARMUP=${WARMUP:-3}
CONNS=${CONNS:-50}
WRK_SECONDS=${WRK_SECONDS:-10}
WRK_CONNS=${WRK_CONNS:-50}
ROUNDS=${ROUNDS:-1}
PROXIES=${PROXIES:-nginx penstock}
if ((EUID == 0)); then NICE=${NICE:--10}; else NICE=${NICE:-0}; fi
UPSTREAM_PORT=${UPSTREAM_PORT:-18081}
NGINX_PORT=${NGINX_PORT:-18082}
PENSTOCK_PORT=${PENSTOCK_PORT:-18083}
KEEP=${KEEP:-0}

PROXY_CORE=0
LOAD_CORE=1

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

for v in RATE DURATION WARMUP CONNS WRK_SECONDS WRK_CONNS ROUNDS UPSTREAM_PORT NGINX_PORT PENSTOCK_PORT; do
	[[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 ]] || [[ $v == WARMUP && ${!v} == 0 ]] ||
		die "$v must be a positive integer (got '${!v}')"
done
[[ $NICE =~ ^-?[0-9]+$ ]] || die "NICE must be an integer (got '$NICE')"
for name in $PROXIES; do
	[[ $name == nginx || $name == penstock ]] || die "unknown proxy '$name' in PROXIES (nginx, penstock)"
done
(($(nproc) >= 2)) || die "needs at least 2 cores (found $(nproc))"

# Command prefixes that pin to the proxy core / the load core. nice and
# taskset exec the command, so a background job's $! is the command's PID.
on_proxy_core=(nice -n "$NICE" taskset -c "$PROXY_CORE")
on_load_core=(nice -n "$NICE" taskset -c "$LOAD_CORE")

# --- tools -------------------------------------------------------------------

export PATH="$PATH:/usr/sbin:/sbin"
need_apt=()
command -v nginx >/dev/null 2>&1 || need_apt+=(nginx)
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v taskset >/dev/null 2>&1 || need_apt+=(util-linux)
if ((${#need_apt[@]} > 0)); then
	sudo=()
	if ((EUID != 0)); then
		command -v sudo >/dev/null 2>&1 || die "need root or sudo to install: ${need_apt[*]}"
		sudo=(sudo)
	fi
	log "installing ${need_apt[*]} with apt-get"
	"${sudo[@]}" apt-get update -qq
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${need_apt[@]}" >&2
fi
command -v go >/dev/null 2>&1 || die "go is not on PATH"

# --- processes started here, and cleanup -------------------------------------

work=$(mktemp -d "${TMPDIR:-/tmp}/penstock-bench.XXXXXX")
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
	if [[ $KEEP == 1 ]]; then
		log "kept $work"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() { ! (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_http() { # wait_http URL PID: until URL answers 200, at most 10 s
	local url=$1 pid=$2 i
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || return 1
		if [[ $(curl -s -o /dev/null -m 1 -w '%{http_code}' "$url" || true) == 200 ]]; then
			return 0
		fi
		sleep 0.1
	done
	return 1
}

# --- /proc readings and formatting -------------------------------------------

clk_tck=$(getconf CLK_TCK)

cpu_ticks() { # cpu_ticks PID...: utime+stime summed, clock ticks
	local total=0 pid rest f
	for pid in "$@"; do
		rest=$(<"/proc/$pid/stat")
		rest=${rest##*) } # the fields after "pid (comm) ", from field 3 on
		read -r -a f <<<"$rest"
		# utime and stime are fields 14 and 15 of the whole line.
		total=$((total + f[14 - 3] + f[15 - 3]))
	done
	echo "$total"
}

busy_ticks() { # busy_ticks: all cores' non-idle time, clock ticks (user nice system irq softirq steal)
	awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat
}

waited_children_ticks() { # this shell's finished children: cutime+cstime, clock ticks
	local rest f
	rest=$(<"/proc/$$/stat")
	rest=${rest##*) }
	read -r -a f <<<"$rest"
	echo $((f[16 - 3] + f[17 - 3]))
}

rss_kib() { # rss_kib PID...: VmRSS summed, KiB
	local total=0 pid kib
	for pid in "$@"; do
		kib=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
		total=$((total + kib))
	done
	echo "$total"
}

children() { # children PID: its direct child PIDs
	cat /proc/"$1"/task/*/children 2>/dev/null | tr ' ' '\n' | grep -E '^[0-9]+$' || true
}

json_num() { # json_num KEY FILE: a numeric field of a one-line JSON object
	sed -nE "s/.*\"$1\":(-?[0-9.eE+-]+).*/\1/p" "$2" | head -n1
}

ms() { awk -v us="$1" 'BEGIN {printf "%.2f ms", us / 1000}'; }

# --- build -------------------------------------------------------------------

for p in "$UPSTREAM_PORT" "$NGINX_PORT" "$PENSTOCK_PORT"; do
	port_free "$p" || die "port $p on 127.0.0.1 is in use (set UPSTREAM_PORT, NGINX_PORT, PENSTOCK_PORT)"
done

log "building into $work"
(
	cd "$repo"
	go build -o "$work/upstream" ./bench/upstream
	go build -o "$work/loadgen" ./bench/loadgen
	if [[ " $PROXIES " == *" penstock "* ]]; then
		go build -o "$work/penstock" ./cmd/penstock
	fi
)

# --- upstream ----------------------------------------------------------------

"${on_load_core[@]}" "$work/upstream" -addr "127.0.0.1:$UPSTREAM_PORT" 2>"$work/upstream.log" &
upstream_pid=$!
pids+=("$upstream_pid")
wait_http "http://127.0.0.1:$UPSTREAM_PORT/" "$upstream_pid" || die "upstream did not start: $(cat "$work/upstream.log")"
log "upstream pid $upstream_pid on core $LOAD_CORE, 127.0.0.1:$UPSTREAM_PORT"

# --- proxies -----------------------------------------------------------------
# start_NAME sets proxy_pid (the process started), proxy_pids (all of the
# proxy's processes, for CPU and RSS), proxy_url and proxy_version.

start_nginx() {
	local dir="$work/nginx" user_line=""
	mkdir -p "$dir/logs" "$dir/tmp"
	((EUID == 0)) && user_line="user root;"
	cat >"$dir/nginx.conf" <<EOF
$user_line
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
lock_file $dir/nginx.lock;
error_log $dir/logs/error.log warn;

events {
    worker_connections 4096;
}

http {
    access_log off;
    client_body_temp_path $dir/tmp/client_body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;

    # Keep-alive connections are not closed after 1000 requests (the
    # default), so that nginx, like penstock, keeps them for the whole run.
    keepalive_requests 1000000;
    keepalive_timeout 60s;

    upstream up {
        server 127.0.0.1:$UPSTREAM_PORT;
        keepalive 64;
        keepalive_requests 1000000;
    }

    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
	nginx -t -q -p "$dir/" -e "$dir/logs/error.log" -c "$dir/nginx.conf" ||
		die "nginx configuration test failed: $(cat "$dir/logs/error.log")"
	"${on_proxy_core[@]}" nginx -p "$dir/" -e "$dir/logs/error.log" -c "$dir/nginx.conf" 2>"$dir/logs/stderr.log" &
	proxy_pid=$!
	pids+=("$proxy_pid")
	proxy_url="http://127.0.0.1:$NGINX_PORT/"
	wait_http "$proxy_url" "$proxy_pid" || die "nginx did not start: $(cat "$dir/logs/error.log" "$dir/logs/stderr.log")"
	[[ $(</proc/"$proxy_pid"/comm) == nginx ]] || die "pid $proxy_pid is not nginx"
	local workers
	mapfile -t workers < <(children "$proxy_pid")
	((${#workers[@]} == 1)) || die "expected 1 nginx worker, found ${#workers[@]}"
	proxy_pids=("$proxy_pid" "${workers[@]}")
	pids+=("${workers[@]}") # stopped on exit too, should the master be killed
	proxy_version=$(nginx -v 2>&1 | sed -E 's/^nginx version: //')
}

start_penstock() {
	local conf="$work/penstock.yaml"
	cat >"$conf" <<EOF
listeners:
  - name: bench
    address: 127.0.0.1:$PENSTOCK_PORT
upstreams:
  - name: up
    endpoints: [{address: 127.0.0.1:$UPSTREAM_PORT}]
    pool: {max_idle_per_endpoint: 128}
routes:
  - name: all
    match: {path_prefix: /}
    upstream: up
logging: {level: warn}
# Like the NGINX config (access_log off): both proxies do the same work.
access_log: {enabled: false}
EOF
	GOMAXPROCS=1 "${on_proxy_core[@]}" "$work/penstock" serve -c "$conf" >"$work/penstock.out" 2>"$work/penstock.log" &
	proxy_pid=$!
	pids+=("$proxy_pid")
	proxy_url="http://127.0.0.1:$PENSTOCK_PORT/"
	wait_http "$proxy_url" "$proxy_pid" || die "penstock did not start: $(cat "$work/penstock.log")"
	[[ $(</proc/"$proxy_pid"/comm) == penstock ]] || die "pid $proxy_pid is not penstock"
	proxy_pids=("$proxy_pid")
	proxy_version=$(penstock_version)
}

penstock_version() { # "v1.2.3", or "devel @ <commit>" for a development build
	local v commit
	v=$(timeout 5 "$work/penstock" version 2>/dev/null | head -n1 || true)
	v=$(sed -E 's/^penstock[[:space:]]+//; s/[[:space:]]*\(go[0-9.]+[^)]*\)$//' <<<"$v")
	if [[ -z $v || $v == "(devel)" ]]; then
		commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || true)
		v="devel${commit:+ @ $commit}"
	fi
	echo "$v"
}

stop_proxy() { # stops every process of the current proxy, master first
	local pid keep=()
	for pid in "${proxy_pids[@]}"; do
		stop_pid "$pid"
	done
	for pid in "${pids[@]}"; do
		[[ " ${proxy_pids[*]} " == *" $pid "* ]] || keep+=("$pid")
	done
	pids=("${keep[@]}")
}

# --- measurement -------------------------------------------------------------

results="$work/results.tsv" # one line per proxy and round
notes=()
busiest_other=0

bench_proxy() { # bench_proxy NAME ROUND
	local name=$1 round=$2 tag="$1.r$2"
	"start_$name"
	log "[round $round/$ROUNDS] $name $proxy_version: pids ${proxy_pids[*]} on core $PROXY_CORE, $proxy_url"

	log "$name: warm-up (wrk, 3 s)"
	"${on_load_core[@]}" wrk -t1 -c"$WRK_CONNS" -d3s "$proxy_url" >"$work/$tag.wrk-warmup.txt"

	log "$name: max throughput (wrk -t1 -c$WRK_CONNS -d${WRK_SECONDS}s)"
	local sat0 sat1 sat_requests cpu_sat_us
	sat0=$(cpu_ticks "${proxy_pids[@]}")
	"${on_load_core[@]}" wrk -t1 -c"$WRK_CONNS" -d"${WRK_SECONDS}s" --latency "$proxy_url" >"$work/$tag.wrk.txt"
	sat1=$(cpu_ticks "${proxy_pids[@]}")
	sed 's/^/    /' "$work/$tag.wrk.txt" >&2
	local max_rps wrk_errors
	max_rps=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$work/$tag.wrk.txt")
	# CPU per request at saturation: the proxy's CPU time during the wrk run
	# over the requests wrk completed. Unlike the fixed-rate figure it is not
	# inflated by the cost of waking up between requests, so it is the one
	# to compare with published per-request costs.
	sat_requests=$(awk '/requests in/ {print $1; exit}' "$work/$tag.wrk.txt")
	cpu_sat_us=$(awk -v t=$((sat1 - sat0)) -v hz="$clk_tck" -v n="${sat_requests:-0}" 'BEGIN {if (n > 0) printf "%.1f", t / hz * 1e6 / n; else print 0}')
	[[ -n $max_rps ]] || die "$name: no Requests/sec in wrk's output"
	wrk_errors=$(grep -E 'Non-2xx|Socket errors' "$work/$tag.wrk.txt" | tr -s ' ' | paste -sd ';' || true)

	log "$name: fixed rate $RATE req/s for ${DURATION}s after ${WARMUP}s warm-up, $CONNS connections (loadgen)"
	local before after j="$work/$tag.loadgen.json" t0 t1 busy0 busy1 ours0 ours1 other
	t0=$(date +%s%N)
	busy0=$(busy_ticks)
	ours0=$(($(cpu_ticks "$upstream_pid") + $(waited_children_ticks)))
	before=$(cpu_ticks "${proxy_pids[@]}")
	"${on_load_core[@]}" "$work/loadgen" -url "$proxy_url" -rate "$RATE" -duration "${DURATION}s" \
		-warmup "${WARMUP}s" -connections "$CONNS" >"$j" 2>"$work/$tag.loadgen.txt"
	after=$(cpu_ticks "${proxy_pids[@]}")
	ours1=$(($(cpu_ticks "$upstream_pid") + $(waited_children_ticks)))
	busy1=$(busy_ticks)
	t1=$(date +%s%N)
	# CPU used by everything else on the machine (and time stolen by the
	# hypervisor) during the run, in % of one core.
	other=$(awk -v b=$((busy1 - busy0)) -v o=$((ours1 - ours0 + after - before)) -v hz="$clk_tck" -v ns=$((t1 - t0)) \
		'BEGIN {v = (b - o) / hz / (ns / 1e9) * 100; if (v < 0) v = 0; printf "%.0f", v}')
	((other > busiest_other)) && busiest_other=$other
	sed 's/^/    /' "$work/$tag.loadgen.txt" >&2

	local rss total_ok ok ticks cpu_us p50 p99 p999 achieved
	rss=$(rss_kib "${proxy_pids[@]}")
	total_ok=$(json_num total_ok "$j")
	ok=$(json_num ok "$j")
	((total_ok > 0 && ok > 0)) || die "$name: no successful request in the measured fixed-rate run (see $work/$tag.loadgen.txt; KEEP=1 keeps it)"
	ticks=$((after - before))
	cpu_us=$(awk -v t="$ticks" -v hz="$clk_tck" -v n="$total_ok" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')
	p50=$(json_num p50_us "$j")
	p99=$(json_num p99_us "$j")
	p999=$(json_num p999_us "$j")
	achieved=$(awk -v r="$(json_num achieved_rate "$j")" 'BEGIN {printf "%.0f", r}')

	stop_proxy
	log "$name: stopped"

	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$proxy_version" "$max_rps" "$cpu_us" \
		"$p50" "$p99" "$p999" "$rss" $(($(json_num errors "$j") + $(json_num unfinished "$j"))) "$cpu_sat_us" >>"$results"
	local note="- $name, round $round: max $max_rps req/s${wrk_errors:+ (wrk: $wrk_errors)}, $cpu_sat_us µs/req at max;"
	note+=" $cpu_us µs/req ($ticks ticks of 1/$clk_tck s over $total_ok requests);"
	note+=" P50/P99/P99.9 $(ms "$p50") / $(ms "$p99") / $(ms "$p999");"
	note+=" achieved $achieved req/s, $(json_num errors "$j") errors, $(json_num late_starts "$j") late starts (>1 ms),"
	note+=" $(json_num unfinished "$j") unfinished, loadgen start-lag P99 $(ms "$(json_num start_lag_p99_us "$j")");"
	note+=" other work on the machine: ${other}% of a core"
	notes+=("$note")
}

: >"$results"
for ((round = 1; round <= ROUNDS; round++)); do
	for name in $PROXIES; do
		bench_proxy "$name" "$round"
	done
done

# --- report ------------------------------------------------------------------

median() { # median of the numbers on stdin, one a line
	sort -g | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}

col() { # col NAME N: column N of NAME's lines in the results
	awk -F '\t' -v n="$1" -v c="$2" '$1 == n {print $c}' "$results"
}

load_warning=""
if ((busiest_other > 10)); then
	load_warning="
Warning: other work on the machine used up to ${busiest_other}% of a core during the fixed-rate runs (see the notes): these numbers are noisier than they should be."
fi

rounds_note=""
((ROUNDS > 1)) && rounds_note=" Each number is the median of $ROUNDS rounds."

cat <<EOF

Proxy benchmark, $(date -u +%Y-%m-%d): $(nproc) cores, $(lscpu | sed -nE 's/^Model name:[[:space:]]+//p' | head -n1), $(go version | awk '{print $3}').
Proxy pinned to core $PROXY_CORE; upstream, wrk and loadgen share core $LOAD_CORE. 64-byte JSON responses, HTTP/1.1 keep-alive.
Max req/s: wrk -t1 -c$WRK_CONNS -d${WRK_SECONDS}s. CPU and latency: loadgen at $RATE req/s for ${DURATION}s after ${WARMUP}s warm-up, $CONNS connections, latency from each request's intended send time.$rounds_note$load_warning

| proxy | version | max req/s | CPU µs/req at max | CPU µs/req @ $RATE/s | P50 @ $RATE/s | P99 @ $RATE/s | P99.9 @ $RATE/s | RSS after load |
|---|---|---:|---:|---:|---:|---:|---:|---:|
EOF
failed_note=""
for name in $PROXIES; do
	label=$name
	if [[ $(col "$name" 9 | awk '{s += $1} END {print s + 0}') != 0 ]]; then
		label="$name (!)"
		failed_note="
(!) some fixed-rate requests failed or did not finish: see the notes below."
	fi
	printf '| %s | %s | %.0f | %.1f | %.1f | %s | %s | %s | %s |\n' "$label" "$(col "$name" 2 | head -n1)" \
		"$(col "$name" 3 | median)" "$(col "$name" 10 | median)" "$(col "$name" 4 | median)" \
		"$(ms "$(col "$name" 5 | median)")" "$(ms "$(col "$name" 6 | median)")" "$(ms "$(col "$name" 7 | median)")" \
		"$(awk -v k="$(col "$name" 8 | median)" 'BEGIN {printf "%.1f MiB", k / 1024}')"
done
echo "$failed_note"
printf '%s\n' "${notes[@]}"
