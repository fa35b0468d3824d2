#!/usr/bin/env bash
# Checks the systemd units in deploy/: `systemd-analyze verify` on a copy whose ExecStart names
# the built binary, or the validator script in this repository (the only change), so an unknown
# directive, a bad value or a typo fails; and that the validator takes its unit's options.
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
# verify FILE LABEL: systemd-analyze verify, quiet unless it finds something
verify() {
  local output problems
  output=$(systemd-analyze verify "$1" 2>&1 || true)
  # A machine without systemd as PID 1 has no unit search path: that line is not about the unit.
  problems=$(printf '%s\n' "$output" | grep -v '^$' | grep -v 'Failed to .* unit search path\|systemd is not running' || true)
  if [ -n "$problems" ]; then
    printf '%s:\n%s\n' "$2" "$problems" >&2
    exit 1
  fi
  echo "$2: systemd-analyze verify found nothing"
}
verify "$WORK/corestream.service" deploy/corestream.service

# the SPNEGO validator's unit: its ExecStart names python3 and the script where the unit's
# header installs it; checked against the script in the repository
sed "s|/usr/local/share/corestream/corestream-spnego.py|$PWD/nginx/corestream-spnego.py|" \
  deploy/corestream-spnego.service >"$WORK/corestream-spnego.service"
grep -q "^ExecStart=/usr/bin/python3 $PWD/nginx/corestream-spnego.py " "$WORK/corestream-spnego.service" ||
  { echo "deploy/corestream-spnego.service: ExecStart does not run the validator" >&2; exit 1; }
verify "$WORK/corestream-spnego.service" deploy/corestream-spnego.service
# and the options it passes are ones the validator takes
args=$(sed -n 's|^ExecStart=/usr/bin/python3 [^ ]* ||p' deploy/corestream-spnego.service)
# shellcheck disable=SC2086
/usr/bin/python3 - $args <<'PY' || { echo "deploy/corestream-spnego.service: the validator refuses its options" >&2; exit 1; }
import importlib.util, sys
spec = importlib.util.spec_from_file_location("validator", "nginx/corestream-spnego.py")
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
module.parse_arguments(sys.argv[1:])
PY
