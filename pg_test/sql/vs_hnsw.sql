-- vs_hnsw: options, planner, results against exact scans for every opclass, NULL and zero
-- vectors, iterative scans under filters, dimension limits, builds past maintenance_work_mem,
-- VACUUM, and hn_churn.
SET client_min_messages = warning;
CREATE TABLE hn_items (id int PRIMARY KEY, e embedding(8), h halfembedding(8));
INSERT INTO hn_items SELECT i, v::embedding, v::halfembedding
  FROM (SELECT i, ARRAY(SELECT sin(i * j * 0.37) + cos(i * 0.11 + j) FROM generate_series(1, 8) j) v
        FROM generate_series(1, 1500) i) s;
CREATE TABLE hn_queries AS SELECT q, ARRAY(SELECT cos(q * j * 0.53) FROM generate_series(1, 8) j) v FROM generate_series(1, 20) q;

-- Options are checked.
SELECT outcome('CREATE INDEX ON hn_items USING vs_hnsw (e embedding_l2_ops) WITH (m = 1)');
SELECT outcome('CREATE INDEX ON hn_items USING vs_hnsw (e embedding_l2_ops) WITH (m = 16, ef_construction = 20)');
SELECT outcome('CREATE INDEX ON hn_items USING vs_hnsw (e embedding_l2_ops) WITH (colour = 1)');
SELECT outcome('CREATE INDEX ON hn_items USING vs_hnsw (e)');
SELECT outcome('CREATE INDEX ON hn_items USING vs_hnsw (e, h)');

-- Recall@10 against the exact answer, for each opclass, at ef_search 40 (the default); inner
-- products of vectors of unequal norms are no metric, and need a wider beam (100) for it.
SELECT col, op, index_recall('hn_items', 'hn_queries', col, op, opclass, 'm = 8, ef_construction = 32', ef) >= 0.95 AS recall_ok
FROM (VALUES ('e', '<->', 'embedding_l2_ops', 40), ('e', '<#>', 'embedding_ip_ops', 100), ('e', '<=>', 'embedding_cosine_ops', 40),
             ('h', '<->', 'halfembedding_l2_ops', 40), ('h', '<#>', 'halfembedding_ip_ops', 100), ('h', '<=>', 'halfembedding_cosine_ops', 40),
             ('e', '<+>', 'embedding_l1_ops', 40), ('h', '<+>', 'halfembedding_l1_ops', 40)) t(col, op, opclass, ef);
RESET vs_hnsw.ef_search;

-- The planner uses the index for ORDER BY <its operator> LIMIT, and not otherwise.
CREATE INDEX hn_items_e ON hn_items USING vs_hnsw (e embedding_l2_ops);
ANALYZE hn_items;
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM hn_items ORDER BY e <-> '[1,1,1,1,1,1,1,1]' LIMIT 5;
EXPLAIN (COSTS OFF) SELECT id FROM hn_items ORDER BY e <=> '[1,1,1,1,1,1,1,1]' LIMIT 5;
EXPLAIN (COSTS OFF) SELECT id FROM hn_items WHERE e <-> '[1,1,1,1,1,1,1,1]' < 1;
RESET enable_seqscan;
EXPLAIN (COSTS OFF) SELECT id FROM hn_items ORDER BY e <-> '[1,1,1,1,1,1,1,1]';
SET enable_seqscan = off;

-- Rows come back in distance order.
SELECT bool_and(d >= prev) AS ordered FROM (
  SELECT d, lag(d, 1, 0::float8) OVER () prev FROM (SELECT e <-> '[0,1,0,1,0,1,0,1]' d FROM hn_items ORDER BY e <-> '[0,1,0,1,0,1,0,1]' LIMIT 40) s) t;

-- A query that fails while the index scan is open frees the scan's state with its memory
-- context, and the next scan works.
SELECT outcome($$SELECT 1 / (id - id) FROM hn_items ORDER BY e <-> '[0,1,0,1,0,1,0,1]' LIMIT 5$$);
SELECT count(*) AS after_failed_scan FROM (SELECT id FROM hn_items ORDER BY e <-> '[0,1,0,1,0,1,0,1]' LIMIT 5) s;

-- A dimension that does not match the index is an error, as for the operator.
SELECT outcome($$SELECT id FROM hn_items ORDER BY e <-> '[1,2,3]' LIMIT 1$$);
SELECT outcome($$INSERT INTO hn_items VALUES (0, '[1,2,3]', NULL)$$);

