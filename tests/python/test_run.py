"""callpool.run (HTTP jobs) and the installed binaries, on the demo API;
an args job end to end through the supervisor's command line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig

import pytest

import callpool
from conftest import CEILING, py_env

ROWS = [
    {"id": "ldn", "address": "10 Downing Street, London"},
    {"id": "nyc", "address": "100 Broadway, New York"},
    {"id": "nowhere", "address": "1 Infinite Loop, Cupertino"},
]
FIELDS = {"lat": "/results/0/geometry/location/lat", "status_field": "/status"}


def test_the_wheel_installed_the_binaries_and_the_package() -> None:
    scripts = sysconfig.get_path("scripts")
    for name in ("supervisor", "http-worker", "demo-api"):
        assert callpool.find_binary(name) == os.path.join(scripts, name)
        assert os.path.realpath(shutil.which(name) or "") == os.path.realpath(os.path.join(scripts, name))
    out = subprocess.run(["supervisor", "--version"], capture_output=True, text=True, timeout=CEILING)
    assert out.stdout.split()[-1] == callpool.__version__


@pytest.mark.parametrize("threads", [False, True])
def test_rows_in_rows_out(demo_api: str, threads: bool) -> None:
    rows = callpool.run(
        ROWS,
        url=f"{demo_api}/maps/api/geocode/json",
        workers=2,
        threads=threads,
        fields=FIELDS,
        fail_if="/status=ZERO_RESULTS",
        quiet=True,
    )
    assert [r["id"] for r in rows] == ["ldn", "nyc", "nowhere"]
    assert rows[0]["lat"] == "51.5074" and rows[0]["status"] == "ok"
    assert rows[2]["status"] == "failed" and rows[2]["error_kind"] == "rejected"


def test_a_dataframe_comes_back_as_one(demo_api: str) -> None:
    pd = pytest.importorskip("pandas")
    df = callpool.run(pd.DataFrame(ROWS), url=f"{demo_api}/maps/api/geocode/json", fields=FIELDS, quiet=True)
    assert list(df["id"]) == ["ldn", "nyc", "nowhere"]


def test_a_usage_error_carries_the_supervisors_message(demo_api: str, tmp_path) -> None:
    with pytest.raises(callpool.UsageError, match="--rate"):
        callpool.run(ROWS, url=f"{demo_api}/maps/api/geocode/json", rate="fast")
    bad = tmp_path / "jobs.jsonl"
    bad.write_text('{"id":"a","url":"http://h/","param":{}}\n')
    with pytest.raises(callpool.UsageError, match=r"jobs.jsonl:1: .*param"):
        callpool.run(str(bad))


def test_an_args_job_end_to_end_without_a_url(scratch) -> None:
    (scratch / "jobs.jsonl").write_text('{"id":"a","args":[3]}\n{"id":"b","args":{"x":4}}\n{"id":"c","args":[9]}\n')
    worker = f"{sys.executable} -m callpool.worker tasks:misbehave"
    p = subprocess.run(
        ["supervisor", "-w", "2", "--worker-cmd", worker, "--out", "res", "jobs.jsonl"],
        capture_output=True, text=True, env=py_env(), timeout=CEILING, stdin=subprocess.DEVNULL,
    )
    assert p.returncode == 1, p.stderr
    a = json.loads((scratch / "res" / "a.json").read_text())
    assert a["ok"] and a["value"] == 9 and "url" not in a["request"]
    assert json.loads((scratch / "res" / "b.json").read_text())["value"] == 16
    c = json.loads((scratch / "res" / "c.json").read_text())
    assert c["error"]["kind"] == "exception" and c["error"]["type"] == "ValueError"
    e = subprocess.run(
        ["supervisor", "export", "res", "--jobs", "jobs.jsonl", "--field", "v=", "--output", "-"],
        capture_output=True, text=True, timeout=CEILING,
    )
    lines = e.stdout.splitlines()
    assert lines[1].startswith("a,9,true") and lines[2].startswith("b,16,true"), e.stdout
