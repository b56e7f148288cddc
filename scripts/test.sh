#!/usr/bin/env bash
# The whole test suite: `cargo test` (unit, simulator, spec vectors, binary tests on loopback,
# the real-terminal test), the peer written from the spec alone (loopback), then, in network
# namespaces (root only), the same peer's LAN discovery, and the LAN and tailnet tests.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --locked "$@"
cargo build --locked --bin tailchat
scripts/spec-peer-test.sh target/debug/tailchat
if [ "$(id -u)" = 0 ]; then
  cargo build --locked --bin tailchat --example forger
  scripts/spec-disc-test.sh target/debug/tailchat
  scripts/netns-lan-test.sh target/debug/tailchat
  scripts/netns-tailnet-test.sh target/debug/tailchat
  scripts/netns-mesh.sh 30 10 target/debug/tailchat
  FLOOD=20000 scripts/netns-mesh.sh 30 10 target/debug/tailchat
else
  echo "LAN and tailnet tests in network namespaces skipped: they need root (sudo scripts/netns-lan-test.sh, sudo scripts/netns-tailnet-test.sh)"
fi
