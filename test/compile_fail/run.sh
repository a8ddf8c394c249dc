#!/usr/bin/env bash
# Compile-fail tests of the template boundary: each case is a small task with one mistake a user
# can make. It must not compile, its diagnostics must hold the message written after
# "// expect: " in the case, and that must be the only error (no cascade behind it).
# Usage: run.sh COMPILER [FLAGS...] -- CASE.cpp...
set -uo pipefail
export LC_ALL=C  # ASCII quotes in the diagnostics
compiler=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  compiler+=("$1")
  shift
done
shift
[ ${#compiler[@]} -gt 0 ] && [ $# -gt 0 ] || { echo "usage: $0 COMPILER [FLAGS...] -- CASE.cpp..." >&2; exit 2; }

failed=0
for case in "$@"; do
  expected=$(sed -n 's|^// expect: ||p' "$case")
  if [ -z "$expected" ]; then
    echo "FAIL $case: no '// expect: ' line" >&2
    failed=1
    continue
  fi
  errors=$("${compiler[@]}" -fsyntax-only "$case" 2>&1)
  status=$?
  count=$(grep -c ': error: ' <<<"$errors")
  if [ "$status" -eq 0 ]; then
    echo "FAIL $case: compiled, but it should not" >&2
    failed=1
  elif ! grep -qF -- "$expected" <<<"$errors"; then
    echo "FAIL $case: the diagnostics do not say: $expected" >&2
    echo "$errors" | grep ': error: ' | head -n 5 >&2
    failed=1
  elif [ "$count" -ne 1 ]; then
    echo "FAIL $case: $count errors, not 1:" >&2
    echo "$errors" | grep ': error: ' | head -n 5 >&2
    failed=1
  else
    echo "ok   $case: $expected"
  fi
done
exit $failed
