#!/usr/bin/env bash
# The whole tool on a fresh machine, with nothing but the Rust toolchain:
# builds the binaries, starts the bundled demo geocoding API on a free
# loopback port, geocodes the addresses of examples/addresses.csv (a
# spreadsheet export with awkward rows) with 4 worker processes, calling
# each distinct address once, and exports a CSV of the same rows with
# coordinates.
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

# The same options for the run and the export: which column is the id,
# which is sent and under what name, and where.
jobs=(--id-column customer_id --columns 'Street Address'
      --rename 'Street Address=address' --url "$base/maps/api/geocode/json")

set +e
target/release/supervisor --workers 4 "${jobs[@]}" --dedup \
  --fail-if /status=ZERO_RESULTS --out "$out" --overwrite examples/addresses.csv
status=$?
set -e

target/release/supervisor export "$out" --jobs examples/addresses.csv "${jobs[@]}" \
  --field lat=/results/0/geometry/location/lat \
  --field lng=/results/0/geometry/location/lng \
  --field formatted=/results/0/formatted_address \
  --output "$out.csv"

echo
echo "One result file per row in $out/, a line per call in $out/joblog.jsonl,"
echo "and the table, each row with its coordinates and status, in $out.csv:"
echo
cat "$out.csv"
# Exit status 1 is the demo working: two rows fail on purpose (the demo
# API does not know them: --fail-if /status=ZERO_RESULTS). Anything else
# is something broken.
case $status in
  0|1) echo; echo "demo done: $(grep -c ',ok$' "$out.csv") rows ok, the rest failed on purpose (see their error column)"; exit 0 ;;
  *) echo "the run ended with exit status $status: something broke" >&2; exit "$status" ;;
esac
