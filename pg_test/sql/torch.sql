-- libtorch runs inside this backend; the server was started without LD_LIBRARY_PATH.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS visual_search;
RESET client_min_messages;

-- 3x3 kernel of ones over a 4x4 ramp 0..15: windows sum to 45 + 54 + 81 + 90
SELECT visual_search.torch_smoke();
SELECT visual_search.torch_info();
SET visual_search.threads = 2;
SELECT visual_search.torch_info();

-- Two libraries: the main one links no libtorch. A fresh backend that parses a literal, scans,
-- reads the settings and lists the models has mapped neither libtorch nor the engine library;
-- image_embed goes to the embedding service, and the backend still maps neither. In the
-- backend (embed_in = 'backend'), the first image_embed opens the engine, and libtorch with it.
\c
\getenv datadir VS_TEST_DATA
CREATE FUNCTION pg_temp.mapped(lib text) RETURNS bool LANGUAGE sql
    AS $$ SELECT pg_read_file('/proc/' || pg_backend_pid() || '/maps') ~ lib $$;
SELECT '[1,2,3]'::embedding <-> '[1,2,4]' AS distance;
SELECT count(*) > 0 AS models_listed FROM visual_search.models();
SELECT * FROM visual_search.backend_stats();
SELECT pg_temp.mapped('visual_search\.so') AS main_library, pg_temp.mapped('visual_search_engine') AS engine,
       pg_temp.mapped('libtorch_cpu') AS libtorch;
SELECT set_config('visual_search.model_dir', :'datadir' || '/models', false) IS NOT NULL AS model_dir_set;
SELECT vector_dims(image_embed(pg_read_binary_file(:'datadir' || '/images/sneaker.png'), 'tiny-vgg16'));
SELECT pg_temp.mapped('visual_search_engine') AS engine, pg_temp.mapped('libtorch_cpu') AS libtorch;
SET visual_search.embed_in = 'backend';
SELECT vector_dims(image_embed(pg_read_binary_file(:'datadir' || '/images/sneaker.png'), 'tiny-vgg16'));
SELECT pg_temp.mapped('visual_search_engine') AS engine, pg_temp.mapped('libtorch_cpu') AS libtorch;
SELECT * FROM visual_search.backend_stats();

-- An engine library that is missing or is not one: image_embed says so, nothing else is affected
-- (in the backend: the service opens the library the server's configuration names).
\c
SET visual_search.embed_in = 'backend';
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || replace(SQLERRM, (SELECT setting FROM pg_config WHERE name = 'PKGLIBDIR'), '$libdir');
END $$;
SET visual_search.engine_library = '/nonexistent/visual_search_engine.so';
SELECT pg_temp.err($$SELECT image_embed('\x89504e47'::bytea)$$);
SELECT pg_temp.err($$SELECT visual_search.torch_smoke()$$);
SET visual_search.engine_library = '$libdir/visual_search.so';
SELECT pg_temp.err($$SELECT image_embed(ARRAY['\x89504e47'::bytea])$$);
SELECT '[3,4]'::embedding <-> '[0,0]' AS distance, (SELECT count(*) > 0 FROM visual_search.models()) AS models_listed;
RESET visual_search.engine_library;
SELECT visual_search.torch_smoke();
-- an ordinary role may not choose the library
CREATE ROLE vs_engine_user;
SET ROLE vs_engine_user;
SET visual_search.engine_library = '/tmp/x.so';
RESET ROLE;
DROP ROLE vs_engine_user;
