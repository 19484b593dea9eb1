-- vs_hnsw WITH (quantize = on): RaBitQ codes instead of vectors, reranked with the table's
-- vectors. Past the 2,000 dimensions an element with its vector stops at, for every opclass
-- and both types; inserts, VACUUM after deleting half, an index built empty, the limits.
SET client_min_messages = warning;
CREATE TABLE qz_src (id int, pixels embedding(784));
COPY qz_src FROM '/tmp/visual_search_regress/data/fashion.tsv';
CREATE TABLE qz_queries_src (id int, pixels embedding(784));
COPY qz_queries_src FROM '/tmp/visual_search_regress/data/fashion_test.tsv';
-- 1,200 Fashion-MNIST images as 2,400-d vectors (their 784 pixels and 16 zeros three times over:
-- the same neighbours at other distances).
CREATE TABLE qz AS SELECT id, (p || p || p)::embedding(2400) AS e, (p || p || p)::halfembedding(2400) AS h
  FROM (SELECT id, pixels::real[] || array_fill(0::real, ARRAY[16]) AS p FROM qz_src) s;
CREATE TABLE qz_queries AS SELECT row_number() OVER (ORDER BY id) AS q, p || p || p AS v
  FROM (SELECT id, pixels::real[] || array_fill(0::real, ARRAY[16]) AS p FROM qz_queries_src) s;
DROP TABLE qz_src, qz_queries_src;

-- Without codes the vector does not fit: the ERROR says what does.
SELECT outcome('CREATE INDEX ON qz USING vs_hnsw (e embedding_l2_ops)');
-- Options and limits: an expression has no column value for the rerank.
SELECT outcome('CREATE INDEX ON qz USING vs_hnsw (e embedding_l2_ops) WITH (quantize = maybe)');
SELECT outcome('CREATE INDEX ON qz USING vs_hnsw ((e::real[]::embedding(2400)) embedding_l2_ops) WITH (quantize = on)');
SELECT outcome('SET vs_hnsw.rerank = -1');
SELECT outcome('CREATE INDEX ON qz USING vs_hnsw (e embedding_l2_ops) WITH (quantize = on, rerank = 20000)');

-- Recall@10 against the exact answer, for each opclass, at the defaults (ef_search 40, the
-- whole beam reranked); inner products of vectors of unequal norms need a wider beam, as without codes.
SELECT col, op, index_recall('qz', 'qz_queries', col, op, opclass, 'quantize = on', ef) >= 0.95 AS recall_ok
FROM (VALUES ('e', '<->', 'embedding_l2_ops', 40), ('e', '<#>', 'embedding_ip_ops', 100), ('e', '<=>', 'embedding_cosine_ops', 40),
             ('h', '<->', 'halfembedding_l2_ops', 40), ('h', '<#>', 'halfembedding_ip_ops', 100), ('h', '<=>', 'halfembedding_cosine_ops', 40)) t(col, op, opclass, ef);
RESET vs_hnsw.ef_search;

-- The index, its codes a fraction of the vectors, answers in exact distance order.
CREATE INDEX qz_e ON qz USING vs_hnsw (e embedding_l2_ops) WITH (quantize = on);
SELECT pg_relation_size('qz_e') * 4 < pg_total_relation_size('qz') AS codes_are_small;
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM qz ORDER BY e <-> (SELECT e FROM qz WHERE id = 7) LIMIT 5;
SELECT bool_and(d >= lag_d) AS exact_order FROM (
  SELECT d, lag(d, 1, 0::float8) OVER (ORDER BY n) AS lag_d FROM (
    SELECT row_number() OVER () AS n, e <-> (SELECT e FROM qz WHERE id = 7) AS d
    FROM (SELECT e FROM qz ORDER BY e <-> (SELECT e FROM qz WHERE id = 7) LIMIT 30) s) t) u;
