"""What the live-server tests and benchmarks in Python share (scripts/limits_test.py,
scripts/service_test.py, bench/service.py, bench/connect.py): checks that stop at the first
failure, autocommit connections, one value of a query, a query's outcome, the embedding
service's statistics, a process's memory figures."""
import sys
import time

import psycopg2


class Checks:
    """Prints "<name>: ok: …" or "<name>: FAIL: …" (and exits 1) for each check; `done()` the tally."""

    def __init__(self, name):
        self.name, self.passed = name, 0

    def __call__(self, what, ok, detail=""):
        print(f"{self.name}: {'ok' if ok else 'FAIL'}: {what}{': ' + detail if detail else ''}", flush=True)
        if not ok:
            sys.exit(1)
        self.passed += 1

    def done(self):
        print(f"{self.name}: {self.passed} passed, 0 failed")


def connect(conninfo):
    c = psycopg2.connect(conninfo)
    c.autocommit = True
    return c


def one(cur, q, *args):
    cur.execute(q, args)
    return cur.fetchone()[0]


def attempt(cur, q, *args):
    """(value, error, seconds) of one query: the value is None when it failed."""
    t = time.monotonic()
    try:
        return one(cur, q, *args), None, time.monotonic() - t
    except psycopg2.Error as e:
        return None, e, time.monotonic() - t


def service_stats(cur):
    """visual_search.service_stats() as a dict of its columns."""
    cur.execute("SELECT * FROM visual_search.service_stats()")
    return dict(zip([d[0] for d in cur.description], cur.fetchone()))


def proc_kb(pid, name, keys):
    """The fields `keys` of /proc/PID/NAME (status, smaps_rollup), in kB."""
    out = {}
    with open(f"/proc/{pid}/{name}") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in keys:
                out[k] = int(v.split()[0])
    return out
