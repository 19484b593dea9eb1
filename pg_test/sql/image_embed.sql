-- image_embed: images in, VGG16 vectors out, inside the backend. The model is a width-1/16 VGG16
-- with seeded weights written by scripts/make_golden.py together with torchvision's outputs.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS visual_search;
RESET client_min_messages;
\getenv datadir VS_TEST_DATA
\set modeldir :datadir '/models'
\set imgdir :datadir '/images/'
SET visual_search.model_dir = :'modeldir';
SET visual_search.default_model = 'tiny-vgg16';

SELECT name, architecture, dims, pooling, weights_present, problem IS NOT NULL AS has_problem
FROM visual_search.models() ORDER BY name;

CREATE TABLE imgs (name text PRIMARY KEY, img bytea);
INSERT INTO imgs SELECT f, pg_read_binary_file(:'imgdir' || f)
FROM unnest(ARRAY['chelsea.png', 'rocket.jpg', 'sneaker.png', 'chelsea_exif6.jpg',
                  'chelsea.crop.png', 'rocket.crop.png', 'sneaker.crop.png']) f;

-- dimensions and determinism: the same bytes give the same vector, bit for bit
SELECT name, vector_dims(image_embed(img)) AS dims,
       image_embed(img) = image_embed(img, 'tiny-vgg16') AS default_is_named,
       embedding_send(image_embed(img)) = embedding_send(image_embed(img)) AS bitwise_repeatable
FROM imgs WHERE name NOT LIKE '%crop%' ORDER BY name;

-- torchvision's vectors (golden.json): the whole pipeline on lossless images, and the network on
-- torchvision's own preprocessed crops; error relative to the vector's largest component
CREATE TABLE golden AS
SELECT key AS name, value->>'crop' AS crop,
       ARRAY(SELECT jsonb_array_elements_text(value->'vector')::float8) AS v
FROM jsonb_each(pg_read_file(:'datadir' || '/golden.json')::jsonb->'images');
CREATE FUNCTION pg_temp.rel_err(a embedding, b float8[]) RETURNS float8 LANGUAGE sql AS $$
  SELECT max(abs(x - y)) / max(abs(y)) FROM unnest(a::float8[], b) AS t(x, y) $$;
SELECT g.name,
       pg_temp.rel_err(image_embed(c.img, 'tiny-vgg16-224'), g.v) <= 1e-4 AS network_matches_torch,
       CASE WHEN g.name LIKE '%.png' THEN pg_temp.rel_err(image_embed(i.img, 'tiny-vgg16'), g.v) <= 1e-4 END
           AS pipeline_matches_torch
FROM golden g JOIN imgs i ON i.name = g.name JOIN imgs c ON c.name = g.crop ORDER BY g.name;

-- EXIF orientation: the rotated-with-tag JPEG embeds like the upright image
SELECT (SELECT image_embed(img) FROM imgs WHERE name = 'chelsea_exif6.jpg')
   <=> (SELECT image_embed(img) FROM imgs WHERE name = 'chelsea.png') < 0.01 AS exif_applied;

-- the batch form: one forward pass for the array; oneDNN picks kernels by batch size, so vectors
-- agree with the single-image path to rounding (each path on its own is bitwise repeatable)
SELECT (SELECT bool_and(s.e <-> b.e <= 1e-5 * vector_norm(s.e))
        FROM (SELECT name, image_embed(img) AS e FROM imgs WHERE name NOT LIKE '%crop%') s
        JOIN (SELECT unnest(array_agg(name ORDER BY name)) AS name, unnest(image_embed(array_agg(img ORDER BY name))) AS e
              FROM imgs WHERE name NOT LIKE '%crop%') b USING (name)) AS batch_matches_single,
       (SELECT embedding_send((image_embed(array_agg(img ORDER BY name)))[2]) = embedding_send((image_embed(array_agg(img ORDER BY name)))[2])
        FROM imgs WHERE name NOT LIKE '%crop%') AS batch_repeatable,
       array_length(image_embed(ARRAY[NULL, (SELECT img FROM imgs WHERE name = 'sneaker.png')]::bytea[]), 1) AS n,
       (image_embed(ARRAY[NULL, (SELECT img FROM imgs WHERE name = 'sneaker.png')]::bytea[]))[1] IS NULL AS null_kept;

-- a generated column and an expression index can call it (IMMUTABLE)
CREATE TABLE products (id int PRIMARY KEY, img bytea,
                       e embedding(32) GENERATED ALWAYS AS (image_embed(img, 'tiny-vgg16')) STORED);
INSERT INTO products SELECT row_number() OVER (ORDER BY name), img FROM imgs WHERE name NOT LIKE '%crop%';
CREATE INDEX ON products ((image_embed(img, 'tiny-vgg16')));
SELECT id FROM products ORDER BY e <-> (SELECT image_embed(img) FROM imgs WHERE name = 'chelsea.png') LIMIT 2;

