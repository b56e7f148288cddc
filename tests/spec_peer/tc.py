"""Run the real tailchat inside a namespace with stdin/stdout pipes (tcproc.Tailchat in `ip netns exec`)."""
import os, tempfile
from tcproc import Tailchat

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("TAILCHAT", os.path.join(HERE, "tailchat"))
RUN = os.environ.get("SPEC_RUN_DIR", os.path.join(HERE, "run"))


class TC(Tailchat):
    def __init__(self, ns, nick, extra=(), tag=None):
        os.makedirs(RUN, exist_ok=True)
        self.root = tempfile.mkdtemp(prefix="%s-" % nick, dir=RUN)
        self.tag = tag or "%s@%s" % (nick, ns)
        args = ["ip", "netns", "exec", ns, BIN, "--nick", nick, "--data-dir", os.path.join(self.root, "data"),
                "--download-dir", os.path.join(self.root, "dl")] + list(extra)
        Tailchat.__init__(self, args, os.path.join(self.root, "home"),
                          out_tag="[%s]" % self.tag, in_tag="[%s]<" % self.tag)

    def cmd(self, s):
        try:
            Tailchat.cmd(self, s)
        except Exception:
            pass

    def quit(self):
        self.cmd("/quit")
        try:
            self.p.wait(5)
        except Exception:
            self.p.kill()
            self.p.wait()
        return self.p.returncode
