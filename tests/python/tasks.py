"""Worker functions for the tests (a module, as callpool.map requires)."""

import os
import sys
import time

import callpool


def square(x):
    return x * x


def describe(*args, **kwargs):
    return {"args": list(args), "kwargs": kwargs}


def misbehave(x):
    """5 hangs, 7 dies by os._exit, 9 raises; the rest square."""
    if x == 5:
        time.sleep(3600)
    if x == 7:
        os._exit(1)
    if x == 9:
        raise ValueError(f"no nines: {x}")
    return x * x


def chatty(x):
    print(f"chatty says {x}")  # stdout: guarded, goes to stderr
    sys.stdout.write("no newline")
    os.write(1, b"raw fd 1 write\n")
    return x + 1


def slow(x, folder=None):
    """Sleeps a little; notes its pid and the item in FOLDER."""
    folder = os.environ.get("CALLPOOL_TEST_FOLDER")
    if folder:
        with open(os.path.join(folder, f"{os.getpid()}.pid"), "a") as f:
            f.write(f"{x}\n")
    time.sleep(0.3)
    return x


_flaky_seen = set()


def flaky(x):
    """Asks for a retry on the first attempt at each item (per folder)."""
    marker = os.path.join(os.environ["CALLPOOL_TEST_FOLDER"], f"flaky-{x}")
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise callpool.Retry("busy, try again")
    return x


def returns_a_set(x):
    return {x}


def cpu(ms):
    """About `ms` milliseconds of CPU."""
    end = time.process_time() + ms / 1000
    n = 0
    while time.process_time() < end:
        n += 1
    return n
