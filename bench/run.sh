#!/usr/bin/env bash
# callpool benchmark: the supervisor (worker processes, and --threads)
# against curl --parallel, a Python multiprocessing.Pool, xargs + curl and
# GNU parallel + curl, on the same job lists and the same loopback nginx, in
# one run.
#
#   bench/run.sh                    # everything (about 10 minutes on 2 cores)
#   BENCH_QUICK=1 bench/run.sh      # job counts / 10, one repeat: a smoke test
#   BENCH_CASES=1,2 bench/run.sh    # only some cases
#
# Cases:
#   1  fast API, 20,000 jobs, 8 at a time: supervisor, supervisor --threads,
#      curl --parallel, Python Pool(8); xargs -P 8 + curl and GNU parallel +
#      curl on the first 2,000 jobs (one process per job is too slow for 20,000);
#      and the floor (issue 23): the project's result writer alone and its
#      HTTP client alone on the same jobs (the pool crate's `floor` example),
#      nginx alone under wrk -c8, then 1/(1/writer + 1/HTTP) and every
#      tool's fraction of it
#   2  50 ms API, 10,000 jobs, 256 at a time: supervisor, supervisor
#      --threads, curl, Python Pool; ideal = 256 / 0.05 s = 5,120 jobs/s; also
#      the time until all 256 workers are ready, in each mode
#   3  fast API, 200,000 jobs, 8 at a time: supervisor only; its peak RSS
#      against case 1's
#   4  hung API (never answers), 40 jobs, 8 at a time, --timeout 2s
#      --retries 0, both modes: exit 1 with 40 "timeout" results expected;
#      wall time, worker processes alive at exit, abandoned threads
#   5  a worker dies mid-job, 50 ms API, 2,000 jobs, 8 at a time: process
#      mode with one worker killed -9 by hand; thread mode with the
#      thread_panic harness (one worker thread panics); no result may be lost
#
# Environment:
#   BENCH_QUICK=1       job counts / 10 (case 4: 8 jobs) and BENCH_REPEAT=1
#                       (targets still shown)
#   BENCH_CASES=1,2,3,4,5  cases to run (default all)
#   BENCH_REPEAT=N      runs of each tool in cases 1, 2, 4 and 5, median
#                       reported (default 3; case 3 runs once)
#   BENCH_TIMEOUT=S     a tool run taking longer is killed and FAILED (600)
#   BENCH_POLL_MS=MS    /proc memory sampling period (50)
#   BENCH_TMPDIR=DIR    where the temp dir goes (default /var/tmp: on disk;
#                       not tmpfs, result files are part of the work)
#   BENCH_FS=loop|dir   loop (default, root only): result dirs on a fresh
#                       ext4 in a sparse image under the temp dir, loop-mounted,
#                       so that file creation does not depend on what was
#                       deleted on the disk lately (see lib.sh); dir: plain
#                       directories in the temp dir
#   BENCH_FS_SIZE=8G    size of that image (sparse)
#   BENCH_NO_INSTALL=1  never apt-get/pip install; report what is missing
#   BENCH_NO_BUILD=1    skip cargo build, use target/release as it is
#   BENCH_KEEP=1        keep the temp dir (jobs, logs, every result dir)
#   BENCH_RESULTS=FILE  markdown results (default bench/results.md; quick
#                       runs write bench/results-quick.md)
#   BENCH_SVG=FILE      case 2's processes-vs-threads picture (throughput over
#                       time, every worker's timeline), drawn from this run's
#                       joblogs by compare_svg.py (default
#                       docs/bench-processes-threads.svg; quick runs write
#                       docs/bench-processes-threads-quick.svg)
#
# It needs: curl, nginx + libnginx-mod-http-echo, python3 + requests (all
# installed when missing and running as root), optionally GNU parallel and
# wrk. When case 1 is selected it builds the floor example of the pool crate
# (optional: a failed build skips the floor rows). When
# case 5 is selected it also builds the thread_panic example of the pool crate
# (optional: a failed build skips that one row).
# Only 127.0.0.1 is ever targeted; every run has a timeout; nginx and the
# temp dir are removed on exit, also on Ctrl-C.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
# shellcheck source=lib.sh
. "$BENCH_DIR/lib.sh"

# bench.py runs in BG_PID: it kills the tool it is running on TERM.
install_cleanup

ensure_deps
build_release
# Only case 5 uses the harness; its build may fail (the row is then skipped).
THREAD_PANIC=""
cases=${BENCH_CASES:-1,2,3,4,5}
case ",${cases// /}," in
    *,5,*) build_thread_panic ;;
esac
FLOOR=""
case ",${cases// /}," in
    *,1,*) build_floor ;;
esac

# Room for 256 workers' pipes, 256 sockets and nginx's side of them.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

make_tmp
log "temp dir $BENCH_TMP; result dirs on $FS_DESC"
start_nginx "$BENCH_TMP/nginx"

# Case 2's picture for the README (processes vs threads), from this run.
if [ "${BENCH_QUICK:-0}" = 1 ]; then
    default_results=$BENCH_DIR/results-quick.md
    default_svg=$ROOT/docs/bench-processes-threads-quick.svg
else
    default_results=$BENCH_DIR/results.md
    default_svg=$ROOT/docs/bench-processes-threads.svg
fi

"$PY" "$BENCH_DIR/bench.py" \
    --supervisor "$SUPERVISOR" --http-worker "$HTTP_WORKER" \
    --port "$PORT" --tmp "$BENCH_TMP" --python "$PY" \
    --results "${BENCH_RESULTS:-$default_results}" --svg "${BENCH_SVG:-$default_svg}" \
    --skip-slow "$ECHO_MISSING" --skip-parallel "$PARALLEL_MISSING" \
    --skip-python "$REQUESTS_MISSING" --thread-panic "$THREAD_PANIC" --floor "$FLOOR" \
    --nginx-version "$("$NGINX" -v 2>&1 | sed 's/^nginx version: //')" --nginx-pid "$NGINX_PID" \
    --out-root "$OUT_ROOT" --fs-desc "$FS_DESC" &
BG_PID=$!
wait "$BG_PID"
