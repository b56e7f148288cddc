#!/usr/bin/env python3
"""One scenario of scripts/bench-files.sh: two tailchats (alice has the file, bob receives it)
in network namespaces the shell script made, and on the same two endpoints a plain TCP copy of
the same file with socat, for comparison.

Measured, all on one clock (CLOCK_MONOTONIC, which every namespace shares):
- throughput: from bob's /accept to his "received" line (tailchat), or from the start of the
  connecting socat to the exit of the receiving one (plain copy); the file is compared after;
- chat latency: alice types "lat N" every INTERVAL ms and the time until bob's output shows
  "<alice> lat N" is taken, when idle and during every copy (one loop, select() on both
  programs' output, so no thread of this script waits for the interpreter's lock); besides
  the whole copy's percentiles, the first second (where a congestion controller's start-up
  fills the bottleneck's queue) and the rest are summarised apart;
- CPU: utime + stime of each tailchat from /proc/PID/stat over the copy, and of each socat
  from wait4's rusage; also alice's CPU while hashing the file at /send.

Runs alternate (tailchat, plain copy, tailchat, ...) so a change in the machine's load falls on
both. Prints a JSON summary on the last line of standard output; progress goes to stderr.

With --twoway FWD1 FWD2 REV the copies go both ways instead (ONLY=twoway): alice sends FWD1
(and FWD2) to bob while bob sends REV to alice, in four shapes — REV alone, FWD1 alone, FWD1 +
FWD2 + REV at once, FWD1 + REV at once — each as tailchat transfers (every offer made first,
then all accepted back to back) and as plain copies with socat. A transfer's ACKs then share a
queue with the other direction's data, which is what these shapes measure. Each transfer is
timed from its own /accept (or its own sender's start) to its own "received" line (or its
receiver's exit); the timed messages go both ways (bob types them too), summarised per
direction.
"""

import argparse
import json
import os
import re
import select
import shutil
import subprocess
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def now():
    return time.monotonic()


NICE = 0  # --nice: the measured programs' niceness (both kinds of copy alike)


def in_ns(ns, argv):
    """argv run in network namespace ns at niceness NICE: nsenter and nice exec it, so the
    pid is the program's."""
    return ["nsenter", f"--net=/run/netns/{ns}", "--", "nice", "-n", str(NICE), "--"] + argv


