-- Auto-embedding: a trigger fills the embedding on INSERT (single, multi-row, COPY) and on UPDATE
-- of the image, backfills existing rows, and can be removed. A bad image fails its statement,
-- naming the row, or (on_error => 'null') leaves NULL with a WARNING.
\getenv datadir VS_TEST_DATA
\set modeldir :datadir '/models'
\set imgdir :datadir '/images/'
SET visual_search.model_dir = :'modeldir';
SET visual_search.default_model = 'tiny-vgg16';

CREATE TABLE shop (id int PRIMARY KEY, name text, photo bytea, embedding embedding(32));
CREATE TABLE photos AS SELECT f AS name, pg_read_binary_file(:'imgdir' || f) AS img
FROM unnest(ARRAY['chelsea.png', 'rocket.jpg', 'sneaker.png']) f;
-- rows already there before auto-embedding is enabled: backfilled
INSERT INTO shop SELECT row_number() OVER (ORDER BY name), 'old ' || name, img FROM photos;
SET client_min_messages = warning;
SELECT visual_search.enable_auto_embed('shop', 'photo', 'embedding') AS backfilled;
RESET client_min_messages;

INSERT INTO shop VALUES (10, 'single', (SELECT img FROM photos WHERE name = 'sneaker.png'));
INSERT INTO shop SELECT 20 + row_number() OVER (ORDER BY name), 'multi ' || name, img FROM photos;
SELECT current_setting('data_directory') || '/vs_shop.bin' AS copyfile \gset
COPY (SELECT (30 + row_number() OVER (ORDER BY name))::int, 'copy ' || name, img FROM photos) TO :'copyfile' (FORMAT binary);
COPY shop (id, name, photo) FROM :'copyfile' (FORMAT binary);
INSERT INTO shop VALUES (40, 'no photo yet', NULL);

-- every row with a photo has the vector image_embed gives for it
SELECT count(*) AS rows, count(embedding) AS embedded,
       count(*) FILTER (WHERE embedding <-> image_embed(photo) <= 1e-5 * vector_norm(embedding)) AS correct
FROM shop;

-- UPDATE of the photo refreshes the vector; other updates leave it alone
UPDATE shop SET photo = (SELECT img FROM photos WHERE name = 'chelsea.png') WHERE id IN (10, 40);
SELECT id, embedding = image_embed((SELECT img FROM photos WHERE name = 'chelsea.png')) AS refreshed FROM shop WHERE id IN (10, 40) ORDER BY id;
UPDATE shop SET name = 'renamed' WHERE id = 10;
SELECT embedding IS NOT NULL AS kept FROM shop WHERE id = 10;

-- a bad image fails the statement with the row's key and the reason; nothing of it is stored
INSERT INTO shop VALUES (50, 'broken', '\x89504e470d0a1a0a0000'::bytea);
SELECT outcome($$INSERT INTO shop VALUES (51, 'ok', (SELECT img FROM photos LIMIT 1)), (52, 'text', convert_to('not an image', 'UTF8'))$$);
SELECT count(*) AS none_of_the_failed_statements FROM shop WHERE id >= 50;

-- on_error => 'null': the row is stored with a NULL vector and a WARNING
SET client_min_messages = warning;
SELECT visual_search.enable_auto_embed('shop', 'photo', 'embedding', on_error => 'null');
RESET client_min_messages;
INSERT INTO shop VALUES (60, 'broken but kept', '\xffd8ffe000'::bytea), (61, 'fine', (SELECT img FROM photos LIMIT 1));
SELECT id, embedding IS NULL AS left_null FROM shop WHERE id >= 60 ORDER BY id;

-- embed_column in the same mode skips bad rows instead of stopping
CREATE TABLE backlog (id int PRIMARY KEY, photo bytea, embedding embedding(32));
INSERT INTO backlog SELECT g, CASE WHEN g % 4 = 0 THEN '\x00'::bytea ELSE (SELECT img FROM photos ORDER BY name OFFSET g % 3 LIMIT 1) END
FROM generate_series(1, 12) g;
SELECT outcome($$SELECT visual_search.embed_column('backlog', 'photo', 'embedding', 5)$$);
SET client_min_messages = error;
SELECT visual_search.embed_column('backlog', 'photo', 'embedding', 5, on_error => 'null') AS embedded;
RESET client_min_messages;
SELECT count(embedding) AS embedded, count(*) - count(embedding) AS left_null FROM backlog;

-- disable: new rows are no longer embedded
SELECT visual_search.disable_auto_embed('shop', 'embedding');
INSERT INTO shop VALUES (70, 'after disable', (SELECT img FROM photos LIMIT 1));
SELECT embedding IS NULL AS not_embedded FROM shop WHERE id = 70;
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgrelid = 'shop'::regclass AND NOT tgisinternal;

-- wrong columns are refused
SELECT outcome($$SELECT visual_search.enable_auto_embed('shop', 'name', 'embedding')$$);
SELECT outcome($$SELECT visual_search.enable_auto_embed('shop', 'photo', 'name')$$);
SELECT outcome($$SELECT visual_search.enable_auto_embed('shop', 'photo', 'embedding', on_error => 'skip')$$);
