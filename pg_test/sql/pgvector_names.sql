-- Beside pgvector: this extension and pgvector 0.8.6 install into the same schema of one
-- database, in either order. pgvector is not installed here, so (1) no function, aggregate,
-- operator, type, operator class or family, cast or access method of this extension has the
-- name (and argument types) of one of pgvector's, listed below from its install script, and
-- (2) a stand-in made of pgvector's objects on built-in types (the only ones that could clash)
-- is created before and after CREATE EXTENSION visual_search.
SET search_path = "$user", public;
CREATE TEMP TABLE pgvector_objects (kind text, name text);
INSERT INTO pgvector_objects VALUES
  ('function', 'vector_in(cstring, oid, integer)'),
  ('function', 'vector_out(vector)'),
  ('function', 'vector_typmod_in(cstring[])'),
  ('function', 'vector_recv(internal, oid, integer)'),
  ('function', 'vector_send(vector)'),
  ('function', 'l2_distance(vector, vector)'),
  ('function', 'inner_product(vector, vector)'),
  ('function', 'cosine_distance(vector, vector)'),
  ('function', 'l1_distance(vector, vector)'),
  ('function', 'vector_dims(vector)'),
  ('function', 'vector_norm(vector)'),
  ('function', 'l2_normalize(vector)'),
  ('function', 'binary_quantize(vector)'),
  ('function', 'subvector(vector, integer, integer)'),
  ('function', 'vector_add(vector, vector)'),
  ('function', 'vector_sub(vector, vector)'),
  ('function', 'vector_mul(vector, vector)'),
  ('function', 'vector_concat(vector, vector)'),
  ('function', 'vector_lt(vector, vector)'),
  ('function', 'vector_le(vector, vector)'),
  ('function', 'vector_eq(vector, vector)'),
  ('function', 'vector_ne(vector, vector)'),
  ('function', 'vector_ge(vector, vector)'),
  ('function', 'vector_gt(vector, vector)'),
  ('function', 'vector_cmp(vector, vector)'),
  ('function', 'vector_l2_squared_distance(vector, vector)'),
  ('function', 'vector_negative_inner_product(vector, vector)'),
  ('function', 'vector_spherical_distance(vector, vector)'),
  ('function', 'vector_accum(double precision[], vector)'),
  ('function', 'vector_avg(double precision[])'),
  ('function', 'vector_combine(double precision[], double precision[])'),
  ('function', 'vector(vector, integer, boolean)'),
  ('function', 'array_to_vector(integer[], integer, boolean)'),
  ('function', 'array_to_vector(real[], integer, boolean)'),
  ('function', 'array_to_vector(double precision[], integer, boolean)'),
  ('function', 'array_to_vector(numeric[], integer, boolean)'),
  ('function', 'vector_to_float4(vector, integer, boolean)'),
  ('function', 'ivfflathandler(internal)'),
  ('function', 'hnswhandler(internal)'),
  ('function', 'ivfflat_halfvec_support(internal)'),
  ('function', 'ivfflat_bit_support(internal)'),
  ('function', 'hnsw_halfvec_support(internal)'),
  ('function', 'hnsw_bit_support(internal)'),
  ('function', 'hnsw_sparsevec_support(internal)'),
  ('function', 'halfvec_in(cstring, oid, integer)'),
  ('function', 'halfvec_out(halfvec)'),
  ('function', 'halfvec_typmod_in(cstring[])'),
  ('function', 'halfvec_recv(internal, oid, integer)'),
  ('function', 'halfvec_send(halfvec)'),
  ('function', 'l2_distance(halfvec, halfvec)'),
  ('function', 'inner_product(halfvec, halfvec)'),
  ('function', 'cosine_distance(halfvec, halfvec)'),
  ('function', 'l1_distance(halfvec, halfvec)'),
  ('function', 'vector_dims(halfvec)'),
  ('function', 'l2_norm(halfvec)'),
  ('function', 'l2_normalize(halfvec)'),
  ('function', 'binary_quantize(halfvec)'),
  ('function', 'subvector(halfvec, integer, integer)'),
  ('function', 'halfvec_add(halfvec, halfvec)'),
  ('function', 'halfvec_sub(halfvec, halfvec)'),
  ('function', 'halfvec_mul(halfvec, halfvec)'),
  ('function', 'halfvec_concat(halfvec, halfvec)'),
  ('function', 'halfvec_lt(halfvec, halfvec)'),
  ('function', 'halfvec_le(halfvec, halfvec)'),
  ('function', 'halfvec_eq(halfvec, halfvec)'),
  ('function', 'halfvec_ne(halfvec, halfvec)'),
  ('function', 'halfvec_ge(halfvec, halfvec)'),
  ('function', 'halfvec_gt(halfvec, halfvec)'),
  ('function', 'halfvec_cmp(halfvec, halfvec)'),
  ('function', 'halfvec_l2_squared_distance(halfvec, halfvec)'),
  ('function', 'halfvec_negative_inner_product(halfvec, halfvec)'),
  ('function', 'halfvec_spherical_distance(halfvec, halfvec)'),
  ('function', 'halfvec_accum(double precision[], halfvec)'),
  ('function', 'halfvec_avg(double precision[])'),
  ('function', 'halfvec_combine(double precision[], double precision[])'),
  ('function', 'halfvec(halfvec, integer, boolean)'),
  ('function', 'halfvec_to_vector(halfvec, integer, boolean)'),
  ('function', 'vector_to_halfvec(vector, integer, boolean)'),
  ('function', 'array_to_halfvec(integer[], integer, boolean)'),
  ('function', 'array_to_halfvec(real[], integer, boolean)'),
  ('function', 'array_to_halfvec(double precision[], integer, boolean)'),
  ('function', 'array_to_halfvec(numeric[], integer, boolean)'),
  ('function', 'halfvec_to_float4(halfvec, integer, boolean)'),
  ('function', 'hamming_distance(bit, bit)'),
  ('function', 'jaccard_distance(bit, bit)'),
  ('function', 'sparsevec_in(cstring, oid, integer)'),
  ('function', 'sparsevec_out(sparsevec)'),
  ('function', 'sparsevec_typmod_in(cstring[])'),
  ('function', 'sparsevec_recv(internal, oid, integer)'),
  ('function', 'sparsevec_send(sparsevec)'),
  ('function', 'l2_distance(sparsevec, sparsevec)'),
  ('function', 'inner_product(sparsevec, sparsevec)'),
  ('function', 'cosine_distance(sparsevec, sparsevec)'),
  ('function', 'l1_distance(sparsevec, sparsevec)'),
  ('function', 'l2_norm(sparsevec)'),
  ('function', 'l2_normalize(sparsevec)'),
  ('function', 'sparsevec_lt(sparsevec, sparsevec)'),
  ('function', 'sparsevec_le(sparsevec, sparsevec)'),
  ('function', 'sparsevec_eq(sparsevec, sparsevec)'),
  ('function', 'sparsevec_ne(sparsevec, sparsevec)'),
  ('function', 'sparsevec_ge(sparsevec, sparsevec)'),
  ('function', 'sparsevec_gt(sparsevec, sparsevec)'),
  ('function', 'sparsevec_cmp(sparsevec, sparsevec)'),
  ('function', 'sparsevec_l2_squared_distance(sparsevec, sparsevec)'),
  ('function', 'sparsevec_negative_inner_product(sparsevec, sparsevec)'),
  ('function', 'sparsevec(sparsevec, integer, boolean)'),
  ('function', 'vector_to_sparsevec(vector, integer, boolean)'),
  ('function', 'sparsevec_to_vector(sparsevec, integer, boolean)'),
  ('function', 'halfvec_to_sparsevec(halfvec, integer, boolean)'),
  ('function', 'sparsevec_to_halfvec(sparsevec, integer, boolean)'),
  ('function', 'array_to_sparsevec(integer[], integer, boolean)'),
  ('function', 'array_to_sparsevec(real[], integer, boolean)'),
  ('function', 'array_to_sparsevec(double precision[], integer, boolean)'),
  ('function', 'array_to_sparsevec(numeric[], integer, boolean)'),
  ('function', 'avg(vector)'),
  ('function', 'sum(vector)'),
  ('function', 'avg(halfvec)'),
  ('function', 'sum(halfvec)'),
  ('operator', '<-> (vector, vector)'),
  ('operator', '<#> (vector, vector)'),
  ('operator', '<=> (vector, vector)'),
  ('operator', '<+> (vector, vector)'),
  ('operator', '+ (vector, vector)'),
  ('operator', '- (vector, vector)'),
  ('operator', '* (vector, vector)'),
  ('operator', '|| (vector, vector)'),
  ('operator', '< (vector, vector)'),
  ('operator', '<= (vector, vector)'),
  ('operator', '= (vector, vector)'),
  ('operator', '<> (vector, vector)'),
  ('operator', '>= (vector, vector)'),
  ('operator', '> (vector, vector)'),
  ('operator', '<-> (halfvec, halfvec)'),
  ('operator', '<#> (halfvec, halfvec)'),
  ('operator', '<=> (halfvec, halfvec)'),
  ('operator', '<+> (halfvec, halfvec)'),
  ('operator', '+ (halfvec, halfvec)'),
  ('operator', '- (halfvec, halfvec)'),
  ('operator', '* (halfvec, halfvec)'),
  ('operator', '|| (halfvec, halfvec)'),
  ('operator', '< (halfvec, halfvec)'),
  ('operator', '<= (halfvec, halfvec)'),
  ('operator', '= (halfvec, halfvec)'),
  ('operator', '<> (halfvec, halfvec)'),
  ('operator', '>= (halfvec, halfvec)'),
  ('operator', '> (halfvec, halfvec)'),
  ('operator', '<~> (bit, bit)'),
  ('operator', '<%> (bit, bit)'),
  ('operator', '<-> (sparsevec, sparsevec)'),
  ('operator', '<#> (sparsevec, sparsevec)'),
  ('operator', '<=> (sparsevec, sparsevec)'),
  ('operator', '<+> (sparsevec, sparsevec)'),
  ('operator', '< (sparsevec, sparsevec)'),
  ('operator', '<= (sparsevec, sparsevec)'),
  ('operator', '= (sparsevec, sparsevec)'),
  ('operator', '<> (sparsevec, sparsevec)'),
  ('operator', '>= (sparsevec, sparsevec)'),
  ('operator', '> (sparsevec, sparsevec)'),
  ('type', 'vector'),
  ('type', '_vector'),
  ('type', 'halfvec'),
  ('type', '_halfvec'),
  ('type', 'sparsevec'),
  ('type', '_sparsevec'),
  ('operator class', 'btree vector_ops'),
  ('operator family', 'btree vector_ops'),
  ('operator class', 'ivfflat vector_l2_ops'),
  ('operator family', 'ivfflat vector_l2_ops'),
  ('operator class', 'ivfflat vector_ip_ops'),
  ('operator family', 'ivfflat vector_ip_ops'),
  ('operator class', 'ivfflat vector_cosine_ops'),
  ('operator family', 'ivfflat vector_cosine_ops'),
  ('operator class', 'hnsw vector_l2_ops'),
  ('operator family', 'hnsw vector_l2_ops'),
  ('operator class', 'hnsw vector_ip_ops'),
  ('operator family', 'hnsw vector_ip_ops'),
  ('operator class', 'hnsw vector_cosine_ops'),
  ('operator family', 'hnsw vector_cosine_ops'),
  ('operator class', 'hnsw vector_l1_ops'),
  ('operator family', 'hnsw vector_l1_ops'),
  ('operator class', 'btree halfvec_ops'),
  ('operator family', 'btree halfvec_ops'),
  ('operator class', 'ivfflat halfvec_l2_ops'),
  ('operator family', 'ivfflat halfvec_l2_ops'),
  ('operator class', 'ivfflat halfvec_ip_ops'),
  ('operator family', 'ivfflat halfvec_ip_ops'),
  ('operator class', 'ivfflat halfvec_cosine_ops'),
  ('operator family', 'ivfflat halfvec_cosine_ops'),
  ('operator class', 'hnsw halfvec_l2_ops'),
  ('operator family', 'hnsw halfvec_l2_ops'),
  ('operator class', 'hnsw halfvec_ip_ops'),
  ('operator family', 'hnsw halfvec_ip_ops'),
  ('operator class', 'hnsw halfvec_cosine_ops'),
  ('operator family', 'hnsw halfvec_cosine_ops'),
  ('operator class', 'hnsw halfvec_l1_ops'),
  ('operator family', 'hnsw halfvec_l1_ops'),
  ('operator class', 'ivfflat bit_hamming_ops'),
  ('operator family', 'ivfflat bit_hamming_ops'),
  ('operator class', 'hnsw bit_hamming_ops'),
  ('operator family', 'hnsw bit_hamming_ops'),
  ('operator class', 'hnsw bit_jaccard_ops'),
  ('operator family', 'hnsw bit_jaccard_ops'),
  ('operator class', 'btree sparsevec_ops'),
  ('operator family', 'btree sparsevec_ops'),
  ('operator class', 'hnsw sparsevec_l2_ops'),
  ('operator family', 'hnsw sparsevec_l2_ops'),
  ('operator class', 'hnsw sparsevec_ip_ops'),
  ('operator family', 'hnsw sparsevec_ip_ops'),
  ('operator class', 'hnsw sparsevec_cosine_ops'),
  ('operator family', 'hnsw sparsevec_cosine_ops'),
  ('operator class', 'hnsw sparsevec_l1_ops'),
  ('operator family', 'hnsw sparsevec_l1_ops'),
  ('cast', 'vector -> vector'),
  ('cast', 'vector -> real[]'),
  ('cast', 'integer[] -> vector'),
  ('cast', 'real[] -> vector'),
  ('cast', 'double precision[] -> vector'),
  ('cast', 'numeric[] -> vector'),
  ('cast', 'halfvec -> halfvec'),
  ('cast', 'halfvec -> vector'),
  ('cast', 'vector -> halfvec'),
  ('cast', 'halfvec -> real[]'),
  ('cast', 'integer[] -> halfvec'),
  ('cast', 'real[] -> halfvec'),
  ('cast', 'double precision[] -> halfvec'),
  ('cast', 'numeric[] -> halfvec'),
  ('cast', 'sparsevec -> sparsevec'),
  ('cast', 'sparsevec -> vector'),
  ('cast', 'vector -> sparsevec'),
  ('cast', 'sparsevec -> halfvec'),
  ('cast', 'halfvec -> sparsevec'),
  ('cast', 'integer[] -> sparsevec'),
  ('cast', 'real[] -> sparsevec'),
  ('cast', 'double precision[] -> sparsevec'),
  ('cast', 'numeric[] -> sparsevec'),
  ('access method', 'ivfflat'),
  ('access method', 'hnsw');

