-- visual_search 0.5.0 → 0.6.0: pieces of pgvector's SQL that users moving over rely on (`||`,
-- subvector, l2_norm), and the types' own category in which embedding is preferred, so that an
-- untyped literal resolves as in pgvector. The 0.6.0 install script is sql/visual_search.sql.
\echo Use "ALTER EXTENSION visual_search UPDATE TO '0.6.0'" to load this file. \quit

-- CREATE TYPE's CATEGORY and PREFERRED cannot be changed by ALTER TYPE.
UPDATE pg_catalog.pg_type SET typcategory = 'Q', typispreferred = (typname = 'embedding')
WHERE oid IN ('embedding'::regtype, 'halfembedding'::regtype);

CREATE FUNCTION l2_norm(embedding) RETURNS float8
    AS 'MODULE_PATHNAME', 'embedding_norm_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION subvector(embedding, integer, integer) RETURNS embedding
    AS 'MODULE_PATHNAME', 'embedding_subvector_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION embedding_concat(embedding, embedding) RETURNS embedding
    AS 'MODULE_PATHNAME', 'embedding_concat_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE OPERATOR || (LEFTARG = embedding, RIGHTARG = embedding, FUNCTION = embedding_concat);

CREATE FUNCTION l2_norm(halfembedding) RETURNS float8
    AS 'MODULE_PATHNAME', 'halfembedding_norm_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION subvector(halfembedding, integer, integer) RETURNS halfembedding
    AS 'MODULE_PATHNAME', 'halfembedding_subvector_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION halfembedding_concat(halfembedding, halfembedding) RETURNS halfembedding
    AS 'MODULE_PATHNAME', 'halfembedding_concat_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE OPERATOR || (LEFTARG = halfembedding, RIGHTARG = halfembedding, FUNCTION = halfembedding_concat);

-- vs_hnsw orders by L1 too (pgvector's vector_l1_ops).
CREATE FUNCTION vs_hnsw_l1_support(internal) RETURNS internal
    AS 'MODULE_PATHNAME', 'vs_hnsw_l1_support' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION vs_hnsw_half_l1_support(internal) RETURNS internal
    AS 'MODULE_PATHNAME', 'vs_hnsw_half_l1_support' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE OPERATOR CLASS embedding_l1_ops FOR TYPE embedding USING vs_hnsw AS
    OPERATOR 1 <+> (embedding, embedding) FOR ORDER BY float_ops,
    FUNCTION 1 vs_hnsw_l1_support(internal);
CREATE OPERATOR CLASS halfembedding_l1_ops FOR TYPE halfembedding USING vs_hnsw AS
    OPERATOR 1 <+> (halfembedding, halfembedding) FOR ORDER BY float_ops,
    FUNCTION 1 vs_hnsw_half_l1_support(internal);

-- Moving from pgvector (0.6.0): casts between pgvector's types and ours, whose binary layouts are
-- the same (a dimension count, an unused int16, then the elements), so no function converts;
-- the target type's typmod cast checks the dimensions (cast to vector(n): pgvector takes at most
-- 16,000). Created on request only, because they name pgvector's types, found as members of
-- its extension (a type of that name some role made in a schema it may create in is not
-- pgvector's); not members of this extension, which DROP EXTENSION vector CASCADE would then
-- drop with every embedding column. pgvector_casts(false) drops them, before either extension.
CREATE FUNCTION visual_search.pgvector_casts(enable boolean DEFAULT true) RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    c record;
    n integer := 0;
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        RAISE EXCEPTION 'only a superuser may create or drop casts between pgvector''s types and visual_search''s'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'vector') THEN
        RAISE EXCEPTION 'pgvector (extension "vector") is not installed in this database'
            USING ERRCODE = 'undefined_object';
    END IF;
    -- Both directions of each pair whose two types exist (pgvector before 0.7.0 has no halfvec).
    FOR c IN
        WITH owned AS (
            SELECT e.extname, t.oid, t.typname FROM pg_depend d
            JOIN pg_extension e ON e.oid = d.refobjid AND d.refclassid = 'pg_extension'::regclass
            JOIN pg_type t ON t.oid = d.objid AND d.classid = 'pg_type'::regclass
            WHERE d.deptype = 'e' AND e.extname IN ('vector', 'visual_search')),
        pairs AS (
            SELECT theirs.oid AS theirs, ours.oid AS ours
            FROM (VALUES ('vector', 'embedding'), ('halfvec', 'halfembedding')) m(theirs, ours)
            JOIN owned theirs ON theirs.extname = 'vector' AND theirs.typname = m.theirs
            JOIN owned ours ON ours.extname = 'visual_search' AND ours.typname = m.ours)
        SELECT theirs AS source, ours AS target FROM pairs UNION ALL SELECT ours, theirs FROM pairs
    LOOP
        IF enable AND NOT EXISTS (SELECT FROM pg_cast WHERE castsource = c.source AND casttarget = c.target) THEN
            EXECUTE format('CREATE CAST (%s AS %s) WITHOUT FUNCTION AS ASSIGNMENT', c.source::regtype, c.target::regtype);
            n := n + 1;
        ELSIF NOT enable AND EXISTS (SELECT FROM pg_cast WHERE castsource = c.source AND casttarget = c.target AND castmethod = 'b') THEN
            EXECUTE format('DROP CAST (%s AS %s)', c.source::regtype, c.target::regtype);
            n := n + 1;
        END IF;
    END LOOP;
    RETURN n;
END $$;
REVOKE EXECUTE ON FUNCTION visual_search.pgvector_casts(boolean) FROM PUBLIC;
