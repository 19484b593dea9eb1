-- Shared by the cases that follow: the extension; outcome(q), which runs a statement and
-- returns 'ok' or its SQLSTATE and message, so that error cases can be listed as rows; and
-- index_recall(...), recall@10 of a vs_hnsw index against the exact answers.
CREATE EXTENSION IF NOT EXISTS visual_search;
CREATE FUNCTION outcome(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE q;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- Recall@10 of a vs_hnsw index on tbl.col (opclass, WITH (options)) at ef_search ef, over the
-- query vectors of table queries (q, v real[]), against a sequential scan's answers; the index
-- is dropped again.
CREATE FUNCTION index_recall(tbl text, queries text, col text, op text, opclass text, options text, ef int) RETURNS numeric LANGUAGE plpgsql AS $$
DECLARE hits int := 0; n int := 0; r record; exact int[]; approx int[];
  typ text := CASE opclass LIKE 'half%' WHEN true THEN 'halfembedding' ELSE 'embedding' END;
  q text := format('SELECT array_agg(id) FROM (SELECT id FROM %I ORDER BY %I %s $1::%s LIMIT 10) s', tbl, col, op, typ);
BEGIN
  PERFORM set_config('vs_hnsw.ef_search', ef::text, true);
  EXECUTE format('CREATE INDEX index_recall_idx ON %I USING vs_hnsw (%I %s) WITH (%s)', tbl, col, opclass, options);
  FOR r IN EXECUTE format('SELECT v FROM %I', queries) LOOP
    -- A NULL query orders nothing: both scans would return the same arbitrary rows.
    IF r.v IS NULL THEN
      RAISE EXCEPTION 'index_recall: a query vector of % is NULL', queries;
    END IF;
    SET LOCAL enable_indexscan = off;
    EXECUTE q INTO exact USING r.v::embedding::text;
    SET LOCAL enable_indexscan = on;
    SET LOCAL enable_seqscan = off;
    EXECUTE q INTO approx USING r.v::embedding::text;
    SET LOCAL enable_seqscan = on;
    hits := hits + (SELECT count(*) FROM unnest(approx) a WHERE a = ANY (exact));
    n := n + 1;
  END LOOP;
  EXECUTE 'DROP INDEX index_recall_idx';
  RETURN hits / (10.0 * n);
END $$;
