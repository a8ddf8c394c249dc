#!/usr/bin/env bash
# Runs a command inside a one-machine Slurm cluster made for it: munged, slurmctld and slurmd,
# all configured and kept in a temporary folder, started directly (no systemd needed) and all
# stopped, folder removed, when the command ends, whatever its outcome.
#
#   tools/slurm-test-cluster.sh COMMAND [ARGS...]
#
# The command sees SLURM_CONF (so sbatch, srun, squeue, scontrol and scancel use this cluster)
# and SLURM_TEST_CLUSTER_DIR (the temporary folder, for its own files). The node is this machine,
# with 4 virtual CPUs whatever it has, so that several tasks fit on two cores. Needs root and
# Debian's slurm-wlm and munge (tools/setup-debian.sh cluster). Exits 77 (a skip, to meson) with a
# one-line reason when the cluster cannot start here; otherwise with the command's status.
# SLURM_TEST_CLUSTER_KEEP=1 keeps the folder (logs, job outputs) for a look afterwards.
set -euo pipefail

[ $# -gt 0 ] || { echo "usage: $0 COMMAND [ARGS...]" >&2; exit 2; }

skip() { echo "slurm-test-cluster: SKIP: $*" >&2; exit 77; }

for program in munged mungekey slurmctld slurmd sbatch sinfo scontrol; do
  command -v "$program" >/dev/null || skip "$program is missing (tools/setup-debian.sh cluster)"
done
[ "$(id -u)" = 0 ] || skip "slurmd needs root to start tasks as their users"

dir=$(mktemp -d "${TMPDIR:-/tmp}/pymar-slurm.XXXXXX")
chmod 700 "$dir"
mkdir -p "$dir/munge" "$dir/state" "$dir/spool" "$dir/log"
# Every process this cluster starts (daemons, step daemons, the jobs' tasks) inherits this
# variable, which is how cleanup finds them, and only them.
export SLURM_TEST_CLUSTER_DIR="$dir"
export SLURM_CONF="$dir/slurm.conf"

daemons=()
cluster_processes() {
  grep -lzxF "SLURM_TEST_CLUSTER_DIR=$dir" /proc/[0-9]*/environ 2>/dev/null |
    sed -n 's|^/proc/\([0-9]*\)/environ$|\1|p' | grep -vx "$$"
  return 0
}

stop_processes() {  # SIGTERM, up to 10 s to end, then SIGKILL
  [ $# -gt 0 ] || return 0
  kill -TERM "$@" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "$@" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$@" 2>/dev/null || true
}

cleanup() {
  local status=$?
  set +e
  # Jobs first, while the daemons can still end them; then whatever remains, daemons last.
  if [ -S "$dir/munge/munge.socket.2" ] && [ ${#daemons[@]} -gt 0 ]; then
    scancel --quiet --user=root >/dev/null 2>&1
    for _ in $(seq 50); do
      [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
      sleep 0.1
    done
  fi
  local others=()
  for pid in $(cluster_processes); do
    [[ " ${daemons[*]} " == *" $pid "* ]] || others+=("$pid")
  done
  stop_processes "${others[@]}"
  stop_processes "${daemons[@]}"
  if [ "${SLURM_TEST_CLUSTER_KEEP:-}" = 1 ]; then
    echo "slurm-test-cluster: kept $dir" >&2
  else
    rm -rf "$dir"
  fi
  exit "$status"
}
trap cleanup EXIT
# A signal must not end the script before the trap above ran: it would leave the daemons behind.
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM

# Explains a daemon that did not come up, with the end of its log, and skips.
fail_to_start() {
  echo "slurm-test-cluster: $1 did not start; the end of its log:" >&2
  tail -n 15 "$2" >&2 2>/dev/null || true
  skip "$1 cannot run here"
}

wait_for() {  # SECONDS DESCRIPTION COMMAND...: polls every 0.1 s
  local tries=$(($1 * 10)) what=$2
  shift 2
  for _ in $(seq "$tries"); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}

free_port() {  # a TCP port on which nothing listens on this machine (nor is about to, we hope)
  local port
  for _ in $(seq 50); do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
  skip "no free TCP port found"
}

# --- munge: its own key, socket, pid, log and seed files -------------------------------------
mungekey --create --keyfile="$dir/munge/munge.key" >/dev/null 2>&1 ||
  dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$dir/munge/munge.key"
munged --foreground --force --socket="$dir/munge/munge.socket.2" \
  --key-file="$dir/munge/munge.key" --pid-file="$dir/munge/munged.pid" \
  --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munged.seed" \
  >>"$dir/log/munged.log" 2>&1 &
daemons+=($!)
wait_for 10 "munged" test -S "$dir/munge/munge.socket.2" ||
  fail_to_start munged "$dir/log/munged.log"

# --- slurm.conf ---------------------------------------------------------------------------
node=$(hostname -s)
controller_port=$(free_port)
node_port=$(free_port)
while [ "$node_port" = "$controller_port" ]; do node_port=$(free_port); done
cat >"$SLURM_CONF" <<EOF
# A one-machine cluster for tests, made by tools/slurm-test-cluster.sh.
ClusterName=pymartest
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$controller_port
SlurmdPort=$node_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket.2
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/slurmd-%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups, no accounting: what a container or a CI runner allows.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
ReturnToService=2
MailProg=/bin/true
# The node claims 4 CPUs whatever the machine has, so that a producer and pools fit.
SlurmdParameters=config_overrides
MinJobAge=600
KillWait=5
NodeName=$node NodeAddr=127.0.0.1 CPUs=4 State=UNKNOWN
PartitionName=test Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF

slurmctld -D -i -f "$SLURM_CONF" >>"$dir/log/slurmctld.out" 2>&1 &
daemons+=($!)
wait_for 20 "slurmctld" scontrol ping ||
  fail_to_start slurmctld "$dir/log/slurmctld.log"
slurmd -D -f "$SLURM_CONF" >>"$dir/log/slurmd.out" 2>&1 &
daemons+=($!)
node_idle() { [ "$(sinfo -h -n "$node" -o %t)" = idle ]; }
wait_for 30 "slurmd" node_idle || fail_to_start slurmd "$dir/log/slurmd.log"

set +e
"$@"
