#!/usr/bin/env bash
# Starts a local nginx in front of local corestream nodes, built from the shipped configs
# nginx/corestream-http.conf and nginx/corestream-stream.conf as `corestream nginx` prints them
# for these nodes (${CORESTREAM_BIN:-target/release/corestream}), so tests exercise exactly what
# the command gives a deployment.
#
#   scripts/nginx.sh --dir DIR --http-port P --http-upstream 127.0.0.1:A,127.0.0.1:B \
#                    [--tcp-port Q --tcp-upstream 127.0.0.1:C,127.0.0.1:D] \
#                    [--host 127.0.0.1] [--proxy-protocol on|off] [--proxy-bind ADDR] \
#                    [--basic-auth user:password]... [--auth-request URL] [--kerberos URL]
#                    [--tls CERT KEY] [--workers N]
#   scripts/nginx.sh --dir DIR --stop
#
#   --dir DIR            everything of this nginx lives here: nginx.conf, the two generated
#                        includes, htpasswd, temp paths, error.log, nginx.pid (created if missing)
#   --http-port P        the http server (WebSocket, engine.io, /health-check, /metrics), with
#   --http-upstream L    the nodes' HTTP ports, comma-separated host:port
#   --tcp-port Q         the stream server (1.x TCP), with
#   --tcp-upstream L     the nodes' TCP ports (omit both for no stream block)
#   --host ADDR          the address nginx listens on (default 127.0.0.1)
#   --proxy-protocol     send the PROXY protocol header to the TCP nodes (default on; the nodes
#                        then need tcpProxyProtocol: true)
#   --proxy-bind ADDR    connect to the nodes from ADDR (e.g. 127.0.0.2, for trustedProxies)
#   --basic-auth U:P     auth variant (B): basic auth with these users (repeat for more);
#                        X-Forwarded-User carries the user
#   --auth-request URL   auth variant (C): ask the auth service at URL (http://host:port/path)
#   --kerberos URL       auth variant (D): Kerberos, nginx/corestream-spnego.py listening at URL
#   (neither)            auth variant (A): no auth in nginx, the user headers are removed
#   --auth-off           every auth variant commented out (what a careless edit leaves): the
#                        user headers must still be removed
#   --tls CERT KEY       TLS on the http server with these files (without it: plain HTTP,
#                        `corestream nginx --no-tls`)
#   --workers N          worker_processes (default 1)
#
# nginx runs in the foreground of a background process (`daemon off`), its master's PID is
# printed on stdout and is in DIR/nginx.pid. Stop it with `kill -TERM PID` or
# `scripts/nginx.sh --dir DIR --stop`. Works as root (workers then run as www-data or nobody)
# and as any other user: nothing outside DIR is written.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/scripts/lib.sh"
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}

die() {
  echo "nginx.sh: $*" >&2
  exit 2
}

DIR= HTTP_PORT= HTTP_UPSTREAM= TCP_PORT= TCP_UPSTREAM= HOST=127.0.0.1 PROXY_PROTOCOL=on
PROXY_BIND= AUTH_REQUEST= KERBEROS= TLS_CERT= TLS_KEY= WORKERS=1 STOP=0 AUTH_OFF=0
BASIC_AUTH=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) DIR=${2:?}; shift 2 ;;
    --http-port) HTTP_PORT=${2:?}; shift 2 ;;
    --http-upstream) HTTP_UPSTREAM=${2:?}; shift 2 ;;
    --tcp-port) TCP_PORT=${2:?}; shift 2 ;;
    --tcp-upstream) TCP_UPSTREAM=${2:?}; shift 2 ;;
    --host) HOST=${2:?}; shift 2 ;;
    --proxy-protocol) PROXY_PROTOCOL=${2:?}; shift 2 ;;
    --proxy-bind) PROXY_BIND=${2:?}; shift 2 ;;
    --basic-auth) BASIC_AUTH+=("${2:?}"); shift 2 ;;
    --auth-request) AUTH_REQUEST=${2:?}; shift 2 ;;
    --kerberos) KERBEROS=${2:?}; shift 2 ;;
    --tls) TLS_CERT=${2:?}; TLS_KEY=${3:?}; shift 3 ;;
    --auth-off) AUTH_OFF=1; shift ;;
    --workers) WORKERS=${2:?}; shift 2 ;;
    --stop) STOP=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
[ -n "$DIR" ] || die "--dir is required"

