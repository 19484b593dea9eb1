-- ORDER BY <op> LIMIT k by sequential scan returns exactly the true top-k, for every operator.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS visual_search;
RESET client_min_messages;

CREATE TABLE pts AS
SELECT i AS id, ARRAY(SELECT ((hashint4(i * 64 + j) & 65535) / 32768.0 - 1)::real FROM generate_series(1, 48) j) AS a
FROM generate_series(1, 2000) i;
ALTER TABLE pts ADD COLUMN v embedding(48), ADD COLUMN h halfembedding(48);
UPDATE pts SET v = a::embedding, h = a::halfembedding;
CREATE TABLE q AS SELECT ARRAY(SELECT ((hashint4(-j) & 65535) / 32768.0 - 1)::real FROM generate_series(1, 48) j) AS a;

-- plain SQL reference distances
CREATE TABLE ref AS
SELECT p.id,
       sqrt(sum((x::float8 - y) ^ 2)) AS l2,
       -sum(x::float8 * y) AS nip,
       1 - sum(x::float8 * y) / (sqrt(sum(x::float8 * x)) * sqrt(sum(y::float8 * y))) AS cos,
       sum(abs(x::float8 - y)) AS l1
FROM pts p, q, unnest(p.a, q.a) AS t(x, y) GROUP BY p.id;

SELECT (SELECT array_agg(id) FROM (SELECT id FROM pts, q ORDER BY v <-> q.a::embedding LIMIT 10) s)
     = (SELECT array_agg(id) FROM (SELECT id FROM ref ORDER BY l2 LIMIT 10) s) AS l2_top10,
       (SELECT array_agg(id) FROM (SELECT id FROM pts, q ORDER BY v <#> q.a::embedding LIMIT 10) s)
     = (SELECT array_agg(id) FROM (SELECT id FROM ref ORDER BY nip LIMIT 10) s) AS ip_top10,
       (SELECT array_agg(id) FROM (SELECT id FROM pts, q ORDER BY v <=> q.a::embedding LIMIT 10) s)
     = (SELECT array_agg(id) FROM (SELECT id FROM ref ORDER BY cos LIMIT 10) s) AS cos_top10,
       (SELECT array_agg(id) FROM (SELECT id FROM pts, q ORDER BY v <+> q.a::embedding LIMIT 10) s)
     = (SELECT array_agg(id) FROM (SELECT id FROM ref ORDER BY l1 LIMIT 10) s) AS l1_top10;

-- halfembedding: exact top-10 of the f16 values it stores
CREATE TABLE ref_h AS
SELECT p.id, sqrt(sum((x::float8 - y) ^ 2)) AS l2, sum(abs(x::float8 - y)) AS l1
FROM pts p, q, unnest(p.h::real[], q.a::halfembedding::real[]) AS t(x, y) GROUP BY p.id;
SELECT (SELECT array_agg(id) FROM (SELECT id FROM pts, q ORDER BY h <-> q.a::halfembedding LIMIT 10) s)
     = (SELECT array_agg(id) FROM (SELECT id FROM ref_h ORDER BY l2 LIMIT 10) s) AS half_l2_top10,
       (SELECT array_agg(id) FROM (SELECT id FROM pts, q ORDER BY h <+> q.a::halfembedding LIMIT 10) s)
     = (SELECT array_agg(id) FROM (SELECT id FROM ref_h ORDER BY l1 LIMIT 10) s) AS half_l1_top10;

EXPLAIN (COSTS OFF) SELECT id FROM pts ORDER BY v <-> '[1]'::embedding LIMIT 5;
