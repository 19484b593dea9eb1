-- Auto-embedding in the background (enable_auto_embed(..., mode => 'async')): INSERT, multi-row
-- INSERT, COPY and UPDATE OF the image store the row without its new vector and queue it in the
-- same transaction; the database's drainer embeds it through the service. Rolled-back rows leave
-- nothing queued, a row updated twice gets its newest image's vector, a deleted one is skipped, a
-- bad image is recorded (22P03) without holding up the rest, retry_failed queues it again,
-- disable_auto_embed drops what is still queued. Ordinary roles: their own tables only.
\getenv datadir VS_TEST_DATA
\set modeldir :datadir '/models'
\set imgdir :datadir '/images/'
SET visual_search.model_dir = :'modeldir';
SET visual_search.default_model = 'tiny-vgg16';
-- The drainer is a background worker of this database: it reads the database's settings (and
-- the server's), not this session's.
-- (A DO block, so that the expected output does not hold this checkout's path.)
DO $$ BEGIN
  EXECUTE format('ALTER DATABASE %I SET visual_search.model_dir = %L', current_database(),
                 current_setting('visual_search.model_dir'));
END $$;

CREATE TABLE aphotos AS SELECT f AS name, pg_read_binary_file(:'imgdir' || f) AS img
FROM unnest(ARRAY['chelsea.png', 'rocket.jpg', 'sneaker.png']) f;
CREATE TABLE ashop (id int PRIMARY KEY, name text, photo bytea, embedding embedding(32));
INSERT INTO ashop SELECT row_number() OVER (ORDER BY name), 'old ' || name, img FROM aphotos;

-- rows already there are queued, not embedded by enable_auto_embed (inside the transaction the
-- drainer cannot have taken them yet)
BEGIN;
SELECT visual_search.enable_auto_embed('ashop', 'photo', 'embedding', mode => 'async') AS queued;
SELECT count(embedding) AS embedded FROM ashop;
SELECT tbl, embedding_col, pending, in_progress, done, failed, oldest_pending_age IS NOT NULL AS waiting
FROM visual_search.embedding_queues;
SELECT tgname, tgtype FROM pg_trigger WHERE tgrelid = 'ashop'::regclass ORDER BY tgname;
COMMIT;
SELECT visual_search.wait_for_embeddings('ashop', '60 s') AS drained;
SELECT count(*) AS rows, count(*) FILTER (WHERE embedding = image_embed(photo)) AS right FROM ashop;

-- INSERT, multi-row INSERT, COPY, UPDATE OF the image: no new vector yet, queued in the same
-- transaction; an UPDATE of another column and a row without a photo queue nothing
SELECT current_setting('data_directory') || '/vs_ashop.bin' AS copyfile \gset
COPY (SELECT (30 + row_number() OVER (ORDER BY name))::int, 'copy ' || name, img FROM aphotos) TO :'copyfile' (FORMAT binary);
BEGIN;
INSERT INTO ashop VALUES (10, 'single', (SELECT img FROM aphotos WHERE name = 'sneaker.png'));
INSERT INTO ashop SELECT 20 + row_number() OVER (ORDER BY name), 'multi ' || name, img FROM aphotos;
COPY ashop (id, name, photo) FROM :'copyfile' (FORMAT binary);
UPDATE ashop SET photo = (SELECT img FROM aphotos WHERE name = 'rocket.jpg') WHERE id = 1;
UPDATE ashop SET name = 'renamed' WHERE id = 2;
INSERT INTO ashop VALUES (40, 'no photo yet', NULL);
SELECT count(*) FILTER (WHERE embedding IS NULL) AS without_vector,
       count(*) FILTER (WHERE id = 1 AND embedding <> image_embed(photo)) AS stale
FROM ashop;
SELECT pending FROM visual_search.embedding_queues WHERE tbl = 'ashop'::regclass;
COMMIT;
SELECT visual_search.wait_for_embeddings('ashop') AS drained;
SELECT count(*) AS rows, count(embedding) AS embedded,
       count(*) FILTER (WHERE embedding = image_embed(photo)) AS right FROM ashop;
SELECT pending, in_progress, done, failed, oldest_pending_age FROM visual_search.embedding_queues
WHERE tbl = 'ashop'::regclass;

-- a rolled-back insert leaves nothing queued
BEGIN;
INSERT INTO ashop VALUES (50, 'rolled back', (SELECT img FROM aphotos LIMIT 1));
ROLLBACK;
SELECT count(*) AS queued FROM visual_search.embedding_queue;

-- updated twice, deleted, and with a new key before their turn (in one transaction, so the
-- drainer cannot come in between): the newest image wins, the deleted row is skipped, the row
-- is found under its new key
BEGIN;
UPDATE ashop SET photo = (SELECT img FROM aphotos WHERE name = 'rocket.jpg') WHERE id = 10;
UPDATE ashop SET photo = (SELECT img FROM aphotos WHERE name = 'chelsea.png') WHERE id = 10;
INSERT INTO ashop VALUES (70, 'deleted', (SELECT img FROM aphotos LIMIT 1));
DELETE FROM ashop WHERE id = 70;
UPDATE ashop SET id = 72, photo = (SELECT img FROM aphotos WHERE name = 'sneaker.png') WHERE id = 21;
COMMIT;
SELECT visual_search.wait_for_embeddings('ashop') AS drained;
SELECT id, embedding = image_embed((SELECT img FROM aphotos WHERE name = 'chelsea.png')) AS newest FROM ashop WHERE id = 10;
SELECT id, embedding = image_embed(photo) AS right FROM ashop WHERE id IN (21, 70, 72) ORDER BY id;
SELECT count(*) AS queued FROM visual_search.embedding_queue;

-- a bad image is recorded with its SQLSTATE, its vector stays NULL, the others are embedded
INSERT INTO ashop VALUES (60, 'broken', '\x89504e470d0a1a0a0000'::bytea), (61, 'fine', (SELECT img FROM aphotos WHERE name = 'rocket.jpg')),
                         (62, 'text', convert_to('not an image', 'UTF8'));
SELECT visual_search.wait_for_embeddings('ashop') AS drained;
SELECT id, embedding IS NULL AS left_null FROM ashop WHERE id >= 60 ORDER BY id;
SELECT tbl, embedding_col, key, sqlstate, message, attempts, failed_at IS NOT NULL AS failed
FROM visual_search.embedding_failures ORDER BY key;
SELECT pending, failed FROM visual_search.embedding_queues WHERE tbl = 'ashop'::regclass;
-- a new image queues the row again, and its failure goes once it is embedded
UPDATE ashop SET photo = (SELECT img FROM aphotos WHERE name = 'sneaker.png') WHERE id = 60;
SELECT visual_search.wait_for_embeddings('ashop') AS drained;
SELECT id, embedding = image_embed(photo) AS right FROM ashop WHERE id = 60;
SELECT key, attempts FROM visual_search.embedding_failures;
-- retry_failed queues a failure again: still bad, it fails again (a second attempt) ...
SELECT visual_search.retry_failed('ashop') AS retried;
SELECT visual_search.wait_for_embeddings('ashop') AS drained;
SELECT key, sqlstate, attempts FROM visual_search.embedding_failures;
-- ... and once the image is fixed (here without the trigger, which would have queued it) it succeeds
ALTER TABLE ashop DISABLE TRIGGER visual_search_requeue_embedding;
UPDATE ashop SET photo = (SELECT img FROM aphotos WHERE name = 'rocket.jpg') WHERE id = 62;
ALTER TABLE ashop ENABLE TRIGGER visual_search_requeue_embedding;
SELECT visual_search.retry_failed() AS retried;
SELECT visual_search.wait_for_embeddings('ashop') AS drained;
SELECT id, embedding = image_embed(photo) AS right FROM ashop WHERE id = 62;
SELECT count(*) AS failures FROM visual_search.embedding_failures;
SELECT count(*) AS rows, count(embedding) AS embedded, count(*) FILTER (WHERE embedding = image_embed(photo)) AS right,
       (SELECT done FROM visual_search.embedding_queues WHERE tbl = 'ashop'::regclass) AS done
FROM ashop;

-- refused
CREATE TABLE anokey (id int, photo bytea, embedding embedding(32));
SELECT outcome($$SELECT visual_search.enable_auto_embed('anokey', 'photo', 'embedding', mode => 'async')$$);
\set SHOW_CONTEXT never
SELECT visual_search.enable_auto_embed('anokey', 'photo', 'embedding', mode => 'async');
\set SHOW_CONTEXT errors
SELECT outcome($$SELECT visual_search.enable_auto_embed('ashop', 'photo', 'embedding', mode => 'later')$$);
CREATE TABLE aparted (id int PRIMARY KEY, photo bytea, embedding embedding(32)) PARTITION BY RANGE (id);
SELECT outcome($$SELECT visual_search.enable_auto_embed('aparted', 'photo', 'embedding', mode => 'async')$$);
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT outcome($$SELECT visual_search.wait_for_embeddings('ashop')$$) AS in_repeatable_read;
COMMIT;
BEGIN;
INSERT INTO ashop VALUES (80, 'mine', (SELECT img FROM aphotos LIMIT 1));
SELECT outcome($$SELECT visual_search.wait_for_embeddings('ashop')$$) AS in_the_queueing_transaction;
ROLLBACK;
SELECT visual_search.wait_for_embeddings('ashop', '0 s') AS nothing_to_wait_for;

-- ordinary roles: a table's owner sets it up, the drainer writes as that role, the queue's tables
-- stay closed, the views show only tables the role may read
SET client_min_messages = warning;
CREATE ROLE vs_async_owner;
CREATE ROLE vs_async_other;
RESET client_min_messages;
GRANT USAGE ON SCHEMA visual_search TO vs_async_owner, vs_async_other;
GRANT CREATE ON SCHEMA public TO vs_async_owner;
GRANT SELECT ON aphotos TO vs_async_owner;
SET ROLE vs_async_owner;
CREATE TABLE owned (id int PRIMARY KEY, photo bytea, embedding embedding(32));
CREATE TABLE owned_log (who name, what text);
CREATE FUNCTION owned_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.owned_log VALUES (current_user, TG_OP); RETURN NEW; END $$;
CREATE TRIGGER owned_audit BEFORE UPDATE ON owned FOR EACH ROW EXECUTE FUNCTION owned_audit();
SELECT visual_search.enable_auto_embed('owned', 'photo', 'embedding', mode => 'async') AS queued;
INSERT INTO owned SELECT 1, img FROM aphotos WHERE name = 'sneaker.png';
SELECT visual_search.wait_for_embeddings('owned') AS drained;
SELECT id, embedding IS NOT NULL AS embedded FROM owned;
SELECT who, what FROM owned_log;
SELECT tbl, pending, done, failed FROM visual_search.embedding_queues;
SELECT outcome($$SELECT count(*) FROM visual_search.embedding_queue$$) AS read_queue;
SELECT outcome($$INSERT INTO visual_search.embedding_queue (tbl, embedding_col, key) VALUES ('ashop', 'embedding', '{1}')$$) AS write_queue;
SELECT outcome($$SELECT count(*) FROM visual_search.auto_embed_tables$$) AS read_setup;
SELECT outcome($$SELECT visual_search.ensure_drainer()$$) AS ensure_drainer;
SELECT outcome($$SELECT visual_search.auto_embed_register('ashop', 'embedding', 'photo', NULL, '{id}')$$) AS register_other;
SELECT outcome($$SELECT visual_search.auto_embed_unregister('ashop', 'embedding')$$) AS unregister_other;
SELECT outcome($$SELECT visual_search.retry_failed('ashop')$$) AS retry_other;
SELECT outcome($$SELECT visual_search.wait_for_embeddings('ashop')$$) AS wait_other;
SELECT visual_search.retry_failed() AS retried_own;
-- a trigger of her own on the queue's trigger function queues nothing for a table not set up
CREATE TABLE sneaky (id int PRIMARY KEY, photo bytea, embedding embedding(32));
CREATE TRIGGER sneak AFTER INSERT ON sneaky REFERENCING NEW TABLE AS visual_search_new
  FOR EACH STATEMENT EXECUTE FUNCTION visual_search.auto_embed_enqueue('embedding');
SELECT outcome($$INSERT INTO sneaky VALUES (1, '\x00')$$) AS sneaky_insert;
RESET ROLE;
SELECT owner FROM visual_search.auto_embed_tables WHERE tbl = 'owned'::regclass;
SET ROLE vs_async_other;
SELECT count(*) AS tables_seen FROM visual_search.embedding_queues;
SELECT outcome($$SELECT visual_search.disable_auto_embed('owned', 'embedding')$$) AS disable_other;
RESET ROLE;
SET ROLE vs_async_owner;
SELECT visual_search.disable_auto_embed('owned', 'embedding');
RESET ROLE;

-- disable_auto_embed with work pending drops it: the rows keep their (NULL) vector
BEGIN;
INSERT INTO ashop SELECT 100 + g, 'pending', (SELECT img FROM aphotos WHERE name = 'sneaker.png') FROM generate_series(1, 20) g;
SELECT visual_search.disable_auto_embed('ashop', 'embedding');
COMMIT;
SELECT count(*) FILTER (WHERE embedding IS NULL) AS left_null FROM ashop WHERE id > 100;
SELECT count(*) AS queued FROM visual_search.embedding_queue;
SELECT count(*) AS setups FROM visual_search.auto_embed_tables WHERE tbl = 'ashop'::regclass;
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgrelid = 'ashop'::regclass AND NOT tgisinternal;

-- switching modes: sync takes over from async (and its queue), async from sync
SET client_min_messages = warning;
SELECT visual_search.enable_auto_embed('ashop', 'photo', 'embedding', mode => 'async') AS queued;
SELECT visual_search.enable_auto_embed('ashop', 'photo', 'embedding') IS NOT NULL AS backfilled;
RESET client_min_messages;
SELECT tgname FROM pg_trigger WHERE tgrelid = 'ashop'::regclass AND NOT tgisinternal ORDER BY 1;
SELECT count(*) AS queued, (SELECT count(*) FROM visual_search.auto_embed_tables) AS setups FROM visual_search.embedding_queue;
SELECT count(*) FILTER (WHERE embedding IS NULL AND photo IS NOT NULL) AS without_vector FROM ashop;
BEGIN;
SELECT visual_search.enable_auto_embed('ashop', 'photo', 'embedding', mode => 'async') AS queued;
SELECT tgname FROM pg_trigger WHERE tgrelid = 'ashop'::regclass AND NOT tgisinternal ORDER BY 1;
COMMIT;

-- a dropped embedding column, or table, takes its set-up and queue along
BEGIN;
INSERT INTO ashop VALUES (90, 'queued', (SELECT img FROM aphotos LIMIT 1));
ALTER TABLE ashop DROP COLUMN embedding;
COMMIT;
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgrelid = 'ashop'::regclass AND NOT tgisinternal;
SELECT count(*) AS setups, (SELECT count(*) FROM visual_search.embedding_queue) AS queued FROM visual_search.auto_embed_tables;
ALTER TABLE ashop ADD COLUMN embedding embedding(32);
BEGIN;
SELECT visual_search.enable_auto_embed('ashop', 'photo', 'embedding', mode => 'async') > 0 AS queued;
DROP TABLE ashop;
COMMIT;
SELECT count(*) AS setups, (SELECT count(*) FROM visual_search.embedding_queue) AS queued FROM visual_search.auto_embed_tables;

-- pg_dump keeps the set-up and the queue; every function of the queue pins its search_path
SELECT unnest(extconfig)::regclass AS dumped FROM pg_extension WHERE extname = 'visual_search' ORDER BY 1::text;
SELECT p.oid::regprocedure AS function, p.prosecdef AS security_definer, p.proconfig
FROM pg_proc p WHERE p.pronamespace = 'visual_search'::regnamespace
  AND p.proname IN ('auto_embed_enqueue', 'auto_embed_dropped', 'auto_embed_register', 'auto_embed_unregister',
                    'ensure_drainer', 'retry_failed', 'wait_for_embeddings', 'enable_auto_embed', 'disable_auto_embed')
ORDER BY 1::text;

SET client_min_messages = warning;
DROP TABLE owned, owned_log, sneaky, anokey, aparted, aphotos;
DROP FUNCTION owned_audit();
REVOKE CREATE ON SCHEMA public FROM vs_async_owner;
DROP OWNED BY vs_async_owner, vs_async_other;
DROP ROLE vs_async_owner, vs_async_other;
RESET client_min_messages;
SELECT format('ALTER DATABASE %I RESET visual_search.model_dir', current_database()) \gexec
