#!/usr/bin/env bash
# The Kerberos deployment end to end (tests/node/kerberos): a throwaway KDC on loopback
# (scripts/kdc.sh, MIT Kerberos from Debian's packages), the SPNEGO validator
# nginx/corestream-spnego.py with the realm's HTTP/localhost keytab, nginx with TLS from
# `corestream nginx --auth kerberos --tls` (scripts/nginx.sh), and a corestream node with auth
# type proxy-header behind it. The real deepstream.io-client-js 1.1.1 (engine.io) and 2.3.4
# (WebSocket) log in with Negotiate tokens made from the users' tickets (tests/kerberos/
# negotiate-token.py).
#
#   scripts/kerberos-tests.sh                                   # every test file
#   scripts/kerberos-tests.sh tests/node/kerberos/x.test.js     # only some
#   KERBEROS_BENCH=1 scripts/kerberos-tests.sh                  # also the auth cost benchmark
#
# Started on free loopback ports, stopped by PID on exit:
#   - krb5kdc, realm CORESTREAM.TEST: users alice, bob, carol (passwords in the environment of the
#     tests, which kinit short-lived tickets of their own), service HTTP/localhost (in the
#     validator's keytab), decoy HTTP/elsewhere (a real ticket the validator cannot accept),
#     svc-feed (a backend's principal, key in a keytab: kinit -k -t, no password);
#   - the validator twice: --user short --realm CORESTREAM.TEST behind nginx, and --user
#     principal asked directly by one test;
#   - corestream (2 cores): auth proxy-header, trustedProxies [127.0.0.2], engine.io ping
#     1 s / timeout 2 s (the grace after which a polling session whose polls are refused ends),
#     tests/fixtures/kerberos/permissions.yml (user/$userId writable by that user only);
#   - nginx "kerberos" (TLS, a certificate made here for localhost and 127.0.0.1) in front of
#     the node; for the benchmark also nginx "basic" (carol:secret) in front of it, and nginx
#     "open" (no auth) in front of a second node with open auth (tests/node/kerberos/bench.js).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

TESTS=("$@")
[ "${#TESTS[@]}" -gt 0 ] || TESTS=(tests/node/kerberos/)

ensure_npm tests/node deepstream.io-client-js deepstream.io-client-js-2
require_node 20
require_corestream
PYTHON=/usr/bin/python3 # Debian's, where python3-gssapi is installed
if ! "$PYTHON" -c 'import gssapi' 2>/dev/null; then
  echo "python3-gssapi is missing for $PYTHON (apt-get install python3-gssapi)" >&2
  exit 2
fi

make_work corestream-kerberos-tests
chmod 0711 "$WORK" # nginx's workers run as another user when this runs as root
stop_nginxes_on_exit

ports=$(free_ports 12) || exit 2
read -r KDC_PORT NODE_HTTP NODE_TCP VALIDATOR VALIDATOR_FULL NGINX_KRB NGINX_BASIC NGINX_OPEN OPEN_HTTP OPEN_TCP \
  VALIDATOR_BENCH NGINX_KRB_BENCH <<<"$ports"
PROXY_ADDR=127.0.0.2
REALM=CORESTREAM.TEST
ALICE_PASSWORD=$(head -c 12 /dev/urandom | base64 | tr -d '/+=')
BOB_PASSWORD=$(head -c 12 /dev/urandom | base64 | tr -d '/+=')
CAROL_PASSWORD=$(head -c 12 /dev/urandom | base64 | tr -d '/+=')

# the realm, its KDC and the users' tickets
bash scripts/kdc.sh --dir "$WORK/kdc" --port "$KDC_PORT" --realm "$REALM" \
  --user "alice:$ALICE_PASSWORD" --user "bob:$BOB_PASSWORD" --user "carol:$CAROL_PASSWORD" \
  --service HTTP/localhost --decoy HTTP/elsewhere --keytab-user svc-feed
export KRB5_CONFIG=$WORK/kdc/krb5.conf KRB5_KDC_PROFILE=$WORK/kdc/kdc.conf
export KRB5RCACHEDIR=$WORK/kdc # the validator's replay cache
export PATH="$PATH:/usr/sbin"
start_server kdc "krb5kdc" krb5kdc -n -P "$WORK/kdc/kdc.pid"
kdc_answers() { KRB5CCNAME=$WORK/probe.cc kinit alice <<<"$ALICE_PASSWORD" >/dev/null 2>&1; }
wait_server kdc 100 0.1 kdc_answers

# the TLS certificate nginx serves (the Node clients trust it through NODE_EXTRA_CA_CERTS)
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$WORK/tls.key" -out "$WORK/tls.pem" 2>"$WORK/openssl.err" ||
  { cat "$WORK/openssl.err" >&2; exit 1; }

