#!/usr/bin/env bash
# Where the supervisor's time goes in case 1 (fast API, W=8): run it under
# strace -c and perf (or callgrind where perf cannot sample) against the same
# loopback nginx as bench/run.sh. Read-only for the project: it changes no
# code, it only reports.
#
#   bench/profile.sh                  # 20,000 jobs; report to bench/profile.txt
#   PROFILE_JOBS=5000 bench/profile.sh
#   PROFILE_ONLY=breakdown PROFILE_OUT=bench/profile-after.md bench/profile.sh
#                                     # only section 0, both modes (issue 23)
#
# Environment: PROFILE_JOBS (20000), PROFILE_OUT (bench/profile.txt),
# PROFILE_CALLGRIND=1 (callgrind even where perf works), PROFILE_ONLY=breakdown
# (section 0 alone), PROFILE_REPEAT (plain runs per mode in section 0, 3),
# PROFILE_LABEL (a note for the header: which build this is), and
# BENCH_NO_INSTALL / BENCH_NO_BUILD / BENCH_TMPDIR / BENCH_KEEP as in run.sh.
#
# Sections:
#   0. the breakdown per job, for both modes (processes, --threads), to
#      compare before/after a change (issue 23, item 5): wall, user and
#      system seconds and the kernel's share of the CPU (/usr/bin/time, the
#      supervisor with its reaped workers; median of PROFILE_REPEAT runs),
#      context switches per job (voluntary + involuntary, same runs),
#      syscalls per job (perf stat -e raw_syscalls:sys_enter over every
#      thread and worker; strace -c -f where perf cannot, which is slower
#      but counts the same), heap allocations per job (bench/alloc_count.c,
#      LD_PRELOADed into the supervisor and so into its workers; a run of
#      its own, never a timed one)
#   1. wall/user/sys of a plain run (the baseline the others distort)
#   2. strace -c -f: syscalls of the supervisor and its workers together
#   3. strace -c: syscalls of the supervisor alone
#   4. perf record -e cpu-clock -g (a software event: works in VMs without
#      hardware counters), top symbols per process; or, when perf cannot
#      record, callgrind on the supervisor alone (workers run natively) on
#      PROFILE_JOBS/10 jobs, since callgrind runs ~50x slower.
# Each run writes into a fresh dir on the same fresh loop-mounted ext4 as
# run.sh uses (BENCH_FS); nothing is deleted until the end (see lib.sh
# make_tmp: creating files right after deleting many is slow on ext4, which
# would land in the next section's numbers).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
# shellcheck source=lib.sh
. "$BENCH_DIR/lib.sh"

JOBS=${PROFILE_JOBS:-20000}
OUT=${PROFILE_OUT:-$BENCH_DIR/profile.txt}

install_cleanup

ensure_deps
build_release
command -v strace >/dev/null || { [ "$(id -u)" = 0 ] && [ "${BENCH_NO_INSTALL:-0}" != 1 ] && apt_install strace; } || true
make_tmp
start_nginx "$BENCH_TMP/nginx"
URL="http://127.0.0.1:$PORT/maps/api/geocode/json"
"$PY" "$BENCH_DIR/gen_jobs.py" "$JOBS" "$URL" > "$BENCH_TMP/jobs.jsonl"
"$PY" "$BENCH_DIR/gen_jobs.py" $((JOBS / 10)) "$URL" > "$BENCH_TMP/jobs-small.jsonl"

# A fresh result dir per run: the supervisor refuses a dir that already holds
# results of the same job list. (Not $(...): a subshell's counter is lost.)
n=0
next_out() { n=$((n + 1)); OUTDIR=$OUT_ROOT/out$n; }
# From here on, reports are cut with `head`, whose early exit must not stop
# the script through pipefail (SIGPIPE in perf report).
set +o pipefail

exec > >(tee "$OUT") 2>&1
echo "# supervisor profile, case 1: $JOBS jobs, --workers 8, fast loopback nginx"
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), kernel $(uname -r)"
echo "# callpool $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo ' (with uncommitted changes)')"
echo "# binaries: $SUPERVISOR and $HTTP_WORKER, built $(date -u -r "$SUPERVISOR" '+%Y-%m-%d %H:%M UTC')${PROFILE_LABEL:+; $PROFILE_LABEL}"
echo "# result files on $FS_DESC; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

# ---- 0. the breakdown per job, both modes
ALLOC_SO=""
if command -v cc >/dev/null && cc -O2 -shared -fPIC -o "$BENCH_TMP/alloc_count.so" "$BENCH_DIR/alloc_count.c" 2>"$BENCH_TMP/cc.err"; then
    ALLOC_SO=$BENCH_TMP/alloc_count.so
