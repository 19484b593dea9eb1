#!/usr/bin/env bash
# Makes .gpu/bundle.tar.xz, what scripts/gpu_check.sh needs on a GPU machine with no network, here
# where Debian's registry is reached (run after `bash scripts/install.sh`):
#   pg/     PostgreSQL 15 from Debian's packages unpacked with dpkg -x, with every library its
#           programs need beyond glibc and the C++ runtime (gpu_check links in only those the
#           machine lacks) and tzdata;
#   stage/  the installed extension: lib/ (visual_search.so, the engine, the service), extension/,
#           models/.
# The engine is the one built here: on the GPU machine it runs on that machine's PyTorch 2.11 (the
# same libtorch build) and opens the libtorch_cuda.so beside it (vs_embed::cuda). Carry `.gpu`
# with the run (about 40 MB).
set -euo pipefail
cd "$(dirname "$0")/.."
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
bin=$("$PG_CONFIG" --bindir); libdir=$("$PG_CONFIG" --pkglibdir); share=$("$PG_CONFIG" --sharedir)
tmp=$(mktemp -d); chmod 755 "$tmp"
trap 'rm -rf "$tmp"' EXIT
# The packages of the libraries that PostgreSQL's programs load, found through dpkg (its paths are
# the unmerged /lib ones for some).
owner() { dpkg -S "$(readlink -f "$1")" 2>/dev/null || dpkg -S "$1" 2>/dev/null || echo "?:$1"; }
deps=$(for b in postgres psql initdb pg_ctl; do ldd "$bin/$b"; done | awk '/=>/ {print $3}' | sort -u \
  | while read -r lib; do owner "$lib"; done | cut -d: -f1 | sort -u | grep -vxE 'libc6|libgcc-s1|libstdc\+\+6')
case "$deps" in *\?*) echo "gpu_prepare: no package owns: $deps" >&2; exit 1 ;; esac
mkdir -p "$tmp/debs" "$tmp/pg" "$tmp/stage/lib" "$tmp/stage/extension"
# apt-get writes as _apt where it can: a folder it may write into.
chmod 777 "$tmp/debs"
(cd "$tmp/debs" && apt-get download -q postgresql-15 postgresql-client-15 tzdata $deps >/dev/null)
for d in "$tmp"/debs/*.deb; do dpkg -x "$d" "$tmp/pg"; done
# Not used there: documentation, translations, the JIT's bitcode (the server runs with jit=off).
rm -rf "$tmp"/pg/usr/share/{doc,man,locale,lintian} "$tmp/pg/usr/lib/postgresql/15/lib/bitcode"
cp "$libdir"/visual_search.so "$libdir"/visual_search_engine.so "$libdir"/visual_search_service "$tmp/stage/lib/"
cp "$share"/extension/visual_search* "$tmp/stage/extension/"
cp -r "$share/visual_search/models" "$tmp/stage/"
mkdir -p .gpu
tar -cJf .gpu/bundle.tar.xz -C "$tmp" pg stage
echo "gpu_prepare: .gpu/bundle.tar.xz ($(du -h .gpu/bundle.tar.xz | cut -f1)): $(ls "$tmp/debs" | wc -l) Debian packages, the extension of $libdir"
