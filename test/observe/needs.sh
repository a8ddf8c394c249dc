#!/bin/sh
# needs.sh PROGRAM COMMAND...: runs COMMAND when PROGRAM is installed, else says so and skips
# (status 77). tools/setup-debian.sh test installs every program these tests need.
program=$1
shift
if [ ! -x "$program" ]; then
  echo "skipped: $program is not installed (tools/setup-debian.sh test installs it)"
  exit 77
fi
exec "$@"
