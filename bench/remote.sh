#!/usr/bin/env bash
# Workers over ssh against workers on this machine (issue 14): the same
# 10,000 jobs on the 50 ms API (bench case 2's nginx location), 64 workers
# here (`supervisor --workers 64`) against 32 + 32 over ssh to two real sshd
# on loopback, "alpha" (127.0.0.2) and "beta" (127.0.0.3)
# (`supervisor --ssh "ssh -F CONFIG" --host 32/alpha --host 32/beta
# --ssh-sessions 32`: one login per host), and the same with the default
# `--ssh-sessions 10` (4 logins per host, what sshd's default MaxSessions
# costs). Reports, per mode: wall time, the supervisor's elapsed_s and
# jobs/s (from --summary-json), ssh/local, the ssh overhead per job
# ((t_ssh - t_local) / jobs, in ms and %), the time until all workers were
# ready, and, since on 2 cores the ssh processes compete with everything
# else, where the CPU went (the supervisor, http-workers, the remote
# wrapper, ssh masters and session clients, sshd, nginx), how busy the
# machine was, CPU pressure (/proc/pressure/cpu) and how long the
# http-workers waited for a CPU. A run counts only with exit status 0, every
# job ok (summary JSON and result files), and no process or control-socket
# folder left behind; else it is FAILED, and the script exits 1 (the target,
# ssh within 10% of local jobs/s, is printed PASS/FAIL and does not change
# the exit status). The markdown goes to stdout, the log to stderr.
#
#   bench/remote.sh                         # 3 rounds of each mode (about 2 minutes)
#   BENCH_RUNS=5 bench/remote.sh
#   BENCH_MODES=local,ssh,ssh:aes128-gcm@openssh.com bench/remote.sh
#
# Environment:
#   BENCH_JOBS=N        jobs per run (10000)
#   BENCH_WORKERS=W     workers in each mode (64; W/2 on each ssh host)
#   BENCH_RUNS=N        rounds (3); a round runs every mode once, so that
#                       noise hits them all; the start rotates each round.
#                       Medians are reported
#   BENCH_MODES=LIST    comma-separated (default local,ssh,ssh10):
#                         local       supervisor --workers W
#                         ssh         --host W/2/alpha --host W/2/beta
#                                     --ssh-sessions W/2 (one login per host)
#                         ssh10       the same with --ssh-sessions 10
#                         ssh:CIPHER, ssh10:CIPHER  with -o Ciphers=CIPHER
#   BENCH_SSH_OPTS="…"  more ssh options for every ssh mode (appended to
#                       "ssh -F CONFIG"), e.g. "-o Compression=no"
#   BENCH_WARMUP=0      skip the untimed warm-up (1,000 jobs per mode)
#   BENCH_TIMEOUT=S     a run taking longer is killed and FAILED (600)
#   BENCH_RESULTS=FILE  also append the markdown section to FILE
#   BENCH_NO_BUILD, BENCH_NO_INSTALL, BENCH_TMPDIR, BENCH_FS, BENCH_KEEP:
#                       as for run.sh (lib.sh)
#
# Needs what run.sh needs (nginx + its echo module) and the OpenSSH server
# and client (installed with apt-get when missing and root; sshd is never
# started as a service). The sshd run as root, with throwaway keys in the
# temp dir, on free ports of 127.0.0.2 and 127.0.0.3, each with its own
# sshd_config (MaxSessions 100, SetEnv PATH=target/release:... so that the
# release http-worker is found by name). Only loopback is ever reached.
# On exit, also on Ctrl-C, nginx, both sshd and everything started through
# them (found by a marker in their environment, wherever they are in the
# process tree) are killed, and the temp dir is removed.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
# shellcheck source=lib.sh
. "$BENCH_DIR/lib.sh"

SSHD=/usr/sbin/sshd
JOBS=${BENCH_JOBS:-10000}
WORKERS=${BENCH_WORKERS:-64}
RUNS=${BENCH_RUNS:-3}
MODES=${BENCH_MODES:-local,ssh,ssh10}
LAB=""
MADE_RUN_SSHD=0
SSHD_PIDS=()

# Stops both sshd and everything below them or marked as started through
# them: first SIGSTOP, round after round until a round finds nothing new
# (a stopped process cannot fork, and nothing gets reparented away before
# it is found), then SIGKILL. sshd puts each connection and each session
# in a session of its own, so a process group kill would miss them.
# argv: marker listener-pid...
KILL_LAB_PY='
import os, signal, sys, time
marker, roots = sys.argv[1].encode(), {int(p) for p in sys.argv[2:]}
def procs():
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                s = f.read()
            rest = s[s.rfind(b")") + 2:].split()
            if rest[0] in (b"Z", b"X"):
                continue
            out[int(d)] = int(rest[1])
        except (OSError, IndexError, ValueError):
            pass
    return out
