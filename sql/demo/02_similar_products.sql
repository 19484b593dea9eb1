-- Visual search over the catalogue with image_embed vectors (the shipped fashion-vgg16 model),
-- exact top-10 by sequential scan.
\timing on
\echo 'products similar to product 60000 (a test-split ankle boot)'
SELECT p.id, p.name, round((p.embedding <-> q.embedding)::numeric, 3) AS distance
FROM products p, (SELECT embedding FROM products WHERE id = 60000) q
WHERE p.split = 'train'
ORDER BY p.embedding <-> q.embedding LIMIT 10;

\echo 'similar to a photo file, read by the server with pg_read_binary_file and embedded once'
SELECT p.id, p.name, round((p.embedding <-> q.e)::numeric, 3) AS distance
FROM products p, (SELECT image_embed(pg_read_binary_file(:'query_image')) AS e) q
ORDER BY p.embedding <-> q.e LIMIT 10;

\echo 'filtered by category: the trousers closest to a dress'
SELECT p.id, p.name, round((p.embedding <-> q.embedding)::numeric, 3) AS distance
FROM products p, (SELECT embedding FROM products WHERE id = 60013) q
WHERE p.category = 'Trouser'
ORDER BY p.embedding <-> q.embedding LIMIT 5;

\echo 'shoes only (sandals, sneakers, ankle boots) similar to a sneaker'
SELECT p.id, p.name, round((p.embedding <-> q.embedding)::numeric, 3) AS distance
FROM products p, (SELECT embedding FROM products WHERE id = 60009) q
WHERE p.category IN ('Sandal', 'Sneaker', 'Ankle boot') AND p.id <> 60009
ORDER BY p.embedding <-> q.embedding LIMIT 10;

\echo 'how often the top-10 share the query category (100 test queries): learned vectors vs raw pixels'
SELECT round(avg(emb_hit)::numeric, 3) AS precision_at_10_model, round(avg(px_hit)::numeric, 3) AS precision_at_10_pixels
FROM (SELECT (SELECT count(*) FILTER (WHERE t.category = q.category) / 10.0
              FROM (SELECT category FROM products p WHERE p.split = 'train'
                    ORDER BY p.embedding <-> q.embedding LIMIT 10) t) AS emb_hit,
             (SELECT count(*) FILTER (WHERE t.category = q.category) / 10.0
              FROM (SELECT category FROM products p WHERE p.split = 'train'
                    ORDER BY p.pixels <-> q.pixels LIMIT 10) t) AS px_hit
      FROM products q WHERE q.split = 'test' ORDER BY q.id LIMIT 100) s;
