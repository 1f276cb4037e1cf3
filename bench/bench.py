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
  * then every expected result file is opened: it must exist and hold the
    server's "status":"OK" answer echoing its own job's address. A run with
    missing or wrong files, a non-zero exit or a timeout is FAILED, with no
    speed given, never "fast".
Every run gets a fresh output dir under --out-root (a fresh loop-mounted
ext4, see lib.sh), kept until the end (see run_row for why), and the page
cache is synced before each run so that one tool's writeback does not land
in another's timing.

Exit status: 0 when every case ran and every supervisor run passed its check
(targets FAIL or PASS alike), 1 when a supervisor run failed, 2 on usage.
"""
import argparse
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


def env_int(name, default):
    v = os.environ.get(name, "")
    return int(v) if v.strip() else default


QUICK = os.environ.get("BENCH_QUICK", "0") == "1"
SCALE = 10 if QUICK else 1
REPEAT = env_int("BENCH_REPEAT", 1 if QUICK else 3)
TIMEOUT = env_int("BENCH_TIMEOUT", 600)
POLL = env_int("BENCH_POLL_MS", 50) / 1000.0
CASES = [c.strip() for c in os.environ.get("BENCH_CASES", "1,2,3").split(",") if c.strip()]

SLOW_LATENCY = 0.05  # echo_sleep in nginx.conf.in

# Targets (from the project's goals): see targets() below.
T_VS_CURL = 1.5
T_VS_PYPOOL = 10.0
T_IDEAL = 0.90
T_SCALE_RSS = 1.5
T_MAX_RSS_MB = 32
T_IDLE_WORKER_MB = 8


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
    (workers start) and every 0.5 s after; known descendants are read every
    poll."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.stop_ev = threading.Event()
        self.root_hwm = 0       # peak RSS of the tool process itself, kB
        self.kids_sum = 0       # max over polls of the sum of descendants' RSS
        self.kid_max = 0        # largest single descendant RSS seen
        self.kids_seen = 0      # most descendants alive at once
        self.polls = 0

    def run(self):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except (OSError, AttributeError):
            pass
        start = time.monotonic()
        last_scan, kids = 0.0, []
        while not self.stop_ev.is_set():
            now = time.monotonic()
            st = read_status_kb(self.pid, ("VmHWM", "VmRSS"))
            if st:
                self.root_hwm = max(self.root_hwm, st.get("VmHWM", 0), st.get("VmRSS", 0))
            if now - start < 1.0 or now - last_scan >= 0.5:
                kids, last_scan = descendants(self.pid), now
            sizes = [rss_kb(k) for k in kids]
            live = [s for s in sizes if s > 0]
            self.kids_sum = max(self.kids_sum, sum(live))
            self.kid_max = max([self.kid_max] + live)
            self.kids_seen = max(self.kids_seen, len(live))
            self.polls += 1
            self.stop_ev.wait(POLL)


# ---------------------------------------------------------------- runs ---

_current = None  # the running tool's Popen, for the SIGTERM handler


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


def run_tool(argv, log_base, cwd=None):
    """Runs argv with stdout/stderr to log_base.out/.err; returns a dict with
    seconds, exit code, timeout flag and memory figures."""
    global _current
    os.sync()  # earlier runs' dirty pages must not be written back on this clock
    # CPU accounting: what the machine did during the run, minus the tool
    # (with its reaped children: workers, curls), nginx and this process
    # (sampler), is other people's load that slowed the run down.
    me0, nginx0, busy0 = os.times(), proc_cpu(NGINX_PIDS), machine_busy()
    with open(log_base + ".out", "wb") as out, open(log_base + ".err", "wb") as err:
        t0 = time.monotonic()
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                             cwd=cwd, start_new_session=True)
        _current = p
        sampler = Sampler(p.pid)
        sampler.start()
        timed_out = threading.Event()

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
        p.returncode = os.waitstatus_to_exitcode(status)
        timer.cancel()
        sampler.stop_ev.set()
        sampler.join()
        _current = None
    # Leftover descendants (a tool that died before its children): kill them.
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except OSError:
        pass
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
        "polls": sampler.polls,
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
    """(files present, files right) for jobs 0..n-1 in outdir."""
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
    return present, right


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
            url = self.base + ("/slow" if kind == "slow" else "") + "/maps/api/geocode/json"
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


TOOL_NAMES = {
    t_supervisor: "supervisor",
    t_curl: "curl --parallel",
    t_pypool: "Python Pool",
    t_xargs: "xargs -P + curl",
    t_parallel: "GNU parallel + curl",
}


class Ctx:
    pass


class Row:
    """One (case, tool) line of the table, over its repeats."""

    def __init__(self, case, tool, jobs, workers):
        self.case, self.tool, self.jobs, self.workers = case, tool, jobs, workers
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
        return self.jobs / self.seconds if self.ok else None

    def mem(self, key):
        return max((r[key] for r in self.runs), default=0)


def run_row(ctx, row, tool, jobs_path):
    """One repeat of one tool: prepare, run, check, clean."""
    rep = len(row.runs) + 1
    tag = f"c{row.case}-{TOOL_NAMES[tool].split()[0].lower()}-{row.jobs}-r{rep}"
    outdir = os.path.join(ctx.out_root, tag)
    scratch = os.path.join(ctx.tmp, "scratch", tag)
    os.makedirs(outdir)
    os.makedirs(os.path.dirname(scratch), exist_ok=True)
    argv = tool(ctx, jobs_path, row.workers, outdir, scratch)
    log(f"case {row.case}: {TOOL_NAMES[tool]}, {row.jobs} jobs, W={row.workers}, run {rep}")
    r = run_tool(argv, os.path.join(ctx.tmp, "logs", tag))
    present, right = check_results(outdir, row.jobs)
    r.update(present=present, right=right)
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
        why = f"{right}/{row.jobs} right result files ({present} present)"
    elif r["rc"] != 0:
        why = f"exit status {r['rc']}"
    if why:
        err = tail(os.path.join(ctx.tmp, "logs", tag + ".err"))
        row.failure = why + (f"; stderr: {err}" if err else "")
        log(f"  FAILED: {row.failure}")
    else:
        log(f"  {r['seconds']:.2f}s, {row.jobs / r['seconds']:.0f} jobs/s, "
            f"RSS {r['root_hwm_kb'] / 1024:.1f} MB (+{r['kids_sum_kb'] / 1024:.1f} MB in {r['kids']} children); "
            f"CPU: tool {r['tool_user']:.2f}u+{r['tool_sys']:.2f}s, nginx {r['nginx_cpu']:.2f}s, "
            f"others {r['others_cores']:.2f} cores")
    row.runs.append(r)


def run_case(ctx, case, specs, repeat):
    """specs: [(tool, jobs_path, n, workers, skip_reason)]; repeats go
    round-robin over the tools so that drift hits every tool alike."""
    rows = []
    for tool, path, n, w, skip in specs:
        row = Row(case, TOOL_NAMES[tool], n, w)
        row.skipped = skip or None
        rows.append((row, tool, path))
    for _ in range(repeat):
        for row, tool, path in rows:
            if row.skipped is None and row.failure is None:
                run_row(ctx, row, tool, path)
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


def table(rows, sup_rate_by_case, ideal_by_case):
    head = ["case", "tool", "jobs", "W", "seconds", "jobs/s", "% of ideal",
            "supervisor/tool", "CPU s", "tool RSS", "children RSS (sum)", "result"]
    lines = []
    for r in rows:
        sup = sup_rate_by_case.get(r.case)
        ideal = ideal_by_case.get(r.case)
        if r.skipped:
            result = f"skipped ({r.skipped})"
        elif r.failure:
            result = f"FAILED: {r.failure}"
        else:
            result = f"ok ({len(r.runs)} run{'s' if len(r.runs) > 1 else ''}, all files right)"
        ratio = f"{sup / r.rate:.2f}x" if (r.ok and sup and r.tool != "supervisor") else "-"
        pct = f"{100 * r.rate / ideal:.0f}%" if (r.ok and ideal) else "-"
        ran = bool(r.runs) and not r.skipped
        cpu = f"{statistics.median(x['tool_cpu'] for x in r.runs):.2f}" if r.ok else "-"
        lines.append([r.case, r.tool, f"{r.jobs:,}", str(r.workers), fmt_s(r.seconds),
                      fmt_rate(r.rate), pct, ratio, cpu,
                      mb(r.mem("root_hwm_kb")) if ran else "-",
                      (mb(r.mem("kids_sum_kb")) if r.mem("kids") else "none") if ran else "-",
                      result])
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
    ap.add_argument("--nginx-version", default="?")
    ap.add_argument("--nginx-pid", type=int, default=0)
    ap.add_argument("--out-root", required=True, help="where the result dirs go")
    ap.add_argument("--fs-desc", default="?")
    a = ap.parse_args()
    if a.nginx_pid:
        NGINX_PIDS[:] = [a.nginx_pid] + descendants(a.nginx_pid)
    signal.signal(signal.SIGTERM, on_term)

    ctx = Ctx()
    ctx.supervisor, ctx.python, ctx.tmp, ctx.out_root = a.supervisor, a.python, a.tmp, a.out_root
    os.makedirs(os.path.join(a.tmp, "logs"), exist_ok=True)
    jobs = Jobs(a.tmp, a.port)
    xargs_skip = "" if shutil.which("xargs") else "xargs not installed"

    n1, n1_small, n2, n3 = 20000 // SCALE, 2000 // SCALE, 10000 // SCALE, 200000 // SCALE
    rows, notes = [], []
    sup_rate, ideal = {}, {}
    t_start = time.monotonic()

    log(f"cases {','.join(CASES)}, {'QUICK (/10), ' if QUICK else ''}{REPEAT} repeat(s), "
        f"nginx on 127.0.0.1:{a.port}")
    # Anything else running on the 2 cores skews every number: record it.
    load_before = loadavg()
    idle = idle_worker_rss(a.http_worker)

    c1_sup = None
    if "1" in CASES:
        j = jobs.get("fast", n1)
        js = jobs.get("fast", n1_small)
        specs = [(t_supervisor, j, n1, 8, ""), (t_curl, j, n1, 8, ""),
                 (t_pypool, j, n1, 8, a.skip_python), (t_xargs, js, n1_small, 8, xargs_skip),
                 (t_parallel, js, n1_small, 8, a.skip_parallel)]
        case_rows = run_case(ctx, "1", specs, REPEAT)
        rows += case_rows
        c1_sup = case_rows[0]
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
        specs = [(t_supervisor, j, n2, w, specs_skip), (t_curl, j, n2, w, specs_skip),
                 (t_pypool, j, n2, w, specs_skip or a.skip_python)]
        case_rows = run_case(ctx, "2", specs, REPEAT)
        rows += case_rows
        if case_rows[0].ok:
            sup_rate["2"] = case_rows[0].rate

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

    # ---- targets
    def row(case, tool):
        return next((r for r in rows if r.case == case and r.tool == tool and r.jobs in (n1, n2, n3)), None)

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
    if "2" in CASES:
        s2 = row("2", "supervisor")
        have = bool(s2 and s2.ok)
        targets.append((f"case 2: supervisor >= {T_IDEAL:.0%} of ideal {ideal['2']:,.0f} jobs/s",
                        f"{s2.rate:,.0f} jobs/s = {s2.rate / ideal['2']:.0%}" if have else _why(s2),
                        verdict(have and s2.rate >= T_IDEAL * ideal["2"], have)))
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
                       f"over {r.mem('kids')} workers ({mb(per)} each on average, largest {mb(r.mem('kid_max_kb'))})")
    if idle_kb:
        mem.append(f"idle http-worker after its ready line: VmRSS {mb(idle_kb)}, VmHWM {mb(idle.get('VmHWM', 0))}")
    for r in rows:
        if r.tool == "Python Pool" and r.ok:
            mem.append(f"case {r.case} Python Pool({r.workers}): parent {mb(r.mem('root_hwm_kb'))}, "
                       f"its {r.mem('kids')} processes summed {mb(r.mem('kids_sum_kb'))}")

    elapsed = time.monotonic() - t_start
    tbl = table(rows, sup_rate, ideal)
    tgt_w = max(len(t[0]) for t in targets)
    tgt_lines = [f"{v:4}  {name.ljust(tgt_w)}  {val}" for name, val, v in targets]

    mode = "QUICK (job counts / 10)" if QUICK else "full"
    summary = [
        f"callpool benchmark: {mode}, cases {','.join(CASES)}, {REPEAT} run(s) per tool in cases 1-2 "
        f"(median), 1 in case 3; {elapsed:.0f} s",
        "",
        tbl,
        "",
        "Memory:",
        *[f"  {m}" for m in mem],
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
        f"Made by `{cmd}` ({mode}; {REPEAT} run(s) of each tool in cases 1 and 2, median time; "
        f"case 3 once; {elapsed:.0f} s in all). Wall time of the whole command; every result file "
        "checked; memory polled from /proc every "
        f"{POLL * 1000:.0f} ms. Loopback nginx (1 worker process) serves both endpoints.",
        "",
        "| machine | |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in info],
        "",
        "## Throughput",
        "",
        "Case 1: fast API, W=8. Case 2: 50 ms API, W=256, ideal = W / 50 ms = "
        f"{256 / SLOW_LATENCY:,.0f} jobs/s. Case 3: fast API, W=8, supervisor only. "
        "`supervisor/tool` = the supervisor's jobs/s in that case over the tool's.",
        "",
        tbl,
        "",
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
        "## Every run",
        "",
        "`others` is the load that was not the tool, nginx or the benchmark "
        "itself during the run (machine busy time from /proc/stat, in cores): "
        "other work on the machine that the run competed with.",
        "",
        "| case | tool | jobs | run | seconds | jobs/s | tool CPU user+sys s | nginx CPU s | others (cores) | result |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *[f"| {r.case} | {r.tool} | {r.jobs:,} | {i + 1} | {x['seconds']:.2f} | {r.jobs / x['seconds']:,.0f} | "
          f"{x['tool_user']:.2f}+{x['tool_sys']:.2f} | {x['nginx_cpu']:.2f} | {x['others_cores']:.2f} | "
          f"{'ok' if x['right'] == r.jobs and x['rc'] == 0 and not x['timed_out'] else 'FAILED'} |"
          for r in rows for i, x in enumerate(r.runs)],
        "",
        "## Targets",
        "",
        "| | target | measured |",
        "|---|---|---|",
        *[f"| {v} | {name} | {val} |" for name, val, v in targets],
        "",
    ]
    with open(a.results, "w") as f:
        f.write("\n".join(md))
    log(f"wrote {a.results}")

    sup_failed = any(r.tool == "supervisor" and r.failure for r in rows)
    return 1 if sup_failed else 0


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
