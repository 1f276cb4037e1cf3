"""callpool for Python: calls on supervised worker processes.

* :func:`map` — ``Pool.map`` that survives a hung item (killed at its
  deadline), a crashing one (``os._exit``, a segfault) and a ``kill -9``,
  keeping every other result, and stops gracefully on Ctrl-C.
* :func:`run` — a list of HTTP calls (a CSV/JSONL file, rows, a
  DataFrame) on the bundled ``supervisor``, results as rows.
* :func:`serve` and ``python -m callpool.worker module:function`` — any
  Python function as a worker of the ``supervisor`` (``--worker-cmd``).

Standard library only; pandas only for DataFrames. See docs/python.md.
"""

from __future__ import annotations

from ._map import ItemError, MapError, map
from ._run import run
from ._supervise import CallpoolError, Interrupted, UsageError, find_binary
from ._worker import Retry, serve

__all__ = [
    "map",
    "run",
    "serve",
    "Retry",
    "ItemError",
    "MapError",
    "CallpoolError",
    "UsageError",
    "Interrupted",
    "find_binary",
    "__version__",
]


def __getattr__(name: str) -> str:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("callpool")
        except PackageNotFoundError:
            return "unknown"
    raise AttributeError(name)
