-- visual_search 0.6.0 → 0.7.0: no SQL object changes. vs_hnsw indexes built from 0.7.0 on keep
-- 6-byte neighbour slots instead of 12 (a smaller index: 11 elements of 128 dimensions on a page
-- instead of 8); indexes built before go on working as they are, and REINDEX makes them compact.
\echo Use "ALTER EXTENSION visual_search UPDATE TO '0.7.0'" to load this file. \quit
