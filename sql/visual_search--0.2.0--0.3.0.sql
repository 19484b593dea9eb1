-- visual_search 0.2.0 → 0.3.0: hardening. The 0.3.0 install script is sql/visual_search.sql;
-- pg_test/sql/upgrade.sql checks that 0.1.0 → 0.2.0 → 0.3.0 gives the same objects.
\echo Use "ALTER EXTENSION visual_search UPDATE TO '0.3.0'" to load this file. \quit

-- Hamming distance moves to the extension's own schema: pgvector has hamming_distance(bit, bit)
-- and <~> on bit too, and could not be installed beside this extension in the same schema.
-- Queries write OPERATOR(visual_search.<~>) or put visual_search on their search_path.
ALTER OPERATOR @extschema@.<~> (bit, bit) SET SCHEMA visual_search;
ALTER FUNCTION @extschema@.hamming_distance(bit, bit) SET SCHEMA visual_search;

-- The index checks reveal where every indexed row of a table is: not executable by PUBLIC (as
-- amcheck's functions); they also check SELECT on the index's table themselves.
REVOKE EXECUTE ON FUNCTION visual_search.vs_hnsw_heap_tids(regclass), visual_search.vs_hnsw_unreachable(regclass) FROM PUBLIC;

-- The plpgsql functions ran with the caller's search_path: a role that could create a schema
-- first on a superuser's path ("$user") could plant image_embed or format there and have it
-- run as the superuser; under another search_path (an application's, pg_restore's empty one)
-- the types were not found. They now pin it and name this extension's objects by schema.
-- Fills the NULL embeddings of a table from its images, one forward pass per batch, with progress.
-- on_error 'error' stops at the first bad image; 'null' leaves its embedding NULL with a WARNING.
CREATE OR REPLACE FUNCTION visual_search.embed_column(tbl regclass, image_col name, embedding_col name,
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
CREATE OR REPLACE FUNCTION visual_search.auto_embed_trigger() RETURNS trigger
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
-- UPDATE OF image_col, then backfills the rows already there. on_error 'error' fails the
-- statement on a bad image, naming the row's primary key; 'null' stores NULL with a WARNING.
CREATE OR REPLACE FUNCTION visual_search.enable_auto_embed(tbl regclass, image_col name, embedding_col name,
                                                model text DEFAULT NULL, on_error text DEFAULT 'error',
                                                batch integer DEFAULT 256)
RETURNS bigint LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    keys text[];
    trigger_name name := 'visual_search_auto_embed_' || embedding_col;
BEGIN
    IF on_error NOT IN ('error', 'null') THEN
        RAISE EXCEPTION 'on_error must be ''error'' or ''null''' USING ERRCODE = 'invalid_parameter_value';
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
    IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = tbl AND tgname = trigger_name) THEN
        EXECUTE format('DROP TRIGGER %I ON %s', trigger_name, tbl);
    END IF;
    EXECUTE format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE OF %I ON %s FOR EACH ROW '
                   'EXECUTE FUNCTION visual_search.auto_embed_trigger(%L, %L, %L, %L%s)',
                   trigger_name, image_col, tbl, image_col, embedding_col, coalesce(model, ''), on_error,
                   coalesce((SELECT string_agg(format(', %L', k), '') FROM unnest(keys) k), ''));
    RETURN visual_search.embed_column(tbl, image_col, embedding_col, batch, model, on_error);
END $$;

CREATE OR REPLACE FUNCTION visual_search.disable_auto_embed(tbl regclass, embedding_col name)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', 'visual_search_auto_embed_' || embedding_col, tbl);
END $$;
