#!/usr/bin/env bash
# The SQL plugin's tests against a real PostgreSQL server: starts a throwaway one
# (tools/postgres-test-server.sh), runs the unit tests (against SQLite and PostgreSQL) and the
# squaredsum_sql example with a pool of worker processes against it, and stops it whatever
# happens. Usage: postgresql-tests.sh SOURCE_ROOT SQL_TESTS SQL_PROCESS_TESTS
set -euo pipefail
source_root=$1
sql_tests=$2
sql_process_tests=$3
server="$source_root/tools/postgres-test-server.sh"

status=0
state=$("$server" start) || status=$?
if [ "$status" -eq 77 ]; then
  echo "skipped: no PostgreSQL server could be installed (see above)"
  exit 77
elif [ "$status" -ne 0 ]; then
  echo "the PostgreSQL test server did not start" >&2
  exit "$status"
fi
eval "$state"
trap '"$server" stop "$PYMAR_TEST_POSTGRESQL_DIR"' EXIT
export PYMAR_TEST_POSTGRESQL_URL
echo "PostgreSQL test server: $PYMAR_TEST_POSTGRESQL_URL"

"$sql_tests" --test-suite=sql
"$sql_process_tests" --test-suite="sql postgresql"
