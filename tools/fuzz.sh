#!/usr/bin/env bash
# Builds the libFuzzer target for the decoders of peer bytes (wire::decode, the producer's
# reading of ROUTER frames, raw slice size checks, pymar::decode<T> and the plugins' parameters)
# with clang, AddressSanitizer and UndefinedBehaviorSanitizer, and fuzzes it for SECONDS (60 by
# default). Fails if libFuzzer finds a crash, a leak, undefined behaviour, a timeout or an
# out-of-memory; the input that did it is left in build-fuzz/artifacts/.
#
#   tools/fuzz.sh [SECONDS]    fuzz for that long, starting from test/fuzz/corpus/
#   tools/fuzz.sh --seeds      write the seeds in test/fuzz/corpus/ anew (after a wire change);
#                              the regression-* inputs there (bugs fuzzing found) are kept
set -euo pipefail
cd "$(dirname "$0")/.."

arg=${1:-60}
if [ "$arg" != --seeds ] && ! [[ "$arg" =~ ^[0-9]+$ ]]; then
  echo "usage: tools/fuzz.sh [SECONDS | --seeds]" >&2
  exit 2
fi

tools/setup-debian.sh test
dir=build-fuzz
if [ ! -f "$dir/build.ninja" ]; then
  # Only the fuzz targets are built: clang 14 cannot compile libstdc++ 12's <ranges>, which the
  # rest of the project uses, while the decoders do not.
  CXX=clang++ meson setup "$dir" -Dfuzz=true -Dtests=false -Dbuildtype=debugoptimized \
    -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
fi

if [ "$arg" = --seeds ]; then
  ninja -C "$dir" test/fuzz/make_corpus >/dev/null
  rm -f test/fuzz/corpus/wire-* test/fuzz/corpus/value-* test/fuzz/corpus/envelope-* \
    test/fuzz/corpus/raw-*
  "$dir/test/fuzz/make_corpus" test/fuzz/corpus
  echo "fuzz: wrote $(ls test/fuzz/corpus | wc -l) seed(s) to test/fuzz/corpus/" >&2
  exit 0
fi

# The seed maker too: it builds messages through the same structs, and nothing else compiles it.
ninja -C "$dir" test/fuzz/fuzz_decode test/fuzz/make_corpus >/dev/null
# New inputs go to the first directory, kept between runs so that later runs start further on;
# the committed seeds (and regression inputs) are only read.
mkdir -p "$dir/corpus" "$dir/artifacts"
export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
log="$dir/fuzz.log"
status=0
"$dir/test/fuzz/fuzz_decode" "$dir/corpus" test/fuzz/corpus \
  -max_total_time="$arg" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 -max_len=16384 \
  -artifact_prefix="$dir/artifacts/" -print_final_stats=1 >"$log" 2>&1 || status=$?
if [ "$status" != 0 ]; then
  # The report: from the sanitizer's or libFuzzer's first line to the end.
  grep -n -m1 -E '^(==[0-9]+==|.*runtime error:|fuzz_decode:)' "$log" | cut -d: -f1 |
    { read -r first && tail -n +"$first" "$log" || tail -n 60 "$log"; } >&2
  echo "fuzz: libFuzzer found a problem (exit status $status); full log in $log" >&2
  exit 1
fi
grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)' "$log" |
  sed 's/^stat::/fuzz: /' >&2
echo "fuzz: no crash, leak or timeout in ${arg} s" >&2
