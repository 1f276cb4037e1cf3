"""``callpool.map``: ``Pool.map`` on supervised worker processes."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import tempfile
from typing import Any, Callable, Iterable, Literal, Optional, Union

from ._supervise import CallpoolError, Interrupted, UsageError, duration, find_binary, flag_args, supervise

__all__ = ["map", "ItemError", "MapError", "target_of"]


class ItemError:
    """One item that has no result: what :func:`map` puts in its place
    (``errors="return"``) or lists in :class:`MapError`.

    ``kind`` is the error kind: ``exception`` (the function raised:
    ``type``, ``message`` and ``traceback`` say what), ``timeout`` (killed
    at its deadline), ``crashed`` (its worker died: ``os._exit``, a
    segfault, ``kill -9``, the OOM killer), ``bad_value`` (the return value
    is not JSON), ``not_run`` (the run stopped first), or a kind of the
    worker's own.
    """

    __slots__ = ("index", "item", "kind", "message", "type", "traceback", "attempts")

    def __init__(
        self,
        index: int,
        item: Any,
        kind: str,
        message: str,
        type: Optional[str] = None,
        traceback: Optional[str] = None,
        attempts: int = 0,
    ) -> None:
        self.index = index
        self.item = item
        self.kind = kind
        self.message = message
        self.type = type
        self.traceback = traceback
        self.attempts = attempts

    def __repr__(self) -> str:
        return f"ItemError(index={self.index}, kind={self.kind!r}, message={self.message!r}, attempts={self.attempts})"

    def __str__(self) -> str:
        return f"item {self.index} ({self.item!r}): {self.kind}: {self.message}"


class MapError(Exception):
    """Some items failed. ``errors`` lists them (:class:`ItemError`, in
    item order); ``results`` is the whole list, each failed item's place
    holding its :class:`ItemError`, every other one its value."""

    def __init__(self, errors: list[ItemError], results: list[Any], out: str) -> None:
        shown = "\n".join(f"  {e}" for e in errors[:10])
        more = f"\n  ... and {len(errors) - 10} more" if len(errors) > 10 else ""
        first_tb = next((e.traceback for e in errors if e.traceback), None)
        tb = f"\nthe first traceback:\n{first_tb}" if first_tb else ""
        super().__init__(f"{len(errors)} of {len(results)} items failed:\n{shown}{more}{tb}")
        self.errors = errors
        self.results = results
        self.out = out


def target_of(fn: Union[Callable[..., Any], str]) -> str:
    """``"module:qualname"`` for a function a worker process can import, or
    a TypeError that says how to make it importable (as the ``spawn``
    start method requires)."""
    if isinstance(fn, str):
        if ":" not in fn:
            raise ValueError(f"{fn!r} is not MODULE:FUNCTION, e.g. mypackage.tasks:work")
        return fn
    if not callable(fn):
        raise TypeError(f"callpool.map needs a function, not {type(fn).__name__}")
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    fix = (
        "each worker is a fresh Python process that imports the function by name: "
        "define it at the top level of a module (a .py file importable from here, "
        "e.g. tasks.py), import it from there, and pass that; or pass \"module:function\""
    )
    if qualname is None or module is None:
        raise TypeError(f"callpool.map cannot run {fn!r} in a worker process: {fix}")
    if qualname == "<lambda>" or "<lambda>" in qualname:
        raise TypeError(f"callpool.map cannot run a lambda in a worker process: {fix}")
    if "<locals>" in qualname:
        raise TypeError(f"callpool.map cannot run {qualname}, a function defined inside another: {fix}")
    if module in ("__main__", "__mp_main__"):
        raise TypeError(
            f"callpool.map cannot run {qualname} from __main__ (a notebook or the script being run): {fix}"
        )
    return f"{module}:{qualname}"


def _worker_env(extra_path: Iterable[str] = ()) -> dict[str, str]:
    """This process's environment, with PYTHONPATH set so that a worker
    imports what this process imports (the current folder included)."""
    paths = [os.getcwd() if p == "" else p for p in list(extra_path) + sys.path]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(p for p in paths if p))
    return env


def map(
    fn: Union[Callable[..., Any], str],
    items: Iterable[Any],
    *,
    workers: Optional[int] = None,
    timeout: Union[float, str] = 30,
    retries: int = 2,
    threads: bool = False,
    errors: Literal["raise", "return"] = "raise",
    star: bool = False,
    out: Optional[str] = None,
    resume: bool = False,
    quiet: bool = True,
    python: Optional[str] = None,
    **options: Any,
) -> list[Any]:
    """Calls ``fn(item)`` for every item on ``workers`` supervised worker
    processes and returns the results in order, as ``Pool.map`` does.

    Unlike ``Pool.map`` and ``ProcessPoolExecutor``, one bad item costs one
    item: an item that runs past ``timeout`` (seconds, or ``"500ms"``) has
    its worker killed and is tried again; a worker that crashes (``os._exit``,
    a segfault, ``kill -9``, the OOM killer) is replaced and its item tried
    again, up to ``retries`` more times. Every other result is kept.

    Items and return values travel as JSON (tuples come back as lists).
    ``fn`` must be importable by name by a fresh process: a function at the
    top level of a module, or a ``"module:function"`` string; a lambda or a
    function from ``__main__`` is refused with that fix. With ``star=True``
    each item is a sequence of arguments (``starmap``); raise
    :class:`callpool.Retry` to ask for another attempt.

    Failed items: ``errors="raise"`` (the default) raises :class:`MapError`
    at the end, carrying every per-item error and every other result;
    ``errors="return"`` puts an :class:`ItemError` in each failed place.

    Ctrl-C stops gracefully: items in flight finish, then
    :class:`callpool.Interrupted` is raised with the results folder;
    ``map(..., out=that_folder, resume=True)`` runs only the rest.
    ``out`` keeps the result files (one JSON file per item, and
    ``joblog.jsonl``) in a folder of yours; else a temporary folder is used
    and removed, unless the run was interrupted. ``quiet=False`` shows the
    supervisor's log and the workers' stderr (what ``fn`` prints). Other
    keyword options are supervisor options (``kill_grace="1s"`` is
    ``--kill-grace 1s``); ``workers`` defaults to the CPU count.

    ``threads=True`` is refused: the supervisor runs only its own HTTP
    worker on threads, and a Python function on threads shares the GIL and
    cannot be killed at a deadline; use ``concurrent.futures`` for that.
    """
    if threads:
        raise ValueError(
            "callpool.map(threads=True): Python functions run in worker processes only "
            "(a thread cannot be killed at its deadline, and shares the GIL); "
            "use callpool.run(threads=True) for HTTP calls, or concurrent.futures.ThreadPoolExecutor"
        )
    if errors not in ("raise", "return"):
        raise ValueError(f"errors must be 'raise' or 'return', not {errors!r}")
    target = target_of(fn)
    items = list(items)
    workers = workers or os.cpu_count() or 1
    width = len(str(max(len(items) - 1, 0)))
    ids = [f"i{i:0{width}d}" for i in range(len(items))]

    own_dir = out is None
    folder = tempfile.mkdtemp(prefix="callpool-map-") if own_dir else os.path.abspath(out)
    os.makedirs(folder, exist_ok=True)
    jobs_path = os.path.join(folder, "jobs.jsonl")
    results = os.path.join(folder, "results")
    try:
        with open(jobs_path, "w", encoding="utf-8") as f:
            for i, (job_id, item) in enumerate(zip(ids, items)):
                args = list(item) if star else [item]
                try:
                    text = json.dumps({"id": job_id, "args": args}, allow_nan=False, separators=(",", ":"))
                except (TypeError, ValueError) as exc:
                    raise TypeError(f"item {i} ({item!r}) cannot travel as JSON: {exc}") from None
                f.write(text + "\n")
    except BaseException:
        if own_dir:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    if not items:
        if own_dir:
            shutil.rmtree(folder, ignore_errors=True)
        return []

    worker_cmd = shlex.join([python or sys.executable, "-m", "callpool.worker", target])
    cmd = [
        find_binary("supervisor"),
        "--workers", str(min(workers, len(items))),
        "--worker-cmd", worker_cmd,
        "--timeout", duration(timeout),
        "--retries", str(retries),
        "--out", results,
        "--progress-every", "0",
        "--color", "never",
    ]
    if quiet:
        cmd.append("--quiet")
    if resume:
        cmd.append("--resume")
    elif not own_dir and os.path.isdir(results):
        cmd.append("--overwrite")
    cmd += flag_args(options)
    cmd.append(jobs_path)

    done = supervise(cmd, env=_worker_env(), echo=None if quiet else sys.stderr)
    if done.returncode == 2 and not os.path.exists(os.path.join(results, "joblog.jsonl")):
        raise UsageError(done.error_text(), stderr=done.stderr)
    if done.returncode not in (0, 1, 3, 130):
        raise CallpoolError(done.error_text(), returncode=done.returncode, stderr=done.stderr)

    values, failed = _collect(results, ids, items)
    if done.interrupted or done.returncode == 130:
        left = sum(1 for e in failed if e.kind == "not_run")
        raise Interrupted(
            f"callpool.map interrupted: {len(items) - left} of {len(items)} items done, "
            f"their results kept in {folder}; "
            f"callpool.map(..., out={folder!r}, resume=True) runs only the {left} left",
            out=folder,
            results=values,
        )
    if own_dir:
        shutil.rmtree(folder, ignore_errors=True)
    if failed and errors == "raise":
        raise MapError(failed, values, folder)
    return values


def _collect(results: str, ids: list[str], items: list[Any]) -> tuple[list[Any], list[ItemError]]:
    values: list[Any] = []
    failed: list[ItemError] = []
    for i, (job_id, item) in enumerate(zip(ids, items)):
        try:
            with open(os.path.join(results, job_id + ".json"), encoding="utf-8") as f:
                r = json.load(f)
        except FileNotFoundError:
            e = ItemError(i, item, "not_run", "not run: the run stopped before it")
            values.append(e)
            failed.append(e)
            continue
        if r.get("ok"):
            values.append(r.get("value"))
            continue
        err = r.get("error") or {}
        e = ItemError(
            i,
            item,
            str(err.get("kind", "unknown")),
            str(err.get("message", "")),
            err.get("type"),
            err.get("traceback"),
            int(r.get("attempts") or 0),
        )
        values.append(e)
        failed.append(e)
    return values, failed
