//! Running the real `tailchat` binary in tests: a clean environment, piped stdin/stdout, and
//! waiting for output lines under a timeout (never sleeping to synchronise).

#![allow(dead_code)] // each test binary uses a different part of it

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// How long to wait for an expected line before failing.
pub const WAIT: Duration = Duration::from_secs(10);

/// Waits until `ready()` holds (looking every 10 ms), failing after [`WAIT`]: for a state
/// outside the program's output, such as a file on disk.
pub fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One running tailchat process.
pub struct Chat {
    /// The process.
    child: Child,
    /// Its standard input (commands), `None` once closed.
    stdin: Option<ChildStdin>,
    /// Lines of its standard output, as they come.
    lines: Receiver<String>,
    /// Every line seen so far (for failure reports).
    pub seen: Vec<String>,
    /// The command line, for failure reports.
    pub cmdline: String,
    /// Its UDP port.
    pub port: u16,
    /// Its nick.
    pub nick: String,
    /// Temporary data directory, removed on drop (`None`: the test's own, kept).
    _dir: Option<tempfile::TempDir>,
}

/// `line` without the `#` and 8 to 16 hex digits that tell a nick apart (`alice#4635138f`).
fn without_ids(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find('#') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_hexdigit).count();
        let word_before = out
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        if word_before && (8..=16).contains(&digits) {
            rest = &after[digits..];
        } else {
            out.push('#');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// A wrapper for [`Chat::start_under`] that moves a process's clock by `offset` (`-1h`,
/// `+2h`), with libfaketime preloaded (`apt-get install faketime`; CI installs it), and the
/// monotonic clock too unless `wall_only`; `None` where libfaketime is not installed.
///
/// The library, not the `faketime` program: that wrapper keeps a semaphore and a shared
/// memory segment per process id in /dev/shm, which a killed run leaves behind, and a later
/// process given the same id fails to start ("sem_open: File exists").
#[allow(dead_code)] // not every test binary moves clocks
pub fn faketime(offset: &str, wall_only: bool) -> Option<Vec<String>> {
    let lib = std::fs::read_dir("/usr/lib")
        .ok()?
        .flatten()
        .map(|arch| arch.path().join("faketime/libfaketime.so.1"))
        .find(|lib| lib.is_file())?;
    let mut wrapper = vec![
        "env".to_owned(),
        format!("LD_PRELOAD={}", lib.display()),
        format!("FAKETIME={offset}"),
    ];
    if wall_only {
        wrapper.push("FAKETIME_DONT_FAKE_MONOTONIC=1".to_owned());
    }
    Some(wrapper)
}

/// A command for the binary with a clean environment and a private data directory.
pub fn command(args: &[&str]) -> (Command, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tailchat"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path().join("data"))
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .env("USER", "tester")
        .env("RUST_LOG", "warn")
        .args(args);
    (cmd, dir)
}

impl Chat {
    /// Starts `tailchat --nick NICK --no-discovery --port 0 ARGS…` (without `--port 0` when ARGS
    /// name a port) and waits for its start line.
    pub fn start(nick: &str, args: &[&str]) -> Chat {
        Chat::start_under(&[], nick, args)
    }

    /// As [`Chat::start`], run through `wrapper` (a program and its arguments, which runs the
    /// rest of its command line: `faketime -f -1h`, say).
    pub fn start_under(wrapper: &[&str], nick: &str, args: &[&str]) -> Chat {
        Chat::start_full(wrapper, nick, args, &[], None)
    }

    /// As [`Chat::start`], with more environment variables.
    pub fn start_env(nick: &str, args: &[&str], env: &[(&str, &str)]) -> Chat {
        Chat::start_full(&[], nick, args, env, None)
    }

    /// As [`Chat::start`], with `home` as its home directory (data and config under it), which
    /// outlives it: a second start on the same `home` is the same peer, restarted.
    pub fn start_in(
        home: &std::path::Path,
        nick: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Chat {
        Chat::start_full(&[], nick, args, env, Some(home))
    }

    fn start_full(
        wrapper: &[&str],
        nick: &str,
        args: &[&str],
        env: &[(&str, &str)],
        home: Option<&std::path::Path>,
    ) -> Chat {
        let mut all = vec!["--nick", nick, "--no-discovery"];
        if !args
            .iter()
            .any(|a| *a == "--port" || a.starts_with("--port="))
        {
            all.extend(["--port", "0"]);
        }
        all.extend_from_slice(args);
        let (mut cmd, dir) = command(&all);
        cmd.envs(env.iter().copied());
        let dir = match home {
            Some(home) => {
                cmd.env("HOME", home)
                    .env("XDG_DATA_HOME", home.join("data"))
                    .env("XDG_CONFIG_HOME", home.join("config"));
                None
            }
            None => Some(dir),
        };
        let mut cmd = match wrapper {
            [] => cmd,
            [program, rest @ ..] => {
                let mut wrapped = Command::new(program);
                wrapped.env_clear();
                wrapped.envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))));
                wrapped
                    .args(rest)
                    .arg(cmd.get_program())
                    .args(cmd.get_args());
                wrapped
            }
        };
        let cmdline = format!("{} tailchat {}", wrapper.join(" "), all.join(" "));
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tailchat");
        // Errors go to standard error when not on a terminal; the tests read both streams as
        // one (each line whole, in the order each stream wrote them).
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        let err_tx = tx.clone();
        std::thread::spawn(move || forward_lines(stdout, &tx));
        std::thread::spawn(move || forward_lines(stderr, &err_tx));
        let mut chat = Chat {
            stdin: child.stdin.take(),
            child,
            lines,
            seen: Vec::new(),
            cmdline,
            port: 0,
            nick: nick.to_owned(),
            _dir: dir,
        };
        let start = chat.expect("listening on UDP port");
        let port = start
            .split("listening on UDP port ")
            .nth(1)
            .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| chat.fail("no port in the start line"));
        chat.port = port;
        chat
    }

    /// Types a line.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to tailchat");
        stdin.flush().expect("flush");
    }

    /// Kills the process at once (SIGKILL), as a crash or power loss would end it.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// After the process has ended: everything it wrote that was not read yet (the pipe's
    /// reader ends at end of file).
    pub fn read_rest(&mut self) {
        while let Ok(line) = self.lines.recv_timeout(WAIT) {
            self.seen.push(line);
        }
    }

    /// The rows of `/peers` now (without the header); `/help` after it marks the table's end,
    /// since commands are answered in order.
    pub fn peers_rows(&mut self) -> Vec<String> {
        self.send("/peers");
        self.expect_where("the /peers header", |l| {
            l.contains("state") && l.contains("rtt")
        });
        let header = self.seen.len();
        self.send("/help");
        self.expect("/quit");
        self.seen[header..]
            .iter()
            .take_while(|l| !l.contains("/msg"))
            .cloned()
            .collect()
    }

    /// `nick`'s row of our `/peers`: how many of our messages still wait for it.
    pub fn queued_for(&mut self, nick: &str) -> usize {
        self.send("/peers");
        let row = self.expect_where(&format!("{nick}'s /peers row"), |l| {
            l.split_whitespace().nth(1) == Some(nick)
        });
        // time, nick, state, rtt, queued, …
        let cols: Vec<&str> = row.split_whitespace().collect();
        cols.get(4)
            .and_then(|q| q.parse().ok())
            .unwrap_or_else(|| self.fail(&format!("no queued column in {row:?}")))
    }

    /// The process id (to stop or signal it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends it a signal with kill(1) (`-STOP`, `-CONT`), and says whether that worked.
    pub fn signal(&self, sig: &str) -> bool {
        std::process::Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Closes standard input (EOF), which means /quit.
    pub fn close_input(&mut self) {
        self.stdin = None;
    }

    /// Waits for a line containing `needle` and returns it. A nick the line tells apart by
    /// its id (`<alice#4635138f>`, `bob#ab74fa12 joined`) matches the plain nick too: another
    /// test's peer that remembers an address this one's peer now has (the kernel gave the
    /// port again) may join it under the same nick.
    pub fn expect(&mut self, needle: &str) -> String {
        self.expect_where(needle, |l| {
            l.contains(needle) || without_ids(l).contains(needle)
        })
    }

    /// A line matching `f` already seen, or else the next one: for lines on standard error,
    /// which may arrive before the standard output lines that come first in the program.
    pub fn expect_seen_or(&mut self, what: &str, f: impl Fn(&str) -> bool) -> String {
        match self.seen.iter().find(|l| f(l)) {
            Some(line) => line.clone(),
            None => self.expect_where(what, f),
        }
    }

    /// Waits for a line matching `f`; `what` describes it for the failure report.
    pub fn expect_where(&mut self, what: &str, f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if f(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.fail(&format!("timed out waiting for a line with {what:?}"))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.fail(&format!("output ended before a line with {what:?}"))
                }
            }
        }
    }

    /// Collects whatever arrives within `d` (for asserting something did NOT appear after an
    /// event that proves it would have by now).
    pub fn drain(&mut self) -> Vec<String> {
        let mut got = Vec::new();
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line.clone());
            got.push(line);
        }
        got
    }

    /// Waits for the process to exit and returns its status.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Read what is left of the output.
                while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(1)) {
                    self.seen.push(line);
                }
                return status;
            }
            if Instant::now() > deadline {
                self.fail("did not exit");
            }
            // Polling a child's exit status has no event to wait on; this is a bounded poll,
            // not a synchronisation sleep.
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Fails the test with the command line and everything the process printed.
    pub fn fail(&self, why: &str) -> ! {
        panic!(
            "{why}\ncommand: {}\noutput so far:\n{}",
            self.cmdline,
            self.seen.join("\n")
        );
    }
}

