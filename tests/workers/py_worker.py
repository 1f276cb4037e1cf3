#!/usr/bin/env python3
"""A callpool worker in Python, written from docs/protocol.md alone, using
only the standard library. It makes the job's HTTP request with urllib and
answers with protocol v1 lines.

Usage: py_worker.py            (a normal worker)
       py_worker.py MODE       (a misbehaving one, for tests):
         garbage       writes a line that is not JSON instead of a result
         crash-first   exits with status 3 on its first job
         no-ready      exits with status 4 before saying ready
         wrong-id      answers with another job's id
         slow-start    sleeps 30 s before saying ready
         garbage-every-N  after every N good results, writes one garbage line
         chatty        writes 200 lines of 1,000 characters to stderr per job
         echo-stderr   writes each job line it reads to stderr (secrets and all)
         leak-N        keeps N MB more memory (touched) after every job
         protocol-2    says it speaks protocol 2 in its ready line
         both          answers with both a response and an error
         close-stdout  closes its stdout on its first job, and keeps running
                       until its stdin ends
         concurrent    runs every job it reads at once, each on a thread of
                       its own, and writes the results in the order the jobs
                       came, with their elapsed_ms (as a Node.js worker
                       making its calls with async I/O does): this breaks
                       the rule that a worker runs its jobs one at a time
         concurrent-no-elapsed  the same, without elapsed_ms in its results
         stubborn      ignores SIGTERM and SIGHUP; on its first job starts a
                       child (`sleep 600`, which inherits both) and then
                       sleeps without reading stdin: only SIGKILL of its
                       whole process group ends it
         poison        dies at once (os._exit(1), no answer) on every job
                       whose URL holds `poison=1`: a poison job, which kills
                       every worker it is given
         broken-import imports a module that does not exist on its first
                       job (a traceback on stderr, exit status 1): a worker
                       that dies on every job
         epipe         (once per folder: the first worker to get a job)
                       on its first job closes its stdin, answers that job,
                       then exits with status 1 a moment later: the
                       supervisor's next write to it meets a broken pipe
         setsid-child  (once per folder) on its first job starts `sleep 60` in a session of
                       its own (setsid), which escapes the worker's process
                       group, says its pid on stderr, and answers as usual
"""
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

MODE = sys.argv[1] if len(sys.argv) > 1 else "normal"
LEAK = []


def send(msg):
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


def run(job):
    req = job["request"]
    body = req.get("body")
    r = urllib.request.Request(
        req["url"],
        data=body.encode() if body is not None else None,
        method=req["method"],
        headers=req.get("headers", {}),
    )
    timeout = req["timeout_ms"] / 1000.0
    start = time.monotonic()
    try:
        try:
            resp = urllib.request.urlopen(r, timeout=timeout)
        except urllib.error.HTTPError as e:  # 4xx/5xx are answers, not errors
            resp = e
        raw = resp.read()
        headers = {k.lower(): v for k, v in resp.headers.items()}
        ctype = headers.get("content-type", "")
        text = raw.decode("utf-8", "replace")
        if "json" in ctype:
            try:
                body, kind = json.loads(text), "json"
            except ValueError:
                body, kind = text, "text"
        else:
            body, kind = text, "text"
        return {"response": {"status": resp.status, "headers": headers, "body_kind": kind, "body": body},
                "elapsed_ms": (time.monotonic() - start) * 1000}
    except TimeoutError as e:
        return {"error": {"kind": "timeout", "message": str(e)}}
    except urllib.error.URLError as e:
        return {"error": {"kind": "connect", "message": str(e.reason)}}
    except OSError as e:
        return {"error": {"kind": "io", "message": str(e)}}


def once(mode):
    """Whether this mode's trick was done already in the working folder
    (the supervisor's); the first caller marks it done."""
    try:
        os.close(os.open(f"{mode}.done", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return False
    except FileExistsError:
        return True


def main():
    if MODE == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if MODE == "no-ready":
        print("no-ready worker giving up", file=sys.stderr)
        sys.exit(4)
    if MODE == "slow-start":
        time.sleep(30)
    if MODE.startswith("concurrent"):
        return concurrent()
    protocol = 2 if MODE == "protocol-2" else 1
    send({"type": "ready", "protocol": protocol, "worker": "py_worker", "version": "1"})
    good = 0
    for line in sys.stdin:
        if not line.strip():
            continue
        msg = json.loads(line)
        if msg.get("type") != "job":
            print(f"unexpected message {msg!r}", file=sys.stderr)
            sys.exit(2)
        if MODE == "close-stdout":
            print(f"closing stdout on job {msg['id']}", file=sys.stderr)
            sys.stderr.flush()
            sys.stdout.flush()
            sys.stdout = open(os.devnull, "w")
            os.close(1)
            for _ in sys.stdin:
                pass
            return
        if MODE == "stubborn":
            subprocess.Popen(["sleep", "600"])
            time.sleep(600)
        if MODE == "poison" and "poison=1" in msg["request"]["url"]:
            os._exit(1)
        if MODE == "broken-import" and good == 0:
            import callpool_no_such_module  # noqa: F401
        if MODE in ("epipe", "setsid-child") and once(MODE):
            pass
        elif MODE == "epipe":
            os.close(0)
            send({"type": "result", "id": msg["id"], **run(msg)})
            time.sleep(0.2)
            os._exit(1)
        elif MODE == "setsid-child":
            child = subprocess.Popen(["sleep", "60"], start_new_session=True, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            print(f"escaped child pid {child.pid}", file=sys.stderr)
            sys.stderr.flush()
        if MODE == "crash-first":
            print(f"pid {os.getpid()} crashing on job {msg['id']}", file=sys.stderr)
            sys.exit(3)
        if MODE == "garbage" or (MODE.startswith("garbage-every-") and good == int(MODE[14:])):
            sys.stdout.write("this is not json\n")
            sys.stdout.flush()
            good = 0
            continue
        if MODE.startswith("leak-"):
            LEAK.append(b"x" * (int(MODE[5:]) * 1024 * 1024))
        if MODE == "echo-stderr":
            print(f"got {line.strip()}", file=sys.stderr)
            sys.stderr.flush()
        if MODE == "chatty":
            for i in range(200):
                print(f"chatty {msg['id']} line {i} " + "x" * 1000, file=sys.stderr)
            sys.stderr.flush()
        good += 1
        out = {"type": "result", "id": msg["id"] if MODE != "wrong-id" else "someone-else"}
        out.update(run(msg))
        if MODE == "both":
            out["error"] = {"kind": "io", "message": "and an error too"}
        send(out)


def concurrent():
    """Starts each job the moment it is read and answers in arrival order."""
    send({"type": "ready", "protocol": 1, "worker": "py_worker", "version": "1"})
    answers = queue.Queue()

    def start(msg):
        box = {}
        done = threading.Event()

        def work():
            box["out"] = run(msg)
            done.set()

        threading.Thread(target=work, daemon=True).start()
        return msg["id"], box, done

    def writer():
        while True:
            item = answers.get()
            if item is None:
                return
            job_id, box, done = item
            done.wait()
            out = {"type": "result", "id": job_id}
            out.update(box["out"])
            if MODE == "concurrent-no-elapsed":
                out.pop("elapsed_ms", None)
            send(out)

    w = threading.Thread(target=writer)
    w.start()
    for line in sys.stdin:
        if line.strip():
            answers.put(start(json.loads(line)))
    answers.put(None)
    w.join()


if __name__ == "__main__":
    main()
