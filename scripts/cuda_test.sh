#!/usr/bin/env bash
# The CUDA path of image_embed, on a machine with an NVIDIA GPU and PyTorch's CUDA build for
# python3 (the CPU-only libtorch of setup.sh has no CUDA): runs the embed tests with that torch's
# libraries, libtorch_cuda preloaded. Elsewhere `cargo test` skips the CUDA test and says so.
#   scripts/cuda_test.sh [TEST_BINARY]   (default: builds vs_embed's test binary here)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-}
if [ -z "$bin" ]; then
  bin=$(cargo test -p vs_embed --lib --no-run --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "vs_embed":
        print(m["executable"])')
fi
lib=$(python3 -c 'import os, torch; assert torch.cuda.is_available(), "no CUDA device for torch"; print(os.path.dirname(torch.__file__) + "/lib")')
export LD_LIBRARY_PATH="$lib:$lib/../../nvidia/cu13/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
LD_PRELOAD="$lib/libtorch_cuda.so" "$bin" --test-threads 1
