#!/usr/bin/env bash
# Runs the process-level suites RUNS times (10 by default) in BUILD (build by default) while one
# busy loop per core (Debian's `stress`) loads the machine, and prints one line per run. Exit
# status 0 only when every run passed. What doc/testing.md calls "ten runs under double load".
#
#   tools/stress-tests.sh [RUNS] [BUILD] [meson test options...]
#   tools/stress-tests.sh 10 build-sanitize --timeout-multiplier 3   (with PYMAR_TEST_TIME_SCALE=3
#                                                                    and the ASAN_OPTIONS of test.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
build=${2:-build}
shift $(($# < 2 ? $# : 2))
command -v stress >/dev/null || { echo "stress-tests: needs 'stress' (apt-get install stress)" >&2; exit 2; }
meson compile -C "$build" >/dev/null
suites=()
while IFS= read -r name; do suites+=("${name#pymar / }"); done < <(meson test -C "$build" --list 2>/dev/null | grep '^pymar / process ')
[ ${#suites[@]} -gt 0 ] || { echo "stress-tests: no process suites in $build" >&2; exit 2; }

stress --cpu "$(nproc)" >/dev/null 2>&1 &
stress_pid=$!
trap 'kill "$stress_pid" 2>/dev/null; pkill -P "$stress_pid" 2>/dev/null || true' EXIT
failed=0
for i in $(seq 1 "$runs"); do
  started=$(date +%s)
  status=0
  meson test -C "$build" --no-rebuild --num-processes "$(nproc)" "$@" "${suites[@]}" \
    >"$build/meson-logs/stress-$i.txt" 2>&1 || status=$?
  cp "$build/meson-logs/testlog.txt" "$build/meson-logs/stress-$i-testlog.txt"
  counts=$(grep -E '^(Ok|Fail|Timeout):' "$build/meson-logs/stress-$i.txt" | tr -s ' ' | tr '\n' ' ')
  printf 'run %d of %d: %s in %d s at load %s: %s\n' "$i" "$runs" \
    "$([ "$status" -eq 0 ] && echo passed || echo FAILED)" $(($(date +%s) - started)) \
    "$(cut -d' ' -f1 /proc/loadavg)" "$counts"
  [ "$status" -eq 0 ] || failed=$((failed + 1))
done
echo "stress-tests: $((runs - failed)) of $runs runs passed (${#suites[@]} suites each; logs in $build/meson-logs/stress-*)"
[ "$failed" -eq 0 ]
