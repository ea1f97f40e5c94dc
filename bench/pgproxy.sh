#!/usr/bin/env bash
# penstock's PostgreSQL proxy against PgBouncer, measured by pgbench in the
# same run on the same machine.
#
# One PostgreSQL (initdb in a temporary directory, loopback port, fsync off
# so that the server is not the bottleneck) behind both proxies, both
# in transaction pooling with a pool of POOL server connections, each proxy
# pinned to core 1 (PgBouncer is single-threaded; penstock runs with
# GOMAXPROCS=1), pgbench and PostgreSQL on core 0. For each round, proxy,
# script (-S select only, tpcb the default TPC-B-like one) and client count,
# pgbench runs DURATION seconds in simple query mode and logs every
# transaction; TPS is pgbench's (without connection time) and P99 is taken
# from its transaction log; CPU µs/tx is the proxy's user + system time
# (/proc/PID/stat) over the run divided by the transactions, which the
# machine's other load moves far less than it moves TPS. All proxies run
# at once; each cell runs once per proxy in a row (their order alternating
# by round), each run on tables reset as pgbench itself resets them; the
# table is the median of the rounds.
#
# Only loopback addresses are used; every run is bounded in time, and every
# process started here is stopped by its PID on exit.
#
# Usage: bash bench/pgproxy.sh
# Knobs (environment):
#   ROUNDS=3 DURATION=8 CLIENTS="1 10 50 200" POOL=10 SCALE=10
#   SCRIPTS="select tpcb" PROXIES="pgbouncer penstock penstock_busy" KEEP=1 (keep the temp dir)
#   BUSY_POLL=30us (postgres.busy_poll of the proxy "penstock_busy": penstock
#   with that setting, beside "penstock" with the default, off)
#   PENSTOCK_BIN=path (a penstock binary built before, instead of this tree)
#   BASELINE=REV (a git revision) also builds penstock at REV and measures it
#   as the proxy "baseline", interleaved with the others in every round: a
#   change's before and after in the same run
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
CLIENTS=${CLIENTS:-"1 10 50 200"}
POOL=${POOL:-10}
SCALE=${SCALE:-10}
SCRIPTS=${SCRIPTS:-"select tpcb"}
PROXIES=${PROXIES:-"pgbouncer penstock penstock_busy"}
BUSY_POLL=${BUSY_POLL:-30us}
BASELINE=${BASELINE:-}
[[ -z $BASELINE || " $PROXIES " == *" baseline "* ]] || PROXIES="$PROXIES baseline"
if [[ -n $BASELINE ]]; then
  git rev-parse --verify -q "$BASELINE^{commit}" >/dev/null || { echo "bench/pgproxy.sh: BASELINE=$BASELINE is not a commit" >&2; exit 2; }
fi

need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v pgbouncer >/dev/null 2>&1 || need+=(pgbouncer)
command -v taskset >/dev/null 2>&1 || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  echo "bench/pgproxy.sh: installing ${need[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq "${need[@]}" >/dev/null
fi
# The package's own service is not used (and must not hold the port).
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

tmp=$(mktemp -d /tmp/pgproxy-bench.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -z "${KEEP:-}" ]; then rm -rf "$tmp"; else echo "kept $tmp" >&2; fi
}
trap cleanup EXIT

# PostgreSQL and PgBouncer refuse to run as root: run them as nobody then.
as=()
if [ "$(id -u)" -eq 0 ]; then
  as=(runuser -u nobody --)
  chown nobody "$tmp"
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

pgport=$(free_port)
"${as[@]}" "$bin/initdb" -D "$tmp/data" -U bench -A trust -E UTF8 --locale C --no-sync >/dev/null
cat >>"$tmp/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $pgport
unix_socket_directories = '$tmp'
max_connections = 100
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 256MB
log_min_messages = fatal
EOF
taskset -c 0 "${as[@]}" "$bin/postgres" -D "$tmp/data" >"$tmp/postgres.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do "$bin/pg_isready" -q -h 127.0.0.1 -p "$pgport" && break; sleep 0.1; done
"$bin/createdb" -h 127.0.0.1 -p "$pgport" -U bench bench
"$bin/pgbench" -i -q -s "$SCALE" -h 127.0.0.1 -p "$pgport" -U bench bench >/dev/null 2>&1

