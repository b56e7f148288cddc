"""specpeer + LAN discovery (§8.6) + peer exchange (§8.7), from docs/PROTOCOL.md alone.

Runs only inside network namespaces created for the test (10.66.0.0/16 etc.).
"""
import socket, struct, threading, time, random, ipaddress
from tcwire import *
from specpeer import Peer, log, now

MC4 = "239.255.76.54"
MC6 = "ff02::7654"
HELLO_INTERVAL = 0.25
PROBE_TIMES = [0, 0.25, 0.75, 1.75]   # Announced / Learned probe: 4 Hellos (§8.1)
PROBE_GIVEUP = 3.75
EXCHANGE_DELAY = 1.5
EXCHANGE_MAX_AGE = 120


def ifaces():
    """[(name, index, [(ipv4, prefixlen)], has_v6, flags)] of non-loopback interfaces, via `ip -j`."""
    import json, subprocess
    out = json.loads(subprocess.check_output(["ip", "-j", "addr"]))
    res = []
    for i in out:
        flags = i.get("flags", [])
        if "LOOPBACK" in flags or "UP" not in flags:
            continue
        v4 = [(a["local"], a["prefixlen"]) for a in i.get("addr_info", []) if a["family"] == "inet"]
        v6 = any(a["family"] == "inet6" for a in i.get("addr_info", []))
        res.append((i["ifname"], i["ifindex"], v4, v6, flags))
    return res


def norm(sa):
    """socket address from recvfrom on the dual-stack socket -> our key form."""
    ip = sa[0]
    if ip.startswith("::ffff:") and "." in ip:
        return (ip[7:], sa[1])
    return (ip.split("%")[0], sa[1], 0, sa[3])


def to_sockaddr(a):
    if len(a) == 2:
        return ("::ffff:" + a[0], a[1], 0, 0)
    return a


def allowed_dest(a):
    ip = ipaddress.ip_address(a[0])
    if ip.version == 4:
        return ip in ipaddress.ip_network("10.66.0.0/16") or ip in ipaddress.ip_network("10.67.0.0/16") \
            or str(ip) == MC4
    return ip.is_link_local or str(ip) == MC6 or ip in ipaddress.ip_network("fd66::/16")


