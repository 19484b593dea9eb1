-- The 0.1.0 → 0.2.0 upgrade script gives the objects a fresh 0.2.0 install has.
SELECT count(*) AS fresh_objects FROM pg_depend
WHERE refobjid = (SELECT oid FROM pg_extension WHERE extname = 'visual_search') AND deptype = 'e' \gset
CREATE DATABASE vs_upgrade;
\c vs_upgrade
SET client_min_messages = warning;
CREATE EXTENSION visual_search VERSION '0.1.0';
SELECT extversion FROM pg_extension WHERE extname = 'visual_search';
SELECT count(*) AS vs_hnsw_before FROM pg_am WHERE amname = 'vs_hnsw';
ALTER EXTENSION visual_search UPDATE TO '0.2.0';
SELECT extversion FROM pg_extension WHERE extname = 'visual_search';
SELECT count(*) = :fresh_objects AS same_objects_as_a_fresh_install FROM pg_depend
WHERE refobjid = (SELECT oid FROM pg_extension WHERE extname = 'visual_search') AND deptype = 'e';
CREATE TABLE t (v embedding(2));
INSERT INTO t VALUES ('[1,1]'), ('[2,2]');
CREATE INDEX ON t USING vs_hnsw (v embedding_l2_ops);
SET enable_seqscan = off;
SELECT v FROM t ORDER BY v <-> '[2,2.1]' LIMIT 1;
\c vs_regress
DROP DATABASE vs_upgrade;
