#!/usr/bin/env bash
# Builds and runs every test: the optimised build, then the same tests under AddressSanitizer
# and UndefinedBehaviorSanitizer, a task built against the installed library through
# pkg-config, a task built without the optional HTTP endpoints, and a bounded fuzzing run of the
# wire decoder. Installs what it needs first.
#
# Each step prints how many tests it ran and how long it took; a step that ran no test fails.
# The last line is the total: "N passed, N failed, N skipped". Exit status 0 when every step
# passed. A failing step does not stop the later ones, so that one run shows every failure.
set -euo pipefail
cd "$(dirname "$0")/.."
run_started=$(date +%s)
tools/setup-debian.sh test
jobs=$(nproc)
# meson compiles through ccache (installed above): a later run, even from another clone, reuses
# what an earlier run compiled. Paths are taken relative to this clone; debug information then
# names the first clone's folders, which only the sanitizers' stack traces show.
export CCACHE_BASEDIR=$PWD CCACHE_NOHASHDIR=1
counts=$(mktemp /tmp/pymar-test-counts.XXXXXX)
# What the failed tests reported, printed again just before the summary: a log this long is
# often read (or kept, by CI) only from its end.
failures=$(mktemp /tmp/pymar-test-failures.XXXXXX)
trap 'rm -f "$counts" "$failures"' EXIT

total_passed=0 total_failed=0 total_skipped=0
summary=()
failed_steps=()

# step NAME FUNCTION: runs FUNCTION, which writes "PASSED FAILED SKIPPED" to $counts, and
# records its counts and duration. A step fails when FUNCTION fails or counts no test.
step() {
  local name=$1 function=$2 started status=0 passed=0 failed=0 skipped=0 seconds verdict=ok
  printf '\n== %s\n' "$name" >&2
  : >"$counts"
  started=$(date +%s)
  # In the background and waited for: a function called in a condition would run without -e.
  "$function" &
  wait "$!" || status=$?
  seconds=$(($(date +%s) - started))
  read -r passed failed skipped <"$counts" || true
  passed=${passed:-0} failed=${failed:-0} skipped=${skipped:-0}
  if [ $((passed + failed + skipped)) -eq 0 ]; then
    verdict="FAILED: no test ran"
    failed_steps+=("$name")
  elif [ "$status" -ne 0 ] || [ "$failed" -ne 0 ]; then
    verdict="FAILED"
    failed_steps+=("$name")
  fi
  total_passed=$((total_passed + passed))
  total_failed=$((total_failed + failed))
  total_skipped=$((total_skipped + skipped))
  summary+=("$(printf '%-52s %3d tests (%d passed, %d failed, %d skipped) in %4d s  %s' \
    "$name:" $((passed + failed + skipped)) "$passed" "$failed" "$skipped" "$seconds" "$verdict")")
  printf '== %s: %d tests in %d s, %s\n' "$name" $((passed + failed + skipped)) "$seconds" \
    "$verdict" >&2
}

# meson_tests BUILD [MESON TEST OPTIONS...]: builds everything in BUILD and runs its tests; the
# counts come from meson's own log of this run.
meson_tests() {
  local build=$1
  shift
  meson compile -C "$build"
  rm -f "$build/meson-logs/testlog.json"
  meson test -C "$build" --print-errorlogs --num-processes "$jobs" "$@" || true
  tools/test-counts.py --plain "$build" >"$counts"
  tools/test-counts.py "$build" >&2
  tools/test-counts.py --failures "$build" | sed "s|^-- |-- $build: |" >>"$failures"
}

# A build folder made by tools/quickstart.sh has the tests turned off: turn them on.
configure() {
  local build=$1
  shift
  if [ -f "$build/build.ninja" ]; then
    meson configure "$build" -Dtests=true >/dev/null
  else
    meson setup "$build" "$@" >/dev/null
  fi
}

release() {
  configure build
  meson_tests build
}

sanitizers() {
  # -O1 with debug information: what the sanitizers' authors recommend, and quicker to build.
  configure build-sanitize -Db_sanitize=address,undefined -Dbuildtype=custom -Doptimization=1 \
    -Ddebug=true -Db_lundef=false
  # The test harness gives every process it starts its own report folder (log_path) and fails
  # the test on any report. Everything runs about 3 times slower: one number stretches meson's
  # timeouts (--timeout-multiplier), the tests' upper bounds on waits and doctest's per-test
  # timeouts (PYMAR_TEST_TIME_SCALE; see doc/testing.md). The cluster and network suites run
  # the same code as the process suites, under Slurm and over test hosts: the release step runs
  # them, and here they would only lengthen the run. What compiles and what does not is the
  # same with sanitizers: the contract suite and the public headers' check are the release
  # step's too.
  local scale=3
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    PYMAR_TEST_TIME_SCALE=$scale \
    meson_tests build-sanitize --timeout-multiplier "$scale" --no-suite cluster --no-suite network \
    --no-suite contract
}

installed() {
  local status=0
  tools/check-install.sh build || status=$?
  if [ "$status" -eq 0 ]; then echo "1 0 0"; else echo "0 1 0"; fi >"$counts"
  return "$status"
}

no_http() {
  local status=0
  tools/check-no-http.sh || status=$?
  if [ "$status" -eq 0 ]; then echo "1 0 0"; else echo "0 1 0"; fi >"$counts"
  return "$status"
}

fuzz() {
  local status=0
  tools/fuzz.sh 30 || status=$?
  if [ "$status" -eq 0 ]; then echo "1 0 0"; else echo "0 1 0"; fi >"$counts"
  return "$status"
}

step "release build and tests" release
step "AddressSanitizer and UndefinedBehaviorSanitizer build and tests" sanitizers
step "a user's task built against the installed library with pkg-config" installed
step "a build without the HTTP endpoints (-Dhttp=disabled)" no_http
step "fuzzing the wire decoder (30 s)" fuzz

if [ -s "$failures" ]; then
  printf '\n== what the failed tests reported\n'
  cat "$failures"
fi
printf '\n== summary (%d s in all)\n' $(($(date +%s) - run_started))
printf '%s\n' "${summary[@]}"
if [ ${#failed_steps[@]} -ne 0 ]; then
  printf 'failed step: %s\n' "${failed_steps[@]}"
fi
echo "$total_passed passed, $total_failed failed, $total_skipped skipped"
[ ${#failed_steps[@]} -eq 0 ]
