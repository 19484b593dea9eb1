-- visual_search: the install script of the current version (Cargo.toml's), which src/lib.rs hands to
-- pgrx. Objects are declared by hand (as pgvector does) so that the SQL is reviewable; the C
-- symbols are the Rust functions' pgrx wrappers (`<fn>_wrapper`). The scripts of earlier versions
-- and the upgrade scripts from them are the visual_search--*.sql files beside this one;
-- pg_test/sql/upgrade.sql checks that upgrading 0.1.0 gives the objects this script creates.
--
-- Security (see README.md): the plpgsql functions at the end run with search_path pinned to
-- pg_catalog, pg_temp and name this extension's objects by schema; C functions resolve no names
-- and have no SET clause (it would cost every operator call and keep them out of index scans).
\echo Use "CREATE EXTENSION visual_search" to load this file. \quit

-- Management and diagnostic functions live in their own schema, owned by the extension.
CREATE SCHEMA visual_search;


-------------------------------------------------------------------------------- embedding
CREATE TYPE embedding;

CREATE FUNCTION embedding_in(cstring, oid, integer) RETURNS embedding
    AS 'MODULE_PATHNAME', 'embedding_in_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION embedding_out(embedding) RETURNS cstring
    AS 'MODULE_PATHNAME', 'embedding_out_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION embedding_typmod_in(cstring[]) RETURNS integer
    AS 'MODULE_PATHNAME', 'embedding_typmod_in_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION embedding_recv(internal, oid, integer) RETURNS embedding
    AS 'MODULE_PATHNAME', 'embedding_recv_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION embedding_send(embedding) RETURNS bytea
    AS 'MODULE_PATHNAME', 'embedding_send_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE TYPE embedding (
    INPUT = embedding_in,
    OUTPUT = embedding_out,
    TYPMOD_IN = embedding_typmod_in,
    RECEIVE = embedding_recv,
    SEND = embedding_send,
    INTERNALLENGTH = VARIABLE,
    ALIGNMENT = int4,
    STORAGE = external,
    -- A category of their own in which embedding is preferred: an untyped literal given to a
    -- function both types have (vector_norm('[3,4]')) is an embedding, as in pgvector.
    CATEGORY = 'Q',
    PREFERRED = true
);

-- typmod and array casts
CREATE FUNCTION embedding(embedding, integer, boolean) RETURNS embedding
    AS 'MODULE_PATHNAME', 'embedding_coerce_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION array_to_embedding(integer[], integer, boolean) RETURNS embedding
    AS 'MODULE_PATHNAME', 'array_to_embedding_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION array_to_embedding(real[], integer, boolean) RETURNS embedding
    AS 'MODULE_PATHNAME', 'array_to_embedding_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION array_to_embedding(double precision[], integer, boolean) RETURNS embedding
    AS 'MODULE_PATHNAME', 'array_to_embedding_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION array_to_embedding(numeric[], integer, boolean) RETURNS embedding
    AS 'MODULE_PATHNAME', 'array_to_embedding_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION embedding_to_float4(embedding, integer, boolean) RETURNS real[]
    AS 'MODULE_PATHNAME', 'embedding_to_float4_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION embedding_to_float8(embedding, integer, boolean) RETURNS double precision[]
    AS 'MODULE_PATHNAME', 'embedding_to_float8_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION embedding_to_int4(embedding, integer, boolean) RETURNS integer[]
    AS 'MODULE_PATHNAME', 'embedding_to_int4_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE CAST (embedding AS embedding) WITH FUNCTION embedding(embedding, integer, boolean) AS IMPLICIT;
CREATE CAST (integer[] AS embedding) WITH FUNCTION array_to_embedding(integer[], integer, boolean) AS ASSIGNMENT;
CREATE CAST (real[] AS embedding) WITH FUNCTION array_to_embedding(real[], integer, boolean) AS ASSIGNMENT;
CREATE CAST (double precision[] AS embedding) WITH FUNCTION array_to_embedding(double precision[], integer, boolean) AS ASSIGNMENT;
CREATE CAST (numeric[] AS embedding) WITH FUNCTION array_to_embedding(numeric[], integer, boolean) AS ASSIGNMENT;
CREATE CAST (embedding AS real[]) WITH FUNCTION embedding_to_float4(embedding, integer, boolean) AS IMPLICIT;
CREATE CAST (embedding AS double precision[]) WITH FUNCTION embedding_to_float8(embedding, integer, boolean);
CREATE CAST (embedding AS integer[]) WITH FUNCTION embedding_to_int4(embedding, integer, boolean);

-- distances and vector functions
CREATE FUNCTION l2_distance(embedding, embedding) RETURNS float8
    AS 'MODULE_PATHNAME', 'embedding_l2_distance_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION embedding_l2_squared_distance(embedding, embedding) RETURNS float8
    AS 'MODULE_PATHNAME', 'embedding_l2_squared_distance_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION inner_product(embedding, embedding) RETURNS float8
    AS 'MODULE_PATHNAME', 'embedding_inner_product_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION embedding_negative_inner_product(embedding, embedding) RETURNS float8
    AS 'MODULE_PATHNAME', 'embedding_negative_inner_product_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION cosine_distance(embedding, embedding) RETURNS float8
    AS 'MODULE_PATHNAME', 'embedding_cosine_distance_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION l1_distance(embedding, embedding) RETURNS float8
    AS 'MODULE_PATHNAME', 'embedding_l1_distance_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION vector_dims(embedding) RETURNS integer
    AS 'MODULE_PATHNAME', 'embedding_dims_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION vector_norm(embedding) RETURNS float8
    AS 'MODULE_PATHNAME', 'embedding_norm_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION l2_normalize(embedding) RETURNS embedding
    AS 'MODULE_PATHNAME', 'embedding_l2_normalize_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION binary_quantize(embedding) RETURNS bit
    AS 'MODULE_PATHNAME', 'embedding_binary_quantize_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION l2_norm(embedding) RETURNS float8
    AS 'MODULE_PATHNAME', 'embedding_norm_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION subvector(embedding, integer, integer) RETURNS embedding
    AS 'MODULE_PATHNAME', 'embedding_subvector_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION embedding_concat(embedding, embedding) RETURNS embedding
    AS 'MODULE_PATHNAME', 'embedding_concat_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION embedding_add(embedding, embedding) RETURNS embedding
    AS 'MODULE_PATHNAME', 'embedding_add_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION embedding_sub(embedding, embedding) RETURNS embedding
    AS 'MODULE_PATHNAME', 'embedding_sub_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION embedding_mul(embedding, embedding) RETURNS embedding
    AS 'MODULE_PATHNAME', 'embedding_mul_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION embedding_lt(embedding, embedding) RETURNS bool
    AS 'MODULE_PATHNAME', 'embedding_lt_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION embedding_le(embedding, embedding) RETURNS bool
    AS 'MODULE_PATHNAME', 'embedding_le_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION embedding_eq(embedding, embedding) RETURNS bool
    AS 'MODULE_PATHNAME', 'embedding_eq_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION embedding_ne(embedding, embedding) RETURNS bool
    AS 'MODULE_PATHNAME', 'embedding_ne_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION embedding_ge(embedding, embedding) RETURNS bool
    AS 'MODULE_PATHNAME', 'embedding_ge_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION embedding_gt(embedding, embedding) RETURNS bool
    AS 'MODULE_PATHNAME', 'embedding_gt_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION embedding_cmp(embedding, embedding) RETURNS integer
    AS 'MODULE_PATHNAME', 'embedding_cmp_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- aggregates: avg keeps [count, sums...] in double precision, sum adds in the element type
