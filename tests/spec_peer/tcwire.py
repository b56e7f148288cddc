"""tailchat protocol v2 wire encoding, written from docs/PROTOCOL.md only."""
import struct
import blake3
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey, Ed25519PublicKey)
from cryptography.hazmat.primitives import serialization

MAGIC = b"TCHT"
VERSION = 2
MAX_DATAGRAM = 1200

K_HELLO, K_COOKIE, K_CHAT, K_FRAGMENT, K_ACK, K_PING, K_NICK, K_LEAVE, \
    K_ANNOUNCE, K_PEERS, K_SESSION, K_PROOF, K_PROOFREPLY, K_APPDATA, K_PRESENCE = range(1, 16)
KIND_NAMES = {1: "Hello", 2: "Cookie", 3: "Chat", 4: "Fragment", 5: "Ack", 6: "Ping", 7: "Nick",
              8: "Leave", 9: "Announce", 10: "Peers", 11: "Session", 12: "Proof",
              13: "ProofReply", 14: "AppData", 15: "Presence"}
STREAM_KINDS = {K_CHAT, K_FRAGMENT, K_NICK, K_PEERS, K_APPDATA, K_PRESENCE}
ACK_ELICITING = {K_CHAT, K_FRAGMENT, K_PING, K_NICK, K_LEAVE, K_PEERS, K_APPDATA, K_PRESENCE}


class DecodeError(Exception):
    pass


# ---------- primitives (§3) ----------
def uv(n):
    assert n >= 0
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def bstr(b):
    return uv(len(b)) + b


def sstr(s):
    return bstr(s.encode("utf-8"))


class R:
    def __init__(self, data):
        self.d = bytes(data)
        self.i = 0

    def left(self):
        return len(self.d) - self.i

    def raw(self, n):
        if n > self.left():
            raise DecodeError("truncated")
        v = self.d[self.i:self.i + n]
        self.i += n
        return v

    def u8(self):
        return self.raw(1)[0]

    def varint(self, bits=64):
        maxb = {16: 3, 32: 5, 64: 10}[bits]
        v = 0
        for k in range(maxb):
            b = self.u8()
            v |= (b & 0x7F) << (7 * k)
            if not b & 0x80:
                if v >> bits:
                    raise DecodeError("varint too wide")
                return v
        raise DecodeError("varint too long")

    def boolean(self):
        b = self.u8()
        if b > 1:
            raise DecodeError("bad bool")
        return b == 1

    def bytes_(self):
        n = self.varint()
        if n > self.left():
            raise DecodeError("length beyond data")
        return self.raw(n)

    def string(self):
        b = self.bytes_()
        try:
            return b.decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError("bad utf8")


def valid_nick(n):
    b = n.encode()
    return 1 <= len(b) <= 64 and b"#" not in b


# ---------- socket addr ----------
def enc_addr(ip, port):
    import ipaddress
    a = ipaddress.ip_address(ip)
    if a.version == 4:
        return b"\x00" + a.packed + uv(port)
    return b"\x01" + a.packed + uv(port)


def dec_addr(r):
    import ipaddress
    v = r.varint(32)
    if v == 0:
        ip = str(ipaddress.IPv4Address(r.raw(4)))
    elif v == 1:
        ip = str(ipaddress.IPv6Address(r.raw(16)))
    else:
        raise DecodeError("bad addr variant")
    return (ip, r.varint(16))


# ---------- datagram ----------
def datagram(sender, session, packet, frames):
    """frames: list of (kind, body bytes)."""
    out = MAGIC + bytes([VERSION]) + uv(sender) + uv(session) + uv(packet)
    for kind, body in frames:
        out += uv(kind) + bstr(body)
    return out


def parse_datagram(data):
    """Returns (sender, session, packet, [(kind, fields-dict)]); unknown kinds skipped."""
    if len(data) > MAX_DATAGRAM:
        raise DecodeError("too long")
    if len(data) < 5 or data[:4] != MAGIC:
        raise DecodeError("not tailchat")
    if data[4] != VERSION:
        raise DecodeError("version %d" % data[4])
    r = R(data)
    r.i = 5
    sender = r.varint()
    session = r.varint()
    packet = r.varint()
    frames = []
    while r.left():
        kind = r.varint(32)
        body = r.bytes_()
        if kind < 1 or kind > 15:
            continue
        frames.append((kind, decode_body(kind, body)))
    return sender, session, packet, frames


