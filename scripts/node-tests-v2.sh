#!/usr/bin/env bash
# Runs the node test suite for the 2.x protocol (tests/node/v2: the real
# deepstream.io-client-js 2.3.4 over a websocket at ws://host:port/deepstream, plus raw
# websocket clients) against two freshly started servers: one with open auth, one with file auth.
#
#   scripts/node-tests-v2.sh deepstream   # the reference: real deepstream.io 2.4.1 on Node 8
#                                         # (tests/node/node_modules/node-8/bin/node)
#   scripts/node-tests-v2.sh corestream   # ${CORESTREAM_BIN:-target/release/corestream} --cores 2
#   scripts/node-tests-v2.sh deepstream tests/node/v2/rpc.test.js   # only some test files
#
# This is `scripts/node-tests.sh --v2` (see there). Exits with the status of `node --test`.
set -euo pipefail
exec bash "$(dirname "$0")/node-tests.sh" --v2 "$@"
