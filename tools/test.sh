#!/usr/bin/env bash
# Builds and runs every test: the optimised build, then the same tests under AddressSanitizer
# and UndefinedBehaviorSanitizer, a task built against the installed library through
# pkg-config, and a bounded fuzzing run of the wire decoder. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup-debian.sh test
jobs=$(nproc)

step() { printf '\n== %s\n' "$*" >&2; }

step "release build and tests"
[ -f build/build.ninja ] || meson setup build >/dev/null
meson compile -C build
meson test -C build --print-errorlogs --num-processes "$jobs"

step "AddressSanitizer and UndefinedBehaviorSanitizer build and tests"
[ -f build-sanitize/build.ninja ] || meson setup build-sanitize -Db_sanitize=address,undefined \
  -Dbuildtype=debugoptimized -Db_lundef=false >/dev/null
meson compile -C build-sanitize
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  meson test -C build-sanitize --print-errorlogs --num-processes "$jobs" --timeout-multiplier 3

step "a user's task built against the installed library with pkg-config"
tools/check-install.sh build

if [ -x tools/fuzz.sh ]; then
  step "fuzzing the wire decoder"
  tools/fuzz.sh 60
fi
step "all tests passed"
