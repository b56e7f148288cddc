#!/usr/bin/env bash
# A tailnet in network namespaces (needs root; CI runs it), without Tailscale: hosts with
# tailnet addresses (100.64.x.x) on two subnets joined by a router, so LAN announcements do not
# cross, each with its own fake tailscaled LocalAPI (scripts/fake-localapi.py, on a Unix
# socket, passed with --tailscale-socket) listing the others; default flags otherwise, and
# nobody types /add.
#   1. all meet across the router, each join line and /peers naming who the tailnet says the
#      peer is, found by "tailnet"; messages flow both ways; a silent device is not reported;
#      a host whose allow-list leaves one address out never shows it;
#   2. a LocalAPI missing, refusing (HTTP 403: root ignores file modes, so a 000 socket
#      would not refuse), hanging, answering garbage or closing the connection: one line each,
#      never repeated at the next poll (30 s later), and the chat is unaffected.
# Everything it creates is removed on exit, pass or fail. Traffic stays inside the namespaces.
# Usage: scripts/netns-tailnet-test.sh [path/to/tailchat]   (default: target/debug/tailchat)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(readlink -f "${1:-target/debug/tailchat}")
FAKE=$(readlink -f scripts/fake-localapi.py)
[ -x "$BIN" ] || { echo "no binary at $BIN: run cargo build first" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)" >&2; exit 2; }
command -v ip >/dev/null || { echo "needs iproute2 (apt-get install iproute2)" >&2; exit 2; }
command -v python3 >/dev/null || { echo "needs python3 (the fake LocalAPI)" >&2; exit 2; }

P="tt$$"                 # namespace prefix, unique per run
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

ns() {  # create a namespace with loopback up
  ip netns add "$P$1"
  NAMESPACES+=("$P$1")
  ip -n "$P$1" link set lo up
}

