"""``callpool.run``: a list of HTTP calls from Python, results as rows."""

from __future__ import annotations

import csv
import os
import shutil
import sys
import tempfile
from typing import Any, Mapping, Optional, Sequence, Union

from ._supervise import CallpoolError, Interrupted, UsageError, duration, find_binary, flag_args, supervise

__all__ = ["run"]

# The options that say what each job is: given to the run and, the same, to
# `supervisor export`, which rebuilds each row's job to find its result.
_REQUEST_OPTIONS = (
    "url", "param", "header", "user_agent", "redact", "id_column",
    "columns", "rename", "skip_empty", "input_format",
)


def _is_dataframe(obj: Any) -> bool:
    return type(obj).__name__ == "DataFrame" and hasattr(obj, "to_csv")


def run(
    jobs: Union[str, "os.PathLike[str]", Sequence[Mapping[str, Any]], Any],
    *,
    url: Optional[str] = None,
    workers: int = 8,
    threads: bool = False,
    out: Optional[str] = None,
    resume: bool = False,
    overwrite: bool = False,
    fields: Optional[Mapping[str, str]] = None,
    params: Optional[Mapping[str, Any]] = None,
    headers: Optional[Mapping[str, str]] = None,
    timeout: Union[float, str, None] = None,
    retries: Optional[int] = None,
    quiet: bool = False,
    **options: Any,
) -> Any:
    """Runs HTTP jobs on the supervisor and returns one row per job.

    ``jobs`` is a path (CSV, TSV or JSON Lines, as ``supervisor`` reads
    them), a list of dicts (rows: each key a query parameter, ``id`` the
    row's id) or a pandas DataFrame (the same, by columns). The result is a
    list of dicts, or a DataFrame for a DataFrame: the rows of the jobs, in
    order, with one column per ``fields`` entry (``{"lat":
    "/results/0/geometry/location/lat"}``, JSON Pointers into each answer)
    and the status columns of ``supervisor export`` (``ok``, ``attempts``,
    ``http_status``, ``error_kind``, ``error``, ``dedup_of``, ``status``).

    ``threads=True`` runs the built-in HTTP worker on threads instead of
    processes. ``params`` and ``headers`` are added to every job (``${NAME}``
    is an environment variable, so a key need not be written here). Other
    keyword options are supervisor options: ``rate="10/s"``,
    ``retry_if="/status=OVER_QUERY_LIMIT"``, ``dedup=True``, ...

    The results folder ``out`` (default: a temporary one, removed after)
    keeps one file per job; ``resume=True`` runs only what is missing or
    failed there. The progress (``progress:`` lines every 10 s, the summary)
    is written to ``sys.stderr``, in a terminal and in Jupyter alike;
    ``quiet=True`` keeps only errors and the summary.

    Ctrl-C (KeyboardInterrupt, or Jupyter's "interrupt") sends the
    supervisor one SIGINT: the calls in flight finish and are written, then
    :class:`callpool.Interrupted` says how to resume. Bad usage raises
    :class:`callpool.UsageError` with the supervisor's message.
    """
    own_dir = out is None
    folder = tempfile.mkdtemp(prefix="callpool-run-")
    results = os.path.join(folder, "results") if own_dir else os.path.abspath(out)  # type: ignore[arg-type]
    as_frame = _is_dataframe(jobs)
    request: dict[str, Any] = {"url": url}
    if params:
        request["param"] = [f"{k}={v}" for k, v in params.items()]
    if headers:
        request["header"] = [f"{k}: {v}" for k, v in headers.items()]
    for name in _REQUEST_OPTIONS:
        if name in options:
            request[name] = options.pop(name)
    try:
        jobs_path = _jobs_file(jobs, folder)
        supervisor = find_binary("supervisor")
        cmd = [supervisor, "--workers", str(workers), "--out", results, "--color", "never"]
        if threads:
            cmd.append("--threads")
        if timeout is not None:
            cmd += ["--timeout", duration(timeout)]
        if retries is not None:
            cmd += ["--retries", str(retries)]
        if resume:
            cmd.append("--resume")
        if overwrite:
            cmd.append("--overwrite")
        if quiet:
            cmd.append("--quiet")
        cmd += flag_args(request) + flag_args(options) + [jobs_path]
        done = supervise(cmd, echo=sys.stderr)
        if done.returncode == 2 and not os.path.exists(os.path.join(results, "joblog.jsonl")):
            raise UsageError(done.error_text(), stderr=done.stderr)
        if done.returncode not in (0, 1, 3, 130):
            raise CallpoolError(done.error_text(), returncode=done.returncode, stderr=done.stderr)
        table = os.path.join(folder, "export.csv")
        export = [supervisor, "export", results, "--jobs", jobs_path, "--output", table]
        for name, pointer in (fields or {}).items():
            export += ["--field", f"{name}={pointer}"]
        exported = supervise(export + flag_args(request), echo=None)
        if exported.returncode not in (0, 1):
            raise CallpoolError(exported.error_text(), returncode=exported.returncode, stderr=exported.stderr)
        rows = _read_table(table, as_frame)
        if done.interrupted or done.returncode == 130:
            raise Interrupted(
                f"callpool.run interrupted: the calls in flight finished and every result is kept in {results}; "
                f"callpool.run(..., out={results!r}, resume=True) runs only what is left",
                out=results,
                results=rows,
            )
    except Interrupted:
        raise
    except BaseException:
        if own_dir:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    # The temporary folder: the jobs written from rows, the export, and
    # the results unless `out` keeps them elsewhere.
    shutil.rmtree(folder, ignore_errors=True)
    return rows


def _jobs_file(jobs: Any, folder: str) -> str:
    """A path the supervisor can read: the path given, or the rows written
    as CSV."""
    if isinstance(jobs, (str, os.PathLike)):
        return os.fspath(jobs)
    path = os.path.join(folder, "jobs.csv")
    if _is_dataframe(jobs):
        jobs.to_csv(path, index=False)
        return path
    rows = list(jobs)
    names: dict[str, None] = {}
    for row in rows:
        if not isinstance(row, Mapping):
            raise TypeError(f"callpool.run: a job row must be a dict, not {type(row).__name__}")
        names.update(dict.fromkeys(row))
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(names))
        w.writeheader()
        for row in rows:
            w.writerow({k: "" if v is None else v for k, v in row.items()})
    return path


def _read_table(path: str, as_frame: bool) -> Any:
    if as_frame:
        import pandas as pd

        return pd.read_csv(path, keep_default_na=False, na_values=[""])
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))