def cpu_seconds(pid):
    """utime + stime of process pid (all its threads, live and ended), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # After the ")" the fields start at field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / TICK


def pct(sorted_values, p):
    if not sorted_values:
        return None
    return sorted_values[round((len(sorted_values) - 1) * p)]


class Chat:
    """One running tailchat, its output read line by line without blocking."""

    def __init__(self, binary, ns, nick, bind, port, home, extra):
        os.makedirs(home, exist_ok=True)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": home,
            "XDG_DATA_HOME": os.path.join(home, "data"),
            "XDG_CONFIG_HOME": os.path.join(home, "config"),
            "USER": nick,
            "NO_COLOR": "1",
            "RUST_LOG": "warn",
        }
        # Test and experiment knobs (TAILCHAT_TEST_SEND_RATE, ...) pass through.
        # TAILCHAT_BIN only names the binary measured (bench-files.sh): not a knob.
        env.update(
            {
                k: v
                for k, v in os.environ.items()
                if k.startswith("TAILCHAT_") and k != "TAILCHAT_BIN"
            }
        )
        argv = [binary, "--nick", nick, "--no-discovery", "--bind", bind, "--port", str(port)]
        self.proc = subprocess.Popen(
            in_ns(ns, argv + extra),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.nick = nick
        self.fd = self.proc.stdout.fileno()
        os.set_blocking(self.fd, False)
        self.buf = b""
        self.lines = []  # (time read, line) not yet taken by expect()
        self.log = []

    def type(self, line):
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def read_ready(self):
        """Reads what is there; returns the new complete lines with the time they were read."""
        t = now()
        try:
            chunk = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return []
        if not chunk:
            raise RuntimeError(f"{self.nick} exited: {self.log[-5:]}")
        self.buf += chunk
        *complete, self.buf = self.buf.split(b"\n")
        got = [(t, l.decode(errors="replace")) for l in complete]
        self.log.extend(l for _, l in got)
        return got

    def pid(self):
        return self.proc.pid


class Bench:
    def __init__(self, args):
        self.a = args
        self.alice = None
        self.bob = None
        # Per direction of the timed messages ("a2b": alice types them, bob reads them; "b2a",
        # only with --twoway, the other way):
        self.pending = {"a2b": {}, "b2a": {}}  # ping number -> time typed
        self.next_ping = 0
        # (sent, latency) in s of the current phase, sent from its start
        self.samples = {"a2b": [], "b2a": []}
        self.both_ways = bool(args.twoway)
        self.loop_extra = []  # (fd, callback) watched besides the chats
        self.copies = 0  # plain copies made (each takes a port of its own)
        self.backlog = {"alice": [], "bob": []}  # lines not yet looked at by expect()

    # -- the one loop ------------------------------------------------------------------
    def hold(self, seconds):
        """Lets `seconds` pass, pinging and taking output meanwhile (nothing is waited for)."""
        end = now() + seconds
        while now() < end:
            self.pump(min(self.ping_due(), end - now()))
            self.ping_if_due()

    def pump(self, timeout):
        """Waits up to timeout for output; takes ping arrivals, keeps other lines for expect."""
        fds = [self.alice.fd, self.bob.fd] + [fd for fd, _ in self.loop_extra]
        ready, _, _ = select.select(fds, [], [], max(0.0, timeout))
        for fd in ready:
            if fd == self.alice.fd:
                lines = [("alice", t, l) for t, l in self.alice.read_ready()]
            elif fd == self.bob.fd:
                lines = [("bob", t, l) for t, l in self.bob.read_ready()]
            else:
                for efd, cb in self.loop_extra:
                    if efd == fd:
                        cb(now())
                continue
            for who, t, line in lines:
                way = "a2b" if who == "bob" else "b2a"
                other = "alice" if who == "bob" else "bob"
                m = re.search(rf"<{other}> lat (\d+)$", line)
                if m:
                    n = int(m.group(1))
                    sent = self.pending[way].pop(n, None)
                    if sent is not None:
                        self.samples[way].append((sent - self.phase_start, t - sent))
                else:
                    self.backlog[who].append((t, line))

    def expect(self, who, pattern, limit=120.0, pinging=False):
        """Runs the loop until `who` prints a line matching pattern; returns (time, match)."""
        deadline = now() + limit
        while True:
            backlog = self.backlog[who]
            while backlog:
                t, line = backlog.pop(0)
                m = re.search(pattern, line)
                if m:
                    return t, m
            if now() > deadline:
                chat = self.alice if who == "alice" else self.bob
                raise RuntimeError(f"no {pattern!r} from {who}: {chat.log[-8:]}")
            self.pump(self.ping_due() if pinging else 0.2)
            if pinging:
                self.ping_if_due()

    def ping_due(self):
        return max(0.0, self.ping_at - now())

    def ping_if_due(self):
        if now() >= self.ping_at:
            n = self.next_ping
            self.next_ping += 1
            self.pending["a2b"][n] = now()
            self.alice.type(f"lat {n}")
            if self.both_ways:
                self.pending["b2a"][n] = now()
                self.bob.type(f"lat {n}")
            self.ping_at += self.a.interval_ms / 1000.0

    def start_pinging(self, pinging=True):
        """Starts a phase: with the timed messages, or (pinging False) with the chat quiet."""
        self.samples = {"a2b": [], "b2a": []}
        self.phase_start = now()
        self.ping_at = self.phase_start if pinging else float("inf")

    def finish_pinging(self, way="a2b"):
        """Lets the messages in flight arrive (2 s at most); returns the phase's samples of
        direction `way` and how many of its messages were lost."""
        both = self.finish_pinging_both()
        return both[way]

    def finish_pinging_both(self):
        """As finish_pinging, both directions: {"a2b": (samples, lost), "b2a": ...}."""
        deadline = now() + 2.0
        while any(self.pending.values()) and now() < deadline:
            self.pump(0.05)
        out = {}
        for way, pending in self.pending.items():
            out[way] = (self.samples[way], len(pending))
            pending.clear()
        return out

    # -- phases ------------------------------------------------------------------------
    def start_chats(self):
        a = self.a
        # alice's downloads (--twoway: bob sends to her) go next to bob's.
        self.alice = Chat(
            a.bin,
            a.ns_a,
            "alice",
            a.addr_a,
            7654,
            f"{a.work}/alice",
            ["--download-dir", a.dl + "-alice"],
        )
        self.bob = Chat(
            a.bin,
            a.ns_b,
            "bob",
            a.addr_b,
            7655,
            f"{a.work}/bob",
            ["--peer", f"{a.addr_a}:7654", "--download-dir", a.dl],
        )
        self.expect("bob", r"alice joined", 20)
        self.expect("alice", r"bob joined", 20)

    def idle(self, seconds):
        cpu0 = (cpu_seconds(self.alice.pid()), cpu_seconds(self.bob.pid()))
        self.start_pinging()
        end = now() + seconds
        while now() < end:
            self.pump(self.ping_due())
            self.ping_if_due()
        lat = self.finish_pinging_both()
        cpu1 = (cpu_seconds(self.alice.pid()), cpu_seconds(self.bob.pid()))
        r = {
            "latency": summary(*lat["a2b"]),
            "cpu_per_s": [(cpu1[i] - cpu0[i]) / seconds for i in range(2)],
        }
        if self.both_ways:
            r["latency_b2a"] = summary(*lat["b2a"])
        return r

    def tailchat_run(self, name, pinging=True):
        size = os.path.getsize(self.a.file)
        cpu_a0 = cpu_seconds(self.alice.pid())
        t_send = now()
        self.alice.type(f"/send bob {self.a.file}")
        t_offered, _ = self.expect("alice", r"offered .* to bob")
        cpu_hash = cpu_seconds(self.alice.pid()) - cpu_a0
        _, m = self.expect("bob", r"alice offers .*/decline (\d+)")
        number = m.group(1)
        cpu0 = (cpu_seconds(self.alice.pid()), cpu_seconds(self.bob.pid()))
        self.start_pinging(pinging)
        t0 = now()
        self.bob.type(f"/accept {number}")
        t1, m = self.expect("bob", r"received .* from alice .*→ (.*)$", 600, pinging=pinging)
        cpu1 = (cpu_seconds(self.alice.pid()), cpu_seconds(self.bob.pid()))
        lat, lost = self.finish_pinging()
        self.expect("alice", r"sent .* to bob")
        dest = m.group(1).strip()
        same = files_equal(self.a.file, dest)
        os.remove(dest)
        secs = t1 - t0
        return {
            "kind": "tailchat",
            "pinging": pinging,
            "seconds": secs,
            "mbit_s": size * 8 / secs / 1e6,
            "mbyte_s": size / secs / 1e6,
            "byte_exact": same,
            "cpu_s_per_gb": {
                "sender": (cpu1[0] - cpu0[0]) / (size / 1e9),
                "receiver": (cpu1[1] - cpu0[1]) / (size / 1e9),
            },
            "hash_at_send": {
                "seconds": t_offered - t_send,
                "cpu_s_per_gb": cpu_hash / (size / 1e9),
            },
            "latency": summary(lat, lost),
        }

    def plain_run(self, cc, pinging=True):
        """socat from alice's namespace to bob's, the data in the same direction, with
        congestion controller `cc`."""
        a = self.a
        size = os.path.getsize(a.file)
        # TCP_CONGESTION (level 6, option 13) on both sockets: a namespace may not make cubic
        # its default while the host allows only reno and bbr, but root's sockets may use it.
        cong = f"setsockopt-string=6:13:{cc}"
        out = os.path.join(a.dl, "plain.bin")
        self.copies += 1
        port = 7700 + self.copies
        listener = subprocess.Popen(
            in_ns(a.ns_b, ["socat", "-u", "-b", str(a.socat_buffer),
                           f"TCP-LISTEN:{port},bind={a.addr_b},reuseaddr,{cong}",
                           f"CREATE:{out}"])
        )
        wait_listening(a.ns_b, port)
        self.start_pinging(pinging)
        t0 = now()
        sender = subprocess.Popen(
            in_ns(a.ns_a, ["socat", "-u", "-b", str(a.socat_buffer),
                           f"OPEN:{a.file}", f"TCP:{a.addr_b}:{port},{cong}"])
        )
        ended = {}
        for name, p in (("receiver", listener), ("sender", sender)):
            self.watch_exit(name, p, ended)
        while "receiver" not in ended or "sender" not in ended:
            self.pump(self.ping_due() if pinging else 0.2)
            if pinging:
                self.ping_if_due()
        lat, lost = self.finish_pinging()
        t1 = ended["receiver"][0]
        same = files_equal(a.file, out)
        os.remove(out)
        secs = t1 - t0
        return {
            "kind": f"socat ({cc})",
            "pinging": pinging,
            "seconds": secs,
            "mbit_s": size * 8 / secs / 1e6,
            "mbyte_s": size / secs / 1e6,
            "byte_exact": same and listener.returncode == 0 and sender.returncode == 0,
            "cpu_s_per_gb": {
                "sender": ended["sender"][1] / (size / 1e9),
                "receiver": ended["receiver"][1] / (size / 1e9),
            },
            "latency": summary(lat, lost),
        }


    def watch_exit(self, name, p, ended):
        """Has the loop note when process p exits: ended[name] = (time, CPU seconds)."""
        fd = os.pidfd_open(p.pid)

        def on_exit(t):
            if name in ended:
                return
            _, status, ru = os.wait4(p.pid, 0)
            p.returncode = os.waitstatus_to_exitcode(status)
            ended[name] = (t, ru.ru_utime + ru.ru_stime)
            self.loop_extra = [(f, c) for f, c in self.loop_extra if f != fd]
            os.close(fd)

        self.loop_extra.append((fd, on_exit))

    # -- both ways (--twoway) ----------------------------------------------------------
    def expect_all(self, waits, limit):
        """Runs the loop, with the timed messages, until every (who, pattern) of the dict
        `waits` has been matched by a line of `who`; returns {key: (time, match)}. A line
        matches one wait at most; lines matching none are dropped, as expect() does."""
        got = {}
        deadline = now() + limit
        while True:
            for who in ("alice", "bob"):
                backlog = self.backlog[who]
                while backlog:
                    t, line = backlog.pop(0)
                    for key, (w, pattern) in waits.items():
                        if w == who and key not in got:
                            m = re.search(pattern, line)
                            if m:
                                got[key] = (t, m)
                                break
            if len(got) == len(waits):
                return got
            if now() > deadline:
                missing = [w for k, w in waits.items() if k not in got]
                raise RuntimeError(
                    f"no {missing}: alice {self.alice.log[-8:]}, bob {self.bob.log[-8:]}"
                )
            self.pump(self.ping_due())
            self.ping_if_due()

    def twoway_tailchat(self, shape):
        """The transfers of `shape` ((sender, file index) each) at once: every offer made
        first, then all accepted back to back, each timed from its own /accept."""
        chats = {"alice": self.alice, "bob": self.bob}
        flows = []
        for sender, i in shape:
            receiver = "bob" if sender == "alice" else "alice"
            path = self.a.twoway[i]
            name = re.escape(os.path.basename(path))
            chats[sender].type(f"/send {receiver} {path}")
            self.expect(sender, rf"offered {name} .* to {receiver}")
            _, m = self.expect(receiver, rf"{sender} offers {name} .*/decline (\d+)")
            flows.append((sender, receiver, path, name, m.group(1)))
        cpu0 = (cpu_seconds(self.alice.pid()), cpu_seconds(self.bob.pid()))
        self.start_pinging()
        starts = []
        for sender, receiver, _, _, number in flows:
            if sender == "bob" and len(flows) > 1:
                self.hold(REVERSE_DELAY)
            starts.append(now())
            chats[receiver].type(f"/accept {number}")
        waits = {}
        for k, (sender, receiver, _, name, _) in enumerate(flows):
            waits[("received", k)] = (receiver, rf"received {name} from {sender} .*→ (.*)$")
            waits[("sent", k)] = (sender, rf"sent {name} to {receiver}")
        got = self.expect_all(waits, 600)
        cpu1 = (cpu_seconds(self.alice.pid()), cpu_seconds(self.bob.pid()))
        lat = self.finish_pinging_both()
        transfers = []
        for k, (sender, receiver, path, _, _) in enumerate(flows):
            t1, m = got[("received", k)]
            dest = m.group(1).strip()
            same = files_equal(path, dest)
            os.remove(dest)
            transfers.append(transfer_figures(sender, path, starts[k], t1, same))
        return twoway_result("tailchat", shape, transfers, starts, lat, cpu1, cpu0)

    def twoway_plain(self, cc, shape):
        """The copies of `shape` at once with socat (congestion controller `cc`): every
        listener up first, then the senders started back to back, each timed from its own
        start to its receiver's exit."""
        a = self.a
        ns = {"alice": a.ns_a, "bob": a.ns_b}
        addr = {"alice": a.addr_a, "bob": a.addr_b}
        dl = {"alice": a.dl + "-alice", "bob": a.dl}
        cong = f"setsockopt-string=6:13:{cc}"  # as in plain_run
        flows = []
        for k, (sender, i) in enumerate(shape):
            receiver = "bob" if sender == "alice" else "alice"
            self.copies += 1
            port = 7700 + self.copies
            out = os.path.join(dl[receiver], f"plain-{k}.bin")
            listener = subprocess.Popen(
                in_ns(ns[receiver], ["socat", "-u", "-b", str(a.socat_buffer),
                                     f"TCP-LISTEN:{port},bind={addr[receiver]},reuseaddr,{cong}",
                                     f"CREATE:{out}"])
            )
            flows.append((sender, receiver, a.twoway[i], port, out, listener))
        for _, receiver, _, port, _, _ in flows:
            wait_listening(ns[receiver], port)
        ended = {}
        self.start_pinging()
        starts, senders = [], []
        for k, (sender, receiver, path, port, _, listener) in enumerate(flows):
            if sender == "bob" and len(flows) > 1:
                self.hold(REVERSE_DELAY)
            starts.append(now())
            p = subprocess.Popen(
                in_ns(ns[sender], ["socat", "-u", "-b", str(a.socat_buffer),
                                   f"OPEN:{path}", f"TCP:{addr[receiver]}:{port},{cong}"])
            )
            senders.append(p)
            self.watch_exit(("receiver", k), listener, ended)
            self.watch_exit(("sender", k), p, ended)
        while len(ended) < 2 * len(flows):
            self.pump(self.ping_due())
            self.ping_if_due()
        lat = self.finish_pinging_both()
        transfers = []
        for k, (sender, _, path, _, out, listener) in enumerate(flows):
            same = files_equal(path, out)
            os.remove(out)
            ok = same and listener.returncode == 0 and senders[k].returncode == 0
            transfers.append(transfer_figures(sender, path, starts[k], ended[("receiver", k)][0], ok))
        return twoway_result(f"socat ({cc})", shape, transfers, starts, lat)


