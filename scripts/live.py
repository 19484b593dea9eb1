"""What the live-server tests in Python share (limits_test.py, service_test.py): checks that stop
at the first failure, autocommit connections, one value of a query, a query's outcome."""
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