bridge() {  # bridge NAME: a namespace holding one bridge, the "switch"
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

localapi() {  # localapi NAME IP [MODE]: a fake LocalAPI for host NAME (address IP)
  python3 "$FAKE" "$WORK/$1.sock" --tailnet "$WORK/tailnet.json" --me "$2" --mode "${3:-answer}" \
    2>"$WORK/$1.localapi.err" &
  PIDS+=($!)
  disown "$!"
  local i
  for i in $(seq 100); do [ -S "$WORK/$1.sock" ] && return 0; sleep 0.05; done
  echo "fake LocalAPI for $1 did not start" >&2
  cat "$WORK/$1.localapi.err" >&2
  return 1
}

start() {  # start NAME [ARGS…]: tailchat --nick NAME on host NAME, its own LocalAPI socket
  local name=$1; shift
  mkfifo "$WORK/$name.in"
  ip netns exec "$P$name" env -i PATH="$PATH" HOME="$WORK/$name.home" NO_COLOR=1 RUST_LOG=tailchat=debug \
    "$BIN" --nick "$name" --tailscale-socket "$WORK/$name.sock" "$@" \
    <"$WORK/$name.in" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  PIDS+=($!)
  disown "$!"
  eval "exec {fd_$name}>\"$WORK/$name.in\""
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

lines() {  # lines NAME PATTERN: how many of NAME's output lines match PATTERN
  grep -c -- "$2" "$WORK/$1.out" 2>/dev/null || true
}

exactly() {  # exactly N NAME PATTERN
  local n
  n=$(lines "$2" "$3")
  [ "$n" = "$1" ] || { echo "    $2 has $n lines matching '$3', expected $1"; return 1; }
}

never() {  # never NAME PATTERN
  exactly 0 "$1" "$2"
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
    tail -n 60 "$f"
  done
}

# The tailnet: the four hosts, a device that runs no tailchat, one offline, one expired.
cat >"$WORK/tailnet.json" <<'JSON'
[
  {"host": "a1", "login": "alice@example.com", "ips": ["100.64.1.1", "fd7a:115c:a1e0::101"]},
  {"host": "a2", "login": "bob@example.com",   "ips": ["100.64.1.2", "fd7a:115c:a1e0::102"]},
  {"host": "b1", "login": "carol@example.com", "ips": ["100.64.2.1", "fd7a:115c:a1e0::201"]},
  {"host": "b2", "login": "dave@example.com",  "ips": ["100.64.2.2", "fd7a:115c:a1e0::202"]},
  {"host": "printer", "login": "ops@example.com", "ips": ["100.64.2.9"], "tags": ["tag:printer"]},
  {"host": "old-laptop", "login": "bob@example.com", "ips": ["100.64.1.9"], "online": false},
  {"host": "expired", "login": "erin@example.com", "ips": ["100.64.1.8"], "expired": true},
  {"host": "f1", "login": "frank@example.com", "ips": ["100.64.3.1"]},
  {"host": "f2", "login": "frank@example.com", "ips": ["100.64.3.2"]},
  {"host": "f3", "login": "frank@example.com", "ips": ["100.64.3.3"]},
  {"host": "f4", "login": "frank@example.com", "ips": ["100.64.3.4"]},
  {"host": "f5", "login": "frank@example.com", "ips": ["100.64.3.5"]}
]
JSON

echo "== 1. two subnets of tailnet addresses joined by a router: nobody types /add"
ns r
bridge swa
bridge swb
ip link add name lana netns "${P}r" type veth peer name ra netns "${P}swa"
ip link add name lanb netns "${P}r" type veth peer name rb netns "${P}swb"
ip -n "${P}swa" link set ra master br0 up
ip -n "${P}swb" link set rb master br0 up
ip -n "${P}r" addr add 100.64.1.254/24 dev lana
ip -n "${P}r" addr add 100.64.2.254/24 dev lanb
ip -n "${P}r" link set lana up
ip -n "${P}r" link set lanb up
ip netns exec "${P}r" sysctl -qw net.ipv4.ip_forward=1
host a1 swa 100.64.1.1/24 100.64.1.254
host a2 swa 100.64.1.2/24 100.64.1.254
host b1 swb 100.64.2.1/24 100.64.2.254
host b2 swb 100.64.2.2/24 100.64.2.254
localapi a1 100.64.1.1
localapi a2 100.64.1.2
localapi b1 100.64.2.1
localapi b2 100.64.2.2
start a1; start a2; start b1
# b2 takes datagrams from subnet a and from dave's devices only: b1 (carol) is left out.
start b2 --allow 100.64.1.0/24 --allow tailnet:dave@example.com
check "a1 meets b1 across the router within 3 s, its join line naming carol" \
  wait_for a1 "b1 joined (100.64.2.1:7654, carol@example.com on b1)" 3
check "and b2, named dave" wait_for a1 "b2 joined (100.64.2.2:7654, dave@example.com on b2)" 3
check "a2 meets b1 and b2" bash -c "
  $(declare -f wait_for); WORK='$WORK'
  wait_for a2 'b1 joined (100.64.2.1:7654, carol@' 3 && wait_for a2 'b2 joined (100.64.2.2:7654, dave@' 3"
check "b1 meets a1 and a2, named" bash -c "
  $(declare -f wait_for); WORK='$WORK'
  wait_for b1 'a1 joined (100.64.1.1:7654, alice@example.com on a1)' 3 &&
  wait_for b1 'a2 joined (100.64.1.2:7654, bob@example.com on a2)' 3"
check "b2 meets a1 and a2" bash -c "
  $(declare -f wait_for); WORK='$WORK'
  wait_for b2 'a1 joined (100.64.1.1' 3 && wait_for b2 'a2 joined (100.64.1.2' 3"
check "each says once that tailnet discovery is on" bash -c "
  $(declare -f lines exactly); WORK='$WORK'
  for h in a1 a2 b1 b2; do exactly 1 \$h 'tailnet discovery on:' || exit 1; done"
say a1 "hello from a1"
check "a1's line reaches b1" wait_for b1 "<a1> hello from a1" 2
check "and b2" wait_for b2 "<a1> hello from a1" 2
say b1 "hello from b1"
check "b1's line reaches a1 (the other way)" wait_for a1 "<b1> hello from b1" 2
say a1 "/peers"
check "/peers on a1 shows b1 found by tailnet, with carol's login" \
  wait_for a1 " b1 .*online.*tailnet  100.64.2.1:7654 (carol@example.com on b1)" 2
check "and b2 with dave's" wait_for a1 " b2 .*tailnet  100.64.2.2:7654 (dave@example.com on b2)" 2
sleep 5  # the core reports an address silent after 5 hellos (3.75 s): give it the time
check "the printer, which runs no tailchat, is not reported on any host" bash -c "
  $(declare -f lines exactly never); WORK='$WORK'
  for h in a1 a2 b1 b2; do never \$h 'no answer' || exit 1; done"
check "b2, whose allow-list leaves b1 out, never shows it" bash -c "
  $(declare -f lines exactly never); WORK='$WORK'
  never b2 'b1 joined' && never b2 '<b1>' && never b2 'carol@'"
say b2 "/peers"
check "nor lists it" bash -c "
  $(declare -f wait_for lines exactly never); WORK='$WORK'
  wait_for b2 ' a1 .*tailnet' 2 && never b2 ' b1 .*online'"

echo "== 2. tailscaled missing, refusing, hanging, talking nonsense or hanging up: one line each"
bridge swf
host f1 swf 100.64.3.1/24
host f2 swf 100.64.3.2/24
host f3 swf 100.64.3.3/24
host f4 swf 100.64.3.4/24
host f5 swf 100.64.3.5/24
# f1 has no LocalAPI at all.
localapi f2 100.64.3.2 forbidden
localapi f3 100.64.3.3 hang
localapi f4 100.64.3.4 garbage
localapi f5 100.64.3.5 close
start f1; start f2; start f3; start f4; start f5
check "missing: one line saying so" wait_for f1 "tailnet discovery off: no tailscaled socket at" 3
check "refusing: one line saying what to do" \
  wait_for f2 "tailnet discovery off: cannot read .* (status access denied) — add yourself to the tailscale group" 3
check "hanging: one line after the 3 s limit" wait_for f3 "tailnet discovery off: tailscaled did not answer" 6
check "garbage: one line" wait_for f4 "tailnet discovery off: the answer on .* is not tailscaled's" 3
check "hanging up: one line" wait_for f5 "tailnet discovery off: .* closed the connection without answering" 3
check "the five still meet on their LAN" bash -c "
  $(declare -f wait_for); WORK='$WORK'
  for h in f2 f3 f4 f5; do wait_for f1 \"\$h joined\" 8 || exit 1; done"
say f3 "chat goes on"
check "and chat" bash -c "
  $(declare -f wait_for); WORK='$WORK'
  for h in f1 f2 f4 f5; do wait_for \$h '<f3> chat goes on' 3 || exit 1; done"
echo "  (waiting 32 s: past the next poll of the LocalAPI)"
sleep 32
check "no line is repeated at the next poll, and nothing else is said about it" bash -c "
  $(declare -f lines exactly); WORK='$WORK'
  for h in f1 f2 f3 f4 f5; do exactly 1 \$h 'tailnet' || exit 1; done"

echo
echo "$passed passed, $failed failed"
if [ "$failed" -gt 0 ]; then dump; exit 1; fi