# --twoway: how long after the others the bob→alice transfer of a shape with several starts
# (TWOWAY_REVERSE_DELAY, seconds; 0: back to back), to see whether a transfer that starts
# once the other way's queue is there fares otherwise.
REVERSE_DELAY = float(os.environ.get("TWOWAY_REVERSE_DELAY", "0"))

# The shapes of --twoway: (key, what, transfers as (sender, index into --twoway's files)).
SHAPES = [
    ("a", "bob→alice alone", [("bob", 2)]),
    ("b", "alice→bob alone", [("alice", 0)]),
    ("c", "2× alice→bob + bob→alice", [("alice", 0), ("alice", 1), ("bob", 2)]),
    ("d", "alice→bob + bob→alice", [("alice", 0), ("bob", 2)]),
]


def transfer_figures(sender, path, t0, t1, same):
    size = os.path.getsize(path)
    secs = t1 - t0
    return {
        "way": "a2b" if sender == "alice" else "b2a",
        "bytes": size,
        "start": t0,
        "end": t1,
        "seconds": secs,
        "mbit_s": size * 8 / secs / 1e6,
        "byte_exact": same,
    }


def twoway_result(kind, shape, transfers, starts, lat, cpu1=None, cpu0=None):
    """One two-way run: its transfers (named a→b 1, a→b 2, b→a in the order of the
    shape), the whole of it, the chat's latency each way."""
    n = {"a2b": 0, "b2a": 0}
    for t in transfers:
        n[t["way"]] += 1
        t["name"] = ("a→b" if t["way"] == "a2b" else "b→a") + (
            f" {n[t['way']]}" if t["way"] == "a2b" else ""
        )
    key = next(k for k, _, s in SHAPES if s == shape)
    r = {
        "kind": kind,
        "shape": key,
        "transfers": transfers,
        "seconds": max(t["end"] for t in transfers) - min(starts),
        "latency": summary(*lat["a2b"]),
        "latency_b2a": summary(*lat["b2a"]),
    }
    if cpu0 is not None:
        r["cpu_s"] = {"alice": cpu1[0] - cpu0[0], "bob": cpu1[1] - cpu0[1]}
    fwd = [t for t in transfers if t["way"] == "a2b"]
    if len(fwd) > 1:
        # The forward transfers together: their bytes over the time from the first's start
        # to the last's end (what the link gave that direction).
        secs = max(t["end"] for t in fwd) - min(t["start"] for t in fwd)
        r["a2b_together_mbit_s"] = sum(t["bytes"] for t in fwd) * 8 / secs / 1e6
    for t in transfers:
        del t["start"], t["end"]
    return r


