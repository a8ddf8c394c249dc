#!/usr/bin/env bash
# A small network of hosts on one machine, for the multi-host tests: each host is a network
# namespace with its own address (h1 = 10.77.0.1, h2 = 10.77.0.2, ...), its loopback up, and a
# veth link to a bridge that lives in a namespace of its own, so the root namespace is never
# touched. Needs root (CAP_NET_ADMIN) and iproute2; `impair` needs nftables or netem.
#
#   tools/testnet.sh run N CMD...     bring up N hosts, run CMD with TESTNET set, always tear down
#   tools/testnet.sh up N             bring up N hosts and print TESTNET=NAME (owned by the caller)
#   tools/testnet.sh down             tear down $TESTNET: its processes, namespaces, state
#   tools/testnet.sh cut HOST         unplug HOST's link (its port on the bridge goes down)
#   tools/testnet.sh restore HOST     plug it back in
#   tools/testnet.sh impair [--delay MS] [--loss PCT] [HOST...]
#                                     lose PCT% of the packets each host sends (default 1), and
#                                     delay them MS ms (netem only: see below); default all hosts
#   tools/testnet.sh clear            undo every cut and impairment
#   tools/testnet.sh exec HOST CMD... run CMD on HOST (or on `bridge`)
#   tools/testnet.sh dropped          packets dropped so far by `impair` (nftables), all hosts
#   tools/testnet.sh has-netem        exit 0 when this kernel has the netem qdisc
#   tools/testnet.sh clean            tear down every stale network (its owner is gone)
#
# HOST is h1..hN, a number, or an address 10.77.0.K. Networks are named pymarnet-PID, after the
# process that owns them (`run`: this script; `up`: its caller, or $TESTNET_OWNER), so parallel
# runs never collide, and a network whose owner has exited is stale: every `up` and `run`
# removes stale networks first. Without netem (some VM kernels lack it), `impair` drops packets
# with nftables only; delay then comes from tools/net/delay_relay.py placed before the
# producer (see doc/testing.md). Exit status 77 with "skipped: needs CAP_NET_ADMIN" where
# namespaces cannot be made, which meson reports as a skipped test.
set -euo pipefail

readonly prefix=pymarnet
readonly subnet=10.77.0
readonly state_root=/run/pymar-testnet

die() {
  echo "testnet: $*" >&2
  exit 1
}

# The start time of a process (field 22 of /proc/PID/stat), so a reused pid is not its owner.
start_time() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  awk '{ print $20 }' <<<"$stat"
}

namespaces_of() {
  ip netns list 2>/dev/null | awk '{ print $1 }' | grep -E "^$1-(br|h[0-9]+)\$" || true
}

net_name() {
  [ -n "${TESTNET:-}" ] || die "TESTNET is not set (tools/testnet.sh up N prints it)"
  [[ "$TESTNET" =~ ^${prefix}-[0-9]+$ ]] || die "'$TESTNET' is not a test network name"
  echo "$TESTNET"
}

host_ns() {
  local net=$1 host=$2
  case "$host" in
    bridge) echo "$net-br" ;;
    h[0-9]*) echo "$net-$host" ;;
    "$subnet".[0-9]*) echo "$net-h${host##*.}" ;;
    [0-9]*) echo "$net-h$host" ;;
    *) die "unknown host '$host' (h1..hN, a number, an address $subnet.K, or bridge)" ;;
  esac
}

hosts_of() {
  namespaces_of "$1" | sed -n "s/^$1-\(h[0-9]*\)\$/\1/p" | sort -V
}

# Ends every process still inside the network's namespaces (pools, relays, tcpdump left by a
# test that failed), then removes the namespaces and the state.
teardown() {
  local net=$1 ns pids
  for ns in $(namespaces_of "$net"); do
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [ -n "$pids" ] && kill -KILL $pids 2>/dev/null || true
  done
  for ns in $(namespaces_of "$net"); do
    ip netns delete "$ns" 2>/dev/null || true
  done
  rm -f "$state_root/$net.owner"
}