fi
PERF_SYSCALLS=0
perf stat -e raw_syscalls:sys_enter -o /dev/null true >/dev/null 2>&1 && PERF_SYSCALLS=1
# mode_args NAME: the supervisor's options for a mode.
mode_args() { [ "$1" = threads ] && echo "--threads --workers 8" || echo "--workers 8"; }
BREAK=$BENCH_TMP/breakdown.txt
: > "$BREAK"
for mode in processes threads; do
    for rep in $(seq 1 "${PROFILE_REPEAT:-3}"); do
        sync
        next_out
        # shellcheck disable=SC2046
        /usr/bin/time -o "$BENCH_TMP/time.txt" -f "%e %U %S %w %c" \
            "$SUPERVISOR" $(mode_args "$mode") --out "$OUTDIR" "$BENCH_TMP/jobs.jsonl" >/dev/null 2>&1
        echo "$mode time $(tail -n 1 "$BENCH_TMP/time.txt")" >> "$BREAK"
    done
    sync
    next_out
    if [ "$PERF_SYSCALLS" = 1 ]; then
        # shellcheck disable=SC2046
        perf stat -x, -e raw_syscalls:sys_enter -o "$BENCH_TMP/sc.txt" \
            "$SUPERVISOR" $(mode_args "$mode") --out "$OUTDIR" "$BENCH_TMP/jobs.jsonl" >/dev/null 2>&1
        echo "$mode syscalls $(grep raw_syscalls "$BENCH_TMP/sc.txt" | cut -d, -f1) perf" >> "$BREAK"
    elif command -v strace >/dev/null; then
        # shellcheck disable=SC2046
        strace -c -f -o "$BENCH_TMP/sc.txt" \
            "$SUPERVISOR" $(mode_args "$mode") --out "$OUTDIR" "$BENCH_TMP/jobs.jsonl" >/dev/null 2>&1
        echo "$mode syscalls $(awk '$NF=="total"{print $(NF-2)}' "$BENCH_TMP/sc.txt") strace" >> "$BREAK"
    fi
    if [ -n "$ALLOC_SO" ]; then
        sync
        next_out
        rm -f "$BENCH_TMP/alloc.txt"
        # shellcheck disable=SC2046
        ALLOC_COUNT_FILE=$BENCH_TMP/alloc.txt LD_PRELOAD=$ALLOC_SO \
            "$SUPERVISOR" $(mode_args "$mode") --out "$OUTDIR" "$BENCH_TMP/jobs.jsonl" >/dev/null 2>&1
        awk -v m="$mode" '{n++; a+=$3; r+=$5} END {print m, "allocs", a+0, r+0, n+0}' "$BENCH_TMP/alloc.txt" >> "$BREAK"
    fi
done
echo "## 0. per job, both modes ($JOBS jobs, W=8; every figure includes the workers)"
echo
"$PY" - "$BREAK" "$JOBS" <<'PYEOF'
import statistics, sys
path, jobs = sys.argv[1], int(sys.argv[2])
runs, sc, al = {}, {}, {}
for line in open(path):
    f = line.split()
    if f[1] == "time" and len(f) == 7:
        runs.setdefault(f[0], []).append([float(x) for x in f[2:]])
    elif f[1] == "syscalls" and len(f) >= 3 and f[2].isdigit():
        sc[f[0]] = (int(f[2]), f[3] if len(f) > 3 else "?")
    elif f[1] == "allocs":
        al[f[0]] = (int(f[2]), int(f[3]), int(f[4]))
print("| mode | runs | wall s | jobs/s | user s | sys s | kernel share of CPU | context switches/job (vol+invol) | syscalls/job | allocations/job (+ reallocs) |")
print("|---|---|---|---|---|---|---|---|---|---|")
for mode in ("processes", "threads"):
    rs = runs.get(mode)
    if not rs:
        continue
    med = lambda i: statistics.median(r[i] for r in rs)
    wall, user, sys_, vol, inv = (med(i) for i in range(5))
    s = sc.get(mode)
    a = al.get(mode)
    print(f"| {mode} | {len(rs)} | {wall:.2f} | {jobs / wall:,.0f} | {user:.2f} | {sys_:.2f} | "
          f"{sys_ / (user + sys_):.0%} | {(vol + inv) / jobs:.2f} ({vol / jobs:.2f}+{inv / jobs:.2f}) | "
          + (f"{s[0] / jobs:.1f} ({s[1]}) | " if s else "n/a | ")
          + (f"{a[0] / jobs:.1f} (+{a[1] / jobs:.1f}; {a[2]} processes counted) |" if a else "n/a |"))
print()
print("wall/user/sys/switches: median over the runs (user, sys and switches of the supervisor and its")
print("reaped workers, from wait4); syscalls: one more run under perf stat (or strace -c -f); allocations:")
print("one more run with bench/alloc_count.c preloaded (malloc, calloc, memalign family; reallocs apart).")
PYEOF
echo
if [ "${PROFILE_ONLY:-}" = breakdown ]; then
    log "wrote $OUT"
    exit 0
fi

