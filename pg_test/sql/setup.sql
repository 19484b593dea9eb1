-- Shared by the cases that follow: the extension, and outcome(q), which runs a statement and
-- returns 'ok' or its SQLSTATE and message, so that error cases can be listed as rows.
CREATE EXTENSION IF NOT EXISTS visual_search;
CREATE FUNCTION outcome(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE q;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
