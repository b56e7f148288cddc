#!/usr/bin/env bash
# Fuzz everything that reads hostile input, with cargo-fuzz (needs the nightly toolchain and
# `cargo install cargo-fuzz`): the wire decoder; an endpoint alone and one with a real peer on a
# virtual clock (the fuzzer as the network and as strangers); the file-transfer decoders; peers'
# names made safe for the disk and peers' text for the terminal; commands, addresses, the
# tailnet's status, the config file, the journal and the transfer records. CI does not run
# this; it runs the proptests in tests/sim_hostile.rs.
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
# config_load, journal_read and transfer_record write their inputs to a folder of their own
# in /dev/shm (one per process): removed at the end.
trap 'rm -rf /dev/shm/tailchat-fuzz-*' EXIT
for target in decode endpoint endpoint_pair transfer names_sanitize render_sanitize command_parse addr_parse \
    tailnet_status config_load journal_read transfer_record; do
  echo "== fuzzing $target for ${secs}s"
  cargo +nightly fuzz run --fuzz-dir tests/fuzz "$target" -- -max_total_time="$secs"
done
