"""End-to-end: specpeer <-> real tailchat on loopback."""
import os, sys, time, socket, tempfile, shutil
sys.path.insert(0, os.path.dirname(__file__))
from specpeer import Peer
from tcproc import Tailchat

BIN = os.environ.get("TAILCHAT_BIN", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "target", "debug", "tailchat"))


def free_port():
    # a port free for both UDP and TCP on 127.0.0.1
    while True:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0))
        p = u.getsockname()[1]
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            t.bind(("127.0.0.1", p)); t.close(); u.close(); return p
        except OSError:
            u.close(); t.close()


class TC(Tailchat):
    def __init__(self, root, peer_port=None, nick="tc", extra=()):
        self.root = root
        self.dl = os.path.join(root, "downloads")
        self.port = free_port()
        args = [BIN, "--nick", nick, "--no-discovery", "--bind", "127.0.0.1", "--port", str(self.port),
                "--data-dir", os.path.join(root, "data"), "--download-dir", self.dl, "--wait", "10"]
        if peer_port:
            args += ["--peer", "127.0.0.1:%d" % peer_port]
        args += list(extra)
        Tailchat.__init__(self, args, os.path.join(root, "home"), out_tag="TC>", in_tag="TC<", err_tag="TC!",
                          env=dict(XDG_DOWNLOAD_DIR=self.dl, RUST_LOG=os.environ.get("TC_LOG", "warn")))

    def quit(self):
        try:
            self.cmd("/quit")
            self.p.wait(5)
        except Exception:
            self.p.kill()
        return self.p.returncode


def make_tree(d):
    os.makedirs(os.path.join(d, "sub", "deeper"), exist_ok=True)
    open(os.path.join(d, "a.txt"), "wb").write(b"hi\n")
    open(os.path.join(d, "sub", "b.txt"), "wb").write(b"tailchat\n")
    open(os.path.join(d, "sub", "deeper", "big.bin"), "wb").write(os.urandom(3_000_000 + 17))
    open(os.path.join(d, "empty"), "wb").write(b"")
    open(os.path.join(d, "z é.bin"), "wb").write(os.urandom(70000))
    os.makedirs(os.path.join(d, "logs"), exist_ok=True)
    os.makedirs(os.path.join(d, "x", "empty"), exist_ok=True)


def same_tree(a, b):
    bad = []
    for dp, dn, fn in os.walk(a):
        for f in dn:
            if not os.path.isdir(os.path.join(b, os.path.relpath(os.path.join(dp, f), a))):
                bad.append(os.path.relpath(os.path.join(dp, f), a) + "/")
        for f in fn:
            pa = os.path.join(dp, f)
            pb = os.path.join(b, os.path.relpath(pa, a))
            if not os.path.exists(pb) or open(pa, "rb").read() != open(pb, "rb").read():
                bad.append(os.path.relpath(pa, a))
    return bad


def offer_to_tc(peer, tc, tc_pid, path, what, timeout):
    """The spec peer offers path to tailchat, which is told to /accept it; the spec peer's done or
    cancel event for it, or None if neither comes within timeout seconds."""
    with peer.lock:
        peer.events.clear()
    n0 = len(tc.lines)
    peer.offer(tc_pid, path)
    m = tc.wait_line(r"/accept (\d+)", 10, n0)
    assert m, "tailchat did not show the %s" % what
    tc.cmd("/accept %s" % m.group(1))
    return peer.wait_event(lambda e: e[0] in ("done", "cancel"), timeout)


def main():
    root = tempfile.mkdtemp(prefix="specpeer-")
    print("root", root)
    peer = Peer(nick="spec", download_dir=os.path.join(root, "spec-dl"))
    tc = TC(os.path.join(root, "tc"), peer_port=peer.port, nick="tc")
    results = {}
    try:
        assert tc.wait_line(r"spec joined", 15), "tailchat never reported spec joined"
        j = peer.wait_event(lambda e: e[0] == "join", 5)
        assert j, "no join at specpeer"
        tc_pid = int(j[1], 16)

        # chat both ways
        tc.cmd("hello from tc")
        assert peer.wait_event(lambda e: e[0] == "chat" and e[2] == "hello from tc", 5), "chat tc->spec"
        with peer.lock:
            peer.send_chat(tc_pid, "hello from spec", int(time.time() * 1000) << 12)
        results["chat spec->tc"] = bool(tc.wait_line(r"<spec> hello from spec", 5))

        # (1) tailchat offers a single file and a folder; spec receives
        src = os.path.join(root, "src"); make_tree(src)
        single = os.path.join(root, "single.bin"); open(single, "wb").write(os.urandom(1_234_567))
        tc.cmd("/send spec %s" % single)
        e = peer.wait_event(lambda e: e[0] in ("received", "receive-failed") or e[0] == "offer", 10)
        assert e and e[0] == "offer", e
        with peer.lock:
            key = [k for k, o in peer.incoming.items() if o["state"] == "offered"][0]
        peer.accept(key, peer.download_dir)
        e = peer.wait_event(lambda e: e[0] in ("received", "receive-failed"), 20)
        ok = e and e[0] == "received" and open(e[2][0], "rb").read() == open(single, "rb").read()
        results["recv single file"] = bool(ok)
        results["tc says sent single"] = bool(tc.wait_line(r"sent single\.bin to spec", 10))

        with peer.lock:
            peer.events.clear()
        tc.cmd("/send spec %s" % src)
        e = peer.wait_event(lambda e: e[0] == "offer", 10)
        assert e, "no folder offer"
        with peer.lock:
            key = [k for k, o in peer.incoming.items() if o["state"] == "offered"][0]
        peer.accept(key, peer.download_dir)
        e = peer.wait_event(lambda e: e[0] in ("received", "receive-failed"), 30)
        results["recv folder"] = bool(e and e[0] == "received" and not same_tree(src, os.path.join(peer.download_dir, "src")))
        results["tc says sent folder"] = bool(tc.wait_line(r"sent src/ to spec", 10))

        # (2) spec offers; tailchat receives
        s2 = os.path.join(root, "to-tc.bin"); open(s2, "wb").write(os.urandom(2_500_001))
        e = offer_to_tc(peer, tc, tc_pid, s2, "offer", 20)
        got = os.path.join(tc.dl, "to-tc.bin")
        results["send single file"] = bool(e and e[0] == "done" and os.path.exists(got) and open(got, "rb").read() == open(s2, "rb").read())

        src2 = os.path.join(root, "folder2"); make_tree(src2)
        e = offer_to_tc(peer, tc, tc_pid, src2, "folder offer", 30)
        results["send folder"] = bool(e and e[0] == "done" and not same_tree(src2, os.path.join(tc.dl, "folder2")))
    finally:
        rc = tc.quit()
        print("tailchat exit", rc)
        for k, v in results.items():
            print("RESULT %-22s %s" % (k, "PASS" if v else "FAIL"))
        shutil.rmtree(root, ignore_errors=True)
    expected = 7
    passed = sum(1 for v in results.values() if v)
    print("spec peer: %d of %d checks passed" % (passed, expected))
    return 0 if passed == expected and len(results) == expected else 1


if __name__ == "__main__":
    sys.exit(main())
