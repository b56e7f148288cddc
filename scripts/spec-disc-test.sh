#!/usr/bin/env bash
# LAN discovery and peer exchange with the peer written from docs/PROTOCOL.md alone
# (tests/spec_peer/discpeer.py, disctest.py): in three network namespaces on one bridge, the
# spec peer and real tailchats find each other by announcements alone, in both directions and
# whichever has the lower PeerId, chat both ways, and meet through each other's Peers items
# when their announcements cannot reach (an nftables rule inside a namespace drops them).
# Everything stays inside the namespaces this script makes; they are removed on exit.
#
# Usage (root): scripts/spec-disc-test.sh [TAILCHAT_BINARY]   (default target/debug/tailchat)
# Needs iproute2, nftables, python3 with blake3 and cryptography (installed here if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(readlink -f "${1:-target/debug/tailchat}")
[ -x "$BIN" ] || { echo "no tailchat at $BIN: cargo build first" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)" >&2; exit 2; }
command -v nft >/dev/null || { echo "needs nft (apt-get install nftables)" >&2; exit 2; }
if ! python3 -c 'import blake3, cryptography' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check blake3 cryptography
fi
P="sd$$-"
WORK=$(mktemp -d)
cleanup() {
  for n in 1 2 3 br; do ip netns del "$P$n" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
ip netns add "${P}br"
ip -n "${P}br" link add br0 type bridge
ip -n "${P}br" link set br0 type bridge mcast_snooping 0
ip -n "${P}br" link set br0 up
for i in 1 2 3; do
  ip netns add "$P$i"
  ip link add "v$i" netns "$P$i" type veth peer name "b$i" netns "${P}br"
  ip -n "${P}br" link set "b$i" master br0
  ip -n "${P}br" link set "b$i" up
  ip -n "$P$i" link set lo up
  ip -n "$P$i" addr add "10.66.0.$i/24" dev "v$i"
  ip -n "$P$i" link set "v$i" up
done
# Until the IPv6 link-local addresses are no longer tentative (they carry one copy of each
# announcement): polled, at most 5 s.
for _ in $(seq 50); do
  busy=0
  for i in 1 2 3; do
    if ip -n "$P$i" -6 addr show dev "v$i" | grep -q tentative; then busy=1; fi
  done
  [ "$busy" = 0 ] && break
  sleep 0.1
done
if TAILCHAT="$BIN" SPEC_NS_PREFIX="$P" SPEC_RUN_DIR="$WORK/run" timeout 600 \
    python3 tests/spec_peer/disctest.py >"$WORK/log" 2>&1; then
  grep -c '^CHECK .* PASS' "$WORK/log" | sed 's/$/ discovery checks passed/; s/^/spec peer: /'
  echo "spec peer discovery: passed"
else
  echo "spec peer discovery: FAILED; its output:" >&2
  cat "$WORK/log" >&2
  exit 1
fi
