#!/usr/bin/env bash
# The systemd template unit for long-lived pools, examples/systemd/pymar-pool@.service:
#  1. systemd-analyze verify accepts it without a word, for an instance whose binary exists (the
#     unit's /usr/local/bin/%i is pointed at TEST_TASK's folder);
#  2. it keeps the promises doc/clusters.md makes (restart on failure, never on status 3, SIGTERM,
#     its own user and a read-only system);
#  3. its ExecStart line, with the variables of an env file as the unit reads them and the secret
#     key where the unit's credential puts it, makes a pool that serves a producer with keys; the
#     status of a pool the producer refuses is one the unit does not restart on, and SIGTERM ends a
#     pool cleanly (status 0, not a failure to restart after).
# Exits 77 (skip) only when systemd-analyze is missing.
#
#   test/cluster/systemd-unit.sh UNIT TEST_TASK
set -euo pipefail

[ $# -eq 2 ] || { echo "usage: $0 UNIT TEST_TASK" >&2; exit 2; }
unit=$(realpath "$1")
task=$(realpath "$2")
command -v systemd-analyze >/dev/null ||
  { echo "SKIP: systemd-analyze is missing (tools/setup-debian.sh cluster)" >&2; exit 77; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pymar-unit.XXXXXX")
pids=()
cleanup() {
  local status=$?
  set +e
  [ ${#pids[@]} -gt 0 ] && kill -KILL "${pids[@]}" 2>/dev/null
  rm -rf "$tmp"
  exit "$status"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  for log in "$tmp"/*.log; do
    [ -f "$log" ] && { echo "--- $log" >&2; tail -n 20 "$log" >&2; }
  done
  exit 1
}

# --- 1. systemd-analyze verify ---------------------------------------------------------------
name=$(basename "$task")
instance="pymar-pool@$name.service"
sed "s|/usr/local/bin/%i|$(dirname "$task")/%i|" "$unit" >"$tmp/pymar-pool@.service"
grep -q "^ExecStart=$(dirname "$task")/%i " "$tmp/pymar-pool@.service" ||
  fail "the unit does not start /usr/local/bin/%i"
ln -s "pymar-pool@.service" "$tmp/$instance"
if ! (cd "$tmp" && systemd-analyze verify "$tmp/$instance") >"$tmp/verify.log" 2>&1; then
  fail "systemd-analyze verify: $(cat "$tmp/verify.log")"
fi
# Unknown or misspelt settings are only warnings to verify: here they fail.
[ ! -s "$tmp/verify.log" ] || fail "systemd-analyze verify has something to say: $(cat "$tmp/verify.log")"

# --- 2. the settings the documentation promises ----------------------------------------------
setting() { sed -n "s/^$1=//p" "$unit" | tail -n 1; }
[ "$(setting Restart)" = on-failure ] || fail "Restart= is '$(setting Restart)', not on-failure"
prevented=" $(setting RestartPreventExitStatus) "
[ "$(setting KillSignal)" = SIGTERM ] || fail "KillSignal= is '$(setting KillSignal)', not SIGTERM"
[ "$(setting EnvironmentFile)" = /etc/pymar/%i.env ] || fail "the env file is not /etc/pymar/%i.env"
[ "$(setting DynamicUser)" = yes ] || [ -n "$(setting User)" ] || fail "the pool would run as root"
[ "$(setting ProtectSystem)" = strict ] || fail "ProtectSystem= is not strict"
[ "$(setting NoNewPrivileges)" = yes ] || fail "NoNewPrivileges= is not yes"
[ "$(setting PrivateTmp)" = yes ] || fail "PrivateTmp= is not yes"

# --- 3. the unit's command line, environment and credential, as systemd would give them -------
"$task" --keygen "$tmp/keys" --key-name producer >/dev/null
"$task" --keygen "$tmp/keys" --key-name pool >/dev/null
"$task" --keygen "$tmp/keys" --key-name stranger >/dev/null
credentials=$tmp/credentials  # what %d is; the unit's LoadCredential= copies the key there
mkdir -p "$credentials"
credential=$(setting LoadCredential)
[ "${credential%%:*}" = secret_key ] && [ "${credential#*:}" = /etc/pymar/%i.key_secret ] ||
  fail "LoadCredential= is '$credential', not secret_key:/etc/pymar/%i.key_secret"

# A producer waiting for workers, with a job whose answer is known exactly.
TEST_JOB=doubled TEST_LENGTH=1000 "$task" --produce -v -q 127.0.0.1:0 \
  --secret-key "$tmp/keys/producer.key_secret" --allow "$tmp/keys/pool.key" --grace 60 \
  >"$tmp/producer.out" 2>"$tmp/producer.log" &
producer=$!
pids+=("$producer")
port=""
for _ in $(seq 100); do
  port=$(sed -n 's|.*listening on tcp://[^ ]*:\([0-9][0-9]*\) .*|\1|p' "$tmp/producer.log")
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || fail "the producer did not listen within 10 s"

cat >"$tmp/$name.env" <<EOF
PYMAR_QUEUE=127.0.0.1:$port
PYMAR_PRODUCER_KEY=$tmp/keys/producer.key
PYMAR_POOL_OPTIONS=--workers 2 --heartbeat 0.2 --liveness 2
EOF

# Starts the pool as the unit would, with KEY as its credential; its pid in started.
start_pool() {  # KEY LOG
  cp "$1" "$credentials/secret_key"
  local exec_start environment=()
  exec_start=$(sed -n 's/^ExecStart=//p' "$tmp/pymar-pool@.service")
  exec_start=${exec_start//%i/$name}
  # Environment= first, then the env file's lines, which win (as in systemd).
  local line
  line=$(setting Environment)
  environment+=("${line//%d/$credentials}")
  while IFS= read -r line; do
    [ -n "$line" ] && environment+=("$line")
  done <"$tmp/$name.env"
  # $PYMAR_POOL_OPTIONS unbraced: systemd splits it into words, as the shell does here.
  env -i PATH="$PATH" "${environment[@]}" bash -c "exec $exec_start" >"$2" 2>&1 &
  started=$!
  pids+=("$started")
}

# A pool with a key the producer does not know: refused, with a status the unit does not restart on.
start_pool "$tmp/keys/stranger.key_secret" "$tmp/stranger.log"
stranger=$started
for _ in $(seq 300); do
  kill -0 "$stranger" 2>/dev/null || break
  sleep 0.1
done
kill -0 "$stranger" 2>/dev/null && fail "a pool with an unknown key still runs after 30 s"
wait "$stranger" && status=0 || status=$?
[ "$status" -ne 0 ] || fail "a refused pool exited 0: systemd would not see a failure"
[[ "$prevented" == *" $status "* ]] ||
  fail "a refused pool exits $status, which RestartPreventExitStatus= ($prevented) lets restart"

# The pool with its key: serves the job, which the producer does not compute itself.
start_pool "$tmp/keys/pool.key_secret" "$tmp/pool.log"
pool=$started
wait "$producer" || fail "the producer failed"
grep -qx "Answer: $((1000 * 999))" "$tmp/producer.out" || fail "not the exact answer"
! grep -q locally "$tmp/producer.log" || fail "the producer computed locally"
grep -q 'debug: worker .* joined' "$tmp/producer.log" || fail "no worker joined the producer"

# systemctl stop: KillSignal=SIGTERM, and a clean status 0 within TimeoutStopSec.
kill -TERM "$pool"
for _ in $(seq 100); do
  kill -0 "$pool" 2>/dev/null || break
  sleep 0.1
done
kill -0 "$pool" 2>/dev/null && fail "the pool still runs 10 s after SIGTERM"
wait "$pool" && status=0 || status=$?
[ "$status" = 0 ] || fail "the pool exited $status on SIGTERM: systemd would count a failure"
echo "unit verified; its pool served a producer, was refused with a status the unit keeps down, stopped cleanly"