echo "## 1. plain run (/usr/bin/time; %M includes the workers' peaks)"
sync
if [ -x /usr/bin/time ]; then
    next_out
    /usr/bin/time -f "wall %e s, user %U s, sys %S s, max RSS %M KB, %c involuntary / %w voluntary switches" \
        "$SUPERVISOR" --workers 8 --out "$OUTDIR" "$BENCH_TMP/jobs.jsonl" 2>&1 | grep -E '^(wall|[0-9]+ jobs)'
else
    next_out
    ( time "$SUPERVISOR" --workers 8 --out "$OUTDIR" "$BENCH_TMP/jobs.jsonl" ) 2>&1 | grep -E '^(real|user|sys|[0-9]+ jobs)'
fi
echo

if command -v strace >/dev/null; then
    echo "## 2. strace -c -f: supervisor + workers (times are inflated by tracing; counts are exact)"
    sync
    next_out
    strace -c -f -o "$BENCH_TMP/strace-f.txt" "$SUPERVISOR" --workers 8 --out "$OUTDIR" "$BENCH_TMP/jobs.jsonl" 2>"$BENCH_TMP/strace-f.err" || true
    grep -E '^[0-9]+ jobs' "$BENCH_TMP/strace-f.err"
    head -n 25 "$BENCH_TMP/strace-f.txt"
    echo
    echo "## 3. strace -c: the supervisor process alone (all its threads, no workers)"
    sync
    # -f is needed for the supervisor's own threads but follows the workers
    # too; -b execve detaches from a child at its exec, so a worker is traced
    # only between fork and exec (a handful of calls each).
    next_out
    strace -c -f -b execve -o "$BENCH_TMP/strace-sup.txt" "$SUPERVISOR" --workers 8 --out "$OUTDIR" "$BENCH_TMP/jobs.jsonl" 2>"$BENCH_TMP/strace-sup.err" || true
    grep -E '^[0-9]+ jobs' "$BENCH_TMP/strace-sup.err"
    head -n 25 "$BENCH_TMP/strace-sup.txt"
    echo
else
    echo "## 2-3. strace: skipped (strace not installed)"
fi

echo "## 4. CPU profile"
sync
if [ "${PROFILE_CALLGRIND:-0}" != 1 ] && perf record -e cpu-clock -o "$BENCH_TMP/probe.data" true >/dev/null 2>&1; then
    next_out
    perf record -e cpu-clock -F 2000 -g -o "$BENCH_TMP/perf.data" \
        "$SUPERVISOR" --workers 8 --out "$OUTDIR" "$BENCH_TMP/jobs.jsonl" >/dev/null 2>"$BENCH_TMP/perf-run.err" || true
    grep -E '^[0-9]+ jobs' "$BENCH_TMP/perf-run.err"
    pr() { perf report -i "$BENCH_TMP/perf.data" --stdio "$@" 2>/dev/null | grep -v '^#' | grep -v '^$'; }
    echo "### share of all samples by thread (comm) and object: supervisor threads and workers"
    pr --no-children --sort comm,dso -g none | head -n 25
    # The supervisor's pid: its main thread keeps the name "supervisor".
    spid=$(perf script -i "$BENCH_TMP/perf.data" -F comm,pid 2>/dev/null | awk '$1=="supervisor"{split($2,a,"/"); print a[1]; exit}')
    echo
    echo "### supervisor process (pid $spid) only, % of its samples: by thread"
    pr --pid "$spid" --percentage relative --no-children --sort comm -g none | head -n 12
    echo
    echo "### supervisor process: top symbols, self time ([k] = kernel, [.] = user)"
    pr --pid "$spid" --percentage relative --no-children --sort dso,sym -g none | head -n 40
    echo
    echo "### supervisor process: user-space functions, inclusive (children) time"
    pr --pid "$spid" --percentage relative --children --sort sym -g none | grep -v '\[k\]' | grep -v ' 0x' | head -n 30
    echo
    echo "### supervisor process: call chains of its top kernel symbols (>= 3%)"
    pr --pid "$spid" --percentage relative --no-children --sort sym -g caller,1,callee --percent-limit 3 | head -n 120
else
    small=$((JOBS / 10))
    echo "callgrind on the supervisor alone (perf cannot record, or PROFILE_CALLGRIND=1), $small jobs"
    next_out
    valgrind --tool=callgrind --trace-children=no --callgrind-out-file="$BENCH_TMP/cg.out" \
        "$SUPERVISOR" --workers 8 --out "$OUTDIR" "$BENCH_TMP/jobs-small.jsonl" >/dev/null 2>&1 || true
    callgrind_annotate --inclusive=no "$BENCH_TMP/cg.out" 2>/dev/null | head -n 45
    echo
    callgrind_annotate --inclusive=yes "$BENCH_TMP/cg.out" 2>/dev/null | sed -n '1,200p' | grep -E '^ *[0-9,]+ \(' | head -n 30
fi
echo
log "wrote $OUT"
