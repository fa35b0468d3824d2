#!/usr/bin/env bash
# Runs every test of corestream: unit tests, the black-box tests over real sockets against
# the real binary, and the real deepstream.io-client-js 1.1.1 (npm) test suite twice: against
# the real deepstream.io 1.1.1 server (the reference) and against corestream on two cores.
# Installs what the tests need when missing (see scripts/ensure-tools.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-tools.sh

started=$(date +%s)
if [ ! -d tests/node/node_modules ]; then
  (cd tests/node && npm install --no-audit --no-fund --loglevel=error)
fi

echo "== cargo test (unit tests and black-box tests over real sockets)"
cargo test --release

echo "== deepstream.io-client-js 1.1.1 against the reference server deepstream.io 1.1.1"
bash scripts/node-tests.sh deepstream

echo "== deepstream.io-client-js 1.1.1 against corestream (2 cores)"
cargo build --release --bin corestream
bash scripts/node-tests.sh corestream

echo "== all tests passed in $(( $(date +%s) - started )) s"
