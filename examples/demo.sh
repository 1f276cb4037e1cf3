#!/usr/bin/env bash
# The whole tool on a fresh machine, with nothing but the Rust toolchain:
# builds the binaries, starts the bundled demo API on a free loopback port,
# geocodes the 152 addresses of examples/geocode.jsonl with 4 worker
# processes, and shows where the results are.
#
# usage: examples/demo.sh [RESULTS_DIR]     (default: demo-results)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-demo-results}

cargo build --release --bins --quiet
tmp=$(mktemp -d)
target/release/demo-api --port 0 >"$tmp/address" &
api=$!
trap 'kill "$api" 2>/dev/null; rm -rf "$tmp"' EXIT

# demo-api prints "demo-api listening on http://127.0.0.1:PORT" once ready.
for _ in $(seq 100); do
  [ -s "$tmp/address" ] && break
  sleep 0.1
done
base=$(awk '{print $NF; exit}' "$tmp/address")
[ -n "$base" ] || { echo "demo-api did not start" >&2; exit 1; }
echo "demo API at $base"

set +e
target/release/supervisor --workers 4 --url "$base/maps/api/geocode/json" \
  --out "$out" --overwrite examples/geocode.jsonl
status=$?
set -e

echo
echo "One result file per job in $out/ ($(ls "$out" | grep -c '\.json$') files), a line per attempt in $out/joblog.jsonl."
echo "For example, $out/nyc-ca.json:"
head -c 900 "$out/nyc-ca.json"
echo "..."
exit $status
