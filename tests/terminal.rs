//! The real program on a real terminal: bob runs inside a private tmux server (a pty, so
//! rustyline's interactive mode with its `ExternalPrinter` is what gets tested), alice runs
//! in plain mode on pipes. Checks that a half-typed line survives a message printed above the
//! prompt, that the prompt shows the nick and follows `/nick`, that input arriving in one
//! burst shows whole at once, that `/quit` exits 0, and that SIGTERM or SIGHUP at an open
//! prompt leaves the terminal as it was found.
//!
//! Needs `tmux` on `PATH`. Every wait polls the pane (or alice's output) until the expected
//! text is there, under [`WAIT`]; nothing sleeps to synchronise.
//!
//! Typed text is sent one character per `send-keys` call, each waited for on screen before
//! the next, as a typist sends it. Bursts (a paste without bracketed paste, an input method
//! committing a word) are sent in one `send-keys -l` call, which tmux writes to the terminal
//! in one write: rustyline 15 showed only the first character of such a burst until the next
//! key press (kkawakam/rustyline#976, fixed in rustyline 19), and [`Pane::send_burst`] is
//! there to keep it fixed.
//!
//! The program runs under a shell in the pane, so that after it exits the pane holds an
//! interactive `sh` where `stty -a` shows what the program left behind. On Debian `sh` is
//! dash, which has no line editing and so leaves the terminal's attributes alone; a shell
//! with line editing sets its own while it reads, which could hide a terminal left raw.

mod common;

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Chat, WAIT};
use nix::sys::termios::{self, LocalFlags};

/// The pane size: wide enough that no line in these tests wraps.
const COLUMNS: usize = 100;
/// The pane height.
const ROWS: usize = 30;
/// The tmux session (and so the target of every pane command); the server is private, so it
/// is the only one.
const SESSION: &str = "chat";
/// Between two looks at the pane: tmux has no "wait until the screen shows X", so waits poll.
const POLL: Duration = Duration::from_millis(10);

/// How many lines of the program's log a failure shows (rustyline logs every key at debug).
const LOG_TAIL: usize = 60;
/// What the shell around the program prints, then the exit status and `]`.
const EXIT_MARK: &str = "[tailchat exit status ";
/// The prompt of the shell that takes over the pane once the program has exited.
const SHELL_PROMPT: &str = "shell$ ";

/// What [`Pane::send_burst`] sends in the burst tests: a sentence as a paste without
/// bracketed paste delivers it, and a word as an input method commits it (wide characters).
const BURSTS: [&str; 2] = ["plain paste of a sentence", "日本語"];

/// Gives each tmux server of this test process its own socket name.
static SERVERS: AtomicUsize = AtomicUsize::new(0);

/// One snapshot of the pane.
struct Screen {
    /// Every row of the pane, trailing blanks trimmed by tmux.
    rows: Vec<String>,
    /// Cursor column, from 0; the only way to see a typed trailing space.
    cursor_x: usize,
    /// Cursor row, from 0.
    cursor_y: usize,
}

impl Screen {
    /// The last non-empty row and its index: the prompt line while readline runs.
    fn prompt_line(&self) -> Option<(usize, &str)> {
        self.rows
            .iter()
            .enumerate()
            .rev()
            .find(|(_, row)| !row.trim().is_empty())
            .map(|(i, row)| (i, row.as_str()))
    }

    /// Whether the prompt line is exactly `line` (trailing spaces are not on the screen, so
    /// they are checked through the cursor) with the cursor at its end.
    fn prompt_is(&self, line: &str) -> bool {
        self.prompt_line().is_some_and(|(row, text)| {
            text.trim_end() == line.trim_end()
                && self.cursor_y == row
                && self.cursor_x == columns(line)
        })
    }

    /// The index of the first row containing `needle`.
    fn row_with(&self, needle: &str) -> Option<usize> {
        self.rows.iter().position(|row| row.contains(needle))
    }

    /// The whole screen, framed, for failure reports.
    fn show(&self) -> String {
        format!(
            "cursor at column {}, row {}\n{}\n{}\n{}",
            self.cursor_x,
            self.cursor_y,
            "-".repeat(COLUMNS),
            self.rows.join("\n"),
            "-".repeat(COLUMNS),
        )
    }
}