-- This extension's objects, named as above; functions, operators, types and operator classes
-- and families clash only in the same schema, casts and access methods in any.
CREATE TEMP VIEW our_objects AS
WITH ext AS (SELECT oid, extnamespace FROM pg_extension WHERE extname = 'visual_search'),
members AS (SELECT d.classid, d.objid FROM pg_depend d, ext
            WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e')
SELECT 'function' AS kind, p.proname || '(' || oidvectortypes(p.proargtypes) || ')' AS name,
       p.pronamespace = ext.extnamespace AS can_clash
FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid, ext
UNION ALL
SELECT 'operator', o.oprname || ' (' || format_type(o.oprleft, NULL) || ', ' || format_type(o.oprright, NULL) || ')',
       o.oprnamespace = ext.extnamespace
FROM members m JOIN pg_operator o ON m.classid = 'pg_operator'::regclass AND o.oid = m.objid, ext
UNION ALL
SELECT 'type', t.typname, t.typnamespace = ext.extnamespace
FROM members m JOIN pg_type t ON m.classid = 'pg_type'::regclass AND (t.oid = m.objid OR t.typelem = m.objid AND t.typcategory = 'A'), ext
UNION ALL
SELECT 'operator class', a.amname || ' ' || c.opcname, c.opcnamespace = ext.extnamespace
FROM members m JOIN pg_opclass c ON m.classid = 'pg_opclass'::regclass AND c.oid = m.objid JOIN pg_am a ON a.oid = c.opcmethod, ext
UNION ALL
SELECT 'operator family', a.amname || ' ' || f.opfname, f.opfnamespace = ext.extnamespace
FROM members m JOIN pg_opfamily f ON m.classid = 'pg_opfamily'::regclass AND f.oid = m.objid JOIN pg_am a ON a.oid = f.opfmethod, ext
UNION ALL
SELECT 'cast', format_type(c.castsource, NULL) || ' -> ' || format_type(c.casttarget, NULL), true
FROM members m JOIN pg_cast c ON m.classid = 'pg_cast'::regclass AND c.oid = m.objid
UNION ALL
SELECT 'access method', a.amname, true
FROM members m JOIN pg_am a ON m.classid = 'pg_am'::regclass AND a.oid = m.objid;

-- every kind is represented on both sides (the comparison is not vacuous)
SELECT kind, (SELECT count(*) > 0 FROM our_objects o WHERE o.kind = k.kind) AS ours,
       (SELECT count(*) > 0 FROM pgvector_objects p WHERE p.kind = k.kind) AS pgvectors
FROM (SELECT DISTINCT kind FROM pgvector_objects) k ORDER BY kind;
-- the clashes: none
SELECT o.kind, o.name FROM our_objects o JOIN pgvector_objects p USING (kind, name) WHERE o.can_clash ORDER BY 1, 2;
-- Hamming distance lives in the extension's own schema
SELECT kind, name FROM our_objects WHERE name LIKE '%hamming%' OR name LIKE '<~>%' ORDER BY 1, 2;
SELECT B'1010' OPERATOR(visual_search.<~>) B'0110' AS hamming, visual_search.hamming_distance(B'1010', B'0110');

-- pgvector (the stand-in) first, then visual_search
\getenv datadir VS_TEST_DATA
\set standin :datadir '/pgvector_standin.sql'
SELECT current_database() AS regress_db \gset
CREATE DATABASE vs_pgvector_first;
\c vs_pgvector_first
\i :standin
SET client_min_messages = warning;
CREATE EXTENSION visual_search;
RESET client_min_messages;
SELECT extname FROM pg_extension ORDER BY 1;
-- both Hamming distances answer: the unqualified operator is pgvector's (the stand-in's -1)
SELECT B'1010' <~> B'0110' AS pgvectors, B'1010' OPERATOR(visual_search.<~>) B'0110' AS ours;
\c :regress_db
DROP DATABASE vs_pgvector_first;

-- visual_search first, then pgvector (the stand-in)
CREATE DATABASE vs_pgvector_second;
\c vs_pgvector_second
SET client_min_messages = warning;
CREATE EXTENSION visual_search;
RESET client_min_messages;
\i :standin
SELECT B'1010' <~> B'0110' AS pgvectors, B'1010' OPERATOR(visual_search.<~>) B'0110' AS ours;
\c :regress_db
DROP DATABASE vs_pgvector_second;
-- Casts to and from pgvector's types are made on request, and only where pgvector is installed
-- (test/parity/beside_pgvector.py makes and uses them beside pgvector).
SELECT outcome($$SELECT visual_search.pgvector_casts()$$);
