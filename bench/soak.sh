#!/usr/bin/env bash
# A long run, not for CI: 1,000,000 jobs against the loopback nginx, 16
# worker processes each replaced after 10,000 jobs (--max-jobs-per-worker).
# Watches the supervisor while it runs: its RSS when 100,000 and when
# 1,000,000 results are in (it must stay flat), its open file descriptors
# once the workers are up and near the end (they must be equal: no leak
# across 100+ worker replacements), and checks at the end that every job
# has exactly one ok result.
#
#   bench/soak.sh                     # 1,000,000 jobs (a few minutes)
#   SOAK_JOBS=200000 bench/soak.sh    # shorter
#
# Appends its figures to bench/soak-results.md. Same install, build, nginx
# and temp-dir handling as run.sh (lib.sh); only 127.0.0.1.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
# shellcheck source=lib.sh
. "$BENCH_DIR/lib.sh"

install_cleanup

ensure_deps
build_release
ulimit -n 65536 2>/dev/null || true
make_tmp
start_nginx "$BENCH_TMP/nginx"

N=${SOAK_JOBS:-1000000}
W=${SOAK_WORKERS:-16}
MAX=${SOAK_MAX_JOBS:-10000}
jobs=$BENCH_TMP/jobs.jsonl
"$PY" "$BENCH_DIR/gen_jobs.py" "$N" "http://127.0.0.1:$PORT/maps/api/geocode/json" >"$jobs"
out=$OUT_ROOT/soak
log "soak: $N jobs, $W workers, --max-jobs-per-worker $MAX"

"$PY" - "$SUPERVISOR" "$jobs" "$out" "$N" "$W" "$MAX" "$BENCH_DIR/soak-results.md" "$ROOT" <<'EOF'
import json, os, subprocess, sys, time, datetime

sup, jobs, out, n, w, mx, results, root = sys.argv[1:]
n, w = int(n), int(w)
summary = out + ".summary.json"
t0 = time.monotonic()
p = subprocess.Popen([sup, "--workers", str(w), "--max-jobs-per-worker", mx,
                      "--max-jobs-jitter", str(int(mx) // 10), "-q",
                      "--out", out, "--summary-json", summary, jobs],
                     stdout=subprocess.DEVNULL, stderr=open(out + ".err", "w"))

def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0

def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))

follow = {"at": 0, "lines": 0}

def done():
    # The joblog has one line per attempt: follow it from where the last
    # look stopped (cheaper than listing the folder).
    try:
        with open(os.path.join(out, "joblog.jsonl"), "rb") as f:
            f.seek(follow["at"])
            for chunk in iter(lambda: f.read(1 << 20), b""):
                follow["lines"] += chunk.count(b"\n")
                follow["at"] += len(chunk)
    except OSError:
        pass
    return follow["lines"]

marks = {}
fd_start = fd_end = None
last_count_at = 0.0
count = 0
while p.poll() is None:
    time.sleep(0.2)
    try:
        r, f = rss_kb(p.pid), fds(p.pid)
    except OSError:
        break
    if r == 0 or f == 0:
        # Exiting: /proc no longer tells.
        continue
    if time.monotonic() - last_count_at > 1.0:
        count = done()
        last_count_at = time.monotonic()
    # The check pass reads the whole file first: the workers are up once
    # results come in.
    if fd_start is None and count >= 1000:
        fd_start = f
    if count >= n // 10 and "10%" not in marks:
        marks["10%"] = (count, r)
    if count >= n * 0.9 and fd_end is None:
        # Still running (every worker up), near the end.
        fd_end = f
    if count >= n * 0.9:
        marks["end"] = (count, r)
secs = time.monotonic() - t0
rc = p.wait()
s = json.load(open(summary))
ids = set()
bad = 0
for name in os.listdir(out):
    if name.endswith(".json"):
        ids.add(name[:-5])
lost = n - len(ids)
# Spot-check every 100th result file in full.
for i in range(0, n, 100):
    try:
        r = json.load(open(os.path.join(out, f"job-{i:06d}.json")))
        bad += 0 if r["ok"] else 1
    except (OSError, ValueError):
        bad += 1
restarts = s.get("restarts", {})
commit = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                        capture_output=True, text=True).stdout.strip()
lines = [
    f"## Soak run, {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC, commit {commit}, {os.cpu_count()} cores",
    "",
    f"`bench/soak.sh`: {n:,} jobs against the loopback nginx, {w} worker processes, "
    f"`--max-jobs-per-worker {mx} --max-jobs-jitter {int(mx) // 10}`; {secs:.1f} s, exit status {rc}.",
    "",
    "| figure | value |",
    "|---|---|",
    f"| supervisor RSS with {marks.get('10%', (0, 0))[0]:,} results in | {marks.get('10%', (0, 0))[1] / 1024:.1f} MB |",
    f"| supervisor RSS with {marks.get('end', (0, 0))[0]:,} results in | {marks.get('end', (0, 0))[1] / 1024:.1f} MB |",
    f"| open file descriptors once started / at 90% of the jobs | {fd_start} / {fd_end} |",
    f"| workers replaced | {', '.join(f'{v} {k}' for k, v in restarts.items()) or 'none'} |",
    f"| result files | {len(ids):,} ({lost} lost); every 100th read back: {bad} not ok |",
    "",
]
print("\n".join(lines))
with open(results, "a") as f:
    f.write("\n".join(lines) + "\n")
sys.exit(0 if rc == 0 and lost == 0 and bad == 0 else 1)
EOF
