#!/usr/bin/env bash
# From a fresh clone to an answer: installs the dependencies, builds, and runs the integration
# example with two worker processes of its own.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup-debian.sh
[ -f build/build.ninja ] || meson setup build -Dtests=false >/dev/null
meson compile -C build examples/integration
build/examples/integration --produce -w 2
