#!/usr/bin/env python3
"""Write N geocoding jobs in callpool's jobs format (JSON Lines).

usage: gen_jobs.py N URL > jobs.jsonl

Job i has id "job-%06d" and address "<100+i> Broadway, ..."; the server echoes
the address back, so bench.py can check that result file job-i holds the
answer to job i (and not an error page or another job's answer).
"""
import json
import sys


def main():
    n, url = int(sys.argv[1]), sys.argv[2]
    langs = ["en", "ca", "de", "fr", "ja"]
    out = sys.stdout
    for i in range(n):
        job = {
            "id": f"job-{i:06d}",
            "url": url,
            "params": {"address": f"{100 + i} Broadway, New York, NY, U.S.A", "language": langs[i % 5]},
        }
        out.write(json.dumps(job) + "\n")


if __name__ == "__main__":
    main()
