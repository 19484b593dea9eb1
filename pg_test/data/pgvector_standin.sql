-- A stand-in for pgvector 0.8.6 (there is no pgvector here to install): every object of its
-- install script that involves only built-in types, so the only ones whose names could clash
-- with this extension's, under pgvector's names and signatures. The bodies are placeholders.
CREATE FUNCTION hamming_distance(bit, bit) RETURNS float8 LANGUAGE sql IMMUTABLE STRICT AS 'SELECT -1::float8';
CREATE FUNCTION jaccard_distance(bit, bit) RETURNS float8 LANGUAGE sql IMMUTABLE STRICT AS 'SELECT -1::float8';
CREATE OPERATOR <~> (LEFTARG = bit, RIGHTARG = bit, FUNCTION = hamming_distance, COMMUTATOR = '<~>');
CREATE OPERATOR <%> (LEFTARG = bit, RIGHTARG = bit, FUNCTION = jaccard_distance, COMMUTATOR = '<%>');
CREATE FUNCTION ivfflathandler(internal) RETURNS index_am_handler AS '$libdir/visual_search', 'vs_hnsw_handler' LANGUAGE C;
CREATE FUNCTION hnswhandler(internal) RETURNS index_am_handler AS '$libdir/visual_search', 'vs_hnsw_handler' LANGUAGE C;
CREATE ACCESS METHOD ivfflat TYPE INDEX HANDLER ivfflathandler;
CREATE ACCESS METHOD hnsw TYPE INDEX HANDLER hnswhandler;
CREATE FUNCTION ivfflat_halfvec_support(internal) RETURNS internal AS '$libdir/visual_search', 'vs_hnsw_l2_support' LANGUAGE C;
CREATE FUNCTION ivfflat_bit_support(internal) RETURNS internal AS '$libdir/visual_search', 'vs_hnsw_l2_support' LANGUAGE C;
CREATE FUNCTION hnsw_halfvec_support(internal) RETURNS internal AS '$libdir/visual_search', 'vs_hnsw_l2_support' LANGUAGE C;
CREATE FUNCTION hnsw_bit_support(internal) RETURNS internal AS '$libdir/visual_search', 'vs_hnsw_l2_support' LANGUAGE C;
CREATE FUNCTION hnsw_sparsevec_support(internal) RETURNS internal AS '$libdir/visual_search', 'vs_hnsw_l2_support' LANGUAGE C;
CREATE OPERATOR CLASS bit_hamming_ops FOR TYPE bit USING ivfflat AS
    OPERATOR 1 <~> (bit, bit) FOR ORDER BY float_ops, FUNCTION 1 ivfflat_bit_support(internal);
CREATE OPERATOR CLASS bit_hamming_ops FOR TYPE bit USING hnsw AS
    OPERATOR 1 <~> (bit, bit) FOR ORDER BY float_ops, FUNCTION 1 hnsw_bit_support(internal);
CREATE OPERATOR CLASS bit_jaccard_ops FOR TYPE bit USING hnsw AS
    OPERATOR 1 <%> (bit, bit) FOR ORDER BY float_ops, FUNCTION 1 hnsw_bit_support(internal);