CREATE FUNCTION embedding_accum(double precision[], embedding) RETURNS double precision[]
    AS 'MODULE_PATHNAME', 'embedding_accum_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION embedding_combine(double precision[], double precision[]) RETURNS double precision[]
    AS 'MODULE_PATHNAME', 'embedding_combine_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION embedding_avg(double precision[]) RETURNS embedding
    AS 'MODULE_PATHNAME', 'embedding_avg_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE AGGREGATE avg(embedding) (
    SFUNC = embedding_accum, STYPE = double precision[], FINALFUNC = embedding_avg,
    COMBINEFUNC = embedding_combine, INITCOND = '{0}', PARALLEL = SAFE
);
CREATE AGGREGATE sum(embedding) (
    SFUNC = embedding_add, STYPE = embedding, COMBINEFUNC = embedding_add, PARALLEL = SAFE
);

-- operators
CREATE OPERATOR <-> (LEFTARG = embedding, RIGHTARG = embedding, FUNCTION = l2_distance, COMMUTATOR = '<->');
CREATE OPERATOR <#> (LEFTARG = embedding, RIGHTARG = embedding, FUNCTION = embedding_negative_inner_product, COMMUTATOR = '<#>');
CREATE OPERATOR <=> (LEFTARG = embedding, RIGHTARG = embedding, FUNCTION = cosine_distance, COMMUTATOR = '<=>');
CREATE OPERATOR <+> (LEFTARG = embedding, RIGHTARG = embedding, FUNCTION = l1_distance, COMMUTATOR = '<+>');
CREATE OPERATOR || (LEFTARG = embedding, RIGHTARG = embedding, FUNCTION = embedding_concat);
CREATE OPERATOR + (LEFTARG = embedding, RIGHTARG = embedding, FUNCTION = embedding_add, COMMUTATOR = +);
CREATE OPERATOR - (LEFTARG = embedding, RIGHTARG = embedding, FUNCTION = embedding_sub);
CREATE OPERATOR * (LEFTARG = embedding, RIGHTARG = embedding, FUNCTION = embedding_mul, COMMUTATOR = *);
CREATE OPERATOR < (LEFTARG = embedding, RIGHTARG = embedding, FUNCTION = embedding_lt, COMMUTATOR = >, NEGATOR = >=,
    RESTRICT = scalarltsel, JOIN = scalarltjoinsel);
CREATE OPERATOR <= (LEFTARG = embedding, RIGHTARG = embedding, FUNCTION = embedding_le, COMMUTATOR = >=, NEGATOR = >,
    RESTRICT = scalarlesel, JOIN = scalarlejoinsel);
CREATE OPERATOR = (LEFTARG = embedding, RIGHTARG = embedding, FUNCTION = embedding_eq, COMMUTATOR = =, NEGATOR = <>,
    RESTRICT = eqsel, JOIN = eqjoinsel);
CREATE OPERATOR <> (LEFTARG = embedding, RIGHTARG = embedding, FUNCTION = embedding_ne, COMMUTATOR = <>, NEGATOR = =,
    RESTRICT = eqsel, JOIN = eqjoinsel);
CREATE OPERATOR >= (LEFTARG = embedding, RIGHTARG = embedding, FUNCTION = embedding_ge, COMMUTATOR = <=, NEGATOR = <,
    RESTRICT = scalargesel, JOIN = scalargejoinsel);
CREATE OPERATOR > (LEFTARG = embedding, RIGHTARG = embedding, FUNCTION = embedding_gt, COMMUTATOR = <, NEGATOR = <=,
    RESTRICT = scalargtsel, JOIN = scalargtjoinsel);

CREATE OPERATOR CLASS embedding_ops DEFAULT FOR TYPE embedding USING btree AS
    OPERATOR 1 <, OPERATOR 2 <=, OPERATOR 3 =, OPERATOR 4 >=, OPERATOR 5 >,
    FUNCTION 1 embedding_cmp(embedding, embedding);

-------------------------------------------------------------------------------- halfembedding
CREATE TYPE halfembedding;

CREATE FUNCTION halfembedding_in(cstring, oid, integer) RETURNS halfembedding
    AS 'MODULE_PATHNAME', 'halfembedding_in_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION halfembedding_out(halfembedding) RETURNS cstring
    AS 'MODULE_PATHNAME', 'halfembedding_out_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION halfembedding_typmod_in(cstring[]) RETURNS integer
    AS 'MODULE_PATHNAME', 'halfembedding_typmod_in_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION halfembedding_recv(internal, oid, integer) RETURNS halfembedding
    AS 'MODULE_PATHNAME', 'halfembedding_recv_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION halfembedding_send(halfembedding) RETURNS bytea
    AS 'MODULE_PATHNAME', 'halfembedding_send_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE TYPE halfembedding (
    INPUT = halfembedding_in,
    OUTPUT = halfembedding_out,
    TYPMOD_IN = halfembedding_typmod_in,
    RECEIVE = halfembedding_recv,
    SEND = halfembedding_send,
    INTERNALLENGTH = VARIABLE,
    ALIGNMENT = int4,
    STORAGE = external,
    CATEGORY = 'Q'
);

