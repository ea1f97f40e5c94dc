#!/usr/bin/env bash
# Load generator speed: the highest request rate `penstock bench run`
# generates with one core, next to wrk (HTTP/1.1) and h2load (HTTP/2), all
# against the same fast server on this machine.
#
#   core 0: NGINX, one worker, answering every request with a fixed 64-byte
#           body (`return 200`), HTTP/1.1 on one port and HTTP/2 cleartext
#           (prior knowledge) on another;
#   core 1: the load tool under test, one at a time.
#
# Each tool runs closed-loop, as fast as it can, for DURATION seconds:
#   h1: wrk -t1 -c50            vs  penstock bench run --concurrency 50
#   h2: h2load -t1 -c10 -m10    vs  penstock bench run --proto h2c --concurrency 100 --connections 10
# penstock runs with GOMAXPROCS=1. Besides requests/s, the tool's own CPU
# time per request (user + system, from the shell's `times` for its
# finished children) is printed: when the server is the bottleneck, both
# tools reach the same rate and the CPU per request is what tells them apart.
# ROUNDS repetitions, tools interleaved; each figure is the median.
#
# Usage: bash bench/loadgen-rate.sh   (ROUNDS=3 DURATION=10 CONNS=50 by default)
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-50}
H1_PORT=${H1_PORT:-18191}
H2_PORT=${H2_PORT:-18192}
SERVER_CORE=0
LOAD_CORE=1

repo=$(cd "$(dirname "$0")/.." && pwd)
log() { echo "loadgen-rate: $*" >&2; }
die() {
	log "$*"
	exit 1
}
(($(nproc) >= 2)) || die "needs at least 2 cores"

export PATH="$PATH:/usr/sbin:/sbin"
need=()
command -v nginx >/dev/null || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v curl >/dev/null || need+=(curl)
if ((${#need[@]})); then
	sudo=()
	((EUID == 0)) || sudo=(sudo)
	log "installing ${need[*]}"
	"${sudo[@]}" apt-get update -qq
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${need[@]}" >&2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/loadgen-rate.XXXXXX")
pids=()
cleanup() {
	local pid
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "building penstock"
(cd "$repo" && go build -o "$work/penstock" ./cmd/penstock)

mkdir -p "$work/nginx/logs" "$work/nginx/tmp"
user_line=""
((EUID == 0)) && user_line="user root;"
body='{"ok":true,"service":"bench-upstream","payload":"0123456789abc"}'
cat >"$work/nginx/nginx.conf" <<CONF
$user_line
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $work/nginx/tmp/cb;
    proxy_temp_path $work/nginx/tmp/p;
    fastcgi_temp_path $work/nginx/tmp/f;
    uwsgi_temp_path $work/nginx/tmp/u;
    scgi_temp_path $work/nginx/tmp/s;
    keepalive_requests 100000000;
    default_type application/json;
    server { listen 127.0.0.1:$H1_PORT; location / { return 200 '$body'; } }
    server { listen 127.0.0.1:$H2_PORT http2; location / { return 200 '$body'; } }
}
CONF
taskset -c "$SERVER_CORE" nginx -p "$work/nginx/" -c "$work/nginx/nginx.conf" 2>"$work/nginx/logs/stderr" &
pids+=($!)
for ((i = 0; i < 50; i++)); do
	curl -s -o /dev/null "http://127.0.0.1:$H1_PORT/" && break
	sleep 0.1
done
curl -s -o /dev/null "http://127.0.0.1:$H1_PORT/" || die "nginx did not start: $(cat "$work/nginx/logs/"*)"

children_cpu() { # user+system seconds of this shell's finished children
	# `times` runs in this shell (a redirect does not fork); in a command
	# substitution it would report the subshell's children instead.
	times >"$work/times"
	awk 'NR == 2 {
		split($1, u, /m|s/); split($2, s, /m|s/)
		printf "%.3f", u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$work/times"
}

results="$work/results.tsv"
: >"$results"
measure() { # measure TOOL PROTO: runs it once, appends "tool proto rps cpu_us_per_req"
	local tool=$1 proto=$2 out="$work/out.txt" c0 c1 rps n
	children_cpu >"$work/c0"
	c0=$(<"$work/c0")
	case $tool/$proto in
	wrk/h1)
		taskset -c "$LOAD_CORE" wrk -t1 -c"$CONNS" -d"${DURATION}s" "http://127.0.0.1:$H1_PORT/" >"$out"
		rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
		n=$(awk '/requests in/ {print $1; exit}' "$out")
		;;
	h2load/h2)
		taskset -c "$LOAD_CORE" h2load -t1 -c10 -m10 -D "$DURATION" "http://127.0.0.1:$H2_PORT/" >"$out"
		rps=$(awk '/^finished in/ {gsub(",", ""); print $4}' "$out")
		n=$(awk '/^requests:/ {print $8}' "$out")
		;;
	penstock/h1)
		GOMAXPROCS=1 taskset -c "$LOAD_CORE" "$work/penstock" bench run --quiet --json - \
			--concurrency "$CONNS" --duration "${DURATION}s" "http://127.0.0.1:$H1_PORT/" >"$out"
		rps=$(sed -nE 's/^  "throughput": ([0-9.]+).*/\1/p' "$out")
		n=$(sed -nE 's/^  "responses": ([0-9]+).*/\1/p' "$out")
		;;
	penstock/h2)
		GOMAXPROCS=1 taskset -c "$LOAD_CORE" "$work/penstock" bench run --quiet --json - --proto h2c \
			--concurrency 100 --connections 10 --duration "${DURATION}s" "http://127.0.0.1:$H2_PORT/" >"$out"
		rps=$(sed -nE 's/^  "throughput": ([0-9.]+).*/\1/p' "$out")
		n=$(sed -nE 's/^  "responses": ([0-9]+).*/\1/p' "$out")
		;;
	esac
	children_cpu >"$work/c1"
	c1=$(<"$work/c1")
	[[ -n $rps && -n $n && $n -gt 0 ]] || die "$tool $proto: no result ($(head -c 400 "$out"))"
	printf '%s\t%s\t%.0f\t%s\n' "$tool" "$proto" "$rps" "$(awk -v a="$c0" -v b="$c1" -v n="$n" 'BEGIN {printf "%.2f", (b - a) * 1e6 / n}')" >>"$results"
	log "$tool $proto: $rps req/s, $n requests"
}

