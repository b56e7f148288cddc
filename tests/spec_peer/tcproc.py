"""Run a real tailchat as a child with pipes, and wait for lines of its output.

Shared by tc.py (tailchat inside a network namespace, for disctest.py) and run_test.py (on loopback).
"""
import os, re, subprocess, threading, time


class Tailchat:
    """A tailchat started from args, its home in home; its output lines gathered and printed as they come.

    Standard output goes to self.lines, each line printed after out_tag; standard error goes to
    self.errlines after err_tag, or, where err_tag is None, into standard output. Commands written
    to it are printed after in_tag.
    """

    def __init__(self, args, home, out_tag, in_tag, err_tag=None, env=None):
        os.makedirs(home, exist_ok=True)
        env = dict(os.environ, HOME=home, XDG_DATA_HOME=home + "/.local/share",
                   XDG_CONFIG_HOME=home + "/.config", NO_COLOR="1", **(env or {}))
        self.in_tag = in_tag
        self.p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT if err_tag is None else subprocess.PIPE,
                                  env=env, text=True, bufsize=1)
        self.lines = []
        self.errlines = []
        threading.Thread(target=self._rd, args=(self.p.stdout, self.lines, out_tag), daemon=True).start()
        if err_tag is not None:
            threading.Thread(target=self._rd, args=(self.p.stderr, self.errlines, err_tag), daemon=True).start()

    def _rd(self, f, lst, tag):
        for line in f:
            lst.append(line.rstrip("\n"))
            print("%.3f %s %s" % (time.time() % 1000, tag, line.rstrip("\n")), flush=True)

    def cmd(self, s):
        print("%.3f %s %s" % (time.time() % 1000, self.in_tag, s), flush=True)
        self.p.stdin.write(s + "\n"); self.p.stdin.flush()

    def wait_line(self, pat, timeout=15, start=0):
        """The match of the first output line from index start on that matches pat, waiting up to
        timeout seconds for one; None if none came."""
        end = time.time() + timeout
        while time.time() < end:
            for l in self.lines[start:]:
                m = re.search(pat, l)
                if m:
                    return m
            time.sleep(0.05)
        return None
