-- Hostile images and settings from an ordinary role: small files whose pixels, resized size or
-- announced size are huge (scripts/make_bombs.py), limits raised past a superuser's ceiling, and
-- a thread setting walked through 1..64. Memory and cancel times: scripts/limits_test.sh.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS visual_search;
RESET client_min_messages;
\getenv datadir VS_TEST_DATA
\set modeldir :datadir '/models'
\set bombdir :datadir '/bombs/'
\set imgdir :datadir '/images/'
SET visual_search.model_dir = :'modeldir';
SET visual_search.default_model = 'tiny-vgg16';

CREATE TABLE bombs (name text PRIMARY KEY, img bytea);
INSERT INTO bombs SELECT f, pg_read_binary_file(:'bombdir' || f)
FROM unnest(ARRAY['png_1x100000000.png', 'png_1x1000000.png', 'png_1x40000000.png', 'png_40000000x1.png',
                  'png_2x20000000.png', 'png_6324x6324.png', 'tiff_1x1000000.tif',
                  'jpeg_6000x6000_baseline.jpg', 'jpeg_6000x6000_progressive.jpg', 'png_1x1.png']) f;
INSERT INTO bombs VALUES ('sneaker.png', pg_read_binary_file(:'imgdir' || 'sneaker.png'));
SELECT name, length(img) AS bytes FROM bombs ORDER BY name;
CREATE ROLE vs_alice;
GRANT SELECT ON bombs TO vs_alice;
SET ROLE vs_alice;

-- An ordinary role may raise its own limits, but the superuser's ceilings still apply: the
-- 100-megapixel PNG (194 KB) is refused from its header instead of asking for 51 GB.
SET visual_search.max_image_pixels = 2147483647;
SET visual_search.max_image_bytes = 2147483647;
SELECT outcome($$SELECT image_embed(img) FROM bombs WHERE name = 'png_1x100000000.png'$$);
RESET visual_search.max_image_pixels;
RESET visual_search.max_image_bytes;
SELECT outcome($$SELECT image_embed(img) FROM bombs WHERE name = 'png_1x100000000.png'$$) AS at_the_defaults;
-- and the ceilings are a superuser's
SELECT q AS statement, outcome(q) FROM (VALUES
  ($$SET visual_search.max_image_pixels_ceiling = 2147483647$$),
  ($$SET visual_search.max_image_bytes_ceiling = 2147483647$$),
  ($$SET visual_search.max_threads = 64$$),
  ($$SET visual_search.max_images_per_call = 100000$$),
  ($$SET visual_search.embed_in = 'backend'$$),
  ($$ALTER ROLE vs_alice SET visual_search.max_image_pixels_ceiling = 2147483647$$)
) t(q);
-- An array of more images than max_images_per_call is refused before any is collected: 80
-- million empty images (a 320 MB array) once asked for 1 GiB at once and aborted the backend.
SELECT outcome($$SELECT image_embed(array_fill(''::bytea, ARRAY[10001]))$$) AS ten_thousand_and_one;
RESET ROLE;
SET visual_search.max_images_per_call = 2;
SELECT outcome($$SELECT image_embed(ARRAY[img, img, img]) FROM bombs WHERE name = 'sneaker.png'$$) AS three_of_two;
SELECT outcome($$SELECT visual_search.embed_profile(ARRAY[img, img, img], 'tiny-vgg16') FROM bombs WHERE name = 'sneaker.png'$$) AS profile_three_of_two;
SELECT array_length(image_embed(ARRAY[img, img]), 1) AS two_of_two FROM bombs WHERE name = 'sneaker.png';
RESET visual_search.max_images_per_call;
SET ROLE vs_alice;

-- Thin, wide and tall images: only the crop's window of the resized image is computed
-- (1 x 1,000,000 resizes to 256 x 256,000,000).
SELECT name, outcome(format('SELECT image_embed(img) FROM bombs WHERE name = %L', name))
FROM bombs WHERE name ~ '^(png|tiff)_' AND name NOT IN ('png_1x100000000.png', 'png_1x1.png') ORDER BY name;
-- A thin image is a flat black one once resized: all of its vector is the black square's.
SELECT t.img IS DISTINCT FROM b.img AND image_embed(t.img) = image_embed(b.img) AS thin_is_black
FROM bombs t, bombs b WHERE t.name = 'png_1x1000000.png' AND b.name = 'png_1x1.png';
-- A model without a crop gets the whole resized image: refused past max_image_pixels.
SELECT outcome($$SELECT image_embed(img, 'tiny-nocrop') FROM bombs WHERE name = 'png_1x1000000.png'$$);
SELECT vector_dims(image_embed(img, 'tiny-nocrop')) AS nocrop_dims FROM bombs WHERE name = 'sneaker.png';
-- An array is decoded a chunk at a time, each image freed once resized.
SELECT array_length(image_embed(array_agg(img)), 1) AS embedded
FROM (SELECT img FROM bombs, generate_series(1, 3) WHERE name = 'png_6324x6324.png') s;

-- JPEG frame headers announcing 6000 x 6000 over 16 x 16 pixels of data, baseline and progressive.
SELECT name, outcome(format('SELECT image_embed(img) FROM bombs WHERE name = %L', name))
FROM bombs WHERE name LIKE 'jpeg_%' ORDER BY name;

-- visual_search.threads through 1..64: one pool, at most visual_search.max_threads (4) threads.
SET visual_search.threads = 64;
DO $$
BEGIN
  FOR t IN 1..64 LOOP
    EXECUTE format('SET visual_search.threads = %s', t);
    PERFORM image_embed(ARRAY[img, img, img, img]) FROM bombs WHERE name = 'sneaker.png';
  END LOOP;
END $$;
RESET ROLE;
SELECT visual_search.torch_info();
SELECT count(*) <= 12 AS few_threads FROM pg_ls_dir('/proc/self/task');
RESET visual_search.threads;
DROP TABLE bombs;
DROP ROLE vs_alice;
