#!/usr/bin/env python3
"""Checks 1-3: LAN discovery and peer exchange between the spec peer (sd1) and real tailchat (sd2, sd3).

Run as root by scripts/spec-disc-test.sh, which makes the namespaces (it re-executes itself
inside the first; the real tailchats run in the other two). Written from docs/PROTOCOL.md
alone (§5.8, §8.1, §8.6, §8.7), without reading the program.
"""
import os, sys, time, subprocess, json

HERE = os.path.dirname(os.path.abspath(__file__))
# The namespaces scripts/spec-disc-test.sh made: PREFIX1..3 on one bridge, 10.66.0.N/24.
PREFIX = os.environ.get("SPEC_NS_PREFIX", "sd")
NS1, NS2, NS3 = PREFIX + "1", PREFIX + "2", PREFIX + "3"
if os.environ.get("IN_SD1") != "1":
    os.environ["IN_SD1"] = "1"
    os.execvp("ip", ["ip", "netns", "exec", NS1, sys.executable, os.path.abspath(__file__)] + sys.argv[1:])

sys.path.insert(0, HERE)
from discpeer import DiscPeer
from tc import TC

RESULTS = []
HUGE = lambda x: x > 0xff00000000000000
TINY = lambda x: x < 0x0100000000000000


def check(name, ok, detail=""):
    RESULTS.append((name, bool(ok)))
    print("CHECK %-60s %s %s" % (name, "PASS" if ok else "FAIL", detail), flush=True)


def mac(ns, dev):
    out = json.loads(subprocess.check_output(["ip", "-n", ns, "-j", "link", "show", dev]))
    return out[0]["address"]


def block_announcements(ns, from_mac):
    """In namespace ns drop broadcast/multicast UDP to 7654 coming from from_mac (unicast still passes)."""
    rules = """table inet sdblock {
  chain in { type filter hook input priority 0; policy accept;
    ether saddr %s meta pkttype { broadcast, multicast } udp dport 7654 counter drop
  }
}""" % from_mac
    subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=rules, text=True, check=True)


def unblock(ns):
    subprocess.run(["ip", "netns", "exec", ns, "nft", "delete", "table", "inet", "sdblock"],
                   stderr=subprocess.DEVNULL)


def chat_both_ways(tc, p, pid_hex, tag):
    n = len(tc.lines)
    tc.cmd("line from %s tc" % tag)
    a = p.wait_event(lambda e: e[0] == "chat" and e[2] == "line from %s tc" % tag, 5)
    with p.lock:
        p.send_chat(int(pid_hex, 16), "line from %s spec" % tag, int(time.time() * 1000) << 12)
    b = tc.wait_line(r"<spec> line from %s spec" % tag, 5, n)
    return bool(a), bool(b)


def join_of(p, nick, timeout):
    return p.wait_event(lambda e: e[0] == "join" and e[2] == nick, timeout)


def bob_after_start_burst():
    """tailchat bob (sd2), announcing, once the announcements of its start burst are over."""
    tc = TC(NS2, "bob")
    assert tc.wait_line(r"announcing on", 5)
    time.sleep(2.5)
    return tc


def t1():
    """1: tailchat discovers the spec peer from the spec peer's announcements alone."""
    print("\n=== T1a: tailchat (sd2) hears our Announce, our PeerId larger -> tailchat says Hello")
    tc = bob_after_start_burst()
    p = DiscPeer(nick="spec", pid_pred=HUGE, react_announce=False)   # we do not react to announcements
    try:
        ok_tc = tc.wait_line(r"spec joined", 6)
        j = join_of(p, "bob", 2)
        hello_from_tc = [r for r in p.rx_log if r[2] == ["Hello"] and r[1][0] == "10.66.0.2"]
        check("T1a tailchat said Hello after our announcement", hello_from_tc)
        check("T1a joined (tailchat and spec peer)", ok_tc and j)
        if j:
            a, b = chat_both_ways(tc, p, j[1], "t1a")
            check("T1a chat tailchat->spec", a)
            check("T1a chat spec->tailchat", b)
        n = len(tc.lines); tc.cmd("/peers")
        check("T1a /peers shows spec as announced", tc.wait_line(r"spec\s+online.*announced\s+10\.66\.0\.1:7654", 3, n))
    finally:
        tc.quit(); p.close()

    print("\n=== T1b: our PeerId smaller -> tailchat answers our Announce with a unicast Announce; we then probe")
    tc = bob_after_start_burst()
    p = DiscPeer(nick="spec", pid_pred=TINY, react_announce=True)
    try:
        ok_tc = tc.wait_line(r"spec joined", 6)
        j = join_of(p, "bob", 2)
        uni = [r for r in p.rx_log if r[2] == ["Announce"] and r[1][0] == "10.66.0.2" and r[5] == "10.66.0.1"]
        check("T1b tailchat sent a unicast Announce to us", uni, "(%d)" % len(uni))
        check("T1b joined", ok_tc and j)
        if j:
            a, b = chat_both_ways(tc, p, j[1], "t1b")
            check("T1b chat both ways", a and b)
    finally:
        tc.quit(); p.close()


