#!/usr/bin/env bash
# How fast a LAN meshes: N hosts (default 30) on one bridged LAN of network namespaces, all
# started together with default flags (discovery on); measures the time until every host has
# seen every other join. Needs root. Traffic stays inside the namespaces it creates, and all of
# them are removed on exit, pass or fail.
#
# Usage: scripts/netns-mesh.sh [N] [LIMIT_SECONDS] [path/to/tailchat]
#   exits 0 when the full mesh is reached within LIMIT_SECONDS (default 10), 1 otherwise.
#   FLOOD=RATE: a forger (examples/forger.rs; FORGER=path, default target/debug/examples/forger)
#   on the same LAN, from 16 addresses, sends RATE forged datagrams a second (hellos, cookies,
#   proofs, peer lists from made-up identities, announcements to the broadcast address) plus
#   FAKES (default 16) fakes that answer, prove made-up keys and send peer lists of made-up
#   addresses, from before the hosts start until the mesh is checked; then every host must
#   still list every other as online (nobody evicted), and nobody may have been told a real
#   peer left or stopped answering.
#   scripts/bench-office.py measures 10, 100 and 250 hosts with the release build.
#
# The kernel's neighbour tables (ARP, ND) are shared by every namespace, and their limits
# (net.ipv{4,6}.neigh.default.gc_thresh*) are global: 1024 entries by default, while N hosts
# that all talk to each other need about 2·N² (past ~35 hosts the kernel logged "neighbor table
# overflow" and new hosts could not be reached at all). They are raised for the run, when lower,
# and put back on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-30}
LIMIT=${2:-10}
BIN=$(readlink -f "${3:-target/debug/tailchat}")
[ -x "$BIN" ] || { echo "no binary at $BIN: run cargo build first" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)" >&2; exit 2; }
command -v ip >/dev/null || { echo "needs iproute2 (apt-get install iproute2)" >&2; exit 2; }

P="tm$$"
WORK=$(mktemp -d)
PIDS=()
NEIGH_SAVED=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  for i in $(seq 0 "$N") f; do ip netns del "$P-$i" 2>/dev/null || true; done
  for kv in "${NEIGH_SAVED[@]}"; do sysctl -qw "$kv" || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

need=$((4 * N * N + 4096))
for v in 4 6; do
  for k in 2 3; do
    key="net.ipv$v.neigh.default.gc_thresh$k"
    old=$(sysctl -n "$key")
    if [ "$old" -lt "$need" ]; then
      NEIGH_SAVED+=("$key=$old")
      sysctl -qw "$key=$need"
    fi
  done
done

# The switch: namespace 0 holds the bridge.
ip netns add "$P-0"
ip -n "$P-0" link set lo up
ip -n "$P-0" link add br0 type bridge
ip -n "$P-0" link set br0 up
for i in $(seq 1 "$N"); do
  ns="$P-$i"
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
  ip link add name eth0 netns "$ns" type veth peer name "h$i" netns "$P-0"
  ip -n "$P-0" link set "h$i" master br0 up
  ip -n "$ns" addr add "10.80.$((i / 250)).$((i % 250 + 1))/16" brd + dev eth0
  ip -n "$ns" link set eth0 up
done

FLOOD=${FLOOD:-}
FORGER_PID=
if [ -n "$FLOOD" ]; then
  FORGER=$(readlink -f "${FORGER:-target/debug/examples/forger}")
  [ -x "$FORGER" ] || { echo "no forger at $FORGER: cargo build --example forger" >&2; exit 2; }
  ip netns add "$P-f"
  ip -n "$P-f" link set lo up
  ip link add name eth0 netns "$P-f" type veth peer name f0 netns "$P-0"
  ip -n "$P-0" link set f0 master br0 up
  from=()
  for k in $(seq 1 16); do
    ip -n "$P-f" addr add "10.80.200.$k/16" brd + dev eth0
    from+=("10.80.200.$k")
  done
  ip -n "$P-f" link set eth0 up
  targets=()
  for i in $(seq 1 "$N"); do targets+=("10.80.$((i / 250)).$((i % 250 + 1))"); done
  ip netns exec "$P-f" "$FORGER" --from "$(IFS=,; echo "${from[*]}")" \
    --targets "$(IFS=,; echo "${targets[*]}")" --broadcast 10.80.255.255 \
    --rate "$FLOOD" --answer "${FAKES:-16}" --secs $((LIMIT + 10)) >"$WORK/forger.out" 2>&1 &
  FORGER_PID=$!
  PIDS+=("$FORGER_PID")
  disown "$FORGER_PID"
