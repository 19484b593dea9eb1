#!/usr/bin/env python3
"""Moving a table from pgvector to visual_search in one database that has both (README, "Moving
from pgvector"): the text cast, visual_search.pgvector_casts(), ALTER TABLE … TYPE, binary COPY
between the two, and dropping pgvector afterwards. Needs pgvector installed in the server.

  beside_pgvector.py CONNINFO
"""
import io
import sys

import psycopg2

checks = 0


def check(ok, what):
    global checks
    checks += 1
    print(f"{'ok' if ok else 'FAIL'}: {what}")
    if not ok:
        sys.exit(1)


def error_of(cur, sql):
    try:
        cur.execute("SAVEPOINT s")
        cur.execute(sql)
        cur.execute("RELEASE SAVEPOINT s")
        return None
    except psycopg2.Error as e:
        cur.execute("ROLLBACK TO SAVEPOINT s")
        return e.pgcode


def main(conninfo):
    admin = psycopg2.connect(conninfo)
    admin.autocommit = True
    admin.cursor().execute("DROP DATABASE IF EXISTS beside_pgvector")
    admin.cursor().execute("CREATE DATABASE beside_pgvector")
    conn = psycopg2.connect(conninfo, dbname="beside_pgvector")
    cur = conn.cursor()
    cur.execute("CREATE EXTENSION vector")
    cur.execute("CREATE EXTENSION visual_search")
    rows = ["[1,2,3]", "[-0.5,0,1e-07]", "[65504,-65504,3.5]"]
    cur.execute("CREATE TABLE items (id int PRIMARY KEY, v vector(3), h halfvec(3))")
    for i, r in enumerate(rows):
        cur.execute("INSERT INTO items VALUES (%s, %s, %s)", (i, r, r))
    cur.execute("INSERT INTO items VALUES (9, NULL, NULL)")

    # Without the casts: through text, which both types print and read alike.
    cur.execute("SELECT v::text::embedding(3)::text = v::text FROM items WHERE v IS NOT NULL")
    check(all(r[0] for r in cur.fetchall()), "v::text::embedding keeps every value")
    check(error_of(cur, "SELECT v::embedding FROM items") == "42846", "no direct cast before pgvector_casts()")

    cur.execute("CREATE ROLE beside_pgvector_user")
    cur.execute("SET ROLE beside_pgvector_user")
    check(error_of(cur, "SELECT visual_search.pgvector_casts()") == "42501", "an ordinary role cannot call pgvector_casts()")
    cur.execute("RESET ROLE")
    cur.execute("SELECT visual_search.pgvector_casts()")
    check(cur.fetchone()[0] == 4, "pgvector_casts() creates the four casts")
    cur.execute("SELECT visual_search.pgvector_casts()")
    check(cur.fetchone()[0] == 0, "a second call creates none")
    # Not members of either extension: DROP EXTENSION vector CASCADE would otherwise drop
    # visual_search, and every embedding column with it.
    cur.execute("SELECT count(*) FROM pg_cast c JOIN pg_depend d ON d.classid = 'pg_cast'::regclass AND d.objid = c.oid "
                "WHERE d.deptype = 'e' AND c.castmethod = 'b' AND 'embedding'::regtype IN (c.castsource, c.casttarget)")
    check(cur.fetchone()[0] == 0, "the casts belong to no extension")

    cur.execute("SELECT v::embedding::text = v::text, h::halfembedding::text = h::text, "
                "v::embedding::vector = v, h::halfembedding::halfvec = h FROM items WHERE v IS NOT NULL")
    check(all(all(r) for r in cur.fetchall()), "direct casts both ways keep every value")
    check(error_of(cur, "SELECT '[1,2]'::vector::embedding(3)") == "22000", "the typmod still checks dimensions")

    # Binary COPY from pgvector's table into ours: the same wire format.
    cur.execute("CREATE TABLE moved (id int, v embedding(3), h halfembedding(3))")
    buf = io.BytesIO()
    cur.copy_expert("COPY items TO STDOUT WITH (FORMAT binary)", buf)
    buf.seek(0)
    cur.copy_expert("COPY moved FROM STDIN WITH (FORMAT binary)", buf)
    cur.execute("SELECT count(*) FROM items i JOIN moved m USING (id) "
                "WHERE i.v::text IS NOT DISTINCT FROM m.v::text AND i.h::text IS NOT DISTINCT FROM m.h::text")
    check(cur.fetchone()[0] == len(rows) + 1, "binary COPY from vector/halfvec into embedding/halfembedding")
    buf = io.BytesIO()
    cur.copy_expert("COPY moved TO STDOUT WITH (FORMAT binary)", buf)
    buf.seek(0)
    cur.execute("CREATE TABLE back (id int, v vector(3), h halfvec(3))")
    cur.copy_expert("COPY back FROM STDIN WITH (FORMAT binary)", buf)
    cur.execute("SELECT count(*) FROM items i JOIN back b USING (id) WHERE i.v IS NOT DISTINCT FROM b.v AND i.h IS NOT DISTINCT FROM b.h")
    check(cur.fetchone()[0] == len(rows) + 1, "and back again")

    # The move itself, then the index and a search on the new column.
    cur.execute("CREATE INDEX ON items USING hnsw (v vector_l2_ops)")
    cur.execute("SELECT id FROM items ORDER BY v <-> '[1,2,3.1]' LIMIT 1")
    before = cur.fetchone()[0]
    cur.execute("DROP INDEX items_v_idx")
    cur.execute("ALTER TABLE items ALTER COLUMN v TYPE embedding(3), ALTER COLUMN h TYPE halfembedding(3)")
    cur.execute("CREATE INDEX ON items USING vs_hnsw (v embedding_l2_ops)")
    cur.execute("SET enable_seqscan = off")
    cur.execute("SELECT id FROM items ORDER BY v <-> '[1,2,3.1]' LIMIT 1")
    check(cur.fetchone()[0] == before, "ALTER TABLE … TYPE embedding, then vs_hnsw answers as pgvector's hnsw did")
    cur.execute("RESET enable_seqscan")
    cur.execute("DROP TABLE back")

    # Done with pgvector: the casts go first, then pgvector, and ours stay.
    check(error_of(cur, "DROP EXTENSION vector") == "2BP01", "pgvector cannot go while the casts name its types")
    cur.execute("SELECT visual_search.pgvector_casts(false)")
    check(cur.fetchone()[0] == 4, "pgvector_casts(false) drops the four casts")
    cur.execute("DROP EXTENSION vector")
    cur.execute("SELECT count(*) FROM items WHERE v IS NOT NULL")
    check(cur.fetchone()[0] == len(rows), "pgvector dropped, the moved table intact")
    conn.commit()
    conn.close()
    admin.cursor().execute("DROP DATABASE beside_pgvector")
    admin.cursor().execute("DROP ROLE beside_pgvector_user")
    print(f"beside_pgvector: {checks} passed, 0 failed")


if __name__ == "__main__":
    main(sys.argv[1])