SELECT id FROM qz ORDER BY e <-> (SELECT e FROM qz WHERE id = 7) LIMIT 1;
-- the rerank depth from the index's option, and the setting over it (groups of 5, of 3): the
-- nearest row still comes first
ALTER INDEX qz_e SET (rerank = 5);
SELECT id FROM qz ORDER BY e <-> (SELECT e FROM qz WHERE id = 7) LIMIT 1;
SET vs_hnsw.rerank = 3;
SELECT id FROM qz ORDER BY e <-> (SELECT e FROM qz WHERE id = 7) LIMIT 1;
RESET vs_hnsw.rerank;
ALTER INDEX qz_e RESET (rerank);
-- rows filtered away: the iterative scan goes on until LIMIT rows are found
SELECT count(*) FROM (SELECT id FROM qz WHERE id % 10 = 3 ORDER BY e <-> (SELECT e FROM qz WHERE id = 7) LIMIT 50) s;

-- Inserts, then VACUUM after deleting half: every live row once, each row's own vector first.
INSERT INTO qz SELECT q + 5000, v::embedding, v::halfembedding FROM qz_queries;
DELETE FROM qz WHERE id % 2 = 0 AND id < 5000;
VACUUM qz;
SELECT (SELECT count(*) FROM unnest(visual_search.vs_hnsw_heap_tids('qz_e'))) = (SELECT count(*) FROM qz) AS rows_once;
SELECT visual_search.vs_hnsw_unreachable('qz_e') <= 6 AS reachable;
SELECT count(*) FILTER (WHERE (SELECT id FROM qz b ORDER BY b.e <-> a.e LIMIT 1) = a.id) >= 0.99 * count(*) AS own_vector_first
FROM (SELECT * FROM qz WHERE id % 7 = 0 OR id > 5000) a;
RESET enable_seqscan;
DROP INDEX qz_e;

-- Built empty, and on a column without a dimension: the first insert decides it, with a zero
-- centroid.
CREATE TABLE qz_empty (id int, e embedding);
CREATE INDEX qz_empty_e ON qz_empty USING vs_hnsw (e embedding_l2_ops) WITH (quantize = on);
INSERT INTO qz_empty SELECT id, e FROM qz WHERE id < 300;
SELECT outcome('INSERT INTO qz_empty VALUES (0, ''[1,2,3]'')');
SET enable_seqscan = off;
SELECT id FROM qz_empty ORDER BY e <-> (SELECT e FROM qz WHERE id = 151) LIMIT 1;
RESET enable_seqscan;

-- Past 32,768 dimensions a code takes more than a page holds, and its tail goes with the
-- element's lists: 360 images as 65,535-d vectors (their 2,400-d ones 27 times over, then
-- zeros), built, inserted into, half deleted and vacuumed, on both types.
CREATE TABLE qz_wide AS SELECT id, p::embedding(65535) AS e, p::halfembedding(65535) AS h
  FROM (SELECT id, ARRAY(SELECT unnest(e::real[]) FROM generate_series(1, 27)) || array_fill(0::real, ARRAY[735]) AS p
        FROM qz WHERE id < 360) s;
CREATE TABLE qz_wide_queries AS SELECT q, e::real[] AS v FROM (SELECT row_number() OVER (ORDER BY id) AS q, e FROM qz_wide WHERE id >= 300) s;
DELETE FROM qz_wide WHERE id >= 300;
SELECT col, index_recall('qz_wide', 'qz_wide_queries', col, '<->', opclass, 'quantize = on', 40) >= 0.95 AS recall_ok
FROM (VALUES ('e', 'embedding_l2_ops'), ('h', 'halfembedding_l2_ops')) t(col, opclass);
CREATE INDEX qz_wide_e ON qz_wide USING vs_hnsw (e embedding_cosine_ops) WITH (quantize = on);
INSERT INTO qz_wide SELECT q + 1000, v::embedding, v::halfembedding FROM qz_wide_queries;
DELETE FROM qz_wide WHERE id % 2 = 0 AND id < 1000;
VACUUM qz_wide;
SET enable_seqscan = off;
SELECT count(*) FILTER (WHERE (SELECT id FROM qz_wide b ORDER BY b.e <=> a.e LIMIT 1) = a.id) >= 0.99 * count(*) AS own_vector_first FROM qz_wide a;
RESET enable_seqscan;
SELECT (SELECT count(*) FROM unnest(visual_search.vs_hnsw_heap_tids('qz_wide_e'))) = (SELECT count(*) FROM qz_wide) AS rows_once;
DROP TABLE qz, qz_queries, qz_wide, qz_wide_queries, qz_empty;