if [ -n "${PENSTOCK_BIN:-}" ]; then cp "$PENSTOCK_BIN" "$tmp/penstock"; else go build -o "$tmp/penstock" ./cmd/penstock; fi
if [[ -n $BASELINE ]]; then
  mkdir "$tmp/baseline-src"
  git archive "$BASELINE" | tar -x -C "$tmp/baseline-src"
  (cd "$tmp/baseline-src" && go build -o "$tmp/penstock-baseline" ./cmd/penstock)
fi

start_pgbouncer() {
  local port=$1
  cat >"$tmp/pgbouncer.ini" <<EOF
[databases]
bench = host=127.0.0.1 port=$pgport dbname=bench user=bench
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $tmp/userlist.txt
pool_mode = transaction
default_pool_size = $POOL
max_client_conn = 1000
logfile = $tmp/pgbouncer.log
pidfile =
EOF
  echo '"bench" ""' >"$tmp/userlist.txt"
  chmod a+r "$tmp/pgbouncer.ini" "$tmp/userlist.txt"
  touch "$tmp/pgbouncer.log"; [ ${#as[@]} -eq 0 ] || chown nobody "$tmp/pgbouncer.log"
  taskset -c 1 "${as[@]}" pgbouncer -q "$tmp/pgbouncer.ini" &
  proxy_pid=$!
}

start_penstock() {
  local port=$1 exe=${2:-$tmp/penstock} busy=${3:-}
  cat >"$tmp/penstock-$port.yaml" <<EOF
listeners: [{name: unused, address: "127.0.0.1:0"}]
upstreams: [{name: unused, endpoints: [{address: "127.0.0.1:9"}]}]
routes: [{name: unused, match: {path: /}, upstream: unused}]
logging: {level: warn}
access_log: {enabled: false}
reload: {watch: false}
postgres:
  listen: "127.0.0.1:$port"
  pool_mode: transaction
  auth_type: trust
  users: [{name: bench}]
  databases: [{name: bench, primary: "127.0.0.1:$pgport", user: bench, pool_size: $POOL}]
EOF
  [ -z "$busy" ] || echo "  busy_poll: $busy" >>"$tmp/penstock-$port.yaml"
  GOMAXPROCS=1 taskset -c 1 "$exe" serve -c "$tmp/penstock-$port.yaml" >"$tmp/penstock-$port.log" 2>&1 &
  proxy_pid=$!
}

# penstock with postgres.busy_poll on.
start_penstock_busy() { start_penstock "$1" "$tmp/penstock" "$BUSY_POLL"; }

# penstock built at BASELINE, configured alike.
start_baseline() { start_penstock "$1" "$tmp/penstock-baseline"; }

# The proxy's own process (PgBouncer runs under runuser when started as root).
proxy_proc() { pgrep -P "$proxy_pid" 2>/dev/null | head -1 || true; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# p99 of the transaction log's latency column (µs) in ms.
p99() { cat "$@" | awk '{print $3}' | sort -n | awk '{a[NR]=$1} END {if (NR==0) {print "-"; exit} i=int(NR*0.99); if (i<1) i=1; printf "%.2f", a[i]/1000}'; }

# Every proxy runs for the whole benchmark (idle while another is measured),
# so the cells can interleave: each cell (script, client count) runs once per
# proxy in a row, the proxies' order alternating from round to round, and
# each run starts from the same tables. Without that, TPC-B runs of the
# proxy measured later meet the dead rows and the longer history table the
# earlier runs left (pgbench -n skips its own clean-up), and autovacuum runs
# under whichever proxy is measured when it wakes.
declare -A port_of pid_of
for proxy in $PROXIES; do
  port=$(free_port)
  "start_$proxy" "$port"
  pids+=("$proxy_pid")
  for _ in $(seq 100); do "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -d bench -U bench && break; sleep 0.1; done
  pp=$(proxy_proc); pid_of[$proxy]=${pp:-$proxy_pid}
  port_of[$proxy]=$port
done

# What pgbench does before a run without -n, plus a checkpoint, directly on
# the server (not through a proxy, and not timed).
reset_tables() {
  "$bin/psql" -q -X -h 127.0.0.1 -p "$pgport" -U bench bench \
    -c "TRUNCATE pgbench_history" -c "VACUUM pgbench_branches" -c "VACUUM pgbench_tellers" -c "CHECKPOINT" >/dev/null
}

results="$tmp/results.tsv"
: >"$results"
for round in $(seq "$ROUNDS"); do
  order=$PROXIES
  if [ $((round % 2)) -eq 0 ]; then order=$(echo "$PROXIES" | tr ' ' '\n' | tac | tr '\n' ' '); fi
  for script in $SCRIPTS; do
    flag=""; [ "$script" = select ] && flag="-S"
    for c in $CLIENTS; do
      j=$(( c < 4 ? c : 4 ))
      for proxy in $order; do
        pp=${pid_of[$proxy]}
        reset_tables
        rm -f "$tmp"/pgbench_log.*
        t0=$(cpu_ticks "$pp")
        out=$(cd "$tmp" && taskset -c 0 "$bin/pgbench" -n $flag -M simple -c "$c" -j "$j" -T "$DURATION" -l \
          -h 127.0.0.1 -p "${port_of[$proxy]}" -U bench bench 2>&1) || { echo "$out" >&2; exit 1; }
        t1=$(cpu_ticks "$pp")
        tps=$(echo "$out" | awk '/^tps = / {print $3; exit}')
        n=$(echo "$out" | awk '/number of transactions actually processed/ {print $6; exit}')
        cpu=$(awk -v a="$t0" -v b="$t1" -v n="$n" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.0f", (b - a) * 1e6 / hz / (n > 0 ? n : 1)}')
        failed=$(echo "$out" | awk '/number of failed transactions/ {print $5; exit}')
        lat=$(p99 "$tmp"/pgbench_log.*)
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$proxy" "$script" "$c" "$tps" "$lat" "${failed:-0}" "$cpu" >>"$results"
        printf 'round %s %-9s %-6s c=%-3s tps=%-10s p99=%sms failed=%s cpu=%sus/tx\n' "$round" "$proxy" "$script" "$c" "$tps" "$lat" "${failed:-0}" "$cpu" >&2
      done
    done
  done
done

# Medians over the rounds, one row per script and client count.
python3 - "$results" "$PROXIES" <<'EOF'
import sys, statistics, collections
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
proxies = sys.argv[2].split()
d = collections.defaultdict(list)
for r, proxy, script, c, tps, p99, failed, cpu in rows:
    d[(script, int(c), proxy)].append((float(tps), float(p99) if p99 != "-" else float("nan"), int(failed), float(cpu)))
keys = sorted({(s, c) for s, c, _ in d}, key=lambda k: (k[0], k[1]))
hdr = "| script | clients | " + " | ".join(f"{p} TPS | {p} P99 ms | {p} CPU µs/tx" for p in proxies)
for p in proxies[1:]:
    hdr += f" | {p} / {proxies[0]} TPS"
print(hdr + " |")
print("|" + "---|" * (hdr.count("|") - 1 + 1))
for s, c in keys:
    cells = []
    med = {}
    for p in proxies:
        v = d.get((s, c, p), [])
        if not v:
            cells += ["-", "-", "-"]; continue
        t = statistics.median(x[0] for x in v); l = statistics.median(x[1] for x in v)
        u = statistics.median(x[3] for x in v)
        med[p] = t
        cells += [f"{t:.0f}", f"{l:.2f}", f"{u:.0f}"]
    line = f"| {s} | {c} | " + " | ".join(cells)
    for p in proxies[1:]:
        line += f" | {med[p] / med[proxies[0]]:.2f}×" if p in med and proxies[0] in med else " | -"
    print(line + " |")
EOF