-- typmod and array casts
CREATE FUNCTION halfembedding(halfembedding, integer, boolean) RETURNS halfembedding
    AS 'MODULE_PATHNAME', 'halfembedding_coerce_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION array_to_halfembedding(integer[], integer, boolean) RETURNS halfembedding
    AS 'MODULE_PATHNAME', 'array_to_halfembedding_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION array_to_halfembedding(real[], integer, boolean) RETURNS halfembedding
    AS 'MODULE_PATHNAME', 'array_to_halfembedding_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION array_to_halfembedding(double precision[], integer, boolean) RETURNS halfembedding
    AS 'MODULE_PATHNAME', 'array_to_halfembedding_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION array_to_halfembedding(numeric[], integer, boolean) RETURNS halfembedding
    AS 'MODULE_PATHNAME', 'array_to_halfembedding_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION halfembedding_to_float4(halfembedding, integer, boolean) RETURNS real[]
    AS 'MODULE_PATHNAME', 'halfembedding_to_float4_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION halfembedding_to_float8(halfembedding, integer, boolean) RETURNS double precision[]
    AS 'MODULE_PATHNAME', 'halfembedding_to_float8_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION halfembedding_to_int4(halfembedding, integer, boolean) RETURNS integer[]
    AS 'MODULE_PATHNAME', 'halfembedding_to_int4_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE CAST (halfembedding AS halfembedding) WITH FUNCTION halfembedding(halfembedding, integer, boolean) AS IMPLICIT;
CREATE CAST (integer[] AS halfembedding) WITH FUNCTION array_to_halfembedding(integer[], integer, boolean) AS ASSIGNMENT;
CREATE CAST (real[] AS halfembedding) WITH FUNCTION array_to_halfembedding(real[], integer, boolean) AS ASSIGNMENT;
CREATE CAST (double precision[] AS halfembedding) WITH FUNCTION array_to_halfembedding(double precision[], integer, boolean) AS ASSIGNMENT;
CREATE CAST (numeric[] AS halfembedding) WITH FUNCTION array_to_halfembedding(numeric[], integer, boolean) AS ASSIGNMENT;
CREATE CAST (halfembedding AS real[]) WITH FUNCTION halfembedding_to_float4(halfembedding, integer, boolean) AS IMPLICIT;
CREATE CAST (halfembedding AS double precision[]) WITH FUNCTION halfembedding_to_float8(halfembedding, integer, boolean);
CREATE CAST (halfembedding AS integer[]) WITH FUNCTION halfembedding_to_int4(halfembedding, integer, boolean);

-- distances and vector functions
CREATE FUNCTION l2_distance(halfembedding, halfembedding) RETURNS float8
    AS 'MODULE_PATHNAME', 'halfembedding_l2_distance_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION halfembedding_l2_squared_distance(halfembedding, halfembedding) RETURNS float8
    AS 'MODULE_PATHNAME', 'halfembedding_l2_squared_distance_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION inner_product(halfembedding, halfembedding) RETURNS float8
    AS 'MODULE_PATHNAME', 'halfembedding_inner_product_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION halfembedding_negative_inner_product(halfembedding, halfembedding) RETURNS float8
    AS 'MODULE_PATHNAME', 'halfembedding_negative_inner_product_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION cosine_distance(halfembedding, halfembedding) RETURNS float8
    AS 'MODULE_PATHNAME', 'halfembedding_cosine_distance_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION l1_distance(halfembedding, halfembedding) RETURNS float8
    AS 'MODULE_PATHNAME', 'halfembedding_l1_distance_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION vector_dims(halfembedding) RETURNS integer
    AS 'MODULE_PATHNAME', 'halfembedding_dims_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION vector_norm(halfembedding) RETURNS float8
    AS 'MODULE_PATHNAME', 'halfembedding_norm_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION l2_normalize(halfembedding) RETURNS halfembedding
    AS 'MODULE_PATHNAME', 'halfembedding_l2_normalize_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION binary_quantize(halfembedding) RETURNS bit
    AS 'MODULE_PATHNAME', 'halfembedding_binary_quantize_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION l2_norm(halfembedding) RETURNS float8
    AS 'MODULE_PATHNAME', 'halfembedding_norm_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION subvector(halfembedding, integer, integer) RETURNS halfembedding
    AS 'MODULE_PATHNAME', 'halfembedding_subvector_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION halfembedding_concat(halfembedding, halfembedding) RETURNS halfembedding
    AS 'MODULE_PATHNAME', 'halfembedding_concat_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION halfembedding_add(halfembedding, halfembedding) RETURNS halfembedding
    AS 'MODULE_PATHNAME', 'halfembedding_add_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION halfembedding_sub(halfembedding, halfembedding) RETURNS halfembedding
    AS 'MODULE_PATHNAME', 'halfembedding_sub_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION halfembedding_mul(halfembedding, halfembedding) RETURNS halfembedding
    AS 'MODULE_PATHNAME', 'halfembedding_mul_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION halfembedding_lt(halfembedding, halfembedding) RETURNS bool
    AS 'MODULE_PATHNAME', 'halfembedding_lt_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION halfembedding_le(halfembedding, halfembedding) RETURNS bool
    AS 'MODULE_PATHNAME', 'halfembedding_le_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION halfembedding_eq(halfembedding, halfembedding) RETURNS bool
    AS 'MODULE_PATHNAME', 'halfembedding_eq_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION halfembedding_ne(halfembedding, halfembedding) RETURNS bool
    AS 'MODULE_PATHNAME', 'halfembedding_ne_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION halfembedding_ge(halfembedding, halfembedding) RETURNS bool
    AS 'MODULE_PATHNAME', 'halfembedding_ge_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION halfembedding_gt(halfembedding, halfembedding) RETURNS bool
    AS 'MODULE_PATHNAME', 'halfembedding_gt_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION halfembedding_cmp(halfembedding, halfembedding) RETURNS integer
    AS 'MODULE_PATHNAME', 'halfembedding_cmp_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- aggregates: avg keeps [count, sums...] in double precision, sum adds in the element type
