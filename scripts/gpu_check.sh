#!/usr/bin/env bash
# The GPU checks of the embedding service (issue #15, point 5) in one script, for a GPU machine
# with no network, run as root: a real server as a user it creates, image_embed on CUDA against
# the CPU's vectors, and bench/results/gpu.md (images/s of full-width VGG16 at 224² with 1, 8 and
# 32 clients, batch sizes formed, GPU memory, f32 and f16; the background queue's drain rate beside
# embed_column's, issue #16). Inside 8 minutes on an H200.
#
# What it runs on, found in this order (.gpu/bundle.tar.xz, made here by scripts/gpu_prepare.sh
# and carried with the run, is unpacked into $bundle, where the server's user can read it):
#   pg/      PostgreSQL 15 from Debian's packages unpacked with dpkg -x, else the system's
#            PostgreSQL 15; of the libraries in it, only those the machine lacks are put on the
#            library path (the rest of the machine, its PyTorch included, keeps its own);
#   stage/   the extension's built files (lib/, extension/, models/) to install into it, else
#            what is installed;
#   libtorch the machine's own PyTorch (python3 -c 'import torch'), whose lib/ goes on the
#            server's library path, and whose libtorch_cuda.so the engine opens; else the
#            engine's rpath.
# Without a GPU it is its own dry run: the same steps on the CPU, smaller, GPU checks skipped.
#   scripts/gpu_check.sh [--dry-run]
# On the device machine: `bash scripts/gpu_prepare.sh` here first, then run
# `VS_GPU_OUT=$OUT bash scripts/gpu_check.sh` there with `.gpu` carried (gpu.md and gpu.json come back).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
work=/tmp/vs_gpu_check
out=${VS_GPU_OUT:-$repo/bench/results}
user=vsgpu
[ "$(id -u)" = 0 ] || { echo "gpu_check: run as root (the server runs as user $user)" >&2; exit 2; }
started=$(date +%s)

bundle=/tmp/vs_gpu_bundle
# Unpacked again when the bundle changed (a warm machine keeps /tmp between runs).
if [ -f .gpu/bundle.tar.xz ] && [ "$(cat "$bundle/.stamp" 2>/dev/null)" != "$(sha256sum < .gpu/bundle.tar.xz)" ]; then
  rm -rf "$bundle"; mkdir -p "$bundle"; tar -xJf .gpu/bundle.tar.xz -C "$bundle"; chmod -R a+rX "$bundle"
  sha256sum < .gpu/bundle.tar.xz > "$bundle/.stamp"
fi
pgroot=/
if [ -d "$bundle/pg/usr/lib/postgresql/15/bin" ]; then pgroot=$bundle/pg; fi
PGBIN=$pgroot/usr/lib/postgresql/15/bin
# Each library a PostgreSQL program cannot find is linked from the bundle into $bundle/libs,
# until none is missing (libraries need others).
libs=
if [ "$pgroot" != / ]; then
  libs=$bundle/libs; mkdir -p "$libs"
  for _ in 1 2 3 4 5 6; do
    missing=$(for b in postgres psql initdb pg_ctl; do LD_LIBRARY_PATH=$libs ldd "$PGBIN/$b"; done | awk '/not found/ {print $1}' | sort -u)
    [ -z "$missing" ] && break
    for m in $missing; do
      f=$(find "$pgroot/usr/lib/x86_64-linux-gnu" "$pgroot/lib/x86_64-linux-gnu" -name "$m" 2>/dev/null | head -1)
      [ -n "$f" ] || { echo "gpu_check: $m is in neither the machine nor the bundle" >&2; exit 1; }
      ln -sf "$f" "$libs/$m"
    done
  done
fi
# Debian's PostgreSQL reads time zones from /usr/share/zoneinfo, wherever it is unpacked.
if [ ! -e /usr/share/zoneinfo/UTC ] && [ -d "$pgroot/usr/share/zoneinfo" ]; then
  mkdir -p /usr/share; cp -r "$pgroot/usr/share/zoneinfo" /usr/share/
fi
py=python3
python3 -c 'import torch' 2>/dev/null || py=${VS_PYTHON:-/opt/bench-venv/bin/python}
# The engine runs on the machine's PyTorch where it is the engine's 2.11 (the same libtorch
# build, with libtorch_cuda.so and CUDA's libraries beside it); else on its rpath's libtorch.
torchlib=rpath
ldpath=
if [ -d "$bundle/stage" ]; then
  read -r version dir < <("$py" -c 'import os, torch; print(torch.__version__.split("+")[0], os.path.join(os.path.dirname(torch.__file__), "lib"))') \
    || version=none
  if [ "${version%.*}" = 2.11 ]; then
    torchlib=$dir
    ldpath=$torchlib:$("$py" -c 'import glob, os, nvidia; print(":".join(glob.glob(os.path.join(list(nvidia.__path__)[0], "*", "lib"))))' 2>/dev/null || true)
  else
    echo "gpu_check: $py has torch $version, not the engine's 2.11: libtorch from the engine's rpath"
  fi
fi
[ -n "$libs" ] && ldpath=$libs${ldpath:+:$ldpath}
export PATH=$PGBIN:$PATH LD_LIBRARY_PATH=$ldpath
echo "gpu_check: PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') from $pgroot, libtorch from $torchlib"

if [ -d "$bundle/stage" ]; then
  pkglib=$("$PGBIN/pg_config" --pkglibdir); share=$("$PGBIN/pg_config" --sharedir)
  cp "$bundle"/stage/lib/* "$pkglib/"; cp "$bundle"/stage/extension/* "$share/extension/"
  mkdir -p "$share/visual_search"; cp -r "$bundle/stage/models" "$share/visual_search/"
  echo "gpu_check: installed the bundle's extension into $pgroot"
fi

id "$user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /bin/false "$user"
rm -rf "$work"; mkdir -p "$work/models" "$work/images"
cp pg_test/data/images/*.png pg_test/data/images/*.jpg "$work/images/"
chown -R "$user" "$work"; chmod -R a+rX "$work"
as_user() { runuser -u "$user" -- env PATH="$PATH" LD_LIBRARY_PATH="$LD_LIBRARY_PATH" "$@"; }
as_user initdb -D "$work/data" -U postgres --auth=trust --no-sync -E UTF8 --locale=C >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_user pg_ctl -D "$work/data" -l "$work/server.log" -w -t 60 start \
  -o "-p $port -k $work -c listen_addresses='' -c jit=off -c max_connections=100 -c visual_search.model_dir=$work/models -c visual_search.service_batchers=2" >/dev/null
trap 'as_user pg_ctl -D "$work/data" -m fast -w stop >/dev/null 2>&1 || true; tail -5 "$work/server.log" 2>/dev/null' EXIT
conninfo="host=$work port=$port user=postgres dbname=postgres"
# The model is written by the machine's own PyTorch (no weights file travels), as the server's user.
chown "$user" "$work/models"
"$py" bench/gpu_check.py "$conninfo" "$work/models" "$work/images" "$out" "$@"
echo "gpu_check: done in $(( $(date +%s) - started )) s"
