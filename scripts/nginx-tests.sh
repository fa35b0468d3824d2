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
source scripts/lib.sh

TESTS=("$@")
if [ "${#TESTS[@]}" -eq 0 ]; then
  TESTS=(tests/node/nginx/)
fi

ensure_npm tests/node deepstream.io-client-js deepstream.io-client-js-2
require_node 20
if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
  echo "nginx is not installed (apt-get install nginx libnginx-mod-stream)" >&2
  exit 2
fi
require_corestream

make_work corestream-nginx-tests
chmod 0711 "$WORK" # nginx's workers run as another user when this runs as root
# ours, and any a test started there (tests/node/nginx/headers.test.js)
stop_nginxes_on_exit

ports=$(free_ports 12) || exit 2
read -r A_HTTP A_TCP B_HTTP B_TCP AUTH_HTTP AUTH_TCP NGINX_HTTP NGINX_TCP NGINX_BASIC NGINX_AUTHREQ NGINX_STRIP AUTH_SERVICE <<<"$ports"

PROXY_ADDR=127.0.0.2

# node_config NAME HTTP TCP EXTRA: tests/fixtures/open.yml with its ports, its auth block
# replaced by EXTRA's (when EXTRA has one), and EXTRA appended
node_config() {
  local name=$1 http=$2 tcp=$3 extra=$4
  local drop_auth=()
  if grep -q '^auth:' <<<"$extra"; then drop_auth=(-e '/^auth:$/,/^$/d'); fi
  fill_config tests/fixtures/open.yml "$WORK/$name.yml" "$http" "$tcp" "${drop_auth[@]}"
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

start_node() { # start_node NAME
  start_server "$1" "corestream ($1)" "$BIN" start --config "$WORK/$1.yml" --cores 2
}
wait_node() { # wait_node NAME HTTP_PORT -> 0 when serving; 1 (output on stderr) if not
  wait_server "$1" 200 0.1 port_open "$2"
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
check_running "${nodes[@]}" || status=1

if [ "$status" -ne 0 ]; then
  show_output 30 a b auth
  show_nginx_logs 30
fi
exit "$status"
