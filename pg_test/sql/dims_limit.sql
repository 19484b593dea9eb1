-- Every path that builds a vector refuses more than 65,535 dimensions with 54000 (the header
-- keeps the count in 16 bits: a longer vector was stored with a wrapped count, and every later
-- read of the row failed with "corrupt embedding datum", pg_dump included).
CREATE TABLE dl_notes (id int, e embedding, h halfembedding);
SELECT q AS statement, outcome(q) FROM (VALUES
  -- the average's final function, called on a state with more sums than a vector can hold
  ($$INSERT INTO dl_notes (id, e) VALUES (1, embedding_avg(array_fill(1::float8, ARRAY[70001])))$$),
  ($$INSERT INTO dl_notes (id, h) VALUES (2, halfembedding_avg(array_fill(1::float8, ARRAY[70001])))$$),
  ($$INSERT INTO dl_notes (id, e) VALUES (3, embedding_avg(array_fill(1::float8, ARRAY[65537])))$$),
  ($$INSERT INTO dl_notes (id, h) VALUES (4, halfembedding_avg(array_fill(1::float8, ARRAY[131073])))$$),
  -- the other constructors: text, arrays, the state functions, conversions
  ($$INSERT INTO dl_notes (id, e) VALUES (5, ('[' || repeat('1,', 70000) || '1]')::embedding)$$),
  ($$INSERT INTO dl_notes (id, h) VALUES (6, array_fill(1::real, ARRAY[70001])::halfembedding)$$),
  ($$INSERT INTO dl_notes (id, e) VALUES (7, array_fill(1::numeric, ARRAY[70001])::embedding)$$),
  ($$SELECT embedding_accum(array_fill(0::float8, ARRAY[70002]), '[1]')$$),
  ($$SELECT embedding_avg(embedding_combine(array_fill(1::float8, ARRAY[70002]), array_fill(1::float8, ARRAY[70002])))$$)
) t(q);
-- nothing corrupt was stored: the table reads back whole
SELECT count(*) AS rows, sum(vector_dims(e)) AS e_dims, sum(vector_dims(h)) AS h_dims FROM dl_notes;
SELECT count(e::text) + count(h::text) AS values_read FROM dl_notes;

-- the limit itself is allowed, on every path
SELECT vector_dims(embedding_avg(array_fill(1::float8, ARRAY[65536]))) AS avg_dims,
       vector_dims(halfembedding_avg(array_fill(2::float8, ARRAY[65536]))) AS half_avg_dims,
       vector_dims(array_fill(1::real, ARRAY[65535])::embedding) AS array_dims,
       vector_dims(array_fill(1::real, ARRAY[65535])::embedding::halfembedding) AS converted_dims,
       vector_dims(avg(v)) AS aggregate_dims
FROM (SELECT array_fill(1::real, ARRAY[65535])::embedding v FROM generate_series(1, 2)) s;
INSERT INTO dl_notes (id, e) VALUES (10, embedding_avg(array_fill(1::float8, ARRAY[65536])));
SELECT id, vector_dims(e), e::text LIKE '[1,1,%,1]' AS well_formed FROM dl_notes;
DROP TABLE dl_notes;
