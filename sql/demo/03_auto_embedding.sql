-- A new product arrives: the auto-embedding trigger fills its vector on INSERT, and it is
-- searchable at once. (Removed again at the end, so that the demo can be re-run.)
\echo 'a new product, inserted with its photo only'
INSERT INTO products (id, name, category, split, image)
VALUES (100000, 'New sneaker', 'Sneaker', 'test', pg_read_binary_file(:'query_image'));
SELECT id, name, vector_dims(embedding) AS dims_filled_by_trigger FROM products WHERE id = 100000;
\echo 'its nearest catalogue products (the index took it in with the INSERT)'
SELECT id, name, round((embedding <-> (SELECT embedding FROM products WHERE id = 100000))::numeric, 3) AS distance
FROM products
WHERE id <> 100000
ORDER BY embedding <-> (SELECT embedding FROM products WHERE id = 100000) LIMIT 5;
\echo 'a broken upload fails its INSERT with the row and the reason, and nothing is stored'
\set ON_ERROR_STOP off
INSERT INTO products (id, name, category, split, image) VALUES (100001, 'Broken', 'Sneaker', 'test', '\x89504e47'::bytea);
\set ON_ERROR_STOP on
DELETE FROM products WHERE id >= 100000;
