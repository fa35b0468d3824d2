#!/usr/bin/env bash
# Runs every test of corestream: the structure check of src/ (scripts/check-structure.py), unit
# tests, the black-box tests over real sockets against
# the real binary, the real deepstream.io-client-js 1.1.1 (TCP) and 2.3.4 (WebSocket) suites
# from npm, each twice: against the real deepstream.io server of that version (the reference:
# 1.1.1 on Node 20, 2.4.1 on Node 8 from npm) and against corestream on two cores; the cluster
# tests with a real redis-server; the tests behind a real nginx; Kerberos at nginx with a real
# KDC (MIT Kerberos) and the SPNEGO validator; the permission scenarios against deepstream
# 1.1.1, 2.4.1 and corestream; a 45-second soak run; the WebSocket and
# engine.io conformance suites; and a short run of every fuzz target.
# Installs what the tests need when missing (see scripts/ensure-tools.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-tools.sh
source scripts/lib.sh

started=$(date +%s)
ensure_npm tests/node deepstream.io deepstream.io-client-js deepstream.io-client-js-2 deepstream.io-2 node-8/bin/node

echo "== the shape of src/: no import cycle, layers import downward only, no function over 120 lines"
python3 scripts/check-structure.py

echo "== cargo test (unit tests and black-box tests over real sockets)"
cargo test --release

echo "== the systemd unit in deploy/ (systemd-analyze verify)"
cargo build --release --bin corestream
bash scripts/deploy-check.sh

echo "== deepstream.io-client-js 1.1.1 against the reference server deepstream.io 1.1.1"
bash scripts/node-tests.sh deepstream

echo "== deepstream.io-client-js 1.1.1 against corestream (2 cores)"
cargo build --release --bin corestream
bash scripts/node-tests.sh corestream

echo "== deepstream.io-client-js 2.3.4 against the reference server deepstream.io 2.4.1"
bash scripts/node-tests-v2.sh deepstream

echo "== deepstream.io-client-js 2.3.4 against corestream (2 cores)"
bash scripts/node-tests-v2.sh corestream

echo "== permission rules (Valve): the scenarios against deepstream.io 1.1.1, 2.4.1 and corestream"
bash scripts/permission-tests.sh deepstream
bash scripts/permission-tests.sh deepstream2
bash scripts/permission-tests.sh corestream

echo "== deepstream.io-client-js 1.1.1 and 2.3.4 across three corestream nodes through a real Redis"
bash scripts/cluster-tests.sh

echo "== real nginx in front of corestream nodes (nginx/ configs, PROXY protocol, proxy auth)"
bash scripts/nginx-tests.sh

echo "== Kerberos at nginx: a throwaway KDC, the SPNEGO validator, nginx with TLS, the real clients"
bash scripts/kerberos-tests.sh

echo "== soak: 45 s of mixed real-client load on two nodes and Redis, one node killed and restarted"
bash scripts/soak.sh 45 15

echo "== Autobahn WebSocket cases 1-10 against corestream's echo endpoint"
bash scripts/conformance/autobahn-corestream.sh

echo "== engine.io-client@3 conformance tests against corestream's engine.io echo endpoint"
bash scripts/conformance/eio3-client-corestream.sh

echo "== fuzzing every parser briefly"
bash scripts/fuzz.sh "${FUZZ_SECONDS:-6}"

echo "== all tests passed in $(( $(date +%s) - started )) s"
