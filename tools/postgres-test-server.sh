#!/usr/bin/env bash
# A throwaway PostgreSQL server for the SQL plugin's tests and benchmark.
#
#   eval "$(tools/postgres-test-server.sh start)"   # sets PYMAR_TEST_POSTGRESQL_URL and _DIR
#   ...                                             # tests against $PYMAR_TEST_POSTGRESQL_URL
#   tools/postgres-test-server.sh stop "$PYMAR_TEST_POSTGRESQL_DIR"
#
# `start` installs Debian's server package when it is missing (as root), makes a cluster in a
# new temporary folder, starts it on a free port of 127.0.0.1 (as the user postgres when run as
# root: the server refuses to run as root), creates the database pymar_test with the table
# numbers(i bigint primary key) for i in [0, PYMAR_TEST_POSTGRESQL_ROWS) (100000 by default),
# and prints the two variables on stdout; progress goes to stderr. `stop` stops that server and
# removes the folder. Exit status 77 (meson's "skipped") when the server cannot be installed.
set -euo pipefail

log() { printf 'postgres-test-server: %s\n' "$*" >&2; }

# The newest installed server's programs (initdb, pg_ctl, psql).
bin_dir() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$dir" ] && [ -x "$dir/initdb" ] && printf '%s\n' "$dir"
}

# Runs a command as the user that owns the cluster: postgres when we are root, else ourselves.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

install_server() {
  if [ -n "$(bin_dir)" ]; then return 0; fi
  if [ "$(id -u)" -ne 0 ]; then
    log "PostgreSQL's server is not installed and installing it needs root (apt-get install postgresql)"
    exit 77
  fi
  log "installing PostgreSQL's server (apt-get install -y postgresql)"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2; then
    apt-get update -q >&2 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2 || {
      log "could not install postgresql"
      exit 77
    }
  fi
  [ -n "$(bin_dir)" ] || { log "postgresql installed, but no initdb under /usr/lib/postgresql"; exit 77; }
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {
  install_server
  cd /  # the server's user may not be allowed into the caller's working directory
  local bin dir port rows=${PYMAR_TEST_POSTGRESQL_ROWS:-100000}
  bin=$(bin_dir)
  if [ "$(id -u)" -eq 0 ]; then
    # In /tmp, which the user postgres can reach (root's TMPDIR may not be).
    dir=$(mktemp -d /tmp/pymar-postgres-XXXXXX)
    chown postgres: "$dir"
  else
    dir=$(mktemp -d "${TMPDIR:-/tmp}/pymar-postgres-XXXXXX")
  fi
  touch "$dir/.pymar-postgres-test"  # `stop` removes only folders that carry this mark
  log "making a cluster in $dir"
  as_owner "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1 || {
    cat "$dir/initdb.log" >&2
    exit 1
  }

  # A free port: another process may take it between the check and the start, so retry.
  local started=""
  for _ in 1 2 3 4 5 6 7 8; do
    port=$((20000 + RANDOM % 40000))
    port_in_use "$port" && continue
    # Durability is not wanted for a throwaway server: no fsync makes loading fast.
    if as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -o \
      "-p $port -h 127.0.0.1 -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
      start >/dev/null; then
      started=yes
      break
    fi
  done
  if [ -z "$started" ]; then
    log "the server did not start; its log:"
    cat "$dir/server.log" >&2 || true
    exit 1
  fi
  echo "$port" >"$dir/port"

  local psql=("$bin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres)
  "${psql[@]}" -d postgres -c "CREATE DATABASE pymar_test" >&2
  log "loading numbers(i) for i in [0, $rows)"
  "${psql[@]}" -d pymar_test >&2 <<SQL
CREATE TABLE numbers (i bigint PRIMARY KEY);
INSERT INTO numbers SELECT generate_series(0, $rows - 1);
ANALYZE numbers;
SQL
  log "listening on 127.0.0.1:$port"
  printf 'PYMAR_TEST_POSTGRESQL_URL=%q\n' "postgresql://postgres@127.0.0.1:$port/pymar_test"
  printf 'PYMAR_TEST_POSTGRESQL_DIR=%q\n' "$dir"
}

stop() {
  local dir=${1:-}
  if [ -z "$dir" ] || [ ! -f "$dir/.pymar-postgres-test" ]; then
    log "usage: $0 stop DIR (a folder made by '$0 start')"
    exit 2
  fi
  local bin
  bin=$(bin_dir) || true
  if [ -n "$bin" ] && [ -f "$dir/data/postmaster.pid" ]; then
    as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf -- "$dir"
  log "stopped and removed $dir"
}

case "${1:-}" in
  start) start ;;
  stop) stop "${2:-}" ;;
  *)
    echo "usage: $0 start | stop DIR" >&2
    exit 2
    ;;
esac