# --stop: TERM the master (it stops its workers), then make sure nothing of it is left.
if [ "$STOP" = 1 ]; then
  [ -s "$DIR/nginx.pid" ] || exit 0
  pid=$(cat "$DIR/nginx.pid")
  workers=$(ps -o pid= --ppid "$pid" 2>/dev/null || true)
  # gone, or a zombie waiting for whoever adopted it (this script's nginx outlives its parent)
  if ! stop_pid "$pid" 50; then
    echo "nginx.sh: nginx (PID $pid) did not stop in 5 s: killed it, and its workers" >&2
    for p in $workers; do
      kill -KILL "$p" 2>/dev/null || true
    done
  fi
  rm -f "$DIR/nginx.pid"
  exit 0
fi

[ -n "$HTTP_PORT" ] || [ -n "$TCP_PORT" ] || die "give --http-port and/or --tcp-port"
[ -z "$HTTP_PORT" ] || [ -n "$HTTP_UPSTREAM" ] || die "--http-port needs --http-upstream"
[ -z "$TCP_PORT" ] || [ -n "$TCP_UPSTREAM" ] || die "--tcp-port needs --tcp-upstream"
case "$PROXY_PROTOCOL" in on | off) ;; *) die "--proxy-protocol on|off" ;; esac
variants=0
[ "${#BASIC_AUTH[@]}" -eq 0 ] || variants=$((variants + 1))
[ -z "$AUTH_REQUEST" ] || variants=$((variants + 1))
[ -z "$KERBEROS" ] || variants=$((variants + 1))
[ "$variants" -le 1 ] || die "--basic-auth, --auth-request and --kerberos exclude each other"
for list in "$HTTP_UPSTREAM" "$TCP_UPSTREAM"; do
  [ -z "$list" ] || [[ "$list" =~ ^[^,:[:space:]]+:[0-9]+(,[^,:[:space:]]+:[0-9]+)*$ ]] ||
    die "an upstream list is host:port[,host:port...]: $list"
done
[ -x "$NGINX" ] || die "nginx not found (apt-get install nginx libnginx-mod-stream)"

mkdir -p "$DIR/tmp"
DIR=$(cd "$DIR" && pwd)
if [ -s "$DIR/nginx.pid" ] && kill -0 "$(cat "$DIR/nginx.pid")" 2>/dev/null; then
  die "an nginx already runs from $DIR (PID $(cat "$DIR/nginx.pid")); --stop it first"
fi

# As root, the master binds and reads the config; the workers drop to an unprivileged user,
# which must reach DIR (temp paths, htpasswd).
USER_LINE=
if [ "$(id -u)" = 0 ]; then
  worker_user=nobody
  if id www-data >/dev/null 2>&1; then worker_user=www-data; fi
  worker_group=$(id -gn "$worker_user")
  USER_LINE="user $worker_user $worker_group;"
  chmod 0755 "$DIR"
fi