def decode_body(kind, body):
    r = R(body)
    f = {}
    if kind == K_HELLO:
        f["token"] = r.raw(16); f["caps"] = r.varint()
    elif kind == K_COOKIE:
        f["echo"] = r.raw(16); f["cookie"] = r.raw(16)
    elif kind == K_CHAT:
        f["seq"] = r.varint(); f["msg"] = r.varint(); f["direct"] = r.boolean()
        f["text"] = r.string(); f["flags"] = r.varint(); f["age_ms"] = r.varint()
    elif kind == K_FRAGMENT:
        f["seq"] = r.varint(); f["msg"] = r.varint(); f["direct"] = r.boolean()
        f["index"] = r.varint(16); f["count"] = r.varint(16); f["data"] = r.bytes_()
        f["flags"] = r.varint(); f["age_ms"] = r.varint()
        if not (f["count"] >= 2 and f["index"] < f["count"] and f["data"]):
            raise DecodeError("bad fragment")
    elif kind == K_ACK:
        f["delay_us"] = r.varint()
        n = r.varint()
        if not 1 <= n <= 64:
            raise DecodeError("ack ranges count")
        rs = []
        for _ in range(n):
            a = r.varint(); b = r.varint()
            if a > b:
                raise DecodeError("range first>last")
            if rs and not (b + 1 < rs[-1][0]):
                raise DecodeError("ranges order")
            rs.append((a, b))
        f["ranges"] = rs
    elif kind in (K_PING, K_LEAVE):
        pass
    elif kind == K_NICK:
        f["seq"] = r.varint(); f["nick"] = r.string()
        if not valid_nick(f["nick"]):
            raise DecodeError("bad nick")
    elif kind == K_ANNOUNCE:
        f["caps"] = r.varint()
    elif kind == K_PEERS:
        f["seq"] = r.varint()
        n = r.varint()
        if not 1 <= n <= 16:
            raise DecodeError("peers count")
        ents = []
        for _ in range(n):
            pid = r.varint(); nick = r.string()
            if not valid_nick(nick):
                raise DecodeError("bad nick")
            na = r.varint()
            if not 1 <= na <= 4:
                raise DecodeError("addrs count")
            addrs = [dec_addr(r) for _ in range(na)]
            heard = r.varint(32)
            ents.append(dict(id=pid, nick=nick, addrs=addrs, heard_secs=heard))
        f["peers"] = ents
    elif kind == K_SESSION:
        f["session"] = r.varint()
    elif kind == K_PROOF:
        f["key"] = r.raw(32); f["echo"] = r.raw(16); f["challenge"] = r.raw(16)
        f["nick"] = r.string(); f["port"] = r.varint(16); f["caps"] = r.varint()
        f["signature"] = r.raw(64)
        if not valid_nick(f["nick"]):
            raise DecodeError("bad nick")
    elif kind == K_PROOFREPLY:
        f["key"] = r.raw(32); f["echo"] = r.raw(16)
        f["nick"] = r.string(); f["port"] = r.varint(16); f["caps"] = r.varint()
        f["signature"] = r.raw(64)
        if not valid_nick(f["nick"]):
            raise DecodeError("bad nick")
    elif kind == K_APPDATA:
        f["seq"] = r.varint(); f["data"] = r.bytes_()
        if len(f["data"]) > 1000:
            raise DecodeError("appdata too long")
    elif kind == K_PRESENCE:
        f["seq"] = r.varint()
        t = r.u8()
        if t == 0:
            f["away"] = None
        elif t == 1:
            f["away"] = r.string()
            if len(f["away"].encode()) > 256:
                raise DecodeError("away too long")
        else:
            raise DecodeError("bad option")
    return f


# ---------- frame bodies ----------
def hello(token, caps=0):
    return (K_HELLO, token + uv(caps))


def cookie(echo, ck):
    return (K_COOKIE, echo + ck)


def session_frame(s):
    return (K_SESSION, uv(s))


def ack_frame(delay_us, ranges):
    b = uv(delay_us) + uv(len(ranges))
    for a, z in ranges:
        b += uv(a) + uv(z)
    return (K_ACK, b)


def ping():
    return (K_PING, b"")


def leave():
    return (K_LEAVE, b"")


def announce(caps=0):
    return (K_ANNOUNCE, uv(caps))


def peers(seq, entries):
    """entries: list of (peer_id, nick, [(ip, port)], heard_secs)."""
    b = uv(seq) + uv(len(entries))
    for pid, nick, addrs, heard_secs in entries:
        b += uv(pid) + sstr(nick) + uv(len(addrs))
        for ip, port in addrs:
            b += enc_addr(ip, port)
        b += uv(heard_secs)
    return (K_PEERS, b)


def appdata(seq, data):
    return (K_APPDATA, uv(seq) + bstr(data))


def chat(seq, msg, direct, text, flags=0, age_ms=0):
    return (K_CHAT, uv(seq) + uv(msg) + bytes([1 if direct else 0]) + sstr(text) + uv(flags) + uv(age_ms))


# ---------- identity (§7, §5.11) ----------
def peer_id_of(pub):
    return int.from_bytes(blake3.blake3(pub).digest()[:8], "big")


class Identity:
    def __init__(self, seed=None):
        self.sk = Ed25519PrivateKey.from_private_bytes(seed) if seed else Ed25519PrivateKey.generate()
        self.pub = self.sk.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.peer_id = peer_id_of(self.pub)

    def sign(self, m):
        return self.sk.sign(m)


