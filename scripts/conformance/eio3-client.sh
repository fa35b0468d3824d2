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
CONF=$ROOT/tests/conformance

URL=${1:-}
EIO_PATH_ARG=${2:-/engine.io}
case "$URL" in
  reference | http://* | https://*) ;;
  *) usage ;;
esac

if [ ! -d "$CONF/node_modules/engine.io-client" ] || [ ! -d "$CONF/node_modules/engine.io" ]; then
  (cd "$CONF" && npm install --no-audit --no-fund)
fi

SERVER_PID=
WORK=$(mktemp -d "${TMPDIR:-/tmp}/eio3-client.XXXXXX")
cleanup() {
  if [ -n "$SERVER_PID" ]; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 30); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ "$URL" = reference ]; then
  EIO_PATH_ARG=/engine.io
  node "$CONF/eio3-echo-server.js" 0 "$EIO_PATH_ARG" >"$WORK/server.out" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 100); do
    grep -q '^listening' "$WORK/server.out" && break
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  if ! grep -q '^listening' "$WORK/server.out"; then
    echo "the reference server did not start:" >&2
    cat "$WORK/server.out" >&2
    exit 1
  fi
  URL=$(awk '/^listening/ { print $2; exit }' "$WORK/server.out")
  echo "# server: engine.io@$(node -p "require('$CONF/node_modules/engine.io/package.json').version") reference echo server at $URL$EIO_PATH_ARG"
else
  echo "# server: $URL$EIO_PATH_ARG"
fi
echo "# client: engine.io-client@$(node -p "require('$CONF/node_modules/engine.io-client/package.json').version")"

status=0
EIO_URL=${URL%/} EIO_PATH=$EIO_PATH_ARG \
  timeout --kill-after=10 "${EIO_CLIENT_TIMEOUT:-120}" \
  node --test "$CONF/eio3-client.test.js" || status=$?
if [ "$status" -ne 0 ] && [ -n "$SERVER_PID" ] && [ -s "$WORK/server.out" ]; then
  echo "----- reference server output -----" >&2
  tail -n 50 "$WORK/server.out" >&2
fi
exit "$status"
