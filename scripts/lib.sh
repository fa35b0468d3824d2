# Shared shell code of the scripts that start servers for tests (sourced, not run: `source
# "$(dirname "$0")/lib.sh"`). Needs bash 4.3 or later and `node` on PATH (free_ports).
#
#   free_ports N                   N distinct free loopback ports, chosen by the kernel
#   port_open PORT                 something accepts connections on 127.0.0.1:PORT
#   make_work NAME                 WORK=a new temp folder; on exit (and on INT/TERM): the
#                                  on_exit hooks run, every start_server process is stopped
#                                  by PID, WORK is removed (kept when KEEP_WORK is set)
#   on_exit CMD                    run CMD (a string, eval'd) at exit, before the servers stop
#   start_server NAME LABEL CMD... run CMD in the background, output in $WORK/NAME.out and
#                                  $WORK/NAME.err, PID in SERVER_PID[NAME]
#   wait_server NAME TRIES SECONDS CHECK...
#                                  poll CHECK every SECONDS until it succeeds (see wait_ready)
#   wait_ready LABEL PID TRIES SECONDS LOG... -- CHECK...
#                                  the same for any PID: 1 (and the LOG files on stderr) when
#                                  PID exits first or the TRIES run out
#   check_running NAME...          1 (and a line on stderr) for each server no longer running
#   show_output LINES NAME...      the servers' last output lines on stderr (for a failed run)
#   stop_pid PID [TENTHS]          TERM, up to TENTHS/10 s (default 3 s), then KILL; reaped
#   stop_nginxes_on_exit           every nginx scripts/nginx.sh started in a $WORK/nginx-*/
#                                  folder is stopped at exit (an on_exit hook)
#   show_nginx_logs LINES          the last LINES of each such nginx's error.log on stderr
#   require_corestream             BIN=absolute path of ${CORESTREAM_BIN:-target/release/corestream}
#   require_node MAJOR             exit 2 unless `node` is at least Node MAJOR
#   ensure_npm DIR PATH...         npm install in DIR when a DIR/node_modules/PATH is missing
#   fill_config SRC DEST HTTP TCP [SED-ARGS...]
#                                  a config template with __PORT__ and __TCP_PORT__ filled in
#   start_corestream NAME YAML     corestream ($BIN, --cores 2) on free loopback ports
#                                  (HTTP_PORT, TCP_PORT) with a minimal config plus YAML; waits
#                                  until its HTTP port listens
#
# The caller runs from the repository root (the scripts cd there first) with `set -euo pipefail`.

LIB_PIDS=()
LIB_EXIT_HOOKS=()
declare -A SERVER_PID=()
declare -A SERVER_LABEL=()

free_ports() {
  node -e '
    const net = require("net");
    (async () => {
      const servers = [];
      for (let i = 0; i < Number(process.argv[1]); i++) {
        const s = net.createServer();
        await new Promise((r, j) => { s.once("error", j); s.listen(0, "127.0.0.1", r); });
        servers.push(s);
      }
      console.log(servers.map((s) => s.address().port).join(" "));
      servers.forEach((s) => s.close());
    })().catch((e) => { console.error(`could not find free ports: ${e.message}`); process.exit(1); });
  ' "$1"
}

port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# running, and not a zombie waiting for a parent that is not us
pid_alive() {
  local state
  state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ "$state" != Z* ]]
}

stop_pid() {
  local pid=$1 tries=${2:-30} killed=0
  if kill -TERM "$pid" 2>/dev/null; then
    for _ in $(seq "$tries"); do
      pid_alive "$pid" || break
      sleep 0.1
    done
    if pid_alive "$pid"; then
      kill -KILL "$pid" 2>/dev/null || true
      killed=1
    fi
  fi
  wait "$pid" 2>/dev/null || true
  return "$killed"
}

# every PID at once: TERM all, then up to ~3 s each, then KILL
stop_pids() {
  local pid
  for pid in "$@"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "$@"; do
    stop_pid "$pid" || true
  done
}

on_exit() {
  LIB_EXIT_HOOKS+=("$1")
}

