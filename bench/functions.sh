#!/usr/bin/env bash
# Functions: cold start, warm invocation and throughput of penstock's
# function runtime (internal/function), against the same function run by
# the AWS Lambda Runtime Interface Emulator, the process's own start time,
# and the same kind of handler called as a plain HTTP upstream.
#
# The function is internal/function/testdata/lambdafn, built with the
# official aws-lambda-go runtime client. The emulator is built from its Go
# module (github.com/aws/aws-lambda-runtime-interface-emulator) into a
# temporary directory; if it cannot be built, its rows are skipped and the
# script says so.
#
# Only loopback addresses are used; every process the benchmarks start is
# stopped by its PID.
#
# Usage: bash bench/functions.sh
# Knobs: ROUNDS=3 (interleaved runs of all benchmarks), RIE=/path/to/aws-lambda-rie
set -euo pipefail

ROUNDS=${ROUNDS:-3}
RIE_VERSION=v0.0.0-20261030222936-bef5c4ba774d
cd "$(dirname "$0")/.."

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

RIE=${RIE:-}
if [[ -z "$RIE" ]]; then
  if GOBIN="$tmp" go install "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@$RIE_VERSION" 2>"$tmp/rie.log"; then
    RIE="$tmp/aws-lambda-rie"
  else
    echo "the emulator could not be built (its rows are skipped):" >&2
    cat "$tmp/rie.log" >&2
  fi
fi

for round in $(seq "$ROUNDS"); do
  echo "== round $round"
  PENSTOCK_RIE="$RIE" go test -run '^$' -bench . -benchtime=1x -count=1 ./internal/function/ |
    grep -E '^Benchmark' | tee -a "$tmp/all.txt"
done

echo
echo "== medians over $ROUNDS rounds"
awk '{ name = $1; sub(/-[0-9]+$/, "", name)
       for (i = 5; i < NF; i += 2) print name, $(i+1), $i }' "$tmp/all.txt" > "$tmp/values.txt"
cut -d' ' -f1,2 "$tmp/values.txt" | sort -u | while read -r name unit; do
  grep -F "$name $unit " "$tmp/values.txt" | awk '{print $3}' | sort -g |
    awk -v k="$name $unit" '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2; printf "%-50s %10.3f\n", k, m }'
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