def marked(pid):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return marker in f.read().split(b"\0")
    except OSError:
        return False
doomed = set()
for _ in range(100):
    ps = procs()
    found = {p for p in ps if p in roots or marked(p)}
    grew = True
    while grew:
        grew = False
        for p, pp in ps.items():
            if pp in found and p not in found:
                found.add(p)
                grew = True
    new = found - doomed
    if not new:
        break
    for p in new:
        try:
            os.kill(p, signal.SIGSTOP)
        except OSError:
            pass
    doomed |= new
for p in doomed:
    try:
        os.kill(p, signal.SIGKILL)
    except OSError:
        pass
time.sleep(0.1)
left = [p for p in procs() if p in doomed or marked(p)]
if left:
    print(f"bench: processes still alive after SIGKILL: {left}", file=sys.stderr)
'

stop_lab() {
    if [ -n "$LAB" ] && { [ ${#SSHD_PIDS[@]} -gt 0 ] || [ -d "$LAB" ]; }; then
        "$PY" -c "$KILL_LAB_PY" "CALLPOOL_BENCH_LAB=$LAB" "${SSHD_PIDS[@]}" || true
    fi
    SSHD_PIDS=()
    if [ "$MADE_RUN_SSHD" = 1 ]; then
        rmdir /run/sshd 2>/dev/null || true
        MADE_RUN_SSHD=0
    fi
}

# The runner runs in BG_PID: it kills the supervisor it runs on TERM;
# then both sshd and all they started go too.
install_cleanup stop_lab

ensure_deps
[ -z "$ECHO_MISSING" ] || die "$ECHO_MISSING: the 50 ms API needs it"
if [ ! -x "$SSHD" ] || ! command -v ssh >/dev/null || ! command -v ssh-keygen >/dev/null; then
    if [ "$(id -u)" = 0 ] && [ "${BENCH_NO_INSTALL:-0}" != 1 ] && command -v apt-get >/dev/null; then
        log "installing openssh-server openssh-client with apt-get"
        apt_install openssh-server openssh-client || true
    fi
    [ -x "$SSHD" ] && command -v ssh >/dev/null && command -v ssh-keygen >/dev/null ||
        die "the OpenSSH server and client are needed (apt-get install openssh-server openssh-client)"
fi
[ "$(id -u)" = 0 ] || die "run it as root: sshd must run as root to log in as root"
build_release
# 64 workers' pipes, sockets and the sshd side of them.
ulimit -n 65536 2>/dev/null || true
unset RUST_BACKTRACE RUST_LIB_BACKTRACE

make_tmp
log "temp dir $BENCH_TMP; result dirs on $FS_DESC"
start_nginx "$BENCH_TMP/nginx"

# ------------------------------------------------------------- ssh lab ---
# As tests/common/sshd.rs does it: a host key per host, one client key
# authorized on both, a known_hosts for both, and an ssh config with
# aliases so that nothing of this machine's ssh setup is used.
LAB=$BENCH_TMP/ssh
mkdir -p "$LAB"
# sshd refuses to start without its privilege separation folder, which the
# Debian package only makes when its service starts. Removed on exit if
# made here.
if [ ! -d /run/sshd ]; then
    mkdir -p /run/sshd
    MADE_RUN_SSHD=1
fi
keygen() { ssh-keygen -q -t ed25519 -N '' -C "callpool-bench-$1" -f "$LAB/$1" </dev/null; }
keygen user_key
cp "$LAB/user_key.pub" "$LAB/authorized_keys"
: >"$LAB/known_hosts"
: >"$LAB/ssh_config"
sessions_max=$((WORKERS / 2 > 100 ? WORKERS / 2 : 100))

free_port_on() {
    "$PY" -c 'import socket, sys; s = socket.socket(); s.bind((sys.argv[1], 0)); print(s.getsockname()[1])' "$1"
}

# start_sshd NAME IP: an sshd on a free port of IP, and NAME's entries in
# known_hosts and the ssh config; tried again on another port when the free
# one was taken before sshd bound it.
start_sshd() {
    local name=$1 ip=$2 try port pid _
    keygen "host_key_$name"
    for try in 1 2 3 4 5; do
        port=$(free_port_on "$ip")
        cat >"$LAB/sshd_config_$name" <<EOF
ListenAddress $ip:$port
HostKey "$LAB/host_key_$name"
AuthorizedKeysFile "$LAB/authorized_keys"
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
# The keys are in a temp dir, not owned as sshd wants.
StrictModes no
PidFile none
# --ssh-sessions W/2 puts W/2 sessions on one login.
MaxSessions $sessions_max
PermitUserRC no
LogLevel ERROR
# PATH: the release http-worker is found by name. CALLPOOL_BENCH_LAB marks
# every process started through this sshd, so that cleanup finds it even
# once orphaned. SHLVL=1: root's bash then skips ~/.bashrc, which could put
# other folders first on the PATH.
SetEnv "PATH=$TARGET_DIR/release:/usr/local/bin:/usr/bin:/bin" "CALLPOOL_BENCH_LAB=$LAB" SHLVL=1
EOF
        # -D: stays our child; -e: log to stderr.
        env -u CALLPOOL_BENCH_LAB "$SSHD" -D -e -f "$LAB/sshd_config_$name" \
            </dev/null >/dev/null 2>"$LAB/sshd_$name.log" &
        pid=$!
        # Out of the job table: bash would print "Killed" when cleanup
        # kills it. Still our child; bash reaps it.
        disown "$pid"
        SSHD_PIDS+=("$pid")
        for _ in $(seq 1 100); do
            if (exec 3<>"/dev/tcp/$ip/$port") 2>/dev/null; then
                log "sshd $name ($pid) on $ip:$port"
                printf '[%s]:%s %s\n' "$ip" "$port" "$(cat "$LAB/host_key_$name.pub")" >>"$LAB/known_hosts"
                printf 'Host %s\n  HostName %s\n  Port %s\n  IdentityFile "%s"\n' \
                    "$name" "$ip" "$port" "$LAB/user_key" >>"$LAB/ssh_config"
                return 0
            fi
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        unset 'SSHD_PIDS[-1]'
        grep -q 'Address already in use' "$LAB/sshd_$name.log" ||
            die "sshd $name did not start: $(tail -n 5 "$LAB/sshd_$name.log")"
    done
    die "sshd $name: no free port on $ip after 5 tries"
}

start_sshd alpha 127.0.0.2
start_sshd beta 127.0.0.3
# ssh takes the first value it reads for an option: these come last.
cat >>"$LAB/ssh_config" <<EOF
Host *
  User root
  IdentitiesOnly yes
  UserKnownHostsFile "$LAB/known_hosts"
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  UpdateHostKeys no
  BatchMode yes
  LogLevel ERROR
EOF
SSH_CMD="ssh -F $LAB/ssh_config${BENCH_SSH_OPTS:+ $BENCH_SSH_OPTS}"
# What the default client and server agree on (the cipher is the figure
# that matters for the CPU cost per byte).
# shellcheck disable=SC2086  # SSH_CMD is words on purpose
KEX=$($SSH_CMD -v -o LogLevel=DEBUG1 alpha 'command -v http-worker' 2>&1 |
    sed -n 's/.*debug1: kex: server->client cipher: \([^ ]*\) MAC: \([^ ]*\) compression: \([^ ]*\).*/\1 (MAC \2, compression \3)/p' | head -n 1) || true
REMOTE_WORKER=$($SSH_CMD alpha 'command -v http-worker' 2>/dev/null) ||
    die "ssh alpha does not work: $($SSH_CMD alpha true 2>&1 | tail -n 3)"
log "ssh alpha: cipher ${KEX:-?}; http-worker there is $REMOTE_WORKER"
[ "$REMOTE_WORKER" = "$HTTP_WORKER" ] || die "the remote PATH finds $REMOTE_WORKER, not $HTTP_WORKER"

# --------------------------------------------------------------- runs ---
jobs=$BENCH_TMP/jobs.jsonl
"$PY" "$BENCH_DIR/gen_jobs.py" "$JOBS" "http://127.0.0.1:$PORT/slow/maps/api/geocode/json" >"$jobs"
NGINX_PIDS="$NGINX_PID $(pgrep -P "$NGINX_PID" | tr '\n' ' ')"

"$PY" - "$SUPERVISOR" "$jobs" "$OUT_ROOT" "$BENCH_TMP" "$JOBS" "$WORKERS" "$RUNS" "$MODES" \
    "$SSH_CMD" "$LAB" "${SSHD_PIDS[*]}" "$NGINX_PIDS" "${KEX:-?}" "$FS_DESC" \
    "$("$NGINX" -v 2>&1 | sed 's/^nginx version: //')" "$(ssh -V 2>&1)" "${BENCH_RESULTS:-}" "$ROOT" <<'EOF' &
import collections, ctypes, datetime, json, os, re, shlex, signal, statistics, subprocess, sys, threading, time

(sup, jobs, out_root, tmp, n, w, runs, modes, ssh_cmd, lab, sshd_pids, nginx_pids, kex, fs_desc,
 nginx_version, ssh_version, results_file, root) = sys.argv[1:]
n, w, runs = int(n), int(w), int(runs)
sshd_pids = [int(p) for p in sshd_pids.split()]
nginx_pids = [int(p) for p in nginx_pids.split()]
TIMEOUT = float(os.environ.get("BENCH_TIMEOUT", "600"))
WARMUP = os.environ.get("BENCH_WARMUP", "1") != "0"
LATENCY = 0.05
IDEAL = w / LATENCY
TICK = os.sysconf("SC_CLK_TCK")
POLL = 0.5
MARKER = f"CALLPOOL_BENCH_LAB={lab}".encode()
ENV = {k: v for k, v in os.environ.items() if k not in ("RUST_BACKTRACE", "RUST_LIB_BACKTRACE")}
# The supervisor's folder of control sockets (callpool-ssh-*) goes in the
# temp dir: removed with it even if a supervisor had to be killed -9.
ENV["TMPDIR"] = tmp


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------ modes ---
def parse_mode(mode):
    """(ssh?, sessions per login, cipher or "")."""
    name, _, cipher = mode.partition(":")
    if name == "local" and not cipher:
        return False, 0, ""
    if name not in ("ssh", "ssh10"):
        sys.exit(f"bench: unknown mode {mode!r} (local, ssh, ssh10, ssh:CIPHER, ssh10:CIPHER)")
    return True, (w // 2 if name == "ssh" else 10), cipher


def mode_argv(mode, jobs_path, outdir, summary):
    base = [sup, "--out", outdir, "--summary-json", summary]
    remote, sessions, cipher = parse_mode(mode)
    if not remote:
        return base + ["--workers", str(w), jobs_path]
    ssh = ssh_cmd + (f" -o Ciphers={cipher}" if cipher else "")
    return base + ["--ssh", ssh, "--host", f"{w // 2}/alpha", "--host", f"{w - w // 2}/beta",
                   "--ssh-sessions", str(sessions), jobs_path]


def mode_label(mode):
    remote, sessions, cipher = parse_mode(mode)
    if not remote:
        return f"local, --workers {w}"
    logins = -(-(w // 2) // sessions)
    label = f"ssh {w // 2}+{w - w // 2}, --ssh-sessions {sessions} ({logins} login{'s' if logins > 1 else ''}/host)"
    return label + (f", {cipher}" if cipher else "")


# ------------------------------------------------------------- /proc ---
def stat(pid):
    """(state, ppid, utime+stime, cutime+cstime) in seconds, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            s = f.read()
    except OSError:
        return None
    r = s[s.rfind(b")") + 2:].split()
    return r[0], int(r[1]), (int(r[11]) + int(r[12])) / TICK, (int(r[13]) + int(r[14])) / TICK


def sched(pid):
    """(seconds on a CPU, seconds runnable but waiting on a run queue) of
    the process's live threads, from /proc/PID/task/*/schedstat: in
    nanoseconds, where /proc/PID/stat counts clock ticks (10 ms, while an
    http-worker uses about 5 ms in 2 s)."""
    run = wait = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    v = f.read().split()
                run += int(v[0])
                wait += int(v[1])
            except (OSError, IndexError, ValueError):
                pass
    except OSError:
        pass
    return run / 1e9, wait / 1e9


def argv_of(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace").split("\0")
    except OSError:
        return []


def marked(pid):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return MARKER in f.read().split(b"\0")
    except OSError:
        return False


def all_procs():
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            s = stat(int(d))
            if s:
                out[int(d)] = s
    return out


def below(procs, roots):
    kids = collections.defaultdict(list)
    for p, s in procs.items():
        kids[s[1]].append(p)
    found, todo = set(), list(roots)
    while todo:
        p = todo.pop()
        for c in kids.get(p, ()):
            if c not in found:
                found.add(c)
                todo.append(c)
    return found


def machine_busy():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (v + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / TICK


def cpu_pressure():
    """Seconds during which some runnable task waited for a CPU (PSI), or
    None without /proc/pressure."""
    try:
        with open("/proc/pressure/cpu") as f:
            return int(f.readline().split("total=")[1]) / 1e6
    except (OSError, IndexError, ValueError):
        return None


def self_and_reaped(pids):
    """CPU of these processes and of the children they reaped."""
    t = 0.0
    for p in pids:
        s = stat(p)
        if s:
            t += s[2] + s[3]
    return t


KINDS = ("worker", "master", "sshd")


class Sampler(threading.Thread):
    """Every POLL seconds, the CPU time and the run-queue wait so far of the
    run's http-workers, ssh master connections (below the supervisor) and
    sshd connection processes (children of a listener). The last value seen
    of each is what it spent, short of its last POLL seconds (approximate;
    the totals from the kernel's accounting are exact, and the wrapper's
    and the ssh session clients' shares are what is left of them). /proc is
    walked until all of them are found, then only they are read: a walk
    over the 400 processes of an ssh run costs a few % of a core."""

    def __init__(self, sup_pid, workers, logins):
        super().__init__(daemon=True)
        self.sup_pid = sup_pid
        self.want = {"worker": workers, "master": logins, "sshd": logins}
        self.stop_ev = threading.Event()
        self.kind = {}  # pid -> kind, for the processes followed
        self.last = {}  # pid -> (kind, cpu, wait)

    def classify(self, pid, procs, remote):
        if remote and procs[pid][1] in sshd_pids:
            return "sshd"  # a connection's own process; never execs
        argv = argv_of(pid)
        prog = os.path.basename(argv[0]) if argv else ""
        if prog == "http-worker":
            return "worker"
        if prog == "ssh" and "ControlMaster=yes" in argv:
            return "master"
        # The wrapper's sh, cat, sleep, the session clients, or a process
        # forked and not yet executed (it shows its parent's command line).
        return None

    def walk(self):
        procs = all_procs()
        for remote, pids in ((False, below(procs, [self.sup_pid])), (True, below(procs, sshd_pids))):
            for p in pids:
                if p not in self.kind and procs[p][0] not in (b"Z", b"X"):
                    k = self.classify(p, procs, remote)
                    if k:
                        self.kind[p] = k

    def run(self):
        while not self.stop_ev.wait(POLL):
            found = collections.Counter(self.kind.values())
            if any(found[k] < n for k, n in self.want.items()):
                self.walk()
            for p, k in self.kind.items():
                run, wait = sched(p)
                if run:  # 0: gone
                    self.last[p] = (k, run, wait)

    def totals(self):
        cpu, wait = dict.fromkeys(KINDS, 0.0), dict.fromkeys(KINDS, 0.0)
        for k, c, d in self.last.values():
            cpu[k] += c
            wait[k] += d
        return cpu, wait


libc = ctypes.CDLL(None, use_errno=True)
PR_SET_CHILD_SUBREAPER = 36
current = None


def stop_supervisor(p):
    """TERM twice (the second kills its workers at once), then, after 5 s,
    SIGKILL to its process group."""
    for _ in range(2):
        try:
            os.kill(p.pid, signal.SIGTERM)
        except OSError:
            return
        time.sleep(0.2)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and stat(p.pid) and stat(p.pid)[0] not in (b"Z", b"X"):
        time.sleep(0.05)
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except OSError:
        pass


def on_term(signum, frame):
    if current is not None:
        stop_supervisor(current)
    sys.exit(143)


signal.signal(signal.SIGTERM, on_term)
# Orphans of the supervisor (an ssh it did not wait for) come to us, so
# that they can be counted as left behind.
libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def remote_left():
    procs = all_procs()
    return sorted(p for p in below(procs, sshd_pids) | {p for p in procs if marked(p)}
                  if procs.get(p, (b"Z",))[0] not in (b"Z", b"X"))


def describe(pids):
    return "; ".join(f"{p} {' '.join(argv_of(p))[:80]}" for p in pids[:5])


def run_once(mode, tag, jobs_path, count):
    global current
    outdir = os.path.join(out_root, tag)
    summary = os.path.join(tmp, tag + ".summary.json")
    err_path = os.path.join(tmp, tag + ".err")
    argv = mode_argv(mode, jobs_path, outdir, summary)
    os.sync()  # the previous run's dirty pages are not written back on this clock
    remote0, nginx0 = self_and_reaped(sshd_pids), self_and_reaped(nginx_pids)
    nginx_wait0 = sum(sched(p)[1] for p in nginx_pids)
    busy0, psi0, me0 = machine_busy(), cpu_pressure(), os.times()
    with open(err_path, "wb") as err:
        t0 = time.monotonic()
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                             env=ENV, start_new_session=True)
        current = p
        remote, sessions, _ = parse_mode(mode)
        sampler = Sampler(p.pid, w, (-(-(w // 2) // sessions) + -(-(w - w // 2) // sessions)) if remote else 0)
        sampler.start()

        timer = threading.Timer(TIMEOUT, stop_supervisor, (p,))
        timer.daemon = True
        timer.start()
        # Exited, not yet reaped: its /proc/PID/stat still tells its own CPU
        # and that of the children it reaped (workers, or ssh clients).
        os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)
        wall = time.monotonic() - t0
        busy1, psi1, me1 = machine_busy(), cpu_pressure(), os.times()
        nginx_wait = sum(sched(p)[1] for p in nginx_pids) - nginx_wait0
        s = stat(p.pid)
        _, status, ru = os.wait4(p.pid, 0)
        timer.cancel()
        sampler.stop_ev.set()
        sampler.join()
        current = None
    rc = os.waitstatus_to_exitcode(status)
    timed_out = wall >= TIMEOUT
    sup_self, sup_kids = (s[2], s[3]) if s else (0.0, ru.ru_utime + ru.ru_stime)
    problems = []
    # Local processes left by the supervisor: re-parented to us.
    time.sleep(0.05)
    procs = all_procs()
    reap = sorted(below(procs, [os.getpid()]))
    orphans = [c for c in reap if procs[c][0] not in (b"Z", b"X")]
    if orphans:
        problems.append(f"{len(orphans)} local process(es) left after the supervisor exited: {describe(orphans)}")
    # The sshd side: every session and connection must end by itself.
    t_end = time.monotonic()
    left = remote_left()
    while left and time.monotonic() - t_end < 15:
        time.sleep(0.05)
        left = remote_left()
    remote_gone = time.monotonic() - t_end
    if left:
        problems.append(f"{len(left)} process(es) of the sshd side still alive {remote_gone:.0f} s after "
                        f"the supervisor exited: {describe(left)}")
    for c in reap:
        try:
            os.kill(c, signal.SIGKILL)
            os.waitpid(c, 0)
        except OSError:
            pass
    remote_total = self_and_reaped(sshd_pids) - remote0
    nginx_cpu = self_and_reaped(nginx_pids) - nginx0
    me_cpu = (me1.user + me1.system) - (me0.user + me0.system)
    try:
        sj = json.load(open(summary))
    except (OSError, ValueError) as e:
        sj = {}
        problems.append(f"no summary JSON ({e})")
    ok = sj.get("counts", {}).get("ok")
    files = sum(1 for f in os.listdir(outdir) if f.startswith("job-") and f.endswith(".json")) \
        if os.path.isdir(outdir) else 0
    hosts = collections.Counter()
    try:
        with open(os.path.join(outdir, "joblog.jsonl"), "rb") as f:
            for line in f:
                j = json.loads(line)
                if j.get("outcome") == "ok":
                    hosts[j.get("host", ":")] += 1
    except (OSError, ValueError):
        pass
    socket_dirs = [d for d in os.listdir(tmp) if d.startswith("callpool-ssh-")]
    if socket_dirs:
        problems.append(f"the supervisor left its control-socket folder(s) {', '.join(socket_dirs)} "
                        f"({', '.join(sorted(os.listdir(os.path.join(tmp, socket_dirs[0])))) or 'empty'})")
    if rc != 0:
        problems.append(f"exit status {rc}" + (" (timed out)" if timed_out else ""))
    if ok != count:
        problems.append(f"{ok} ok results in the summary, not {count:,}")
    if files != count:
        problems.append(f"{files:,} result files, not {count:,}")
    errtext = open(err_path, errors="replace").read()
    m = re.search(r"all (\d+) workers ready in ([0-9.]+)s", errtext)
    cpu, wait = sampler.totals()
    cpu_by = {"supervisor": sup_self, "nginx": nginx_cpu}
    if remote:
        cpu_by["master"] = cpu["master"]
        cpu_by["client"] = max(0.0, sup_kids - cpu["master"])
        cpu_by["sshd"] = cpu["sshd"]
        cpu_by["worker"] = cpu["worker"]
        cpu_by["wrapper"] = max(0.0, remote_total - cpu["sshd"] - cpu["worker"])
    else:
        cpu_by["worker"] = sup_kids
    return {
        "mode": mode, "tag": tag, "wall": wall, "rc": rc, "problems": problems,
        "elapsed": sj.get("elapsed_s"), "rate": sj.get("jobs_per_s"), "ok": ok, "files": files,
        "hosts": dict(hosts), "ready": float(m.group(2)) if m else None,
        "p50": (sj.get("latency_ms") or {}).get("p50"), "max": (sj.get("latency_ms") or {}).get("max"),
        "retried": sj.get("retried"), "restarts": sj.get("restarts") or {},
        "cpu": cpu_by, "cpu_total": sum(cpu_by.values()),
        "busy": (busy1 - busy0) / wall,
        "psi": None if psi0 is None or psi1 is None else (psi1 - psi0) / wall,
        "worker_wait": wait["worker"], "nginx_wait": nginx_wait,
        "others": max(0.0, (busy1 - busy0) - sup_self - sup_kids - remote_total - nginx_cpu - me_cpu) / wall,
        "bench_cpu": me_cpu, "remote_gone": remote_gone,
        "stderr_tail": errtext.strip().splitlines()[-3:],
    }


mode_list = [m.strip() for m in modes.split(",") if m.strip()]
for m in mode_list:
    parse_mode(m)
if "local" not in mode_list:
    sys.exit("bench: BENCH_MODES must include local (the reference)")

if WARMUP:
    warm = os.path.join(tmp, "warmup.jsonl")
    with open(jobs) as src, open(warm, "w") as dst:
        for _, line in zip(range(min(n, 1000)), src):
            dst.write(line)
    for m in mode_list:
        r = run_once(m, f"warmup-{m.replace(':', '-')}", warm, min(n, 1000))
        log(f"warm-up {m}: {r['wall']:.2f} s" + (f"; FAILED: {'; '.join(r['problems'])}" if r["problems"] else ""))
        if r["problems"]:
            log("stderr: " + " | ".join(r["stderr_tail"]))
            sys.exit(1)

results = collections.defaultdict(list)
t_start = time.monotonic()
load_before = open("/proc/loadavg").read().split()[:3]
for i in range(runs):
    k = i % len(mode_list)
    for m in mode_list[k:] + mode_list[:k]:
        r = run_once(m, f"{m.replace(':', '-')}-{i + 1}", jobs, n)
        r["round"] = i + 1
        results[m].append(r)
        if r["problems"]:
            log(f"round {i + 1} {m}: FAILED: {'; '.join(r['problems'])}")
            log("stderr: " + " | ".join(r["stderr_tail"]))
        else:
            log(f"round {i + 1} {m}: {r['wall']:.2f} s, {r['rate']:,.0f} jobs/s, CPU "
                + ", ".join(f"{k} {v:.2f}" for k, v in r["cpu"].items())
                + f"; machine {r['busy']:.2f} cores busy")
load_after = open("/proc/loadavg").read().split()[:3]
total_s = time.monotonic() - t_start


# ------------------------------------------------------------ report ---
def med(rows, key):
    v = [key(r) if callable(key) else r[key] for r in rows]
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None


def f2(x, spec=".2f"):
    return "-" if x is None else format(x, spec)


def md(head, lines):
    widths = [max(len(str(c)) for c in col) for col in zip(head, *lines)]

    def fmt(cells):
        return "| " + " | ".join(str(c).ljust(wd) for c, wd in zip(cells, widths)) + " |"
    return [fmt(head), "|" + "|".join("-" * (wd + 2) for wd in widths) + "|"] + [fmt(l) for l in lines]


good = {m: [r for r in rs if not r["problems"]] for m, rs in results.items()}
loc = good.get("local", [])
t_loc, rate_loc = med(loc, "elapsed"), med(loc, "rate")
by_round_loc = {r["round"]: r for r in loc}
rows, cpu_rows, verdicts = [], [], []
CPU_COLS = [("supervisor", "supervisor"), ("worker", "http-workers"), ("wrapper", "wrapper sh+cat"),
            ("master", "ssh masters"), ("client", "ssh clients"), ("sshd", "sshd"), ("nginx", "nginx")]
for m in mode_list:
    rs, allr = good[m], results[m]
    if not rs:
        rows.append([mode_label(m), f"0 of {len(allr)}", "FAILED"] + ["-"] * 12)
        continue
    t, rate = med(rs, "elapsed"), med(rs, "rate")
    if m == "local" or not loc:
        ratio = pair = over_ms = over_pct = "-"
    else:
        ratio = f"{rate / rate_loc:.3f}"
        pr = [r["rate"] / by_round_loc[r["round"]]["rate"] for r in rs if r["round"] in by_round_loc]
        pair = f"{min(pr):.3f}-{max(pr):.3f}" if pr else "-"
        over_ms = f"{(t - t_loc) / n * 1000:+.3f}"
        over_pct = f"{(t / t_loc - 1) * 100:+.1f}%"
        if m == "ssh":
            verdicts.append((rate / rate_loc >= 0.9, f"{mode_label(m)} >= 90% of local jobs/s",
                             f"{rate:,.0f} vs {rate_loc:,.0f} jobs/s = {rate / rate_loc:.1%}"))
    rows.append([
        mode_label(m), f"{len(rs)} of {len(allr)}", f2(med(rs, "wall")), f"{t:.2f}", f"{rate:,.0f}",
        f"{rate / IDEAL:.0%}", ratio, pair, over_ms, over_pct, f2(med(rs, "ready")),
        f2(med(rs, "p50"), ".1f"), f2(med(rs, lambda r: r["worker_wait"] / n * 1000)),
        f2(med(rs, "busy")), f2(med(rs, lambda r: None if r["psi"] is None else r["psi"] * 100), ".0f") + "%",
    ])
    cpu_rows.append([mode_label(m)] + [
        f2(med(rs, lambda r, k=k: r["cpu"].get(k))) for k, _ in CPU_COLS
    ] + [f2(med(rs, "cpu_total")), f2(med(rs, lambda r: r["cpu_total"] / n * 1000), ".3f")])
head = ["mode", "runs ok", "wall s", "elapsed_s", "jobs/s", "of ideal", "ssh/local jobs/s", "per round",
        "overhead ms/job", "overhead", "workers ready s", "latency p50 ms", "worker run-queue wait ms/job",
        "machine busy (cores)", "CPU pressure"]
cpu_head = ["mode"] + [label for _, label in CPU_COLS] + ["total CPU s", "CPU ms/job"]

run_rows = []
for m in mode_list:
    for r in sorted(results[m], key=lambda r: r["round"]):
        hosts = ", ".join(f"{h} {c:,}" for h, c in sorted(r["hosts"].items()))
        run_rows.append([
            r["round"], m, f"{r['wall']:.2f}", f2(r["elapsed"]),
            "-" if r["rate"] is None else f"{r['rate']:,.0f}", f"{r['ok'] or 0:,}", hosts or "-",
            f2(r["ready"]), f"{f2(r['p50'], '.1f')} / {f2(r['max'], '.0f')}",
            f"{r['retried'] if r['retried'] is not None else '-'} / {sum(r['restarts'].values())}",
            f"{r['cpu_total']:.2f}", f"{r['busy']:.2f}", f"{r['others']:.2f}",
            f2(None if r["psi"] is None else r["psi"] * 100, ".0f") + "%",
            f"{r['worker_wait'] / n * 1000:.2f}", f"{r['nginx_wait'] / n * 1000:.3f}", f"{r['bench_cpu']:.2f}",
            "ok" if not r["problems"] else "FAILED: " + "; ".join(r["problems"]),
        ])
run_head = ["round", "mode", "wall s", "elapsed_s", "jobs/s", "ok results", "ok per host", "workers ready s",
            "latency p50 / max ms", "retried / restarts", "CPU s", "machine busy (cores)", "others (cores)", "CPU pressure", "worker run-queue wait ms/job",
            "nginx run-queue wait ms/job", "bench CPU s", "result"]

commit = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                       capture_output=True, text=True).stdout.strip()
cpu_model = "?"
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        cpu_model = line.split(":", 1)[1].strip()
        break
lines = [
    f"Made by `bench/remote.sh` on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
    f"commit {commit}{' (uncommitted changes)' if dirty else ''}, {os.cpu_count()} cores ({cpu_model}), "
    f"shared; {n:,} jobs on the 50 ms API (ideal {IDEAL:,.0f} jobs/s at W={w}), {runs} round(s) "
    f"of each mode, median; {total_s:.0f} s in all. Load average {' '.join(load_before)} before, "
    f"{' '.join(load_after)} after. {ssh_version}; {nginx_version}; cipher negotiated by default: {kex}. "
    f"Result files on {fs_desc}.",
    "",
    "Commands (`CONFIG`: the ssh config with the aliases alpha and beta):",
    "",
]
for m in mode_list:
    argv = mode_argv(m, "jobs.jsonl", "OUT", "SUMMARY")
    text = shlex.join(["supervisor"] + argv[1:]).replace(os.path.join(lab, "ssh_config"), "CONFIG")
    lines.append(f"- {m}: `{text}`")
lines += [""] + md(head, rows) + [""]
lines.append(
    "`elapsed_s` and `jobs/s`: the supervisor's (--summary-json); `wall s`: the whole command. "
    "`ssh/local`: ratio of the median jobs/s, `per round` its range over the rounds (each ssh run "
    "against the local run of its round). `overhead` = (elapsed_s ssh - elapsed_s local) / jobs. "
    "`workers ready s`: from the supervisor's `all N workers ready in S` line. `latency p50`: the "
    "summary's, per attempt, through the worker. `worker run-queue wait`: the time the http-workers' "
    "main threads were runnable but waiting for a CPU (/proc/PID/schedstat), summed, per job. "
    "`machine busy`: all CPU time on the machine during the run / wall time (2 = both cores). "
    "`CPU pressure`: share of the run during which some task waited for a CPU (/proc/pressure/cpu).")
lines += ["", "CPU seconds (user + system), median over the runs:", ""] + md(cpu_head, cpu_rows) + [""]
lines.append(
    "`supervisor`: the process itself; `http-workers`: local, the children it reaped (exact); over "
    "ssh, the remote http-workers (sampled every 0.5 s: a little short); `wrapper sh+cat`: the rest "
    "of the sessions (the remote wrapper's sh, its cat copying each job line, its probes); "
    "`ssh masters` (sampled) and `ssh clients` (the mux clients: what the supervisor reaped minus the "
    "masters); `sshd`: the sshd connection processes (sampled); the sshd side in all is exact (the "
    "listeners' reaped children). `nginx`: master + worker.")
lines += ["", "Every run:", ""] + md(run_head, run_rows) + [""]
for ok_, what, measured in verdicts:
    lines.append(f"Target: {'PASS' if ok_ else 'FAIL'}: {what}: {measured}.")
text = "\n".join(lines)
print(text)
if results_file:
    with open(results_file, "a") as f:
        f.write(text + "\n")
sys.exit(0 if all(not r["problems"] for rs in results.values() for r in rs) else 1)
EOF
BG_PID=$!
wait "$BG_PID"
