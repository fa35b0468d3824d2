#!/usr/bin/env bash
# Checks the systemd unit in deploy/: `systemd-analyze verify` on a copy whose ExecStart names
# the built binary (the only change), so an unknown directive, a bad value or a typo fails.
#
#   scripts/deploy-check.sh        # ${CORESTREAM_BIN:-target/release/corestream}
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
require_corestream

make_work corestream-deploy-check
sed "s|/usr/local/bin/corestream|$BIN|" deploy/corestream.service >"$WORK/corestream.service"
if ! grep -q "^ExecStart=$BIN start --config " "$WORK/corestream.service"; then
  echo "deploy/corestream.service: ExecStart is not '/usr/local/bin/corestream start --config ...'" >&2
  exit 1
fi
output=$(systemd-analyze verify "$WORK/corestream.service" 2>&1 || true)
# A machine without systemd as PID 1 has no unit search path: that line is not about the unit.
problems=$(printf '%s\n' "$output" | grep -v '^$' | grep -v 'Failed to .* unit search path\|systemd is not running' || true)
if [ -n "$problems" ]; then
  printf 'deploy/corestream.service:\n%s\n' "$problems" >&2
  exit 1
fi
echo "deploy/corestream.service: systemd-analyze verify found nothing"
