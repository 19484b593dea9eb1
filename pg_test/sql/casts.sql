-- Casts between vectors and arrays, and between the two vector types.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS visual_search;
RESET client_min_messages;

SELECT ARRAY[1,2,3]::embedding, ARRAY[1.5,2,3]::real[]::embedding, ARRAY[1.5,2,3]::float8[]::embedding,
       ARRAY[1.5,2,3]::numeric[]::embedding;
SELECT ARRAY[1,2,3]::halfembedding, ARRAY[1.5,2,3]::real[]::halfembedding;
SELECT '[1,2.5,-3]'::embedding::real[], '[1,2.5,-3]'::embedding::double precision[],
       '[1,2.5,-3.5]'::embedding::integer[];
SELECT '[1,2.5,-3]'::halfembedding::real[], '[1,2.5,-3]'::halfembedding::double precision[];
SELECT ARRAY[1,2,3]::embedding(3);

-- assignment casts from arrays
CREATE TABLE arr (v embedding(2), h halfembedding(2));
INSERT INTO arr VALUES (ARRAY[1,2], ARRAY[3.5,4]::real[]);
SELECT * FROM arr;

-- between the types: f16 rounds, out of f16 range is an error
SELECT '[1.1,2,3]'::embedding::halfembedding, '[1.5,2,3]'::halfembedding::embedding;
SELECT '[1,2]'::embedding::halfembedding(2);
SELECT '[0.1]'::embedding::halfembedding::embedding;
-- up to 65,519.996 a value rounds to f16's largest, 65,504, as pgvector's halfvec takes it; from
-- 65,520 on it would be infinity: the literal, the cast and the array cast agree
SELECT '[65519,-65519]'::halfembedding AS literal, '[65519]'::embedding::halfembedding AS cast,
       '{65519}'::real[]::halfembedding AS from_array;
SELECT outcome($$SELECT '[65520]'::embedding::halfembedding$$), outcome($$SELECT '[65520]'::halfembedding$$);