fi

start_ms=$(date +%s%3N)
for i in $(seq 1 "$N"); do
  mkfifo "$WORK/h$i.in"
  ip netns exec "$P-$i" env -i PATH="$PATH" HOME="$WORK/h$i.home" NO_COLOR=1 \
    "$BIN" --nick "h$i" <"$WORK/h$i.in" >"$WORK/h$i.out" 2>"$WORK/h$i.err" &
  PIDS+=($!)
  disown "$!"  # no "Killed" job notices at cleanup
  exec {fd}>"$WORK/h$i.in"  # keeps its standard input open: no end of input, no /quit
  eval "fd_$i=$fd"
done

joined() {  # joined I: how many distinct peers host I has seen join
  { grep -o ' h[0-9]* joined' "$WORK/h$1.out" 2>/dev/null || true; } | sort -u | wc -l
}

want=$((N - 1))
deadline=$(( $(date +%s%3N) + LIMIT * 1000 ))
fewest=0
while :; do
  fewest=$want
  for i in $(seq 1 "$N"); do
    k=$(joined "$i")
    [ "$k" -lt "$fewest" ] && fewest=$k
  done
  [ "$fewest" -ge "$want" ] && break
  [ "$(date +%s%3N)" -ge "$deadline" ] && break
  sleep 0.1  # polling the hosts' output for joins, bounded by the deadline
done
elapsed=$(( $(date +%s%3N) - start_ms ))

online() {  # online I: how many other hosts host I's /peers lists as online
  { grep -oE '^[0-9:]+ +h[0-9]+ +online' "$WORK/h$1.out" 2>/dev/null || true; } |
    awk '{print $2}' | sort -u | wc -l
}

if [ "$fewest" -ge "$want" ] && [ -n "$FLOOD" ]; then
  # Under the flood still: every host lists every other as online, and none was told a real
  # peer left or stopped answering.
  for i in $(seq 1 "$N"); do
    eval "printf '/peers\n' >&\$fd_$i"
  done
  deadline=$(( $(date +%s%3N) + 5000 ))
  while :; do
    short=0
    for i in $(seq 1 "$N"); do [ "$(online "$i")" -lt "$want" ] && short=$((short + 1)); done
    [ "$short" = 0 ] && break
    [ "$(date +%s%3N)" -ge "$deadline" ] && break
    sleep 0.1  # polling the hosts' /peers output, bounded by the deadline
  done
  # A peer that stops answering is told after 2 s, gathered with others: wait that out, then
  # count the lines naming a real host (h1…hN, anywhere in a gathered line; fakes are ghost#…).
  sleep 3
  gone=$(cat "$WORK"/h*.out | grep -E -- '-!- .*(left|not answering)' | grep -cE '(^|[ ,])h[0-9]+([ ,]|$)' || true)
  tail -1 "$WORK/forger.out" 2>/dev/null || true
  if [ "$short" != 0 ] || [ "$gone" != 0 ]; then
    echo "under the flood: $short hosts do not list every other as online; $gone lines of a real peer gone"
    for i in $(seq 1 "$N"); do
      [ "$(online "$i")" -lt "$want" ] && { echo "---- h$i: $(online "$i") online"; tail -5 "$WORK/h$i.out"; }
    done | head -40
    echo "mesh: 0 passed, 1 failed"
    exit 1
  fi
  echo "mesh of $N hosts complete in $elapsed ms under a flood of $FLOOD forged datagrams/s and ${FAKES:-16} answering fakes (limit ${LIMIT} s); every host lists every other as online"
  echo "mesh: 1 passed, 0 failed"
  exit 0
fi
if [ "$fewest" -ge "$want" ]; then
  echo "mesh of $N hosts complete in $elapsed ms (limit ${LIMIT} s)"
  echo "mesh: 1 passed, 0 failed"
  exit 0
fi
echo "mesh of $N hosts NOT complete after $elapsed ms: the fewest peers known is $fewest of $want"
for i in $(seq 1 "$N"); do
  [ "$(joined "$i")" -lt "$want" ] && { echo "---- h$i: $(joined "$i") joined"; tail -5 "$WORK/h$i.out"; tail -3 "$WORK/h$i.err"; }
done | head -60
echo "mesh: 0 passed, 1 failed"
exit 1
