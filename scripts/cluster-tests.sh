#!/usr/bin/env bash
# Runs the cluster tests (tests/node/cluster): the real deepstream.io-client-js 1.1.1 (TCP) and
# 2.3.4 (WebSocket) against three corestream nodes clustered through a real redis-server.
#
#   scripts/cluster-tests.sh                                       # every test file
#   scripts/cluster-tests.sh tests/node/cluster/rpc.test.js        # only some
#
# Starts, on free loopback ports:
#   - redis-server in its own temp folder (--save "" --appendonly yes --appendfsync always);
#   - three nodes (${CORESTREAM_BIN:-target/release/corestream} start --config X --cores 2),
#     configs written from tests/fixtures/open.yml with the cluster keys of
#     tests/node/lib/cluster.js's template (plugins.message/cache: redis, short liveness
#     timings, rpcAckTimeout 1000, rpcTimeout 3000, heartbeatInterval 2000); every node serves
#     1.x clients on its TCP port and 2.x clients on ws://127.0.0.1:<http>/deepstream.
# Test files run one at a time (they share the cluster); a file that kills a node or Redis
# starts its own through tests/node/lib/cluster.js. Everything is stopped by PID on exit,
# including what a test process started and could not stop (their PID files in
# $CLUSTER_WORK/pids). Exits with the status of `node --test`.
set -euo pipefail

cd "$(dirname "$0")/.."

TESTS=("$@")
if [ "${#TESTS[@]}" -eq 0 ]; then
  TESTS=(tests/node/cluster/)
fi

if [ ! -d tests/node/node_modules/deepstream.io-client-js-2 ] || [ ! -d tests/node/node_modules/deepstream.io-client-js ]; then
  (cd tests/node && npm install --no-audit --no-fund)
fi
NODE_MAJOR=$(node -p 'process.versions.node.split(".")[0]')
if [ "$NODE_MAJOR" -lt 20 ]; then
  echo "node on PATH is $(node --version): the tests need Node >= 20" >&2
  exit 2
fi
REDIS_SERVER=${REDIS_SERVER:-$(command -v redis-server || true)}
if [ -z "$REDIS_SERVER" ]; then
  echo "redis-server is not installed (apt-get install redis-server)" >&2
  exit 2
fi
BIN=${CORESTREAM_BIN:-target/release/corestream}
if [ ! -x "$BIN" ]; then
  echo "corestream binary not found: $BIN (build it or set CORESTREAM_BIN)" >&2
  exit 2
fi
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")

WORK=$(mktemp -d "${TMPDIR:-/tmp}/corestream-cluster-tests.XXXXXX")
mkdir -p "$WORK/pids" "$WORK/redis"
PIDS=()