CREATE FUNCTION halfembedding_accum(double precision[], halfembedding) RETURNS double precision[]
    AS 'MODULE_PATHNAME', 'halfembedding_accum_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION halfembedding_combine(double precision[], double precision[]) RETURNS double precision[]
    AS 'MODULE_PATHNAME', 'halfembedding_combine_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION halfembedding_avg(double precision[]) RETURNS halfembedding
    AS 'MODULE_PATHNAME', 'halfembedding_avg_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE AGGREGATE avg(halfembedding) (
    SFUNC = halfembedding_accum, STYPE = double precision[], FINALFUNC = halfembedding_avg,
    COMBINEFUNC = halfembedding_combine, INITCOND = '{0}', PARALLEL = SAFE
);
CREATE AGGREGATE sum(halfembedding) (
    SFUNC = halfembedding_add, STYPE = halfembedding, COMBINEFUNC = halfembedding_add, PARALLEL = SAFE
);

-- operators
CREATE OPERATOR <-> (LEFTARG = halfembedding, RIGHTARG = halfembedding, FUNCTION = l2_distance, COMMUTATOR = '<->');
CREATE OPERATOR <#> (LEFTARG = halfembedding, RIGHTARG = halfembedding, FUNCTION = halfembedding_negative_inner_product, COMMUTATOR = '<#>');
CREATE OPERATOR <=> (LEFTARG = halfembedding, RIGHTARG = halfembedding, FUNCTION = cosine_distance, COMMUTATOR = '<=>');
CREATE OPERATOR <+> (LEFTARG = halfembedding, RIGHTARG = halfembedding, FUNCTION = l1_distance, COMMUTATOR = '<+>');
CREATE OPERATOR || (LEFTARG = halfembedding, RIGHTARG = halfembedding, FUNCTION = halfembedding_concat);
CREATE OPERATOR + (LEFTARG = halfembedding, RIGHTARG = halfembedding, FUNCTION = halfembedding_add, COMMUTATOR = +);
CREATE OPERATOR - (LEFTARG = halfembedding, RIGHTARG = halfembedding, FUNCTION = halfembedding_sub);
CREATE OPERATOR * (LEFTARG = halfembedding, RIGHTARG = halfembedding, FUNCTION = halfembedding_mul, COMMUTATOR = *);
CREATE OPERATOR < (LEFTARG = halfembedding, RIGHTARG = halfembedding, FUNCTION = halfembedding_lt, COMMUTATOR = >, NEGATOR = >=,
    RESTRICT = scalarltsel, JOIN = scalarltjoinsel);
CREATE OPERATOR <= (LEFTARG = halfembedding, RIGHTARG = halfembedding, FUNCTION = halfembedding_le, COMMUTATOR = >=, NEGATOR = >,
    RESTRICT = scalarlesel, JOIN = scalarlejoinsel);
CREATE OPERATOR = (LEFTARG = halfembedding, RIGHTARG = halfembedding, FUNCTION = halfembedding_eq, COMMUTATOR = =, NEGATOR = <>,
    RESTRICT = eqsel, JOIN = eqjoinsel);
CREATE OPERATOR <> (LEFTARG = halfembedding, RIGHTARG = halfembedding, FUNCTION = halfembedding_ne, COMMUTATOR = <>, NEGATOR = =,
    RESTRICT = eqsel, JOIN = eqjoinsel);
CREATE OPERATOR >= (LEFTARG = halfembedding, RIGHTARG = halfembedding, FUNCTION = halfembedding_ge, COMMUTATOR = <=, NEGATOR = <,
    RESTRICT = scalargesel, JOIN = scalargejoinsel);
CREATE OPERATOR > (LEFTARG = halfembedding, RIGHTARG = halfembedding, FUNCTION = halfembedding_gt, COMMUTATOR = <, NEGATOR = <=,
    RESTRICT = scalargtsel, JOIN = scalargtjoinsel);

CREATE OPERATOR CLASS halfembedding_ops DEFAULT FOR TYPE halfembedding USING btree AS
    OPERATOR 1 <, OPERATOR 2 <=, OPERATOR 3 =, OPERATOR 4 >=, OPERATOR 5 >,
    FUNCTION 1 halfembedding_cmp(halfembedding, halfembedding);

-------------------------------------------------------------------------------- between the types
CREATE FUNCTION embedding_to_halfembedding(embedding, integer, boolean) RETURNS halfembedding
    AS 'MODULE_PATHNAME', 'embedding_to_halfembedding_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION halfembedding_to_embedding(halfembedding, integer, boolean) RETURNS embedding
    AS 'MODULE_PATHNAME', 'halfembedding_to_embedding_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE CAST (embedding AS halfembedding) WITH FUNCTION embedding_to_halfembedding(embedding, integer, boolean) AS IMPLICIT;
CREATE CAST (halfembedding AS embedding) WITH FUNCTION halfembedding_to_embedding(halfembedding, integer, boolean) AS ASSIGNMENT;

-------------------------------------------------------------------------------- Hamming distance
-- In the extension's own schema: pgvector defines hamming_distance(bit, bit) and <~> on bit in
-- the schema it is installed in, and both extensions must install into one schema.
CREATE FUNCTION visual_search.hamming_distance(bit, bit) RETURNS float8
    AS 'MODULE_PATHNAME', 'bit_hamming_distance_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE OPERATOR visual_search.<~> (LEFTARG = bit, RIGHTARG = bit, FUNCTION = visual_search.hamming_distance,
    COMMUTATOR = OPERATOR(visual_search.<~>));

-------------------------------------------------------------------------------- diagnostics
CREATE FUNCTION visual_search.torch_smoke() RETURNS float8
    AS 'MODULE_PATHNAME', 'torch_smoke_wrapper' LANGUAGE C VOLATILE STRICT;
