#!/usr/bin/env bash
# An implementation of the protocol written from docs/PROTOCOL.md alone, in Python, by someone
# who did not read the code (tests/spec_peer/): its encoder must give every test vector in the
# spec, and on loopback it must chat with tailchat both ways and send it, and receive from it,
# a file and a folder byte-exact. It keeps the spec honest: what it needs and the spec does not
# say shows up here. Loopback only (--no-discovery), free ports. Needs python3 with pip.
#
# Usage: scripts/spec-peer-test.sh [TAILCHAT_BINARY]   (default target/debug/tailchat)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(readlink -f "${1:-target/debug/tailchat}")
[ -x "$BIN" ] || { echo "no tailchat at $BIN: cargo build first" >&2; exit 2; }
if ! python3 -c 'import blake3, cryptography' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check blake3 cryptography
fi
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
status=0
for step in test_vectors.py run_test.py; do
  if TAILCHAT_BIN="$BIN" timeout 300 python3 "tests/spec_peer/$step" >"$LOG" 2>&1; then
    tail -n 1 "$LOG"
  else
    echo "spec peer: $step failed; its output:" >&2
    cat "$LOG" >&2
    status=1
  fi
done
[ "$status" = 0 ] && echo "spec peer: passed" || echo "spec peer: FAILED"
exit "$status"