stop_pid() { # TERM, up to ~3 s, then KILL
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 30); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
  local pid file
  # whatever a test process started and left behind (it SIGKILLs its own on a normal exit)
  for file in "$WORK"/pids/*; do
    [ -f "$file" ] || continue
    pid=$(basename "$file")
    # only if it is still one of ours (the PID file names the command)
    if [ -r "/proc/$pid/cmdline" ] && grep -qaF "$(cat "$file")" "/proc/$pid/cmdline" 2>/dev/null; then
      stop_pid "$pid"
    fi
  done
  for pid in "${PIDS[@]}"; do
    stop_pid "$pid"
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# distinct free loopback ports, all bound at once, then released
read -r REDIS_PORT H1 T1 H2 T2 H3 T3 < <(node -e '
  const net = require("net");
  (async () => {
    const servers = [];
    for (let i = 0; i < 7; i++) {
      const s = net.createServer();
      await new Promise((r, j) => { s.once("error", j); s.listen(0, "127.0.0.1", r); });
      servers.push(s);
    }
    console.log(servers.map((s) => s.address().port).join(" "));
    servers.forEach((s) => s.close());
  })().catch((e) => { console.error(e); process.exit(1); });
')
if [ -z "${T3:-}" ]; then
  echo "could not find free ports" >&2
  exit 2
fi

port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# --- redis
"$REDIS_SERVER" --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly yes --appendfsync always \
  --dir "$WORK/redis" >"$WORK/redis.out" 2>&1 &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
for _ in $(seq 100); do
  if ! kill -0 "$REDIS_PID" 2>/dev/null; then
    echo "redis-server exited during startup:" >&2
    cat "$WORK/redis.out" >&2
    exit 1
  fi
  if node -e '
    const s = require("net").connect(Number(process.argv[1]), "127.0.0.1");
    s.on("connect", () => s.write("PING\r\n"));
    s.on("data", (d) => process.exit(String(d).startsWith("+PONG") ? 0 : 1));
    s.on("error", () => process.exit(1));
    setTimeout(() => process.exit(1), 1000);
  ' "$REDIS_PORT"; then
    break
  fi
  sleep 0.05
done

# --- the node config template (also used by tests that start nodes of their own):
# tests/fixtures/open.yml without the keys set below, then the cluster keys
cp tests/fixtures/permissions.yml tests/fixtures/users.yml "$WORK/"
TEMPLATE=$WORK/node.template.yml
sed -e '/^serverName:/d' -e '/^rpcAckTimeout:/d' -e '/^rpcTimeout:/d' \
  -e '/^clusterKeepAliveInterval:/d' -e '/^clusterActiveCheckInterval:/d' -e '/^clusterNodeInactiveTimeout:/d' \
  tests/fixtures/open.yml >"$TEMPLATE"
cat >>"$TEMPLATE" <<'EOF'

# added by scripts/cluster-tests.sh (__REDIS_PORT__ is replaced per run)
serverName: node
heartbeatInterval: 2000
plugins:
  message:
    name: redis
    options: {host: 127.0.0.1, port: __REDIS_PORT__}
  cache:
    name: redis
    options: {host: 127.0.0.1, port: __REDIS_PORT__}
clusterKeepAliveInterval: 200
clusterActiveCheckInterval: 200
clusterNodeInactiveTimeout: 1500
rpcAckTimeout: 1000
rpcTimeout: 3000
EOF

start_node() { # start_node I HTTP TCP
  local i=$1 http=$2 tcp=$3
  sed -e "s/__PORT__/$http/" -e "s/__TCP_PORT__/$tcp/" -e "s/__REDIS_PORT__/$REDIS_PORT/g" "$TEMPLATE" >"$WORK/node$i.yml"
  "$BIN" start --config "$WORK/node$i.yml" --cores 2 >"$WORK/node$i.out" 2>"$WORK/node$i.err" &
  PIDS+=("$!")
  eval "PID_$i=$!"
}

# 0 once the node serves and both of its Redis links are up on both cores
wait_node() { # wait_node I HTTP
  local i=$1 http=$2 pid metrics
  eval "pid=\$PID_$i"
  for _ in $(seq 200); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "corestream (node$i) exited during startup:" >&2
      cat "$WORK/node$i.out" "$WORK/node$i.err" >&2
      return 1
    fi
    if port_open "$http"; then
      metrics=$(timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$http; printf 'GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >&3; cat <&3" 2>/dev/null || true)
      if grep -q '^corestream_redis_links_up{link="command"} 2' <<<"$metrics" &&
        grep -q '^corestream_redis_links_up{link="pubsub"} 2' <<<"$metrics"; then
        return 0
      fi
    fi
    sleep 0.05
  done
  echo "corestream (node$i) did not connect to Redis in time:" >&2
  cat "$WORK/node$i.out" "$WORK/node$i.err" >&2
  return 1
}

start_node 1 "$H1" "$T1"
start_node 2 "$H2" "$T2"
start_node 3 "$H3" "$T3"
wait_node 1 "$H1"
wait_node 2 "$H2"
wait_node 3 "$H3"
# and every node stamped its first heartbeat (a node that does not yet appear in cs:nodes is
# one the others cannot declare dead)
if ! node -e '
  const c = require("./tests/node/lib/cluster");
  c.waitRedis(Number(process.argv[1]), ["HLEN", "cs:nodes"], (n) => n === 3, 10000, "three nodes in cs:nodes")
    .catch((e) => { console.error(e.message); process.exit(1); });
' "$REDIS_PORT"; then
  exit 1
fi

export CLUSTER_NODES_TCP=127.0.0.1:$T1,127.0.0.1:$T2,127.0.0.1:$T3
export CLUSTER_NODES_HTTP=127.0.0.1:$H1,127.0.0.1:$H2,127.0.0.1:$H3
export CLUSTER_NODE_PIDS=$PID_1,$PID_2,$PID_3
export CLUSTER_REDIS_PORT=$REDIS_PORT
export CLUSTER_REDIS_PID=$REDIS_PID
export CLUSTER_REDIS_DIR=$WORK/redis
export CLUSTER_REDIS_SERVER=$REDIS_SERVER
export CLUSTER_BIN=$BIN
export CLUSTER_CONFIG_TEMPLATE=$TEMPLATE
export CLUSTER_WORK=$WORK

echo "# redis 127.0.0.1:$REDIS_PORT (pid $REDIS_PID); nodes tcp $CLUSTER_NODES_TCP, http $CLUSTER_NODES_HTTP (pids $CLUSTER_NODE_PIDS)"

started=$(date +%s)
status=0
timeout -k 5 "${CLUSTER_TESTS_TIMEOUT:-240}" node --test --test-concurrency=1 "${TESTS[@]}" || status=$?
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
  echo "node --test did not finish within ${CLUSTER_TESTS_TIMEOUT:-240} s: stopped" >&2
fi
echo "# cluster tests took $(($(date +%s) - started)) s"

# the shared cluster must have survived the tests
for pid in "$REDIS_PID" "$PID_1" "$PID_2" "$PID_3"; do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "process $pid of the shared cluster is no longer running after the tests" >&2
    status=1
  fi
done

if [ "$status" -ne 0 ]; then
  for i in 1 2 3; do
    echo "----- corestream (node$i) output -----" >&2
    grep -hv 'accepted but not supported yet' "$WORK/node$i.out" "$WORK/node$i.err" | tail -n 30 >&2 || true
  done
  for file in "$WORK"/extra-*.out "$WORK"/extra-*.err; do
    [ -s "$file" ] || continue
    echo "----- $(basename "$file") -----" >&2
    grep -hv 'accepted but not supported yet' "$file" | tail -n 30 >&2 || true
  done
  echo "----- redis-server -----" >&2
  tail -n 20 "$WORK/redis.out" >&2 || true
fi
exit "$status"
