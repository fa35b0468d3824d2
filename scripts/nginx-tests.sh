#!/usr/bin/env bash
# Runs the tests of corestream behind nginx (tests/node/nginx): the real
# deepstream.io-client-js 1.1.1 (engine.io long-polling, polling -> WebSocket, TCP) and 2.3.4
# (WebSocket) through an nginx started by scripts/nginx.sh from the shipped nginx/*.conf.
#
#   scripts/nginx-tests.sh                                  # every test file
#   scripts/nginx-tests.sh tests/node/nginx/tcp.test.js     # only some
#
# Starts, on free loopback ports (configs written from tests/fixtures/open.yml):
#   - two corestream nodes (${CORESTREAM_BIN:-target/release/corestream} --cores 2), open auth,
#     tcpProxyProtocol: true, trustedProxies: [127.0.0.2];
#   - one node with auth type proxy-header (trustedProxies: [127.0.0.2]);
#   - nginx "open" in front of the two nodes: http (auth variant A) and stream (PROXY protocol);
#   - in front of the proxy-header node: nginx "basic" (auth variant B, users alice:secret and
#     bob:builder), nginx "authreq" (variant C; the test starts its auth service) and nginx
#     "strip" (variant A: no auth in nginx, the user headers removed).
# Every nginx connects to the nodes from 127.0.0.2 (proxy_bind), so a test client, which
# connects from 127.0.0.1, is not a trusted proxy. Everything is stopped by PID on exit.
# Exits with the status of `node --test`.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

TESTS=("$@")
if [ "${#TESTS[@]}" -eq 0 ]; then
  TESTS=(tests/node/nginx/)
fi

if [ ! -d tests/node/node_modules/deepstream.io-client-js-2 ]; then
  (cd tests/node && npm install --no-audit --no-fund)
fi
NODE_MAJOR=$(node -p 'process.versions.node.split(".")[0]')
if [ "$NODE_MAJOR" -lt 20 ]; then
  echo "node on PATH is $(node --version): the tests need Node >= 20" >&2
  exit 2
fi
if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
  echo "nginx is not installed (apt-get install nginx libnginx-mod-stream)" >&2
  exit 2
fi
BIN=${CORESTREAM_BIN:-target/release/corestream}
if [ ! -x "$BIN" ]; then
  echo "corestream binary not found: $BIN (build it or set CORESTREAM_BIN)" >&2
  exit 2
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/corestream-nginx-tests.XXXXXX")
chmod 0711 "$WORK" # nginx's workers run as another user when this runs as root
PIDS=()
NGINX_DIRS=()

