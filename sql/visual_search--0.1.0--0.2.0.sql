-- visual_search 0.1.0 → 0.2.0: the vs_hnsw index access method. The 0.2.0 install script is the
-- 0.1.0 one followed by this file (see src/lib.rs), so both paths give the same objects.
\echo Use "ALTER EXTENSION visual_search UPDATE TO '0.2.0'" to load this file. \quit

CREATE FUNCTION vs_hnsw_handler(internal) RETURNS index_am_handler
    AS 'MODULE_PATHNAME', 'vs_hnsw_handler' LANGUAGE C;
CREATE ACCESS METHOD vs_hnsw TYPE INDEX HANDLER vs_hnsw_handler;
COMMENT ON ACCESS METHOD vs_hnsw IS 'HNSW graph index for embedding and halfembedding nearest-neighbour queries';

-- Support function 1 of each opclass tells the index its metric and element type.
CREATE FUNCTION vs_hnsw_l2_support(internal) RETURNS internal
    AS 'MODULE_PATHNAME', 'vs_hnsw_l2_support' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION vs_hnsw_ip_support(internal) RETURNS internal
    AS 'MODULE_PATHNAME', 'vs_hnsw_ip_support' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION vs_hnsw_cosine_support(internal) RETURNS internal
    AS 'MODULE_PATHNAME', 'vs_hnsw_cosine_support' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION vs_hnsw_half_l2_support(internal) RETURNS internal
    AS 'MODULE_PATHNAME', 'vs_hnsw_half_l2_support' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION vs_hnsw_half_ip_support(internal) RETURNS internal
    AS 'MODULE_PATHNAME', 'vs_hnsw_half_ip_support' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION vs_hnsw_half_cosine_support(internal) RETURNS internal
    AS 'MODULE_PATHNAME', 'vs_hnsw_half_cosine_support' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE OPERATOR CLASS embedding_l2_ops FOR TYPE embedding USING vs_hnsw AS
    OPERATOR 1 <-> (embedding, embedding) FOR ORDER BY float_ops,
    FUNCTION 1 vs_hnsw_l2_support(internal);
CREATE OPERATOR CLASS embedding_ip_ops FOR TYPE embedding USING vs_hnsw AS
    OPERATOR 1 <#> (embedding, embedding) FOR ORDER BY float_ops,
    FUNCTION 1 vs_hnsw_ip_support(internal);
CREATE OPERATOR CLASS embedding_cosine_ops FOR TYPE embedding USING vs_hnsw AS
    OPERATOR 1 <=> (embedding, embedding) FOR ORDER BY float_ops,
    FUNCTION 1 vs_hnsw_cosine_support(internal);
CREATE OPERATOR CLASS halfembedding_l2_ops FOR TYPE halfembedding USING vs_hnsw AS
    OPERATOR 1 <-> (halfembedding, halfembedding) FOR ORDER BY float_ops,
    FUNCTION 1 vs_hnsw_half_l2_support(internal);
CREATE OPERATOR CLASS halfembedding_ip_ops FOR TYPE halfembedding USING vs_hnsw AS
    OPERATOR 1 <#> (halfembedding, halfembedding) FOR ORDER BY float_ops,
    FUNCTION 1 vs_hnsw_half_ip_support(internal);
CREATE OPERATOR CLASS halfembedding_cosine_ops FOR TYPE halfembedding USING vs_hnsw AS
    OPERATOR 1 <=> (halfembedding, halfembedding) FOR ORDER BY float_ops,
    FUNCTION 1 vs_hnsw_half_cosine_support(internal);

-- Integrity checks (as amcheck for B-trees): the heap rows an index holds, and how many of its
-- live elements a search cannot reach.
CREATE FUNCTION visual_search.vs_hnsw_heap_tids(index regclass) RETURNS text[]
    AS 'MODULE_PATHNAME', 'vs_hnsw_heap_tids_wrapper' LANGUAGE C STRICT;
CREATE FUNCTION visual_search.vs_hnsw_unreachable(index regclass) RETURNS bigint
    AS 'MODULE_PATHNAME', 'vs_hnsw_unreachable_wrapper' LANGUAGE C STRICT;
