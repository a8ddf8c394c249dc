#!/usr/bin/env bash
# Installs the library from build folder $1 into a scratch prefix, then does what the README
# tells a user to do: writes a task from the README's integration example (its own code blocks,
# which print with fmt::print), builds it from outside the project with the README's own g++
# line (`... $(pkg-config --cflags --libs pymar)`), runs it with two worker processes and
# checks the exact answer the README promises, computed by the workers (not locally).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
prefix=$(mktemp -d /tmp/pymar-install.XXXXXX)
trap 'rm -rf "$prefix"' EXIT
fail() {
  echo "check-install: $*" >&2
  exit 1
}

meson install -C "$build" --destdir "$prefix" --quiet >/dev/null
root="$prefix/usr/local"
libdir=$(find "$root" -name pymar.pc -printf '%h\n' | head -n1)
export PKG_CONFIG_PATH="$libdir" PKG_CONFIG_SYSROOT_DIR="$prefix"

# The flags pkg-config gives users impose no language version and no other library's
# configuration: the headers check the version themselves and configure msgpack inside.
# (pymar.pc's own Cflags: what fmt's .pc says, through Requires, is fmt's business.)
own_cflags=$(grep '^Cflags:' "$libdir/pymar.pc")
if grep -qE ' (-std=|-D)' <<<"$own_cflags"; then
  fail "pymar.pc imposes flags on users: $own_cflags"
fi
cflags=$(pkg-config --cflags pymar)
# One version: the installed header says what meson's project version says.
version=$(pkg-config --modversion pymar)
grep -qF "return \"$version\";" "$root/include/pymar/version.hpp" ||
  fail "the installed pymar/version.hpp does not say version $version"
# An older language version fails with one clear line rather than a page of template errors.
if err=$(echo '#include <pymar/pymar.hpp>' |
  g++ -std=c++17 -x c++ -fsyntax-only - $cflags 2>&1); then
  fail "pymar/pymar.hpp compiled as C++17"
fi
grep -m1 ': error: ' <<<"$err" | grep -q 'Pymar needs C++20' ||
  fail "C++17 does not fail first with 'Pymar needs C++20': $err"
[ "$(grep -c ': error: ' <<<"$err")" -eq 1 ] || fail "C++17 fails with more than the version's error: $err"

# The README's code blocks of "The integration example, walked through", after what they leave
# out (the includes and the constants a, b, dx of examples/integration.cpp).
section=$(awk '/^## The integration example/ { on = 1; next } /^## / { on = 0 } on' README.md)
code=$(awk '/^```cpp$/ { on = 1; next } /^```$/ { on = 0 } on' <<<"$section")
[ "$(grep -c 'REGISTER_\|pymar::main' <<<"$code")" -ge 3 ] ||
  fail "README.md: no data source, producer and main in \"The integration example\""
cat >"$prefix/task.cpp" <<'CPP'
#include <cmath>
#include <cstddef>
#include <ranges>

#include <fmt/format.h>
#include <pymar/pymar.hpp>

constexpr double a = 1.0;
constexpr double b = 10.0;
constexpr double dx = 1e-6;

CPP
printf '%s\n' "$code" >>"$prefix/task.cpp"

# The README's build line, exactly, run where the task is.
build_line=$(grep -m1 -E '^g\+\+ .*task\.cpp.*pkg-config --cflags --libs pymar' README.md) ||
  fail "README.md: no 'g++ ... task.cpp ... \$(pkg-config --cflags --libs pymar)' line"
echo "check-install: $build_line" >&2
(cd "$prefix" && bash -c "$build_line") || fail "the README's build line failed"

# The answer the README promises, e.g. "Answer: 22023.7365011059".
expected=$(grep -m1 -E '^Answer: ' README.md) || fail "README.md: no 'Answer: ' line"
# A generous grace, so that slow-starting workers are waited for rather than replaced by the
# producer's local fallback; -v so that the producer logs which worker returned each slice.
status=0
LD_LIBRARY_PATH="$(dirname "$(find "$root" -name 'libpymar.so' | head -n1)")" \
  "$prefix/task" --produce -q 127.0.0.1:0 -w 2 --grace 60 -v >"$prefix/out" 2>"$prefix/err" ||
  status=$?
answer=$(cat "$prefix/out")
if [ "$status" -ne 0 ] || [ "$answer" != "$expected" ]; then
  tail -n 30 "$prefix/err" >&2
  fail "the task exited with status $status and printed '$answer', not '$expected'"
fi
if grep -E 'producer\[[0-9]+\] warning: .*locally' "$prefix/err" >&2; then
  fail "the producer computed locally instead of its workers"
fi
# The producer's own record of who computed what: "job 1: worker ID returned batch B: slices 0-2, 3"
# (runs of consecutive slices as first-last).
slices=$(grep -E 'producer\[[0-9]+\] debug: job 1: worker .* returned batch [0-9]+: slices ' \
  "$prefix/err" | sed -E 's/.*: slices //' | tr ',' '\n' | tr -d ' ' |
  awk -F- '{ last = NF > 1 ? $2 : $1; for (n = $1; n <= last; n++) print n }' |
  sort -u | grep -c .) || slices=0
[ "$slices" -eq 4 ] || fail "the producer counts $slices of the 4 slices returned by workers"
echo "check-install: a task from the README, built with its g++ line, answered '$answer'" \
  "from 4 slices computed by worker processes" >&2

# The HTTP module of --metrics and --dashboard is installed in LIBDIR/pymar and found from the
# installed libpymar; the task itself links no HTTP, TLS or compression library.
libpymar=$(find "$root" -name 'libpymar.so' | head -n1)
if ldd "$prefix/task" | grep -E 'libcpp-httplib|libssl|libcrypto|libbrotli' >&2; then
  fail "the task links HTTP, TLS or compression libraries: they belong to the HTTP module"
fi
if [ -e "$build/src/libpymar-http.so" ]; then
  [ -e "$(dirname "$libpymar")/pymar/libpymar-http.so" ] ||
    fail "libpymar-http.so is built but not installed in $(dirname "$libpymar")/pymar"
  status=0
  env -u PYMAR_HTTP_MODULE_DIR LD_LIBRARY_PATH="$(dirname "$libpymar")" \
    "$prefix/task" --produce -q 127.0.0.1:0 -w 2 --grace 60 --metrics 0 \
    >"$prefix/out" 2>"$prefix/err" || status=$?
  if [ "$status" -ne 0 ] || [ "$(cat "$prefix/out")" != "$expected" ] ||
    ! grep -qE 'metrics on http://127\.0\.0\.1:[0-9]+/metrics' "$prefix/err"; then
    tail -n 30 "$prefix/err" >&2
    fail "with --metrics, the installed task did not serve metrics (status $status)"
  fi
  echo "check-install: --metrics loaded the installed HTTP module" >&2
fi
