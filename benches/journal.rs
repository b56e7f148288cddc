//! The journal at scale, one run: a journal of 1 000 000 messages is built, then measured —
//! open to ready (the journal alone, and the real program's start to its first line), `/history
//! 50` and `/history 100000` with the resident memory after them (the real program's, from
//! `/proc/PID/status`), append + sync latency, and compaction (time, size before and after,
//! and the first start of a program on the big journal with the default `history_limit`).
//! Figures go to docs/BENCHMARKS.md by hand; nothing here asserts a time.
//!
//! Run: `cargo bench --bench journal`. It needs about 400 MB of disk under `target/`, and the
//! page cache warm with the journal (it was just written): a cold start reads it from disk too.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tailchat::app::{self, Setup};
use tailchat::net::udp::UdpIo;
use tailchat::net::{addr, socket};
use tailchat::proto::{Config, Endpoint, PeerId};
use tailchat::store::journal::{HistoryFilter, HistoryLimit, Journal, Record};
use tailchat::ui::render::Output;
use tailchat::ui::terminal::Input;

/// Messages in the journal built.
const MESSAGES: u64 = 1_000_000;
/// One in this many is ours (to the group, so acknowledged by every peer); the rest are heard.
const OURS_ONE_IN: u64 = 5;
/// The peers: each of our messages is delivered to each.
const PEERS: u64 = 4;
/// Appends + syncs timed.
const SYNCS: usize = 2_000;

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// CPU time this thread has used, from `/proc/thread-self/schedstat`: with other work on the
/// machine's two cores, wall time alone says little about what an operation costs.
fn cpu() -> Duration {
    let stat = fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let ns = stat.split_whitespace().next().and_then(|v| v.parse().ok());
    Duration::from_nanos(ns.unwrap_or(0))
}

