#!/usr/bin/env bash
# Runs tests/conformance/eio3-client.test.js (engine.io-client@3 from npm, under
# node's test runner) against an engine.io protocol 3 echo endpoint.
#
#   scripts/conformance/eio3-client.sh URL PATH    e.g. http://127.0.0.1:6020 /engine.io
#   scripts/conformance/eio3-client.sh reference   the engine.io@3 reference echo server
#                                                  (tests/conformance/eio3-echo-server.js)
#                                                  on a free loopback port
#
# The endpoint should run with pingInterval 300 / pingTimeout 200 ms: the heartbeat
# tests idle for 2 x (pingInterval + pingTimeout) and skip themselves above 10 s.
# Exits with the status of `node --test`.
set -euo pipefail

usage() {
  echo "usage: $0 http://HOST:PORT PATH | $0 reference" >&2
  exit 2
}

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
source "$ROOT/scripts/lib.sh"
CONF=$ROOT/tests/conformance

URL=${1:-}
EIO_PATH_ARG=${2:-/engine.io}
case "$URL" in
  reference | http://* | https://*) ;;
  *) usage ;;
esac

ensure_npm "$CONF" engine.io-client engine.io
make_work eio3-client

if [ "$URL" = reference ]; then
  EIO_PATH_ARG=/engine.io
  start_server reference "the reference server" node "$CONF/eio3-echo-server.js" 0 "$EIO_PATH_ARG"
  wait_server reference 100 0.1 grep -q '^listening' "$WORK/reference.out"
  URL=$(awk '/^listening/ { print $2; exit }' "$WORK/reference.out")
  echo "# server: engine.io@$(node -p "require('$CONF/node_modules/engine.io/package.json').version") reference echo server at $URL$EIO_PATH_ARG"
else
  echo "# server: $URL$EIO_PATH_ARG"
fi
echo "# client: engine.io-client@$(node -p "require('$CONF/node_modules/engine.io-client/package.json').version")"

status=0
EIO_URL=${URL%/} EIO_PATH=$EIO_PATH_ARG \
  timeout --kill-after=10 "${EIO_CLIENT_TIMEOUT:-120}" \
  node --test "$CONF/eio3-client.test.js" || status=$?
if [ "$status" -ne 0 ] && [ -n "${SERVER_PID[reference]:-}" ]; then
  show_output 50 reference
fi
exit "$status"
