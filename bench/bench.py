#!/usr/bin/env python3
"""The benchmark's cases, measurement, checks and report. Run by bench/run.sh,
which has installed what is needed, built the project, and started nginx on
127.0.0.1:PORT; see run.sh for the cases and the BENCH_* knobs.

How a tool run is measured:
  * wall clock of the whole command, from spawn to exit (stdlib
    time.monotonic); inputs are converted to each tool's own format (curl
    config, "outfile url" lists) BEFORE the clock starts, which favours the
    peers: the supervisor and the Python Pool read jobs.jsonl on the clock;
  * memory by polling /proc every BENCH_POLL_MS (50 ms) from a low-priority
    thread: the tool process's VmHWM (the kernel's own peak RSS, so the poll
    only has to see it last) and the sum of VmRSS over all its descendants
    (the supervisor's workers, the Pool's processes), max over the polls;
    and the whole run's peak: max over the polls of the tool's VmRSS plus
    its descendants' (the same with Pss from smaps_rollup, read less often:
    see Sampler);
  * then every expected result file is opened: it must exist and hold the
    server's "status":"OK" answer echoing its own job's address (case 4: an
    "ok": false result with error.kind "timeout"). A run with missing or
    wrong files, an exit status other than the expected one (0; case 4: 1)
    or a timeout is FAILED, with no speed given, never "fast".
Every run gets a fresh output dir under --out-root (a fresh loop-mounted
ext4, see lib.sh), kept until the end (see run_row for why), and the page
cache is synced before each run so that one tool's writeback does not land
in another's timing.

Exit status: 0 when every case ran and every supervisor run (either mode,
and the thread_panic harness) passed its check (targets FAIL or PASS alike;
skipped rows do not count), 1 when one failed, 2 on usage.
"""
import argparse
import collections
import ctypes
import datetime
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024



KEEP_MARKER = "<!-- Sections below are written by other scripts and kept by bench/run.sh. -->"

def env_int(name, default):
    v = os.environ.get(name, "")
    return int(v) if v.strip() else default


QUICK = os.environ.get("BENCH_QUICK", "0") == "1"
SCALE = 10 if QUICK else 1
REPEAT = env_int("BENCH_REPEAT", 1 if QUICK else 3)
TIMEOUT = env_int("BENCH_TIMEOUT", 600)
POLL = env_int("BENCH_POLL_MS", 50) / 1000.0
CASES = [c.strip() for c in os.environ.get("BENCH_CASES", "1,2,3,4,5").split(",") if c.strip()]

SLOW_LATENCY = 0.05  # echo_sleep in nginx.conf.in

# Case 4 (hung API): the supervisor's options, and the result every job must get.
HANG_OPTS = ["--timeout", "2s", "--retries", "0"]
HANG_DEADLINE = 2.0
# Case 5: the thread_panic harness makes the run's K-th call panic, on
# whichever worker thread makes it (calls are counted over all threads).
PANIC_ON_CALL = 10
# Pss from smaps_rollup costs the kernel a page-table walk per process (about
# 17 ms of CPU for 257 small processes on the reference VM, against 4 ms for
# their statm): the sampler reads it only as often as keeps that under this
# share of one core (every poll for a few processes, about every 0.35 s for
# 257).
PSS_CPU_SHARE = 0.05

# Targets (from the project's goals): see targets() below.
T_VS_CURL = 1.5
T_VS_PYPOOL = 10.0
T_IDEAL = 0.90
T_SCALE_RSS = 1.5
T_MAX_RSS_MB = 32
T_IDLE_WORKER_MB = 8
# Thread mode (supervisor --threads).
T_THREADS_VS_CURL = 1.5
T_THREADS_IDEAL = 0.95
T_THREADS_MEM = 1 / 5  # its whole-run peak RSS at W=256 over process mode's
# Issue 23: case 1's jobs/s as a share of the floor measured in the same run.
T_FLOOR_THREADS = 0.75
T_FLOOR_PROCESSES = 0.6


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- /proc ---

def read_status_kb(pid, keys):
    """{key: kB} for the VmXXX lines of /proc/PID/status (missing: absent)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in keys:
                    out[k] = int(v.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return out


def rss_kb(pid):
    """Resident set of one process from /proc/PID/statm (cheaper than status)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE_KB
    except (OSError, ValueError, IndexError):
        return 0


def pss_kb(pid):
    """Proportional set size of one process (kB) from /proc/PID/smaps_rollup:
    pages shared with N processes count 1/N. 0 when unreadable."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def proc_state(pid):
    """The state letter of /proc/PID/stat (R, S, D, Z, ...), None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return data[data.rfind(b")") + 2:].split()[0].decode()
    except (OSError, IndexError):
        return None


