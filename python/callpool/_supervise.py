"""Finding the bundled binaries and running the supervisor from Python:
its stderr passed through (and kept for error messages), Ctrl-C forwarded
as one SIGINT (a graceful stop), never a SIGKILL."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
from pathlib import Path
from typing import IO, Any, Mapping, Optional, Sequence

__all__ = ["find_binary", "CallpoolError", "UsageError", "Interrupted", "Finished", "supervise"]


class CallpoolError(Exception):
    """The supervisor could not run the list: bad usage, a bad jobs file,
    results already present, or workers that keep failing (exit status 2).
    The message is the supervisor's own."""

    def __init__(self, message: str, *, returncode: int = 2, stderr: str = "") -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stderr = stderr


class UsageError(CallpoolError, ValueError):
    """Bad usage or a bad jobs file, as the supervisor reported it; nothing
    ran."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped the run gracefully: the items in flight finished and
    their results were kept. ``out`` is the results folder, ``resume`` the
    way to run only what is left; ``results`` what was done (for
    :func:`callpool.map`, a list with :class:`callpool.ItemError` for
    items not done)."""

    def __init__(self, message: str, *, out: str, results: Any = None) -> None:
        super().__init__(message)
        self.out = out
        self.results = results


def find_binary(name: str) -> str:
    """The path of a bundled binary (``supervisor``, ``http-worker``,
    ``demo-api``): ``$CALLPOOL_SUPERVISOR`` (``$CALLPOOL_HTTP_WORKER``, ...)
    if set, else the scripts folder of this Python (where ``pip install``
    put it), else the PATH."""
    override = os.environ.get("CALLPOOL_" + name.upper().replace("-", "_"))
    if override:
        return override
    folders = [sysconfig.get_path("scripts"), os.path.dirname(sys.executable)]
    try:
        folders.append(sysconfig.get_path("scripts", f"{os.name}_user"))
    except KeyError:
        pass
    for folder in folders:
        if folder:
            candidate = Path(folder) / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise FileNotFoundError(
        f"callpool: the `{name}` binary is not installed next to this Python ({folders[0]}) "
        f"nor on PATH: install the wheel (`pip install callpool`, or `pip install .` in a clone), "
        f"or set CALLPOOL_{name.upper().replace('-', '_')} to its path"
    )


def _die_with_us() -> None:
    """In the child, before exec: a SIGTERM (a graceful stop) when this
    Python process dies, even by SIGKILL, so no run is left behind."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None).prctl(1, int(signal.SIGTERM), 0, 0, 0)
        except (OSError, AttributeError):
            pass


class Finished:
    """How a supervisor run ended: its exit status and its stderr."""

    def __init__(self, returncode: int, stderr: str, interrupted: bool) -> None:
        self.returncode = returncode
        self.stderr = stderr
        self.interrupted = interrupted

    def error_text(self) -> str:
        """The supervisor's error lines (``supervisor: error: ...`` and what
        follows), or the end of its stderr."""
        lines = self.stderr.splitlines()
        for i, line in enumerate(lines):
            if "error:" in line and line.startswith("supervisor"):
                return "\n".join(lines[i:]).strip()
        return "\n".join(lines[-20:]).strip() or f"supervisor exited with status {self.returncode}"


def supervise(
    cmd: Sequence[str],
    *,
    env: Optional[Mapping[str, str]] = None,
    echo: Optional[IO[str]] = None,
    keep: int = 256 * 1024,
) -> Finished:
    """Runs ``cmd`` (a supervisor command line) to its end.

    Its stderr is copied to ``echo`` line by line (a terminal's or a
    notebook's ``sys.stderr``; ``None`` copies nothing) and its last
    ``keep`` characters are kept. A KeyboardInterrupt while it runs sends
    it one SIGINT, the graceful stop (jobs in flight finish, their results
    are written), and waits; a second one sends a second SIGINT, which makes
    it kill its workers at once. It never gets a SIGKILL from here. The
    supervisor runs in its own process group, so that a Ctrl-C at the
    terminal reaches it only through this function, once.
    """
    proc = subprocess.Popen(
        list(cmd),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=dict(env) if env is not None else None,
        start_new_session=True,
        preexec_fn=_die_with_us,
        text=True,
        errors="replace",
    )
    tail: list[str] = []
    size = [0]

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            tail.append(line)
            size[0] += len(line)
            while size[0] > keep and len(tail) > 1:
                size[0] -= len(tail.pop(0))
            if echo is not None:
                try:
                    echo.write(line)
                    echo.flush()
                except (OSError, ValueError):
                    pass

    reader = threading.Thread(target=pump, name="callpool-stderr", daemon=True)
    reader.start()
    interrupted = False
    while True:
        try:
            proc.wait()
            break
        except KeyboardInterrupt:
            interrupted = True
            try:
                proc.send_signal(signal.SIGINT)
            except ProcessLookupError:
                pass
    reader.join()
    return Finished(proc.returncode, "".join(tail), interrupted)


def flag_args(options: Mapping[str, Any]) -> list[str]:
    """``{"max_retry_after": "1m", "dedup": True, "header": ["A: 1", "B: 2"]}``
    as supervisor options: ``--max-retry-after 1m --dedup --header 'A: 1'
    --header 'B: 2'``; ``False`` and ``None`` are left out."""
    out: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            out.append(flag)
        elif isinstance(value, (list, tuple)):
            for v in value:
                out += [flag, str(v)]
        else:
            out += [flag, str(value)]
    return out


def duration(value: Any) -> str:
    """Seconds (a number) or a duration text (``"500ms"``) as the
    supervisor reads it."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError(f"a duration must be more than zero, not {value}")
        return repr(float(value))  # a bare number is seconds
    return str(value)
