#!/usr/bin/env bash
# The supervisor's peak memory (VmHWM, polled from /proc/PID/status every
# 10 ms, and the wait4 maxrss) in three runs that grew it with the count of
# things before its buffers were bounded by bytes (issue 18, item 6):
#
#   flood:   8 worker processes (--worker-cmd, a Python script) that each
#            answer their job with one 200 MB stdout line (--retries 0)
#   bodies:  300 JSON Lines jobs with a 1 MiB `body` each, POSTed to the
#            demo API's /echo, 8 worker processes
#   threads: the same 300 jobs with --threads --workers 8
#
# Needs python3 and cargo; builds the release binaries (BENCH_NO_BUILD=1 to
# use those in target/release). Nothing else: no nginx, no root.
#
#   bench/memory.sh                  # all three
#   MEMORY_CASES="flood" bench/memory.sh
#
# Prints one line per run; the figures go into bench/results.md by hand.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
# shellcheck source=lib.sh
. "$BENCH_DIR/lib.sh"

CASES=${MEMORY_CASES:-flood bodies threads}
FLOOD_MB=${MEMORY_FLOOD_MB:-200}
BODY_JOBS=${MEMORY_BODY_JOBS:-300}

build_release
DEMO_API=$TARGET_DIR/release/demo-api
[ -x "$DEMO_API" ] || die "no demo-api in $TARGET_DIR/release"

TMP=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/callpool-memory.XXXXXX")
API_PID=""
cleanup() {
    [ -z "$API_PID" ] || { kill "$API_PID" 2>/dev/null || true; wait "$API_PID" 2>/dev/null || true; }
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A worker that says ready, then answers its first job with one endless-ish
# result line: FLOOD_MB megabytes of x inside the id, written in 1 MiB pieces.
cat >"$TMP/flood.py" <<'EOF'
import sys
mb = int(sys.argv[1])
out = sys.stdout.buffer
out.write(b'{"type":"ready","protocol":1}\n')
out.flush()
if sys.stdin.buffer.readline():
    out.write(b'{"type":"result","id":"')
    chunk = b"x" * (1 << 20)
    for _ in range(mb):
        out.write(chunk)
    out.write(b'"}\n')
    out.flush()
sys.stdin.buffer.read()
EOF

# Runs the supervisor with the given arguments, polls its VmHWM, prints
# "peak_mb exit_code seconds".
measure() {
    "$PY" - "$SUPERVISOR" "$@" <<'EOF'
import os, subprocess, sys, time
cmd = sys.argv[1:]
t0 = time.monotonic()
p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
hwm = 0
while True:
    try:
        with open(f"/proc/{p.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    hwm = max(hwm, int(line.split()[1]))
    except OSError:
        pass
    pid, status, ru = os.wait4(p.pid, os.WNOHANG)
    if pid:
        break
    time.sleep(0.01)
code = os.waitstatus_to_exitcode(status)
print(f"{hwm / 1024:.1f} {ru.ru_maxrss / 1024:.1f} {code} {time.monotonic() - t0:.1f} {ru.ru_utime + ru.ru_stime:.1f}")
EOF
}

report() {
    local name=$1 what=$2 got
    shift 2
    got=$(measure "$@")
    read -r hwm maxrss code secs cpu <<<"$got"
    printf '%-8s %-48s peak VmHWM %6s MiB (wait4 maxrss %6s MiB)  exit %s  %5ss  %5ss CPU\n' \
        "$name" "$what" "$hwm" "$maxrss" "$code" "$secs" "$cpu"
}

for case in $CASES; do
    case $case in
    flood)
        for i in 1 2 3 4 5 6 7 8; do
            printf '{"id":"flood-%s","url":"http://127.0.0.1:9/"}\n' "$i"
        done >"$TMP/flood.jsonl"
        report flood "8 workers, one ${FLOOD_MB} MB stdout line each" \
            --workers 8 --retries 0 -q --worker-cmd "$PY $TMP/flood.py $FLOOD_MB" \
            --out "$TMP/out-flood" "$TMP/flood.jsonl"
        rm -rf "$TMP/out-flood"
        ;;
    bodies | threads)
        if [ -z "$API_PID" ]; then
            "$DEMO_API" --port 0 >"$TMP/api.out" 2>"$TMP/api.err" &
            API_PID=$!
            for _ in $(seq 1 100); do
                grep -q listening "$TMP/api.out" 2>/dev/null && break
                sleep 0.05
            done
            URL=$(sed -n 's/.*listening on \(http[^ ]*\).*/\1/p' "$TMP/api.out")
            [ -n "$URL" ] || die "the demo API did not start: $(cat "$TMP/api.err")"
            "$PY" - "$URL/echo" "$BODY_JOBS" >"$TMP/bodies.jsonl" <<'EOF'
import json, sys
url, n = sys.argv[1], int(sys.argv[2])
body = "b" * (1 << 20)
for i in range(n):
    print(json.dumps({"id": f"body-{i}", "method": "POST", "url": url, "body": body}))
EOF
        fi
        mode=()
        [ "$case" = threads ] && mode=(--threads)
        report "$case" "$BODY_JOBS jobs, 1 MiB body each, 8 ${case/bodies/processes}" \
            --workers 8 "${mode[@]}" -q --out "$TMP/out-$case" "$TMP/bodies.jsonl"
        rm -rf "$TMP/out-$case"
        ;;
    *) die "unknown case $case (flood, bodies, threads)" ;;
    esac
done
