-- An ordinary role cannot take over a superuser through the extension, and the index checks
-- show a table's row positions only to roles that may read the table.
\getenv datadir VS_TEST_DATA
\set modeldir :datadir '/models'
\set imgdir :datadir '/images/'
SET visual_search.model_dir = :'modeldir';
SET visual_search.default_model = 'tiny-vgg16';
SET search_path = "$user", public;
SELECT session_user AS superuser \gset
SET client_min_messages = warning;
CREATE ROLE alice LOGIN;
SELECT format('GRANT CREATE ON DATABASE %I TO alice', current_database()) \gexec
RESET client_min_messages;

------------------------------------------------------------------------------ search_path capture
CREATE TABLE sec_shop (id int PRIMARY KEY, photo bytea, embedding embedding(32));
CREATE TABLE sec_photos AS SELECT f AS name, pg_read_binary_file(:'imgdir' || f) AS img
FROM unnest(ARRAY['chelsea.png', 'rocket.jpg', 'sneaker.png']) f;
INSERT INTO sec_shop SELECT row_number() OVER (ORDER BY name), img FROM sec_photos;
-- alice creates a schema named after the superuser, first on its "$user", public search_path,
-- and plants functions there that the extension's plpgsql functions called unqualified: each
-- makes her superuser when a superuser runs it, then does what the real one does.
SET ROLE alice;
CREATE SCHEMA :"superuser";
CREATE FUNCTION :"superuser".image_embed(bytea) RETURNS embedding LANGUAGE plpgsql AS $$
BEGIN ALTER ROLE alice SUPERUSER; RAISE NOTICE 'planted image_embed(bytea) ran'; RETURN public.image_embed($1); END $$;
CREATE FUNCTION :"superuser".image_embed(bytea, text) RETURNS embedding LANGUAGE plpgsql AS $$
BEGIN ALTER ROLE alice SUPERUSER; RAISE NOTICE 'planted image_embed(bytea, text) ran'; RETURN public.image_embed($1, $2); END $$;
CREATE FUNCTION :"superuser".image_embed(bytea[]) RETURNS embedding[] LANGUAGE plpgsql AS $$
BEGIN ALTER ROLE alice SUPERUSER; RAISE NOTICE 'planted image_embed(bytea[]) ran'; RETURN public.image_embed($1); END $$;
CREATE FUNCTION :"superuser".image_embed(bytea[], text) RETURNS embedding[] LANGUAGE plpgsql AS $$
BEGIN ALTER ROLE alice SUPERUSER; RAISE NOTICE 'planted image_embed(bytea[], text) ran'; RETURN public.image_embed($1, $2); END $$;
-- format(text, VARIADIC "any") loses to an overload with exact argument types
CREATE FUNCTION :"superuser".format(text, regclass, name, name) RETURNS text LANGUAGE plpgsql AS $$
BEGIN ALTER ROLE alice SUPERUSER; RAISE NOTICE 'planted format ran'; RETURN pg_catalog.format($1, $2, $3, $4); END $$;
CREATE FUNCTION :"superuser".format(text, name, regclass) RETURNS text LANGUAGE plpgsql AS $$
BEGIN ALTER ROLE alice SUPERUSER; RAISE NOTICE 'planted format ran'; RETURN pg_catalog.format($1, $2, $3); END $$;
CREATE FUNCTION :"superuser".format(text, text, regclass) RETURNS text LANGUAGE plpgsql AS $$
BEGIN ALTER ROLE alice SUPERUSER; RAISE NOTICE 'planted format ran'; RETURN pg_catalog.format($1, $2, $3); END $$;
RESET ROLE;
SELECT count(*) AS planted FROM pg_proc WHERE pronamespace = :'superuser'::regnamespace;
SELECT rolsuper AS alice_is_superuser FROM pg_roles WHERE rolname = 'alice';


-- enable_auto_embed (format, then embed_column's batches through image_embed(bytea[]))
SET client_min_messages = warning;
SELECT visual_search.enable_auto_embed('sec_shop', 'photo', 'embedding') AS backfilled;
RESET client_min_messages;
SELECT rolsuper AS alice_is_superuser FROM pg_roles WHERE rolname = 'alice';
ALTER ROLE alice NOSUPERUSER;
-- the trigger on INSERT (image_embed(bytea)), and with a named model (image_embed(bytea, text))
INSERT INTO sec_shop VALUES (10, (SELECT img FROM sec_photos WHERE name = 'sneaker.png'));
SELECT rolsuper AS alice_is_superuser FROM pg_roles WHERE rolname = 'alice';
ALTER ROLE alice NOSUPERUSER;
SET client_min_messages = warning;
SELECT visual_search.enable_auto_embed('sec_shop', 'photo', 'embedding', model => 'tiny-vgg16') AS backfilled;
RESET client_min_messages;
INSERT INTO sec_shop VALUES (11, (SELECT img FROM sec_photos WHERE name = 'rocket.jpg'));
SELECT rolsuper AS alice_is_superuser FROM pg_roles WHERE rolname = 'alice';
ALTER ROLE alice NOSUPERUSER;
-- embed_column with a model (image_embed(bytea[], text)), and its row-by-row fallback
UPDATE sec_shop SET embedding = NULL;
SET client_min_messages = warning;
SELECT visual_search.embed_column('sec_shop', 'photo', 'embedding', 2, 'tiny-vgg16') AS embedded;
RESET client_min_messages;
SELECT rolsuper AS alice_is_superuser FROM pg_roles WHERE rolname = 'alice';
ALTER ROLE alice NOSUPERUSER;
SELECT visual_search.disable_auto_embed('sec_shop', 'embedding');
SELECT rolsuper AS alice_is_superuser FROM pg_roles WHERE rolname = 'alice';
ALTER ROLE alice NOSUPERUSER;
INSERT INTO sec_shop VALUES (12, '\x00'::bytea);
UPDATE sec_shop SET embedding = NULL;
SET client_min_messages = error;
SELECT visual_search.embed_column('sec_shop', 'photo', 'embedding', 5, on_error => 'null') AS embedded;
RESET client_min_messages;
SELECT rolsuper AS alice_is_superuser FROM pg_roles WHERE rolname = 'alice';
ALTER ROLE alice NOSUPERUSER;
SELECT embedding IS NULL AS bad_photo_left_null FROM sec_shop WHERE id = 12;
DELETE FROM sec_shop WHERE id = 12;
-- the extension's own functions did the work
SELECT count(*) AS rows, count(embedding) AS embedded,
       count(*) FILTER (WHERE embedding <-> public.image_embed(photo) <= 1e-5 * vector_norm(embedding)) AS correct
FROM sec_shop;

-- every plpgsql function of the extension pins its search_path
SELECT p.oid::regprocedure AS function, p.proconfig
FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'visual_search')
  AND p.prolang IN (SELECT oid FROM pg_language WHERE lanname IN ('plpgsql', 'sql'))
