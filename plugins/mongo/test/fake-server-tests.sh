#!/usr/bin/env bash
# The live MongoDB tests against fake_mongod.py, a stand-in that speaks the wire protocol for the
# commands the plugin sends (no MongoDB server runs on the project's machines). It exercises the
# plugin's use of the C driver end to end: connecting, counting, listing collections, finding
# with sort/skip/limit/projection, documents from the wire, and the example with worker
# processes. Usage: fake-server-tests.sh PYTHON FAKE_MONGOD_PY MONGO_LIVE_TESTS
set -euo pipefail
python=$1
fake=$2
live_tests=$3

# The server prints its port once it listens: read that line (bounded), rather than sleep.
exec 3< <(exec "$python" -u "$fake")
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
if ! read -r -t 30 line <&3 || [[ "$line" != "listening on "* ]]; then
  echo "the fake MongoDB server did not start" >&2
  exit 1
fi
export PYMAR_TEST_MONGODB_URI="mongodb://${line#listening on }"
echo "fake MongoDB server: $PYMAR_TEST_MONGODB_URI"
"$live_tests"
