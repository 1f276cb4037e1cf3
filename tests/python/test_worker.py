"""python -m callpool.worker: the protocol, line by line."""

from __future__ import annotations

import json
import subprocess
import sys

import callpool
from conftest import py_env


def worker(target: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "callpool.worker", target],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=py_env(),
    )


def converse(target: str, jobs: list[dict]) -> tuple[list[dict], str, int]:
    p = worker(target)
    lines = "".join(json.dumps({"type": "job", **j}) + "\n" for j in jobs)
    out, err = p.communicate(lines, timeout=60)
    msgs = [json.loads(line) for line in out.splitlines()]  # every line JSON
    return msgs, err, p.returncode


def test_args_are_the_call_and_the_return_is_the_value() -> None:
    msgs, err, code = converse(
        "tasks:describe",
        [
            {"id": "list", "args": [1, "a"]},
            {"id": "dict", "args": {"k": [1.5, None]}},
            {"id": "one", "args": 5},
            {"id": "null", "args": None},
        ],
    )
    assert code == 0, err
    assert msgs[0]["type"] == "ready" and msgs[0]["protocol"] == 1
    by_id = {m["id"]: m for m in msgs[1:]}
    assert [m["id"] for m in msgs[1:]] == ["list", "dict", "one", "null"]
    assert by_id["list"]["value"] == {"args": [1, "a"], "kwargs": {}}
    assert by_id["dict"]["value"] == {"args": [], "kwargs": {"k": [1.5, None]}}
    assert by_id["one"]["value"] == {"args": [5], "kwargs": {}}
    assert by_id["null"]["value"] == {"args": [None], "kwargs": {}}
    assert all(isinstance(m["elapsed_ms"], float) for m in msgs[1:])


def test_an_exception_is_an_error_with_type_message_and_traceback() -> None:
    msgs, _, code = converse("tasks:misbehave", [{"id": "n", "args": [9]}, {"id": "ok", "args": [3]}])
    assert code == 0
    e = msgs[1]["error"]
    assert e["kind"] == "exception"
    assert e["type"] == "ValueError"
    assert e["message"] == "ValueError: no nines: 9"
    assert "Traceback" in e["traceback"] and "tasks.py" in e["traceback"]
    assert "retry" not in e
    assert msgs[2]["value"] == 9


def test_retry_and_values_json_cannot_hold(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CALLPOOL_TEST_FOLDER", str(tmp_path))
    msgs, _, _ = converse("tasks:flaky", [{"id": "a", "args": [1]}, {"id": "b", "args": [1]}])
    assert msgs[1]["error"]["retry"] is True and msgs[1]["error"]["type"] == "callpool.Retry"
    assert msgs[2]["value"] == 1
    msgs, _, _ = converse("tasks:returns_a_set", [{"id": "s", "args": [1]}])
    assert msgs[1]["error"]["kind"] == "bad_value"


def test_stdout_is_guarded() -> None:
    msgs, err, code = converse("tasks:chatty", [{"id": "a", "args": [1]}, {"id": "b", "args": [2]}])
    assert code == 0
    assert [m.get("value") for m in msgs[1:]] == [2, 3]
    assert "chatty says 1" in err and "raw fd 1 write" in err and "no newline" in err


def test_an_http_job_is_unsupported_and_a_bad_line_ends_the_worker() -> None:
    msgs, _, code = converse(
        "tasks:square",
        [{"id": "h", "request": {"method": "GET", "url": "http://127.0.0.1:9/", "timeout_ms": 100}}],
    )
    assert code == 0 and msgs[1]["error"]["kind"] == "unsupported_job"
    p = worker("tasks:square")
    out, err, = p.communicate("not json\n", timeout=60)
    assert p.returncode == 2 and "invalid job line" in err
    assert len(out.splitlines()) == 1  # the ready line only


def test_a_module_that_fails_to_import_exits_before_ready(module) -> None:
    module("broken", "import no_such_module_anywhere\ndef f(x):\n    return x\n")
    p = worker("broken:f")
    out, err = p.communicate("", timeout=60)
    assert p.returncode == 1 and out == ""
    assert "cannot load broken:f" in err and "no_such_module_anywhere" in err


def test_serve_from_a_script(module, scratch) -> None:
    module("script_worker", "import callpool\ndef double(x):\n    return 2 * x\nif __name__ == '__main__':\n    callpool.serve(double)\n")
    p = subprocess.run(
        [sys.executable, "script_worker.py"],
        input='{"type":"job","id":"a","args":[21]}\n',
        capture_output=True,
        text=True,
        timeout=60,
        env=py_env(),
    )
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.splitlines()[1])["value"] == 42
    from callpool.worker import call_with_args

    assert call_with_args(lambda *a, **k: (a, k), {"x": 1}) == ((), {"x": 1})