def t2():
    """2: the spec peer discovers tailchat from tailchat's announcements alone."""
    for name, pred, how in (("T2a", TINY, "we say Hello"), ("T2b", HUGE, "we answer with a unicast Announce")):
        print("\n=== %s: spec peer silent (no announcements), hears tailchat's; %s" % (name, how))
        p = DiscPeer(nick="spec", pid_pred=pred, announce=False, react_announce=True)
        tc = TC(NS2, "bob")
        try:
            j = join_of(p, "bob", 6)
            ok_tc = tc.wait_line(r"spec joined", 3)
            heard = [r for r in p.rx_log if r[2] == ["Announce"] and r[1][0] in ("10.66.0.2",) ]
            check("%s heard tailchat's announcements" % name, heard)
            check("%s joined" % name, j and ok_tc)
            if j:
                a, b = chat_both_ways(tc, p, j[1], name)
                check("%s chat both ways" % name, a and b)
        finally:
            tc.quit(); p.close()


def t3():
    """3: peer exchange."""
    m2, m3 = mac(NS2, "v2"), mac(NS3, "v3")
    print("\n=== T3 control: alice (sd2) and carol (sd3) with each other's announcements blocked, no spec peer")
    block_announcements(NS2, m3); block_announcements(NS3, m2)
    try:
        a = TC(NS2, "alice"); c = TC(NS3, "carol")
        met = a.wait_line(r"carol joined", 6)
        check("T3 control: blocked pair does not meet on its own", not met)
        a.quit(); c.quit()

        print("\n=== T3a: spec peer (sd1) knows both and sends each newcomer a Peers item")
        p = DiscPeer(nick="spec", pid_pred=HUGE)
        time.sleep(0.5)
        a = TC(NS2, "alice")
        ja = join_of(p, "alice", 6)
        check("T3a alice joined spec", ja)
        c = TC(NS3, "carol")
        jc = join_of(p, "carol", 6)
        check("T3a carol joined spec", jc)
        met_a = a.wait_line(r"carol joined", 8)
        met_c = c.wait_line(r"alice joined", 3)
        check("T3a alice and carol met through our Peers item", met_a and met_c)
        n = len(a.lines); a.cmd("/peers")
        m = a.wait_line(r"carol\s+online.*", 3, n)
        check("T3a alice lists carol as learned", m and "learned" in m.group(0), m and m.group(0))
        if met_a:
            n = len(c.lines); a.cmd("via gossip")
            check("T3a chat alice->carol", c.wait_line(r"<alice> via gossip", 5, n))
        a.quit(); c.quit(); p.close()
    finally:
        unblock(NS2); unblock(NS3)

    print("\n=== T3b: real tailchat as the source: alice (sd2) knows carol (sd3); the spec peer, silent and "
          "deaf to carol, contacts alice by address and must learn carol from alice's Peers item")
    a = TC(NS2, "alice"); c = TC(NS3, "carol")
    met = a.wait_line(r"carol joined", 8)
    check("T3b alice and carol met by announcements", met)
    time.sleep(1)
    p = DiscPeer(nick="spec", pid_pred=HUGE, announce=False, react_announce=True,
                 ignore_announce_from=("10.66.0.3", "10.66.0.2"))
    try:
        with p.lock:
            p.probe(("10.66.0.2", 7654), "Manual")
        ja = join_of(p, "alice", 5)
        check("T3b spec joined alice (by address)", ja)
        pe = p.wait_event(lambda e: e[0] == "peers", 5)
        check("T3b alice sent us a Peers item", pe, pe and str(pe[2]))
        if pe:
            ent = [e for e in pe[2] if e[1] == "carol"]
            check("T3b Peers entry for carol: addr 10.66.0.3:7654, heard_secs small",
                  ent and ("10.66.0.3", 7654) in ent[0][2] and ent[0][3] <= 10, ent)
        jc = join_of(p, "carol", 6)
        check("T3b spec joined carol from alice's hint", jc)
        check("T3b carol shows spec joined", c.wait_line(r"spec joined", 3))
    finally:
        a.quit(); c.quit(); p.close()


def main():
    only = sys.argv[1:] or ["1", "2", "3"]
    for t in only:
        try:
            {"1": t1, "2": t2, "3": t3}[t]()
        except Exception as e:
            import traceback; traceback.print_exc()
            check("test %s ran to the end" % t, False, repr(e))
    print("\n==== SUMMARY")
    for n, ok in RESULTS:
        print("%-64s %s" % (n, "PASS" if ok else "FAIL"))
    bad = sum(1 for _, ok in RESULTS if not ok)
    print("%d checks, %d failed" % (len(RESULTS), bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
