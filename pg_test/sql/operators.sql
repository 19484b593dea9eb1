-- Distances, vector functions, arithmetic, comparisons and aggregates (pgvector semantics).
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS visual_search;
RESET client_min_messages;

-- distances, as operators and functions, on both types
SELECT '[0,0]'::embedding <-> '[3,4]' AS l2, l2_distance('[0,0]'::embedding, '[3,4]');
SELECT '[1,2,3]'::embedding <#> '[4,5,6]' AS neg_ip, inner_product('[1,2,3]'::embedding, '[4,5,6]');
SELECT '[1,0]'::embedding <=> '[0,1]' AS cos_orthogonal, '[1,1]'::embedding <=> '[2,2]' AS cos_parallel,
       '[1,0]'::embedding <=> '[-1,0]' AS cos_opposite, cosine_distance('[0,0]'::embedding, '[1,1]') AS cos_zero;
SELECT '[1,2,3]'::embedding <+> '[4,0,7]' AS l1, l1_distance('[1,2,3]'::embedding, '[4,0,7]');
SELECT '[0,0]'::halfembedding <-> '[3,4]' AS l2, '[1,2,3]'::halfembedding <#> '[4,5,6]' AS neg_ip,
       '[1,1]'::halfembedding <=> '[2,2]' AS cos, '[1,2,3]'::halfembedding <+> '[4,0,7]' AS l1;
SELECT embedding_l2_squared_distance('[0,0]', '[3,4]');

-- long vectors go through the SIMD kernels; results must equal plain SQL arithmetic
WITH v AS (
  SELECT array_agg(sin(i)::real ORDER BY i) AS a, array_agg(cos(i * 0.7)::real ORDER BY i) AS b
  FROM generate_series(1, 1001) i
), ref AS (
  SELECT sqrt(sum((x - y)::float8 ^ 2)) AS l2, sum(x::float8 * y) AS ip, sum(abs(x::float8 - y)) AS l1
  FROM v, unnest(a, b) AS t(x, y)
)
SELECT abs((a::embedding <-> b::embedding) - l2) < 1e-4 AS l2_ok,
       abs(inner_product(a::embedding, b::embedding) - ip) < 1e-3 AS ip_ok,
       abs((a::embedding <+> b::embedding) - l1) < 1e-3 AS l1_ok,
       abs((a::halfembedding <-> b::halfembedding) - l2) < 0.1 AS half_l2_ok
FROM v, ref;

-- vector functions
SELECT vector_dims('[1,2,3]'::embedding), vector_dims('[1,2]'::halfembedding);
SELECT vector_norm('[3,4]'::embedding), vector_norm('[3,4]'::halfembedding);
SELECT l2_normalize('[3,4]'::embedding), l2_normalize('[0,0]'::embedding), l2_normalize('[3,4]'::halfembedding);

-- arithmetic
SELECT '[1,2,3]'::embedding + '[4,5,6]', '[1,2,3]'::embedding - '[4,5,6]', '[1,2,3]'::embedding * '[4,5,6]';
SELECT '[1,2,3]'::halfembedding + '[4,5,6]', '[1,2,3]'::halfembedding * '[4,5,6]';

-- comparisons and the btree opclass
SELECT '[1,2]'::embedding < '[1,3]', '[1,2]'::embedding = '[1,2]', '[1,2]'::embedding <> '[1,2,0]',
       '[1,2]'::embedding < '[1,2,0]', '[2]'::embedding > '[1,9]', '[1,2]'::embedding >= '[1,2]';
SELECT embedding_cmp('[1,2]', '[1,3]'), embedding_cmp('[1,3]', '[1,2]'), embedding_cmp('[1,2]', '[1,2]');
CREATE TABLE cmp (v embedding);
INSERT INTO cmp VALUES ('[3,1]'), ('[1,2]'), ('[1,2,0]'), ('[2,9]'), ('[1,1]');
CREATE INDEX ON cmp USING btree (v);
SET enable_seqscan = off;
SELECT v FROM cmp ORDER BY v;
SELECT v FROM cmp WHERE v = '[1,2]';
RESET enable_seqscan;
SELECT DISTINCT v FROM (VALUES ('[1,2]'::embedding), ('[1,2]'), ('[2,1]')) t(v) ORDER BY v;

-- aggregates
SELECT avg(v), sum(v) FROM (VALUES ('[1,2,3]'::embedding), ('[3,4,5]'), (NULL)) t(v);
SELECT avg(v), sum(v) FROM (VALUES ('[1,2,3]'::halfembedding), ('[3,4,5]')) t(v);
SELECT avg(v) IS NULL AS empty_avg, sum(v) IS NULL AS empty_sum FROM (SELECT '[1]'::embedding WHERE false) t(v);

-- Hamming distance on binary-quantized vectors
SELECT binary_quantize('[1,-2,0,3,0.5,-1,2,1,-4]'::embedding), binary_quantize('[1,-2,3]'::halfembedding);
SELECT binary_quantize('[1,-2,0,3]'::embedding) OPERATOR(visual_search.<~>) binary_quantize('[1,2,0,-3]'::embedding) AS hamming,
       visual_search.hamming_distance(B'1010', B'0110');