lib_cleanup() {
  local hook
  for hook in "${LIB_EXIT_HOOKS[@]}"; do
    eval "$hook" || true
  done
  stop_pids "${LIB_PIDS[@]}"
  if [ -n "${WORK:-}" ] && [ -z "${KEEP_WORK:-}" ]; then rm -rf "$WORK"; fi
}

make_work() {
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
  trap lib_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

start_server() {
  local name=$1 label=$2
  shift 2
  "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  SERVER_PID[$name]=$!
  SERVER_LABEL[$name]=$label
  LIB_PIDS+=("$!")
}

wait_ready() {
  local label=$1 pid=$2 tries=$3 interval=$4 logs=()
  shift 4
  while [ "$1" != -- ]; do
    logs+=("$1")
    shift
  done
  shift
  for _ in $(seq "$tries"); do
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid" 2>/dev/null || true
      echo "$label exited during startup:" >&2
      cat "${logs[@]}" >&2 2>/dev/null || true
      return 1
    fi
    if "$@"; then return 0; fi
    sleep "$interval"
  done
  echo "$label did not become ready in time:" >&2
  cat "${logs[@]}" >&2 2>/dev/null || true
  return 1
}

wait_server() {
  local name=$1
  shift
  wait_ready "${SERVER_LABEL[$name]}" "${SERVER_PID[$name]}" "$1" "$2" "$WORK/$name.out" "$WORK/$name.err" -- "${@:3}"
}

check_running() {
  local name status=0
  for name in "$@"; do
    if ! kill -0 "${SERVER_PID[$name]}" 2>/dev/null; then
      echo "${SERVER_LABEL[$name]} is no longer running after the tests" >&2
      status=1
    fi
  done
  return "$status"
}

show_output() {
  local lines=$1 name
  shift
  for name in "$@"; do
    [ -s "$WORK/$name.out" ] || [ -s "$WORK/$name.err" ] || continue
    echo "----- ${SERVER_LABEL[$name]} output -----" >&2
    grep -hv 'accepted but not supported yet' "$WORK/$name.out" "$WORK/$name.err" | tail -n "$lines" >&2 || true
  done
}

stop_nginxes() {
  local dir
  for dir in "$WORK"/nginx-*/; do
    [ -d "$dir" ] && bash scripts/nginx.sh --dir "$dir" --stop || true
  done
}

stop_nginxes_on_exit() {
  on_exit stop_nginxes
}

show_nginx_logs() {
  local dir
  for dir in "$WORK"/nginx-*/; do
    if [ -s "$dir/error.log" ]; then
      echo "----- nginx $(basename "$dir") error.log -----" >&2
      tail -n "$1" "$dir/error.log" >&2
    fi
  done
}

require_corestream() {
  BIN=${CORESTREAM_BIN:-target/release/corestream}
  if [ ! -x "$BIN" ]; then
    echo "corestream binary not found: $BIN (build it or set CORESTREAM_BIN)" >&2
    exit 2
  fi
  BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
}

require_node() {
  local major
  major=$(node -p 'process.versions.node.split(".")[0]')
  if [ "$major" -lt "$1" ]; then
    echo "node on PATH is $(node --version): the tests need Node >= $1" >&2
    exit 2
  fi
}

ensure_npm() {
  local dir=$1 path
  shift
  for path in "$@"; do
    if [ ! -e "$dir/node_modules/$path" ]; then
      (cd "$dir" && npm install --no-audit --no-fund --loglevel=error)
      return
    fi
  done
}

fill_config() {
  local src=$1 dest=$2 http=$3 tcp=$4
  shift 4
  sed -e "s/__PORT__/$http/" -e "s/__TCP_PORT__/$tcp/" "$@" "$src" >"$dest"
}

start_corestream() {
  local name=$1 ports
  ports=$(free_ports 2) || exit 2
  read -r HTTP_PORT TCP_PORT <<<"$ports"
  printf 'host: 127.0.0.1\nport: %s\ntcpHost: 127.0.0.1\ntcpPort: %s\nlogLevel: WARN\n%s\n' \
    "$HTTP_PORT" "$TCP_PORT" "$2" >"$WORK/$name.yml"
  start_server "$name" "corestream ($name)" "$BIN" start --config "$WORK/$name.yml" --cores 2
  wait_server "$name" 100 0.1 port_open "$HTTP_PORT"
}
