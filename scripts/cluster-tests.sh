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
source scripts/lib.sh

TESTS=("$@")
if [ "${#TESTS[@]}" -eq 0 ]; then
  TESTS=(tests/node/cluster/)
fi

ensure_npm tests/node deepstream.io-client-js deepstream.io-client-js-2
require_node 20
REDIS_SERVER=${REDIS_SERVER:-$(command -v redis-server || true)}
if [ -z "$REDIS_SERVER" ]; then
  echo "redis-server is not installed (apt-get install redis-server)" >&2
  exit 2
fi
require_corestream

make_work corestream-cluster-tests
mkdir -p "$WORK/pids" "$WORK/redis"

# whatever a test process started and left behind (it SIGKILLs its own on a normal exit)
stop_leftovers() {
  local file pid
  for file in "$WORK"/pids/*; do
    [ -f "$file" ] || continue
    pid=$(basename "$file")
    # only if it is still one of ours (the PID file names the command)
    if [ -r "/proc/$pid/cmdline" ] && grep -qaF "$(cat "$file")" "/proc/$pid/cmdline" 2>/dev/null; then
      stop_pid "$pid" || true
    fi
  done
}
on_exit stop_leftovers

ports=$(free_ports 7) || exit 2
read -r REDIS_PORT H1 T1 H2 T2 H3 T3 <<<"$ports"

# --- redis
redis_pong() {
  node -e '
    const s = require("net").connect(Number(process.argv[1]), "127.0.0.1");
    s.on("connect", () => s.write("PING\r\n"));
    s.on("data", (d) => process.exit(String(d).startsWith("+PONG") ? 0 : 1));
    s.on("error", () => process.exit(1));
    setTimeout(() => process.exit(1), 1000);
  ' "$REDIS_PORT"
}
start_server redis redis-server "$REDIS_SERVER" --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly yes \
  --appendfsync always --dir "$WORK/redis"
wait_server redis 100 0.05 redis_pong

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

# once the node serves and both of its Redis links are up on both cores
node_linked() { # node_linked HTTP
  local metrics
  port_open "$1" || return 1
  metrics=$(timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1; printf 'GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >&3; cat <&3" 2>/dev/null || true)
  grep -q '^corestream_redis_links_up{link="command"} 2' <<<"$metrics" &&
    grep -q '^corestream_redis_links_up{link="pubsub"} 2' <<<"$metrics"
}
HTTP=("" "$H1" "$H2" "$H3")
TCP=("" "$T1" "$T2" "$T3")
for i in 1 2 3; do
  fill_config "$TEMPLATE" "$WORK/node$i.yml" "${HTTP[$i]}" "${TCP[$i]}" -e "s/__REDIS_PORT__/$REDIS_PORT/g"
  start_server "node$i" "corestream (node$i)" "$BIN" start --config "$WORK/node$i.yml" --cores 2
done
for i in 1 2 3; do
  wait_server "node$i" 200 0.05 node_linked "${HTTP[$i]}"
done
# and every node stamped its first heartbeat (a node that does not yet appear in cs:nodes is
# one the others cannot declare dead)
node -e '
  const c = require("./tests/node/lib/cluster");
  c.waitRedis(Number(process.argv[1]), ["HLEN", "cs:nodes"], (n) => n === 3, 10000, "three nodes in cs:nodes")
    .catch((e) => { console.error(e.message); process.exit(1); });
' "$REDIS_PORT"

REDIS_PID=${SERVER_PID[redis]}
export CLUSTER_NODES_TCP=127.0.0.1:$T1,127.0.0.1:$T2,127.0.0.1:$T3
export CLUSTER_NODES_HTTP=127.0.0.1:$H1,127.0.0.1:$H2,127.0.0.1:$H3
export CLUSTER_NODE_PIDS=${SERVER_PID[node1]},${SERVER_PID[node2]},${SERVER_PID[node3]}
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
check_running redis node1 node2 node3 || status=1

if [ "$status" -ne 0 ]; then
  show_output 30 node1 node2 node3
  for file in "$WORK"/extra-*.out "$WORK"/extra-*.err; do
    [ -s "$file" ] || continue
    echo "----- $(basename "$file") -----" >&2
    grep -hv 'accepted but not supported yet' "$file" | tail -n 30 >&2 || true
  done
  show_output 20 redis
fi
exit "$status"
