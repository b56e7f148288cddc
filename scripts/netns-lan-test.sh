#!/usr/bin/env bash
# A real LAN in network namespaces (needs root; CI runs it): the real binary with default flags
# (discovery on) on each host.
#   1. a bridged LAN of three hosts: they list each other within 2 s, a group message reaches
#      both others, /quit is noticed within 2 s, kill -9 within the documented 15 s (+ margin);
#   2. two subnets joined by a router, so broadcast and multicast do not cross: one /add across
#      makes the far side's other peer appear (peer exchange), messages flow both ways, a
#      one-shot script on one side reaches the other, and a file sent across the router
#      arrives byte-exact in the default download folder;
#   3. each way of announcing (broadcast, IPv4 and IPv6 multicast) works on its own, and a
#      link with only IPv6 link-local addresses is announced on;
#   4. a file transfer across a link cut for longer than a connection survives resumes when
#      the link is back, sending only what had not arrived.
# Everything it creates is removed on exit, pass or fail. Traffic stays inside the namespaces.
# Usage: scripts/netns-lan-test.sh [path/to/tailchat]   (default: target/debug/tailchat)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(readlink -f "${1:-target/debug/tailchat}")
[ -x "$BIN" ] || { echo "no binary at $BIN: run cargo build first" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)" >&2; exit 2; }
command -v ip >/dev/null || { echo "needs iproute2 (apt-get install iproute2)" >&2; exit 2; }

P="tc$$"                 # namespace prefix, unique per run
WORK=$(mktemp -d)
NAMESPACES=()
PIDS=()
passed=0
failed=0