/// Sends each line read from `from` until it ends or nobody listens.
fn forward_lines(from: impl std::io::Read, to: &mpsc::Sender<String>) {
    for line in BufReader::new(from).lines() {
        let Ok(line) = line else { break };
        if to.send(line).is_err() {
            break;
        }
    }
}

impl Drop for Chat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A peer that offers files as a test tells it to, lies included: the library's protocol core
/// on a UDP socket of its own (so its handshake and control messages are the real ones) and a
/// TCP listener that serves whatever manifest and bytes the test gave for a token. With it,
/// the real program's receiving side is tested against a hostile sender without any hook in
/// the program.
pub struct FakeOfferer {
    /// Its UDP port on 127.0.0.1 (give it to the receiver as `--peer`).
    pub port: u16,
    /// Its TCP port on 127.0.0.1, where offers are served.
    pub data_port: u16,
    /// Control payloads to send to the peer, in order, once it is heard.
    outgoing: mpsc::Sender<Vec<u8>>,
    /// Control messages the peer sent us, as they come.
    incoming: Receiver<tailchat::transfer::control::Control>,
    /// What each token gets: the manifest bytes served, then the data bytes.
    served: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<[u8; 16], Served>>>,
    /// Set on drop: both threads end.
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// What the fake peer serves for one token.
#[derive(Clone)]
struct Served {
    /// The manifest's bytes as served (not necessarily the offered ones).
    manifest: Vec<u8>,
    /// Everything after the manifest (not necessarily the offered bytes).
    body: Vec<u8>,
}

/// The offer a truthful sender would make of `manifest`: its size, count, hash and length.
pub fn offer_of(
    name: &str,
    folder: bool,
    manifest: &tailchat::transfer::manifest::Manifest,
    port: u16,
) -> tailchat::transfer::control::Offer {
    let bytes = manifest.encode();
    tailchat::transfer::control::Offer {
        id: rand::random(),
        token: rand::random(),
        name: name.to_owned(),
        size: manifest.total(),
        files: u32::try_from(manifest.entries.len()).expect("files"),
        folder,
        manifest_hash: *blake3::hash(&bytes).as_bytes(),
        manifest_len: u32::try_from(bytes.len()).expect("manifest length"),
        port,
    }
}

impl FakeOfferer {
    /// Starts one, nicked `nick`, on 127.0.0.1; it takes the first peer that says hello.
    pub fn start(nick: &str) -> FakeOfferer {
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
        let port = udp.local_addr().expect("UDP address").port();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind TCP");
        let data_port = tcp.local_addr().expect("TCP address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let served: Arc<std::sync::Mutex<std::collections::HashMap<[u8; 16], Served>>> =
            Arc::default();
        let (outgoing, to_send) = mpsc::channel();
        let (heard, incoming) = mpsc::channel();
        let endpoint = tailchat::proto::Endpoint::new(
            tailchat::proto::Config {
                identity: tailchat::proto::Identity::from_secret(rand::random()),
                nick: nick.to_owned(),
                port,
                seed: rand::random(),
                discovery: false,
                session: rand::random::<u64>() | 1,
                limits: tailchat::proto::Limits::default(),
            },
            Instant::now(),
        );
        let chat_stop = Arc::clone(&stop);
        std::thread::spawn(move || drive_fake(endpoint, &udp, &to_send, &heard, &chat_stop));
        let (data_stop, table) = (Arc::clone(&stop), Arc::clone(&served));
        std::thread::spawn(move || {
            for conn in tcp.incoming() {
                if data_stop.load(std::sync::atomic::Ordering::Acquire) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let table = Arc::clone(&table);
                std::thread::spawn(move || serve_fake(conn, &table));
            }
        });
        FakeOfferer {
            port,
            data_port,
            outgoing,
            incoming,
            served,
            stop,
        }
    }

    /// Offers `offer` to the peer and serves `manifest` then `body` to whoever presents its
    /// token (with the offer's id).
    pub fn offer(
        &self,
        offer: &tailchat::transfer::control::Offer,
        manifest: Vec<u8>,
        body: Vec<u8>,
    ) {
        self.served
            .lock()
            .expect("table")
            .insert(offer.token, Served { manifest, body });
        let payload = tailchat::transfer::control::encode(
            &tailchat::transfer::control::Control::Offer(offer.clone()),
        );
        self.outgoing.send(payload).expect("fake peer running");
    }

    /// Waits for a control message from the peer matching `f`, failing after [`WAIT`].
    pub fn expect_control(
        &self,
        what: &str,
        f: impl Fn(&tailchat::transfer::control::Control) -> bool,
    ) -> tailchat::transfer::control::Control {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.incoming.recv_timeout(left) {
                Ok(c) if f(&c) => return c,
                Ok(_) => {}
                Err(_) => panic!("the fake peer timed out waiting for {what}"),
            }
        }
    }
}

impl Drop for FakeOfferer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        // Wakes the listener's blocking accept so its thread sees the flag.
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.data_port));
    }
}

