-- The original design end to end: VGG16's flattened conv5 (7 x 7 x 512 = 25,088-d) from
-- image_embed, indexed by the quantized vs_hnsw and searched by Euclidean distance. The model is
-- full-width VGG16 with seeded random weights on 96 x 96 upscaled Fashion-MNIST photos
-- (scripts/make_vgg16_flatten.py); 300 products indexed, 20 others as query photos.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS visual_search;
RESET client_min_messages;
\getenv datadir VS_TEST_DATA
\set modeldir :datadir '/models'
\set products :datadir '/fashion_products.tsv'
SET visual_search.model_dir = :'modeldir';

SELECT architecture, input_size, dims, pooling, problem FROM visual_search.models() WHERE name = 'vgg16-flatten-96';

CREATE TABLE conv5_shop (id int PRIMARY KEY, name text, category text, split text, photo bytea, pixels text);
COPY conv5_shop FROM :'products';
DELETE FROM conv5_shop WHERE split = 'test' AND id >= 60020;   -- 20 query photos are enough, each costs 30 ms
ALTER TABLE conv5_shop ADD COLUMN conv5 embedding(25088), ALTER conv5 SET STORAGE EXTERNAL;
SET client_min_messages = warning;   -- its progress NOTICEs carry rows/s
SELECT visual_search.embed_column('conv5_shop', 'photo', 'conv5', 50, model => 'vgg16-flatten-96') AS embedded;
RESET client_min_messages;
SELECT count(*) AS products, min(vector_dims(conv5)) AS dims, bool_and(0 <= ALL (conv5::real[])) AS relu_outputs,
       count(DISTINCT conv5) AS distinct_vectors
FROM conv5_shop;

-- recall@10 of the quantized index against the exact scan, at the default ef_search
CREATE TABLE flat_items AS SELECT id, conv5 FROM conv5_shop WHERE split = 'train';
CREATE TABLE flat_queries AS SELECT id AS q, conv5::real[] AS v FROM conv5_shop WHERE split = 'test' ORDER BY id LIMIT 20;
SELECT index_recall('flat_items', 'flat_queries', 'conv5', '<->', 'embedding_l2_ops', 'quantize = on', 40) >= 0.95 AS recall_ok;

-- a query photo straight through image_embed: the index answers, and the photo's own product,
-- whose stored vector is the same bits, comes first
CREATE INDEX conv5_shop_idx ON conv5_shop USING vs_hnsw (conv5 embedding_l2_ops) WITH (quantize = on);
ANALYZE conv5_shop;
SET enable_seqscan = off;
EXPLAIN (COSTS OFF)
SELECT id FROM conv5_shop ORDER BY conv5 <-> image_embed((SELECT photo FROM conv5_shop WHERE id = 60000), 'vgg16-flatten-96') LIMIT 10;
SELECT q.id AS query_product, (SELECT id FROM conv5_shop ORDER BY conv5 <-> image_embed(q.photo, 'vgg16-flatten-96') LIMIT 1) AS first
FROM conv5_shop q WHERE q.id IN (7, 60000) ORDER BY q.id;
RESET enable_seqscan;