cleanup() {
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  for ns in "${NAMESPACES[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

ns() {  # create a namespace with loopback up and IPv6 DAD off (addresses usable at once)
  ip netns add "$P$1"
  NAMESPACES+=("$P$1")
  ip -n "$P$1" link set lo up
  ip netns exec "$P$1" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
}

bridge() {  # bridge() NAME: a namespace holding one bridge, the "switch"
  ns "$1"
  ip -n "$P$1" link add br0 type bridge
  ip -n "$P$1" link set br0 up
}

host() {  # host NAME SWITCH ADDR/PREFIX [GATEWAY]: a host with one interface on a switch
  ns "$1"
  ip link add name eth0 netns "$P$1" type veth peer name "$1" netns "$P$2"
  ip -n "$P$2" link set "$1" master br0 up
  ip -n "$P$1" addr add "$3" brd + dev eth0
  ip -n "$P$1" link set eth0 up
  if [ $# -ge 4 ]; then ip -n "$P$1" route add default via "$4"; fi
}

start() {  # start NAME [ARGS…]: tailchat --nick NAME on host NAME, commands through a fifo
  local name=$1; shift
  mkfifo "$WORK/$name.in"
  # shellcheck disable=SC2086  # START_ENV: more VAR=VALUE words for this host, if any
  ip netns exec "$P$name" env -i PATH="$PATH" HOME="$WORK/$name.home" NO_COLOR=1 RUST_LOG=tailchat=debug \
    ${START_ENV:-} "$BIN" --nick "$name" "$@" <"$WORK/$name.in" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  PIDS+=($!)
  disown "$!"  # no "Killed" job notices from bash when a host is killed on purpose
  eval "exec {fd_$name}>\"$WORK/$name.in\""
}

pid_of() { echo "${PIDS[$1]}"; }

script_says() {  # script_says NAME LINE [NICK]: `echo LINE | tailchat --ephemeral` run once on
  # host NAME, as NICK (default NAME; its own home and output files)
  local nick=${3:-$1}
  printf '%s\n' "$2" | ip netns exec "$P$1" env -i PATH="$PATH" HOME="$WORK/$nick.home" NO_COLOR=1 \
    timeout 30 "$BIN" --nick "$nick" --ephemeral ${SCRIPT_ARGS:-} >"$WORK/$nick.out" 2>"$WORK/$nick.err"
}

say() {  # say NAME LINE: type a line on host NAME
  local fd
  eval "fd=\$fd_$1"
  printf '%s\n' "$2" >&"$fd"
}

wait_for() {  # wait_for NAME PATTERN SECONDS: until NAME's output has a line matching PATTERN
  local deadline=$((SECONDS + $3))
  local start_ms
  start_ms=$(date +%s%3N)
  while ! grep -q -- "$2" "$WORK/$1.out" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "    timed out after $3 s waiting for '$2' on $1"
      return 1
    fi
    sleep 0.05  # polling a log file for an expected line, bounded by the deadline
  done
  echo "    $1 saw '$2' after $(( $(date +%s%3N) - start_ms )) ms"
}

peers_say_announced() {  # h1's /peers lists a peer as found by its LAN announcements
  # Of two peers that hear each other only the lower PeerId makes contact; the other lists it
  # as "incoming" until one of its announcements comes from the address it proved (the start
  # burst goes at 0.5 and 1.5 s), so /peers is asked again while the burst lasts.
  local n
  for n in 1 2 3; do
    say h1 "/peers"
    wait_for h1 "announced" 2 && return 0
  done
  return 1
}

check() {  # check "description" command…
  local what=$1; shift
  echo "- $what"
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "  FAILED: $what"; fi
}

dump() {
  for f in "$WORK"/*.out "$WORK"/*.err; do
    [ -s "$f" ] || continue
    echo "---- $(basename "$f")"
    cat "$f"
  done
}

lan_finds_itself() {
  wait_for h1 "h2 joined" 2 && wait_for h1 "h3 joined" 2 &&
  wait_for h2 "h1 joined" 2 && wait_for h2 "h3 joined" 2 &&
  wait_for h3 "h1 joined" 2 && wait_for h3 "h2 joined" 2
}

echo "== 1. a bridged LAN of three hosts"
bridge sw
host h1 sw 10.77.0.1/24
host h2 sw 10.77.0.2/24
host h3 sw 10.77.0.3/24
host h4 sw 10.77.0.4/24
start h1; start h2; start h3
check "the three list each other within 2 s, with nobody typing an address" lan_finds_itself
check "/peers says they were announced" peers_say_announced
say h1 "hello from h1"
check "a group message reaches h2" wait_for h2 "<h1> hello from h1" 2
check "and h3" wait_for h3 "<h1> hello from h1" 2
check "a one-shot script on h4, default flags, no address: delivered to all (exit 0)" \
  script_says h4 "from a script"
check "its line reached h1" wait_for h1 "<h4> from a script" 2
check "and h2" wait_for h2 "<h4> from a script" 2
check "and h3, not only the first to answer" wait_for h3 "<h4> from a script" 2
# On h2, where tailchat already holds port 7654: the script takes another port, and still
# announces to 7654, where the others listen.
check "a script beside a running tailchat (port taken): delivered to all (exit 0)" \
  script_says h2 "bot beside h2" bot
check "it said it took another port" wait_for bot "is in use (another tailchat?)" 1
check "its line reached h1" wait_for h1 "<bot> bot beside h2" 2
check "and h3" wait_for h3 "<bot> bot beside h2" 2
check "and h2, on its own host" wait_for h2 "<bot> bot beside h2" 2
# With --port 0 (any free port) too: announcements still go to 7654.
SCRIPT_ARGS="--port 0"
check "a script on --port 0: delivered to all (exit 0)" script_says h4 "from any port" anyport
SCRIPT_ARGS=""
check "its line reached h1" wait_for h1 "<anyport> from any port" 2
check "and h3" wait_for h3 "<anyport> from any port" 2
say h3 "/quit"
check "/quit is noticed by h1 within 2 s" wait_for h1 "h3 left" 2
check "and by h2" wait_for h2 "h3 left" 2
kill -9 "$(pid_of 1)"
check "kill -9 of h2 is noticed within the documented 17 s (keepalive 5 s + 10 s + 2 s gathering)" \
  wait_for h1 "h2 is not answering" 20

echo "== 2. two subnets joined by a router: broadcast does not cross, one /add does"
ns r
bridge swa
bridge swb
ip link add name lana netns "${P}r" type veth peer name ra netns "${P}swa"
ip link add name lanb netns "${P}r" type veth peer name rb netns "${P}swb"
ip -n "${P}swa" link set ra master br0 up
ip -n "${P}swb" link set rb master br0 up
ip -n "${P}r" addr add 10.78.1.254/24 dev lana
ip -n "${P}r" addr add 10.78.2.254/24 dev lanb
ip -n "${P}r" link set lana up
ip -n "${P}r" link set lanb up
ip netns exec "${P}r" sysctl -qw net.ipv4.ip_forward=1
host a1 swa 10.78.1.1/24 10.78.1.254
host a2 swa 10.78.1.2/24 10.78.1.254
host b1 swb 10.78.2.1/24 10.78.2.254
host b2 swb 10.78.2.2/24 10.78.2.254
start a1; start a2; start b1; start b2
check "a1 and a2 meet on their LAN" wait_for a1 "a2 joined" 2
check "b1 and b2 meet on theirs" wait_for b1 "b2 joined" 2
check "nothing crosses the router by itself" \
  bash -c "! grep -q 'b[12] joined' '$WORK/a1.out' '$WORK/a2.out'"
say a1 "/add 10.78.2.1"
check "one /add: a1 meets b1" wait_for a1 "b1 joined" 3
check "and learns b2 from it" wait_for a1 "b2 joined" 3
check "b2 learns a1 and a2 too" wait_for b2 "a2 joined" 3
say b2 "from the far side"
check "messages flow one way" wait_for a2 "<b2> from the far side" 2
say a2 "and back"
check "and the other" wait_for b2 "<a2> and back" 2
# A one-shot script on the LAN reaches the far side too: the peers its LAN peers passed on
# (never heard announcing, so passed on at once) are waited for before its line goes.
host a3 swa 10.78.1.3/24 10.78.1.254
check "a one-shot script on a3, default flags: delivered to all (exit 0)" \
  script_says a3 "script across"
check "its line reached b2, whom its LAN knows by an /add" wait_for b2 "<a3> script across" 2
check "and b1" wait_for b1 "<a3> script across" 2
say a1 "/peers"
check "/peers on a1 shows b2 as learned" wait_for a1 "learned" 2
# A file across the router, to a peer learned from another: the data connection goes to b2's
# address as a2 learned it, through the router (paced, not loopback), into the download folder.
head -c 3000000 /dev/urandom >"$WORK/across.bin"
say b2 "/send a2 $WORK/across.bin"
check "a file offered across the router reaches a2's prompt" wait_for a2 "b2 offers across.bin" 3
say a2 "/accept"
check "and arrives in a2's download folder" wait_for a2 "received across.bin from b2" 10
check "byte-exact" cmp "$WORK/across.bin" "$WORK/a2.home/Downloads/tailchat/across.bin"
check "and b2 hears it arrived" wait_for b2 "sent across.bin to a2" 3

echo "== 3. each way of announcing works on its own (nftables drops the other two)"
if command -v nft >/dev/null; then
  only() {  # only WHAT DROP1 DROP2: two hosts that can hear only one kind of announcement
    local what=$1 n=$2
    bridge "sw$n"
    host "p$n" "sw$n" "10.79.$n.1/24"
    host "q$n" "sw$n" "10.79.$n.2/24"
    for h in "p$n" "q$n"; do
      ip netns exec "$P$h" nft -f - <<NFT
table inet only {
  chain in {
    type filter hook input priority 0;
    $3 drop
    $4 drop
  }
}
NFT
    done
    start "p$n"; start "q$n"
    check "$what alone: the two meet within 2 s" wait_for "p$n" "q$n joined" 2
  }
  only "subnet broadcast" 1 "ip daddr 239.255.76.54" "ip6 daddr ff02::7654"
  only "IPv4 multicast" 2 "ip daddr 10.79.2.255" "ip6 daddr ff02::7654"
  only "IPv6 multicast" 3 "ip daddr 10.79.3.255" "ip daddr 239.255.76.54"
else
  echo "  (skipped: nft not installed; apt-get install nftables)"
  failed=$((failed + 1))
fi

echo "== 3b. a link with only IPv6 link-local addresses (a cable, no DHCP): IPv6 multicast finds"
bridge "sw6"
for h in r1 r2; do
  ns "$h"
  ip link add name eth0 netns "$P$h" type veth peer name "$h" netns "${P}sw6"
  ip -n "${P}sw6" link set "$h" master br0 up
  ip -n "$P$h" link set eth0 up
done
start r1; start r2
check "r1 announces on its link-local-only eth0" wait_for r1 "announcing on eth0" 2
check "link-local only: the two meet within 3 s" wait_for r1 "r2 joined" 3

echo "== 4. a file transfer across a link cut long enough to break its connection resumes"
if command -v nft >/dev/null; then
  part_past() {  # part_past FILE BYTES: FILE is longer than BYTES (within 20 s)
    local deadline=$((SECONDS + 20))
    while [ "$(stat -c %s "$1" 2>/dev/null || echo 0)" -le "$2" ]; do
      [ "$SECONDS" -lt "$deadline" ] || return 1
      sleep 0.05  # polling a file's growth, bounded by the deadline
    done
  }
  only_the_rest_sent() {  # c1's end line: resumed at no less than what c2 kept, sent the rest
    local line at rest
    line=$(grep "sent cut.bin to c2" "$WORK/c1.out")
    at=$(sed -n 's/.*resumed at \([0-9.]*\) MB.*/\1/p' <<<"$line")
    rest=$(sed -n 's/.*sent the remaining \([0-9.]*\) MB.*/\1/p' <<<"$line")
    echo "    $line (c2 had $kept bytes when the link was cut)"
    [ -n "$at" ] && [ -n "$rest" ] &&
      awk -v at="$at" -v rest="$rest" -v kept="$kept" \
        'BEGIN { exit !(at * 1e6 >= kept - 0.1e6 && at + rest > 11.9 && at + rest < 12.1) }'
  }
  bridge sw5
  host c1 sw5 10.79.5.1/24
  host c2 sw5 10.79.5.2/24
  START_ENV="TAILCHAT_TEST_SEND_RATE=1000000" start c1  # 1 MB/s: time to cut it half-way
  start c2
  check "two more hosts meet" wait_for c1 "c2 joined" 3
  head -c 12000000 /dev/urandom >"$WORK/cut.bin"
  say c1 "/send c2 $WORK/cut.bin"
  wait_for c2 "c1 offers cut.bin" 3 && say c2 "/accept"
  part="$WORK/c2.home/Downloads/tailchat/cut.bin.part"
  check "c2 has 5 MB of the 12 MB" part_past "$part" 5000000
  kept=$(stat -c %s "$part")
  ip netns exec "${P}c2" nft -f - <<NFT
table inet cut {
  chain in { type filter hook input priority 0; iifname "eth0" drop; }
  chain out { type filter hook output priority 0; oifname "eth0" drop; }
}
NFT
  check "the link cut, c2 counts its connection as lost (20 s without data) and says it waits" \
    wait_for c2 "cut.bin from c1: .*it resumes when c1 is reachable" 40
  # c1's send buffer fills soon after the cut; its writes then look every 5 s whether
  # anything was acknowledged, give up after 30 s of nothing, and the line comes 1 s later:
  # up to about 36 s after the cut, which c2's line above came about 22 s after.
  check "and c1 that it was interrupted (30 s without an acknowledgement)" \
    wait_for c1 "cut.bin to c2: interrupted at" 25
  ip netns exec "${P}c2" nft delete table inet cut
  check "the link back, the transfer resumes and ends" wait_for c2 "received cut.bin from c1" 30
  # The sender says "going again from" when the receiver kept less than it had counted sent.
  check "both sides said it went again" wait_for c1 "cut.bin to c2: \(resumed at\|going again from\)" 1
  check "byte-exact" cmp "$WORK/cut.bin" "$WORK/c2.home/Downloads/tailchat/cut.bin"
  check "c1 resumed where c2 was and sent only the rest" wait_for c1 "sent cut.bin to c2" 3
  check "(counted from c1's end line)" only_the_rest_sent
else
  echo "  (skipped: nft not installed; apt-get install nftables)"
  failed=$((failed + 1))
fi

echo
for f in "$WORK"/*.err; do grep -H "cannot join\|announcement to" "$f" | head -3 || true; done
echo "$passed passed, $failed failed"
if [ "$failed" -gt 0 ]; then dump; exit 1; fi
