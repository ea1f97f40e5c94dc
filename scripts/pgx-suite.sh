#!/usr/bin/env bash
# Runs pgx's own PgBouncer-mode tests (PGX_TEST_PGBOUNCER_CONN_STRING)
# against penstock's PostgreSQL proxy in transaction mode, with md5 logins
# as pgx's CI does for PgBouncer: a PostgreSQL in a temporary directory on a
# loopback port, penstock in front of it, and `go test` of the pgx module
# version penstock uses, in a copy of its module source (from the Go module
# proxy) with its own go.mod.
#
# The selection is the one pgx's own CI runs against PgBouncer (`-run
# 'TestPgbouncer|TestConnContextCanceledCancelsRunningQueryOnServer' ./...`):
# TestPgbouncerQueryExecModes (10 workers × 100 queries in each exec mode,
# transactions, batches), TestPgbouncerStatementCacheEviction, and pgconn's
# TestConnContextCanceledCancelsRunningQueryOnServer (a cancelled context
# cancels the query on the server through the proxy; its postgres subtest
# goes to PostgreSQL directly). Every other pgx test skips itself without
# PGX_TEST_PGBOUNCER_CONN_STRING or runs against PostgreSQL directly, and is
# not selected. scripts/test runs this; it fails on a failure or on a skip
# that docs/postgres.md does not list.
#
# Usage: bash scripts/pgx-suite.sh     (KEEP=1 keeps the temp dir, RACE=1
#                                       adds -race, TIMEOUT=600 bounds go test)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || {
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq postgresql >/dev/null
}
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
pgx=$(go list -m -f '{{.Version}}' github.com/jackc/pgx/v5)

tmp=$(mktemp -d /tmp/pgx-suite.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -z "${KEEP:-}" ]; then rm -rf "$tmp"; else echo "kept $tmp" >&2; fi
}
trap cleanup EXIT
as=()
if [ "$(id -u)" -eq 0 ]; then as=(runuser -u nobody --); chown nobody "$tmp"; fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

pgport=$(free_port)
pxport=$(free_port)
"${as[@]}" "$bin/initdb" -D "$tmp/data" -U postgres -A trust -E UTF8 --locale C --no-sync >/dev/null
cat >>"$tmp/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $pgport
unix_socket_directories = '$tmp'
fsync = off
log_min_messages = fatal
EOF
"${as[@]}" "$bin/postgres" -D "$tmp/data" >"$tmp/postgres.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do "$bin/pg_isready" -q -h 127.0.0.1 -p "$pgport" && break; sleep 0.1; done
"$bin/psql" -q -h 127.0.0.1 -p "$pgport" -U postgres -c "CREATE ROLE pgx_md5 LOGIN PASSWORD 'secret'" -c "CREATE DATABASE pgx_test OWNER pgx_md5"

go build -o "$tmp/penstock" ./cmd/penstock
cat >"$tmp/penstock.yaml" <<EOF
listeners: [{name: unused, address: "127.0.0.1:0"}]
upstreams: [{name: unused, endpoints: [{address: "127.0.0.1:9"}]}]
routes: [{name: unused, match: {path: /}, upstream: unused}]
logging: {level: warn}
access_log: {enabled: false}
reload: {watch: false}
postgres:
  listen: "127.0.0.1:$pxport"
  pool_mode: transaction
  auth_type: md5
  users: [{name: pgx_md5, password: secret}]
  databases: [{name: pgx_test, primary: "127.0.0.1:$pgport", pool_size: 4}]
EOF
"$tmp/penstock" serve -c "$tmp/penstock.yaml" >"$tmp/penstock.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do "$bin/pg_isready" -q -h 127.0.0.1 -p "$pxport" && break; sleep 0.1; done

# pgx's module source, as the Go module proxy serves it, tested with its own
# go.mod and go.sum.
src=$(go mod download -json "github.com/jackc/pgx/v5@$pgx" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
cp -r "$src" "$tmp/pgx"
chmod -R u+w "$tmp/pgx"
cd "$tmp/pgx"
export PGX_TEST_DATABASE="host=127.0.0.1 port=$pgport user=pgx_md5 password=secret dbname=pgx_test"
export PGX_TEST_PGBOUNCER_CONN_STRING="host=127.0.0.1 port=$pxport user=pgx_md5 password=secret dbname=pgx_test"
# pgx's CI job for PgBouncer runs exactly this selection (.github/workflows/ci.yml,
# test-pgbouncer), with -race; -race is left to RACE=1 here to keep the
# suite's time down.
race=(); [ -n "${RACE:-}" ] && race=(-race)
set +e
timeout "${TIMEOUT:-600}" go test "${race[@]}" -parallel=1 -count=1 -v -timeout 5m \
  -run 'TestPgbouncer|TestConnContextCanceledCancelsRunningQueryOnServer' ./... >"$tmp/pgx-test.log" 2>&1
rc=$?
set -e
grep -E '^(=== RUN|--- |    --- |PASS|FAIL|ok|panic)|Skipping' "$tmp/pgx-test.log" | grep -v '^=== RUN' || true
if [ $rc -ne 0 ]; then
  echo "scripts/pgx-suite.sh: pgx $pgx's PgBouncer-mode tests failed through penstock (exit $rc); penstock's log:" >&2
  tail -20 "$tmp/penstock.log" >&2
  exit $rc
fi
# A skip other than the ones docs/postgres.md lists is a failure: the
# suite must run, not skip, through the proxy.
if grep -E -- '--- SKIP' "$tmp/pgx-test.log" | grep -v -E 'TestConnContextCanceledCancelsRunningQueryOnServer/(postgres|default)' | grep -q .; then
  echo "scripts/pgx-suite.sh: unexpected skips:" >&2
  grep -E -- '--- SKIP' "$tmp/pgx-test.log" >&2
  exit 1
fi
echo "scripts/pgx-suite.sh: pgx $pgx's PgBouncer-mode tests passed through penstock (transaction pooling)"
cd "$repo"
