"""callpool.map on the real supervisor and real worker processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import callpool
import tasks
from conftest import CEILING, HERE, alive, py_env, wait_until


def test_results_in_order() -> None:
    assert callpool.map(tasks.square, range(20), workers=3) == [x * x for x in range(20)]
    assert callpool.map("tasks:describe", [[1, 2], [3]], star=True) == [
        {"args": [1, 2], "kwargs": {}},
        {"args": [3], "kwargs": {}},
    ]
    assert callpool.map(tasks.square, []) == []


def test_a_hung_a_crashing_and_a_raising_item_cost_only_themselves() -> None:
    started = time.monotonic()
    out = callpool.map(tasks.misbehave, range(12), workers=3, timeout=1, retries=1, errors="return", kill_grace="0.5s")
    assert time.monotonic() - started < CEILING
    for i, v in enumerate(out):
        if i in (5, 7, 9):
            assert isinstance(v, callpool.ItemError), v
        else:
            assert v == i * i
    assert (out[5].kind, out[5].attempts) == ("timeout", 2)
    # A worker that dies is `crashed`; on a loaded machine its stdout's end
    # can be seen over 500 ms before its exit, which the supervisor then
    # records as `protocol_error` (lifecycle.md): the item is lost either way.
    assert out[7].kind in ("crashed", "protocol_error") and out[7].attempts == 2, out[7]
    assert (out[9].kind, out[9].type, out[9].attempts) == ("exception", "ValueError", 1)
    assert "no nines" in out[9].traceback

    with pytest.raises(callpool.MapError) as caught:
        callpool.map(tasks.misbehave, [1, 9, 2], workers=2)
    err = caught.value
    assert [e.index for e in err.errors] == [1]
    assert err.results[0] == 1 and err.results[2] == 4
    assert "ValueError: no nines: 9" in str(err) and "Traceback" in str(err)


def test_a_retry_asked_for_is_made(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CALLPOOL_TEST_FOLDER", str(tmp_path))
    assert callpool.map(tasks.flaky, [1, 2, 3], workers=2, backoff_base="10ms") == [1, 2, 3]


def test_a_worker_killed_by_hand_is_replaced_and_nothing_is_lost(tmp_path) -> None:
    """kill -9 of a busy worker from another thread while map runs."""
    import threading

    os.environ["CALLPOOL_TEST_FOLDER"] = str(tmp_path)
    killed: list[int] = []

    def killer() -> None:
        wait_until("a worker to take an item", lambda: any(tmp_path.glob("*.pid")))
        pid = int(next(tmp_path.glob("*.pid")).stem)
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    t = threading.Thread(target=killer)
    t.start()
    try:
        out = callpool.map(tasks.slow, range(16), workers=2)
    finally:
        t.join()
        del os.environ["CALLPOOL_TEST_FOLDER"]
    assert out == list(range(16))
    assert killed and not alive(killed[0])


def test_lambdas_main_and_nested_functions_are_refused_with_the_fix() -> None:
    def inner(x):
        return x

    for fn in (lambda x: x, inner):
        with pytest.raises(TypeError, match="define it at the top level of a module"):
            callpool.map(fn, [1])
    code = "import callpool\ndef f(x):\n    return x\ncallpool.map(f, [1])\n"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=CEILING, env=py_env())
    assert p.returncode == 1 and "from __main__" in p.stderr and "top level of a module" in p.stderr
    with pytest.raises(ValueError, match="threads=True"):
        callpool.map(tasks.square, [1], threads=True)
    with pytest.raises(TypeError, match="cannot travel as JSON"):
        callpool.map(tasks.square, [object()])


def test_a_function_that_prints_to_stdout(capfd) -> None:
    assert callpool.map(tasks.chatty, [1, 2], workers=1, quiet=False) == [2, 3]
    err = capfd.readouterr().err
    assert "chatty says 1" in err and "raw fd 1 write" in err


def test_a_module_that_fails_to_import_stops_the_run_once(module) -> None:
    module("broken_mod", "import no_such_module_anywhere\ndef f(x):\n    return x\n")
    started = time.monotonic()
    with pytest.raises(callpool.CallpoolError) as caught:
        callpool.map("broken_mod:f", range(10), workers=2)
    assert time.monotonic() - started < 30
    msg = str(caught.value)
    assert "workers keep failing" in msg, msg
    assert "no_such_module_anywhere" in msg, msg
    assert msg.count("workers keep failing") == 1


def test_bad_supervisor_options_raise_a_usage_error() -> None:
    with pytest.raises(callpool.UsageError, match="--kill-grace"):
        callpool.map(tasks.square, [1], kill_grace="soon")


SCRIPT = """
import json, os, sys, callpool, tasks
os.environ["CALLPOOL_TEST_FOLDER"] = sys.argv[2]
try:
    out = callpool.map(tasks.slow, range(40), workers=2, out=sys.argv[1], resume=len(sys.argv) > 3)
    print(json.dumps({"done": out}))
except callpool.Interrupted as e:
    print(json.dumps({"interrupted": str(e), "out": e.out,
                      "kept": [v for v in e.results if not isinstance(v, callpool.ItemError)]}))
    sys.exit(130)
"""


def test_ctrl_c_stops_gracefully_keeps_every_result_and_resume_finishes(tmp_path) -> None:
    out = tmp_path / "run"
    pids = tmp_path / "pids"
    pids.mkdir()
    env = py_env()
    cmd = [sys.executable, "-c", SCRIPT, str(out), str(pids)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    joblog = out / "results" / "joblog.jsonl"
    wait_until("a few results", lambda: joblog.exists() and joblog.read_text().count("\n") >= 4)
    p.send_signal(signal.SIGINT)  # a real SIGINT to the Python process
    stdout, stderr = p.communicate(timeout=CEILING)
    assert p.returncode == 130, stderr
    report = json.loads(stdout.splitlines()[-1])
    assert "resume=True" in report["interrupted"]
    kept = report["kept"]
    assert 4 <= len(kept) < 40
    files = sorted(x.name for x in (out / "results").glob("i*.json"))
    assert len(files) == len(kept)  # in-flight items finished and written
    workers = [int(f.stem) for f in pids.glob("*.pid")]
    wait_until("no worker left", lambda: not any(alive(w) for w in workers))

    for f in pids.glob("*.pid"):
        f.unlink()
    p = subprocess.run(cmd + ["resume"], capture_output=True, text=True, env=env, timeout=CEILING)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["done"] == list(range(40))
    ran = [int(x) for f in pids.glob("*.pid") for x in f.read_text().split()]
    assert sorted(ran) == sorted(set(range(40)) - set(kept))
