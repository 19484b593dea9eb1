-- Visual search over the catalogue with image_embed vectors (the shipped fashion-vgg16 model),
-- answered by the vs_hnsw index. The query vector is a scalar subquery, so the planner can
-- hand it to the index (a join would force a full sort).
\timing on
\echo 'products similar to product 60000 (a test-split ankle boot)'
SELECT id, name, round((embedding <-> (SELECT embedding FROM products WHERE id = 60000))::numeric, 3) AS distance
FROM products
WHERE split = 'train'
ORDER BY embedding <-> (SELECT embedding FROM products WHERE id = 60000) LIMIT 10;

\echo 'the plan: an index scan, filtered on split as it goes (iterative scan)'
EXPLAIN (COSTS OFF) SELECT id FROM products WHERE split = 'train'
ORDER BY embedding <-> (SELECT embedding FROM products WHERE id = 60000) LIMIT 10;

\echo 'the same query without the index (exact, every row compared)'
SET enable_indexscan = off;
SELECT id, name FROM products WHERE split = 'train'
ORDER BY embedding <-> (SELECT embedding FROM products WHERE id = 60000) LIMIT 10;
RESET enable_indexscan;

\echo 'similar to a photo file, read by the server with pg_read_binary_file and embedded once'
SELECT id, name, round((embedding <-> (SELECT image_embed(pg_read_binary_file(:'query_image'))))::numeric, 3) AS distance
FROM products
ORDER BY embedding <-> (SELECT image_embed(pg_read_binary_file(:'query_image'))) LIMIT 10;

\echo 'filtered by category: the trousers closest to a dress'
SELECT id, name, round((embedding <-> (SELECT embedding FROM products WHERE id = 60013))::numeric, 3) AS distance
FROM products
WHERE category = 'Trouser'
ORDER BY embedding <-> (SELECT embedding FROM products WHERE id = 60013) LIMIT 5;

\echo 'shoes only (sandals, sneakers, ankle boots) similar to a sneaker'
SELECT id, name, round((embedding <-> (SELECT embedding FROM products WHERE id = 60009))::numeric, 3) AS distance
FROM products
WHERE category IN ('Sandal', 'Sneaker', 'Ankle boot') AND id <> 60009
ORDER BY embedding <-> (SELECT embedding FROM products WHERE id = 60009) LIMIT 10;

\echo 'how often the top-10 share the query category (100 test queries): learned vectors vs raw pixels'
SELECT round(avg(emb_hit)::numeric, 3) AS precision_at_10_model, round(avg(px_hit)::numeric, 3) AS precision_at_10_pixels
FROM (SELECT (SELECT count(*) FILTER (WHERE t.category = q.category) / 10.0
              FROM (SELECT category FROM products p WHERE p.split = 'train'
                    ORDER BY p.embedding <-> q.embedding LIMIT 10) t) AS emb_hit,
             (SELECT count(*) FILTER (WHERE t.category = q.category) / 10.0
              FROM (SELECT category FROM products p WHERE p.split = 'train'
                    ORDER BY p.pixels <-> q.pixels LIMIT 10) t) AS px_hit
      FROM products q WHERE q.split = 'test' ORDER BY q.id LIMIT 100) s;
