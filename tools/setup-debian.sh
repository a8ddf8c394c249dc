#!/usr/bin/env bash
# Installs from Debian 12's packages what Pymar needs. Installs only what is missing, so it is
# quick when everything is there; needs root when something is missing.
#
#   tools/setup-debian.sh            build the library and examples
#   tools/setup-debian.sh test       ... and run every test (sanitizers, fuzzing, plugins,
#                                    the Slurm example and the systemd unit)
#   tools/setup-debian.sh cluster    ... and run only the Slurm example and check the systemd unit
#   tools/setup-debian.sh bench      ... and run the benchmark suite
set -euo pipefail

build=(g++ meson ninja-build pkg-config libzmq3-dev cppzmq-dev libmsgpack-cxx-dev libfmt-dev
       libspdlog-dev libcli11-dev doctest-dev libcpp-httplib-dev)
plugins=(libsqlite3-dev libpq-dev libmongoc-dev)
cluster=(slurm-wlm munge systemd)
# network suite (tools/testnet.sh): iproute2 for namespaces, nftables for loss where the kernel
# has no netem, tcpdump to show what travels, python3 for tools/net/delay_relay.py;
# python3-jsonschema checks --stats output against doc/stats.schema.json; the observe suite
# scrapes --metrics with a real prometheus and drives --dashboard in chromium (chromium-driver);
# ccache, which meson uses when it is there, lets a later run of tools/test.sh skip unchanged
# files; stress loads every core for tools/stress-tests.sh
test=(ccache stress clang libclang-rt-14-dev postgresql sqlite3 procps iproute2 nftables tcpdump
      python3 prometheus chromium chromium-driver
      python3-jsonschema "${cluster[@]}")
bench=(hyperfine libbenchmark-dev libomp-dev clang python3 python3-distributed python3-numpy)

wanted=("${build[@]}" "${plugins[@]}")
for group in "$@"; do
  case "$group" in
    test) wanted+=("${test[@]}") ;;
    bench) wanted+=("${test[@]}" "${bench[@]}") ;;
    cluster) wanted+=("${cluster[@]}") ;;
    *) echo "setup-debian: unknown group '$group' (known: test, bench, cluster)" >&2; exit 2 ;;
  esac
done

missing=()
for package in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
  echo "setup-debian: missing packages: ${missing[*]}; run this script as root to install them" >&2
  exit 1
fi
echo "setup-debian: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
