#!/usr/bin/env bash
# The Slurm example end to end: on a one-machine cluster (tools/slurm-test-cluster.sh), sbatch
# examples/slurm/pymar.sbatch with the test task, once plainly and once with a worker step
# cancelled (scancel) while it holds a slow slice; both times the exact answer, computed by the
# pools, never by the producer alone; and a third time with pools whose keys the producer refuses:
# the job ends at once with status 3. Exits 77 (skip) when Slurm cannot run here.
#
#   test/cluster/slurm.sh TEST_TASK
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

if [ "${1:-}" != --inside ]; then
  [ $# -eq 1 ] || { echo "usage: $0 TEST_TASK" >&2; exit 2; }
  exec "$root/tools/slurm-test-cluster.sh" "$0" --inside "$(realpath "$1")"
fi
task=$2
batch=$root/examples/slurm/pymar.sbatch
work=$SLURM_TEST_CLUSTER_DIR/work
mkdir -p "$work"
cd "$work"  # the submit folder, where the job makes its key folder

fail() {
  echo "FAIL: $*" >&2
  for out in "$work"/*.out; do
    [ -f "$out" ] && { echo "--- $out" >&2; tail -n 60 "$out" >&2; }
  done
  echo "--- slurmctld.log" >&2
  tail -n 20 "$SLURM_TEST_CLUSTER_DIR/log/slurmctld.log" >&2 || true
  exit 1
}

job_field() {  # JOB FIELD: a field of `scontrol show job`, e.g. JobState
  scontrol show job -o "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p"
}

wait_for_job() {  # JOB SECONDS: polls until the job has ended; fails after SECONDS
  local state deadline=$((SECONDS + $2))
  while [ "$SECONDS" -lt "$deadline" ]; do
    state=$(job_field "$1" JobState)
    case "$state" in
      PENDING | CONFIGURING | RUNNING | COMPLETING | "") sleep 0.2 ;;
      *) return 0 ;;
    esac
  done
  fail "job $1 still $state after $2 s"
}

# The job's own settings travel to the producer and every pool in their environment.
export TEST_JOB=doubled TEST_PARTS=16 TEST_LENGTH=100000
answer="Answer: $((TEST_LENGTH * (TEST_LENGTH - 1)))"  # twice 0 + 1 + ... + (n - 1)
producer_options=(-v --heartbeat 0.2 --liveness 2)

joined() {  # OUTPUT: how many worker processes joined the producer
  grep -c 'producer\[[0-9]*\] debug: worker .* joined' "$1" || true
}

check_job() {  # JOB OUTPUT: ended well, the exact answer, and from the pools
  local job=$1 out=$2
  [ "$(job_field "$job" JobState)" = COMPLETED ] ||
    fail "job $job ended $(job_field "$job" JobState), exit code $(job_field "$job" ExitCode)"
  grep -qx "$answer" "$out" || fail "job $job: not '$answer'"
  [ "$(grep -c '^Answer:' "$out")" = 1 ] || fail "job $job: more than one answer"
  ! grep -q 'locally' "$out" || fail "job $job: the producer computed locally"
  [ "$(joined "$out")" -ge 1 ] || fail "job $job: no worker joined the producer"
  [ "$(grep -c 'pool\[[0-9]*\] info: .* serving the producer at .* with key' "$out")" = 2 ] ||
    fail "job $job: not 2 pools with keys"
  [ -z "$(find "$work" -maxdepth 1 -name '.pymar-keys-*')" ] || fail "job $job left its keys behind"
}

# --- a plain run: a producer and two pools of one worker ------------------------------------
start=$SECONDS
job=$(sbatch --parsable --ntasks=3 --cpus-per-task=1 --output="$work/plain.out" \
  "$batch" "$task" "${producer_options[@]}")
wait_for_job "$job" 60
check_job "$job" "$work/plain.out"
# Once the producer is done, the script stops the pools with SIGTERM: they end cleanly.
[ "$(grep -c 'pool\[[0-9]*\] info: worker pool stopped' "$work/plain.out")" = 2 ] ||
  fail "job $job: the pools were not stopped cleanly once the producer was done"
echo "plain job $job: exact answer from the pools in $((SECONDS - start)) s"

# --- a worker step cancelled while it holds a slow slice ------------------------------------
# The first worker to reach element 50000 sleeps 120 s, and the producer never runs a second
# copy of a late slice on its own (--no-speculation): the job can end within the 60 s allowed only
# if cancelling that worker's step gives its slice to the other pool, where it takes no time.
start=$SECONDS
marker=$work/slow-slice
job=$(TEST_SLOW_AT=50000 TEST_SLOW_MS=120000 TEST_RETRY_MS=0 TEST_SLOW_MARKER="$marker" \
  sbatch --parsable --ntasks=3 --cpus-per-task=1 --output="$work/cancelled.out" \
  "$batch" "$task" "${producer_options[@]}" --no-speculation)
# Both pools' workers in, and one of them on the slow slice: then cancel that one's step.
deadline=$((SECONDS + 60))
while [ "$SECONDS" -lt "$deadline" ]; do
  [ -s "$marker" ] && [ "$(joined "$work/cancelled.out")" -ge 2 ] && break
  case "$(job_field "$job" JobState)" in
    PENDING | RUNNING) sleep 0.2 ;;
    *) fail "job $job ended before the cancel" ;;
  esac
done
[ -s "$marker" ] || fail "no worker reached the slow slice within 60 s"
[ "$(joined "$work/cancelled.out")" -ge 2 ] || fail "the 2 pools' workers did not join within 60 s"
worker=$(cat "$marker")
step=$(tr '\0' '\n' <"/proc/$worker/environ" | sed -n 's/^SLURM_STEP_ID=//p')
[ -n "$step" ] || fail "worker $worker (holding the slow slice) is in no job step"
scancel "$job.$step"
echo "cancelled step $job.$step, whose worker $worker holds the slow slice"
wait_for_job "$job" 60
check_job "$job" "$work/cancelled.out"
# The producer gave up on the cancelled worker and gave its slices to the other pool.
grep -q "producer\[[0-9]*\] warning: worker .* (pid $worker on .*) lost: .*; re-queued slices" \
  "$work/cancelled.out" || fail "job $job: the producer did not re-queue the cancelled worker's slices"
echo "cancelled job $job: exact answer in $((SECONDS - start)) s"

# --- your own keys, the pools' not among those the producer allows ---------------------------
# Refused pools end with status 3; the script stops the producer rather than let it wait out its
# grace, and the job ends with that status.
start=$SECONDS
keys=$work/own-keys
for name in producer workers stranger; do "$task" --keygen "$keys" --key-name "$name" >/dev/null; done
job=$(PYMAR_SECRET_KEY=$keys/producer.key_secret PYMAR_ALLOW=$keys/workers.key \
  PYMAR_WORKER_SECRET_KEY=$keys/stranger.key_secret PYMAR_PRODUCER_KEY=$keys/producer.key \
  sbatch --parsable --ntasks=3 --cpus-per-task=1 --output="$work/refused.out" \
  "$batch" "$task" "${producer_options[@]}")
wait_for_job "$job" 60
[ "$(job_field "$job" ExitCode)" = 3:0 ] ||
  fail "job $job with refused pools ended $(job_field "$job" JobState), exit code $(job_field "$job" ExitCode), not 3"
! grep -q '^Answer:' "$work/refused.out" || fail "job $job: an answer without a single worker"
grep -q 'every worker pool has ended' "$work/refused.out" || fail "job $job: the script did not say why"
[ -f "$keys/producer.key_secret" ] || fail "job $job removed keys it did not make"
echo "refused job $job: status 3 in $((SECONDS - start)) s"
