#!/usr/bin/env bash
# HTTP/2 vs HTTP/3 through penstock over a delayed, lossy link.
#
# Two network namespaces made here (pst-cli-PID and pst-srv-PID) are joined
# by bench/netem, a user-space link that adds a one-way delay and drops a
# share of the packets in each direction (the kernel's netem qdisc is not
# needed). The server namespace runs bench/upstream on 127.0.0.1 and penstock
# with one TLS listener serving h2 and h3 on 10.77.0.2:8443; the client
# namespace runs `penstock bench run` against https://10.77.0.2:8443/.
#
# For each condition (RTT × loss) a fresh link and a fresh penstock are
# started, then HTTP/2 and HTTP/3 are measured in turn by the same open-loop
# run: RATE requests/s for WARMUP + DURATION seconds, latency from each
# request's intended send time. One Markdown table goes to stdout; progress
# goes to stderr.
#
# Needs root (namespaces, TUN devices) and /dev/net/tun. Touches only the
# namespaces it creates; every run is bounded in time, and every process
# started here is stopped by its PID on exit, then the namespaces deleted.
#
# Usage: sudo bash bench/lossy-network.sh            # 6 conditions, about 6 minutes
#        sudo QUICK=1 bash bench/lossy-network.sh    # 2 conditions, short runs
# Knobs (environment):
#   CONDITIONS="20:0 20:1 20:3 100:0 100:1 100:3"  (RTT ms : loss %)
#   RATE=200 DURATION=20 WARMUP=3 CONNS_H2=1 CONNS_H3=1 STREAMS=100
#   TIMEOUT=10 PROTOS="h2 h3" KEEP=1
#   LATE_WARN=5   mark a condition (†) when netem delivered a packet more
#                 than this many ms late (the machine stalled)
#   TCP_CC=reno   TCP congestion control in both namespaces, the same
#                 algorithm as quic-go's (NewReno); empty: the namespace's
#                 default, which it takes from the host. A namespace other
#                 than the host's may only pick one listed in the host's
#                 net.ipv4.tcp_allowed_congestion_control.
set -euo pipefail

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
	CONDITIONS=${CONDITIONS:-"20:0 100:3"}
	DURATION=${DURATION:-5}
	WARMUP=${WARMUP:-1}
fi
CONDITIONS=${CONDITIONS:-"20:0 20:1 20:3 100:0 100:1 100:3"}
RATE=${RATE:-200}
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-3}
CONNS_H2=${CONNS_H2:-1}
CONNS_H3=${CONNS_H3:-1}
STREAMS=${STREAMS:-100}
TIMEOUT=${TIMEOUT:-10}
PROTOS=${PROTOS:-"h2 h3"}
TCP_CC=${TCP_CC-reno}
LATE_WARN=${LATE_WARN:-5}
KEEP=${KEEP:-0}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cli=pst-cli-$$
srv=pst-srv-$$
cli_addr=10.77.0.1
srv_addr=10.77.0.2
port=8443
url="https://$srv_addr:$port/"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

for v in RATE DURATION WARMUP CONNS_H2 CONNS_H3 STREAMS TIMEOUT; do
	[[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 ]] || die "$v must be a positive integer (got '${!v}')"
done
for c in $CONDITIONS; do
	[[ $c =~ ^[0-9]+:[0-9]+(\.[0-9]+)?$ ]] || die "CONDITIONS: '$c' is not RTT_MS:LOSS_PERCENT"
done
if [[ -n $TCP_CC ]]; then
	grep -qw -- "$TCP_CC" /proc/sys/net/ipv4/tcp_allowed_congestion_control ||
		die "TCP_CC=$TCP_CC is not allowed in a namespace here (allowed: $(cat /proc/sys/net/ipv4/tcp_allowed_congestion_control))"
fi
for p in $PROTOS; do
	[[ $p == h2 || $p == h3 ]] || die "PROTOS: '$p' is not h2 or h3"
