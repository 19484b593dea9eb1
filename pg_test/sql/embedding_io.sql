-- Text and binary I/O, typmod, storage of embedding and halfembedding.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS visual_search;
RESET client_min_messages;

SELECT '[1,2.5,-3]'::embedding;
SELECT '  [ 1 , 2 ,3 ]  '::embedding;
SELECT '[1e20,1.5e-7,-0,123456.79]'::embedding;
SELECT '[1,2.5,-3]'::halfembedding;
SELECT '[0.1,65504,-65504]'::halfembedding;
SELECT '[1,2,3]'::embedding(3), '[1,2,3]'::halfembedding(3);

-- typmod is checked on assignment and shown by format_type
CREATE TABLE items (id int PRIMARY KEY, v embedding(3), h halfembedding(3));
INSERT INTO items VALUES (1, '[1,2,3]', '[1,2,3]'), (2, '[4,5,6]', '[4,5,6]'), (3, NULL, NULL);
SELECT id, v, h FROM items ORDER BY id;
SELECT format_type(atttypid, atttypmod) FROM pg_attribute
 WHERE attrelid = 'items'::regclass AND attname IN ('v', 'h') ORDER BY attname;

-- compact storage: 8 bytes of header, then 4 (or 2) bytes a dimension
SELECT pg_column_size('[1,2,3]'::embedding) AS emb3, pg_column_size('[1,2,3]'::halfembedding) AS half3,
       pg_column_size(array_fill(1.0::real, ARRAY[784])::embedding) AS emb784;

-- COPY text and COPY BINARY round trips (files in the server's data directory)
SELECT current_setting('data_directory') || '/vs_items.txt' AS txtfile,
       current_setting('data_directory') || '/vs_items.bin' AS binfile \gset
COPY items TO :'txtfile';
COPY items TO :'binfile' (FORMAT binary);
CREATE TABLE items_text (LIKE items);
CREATE TABLE items_bin (LIKE items);
COPY items_text FROM :'txtfile';
COPY items_bin FROM :'binfile' (FORMAT binary);
SELECT count(*) AS same_text FROM items a JOIN items_text b USING (id)
 WHERE a.v IS NOT DISTINCT FROM b.v AND a.h IS NOT DISTINCT FROM b.h;
SELECT count(*) AS same_binary FROM items a JOIN items_bin b USING (id)
 WHERE a.v IS NOT DISTINCT FROM b.v AND a.h IS NOT DISTINCT FROM b.h;

-- the binary form is pgvector's: dim u16, unused u16, big-endian elements
SELECT embedding_send('[1,-2]'), halfembedding_send('[1,-2]');

-- the largest vectors: 65,535 dimensions
SELECT vector_dims(array_fill(0.5::real, ARRAY[65535])::embedding),
       vector_dims(array_fill(0.5::real, ARRAY[65535])::halfembedding);
SELECT vector_dims(('[' || repeat('1,', 65534) || '1]')::embedding(65535));
SELECT vector_dims(array_fill(1.0::real, ARRAY[25088])::embedding(25088)) AS vgg16_conv5;