/// Runs `f`, returning its result, wall time and CPU time.
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration, Duration) {
    let (t, c) = (Instant::now(), cpu());
    let out = f();
    (out, t.elapsed(), cpu() - c)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// A message text of 40–120 characters, different for each `n`.
fn text(n: u64) -> String {
    let words = [
        "lunch", "deploy", "review", "coffee", "tomorrow", "works", "the", "build",
    ];
    let len = 40 + (n * 7919 % 81) as usize;
    let mut t = format!("{n}:");
    let mut i = n;
    while t.len() < len {
        t.push(' ');
        t.push_str(words[(i % 8) as usize]);
        i = i / 3 + 7;
    }
    t.truncate(len);
    t
}

/// Writes a journal of `MESSAGES` messages as a long-running chat makes it: a session, our
/// messages with their deliveries, theirs with the screen's `Shown` marks.
fn build(path: &Path) -> Duration {
    let t = Instant::now();
    let unlimited = HistoryLimit {
        messages: u64::MAX,
        days: None,
    };
    let (mut j, _) = Journal::open_with(path, &unlimited).unwrap();
    let peers: Vec<PeerId> = (1..=PEERS).map(|p| PeerId(0x1000 + p)).collect();
    let start_ms = 1_700_000_000_000i64;
    for (i, p) in peers.iter().enumerate() {
        j.append(&Record::Peer {
            id: *p,
            nick: format!("peer{i}"),
            addrs: vec![format!("192.0.2.{}:7654", i + 1).parse().unwrap()],
            manual: true,
            heard_ms: 0,
            key: None,
        })
        .unwrap();
    }
    j.append(&Record::Opened {
        at_ms: start_ms,
        session: 1,
        nick: "me".into(),
    })
    .unwrap();
    let (mut said, mut heard) = (0u64, vec![0u64; PEERS as usize]);
    for n in 0..MESSAGES {
        let at_ms = start_ms + n as i64 * 1_000;
        if n % OURS_ONE_IN == 0 {
            said += 1;
            j.append(&Record::Said {
                at_ms,
                id: said,
                nick: "me".into(),
                direct_to: None,
                recipients: peers.clone(),
                text: text(n),
                action: false,
            })
            .unwrap();
            for p in &peers {
                j.append(&Record::Delivered { to: *p, id: said }).unwrap();
            }
        } else {
            let k = (n % PEERS) as usize;
            heard[k] += 1;
            j.append(&Record::Heard {
                at_ms,
                from: peers[k],
                nick: format!("peer{k}"),
                id: heard[k],
                direct: n % 17 == 0,
                text: text(n),
                action: false,
                written_ms: at_ms,
            })
            .unwrap();
        }
        // The screen catches up once per wake-up, say every 8 messages.
        if n % 8 == 7 {
            for (p, id) in peers.iter().zip(&heard) {
                j.append(&Record::Shown { from: *p, id: *id }).unwrap();
            }
        }
    }
    j.sync().unwrap();
    t.elapsed()
}

/// Copies `from` to `to` and syncs the copy, so that the first sync of the journal there does
/// not also write back the whole copy.
fn copy_synced(from: &Path, to: &Path) {
    fs::copy(from, to).unwrap();
    fs::File::open(to).unwrap().sync_all().unwrap();
}

/// A data directory holding `journal` (copied) and a config directory whose config file sets
/// `history_limit` to `messages`; returns (data dir, config home).
fn program_dirs(root: &Path, name: &str, journal: &Path, messages: u64) -> (PathBuf, PathBuf) {
    let data = root.join(name).join("data");
    let config = root.join(name).join("config");
    fs::create_dir_all(&data).unwrap();
    fs::create_dir_all(config.join("tailchat")).unwrap();
    copy_synced(journal, &data.join("journal"));
    fs::write(
        config.join("tailchat").join("config.toml"),
        format!("[history_limit]\nmessages = {messages}\n"),
    )
    .unwrap();
    (data, config)
}

/// The real program, started on a data directory, reading lines from a script.
struct Program {
    /// The process, for its `/proc` status and its exit.
    child: std::process::Child,
    /// Where commands are typed.
    stdin: std::process::ChildStdin,
    /// Its output lines, read on a thread.
    lines: mpsc::Receiver<String>,
}

impl Program {
    /// Starts `binary` and returns it with the time to its first line (the prompt is up then).
    fn start_binary(binary: &Path, data: &Path, config: &Path) -> (Program, Duration) {
        let t = Instant::now();
        let mut child = Command::new(binary)
            .args([
                "--nick",
                "me",
                "--no-discovery",
                "--port",
                "0",
                "--bind",
                "127.0.0.1",
            ])
            .arg("--data-dir")
            .arg(data)
            .env_clear()
            .env("HOME", data)
            .env("XDG_CONFIG_HOME", config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in out.lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut p = Program {
            child,
            stdin,
            lines,
        };
        p.next_line();
        (p, t.elapsed())
    }

    /// Starts this version of the program (see [`Program::start_binary`]).
    fn start(data: &Path, config: &Path) -> (Program, Duration) {
        Self::start_binary(Path::new(env!("CARGO_BIN_EXE_tailchat")), data, config)
    }

    fn next_line(&mut self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(120))
            .expect("a line from tailchat")
    }

    /// Sends `/history N` then `/peers`, answered in order: returns when the history is out,
    /// with the time it took and the number of lines.
    fn history(&mut self, n: usize) -> (Duration, usize) {
        while self.lines.try_recv().is_ok() {}
        let t = Instant::now();
        writeln!(self.stdin, "/history {n}\n/peers").unwrap();
        let mut count = 0;
        loop {
            let l = self.next_line();
            if l.contains("state") && l.contains("rtt") {
                return (t.elapsed(), count);
            }
            count += 1;
        }
    }

    /// (VmRSS, VmHWM) in KiB.
    fn memory(&self) -> (u64, u64) {
        let status = fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap()
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    fn quit(mut self) {
        writeln!(self.stdin, "/quit").unwrap();
        self.child.wait().unwrap();
    }
}

/// One instance of the real event loop on its own thread, as the program runs it, with a
/// journal or not.
struct Instance {
    /// Its typed lines.
    input: tokio::sync::mpsc::UnboundedSender<Input>,
    /// Its screen.
    output: mpsc::Receiver<Output>,
    /// Its UDP port, for the other to add.
    port: u16,
}

fn instance(nick: &str, peer: Option<u16>, journal: Option<Journal>) -> Instance {
    let bound = socket::bind(Some("127.0.0.1".parse().unwrap()), 0).unwrap();
    let port = bound.socket.local_addr().unwrap().port();
    let endpoint = Endpoint::new(
        Config {
            identity: tailchat::proto::Identity::from_secret(rand::random()),
            nick: nick.to_owned(),
            port,
            seed: rand::random(),
            discovery: false,
            session: rand::random::<u64>() | 1,
            limits: Default::default(),
        },
        Instant::now(),
    );
    let peers = peer
        .map(|p| vec![addr::parse(&format!("127.0.0.1:{p}"), 7654).unwrap()])
        .unwrap_or_default();
    let (in_tx, in_rx) = tokio::sync::mpsc::unbounded_channel();
    let (out_tx, out_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let setup = Setup {
            endpoint,
            session: 1,
            peers,
            default_port: 7654,
            reaches: (bound.reaches_v4, bound.reaches_v6),
            journal,
            scripted: false,
            awaited: None,
            wait: Duration::from_secs(5),
            json: false,
            control_dir: None,
            files: Default::default(),
            unshown: Vec::new(),
            presence: Default::default(),
        };
        rt.block_on(async {
            let net = UdpIo::new(bound, false, 0).unwrap();
            app::run(setup, net, Box::new(out_tx), in_rx, std::future::pending()).await;
        });
    });
    Instance {
        input: in_tx,
        output: out_rx,
        port,
    }
}

/// Nanoseconds on one clock every thread reads.
fn clock() -> u64 {
    use std::sync::OnceLock;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Chat latency (alice types a line → bob's screen gets it) while bob, whose journal is
/// `journal`, does nothing else and while he runs `/history 100000`: `MESSAGES` each, one a
/// millisecond.
fn latency_during_history(journal: &Path) {
    const SENT: usize = 2_000;
    let limit = HistoryLimit {
        messages: MESSAGES,
        days: None,
    };
    // A copy: bob's run appends to it.
    let copy = journal.with_file_name("journal-latency");
    copy_synced(journal, &copy);
    let (j, _) = Journal::open_with(&copy, &limit).unwrap();
    let alice = instance("alice", None, None);
    let bob = instance("bob", Some(alice.port), Some(j));
    let joined = |i: &Instance| loop {
        let o = i.output.recv_timeout(Duration::from_secs(10)).unwrap();
        if matches!(&o, Output::Notice(n) if n.contains("joined")) {
            break;
        }
    };
    joined(&alice);
    joined(&bob);
    // Bob's screen, read on its own thread: (arrival, send stamp) of alice's lines, and how
    // many history lines came.
    let (lat_tx, lat_rx) = mpsc::channel::<Option<Duration>>();
    let output = bob.output;
    std::thread::spawn(move || {
        while let Ok(o) = output.recv() {
            let sent = match &o {
                Output::Group { text, .. } => text.parse::<u64>().ok(),
                _ => None,
            };
            let msg = sent.map(|s| Duration::from_nanos(clock() - s));
            if lat_tx.send(msg).is_err() {
                break;
            }
        }
    });
    for phase in ["quiet", "during /history 100000"] {
        if phase != "quiet" {
            bob.input
                .send(Input::Line("/history 100000".into()))
                .unwrap();
        }
        let start = Instant::now();
        for i in 0..SENT {
            // Paced: one a millisecond, on a schedule (a late one is not made up by a burst).
            let due = start + Duration::from_millis(i as u64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            alice.input.send(Input::Line(clock().to_string())).unwrap();
        }
        let (mut lat, mut lines) = (Vec::with_capacity(SENT), 0);
        while lat.len() < SENT {
            match lat_rx.recv_timeout(Duration::from_secs(30)).unwrap() {
                Some(d) => lat.push(d),
                None => lines += 1,
            }
        }
        lat.sort();
        println!(
            "chat latency, {phase}: {SENT} messages one a ms: p50 {} p99 {} max {} ({lines} other lines on bob's screen meanwhile)",
            ms(pct(&lat, 0.5)),
            ms(pct(&lat, 0.99)),
            ms(lat[lat.len() - 1])
        );
    }
    drop(alice.input);
    drop(bob.input);
}

fn main() {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("journal-bench");
    // JOURNAL_BENCH_KEEP: reuse the journal of an earlier run, and leave it for the next.
    let keep = std::env::var_os("JOURNAL_BENCH_KEEP").is_some();
    let big = root.join("journal-1m");
    if !(keep && big.exists()) {
        let _ = fs::remove_dir_all(&root);
    }
    fs::create_dir_all(&root).unwrap();
    let took = if big.exists() {
        Duration::ZERO
    } else {
        build(&big)
    };
    let size = fs::metadata(&big).unwrap().len();
    println!(
        "built: {MESSAGES} messages ({}% ours, each delivered to {PEERS} peers), {} in {}",
        100 / OURS_ONE_IN,
        mib(size),
        ms(took)
    );

    // The journal alone: open to ready, with no compaction due (the limit holds it all).
    let at_limit = HistoryLimit {
        messages: MESSAGES,
        days: None,
    };
    for _ in 0..3 {
        let ((j, restored), wall, cpu) = timed(|| Journal::open_with(&big, &at_limit).unwrap());
        assert!(!j.compacting());
        // (More when JOURNAL_BENCH_KEEP reuses a journal an earlier run appended to.)
        assert!(
            restored.records as u64
                >= MESSAGES + MESSAGES / OURS_ONE_IN * PEERS + 5 + MESSAGES / 8 * PEERS
        );
        assert!(restored.unshown.is_empty());
        let ((lines, _), h_wall, h_cpu) = timed(|| j.history(&HistoryFilter::Group, 50).unwrap());
        let ((many, _), m_wall, m_cpu) =
            timed(|| j.history(&HistoryFilter::Group, 100_000).unwrap());
        let (_, f_wall, f_cpu) = timed(|| {
            many.iter()
                .map(tailchat::store::journal::format_history_line)
                .map(|l| l.len())
                .sum::<usize>()
        });
        println!(
            "formatting those 100000 lines: {} (CPU {})",
            ms(f_wall),
            ms(f_cpu)
        );
        println!(
            "Journal::open_with (1M messages, no compaction due): {} (CPU {}); history 50: {} (CPU {}, {} lines); history 100000: {} (CPU {}, {} lines)",
            ms(wall),
            ms(cpu),
            ms(h_wall),
            ms(h_cpu),
            lines.len(),
            ms(m_wall),
            ms(m_cpu),
            many.len()
        );
    }

    if std::env::var_os("JOURNAL_BENCH_OPEN_ONLY").is_some() {
        return;
    }
    if std::env::var_os("JOURNAL_BENCH_LATENCY_ONLY").is_some() {
        latency_during_history(&big);
        return;
    }

    latency_during_history(&big);

    // The real program on it, with history_limit = 1 000 000 (nothing to compact); and, when
    // JOURNAL_BENCH_OLD_BINARY names one, an older build of it on the same journal, for
    // comparison (it knows no history_limit: that config file is left out for it).
    let (data, config) = program_dirs(&root, "at-limit", &big, MESSAGES);
    let old = std::env::var_os("JOURNAL_BENCH_OLD_BINARY").map(PathBuf::from);
    if let Some(old) = &old {
        let (old_data, _) = program_dirs(&root, "old", &big, MESSAGES);
        let no_config = root.join("old").join("no-config");
        fs::create_dir_all(&no_config).unwrap();
        for run in 0..2 {
            let (mut p, start) = Program::start_binary(old, &old_data, &no_config);
            let (rss0, hwm0) = p.memory();
            let (h50, n50) = p.history(50);
            let (rss50, hwm50) = p.memory();
            println!(
                "OLD program run {run}: start to first line {}, RSS {rss0} KiB (HWM {hwm0}); /history 50: {} ({n50} lines), RSS {rss50} KiB (HWM {hwm50})",
                ms(start),
                ms(h50),
            );
            p.quit();
        }
    }
    for run in 0..3 {
        let (mut p, start) = Program::start(&data, &config);
        let (rss0, _) = p.memory();
        let (h50, n50) = p.history(50);
        let (rss50, hwm50) = p.memory();
        let (h100k, n100k) = p.history(100_000);
        let (rss100k, hwm100k) = p.memory();
        println!(
            "program run {run}, history_limit 1M: start to first line {}, RSS {} KiB; /history 50: {} ({n50} lines), RSS {rss50} KiB (HWM {hwm50}); /history 100000: {} ({n100k} lines), RSS {rss100k} KiB (HWM {hwm100k})",
            ms(start),
            rss0,
            ms(h50),
            ms(h100k),
        );
        p.quit();
    }

    // Append + sync: one record per batch, as a wake-up with one message heard.
    {
        let (mut j, _) = Journal::open_with(&big, &at_limit).unwrap();
        let mut lat = Vec::with_capacity(SYNCS);
        for i in 0..SYNCS {
            let r = Record::Heard {
                at_ms: 0,
                from: PeerId(0x1001),
                nick: "peer0".into(),
                id: 10_000_000 + i as u64,
                direct: false,
                text: text(i as u64),
                action: false,
                written_ms: 0,
            };
            let t = Instant::now();
            j.append(&r).unwrap();
            j.sync().unwrap();
            lat.push(t.elapsed());
        }
        // Shown, as the screen would say: the next open has nothing to replay.
        j.append(&Record::Shown {
            from: PeerId(0x1001),
            id: 10_000_000 + SYNCS as u64,
        })
        .unwrap();
        j.sync().unwrap();
        lat.sort();
        println!(
            "append + sync (fdatasync), {SYNCS} batches of one record: p50 {} p99 {} max {}",
            ms(pct(&lat, 0.5)),
            ms(pct(&lat, 0.99)),
            ms(lat[lat.len() - 1])
        );
    }

    // Compaction to the default limit, in the foreground (what the background thread does).
    {
        let copy = root.join("journal-compact");
        copy_synced(&big, &copy);
        let (mut j, _) = Journal::open_with(&copy, &at_limit).unwrap();
        let t = Instant::now();
        j.set_history_limit(HistoryLimit::default());
        let done = j.compact().unwrap();
        println!(
            "compaction to the default limit ({} messages): {} → {} ({} → {} messages) in {}",
            HistoryLimit::default().messages,
            mib(done.bytes_before),
            mib(done.bytes_after),
            done.messages_before,
            done.messages_after,
            ms(t.elapsed())
        );
        drop(j);
        let t = Instant::now();
        let (j, _) = Journal::open(&copy).unwrap();
        let opened = t.elapsed();
        let t = Instant::now();
        j.history(&HistoryFilter::Group, 50).unwrap();
        println!(
            "open of the compacted journal: {}; history 50: {}",
            ms(opened),
            ms(t.elapsed())
        );
    }

    // The first start on the big journal with the default limit: open returns at once, the
    // compaction runs in the background.
    {
        let copy = root.join("journal-first-start");
        copy_synced(&big, &copy);
        let t = Instant::now();
        let (mut j, _) = Journal::open(&copy).unwrap();
        let opened = t.elapsed();
        assert!(j.compacting());
        let done = j.wait_for_compaction().unwrap();
        println!(
            "first open with the default limit: open {} (compaction started in the background), compaction done {} after open: {} → {}",
            ms(opened),
            ms(t.elapsed()),
            mib(done.bytes_before),
            mib(done.bytes_after)
        );
    }
    let (data, config) = program_dirs(&root, "default", &big, HistoryLimit::default().messages);
    let (p, start) = Program::start(&data, &config);
    println!(
        "program, first start on the 1M journal with the default limit: first line after {}",
        ms(start)
    );
    p.quit();
    if !keep {
        let _ = fs::remove_dir_all(&root);
    }
}
