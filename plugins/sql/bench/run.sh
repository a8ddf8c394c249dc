#!/usr/bin/env bash
# The SQL split benchmark on a table of 10^7 rows: key ranges against LIMIT/OFFSET, on SQLite
# and then on a throwaway PostgreSQL server (tools/postgres-test-server.sh, stopped afterwards).
#
#   plugins/sql/bench/run.sh [BUILD_DIR]      # default: build
#
# Environment: BENCH_ROWS (10000000), BENCH_SLICES (8,32), BENCH_REPEAT (5), and
# BENCH_SQLITE=0 or BENCH_POSTGRESQL=0 to skip one of them. Tables are made on the first run (SQLite's in the
# temporary folder is kept for the next run); medians and ratios go to stdout.
set -euo pipefail
cd "$(dirname "$0")/../../.."
build=${1:-build}
rows=${BENCH_ROWS:-10000000}
slices=${BENCH_SLICES:-8,32}
repeat=${BENCH_REPEAT:-5}

[ -f "$build/build.ninja" ] || meson setup "$build" >/dev/null
if ! out=$(ninja -C "$build" plugins/sql/bench/sql_split_bench 2>&1); then
  printf '%s\n' "$out" >&2
  exit 1
fi
bench="$build/plugins/sql/bench/sql_split_bench"

if [ "${BENCH_SQLITE:-1}" != 0 ]; then
  "$bench" --rows "$rows" --slices "$slices" --repeat "$repeat"
fi

if [ "${BENCH_POSTGRESQL:-1}" != 0 ]; then
  echo
  state=$(PYMAR_TEST_POSTGRESQL_ROWS=1 tools/postgres-test-server.sh start)
  eval "$state"
  trap 'tools/postgres-test-server.sh stop "$PYMAR_TEST_POSTGRESQL_DIR"' EXIT
  "$bench" "$PYMAR_TEST_POSTGRESQL_URL" --rows "$rows" --slices "$slices" --repeat "$repeat"
fi
