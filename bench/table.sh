#!/usr/bin/env bash
# Memory of the table features: a CSV jobs file is streamed (the check pass
# and the run hold one row at a time), and `supervisor export` streams one
# result file per row. Measured as the peak RSS (VmHWM, /usr/bin/time %M) of
# the supervisor process, in thread mode so that it is one process and its
# workers' memory is in the figure too.
#
#   bench/table.sh                 # 20,000 and 200,000 rows (a few minutes)
#   TABLE_ROWS="2000 20000" bench/table.sh
#
# Prints a table and writes bench/table-results.md. Same install, build,
# nginx and temp-dir handling as run.sh (lib.sh); only 127.0.0.1.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
# shellcheck source=lib.sh
. "$BENCH_DIR/lib.sh"

install_cleanup

ensure_deps
build_release
make_tmp
start_nginx "$BENCH_TMP/nginx"
[ -x /usr/bin/time ] || apt_install time

ROWS=${TABLE_ROWS:-"20000 200000"}
URL="http://127.0.0.1:$PORT/maps/api/geocode/json"
RESULTS=${TABLE_RESULTS:-$BENCH_DIR/table-results.md}
lines=()

# peak KB and seconds of a command, its stderr kept in $2
measure() {
    local log=$1
    shift
    /usr/bin/time -f '%M %e' -o "$log.time" "$@" >"$log.out" 2>"$log.err" || true
    cat "$log.time" | tail -n 1
}

for n in $ROWS; do
    csv=$BENCH_TMP/jobs-$n.csv
    # An id, an address with a comma (quoted), a column not sent; every
    # tenth address repeats an earlier one, for --dedup.
    "$PY" - "$n" >"$csv" <<'EOF'
import csv, sys
n = int(sys.argv[1])
w = csv.writer(sys.stdout, lineterminator="\r\n")
w.writerow(["id", "address", "segment"])
for i in range(n):
    a = i - 5 if i % 10 == 9 else i
    w.writerow([f"r{i:07d}", f"{100 + a} Broadway, New York", "retail" if i % 2 else ""])
EOF
    out=$OUT_ROOT/run-$n
    sync
    read -r kb secs < <(measure "$BENCH_TMP/run-$n" "$SUPERVISOR" --threads --workers 8 -q \
        --url "$URL" --columns address --dedup --out "$out" \
        --summary-json "$BENCH_TMP/run-$n.json" "$csv")
    files=$(find "$out" -name '*.json' | wc -l)
    saved=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["dedup_saved"])' "$BENCH_TMP/run-$n.json" 2>/dev/null || echo '?')
    log "run of $n CSV rows: peak RSS $((kb / 1024)) MB, ${secs}s, $files result files, $saved calls saved"
    lines+=("| run (--threads, --dedup) | $n | $((kb / 1024)) MB | ${secs} s | $files result files, $saved calls saved by --dedup |")

    read -r kb secs < <(measure "$BENCH_TMP/export-$n" "$SUPERVISOR" export "$out" \
        --jobs "$csv" --columns address --url "$URL" \
        --field lat=/results/0/geometry/location/lat --field lng=/results/0/geometry/location/lng \
        --output "$BENCH_TMP/export-$n.csv")
    rows=$(($(wc -l <"$BENCH_TMP/export-$n.csv") - 1))
    log "export of $n rows: peak RSS $((kb / 1024)) MB, ${secs}s, $rows rows"
    lines+=("| export --jobs (2 fields) | $n | $((kb / 1024)) MB | ${secs} s | $rows rows |")
done

{
    echo "# Table features: memory"
    echo
    echo "Made by \`bench/table.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')."
    echo "Peak RSS of the supervisor process (\`/usr/bin/time %M\`); the run is in thread mode, so its workers are in the figure."
    echo
    echo "| what | rows | peak RSS | time | result |"
    echo "|---|---|---|---|---|"
    printf '%s\n' "${lines[@]}"
} | tee "$RESULTS"