/// The tailchat of one nick running in a tmux pane on a private tmux server, whose whole
/// state (socket, data directory of the program) lives in a temporary directory. Dropping it
/// kills the server, and with it the program, even when the test fails.
struct Pane {
    /// `-L` name of the private server.
    socket: String,
    /// The command line that started the pane, for failure reports.
    cmdline: String,
    /// Where the program's log goes (`RUST_LOG` is set), shown on failure.
    log: PathBuf,
    /// Temporary directory: tmux socket, HOME and data of the program; removed on drop.
    dir: tempfile::TempDir,
    /// Whether a failure report already showed the screen, so the drop need not again.
    screen_shown: Cell<bool>,
}

impl Pane {
    /// Starts `tailchat --nick NICK --no-discovery --port 0 --bind 127.0.0.1 ARGS…` in a
    /// fresh `COLUMNS`×`ROWS` pane with a clean environment, and waits for its prompt.
    fn start(nick: &str, args: &[&str]) -> Pane {
        Self::start_with_config(nick, args, None)
    }

    /// [`Pane::start`] with `config` as the user's config file, if given.
    fn start_with_config(nick: &str, args: &[&str], config: Option<&str>) -> Pane {
        Self::start_in("screen-256color", nick, args, config)
    }

    /// [`Pane::start_with_config`] with `TERM` set to `term`. With `dumb` there is no line
    /// editing (and no prompt): it waits for the start line instead.
    fn start_in(term: &str, nick: &str, args: &[&str], config: Option<&str>) -> Pane {
        Self::start_with_stderr(term, nick, args, config, None)
    }

