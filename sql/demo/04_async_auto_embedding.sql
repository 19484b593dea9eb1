-- New products in bulk: with mode => 'async' the INSERT stores them and queues their photos in
-- the same transaction, and the database's drainer embeds them in batches through the embedding
-- service, outside the writer's transaction. (The new products are removed at the end, so that
-- the demo can be re-run; the catalogue stays in async mode, as a shop that takes uploads would.)
\echo 'the catalogue switches to auto-embedding in the background'
SELECT visual_search.enable_auto_embed('products', 'image', 'embedding', mode => 'async') AS queued_at_switch;
\echo '500 new arrivals in one INSERT: it returns without waiting for a single vector'
\timing on
INSERT INTO products (id, name, category, split, image)
SELECT 200000 + id, 'New ' || name, category, 'test', image FROM products WHERE split = 'test' ORDER BY id LIMIT 500;
\timing off
\echo 'the queue while the drainer works through it (visual_search.embedding_queues, every 0.2 s)'
DO $$
DECLARE
    q record;
    t0 timestamptz := clock_timestamp();
BEGIN
    LOOP
        SELECT pending, in_progress, failed INTO q FROM visual_search.embedding_queues
         WHERE tbl = 'products'::regclass AND embedding_col = 'embedding';
        RAISE NOTICE '% s: % pending, % in progress, % failed', to_char(extract(epoch FROM clock_timestamp() - t0), 'FM990.0'),
            q.pending, q.in_progress, q.failed;
        EXIT WHEN q.pending + q.in_progress = 0 OR clock_timestamp() - t0 > interval '5 minutes';
        PERFORM pg_sleep(0.2);
    END LOOP;
END $$;
-- (visual_search.wait_for_embeddings('products') waits the same way, for every embedding column
-- of the table: the page's second model, filled in the background too, may still be busy.)
SELECT count(*) FILTER (WHERE embedding IS NOT NULL) AS new_arrivals_with_vectors_async, count(*) AS new_arrivals
FROM products WHERE id >= 200000;
SELECT pending, in_progress, failed, round(rows_per_s::numeric) AS rows_per_s_last_minute FROM visual_search.embedding_queues
WHERE tbl = 'products'::regclass AND embedding_col = 'embedding';
\echo 'a new arrival finds its twin in the catalogue through the index'
SELECT id, name, round((embedding <-> (SELECT embedding FROM products WHERE id = 260000))::numeric, 3) AS distance
FROM products ORDER BY embedding <-> (SELECT embedding FROM products WHERE id = 260000) LIMIT 3;
DELETE FROM products WHERE id >= 200000;