is_stale() {
  local net=$1 owner recorded
  owner=${net#"$prefix"-}
  [ -f "$state_root/$net.owner" ] || return 0  # namespaces are made after the owner is written
  recorded=$(cat "$state_root/$net.owner")
  [ "$recorded" != "$owner $(start_time "$owner" || echo gone)" ]
}

clean() {
  local net ns
  for net in $( (ip netns list 2>/dev/null | awk '{ print $1 }' |
    sed -n "s/^\($prefix-[0-9]*\)-\(br\|h[0-9]*\)\$/\1/p"
    ls "$state_root" 2>/dev/null | sed -n "s/^\($prefix-[0-9]*\)\.owner\$/\1/p") | sort -u); do
    if is_stale "$net"; then
      echo "testnet: removing stale network $net" >&2
      teardown "$net"
    fi
  done
  # Probes of a script killed between making and removing them.
  for ns in $(ip netns list 2>/dev/null | awk '{ print $1 }' | grep -E "^$prefix-probe-[0-9]+\$"); do
    kill -0 "${ns##*-}" 2>/dev/null || ip netns delete "$ns" 2>/dev/null || true
  done
}

# Whether hosts can be made here; if not, why (in $why). Entering a namespace is part of the
# probe: in a chroot whose / is no mount point, `ip netns exec` cannot make / a slave mount.
can_make_namespaces() {
  why="needs CAP_NET_ADMIN"
  command -v ip >/dev/null || { why="needs iproute2 (ip)"; return 1; }
  local probe="$prefix-probe-$$" out
  out=$(ip netns add "$probe" 2>&1) || { [ -n "$out" ] && why="needs CAP_NET_ADMIN ($out)"; return 1; }
  if ! out=$(ip netns exec "$probe" true 2>&1); then
    ip netns delete "$probe" 2>/dev/null || true
    why="cannot enter a network namespace here: $out"
    return 1
  fi
  ip netns delete "$probe"
}

up() {
  local count=$1 owner=$2 net k ns
  [[ "$count" =~ ^[0-9]+$ ]] && [ "$count" -ge 1 ] && [ "$count" -le 250 ] ||
    die "up: the number of hosts must be 1 to 250"
  net="$prefix-$owner"
  clean
  [ -z "$(namespaces_of "$net")" ] || die "network $net is already up"
  # The owner is recorded (atomically, for a concurrent `clean`) before anything is made, so a
  # crash halfway leaves a network that the next `up` knows to be stale.
  mkdir -p "$state_root"
  echo "$owner $(start_time "$owner")" >"$state_root/.$net.owner.$$"
  mv "$state_root/.$net.owner.$$" "$state_root/$net.owner"
  ns="$net-br"
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip -n "$ns" link add br0 type bridge forward_delay 0 stp_state 0
  ip -n "$ns" link set br0 up
  for k in $(seq 1 "$count"); do
    ip netns add "$net-h$k"
    ip -n "$net-h$k" link set lo up
    ip -n "$ns" link add "h$k" type veth peer name eth0 netns "$net-h$k"
    ip -n "$ns" link set "h$k" master br0 up
    ip -n "$net-h$k" addr add "$subnet.$k/24" dev eth0
    ip -n "$net-h$k" link set eth0 up
  done
  echo "TESTNET=$net"
}

has_netem() {
  local probe="$prefix-probe-$$" ok=1
  ip netns add "$probe" 2>/dev/null || return 1
  ip netns exec "$probe" tc qdisc add dev lo root netem delay 1ms 2>/dev/null && ok=0
  ip netns delete "$probe"
  return $ok
}

impair() {
  local net=$1 delay=0 loss=1 hosts=() host ns per_10000
  shift
  while [ $# -gt 0 ]; do
    case "$1" in
      --delay) delay=$2; shift 2 ;;
      --loss) loss=$2; shift 2 ;;
      *) hosts+=("$1"); shift ;;
    esac
  done
  [[ "$delay" =~ ^[0-9]+$ ]] || die "impair: --delay takes whole milliseconds"
  [[ "$loss" =~ ^[0-9]+(\.[0-9]{1,2})?$ ]] || die "impair: --loss takes a percentage like 1 or 0.5"
  [ ${#hosts[@]} -gt 0 ] || mapfile -t hosts < <(hosts_of "$net")
  if has_netem; then
    for host in "${hosts[@]}"; do
      ns=$(host_ns "$net" "$host")
      ip netns exec "$ns" tc qdisc replace dev eth0 root netem delay "${delay}ms" loss "${loss}%"
    done
    echo "testnet: netem on ${hosts[*]}: ${delay} ms delay, ${loss}% loss of the packets each sends" >&2
    return
  fi
  command -v nft >/dev/null || die "impair: this kernel has no netem and nft is not installed"
  [ "$delay" = 0 ] || die "impair: this kernel has no netem: add delay with tools/net/delay_relay.py"
  per_10000=$(awk -v p="$loss" 'BEGIN { printf "%d", p * 100 + 0.5 }')
  for host in "${hosts[@]}"; do
    ns=$(host_ns "$net" "$host")
    ip netns exec "$ns" nft -f - <<EOF
table inet pymar_testnet
delete table inet pymar_testnet
table inet pymar_testnet {
  chain egress {
    type filter hook output priority 0; policy accept;
    oifname "eth0" numgen random mod 10000 < $per_10000 counter drop
  }
}
EOF
  done
  echo "testnet: nftables on ${hosts[*]}: ${loss}% loss of the packets each sends" >&2
}

clear_all() {
  local net=$1 host ns
  for host in $(hosts_of "$net"); do
    ns=$(host_ns "$net" "$host")
    ip -n "$net-br" link set "$host" up
    ip netns exec "$ns" tc qdisc del dev eth0 root 2>/dev/null || true
    if command -v nft >/dev/null; then
      ip netns exec "$ns" nft delete table inet pymar_testnet 2>/dev/null || true
    fi
  done
}

dropped() {
  local net=$1 host total=0 n
  command -v nft >/dev/null || { echo 0; return; }
  for host in $(hosts_of "$net"); do
    n=$(ip netns exec "$(host_ns "$net" "$host")" nft list table inet pymar_testnet 2>/dev/null |
      sed -n 's/.*counter packets \([0-9]*\).*/\1/p' | head -1) || n=0
    total=$((total + ${n:-0}))
  done
  echo "$total"
}

port_of() {
  local host=$1
  case "$host" in
    "$subnet".[0-9]*) echo "h${host##*.}" ;;
    [0-9]*) echo "h$host" ;;
    *) echo "$host" ;;
  esac
}

