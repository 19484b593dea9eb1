# Sourced by the bench scripts that compare with pgvector: builds it from the source in
# PGVECTOR_SRC (a checkout, or a bare git repository: its PGVECTOR_REV, HEAD unless set) in a scratch folder and installs it
# into PG_CONFIG's server when it is not there yet (one already installed is used as it is).
pgvector_install() {
  local src=${PGVECTOR_SRC:-/work/.mirror/pgvector+pgvector/repo} build
  [ -f "$("$PG_CONFIG" --sharedir)/extension/vector.control" ] && return
  build=$(mktemp -d /tmp/pgvector-build.XXXXXX)
  if [ -d "$src/objects" ] || [ "$(git -C "$src" rev-parse --is-bare-repository 2>/dev/null)" = true ]; then
    git --git-dir="$src" archive "${PGVECTOR_REV:-HEAD}" | tar -x -C "$build"
  else
    cp -r "$src/." "$build/"
  fi
  make -C "$build" PG_CONFIG="$PG_CONFIG" -j"$(nproc)" >/dev/null
  if [ "$(id -u)" = 0 ]; then make -C "$build" PG_CONFIG="$PG_CONFIG" install >/dev/null
  else sudo -E make -C "$build" PG_CONFIG="$PG_CONFIG" install >/dev/null; fi
  rm -rf "$build"
}