def proc_ppid(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return int(data[data.rfind(b")") + 2:].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def descendants(root):
    """Pids of every process below root, from the ppid field of /proc/*/stat
    (this kernel has no /proc/PID/task/TID/children)."""
    kids = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        # comm may hold spaces and parens: the fields start after the last ')'.
        fields = data[data.rfind(b")") + 2:].split()
        try:
            kids.setdefault(int(fields[1]), []).append(int(name))
        except (IndexError, ValueError):
            continue
    found, todo = [], [root]
    while todo:
        for c in kids.get(todo.pop(), ()):
            found.append(c)
            todo.append(c)
    return found


class Sampler(threading.Thread):
    """Polls a process tree's memory until stopped. It lowers its own thread's
    priority (nice 10) so that on a saturated 2-core machine the tools keep
    the CPU; memory is steady enough that a late sample loses nothing. The
    full /proc scan for new descendants runs every poll in the first second
    (workers start) and every 0.5 s after (every poll with full_scan); known
    descendants are read every poll.

    Whole-run figures: at each poll the tool's VmRSS plus its descendants'
    RSS, max over the polls (whole_rss); and the same sum of Pss (whole_pss),
    read only as often as PSS_CPU_SHARE allows (see there). Threads are not
    descendants: a thread-mode supervisor's workers are in its own RSS."""

    def __init__(self, pid, full_scan=False):
        super().__init__(daemon=True)
        self.pid = pid
        self.full_scan = full_scan
        self.stop_ev = threading.Event()
        self.root_hwm = 0       # peak RSS of the tool process itself, kB
        self.kids_sum = 0       # max over polls of the sum of descendants' RSS
        self.kid_max = 0        # largest single descendant RSS seen
        self.kids_seen = 0      # most descendants alive at once
        self.whole_rss = 0      # max over polls of tool VmRSS + descendants' RSS
        self.whole_pss = 0      # max over PSS polls of tool Pss + descendants' Pss
        self.polls = 0
        self.pss_polls = 0

    def run(self):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except (OSError, AttributeError):
            pass
        start = time.monotonic()
        last_scan, kids, next_pss = 0.0, [], 0.0
        while not self.stop_ev.is_set():
            now = time.monotonic()
            st = read_status_kb(self.pid, ("VmHWM", "VmRSS"))
            if st:
                self.root_hwm = max(self.root_hwm, st.get("VmHWM", 0), st.get("VmRSS", 0))
            if self.full_scan or now - start < 1.0 or now - last_scan >= 0.5:
                kids, last_scan = descendants(self.pid), now
            sizes = [rss_kb(k) for k in kids]
            live = [s for s in sizes if s > 0]
            self.kids_sum = max(self.kids_sum, sum(live))
            self.kid_max = max([self.kid_max] + live)
            self.kids_seen = max(self.kids_seen, len(live))
            if st.get("VmRSS"):
                self.whole_rss = max(self.whole_rss, st["VmRSS"] + sum(live))
            if now >= next_pss:
                t = time.monotonic()
                root = pss_kb(self.pid)
                if root:  # 0: the tool is gone (or no smaps_rollup): no sample
                    self.whole_pss = max(self.whole_pss, root + sum(pss_kb(k) for k in kids))
                    self.pss_polls += 1
                next_pss = t + max(POLL, (time.monotonic() - t) / PSS_CPU_SHARE)
            self.polls += 1
            self.stop_ev.wait(POLL)


# ---------------------------------------------------------------- runs ---

_current = None  # the running tool's Popen, for the SIGTERM handler

# Tools run without RUST_BACKTRACE / RUST_LIB_BACKTRACE, whatever the caller's
# environment: with RUST_BACKTRACE=1 a panic (case 5's injected one) prints a
# symbolized backtrace, which reads the binary's debug line tables and took
# the thread_panic run's peak RSS from 7 MB to 72 MB on the reference VM.
TOOL_ENV = {k: v for k, v in os.environ.items() if k not in ("RUST_BACKTRACE", "RUST_LIB_BACKTRACE")}


def on_term(signum, frame):
    # run.sh sends TERM on Ctrl-C or its own TERM: stop the tool's whole
    # process group (it was started in a session of its own), then exit.
    # os._exit, not sys.exit: the main thread may sit in waitpid and the
    # timer/sampler threads must not hold the exit up.
    if _current is not None:
        try:
            os.killpg(_current.pid, signal.SIGKILL)
        except OSError:
            pass
    log("stopped by SIGTERM")
    os._exit(143)


PR_SET_CHILD_SUBREAPER = 36
_libc = ctypes.CDLL(None, use_errno=True)


def set_subreaper(on):
    """While on, processes orphaned below this one (a tool's workers when the
    tool exits) are re-parented to this process instead of init, so that
    they can still be found and counted. False if the kernel refused."""
    return _libc.prctl(PR_SET_CHILD_SUBREAPER, 1 if on else 0, 0, 0, 0) == 0


def leftovers():
    """Processes below this one that are still alive (not zombies). Called
    right after a tool was reaped, with the subreaper on: bench.py has no
    other child then (nginx is run.sh's), so every one is the tool's."""
    return [pid for pid in descendants(os.getpid()) if proc_state(pid) not in (None, "Z", "X")]


def clear_leftovers():
    """SIGKILL whatever the tool left below this process, and reap what was
    re-parented here (at most 5 s)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        below = descendants(os.getpid())
        if not below:
            return
        for pid in below:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        for pid in below:
            if proc_ppid(pid) == os.getpid():
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
        time.sleep(0.05)


def run_tool(argv, log_base, cwd=None, during=None, full_scan=False, count_leftovers=False):
    """Runs argv with stdout/stderr to log_base.out/.err; returns a dict with
    seconds, exit code, timeout flag and memory figures.

    during(pid, stop_event) -> dict runs in a thread while the tool runs (the
    stop event is set when it has exited); its dict joins the result.
    full_scan: look for new descendants at every poll (a replacement worker
    that lives less than 0.5 s is seen). count_leftovers: count the tool's
    descendants still alive right after it exits ("left_at_exit", and
    "left_after_1s" when some were), see leftovers()."""
    global _current
    os.sync()  # earlier runs' dirty pages must not be written back on this clock
    subreaper = count_leftovers and set_subreaper(True)
    # CPU accounting: what the machine did during the run, minus the tool
    # (with its reaped children: workers, curls), nginx and this process
    # (sampler), is other people's load that slowed the run down.
    me0, nginx0, busy0 = os.times(), proc_cpu(NGINX_PIDS), machine_busy()
    with open(log_base + ".out", "wb") as out, open(log_base + ".err", "wb") as err:
        t0 = time.monotonic()
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                             cwd=cwd, env=TOOL_ENV, start_new_session=True)
        _current = p
        sampler = Sampler(p.pid, full_scan=full_scan)
        sampler.start()
        timed_out = threading.Event()
        hook_out, hook_stop = {}, threading.Event()
        hook = None
        if during is not None:
            hook = threading.Thread(target=lambda: hook_out.update(during(p.pid, hook_stop)),
                                    daemon=True)
            hook.start()

        def kill_on_timeout():
            timed_out.set()
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass

        timer = threading.Timer(TIMEOUT, kill_on_timeout)
        timer.daemon = True
        timer.start()
        # wait4 for the tool's CPU time (its own and its reaped children's).
        # Not its ru_maxrss (what `/usr/bin/time -f %M` prints): that is the
        # max over the tool and its children, and the forked copy of this
        # Python process before exec counts too (~17 MB), hiding a small
        # tool's peak. The sampler reads VmHWM instead.
        _, status, ru = os.wait4(p.pid, 0)
        seconds = time.monotonic() - t0
        busy1, nginx1, me1 = machine_busy(), proc_cpu(NGINX_PIDS), os.times()
        timer.cancel()
        left = {}
        if subreaper:
            # First thing after the exit: what the tool left running.
            alive = leftovers()
            left["left_at_exit"] = len(alive)
            if alive:
                time.sleep(1)
                left["left_after_1s"] = len(leftovers())
        elif count_leftovers:
            left["left_at_exit"] = None  # the kernel refused PR_SET_CHILD_SUBREAPER
        p.returncode = os.waitstatus_to_exitcode(status)
        hook_stop.set()
        if hook is not None:
            hook.join(10)
        sampler.stop_ev.set()
        sampler.join()
        _current = None
    # Leftover descendants (a tool that died before its children): kill them.
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except OSError:
        pass
    if subreaper:
        clear_leftovers()
        set_subreaper(False)
    tool_cpu = ru.ru_utime + ru.ru_stime
    nginx_cpu = nginx1 - nginx0
    self_cpu = (me1.user + me1.system) - (me0.user + me0.system)
    return {
        "seconds": seconds,
        "tool_cpu": tool_cpu,
        "tool_user": ru.ru_utime,
        "tool_sys": ru.ru_stime,
        "nginx_cpu": nginx_cpu,
        "others_cores": max(0.0, (busy1 - busy0) - tool_cpu - nginx_cpu - self_cpu) / seconds,
        "rc": p.returncode,
        "timed_out": timed_out.is_set(),
        "root_hwm_kb": sampler.root_hwm,
        "kids_sum_kb": sampler.kids_sum,
        "kid_max_kb": sampler.kid_max,
        "kids": sampler.kids_seen,
        "whole_rss_kb": sampler.whole_rss,
        "whole_pss_kb": sampler.whole_pss,
        "polls": sampler.polls,
        "pss_polls": sampler.pss_polls,
        **left,
        **hook_out,
    }


TICK = os.sysconf("SC_CLK_TCK")
NGINX_PIDS = []  # nginx master + worker, for CPU accounting (set in main)


def machine_busy():
    """CPU seconds the whole machine spent not idle (all CPUs), including
    time stolen by the hypervisor, from the first line of /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (v + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / TICK


def proc_cpu(pids):
    """utime + stime of these processes, in seconds."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                data = f.read()
            fields = data[data.rfind(b")") + 2:].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / TICK


# The server echoes the address; "status" and "echo" may sit in a JSON
# string inside the supervisor's file (escaped quotes) or be plain JSON.
RE_OK = re.compile(rb'\\?"status\\?"\s*:\s*\\?"OK\\?"')
RE_ECHO = re.compile(rb'\\?"echo\\?"\s*:\s*\\?"(\d+)(?:\+|%20| )Broadway')


def check_results(outdir, n):
    """(files present, files right, {}) for jobs 0..n-1 in outdir."""
    present = right = 0
    for i in range(n):
        try:
            with open(os.path.join(outdir, f"job-{i:06d}.json"), "rb") as f:
                data = f.read()
        except OSError:
            continue
        present += 1
        m = RE_ECHO.search(data)
        if m and int(m.group(1)) == 100 + i and RE_OK.search(data):
            right += 1
    return present, right, {}


def check_timeouts(outdir, n):
    """Case 4: (files present, files right, {"kinds": Counter}) where right =
    the file of job i is the supervisor's result for job i with "ok": false
    and error.kind "timeout"; kinds counts every file's error.kind ("ok" for
    an ok one, "unreadable" for a file that is not such a JSON object)."""
    present = right = 0
    kinds = collections.Counter()
    for i in range(n):
        try:
            with open(os.path.join(outdir, f"job-{i:06d}.json"), "rb") as f:
                d = json.load(f)
        except OSError:
            continue
        except ValueError:
            d = None
        present += 1
        if not isinstance(d, dict):
            kinds["unreadable"] += 1
            continue
        err = d.get("error") if isinstance(d.get("error"), dict) else {}
        kind = "ok" if d.get("ok") is True else str(err.get("kind"))
        kinds[kind] += 1
        if d.get("id") == f"job-{i:06d}" and d.get("ok") is False and kind == "timeout":
            right += 1
    return present, right, {"kinds": kinds}


def fmt_kinds(kinds):
    return ", ".join(f"{n} {k}" for k, n in kinds.most_common()) or "no files"


# "supervisor: all 256 workers ready in 0.123s": printed once, when every
# worker started at the beginning has said ready for the first time.
RE_READY = re.compile(rb"all (\d+) workers ready in ([0-9]+(?:\.[0-9]+)?)s")
RE_STARTED = re.compile(rb"worker (\d+) started \(pid (\d+)\)")
# The supervisor's end-of-run summary on stderr: "N jobs: ..." then, when
# any, a line "  retried attempts: R; workers restarted: 1 crashed, ...".
RE_SUMMARY = re.compile(rb"^\d+ jobs: ", re.M)
RE_RESTARTED = re.compile(rb"workers restarted: ([^\n]*)")
# The thread_panic harness's last line: "thread_panic: N jobs: A ok, F
# failed; restarts {"crashed": 1}" (a Rust map's debug form).
RE_HARNESS_RESTARTS = re.compile(rb"\d+ jobs: [^\n]*; restarts \{([^}\n]*)\}")
RE_PAIR = re.compile(rb'"([^"]*)": (\d+)')


def read_bytes(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def ready_time(err_path):
    """(workers, seconds) from the run's "all N workers ready" line, or None."""
    m = RE_READY.search(read_bytes(err_path))
    return (int(m.group(1)), float(m.group(2))) if m else None


def restarts_text(summary, err_path):
    """Workers restarted and why: from the summary JSON's "restarts" when
    there is one, else from the stderr summary; None when neither says."""
    if isinstance(summary, dict) and isinstance(summary.get("restarts"), dict):
        r = summary["restarts"]
        return ", ".join(f"{n} {k}" for k, n in r.items()) if r else "none"
    data = read_bytes(err_path)
    m = RE_RESTARTED.search(data)
    if m:
        return m.group(1).decode("utf-8", "replace").strip()
    m = RE_HARNESS_RESTARTS.search(data)
    if m:
        pairs = [f"{int(n)} {k.decode('utf-8', 'replace')}" for k, n in RE_PAIR.findall(m.group(1))]
        return ", ".join(pairs) or "none"
    return "none" if RE_SUMMARY.search(data) else None


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def result_files(outdir):
    """Result files (job-*.json) now in outdir; renamed into place whole."""
    try:
        with os.scandir(outdir) as it:
            return sum(1 for e in it if e.name.startswith("job-") and e.name.endswith(".json"))
    except OSError:
        return 0


def kill_a_worker(err_path, outdir):
    """Case 5, process mode: a during-hook for run_tool. As soon as the run is
    going (a "worker N started (pid P)" line in its stderr and at least one
    result file), kill -9 the first worker named there that is still a live
    child of the supervisor. Says which pid, when, and how many results were
    in by then ({"killed_pid": None} when the run ended first)."""
    def during(sup_pid, stop):
        t0 = time.monotonic()
        while not stop.wait(0.01):
            pids = [int(m.group(2)) for m in RE_STARTED.finditer(read_bytes(err_path))]
            if not pids or result_files(outdir) == 0:
                continue
            for pid in pids:
                if proc_ppid(pid) == sup_pid and proc_state(pid) not in (None, "Z", "X"):
                    done = result_files(outdir)
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        continue
                    return {"killed_pid": pid, "killed_at": time.monotonic() - t0,
                            "done_at_kill": done}
        return {"killed_pid": None}
    return during


def tail(path, lines=5):
    try:
        with open(path, "rb") as f:
            return b" | ".join(f.read().splitlines()[-lines:]).decode("utf-8", "replace")
    except OSError:
        return ""


# ------------------------------------------------------------ job files ---

class Jobs:
    """Job files made once per run and shared by every tool of a case."""

    def __init__(self, tmp, port):
        self.dir = os.path.join(tmp, "jobs")
        os.makedirs(self.dir, exist_ok=True)
        self.base = f"http://127.0.0.1:{port}"
        self.cache = {}

    def get(self, kind, n):
        """jobs-KIND-N.jsonl; a smaller list is the first N lines of the
        biggest one made so far of that kind (the same jobs, a prefix)."""
        key = (kind, n)
        if key in self.cache:
            return self.cache[key]
        path = os.path.join(self.dir, f"jobs-{kind}-{n}.jsonl")
        bigger = [m for (k, m) in self.cache if k == kind and m >= n]
        if bigger:
            with open(self.cache[(kind, min(bigger))]) as src, open(path, "w") as dst:
                for i, line in zip(range(n), src):
                    dst.write(line)
        else:
            url = self.base + {"slow": "/slow", "hang": "/hang"}.get(kind, "") + "/maps/api/geocode/json"
            with open(path, "w") as dst:
                subprocess.run([sys.executable, os.path.join(BENCH_DIR, "gen_jobs.py"), str(n), url],
                               stdout=dst, check=True)
        self.cache[key] = path
        return path


def url_pairs(jobs_path, outdir):
    """(output file, full URL) per job: what the curl-based peers are given.
    The query is encoded the way requests/ureq would encode params."""
    with open(jobs_path) as f:
        for line in f:
            j = json.loads(line)
            yield (os.path.join(outdir, j["id"] + ".json"),
                   j["url"] + "?" + urllib.parse.urlencode(j.get("params", {})))


# ---------------------------------------------------------------- tools ---
# Each tool: name, and prepare(ctx, jobs_path, workers, outdir, scratch) ->
# argv, where prepare may write the tool's input (not timed).

def t_supervisor(ctx, jobs, w, outdir, scratch):
    return [ctx.supervisor, "--workers", str(w), "--out", outdir, jobs]


def t_threads(ctx, jobs, w, outdir, scratch):
    # Thread mode: the W workers are threads inside the supervisor.
    return [ctx.supervisor, "--threads", "--workers", str(w), "--out", outdir, jobs]


def t_thread_panic(ctx, jobs, w, outdir, scratch):
    # Case 5's harness (an example of the pool crate): thread mode where the
    # run's PANIC_ON_CALL-th call panics (once), in whichever worker thread.
    return [ctx.thread_panic, "--workers", str(w), "--out", outdir,
            "--panic-on-call", str(PANIC_ON_CALL), jobs]


def t_curl(ctx, jobs, w, outdir, scratch):
    # curl's own parallel mode: one url/output pair per job in a config file.
    cfg = scratch + ".curlcfg"
    with open(cfg, "w") as f:
        for out, url in url_pairs(jobs, outdir):
            f.write(f'url = "{url}"\noutput = "{out}"\n')
    return ["curl", "-s", "--parallel", "--parallel-max", str(w), "-K", cfg]


def t_pypool(ctx, jobs, w, outdir, scratch):
    return [ctx.python, os.path.join(BENCH_DIR, "peers", "py_pool.py"), str(w), jobs, outdir]


def write_pairs(jobs, outdir, scratch):
    path = scratch + ".pairs"
    with open(path, "w") as f:
        for out, url in url_pairs(jobs, outdir):
            f.write(f"{out} {url}\n")  # URLs are percent-encoded: no spaces
    return path


def t_xargs(ctx, jobs, w, outdir, scratch):
    # One curl per job, no shell in between (-n 2: `curl -s -o OUT URL`).
    return ["xargs", "-a", write_pairs(jobs, outdir, scratch), "-P", str(w), "-n", "2",
            "curl", "-s", "-o"]


def t_parallel(ctx, jobs, w, outdir, scratch):
    return ["parallel", "--will-cite", "-j", str(w), "--colsep", " ",
            "-a", write_pairs(jobs, outdir, scratch), "curl", "-s", "-o", "{1}", "{2}"]


# The floor (issue 23): each half of a job alone, on the same jobs, the same
# nginx and the same fresh ext4, in the same round-robin as the modes. Both
# are the `floor` example of the pool crate (see its header); each reports
# its own clock, which starts after the jobs are parsed, so the floor is
# the work alone. wrk is nginx's own limit on this machine, for reference.

def t_floor_write(ctx, jobs, w, outdir, scratch):
    return [ctx.floor, "write", "--out", outdir, jobs]


def t_floor_http(ctx, jobs, w, outdir, scratch):
    return [ctx.floor, "http", "--connections", str(w), jobs]


def t_wrk(ctx, jobs, w, outdir, scratch):
    # The first job's URL, over and over: nginx's answer is the same size.
    _, url = next(url_pairs(jobs, outdir))
    return [ctx.wrk, "-t2", f"-c{w}", f"-d{WRK_SECONDS}s", url]


WRK_SECONDS = 5
RE_WRK = re.compile(rb"Requests/sec:\s*([0-9.]+)")
RE_WRK_ERRORS = re.compile(rb"Non-2xx or 3xx responses: (\d+)|Socket errors: ([^\n]*)")


def self_timed(out_path, n):
    """A floor tool's own measure, from its stdout: (seconds for n jobs,
    problem or None). The `floor` example prints one JSON line; wrk its
    Requests/sec, made into the seconds n requests take at that rate."""
    data = read_bytes(out_path)
    m = RE_WRK.search(data)
    if m:
        bad = RE_WRK_ERRORS.search(data)
        rate = float(m.group(1))
        return (n / rate if rate > 0 else None), (bad.group(0).decode() if bad else None)
    for line in reversed(data.splitlines()):
        try:
            d = json.loads(line)
        except ValueError:
            continue
        if d.get("failed"):
            return None, f"{d['failed']} failed"
        return d.get("seconds"), None
    return None, "no measure on stdout"


def check_floor(outdir, n):
    """The http floor and wrk write no files: their exit status and own
    report (see run_row) are the check."""
    return n, n, {}


TOOL_NAMES = {
    t_floor_write: "floor: writer alone",
    t_floor_http: "floor: HTTP alone",
    t_wrk: "floor: nginx alone (wrk)",
    t_supervisor: "supervisor",
    t_threads: "supervisor --threads",
    t_thread_panic: "thread_panic (threads)",
    t_curl: "curl --parallel",
    t_pypool: "Python Pool",
    t_xargs: "xargs -P + curl",
    t_parallel: "GNU parallel + curl",
}
# In the names of each run's output dir, logs and scratch files.
TOOL_TAGS = {
    t_floor_write: "floor-write",
    t_floor_http: "floor-http",
    t_wrk: "wrk",
    t_supervisor: "supervisor",
    t_threads: "threads",
    t_thread_panic: "thread_panic",
    t_curl: "curl",
    t_pypool: "python",
    t_xargs: "xargs",
    t_parallel: "gnu",
}
# Ours: a failed run of one of these makes bench.py exit 1.
OUR_TOOLS = ("supervisor", "supervisor --threads", "thread_panic (threads)")
FLOOR_TOOLS = ("floor: writer alone", "floor: HTTP alone", "floor: nginx alone (wrk)")


class Ctx:
    pass


class Row:
    """One (case, tool) line of the table, over its repeats.

    opts (all optional): extra = options put before the jobs file; summary =
    also --summary-json (read back into each run's "summary"); rc = the exit
    status expected (0); check = the result-file check (check_results);
    no_rate = a jobs/s would mean nothing (case 4); during = a factory
    (err_path, outdir) -> run_tool during-hook; full_scan, count_leftovers:
    see run_tool; ok_text = the result cell of a passing row."""

    def __init__(self, case, tool, jobs, workers, opts=None):
        self.case, self.tool, self.jobs, self.workers = case, tool, jobs, workers
        self.opts = opts or {}
        self.runs = []
        self.failure = None  # str: why this row is FAILED
        self.skipped = None  # str: why this row did not run

    @property
    def ok(self):
        return self.failure is None and self.skipped is None and bool(self.runs)

    @property
    def seconds(self):
        return statistics.median(r["seconds"] for r in self.runs) if self.ok else None

    @property
    def rate(self):
        return self.jobs / self.seconds if self.ok and not self.opts.get("no_rate") else None

    def mem(self, key):
        return max((r.get(key) or 0 for r in self.runs), default=0)

    def vals(self, key):
        """key's value in each run that has it (not None)."""
        return [r[key] for r in self.runs if r.get(key) is not None]


def run_row(ctx, row, tool, jobs_path):
    """One repeat of one tool: prepare, run, check, clean."""
    rep = len(row.runs) + 1
    tag = f"c{row.case}-{TOOL_TAGS[tool]}-{row.jobs}-r{rep}"
    outdir = os.path.join(ctx.out_root, tag)
    scratch = os.path.join(ctx.tmp, "scratch", tag)
    log_base = os.path.join(ctx.tmp, "logs", tag)
    os.makedirs(outdir)
    os.makedirs(os.path.dirname(scratch), exist_ok=True)
    argv = tool(ctx, jobs_path, row.workers, outdir, scratch)
    extra = list(row.opts.get("extra", ()))
    summary_path = scratch + ".summary.json"
    if row.opts.get("summary"):
        extra += ["--summary-json", summary_path]
    if extra:  # options before the jobs file, the last argument
        argv = argv[:-1] + extra + argv[-1:]
    during = row.opts["during"](log_base + ".err", outdir) if row.opts.get("during") else None
    log(f"case {row.case}: {TOOL_NAMES[tool]}, {row.jobs} jobs, W={row.workers}, run {rep}")
    r = run_tool(argv, log_base, during=during, full_scan=row.opts.get("full_scan", False),
                 count_leftovers=row.opts.get("count_leftovers", False))
    present, right, info = row.opts.get("check", check_results)(outdir, row.jobs)
    r.update(present=present, right=right, **info)
    floor_problem = None
    if row.opts.get("self_timed") and not r["timed_out"] and r["rc"] == 0:
        # The tool's own clock (jobs parsed before it starts); the command's
        # wall time is kept for the every-run list.
        r["wall_seconds"] = r["seconds"]
        own, floor_problem = self_timed(log_base + ".out", row.jobs)
        if own:
            r["seconds"] = own
        elif floor_problem is None:
            floor_problem = "no measure on stdout"
    ready = ready_time(log_base + ".err")
    r["ready_workers"], r["ready_s"] = ready if ready else (None, None)
    r["summary"] = read_json(summary_path) if row.opts.get("summary") else None
    r["restarts"] = restarts_text(r["summary"], log_base + ".err")
    expect_rc = row.opts.get("rc", 0)
    # The output dir is NOT deleted here but with the whole temp dir at the
    # end: on ext4 without a journal (this machine's disk) the inode
    # allocator skips inodes freed in the last 60 s (6 min while their
    # inode-table block is dirty), one lookup per skipped inode, so creating
    # files right after deleting 20,000 costs seconds of system time (seen:
    # 2.3 s -> 14 s for the same 20k run). Deleting between runs would bill
    # each tool for the previous tool's cleanup.
    why = None
    if r["timed_out"]:
        why = f"timed out after {TIMEOUT}s"
    elif right < row.jobs:
        why = f"{right}/{row.jobs} right result files ({present} present"
        why += f"; {fmt_kinds(r['kinds'])})" if "kinds" in r else ")"
    elif r["rc"] != expect_rc:
        why = f"exit status {r['rc']}" + (f" (expected {expect_rc})" if expect_rc else "")
    elif row.opts.get("during") and r.get("killed_pid") is None:
        why = "no worker was killed (the run ended before one could be)"
    elif floor_problem:
        why = floor_problem
    if why:
        err = tail(log_base + ".err")
        row.failure = why + (f"; stderr: {err}" if err else "")
        log(f"  FAILED: {row.failure}")
    else:
        log(f"  {r['seconds']:.2f}s, {row.jobs / r['seconds']:.0f} jobs/s, "
            f"RSS {r['root_hwm_kb'] / 1024:.1f} MB (+{r['kids_sum_kb'] / 1024:.1f} MB in {r['kids']} children; "
            f"whole run {r['whole_rss_kb'] / 1024:.1f} MB RSS, {r['whole_pss_kb'] / 1024:.1f} MB PSS); "
            f"CPU: tool {r['tool_user']:.2f}u+{r['tool_sys']:.2f}s, nginx {r['nginx_cpu']:.2f}s, "
            f"others {r['others_cores']:.2f} cores")
    extras = [f"{k}={r[k]}" for k in ("ready_s", "restarts", "killed_pid", "done_at_kill",
                                      "left_at_exit", "left_after_1s") if r.get(k) is not None]
    if extras:
        log("  " + ", ".join(extras))
    r["ok"] = why is None
    r["outdir"] = outdir
    row.runs.append(r)


def compare_svg(a, rows):
    """The README's picture, from this very run: case 2's last good run in
    each mode (processes, threads), drawn by compare_svg.py from their
    joblogs into --svg."""
    dirs = []
    for row in rows:
        good = [r for r in row.runs if r.get("ok")]
        if not good:
            log(f"  no picture: {row.tool} has no good run in case 2")
            return
        dirs += [f"{row.tool} ({row.workers} workers)", good[-1]["outdir"]]
    try:
        subprocess.run([sys.executable, os.path.join(BENCH_DIR, "compare_svg.py"), a.svg, *dirs],
                       check=True, timeout=120)
        log(f"  picture: {a.svg}")
    except (subprocess.SubprocessError, OSError) as e:
        log(f"  no picture: compare_svg.py failed: {e}")


def run_case(ctx, case, specs, repeat):
    """specs: [(tool, jobs_path, n, workers, skip_reason[, Row opts])];
    repeats go round-robin over the tools so that drift hits every tool
    alike. A FAILED or skipped row runs no more but never stops the others."""
    rows = []
    for tool, path, n, w, skip, *opts in specs:
        row = Row(case, TOOL_NAMES[tool], n, w, opts[0] if opts else None)
        row.skipped = skip or None
        rows.append((row, tool, path))
    for _ in range(repeat):
        for row, tool, path in rows:
            if row.skipped is None and row.failure is None:
                try:
                    run_row(ctx, row, tool, path)
                except Exception as e:  # the bench's own trouble: this row only
                    set_subreaper(False)
                    row.failure = f"bench error: {type(e).__name__}: {e}"
                    log(f"  FAILED: {row.failure}")
    return [r for r, _, _ in rows]


def idle_worker_rss(http_worker, samples=3):
    """RSS of a fresh http-worker after its ready line, max of a few."""
    best = {}
    for _ in range(samples):
        p = subprocess.Popen([http_worker], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL)
        ready = p.stdout.readline().decode("utf-8", "replace").strip()
        time.sleep(0.2)  # let it settle into its read of stdin
        st = read_status_kb(p.pid, ("VmRSS", "VmHWM"))
        p.stdin.close()
        p.wait(timeout=10)
        if st.get("VmRSS", 0) >= best.get("VmRSS", 0):
            best = dict(st, ready=ready)
    return best


# --------------------------------------------------------------- report ---

def fmt_s(x):
    return f"{x:.2f}" if x is not None else "-"


def fmt_rate(x):
    return f"{x:,.0f}" if x is not None else "-"


def mb(kb):
    return f"{kb / 1024:.1f} MB"


def floor_rates(case_rows):
    """Case 1's floor from its floor rows (medians over the runs): the
    writer's results/s, the project's client's calls/s, wrk's requests/s,
    and the combined floors 1/(1/write + 1/http) (and with wrk's rate in
    place of the client's). Missing pieces are absent."""
    by = {r.tool: r.rate for r in case_rows if r.tool in FLOOR_TOOLS and r.ok}
    out = {}
    for key, tool in (("write", "floor: writer alone"), ("http", "floor: HTTP alone"),
                      ("wrk", "floor: nginx alone (wrk)")):
        if by.get(tool):
            out[key] = by[tool]
    if "write" in out and "http" in out:
        out["floor"] = 1 / (1 / out["write"] + 1 / out["http"])
    if "write" in out and "wrk" in out:
        out["floor_wrk"] = 1 / (1 / out["write"] + 1 / out["wrk"])
    return out


def floor_lines(rows, floor):
    """The floor and each case-1 tool's fraction of it, as text lines."""
    if not floor:
        return ["floor: not measured (case 1 not run, or its floor rows skipped/FAILED)"]
    f = lambda k: f"{floor[k]:,.0f}/s" if k in floor else "n/a"
    n = next((r.jobs for r in rows if r.tool == "floor: writer alone"), 0)
    out = [f"writer alone (the project's Output, its 2 writer threads, {n:,} typical results): {f('write')}",
           f"HTTP alone (the project's client, 8 keep-alive connections, no writing): {f('http')}",
           f"nginx alone (wrk -t2 -c8, {WRK_SECONDS} s, one URL): {f('wrk')}"]
    if "floor" in floor:
        out.append(f"floor = 1/(1/writer + 1/HTTP) = {floor['floor']:,.0f} jobs/s"
                   + (f" (with wrk's rate for HTTP: {floor['floor_wrk']:,.0f})" if "floor_wrk" in floor else ""))
        for r in rows:
            if r.case == "1" and r.tool not in FLOOR_TOOLS and r.rate:
                out.append(f"  {r.tool}: {r.rate:,.0f} jobs/s = {r.rate / floor['floor']:.2f} of the floor"
                           + (f" ({r.rate / floor['floor_wrk']:.2f} of the wrk floor)" if "floor_wrk" in floor else ""))
    return out


def table(rows, sup_rate_by_case, ideal_by_case, floor=None):
    floor = floor or {}
    head = ["case", "tool", "jobs", "W", "seconds", "jobs/s", "% of ideal", "of floor",
            "supervisor/tool", "CPU s", "tool RSS", "children RSS (sum)", "result"]
    lines = []
    for r in rows:
        sup = sup_rate_by_case.get(r.case)
        ideal = ideal_by_case.get(r.case)
        if r.skipped:
            result = f"skipped ({r.skipped})"
        elif r.failure:
            # A "|" of a stderr tail would end the markdown cell.
            result = f"FAILED: {r.failure}".replace("|", "\\|")
        else:
            result = f"ok ({len(r.runs)} run{'s' if len(r.runs) > 1 else ''}, " \
                     f"{r.opts.get('ok_text', 'all files right')})"
        is_floor = r.tool in FLOOR_TOOLS
        ratio = f"{sup / r.rate:.2f}x" if (r.rate and sup and r.tool != "supervisor" and not is_floor) else "-"
        pct = f"{100 * r.rate / ideal:.0f}%" if (r.rate and ideal) else "-"
        of_floor = (f"{r.rate / floor['floor']:.2f}" if (r.case == "1" and r.rate and "floor" in floor
                                                          and not is_floor) else "-")
        ran = bool(r.runs) and not r.skipped
        cpu = f"{statistics.median(x['tool_cpu'] for x in r.runs):.2f}" if r.ok else "-"
        lines.append([r.case, r.tool, f"{r.jobs:,}", str(r.workers), fmt_s(r.seconds),
                      fmt_rate(r.rate), pct, of_floor, ratio, cpu,
                      mb(r.mem("root_hwm_kb")) if ran else "-",
                      (mb(r.mem("kids_sum_kb")) if r.mem("kids") else "none") if ran else "-",
                      result])
    widths = [max(len(h), *(len(l[i]) for l in lines)) if lines else len(h) for i, h in enumerate(head)]

    def fmt(cells):
        return "| " + " | ".join(c.ljust(widths[i]) for i, c in enumerate(cells)) + " |"

    out = [fmt(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [fmt(l) for l in lines]
    return "\n".join(out)


def per_run(vals, fmt=str):
    """One value, or each run's when they differ ("a / b / c"); "n/a" if none."""
    if not vals:
        return "n/a"
    shown = [fmt(v) for v in vals]
    return shown[0] if len(set(shown)) == 1 else " / ".join(shown)


def ready_cell(r):
    """Median time until all workers were ready, over the runs that printed
    the line; "n/a" when none did."""
    v = r.vals("ready_s")
    if not v:
        return "n/a"
    cell = f"{statistics.median(v):.3f} s"
    if len(v) > 1:
        cell += f" ({min(v):.3f}-{max(v):.3f})"
    n = set(r.vals("ready_workers"))
    if n and n != {r.workers}:
        cell += f" [line says {'/'.join(map(str, sorted(n)))} workers]"
    return cell


def mem_table(rows):
    """Memory and start-up of every supervisor-type row (both modes)."""
    head = ["case", "tool", "jobs", "W", "tool peak RSS", "children RSS (sum)",
            "whole-run RSS", "whole-run PSS", "all workers ready"]
    lines = []
    for r in rows:
        if r.tool not in OUR_TOOLS or r.skipped or not r.runs:
            continue
        if not r.ok:
            lines.append([r.case, r.tool, f"{r.jobs:,}", str(r.workers)] + ["-"] * 4 + ["- (FAILED)"])
            continue
        pss = r.mem("whole_pss_kb")
        lines.append([r.case, r.tool, f"{r.jobs:,}", str(r.workers), mb(r.mem("root_hwm_kb")),
                      f"{mb(r.mem('kids_sum_kb'))} in {r.mem('kids')}" if r.mem("kids") else "none",
                      mb(r.mem("whole_rss_kb")), mb(pss) if pss else "n/a", ready_cell(r)])
    return md_table(head, lines)


def case4_table(rows):
    head = ["tool", "jobs", "W", "runs", "seconds", "waves x deadline", "results", "exit",
            "restarts", "processes alive at exit", "abandoned threads"]
    lines = []
    for r in rows:
        if r.case != "4":
            continue
        if r.skipped:
            lines.append([r.tool, f"{r.jobs:,}", str(r.workers), "0"] + ["-"] * 6 + [f"skipped ({r.skipped})"])
            continue
        waves = -(-r.jobs // r.workers)
        # The summary JSON says how many threads were abandoned, and how
        # many of those were still running when the run ended.
        abandoned = []
        for x in r.runs:
            sj = x["summary"] if isinstance(x["summary"], dict) else {}
            a, running = sj.get("abandoned_threads"), sj.get("abandoned_threads_running")
            if a is not None and running is not None:
                a = f"{a} ({running} still running at the end)"
            abandoned.append(a)
        if any(a is not None for a in abandoned):
            ab = per_run(["n/a" if a is None else a for a in abandoned])
        else:
            ab = "n/a"
        left = []
        for x in r.runs:
            if x.get("left_at_exit") is None:
                left.append("n/a")
            else:
                left.append(str(x["left_at_exit"]) + (f" ({x['left_after_1s']} after 1 s)"
                                                      if x.get("left_after_1s") is not None else ""))
        lines.append([r.tool, f"{r.jobs:,}", str(r.workers), str(len(r.runs)),
                      fmt_s(r.seconds) if r.ok else "- (FAILED)",
                      f"{waves * HANG_DEADLINE:.0f} s",
                      per_run([fmt_kinds(x["kinds"]) for x in r.runs]),
                      per_run([x["rc"] for x in r.runs]),
                      per_run([x["restarts"] for x in r.runs if x["restarts"] is not None]),
                      per_run(left), ab])
    return md_table(head, lines)


def case5_table(rows):
    head = ["tool", "what happens", "jobs", "W", "runs", "seconds", "results lost",
            "restarts", "details"]
    lines = []
    for r in rows:
        if r.case != "5":
            continue
        how = ("kill -9 of one worker process" if r.tool == "supervisor"
               else f"call {PANIC_ON_CALL} of the run panics in its worker thread")
        if r.skipped:
            lines.append([r.tool, how, f"{r.jobs:,}", str(r.workers), "0"] + ["-"] * 3 + [f"skipped ({r.skipped})"])
            continue
        details = []
        for x in r.runs:
            if x.get("killed_pid"):
                details.append(f"pid {x['killed_pid']} killed at {x['killed_at']:.2f} s "
                               f"({x['done_at_kill']} results in)")
            elif "killed_pid" in x:
                details.append("no kill")
        if not r.ok:
            details.append(f"FAILED: {r.failure.split('; stderr')[0]}".replace("|", "\\|"))
        lines.append([r.tool, how, f"{r.jobs:,}", str(r.workers), str(len(r.runs)),
                      fmt_s(r.seconds) if r.ok else "-",
                      per_run([r.jobs - x["right"] for x in r.runs]),
                      per_run([x["restarts"] for x in r.runs if x["restarts"] is not None]),
                      "; ".join(details) or "-"])
    return md_table(head, lines)


def md_table(head, lines):
    widths = [max(len(h), *(len(l[i]) for l in lines)) if lines else len(h) for i, h in enumerate(head)]

    def fmt(cells):
        return "| " + " | ".join(c.ljust(widths[i]) for i, c in enumerate(cells)) + " |"

    out = [fmt(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [fmt(l) for l in lines]
    return "\n".join(out)


def verdict(ok, have=True):
    if not have:
        return "n/a"
    return "PASS" if ok else "FAIL"


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def machine_info(nginx_version):
    def cmd(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return "?"
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    git = cmd(["git", "-C", os.path.dirname(BENCH_DIR), "rev-parse", "--short", "HEAD"])
    dirty = cmd(["git", "-C", os.path.dirname(BENCH_DIR), "status", "--porcelain", "--untracked-files=no"])
    return [
        ("date", datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")),
        ("nproc", cmd(["nproc"])),
        ("CPU", cpu),
        ("kernel", platform.release()),
        ("memory", cmd(["sh", "-c", "free -m | awk '/^Mem:/{print $2\" MB\"}'"])),
        ("callpool commit", git + (" (with uncommitted changes)" if dirty else "")),
        ("curl", cmd(["curl", "--version"]).split("\n")[0].split(" (")[0]),
        ("nginx", nginx_version),
        ("python", platform.python_version()),
    ]


# ----------------------------------------------------------------- main ---

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--supervisor", required=True)
    ap.add_argument("--http-worker", required=True)
    ap.add_argument("--port", required=True, type=int)
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--results", required=True)
    ap.add_argument("--skip-slow", default="")
    ap.add_argument("--skip-parallel", default="")
    ap.add_argument("--skip-python", default="")
    ap.add_argument("--thread-panic", default="", help="case 5's harness; empty: not built")
    ap.add_argument("--floor", default="", help="the floor example; empty: not built")
    ap.add_argument("--nginx-version", default="?")
    ap.add_argument("--nginx-pid", type=int, default=0)
    ap.add_argument("--out-root", required=True, help="where the result dirs go")
    ap.add_argument("--svg", required=True, help="case 2's processes-vs-threads picture")
    ap.add_argument("--fs-desc", default="?")
    a = ap.parse_args()
    if a.nginx_pid:
        NGINX_PIDS[:] = [a.nginx_pid] + descendants(a.nginx_pid)
    signal.signal(signal.SIGTERM, on_term)

    ctx = Ctx()
    ctx.supervisor, ctx.python, ctx.tmp, ctx.out_root = a.supervisor, a.python, a.tmp, a.out_root
    ctx.thread_panic = a.thread_panic if a.thread_panic and os.access(a.thread_panic, os.X_OK) else ""
    ctx.floor = a.floor if a.floor and os.access(a.floor, os.X_OK) else ""
    ctx.wrk = shutil.which("wrk") or ""
    os.makedirs(os.path.join(a.tmp, "logs"), exist_ok=True)
    jobs = Jobs(a.tmp, a.port)
    xargs_skip = "" if shutil.which("xargs") else "xargs not installed"

    n1, n1_small, n2, n3 = 20000 // SCALE, 2000 // SCALE, 10000 // SCALE, 200000 // SCALE
    n4 = 8 if QUICK else 40  # case 4 takes >= 2 s per wave of W jobs: one wave when quick
    n5 = 2000 // SCALE
    rows, notes = [], []
    sup_rate, ideal = {}, {}
    t_start = time.monotonic()

    log(f"cases {','.join(CASES)}, {'QUICK (/10), ' if QUICK else ''}{REPEAT} repeat(s), "
        f"nginx on 127.0.0.1:{a.port}")
    # Anything else running on the 2 cores skews every number: record it.
    load_before = loadavg()
    idle = idle_worker_rss(a.http_worker)

    c1_sup = None
    floor = {}
    if "1" in CASES:
        j = jobs.get("fast", n1)
        js = jobs.get("fast", n1_small)
        floor_opts = dict(self_timed=True)
        http_opts = dict(self_timed=True, check=check_floor)
        no_floor = "" if ctx.floor else "the floor example of the pool crate was not built"
        specs = [(t_supervisor, j, n1, 8, ""), (t_threads, j, n1, 8, ""), (t_curl, j, n1, 8, ""),
                 (t_pypool, j, n1, 8, a.skip_python), (t_xargs, js, n1_small, 8, xargs_skip),
                 (t_parallel, js, n1_small, 8, a.skip_parallel),
                 (t_floor_write, j, n1, 8, no_floor, floor_opts),
                 (t_floor_http, j, n1, 8, no_floor, http_opts),
                 (t_wrk, j, n1, 8, "" if ctx.wrk else "wrk not installed",
                  dict(self_timed=True, check=check_floor))]
        case_rows = run_case(ctx, "1", specs, REPEAT)
        rows += case_rows
        c1_sup = case_rows[0]
        floor = floor_rates(case_rows)
        if c1_sup.ok:
            sup_rate["1"] = c1_sup.rate

    if "2" in CASES:
        w = 256
        ideal["2"] = w / SLOW_LATENCY
        if a.skip_slow:
            specs_skip = a.skip_slow
        else:
            specs_skip = ""
        j = jobs.get("slow", n2) if not specs_skip else None
        specs = [(t_supervisor, j, n2, w, specs_skip), (t_threads, j, n2, w, specs_skip),
                 (t_curl, j, n2, w, specs_skip),
                 (t_pypool, j, n2, w, specs_skip or a.skip_python)]
        case_rows = run_case(ctx, "2", specs, REPEAT)
        rows += case_rows
        if case_rows[0].ok:
            sup_rate["2"] = case_rows[0].rate
        compare_svg(a, case_rows[:2])

    c3_base = c3_big = None
    if "3" in CASES:
        j3 = jobs.get("fast", n3)
        if c1_sup is None or not c1_sup.ok:
            # Case 1 did not run (or failed): measure the 20k baseline here.
            c3_base = run_case(ctx, "3", [(t_supervisor, jobs.get("fast", n1), n1, 8, "")], 1)[0]
            rows.append(c3_base)
        else:
            c3_base = c1_sup
        c3_big = run_case(ctx, "3", [(t_supervisor, j3, n3, 8, "")], 1)[0]
        rows.append(c3_big)
        if c3_big.ok:
            sup_rate["3"] = c3_big.rate

    if "4" in CASES:
        # A hung API: every call must end at the deadline as a "timeout"
        # result, exit status 1; what is left running at exit is counted.
        skip = a.skip_slow
        j = jobs.get("hang", n4) if not skip else None
        opts = dict(extra=HANG_OPTS, summary=True, rc=1, check=check_timeouts, no_rate=True,
                    full_scan=True, count_leftovers=True,
                    ok_text=f"exit 1, all {n4} results ok:false timeout")
        rows += run_case(ctx, "4", [(t_supervisor, j, n4, 8, skip, opts),
                                    (t_threads, j, n4, 8, skip, opts)], REPEAT)

    if "5" in CASES:
        # A worker dies mid-job: no result may be lost.
        skip = a.skip_slow
        j = jobs.get("slow", n5) if not skip else None
        rows += run_case(ctx, "5", [
            (t_supervisor, j, n5, 8, skip, dict(summary=True, during=kill_a_worker,
                                                ok_text="a worker killed -9, all files right")),
            (t_thread_panic, j, n5, 8, skip or ("" if ctx.thread_panic else "harness not built"),
             dict(ok_text="a worker thread panicked, all files right")),
        ], REPEAT)

    # ---- targets
    def row(case, tool):
        return next((r for r in rows if r.case == case and r.tool == tool and r.jobs in (n1, n2, n3, n4, n5)), None)

    targets = []
    s1, c1, p1 = row("1", "supervisor"), row("1", "curl --parallel"), row("1", "Python Pool")
    if "1" in CASES:
        have = bool(s1 and s1.ok and c1 and c1.ok)
        targets.append((f"case 1: supervisor >= {T_VS_CURL}x curl --parallel jobs/s",
                        f"{s1.rate / c1.rate:.2f}x" if have else _why(s1, c1),
                        verdict(have and s1.rate >= T_VS_CURL * c1.rate, have)))
        have = bool(s1 and s1.ok and p1 and p1.ok)
        targets.append((f"case 1: supervisor >= {T_VS_PYPOOL:.0f}x Python Pool jobs/s",
                        f"{s1.rate / p1.rate:.2f}x" if have else _why(s1, p1),
                        verdict(have and s1.rate >= T_VS_PYPOOL * p1.rate, have)))
        t1 = row("1", "supervisor --threads")
        have = bool(t1 and t1.ok and c1 and c1.ok)
        targets.append((f"case 1: supervisor --threads >= {T_THREADS_VS_CURL}x curl --parallel jobs/s",
                        f"{t1.rate / c1.rate:.2f}x" if have else _why(t1, c1),
                        verdict(have and t1.rate >= T_THREADS_VS_CURL * c1.rate, have)))
        # Issue 23's targets, against the floor of the same run.
        for tool, share in (("supervisor", T_FLOOR_PROCESSES), ("supervisor --threads", T_FLOOR_THREADS)):
            r1 = row("1", tool)
            have = bool(r1 and r1.ok and "floor" in floor)
            targets.append((f"case 1: {tool} >= {share} of the floor (writer + HTTP alone)",
                            f"{r1.rate:,.0f} of {floor['floor']:,.0f} jobs/s = {r1.rate / floor['floor']:.2f}"
                            if have else (_why(r1) if not (r1 and r1.ok) else "floor not measured"),
                            verdict(have and r1.rate >= share * floor["floor"], have)))
    if "2" in CASES:
        s2 = row("2", "supervisor")
        have = bool(s2 and s2.ok)
        targets.append((f"case 2: supervisor >= {T_IDEAL:.0%} of ideal {ideal['2']:,.0f} jobs/s",
                        f"{s2.rate:,.0f} jobs/s = {s2.rate / ideal['2']:.0%}" if have else _why(s2),
                        verdict(have and s2.rate >= T_IDEAL * ideal["2"], have)))
        t2 = row("2", "supervisor --threads")
        have = bool(t2 and t2.ok)
        targets.append((f"case 2: supervisor --threads >= {T_THREADS_IDEAL:.0%} of ideal {ideal['2']:,.0f} jobs/s",
                        f"{t2.rate:,.0f} jobs/s = {t2.rate / ideal['2']:.0%}" if have else _why(t2),
                        verdict(have and t2.rate >= T_THREADS_IDEAL * ideal["2"], have)))
        have = bool(s2 and s2.ok and t2 and t2.ok and s2.mem("whole_rss_kb"))
        if have:
            tr, sr = t2.mem("whole_rss_kb"), s2.mem("whole_rss_kb")
            tp, sp = t2.mem("whole_pss_kb"), s2.mem("whole_pss_kb")
            val = f"{mb(tr)} vs {mb(sr)} = {tr / sr:.2f}x"
            if tp and sp:
                val += f" (PSS: {mb(tp)} vs {mb(sp)} = {tp / sp:.2f}x)"
        targets.append((f"case 2: supervisor --threads whole-run peak RSS at W=256 <= 1/{1 / T_THREADS_MEM:.0f} "
                        "of supervisor's",
                        val if have else _why(s2, t2),
                        verdict(have and tr <= T_THREADS_MEM * sr, have)))
    if "3" in CASES:
        have = bool(c3_base and c3_base.ok and c3_big and c3_big.ok)
        if have:
            base, big = c3_base.mem("root_hwm_kb"), c3_big.mem("root_hwm_kb")
            targets.append((f"case 3: supervisor peak RSS at {n3:,} <= {T_SCALE_RSS}x at {n1:,}",
                            f"{mb(big)} vs {mb(base)} = {big / base:.2f}x",
                            verdict(big <= T_SCALE_RSS * base)))
            targets.append((f"case 3: supervisor peak RSS at {n3:,} < {T_MAX_RSS_MB} MB",
                            mb(big), verdict(big < T_MAX_RSS_MB * 1024)))
        else:
            targets.append((f"case 3: supervisor peak RSS at {n3:,} <= {T_SCALE_RSS}x at {n1:,}, < {T_MAX_RSS_MB} MB",
                            _why(c3_base, c3_big), "n/a"))
    if "4" in CASES:
        s4 = row("4", "supervisor")
        have = bool(s4 and s4.ok and s4.vals("left_at_exit"))
        targets.append(("case 4: supervisor leaves no worker process alive at exit",
                        f"{max(s4.vals('left_at_exit'))} alive (max over {len(s4.runs)} run(s))"
                        if have else _why(s4),
                        verdict(have and max(s4.vals("left_at_exit")) == 0, have)))
    if "5" in CASES:
        for tool, what in (("supervisor", "a worker killed -9"),
                           ("thread_panic (threads)", "a worker thread panics")):
            r5 = row("5", tool)
            have = bool(r5 and r5.runs and not r5.skipped)
            lost = max((r5.jobs - x["right"] for x in r5.runs), default=0) if have else 0
            targets.append((f"case 5: {tool}: no result lost when {what}",
                            f"{lost} lost (max over {len(r5.runs)} run(s))" + ("" if r5.ok else "; row FAILED")
                            if have else _why(r5),
                            verdict(have and lost == 0 and r5.ok, have)))
    idle_kb = idle.get("VmRSS", 0)
    targets.append((f"idle http-worker RSS < {T_IDLE_WORKER_MB} MB",
                    mb(idle_kb) if idle_kb else "could not measure",
                    verdict(idle_kb < T_IDLE_WORKER_MB * 1024, bool(idle_kb))))

    # ---- memory lines
    mem = []
    for r in rows:
        if r.tool == "supervisor" and r.ok:
            per = r.mem("kids_sum_kb") / r.mem("kids") if r.mem("kids") else 0
            mem.append(f"case {r.case}, {r.jobs:,} jobs, W={r.workers}: supervisor peak RSS "
                       f"{mb(r.mem('root_hwm_kb'))}; workers' RSS summed, peak {mb(r.mem('kids_sum_kb'))} "
                       f"over {r.mem('kids')} child processes (the workers and their template; {mb(per)} each on average, largest {mb(r.mem('kid_max_kb'))})")
        elif r.tool in OUR_TOOLS and r.ok:
            mem.append(f"case {r.case}, {r.jobs:,} jobs, W={r.workers}: {r.tool} peak RSS "
                       f"{mb(r.mem('root_hwm_kb'))} (workers are threads in it)"
                       + (f"; {r.mem('kids')} child processes seen, {mb(r.mem('kids_sum_kb'))} summed"
                          if r.mem("kids") else ""))
    if idle_kb:
        mem.append(f"idle http-worker after its ready line: VmRSS {mb(idle_kb)}, VmHWM {mb(idle.get('VmHWM', 0))}")
    for r in rows:
        if r.tool == "Python Pool" and r.ok:
            mem.append(f"case {r.case} Python Pool({r.workers}): parent {mb(r.mem('root_hwm_kb'))}, "
                       f"its {r.mem('kids')} processes summed {mb(r.mem('kids_sum_kb'))}")

    elapsed = time.monotonic() - t_start
    tbl = table(rows, sup_rate, ideal, floor)
    fl = floor_lines(rows, floor) if "1" in CASES else []
    tgt_w = max(len(t[0]) for t in targets)
    tgt_lines = [f"{v:4}  {name.ljust(tgt_w)}  {val}" for name, val, v in targets]

    mtbl = mem_table(rows)
    c4 = case4_table(rows) if "4" in CASES else None
    c5 = case5_table(rows) if "5" in CASES else None
    mode = "QUICK (job counts / 10)" if QUICK else "full"
    summary = [
        f"callpool benchmark: {mode}, cases {','.join(CASES)}, {REPEAT} run(s) per tool in cases 1, 2, 4, 5 "
        f"(median), 1 in case 3; {elapsed:.0f} s",
        "",
        tbl,
        *(["", "Floor (case 1, same run):", *[f"  {x}" for x in fl]] if fl else []),
        "",
        "Memory:",
        *[f"  {m}" for m in mem],
        "",
        "Memory of the whole run and start-up (max over runs; ready: median):",
        mtbl,
        *(["", f"Case 4, hung API ({' '.join(HANG_OPTS)}):", c4] if c4 else []),
        *(["", "Case 5, a worker dies mid-job:", c5] if c5 else []),
        "",
        "Targets:",
        *[f"  {t}" for t in tgt_lines],
    ]
    print("\n".join(summary), flush=True)

    # ---- results.md
    info = machine_info(a.nginx_version)
    info.append(("result files on", a.fs_desc))
    info.append(("load average (1/5/15 min)", f"{load_before} before, {loadavg()} after"))
    cmd = ("BENCH_QUICK=1 " if QUICK else "") + \
          (f"BENCH_CASES={','.join(CASES)} " if os.environ.get("BENCH_CASES") else "") + "bench/run.sh"
    md = [
        "# callpool benchmark results",
        "",
        f"Made by `{cmd}` ({mode}; {REPEAT} run(s) of each tool in cases 1, 2, 4 and 5, median time; "
        f"case 3 once; {elapsed:.0f} s in all). Wall time of the whole command; every result file "
        "checked; memory polled from /proc every "
        f"{POLL * 1000:.0f} ms. Loopback nginx (1 worker process) serves every endpoint.",
        "",
        "| machine | |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in info],
        "",
        "## Throughput",
        "",
        "Case 1: fast API, W=8. Case 2: 50 ms API, W=256, ideal = W / 50 ms = "
        f"{256 / SLOW_LATENCY:,.0f} jobs/s. Case 3: fast API, W=8, supervisor only. "
        "Case 4: hung API, both modes (no jobs/s: every call ends at its deadline). "
        "Case 5: 50 ms API, a worker dies mid-job. `supervisor` is process mode; "
        "`supervisor --threads` thread mode; `thread_panic (threads)` the pool crate's "
        "thread-mode harness. "
        "`supervisor/tool` = the (process-mode) supervisor's jobs/s in that case over the tool's.",
        "",
        tbl,
        "",
        *(["### The floor (case 1)",
           "",
           "A job is one HTTP call plus one result file; both take the same two cores, so no tool "
           "can beat 1/(1/writes per s + 1/calls per s). Measured in the same run, in the same "
           "round-robin as the tools above, on the same nginx and the same fresh ext4: the "
           "project's own result writer alone (`floor write`: `Output`, with the 2 writer threads "
           "both modes use, one result per job shaped like the real ones, joblog included; no HTTP) "
           "and the project's own HTTP client alone (`floor http`: 8 threads, one keep-alive "
           "client each, nothing written), both the `floor` example of the pool crate, timed by "
           "their own clock after the jobs are parsed; and nginx alone under `wrk -t2 -c8` for "
           "reference. `of floor` in the table: a tool's jobs/s over the floor.",
           "",
           *[f"- {x.strip()}" for x in fl],
           ""] if fl else []),
        "`CPU s`: user + system seconds of the tool and all its processes "
        "(workers, curls), median over runs: what the work cost, apart from how "
        "long it took.",
        "",
        "## Memory",
        "",
        *[f"- {m}" for m in mem],
        "",
        "Children RSS sums count pages shared between forked processes once per "
        "process (the Python Pool's interpreter pages, for instance), so they "
        "overstate what those processes take together.",
        "",
        "### Whole run and start-up, supervisor in both modes",
        "",
        "`tool peak RSS`: the tool process's VmHWM. `children RSS (sum)`: max over polls of its "
        "descendants' RSS summed, and the most seen at once. `whole-run RSS`: max over polls of "
        "the tool's VmRSS + all its descendants' RSS (what the run takes at its largest; pages "
        "shared between worker processes, such as the http-worker binary's, count once per "
        "process). `whole-run PSS`: the same sum of `Pss` from /proc/PID/smaps_rollup, where a "
        "page shared by N processes counts 1/N (read less often than RSS when there are many "
        f"processes: it costs the kernel more, and the sampler keeps it under {PSS_CPU_SHARE:.0%} "
        "of a core). Max over the runs. `all workers ready`: from the supervisor's stderr line "
        "`all N workers ready in S s` (seconds from the start of the run until every worker "
        "started at the beginning had said ready), median over runs (range); n/a: no such line.",
        "",
        mtbl,
        "",
        *([f"## Case 4: hung API (`{' '.join(HANG_OPTS)}`)",
           "",
           "Every call goes to a location that answers after an hour. A run passes when it exits 1 "
           "and every result file says `\"ok\": false` with `error.kind` `timeout`. `seconds`: "
           f"wall time to finish (median); `waves x deadline`: ceil(jobs / W) x {HANG_DEADLINE:.0f} s, "
           "about what a run takes when every call lasts its whole deadline (the http-worker's "
           "own timeout sits a little inside it, so a run can end a bit sooner). "
           "`restarts`: from the summary JSON (workers restarted, by reason; a worker killed at "
           "the deadline shows here). `processes alive at exit`: the tool's descendant "
           "processes still alive (not zombies) right after it exited (found through "
           "PR_SET_CHILD_SUBREAPER; then killed). `abandoned threads`: the summary JSON's "
           "`abandoned_threads` (threads given up past their deadline, as they cannot be killed; "
           "in brackets `abandoned_threads_running`, those still running when the run ended; "
           "n/a when the field is absent).",
           "",
           c4,
           ""] if c4 else []),
        *(["## Case 5: a worker dies mid-job",
           "",
           "Process mode: once the run is going (a `worker N started (pid P)` line and a result "
           "file), one worker process (a child of the supervisor) gets `kill -9`. Thread mode: "
           f"the `thread_panic` harness makes call {PANIC_ON_CALL} of the run (counted over all threads) "
           "panic, once, in whichever worker thread makes it. "
           "The run must exit 0 with every result file right; `results lost` = jobs - right "
           "files, per run. `restarts`: from the summary JSON (process mode) or the stderr "
           "summary (the harness).",
           "",
           c5,
           ""] if c5 else []),
        "## Every run",
        "",
        "`others` is the load that was not the tool, nginx or the benchmark "
        "itself during the run (machine busy time from /proc/stat, in cores): "
        "other work on the machine that the run competed with.",
        "",
        "| case | tool | jobs | run | seconds | jobs/s | tool CPU user+sys s | nginx CPU s | others (cores) | result |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *[f"| {r.case} | {r.tool} | {r.jobs:,} | {i + 1} | {x.get('wall_seconds', x['seconds']):.2f} | "
          f"{run_rate(r, x)} | "
          f"{x['tool_user']:.2f}+{x['tool_sys']:.2f} | {x['nginx_cpu']:.2f} | {x['others_cores']:.2f} | "
          f"{'ok' if x['ok'] else 'FAILED'} |"
          for r in rows for i, x in enumerate(r.runs)],
        "",
        "## Targets",
        "",
        "| | target | measured |",
        "|---|---|---|",
        *[f"| {v} | {name} | {val} |" for name, val, v in targets],
        "",
    ]
    # Sections written by other scripts (soak.sh, remote.sh) follow this
    # marker; they are kept when this run replaces the rest.
    kept = ""
    try:
        with open(a.results) as f:
            old = f.read()
        if KEEP_MARKER in old:
            kept = old[old.index(KEEP_MARKER):]
    except FileNotFoundError:
        pass
    if not kept:
        kept = KEEP_MARKER + "\n"
    with open(a.results, "w") as f:
        f.write("\n".join(md) + "\n" + kept)
    log(f"wrote {a.results}")

    sup_failed = any(r.tool in OUR_TOOLS and r.failure for r in rows)
    return 1 if sup_failed else 0


def run_rate(row, run):
    """One run's jobs/s for the every-run list: "-" for a FAILED run (never a
    speed) and where it means nothing (case 4)."""
    return "-" if row.opts.get("no_rate") or not run["ok"] else f"{row.jobs / run['seconds']:,.0f}"


def _why(*rows):
    for r in rows:
        if r is None:
            return "not run"
        if r.skipped:
            return f"{r.tool} skipped"
        if r.failure:
            return f"{r.tool} FAILED"
    return "?"


if __name__ == "__main__":
    sys.exit(main())
