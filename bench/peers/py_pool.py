#!/usr/bin/env python3
"""Peer: the usual Python answer, done well. multiprocessing.Pool(W), one
requests.Session per worker process (so keep-alive works like the supervisor's
workers), one result file per job.

usage: py_pool.py WORKERS jobs.jsonl OUTDIR
"""
import json
import os
import sys
from multiprocessing import Pool

import requests

OUT = None
_session = None


def fetch(job):
    # The Session is made lazily in each worker process: a Session made in
    # the parent would be shared by fork and its pooled sockets with it.
    global _session
    if _session is None:
        _session = requests.Session()
    r = _session.get(job["url"], params=job.get("params"), timeout=30)
    with open(os.path.join(OUT, job["id"] + ".json"), "w") as f:
        json.dump({"id": job["id"], "status": r.status_code, "body": r.json()}, f)
    return r.status_code


def main():
    global OUT
    workers, path, OUT = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    os.makedirs(OUT, exist_ok=True)
    with open(path) as f:
        jobs = [json.loads(line) for line in f if line.strip()]
    with Pool(workers) as pool:
        # chunksize=1: a job at a time per worker, like the supervisor's
        # default --prefetch 1 (bigger chunks would batch the IPC).
        codes = pool.map(fetch, jobs, chunksize=1)
    print(len(codes), "done")


if __name__ == "__main__":
    main()
