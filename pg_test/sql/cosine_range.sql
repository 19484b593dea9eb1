-- Cosine distance of vectors whose norms overflow or underflow float32 has an answer, and the
-- cosine indexes hold such rows: norms are computed in double precision.
SELECT round(('[3e38]'::embedding <=> '[3e38]')::numeric, 9) AS huge_same,
       round(('[1e-30,1e-30]'::embedding <=> '[1e-30,1e-30]')::numeric, 9) AS tiny_same,
       round(('[3e38,3e38]'::embedding <=> '[1,1]')::numeric, 9) AS huge_vs_one,
       round(('[3e38,-3e38]'::embedding <=> '[1,1]')::numeric, 9) AS huge_orthogonal,
       round(('[-3e38]'::embedding <=> '[1e-30]')::numeric, 9) AS huge_opposite_tiny,
       round(('[1e-40,0]'::embedding <=> '[0,1e-40]')::numeric, 9) AS subnormal_orthogonal,
       round(('[3e38,1e-30]'::embedding <=> '[3e38,1e-30]')::numeric, 9) AS mixed_same;
SELECT round(cosine_distance('[3e38,3e38]'::embedding, '[1,1]')::numeric, 9) AS function_form,
       round(('[60000,60000]'::halfembedding <=> '[1,1]')::numeric, 9) AS half_huge,
       round(('[1e-7,1e-7]'::halfembedding <=> '[1e-7,1e-7]')::numeric, 9) AS half_tiny;
-- the zero vector still has no direction
SELECT '[0,0]'::embedding <=> '[1,1]' AS zero_is_nan, '[0]'::halfembedding <=> '[0]' AS half_zero_is_nan;
-- l2_normalize scales such vectors to length 1, too
SELECT l2_normalize('[3e38,3e38]'::embedding) AS huge_unit, l2_normalize('[1e-30,1e-30]'::embedding) AS tiny_unit;

-- a cosine index holds every row with a direction, huge and tiny ones included
SET client_min_messages = warning;
CREATE TABLE cr_items (id int PRIMARY KEY, e embedding(2), h halfembedding(2));
INSERT INTO cr_items SELECT i, ARRAY[cos(i), sin(i)]::embedding, ARRAY[cos(i), sin(i)]::halfembedding
  FROM generate_series(1, 3000) i;
INSERT INTO cr_items VALUES (3001, '[3e38,3e38]', '[60000,60000]'), (3002, '[1e-30,1e-30]', '[1e-7,1e-7]'),
  (3003, '[3e38,-1e-30]', '[1,-1e-7]'), (3004, '[-1e-30,-3e38]', '[-1e-7,-60000]'), (3005, '[0,0]', '[0,0]');
CREATE INDEX cr_e ON cr_items USING vs_hnsw (e embedding_cosine_ops);
CREATE INDEX cr_h ON cr_items USING vs_hnsw (h halfembedding_cosine_ops);
RESET client_min_messages;
SELECT cardinality(visual_search.vs_hnsw_heap_tids('cr_e')) AS e_indexed,
       cardinality(visual_search.vs_hnsw_heap_tids('cr_h')) AS h_indexed,
       count(*) - 1 AS rows_with_a_direction FROM cr_items;
-- rows inserted after the build, too
INSERT INTO cr_items VALUES (3006, '[-3e38,3e38]', '[-60000,60000]'), (3007, '[-1e-30,1e-30]', '[-1e-7,1e-7]');
SELECT cardinality(visual_search.vs_hnsw_heap_tids('cr_e')) AS e_indexed,
       cardinality(visual_search.vs_hnsw_heap_tids('cr_h')) AS h_indexed;
-- and searches find them, with queries of any magnitude (each pair is at distance 0)
SET enable_seqscan = off;
SELECT array_agg(id ORDER BY id) AS nearest FROM (SELECT id FROM cr_items ORDER BY e <=> '[1,1]' LIMIT 2) s;
SELECT array_agg(id ORDER BY id) AS nearest FROM (SELECT id FROM cr_items ORDER BY e <=> '[3e38,3e38]' LIMIT 2) s;
SELECT array_agg(id ORDER BY id) AS nearest FROM (SELECT id FROM cr_items ORDER BY e <=> '[-1e-30,1e-30]' LIMIT 2) s;
EXPLAIN (COSTS OFF) SELECT id FROM cr_items ORDER BY e <=> '[1,1]' LIMIT 2;
RESET enable_seqscan;
DROP TABLE cr_items;