    /// [`Pane::start_in`] with standard error going to the file `stderr`, if given.
    fn start_with_stderr(
        term: &str,
        nick: &str,
        args: &[&str],
        config: Option<&str>,
        stderr: Option<&Path>,
    ) -> Pane {
        let term_var = format!("TERM={term}");
        let redirect = stderr.map_or(String::new(), |p| {
            format!(" 2>{}", shell_quote(p.to_str().expect("UTF-8 path")))
        });
        let dir = tempfile::tempdir().expect("temp dir");
        let home = dir.path().to_str().expect("UTF-8 temp dir").to_owned();
        if let Some(config) = config {
            let at = dir.path().join("config/tailchat");
            std::fs::create_dir_all(&at).expect("config dir");
            std::fs::write(at.join("config.toml"), config).expect("config file");
        }
        let socket = format!(
            "tailchat-test-{}-{}",
            std::process::id(),
            SERVERS.fetch_add(1, Ordering::Relaxed)
        );
        let columns = COLUMNS.to_string();
        let rows = ROWS.to_string();
        let tmux_args: Vec<String> = [
            // One command list, so the options hold before the program can print or exit;
            // the pane stays after the program ends, with its last screen.
            "set-option",
            "-g",
            "remain-on-exit",
            "on",
            ";",
            "set-option",
            "-g",
            "default-terminal",
            "screen-256color",
            ";",
            "new-session",
            "-d",
            "-s",
            SESSION,
            "-x",
            &columns,
            "-y",
            &rows,
            // The exit status is read from the screen, not from tmux's `pane_dead_status`:
            // Debian's tmux 3.3a now and then never reaps the pane's process (seen in about
            // half the runs here; a SIGCHLD sent to the server by hand makes it reap), so the
            // status never arrives. tmux/tmux#311 blames libutempter's SIGCHLD handler.
            // Then an interactive shell takes the pane over, to look at the terminal with.
            "sh",
            "-c",
            &format!("\"$@\"{redirect}; echo \"{EXIT_MARK}$?]\"; export PS1='{SHELL_PROMPT}'; exec sh -i"),
            "sh",
            "env",
            "-i",
            &term_var,
            "NO_COLOR=1",
            "USER=tester",
            // In interactive mode the log goes to a file, shown on failure.
            "RUST_LOG=debug",
            &format!("HOME={home}"),
            &format!("XDG_DATA_HOME={home}/data"),
            &format!("XDG_CONFIG_HOME={home}/config"),
            env!("CARGO_BIN_EXE_tailchat"),
            "--nick",
            nick,
            "--no-discovery",
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
        ]
        .iter()
        .chain(args)
        .map(|a| (*a).to_owned())
        .collect();
        let cmdline = format!(
            "TMUX_TMPDIR={home} tmux -L {socket} -f /dev/null {}",
            tmux_args
                .iter()
                .map(|a| shell_quote(a))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let pane = Pane {
            cmdline,
            socket,
            log: dir.path().join("data/tailchat/tailchat.log"),
            dir,
            screen_shown: Cell::new(false),
        };
        let args: Vec<&str> = tmux_args.iter().map(String::as_str).collect();
        if let Err(e) = pane.tmux(&args) {
            panic!(
                "cannot start tmux (is it installed? apt-get install tmux): {e}\ncommand: {}",
                pane.cmdline
            );
        }
        if term == "dumb" {
            pane.wait_for_text("listening on UDP port");
        } else {
            pane.wait(&format!("the prompt {nick:?}"), |s| {
                s.prompt_is(&format!("{nick}> "))
            });
        }
        pane
    }

    /// Runs `tmux ARGS…` against the private server with a clean environment and returns its
    /// standard output.
    fn tmux(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("tmux")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("TMUX_TMPDIR", self.dir.path())
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .map_err(|e| format!("cannot run tmux {args:?}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "tmux {args:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs a tmux command that must succeed.
    fn tmux_ok(&self, args: &[&str]) -> String {
        self.tmux(args).unwrap_or_else(|e| self.fail(&e, None))
    }

    /// The pane as it is now.
    fn screen(&self) -> Result<Screen, String> {
        // One command list, so the cursor and the rows come from the same moment.
        let out = self.tmux(&[
            "display-message",
            "-p",
            "-t",
            SESSION,
            "#{cursor_x} #{cursor_y}",
            ";",
            "capture-pane",
            "-p",
            "-t",
            SESSION,
        ])?;
        let mut lines = out.lines();
        let cursor = lines.next().unwrap_or_default();
        let mut cursor = cursor.split(' ').map(str::parse::<usize>);
        let (Some(Ok(cursor_x)), Some(Ok(cursor_y))) = (cursor.next(), cursor.next()) else {
            return Err(format!("no cursor position in tmux's answer: {out:?}"));
        };
        Ok(Screen {
            rows: lines.map(str::to_owned).collect(),
            cursor_x,
            cursor_y,
        })
    }

    /// Polls the pane until `done` holds and returns that screen; after [`WAIT`], fails with
    /// `what` and the last screen.
    fn wait(&self, what: &str, done: impl Fn(&Screen) -> bool) -> Screen {
        let deadline = Instant::now() + WAIT;
        loop {
            let screen = self.screen().unwrap_or_else(|e| self.fail(&e, None));
            if done(&screen) {
                return screen;
            }
            if Instant::now() > deadline {
                self.fail(&format!("timed out waiting for {what}"), Some(&screen));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until some row contains `needle`.
    fn wait_for_text(&self, needle: &str) -> Screen {
        self.wait(&format!("a row with {needle:?}"), |s| {
            s.row_with(needle).is_some()
        })
    }

    /// Types `text` after the prompt `prompt` already showing `before`, one character at a
    /// time, each waited for on the prompt line (see the module documentation for why).
    fn type_text(&self, prompt: &str, before: &str, text: &str) {
        let mut line = format!("{prompt}{before}");
        for c in text.chars() {
            line.push(c);
            self.tmux_ok(&["send-keys", "-t", SESSION, "-l", "--", &c.to_string()]);
            self.wait(&format!("the prompt line {line:?}"), |s| s.prompt_is(&line));
        }
    }

    /// Presses Enter.
    fn enter(&self) {
        self.tmux_ok(&["send-keys", "-t", SESSION, "Enter"]);
    }

    /// Sends `text` in one `send-keys -l` call: tmux queues its characters and writes them to
    /// the terminal together, so the program reads them in one burst, as it reads a paste
    /// without bracketed paste or a word committed by an input method.
    fn send_burst(&self, text: &str) {
        self.tmux_ok(&["send-keys", "-t", SESSION, "-l", "--", text]);
    }

    /// The process id of the program: the only child of the shell that started the pane.
    fn program_pid(&self) -> u32 {
        let shell = self.tmux_ok(&["display-message", "-p", "-t", SESSION, "#{pane_pid}"]);
        let shell = shell.trim();
        let children = format!("/proc/{shell}/task/{shell}/children");
        let found = std::fs::read_to_string(&children)
            .unwrap_or_else(|e| self.fail(&format!("cannot read {children}: {e}"), None));
        match found.split_whitespace().collect::<Vec<_>>()[..] {
            [pid] => pid
                .parse()
                .unwrap_or_else(|_| self.fail(&format!("{children}: {found:?}"), None)),
            _ => self.fail(&format!("not one child in {children}: {found:?}"), None),
        }
    }

    /// Sends `signal` (a name for `kill`, e.g. `TERM`) to the program.
    fn kill(&self, signal: &str) {
        let pid = self.program_pid().to_string();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap_or_else(|e| self.fail(&format!("cannot run kill: {e}"), None));
        if !status.success() {
            self.fail(&format!("kill -{signal} {pid} failed: {status}"), None);
        }
    }

    /// The terminal's local-mode flags, read from outside the pane (the tests are not a
    /// session leader, so opening the pane's terminal cannot make it theirs).
    fn local_flags(&self) -> LocalFlags {
        let tty = self.tmux_ok(&["display-message", "-p", "-t", SESSION, "#{pane_tty}"]);
        let tty = tty.trim();
        let file = std::fs::File::open(tty)
            .unwrap_or_else(|e| self.fail(&format!("cannot open {tty}: {e}"), None));
        termios::tcgetattr(&file)
            .unwrap_or_else(|e| self.fail(&format!("cannot read the modes of {tty}: {e}"), None))
            .local_flags
    }

    /// Once the program has exited and the shell shows its prompt, runs `stty -a` in the pane
    /// and returns the words it printed. The command ends with Ctrl-J, a newline whatever the
    /// terminal's modes, so that it runs even on a terminal left raw.
    fn stty_in_shell(&self) -> Vec<String> {
        let prompt = SHELL_PROMPT.trim_end();
        self.wait("the shell's prompt after the program", |s| {
            s.row_with(EXIT_MARK)
                .is_some_and(|exit| s.rows[exit + 1..].iter().any(|r| r.trim_end() == prompt))
        });
        self.tmux_ok(&["send-keys", "-t", SESSION, "-l", "--", "stty -a"]);
        self.tmux_ok(&["send-keys", "-t", SESSION, "C-j"]);
        // stty -a starts with "speed" (on the prompt's row if the command was not echoed);
        // the shell's next prompt says it has finished.
        let screen = self.wait("the output of stty -a, then the shell's prompt", |s| {
            s.row_with("speed ")
                .is_some_and(|speed| s.rows[speed + 1..].iter().any(|r| r.trim_end() == prompt))
        });
        let speed = screen.row_with("speed ").expect("waited for");
        screen.rows[speed..]
            .iter()
            .take_while(|r| r.trim_end() != prompt)
            .flat_map(|r| r.split(|c: char| c.is_whitespace() || c == ';'))
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Waits for the program to end and returns its exit status, as the wrapping shell
    /// reports it on the screen (128 + N for signal N), and whether that report starts a row
    /// (rather than being glued to whatever the program left on its last row).
    fn wait_exit_report(&self) -> (i32, bool) {
        let screen = self.wait("the program's exit status", |s| {
            s.rows.iter().any(|row| exit_report(row).is_some())
        });
        let (status, own_row) = screen
            .rows
            .iter()
            .find_map(|row| exit_report(row))
            .expect("waited for");
        let status = status
            .parse()
            .unwrap_or_else(|_| self.fail("unreadable exit status", Some(&screen)));
        (status, own_row)
    }

    /// Waits for the program to end and returns its exit status (see
    /// [`Pane::wait_exit_report`]).
    fn wait_exit(&self) -> i32 {
        self.wait_exit_report().0
    }

    /// Fails the test with `why`, the command line and `screen`.
    fn fail(&self, why: &str, screen: Option<&Screen>) -> ! {
        self.screen_shown.set(screen.is_some());
        panic!(
            "{why}\ncommand: {}\nscreen: {}",
            self.cmdline,
            screen.map_or_else(|| "unavailable".to_owned(), Screen::show)
        );
    }
}

impl Drop for Pane {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Whatever failed (maybe alice's side), the pane and the program's log say what
            // bob saw.
            let screen = if self.screen_shown.get() {
                "(shown above)".to_owned()
            } else {
                self.screen()
                    .map_or_else(|e| format!("unavailable: {e}"), |s| s.show())
            };
            let log = std::fs::read_to_string(&self.log).map_or_else(
                |e| format!("unavailable ({}): {e}", self.log.display()),
                |log| {
                    let lines: Vec<&str> = log.lines().collect();
                    lines[lines.len().saturating_sub(LOG_TAIL)..].join("\n")
                },
            );
            eprintln!(
                "tmux pane at failure (command: {}):\n{screen}\nend of its log:\n{log}",
                self.cmdline
            );
        }
        let _ = self.tmux(&["kill-server"]);
    }
}

/// The exit status in the wrapping shell's report on `row` (complete up to its `]`), and
/// whether the report starts the row.
fn exit_report(row: &str) -> Option<(&str, bool)> {
    let (before, after) = row.split_once(EXIT_MARK)?;
    let (status, _) = after.split_once(']')?;
    Some((status, before.is_empty()))
}

/// How many columns `text` takes on the terminal: two for each East Asian wide character
/// (Hangul, CJK, kana, full-width forms), one for any other. Enough for the text these tests
/// type; not a general `wcwidth`.
fn columns(text: &str) -> usize {
    text.chars()
        .map(|c| match c {
            '\u{1100}'..='\u{115f}'
            | '\u{2e80}'..='\u{a4cf}'
            | '\u{ac00}'..='\u{d7a3}'
            | '\u{f900}'..='\u{faff}'
            | '\u{ff00}'..='\u{ff60}'
            | '\u{ffe0}'..='\u{ffe6}'
            | '\u{20000}'..='\u{3fffd}' => 2,
            _ => 1,
        })
        .sum()
}

/// `arg` as a shell word, for the command line in failure reports.
fn shell_quote(arg: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c);
    if !arg.is_empty() && arg.chars().all(plain) {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// Starts alice on pipes and bob in a pane added to her, and waits until each sees the other.
fn alice_and_bob_in_a_pane() -> (Chat, Pane) {
    alice_and_bob_in_a_pane_with(None)
}

/// [`alice_and_bob_in_a_pane`], bob with `config` as his config file.
fn alice_and_bob_in_a_pane_with(config: Option<&str>) -> (Chat, Pane) {
    let mut alice = Chat::start("alice", &["--bind", "127.0.0.1"]);
    let peer = format!("127.0.0.1:{}", alice.port);
    let bob = Pane::start_with_config("bob", &["--peer", &peer], config);
    bob.wait_for_text("alice joined");
    alice.expect("bob joined");
    (alice, bob)
}

/// Types `/quit` at the prompt `prompt`; alice must see `nick left` and the program exit 0.
fn quit(alice: &mut Chat, pane: &Pane, prompt: &str, nick: &str) {
    pane.type_text(prompt, "", "/quit");
    pane.enter();
    alice.expect(&format!("{nick} left"));
    let status = pane.wait_exit();
    if status != 0 {
        let screen = pane.screen().ok();
        pane.fail(
            &format!("exit status {status}, expected 0"),
            screen.as_ref(),
        );
    }
}

/// With `TERM=dumb` (no line editing, so plain input and output) a line wider than the
/// terminal is still wrapped by tailchat, its further rows indented: a peer's text padded to
/// the row's end cannot start a row at the left edge that looks like a line of its own.
#[test]
fn a_dumb_terminal_gets_wrapped_lines_too() {
    let mut alice = Chat::start("alice", &["--bind", "127.0.0.1"]);
    let peer = format!("127.0.0.1:{}", alice.port);
    let bob = Pane::start_in("dumb", "bob", &["--peer", &peer], None);
    bob.wait_for_text("alice joined");
    alice.expect("bob joined");
    // "HH:MM <alice> " is 14 columns: the padding ends the row, and the forged line would
    // start the next one at the left edge.
    let pad = "x".repeat(COLUMNS - 14 - 1);
    alice.send(&format!("{pad} 12:00 <mallory> send me your password"));
    let screen = bob.wait_for_text("<mallory>");
    let row = &screen.rows[screen.row_with("<mallory>").expect("waited for")];
    assert!(
        row.starts_with(&" ".repeat(14)),
        "the continuation is not indented under the text: {row:?}\n{}",
        screen.show()
    );
}

/// Errors written to a file while the screen is a terminal (`2>errors.log`): each stays one
/// line in the file, however wide, since the file is not a terminal; the screen's own lines are
/// still wrapped.
#[test]
fn errors_to_a_file_are_not_wrapped() {
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("errors.log");
    let bob = Pane::start_with_stderr("dumb", "bob", &[], None, Some(&log));
    let long = format!("/nosuchcommand{}", "x".repeat(COLUMNS + 20));
    bob.send_burst(&long);
    bob.enter();
    let deadline = Instant::now() + WAIT;
    let line = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("nosuchcommand")) {
            break line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no error in {}: {text:?}",
            log.display()
        );
        std::thread::sleep(POLL);
    };
    assert!(line.contains(&"x".repeat(COLUMNS + 20)), "cut: {line:?}");
}

#[test]
fn a_half_typed_line_survives_an_incoming_message() {
    let (mut alice, bob) = alice_and_bob_in_a_pane();
    bob.type_text("bob> ", "", "half typed");

    alice.send("message while typing");
    let screen = bob.wait(
        "alice's message above the prompt, with the half-typed line redrawn below it",
        |s| {
            let message = s.row_with("<alice> message while typing");
            let prompt = s.prompt_line().map(|(row, _)| row);
            matches!((message, prompt), (Some(m), Some(p)) if m < p)
                && s.prompt_is("bob> half typed")
        },
    );
    // The half-typed line is not duplicated above the message either.
    assert_eq!(
        screen
            .rows
            .iter()
            .filter(|row| row.contains("half typed"))
            .count(),
        1,
        "{}",
        screen.show()
    );

    bob.type_text("bob> ", "half typed", " line");
    bob.enter();
    alice.expect("<bob> half typed line");
    let screen = bob.wait("bob's own line echoed and an empty prompt", |s| {
        s.row_with("<bob> half typed line").is_some() && s.prompt_is("bob> ")
    });
    // The typed line is replaced by its echo, not shown twice.
    assert_eq!(
        screen
            .rows
            .iter()
            .filter(|r| r.contains("half typed line"))
            .count(),
        1,
        "{}",
        screen.show()
    );

    quit(&mut alice, &bob, "bob> ", "bob");
}

#[test]
fn the_prompt_shows_the_nick_and_follows_nick_changes() {
    let (mut alice, bob) = alice_and_bob_in_a_pane();
    bob.wait("the prompt \"bob> \"", |s| s.prompt_is("bob> "));

    bob.type_text("bob> ", "", "/nick robert");
    bob.enter();
    alice.expect("bob is now robert");
    bob.wait("the prompt \"robert> \"", |s| s.prompt_is("robert> "));

    // Again, with the confirmation of the first change still queued for the prompt: the new
    // nick must win, at once and for good (it used to show "robert> " until the next line).
    bob.type_text("robert> ", "", "/nick bobby");
    bob.enter();
    alice.expect("robert is now bobby");
    bob.wait("the prompt \"bobby> \"", |s| s.prompt_is("bobby> "));

    bob.type_text("bobby> ", "", "hi");
    bob.enter();
    alice.expect("<bobby> hi");

    // A typo earlier in the session does not make /quit exit non-zero (a script's would).
    bob.type_text("bobby> ", "", "/hlep");
    bob.enter();
    bob.wait_for_text("unknown command /hlep");
    // A message that goes nowhere: the prompt took its line off the screen (it expects an
    // echo), so the error gives the text back.
    bob.type_text("bobby> ", "", "/msg nobdy see you");
    bob.enter();
    bob.wait_for_text("no peer called 'nobdy'");
    bob.wait_for_text("(your line: see you)");
    quit(&mut alice, &bob, "bobby> ", "bobby");

    // On a terminal, logs (RUST_LOG is set) go to a private file, with tailchat's own events.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&bob.log).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", bob.log.display());
    let log = std::fs::read_to_string(&bob.log).unwrap();
    for wanted in ["tailchat::app", "PeerJoined", "journal synced"] {
        assert!(log.contains(wanted), "no {wanted:?} in the log:\n{log}");
    }
}

/// Presses Enter on bob's prompt holding `text`: alice must receive exactly `text` from bob,
/// and bob's screen show its echo and an empty prompt.
fn enter_sends_exactly(alice: &mut Chat, bob: &Pane, text: &str) {
    bob.enter();
    let said = format!("<bob> {text}");
    alice.expect_where(&said, |line| line.ends_with(&said));
    bob.wait(&format!("{said:?} echoed and an empty prompt"), |s| {
        s.row_with(&said).is_some() && s.prompt_is("bob> ")
    });
}

#[test]
fn a_burst_of_input_shows_whole_at_once() {
    let (mut alice, bob) = alice_and_bob_in_a_pane();
    for text in BURSTS {
        bob.send_burst(text);
        // No further key is pressed: the whole burst must show by itself.
        let line = format!("bob> {text}");
        bob.wait(
            &format!("the whole burst on the prompt line {line:?}"),
            |s| s.prompt_is(&line),
        );
        enter_sends_exactly(&mut alice, &bob, text);
    }
    quit(&mut alice, &bob, "bob> ", "bob");
}

#[test]
fn a_burst_of_input_shows_whole_across_an_incoming_message() {
    let (mut alice, bob) = alice_and_bob_in_a_pane();
    for (i, text) in BURSTS.into_iter().enumerate() {
        let message = format!("message {i} during a burst");
        bob.send_burst(text);
        // Sent without waiting for the burst to show: the message reaches bob's prompt before
        // or after readline has read the burst, and either way the screen must end the same.
        alice.send(&message);
        let line = format!("bob> {text}");
        let above = format!("<alice> {message}");
        bob.wait(
            &format!("{above:?} above the prompt, and the whole burst on it: {line:?}"),
            |s| {
                let message = s.row_with(&above);
                let prompt = s.prompt_line().map(|(row, _)| row);
                matches!((message, prompt), (Some(m), Some(p)) if m < p) && s.prompt_is(&line)
            },
        );
        enter_sends_exactly(&mut alice, &bob, text);
    }
    quit(&mut alice, &bob, "bob> ", "bob");
}

/// Lines that reach the terminal in one read (a paste without bracketed paste, lines typed
/// ahead over a slow ssh link) are each sent: rustyline reads input in blocks and, without its
/// `buffer-redux` feature, dropped what it had read past the first line's Enter.
#[test]
fn lines_that_arrive_in_one_read_are_all_sent() {
    let (mut alice, bob) = alice_and_bob_in_a_pane();
    bob.wait("the prompt \"bob> \"", |s| s.prompt_is("bob> "));
    bob.send_burst("line one\rline two\rline three\r");
    for line in ["line one", "line two", "line three"] {
        alice.expect(&format!("<bob> {line}"));
    }
    bob.wait("the three echoed and an empty prompt", |s| {
        s.row_with("<bob> line three").is_some() && s.prompt_is("bob> ")
    });
    quit(&mut alice, &bob, "bob> ", "bob");
}

/// Sends `signal` to bob while his prompt holds a half-typed line: he must quit through the
/// shutdown path (exit status 0), leave the cursor at the start of a row, and `stty -a` in
/// the shell after him must show the terminal back in canonical mode with echo, as the shell
/// had it before.
fn a_signal_at_the_prompt_leaves_the_terminal_as_found(signal: &str) {
    let bob = Pane::start("bob", &[]);
    bob.type_text("bob> ", "", "half typed");
    // Else this test proves nothing: rustyline holds the terminal raw while it reads.
    let modes = bob.local_flags();
    if modes.intersects(LocalFlags::ICANON | LocalFlags::ECHO) {
        let screen = bob.screen().ok();
        bob.fail(
            &format!("the terminal is not raw at the prompt: {modes:?}"),
            screen.as_ref(),
        );
    }

    bob.kill(signal);
    let (status, own_row) = bob.wait_exit_report();
    let words = bob.stty_in_shell();
    let mut wrong = Vec::new();
    if status != 0 {
        wrong.push(format!("exit status {status}, expected 0"));
    }
    for (wanted, broken) in [("icanon", "-icanon"), ("echo", "-echo")] {
        if !words.iter().any(|w| w == wanted) || words.iter().any(|w| w == broken) {
            wrong.push(format!("stty -a shows no {wanted:?} or shows {broken:?}"));
        }
    }
    if !own_row {
        wrong.push("the shell's next output is glued to the prompt line".to_owned());
    }
    if !wrong.is_empty() {
        let screen = bob.screen().ok();
        bob.fail(
            &format!("after SIG{signal}: {}", wrong.join("; ")),
            screen.as_ref(),
        );
    }
}

#[test]
fn sigterm_at_the_prompt_leaves_the_terminal_as_found() {
    a_signal_at_the_prompt_leaves_the_terminal_as_found("TERM");
}

#[test]
fn sighup_at_the_prompt_leaves_the_terminal_as_found() {
    a_signal_at_the_prompt_leaves_the_terminal_as_found("HUP");
}

#[test]
fn a_mention_rings_the_bell_once_and_our_own_line_does_not() {
    assert_eq!(
        bells_for_a_mention(None),
        1,
        "one bell: for the mention only"
    );
}

#[test]
fn no_bell_rings_with_bell_false_in_the_config() {
    assert_eq!(bells_for_a_mention(Some("bell = false\n")), 0);
}

/// Bells written to bob's terminal while alice chats, then calls bob, then chats again, and
/// bob writes a line of his own (which calls himself).
fn bells_for_a_mention(config: Option<&str>) -> usize {
    let (mut alice, bob) = alice_and_bob_in_a_pane_with(config);
    bob.wait("the prompt \"bob> \"", |s| s.prompt_is("bob> "));
    // Everything the program writes to the terminal, byte for byte.
    let raw = bob.dir.path().join("raw-output");
    bob.tmux_ok(&["pipe-pane", "-o", &format!("cat >> {}", raw.display())]);
    let bells = || {
        std::fs::read(&raw)
            .unwrap_or_default()
            .iter()
            .filter(|b| **b == 0x07)
            .count()
    };
    alice.send("just chatting");
    bob.wait_for_text("<alice> just chatting");
    bob.type_text("bob> ", "", "bob here, no bell for me");
    bob.enter();
    alice.expect("<bob> bob here, no bell for me");
    alice.send("Bob: are you there?");
    bob.wait_for_text("<alice> Bob: are you there?");
    alice.send("the end");
    bob.wait_for_text("<alice> the end");
    // tmux hands the bytes to `cat` as it draws them; wait (bounded) until the file has them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !String::from_utf8_lossy(&std::fs::read(&raw).unwrap_or_default()).contains("the end") {
        assert!(
            std::time::Instant::now() < deadline,
            "pipe-pane wrote nothing"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let rung = bells();
    quit(&mut alice, &bob, "bob> ", "bob");
    rung
}

#[test]
fn a_multi_line_paste_is_one_message_shown_as_lines() {
    let (mut alice, bob) = alice_and_bob_in_a_pane();
    bob.wait("the prompt \"bob> \"", |s| s.prompt_is("bob> "));
    bob.tmux_ok(&["set-buffer", "first pasted line\nsecond pasted line"]);
    // -p: as a terminal pastes, bracketed when the program asked for it (rustyline does).
    bob.tmux_ok(&["paste-buffer", "-p", "-t", SESSION]);
    bob.wait("both lines on the prompt", |s| {
        s.row_with("second pasted line").is_some()
    });
    bob.enter();
    alice.expect("<bob> first pasted line");
    let next = alice.expect_where("the second row", |_| true);
    assert!(
        next.starts_with("      ") && next.trim() == "second pasted line",
        "{next:?}: a second row of the same message, indented"
    );
    alice.send("/help");
    alice.expect("/quit");
    assert!(
        !alice
            .seen
            .iter()
            .any(|l| l.contains("<bob> second pasted line")),
        "sent as two messages: {:#?}",
        alice.seen
    );
}
