-- Visual search over the catalogue: exact top-10 by sequential scan. The vectors are raw
-- pixels until image_embed (VGG16) fills an embedding column; the queries keep their shape.
\timing on
\echo 'products similar to product 60000 (a test-split ankle boot), L2 distance'
SELECT p.id, p.name, round((p.pixels <-> q.pixels)::numeric, 1) AS distance
FROM products p, (SELECT pixels FROM products WHERE id = 60000) q
WHERE p.split = 'train'
ORDER BY p.pixels <-> q.pixels LIMIT 10;

\echo 'the same by cosine distance'
SELECT p.id, p.name, round((p.pixels <=> q.pixels)::numeric, 4) AS distance
FROM products p, (SELECT pixels FROM products WHERE id = 60000) q
WHERE p.split = 'train'
ORDER BY p.pixels <=> q.pixels LIMIT 10;

\echo 'filtered by category: the closest trousers to a dress'
SELECT p.id, p.name, round((p.pixels <-> q.pixels)::numeric, 1) AS distance
FROM products p, (SELECT pixels FROM products WHERE id = 60013) q
WHERE p.category = 'Trouser'
ORDER BY p.pixels <-> q.pixels LIMIT 5;

\echo 'shoes only (sandals, sneakers, ankle boots) similar to a sneaker'
SELECT p.id, p.name, round((p.pixels <-> q.pixels)::numeric, 1) AS distance
FROM products p, (SELECT pixels FROM products WHERE id = 60009) q
WHERE p.category IN ('Sandal', 'Sneaker', 'Ankle boot') AND p.id <> 60009
ORDER BY p.pixels <-> q.pixels LIMIT 10;

\echo 'how often the top-10 share the query category (100 test queries)'
SELECT round(avg(hit)::numeric, 3) AS precision_at_10
FROM (SELECT (SELECT count(*) FILTER (WHERE t.category = q.category) / 10.0
              FROM (SELECT category FROM products p WHERE p.split = 'train'
                    ORDER BY p.pixels <-> q.pixels LIMIT 10) t) AS hit
      FROM products q WHERE q.split = 'test' ORDER BY q.id LIMIT 100) s;
