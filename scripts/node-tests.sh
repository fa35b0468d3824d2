#!/usr/bin/env bash
# Runs a node test suite against two freshly started servers: one with open auth, one with
# file auth (configs from tests/fixtures, on free loopback ports).
#
#   scripts/node-tests.sh deepstream   # tests/node/v1 (the real deepstream.io-client-js 1.1.1
#                                      # over TCP) against the reference: the real deepstream.io
#                                      # 1.1.1 on the `node` on PATH (Node 20)
#   scripts/node-tests.sh corestream   # ... against ${CORESTREAM_BIN:-target/release/corestream} --cores 2
#   scripts/node-tests.sh corestream tests/node/v1/rpc.test.js   # only some test files
#
# With --v2 first (what scripts/node-tests-v2.sh does): tests/node/v2, the real
# deepstream.io-client-js 2.3.4 over a websocket at ws://host:port/deepstream, plus raw websocket
# clients, against deepstream.io 2.4.1 on Node 8 (tests/node/node_modules/node-8/bin/node) or
# corestream. Both suites are built from the same parameterised suites (tests/node/suite) and
# export what tests/node/lib/dialect.js reads (DS_* for 1.x, DS2_* for 2.x).
#
# The clients run on the `node` found on PATH (Node >= 18). A server that is no longer running
# after the tests (2.4.1 exits on some inputs, PROTOCOL.md 3.7) fails the run. Exits with the
# status of `node --test`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

DIALECT=v1
if [ "${1:-}" = --v2 ]; then
  DIALECT=v2
  shift
fi
SERVER=${1:-}
case "$SERVER" in
  deepstream | corestream) ;;
  *)
    echo "usage: $0 [--v2] deepstream|corestream [test files...]" >&2
    exit 2
    ;;
esac
shift
TESTS=("$@")
if [ "${#TESTS[@]}" -eq 0 ]; then
  TESTS=("tests/node/$DIALECT/")
fi

NODE8=$(pwd)/tests/node/node_modules/node-8/bin/node
if [ "$DIALECT" = v1 ]; then
  ensure_npm tests/node deepstream.io deepstream.io-client-js
  PREFIX= PERMISSIONS=permissions.yml REFERENCE=(node tests/node/start-deepstream-1.js)
else
  ensure_npm tests/node deepstream.io-client-js-2
  [ "$SERVER" = corestream ] || ensure_npm tests/node deepstream.io-2 node-8/bin/node
  PREFIX=v2- PERMISSIONS=v2-permissions.yml REFERENCE=("$NODE8" tests/node/start-deepstream-2.js)
fi
# the clients need a modern node (node:test); make sure `node` is not the Node 8 binary that
# npm links into tests/node/node_modules/.bin
require_node 18
# (the reference run too: the users file gets one password hashed by `corestream hash`)
require_corestream

make_work "corestream-node-tests-$DIALECT"
# the websocket/HTTP port and the TCP port of each server (the 2.x reference opens no TCP port)
ports=$(free_ports 4) || exit 2
read -r OPEN_PORT OPEN_TCP FILE_PORT FILE_TCP <<<"$ports"

cp tests/fixtures/users.yml "tests/fixtures/$PERMISSIONS" "$WORK/"
fill_config "tests/fixtures/${PREFIX}open.yml" "$WORK/open.yml" "$OPEN_PORT" "$OPEN_TCP"
fill_config "tests/fixtures/${PREFIX}file.yml" "$WORK/file.yml" "$FILE_PORT" "$FILE_TCP"
# userH: a password hashed by `corestream hash` with the file config's options (suite/login.js)
HASHED=$("$BIN" hash --config "$WORK/file.yml" hashed-by-corestream)
printf 'userH:\n  password: "%s"\n' "$HASHED" >>"$WORK/users.yml"

# ready: the reference says so; corestream listens on the port the clients use
server_ready() { # server_ready NAME PORT
  if [ "$SERVER" = deepstream ]; then grep -qx ready "$WORK/$1.out"; else port_open "$2"; fi
}
for name in open file; do
  if [ "$SERVER" = deepstream ]; then
    start_server "$name" "$SERVER ($name)" "${REFERENCE[@]}" "$WORK/$name.yml"
  else
    start_server "$name" "$SERVER ($name)" "$BIN" start --config "$WORK/$name.yml" --cores 2
  fi
done
if [ "$DIALECT" = v1 ]; then
  wait_server open 200 0.1 server_ready open "$OPEN_TCP"
  wait_server file 200 0.1 server_ready file "$FILE_TCP"
  export DS_SERVER=$SERVER
  export DS_OPEN_URL=127.0.0.1:$OPEN_TCP DS_FILE_URL=127.0.0.1:$FILE_TCP
  export DS_OPEN_HTTP_URL=127.0.0.1:$OPEN_PORT DS_FILE_HTTP_URL=127.0.0.1:$FILE_PORT
  echo "# $SERVER: open auth tcp $DS_OPEN_URL (http $OPEN_PORT), file auth tcp $DS_FILE_URL (http $FILE_PORT)"
else
  wait_server open 200 0.1 server_ready open "$OPEN_PORT"
  wait_server file 200 0.1 server_ready file "$FILE_PORT"
  export DS2_TARGET=$SERVER
  export DS2_OPEN_URL=127.0.0.1:$OPEN_PORT DS2_FILE_URL=127.0.0.1:$FILE_PORT
  export DS2_OPEN_TCP_URL=127.0.0.1:$OPEN_TCP DS2_FILE_TCP_URL=127.0.0.1:$FILE_TCP
  echo "# $SERVER: open auth ws://$DS2_OPEN_URL/deepstream (tcp $OPEN_TCP), file auth ws://$DS2_FILE_URL/deepstream (tcp $FILE_TCP)"
fi

status=0
node --test "${TESTS[@]}" || status=$?
check_running open file || status=1
if [ "$status" -ne 0 ]; then
  show_output 50 open file
fi
exit "$status"
