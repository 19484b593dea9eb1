-- The upgrade scripts give the objects a fresh install of the current version has: the same
-- members, and for functions and operators the same definitions, settings and privileges.
\getenv datadir VS_TEST_DATA
\set members :datadir '/extension_members.sql'
\i :members
SELECT extversion AS fresh_version FROM pg_extension WHERE extname = 'visual_search';
SELECT n AS fresh_objects, digest AS fresh_digest FROM pg_temp.members() \gset
SELECT current_database() AS regress_db \gset
CREATE DATABASE vs_upgrade;
\c vs_upgrade
SET client_min_messages = warning;
CREATE EXTENSION visual_search VERSION '0.1.0';
SELECT extversion FROM pg_extension WHERE extname = 'visual_search';
SELECT count(*) AS vs_hnsw_before FROM pg_am WHERE amname = 'vs_hnsw';
ALTER EXTENSION visual_search UPDATE TO '0.2.0';
SELECT extversion FROM pg_extension WHERE extname = 'visual_search';
-- before 0.5.0 models() has six columns: the current library still answers that declaration
SELECT count(*) > 0 AS models_listed_by_the_old_declaration FROM visual_search.models();
CREATE TABLE t (v embedding(2), b bit(4));
INSERT INTO t VALUES ('[1,1]', B'1010'), ('[2,2]', B'0110');
CREATE INDEX ON t USING vs_hnsw (v embedding_l2_ops);
SET enable_seqscan = off;
SELECT v FROM t ORDER BY v <-> '[2,2.1]' LIMIT 1;
RESET enable_seqscan;
-- 0.3.0: Hamming distance moves to the extension's own schema, the plpgsql functions pin
-- their search_path, the index checks are no longer executable by PUBLIC; 0.4.0: the
-- embedding service's statistics; 0.5.0: models() shows input size, licence and source; 0.6.0:
-- pgvector's ||, subvector, l2_norm and L1 opclass, the types' category, pgvector_casts();
-- 0.7.0: no SQL changes (vs_hnsw writes 6-byte neighbour slots, and reads the 12-byte ones)
ALTER EXTENSION visual_search UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'visual_search';
\i :members
SELECT n = :fresh_objects AS same_objects_as_a_fresh_install, digest = :'fresh_digest' AS same_definitions
FROM pg_temp.members();
-- what was there keeps working, and an untyped literal resolves as in a fresh install
SELECT vector_norm('[3,4]') AS untyped_norm;
SET enable_seqscan = off;
SELECT v FROM t ORDER BY v <-> '[2,2.1]' LIMIT 1;
RESET enable_seqscan;
SELECT a.b OPERATOR(visual_search.<~>) c.b AS hamming, visual_search.hamming_distance(a.b, c.b) FROM t a, t c WHERE a.v < c.v;
\c :regress_db
DROP DATABASE vs_upgrade;
