"""pytest fixtures for the callpool Python package, run against the wheel
installed in a fresh virtual environment (tests/all.sh): the real
supervisor, real worker processes, real signals."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

# Worker functions live in real modules, as callpool.map requires: this
# folder's tasks.py, importable by the workers through PYTHONPATH.
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

CEILING = 60.0  # seconds: a bound for a loaded machine, never a measure


def py_env() -> dict:
    """This environment, with PYTHONPATH set to this process's import path
    (a subprocess then imports tasks.py and the scratch modules)."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p or os.getcwd() for p in sys.path))


def wait_until(what: str, cond: Callable[[], bool], limit: float = CEILING) -> None:
    """Polls `cond` until it holds, failing after `limit` seconds."""
    end = time.monotonic() + limit
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh folder, the current one for the test, on the import path."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


@pytest.fixture
def module(scratch: Path) -> Callable[[str, str], str]:
    """Writes a module into the scratch folder: module(name, source)."""

    def write(name: str, source: str) -> str:
        (scratch / f"{name}.py").write_text(textwrap.dedent(source))
        return name

    return write


@pytest.fixture
def demo_api() -> Iterator[str]:
    """The bundled demo API on a free loopback port: its base URL."""
    import callpool

    proc = subprocess.Popen(
        [callpool.find_binary("demo-api"), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    base = line.strip().rsplit(" ", 1)[-1]
    assert base.startswith("http://"), line
    try:
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=CEILING)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False