def summary(samples, lost):
    """Latency figures of a phase's (sent, latency) samples: over the whole phase, and apart
    for its first second (a copy's congestion controller starts up then) and the rest."""
    ms = lambda v: None if v is None else round(v * 1000, 2)
    lat = sorted(l for _, l in samples)
    first = sorted(l for t, l in samples if t < 1.0)
    rest = sorted(l for t, l in samples if t >= 1.0)
    return {
        "n": len(lat),
        "lost": lost,
        "p50_ms": ms(pct(lat, 0.5)),
        "p99_ms": ms(pct(lat, 0.99)),
        "max_ms": ms(lat[-1] if lat else None),
        "first_s_max_ms": ms(first[-1] if first else None),
        "first_s_over_10ms": sum(1 for l in first if l > 0.010),
        "after_1s_p50_ms": ms(pct(rest, 0.5)),
        "after_1s_p99_ms": ms(pct(rest, 0.99)),
        "after_1s_max_ms": ms(rest[-1] if rest else None),
    }


def wait_listening(ns, port):
    deadline = now() + 10
    while now() < deadline:
        out = subprocess.run(
            in_ns(ns, ["ss", "-Hltn", f"sport = :{port}"]), capture_output=True, text=True
        ).stdout
        if out.strip():
            return
        time.sleep(0.01)  # polling for a listener another program opens; bounded
    raise RuntimeError(f"socat did not listen on {port}")