command=${1:-}
[ $# -gt 0 ] && shift
case "$command" in
  run)
    [ $# -ge 2 ] || die "usage: run N CMD..."
    count=$1
    shift
    [ "${1:-}" = "--" ] && shift
    if ! can_make_namespaces; then
      echo "skipped: $why"
      exit 77
    fi
    net="$prefix-$$"
    # Always torn down: when CMD passes, fails, crashes, or this script is interrupted.
    trap 'teardown "$net"' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    up "$count" "$$" >/dev/null
    export TESTNET="$net"
    status=0
    "$@" || status=$?
    exit "$status"
    ;;
  up)
    [ $# -eq 1 ] || die "usage: up N"
    can_make_namespaces || { echo "skipped: $why"; exit 77; }
    up "$1" "${TESTNET_OWNER:-$PPID}"
    ;;
  down)
    teardown "$(net_name)"
    ;;
  cut | restore)
    [ $# -eq 1 ] || die "usage: $command HOST"
    net=$(net_name)
    port=$(port_of "$1")
    host_ns "$net" "$port" >/dev/null
    ip -n "$net-br" link set "$port" "$([ "$command" = cut ] && echo down || echo up)"
    ;;
  impair)
    impair "$(net_name)" "$@"
    ;;
  clear)
    clear_all "$(net_name)"
    ;;
  dropped)
    dropped "$(net_name)"
    ;;
  exec)
    [ $# -ge 2 ] || die "usage: exec HOST CMD..."
    ns=$(host_ns "$(net_name)" "$1")
    shift
    exec ip netns exec "$ns" "$@"
    ;;
  has-netem)
    has_netem
    ;;
  clean)
    clean
    ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