CREATE FUNCTION visual_search.torch_info() RETURNS text
    AS 'MODULE_PATHNAME', 'torch_info_wrapper' LANGUAGE C VOLATILE STRICT;

-------------------------------------------------------------------------------- image embeddings
-- IMMUTABLE is honest for a named model: its manifest pins the weights by sha256. Expensive, so the
-- planner evaluates it as rarely as it can.
CREATE FUNCTION image_embed(bytea) RETURNS embedding
    AS 'MODULE_PATHNAME', 'image_embed_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE COST 100000;
CREATE FUNCTION image_embed(bytea, text) RETURNS embedding
    AS 'MODULE_PATHNAME', 'image_embed_model_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE COST 100000;
CREATE FUNCTION image_embed(bytea[]) RETURNS embedding[]
    AS 'MODULE_PATHNAME', 'image_embed_array_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE COST 1000000;
CREATE FUNCTION image_embed(bytea[], text) RETURNS embedding[]
    AS 'MODULE_PATHNAME', 'image_embed_array_model_wrapper' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE COST 1000000;

CREATE FUNCTION visual_search.models()
    RETURNS TABLE (name text, architecture text, input_size integer, dims integer, pooling text, licence text, source text,
                   weights_present boolean, problem text)
    AS 'MODULE_PATHNAME', 'list_models_v5_wrapper' LANGUAGE C STABLE STRICT;

CREATE FUNCTION visual_search.backend_stats()
    RETURNS TABLE (images_embedded bigint, models_loaded integer)
    AS 'MODULE_PATHNAME', 'backend_stats_wrapper' LANGUAGE C VOLATILE STRICT;

-- What the server's embedding service has done; running is false when none answers.
CREATE FUNCTION visual_search.service_stats()
    RETURNS TABLE (running boolean, pid integer, engine text, engine_error text, threads integer, batchers integer, max_batch integer,
                   max_wait_ms float8, uptime_s float8, requests bigint, images bigint, batches bigint, mean_batch float8,
                   dropped bigint, mean_queue_wait_ms float8, images_per_s float8, batch_sizes text, models text[], info text)
    AS 'MODULE_PATHNAME', 'service_stats_wrapper' LANGUAGE C VOLATILE STRICT;

CREATE FUNCTION visual_search.embed_profile(images bytea[], model text)
    RETURNS TABLE (stage text, ms float8)
    AS 'MODULE_PATHNAME', 'embed_profile_wrapper' LANGUAGE C VOLATILE STRICT;

-------------------------------------------------------------------------------- vs_hnsw (0.2.0)
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

-- Integrity checks (as amcheck for B-trees): the heap rows an index holds, and how many of its
-- live elements a search cannot reach.
CREATE FUNCTION visual_search.vs_hnsw_heap_tids(index regclass) RETURNS text[]
    AS 'MODULE_PATHNAME', 'vs_hnsw_heap_tids_wrapper' LANGUAGE C STRICT;
CREATE FUNCTION visual_search.vs_hnsw_unreachable(index regclass) RETURNS bigint
    AS 'MODULE_PATHNAME', 'vs_hnsw_unreachable_wrapper' LANGUAGE C STRICT;
-- They reveal where every indexed row of the table is: like amcheck's functions, not executable by
-- PUBLIC (GRANT EXECUTE to a monitoring role), and they check SELECT on the table themselves.
REVOKE EXECUTE ON FUNCTION visual_search.vs_hnsw_heap_tids(regclass), visual_search.vs_hnsw_unreachable(regclass) FROM PUBLIC;

-------------------------------------------------------------------------------- embedding images in tables
-- search_path is pinned; the extension's objects are named with @extschema@ or visual_search.
-- Fills the NULL embeddings of a table from its images, one forward pass per batch, with progress.
-- on_error 'error' stops at the first bad image; 'null' leaves its embedding NULL with a WARNING.
CREATE FUNCTION visual_search.embed_column(tbl regclass, image_col name, embedding_col name,
                                           batch integer DEFAULT 32, model text DEFAULT NULL,
                                           on_error text DEFAULT 'error')
RETURNS bigint LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    total bigint;
    done bigint := 0;
    n bigint;
    started timestamptz := clock_timestamp();
    rate float8;
    failed tid[] := '{}';
    r record;
    e @extschema@.embedding;
BEGIN
    IF batch IS NULL OR batch < 1 THEN
        RAISE EXCEPTION 'batch must be at least 1' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF on_error NOT IN ('error', 'null') THEN
        RAISE EXCEPTION 'on_error must be ''error'' or ''null''' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    EXECUTE format('SELECT count(*) FROM %s WHERE %I IS NULL AND %I IS NOT NULL', tbl, embedding_col, image_col)
        INTO total;
    LOOP
        BEGIN
            EXECUTE format($q$
                WITH todo AS (
                    SELECT ctid AS c, %1$I AS img FROM %2$s
                    WHERE %3$I IS NULL AND %1$I IS NOT NULL AND ctid <> ALL ($1) LIMIT %4$s
                ), emb AS (
                    SELECT array_agg(c) AS cs,
                           CASE WHEN %5$L::text IS NULL THEN @extschema@.image_embed(array_agg(img))
                                ELSE @extschema@.image_embed(array_agg(img), %5$L::text) END AS es
                    FROM todo
                )
                UPDATE %2$s t SET %3$I = x.e FROM emb, unnest(emb.cs, emb.es) AS x(c, e) WHERE t.ctid = x.c
            $q$, image_col, tbl, embedding_col, batch, model) USING failed;
            GET DIAGNOSTICS n = ROW_COUNT;
        EXCEPTION WHEN invalid_binary_representation OR program_limit_exceeded THEN
            IF on_error = 'error' THEN
                RAISE;
            END IF;
            -- A bad image in this batch: embed its rows one by one and set the bad ones aside.
            n := 0;
            FOR r IN EXECUTE format('SELECT ctid AS c, %1$I AS img FROM %2$s WHERE %3$I IS NULL AND %1$I IS NOT NULL '
                                    'AND ctid <> ALL ($1) LIMIT %4$s', image_col, tbl, embedding_col, batch) USING failed
            LOOP
                BEGIN
                    e := CASE WHEN model IS NULL THEN @extschema@.image_embed(r.img)
                              ELSE @extschema@.image_embed(r.img, model) END;
                    EXECUTE format('UPDATE %s SET %I = $1 WHERE ctid = $2', tbl, embedding_col) USING e, r.c;
                    n := n + 1;
                EXCEPTION WHEN invalid_binary_representation OR program_limit_exceeded THEN
                    RAISE WARNING 'embed_column: row % of % left NULL: %', r.c, tbl, SQLERRM;
                    failed := failed || r.c;
                END;
            END LOOP;
            IF n = 0 THEN
                CONTINUE;  -- the batch held only bad rows, now set aside
            END IF;
        END;
        EXIT WHEN n = 0;
        done := done + n;
        rate := done / greatest(extract(epoch FROM clock_timestamp() - started)::float8, 1e-3);
        RAISE NOTICE 'embed_column: % of % rows, % rows/s, ETA % s',
            done, total, round(rate::numeric, 1), round(((total - done) / rate)::numeric);
    END LOOP;
    RETURN done;