done
((EUID == 0)) || die "must run as root: it creates network namespaces and TUN devices (sudo bash $0)"
[[ -c /dev/net/tun ]] || die "/dev/net/tun is missing: the kernel needs TUN support (modprobe tun)"
command -v ip >/dev/null 2>&1 || die "ip is missing (Debian package iproute2)"
command -v go >/dev/null 2>&1 || die "go is not on PATH"
missing=()
command -v jq >/dev/null 2>&1 || missing+=(jq)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if ((${#missing[@]})); then
	log "installing ${missing[*]} with apt-get"
	if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2; }; then
		die "${missing[*]} missing and could not be installed"
	fi
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/penstock-lossy.XXXXXX")
pids=()
made_ns=()

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
	# Forget it, so that cleanup never signals a PID the system reused.
	local left=() p
	for p in "${pids[@]}"; do
		[[ $p == "$pid" ]] || left+=("$p")
	done
	pids=("${left[@]}")
}

cleanup() {
	local pid ns
	for pid in "${pids[@]+"${pids[@]}"}"; do
		stop_pid "$pid"
	done
	for ns in "${made_ns[@]+"${made_ns[@]}"}"; do
		ip netns del "$ns" 2>/dev/null || log "could not delete namespace $ns"
	done
	if [[ $KEEP == 1 ]]; then log "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "building penstock, the upstream and netem into $work"
(cd "$repo" && go build -o "$work/penstock" ./cmd/penstock && go build -o "$work/upstream" ./bench/upstream &&
	go build -o "$work/netem" ./bench/netem)

for ns in "$cli" "$srv"; do
	ip netns add "$ns" || die "ip netns add $ns failed"
	made_ns+=("$ns")
	ip -n "$ns" link set lo up
	if [[ -n $TCP_CC ]]; then
		ip netns exec "$ns" sh -c "echo $TCP_CC >/proc/sys/net/ipv4/tcp_congestion_control" ||
			die "could not set TCP congestion control $TCP_CC in $ns"
	fi
done
tcp_cc=$(ip netns exec "$srv" cat /proc/sys/net/ipv4/tcp_congestion_control)
log "TCP congestion control in the namespaces: $tcp_cc"

ip netns exec "$srv" "$work/upstream" -addr 127.0.0.1:18081 2>"$work/upstream.log" &
pids+=($!)

cat >"$work/penstock.yaml" <<EOF
listeners:
  - name: bench
    address: $srv_addr:$port
    protocols: [h2, h3]
    tls: {self_signed: true}
    limits: {idle_timeout: 300s, max_concurrent_streams: 1000}
    http3: {max_idle_timeout: 300s, max_incoming_streams: 1000, handshake_rate_limit: 0}
upstreams:
  - name: up
    endpoints: [{address: 127.0.0.1:18081}]
    pool: {max_idle_per_endpoint: 128}
routes:
  - name: all
    match: {path_prefix: /}
    upstream: up
admin: {address: 127.0.0.1:19901}
logging: {level: warn}
access_log: {enabled: false}
shutdown: {drain_timeout: 1s}
EOF

# Each condition's link lives at most this long (netem exits by itself).
nprotos=$(wc -w <<<"$PROTOS")
link_life=$((nprotos * (WARMUP + DURATION + 2 * TIMEOUT + 10) + 60))

bench() { # bench ARGS...: penstock bench run in the client namespace
	ip netns exec "$cli" "$work/penstock" bench run --insecure --quiet --timeout "${TIMEOUT}s" "$@" "$url"
}

start_link() { # start_link RTT_MS LOSS_PERCENT
	local delay_us=$(($1 * 500)) loss i
	netem_log="$work/netem-rtt$1-loss$2.log"
	# A file of its own per condition: the previous link's "ready" must not
	# be read before this netem's output replaces it.
	netem_out="$work/netem-rtt$1-loss$2.out"
	rm -f "$netem_out"
	loss=$(awk -v p="$2" 'BEGIN {printf "%.4f", p / 100}')
	"$work/netem" -ns-a "$cli" -ns-b "$srv" -addr-a "$cli_addr" -addr-b "$srv_addr" \
		-delay "${delay_us}us" -loss "$loss" -for "${link_life}s" >"$netem_out" 2>"$netem_log" &
	netem_pid=$!
	pids+=("$netem_pid")
	for ((i = 0; i < 100; i++)); do
		grep -q ready "$netem_out" 2>/dev/null && return
		kill -0 "$netem_pid" 2>/dev/null || die "netem exited: $(cat "$netem_log")"
		sleep 0.1
	done
	die "netem did not come up"
}

start_penstock() {
	local i
	ip netns exec "$srv" "$work/penstock" serve -c "$work/penstock.yaml" >"$work/penstock.out" 2>>"$work/penstock.log" &
	penstock_pid=$!
	pids+=("$penstock_pid")
	for ((i = 0; i < 50; i++)); do
		kill -0 "$penstock_pid" 2>/dev/null || die "penstock exited: $(cat "$work/penstock.log")"
		if bench --proto h2 --concurrency 1 --requests 1 --duration 5s --json - >/dev/null 2>&1 &&
			bench --proto h3 --concurrency 1 --requests 1 --duration 5s --json - >/dev/null 2>&1; then
			return
		fi
		sleep 0.2
	done
	die "penstock did not answer over the link"
}

quic_packets() { # quic_packets: "sent lost" from penstock's QUIC metrics (counted when connections close)
	ip netns exec "$srv" curl -s http://127.0.0.1:19901/metrics |
		awk '/^penstock_quic_packets_sent_total/ {s += $NF} /^penstock_quic_packets_lost_total/ {l += $NF} END {print s + 0, l + 0}'
}

tun_drops() { # tun_drops NS DEV: packets dropped at the device, both directions
	ip netns exec "$1" cat "/sys/class/net/$2/statistics/tx_dropped" "/sys/class/net/$2/statistics/rx_dropped" |
		awk '{n += $1} END {print n + 0}'
}

rows=()
for c in $CONDITIONS; do
	rtt=${c%%:*}
	loss=${c#*:}
	first=${#rows[@]}
	log "RTT ${rtt} ms, loss ${loss} %: link and penstock"
	start_link "$rtt" "$loss"
	start_penstock
	for proto in $PROTOS; do
		conns=$CONNS_H2
		[[ $proto == h3 ]] && conns=$CONNS_H3
		out="$work/$proto-rtt$rtt-loss$loss"
		log "  $proto: $RATE req/s for ${WARMUP}s + ${DURATION}s, $conns connection(s) × $STREAMS streams"
		read -r sent0 lost0 < <(quic_packets)
		bench --proto "$proto" --rate "$RATE" --connections "$conns" --streams "$STREAMS" \
			--warmup "${WARMUP}s" --duration "${DURATION}s" --out "$out.hlog" --json "$out.json" \
			>"$out.txt" 2>"$out.err" || die "bench run $proto failed: $(cat "$out.err")"
		# penstock's own view of the QUIC path: the loss rate its connections
		# saw (recorded when the client's connection closes).
		quic_loss="—"
		if [[ $proto == h3 ]]; then
			sleep 1
			read -r sent1 lost1 < <(quic_packets)
			quic_loss=$(awk -v s=$((sent1 - sent0)) -v l=$((lost1 - lost0)) 'BEGIN {if (s > 0) printf "%.2f", 100 * l / s; else print "?"}')
		fi
		row=$(jq -r --arg c "$rtt ms / $loss %" --arg p "$proto" --arg q "$quic_loss" '
			def f: . * 10 | round / 10;
			.phases.total as $t |
			"| \($c) | \(if $p == "h2" then "HTTP/2" else "HTTP/3" end) | \($t.p50_ms | f) | \($t.p99_ms | f) | \($t.p99_9_ms | f) | \($t.stddev_ms | f) | \($t.max_ms | f) | \(.errors_total + .unfinished) | \(.throughput | round) | \($q) |"
		' "$out.json")
		log "  $row"
		rows+=("$row")
	done
	# Packets the kernel dropped at a TUN device's queue would be loss that
	# netem neither chose nor counted: it fell behind.
	qdrops=$(($(tun_drops "$cli" pstun-a) + $(tun_drops "$srv" pstun-b)))
	((qdrops == 0)) || log "  warning: $qdrops packets dropped at the TUN queues (netem fell behind)"
	stop_pid "$penstock_pid"
	stop_pid "$netem_pid"
	sed 's/^/  /' "$netem_log" >&2
	# netem's own lateness: a packet held much longer than the delay means
	# the machine (or the VM under it) stalled, and the tail shows it.
	late=$(sed -nE 's/.*, ([0-9.]+)ms at most.*/\1/p' "$netem_log")
	if [[ -n $late ]] && awk -v l="$late" -v lim="$LATE_WARN" 'BEGIN {exit !(l > lim)}'; then
		log "  warning: netem delivered a packet ${late} ms late; this condition's tails include a stall of the machine (marked †)"
		for ((i = first; i < ${#rows[@]}; i++)); do
			rows[i]=${rows[i]/" % |"/" % † |"}
		done
	fi
done

log "TCP congestion control: $tcp_cc; $RATE req/s, $CONNS_H2 (h2) / $CONNS_H3 (h3) connection(s) × $STREAMS streams, ${WARMUP}s + ${DURATION}s"
echo "| RTT / loss | protocol | P50 ms | P99 ms | P99.9 ms | stddev ms | max ms | errors | req/s | QUIC loss % (penstock's metrics) |"
echo "|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
