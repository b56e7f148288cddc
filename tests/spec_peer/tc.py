"""Run the real tailchat inside a namespace with stdin/stdout pipes."""
import os, subprocess, threading, time, re, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("TAILCHAT", os.path.join(HERE, "tailchat"))
RUN = os.environ.get("SPEC_RUN_DIR", os.path.join(HERE, "run"))


class TC:
    def __init__(self, ns, nick, extra=(), tag=None):
        os.makedirs(RUN, exist_ok=True)
        self.root = tempfile.mkdtemp(prefix="%s-" % nick, dir=RUN)
        self.tag = tag or "%s@%s" % (nick, ns)
        home = os.path.join(self.root, "home")
        os.makedirs(home, exist_ok=True)
        env = dict(os.environ, HOME=home, XDG_DATA_HOME=home + "/.local/share",
                   XDG_CONFIG_HOME=home + "/.config", NO_COLOR="1")
        args = ["ip", "netns", "exec", ns, BIN, "--nick", nick, "--data-dir", os.path.join(self.root, "data"),
                "--download-dir", os.path.join(self.root, "dl")] + list(extra)
        self.p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  env=env, text=True, bufsize=1)
        self.lines = []
        threading.Thread(target=self._rd, daemon=True).start()

    def _rd(self):
        for line in self.p.stdout:
            self.lines.append(line.rstrip("\n"))
            print("%.3f [%s] %s" % (time.time() % 1000, self.tag, line.rstrip("\n")), flush=True)

    def cmd(self, s):
        print("%.3f [%s]< %s" % (time.time() % 1000, self.tag, s), flush=True)
        try:
            self.p.stdin.write(s + "\n"); self.p.stdin.flush()
        except Exception:
            pass

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
        self.cmd("/quit")
        try:
            self.p.wait(5)
        except Exception:
            self.p.kill()
            self.p.wait()
        return self.p.returncode
