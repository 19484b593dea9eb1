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
-- the target type's typmod cast checks the dimensions. Created on request only because they name
-- pgvector's types; members of this extension so that DROP EXTENSION visual_search takes them.
-- pgvector_casts(false) drops them again, before DROP EXTENSION vector.
CREATE FUNCTION visual_search.pgvector_casts(enable boolean DEFAULT true) RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    theirs name;
    ours name;
    pair text[];
    n integer := 0;
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        RAISE EXCEPTION 'only a superuser may create or drop casts between pgvector''s types and visual_search''s'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT n.nspname INTO theirs FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector';
    IF theirs IS NULL THEN
        RAISE EXCEPTION 'pgvector (extension "vector") is not installed in this database'
            USING ERRCODE = 'undefined_object';
    END IF;
    SELECT n.nspname INTO ours FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'visual_search';
    FOREACH pair SLICE 1 IN ARRAY ARRAY[[format('%I.vector', theirs), format('%I.embedding', ours)],
                                        [format('%I.embedding', ours), format('%I.vector', theirs)],
                                        [format('%I.halfvec', theirs), format('%I.halfembedding', ours)],
                                        [format('%I.halfembedding', ours), format('%I.halfvec', theirs)]] LOOP
        IF enable AND NOT EXISTS (SELECT FROM pg_cast WHERE castsource = pair[1]::regtype AND casttarget = pair[2]::regtype) THEN
            EXECUTE format('CREATE CAST (%s AS %s) WITHOUT FUNCTION AS ASSIGNMENT', pair[1], pair[2]);
            EXECUTE format('ALTER EXTENSION visual_search ADD CAST (%s AS %s)', pair[1], pair[2]);
            n := n + 1;
        ELSIF NOT enable AND EXISTS (SELECT FROM pg_cast WHERE castsource = pair[1]::regtype AND casttarget = pair[2]::regtype) THEN
            EXECUTE format('ALTER EXTENSION visual_search DROP CAST (%s AS %s)', pair[1], pair[2]);
            EXECUTE format('DROP CAST (%s AS %s)', pair[1], pair[2]);
            n := n + 1;
        END IF;
    END LOOP;
    RETURN n;
END $$;
REVOKE EXECUTE ON FUNCTION visual_search.pgvector_casts(boolean) FROM PUBLIC;
