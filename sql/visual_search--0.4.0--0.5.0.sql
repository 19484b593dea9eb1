-- visual_search 0.4.0 → 0.5.0: models() gains each model's input size, licence and source (a new
-- row type: the old function goes). The 0.5.0 install script is sql/visual_search.sql.
\echo Use "ALTER EXTENSION visual_search UPDATE TO '0.5.0'" to load this file. \quit

DROP FUNCTION visual_search.models();
CREATE FUNCTION visual_search.models()
    RETURNS TABLE (name text, architecture text, input_size integer, dims integer, pooling text, licence text, source text,
                   weights_present boolean, problem text)
    AS 'MODULE_PATHNAME', 'list_models_v5_wrapper' LANGUAGE C STABLE STRICT;
