#!/usr/bin/env bash
# The HTTP endpoints are an optional part of the build (meson -Dhttp=disabled, or auto without
# cpp-httplib). Builds the integration example that way in build-nohttp/ and checks what a user
# of such a build gets: no HTTP module built, --metrics and --dashboard refused with one line
# that says how to get them (exit status 2, nothing on stdout), and jobs that run as ever.
# Only the one header that says whether there is a module differs from the main build, so
# ccache gives back every other object: a few seconds after tools/test.sh's release step.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-nohttp}
fail() {
  echo "check-no-http: $*" >&2
  exit 1
}

if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" -Dhttp=disabled -Dtests=false >/dev/null
fi
meson configure "$build" -Dhttp=disabled -Dtests=false >/dev/null
meson compile -C "$build" examples/integration >/dev/null
grep -q '^#undef PYMAR_HTTP_MODULE$' "$build/src/http_config.hpp" ||
  fail "$build/src/http_config.hpp does not say the module is left out"
[ ! -e "$build/src/libpymar-http.so" ] || fail "$build built libpymar-http.so with -Dhttp=disabled"

task="$build/examples/integration"
err_file=$(mktemp /tmp/check-no-http.XXXXXX)
trap 'rm -f "$err_file"' EXIT
for flag in --metrics --dashboard; do
  status=0
  out=$("$task" --produce "$flag" 0 2>"$err_file") || status=$?
  err=$(cat "$err_file")
  [ "$status" -eq 2 ] || fail "$flag: exit status $status, not 2: $err"
  [ -z "$out" ] || fail "$flag: printed on stdout: $out"
  [ "$(wc -l <<<"$err")" -eq 1 ] || fail "$flag: more than one line on stderr: $err"
  grep -qF "integration: error: $flag: built without HTTP support (meson -Dhttp=enabled)" <<<"$err" ||
    fail "$flag: does not say it was built without HTTP support: $err"
done

# A free port, asked of the kernel; another process could take it before the producer binds
# it, so a failed bind is tried again with another.
for attempt in 1 2 3; do
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  status=0
  answer=$("$task" --produce -w 2 -q "127.0.0.1:$port" 2>"$err_file") || status=$?
  [ "$status" -ne 0 ] && grep -q "Address already in use" "$err_file" && continue
  break
done
[ "$status" -eq 0 ] || fail "--produce -w 2 failed: $(cat "$err_file")"
[ "$answer" = "Answer: 22023.7365011059" ] || fail "--produce -w 2 printed '$answer'"
echo "check-no-http: a build without HTTP refuses --metrics and --dashboard with one clear line and computes the right answer"
