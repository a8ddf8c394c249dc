#!/usr/bin/env bash
# Pymar's benchmark suite in one command: installs what is missing (hyperfine, Google Benchmark,
# OpenMP, python3: tools/setup-debian.sh bench), configures an optimised build with -Dbench=true
# in build-bench/, builds it, runs every measurement and prints a markdown table of medians and
# ratios, also written to tools/bench/results/latest.md (raw figures in latest.json).
#
#   tools/bench/run.sh              the whole suite (a few minutes)
#   tools/bench/run.sh --quick      fewer repetitions: a smoke test of the suite itself
#   tools/bench/run.sh --only latency scale     some sections (see tools/bench/run.py --help)
#
# Set BUILD_DIR to use another build directory. Absolute times vary 2x from day to day on a
# shared host: read the ratios, each taken against a baseline measured in the same run.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${BUILD_DIR:-$root/build-bench}"

"$root/tools/setup-debian.sh" bench

if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" "$root" --buildtype=release -Dbench=true -Dtests=false \
    -Dsqlite=disabled -Dpostgresql=disabled -Dmongo=disabled >/dev/null
else
  meson configure "$build" -Dbench=true >/dev/null
fi
ninja -C "$build" >/dev/null

exec python3 "$root/tools/bench/run.py" --build "$build" "$@"
