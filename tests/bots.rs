//! Programs and the running tailchat: `tailchat send` through the control socket and without
//! one, a socket of the wrong owner or mode refused, and `tailchat attach --json`.

mod common;

use std::os::unix::ffi::OsStrExt;

use common::{command, Chat};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Output, Stdio};

fn data(dir: &Path) -> String {
    dir.to_str().unwrap().to_owned()
}

/// `tailchat send ARGS…` with `--data-dir dir`, run to the end.
fn send(dir: &Path, args: &[&str]) -> Output {
    send_waiting(dir, "5", args)
}

/// [`send`] with `--wait SECONDS`.
fn send_waiting(dir: &Path, seconds: &str, args: &[&str]) -> Output {
    let (mut cmd, _home) = send_command(dir, seconds, args);
    cmd.stdin(Stdio::null()).output().unwrap()
}

/// The command of [`send_waiting`], not yet run, and the home it runs in.
fn send_command(
    dir: &Path,
    seconds: &str,
    args: &[&str],
) -> (std::process::Command, tempfile::TempDir) {
    let d = data(dir);
    let mut all = vec![
        "send",
        "--data-dir",
        &d,
        "--no-discovery",
        "--bind",
        "127.0.0.1",
        "--wait",
        seconds,
    ];
    all.extend_from_slice(args);
    command(&all)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `cmd` with `input` on its standard input (then closed), to the end.
fn run_with_input(mut cmd: std::process::Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// `out` is of a program that exited with `code` (else both its streams are shown).
fn assert_exited(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// alice on `dir` (her control socket there), and bob who adds her.
fn alice_and_bob(dir: &Path) -> (Chat, Chat) {
    let d = data(dir);
    let mut alice = Chat::start("alice", &["--bind", "127.0.0.1", "--data-dir", &d]);
    let peer = format!("127.0.0.1:{}", alice.port);
    let mut bob = Chat::start("bob", &["--bind", "127.0.0.1", "--peer", &peer]);
    bob.expect("alice joined");
    alice.expect("bob joined");
    (alice, bob)
}

/// The running tailchat dies while `send` waits for the acknowledgements: the message was
/// taken (and journaled) already, so `send` says it goes out at the next start and exits 5
/// (not delivered within the wait), not 1 (could not start).
#[test]
fn send_whose_running_tailchat_dies_meanwhile_exits_5() {
    let dir = tempfile::tempdir().unwrap();
    let (mut alice, bob) = alice_and_bob(dir.path());
    // bob here but silent (stopped): send waits for him.
    assert!(bob.signal("-STOP"));
    let (mut cmd, _home) = send_command(dir.path(), "20", &["for bob, later"]);
    let sending = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    alice.expect("<alice> for bob, later");
    alice.kill_hard();
    let out = sending.wait_with_output().unwrap();
    bob.signal("-CONT");
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("in its journal"),
        "{}",
        text(&out.stderr)
    );
}

/// A data directory deeper than a Unix socket address holds (108 bytes): the control socket
/// still works, so `send` speaks as the user rather than as a stranger.
#[test]
fn send_goes_through_a_running_tailchat_in_a_deep_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let deep = dir.path().join("d".repeat(60)).join("e".repeat(60));
    std::fs::create_dir_all(&deep).unwrap();
    let (mut alice, mut bob) = alice_and_bob(&deep);
    assert!(
        !alice.seen.iter().any(|l| l.contains("control socket off")),
        "{:?}",
        alice.seen
    );
    let out = send(&deep, &["from", "deep", "down"]);
    assert_exited(&out, 0);
    bob.expect("<alice> from deep down");
    alice.expect("<alice> from deep down");
}

/// The running tailchat is stopped (SIGSTOP) when `send` hands it a message: `send` gives up
/// waiting with exit 5 and says the message goes out if it carries on — not 1 ("could not
/// start"), which a script would answer by sending it again — and it does go out, once.
#[test]
fn send_to_a_stopped_running_tailchat_exits_5_and_the_message_goes_out_once() {
    let dir = tempfile::tempdir().unwrap();
    let (mut alice, mut bob) = alice_and_bob(dir.path());
    assert!(alice.signal("-STOP"));
    let out = send_waiting(dir.path(), "0", &["while you slept"]);
    assert!(alice.signal("-CONT"));
    assert_exited(&out, 5);
    assert!(
        text(&out.stderr).contains("goes out if it carries on"),
        "{}",
        text(&out.stderr)
    );
    bob.expect("<alice> while you slept");
    alice.expect("<alice> while you slept");
    bob.send("/quit");
    bob.wait_exit();
    let told = bob
        .seen
        .iter()
        .filter(|l| l.contains("while you slept"))
        .count();
    assert_eq!(told, 1, "{:#?}", bob.seen);
}

#[test]
fn send_goes_through_the_running_tailchat_as_its_user() {
    let dir = tempfile::tempdir().unwrap();
    let (mut alice, mut bob) = alice_and_bob(dir.path());
    assert!(dir.path().join("control.sock").exists());
    let out = send(dir.path(), &["build", "1234", "passed"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    bob.expect("<alice> build 1234 passed");
    alice.expect("<alice> build 1234 passed"); // on her own screen, as if she typed it

    let out = send(dir.path(), &["--to", "bob", "just", "for", "you"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    bob.expect("*alice* just for you");
    // A nick named twice gets it once.
    let out = send(dir.path(), &["--to", "bob", "--to", "bob", "once"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    bob.expect("*alice* once");
    let out = send(dir.path(), &["--to", "bob", "after once"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    bob.expect("*alice* after once");
    let copies = bob
        .seen
        .iter()
        .filter(|l| l.ends_with("*alice* once"))
        .count();
    assert_eq!(copies, 1, "{:#?}", bob.seen);

    // A nick of its own is not taken (the running tailchat sends as alice), and said so.
    let out = send(dir.path(), &["--nick", "zed", "not", "zed"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    bob.expect("<alice> not zed");
    let said = text(&out.stderr);
    assert!(
        said.contains("your running tailchat sends it, with its own settings: --nick"),
        "{said}"
    );
    assert!(said.contains("not used"), "{said}");

    // From standard input, bytes that are not UTF-8 too: replaced, as a piped script's are.
    let (cmd, _home) = send_command(dir.path(), "5", &[]);
    let out = run_with_input(cmd, b"stdin \xff end\n");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    bob.expect("<alice> stdin \u{fffd} end");
    // And in the words of the command line.
    let (mut cmd, _home) = send_command(dir.path(), "5", &[]);
    cmd.arg(std::ffi::OsStr::from_bytes(b"caf\xe9 latin-1"));
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    bob.expect("<alice> caf\u{fffd} latin-1");

    // To bob and a carol nobody knows: to nobody, and said so.
    let out = send(dir.path(), &["--to", "bob", "--to", "carol", "for both"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("nothing was sent"),
        "{}",
        text(&out.stderr)
    );
    let out = send(dir.path(), &["--to", "carol", "hello?"]);
    assert_eq!(out.status.code(), Some(3), "no carol: an invalid command");
    assert!(
        text(&out.stderr).contains("no peer called 'carol'"),
        "{}",
        text(&out.stderr)
    );

    alice.send("/history 5");
    alice.expect_where("the sent line in history", |l| {
        l.contains("-") && l.contains("<alice> build 1234 passed")
    });

    // Bob has left: the line waits for him, and the sender is told so, by his nick; with
    // nobody here who did not take it, that is exit 6 (not 5: undelivered to someone here),
    // and `send` does not wait for him (with 60 s of wait, this test would take a minute).
    let shown = bob.drain();
    assert!(!shown.iter().any(|l| l.contains("for both")), "{shown:?}");
    bob.send("/quit");
    alice.expect("bob left");
    let out = send_waiting(dir.path(), "60", &["later"]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("bob is away: your running tailchat keeps it"),
        "{}",
        text(&out.stderr)
    );
    // Alice's screen says so too: the line was sent in her name.
    alice.expect("<alice> later");
    alice.expect("bob is not here: messages to them are kept on disk");
}

#[test]
fn send_without_a_running_tailchat_is_that_peer_for_a_moment() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, mut bob) = alice_and_bob(dir.path());
    let mut alice = alice;
    // They have talked, so bob is in alice's journal (a peer that never spoke is not kept).
    bob.send("morning");
    alice.expect("<bob> morning");
    alice.send("/quit");
    assert!(alice.wait_exit().success());
    bob.expect("alice left");
    assert!(
        !dir.path().join("control.sock").exists(),
        "removed when alice quit"
    );
    // alice's journal knows where bob is: the message reaches him from her identity.
    let out = send(dir.path(), &["while", "you", "work"]);
    assert_exited(&out, 0);
    // Bob, known from the journal, is contacted and answers before the line goes: he is
    // not said to be away a moment before he joins.
    assert!(
        !text(&out.stdout).contains("not here") && !text(&out.stderr).contains("not here"),
        "{}",
        text(&out.stdout)
    );
    bob.expect("<alice> while you work");
    let alices = bob
        .peers_rows()
        .iter()
        .filter(|l| l.contains(" alice "))
        .count();
    assert_eq!(alices, 1, "the same alice, not a stranger: {:#?}", bob.seen);
}

/// Bob, after alice (on `dir`) has talked with him and quit: her journal knows him, and no
/// tailchat runs on `dir`.
fn bob_after_alice_quit(dir: &Path) -> Chat {
    let (mut alice, mut bob) = alice_and_bob(dir);
    bob.send("morning");
    alice.expect("<bob> morning");
    alice.send("/quit");
    assert!(alice.wait_exit().success());
    bob.expect("alice left");
    bob
}

/// Several `tailchat send` at once on one data directory where no tailchat runs: each waits
/// its turn for the journal (or goes through the one that holds it), so every message goes
/// out as alice, none under a new identity or lost to "storage off".
#[test]
fn sends_started_together_all_speak_as_the_same_peer() {
    sends_together(&[]);
}

/// The same with one port for all (the config file's `port`, say): each waits its turn for the
/// port as for the journal, instead of failing with its message unsent.
#[test]
fn sends_started_together_on_one_port_all_go_out() {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    sends_together(&["--port", &port]);
}

/// Four `tailchat send` at once (with `extra` options) on alice's data directory: all four
/// arrive at bob, from alice.
fn sends_together(extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let mut bob = bob_after_alice_quit(dir.path());
    let children: Vec<_> = (0..4)
        .map(|i| {
            let line = format!("together {i}");
            let mut args = extra.to_vec();
            args.push(&line);
            let (mut cmd, home) = send_command(dir.path(), "5", &args);
            let child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (child, home)
        })
        .collect();
    for (child, _home) in children {
        let out = child.wait_with_output().unwrap();
        let code = out.status.code();
        assert!(
            matches!(code, Some(0 | 6)),
            "{code:?}\n{}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
    // (In any order: each sender went its own way.)
    let mut got: Vec<String> = (0..4)
        .map(|_| bob.expect("<alice> together "))
        .map(|l| l.rsplit(' ').next().unwrap().to_owned())
        .collect();
    got.sort();
    assert_eq!(got, ["0", "1", "2", "3"]);
    let strangers = bob
        .seen
        .iter()
        .find(|l| l.contains("joined") && !l.contains("alice"));
    assert!(strangers.is_none(), "{strangers:?}");
}

/// A one-shot `send --to` a nick nobody known goes by (a typo) waits for the peers it knows
/// to answer before it says who is here: bob is listed as here, not as away.
#[test]
fn send_to_a_mistyped_nick_lists_who_is_here_truly() {
    let dir = tempfile::tempdir().unwrap();
    let _bob = bob_after_alice_quit(dir.path()); // here, answering
    let out = send(dir.path(), &["--to", "bbo", "typo"]);
    assert_exited(&out, 3);
    let said = text(&out.stdout) + &text(&out.stderr);
    assert!(
        said.contains("no peer called 'bbo'; here now: bob"),
        "{said}"
    );
}

/// A one-shot `send --to bob` is about that message: a backlog an earlier run left for a peer
/// who is gone (carol) neither holds it up at start nor makes its exit code 5.
#[test]
fn send_without_a_running_tailchat_answers_for_its_own_message_only() {
    let dir = tempfile::tempdir().unwrap();
    let (mut alice, mut bob) = alice_and_bob(dir.path());
    let peer = format!("127.0.0.1:{}", alice.port);
    let mut carol = Chat::start("carol", &["--bind", "127.0.0.1", "--peer", &peer]);
    alice.expect("carol joined");
    carol.send("/quit");
    alice.expect("carol left");
    alice.send("for carol, who is gone");
    bob.expect("<alice> for carol, who is gone");
    alice.send("/quit");
    alice.wait_exit(); // 5, as a script: carol has not had it
    bob.expect("alice left");
    let started = std::time::Instant::now();
    let out = send_waiting(dir.path(), "3", &["--to", "bob", "deploy done"]);
    assert_exited(&out, 0);
    bob.expect("*alice* deploy done");
    // Not held for carol at start (3 s), nor at the end for her backlog (3 s more).
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_control_socket_others_could_use_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("control.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = send(dir.path(), &["hi"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("other users"),
        "{}",
        text(&out.stderr)
    );

    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600)).unwrap();
    if nix::unistd::getuid().is_root() {
        nix::unistd::chown(&sock, Some(nix::unistd::Uid::from_raw(4242)), None).unwrap();
        let out = send(dir.path(), &["hi"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            text(&out.stderr).contains("another user"),
            "{}",
            text(&out.stderr)
        );
    }
}

/// Starting tailchat again on the port and data directory of the one already running: the
/// error says that it is your own, and how to reach it, not only "stop it".
#[test]
fn a_second_start_on_your_own_port_says_your_tailchat_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = data(dir.path());
    let alice = Chat::start("alice", &["--bind", "127.0.0.1", "--data-dir", &d]);
    let port = alice.port.to_string();
    let (mut cmd, _home) = command(&["--bind", "127.0.0.1", "--port", &port, "--data-dir", &d]);
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("your tailchat already runs on this port, with data directory")
            && err.contains("tailchat send")
            && !err.contains("stop it"),
        "{err}"
    );
}

/// A script started beside the user's running tailchat, on its data directory (and another
/// port): it goes by the nick that data directory used last (the running one's), not the
/// login name, and its storage-off line says that `tailchat send` is the way to speak as
/// oneself from a script.
#[test]
fn a_script_beside_your_tailchat_keeps_your_nick_and_points_to_send() {
    let dir = tempfile::tempdir().unwrap();
    let d = data(dir.path());
    let mut alice = Chat::start("alicia", &["--bind", "127.0.0.1", "--data-dir", &d]);
    let peer = format!("127.0.0.1:{}", alice.port);
    let (cmd, _home) = command(&[
        "--bind",
        "127.0.0.1",
        "--port",
        "0",
        "--no-discovery",
        "--data-dir",
        &d,
        "--peer",
        &peer,
    ]);
    let out = run_with_input(cmd, b"from the script\n");
    let err = text(&out.stderr);
    assert!(
        err.contains("is in use by another tailchat") && err.contains("use tailchat send"),
        "{err}"
    );
    // Shown with its id: the running alicia has the nick too.
    alice.expect_where("the script's line", |l| {
        l.contains("<alicia#") && l.ends_with("> from the script")
    });
}

#[test]
fn attach_follows_and_drives_the_running_tailchat() {
    let dir = tempfile::tempdir().unwrap();
    let (mut alice, mut bob) = alice_and_bob(dir.path());
    let d = data(dir.path());
    let (mut cmd, _home) = command(&["attach", "--json", "--data-dir", &d]);
    let mut attached = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = attached.stdin.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    let stdout = attached.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let v: Value = serde_json::from_str(&line.unwrap()).expect("JSON");
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    let next = |what: &str, f: &dyn Fn(&Value) -> bool| loop {
        let v = rx
            .recv_timeout(common::WAIT)
            .unwrap_or_else(|_| panic!("no {what}"));
        assert_eq!(v["v"], 1);
        if f(&v) {
            return v;
        }
    };
    // `ready` first, as in --json mode: whose tailchat this is.
    let ready = rx.recv_timeout(common::WAIT).expect("a first line");
    assert_eq!(ready["type"], "ready", "{ready}");
    assert_eq!(ready["nick"], "alice");
    assert_eq!(ready["port"], alice.port);
    writeln!(stdin, r#"{{"cmd":"peers"}}"#).unwrap();
    let peers = next("peers", &|v| v["type"] == "peers");
    assert_eq!(peers["peers"][0]["nick"], "bob");
    bob.send("seen by the bot");
    let m = next("bob's message", &|v| v["type"] == "message");
    assert_eq!(m["text"], "seen by the bot");
    writeln!(
        stdin,
        r#"{{"cmd":"send","text":"the bot speaks for alice"}}"#
    )
    .unwrap();
    next("the sent echo", &|v| v["type"] == "sent");
    bob.expect("<alice> the bot speaks for alice");
    alice.expect("<alice> the bot speaks for alice");
    // Latin-1 from a log: U+FFFD, and the session goes on.
    stdin
        .write_all(b"{\"cmd\":\"send\",\"text\":\"caf\xe9 ok\"}\n")
        .unwrap();
    next("the Latin-1 echo", &|v| v["type"] == "sent");
    bob.expect("<alice> caf\u{fffd} ok");
    // File offers and end lines reach the program too, as they would in --json mode.
    let file = dir.path().join("for-alice.txt");
    std::fs::write(&file, b"a file for the bot").unwrap();
    bob.send(&format!("/send alice {}", file.display()));
    let offer = next("bob's offer", &|v| {
        v["type"] == "file" && v["event"] == "offer"
    });
    assert_eq!(offer["name"], "for-alice.txt", "{offer}");
    alice.send("/decline");
    next("the decline", &|v| {
        v["type"] == "file" && v["event"] == "declined"
    });
    // What a program changes of alice is said on her screen too: she is not left away, or
    // under another nick, without a word.
    writeln!(stdin, r#"{{"cmd":"away","text":"scripted"}}"#).unwrap();
    next("the away notice", &|v| {
        v["type"] == "notice" && v["text"] == "you are away: scripted"
    });
    alice.expect("you are away: scripted (by a program, tailchat attach)");
    writeln!(stdin, r#"{{"cmd":"back"}}"#).unwrap();
    alice.expect("you are back (by a program, tailchat attach)");
    // A line that is not JSON is answered with an error, and makes the exit code 3.
    writeln!(stdin, "garbage").unwrap();
    next("the error", &|v| v["type"] == "error");
    drop(stdin); // detaches; alice carries on
    assert_eq!(attached.wait().unwrap().code(), Some(3));
    // One that asked nothing wrong exits 0.
    let (mut cmd, home2) = command(&["attach", "--json", "--data-dir", &d]);
    let quiet = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(quiet.success());
    bob.send("still here?");
    alice.expect("<bob> still here?");
    // Where nothing runs: said, and no data directory is made for it.
    let nowhere = home2.path().join("never-used");
    let (mut cmd, _home3) = command(&["attach", "--json", "--data-dir", nowhere.to_str().unwrap()]);
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no tailchat is running"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!nowhere.exists(), "attach made {}", nowhere.display());
    // Settings of its own are refused, not silently dropped.
    let (mut cmd, _home4) = command(&["attach", "--json", "--data-dir", &d, "--nick", "zed"]);
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("drop --nick"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A program that says quit itself (its input still open) is told nothing more: it knows.
    let (mut cmd, _home6) = command(&["attach", "--json", "--data-dir", &d]);
    let mut leaving = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = leaving.stdin.take().unwrap();
    writeln!(input, r#"{{"cmd":"quit"}}"#).unwrap();
    let said: Vec<String> = BufReader::new(leaving.stdout.take().unwrap())
        .lines()
        .map(Result::unwrap)
        .collect();
    assert!(said.iter().all(|l| !l.contains("attach ends")), "{said:?}");
    assert!(leaving.wait().unwrap().success());
    drop(input);
    // A typed /quit, which a program may have meant for the chat, is told what it did.
    let (mut cmd, _home7) = command(&["attach", "--json", "--data-dir", &d]);
    let mut typed = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = typed.stdin.take().unwrap();
    writeln!(input, r#"{{"cmd":"command","line":"/quit"}}"#).unwrap();
    let said: Vec<String> = BufReader::new(typed.stdout.take().unwrap())
        .lines()
        .map(Result::unwrap)
        .collect();
    assert!(
        said.iter()
            .any(|l| l.contains("your tailchat runs on (quit it at its own prompt)")),
        "{said:?}"
    );
    assert!(typed.wait().unwrap().success());
    drop(input);
    bob.send("after the typed quit");
    alice.expect("<bob> after the typed quit");
    // The tailchat followed quits while the program is still attached: a last notice says
    // so, rather than an end the program cannot tell from its own.
    let (mut cmd, _home5) = command(&["attach", "--json", "--data-dir", &d]);
    let mut following = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let _held = following.stdin.take();
    let mut lines = BufReader::new(following.stdout.take().unwrap()).lines();
    let ready = lines.next().expect("ready").unwrap();
    assert!(ready.contains("\"ready\""), "{ready}");
    alice.send("/quit");
    assert!(alice.wait_exit().success());
    let last = lines.last().expect("a last line").unwrap();
    let last: Value = serde_json::from_str(&last).unwrap();
    assert_eq!(last["type"], "notice", "{last}");
    assert_eq!(last["text"], "your tailchat quit: attach ends", "{last}");
    assert!(following.wait().unwrap().success());
}

/// A tailchat killed leaves its control socket behind: attach says nothing runs there (as
/// where there is no socket), not that a tailchat "is not answering".
#[test]
fn attach_to_a_killed_tailchat_says_none_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (mut alice, _bob) = alice_and_bob(dir.path());
    alice.kill_hard();
    assert!(dir.path().join("control.sock").exists(), "left behind");
    let d = dir.path().display().to_string();
    let (mut cmd, _home) = command(&["attach", "--json", "--data-dir", &d]);
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("no tailchat is running on data directory"),
        "{said}"
    );
    assert!(said.contains("stopped without quitting"), "{said}");
}

#[test]
fn a_script_that_adds_one_peer_reaches_the_peers_it_brings_in_too() {
    // xavier and yvonne know each other; the script adds only xavier, who passes yvonne on.
    let (mut xavier, mut yvonne) = alice_and_bob(tempfile::tempdir().unwrap().path());
    let script = format!("/add 127.0.0.1:{}\nbuild finished\n", xavier.port);
    let (cmd, _home) = command(&[
        "--nick",
        "ci-bot",
        "--ephemeral",
        "--no-discovery",
        "--bind",
        "127.0.0.1",
        "--port",
        "0",
    ]);
    let out = run_with_input(cmd, script.as_bytes());
    assert_exited(&out, 0);
    xavier.expect("<ci-bot> build finished");
    yvonne.expect("<ci-bot> build finished");
}