END $$;

-- The trigger function. Arguments: the image column, the embedding column, the model ('' for the
-- default), the error mode, then the key columns that name a row in messages.
CREATE FUNCTION visual_search.auto_embed_trigger() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    image_col text := TG_ARGV[0];
    embedding_col text := TG_ARGV[1];
    model text := nullif(TG_ARGV[2], '');
    on_error text := TG_ARGV[3];
    img bytea;
    e @extschema@.embedding;
    key text;
BEGIN
    EXECUTE format('SELECT ($1).%I', image_col) USING NEW INTO img;
    IF img IS NOT NULL THEN
        BEGIN
            e := CASE WHEN model IS NULL THEN @extschema@.image_embed(img) ELSE @extschema@.image_embed(img, model) END;
        EXCEPTION WHEN OTHERS THEN
            SELECT coalesce(string_agg(format('%s=%s', k, coalesce(to_jsonb(NEW)->>k, 'NULL')), ', '), 'without a key')
              INTO key FROM unnest(TG_ARGV[4:]) AS k;
            IF on_error = 'null' THEN
                RAISE WARNING 'visual_search: row % of %: image not embedded, % left NULL: %',
                    key, TG_TABLE_NAME, embedding_col, SQLERRM;
            ELSE
                RAISE EXCEPTION 'visual_search: cannot embed the image of row % of %: %', key, TG_TABLE_NAME, SQLERRM
                    USING ERRCODE = SQLSTATE;
            END IF;
        END;
    END IF;
    RETURN jsonb_populate_record(NEW, jsonb_build_object(embedding_col, e::text));
END $$;

-- Fills embedding_col from image_col on INSERT (single rows, multi-row INSERT, COPY) and on
-- UPDATE OF image_col. mode 'sync' (the default) embeds inside the writing statement, then
-- backfills the rows already there: the vector is there when the INSERT commits, and a bad image
-- fails its own statement (on_error 'error', naming the row's primary key) or is stored NULL with a
-- WARNING (on_error 'null'). mode 'async' queues the row's key in the same transaction and the
-- database's drainer embeds it later in batches (visual_search.embedding_queue); rows already there
-- with a NULL embedding are queued, not embedded here. Returns the rows embedded (sync) or queued
-- (async).
CREATE FUNCTION visual_search.enable_auto_embed(tbl regclass, image_col name, embedding_col name,
                                                model text DEFAULT NULL, on_error text DEFAULT 'error',
                                                batch integer DEFAULT 256, mode text DEFAULT 'sync')
RETURNS bigint LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    keys text[];
    changed text;
    trigger_name name := 'visual_search_auto_embed_' || embedding_col;
    t name;
BEGIN
    IF on_error NOT IN ('error', 'null') THEN
        RAISE EXCEPTION 'on_error must be ''error'' or ''null''' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF mode IS NULL OR mode NOT IN ('sync', 'async') THEN
        RAISE EXCEPTION 'mode must be ''sync'' or ''async''' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = tbl AND attname = image_col
                   AND NOT attisdropped AND atttypid = 'bytea'::regtype) THEN
        RAISE EXCEPTION 'column % of % is not a bytea column', image_col, tbl USING ERRCODE = 'undefined_column';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = tbl AND attname = embedding_col
                   AND NOT attisdropped AND atttypid = pg_typeof(NULL::@extschema@.embedding)::oid) THEN
        RAISE EXCEPTION 'column % of % is not an embedding column', embedding_col, tbl USING ERRCODE = 'undefined_column';
    END IF;
    SELECT array_agg(a.attname::text ORDER BY array_position(i.indkey::int2[], a.attnum))
      INTO keys
      FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
     WHERE i.indrelid = tbl AND i.indisprimary;
    IF mode = 'async' THEN
        IF keys IS NULL THEN
            RAISE EXCEPTION 'auto-embedding in the background needs a primary key on %', tbl
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'The queue names rows by their primary key: add one, or use mode => ''sync''.';
        END IF;
        IF (SELECT relkind FROM pg_class WHERE oid = tbl) <> 'r' THEN
            RAISE EXCEPTION 'auto-embedding in the background works on plain tables, and % is not one', tbl
                USING ERRCODE = 'feature_not_supported';
        END IF;
    END IF;
    -- One mode at a time: the other mode's triggers go (and, leaving async, its pending entries).
    FOR t IN SELECT tgname FROM pg_trigger WHERE tgrelid = tbl AND tgname IN
             (trigger_name, 'visual_search_enqueue_' || embedding_col, 'visual_search_requeue_' || embedding_col)
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', t, tbl);
    END LOOP;
    IF mode = 'sync' THEN
        PERFORM visual_search.auto_embed_unregister(tbl, embedding_col);
        EXECUTE format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE OF %I ON %s FOR EACH ROW '
                       'EXECUTE FUNCTION visual_search.auto_embed_trigger(%L, %L, %L, %L%s)',
                       trigger_name, image_col, tbl, image_col, embedding_col, coalesce(model, ''), on_error,
                       coalesce((SELECT string_agg(format(', %L', k), '') FROM unnest(keys) k), ''));
        RETURN visual_search.embed_column(tbl, image_col, embedding_col, batch, model, on_error);
    END IF;
    -- Inserted rows are queued once per statement from its transition table (a COPY of N rows is
    -- one INSERT ... SELECT); a changed image is queued row by row, and so is a changed key, which
    -- a queued entry could no longer find.
    EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %s REFERENCING NEW TABLE AS visual_search_new '
                   'FOR EACH STATEMENT EXECUTE FUNCTION visual_search.auto_embed_enqueue(%L)',
                   'visual_search_enqueue_' || embedding_col, tbl, embedding_col);
    SELECT string_agg(format('OLD.%1$I IS DISTINCT FROM NEW.%1$I', c), ' OR ') INTO changed
      FROM unnest(image_col::text || keys) c;
    EXECUTE format('CREATE TRIGGER %I AFTER UPDATE OF %s ON %s FOR EACH ROW WHEN (%s) '
                   'EXECUTE FUNCTION visual_search.auto_embed_enqueue(%L)',
                   'visual_search_requeue_' || embedding_col,
                   (SELECT string_agg(format('%I', c), ', ') FROM unnest(image_col::text || keys) c),
                   tbl, changed, embedding_col);
    RETURN visual_search.auto_embed_register(tbl, embedding_col, image_col, model, keys);
