-- Auto-embedding works whatever the caller's search_path: an application's own schema only, an
-- empty one, and a data-only pg_restore (which runs with an empty search_path, the trigger on).
\getenv datadir VS_TEST_DATA
\set modeldir :datadir '/models'
\set imgdir :datadir '/images/'
SET visual_search.model_dir = :'modeldir';
SET visual_search.default_model = 'tiny-vgg16';
SELECT current_database() AS regress_db \gset
CREATE SCHEMA app;
CREATE TABLE app.items (id int PRIMARY KEY, photo bytea, embedding public.embedding(32));
CREATE TABLE app.photos AS SELECT f AS name, pg_read_binary_file(:'imgdir' || f) AS img
FROM unnest(ARRAY['chelsea.png', 'rocket.jpg', 'sneaker.png']) f;
INSERT INTO app.items SELECT row_number() OVER (ORDER BY name), img FROM app.photos;

SET search_path = app;
SET client_min_messages = warning;
SELECT visual_search.enable_auto_embed('items', 'photo', 'embedding') AS backfilled;
RESET client_min_messages;
INSERT INTO items VALUES (10, (SELECT img FROM photos WHERE name = 'sneaker.png'));
INSERT INTO items SELECT 20 + row_number() OVER (ORDER BY name), img FROM photos;
UPDATE items SET photo = (SELECT img FROM photos WHERE name = 'rocket.jpg') WHERE id = 10;
SET search_path = '';
INSERT INTO app.items VALUES (30, (SELECT img FROM app.photos WHERE name = 'chelsea.png'));
SELECT visual_search.embed_column('app.items', 'photo', 'embedding') AS nothing_left;
SET search_path = app;
SET client_min_messages = warning;
SELECT visual_search.enable_auto_embed('items', 'photo', 'embedding', on_error => 'null') AS backfilled;
RESET client_min_messages;
INSERT INTO items VALUES (40, '\x00'::bytea);
SELECT visual_search.disable_auto_embed('items', 'embedding');
SET client_min_messages = error;
SELECT visual_search.enable_auto_embed('items', 'photo', 'embedding', model => 'tiny-vgg16', on_error => 'null') AS backfilled;
RESET client_min_messages;
INSERT INTO items VALUES (50, (SELECT img FROM photos WHERE name = 'sneaker.png'));
RESET search_path;
SELECT count(*) AS rows, count(embedding) AS embedded,
       count(*) FILTER (WHERE id <> 40 AND embedding <-> image_embed(photo) <= 1e-5 * vector_norm(embedding)) AS correct
FROM app.items;

-- a data-only dump of the table, restored into a database where it is auto-embedded
\setenv VS_DUMP_DB :regress_db
\! "$("${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}" --bindir)/pg_dump" --data-only -Fc -t app.items -f /tmp/visual_search_regress/search_path.dump "$VS_DUMP_DB"; echo "pg_dump: exit $?"
CREATE DATABASE vs_restore;
\c vs_restore
SET client_min_messages = warning;
CREATE EXTENSION visual_search;
RESET client_min_messages;
SELECT format('ALTER DATABASE vs_restore SET visual_search.model_dir = %L', :'modeldir') \gexec
ALTER DATABASE vs_restore SET visual_search.default_model = 'tiny-vgg16';
CREATE SCHEMA app;
CREATE TABLE app.items (id int PRIMARY KEY, photo bytea, embedding public.embedding(32));
SELECT visual_search.enable_auto_embed('app.items', 'photo', 'embedding', on_error => 'null') AS backfilled;
\! PGOPTIONS='-c client_min_messages=error' "$("${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}" --bindir)/pg_restore" --data-only -d vs_restore /tmp/visual_search_regress/search_path.dump; echo "pg_restore: exit $?"
SET visual_search.model_dir = :'modeldir';
SELECT count(*) AS rows_restored, count(embedding) AS embedded,
       count(*) FILTER (WHERE id <> 40 AND embedding <-> image_embed(photo, 'tiny-vgg16') <= 1e-5 * vector_norm(embedding)) AS correct
FROM app.items;
\c :regress_db
DROP DATABASE vs_restore;
SET client_min_messages = warning;
DROP SCHEMA app CASCADE;
RESET client_min_messages;
