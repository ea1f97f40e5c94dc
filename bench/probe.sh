#!/usr/bin/env bash
# penstock probe at scale, and against blackbox_exporter, on loopback.
#
# Runs the benchmarks of internal/probe (the servers are a child process,
# so the prober's memory and CPU are measured alone) and prints medians:
#
#   https   HTTPS probes (TLS handshake, GET, 200) through the scanner
#           against 200 listeners on 50 addresses of 127.0.0.0/8, N of
#           them, N/10 in flight: probes/s and CPU µs per probe; beside it a
#           bare client TLS handshake and close (what openssl s_client
#           does) to the same servers: CPU µs per handshake
#   export  /probe of an HTTPS target through `penstock probe serve` and
#           through blackbox_exporter (Debian's prometheus-blackbox-exporter,
#           installed when missing), each its own process, 64 scrapes at a
#           time: probes/s and the exporter process's CPU µs per probe;
#           penstock once with Go's default groups (X25519MLKEM768 first),
#           once with X25519 only, as blackbox_exporter 0.23 offers
#   inflight INFLIGHT TLS probes held at once (handshake done, waiting for
#           an answer that never comes) against 50 addresses: RSS, Go heap
#           in use + stacks, and live Go objects per in-flight probe, and
#           per bare idle TLS connection
#   rate    the global pace over RATE_SECONDS at 200 probes/s, counted at
#           the target
#
# Only loopback addresses are used; every run is bounded; the child
# processes are stopped by the benchmarks that started them.
#
# Usage: bash bench/probe.sh
# Knobs: ROUNDS=3 N=2000 INFLIGHT="10000 18000" RATE_SECONDS=60
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
N=${N:-2000}
INFLIGHT=${INFLIGHT:-"10000 18000"}
RATE_SECONDS=${RATE_SECONDS:-60}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if ! command -v prometheus-blackbox-exporter >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq prometheus-blackbox-exporter >/dev/null
fi
go build -o "$tmp/penstock" ./cmd/penstock
go test -c -o "$tmp/probe.test" ./internal/probe
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), open files $(ulimit -n), $(prometheus-blackbox-exporter --version 2>&1 | head -1)"

bench() { # PATTERN N
  (cd internal/probe && PENSTOCK_BIN="$tmp/penstock" PENSTOCK_PROBE_INFLIGHT="$2" \
    "$tmp/probe.test" -test.run '^$' -test.bench "$1" -test.benchtime 1x) | grep '^Benchmark'
}
for r in $(seq "$ROUNDS"); do
  bench 'HTTPSProbe|BareTLSHandshake|ExporterVsBlackbox' "$N" >>"$tmp/throughput"
done
for n in $INFLIGHT; do
  bench 'InFlightTLS' "$n" >>"$tmp/inflight.$n"
done
(cd internal/probe && PENSTOCK_PROBE_RATE_SECONDS="$RATE_SECONDS" "$tmp/probe.test" -test.run '^TestGlobalRate$' -test.v) | grep 'probes in' >"$tmp/rate" || true

# median METRIC FILE: the median of a metric's values in a file of
# benchmark lines ("value unit" pairs).
median() {
  awk -v m="$1" '{ for (i = 3; i < NF; i++) if ($(i+1) == m) print $i }' "$2" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2] + v[NR/2+1]) / 2 }'
}
echo
echo "== HTTPS probes, N=$N, $ROUNDS rounds (medians)"
printf '%-34s %12s %16s\n' "" "per second" "CPU µs each"
printf '%-34s %12s %16s\n' "penstock scanner, HTTPS probe" "$(median probes/s "$tmp/throughput")" "$(median cpu-µs/probe "$tmp/throughput")"
printf '%-34s %12s %16s\n' "bare TLS handshake (s_client-like)" "$(median handshakes/s "$tmp/throughput")" "$(median cpu-µs/handshake "$tmp/throughput")"
echo
echo "== exporter /probe of an HTTPS target, 64 at a time, N=$N (medians)"
for p in penstock penstock-x25519 blackbox_exporter; do
  printf '%-34s %12s %16s\n' "$p" "$(median "$p-probes/s" "$tmp/throughput")" "$(median "$p-cpu-µs/probe" "$tmp/throughput")"
done
echo
echo "== TLS probes held in flight"
printf '%-10s %12s %12s %12s %14s %14s %14s %14s\n' "in flight" "RSS B/probe" "Go B/probe" "live B/probe" "stack B/probe" \
  "bare TLS RSS B" "bare TLS Go B" "bare live B"
for n in $INFLIGHT; do
  f="$tmp/inflight.$n"
  printf '%-10s %12s %12s %12s %14s %14s %14s %14s\n' "$n" "$(median rss-B/probe "$f")" "$(median go-B/probe "$f")" \
    "$(median live-B/probe "$f")" "$(median stack-B/probe "$f")" "$(median bare-tls-rss-B/conn "$f")" \
    "$(median bare-tls-go-B/conn "$f")" "$(median bare-tls-live-B/conn "$f")"
done
echo
echo "== global pace"
cat "$tmp/rate"
