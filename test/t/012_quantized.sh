#!/usr/bin/env bash
# A quantized index (WITH (quantize = on): RaBitQ codes, reranked from the table) keeps what
# the others do: the parallel build and its cancel of 001 and 002 (on workers that insert), the
# concurrent writers and readers of 004, the crash and WAL recovery of 005 and the streaming
# replica of 006 run again on one. (Recall, VACUUM, limits: the regress case vs_hnsw_quantized.)
. "$(dirname "$0")/lib.sh"
for c in 001_parallel_build 002_parallel_build_cancel 004_concurrent_writers 005_crash_recovery 006_replica; do
  echo "index_test: $c with codes"
  VS_INDEX_OPTIONS="quantize = on" bash "test/t/$c.sh"
done
