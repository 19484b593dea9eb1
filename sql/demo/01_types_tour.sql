-- A tour of the vector types and operators.
\echo 'embedding literals, pgvector style; distances by operator'
SELECT '[1,2,3]'::embedding <-> '[3,2,1]' AS l2,
       '[1,2,3]'::embedding <#> '[3,2,1]' AS negative_inner_product,
       '[1,2,3]'::embedding <=> '[3,2,1]' AS cosine_distance,
       '[1,2,3]'::embedding <+> '[3,2,1]' AS l1;
\echo 'halfembedding stores f16: half the space'
SELECT pg_column_size(pixels) AS embedding_bytes, pg_column_size(pixels::halfembedding) AS halfembedding_bytes
FROM products LIMIT 1;
\echo 'the average pixel vector of each category, and how far a sneaker is from each'
WITH centroids AS (SELECT category, avg(pixels) AS c FROM products WHERE split = 'train' GROUP BY category)
SELECT category, round((c <-> (SELECT pixels FROM products WHERE id = 60000))::numeric, 1) AS distance
FROM centroids ORDER BY 2;
\echo 'Hamming distance on binary-quantized vectors'
SELECT binary_quantize(a.pixels) OPERATOR(visual_search.<~>) binary_quantize(b.pixels) AS hamming
FROM products a, products b WHERE a.id = 0 AND b.id = 1;
