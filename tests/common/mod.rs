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
    /// Starts `tailchat --nick NICK --no-discovery --port 0 ARGS…` and waits for its start line.
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
        let mut all = vec!["--nick", nick, "--no-discovery", "--port", "0"];
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

    /// The process id (to stop or signal it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Closes standard input (EOF), which means /quit.
    pub fn close_input(&mut self) {
        self.stdin = None;
    }

    /// Waits for a line containing `needle` and returns it.
    pub fn expect(&mut self, needle: &str) -> String {
        self.expect_where(needle, |l| l.contains(needle))
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