def files_equal(a, b):
    return subprocess.run(["cmp", "-s", a, b]).returncode == 0


def table(paths):
    """The JSON summaries in `paths` as Markdown tables (medians over runs, and each run)."""
    for path in paths:
        with open(path) as f:
            r = json.loads(f.read().strip().splitlines()[-1])
        if r.get("twoway"):
            table_twoway(r)
            continue
        size = r["size"]
        print(
            f"\n### {r['label']}: {size / 1e6:.0f} MB ({size} bytes), niceness {r.get('nice', 0)}, "
            f"load average at start {' '.join(r.get('load', []))}\n"
        )
        idle = r["idle"]["latency"]
        after = r["idle_after"]["latency"]
        print(
            f"Chat idle: p50 {idle['p50_ms']} ms, p99 {idle['p99_ms']} ms ({idle['n']} messages); "
            f"idle again after: p50 {after['p50_ms']} ms, p99 {after['p99_ms']} ms."
        )
        print()
        print(
            "| run | copy | time | throughput | CPU s/GB sender | CPU s/GB receiver "
            "| chat p50 | chat p99 | chat max | first second: max, > 10 ms "
            "| after it: p50 / p99 / max | messages | byte-exact |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        gb = size / 1e9
        ping = r["idle"]["cpu_per_s"]
        for i, run in enumerate(r["runs"]):
            l = run["latency"]
            cpu = run["cpu_s_per_gb"]
            if run["kind"] == "tailchat" and run.get("pinging", True):
                # The chat's own work (the timed messages) measured idle, taken off: what is
                # left is the transfer's. The raw figure follows in brackets.
                net = [
                    cpu[side] - ping[k] * run["seconds"] / gb
                    for k, side in enumerate(("sender", "receiver"))
                ]
                shown = [f"{net[k]:.2f} ({cpu[side]:.2f})" for k, side in enumerate(("sender", "receiver"))]
            else:
                shown = [f"{cpu['sender']:.2f}", f"{cpu['receiver']:.2f}"]
            after = "—"  # a copy shorter than a second has no "after"
            if l.get("after_1s_p50_ms") is not None:
                after = (
                    f"{l['after_1s_p50_ms']} / {l['after_1s_p99_ms']} / {l['after_1s_max_ms']} ms"
                )
            print(
                f"| {i} | {run['kind']}{'' if run.get('pinging', True) else ', chat quiet'} "
                f"| {run['seconds']:.2f} s | {run['mbit_s']:.1f} Mbit/s "
                f"({run['mbyte_s']:.0f} MB/s) | {shown[0]} | {shown[1]} | {l['p50_ms']} ms | "
                f"{l['p99_ms']} ms | {l['max_ms']} ms | "
                f"{l.get('first_s_max_ms')} ms, {l.get('first_s_over_10ms')} | {after} | "
                f"{l['n']} (lost {l['lost']}) | "
                f"{run['byte_exact']} |"
            )
        kinds = []
        for run in r["runs"]:
            if run["kind"] not in kinds:
                kinds.append(run["kind"])
        base = [k for k in kinds if k != "tailchat"]
        print()
        groups = [(False, "with the chat quiet"), (True, "with the timed messages")]
        if all(run.get("pinging", True) for run in r["runs"]):
            groups = [(True, "")]
        for pinging, what in groups:
            runs = [x for x in r["runs"] if x.get("pinging", True) == pinging]
            med = {}
            for k in kinds:
                rates = sorted(x["mbit_s"] for x in runs if x["kind"] == k)
                med[k] = rates[len(rates) // 2]
            for k in base:
                pairs = sorted(
                    t["mbit_s"] / p["mbit_s"]
                    for t, p in zip(
                        [x for x in runs if x["kind"] == "tailchat"],
                        [x for x in runs if x["kind"] == k],
                    )
                )
                print(
                    f"Median tailchat / median {k}{', ' + what if what else ''}: "
                    f"{med['tailchat'] / med[k]:.2f}× "
                    f"(run by run: {', '.join(f'{x:.2f}' for x in pairs)})"
                )
        hashes = [x["hash_at_send"] for x in r["runs"] if x["kind"] == "tailchat"]
        if hashes:
            h = hashes[len(hashes) // 2]
            print(
                f"Hashing at /send (before the offer): {h['seconds']:.2f} s, "
                f"{h['cpu_s_per_gb']:.2f} CPU s/GB."
            )
        cpu = r["idle"]["cpu_per_s"]
        print(
            f"Chat pings alone cost alice {cpu[0] * 100:.1f}% and bob {cpu[1] * 100:.1f}% of a core."
        )


def twoway_runs(b, a, result):
    """--twoway: every shape with every kind of copy, RUNS times, alternating (shape by
    shape, tailchat then each plain copy) so a change in the machine's load falls on all."""
    for i in range(a.runs):
        for key, what, shape in SHAPES:
            for kind in ["tailchat"] + [k for k in a.plain_cc.split(",") if k]:
                r = b.twoway_tailchat(shape) if kind == "tailchat" else b.twoway_plain(kind, shape)
                r["round"] = i
                flows = ", ".join(
                    f"{t['name']} {t['mbit_s']:.1f} Mbit/s in {t['seconds']:.2f} s"
                    + ("" if t["byte_exact"] else " NOT BYTE-EXACT")
                    for t in r["transfers"]
                )
                lat = lambda l: f"p50 {l['p50_ms']} p99 {l['p99_ms']} ms (lost {l['lost']})"
                log(
                    f"[{a.label}] {i} {key} {r['kind']:11} {flows}; chat a→b "
                    f"{lat(r['latency'])}, b→a {lat(r['latency_b2a'])}"
                )
                result["runs"].append(r)


def table_twoway(r):
    """A --twoway summary: per shape and kind of copy, each transfer's time and rate and the
    chat's latency each way, as the median over the runs and the range (lowest–highest)."""

    def median(values):
        values = sorted(values)
        n = len(values)
        return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2

    def med(values, fmt="{:.1f}"):
        values = sorted(v for v in values if v is not None)
        if not values:
            return "—"
        return f"{fmt.format(median(values))} ({fmt.format(values[0])}–{fmt.format(values[-1])})"

    size = r["size"]
    runs = r["runs"]
    print(
        f"\n### {r['label']}, both ways: files of {size / 1e6:.0f} MB ({size} bytes), "
        f"{1 + max(x['round'] for x in runs)} runs of each, niceness {r.get('nice', 0)}, "
        f"load average at start {' '.join(r.get('load', []))}\n"
    )
    for when in ("idle", "idle_after"):
        l, l2 = r[when]["latency"], r[when]["latency_b2a"]
        print(
            f"Chat {'idle' if when == 'idle' else 'idle again after'}: alice→bob p50 "
            f"{l['p50_ms']} / p99 {l['p99_ms']} ms, bob→alice p50 {l2['p50_ms']} / p99 "
            f"{l2['p99_ms']} ms."
        )
    kinds = []
    for x in runs:
        if x["kind"] not in kinds:
            kinds.append(x["kind"])
    print(
        "\nMedian (lowest–highest) over the runs. 'vs alone': the median rate over the median "
        "rate of the same direction's transfer alone with the same kind of copy.\n"
    )
    print(
        "| shape | copy | transfer | time s | Mbit/s | vs alone | chat a→b p50 ms | p99 ms "
        "| chat b→a p50 ms | p99 ms | byte-exact |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    alone = {}
    for kind in kinds:
        for way, key in (("b2a", "a"), ("a2b", "b")):
            rates = [t["mbit_s"] for x in runs if x["kind"] == kind and x["shape"] == key
                     for t in x["transfers"]]
            alone[(kind, way)] = median(rates) if rates else None
    for key, what, _ in SHAPES:
        for kind in kinds:
            these = [x for x in runs if x["kind"] == kind and x["shape"] == key]
            if not these:
                continue
            names = [t["name"] for t in these[0]["transfers"]]
            rows = [(n, [next(t for t in x["transfers"] if t["name"] == n) for x in these])
                    for n in names]
            for j, (n, ts) in enumerate(rows):
                rate = median([t["mbit_s"] for t in ts])
                base = alone[(kind, ts[0]["way"])]
                chat = ["", "", "", ""]
                if j == 0:
                    chat = [
                        med([x[l][p] for x in these])
                        for l in ("latency", "latency_b2a") for p in ("p50_ms", "p99_ms")
                    ]
                print(
                    f"| {key + ': ' + what if j == 0 else ''} | {kind} | {n} "
                    f"| {med([t['seconds'] for t in ts], '{:.2f}')} "
                    f"| {med([t['mbit_s'] for t in ts])} "
                    f"| {rate / base:.2f}× | " + " | ".join(chat)
                    + f" | {all(t['byte_exact'] for t in ts)} |"
                )
            together = [x["a2b_together_mbit_s"] for x in these if "a2b_together_mbit_s" in x]
            if together:
                print(
                    f"| | {kind} | a→b together | | {med(together)} "
                    f"| {median(together) / alone[(kind, 'a2b')]:.2f}× | | | | | |"
                )
    print()
    # The question these shapes are for: is a transfer slowed by one the other way?
    for kind in kinds:
        for key in ("c", "d"):
            for way, alone_key, label in (("b2a", "a", "bob→alice"), ("a2b", "b", "alice→bob")):
                ratios = []
                for x in runs:
                    if x["kind"] != kind or x["shape"] != key:
                        continue
                    base = [t["mbit_s"] for y in runs if y["kind"] == kind
                            and y["shape"] == alone_key and y["round"] == x["round"]
                            for t in y["transfers"]]
                    if way == "a2b" and "a2b_together_mbit_s" in x:
                        rate = x["a2b_together_mbit_s"]
                    else:
                        rate = next(t["mbit_s"] for t in x["transfers"] if t["way"] == way)
                    if base:
                        ratios.append(rate / base[0])
                if ratios:
                    print(
                        f"{kind}, shape {key}: {label}{' (together)' if way == 'a2b' and key == 'c' else ''} "
                        f"over {label} alone, run by run: "
                        f"{', '.join(f'{v:.2f}' for v in ratios)} (median {median(ratios):.2f})"
                    )
    print("\nEach run (time s / Mbit/s per transfer; chat p50 / p99 ms each way):\n")
    for x in runs:
        flows = ", ".join(f"{t['name']} {t['seconds']:.2f} s {t['mbit_s']:.1f}" for t in x["transfers"])
        l, l2 = x["latency"], x["latency_b2a"]
        print(
            f"- {x['round']} {x['shape']} {x['kind']}: {flows}; a→b {l['p50_ms']} / {l['p99_ms']}, "
            f"b→a {l2['p50_ms']} / {l2['p99_ms']} (lost {l['lost']}, {l2['lost']})"
        )


def main():
    if sys.argv[1:2] == ["table"]:
        return table(sys.argv[2:])
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bin", required=True)
    p.add_argument("--ns-a", required=True)
    p.add_argument("--ns-b", required=True)
    p.add_argument("--addr-a", required=True)
    p.add_argument("--addr-b", required=True)
    p.add_argument("--file", help="the file alice sends (one way)")
    p.add_argument(
        "--twoway",
        nargs=3,
        metavar=("FWD1", "FWD2", "REV"),
        help="copies both ways instead (see the top of this file): alice sends FWD1 and FWD2 "
        "to bob, bob sends REV to alice",
    )
    p.add_argument("--dl", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--interval-ms", type=float, default=10)
    p.add_argument("--idle-seconds", type=float, default=5)
    p.add_argument("--plain-cc", default="bbr", help="comma-separated: bbr,cubic")
    p.add_argument("--socat-buffer", type=int, default=1 << 20)
    p.add_argument(
        "--quiet-copies",
        action="store_true",
        help="make every copy twice: with the chat quiet (time, CPU) and with the timed "
        "messages (latency); where the CPUs are the limit, 200 messages a second take a share",
    )
    p.add_argument("--label", required=True)
    p.add_argument(
        "--nice",
        type=int,
        default=0,
        help="niceness of the programs measured (tailchat and socat alike); below 0 they "
        "take the cores from other work on a shared machine",
    )
    a = p.parse_args()
    if a.twoway:
        a.file = a.twoway[0]
    global NICE
    NICE = a.nice
    if not a.file:
        p.error("--file or --twoway is needed")
    os.makedirs(a.dl, exist_ok=True)
    os.makedirs(a.dl + "-alice", exist_ok=True)
    b = Bench(a)
    b.start_chats()
    result = {
        "label": a.label,
        "size": os.path.getsize(a.file),
        "nice": a.nice,
        "load": open("/proc/loadavg").read().split()[:3],
        "runs": [],
        "twoway": bool(a.twoway),
    }
    try:
        log(f"[{a.label}] idle chat latency, {a.idle_seconds} s")
        result["idle"] = b.idle(a.idle_seconds)
        log(f"[{a.label}]   {result['idle']['latency']}")
        if a.twoway:
            log(f"[{a.label}]   bob→alice: {result['idle']['latency_b2a']}")
        if a.twoway:
            twoway_runs(b, a, result)
        # With --quiet-copies every copy is made twice: once with the chat quiet, for its
        # time and CPU alone, then once with the timed messages, for the chat's latency.
        for i in range(0 if a.twoway else a.runs):
            for kind in ["tailchat"] + [k for k in a.plain_cc.split(",") if k]:
              for pinging in ([False, True] if a.quiet_copies else [True]):
                r = (
                    b.tailchat_run(f"run {i}", pinging)
                    if kind == "tailchat"
                    else b.plain_run(kind, pinging)
                )
                log(
                    f"[{a.label}] {r['kind']:14} {r['mbit_s']:9.1f} Mbit/s in {r['seconds']:.2f} s, "
                    f"CPU s/GB send {r['cpu_s_per_gb']['sender']:.2f} recv "
                    f"{r['cpu_s_per_gb']['receiver']:.2f}, chat {r['latency']}"
                )
                result["runs"].append(r)
        result["idle_after"] = b.idle(a.idle_seconds)
        log(f"[{a.label}] idle again: {result['idle_after']['latency']}")
        if a.twoway:
            log(f"[{a.label}] idle again, bob→alice: {result['idle_after']['latency_b2a']}")
    finally:
        for c in (b.alice, b.bob):
            if c:
                c.proc.kill()
                c.proc.wait()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
