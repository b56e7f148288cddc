#!/usr/bin/env bash
# Fuzz the wire decoder, the endpoint and the file-transfer decoders with cargo-fuzz (needs the nightly toolchain and
# `cargo install cargo-fuzz`). CI does not run this; it runs the proptests in tests/sim_hostile.rs.
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
for target in decode endpoint transfer; do
  echo "== fuzzing $target for ${secs}s"
  cargo +nightly fuzz run --fuzz-dir tests/fuzz "$target" -- -max_total_time="$secs"
done