def transcript(reply, echo, challenge, signer_id, recv_id, signer_sess, recv_sess, key, port, caps, nick):
    dom = b"tailchat/2 proof-reply\x00" if reply else b"tailchat/2 proof\x00"
    nb = nick.encode()
    return (dom + echo + (challenge if not reply else b"\x00" * 16)
            + struct.pack(">QQQQ", signer_id, recv_id, signer_sess, recv_sess)
            + key + struct.pack(">HQ", port, caps) + bytes([len(nb)]) + nb)


def verify(key, sig, msg):
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(sig, msg)
        return True
    except Exception:
        return False


def proof(ident, echo, challenge, recv_id, my_sess, recv_sess, nick, port, caps=0):
    sig = ident.sign(transcript(False, echo, challenge, ident.peer_id, recv_id, my_sess, recv_sess,
                                ident.pub, port, caps, nick))
    return (K_PROOF, ident.pub + echo + challenge + sstr(nick) + uv(port) + uv(caps) + sig)


def proof_reply(ident, echo, recv_id, my_sess, recv_sess, nick, port, caps=0):
    sig = ident.sign(transcript(True, echo, None, ident.peer_id, recv_id, my_sess, recv_sess,
                                ident.pub, port, caps, nick))
    return (K_PROOFREPLY, ident.pub + echo + sstr(nick) + uv(port) + uv(caps) + sig)


# ---------- file transfer (§13) ----------
FT_TAG = 1
C_OFFER, C_ACCEPT, C_DECLINE, C_RESUME, C_CANCEL, C_DONE = range(6)
CTRL_NAMES = ["Offer", "Accept", "Decline", "Resume", "Cancel", "Done"]


def ctl_offer(id_, token, name, size, files, folder, mhash, mlen, port):
    return (bytes([FT_TAG]) + uv(C_OFFER) + uv(id_) + token + sstr(name) + uv(size) + uv(files)
            + bytes([1 if folder else 0]) + mhash + uv(mlen) + uv(port))


def ctl_simple(variant, id_):
    return bytes([FT_TAG]) + uv(variant) + uv(id_)


def ctl_resume(id_, file, offset):
    return bytes([FT_TAG]) + uv(C_RESUME) + uv(id_) + uv(file) + uv(offset)


def ctl_cancel(id_, by_offerer, reason):
    return bytes([FT_TAG]) + uv(C_CANCEL) + uv(id_) + bytes([1 if by_offerer else 0]) + sstr(reason)


def parse_ctl(data):
    r = R(data)
    if r.u8() != FT_TAG:
        return None
    v = r.varint(32)
    c = {"variant": v, "name_": CTRL_NAMES[v] if v < 6 else "?", "id": None}
    if v > 5:
        raise DecodeError("unknown control variant")
    c["id"] = r.varint()
    if v == C_OFFER:
        c["token"] = r.raw(16); c["name"] = r.string(); c["size"] = r.varint()
        c["files"] = r.varint(32); c["folder"] = r.boolean(); c["manifest_hash"] = r.raw(32)
        c["manifest_len"] = r.varint(32); c["port"] = r.varint(16)
        if not 1 <= len(c["name"].encode()) <= 255:
            raise DecodeError("name length")
    elif v == C_RESUME:
        c["file"] = r.varint(32); c["offset"] = r.varint()
    elif v == C_CANCEL:
        c["by_offerer"] = r.boolean(); c["reason"] = r.string()
    return c


def manifest_encode(entries, folders=()):
    """entries: list of (path, size, hash32); folders: the empty folders (section 13.3),
    written only if there are any"""
    out = uv(len(entries))
    for p, s, h in entries:
        out += sstr(p) + uv(s) + h
    if folders:
        out += uv(len(folders))
        for p in folders:
            out += sstr(p)
    return out


def manifest_decode(b):
    r = R(b)
    n = r.varint()
    if n > 5000:
        raise DecodeError("too many files")
    ents = []
    for _ in range(n):
        p = r.string(); s = r.varint(); h = r.raw(32)
        if not 1 <= len(p.encode()) <= 1024:
            raise DecodeError("path length")
        ents.append((p, s, h))
    return ents


def manifest_folders(b):
    """The empty folders after the entries (section 13.3): the list if the bytes there decode
    as one within its limits, else none."""
    r = R(b)
    n = r.varint()
    for _ in range(n):
        r.string(); r.varint(); r.raw(32)
    if not r.left():
        return []
    try:
        k = r.varint()
        if not 1 <= k <= 5000:
            return []
        out = [r.string() for _ in range(k)]
    except Exception:
        return []
    if not all(1 <= len(p.encode()) <= 1024 for p in out):
        return []
    return out


FT_MAGIC = b"TCHF"
FT_VERSION = 1


def data_request(token, id_, file, offset):
    return FT_MAGIC + bytes([FT_VERSION]) + token + struct.pack("<QIQ", id_, file, offset)


def parse_data_request(b):
    if len(b) != 41 or b[:4] != FT_MAGIC or b[4] != FT_VERSION:
        return None
    id_, file, offset = struct.unpack("<QIQ", b[21:41])
    return dict(token=b[5:21], id=id_, file=file, offset=offset)
