#!/usr/bin/env bash
# File transfer, measured (docs/BENCHMARKS.md, "File transfer"): the release build sends a
# large file from alice to bob, against a plain TCP copy of the same file with socat between
# the same two endpoints, with chat messages timed while it runs and while idle, and the CPU
# each side spends; on loopback and through a 20 Mbit/s link. scripts/bench-files.py runs each
# scenario; this script builds, makes the namespaces and a tmpfs for the files, and prints the
# tables.
#
# Everything runs in network namespaces it creates (loopback inside one; two joined by a veth
# pair shaped with tbf), with --no-discovery: nothing reaches the machine's interfaces. All of
# it is removed on exit, pass or fail. Needs root, iproute2 (ip, tc, ss), socat, python3 >= 3.9.
# Not run in CI.
#
# Usage: [NICE=N] [ONLY=loopback|link|fast|twoway] [PLAIN_CC=bbr,cubic] [TAILCHAT_BIN=PATH] scripts/bench-files.sh [RUNS] [LOOPBACK_BYTES] [LINK_BYTES]
#   defaults: 5 runs of each copy, 1 GiB on loopback, 100 MB through the link, both. ONLY=fast
#   runs only a third scenario: the veth pair unshaped, with the loopback file.
#   ONLY=twoway runs only a fourth: transfers both ways at once through the 20 Mbit/s link
#   (bob→alice alone, alice→bob alone, two alice→bob with one bob→alice, one each way), each
#   file TWOWAY_BYTES (default 30000000), against socat copies of the same shapes; the timed
#   messages go both ways. A transfer's ACKs then wait in the other direction's queue, which
#   a sender that watches its RTT can take for a queue of its own.
#   TWOWAY_REVERSE_DELAY (seconds, default 0): in ONLY=twoway's shapes with several
#   transfers, the bob→alice one starts this long after the others.
#   TAILCHAT_BIN: the tailchat measured (nothing is built), e.g. to compare another build
#   against this tree's; without it the release build of this tree (in CARGO_TARGET_DIR if
#   set).
#   NICE (default 0) is the niceness of every program measured, tailchat and socat alike: on a
#   machine shared with other work, NICE=-10 lets them have the cores, which is closer to
#   what an idle machine would show.
#   PLAIN_CC: the congestion controllers of the plain copies, comma-separated.
#   SOCAT_BUFFER (default 1048576): socat's -b, the size of its reads and writes (socat's own
#   default is 8192).
#   Variables named TAILCHAT_* reach the tailchats measured (test and experiment knobs).
#   Raw results (JSON) and the tables are kept in target/bench-files/ (CARGO_TARGET_DIR's
#   bench-files/ if set).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
LOOP_BYTES=${2:-1073741824}
LINK_BYTES=${3:-100000000}
NICE=${NICE:-0}
ONLY=${ONLY:-}
PLAIN_CC=${PLAIN_CC:-bbr,cubic}
TWOWAY_BYTES=${TWOWAY_BYTES:-30000000}
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces, tmpfs)" >&2; exit 2; }
for tool in ip tc ss socat python3 cmp nsenter; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install iproute2 socat python3)" >&2; exit 2; }
done

TARGET=${CARGO_TARGET_DIR:-target}
if [ -n "${TAILCHAT_BIN:-}" ]; then
  BIN=$(readlink -f "$TAILCHAT_BIN")
  [ -x "$BIN" ] || { echo "TAILCHAT_BIN=$TAILCHAT_BIN is not an executable" >&2; exit 2; }
else
  echo "== release build" >&2
  cargo build --release --locked --bin tailchat >&2
  BIN=$(readlink -f "$TARGET/release/tailchat")
fi
echo "== measuring $BIN" >&2
mkdir -p "$TARGET"
OUT=$(readlink -f "$TARGET")/bench-files
mkdir -p "$OUT"
STAMP=$(date -u +%Y-%m-%dT%H%M%SZ)

