"""Check tcwire's encoder against the test vectors of PROTOCOL.md §12 and §13.6."""
import re, sys, blake3
from tcwire import *

import os
text = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "PROTOCOL.md")).read()
V = {}
for m in re.finditer(r"^Vector: (\S+)\n\n```hex\n(.*?)```", text, re.M | re.S):
    V[m.group(1)] = bytes.fromhex(m.group(2).replace("\n", " "))
print(len(V), "vectors:", " ".join(V))

A, B = 0x0123456789abcdef, 0xfedcba9876543210
tokA = bytes.fromhex("3a6f019c52e87714b02dc9458e63f10b")
ckB = bytes.fromhex("c4197e205b930ad661fe384ca712e580")
ok = True


def check(name, got):
    global ok
    exp = V[name]
    good = got == exp
    ok &= good
    print("%-22s %s" % (name, "OK" if good else "MISMATCH\n  exp %s\n  got %s" % (exp.hex(" "), got.hex(" "))))


check("hello", datagram(A, 42, 0, [hello(tokA)]))
check("cookie", datagram(B, 7, 0, [cookie(tokA, ckB)]))
check("chat", datagram(A, 42, 3, [chat(2, 3, False, "héllo")]))
check("fragment", datagram(A, 42, 200, [(K_FRAGMENT, uv(130) + uv(4) + b"\x01" + uv(2) + uv(3) + bstr(b"ld!") + uv(0) + uv(183000))]))
check("ack", datagram(B, 7, 2, [ack_frame(1500, [(5, 6), (0, 3)])]))
check("nick", datagram(A, 42, 6, [(K_NICK, uv(5) + sstr("alicia"))]))
check("ping", datagram(B, 7, 3, [ping()]))
check("leave", datagram(A, 42, 7, [leave()]))
check("announce", datagram(A, 42, 0, [announce()]))
check("peers", datagram(B, 7, 4, [peers(3, [(0xc0ffee, "carol", [("192.168.1.20", 7654), ("fd7a:115c:a1e0::3", 7654)], 3)])]))
check("session-ack-chat", datagram(A, 42, 8, [session_frame(7), ack_frame(2000, [(0, 4)]), chat(0, 9, True, "hi bob", 0, 12)]))
check("action", datagram(A, 42, 9, [chat(6, 10, False, "waves", 1, 0)]))
check("presence", datagram(A, 42, 10, [(K_PRESENCE, uv(7) + b"\x01" + sstr("lunch")), (K_PRESENCE, uv(8) + b"\x00")]))

alice = Identity(b"\x01" * 32)
bob = Identity(b"\x02" * 32)
print("alice id %016x bob id %016x" % (alice.peer_id, bob.peer_id))
check("proof", datagram(alice.peer_id, 42, 0, [proof(alice, ckB, tokA, bob.peer_id, 42, 7, "alice", 7654)]))
check("proof-reply", datagram(bob.peer_id, 7, 0, [proof_reply(bob, tokA, alice.peer_id, 7, 42, "bob", 7654)]))

# decode every §12 vector
for n in ["hello", "cookie", "chat", "fragment", "ack", "ack-chat-unknown", "nick", "ping", "leave",
          "hello-extended", "announce", "peers", "session-ack-chat", "action", "presence", "proof", "proof-reply",
          "file-offer", "file-accept", "file-decline", "file-resume", "file-cancel", "file-done"]:
    s, ss, p, fr = parse_datagram(V[n])
    assert fr, n
# verify proof signatures by decoding
s, ss, p, fr = parse_datagram(V["proof"])
f = fr[0][1]
assert verify(f["key"], f["signature"], transcript(False, f["echo"], f["challenge"], s, bob.peer_id, ss, 7, f["key"], f["port"], f["caps"], f["nick"]))

# §13.6
man = manifest_encode([("a.txt", 3, blake3.blake3(b"hi\n").digest()), ("sub/b.txt", 9, blake3.blake3(b"tailchat\n").digest())])
check("file-manifest", man)
mf = manifest_encode([("a.txt", 3, blake3.blake3(b"hi\n").digest())], ["logs", "x/empty"])
check("file-manifest-folders", mf)
assert manifest_folders(mf) == ["logs", "x/empty"] and manifest_folders(man) == []
mh = blake3.blake3(man).digest()
print("manifest hash", mh.hex())
tid = 0x1f2e3d4c5b6a7988
tok = bytes.fromhex("5d21e40f93b76ac8127ed539a04b86f1")
check("file-offer", datagram(A, 42, 9, [appdata(6, ctl_offer(tid, tok, "notes", 12, 2, True, mh, len(man), 7654))]))
check("file-accept", datagram(B, 7, 5, [appdata(4, ctl_simple(C_ACCEPT, tid))]))
check("file-decline", datagram(B, 7, 5, [appdata(4, ctl_simple(C_DECLINE, tid))]))
check("file-resume", datagram(B, 7, 8, [appdata(5, ctl_resume(tid, 1, 4))]))
check("file-cancel", datagram(B, 7, 8, [appdata(5, ctl_cancel(tid, False, "disk full"))]))
check("file-done", datagram(B, 7, 9, [appdata(6, ctl_simple(C_DONE, tid))]))
check("file-request", data_request(tok, tid, 0, 0))
check("file-request-resume", data_request(tok, tid, 1, 4))
resp = FT_MAGIC + b"\x01\x00" + struct.pack("<I", len(man)) + man
check("file-response", resp + b"hi\ntailchat\n")
check("file-response-resume", resp + b"chat\n")
check("file-response-unknown", FT_MAGIC + b"\x01\x01")
# parse offer
c = parse_ctl(parse_datagram(V["file-offer"])[3][0][1]["data"])
assert c["port"] == 7654 and c["manifest_len"] == 83 and c["token"] == tok
print("ALL OK" if ok else "FAILURES")
sys.exit(0 if ok else 1)
