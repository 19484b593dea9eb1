-- A catalogue partitioned by category (issue #19, point 5): one CREATE INDEX on the parent makes
-- a vs_hnsw index on each partition; ORDER BY <-> LIMIT over all of them merges their index
-- scans in distance order (Merge Append), a query of one category reads that partition alone,
-- and a partition attached later gets its index too.
SET client_min_messages = warning;
CREATE TABLE pt_items (id int, category text NOT NULL, e embedding(8)) PARTITION BY LIST (category);
CREATE TABLE pt_shoes PARTITION OF pt_items FOR VALUES IN ('shoe');
CREATE TABLE pt_bags PARTITION OF pt_items FOR VALUES IN ('bag');
CREATE TABLE pt_coats PARTITION OF pt_items FOR VALUES IN ('coat');
INSERT INTO pt_items SELECT i, (ARRAY['shoe', 'bag', 'coat'])[1 + i % 3],
       ARRAY(SELECT sin(i * j * 0.37) + cos(i * 0.11 + j) FROM generate_series(1, 8) j)::embedding
  FROM generate_series(1, 6000) i;
CREATE TABLE pt_queries AS SELECT q, ARRAY(SELECT cos(q * j * 0.53) FROM generate_series(1, 8) j) v FROM generate_series(1, 20) q;
ANALYZE pt_items;

-- Recall@10 over the whole catalogue, through the merged index scans. These points lie on a few
-- curves, far from the queries, which a graph needs a wider beam for (measured at ef_search 100:
-- 1.0 partitioned, 0.81-0.86 in one table, pgvector 0.84 in one table; all 1.0 at 400).
SELECT index_recall('pt_items', 'pt_queries', 'e', '<->', 'embedding_l2_ops', 'm = 16, ef_construction = 64', 100) >= 0.95 AS recall_ok;

CREATE INDEX pt_items_e ON pt_items USING vs_hnsw (e embedding_l2_ops) WITH (m = 8, ef_construction = 32);
SELECT c.relname, am.amname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_am am ON am.oid = c.relam
 WHERE i.inhparent = 'pt_items_e'::regclass ORDER BY 1;
ANALYZE pt_items;

-- The planner merges the partitions' index scans by itself at this size, without a sort.
EXPLAIN (COSTS OFF) SELECT id FROM pt_items ORDER BY e <-> '[1,1,1,1,1,1,1,1]' LIMIT 10;
-- A category is one partition: the others are pruned.
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM pt_items WHERE category = 'bag' ORDER BY e <-> '[1,1,1,1,1,1,1,1]' LIMIT 10;
-- Its answers are that category's: the same ten as the exact order (an expression no index
-- answers) over the partition.
SELECT (SELECT array_agg(id ORDER BY id) FROM (SELECT id FROM pt_items WHERE category = 'bag' ORDER BY e <-> '[1,1,1,1,1,1,1,1]' LIMIT 10) a)
     = (SELECT array_agg(id ORDER BY id) FROM (SELECT id FROM pt_bags ORDER BY (e <-> '[1,1,1,1,1,1,1,1]') + 0 LIMIT 10) x) AS same_as_exact;
RESET enable_seqscan;

-- A partition attached later takes an index of its own, and the merge takes it in.
CREATE TABLE pt_hats (LIKE pt_items);
INSERT INTO pt_hats SELECT i, 'hat', ARRAY(SELECT cos(i * j * 0.29) FROM generate_series(1, 8) j)::embedding FROM generate_series(6001, 8000) i;
ALTER TABLE pt_items ATTACH PARTITION pt_hats FOR VALUES IN ('hat');
ANALYZE pt_items;
SELECT count(*) AS partition_indexes FROM pg_inherits WHERE inhparent = 'pt_items_e'::regclass;
EXPLAIN (COSTS OFF) SELECT id FROM pt_items ORDER BY e <-> '[1,1,1,1,1,1,1,1]' LIMIT 10;
DROP TABLE pt_items, pt_queries;