/// The fake peer's chat: runs the protocol core on `udp`, sends queued payloads to the first
/// peer that joins, and passes on the control messages it gets.
fn drive_fake(
    mut ep: tailchat::proto::Endpoint,
    udp: &std::net::UdpSocket,
    to_send: &Receiver<Vec<u8>>,
    heard: &mpsc::Sender<tailchat::transfer::control::Control>,
    stop: &std::sync::atomic::AtomicBool,
) {
    use tailchat::proto::Event;
    let mut peer = None;
    let mut pending: std::collections::VecDeque<Vec<u8>> = std::collections::VecDeque::new();
    let mut buf = vec![0u8; 65_536];
    while !stop.load(std::sync::atomic::Ordering::Acquire) {
        pending.extend(to_send.try_iter());
        if let Some(to) = peer {
            while let Some(p) = pending.front() {
                if ep.send_app_data(Instant::now(), to, p).is_err() {
                    break; // not heard yet: tried again next round
                }
                pending.pop_front();
            }
        }
        // Wakes for a datagram, the core's next timer, or new payloads, whichever is first.
        let wait = ep
            .poll_timeout()
            .map_or(Duration::from_millis(10), |t| {
                t.saturating_duration_since(Instant::now())
            })
            .clamp(Duration::from_millis(1), Duration::from_millis(10));
        let _ = udp.set_read_timeout(Some(wait));
        if let Ok((n, from)) = udp.recv_from(&mut buf) {
            ep.handle_datagram(Instant::now(), from, &buf[..n]);
        }
        ep.handle_timeout(Instant::now());
        while let Some(t) = ep.poll_transmit() {
            let _ = udp.send_to(&t.bytes, t.to);
        }
        while let Some(event) = ep.poll_event() {
            match event {
                Event::PeerJoined { peer: p, .. } => peer = peer.or(Some(p)),
                Event::AppData { data, .. } => {
                    if let Ok(c) = tailchat::transfer::control::decode(&data) {
                        let _ = heard.send(c);
                    }
                }
                _ => {}
            }
        }
    }
}

/// Serves one data connection of the fake peer: the request is read as the real protocol
/// has it, then whatever the test gave for its token, then the connection is closed. The
/// requested file and offset are ignored (always from the start): its tests never resume.
fn serve_fake(
    mut conn: std::net::TcpStream,
    table: &std::sync::Mutex<std::collections::HashMap<[u8; 16], Served>>,
) {
    use tailchat::transfer::data::{self, Request, Status};
    let Ok(req) = Request::read(&mut conn) else {
        return;
    };
    let served = table.lock().expect("table").get(&req.token).cloned();
    let Some(served) = served else {
        let _ = data::write_response(&mut conn, Status::Unknown, &[]);
        return;
    };
    // The manifest's length as served, whatever the offer said.
    if data::write_response(&mut conn, Status::Ok, &served.manifest).is_ok() {
        let _ = conn.write_all(&served.body);
    }
    let _ = conn.shutdown(std::net::Shutdown::Write);
}