END $$;

-- Removes the trigger(s); in async mode the rows still queued are dropped, left NULL (or stale)
-- as they are, and the drainer writes nothing more into the table once this commits.
CREATE OR REPLACE FUNCTION visual_search.disable_auto_embed(tbl regclass, embedding_col name)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t name;
    dropped bigint;
BEGIN
    FOR t IN SELECT tgname FROM pg_trigger WHERE tgrelid = tbl AND tgname IN
             ('visual_search_auto_embed_' || embedding_col, 'visual_search_enqueue_' || embedding_col,
              'visual_search_requeue_' || embedding_col)
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', t, tbl);
    END LOOP;
    dropped := visual_search.auto_embed_unregister(tbl, embedding_col);
    IF dropped > 0 THEN
        RAISE NOTICE 'visual_search: % queued rows of % dropped; their % stays as it is (NULL or stale)',
            dropped, tbl, embedding_col;
    END IF;
END $$;

-------------------------------------------------------------------------------- auto-embedding in the background (0.4.0)
-- The tables of mode 'async'. Ordinary roles do not read or write them: the trigger function that
-- queues rows is SECURITY DEFINER and queues only for its own table, the C functions that register
-- a table check that the caller owns it, and the views show only tables the caller may SELECT.
-- pg_dump keeps their contents (a restored queue is drained by the restored server).
CREATE TABLE visual_search.auto_embed_tables (
    tbl regclass NOT NULL,
    embedding_col name NOT NULL,
    image_col name NOT NULL,
    model text NOT NULL,
    key_cols name[] NOT NULL,
    owner regrole NOT NULL,        -- who called enable_auto_embed: the drainer writes as this role
    done bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tbl, embedding_col)
);
CREATE TABLE visual_search.embedding_queue (
    id bigserial PRIMARY KEY,
    tbl regclass NOT NULL,
    embedding_col name NOT NULL,
    key text[] NOT NULL,           -- the row's primary key values as text, in key_cols' order
    enqueued_at timestamptz NOT NULL DEFAULT now(),
    claimed_by integer,            -- the drainer's pid while it works on the entry
    claimed_at timestamptz,
    attempts integer NOT NULL DEFAULT 0,
    failed_at timestamptz,         -- set with sqlstate and message when the image cannot be embedded
    sqlstate text,
    message text
);
-- Failed entries by key, for the drainer that embeds a row again (its failure goes) and for
-- retry_failed. Only these: an index entry for every queued row cost a COPY 40 % more time
-- (10,000 Fashion-MNIST rows: 28 ms of 70), and older entries that are not failed are not
-- looked for (the drainer claims oldest first, and serves a key's entries of one claim at once).
CREATE INDEX embedding_queue_failed ON visual_search.embedding_queue (tbl, embedding_col, key) WHERE failed_at IS NOT NULL;
-- Rows written per batch over the last minutes, for the rate in embedding_queues.
CREATE TABLE visual_search.embedding_log (
    at timestamptz NOT NULL DEFAULT now(),
    tbl regclass NOT NULL,
    embedding_col name NOT NULL,
    rows integer NOT NULL
);
SELECT pg_catalog.pg_extension_config_dump('visual_search.auto_embed_tables', '');
SELECT pg_catalog.pg_extension_config_dump('visual_search.embedding_queue', '');
SELECT pg_catalog.pg_extension_config_dump('visual_search.embedding_queue_id_seq', '');
REVOKE ALL ON visual_search.auto_embed_tables, visual_search.embedding_queue, visual_search.embedding_log,
              visual_search.embedding_queue_id_seq FROM PUBLIC;

-- Asks for the database's drainer once the calling transaction commits (its entries are invisible
-- before). Only a lock file is tried: microseconds.
CREATE FUNCTION visual_search.ensure_drainer() RETURNS void
    AS 'MODULE_PATHNAME', 'ensure_drainer_wrapper' LANGUAGE C VOLATILE SET search_path = pg_catalog, pg_temp;
REVOKE EXECUTE ON FUNCTION visual_search.ensure_drainer() FROM PUBLIC;
-- Used by enable_auto_embed and disable_auto_embed: they check that the caller owns the table,
-- then write the extension's tables as the bootstrap superuser.
-- (model NULL: the default model now, which the table keeps)
CREATE FUNCTION visual_search.auto_embed_register(tbl regclass, embedding_col text, image_col text, model text, key_cols text[])
    RETURNS bigint AS 'MODULE_PATHNAME', 'auto_embed_register_wrapper' LANGUAGE C VOLATILE
    SET search_path = pg_catalog, pg_temp;
CREATE FUNCTION visual_search.auto_embed_unregister(tbl regclass, embedding_col text)
    RETURNS bigint AS 'MODULE_PATHNAME', 'auto_embed_unregister_wrapper' LANGUAGE C VOLATILE STRICT
    SET search_path = pg_catalog, pg_temp;