class DiscPeer(Peer):
    def __init__(self, nick="spec", port=7654, announce=True, react_announce=True, exchange=True,
                 pid_pred=None, seed=None, ignore_announce_from=()):
        # identity: optionally ground until pid_pred(peer_id) holds
        ident = Identity(seed)
        if pid_pred:
            while not pid_pred(ident.peer_id):
                ident = Identity()
        self._init_state(ident, nick, "/tmp/discpeer-dl", None)
        self.sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        self.sock.bind(("::", port))
        self.port = port
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.bind(("127.0.0.1", 0)); self.tcp.listen(4)
        self.tcp_port = self.tcp.getsockname()[1]
        # discovery state
        self.do_announce = announce
        self.react_announce = react_announce
        self.do_exchange = exchange
        self.ignore_announce_from = set(ignore_announce_from)   # IPv4 strings whose announcements we ignore
        self.joined_groups = set()
        self.dests = []            # (sockaddr, kind)
        self.announce_at = []      # times of pending announcements
        self.next_periodic = None
        self.probes = {}           # addr -> dict(start, sent, origin)
        self.hello_limiter = {}    # addr -> last stateless hello/announce time
        self.answered_announcer = {}  # (pid, sess) -> time
        self.heard_announcing = set()
        self.pending_exchange = {}  # pid -> time
        self.heard = {}            # pid -> last heard time
        self.rx_log = []           # (time, addr, kinds, sender) of everything received
        self.scan_ifaces()
        if announce:
            t = now()
            self.announce_at = [t, t + 0.5, t + 1.5]
        log("DISC PeerId %016x session %d port %d dests %s" % (self.ident.peer_id, self.session, port,
                                                             [d for d, _ in self.dests]))
        threading.Thread(target=self._udp_loop, daemon=True).start()

    # ---------- sockets ----------
    def scan_ifaces(self):
        self.dests = []
        for name, idx, v4, v6, flags in ifaces():
            for ip, plen in v4:
                if plen >= 32 or "POINTOPOINT" in flags:
                    continue
                net = ipaddress.ip_network("%s/%d" % (ip, plen), strict=False)
                bcast = str(ipaddress.ip_address(int(ipaddress.ip_address(ip)) | (int(net.hostmask))))
                self.dests.append((("::ffff:" + bcast, self.port, 0, 0), ("bcast", ip)))
                self.dests.append((("::ffff:" + MC4, self.port, 0, 0), ("mc4", ip)))
                if ("mc4", ip) not in self.joined_groups:
                    mreq = socket.inet_aton(MC4) + socket.inet_aton(ip)
                    self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
                    self.joined_groups.add(("mc4", ip))
            if v6 and "MULTICAST" in flags and "POINTOPOINT" not in flags:
                self.dests.append(((MC6, self.port, 0, idx), ("mc6", idx)))
                if ("mc6", idx) not in self.joined_groups:
                    mreq = socket.inet_pton(socket.AF_INET6, MC6) + struct.pack("@I", idx)
                    self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
                    self.joined_groups.add(("mc6", idx))

    def _send(self, addr, dg):
        assert allowed_dest(addr), "network safety: %r" % (addr,)
        assert len(dg) <= MAX_DATAGRAM
        self.sock.sendto(dg, to_sockaddr(addr))

    def announce_dgram(self):
        return datagram(self.ident.peer_id, self.session, 0, [announce()])

    def send_announce(self):
        dg = self.announce_dgram()
        for sa, (kind, sel) in self.dests:
            if kind == "mc4":
                self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(sel))
            elif kind == "mc6":
                self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, sa[3])
            self.sock.sendto(dg, sa)
        log("ANNOUNCE sent to", [(sa[0], sa[3]) for sa, _ in self.dests])

    # ---------- probes ----------
    def probe(self, addr, origin):
        if addr in self.probes:
            return
        self.probes[addr] = dict(start=now(), sent=0, origin=origin)
        log("PROBE", origin, addr)

    def _run_probes(self, t):
        for addr, p in list(self.probes.items()):
            if p["sent"] < len(PROBE_TIMES) and t >= p["start"] + PROBE_TIMES[p["sent"]]:
                p["sent"] += 1
                self.hello(addr)
            elif t >= p["start"] + PROBE_GIVEUP:
                log("PROBE gave up", addr)
                del self.probes[addr]

    # ---------- receiving ----------
    def _handle(self, data, sa):
        addr = norm(sa)
        t = now()
        try:
            sender, sess, pn, frames = parse_datagram(data)
            kinds = [KIND_NAMES[k] for k, _ in frames]
        except DecodeError as e:
            sender, kinds = None, ["undecodable:%s" % e]
        self.rx_log.append((t, addr, kinds, sender, data, getattr(self, "last_dst", None)))
        if sender is None:
            self.stats["dropped"] += 1
            return
        if sender == self.ident.peer_id:
            return
        if sender in self.links and self.links[sender].addr == addr:
            self.heard[sender] = t
        k0 = frames[0][0] if frames else None
        if k0 == K_ANNOUNCE:
            self.on_announce(sender, sess, addr, t)
            return
        if k0 in (K_PROOF, K_PROOFREPLY):
            before = {p: (l.session) for p, l in self.links.items()}
            Peer._handle(self, data, addr)
            l = self.links.get(sender)
            if l and l.addr == addr:
                self.probes.pop(addr, None)
                self.heard[sender] = t
                if before.get(sender) != l.session:   # joined or restarted
                    delay = EXCHANGE_DELAY if sender in self.heard_announcing else 0
                    self.pending_exchange[sender] = t + delay
            return
        Peer._handle(self, data, addr)

    def on_announce(self, sender, sess, addr, t):
        self.heard_announcing.add(sender)
        if addr[0] in self.ignore_announce_from:
            return
        if not self.react_announce:
            log("announce ignored (react off) from", addr)
            return
        l = self.links.get(sender)
        if l and l.session == sess:
            return
        if addr in self.probes:
            return
        last = self.answered_announcer.get((sender, sess))
        if last is not None and t - last < HELLO_INTERVAL:
            return
        self.answered_announcer[(sender, sess)] = t
        if self.ident.peer_id > sender:
            lt = self.hello_limiter.get(addr)
            if lt is None or t - lt >= HELLO_INTERVAL:
                self.hello_limiter[addr] = t
                log("ANNOUNCE by unicast to", addr, "(our PeerId is larger)")
                self._send(addr, self.announce_dgram())
        else:
            self.probe(addr, "Announced")

    def _deliver(self, l, k, f):
        if k == K_PEERS:
            self.event("peers", l.nick, [(("%016x" % e["id"]), e["nick"], e["addrs"], e["heard_secs"]) for e in f["peers"]])
            for e in f["peers"]:
                if e["id"] == self.ident.peer_id or e["heard_secs"] > EXCHANGE_MAX_AGE:
                    continue
                if e["id"] in self.links:
                    continue
                for a in e["addrs"]:
                    if shareable(a[0], l.addr[0]):
                        self.probe(a if ":" not in a[0] else (a[0], a[1], 0, 0), "Learned")
            return
        Peer._deliver(self, l, k, f)

    # ---------- peer exchange ----------
    def _exchange(self, pid, t):
        ents = []
        nl = self.links[pid]
        for q, l in self.links.items():
            if q == pid or t - self.heard.get(q, 0) > EXCHANGE_MAX_AGE:
                continue
            if not shareable(l.addr[0], nl.addr[0]):
                continue
            ents.append((int(t - self.heard.get(q, t)), q, l))
        ents.sort()
        ents = ents[:16]
        if not ents:
            log("EXCHANGE with %016x: nothing to send" % pid)
            return
        entries = [(q, l.nick, [l.addr[:2]], hs) for hs, q, l in ents]
        log("EXCHANGE with %016x: %s" % (pid, [(("%016x" % q), l.nick, l.addr) for _, q, l in ents]))
        self.queue_item(pid, K_PEERS, lambda s: peers(s, entries)[1])

    def _flush(self):
        t = now()
        if self.announce_at and t >= self.announce_at[0]:
            self.announce_at.pop(0)
            self.send_announce()
            if not self.announce_at:
                self.announce_at = [t + random.uniform(27, 33)]
        self._run_probes(t)
        if self.do_exchange:
            for pid, due in list(self.pending_exchange.items()):
                if t >= due:
                    del self.pending_exchange[pid]
                    if pid in self.links:
                        self._exchange(pid, t)
        Peer._flush(self)

    def _recv(self):
        """As Peer's, and notes in self.last_dst the address the datagram was sent to (IPV6_PKTINFO)."""
        data, anc, _fl, sa = self.sock.recvmsg(65536, 256, socket.MSG_DONTWAIT)
        self.last_dst = None
        for lvl, typ, cd in anc:
            if lvl == socket.IPPROTO_IPV6 and typ == socket.IPV6_PKTINFO:
                d = socket.inet_ntop(socket.AF_INET6, cd[:16])
                self.last_dst = d[7:] if d.startswith("::ffff:") else d
        return data, sa

    def close(self):
        self.stop = True
        time.sleep(0.05)
        self.sock.close()


def shareable(a, v):
    a = ipaddress.ip_address(a); v = ipaddress.ip_address(v)
    if a.version == 6 and a.ipv4_mapped:
        a = a.ipv4_mapped
    if a.is_loopback:
        return v.is_loopback
    if a.version == 4:
        return not (a.is_unspecified or a.is_link_local or a.is_multicast or str(a) == "255.255.255.255")
    return not (a.is_unspecified or a.is_multicast or a.is_link_local)
