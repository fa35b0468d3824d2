#!/usr/bin/env bash
# Runs the Autobahn WebSocket cases 1-10 (kosoku, PyPI) against corestream's WebSocket echo
# endpoint (websocketEchoPath, conformance testing only), started here on free loopback ports
# and stopped by PID. Fails if any case FAILED.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib.sh
require_corestream
make_work corestream-autobahn
# Autobahn's 9.x cases send messages of up to 16 MiB.
start_corestream echo "websocketEchoPath: /echo
maxMessageSize: 16777216"
bash scripts/conformance/autobahn.sh "ws://127.0.0.1:$HTTP_PORT/echo" "${AUTOBAHN_REPORT:-target/conformance/autobahn}"
