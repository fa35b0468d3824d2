#!/usr/bin/env bash
# Runs the permission ("Valve") scenarios of tests/node/permissions against one freshly started
# server with file auth (tests/fixtures/permissions/users.yml) and the rules of
# tests/fixtures/permissions/rules.yml, on free loopback ports.
#
#   scripts/permission-tests.sh deepstream    # the reference deepstream.io 1.1.1 (Node on PATH),
#                                             # 1.1.1 clients over TCP
#   scripts/permission-tests.sh deepstream2   # the reference deepstream.io 2.4.1 (Node 8), 2.3.4
#                                             # clients over WebSocket
#   scripts/permission-tests.sh corestream    # ${CORESTREAM_BIN:-target/release/corestream}:
#                                             # both client generations
#   scripts/permission-tests.sh deepstream2 tests/node/permissions/events.test.js   # some files
#
# Rules: 1.1.1 gets rules.yml as it is (it refuses a `presence` section); 2.4.1 and corestream
# get rules.yml followed by presence.yml (2.4.1 requires that section). Configs: the templates
# of the other node suites, tests/fixtures/file.yml (1.x) and v2-file.yml (2.x, whose tcpPort
# is corestream's 1.x endpoint), with the permissions file renamed.
#
# startup.test.js, hazards.test.js and crossref.test.js start servers of the target
# themselves (tests/node/lib/permissions.js startServer). The clients run on the `node` on
# PATH (Node >= 18). A server that is no longer running after the tests fails the run. Exits
# with the status of `node --test`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

TARGET=${1:-}
case "$TARGET" in
  deepstream | deepstream2 | corestream) ;;
  *)
    echo "usage: $0 deepstream|deepstream2|corestream [test files...]" >&2
    exit 2
    ;;
esac
shift
TESTS=("$@")
if [ "${#TESTS[@]}" -eq 0 ]; then
  TESTS=(tests/node/permissions/)
fi

NODE8=$(pwd)/tests/node/node_modules/node-8/bin/node
case "$TARGET" in
  deepstream) ensure_npm tests/node deepstream.io deepstream.io-client-js ;;
  deepstream2) ensure_npm tests/node deepstream.io-2 deepstream.io-client-js-2 node-8/bin/node ;;
  corestream) ensure_npm tests/node deepstream.io-client-js deepstream.io-client-js-2 ;;
esac
require_node 18
BIN=
if [ "$TARGET" = corestream ]; then require_corestream; fi

make_work "corestream-permission-tests-$TARGET"
ports=$(free_ports 2) || exit 2
read -r HTTP_PORT TCP_PORT <<<"$ports"

FIX=tests/fixtures/permissions
cp "$FIX/users.yml" "$WORK/users.yml"
if [ "$TARGET" = deepstream ]; then
  cp "$FIX/rules.yml" "$WORK/permissions.yml"
  fill_config tests/fixtures/file.yml "$WORK/server.yml" "$HTTP_PORT" "$TCP_PORT"
else
  cat "$FIX/rules.yml" "$FIX/presence.yml" >"$WORK/permissions.yml"
  fill_config tests/fixtures/v2-file.yml "$WORK/server.yml" "$HTTP_PORT" "$TCP_PORT" \
    -e 's#\./v2-permissions\.yml#./permissions.yml#'
fi

case "$TARGET" in
  deepstream) start_server server "deepstream 1.1.1" node tests/node/start-deepstream-1.js "$WORK/server.yml" ;;
  deepstream2) start_server server "deepstream 2.4.1" "$NODE8" tests/node/start-deepstream-2.js "$WORK/server.yml" ;;
  corestream) start_server server "corestream" "$BIN" start --config "$WORK/server.yml" --cores 2 ;;
esac
server_ready() {
  if [ "$TARGET" = corestream ]; then port_open "$HTTP_PORT"; else grep -qx ready "$WORK/server.out"; fi
}
wait_server server 200 0.1 server_ready

export PERM_TARGET=$TARGET PERM_WORK=$WORK PERM_NODE8=$NODE8 PERM_CORESTREAM_BIN=$BIN
unset PERM_V1_URL PERM_V2_URL
case "$TARGET" in
  deepstream) export PERM_V1_URL=127.0.0.1:$TCP_PORT ;;
  deepstream2) export PERM_V2_URL=127.0.0.1:$HTTP_PORT ;;
  corestream) export PERM_V1_URL=127.0.0.1:$TCP_PORT PERM_V2_URL=127.0.0.1:$HTTP_PORT ;;
esac
echo "# $TARGET: 1.x tcp ${PERM_V1_URL:-none}, 2.x ws ${PERM_V2_URL:-none}"

status=0
node --test --test-concurrency=1 "${TESTS[@]}" || status=$?
check_running server || status=1
if [ "$status" -ne 0 ]; then
  show_output 50 server
fi
exit "$status"
