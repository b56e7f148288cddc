"""End-to-end: specpeer <-> real tailchat on loopback."""
import os, sys, subprocess, threading, time, socket, tempfile, re, shutil, filecmp, hashlib
sys.path.insert(0, os.path.dirname(__file__))
from specpeer import Peer, log

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


class TC:
    def __init__(self, root, peer_port=None, nick="tc", extra=()):
        self.root = root
        home = os.path.join(root, "home")
        os.makedirs(home, exist_ok=True)
        self.dl = os.path.join(root, "downloads")
        self.port = free_port()
        env = dict(os.environ, HOME=home, XDG_DATA_HOME=home + "/.local/share", XDG_CONFIG_HOME=home + "/.config",
                   XDG_DOWNLOAD_DIR=self.dl, NO_COLOR="1", RUST_LOG=os.environ.get("TC_LOG", "warn"))
        args = [BIN, "--nick", nick, "--no-discovery", "--bind", "127.0.0.1", "--port", str(self.port),
                "--data-dir", os.path.join(root, "data"), "--download-dir", self.dl, "--wait", "10"]
        if peer_port:
            args += ["--peer", "127.0.0.1:%d" % peer_port]
        args += list(extra)
        self.p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env=env, text=True, bufsize=1)
        self.lines = []
        self.errlines = []
        threading.Thread(target=self._rd, args=(self.p.stdout, self.lines, "TC>"), daemon=True).start()
        threading.Thread(target=self._rd, args=(self.p.stderr, self.errlines, "TC!"), daemon=True).start()

    def _rd(self, f, lst, tag):
        for line in f:
            lst.append(line.rstrip("\n"))
            print("%.3f %s %s" % (time.time() % 1000, tag, line.rstrip("\n")), flush=True)

    def cmd(self, s):
        print("%.3f TC< %s" % (time.time() % 1000, s), flush=True)
        self.p.stdin.write(s + "\n"); self.p.stdin.flush()

    def wait_line(self, pat, timeout=15, start=0):
        end = time.time() + timeout
        while time.time() < end:
            for l in self.lines[start:]:
                m = re.search(pat, l)
                if m:
                    return m
            time.sleep(0.05)
        return None

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


def same_tree(a, b):
    bad = []
    for dp, dn, fn in os.walk(a):
        for f in fn:
            pa = os.path.join(dp, f)
            pb = os.path.join(b, os.path.relpath(pa, a))
            if not os.path.exists(pb) or open(pa, "rb").read() != open(pb, "rb").read():
                bad.append(os.path.relpath(pa, a))
    return bad


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
        with peer.lock:
            peer.events.clear()
        s2 = os.path.join(root, "to-tc.bin"); open(s2, "wb").write(os.urandom(2_500_001))
        n0 = len(tc.lines)
        peer.offer(tc_pid, s2)
        m = tc.wait_line(r"/accept (\d+)", 10, n0)
        assert m, "tailchat did not show the offer"
        tc.cmd("/accept %s" % m.group(1))
        e = peer.wait_event(lambda e: e[0] in ("done", "cancel"), 20)
        got = os.path.join(tc.dl, "to-tc.bin")
        results["send single file"] = bool(e and e[0] == "done" and os.path.exists(got) and open(got, "rb").read() == open(s2, "rb").read())

        with peer.lock:
            peer.events.clear()
        src2 = os.path.join(root, "folder2"); make_tree(src2)
        n0 = len(tc.lines)
        peer.offer(tc_pid, src2)
        m = tc.wait_line(r"/accept (\d+)", 10, n0)
        assert m, "tailchat did not show the folder offer"
        tc.cmd("/accept %s" % m.group(1))
        e = peer.wait_event(lambda e: e[0] in ("done", "cancel"), 30)
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