ORDER BY 1::text;
-- and the only C functions with a SET clause are those that run SQL themselves (the auto-embed
-- queue's): on an operator or support function it would keep them out of index scans and cost
-- every call
SELECT p.oid::regprocedure AS c_function_with_set
FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'visual_search') AND p.proconfig IS NOT NULL
  AND p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'c')
ORDER BY 1::text;

SET client_min_messages = warning;
DROP SCHEMA :"superuser" CASCADE;
RESET client_min_messages;
DROP TABLE sec_shop, sec_photos;

------------------------------------------------------------------------------ index checks
-- vs_hnsw_heap_tids and vs_hnsw_unreachable need EXECUTE (revoked from PUBLIC, as amcheck's) and
-- SELECT on the index's table (which superusers, the owner and pg_read_all_data have), and
-- refuse while row-level security applies to the caller.
CREATE TABLE sec_secret (id int, e embedding(2));
INSERT INTO sec_secret SELECT i, ARRAY[i, i % 7] FROM generate_series(1, 50) i;
CREATE INDEX sec_secret_e ON sec_secret USING vs_hnsw (e embedding_l2_ops);
CREATE ROLE bob;
-- (the schema visual_search is not usable by PUBLIC; an administrator lets them use it)
GRANT USAGE ON SCHEMA visual_search TO alice, bob;
SET ROLE alice;
SELECT outcome($$SELECT visual_search.vs_hnsw_heap_tids('sec_secret_e')$$) AS heap_tids,
       outcome($$SELECT visual_search.vs_hnsw_unreachable('sec_secret_e')$$) AS unreachable;
RESET ROLE;
GRANT EXECUTE ON FUNCTION visual_search.vs_hnsw_heap_tids(regclass), visual_search.vs_hnsw_unreachable(regclass) TO alice, bob;
SET ROLE alice;
SELECT outcome($$SELECT visual_search.vs_hnsw_heap_tids('sec_secret_e')$$) AS heap_tids,
       outcome($$SELECT visual_search.vs_hnsw_unreachable('sec_secret_e')$$) AS unreachable;
RESET ROLE;
-- with SELECT on the table
GRANT SELECT ON sec_secret TO alice;
SET ROLE alice;
SELECT cardinality(visual_search.vs_hnsw_heap_tids('sec_secret_e')) AS heap_tids,
       visual_search.vs_hnsw_unreachable('sec_secret_e') AS unreachable;
RESET ROLE;
-- SELECT on a column only is not enough
REVOKE SELECT ON sec_secret FROM alice;
GRANT SELECT (id) ON sec_secret TO alice;
SET ROLE alice;
SELECT outcome($$SELECT visual_search.vs_hnsw_heap_tids('sec_secret_e')$$) AS heap_tids;
RESET ROLE;
-- pg_read_all_data reads every table
GRANT pg_read_all_data TO bob;
SET ROLE bob;
SELECT cardinality(visual_search.vs_hnsw_heap_tids('sec_secret_e')) AS heap_tids,
       visual_search.vs_hnsw_unreachable('sec_secret_e') AS unreachable;
RESET ROLE;
-- row-level security hides rows from alice: the index's row positions stay hidden too
GRANT SELECT ON sec_secret TO alice;
ALTER TABLE sec_secret ENABLE ROW LEVEL SECURITY;
CREATE POLICY sec_small ON sec_secret FOR SELECT USING (id < 10);
SET ROLE alice;
SELECT count(*) AS rows_alice_sees FROM sec_secret;
SELECT outcome($$SELECT visual_search.vs_hnsw_heap_tids('sec_secret_e')$$) AS heap_tids,
       outcome($$SELECT visual_search.vs_hnsw_unreachable('sec_secret_e')$$) AS unreachable;
RESET ROLE;
-- the owner and superusers are not subject to the policy here
SELECT cardinality(visual_search.vs_hnsw_heap_tids('sec_secret_e')) AS heap_tids,
       visual_search.vs_hnsw_unreachable('sec_secret_e') AS unreachable;
-- a table, not an index, is still refused as before
SELECT outcome($$SELECT visual_search.vs_hnsw_heap_tids('sec_secret')$$) AS not_an_index;

DROP TABLE sec_secret;
SET client_min_messages = warning;
DROP OWNED BY alice, bob;
DROP ROLE alice, bob;
RESET client_min_messages;
