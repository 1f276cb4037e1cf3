#!/usr/bin/env bash
# `supervisor report` on a large results folder: a joblog of 1,000,000
# attempts (REPORT_ATTEMPTS) from 256 worker slots over two parts of a run
# (stopped with Ctrl-C, then --resume), with retries, failures of several
# kinds, kills, crashes, recycled workers and budget pauses, and its run
# log. Measures the page's size, the wall time and the peak RSS, and writes
# them to bench/report-results.md (REPORT_RESULTS). The bounds the issue
# sets: a page under 5 MB, in under 10 s, in bounded memory.
#
#   bench/report.sh                        # 1,000,000 attempts
#   REPORT_ATTEMPTS=100000 bench/report.sh # smaller, to try it
#
# Builds the release supervisor first (REPORT_NO_BUILD=1 skips that).
# Writes only under target/bench-report/ and to the results file.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
N=${REPORT_ATTEMPTS:-1000000}
OUT=${REPORT_RESULTS:-$ROOT/bench/report-results.md}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
if [ "${REPORT_NO_BUILD:-0}" != 1 ]; then
    cargo build --release --bin supervisor
fi
SUP=$TARGET/release/supervisor
DIR=$TARGET/bench-report
rm -rf "$DIR"
mkdir -p "$DIR/results"

python3 - "$N" "$DIR/results" <<'PY'
import datetime, json, random, sys
n, out = int(sys.argv[1]), sys.argv[2]
random.seed(22)
SLOTS = 256
t0 = datetime.datetime(2026, 11, 25, 10, 0, tzinfo=datetime.timezone.utc).timestamp() * 1000
iso = lambda ms: datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ms) % 1000:03d}Z"
kinds = [("http_error", 503, "http_status", "HTTP status 503"), ("http_error", 404, "http_status", "HTTP status 404"),
         ("error", None, "connect", "connection refused by 10.0.0.7:443"), ("error", None, "timeout", "timed out: no complete response within 29.9 s"),
         ("timeout", None, "timeout", "worker killed at its deadline"), ("crashed", None, "crashed", "worker died (signal 9)")]
# Two parts: the first 60% of the attempts, then a --resume 3 hours later.
free = [t0] * SLOTS
pid = [10000 + s for s in range(SLOTS)]
jobs_done = [0] * SLOTS
next_pid = 20000
run = []
run.append({"event": "run_start", "at": iso(t0), "pid": 999, "workers": SLOTS, "isolation": "processes", "jobs": n, "resume": False})
for s in range(SLOTS):
    run.append({"event": "worker_start", "at": iso(t0), "slot": s, "pid": pid[s]})
