#!/usr/bin/env bash
# Runs corestream on the embedded default (a single node, no Redis): deepstream's defaults,
# TCP on 0.0.0.0:6021, open auth, every online core. Extra arguments go to `corestream start`
# (for example: scripts/run.sh --config conf/config.yml --cores 2).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-tools.sh
cargo build --release --bin corestream
exec target/release/corestream start "$@"