-- Filtered hn_queries: the scan goes on until LIMIT rows pass the filter.
SET vs_hnsw.ef_search = 10;
SELECT count(*) AS filtered_rows FROM (SELECT id FROM hn_items WHERE id % 100 = 0 ORDER BY e <-> '[1,0,1,0,1,0,1,0]' LIMIT 10) s;
SET vs_hnsw.iterative_scan = off;
SELECT count(*) < 10 AS fewer_without_iterative FROM (SELECT id FROM hn_items WHERE id % 100 = 0 ORDER BY e <-> '[1,0,1,0,1,0,1,0]' LIMIT 10) s;
RESET vs_hnsw.iterative_scan;
SET vs_hnsw.max_scan_tuples = 30;
SELECT count(*) < 10 AS bounded FROM (SELECT id FROM hn_items WHERE id % 100 = 0 ORDER BY e <-> '[1,0,1,0,1,0,1,0]' LIMIT 10) s;
RESET vs_hnsw.max_scan_tuples;
-- pgvector's names for the modes: strict_order never returns a row nearer than one before it
-- (rows a later round finds nearer are skipped), relaxed_order (the default) returns them too;
-- the boolean of earlier versions keeps its meaning: `on` is relaxed_order, `false` off.
SET vs_hnsw.iterative_scan = strict_order;
SELECT count(*) > 0 AS strict_rows, bool_and(d >= prev) AS strict_ordered FROM (
  SELECT d, lag(d, 1, 0::float8) OVER () prev FROM (SELECT e <-> '[1,0,1,0,1,0,1,0]' d FROM hn_items WHERE id % 100 = 0 ORDER BY e <-> '[1,0,1,0,1,0,1,0]' LIMIT 10) s) t;
SET vs_hnsw.iterative_scan = relaxed_order;
SELECT count(*) AS relaxed_rows FROM (SELECT id FROM hn_items WHERE id % 100 = 0 ORDER BY e <-> '[1,0,1,0,1,0,1,0]' LIMIT 10) s;
SET vs_hnsw.iterative_scan = on;
SHOW vs_hnsw.iterative_scan;
SET vs_hnsw.iterative_scan = false;
SELECT count(*) < 10 AS false_is_off FROM (SELECT id FROM hn_items WHERE id % 100 = 0 ORDER BY e <-> '[1,0,1,0,1,0,1,0]' LIMIT 10) s;
SELECT outcome($$SET vs_hnsw.iterative_scan = sideways$$);
RESET vs_hnsw.iterative_scan;
RESET vs_hnsw.ef_search;

