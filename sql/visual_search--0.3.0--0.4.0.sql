-- visual_search 0.3.0 → 0.4.0: the embedding service. The 0.4.0 install script is
-- sql/visual_search.sql; pg_test/sql/upgrade.sql checks that the upgrades give the same objects.
\echo Use "ALTER EXTENSION visual_search UPDATE TO '0.4.0'" to load this file. \quit

-- What the server's embedding service has done; running is false when none answers.
CREATE FUNCTION visual_search.service_stats()
    RETURNS TABLE (running boolean, pid integer, engine text, engine_error text, threads integer, batchers integer, max_batch integer,
                   max_wait_ms float8, uptime_s float8, requests bigint, images bigint, batches bigint, mean_batch float8,
                   dropped bigint, mean_queue_wait_ms float8, images_per_s float8, batch_sizes text, models text[], info text)
    AS 'MODULE_PATHNAME', 'service_stats_wrapper' LANGUAGE C VOLATILE STRICT;
