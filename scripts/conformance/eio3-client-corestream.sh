#!/usr/bin/env bash
# Runs the engine.io-client@3 (npm) conformance tests against corestream's engine.io echo
# endpoint (engineioEchoPath, conformance testing only) on two cores, started here on free
# loopback ports and stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib.sh
require_corestream
make_work corestream-eio3
start_corestream echo "engineioEchoPath: /engine.io
engineioPingInterval: 300
engineioPingTimeout: 200
maxMessageSize: 16777216"
bash scripts/conformance/eio3-client.sh "http://127.0.0.1:$HTTP_PORT" /engine.io