-- NULL vectors and (for cosine) zero vectors are not indexed; every other row is.
CREATE TABLE hn_sparse (id int, e embedding(3));
INSERT INTO hn_sparse VALUES (1, '[1,0,0]'), (2, NULL), (3, '[0,0,0]'), (4, '[0,1,0]');
CREATE INDEX ON hn_sparse USING vs_hnsw (e embedding_cosine_ops);
INSERT INTO hn_sparse VALUES (5, NULL), (6, '[0,0,0]'), (7, '[1,1,0]');
SELECT id FROM hn_sparse ORDER BY e <=> '[1,0.1,0]' LIMIT 10;
SELECT id FROM hn_sparse ORDER BY e <=> NULL LIMIT 10;
CREATE INDEX hn_sparse_l2 ON hn_sparse USING vs_hnsw (e embedding_l2_ops);
-- (equal distances come in the index's own order: the outer query orders them by id)
SELECT id FROM (SELECT id, e <-> '[0,0,0]' AS d FROM hn_sparse ORDER BY e <-> '[0,0,0]' LIMIT 10) s ORDER BY d, id;

-- Dimension limits: 2,000 for embedding, 4,000 for halfembedding; vectors that hn_big keep their
-- neighbour lists in tuples of their own.
CREATE TABLE hn_wide (id int, e embedding(2000), h halfembedding(4000));
INSERT INTO hn_wide SELECT i, array_fill(i::real, ARRAY[2000])::embedding, array_fill((i % 7)::real, ARRAY[4000])::halfembedding FROM generate_series(1, 30) i;
CREATE INDEX ON hn_wide USING vs_hnsw (e embedding_l2_ops);
CREATE INDEX ON hn_wide USING vs_hnsw (h halfembedding_l2_ops);
INSERT INTO hn_wide SELECT i, array_fill(i::real, ARRAY[2000])::embedding, NULL FROM generate_series(31, 40) i;
SELECT array_agg(id) FROM (SELECT id FROM hn_wide ORDER BY e <-> array_fill(35.2::real, ARRAY[2000])::embedding LIMIT 3) s;
CREATE TABLE hn_too_wide (e embedding(2001), h halfembedding(4001));
SELECT outcome('CREATE INDEX ON hn_too_wide USING vs_hnsw (e embedding_l2_ops)');
SELECT outcome('CREATE INDEX ON hn_too_wide USING vs_hnsw (h halfembedding_l2_ops)');

-- A build that outgrows maintenance_work_mem goes on on disk and finds the same rows.
CREATE TABLE hn_big AS SELECT i AS id, ARRAY(SELECT x - floor(x) FROM (SELECT sin(i * 12.9898 + j * 78.233) * 43758.5453 x FROM generate_series(1, 64) j) r)::embedding AS e
  FROM generate_series(1, 6000) i;
SET maintenance_work_mem = '1MB';
SET client_min_messages = notice;
CREATE INDEX hn_big_e ON hn_big USING vs_hnsw (e embedding_l2_ops);
SET client_min_messages = warning;
RESET maintenance_work_mem;
SELECT count(*) >= 90 AS found_itself FROM (SELECT id, (SELECT b2.id FROM hn_big b2 ORDER BY b2.e <-> b.e LIMIT 1) nn FROM hn_big b WHERE id % 60 = 0) s WHERE nn = id;
SELECT visual_search.vs_hnsw_unreachable('hn_big_e') <= 60 AS reachable;
-- An iterative scan that no row passes stops when a round held more than scan_mem_multiplier ×
-- work_mem (at 64 kB after 320 of the 6,000 rows, measured), else when it has seen the graph.
CREATE FUNCTION pg_temp.filtered_out(q text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE line text; n bigint := 0;
BEGIN
  -- The index scan's line is the last (the InitPlan's comes first).
  FOR line IN EXECUTE 'EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) ' || q LOOP
    IF line ~ 'Rows Removed by Filter' THEN n := substring(line from '(\d+)')::bigint; END IF;
  END LOOP;
  RETURN n;
END $$;
SET enable_seqscan = off;
SET work_mem = '64kB';
SELECT pg_temp.filtered_out($$SELECT id FROM hn_big WHERE id < 0 ORDER BY e <-> (SELECT e FROM hn_big WHERE id = 1) LIMIT 10$$) < 3000 AS bounded_by_memory;
SET vs_hnsw.scan_mem_multiplier = 1000;
SELECT pg_temp.filtered_out($$SELECT id FROM hn_big WHERE id < 0 ORDER BY e <-> (SELECT e FROM hn_big WHERE id = 1) LIMIT 10$$) >= 5900 AS whole_graph_with_more_memory;
SELECT outcome($$SET vs_hnsw.scan_mem_multiplier = 0.5$$);
RESET vs_hnsw.scan_mem_multiplier;
RESET work_mem;
RESET enable_seqscan;

-- VACUUM after deleting half the rows: no deleted row comes back, the rest are still found.
DELETE FROM hn_items WHERE id % 2 = 0;
VACUUM hn_items;
SELECT count(*) FILTER (WHERE id % 2 = 0) AS deleted_returned, count(*) AS returned
FROM (SELECT id FROM hn_items ORDER BY e <-> '[1,1,1,1,1,1,1,1]' LIMIT 100) s;
SELECT count(*) >= 24 AS found_itself FROM (SELECT id, (SELECT i2.id FROM hn_items i2 ORDER BY i2.e <-> i.e LIMIT 1) nn FROM hn_items i WHERE id % 30 = 1) s WHERE nn = id;
SELECT cardinality(visual_search.vs_hnsw_heap_tids('hn_items_e')) AS index_rows, count(*) AS table_rows FROM hn_items;

-- Insert/delete hn_churn with VACUUM reuses the freed space: the index stops growing.
CREATE TABLE hn_churn (id int, e embedding(8));
CREATE INDEX hn_churn_e ON hn_churn USING vs_hnsw (e embedding_l2_ops);
CREATE FUNCTION hn_churn_round(r int) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM hn_churn;
  INSERT INTO hn_churn SELECT i, ARRAY(SELECT sin(i * j + r) FROM generate_series(1, 8) j)::embedding FROM generate_series(1, 1000) i;
  RETURN pg_relation_size('hn_churn_e');
END $$;
SELECT hn_churn_round(1) > 0 AS grew;
VACUUM hn_churn;
SELECT hn_churn_round(2) > 0 AS round_2;
VACUUM hn_churn;
CREATE TABLE hn_sizes AS SELECT 2 AS r, pg_relation_size('hn_churn_e') AS s;
SELECT hn_churn_round(3) > 0 AS round_3;
VACUUM hn_churn;
SELECT hn_churn_round(4) > 0 AS round_4;
VACUUM hn_churn;
SELECT hn_churn_round(5) > 0 AS round_5;
VACUUM hn_churn;
SELECT pg_relation_size('hn_churn_e') <= 1.1 * (SELECT s FROM hn_sizes) AS bounded_size;
SELECT count(*) AS found FROM (SELECT id FROM hn_churn ORDER BY e <-> '[0,0,0,0,0,0,0,0]' LIMIT 50) s;

-- Unlogged tables get an init fork; TRUNCATE empties the index.
CREATE UNLOGGED TABLE hn_scratch (e embedding(2));
CREATE INDEX ON hn_scratch USING vs_hnsw (e embedding_l2_ops);
INSERT INTO hn_scratch VALUES ('[1,2]'), ('[3,4]');
TRUNCATE hn_scratch;
INSERT INTO hn_scratch VALUES ('[5,6]');
SELECT e FROM hn_scratch ORDER BY e <-> '[0,0]' LIMIT 5;
REINDEX TABLE hn_items;
SELECT count(*) AS after_reindex FROM (SELECT id FROM hn_items ORDER BY e <-> '[1,1,1,1,1,1,1,1]' LIMIT 5) s;

-- Vectors of different dimensions in a column without a typmod: the build stops with an error
-- raised inside the heap scan, and the session goes on.
CREATE TABLE hn_mixed (e embedding);
INSERT INTO hn_mixed VALUES ('[1,2]'), ('[1,2,3]');
SELECT outcome($$CREATE INDEX ON hn_mixed USING vs_hnsw (e embedding_l2_ops)$$);
SELECT count(*) AS still_here FROM hn_mixed;

-- A parallel build on PostgreSQL's workers gives exactly the graph that the leader alone builds
-- (max_parallel_workers = 0: no worker can start), for f16-exact (L2 on integers) and f32
-- (cosine) vectors alike: the same answers at a narrow beam.
CREATE TABLE hn_par (id int, e embedding(16)) WITH (parallel_workers = 2);
INSERT INTO hn_par SELECT i, ARRAY(SELECT round(50 * sin(i * j * 0.37)) FROM generate_series(1, 16) j)::embedding
  FROM generate_series(1, 4000) i;
CREATE TABLE hn_par_q AS SELECT i AS qid, ARRAY(SELECT round(50 * cos(i * j * 0.11)) FROM generate_series(1, 16) j)::embedding AS q
  FROM generate_series(1, 50) i;
SET min_parallel_table_scan_size = 0;
SET max_parallel_maintenance_workers = 2;
SET vs_hnsw.ef_search = 10;
SET enable_seqscan = off;
CREATE FUNCTION hn_par_answers(metric text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r text;
BEGIN
  IF metric = 'l2' THEN
    SELECT string_agg(ids, ';' ORDER BY qid) INTO r FROM (SELECT qid, (SELECT string_agg(id::text, ',') FROM
      (SELECT id FROM hn_par ORDER BY e <-> q LIMIT 5) s) ids FROM hn_par_q) t;
  ELSE
    SELECT string_agg(ids, ';' ORDER BY qid) INTO r FROM (SELECT qid, (SELECT string_agg(id::text, ',') FROM
      (SELECT id FROM hn_par ORDER BY e <=> q LIMIT 5) s) ids FROM hn_par_q) t;
  END IF;
  RETURN r;
END $$;
CREATE INDEX hn_par_l2 ON hn_par USING vs_hnsw (e embedding_l2_ops);
CREATE INDEX hn_par_cos ON hn_par USING vs_hnsw (e embedding_cosine_ops);
CREATE TABLE hn_par_answers AS SELECT hn_par_answers('l2') AS l2, hn_par_answers('cos') AS cos;
DROP INDEX hn_par_l2, hn_par_cos;
SET max_parallel_workers = 0;
CREATE INDEX hn_par_l2 ON hn_par USING vs_hnsw (e embedding_l2_ops);
CREATE INDEX hn_par_cos ON hn_par USING vs_hnsw (e embedding_cosine_ops);
SELECT l2 = hn_par_answers('l2') AS same_l2, cos = hn_par_answers('cos') AS same_cosine,
       length(l2) > 500 AS answered FROM hn_par_answers;
RESET max_parallel_workers;
RESET max_parallel_maintenance_workers;
RESET min_parallel_table_scan_size;
RESET vs_hnsw.ef_search;
RESET enable_seqscan;