for ((r = 1; r <= ROUNDS; r++)); do
	log "round $r/$ROUNDS"
	measure wrk h1
	measure penstock h1
	measure h2load h2
	measure penstock h2
done

median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
col() { awk -F '\t' -v t="$1" -v p="$2" -v c="$3" '$1 == t && $2 == p {print $c}' "$results"; }

wrk_v=$( (wrk --version 2>&1 || true) | head -n1 | awk '{print $2}')
h2load_v=$( (h2load --version 2>&1 || true) | head -n1 | awk '{print $NF}')
nginx_v=$( (nginx -v 2>&1 || true) | sed 's/.*nginx\///')
commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
cat <<REPORT

Load generator speed, $(date -u +%Y-%m-%d): $(nproc) cores, $(lscpu | sed -nE 's/^Model name:[[:space:]]+//p' | head -n1), $(go version | awk '{print $3}').
Server: nginx $nginx_v, 1 worker on core $SERVER_CORE, 64-byte bodies. Tools on core $LOAD_CORE, ${DURATION}s each, median of $ROUNDS interleaved rounds.
wrk $wrk_v, h2load $h2load_v, penstock @ $commit (GOMAXPROCS=1).

| protocol | tool | settings | req/s | tool CPU µs/req |
|---|---|---|---:|---:|
REPORT
for row in "h1|wrk|-t1 -c$CONNS" "h1|penstock|--concurrency $CONNS" "h2|h2load|-t1 -c10 -m10 (h2c)" "h2|penstock|--proto h2c --concurrency 100 --connections 10"; do
	IFS='|' read -r proto tool settings <<<"$row"
	printf '| %s | %s | `%s` | %.0f | %.2f |\n' "$proto" "$tool" "$settings" "$(col "$tool" "$proto" 3 | median)" "$(col "$tool" "$proto" 4 | median)"
done