# The two includes come from `corestream nginx` (the shipped files in nginx/, compiled into
# the binary, filled in for these nodes): the tests run exactly what the command prints.
require_corestream
if [ -n "$HTTP_PORT" ]; then
  ARGS=(--nodes "$HTTP_UPSTREAM" --listen "$HOST:$HTTP_PORT")
  if [ "${#BASIC_AUTH[@]}" -gt 0 ]; then
    ARGS+=(--auth basic --htpasswd "$DIR/htpasswd")
    : >"$DIR/htpasswd"
    for entry in "${BASIC_AUTH[@]}"; do
      user=${entry%%:*} password=${entry#*:}
      [ -n "$user" ] && [ "$user" != "$entry" ] || die "--basic-auth user:password"
      printf '%s:%s\n' "$user" "$(openssl passwd -apr1 "$password")" >>"$DIR/htpasswd"
    done
    chmod 0644 "$DIR/htpasswd"
  elif [ -n "$AUTH_REQUEST" ]; then
    ARGS+=(--auth request --auth-url "$AUTH_REQUEST")
  elif [ -n "$KERBEROS" ]; then
    ARGS+=(--auth kerberos --auth-url "$KERBEROS")
  elif [ "$AUTH_OFF" = 1 ]; then
    ARGS+=(--auth off)
  fi
  if [ -n "$TLS_CERT" ]; then
    ARGS+=(--tls "$TLS_CERT" "$TLS_KEY")
  else
    ARGS+=(--no-tls)
  fi
  [ -z "$PROXY_BIND" ] || ARGS+=(--proxy-bind "$PROXY_BIND")
  "$BIN" nginx "${ARGS[@]}" >"$DIR/corestream-http.conf" || die "corestream nginx failed"
fi
if [ -n "$TCP_PORT" ]; then
  ARGS=(--stream --nodes "$TCP_UPSTREAM" --listen "$HOST:$TCP_PORT" --proxy-protocol "$PROXY_PROTOCOL")
  [ -z "$PROXY_BIND" ] || ARGS+=(--proxy-bind "$PROXY_BIND")
  "$BIN" nginx "${ARGS[@]}" >"$DIR/corestream-stream.conf" || die "corestream nginx --stream failed"
fi

# the stream module: loaded when this nginx has it as a dynamic module (Debian)
LOAD_STREAM=
if [ -n "$TCP_PORT" ]; then
  version=$("$NGINX" -V 2>&1)
  if [[ "$version" == *"--with-stream=dynamic"* ]]; then
    modules=$(sed -n 's/.*--modules-path=\([^ ]*\).*/\1/p' <<<"$version")
    so=${modules:-/usr/lib/nginx/modules}/ngx_stream_module.so
    [ -f "$so" ] || die "nginx needs its stream module: $so is missing (apt-get install libnginx-mod-stream)"
    LOAD_STREAM="load_module $so;"
  elif [[ "$version" != *"--with-stream"* ]]; then
    die "this nginx has no stream module"
  fi
fi

{
  echo "# generated by scripts/nginx.sh $(date -u +%Y-%m-%dT%H:%M:%SZ); the includes are printed"
  echo "# by \`corestream nginx\` from nginx/corestream-http.conf and nginx/corestream-stream.conf"
  [ -z "$USER_LINE" ] || echo "$USER_LINE"
  [ -z "$LOAD_STREAM" ] || echo "$LOAD_STREAM"
  cat <<EOF
worker_processes $WORKERS;
daemon off;
pid $DIR/nginx.pid;
error_log $DIR/error.log warn;
worker_shutdown_timeout 2s;

events {
    worker_connections 1024;
}
EOF
  if [ -n "$HTTP_PORT" ]; then
    cat <<EOF

http {
    # temp paths in DIR: never /var/lib/nginx, so any user can run this
    client_body_temp_path $DIR/tmp/client_body;
    proxy_temp_path       $DIR/tmp/proxy;
    fastcgi_temp_path     $DIR/tmp/fastcgi;
    uwsgi_temp_path       $DIR/tmp/uwsgi;
    scgi_temp_path        $DIR/tmp/scgi;
    access_log off;

    include $DIR/corestream-http.conf;
}
EOF
  fi
  if [ -n "$TCP_PORT" ]; then
    cat <<EOF

stream {
    include $DIR/corestream-stream.conf;
}
EOF
  fi
} >"$DIR/nginx.conf"

NGINX_ARGS=(-p "$DIR/" -c "$DIR/nginx.conf" -e "$DIR/error.log")
if ! "$NGINX" "${NGINX_ARGS[@]}" -t -q 2>"$DIR/nginx-t.err"; then
  echo "nginx.sh: nginx -t failed for $DIR/nginx.conf:" >&2
  cat "$DIR/nginx-t.err" >&2
  exit 1
fi

# the workers (as $worker_user) must reach the temp paths and read the htpasswd file
if [ -n "$USER_LINE" ] && command -v runuser >/dev/null &&
  ! runuser -u "$worker_user" -- test -x "$DIR/tmp" -a \( ! -e "$DIR/htpasswd" -o -r "$DIR/htpasswd" \); then
  die "nginx's workers (user $worker_user) cannot reach $DIR: make the folders above it traversable (chmod o+x)"
fi

rm -f "$DIR/nginx.pid"
"$NGINX" "${NGINX_ARGS[@]}" </dev/null >"$DIR/nginx.out" 2>&1 &
pid=$!

# Ready once nginx wrote its pid file: it does so after opening every listening socket (a
# client connecting before the worker runs waits in the listen backlog). Connecting to find
# out would make the stream server open a connection to a node for nothing.
pid_file_is() { [ "$(cat "$DIR/nginx.pid" 2>/dev/null)" = "$1" ]; }
if ! wait_ready "nginx.sh: nginx (PID $pid)" "$pid" 100 0.05 "$DIR/nginx.out" "$DIR/error.log" -- pid_file_is "$pid"; then
  kill -TERM "$pid" 2>/dev/null || true
  exit 1
fi
echo "$pid"
