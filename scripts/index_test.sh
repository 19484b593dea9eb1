#!/usr/bin/env bash
# vs_hnsw against a real server, beyond pg_regress: the cases test/t/NNN_*.sh (a parallel build
# on PostgreSQL's workers and its cancel, recall on Fashion-MNIST, concurrent writers and readers,
# a SIGKILL of the whole server during inserts followed by WAL recovery, a streaming replica,
# duplicates, churn), each in its own shell on one cluster whose shared tables load once (that
# takes a while). A failed check or an error fails its case and the next one runs.
#   scripts/index_test.sh [NNN ...]   → every case, or those whose names begin so
# Part of `make test`; prints "index_test: N passed, M failed (K of L cases passed)", N and M
# counting checks, and exits non-zero when any check or case failed.
. "$(dirname "$0")/../test/t/lib.sh"
all=(test/t/[0-9][0-9][0-9]_*.sh)
[ $# -gt 0 ] || set -- "${all[@]}"
cases=()
for f in "${all[@]}"; do
  for a in "$@"; do [[ ${f##*/} == "${a##*/}"* ]] && { cases+=("$f"); break; }; done
done
for a in "$@"; do
  [[ " ${cases[*]##*/}" == *" ${a##*/}"* ]] || { echo "index_test: no case $a" >&2; exit 2; }
done

setup_cluster
export VS_INDEX_TEST_DIR=$dir TMPDIR=$dir/tmp # mktemp files go with the cluster
mkdir -p "$TMPDIR"
passed=0 failed=0 cases_passed=0
for f in "${cases[@]}"; do
  name=$(basename "$f" .sh)
  export VS_INDEX_TEST_CHECKS=$TMPDIR/$name.checks
  : > "$VS_INDEX_TEST_CHECKS"
  t0=$(date +%s)
  bash "$f" && rc=0 || rc=$?
  ok=$(grep -c '^ok$' "$VS_INDEX_TEST_CHECKS" || true)
  bad=$(grep -c '^FAIL$' "$VS_INDEX_TEST_CHECKS" || true)
  # The server and the database as the next case expects them.
  revive_cluster || true
  left=$(leftovers) || left="? (no answer from the server)"
  [ -z "$left" ] || sweep >/dev/null || true
  # An error or a leftover counts as a failed check too, so that M is 0 only when all went well.
  if [ "$rc" != 0 ]; then why="stopped by an error (exit status $rc)"; bad=$((bad + 1))
  elif [ "$bad" != 0 ]; then why="$bad of $((ok + bad)) checks failed"
  elif [ -n "$left" ]; then why="left behind $left"; bad=1
  else why=""; fi
  passed=$((passed + ok)) failed=$((failed + bad))
  if [ -z "$why" ]; then
    cases_passed=$((cases_passed + 1))
    echo "index_test: ok $name ($ok checks, $(($(date +%s) - t0)) s)"
  else
    echo "index_test: FAIL $name: $why ($(($(date +%s) - t0)) s)"
  fi
done

bash scripts/pgcluster.sh destroy "$dir"
echo "index_test: $passed passed, $failed failed ($cases_passed of ${#cases[@]} cases passed)"
exit $((failed > 0 || cases_passed < ${#cases[@]}))
