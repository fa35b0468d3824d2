#!/usr/bin/env bash
# Runs the Autobahn WebSocket test cases 1-10 (every subcase: 1.*, 2.*, 3.*, 4.*,
# 5.*, 6.*, 7.*, 9.*, 10.*; Autobahn has no category 8; 12.*/13.* are
# permessage-deflate and are not run) against a WebSocket echo endpoint, with
# kosoku from PyPI (a Rust runner that drives Autobahn's own case files).
#
#   scripts/conformance/autobahn.sh URL [REPORT_DIR]
#
#   URL         ws://HOST:PORT/PATH of an echo endpoint, e.g. ws://127.0.0.1:6020/echo,
#               or `reference`: the npm `ws` reference echo server
#               (tests/conformance/ws-echo-server.js) on a free loopback port
#   REPORT_DIR  where the Autobahn-format report goes (index.html, index.json and
#               one .json/.html per case); default target/conformance/autobahn
#
# Environment (all optional):
#   AUTOBAHN_CASES        space-separated case ids or globs to run
#                         (default "1.* 2.* 3.* 4.* 5.* 6.* 7.* 9.* 10.*", 301 cases)
#   AUTOBAHN_EXCLUDE      space-separated case ids or globs to leave out, e.g. "9.*"
#   AUTOBAHN_PARALLELISM  cases run at once (default 1)
#   AUTOBAHN_TIMEOUT      seconds before the whole run is killed (default 600)
#
# kosoku 0.1.0 is installed into scripts/conformance/.venv (git-ignored) when
# missing. Prints one summary line
#   autobahn: OK=n NON-STRICT=n INFORMATIONAL=n UNIMPLEMENTED=n FAILED=n (cases=n, s)
# and exits 1 if any case FAILED (a FAILED or ERROR verdict for the messages, or a
# failed closing handshake), 2 on a usage or setup error.
set -euo pipefail

KOSOKU_VERSION=0.1.0

usage() {
  echo "usage: $0 ws://HOST:PORT/PATH [REPORT_DIR]" >&2
  exit 2
}

URL=${1:-}
case "$URL" in
  reference | ws://* | wss://*) ;;
  *) usage ;;
esac

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
source "$ROOT/scripts/lib.sh"
REPORT_DIR=${2:-$ROOT/target/conformance/autobahn}
VENV=$HERE/.venv

if [ ! -x "$VENV/bin/kosoku" ] ||
  [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("kosoku"))' 2>/dev/null)" != "$KOSOKU_VERSION" ]; then
  echo "installing kosoku $KOSOKU_VERSION into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "kosoku==$KOSOKU_VERSION"
fi

read -r -a CASES <<<"${AUTOBAHN_CASES:-1.* 2.* 3.* 4.* 5.* 6.* 7.* 9.* 10.*}"
read -r -a EXCLUDE <<<"${AUTOBAHN_EXCLUDE:-}"
ARGS=()
for c in "${CASES[@]}"; do ARGS+=(-i "$c"); done
for c in "${EXCLUDE[@]}"; do ARGS+=(-x "$c"); done
EXPECTED=0
if [ -z "${AUTOBAHN_CASES:-}" ] && [ -z "${AUTOBAHN_EXCLUDE:-}" ]; then
  EXPECTED=301
fi

make_work autobahn
mkdir -p "$REPORT_DIR"
rm -f "$REPORT_DIR/index.json"

if [ "$URL" = reference ]; then
  CONF=$ROOT/tests/conformance
  ensure_npm "$CONF" ws
  start_server reference "the reference server" node "$CONF/ws-echo-server.js" 0 /echo
  wait_server reference 100 0.1 grep -q '^listening' "$WORK/reference.out" || exit 2
  URL=$(awk '/^listening/ { print $2; exit }' "$WORK/reference.out")
  echo "autobahn: reference server ws@$(node -p "require('$CONF/node_modules/ws/package.json').version") at $URL" >&2
fi

echo "autobahn: running ${CASES[*]}${EXCLUDE:+ minus ${EXCLUDE[*]}} against $URL" >&2
START=$(date +%s.%N)
set +e
# kosoku exits 1 when any case did not pass; the verdicts are read from the report.
timeout --kill-after=10 "${AUTOBAHN_TIMEOUT:-600}" \
  "$VENV/bin/kosoku" "${ARGS[@]}" -p "${AUTOBAHN_PARALLELISM:-1}" -o "$REPORT_DIR" "$URL" \
  >"$REPORT_DIR/kosoku.log" 2>&1
RC=$?
set -e
END=$(date +%s.%N)

if [ "$RC" -eq 124 ] || [ "$RC" -eq 137 ]; then
  echo "autobahn: kosoku did not finish within ${AUTOBAHN_TIMEOUT:-600} s" >&2
fi
if [ ! -s "$REPORT_DIR/index.json" ]; then
  tail -n 30 "$REPORT_DIR/kosoku.log" >&2
  echo "autobahn: no report written (kosoku exit $RC); see $REPORT_DIR/kosoku.log" >&2
  exit 1
fi

"$VENV/bin/python" - "$REPORT_DIR" "$START" "$END" "$EXPECTED" <<'EOF'
import json, os, sys

report_dir, start, end, expected = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
with open(os.path.join(report_dir, "index.json")) as f:
    index = json.load(f)

# Close verdicts that mean the closing handshake went wrong (Autobahn's
# FAILED / FAILED BY CLIENT / WRONG CODE / UNCLEAN / NO_CLOSE).
CLOSE_OK = {"OK", "INFORMATIONAL"}
counts = {k: 0 for k in ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")}
failed = []
total = 0
for agent, cases in index.items():
    for case_id, r in cases.items():
        total += 1
        behavior, close = r["behavior"], r["behaviorClose"]
        if behavior in ("FAILED", "ERROR") or close not in CLOSE_OK:
            counts["FAILED"] += 1
            detail = ""
            try:
                with open(os.path.join(report_dir, r["reportfile"])) as f:
                    c = json.load(f)
                detail = (c.get("wasNotCleanReason") or c.get("resultClose") or c.get("result") or "")
            except (OSError, ValueError, KeyError):
                pass
            failed.append(f"  {case_id}: behavior={behavior} close={close} "
                          f"remoteCloseCode={r.get('remoteCloseCode')} {detail}".rstrip())
        else:
            counts[behavior] = counts.get(behavior, 0) + 1

def key(line):
    return [int(p) for p in line.split(":")[0].strip().split(".")]

failed.sort(key=key)
for line in failed[:40]:
    print(line)
if len(failed) > 40:
    print(f"  ... and {len(failed) - 40} more failed cases (see the report)")
missing = expected and total != expected
if missing:
    print(f"autobahn: expected {expected} cases, the report has {total}")
print("autobahn: " + " ".join(f"{k}={v}" for k, v in counts.items())
      + f" (cases={total}, {end - start:.1f} s, report {report_dir}/index.html)")
sys.exit(1 if counts["FAILED"] or missing or total == 0 else 0)
EOF
