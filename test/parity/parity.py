#!/usr/bin/env python3
"""pgvector parity: pgvector 0.8.6's own regression statements, run on visual_search.

  parity.py record CONNINFO PGVECTOR_TEST_SQL_DIR OUT.json   (once, against pgvector 0.8.6)
  parity.py check  CONNINFO CASES.json README.md             (make test, against visual_search)

`record` runs each statement of the suites below on pgvector and keeps its answer: the rows as
text, or the error's SQLSTATE and message. `check` translates each statement to our names
(`translate`), runs it on visual_search, and compares: the same rows, or an error of the same
SQLSTATE class. Where pgvector stops at its dimension limit and we do not, that counts as
agreement. `check` fails below 98 % agreement, and for any difference the README's table of
deliberate differences does not list (by the translated statement), or lists but no longer
differs.
"""
import io
import json
import re
import sys

import psycopg2
import psycopg2.extensions

SUITES = ["vector_type", "halfvec", "cast", "btree", "copy", "hnsw_vector", "hnsw_halfvec"]
# pgvector's support functions of its aggregates and btree opclass: internals, not user surface.
INTERNAL = re.compile(r"\b(vector|halfvec)_(cmp|avg|accum|combine)\(")
RENAMES = [
    (r"\bhnsw\.", "vs_hnsw."),
    (r"\bUSING hnsw\b", "USING vs_hnsw"),
    (r"\barray_to_vector\b", "array_to_embedding"),
    (r"\barray_to_halfvec\b", "array_to_halfembedding"),
    (r"\bvector_(l2|ip|cosine|l1)_ops\b", r"embedding_\1_ops"),
    (r"\bhalfvec_(l2|ip|cosine|l1)_ops\b", r"halfembedding_\1_ops"),
    (r"\bhalfvec\b", "halfembedding"),
    (r"\bvector\b", "embedding"),
]
LIMIT_CLASS = "54"  # program_limit_exceeded: pgvector's 16,000 / 2,000 dimensions
MIN_AGREEMENT = 0.98
PGVECTOR = "0.8.6"


def translate(sql):
    for pattern, to in RENAMES:
        sql = re.sub(pattern, to, sql)
    return sql


def statements(text):
    """The statements of a pg_regress .sql file; psql's \\copy lines on their own."""
    out, buf = [], []
    for line in text.splitlines():
        s = line.strip()
        if not buf and (not s or s.startswith("--")):
            continue
        if not buf and s.startswith("\\"):
            out.append(s)
            continue
        buf.append(line)
        if s.endswith(";"):
            out.append("\n".join(buf).strip())
            buf = []
    assert not buf, f"unterminated statement: {buf}"
    return out


def kept(sql):
    return "sparsevec" not in sql and not INTERNAL.search(sql)


def connect(conninfo, database):
    conn = psycopg2.connect(conninfo, dbname=database)
    conn.autocommit = True
    # Every value as PostgreSQL's text, as psql shows it.
    cur = conn.cursor()
    cur.execute("SELECT array_agg(oid::int) FROM pg_type")
    oids = tuple(cur.fetchone()[0])
    raw = psycopg2.extensions.new_type(oids, "RAW", lambda v, _c: v)
    psycopg2.extensions.register_type(raw, conn)
    return conn


class Session:
    """One suite's statements in one session of a fresh database, as pg_regress runs them."""

    def __init__(self, conn):
        self.conn, self.files = conn, {}

    def run(self, sql):
        cur = self.conn.cursor()
        try:
            m = re.match(r"\\copy (\w+) (TO|FROM) '([^']+)' (.*)$", sql)
            if m:
                table, way, name, opts = m.groups()
                if way == "TO":
                    buf = io.BytesIO()
                    cur.copy_expert(f"COPY {table} TO STDOUT {opts}", buf)
                    self.files[name] = buf.getvalue()
                else:
                    cur.copy_expert(f"COPY {table} FROM STDIN {opts}", io.BytesIO(self.files[name]))
                return {"rows": None}
            cur.execute(sql)
            rows = cur.fetchall() if cur.description else None
            return {"rows": [list(r) for r in rows] if rows is not None else None}
        except psycopg2.Error as e:
            msg = e.diag.message_primary if e.diag else str(e)
            return {"error": e.pgcode, "message": msg}