with open(f"{out}/joblog.jsonl", "w") as f:
    for i in range(n):
        if i == int(n * 0.6):
            end = max(free)
            run.append({"event": "stopping", "at": iso(end - 500), "why": "interrupted"})
            run.append({"event": "run_end", "at": iso(end), "exit": 130, "ok": i, "failed": 0, "skipped": 0, "not_run": n - i, "retried": 0, "dedup_saved": 0})
            start2 = end + 3 * 3600 * 1000
            run.append({"event": "run_start", "at": iso(start2), "pid": 1999, "workers": SLOTS, "isolation": "processes", "jobs": n, "resume": True})
            for s in range(SLOTS):
                next_pid += 1
                pid[s] = next_pid
                free[s] = start2
                run.append({"event": "worker_start", "at": iso(start2), "slot": s, "pid": pid[s]})
        s = i % SLOTS
        start = free[s] + random.random() * 3
        ms = random.lognormvariate(3.9, 0.5)
        rec = {"id": f"job-{i:07d}", "attempt": 1, "slot": s, "pid": pid[s], "started_at": iso(start), "elapsed_ms": round(ms, 3), "outcome": "ok", "status": 200}
        r = random.random()
        if r < 0.03:
            outcome, status, kind, msg = kinds[int(random.random() * len(kinds))]
            if outcome in ("timeout", "crashed") and random.random() < 0.9:
                outcome, status, kind, msg = kinds[0]
            rec["outcome"] = outcome
            if status:
                rec["status"] = status
            else:
                rec.pop("status")
            rec["error"] = {"kind": kind, "message": msg}
            if outcome == "timeout":
                rec["elapsed_ms"] = ms = 30000.0
            if random.random() < 0.7:
                rec["retry_in_ms"] = 0 if outcome in ("timeout", "crashed") else 250
            if outcome in ("timeout", "crashed"):
                next_pid += 1
                pid[s] = next_pid
                run.append({"event": "worker_start", "at": iso(start + ms), "slot": s, "pid": pid[s], "replaces": "stuck" if outcome == "timeout" else "crashed"})
        f.write(json.dumps(rec, separators=(",", ":")) + "\n")
        free[s] = start + ms
        jobs_done[s] += 1
        if jobs_done[s] % 1000 == 0:
            next_pid += 1
            pid[s] = next_pid
            run.append({"event": "worker_start", "at": iso(free[s]), "slot": s, "pid": pid[s], "replaces": "max jobs"})
        if i % 200_000 == 100_000:
            run.append({"event": "pause", "at": iso(free[s]), "until": iso(free[s] + 20000), "why": "the rate-limit budget is spent (Remaining: 0)"})
            for k in range(SLOTS):
                free[k] = max(free[k], free[s] + 20000)
    end = max(free)
    run.append({"event": "run_end", "at": iso(end), "exit": 1, "ok": n - int(n * 0.6), "failed": 0, "skipped": int(n * 0.6), "not_run": 0, "retried": 0, "dedup_saved": 0})
run.sort(key=lambda e: e["at"])
with open(f"{out}/runlog.jsonl", "w") as f:
    for e in run:
        f.write(json.dumps(e, separators=(",", ":")) + "\n")
PY

joblog_mb=$(du -m "$DIR/results/joblog.jsonl" | cut -f1)
lines=$(wc -l < "$DIR/results/joblog.jsonl")
# Peak RSS and wall time from GNU time; the exit status is 0 (page written)
# or 1 (written, with warnings: none expected here).
/usr/bin/time -f '%e %M' -o "$DIR/time.txt" "$SUP" report "$DIR/results" --output "$DIR/page.html" 2> "$DIR/stderr.txt" || {
    echo "bench/report.sh: supervisor report failed:" >&2; cat "$DIR/stderr.txt" >&2; exit 1; }
read -r secs rss_kb < "$DIR/time.txt"
page_bytes=$(stat -c %s "$DIR/page.html")
verdict() { if "$@"; then echo "met"; else echo "MISSED"; fi; }
size_ok=$(verdict [ "$page_bytes" -lt 5000000 ])
time_ok=$(verdict python3 -c "import sys; sys.exit(0 if $secs < 10 else 1)")
{
    echo "# supervisor report on a large folder"
    echo
    echo "\`bench/report.sh\`, $(date -u +%Y-%m-%d), $(nproc) cores ($(uname -m)), release build."
    echo "A generated joblog of $lines attempts (${joblog_mb} MB) from 256 worker slots,"
    echo "two parts (a Ctrl-C, then \`--resume\` three hours later), 3% failures of"
    echo "five kinds, kills, crashes, recycled workers and budget pauses, with its run log."
    echo
    echo "| | measured | bound | |"
    echo "|---|---|---|---|"
    echo "| page size | $(python3 -c "print(f'{$page_bytes / 1e6:.2f} MB')") | < 5 MB | $size_ok |"
    echo "| wall time | ${secs} s | < 10 s | $time_ok |"
    echo "| peak RSS | $(python3 -c "print(f'{$rss_kb / 1024:.1f} MB')") | bounded: does not grow with the attempts | |"
    echo
    echo "The joblog is read twice, as a stream (the frame, then the counts); memory"
    echo "holds the frame's buckets, lanes and timeline cells, never the attempts."
} > "$OUT"
cat "$OUT"
