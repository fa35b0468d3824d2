#!/usr/bin/env bash
# Runs the engine.io-client@3 (npm) conformance tests against corestream's engine.io echo
# endpoint (engineioEchoPath, conformance testing only) on two cores, started here on free
# loopback ports and stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${CORESTREAM_BIN:-target/release/corestream}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/corestream-eio3.XXXXXX")
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
engineioEchoPath: /engine.io
engineioPingInterval: 300
engineioPingTimeout: 200
maxMessageSize: 16777216
CONFIG
"$BIN" start --config "$WORK/config.yml" --cores 2 >"$WORK/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do
  (echo >/dev/tcp/127.0.0.1/"$HTTP_PORT") 2>/dev/null && break
  sleep 0.1
done
bash scripts/conformance/eio3-client.sh "http://127.0.0.1:$HTTP_PORT" /engine.io