def fresh_database(conninfo, name, extension):
    admin = psycopg2.connect(conninfo)
    admin.autocommit = True
    cur = admin.cursor()
    cur.execute(f"DROP DATABASE IF EXISTS {name}")
    cur.execute(f"CREATE DATABASE {name}")
    admin.close()
    conn = connect(conninfo, name)
    conn.cursor().execute(f"CREATE EXTENSION {extension}")
    return connect(conninfo, name)


def record(conninfo, sql_dir, out):
    cases = []
    for suite in SUITES:
        with open(f"{sql_dir}/{suite}.sql") as f:
            stmts = [s for s in statements(f.read()) if kept(s)]
        session = Session(fresh_database(conninfo, "parity_record", "vector"))
        version = session.run("SELECT extversion FROM pg_extension WHERE extname = 'vector'")["rows"][0][0]
        if version != PGVECTOR:
            sys.exit(f"the server's pgvector is {version}, not {PGVECTOR}")
        for sql in stmts:
            cases.append({"suite": suite, "sql": sql, "pgvector": session.run(sql)})
        session.conn.close()
    with open(out, "w") as f:
        json.dump({"pgvector": PGVECTOR, "cases": cases}, f, indent=1)
        f.write("\n")
    print(f"recorded {len(cases)} statements")


def agree(theirs, ours):
    if "error" in theirs:
        if "error" in ours:
            return theirs["error"][:2] == ours["error"][:2]
        return theirs["error"][:2] == LIMIT_CLASS and "dimension" in theirs["message"]
    if "error" in ours or theirs["rows"] is None or ours["rows"] is None:
        return "error" not in ours and theirs["rows"] is None and ours["rows"] is None
    translated = [[translate(v) if isinstance(v, str) else v for v in r] for r in theirs["rows"]]
    return translated == ours["rows"]


def answer(a):
    if "error" in a:
        return f"ERROR {a['error']}: {a['message']}"
    return "ok" if a["rows"] is None else json.dumps(a["rows"])


def deliberate(readme):
    """The statements of the README's table of deliberate differences."""
    with open(readme) as f:
        text = f.read()
    section = text.split("### Deliberate differences", 1)[1].split("\n#", 1)[0]
    return {m.replace("\\|", "|") for m in re.findall(r"^\| `((?:[^`]|``)+)` \|", section, re.M)}


def check(conninfo, cases_file, readme):
    with open(cases_file) as f:
        cases = json.load(f)["cases"]
    listed = deliberate(readme)
    sessions, differ = {}, []
    for case in cases:
        suite = case["suite"]
        if suite not in sessions:
            for s in sessions.values():
                s.conn.close()
            sessions = {suite: Session(fresh_database(conninfo, "parity_check", "visual_search"))}
        sql = translate(case["sql"])
        ours = sessions[suite].run(sql)
        if not agree(case["pgvector"], ours):
            differ.append((suite, sql, case["pgvector"], ours))
    total, same = len(cases), len(cases) - len(differ)
    by_suite = {}
    for c in cases:
        by_suite.setdefault(c["suite"], [0, 0])[0] += 1
    for d in differ:
        by_suite[d[0]][1] += 1
    for suite, (n, bad) in by_suite.items():
        print(f"  {suite}: {n - bad} of {n} agree")
    failures = 0
    for suite, sql, theirs, ours in differ:
        known = sql in listed
        failures += not known
        print(f"{'deliberate' if known else 'UNLISTED'} [{suite}] {sql}\n"
              f"    pgvector: {answer(theirs)}\n    ours:     {answer(ours)}")
    stale = listed - {d[1] for d in differ}
    for sql in sorted(stale):
        failures += 1
        print(f"STALE: the README lists `{sql}` as a difference, but it agrees (or is no statement)")
    share = same / total
    print(f"parity: {same} of {total} statements agree with pgvector 0.8.6 ({100 * share:.1f} %)")
    if share < MIN_AGREEMENT:
        failures += 1
        print(f"FAIL: below {100 * MIN_AGREEMENT:.0f} %")
    return failures


if __name__ == "__main__":
    if sys.argv[1] == "record":
        record(*sys.argv[2:5])
    elif sys.argv[1] == "check":
        sys.exit(1 if check(*sys.argv[2:5]) else 0)
    else:
        sys.exit(__doc__)