# the SPNEGO validator: behind nginx (short names), and one naming whole principals
validator() { # validator NAME PORT ARGS...
  local name=$1 port=$2
  shift 2
  start_server "$name" "corestream-spnego ($name)" env KRB5_KTNAME="$WORK/kdc/services.keytab" \
    "$PYTHON" nginx/corestream-spnego.py --listen "127.0.0.1:$port" "$@"
}
validator spnego "$VALIDATOR" --user short --realm "$REALM"
validator spnego-full "$VALIDATOR_FULL" --user principal
wait_server spnego 100 0.1 port_open "$VALIDATOR"
wait_server spnego-full 100 0.1 port_open "$VALIDATOR_FULL"

# the node
mkdir -p "$WORK/node"
cp tests/fixtures/kerberos/permissions.yml "$WORK/node/"
cat >"$WORK/node/config.yml" <<EOF
host: 127.0.0.1
port: $NODE_HTTP
tcpHost: 127.0.0.1
tcpPort: $NODE_TCP
logLevel: INFO
engineioPingInterval: 1000
engineioPingTimeout: 2000
trustedProxies: [$PROXY_ADDR]
auth:
  type: proxy-header
  options:
    header: X-Forwarded-User
    dataHeader: X-Forwarded-User-Data
permission:
  type: config
  options:
    path: ./permissions.yml
EOF
start_server node "corestream (proxy-header)" "$BIN" start --config "$WORK/node/config.yml" --cores 2
wait_server node 100 0.1 port_open "$NODE_HTTP"

# nginx in front, TLS on
start_nginx() { # start_nginx NAME PORT NODE_PORT ARGS...
  local name=$1 port=$2 node=$3
  shift 3
  bash scripts/nginx.sh --dir "$WORK/nginx-$name" --http-port "$port" \
    --http-upstream "127.0.0.1:$node" --proxy-bind "$PROXY_ADDR" \
    --tls "$WORK/tls.pem" "$WORK/tls.key" "$@" >/dev/null
}
start_nginx kerberos "$NGINX_KRB" "$NODE_HTTP" --kerberos "http://127.0.0.1:$VALIDATOR/"

export KRB_REALM=$REALM KRB_ALICE_PASSWORD=$ALICE_PASSWORD KRB_BOB_PASSWORD=$BOB_PASSWORD
export KRB_CAROL_PASSWORD=$CAROL_PASSWORD
export KRB_WORK=$WORK
export KRB_NGINX_URL=127.0.0.1:$NGINX_KRB
export KRB_NODE_HTTP=127.0.0.1:$NODE_HTTP
export KRB_VALIDATOR_FULL=127.0.0.1:$VALIDATOR_FULL
export KRB_TOKEN_TOOL=$PWD/tests/kerberos/negotiate-token.py KRB_PYTHON=$PYTHON
export NODE_EXTRA_CA_CERTS=$WORK/tls.pem
echo "# KDC 127.0.0.1:$KDC_PORT, nginx (Kerberos, TLS) $KRB_NGINX_URL -> corestream $KRB_NODE_HTTP"

status=0
timeout -k 5 "${KERBEROS_TESTS_TIMEOUT:-180}" node --test --test-concurrency=1 "${TESTS[@]}" || status=$?

running=(node spnego kdc)
if [ -n "${KERBEROS_BENCH:-}" ] && [ "$status" -eq 0 ]; then
  # the same node with open auth, behind an nginx without auth
  sed -e "s/^port: .*/port: $OPEN_HTTP/" -e "s/^tcpPort: .*/tcpPort: $OPEN_TCP/" \
    -e '/^auth:/,/^permission:/{/^permission:/!d}' "$WORK/node/config.yml" >"$WORK/node/open.yml"
  printf 'auth:\n  type: none\n' >>"$WORK/node/open.yml"
  start_server open "corestream (open)" "$BIN" start --config "$WORK/node/open.yml" --cores 2
  wait_server open 100 0.1 port_open "$OPEN_HTTP"
  # a validator with the default clock skew (300 s, as in production): the benchmark makes its
  # tokens before it times (clockskew 1 s would refuse them as too old)
  sed 's/clockskew = 1/clockskew = 300/' "$KRB5_CONFIG" >"$WORK/kdc/krb5-skew300.conf"
  KRB5_CONFIG=$WORK/kdc/krb5-skew300.conf validator spnego-bench "$VALIDATOR_BENCH" --user short
  wait_server spnego-bench 100 0.1 port_open "$VALIDATOR_BENCH"
  running+=(open spnego-bench)
  start_nginx kerberos-bench "$NGINX_KRB_BENCH" "$NODE_HTTP" --kerberos "http://127.0.0.1:$VALIDATOR_BENCH/"
  start_nginx basic "$NGINX_BASIC" "$NODE_HTTP" --basic-auth carol:secret
  start_nginx open "$NGINX_OPEN" "$OPEN_HTTP"
  KRB_NGINX_URL=127.0.0.1:$NGINX_KRB_BENCH KRB_NGINX_BASIC_URL=127.0.0.1:$NGINX_BASIC \
    KRB_NGINX_OPEN_URL=127.0.0.1:$NGINX_OPEN node tests/node/kerberos/bench.js || status=$?
fi

check_running "${running[@]}" || status=1
if [ "$status" -ne 0 ]; then
  show_output 30 node spnego spnego-full kdc
  show_nginx_logs 30
fi
exit "$status"
