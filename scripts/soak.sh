#!/usr/bin/env bash
# The soak run: two corestream nodes and a real redis-server under mixed real-client load
# (events over TCP, WebSocket and engine.io; records with acknowledged writes and raw version
# observers; RPC; presence; churn; slow readers), one node SIGKILLed and restarted every
# KILL_EVERY seconds. At the end: no acknowledged write lost, versions gapless on every node,
# the RSS slope of every node process, no panic in the logs (tests/node/soak/soak.js).
#
#   scripts/soak.sh [SECONDS] [KILL_EVERY]     # defaults: 1800 s, a kill every 45 s
#
# Not part of CI as a whole; the test command runs a 60-second version.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
SECONDS_TO_RUN=${1:-1800}
KILL_EVERY=${2:-45}
ensure_npm tests/node deepstream.io-client-js deepstream.io-client-js-2
command -v redis-server >/dev/null || { echo "redis-server is not installed" >&2; exit 2; }
BIN=${CORESTREAM_BIN:-target/release/corestream}
[ -x "$BIN" ] || cargo build --release --bin corestream
exec node tests/node/soak/soak.js --seconds "$SECONDS_TO_RUN" --kill-every "$KILL_EVERY" --bin "$BIN"
