-- Bad input is an ERROR with the SQLSTATE PostgreSQL itself uses, never a crash.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS visual_search;
RESET client_min_messages;

-- shown once as psql prints it
SELECT '[1,2'::embedding;
SELECT '[1,2]'::embedding <-> '[1,2,3]';


SELECT q AS statement, outcome(q) FROM (VALUES
  -- malformed literals
  ($$SELECT '1,2'::embedding$$),
  ($$SELECT '[1,,2]'::embedding$$),
  ($$SELECT '[1,2,]'::embedding$$),
  ($$SELECT '[a,b]'::embedding$$),
  ($$SELECT '[1 2]'::embedding$$),
  ($$SELECT '[1]x'::halfembedding$$),
  -- empty, NaN, infinity, float32 / float16 overflow
  ($$SELECT '[]'::embedding$$),
  ($$SELECT '[ ]'::halfembedding$$),
  ($$SELECT '[1,NaN]'::embedding$$),
  ($$SELECT '[Infinity]'::embedding$$),
  ($$SELECT '[-inf]'::halfembedding$$),
  ($$SELECT '[1e39]'::embedding$$),
  ($$SELECT '[70000]'::halfembedding$$),
  -- dimensions: against the typmod, between operands, over the limit
  ($$SELECT '[1,2]'::embedding(3)$$),
  ($$SELECT ARRAY[1,2]::embedding(3)$$),
  ($$SELECT '[1,2]'::embedding::halfembedding(3)$$),
  ($$SELECT '[1,2]'::embedding <=> '[1,2,3]'$$),
  ($$SELECT '[1,2]'::halfembedding <#> '[1,2,3]'$$),
  ($$SELECT '[1,2]'::embedding + '[1,2,3]'$$),
  ($$SELECT avg(v) FROM (VALUES ('[1,2]'::embedding), ('[1,2,3]')) t(v)$$),
  ($$SELECT '[1]'::embedding(0)$$),
  ($$SELECT '[1]'::embedding(65536)$$),
  ($$SELECT '[1]'::embedding(1,2)$$),
  ($$SELECT ('[' || repeat('1,', 65535) || '1]')::embedding$$),
  ($$SELECT array_fill(1.0::real, ARRAY[65536])::embedding$$),
  -- arrays: NULLs, several dimensions, empty, NaN, out of range
  ($$SELECT ARRAY[1,NULL]::embedding$$),
  ($$SELECT ARRAY[[1,2],[3,4]]::embedding$$),
  ($$SELECT '{}'::real[]::embedding$$),
  ($$SELECT ARRAY['NaN']::float8[]::embedding$$),
  ($$SELECT ARRAY[1e300]::float8[]::embedding$$),
  ($$SELECT ARRAY[1e5]::float8[]::halfembedding$$),
  -- arithmetic overflow and conversions
  ($$SELECT '[3e38]'::embedding + '[3e38]'$$),
  ($$SELECT '[60000]'::halfembedding + '[60000]'$$),
  ($$SELECT '[1e20]'::embedding::halfembedding$$),
  ($$SELECT '[1e20]'::embedding::integer[]$$),
  -- Hamming distance on bit strings of different lengths
  ($$SELECT B'101' OPERATOR(visual_search.<~>) B'1010'$$)
) t(q);

-- wrong-length binary input: a bytea written with COPY BINARY is read back as an embedding,
-- so its bytes reach embedding_recv unchanged
CREATE TABLE raw (b bytea);
CREATE TABLE target (v embedding);
CREATE FUNCTION pg_temp.recv_outcome(hex text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  TRUNCATE raw;
  INSERT INTO raw VALUES (decode(hex, 'hex'));
  EXECUTE format('COPY raw TO %L (FORMAT binary)', current_setting('data_directory') || '/vs_raw.bin');
  EXECUTE format('COPY target FROM %L (FORMAT binary)', current_setting('data_directory') || '/vs_raw.bin');
  RETURN 'ok: ' || (SELECT v::text FROM target ORDER BY ctid DESC LIMIT 1);
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
SELECT hex, pg_temp.recv_outcome(hex) FROM (VALUES
  ('000200003f80000040000000'),         -- [1,2]: well formed
  ('000300003f80000040000000'),         -- says 3 dimensions, carries 2
  ('00020000'),                         -- header only
  ('0002'),                             -- truncated header
  ('000000000000'),                     -- zero dimensions
  ('000100013f800000'),                 -- unused field not zero
  ('000100007fc00000'),                 -- NaN
  ('000100007f800000'),                 -- +Infinity
  ('000200003f800000400000003f800000')  -- trailing bytes
) t(hex);
