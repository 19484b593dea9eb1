-- A neighbour slot is an element's place, 6 bytes; before 0.7.0 it also held the neighbour's
-- distance, 12 bytes. 1,100 elements of 128 dimensions then took 138 pages (8 a page), now 102
-- (11, or 10 beside an element of the upper layers); of halfembedding(128) 92 (12), now 68 (16).
CREATE TABLE size_items (id integer, v embedding(128), h halfembedding(128));
INSERT INTO size_items
SELECT i, a::embedding, a::halfembedding
FROM (SELECT i, (SELECT array_agg(sin(i * 0.013 * j + j)::real) FROM generate_series(1, 128) j) AS a
      FROM generate_series(1, 1100) i) s;
CREATE INDEX size_v ON size_items USING vs_hnsw (v embedding_l2_ops);
CREATE INDEX size_h ON size_items USING vs_hnsw (h halfembedding_l2_ops);
SELECT pg_relation_size('size_v') / 8192 - 1 BETWEEN 100 AND 112 AS embedding_pages_hold_10_or_11,
       pg_relation_size('size_h') / 8192 - 1 BETWEEN 64 AND 79 AS halfembedding_pages_hold_14_to_17;
-- Searches and inserts walk the compact lists as before.
SET enable_seqscan = off;
SELECT count(*) AS found FROM (SELECT id FROM size_items ORDER BY v <-> (SELECT v FROM size_items WHERE id = 500) LIMIT 20) s;
INSERT INTO size_items SELECT 2000 + id, v, h FROM size_items WHERE id <= 100;
SELECT array_agg(id ORDER BY id) AS both_copies FROM (SELECT id FROM size_items ORDER BY h <-> (SELECT h FROM size_items WHERE id = 7) LIMIT 2) s;
RESET enable_seqscan;
-- The inserts draw their levels at random: a few elements may end up out of reach.
SELECT visual_search.vs_hnsw_unreachable('size_v'::regclass) <= 10 AS few_unreachable_v, visual_search.vs_hnsw_unreachable('size_h'::regclass) <= 10 AS few_unreachable_h;
-- An odd m leaves an upper layer's slots 2 bytes short of a multiple of 4: each list is
-- padded, so the f32 vector after the lists stays aligned (read in place).
CREATE INDEX size_m5 ON size_items USING vs_hnsw (v embedding_l2_ops) WITH (m = 5);
SET enable_seqscan = off;
SELECT id AS m5_nearest_to_500 FROM size_items ORDER BY v <-> (SELECT v FROM size_items WHERE id = 500) LIMIT 1;
RESET enable_seqscan;
SELECT visual_search.vs_hnsw_unreachable('size_m5'::regclass) <= 10 AS few_unreachable_m5;
DROP TABLE size_items;