-- Queues the failed rows of tbl (NULL: of every table the caller owns) again; returns how many.
CREATE FUNCTION visual_search.retry_failed(tbl regclass DEFAULT NULL) RETURNS bigint
    AS 'MODULE_PATHNAME', 'retry_failed_wrapper' LANGUAGE C VOLATILE SET search_path = pg_catalog, pg_temp;
-- Waits until nothing of tbl is queued or being embedded (failed rows do not count): true, or
-- false when timeout passes first. A cancel or statement_timeout ends it.
CREATE FUNCTION visual_search.wait_for_embeddings(tbl regclass, timeout interval DEFAULT '5 minutes') RETURNS boolean
    AS 'MODULE_PATHNAME', 'wait_for_embeddings_wrapper' LANGUAGE C VOLATILE STRICT
    SET search_path = pg_catalog, pg_temp;

-- The trigger function of mode 'async' (statement-level AFTER INSERT with the transition table
-- visual_search_new, row-level AFTER UPDATE). TG_ARGV[0] is the embedding column; the image column
-- and key come from auto_embed_tables, so a role's own trigger cannot queue work for another table.
CREATE FUNCTION visual_search.auto_embed_enqueue() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t visual_search.auto_embed_tables;
    keys text;
BEGIN
    SELECT * INTO t FROM visual_search.auto_embed_tables a WHERE a.tbl = TG_RELID AND a.embedding_col = TG_ARGV[0];
    IF NOT FOUND THEN
        RAISE EXCEPTION 'visual_search: % is not set up for auto-embedding into %', TG_RELID::regclass, TG_ARGV[0]
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Call visual_search.enable_auto_embed(..., mode => ''async'') again, or drop the trigger.';
    END IF;
    IF TG_LEVEL = 'STATEMENT' THEN
        SELECT string_agg(format('n.%I::text', k), ', ' ORDER BY o) INTO keys FROM unnest(t.key_cols) WITH ORDINALITY u(k, o);
        EXECUTE format('INSERT INTO visual_search.embedding_queue (tbl, embedding_col, key) '
                       'SELECT $1, $2, ARRAY[%s] FROM visual_search_new n WHERE n.%I IS NOT NULL', keys, t.image_col)
            USING t.tbl, t.embedding_col;
    ELSE
        SELECT string_agg(format('($3).%I::text', k), ', ' ORDER BY o) INTO keys FROM unnest(t.key_cols) WITH ORDINALITY u(k, o);
        EXECUTE format('INSERT INTO visual_search.embedding_queue (tbl, embedding_col, key) SELECT $1, $2, ARRAY[%s]', keys)
            USING t.tbl, t.embedding_col, NEW;
    END IF;
    PERFORM visual_search.ensure_drainer();
    RETURN NULL;
END $$;

-- A dropped table (or its image or embedding column) takes its set-up and queue with it, so that
-- no entry outlives it and none applies to a table that later gets its OID; the triggers left on a
-- table whose column went are dropped too (they would refuse every INSERT).
CREATE FUNCTION visual_search.auto_embed_dropped() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    g record;
    t name;
BEGIN
    FOR g IN
        DELETE FROM visual_search.auto_embed_tables a USING pg_event_trigger_dropped_objects() d
         WHERE d.classid = 'pg_class'::regclass AND d.objid = a.tbl
           AND (d.objsubid = 0 OR d.address_names[3] IN (a.image_col, a.embedding_col))
        RETURNING a.tbl, a.embedding_col, d.objsubid <> 0 AS column_only
    LOOP
        DELETE FROM visual_search.embedding_queue q WHERE q.tbl = g.tbl AND q.embedding_col = g.embedding_col;
        DELETE FROM visual_search.embedding_log l WHERE l.tbl = g.tbl AND l.embedding_col = g.embedding_col;
        CONTINUE WHEN NOT g.column_only;
        FOR t IN SELECT tgname FROM pg_trigger WHERE tgrelid = g.tbl AND tgname IN
                 ('visual_search_enqueue_' || g.embedding_col, 'visual_search_requeue_' || g.embedding_col)
        LOOP
            EXECUTE format('DROP TRIGGER %I ON %s', t, g.tbl);
        END LOOP;
    END LOOP;
END $$;
CREATE EVENT TRIGGER visual_search_auto_embed_dropped ON sql_drop EXECUTE FUNCTION visual_search.auto_embed_dropped();

-- Per table and embedding column: rows queued, being embedded, embedded since enable_auto_embed,
-- failed; rows written per second over the last minute; how long the oldest queued row waits.
CREATE VIEW visual_search.embedding_queues AS
SELECT t.tbl, t.embedding_col,
       count(q.id) FILTER (WHERE q.failed_at IS NULL AND q.claimed_by IS NULL) AS pending,
       count(q.id) FILTER (WHERE q.failed_at IS NULL AND q.claimed_by IS NOT NULL) AS in_progress,
       t.done,
       count(q.id) FILTER (WHERE q.failed_at IS NOT NULL) AS failed,
       (SELECT coalesce(sum(l.rows), 0) / 60.0 FROM visual_search.embedding_log l
         WHERE l.tbl = t.tbl AND l.embedding_col = t.embedding_col AND l.at > now() - interval '1 minute')::float8 AS rows_per_s,
       now() - min(q.enqueued_at) FILTER (WHERE q.failed_at IS NULL) AS oldest_pending_age
  FROM visual_search.auto_embed_tables t
  LEFT JOIN visual_search.embedding_queue q ON q.tbl = t.tbl AND q.embedding_col = t.embedding_col
 WHERE has_table_privilege(t.tbl, 'SELECT')
 GROUP BY t.tbl, t.embedding_col, t.done;
-- Rows whose image could not be embedded (their embedding stays NULL); retry_failed queues them again.
CREATE VIEW visual_search.embedding_failures AS
SELECT q.tbl, q.embedding_col, q.key, q.sqlstate, q.message, q.attempts, q.failed_at
  FROM visual_search.embedding_queue q
 WHERE q.failed_at IS NOT NULL AND has_table_privilege(q.tbl, 'SELECT');
GRANT SELECT ON visual_search.embedding_queues, visual_search.embedding_failures TO PUBLIC;

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
