#!/usr/bin/env python3
"""multiprocessing.Pool.map, ProcessPoolExecutor.map and callpool.map on the
same function: one hung input, one crashing input (os._exit), a worker
killed by hand (kill -9), Ctrl-C; then the overhead on items of 10 ms of
CPU and the start-up time.

Needs the callpool wheel installed in this Python (pip install .).
Self-contained: it writes its function to a temporary module. Each run is a
child process with a ceiling (CEILING seconds): a run still going then is
reported as hung and killed.

    python3 bench/python_compare.py [--items 40] [--workers 4] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

CEILING = 20.0

TASKS = textwrap.dedent(
    """
    import os, time

    def count_primes(n, mode="", bad=-1):
        '''Primes below 20000 + n: about 40 ms of CPU; the bad input hangs or crashes.'''
        if n == bad and mode == "hang":
            time.sleep(3600)
        if n == bad and mode == "crash":
            os._exit(1)
        if mode == "slow":
            time.sleep(0.2)
        limit = 20000 + n
        return sum(all(k % d for d in range(2, int(k ** 0.5) + 1)) for k in range(2, limit))

    def spin(ms):
        end = time.process_time() + ms / 1000
        while time.process_time() < end:
            pass
        return ms
    """
)

RUNNER = textwrap.dedent(
    """
    import functools, json, os, sys, time
    tool, mode, items, workers = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    import tasks
    bad = items // 3
    kept = []
    t0 = time.monotonic()
    print("started", flush=True)
    outcome = "ok"
    try:
        if tool == "pool":
            import multiprocessing
            with multiprocessing.Pool(workers) as p:
                kept = p.map(functools.partial(tasks.count_primes, mode=mode, bad=bad), range(items))
        elif tool == "ppe":
            from concurrent.futures import ProcessPoolExecutor
            with ProcessPoolExecutor(workers) as ex:
                for v in ex.map(functools.partial(tasks.count_primes, mode=mode, bad=bad), range(items)):
                    kept.append(v)
        else:
            import callpool
            try:
                out = callpool.map("tasks:count_primes", [[i, mode, bad] for i in range(items)], star=True,
                                   workers=workers, timeout=3, retries=1, errors="return", kill_grace="1s")
            except callpool.Interrupted as e:
                out, outcome = e.results, "Interrupted, resume hint given"
            kept = [v for v in out if not isinstance(v, callpool.ItemError)]
            if outcome == "ok" and len(kept) < items:
                outcome = f"{items - len(kept)} item(s) reported failed"
    except BaseException as e:
        outcome = type(e).__name__
    print(json.dumps({"kept": len(kept), "seconds": round(time.monotonic() - t0, 2), "outcome": outcome}), flush=True)
    """
)


def children(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    out.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return out


def descendants(pid: int) -> list[int]:
    todo, seen = [pid], []
    while todo:
        for c in children(todo.pop()):
            seen.append(c)
            todo.append(c)
    return seen


def one(folder: str, tool: str, scenario: str, items: int, workers: int) -> dict:
    mode = {"hang": "hang", "crash": "crash"}.get(scenario, "slow" if scenario in ("kill9", "ctrlc") else "")
    env = dict(os.environ, PYTHONPATH=folder)
    p = subprocess.Popen(
        [sys.executable, "-c", RUNNER, tool, mode, str(items), str(workers)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=folder,
        start_new_session=True,
    )
    assert p.stdout is not None
    p.stdout.readline()  # "started"
    t0 = time.monotonic()
    if scenario in ("kill9", "ctrlc"):
        time.sleep(1.0)
        if scenario == "kill9":
            # a worker of the pool: a Python process below the runner (for
            # callpool, below the supervisor)
            victims = [c for c in descendants(p.pid) if b"python" in open(f"/proc/{c}/cmdline", "rb").read()]
            victims = [v for v in victims if v != p.pid]
            if victims:
                os.kill(victims[-1], signal.SIGKILL)
        else:
            os.kill(p.pid, signal.SIGINT)
    try:
        out, _ = p.communicate(timeout=CEILING)
        return json.loads(out.strip().splitlines()[-1])
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        for c in descendants(p.pid):
            try:
                os.kill(c, signal.SIGKILL)
            except ProcessLookupError:
                pass
        p.communicate()
        return {"kept": 0, "seconds": round(time.monotonic() - t0, 1), "outcome": f"hung: killed after {CEILING:.0f} s"}


OVERHEAD = textwrap.dedent(
    """
    import json, sys, time, multiprocessing
    import tasks, callpool
    items, workers, ms = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    res = {}
    t = time.monotonic()
    with multiprocessing.Pool(workers) as p:
        p.map(tasks.spin, [ms] * items)
    res["pool"] = time.monotonic() - t
    t = time.monotonic()
    callpool.map(tasks.spin, [ms] * items, workers=workers)
    res["callpool"] = time.monotonic() - t
    t = time.monotonic()
    callpool.map(tasks.spin, [0], workers=1)
    res["callpool_start"] = time.monotonic() - t
    t = time.monotonic()
    with multiprocessing.Pool(1) as p:
        p.map(tasks.spin, [0])
    res["pool_start"] = time.monotonic() - t
    print(json.dumps(res))
    """
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=40)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--overhead-items", type=int, default=400)
    ap.add_argument("--overhead-workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    folder = tempfile.mkdtemp(prefix="callpool-bench-")
    with open(os.path.join(folder, "tasks.py"), "w") as f:
        f.write(TASKS)

    print(f"# {args.items} items of ~40 ms CPU, {args.workers} workers; input {args.items // 3} is the bad one;"
          f" callpool: timeout 3 s, retries 1; ceiling {CEILING:.0f} s\n")
    print("| scenario | Pool.map | ProcessPoolExecutor.map | callpool.map |")
    print("|---|---|---|---|")
    names = {"hang": "one input hangs", "crash": "one input calls os._exit(1)",
             "kill9": "kill -9 of a worker after 1 s", "ctrlc": "Ctrl-C (SIGINT) after 1 s"}
    for scenario in ("hang", "crash", "kill9", "ctrlc"):
        cells = []
        for tool in ("pool", "ppe", "callpool"):
            r = one(folder, tool, scenario, args.items, args.workers)
            cells.append(f"{r['kept']}/{args.items} results, {r['seconds']} s ({r['outcome']})")
        print(f"| {names[scenario]} | " + " | ".join(cells) + " |", flush=True)

    runs = []
    for _ in range(args.repeat):
        p = subprocess.run(
            [sys.executable, "-c", OVERHEAD, str(args.overhead_items), str(args.overhead_workers), "10"],
            capture_output=True, text=True, cwd=folder, env=dict(os.environ, PYTHONPATH=folder), check=True,
        )
        runs.append(json.loads(p.stdout))
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    ratio = med["callpool"] / med["pool"]
    print(f"\n# overhead: {args.overhead_items} items of 10 ms CPU, {args.overhead_workers} workers, median of {args.repeat}\n")
    print("| | Pool.map | callpool.map |")
    print("|---|---|---|")
    print(f"| wall time | {med['pool']:.2f} s | {med['callpool']:.2f} s ({(ratio - 1) * 100:+.0f}%) |")
    print(f"| start-up: one trivial item, 1 worker | {med['pool_start']:.3f} s | {med['callpool_start']:.3f} s |")


if __name__ == "__main__":
    main()
