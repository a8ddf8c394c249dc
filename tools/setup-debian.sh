#!/usr/bin/env bash
# Installs from Debian 12's packages what Pymar needs. Installs only what is missing, so it is
# quick when everything is there; needs root when something is missing.
#
#   tools/setup-debian.sh            build the library and examples
#   tools/setup-debian.sh test       ... and run every test (sanitizers, fuzzing, plugins)
#   tools/setup-debian.sh bench      ... and run the benchmark suite
set -euo pipefail

build=(g++ meson ninja-build pkg-config libzmq3-dev cppzmq-dev libmsgpack-cxx-dev libfmt-dev
       libspdlog-dev libcli11-dev doctest-dev)
plugins=(libsqlite3-dev libpq-dev libmongoc-dev)
test=(clang libclang-rt-14-dev postgresql sqlite3 procps python3)
bench=(hyperfine libbenchmark-dev libomp-dev clang python3)

wanted=("${build[@]}" "${plugins[@]}")
for group in "$@"; do
  case "$group" in
    test) wanted+=("${test[@]}") ;;
    bench) wanted+=("${test[@]}" "${bench[@]}") ;;
    *) echo "setup-debian: unknown group '$group' (known: test, bench)" >&2; exit 2 ;;
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
