#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for SECONDS each (default 15), on the stable toolchain with
# RUSTC_BOOTSTRAP=1. Installs cargo-fuzz when missing. Fails if any target finds a crash.
#   scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-15}
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
targets=$(cd fuzz && cargo fuzz list)
for target in $targets; do
  mkdir -p "fuzz/corpus/$target"
  # committed seeds (fuzz/seeds/<target>, when there are any) start the search from real inputs
  seeds=()
  [ -d "fuzz/seeds/$target" ] && seeds=("fuzz/seeds/$target")
  echo "== fuzz $target for ${seconds}s"
  cargo fuzz run "$target" "fuzz/corpus/$target" "${seeds[@]}" -- -max_total_time="$seconds" -rss_limit_mb=2048 2>&1 \
    | grep -E "^#[0-9]+.*(DONE|pulse)|Done|ERROR|SUMMARY|panicked|deadly" | tail -3
  # cargo fuzz exits non-zero on a crash; pipefail carries it here.
done
echo "== fuzzing: every target ran ${seconds}s without a crash"