cleanup() {
  local pid dir
  # ours, and any a test started there (tests/node/nginx/headers.test.js)
  for dir in "$WORK"/nginx-*/; do
    [ -d "$dir" ] && bash scripts/nginx.sh --dir "$dir" --stop || true
  done
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
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

# distinct free loopback ports, all bound at once, then released
read -r A_HTTP A_TCP B_HTTP B_TCP AUTH_HTTP AUTH_TCP NGINX_HTTP NGINX_TCP NGINX_BASIC NGINX_AUTHREQ NGINX_STRIP AUTH_SERVICE < <(node -e '
  const net = require("net");
  (async () => {
    const servers = [];
    for (let i = 0; i < 12; i++) {
      const s = net.createServer();
      await new Promise((r, j) => { s.once("error", j); s.listen(0, "127.0.0.1", r); });
      servers.push(s);
    }
    console.log(servers.map((s) => s.address().port).join(" "));
    servers.forEach((s) => s.close());
  })().catch((e) => { console.error(e); process.exit(1); });
')
if [ -z "${AUTH_SERVICE:-}" ]; then
  echo "could not find free ports" >&2
  exit 2
fi

PROXY_ADDR=127.0.0.2

# node_config NAME HTTP TCP EXTRA: tests/fixtures/open.yml with its ports, its auth block
# replaced by EXTRA's (when EXTRA has one), and EXTRA appended
node_config() {
  local name=$1 http=$2 tcp=$3 extra=$4
  local drop_auth=()
  if grep -q '^auth:' <<<"$extra"; then drop_auth=(-e '/^auth:$/,/^$/d'); fi
  sed -e "s/__PORT__/$http/" -e "s/__TCP_PORT__/$tcp/" "${drop_auth[@]}" tests/fixtures/open.yml >"$WORK/$name.yml"
  printf '\n# added by scripts/nginx-tests.sh\n%s\n' "$extra" >>"$WORK/$name.yml"
}
cp tests/fixtures/permissions.yml "$WORK/"
OPEN_EXTRA="tcpProxyProtocol: true
trustedProxies: [$PROXY_ADDR]"
node_config a "$A_HTTP" "$A_TCP" "$OPEN_EXTRA"
node_config b "$B_HTTP" "$B_TCP" "$OPEN_EXTRA"
node_config auth "$AUTH_HTTP" "$AUTH_TCP" "trustedProxies: [$PROXY_ADDR]
auth:
  type: proxy-header
  options:
    header: X-Forwarded-User
    dataHeader: X-Forwarded-User-Data"

port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start_node() { # start_node NAME
  "$BIN" start --config "$WORK/$1.yml" --cores 2 >"$WORK/$1.out" 2>"$WORK/$1.err" &
  PIDS+=("$!")
  eval "PID_$1=$!"
}

wait_node() { # wait_node NAME HTTP_PORT -> 0 when serving; 1 (output on stderr) if not
  local name=$1 port=$2 pid
  eval "pid=\$PID_$name"
  for _ in $(seq 200); do
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid" 2>/dev/null || true
      echo "corestream ($name) exited during startup:" >&2
      cat "$WORK/$name.out" "$WORK/$name.err" >&2
      return 1
    fi
    if port_open "$port"; then return 0; fi
    sleep 0.1
  done
  echo "corestream ($name) did not listen in time:" >&2
  cat "$WORK/$name.out" "$WORK/$name.err" >&2
  return 1
}

start_node a
start_node b
start_node auth
wait_node a "$A_HTTP"
wait_node b "$B_HTTP"
AUTH_NODE_ERROR=
if ! wait_node auth "$AUTH_HTTP" 2>"$WORK/auth.startup"; then
  AUTH_NODE_ERROR=$(grep -v 'accepted but not supported yet' "$WORK/auth.startup" || true)
  [ -n "$AUTH_NODE_ERROR" ] || AUTH_NODE_ERROR="exited"
  echo "# the proxy-header auth node did not start; its tests will fail:" >&2
  sed 's/^/#   /' <<<"$AUTH_NODE_ERROR" >&2
fi

start_nginx() { # start_nginx NAME ARGS...
  local dir="$WORK/nginx-$1"
  shift
  NGINX_DIRS+=("$dir")
  bash scripts/nginx.sh --dir "$dir" --proxy-bind "$PROXY_ADDR" "$@" >/dev/null
}
start_nginx open --http-port "$NGINX_HTTP" --http-upstream "127.0.0.1:$A_HTTP,127.0.0.1:$B_HTTP" \
  --tcp-port "$NGINX_TCP" --tcp-upstream "127.0.0.1:$A_TCP,127.0.0.1:$B_TCP" --proxy-protocol on
start_nginx basic --http-port "$NGINX_BASIC" --http-upstream "127.0.0.1:$AUTH_HTTP" \
  --basic-auth alice:secret --basic-auth bob:builder
start_nginx authreq --http-port "$NGINX_AUTHREQ" --http-upstream "127.0.0.1:$AUTH_HTTP" \
  --auth-request "http://127.0.0.1:$AUTH_SERVICE/auth"
start_nginx strip --http-port "$NGINX_STRIP" --http-upstream "127.0.0.1:$AUTH_HTTP"

export NGINX_HTTP_URL=127.0.0.1:$NGINX_HTTP
export NGINX_TCP_URL=127.0.0.1:$NGINX_TCP
export NGINX_NODES_HTTP=127.0.0.1:$A_HTTP,127.0.0.1:$B_HTTP
export NGINX_NODES_TCP=127.0.0.1:$A_TCP,127.0.0.1:$B_TCP
export NGINX_BASIC_URL=127.0.0.1:$NGINX_BASIC
export NGINX_AUTHREQ_URL=127.0.0.1:$NGINX_AUTHREQ
export NGINX_STRIP_URL=127.0.0.1:$NGINX_STRIP
export NGINX_AUTH_SERVICE=127.0.0.1:$AUTH_SERVICE
export NGINX_AUTH_NODE_HTTP=127.0.0.1:$AUTH_HTTP
export NGINX_AUTH_NODE_TCP=127.0.0.1:$AUTH_TCP
export NGINX_AUTH_NODE_ERROR=$AUTH_NODE_ERROR
export NGINX_PROXY_BIND=$PROXY_ADDR
export NGINX_TEST_TMP=$WORK

echo "# nginx http $NGINX_HTTP_URL (nodes $NGINX_NODES_HTTP), stream $NGINX_TCP_URL (nodes $A_TCP,$B_TCP)," \
  "basic auth $NGINX_BASIC_URL, auth_request $NGINX_AUTHREQ_URL, no auth $NGINX_STRIP_URL (proxy-header node $AUTH_HTTP)"

# files one at a time (the /metrics checks count sessions per node); a hard limit in case a
# test file's process never exits
status=0
timeout -k 5 "${NGINX_TESTS_TIMEOUT:-180}" node --test --test-concurrency=1 "${TESTS[@]}" || status=$?
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
  echo "node --test did not finish within ${NGINX_TESTS_TIMEOUT:-180} s: stopped" >&2
fi

nodes=(a b)
[ -n "$AUTH_NODE_ERROR" ] || nodes+=(auth)
for name in "${nodes[@]}"; do
  eval "pid=\$PID_$name"
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "corestream ($name) is no longer running after the tests" >&2
    status=1
  fi
done

if [ "$status" -ne 0 ]; then
  for name in a b auth; do
    if [ -s "$WORK/$name.err" ] || [ -s "$WORK/$name.out" ]; then
      echo "----- corestream ($name) output -----" >&2
      grep -hv 'accepted but not supported yet' "$WORK/$name.out" "$WORK/$name.err" | tail -n 30 >&2 || true
    fi
  done
  for dir in "${NGINX_DIRS[@]}"; do
    if [ -s "$dir/error.log" ]; then
      echo "----- nginx $(basename "$dir") error.log -----" >&2
      tail -n 30 "$dir/error.log" >&2
    fi
  done
fi
exit "$status"
