"""A callpool worker around one Python function (protocol v1, ``args`` jobs).

Run it by hand or through the supervisor::

    python -m callpool.worker package.module:function
    supervisor --workers 4 --worker-cmd "python3 -m callpool.worker mymod:work" jobs.jsonl

or from your own script with :func:`serve`. Each job's ``args`` become the
call's arguments:

* a JSON array is the positional arguments: ``[1, "a"]`` calls ``f(1, "a")``;
* a JSON object is the keyword arguments: ``{"n": 3}`` calls ``f(n=3)``;
* anything else (a number, a string, ``true``, ``null``) is the one
  argument: ``5`` calls ``f(5)``.

The return value, which must be JSON (dicts, lists, strings, numbers,
booleans, ``None``; tuples become lists; no NaN), is the result's
``value``. An exception is an error of kind ``exception`` with its
``type``, ``message`` and ``traceback``, not retried unless it is a
:class:`callpool.Retry`. Stdout is guarded: anything the function or a
library prints goes to stderr, never into the protocol. The worker exits at
the end of stdin and dies with its parent (the supervisor).
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import time
import traceback
from typing import Any, Callable, NoReturn, Optional

__all__ = ["serve", "load", "Retry", "call_with_args", "main"]

PROTOCOL = 1


class Retry(Exception):
    """Raise it from a worker function to ask for another attempt.

    The error is reported with ``"retry": true``: the supervisor tries the
    item again after its backoff while attempts remain (``retries``), on
    any worker. Use it for what may pass on a second try (a busy service, a
    lock); any other exception fails the item at once.
    """


Retry.__module__ = "callpool"


def load(target: str) -> Callable[..., Any]:
    """Imports ``"package.module:function"`` (a dotted path after the colon
    reaches an attribute of an attribute) and returns the callable."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(
            f"{target!r} is not MODULE:FUNCTION, e.g. mypackage.tasks:work"
        )
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{target} is not callable")
    return obj


def call_with_args(fn: Callable[..., Any], args: Any) -> Any:
    """Calls ``fn`` with a job's ``args``: a list is the positional
    arguments, a dict the keyword arguments, anything else one argument."""
    if isinstance(args, list):
        return fn(*args)
    if isinstance(args, dict):
        return fn(**args)
    return fn(args)


def _die_with_parent() -> None:
    """Dies with the process that started this one: ``PR_SET_PDEATHSIG``
    (Linux) set to SIGKILL, then a check that the parent is still the
    one that started us (it may have died in between)."""
    parent = os.getppid()
    expected = os.environ.get("CALLPOOL_SUPERVISOR_PID")
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            PR_SET_PDEATHSIG = 1
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if (expected and str(parent) != expected) or os.getppid() != parent:
        os._exit(0)


class _Protocol:
    """The real stdout, kept apart: fd 1 is pointed at stderr so that no
    ``print`` (Python's or a C library's) can reach the protocol."""

    def __init__(self) -> None:
        sys.stdout.flush()
        self.fd = os.dup(1)
        os.dup2(2, 1)
        sys.stdout = sys.stderr

    def send(self, msg: dict[str, Any]) -> None:
        data = (json.dumps(msg, allow_nan=False, separators=(",", ":")) + "\n").encode()
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]


def _qualified(exc: BaseException) -> str:
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def _error(kind: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "message": message, **extra}


def _run_one(fn: Callable[..., Any], job: dict[str, Any]) -> dict[str, Any]:
    if "args" not in job:
        return {
            "error": _error(
                "unsupported_job",
                "callpool.worker runs jobs with `args`; this one is an HTTP request: "
                "run it with the bundled http-worker (no --worker-cmd)",
                retry=False,
            )
        }
    try:
        value = call_with_args(fn, job["args"])
    except Exception as exc:  # the function's own failure, reported
        err = _error(
            "exception",
            f"{_qualified(exc)}: {exc}",
            type=_qualified(exc),
            traceback="".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        )
        if isinstance(exc, Retry):
            err["retry"] = True
        return {"error": err}
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        return {
            "error": _error(
                "bad_value",
                f"the function returned a value JSON cannot hold ({type(value).__name__}): {exc}",
                type=_qualified(exc),
            )
        }
    return {"value": value}


def serve(fn: Callable[..., Any], *, name: Optional[str] = None) -> None:
    """Runs ``fn`` as a callpool worker on this process's stdin and stdout
    until stdin ends: the ready line, then one result per job, in order.

    Call it last in a script given to ``--worker-cmd``; it returns at the
    end of stdin. A line that is not a job is a bug (protocol.md §4 rule
    10): it is named on stderr and the process exits with status 2.
    """
    _die_with_parent()
    out = _Protocol()
    out.send(
        {
            "type": "ready",
            "protocol": PROTOCOL,
            "worker": name or f"callpool.worker {getattr(fn, '__qualname__', fn)!s}",
            "version": _version(),
        }
    )
    stdin = sys.stdin.buffer
    while True:
        line = stdin.readline()
        if not line:
            return
        if not line.strip():
            continue
        try:
            job = json.loads(line)
            if not isinstance(job, dict) or job.get("type") != "job" or not isinstance(job.get("id"), str):
                raise ValueError("not a job message")
        except ValueError as exc:
            sys.stderr.write(f"callpool.worker: invalid job line ({exc}): {line[:200]!r}\n")
            sys.stderr.flush()
            sys.exit(2)
        started = time.monotonic()
        answer = _run_one(fn, job)
        sys.stderr.flush()
        answer["elapsed_ms"] = round((time.monotonic() - started) * 1000, 3)
        out.send({"type": "result", "id": job["id"], **answer})


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("callpool")
    except Exception:
        return "unknown"


def main(argv: Optional[list[str]] = None) -> NoReturn:
    """``python -m callpool.worker MODULE:FUNCTION``."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        sys.stderr.write(
            "usage: python -m callpool.worker MODULE:FUNCTION\n"
            "  runs FUNCTION as a callpool worker: job lines with `args` on stdin, results on stdout\n"
        )
        sys.exit(0 if argv and argv[0] in ("-h", "--help") else 2)
    # The current folder, as `python -m` has it, and the caller's path.
    try:
        fn = load(argv[0])
    except Exception:
        sys.stderr.write(f"callpool.worker: cannot load {argv[0]}:\n")
        traceback.print_exc()
        sys.stderr.flush()
        sys.exit(1)
    serve(fn)
    sys.exit(0)
