#!/usr/bin/env bash
# Runs the Autobahn WebSocket cases 1-10 (kosoku, PyPI) against corestream's WebSocket echo
# endpoint (websocketEchoPath, conformance testing only), started here on free loopback ports
# and stopped by PID. Fails if any case FAILED.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${CORESTREAM_BIN:-target/release/corestream}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/corestream-autobahn.XXXXXX")
read -r HTTP_PORT TCP_PORT < <(python3 -c '
import socket
sockets = [socket.socket() for _ in range(2)]
for s in sockets: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in sockets])
for s in sockets: s.close()')
cat >"$WORK/config.yml" <<CONFIG
host: 127.0.0.1
port: $HTTP_PORT
tcpHost: 127.0.0.1
tcpPort: $TCP_PORT
logLevel: WARN
websocketEchoPath: /echo
# Autobahn's 9.x cases send messages of up to 16 MiB.
maxMessageSize: 16777216
CONFIG
"$BIN" start --config "$WORK/config.yml" --cores 2 >"$WORK/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do
  (echo >/dev/tcp/127.0.0.1/"$HTTP_PORT") 2>/dev/null && break
  sleep 0.1
done
bash scripts/conformance/autobahn.sh "ws://127.0.0.1:$HTTP_PORT/echo" "${AUTOBAHN_REPORT:-target/conformance/autobahn}"
