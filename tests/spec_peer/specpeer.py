"""A minimal tailchat v2 peer, from docs/PROTOCOL.md alone: handshake, link, file transfer."""
import os, socket, struct, threading, time, random, select, blake3, secrets, sys
from tcwire import *

LOG = []


def log(*a):
    line = "%.3f specpeer: %s" % (time.time() % 1000, " ".join(str(x) for x in a))
    LOG.append(line)
    print(line, flush=True)


def now():
    return time.monotonic()


class Link:
    def __init__(self, pid, session, addr, key, nick):
        self.pid, self.session, self.addr, self.key, self.nick = pid, session, addr, key, nick
        self.next_pn = 0
        self.next_seq = 0
        self.unacked = {}       # seq -> (kind, body)
        self.unsent = []        # seqs to (re)send, sorted
        self.inflight = {}      # pn -> (time, [seqs], ping)
        self.recv_pns = set()
        self.owe_ack = False
        self.last_recv_time = now()
        self.recv_next = 0
        self.recv_buf = {}
        self.ping_pending = False


class Peer:
    def __init__(self, nick="specpeer", download_dir="/tmp/specpeer-dl", on_event=None, seed=None):
        self._init_state(Identity(seed), nick, download_dir, on_event)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(16)
        self.tcp_port = self.tcp.getsockname()[1]
        log("PeerId %016x session %d udp %d tcp %d" % (self.ident.peer_id, self.session, self.port, self.tcp_port))
        threading.Thread(target=self._udp_loop, daemon=True).start()
        threading.Thread(target=self._tcp_loop, daemon=True).start()

    def _init_state(self, ident, nick, download_dir, on_event):
        """What every peer keeps, whatever sockets it opens (DiscPeer opens others than Peer)."""
        self.ident = ident
        self.session = ((int(time.time() * 1000) << 16) | random.getrandbits(16) | 1)
        self.nick = nick
        self.secret = secrets.token_bytes(32)
        self.tokens = {}        # addr -> token we sent in Hello
        self.links = {}         # pid -> Link
        self.lock = threading.RLock()
        self.download_dir = download_dir
        self.incoming = {}      # (offerer pid, id) -> offer dict
        self.outgoing = {}      # id -> offer state
        self.events = []
        self.on_event = on_event
        self.stop = False
        self.stats = {"dropped": 0}

    def event(self, *e):
        with self.lock:
            self.events.append(e)
        log("EVENT", *e)

    def wait_event(self, pred, timeout):
        end = now() + timeout
        while now() < end:
            with self.lock:
                for e in self.events:
                    if pred(e):
                        return e
            time.sleep(0.02)
        return None

    # ---------------- handshake ----------------
    def hello(self, addr):
        tok = self.tokens.setdefault(addr, secrets.token_bytes(16))
        self._send(addr, datagram(self.ident.peer_id, self.session, 0, [hello(tok)]))

    def _cookie_for(self, addr, pid, sess):
        return blake3.blake3(repr((addr, pid, sess)).encode(), key=self.secret).digest()[:16]

    def _send(self, addr, dg):
        assert addr[0].startswith("127."), "network safety: loopback only"
        assert len(dg) <= MAX_DATAGRAM
        self.sock.sendto(dg, addr)

    def _admit(self, pid, sess, addr, key, nick):
        l = self.links.get(pid)
        if l is None or sess > l.session:
            l = Link(pid, sess, addr, key, nick)
            self.links[pid] = l
            self.event("join", "%016x" % pid, nick, addr)
        else:
            l.addr = addr
        return l

    def _handle(self, data, addr):
        try:
            sender, sess, pn, frames = parse_datagram(data)
        except DecodeError as e:
            self.stats["dropped"] += 1
            log("drop from", addr, e, data[:40].hex())
            return
        if sender == self.ident.peer_id:
            return
        if not frames:
            return
        k0, f0 = frames[0]
        if k0 == K_HELLO:
            ck = self._cookie_for(addr, sender, sess)
            self._send(addr, datagram(self.ident.peer_id, self.session, 0, [cookie(f0["token"], ck)]))
            return
        if k0 == K_COOKIE:
            if self.tokens.get(addr) != f0["echo"]:
                log("bad cookie echo"); return
            l = self.links.get(sender)
            if l and l.session == sess and l.addr == addr:
                return
            self._send(addr, datagram(self.ident.peer_id, self.session, 0, [
                proof(self.ident, f0["cookie"], self.tokens[addr], sender, self.session, sess, self.nick, self.port)]))
            return
        if k0 in (K_PROOF, K_PROOFREPLY):
            if k0 == K_PROOF:
                if f0["echo"] != self._cookie_for(addr, sender, sess):
                    log("proof: bad echo"); return
            else:
                if f0["echo"] != self.tokens.get(addr):
                    log("proofreply: bad echo"); return
            if peer_id_of(f0["key"]) != sender:
                log("proof: key/id mismatch"); return
            tr = transcript(k0 == K_PROOFREPLY, f0["echo"], f0.get("challenge"), sender, self.ident.peer_id,
                            sess, self.session, f0["key"], f0["port"], f0["caps"], f0["nick"])
            if not verify(f0["key"], f0["signature"], tr):
                log("proof: bad signature"); return
            l = self.links.get(sender)
            if l and sess < l.session:
                return
            self._admit(sender, sess, addr, f0["key"], f0["nick"])
            if k0 == K_PROOF:
                self._send(addr, datagram(self.ident.peer_id, self.session, 0, [
                    proof_reply(self.ident, f0["challenge"], sender, self.session, sess, self.nick, self.port)]))
            return
        if k0 == K_ANNOUNCE:
            return
        # link datagram
        l = self.links.get(sender)
        eliciting = any(k in ACK_ELICITING for k, _ in frames)
        if l is None or l.addr != addr or l.session != sess or any(
                k == K_SESSION and f["session"] != self.session for k, f in frames):
            log("unplaceable datagram from", addr, "kinds", [KIND_NAMES[k] for k, _ in frames])
            if eliciting:
                self.hello(addr)
            return
        if eliciting:
            if pn in l.recv_pns:
                pass
            l.recv_pns.add(pn)
            l.owe_ack = True
            l.last_recv_time = now()
        for k, f in frames:
            if k == K_ACK:
                self._on_ack(l, f["ranges"])
            elif k in STREAM_KINDS:
                s = f["seq"]
                if s >= l.recv_next and s not in l.recv_buf:
                    l.recv_buf[s] = (k, f)
            elif k == K_LEAVE:
                self.event("leave", "%016x" % sender)
        while l.recv_next in l.recv_buf:
            k, f = l.recv_buf.pop(l.recv_next)
            l.recv_next += 1
            self._deliver(l, k, f)

    def _on_ack(self, l, ranges):
        for pn in list(l.inflight):
            if any(a <= pn <= b for a, b in ranges):
                t, seqs, pg = l.inflight.pop(pn)
                for s in seqs:
                    l.unacked.pop(s, None)

    def _deliver(self, l, k, f):
        if k == K_CHAT:
            self.event("chat", l.nick, f["text"])
        elif k == K_NICK:
            l.nick = f["nick"]
            self.event("nick", f["nick"])
        elif k == K_APPDATA:
            d = f["data"]
            if not d or d[0] != FT_TAG:
                log("appdata for other app", d[:1].hex()); return
            try:
                c = parse_ctl(d)
            except DecodeError as e:
                log("malformed control", e, d.hex()); return
            self._on_control(l, c)
        else:
            log("delivered", KIND_NAMES[k], f)

    # ---------------- link sending ----------------
    def queue_item(self, pid, kind, body_fn):
        with self.lock:
            l = self.links[pid]
            s = l.next_seq
            l.next_seq += 1
            l.unacked[s] = (kind, body_fn(s))
            l.unsent.append(s)
            return s

    def send_appdata(self, pid, data):
        assert len(data) <= 1000
        return self.queue_item(pid, K_APPDATA, lambda s: appdata(s, data)[1])

    def send_chat(self, pid, text, msg_id):
        return self.queue_item(pid, K_CHAT, lambda s: chat(s, msg_id, False, text)[1])

    def _ack_ranges(self, l):
        pns = sorted(l.recv_pns, reverse=True)
        rs = []
        for p in pns:
            if rs and rs[-1][0] == p + 1:
                rs[-1][0] = p
            else:
                rs.append([p, p])
        return [(a, b) for a, b in rs[:16]]

    def _flush(self):
        t = now()
        for l in self.links.values():
            # retransmission timeout (simple: 300 ms)
            for pn, (st, seqs, pg) in list(l.inflight.items()):
                if t - st > 0.3:
                    del l.inflight[pn]
                    for s in seqs:
                        if s in l.unacked and s not in l.unsent:
                            l.unsent.append(s)
                    l.unsent.sort()
            items = [s for s in l.unsent if s in l.unacked]
            if not items and not l.owe_ack and not l.ping_pending:
                continue
            frames = [session_frame(l.session)]
            if l.recv_pns:
                frames.append(ack_frame(int((t - l.last_recv_time) * 1e6), self._ack_ranges(l)))
            size = 60 + sum(len(b) + 4 for _, b in frames)
            sent = []
            for s in items:
                k, b = l.unacked[s]
                if size + len(b) + 6 > MAX_DATAGRAM:
                    break
                frames.append((k, b)); sent.append(s); size += len(b) + 6
            ping_now = l.ping_pending and not sent
            if ping_now:
                frames.append(ping())
            elic = bool(sent) or ping_now
            pn = l.next_pn
            dg = datagram(self.ident.peer_id, self.session, pn, frames)
            if elic:
                l.next_pn += 1
                l.inflight[pn] = (t, sent, ping_now)
                l.ping_pending = False
            for s in sent:
                l.unsent.remove(s)
            l.owe_ack = False
            self._send(l.addr, dg)

    def _recv(self):
        """(data, sender address) of a datagram waiting on the socket; BlockingIOError if none is."""
        return self.sock.recvfrom(65536, socket.MSG_DONTWAIT)

    def _udp_loop(self):
        """Until stop: up to 64 datagrams at a time to _handle as they come, then _flush, every 10 ms."""
        while not self.stop:
            r, _, _ = select.select([self.sock], [], [], 0.01)
            with self.lock:
                if self.stop:
                    return
                if r:
                    for _ in range(64):
                        try:
                            data, addr = self._recv()
                        except BlockingIOError:
                            break
                        try:
                            self._handle(data, addr)
                        except Exception:
                            import traceback; traceback.print_exc()
                self._flush()

    # ---------------- file transfer: receiving ----------------
    def _on_control(self, l, c):
        log("control from %s: %s" % (l.nick, {k: (v.hex() if isinstance(v, bytes) else v) for k, v in c.items()}))
        key = (l.pid, c["id"])
        v = c["variant"]
        if v == C_OFFER:
            if key in self.incoming:
                old = self.incoming[key]
                if old["state"] == "done":
                    self.send_appdata(l.pid, ctl_simple(C_DONE, c["id"]))
                else:
                    old["port"] = c["port"]
                return
            c["state"] = "offered"
            c["from"] = l.pid
            self.incoming[key] = c
            self.event("offer", c["name"], c["size"], c["files"], c["folder"])
        elif v in (C_ACCEPT, C_DECLINE, C_DONE, C_RESUME, C_CANCEL):
            o = self.outgoing.get(c["id"])
            if v == C_CANCEL and not c["by_offerer"] and o is None:
                return
            if v == C_CANCEL and c["by_offerer"]:
                self.event("cancel-by-offerer", c["id"], c["reason"])
                return
            if o is None:
                log("control for unknown transfer"); return
            self.event(c["name_"].lower(), "%016x" % c["id"], c.get("reason"))
            if v in (C_DONE, C_DECLINE, C_CANCEL):
                o["state"] = c["name_"].lower()

    def accept(self, key, dest):
        with self.lock:
            o = self.incoming[key]
            o["state"] = "accepted"
            self.send_appdata(key[0], ctl_simple(C_ACCEPT, o["id"]))
            ip = self.links[key[0]].addr[0]
        threading.Thread(target=self._fetch, args=(key, ip, dest), daemon=True).start()

    def _fetch(self, key, ip, dest):
        o = self.incoming[key]
        try:
            res = self._fetch_inner(o, ip, dest)
            o["state"] = "done"
            with self.lock:
                self.send_appdata(key[0], ctl_simple(C_DONE, o["id"]))
            self.event("received", o["name"], res)
        except Exception as e:
            import traceback; traceback.print_exc()
            o["state"] = "failed"
            with self.lock:
                self.send_appdata(key[0], ctl_cancel(o["id"], False, ("error: %s" % e)[:200]))
            self.event("receive-failed", str(e))

    def _fetch_inner(self, o, ip, dest):
        assert ip.startswith("127.")
        s = socket.create_connection((ip, o["port"]), timeout=10)

        def readn(n):
            b = bytearray()
            while len(b) < n:
                x = s.recv(min(1 << 20, n - len(b)))
                if not x:
                    raise IOError("connection ended early (%d of %d)" % (len(b), n))
                b += x
            return bytes(b)
        s.sendall(data_request(o["token"], o["id"], 0, 0))
        pre = readn(6)
        if pre[:5] != FT_MAGIC + b"\x01":
            raise IOError("bad prelude %s" % pre.hex())
        if pre[5] != 0:
            raise IOError("status %d" % pre[5])
        mlen = struct.unpack("<I", readn(4))[0]
        if mlen != o["manifest_len"]:
            raise IOError("manifest length %d != offer %d" % (mlen, o["manifest_len"]))
        man = readn(mlen)
        if blake3.blake3(man).digest() != o["manifest_hash"]:
            raise IOError("manifest hash mismatch")
        ents = manifest_decode(man)
        if len(ents) != o["files"] or sum(e[1] for e in ents) != o["size"]:
            raise IOError("manifest does not match offer")
        if not o["folder"] and len(ents) != 1:
            raise IOError("single file offer with %d entries" % len(ents))
        top = os.path.join(dest, o["name"].replace("/", "_")) if o["folder"] else dest
        written = []
        for path, size, h in ents:
            comps = [c for c in path.split("/") if c not in ("", ".", "..")]
            p = os.path.join(top, *comps) if o["folder"] else os.path.join(dest, comps[-1])
            os.makedirs(os.path.dirname(p), exist_ok=True)
            hh = blake3.blake3()
            with open(p + ".part", "wb") as f:
                left = size
                while left:
                    x = s.recv(min(1 << 20, left))
                    if not x:
                        raise IOError("connection ended early in %s" % path)
                    hh.update(x); f.write(x); left -= len(x)
            if hh.digest() != h:
                os.unlink(p + ".part")
                raise IOError("hash mismatch for %s" % path)
            os.rename(p + ".part", p)
            written.append(p)
        s.settimeout(5)
        extra = s.recv(1)
        if extra:
            raise IOError("more than it offered")
        s.close()
        if o["folder"]:
            for path in manifest_folders(man):
                comps = [c for c in path.split("/") if c not in ("", ".", "..")]
                if comps:
                    os.makedirs(os.path.join(top, *comps), exist_ok=True)
        return written

    # ---------------- file transfer: sending ----------------
    def offer(self, pid, path, name=None, hook=None, tweak=None):
        path = os.path.abspath(path)
        folder = os.path.isdir(path)
        files = []
        empty = []
        if folder:
            def walk(d, rel):
                before = (len(files), len(empty))
                for n in sorted(os.listdir(d), key=lambda x: x.encode()):
                    full = os.path.join(d, n)
                    if os.path.islink(full):
                        continue
                    if os.path.isdir(full):
                        walk(full, rel + [n])
                    elif os.path.isfile(full):
                        files.append(("/".join(rel + [n]), full))
                if rel and before == (len(files), len(empty)):
                    empty.append("/".join(rel))
            walk(path, [])
        else:
            files.append((name or os.path.basename(path), path))
        ents = []
        for rel, full in files:
            data = open(full, "rb").read()
            ents.append((rel, len(data), blake3.blake3(data).digest()))
        man = manifest_encode(ents, empty)
        id_ = random.getrandbits(64)
        tok = secrets.token_bytes(16)
        o = dict(id=id_, token=tok, name=name or os.path.basename(path), files=files, ents=ents,
                 manifest=man, state="offered", pid=pid, served=0, hook=hook)
        self.outgoing[id_] = o
        f = dict(id_=id_, token=tok, name=o["name"], size=sum(e[1] for e in ents), files=len(ents), folder=folder,
                 mhash=blake3.blake3(man).digest(), mlen=len(man), port=self.tcp_port)
        if tweak:
            tweak(f)
        o["offer_fields"] = f
        ctl = ctl_offer(**f)
        with self.lock:
            self.send_appdata(pid, ctl)
        log("offered %s id %016x (%d files, %d bytes)" % (o["name"], id_, len(ents), sum(e[1] for e in ents)))
        return id_

    def _tcp_loop(self):
        while not self.stop:
            c, a = self.tcp.accept()
            threading.Thread(target=self._serve, args=(c, a), daemon=True).start()

    def _serve(self, c, a):
        try:
            c.settimeout(30)
            req = b""
            while len(req) < 41:
                x = c.recv(41 - len(req))
                if not x:
                    break
                req += x
            r = parse_data_request(req)
            log("data request from", a, req.hex())
            if r is None:
                c.close(); return
            o = self.outgoing.get(r["id"])
            if o is None or o["token"] != r["token"] or o["state"] in ("done", "decline", "cancel"):
                c.sendall(FT_MAGIC + b"\x01\x01"); c.close(); return
            n = len(o["ents"])
            fi, off = r["file"], r["offset"]
            if not ((fi < n and off <= o["ents"][fi][1]) or (fi == n and off == 0)):
                c.sendall(FT_MAGIC + b"\x01\x03"); c.close(); return
            o.setdefault("requests", []).append(r)
            hook = o.get("hook")
            if hook and hook(o, r, c):
                return
            c.sendall(FT_MAGIC + b"\x01\x00" + struct.pack("<I", len(o["manifest"])) + o["manifest"])
            for i in range(fi, n):
                with open(o["files"][i][1], "rb") as f:
                    if i == fi:
                        f.seek(off)
                    while True:
                        b = f.read(1 << 20)
                        if not b:
                            break
                        c.sendall(b)
            o["served"] += 1
            c.shutdown(socket.SHUT_WR)
            c.close()
            self.event("served", "%016x" % o["id"])
        except Exception as e:
            log("serve error", e)
