#!/usr/bin/env bash
# Runs the node test suite (tests/node/v1, real deepstream.io-client-js 1.1.1 over TCP)
# against two freshly started servers: one with open auth, one with file auth.
#
#   scripts/node-tests.sh deepstream   # the reference: real deepstream.io 1.1.1 (Node 20)
#   scripts/node-tests.sh corestream   # ${CORESTREAM_BIN:-target/release/corestream} --cores 2
#
# Extra arguments are ignored. Exits with the status of `node --test`.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

SERVER=${1:-}
case "$SERVER" in
  deepstream | corestream) ;;
  *)
    echo "usage: $0 deepstream|corestream" >&2
    exit 2
    ;;
esac

if [ ! -d tests/node/node_modules ]; then
  (cd tests/node && npm install --no-audit --no-fund)
fi

if [ "$SERVER" = corestream ]; then
  BIN=${CORESTREAM_BIN:-target/release/corestream}
  if [ ! -x "$BIN" ]; then
    echo "corestream binary not found: $BIN (build it or set CORESTREAM_BIN)" >&2
    exit 2
  fi
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/corestream-node-tests.XXXXXX")
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

# Four distinct free loopback ports (all bound at once, then released).
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

cp tests/fixtures/users.yml tests/fixtures/permissions.yml "$WORK/"
sed -e "s/__PORT__/$OPEN_PORT/" -e "s/__TCP_PORT__/$OPEN_TCP/" tests/fixtures/open.yml >"$WORK/open.yml"
sed -e "s/__PORT__/$FILE_PORT/" -e "s/__TCP_PORT__/$FILE_TCP/" tests/fixtures/file.yml >"$WORK/file.yml"

port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# start_server NAME  -> starts the server for $WORK/NAME.yml in the background
start_server() {
  local name=$1
  if [ "$SERVER" = deepstream ]; then
    node tests/node/start-deepstream-1.js "$WORK/$name.yml" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  else
    "$BIN" start --config "$WORK/$name.yml" --cores 2 >"$WORK/$name.out" 2>"$WORK/$name.err" &
  fi
  PIDS+=("$!")
  eval "PID_$name=$!"
}

# wait_ready NAME TCP_PORT
wait_ready() {
  local name=$1 tcp=$2 pid
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
      if port_open "$tcp"; then return 0; fi
    fi
    sleep 0.1
  done
  echo "$SERVER ($name) did not become ready in time:" >&2
  cat "$WORK/$name.out" "$WORK/$name.err" >&2
  return 1
}

start_server open
start_server file
wait_ready open "$OPEN_TCP"
wait_ready file "$FILE_TCP"

export DS_SERVER=$SERVER
export DS_OPEN_URL=127.0.0.1:$OPEN_TCP
export DS_FILE_URL=127.0.0.1:$FILE_TCP
export DS_OPEN_HTTP_URL=127.0.0.1:$OPEN_PORT
export DS_FILE_HTTP_URL=127.0.0.1:$FILE_PORT

echo "# $SERVER: open auth tcp $DS_OPEN_URL (http $OPEN_PORT), file auth tcp $DS_FILE_URL (http $FILE_PORT)"

status=0
node --test tests/node/v1/ || status=$?

if [ "$status" -ne 0 ]; then
  for name in open file; do
    if [ -s "$WORK/$name.err" ] || [ -s "$WORK/$name.out" ]; then
      echo "----- $SERVER ($name) output -----" >&2
      tail -n 50 "$WORK/$name.out" "$WORK/$name.err" >&2 || true
    fi
  done
fi
exit "$status"
