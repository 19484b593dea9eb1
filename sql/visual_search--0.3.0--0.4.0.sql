-- visual_search 0.3.0 → 0.4.0: the embedding service; auto-embedding in the background (mode
-- 'async'). The 0.4.0 install script is sql/visual_search.sql; pg_test/sql/upgrade.sql checks
-- that the upgrades give the same objects.
\echo Use "ALTER EXTENSION visual_search UPDATE TO '0.4.0'" to load this file. \quit

-- What the server's embedding service has done; running is false when none answers.
CREATE FUNCTION visual_search.service_stats()
    RETURNS TABLE (running boolean, pid integer, engine text, engine_error text, threads integer, batchers integer, max_batch integer,
                   max_wait_ms float8, uptime_s float8, requests bigint, images bigint, batches bigint, mean_batch float8,
                   dropped bigint, mean_queue_wait_ms float8, images_per_s float8, batch_sizes text, models text[], info text)
    AS 'MODULE_PATHNAME', 'service_stats_wrapper' LANGUAGE C VOLATILE STRICT;

-- enable_auto_embed gains its mode argument (a new signature: the old function goes); the
-- triggers made by 0.3.0 call auto_embed_trigger, which stays.
DROP FUNCTION visual_search.enable_auto_embed(regclass, name, name, text, text, integer);

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