P="bf$$"
WORK=$(mktemp -d)
NAMESPACES=()
cleanup() {
  umount "$WORK/fs" 2>/dev/null || true
  for ns in "${NAMESPACES[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

ns() {  # a namespace with loopback up, BBR its default (as the system's here)
  ip netns add "$P$1"
  NAMESPACES+=("$P$1")
  ip -n "$P$1" link set lo up
  ip netns exec "$P$1" sysctl -qw net.ipv4.tcp_congestion_control=bbr
}

pair() {  # pair A B NET: namespaces A and B joined by a veth pair, NET.1 and NET.2 on it
  ns "$1"
  ns "$2"
  ip link add eth0 netns "$P$1" type veth peer name eth0 netns "$P$2"
  ip -n "$P$1" addr add "$3.1/24" dev eth0
  ip -n "$P$2" addr add "$3.2/24" dev eth0
  ip -n "$P$1" link set eth0 up
  ip -n "$P$2" link set eth0 up
}

# The files live in memory, so a disk's speed (and its writeback of earlier runs) is not
# measured: source, received copy, and each side's data directory.
# ONLY=twoway needs only its three files (and their copies), not the loopback one.
mkdir "$WORK/fs"
if [ "$ONLY" = twoway ]; then
  mount -t tmpfs -o "size=$(( TWOWAY_BYTES * 6 + (256 << 20) ))" bench-files "$WORK/fs"
  echo "== making the files (random bytes)" >&2
  # Three files apart (names tell the transfers apart in the chats' lines).
  for f in fwd1 fwd2 rev; do head -c "$TWOWAY_BYTES" /dev/urandom >"$WORK/fs/$f.bin"; done
else
mount -t tmpfs -o "size=$(( LOOP_BYTES * 2 + (256 << 20) ))" bench-files "$WORK/fs"
echo "== making the files (random bytes)" >&2
head -c "$LOOP_BYTES" /dev/urandom >"$WORK/fs/big.bin"
head -c "$LINK_BYTES" "$WORK/fs/big.bin" >"$WORK/fs/link.bin"
fi

echo "== machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), kernel $(uname -r), $(date -u +%F)" >&2

RESULTS=()
# measure NAME LABEL NS_A NS_B ADDR_A ADDR_B FILE INTERVAL_MS IDLE_S: one scenario's copies,
# its JSON kept as $OUT/$STAMP-NAME.json. FILE may be "--twoway FWD1 FWD2 REV" (split).
measure() {
  local file=(--file "$7")
  [[ "$7" == --twoway* ]] && read -ra file <<<"$7"
  python3 scripts/bench-files.py --label "$2" --nice "$NICE" --bin "$BIN" \
    --ns-a "$P$3" --ns-b "$P$4" --addr-a "$5" --addr-b "$6" \
    "${file[@]}" --dl "$WORK/fs/dl-$1" --work "$WORK/fs/home-$1" \
    --runs "$RUNS" --interval-ms "$8" --idle-seconds "$9" --plain-cc "$PLAIN_CC" ${QUIET:-} \
    --socat-buffer "${SOCAT_BUFFER:-1048576}" \
    >"$OUT/$STAMP-$1.json"
  RESULTS+=("$OUT/$STAMP-$1.json")
}

# 1. Loopback: both programs in one namespace, on 127.0.0.1. The two cores are the limit here,
# so every copy is made twice: with the chat quiet (its time and CPU) and with the timed
# messages (the chat's latency), which take a share of the same cores.
if [ -z "$ONLY" ] || [ "$ONLY" = loopback ]; then
ns lo
QUIET=--quiet-copies measure loopback "loopback" lo lo 127.0.0.1 127.0.0.1 "$WORK/fs/big.bin" 5 5
fi

# 2. A 20 Mbit/s link: a veth pair between two namespaces, each side's egress through a token
# bucket with a 200 ms queue (netem is not available here, so there is no added delay: the
# only queue is the bucket's).
if [ -z "$ONLY" ] || [ "$ONLY" = link ]; then
pair a b 10.77.0
for side in a b; do
  ip netns exec "$P$side" tc qdisc add dev eth0 root tbf rate 20mbit burst 32kbit latency 200ms
done
measure link "20 Mbit/s link (tbf)" a b 10.77.0.1 10.77.0.2 "$WORK/fs/link.bin" 20 10
fi

# 3. Only with ONLY=fast: the same two namespaces' veth pair unshaped, with the loopback file:
# a path as fast as the CPUs allow that is not loopback, so the sender's pacing runs on it
# (it leaves loopback alone) and must not slow it.
if [ "$ONLY" = fast ]; then
pair fa fb 10.78.0
QUIET=--quiet-copies measure fast "veth pair, unshaped" fa fb 10.78.0.1 10.78.0.2 "$WORK/fs/big.bin" 5 5
fi

# 4. Only with ONLY=twoway: the 20 Mbit/s link as in 2, transfers both ways at once. Each
# side's bucket holds its own data and the ACKs of the other side's: a transfer that watches
# its RTT (the pacer) sees the other direction's queue in it. socat with BBR alone does the
# same shapes, for what the kernel does by itself.
if [ "$ONLY" = twoway ]; then
pair ta tb 10.79.0
for side in ta tb; do
  ip netns exec "$P$side" tc qdisc add dev eth0 root tbf rate 20mbit burst 32kbit latency 200ms
done
measure twoway "20 Mbit/s link (tbf)" ta tb 10.79.0.1 10.79.0.2 \
  "--twoway $WORK/fs/fwd1.bin $WORK/fs/fwd2.bin $WORK/fs/rev.bin" 20 10
fi

python3 scripts/bench-files.py table "${RESULTS[@]}" | tee "$OUT/$STAMP.md"