-- embed_column fills NULL embeddings in batches
CREATE TABLE catalogue (id int PRIMARY KEY, img bytea, e embedding(32));
INSERT INTO catalogue SELECT g, (SELECT img FROM imgs ORDER BY name OFFSET g % 7 LIMIT 1) FROM generate_series(1, 23) g;
UPDATE catalogue SET e = image_embed(img) WHERE id = 1;
SET client_min_messages = warning;
SELECT visual_search.embed_column('catalogue', 'img', 'e', 5);
RESET client_min_messages;
SELECT count(*) FILTER (WHERE e IS NULL) AS still_null,
       count(*) FILTER (WHERE e <-> image_embed(img) <= 1e-5 * vector_norm(e)) AS correct FROM catalogue;

-- ORDER BY e <-> image_embed($1) under a generic plan evaluates the call for every row; the call
-- site keeps its last input and vector, so the network runs once for the query, not 200 times
CREATE TABLE many AS SELECT g AS id, (SELECT image_embed(img) FROM imgs WHERE name = 'sneaker.png') AS e
FROM generate_series(1, 200) g;
PREPARE by_photo(bytea) AS SELECT count(*) FROM (SELECT id FROM many ORDER BY e <-> image_embed($1) LIMIT 5) s;
SET plan_cache_mode = force_generic_plan;
SELECT img AS photo FROM imgs WHERE name = 'sneaker.png' \gset
SELECT images_embedded AS before FROM visual_search.backend_stats() \gset
EXECUTE by_photo(:'photo');
SELECT images_embedded - :before AS images_through_the_network FROM visual_search.backend_stats();
RESET plan_cache_mode;
-- different images at one call site still get their own vectors
SELECT count(DISTINCT image_embed(img)) AS distinct_vectors FROM imgs, generate_series(1, 3);

-- models written by the train command (from IDX files, and from the rows of a SQL query) load
-- like any other; their vectors are L2-normalised
SELECT m AS model, vector_dims(image_embed(img, m)) AS dims, round(vector_norm(image_embed(img, m))::numeric, 4) AS norm
FROM imgs, unnest(ARRAY['trained-tiny', 'trained-from-sql']) m WHERE name = 'sneaker.png' ORDER BY m;

-- hostile input and broken models: an ERROR with a SQLSTATE, never a crash
CREATE TABLE bad AS SELECT
  (SELECT img FROM imgs WHERE name = 'sneaker.png') AS png,
  (SELECT img FROM imgs WHERE name = 'rocket.jpg') AS jpeg;
SELECT q AS statement, outcome(q) FROM (VALUES
  ($$SELECT image_embed(''::bytea)$$),
  ($$SELECT image_embed(decode(repeat('5a17c3', 300), 'hex'))$$),
  ($$SELECT image_embed(convert_to('a photo of a red shoe', 'UTF8'))$$),
  ($$SELECT image_embed(substring(png FROM 1 FOR 120)) FROM bad$$),
  ($$SELECT image_embed(substring(jpeg FROM 1 FOR 2000)) FROM bad$$),
  ($$SELECT image_embed(pg_read_binary_file('/tmp/visual_search_regress/data/images/bomb.png'))$$),
  ($$SELECT image_embed(ARRAY[png, ''::bytea]) FROM bad$$),
  ($$SELECT image_embed(png, 'no-such-model') FROM bad$$),
  ($$SELECT image_embed(png, '../../etc') FROM bad$$),
  ($$SELECT image_embed(png, 'broken-sha') FROM bad$$),
  ($$SELECT image_embed(png, 'broken-missing') FROM bad$$),
  ($$SELECT image_embed(png, 'broken-corrupt') FROM bad$$),
  ($$SELECT image_embed(png, 'broken-manifest') FROM bad$$),
  ($$SET visual_search.max_image_bytes = 100; SELECT image_embed(png) FROM bad$$),
  ($$SET visual_search.max_image_pixels = 100; SELECT image_embed(png) FROM bad$$),
  ($$SET visual_search.device = 'cuda:7'; SELECT image_embed(png) FROM bad$$),
  ($$SET visual_search.device = 'tpu'; SELECT image_embed(png) FROM bad$$)
) t(q);
RESET visual_search.max_image_bytes;
RESET visual_search.max_image_pixels;
RESET visual_search.device;
SELECT vector_dims(image_embed(png)) AS still_works FROM bad;

-- only a superuser may change where models are read from
CREATE ROLE vs_plain_user;
SET ROLE vs_plain_user;
SELECT outcome($$SET visual_search.model_dir = '/tmp'$$);
RESET ROLE;
DROP ROLE vs_plain_user;
