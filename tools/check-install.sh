#!/usr/bin/env bash
# Installs the library from build folder $1 into a scratch prefix, then builds and runs a small
# task from outside the project with `pkg-config --cflags --libs pymar`, as a user would.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
prefix=$(mktemp -d /tmp/pymar-install.XXXXXX)
trap 'rm -rf "$prefix"' EXIT
meson install -C "$build" --destdir "$prefix" --quiet >/dev/null
root="$prefix/usr/local"
libdir=$(find "$root" -name pymar.pc -printf '%h\n' | head -n1)
export PKG_CONFIG_PATH="$libdir" PKG_CONFIG_SYSROOT_DIR="$prefix"
cat > "$prefix/task.cpp" <<'CPP'
#include <pymar/pymar.hpp>
#include <cstdio>
#include <ranges>

struct Squares : pymar::DataSource {
  static std::size_t full_length() { return 1000; }
  auto items() const { return indices(); }
};
REGISTER_DATASOURCE(Squares);

struct SumOfSquares : pymar::Producer<SumOfSquares> {
  static auto map_fn(auto&& xs) {
    return xs | std::views::transform([](std::size_t x) { return x * x; });
  }
  static std::size_t reduce_fn(auto&& values) { return pymar::sum(values); }
};
REGISTER_PRODUCER(SumOfSquares);

int main(int argc, char** argv) {
  return pymar::main(argc, argv, [] {
    std::printf("Answer: %zu\n", SumOfSquares().map(pymar::factory<Squares>()));
  });
}
CPP
# shellcheck disable=SC2046
g++ -std=c++20 -O2 -Wall -Wextra -Werror "$prefix/task.cpp" -o "$prefix/task" \
  $(pkg-config --cflags --libs pymar)
answer=$(LD_LIBRARY_PATH="$(dirname "$(find "$root" -name 'libpymar.so' | head -n1)")" \
  "$prefix/task" --produce -q 127.0.0.1:0 -w 2 2>/dev/null)
[ "$answer" = "Answer: 332833500" ] || { echo "check-install: got '$answer'" >&2; exit 1; }
echo "check-install: a task built with pkg-config answered right" >&2
