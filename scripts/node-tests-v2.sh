#!/usr/bin/env bash
# Runs the node test suite for the 2.x protocol (tests/node/v2: the real
# deepstream.io-client-js 2.3.4 over a websocket at ws://host:port/deepstream, plus raw
# websocket clients) against two freshly started servers: one with open auth, one with file auth.
#
#   scripts/node-tests-v2.sh deepstream   # the reference: real deepstream.io 2.4.1 on Node 8
#                                         # (tests/node/node_modules/node-8/bin/node)
#   scripts/node-tests-v2.sh corestream   # ${CORESTREAM_BIN:-target/release/corestream} --cores 2
#   scripts/node-tests-v2.sh deepstream tests/node/v2/rpc.test.js   # only some test files
#
# The clients run on the `node` found on PATH (Node 20). Configs are written from
# tests/fixtures/v2-open.yml and v2-file.yml with free loopback ports.
# Exits with the status of `node --test`.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

SERVER=${1:-}
case "$SERVER" in
  deepstream | corestream) ;;
  *)
    echo "usage: $0 deepstream|corestream [test files...]" >&2
    exit 2
    ;;
esac
shift
TESTS=("$@")
if [ "${#TESTS[@]}" -eq 0 ]; then
  TESTS=(tests/node/v2/)
fi

NODE8=$ROOT/tests/node/node_modules/node-8/bin/node
if [ ! -d tests/node/node_modules/deepstream.io-client-js-2 ] ||
  { [ "$SERVER" = deepstream ] && { [ ! -x "$NODE8" ] || [ ! -d tests/node/node_modules/deepstream.io-2 ]; }; }; then
  (cd tests/node && npm install --no-audit --no-fund)
fi

# the clients need a modern node (node:test); make sure `node` is not the Node 8 binary that
# npm links into tests/node/node_modules/.bin
NODE_MAJOR=$(node -p 'process.versions.node.split(".")[0]')
if [ "$NODE_MAJOR" -lt 18 ]; then
  echo "node on PATH is $(node --version): the test clients need Node >= 18" >&2
  exit 2
fi

if [ "$SERVER" = corestream ]; then
  BIN=${CORESTREAM_BIN:-target/release/corestream}
  if [ ! -x "$BIN" ]; then
    echo "corestream binary not found: $BIN (build it or set CORESTREAM_BIN)" >&2
    exit 2
  fi
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/corestream-node-tests-v2.XXXXXX")
PIDS=()

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    # give each server up to ~3 s, then SIGKILL
    for _ in $(seq 30); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Four distinct free loopback ports (all bound at once, then released): the websocket/HTTP
# port and the TCP port (used by corestream only) of each server.
read -r OPEN_PORT OPEN_TCP FILE_PORT FILE_TCP < <(node -e '
  const net = require("net");
  (async () => {
    const servers = [];
    for (let i = 0; i < 4; i++) {
      const s = net.createServer();
      await new Promise((r, j) => { s.once("error", j); s.listen(0, "127.0.0.1", r); });
      servers.push(s);
    }
    console.log(servers.map((s) => s.address().port).join(" "));
    servers.forEach((s) => s.close());
  })().catch((e) => { console.error(e); process.exit(1); });
')

if [ -z "${FILE_TCP:-}" ]; then
  echo "could not find free ports" >&2
  exit 2
fi

cp tests/fixtures/users.yml tests/fixtures/v2-permissions.yml "$WORK/"
sed -e "s/__PORT__/$OPEN_PORT/" -e "s/__TCP_PORT__/$OPEN_TCP/" tests/fixtures/v2-open.yml >"$WORK/open.yml"
sed -e "s/__PORT__/$FILE_PORT/" -e "s/__TCP_PORT__/$FILE_TCP/" tests/fixtures/v2-file.yml >"$WORK/file.yml"

port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# start_server NAME  -> starts the server for $WORK/NAME.yml in the background
start_server() {
  local name=$1
  if [ "$SERVER" = deepstream ]; then
    "$NODE8" tests/node/start-deepstream-2.js "$WORK/$name.yml" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  else
    "$BIN" start --config "$WORK/$name.yml" --cores 2 >"$WORK/$name.out" 2>"$WORK/$name.err" &
  fi
  PIDS+=("$!")
  eval "PID_$name=$!"
}

# wait_ready NAME HTTP_PORT
wait_ready() {
  local name=$1 port=$2 pid
  eval "pid=\$PID_$name"
  for _ in $(seq 200); do # up to ~20 s
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$SERVER ($name) exited during startup:" >&2
      cat "$WORK/$name.out" "$WORK/$name.err" >&2
      return 1
    fi
    if [ "$SERVER" = deepstream ]; then
      if grep -qx ready "$WORK/$name.out"; then return 0; fi
    else
      if port_open "$port"; then return 0; fi
    fi
    sleep 0.1
  done
  echo "$SERVER ($name) did not become ready in time:" >&2
  cat "$WORK/$name.out" "$WORK/$name.err" >&2
  return 1
}

start_server open
start_server file
wait_ready open "$OPEN_PORT"
wait_ready file "$FILE_PORT"

export DS2_TARGET=$SERVER
export DS2_OPEN_URL=127.0.0.1:$OPEN_PORT
export DS2_FILE_URL=127.0.0.1:$FILE_PORT
export DS2_OPEN_TCP_URL=127.0.0.1:$OPEN_TCP
export DS2_FILE_TCP_URL=127.0.0.1:$FILE_TCP

echo "# $SERVER: open auth ws://$DS2_OPEN_URL/deepstream (tcp $OPEN_TCP), file auth ws://$DS2_FILE_URL/deepstream (tcp $FILE_TCP)"

status=0
node --test "${TESTS[@]}" || status=$?

# a server that died during the run (2.4.1 exits on some inputs, PROTOCOL.md 3.7) fails the run
for name in open file; do
  eval "pid=\$PID_$name"
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "$SERVER ($name) is no longer running after the tests" >&2
    status=1
  fi
done

if [ "$status" -ne 0 ]; then
  for name in open file; do
    if [ -s "$WORK/$name.err" ] || [ -s "$WORK/$name.out" ]; then
      echo "----- $SERVER ($name) output -----" >&2
      tail -n 50 "$WORK/$name.out" "$WORK/$name.err" >&2 || true
    fi
  done
fi
exit "$status"
