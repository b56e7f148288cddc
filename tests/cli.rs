//! The real program, several processes on loopback with `--no-discovery`: joining, group and
//! direct messages, nick changes, leaving, `/add` by IPv6 and by name, and bad input.

mod common;

use common::{command, Chat};

/// Starts alice and bob with bob adding alice, and waits until both see the other.
fn pair() -> (Chat, Chat) {
    let mut alice = Chat::start("alice", &["--bind", "127.0.0.1"]);
    let peer = format!("127.0.0.1:{}", alice.port);
    let mut bob = Chat::start("bob", &["--bind", "127.0.0.1", "--peer", &peer]);
    bob.expect("alice joined");
    alice.expect("bob joined");
    (alice, bob)
}

/// A flag given twice (an alias that has it, and the line typed) is taken once, not refused.
#[test]
fn a_flag_given_twice_is_taken_once() {
    let mut alice = Chat::start("alice", &["--no-discovery"]);
    alice.send("/nick alicia");
    alice.expect("you are now alicia");
}

#[test]
fn two_peers_join_and_chat_both_ways() {
    let (mut alice, mut bob) = pair();
    alice.send("hello bob");
    alice.expect("<alice> hello bob"); // own line echoed
    bob.expect("<alice> hello bob");
    bob.send("hi alice 👋");
    alice.expect("<bob> hi alice 👋");
}

#[test]
fn a_direct_message_is_not_seen_by_the_third() {
    let (mut alice, mut bob) = pair();
    let mut carol = Chat::start(
        "carol",
        &[
            "--bind",
            "127.0.0.1",
            "--peer",
            &format!("127.0.0.1:{}", alice.port),
        ],
    );
    carol.expect("alice joined");
    carol.send(&format!("/add 127.0.0.1:{}", bob.port));
    carol.expect("bob joined");
    bob.expect("carol joined");
    alice.send("/msg bob just for you");
    alice.expect("*-> bob* just for you");
    bob.expect("*alice* just for you");
    // A group message sent after the direct one reaches carol; by then the direct one would
    // have too, were it sent to her (each sender's messages arrive in order).
    alice.send("for everyone");
    carol.expect("<alice> for everyone");
    assert!(
        !carol.seen.iter().any(|l| l.contains("just for you")),
        "carol saw the direct message: {:?}",
        carol.seen
    );
}

#[test]
fn nick_change_and_leave_are_announced() {
    let (mut alice, mut bob) = pair();
    alice.send("/nick alicia");
    alice.expect("you are now alicia");
    bob.expect("alice is now alicia");
    alice.send("still me");
    bob.expect("<alicia> still me");
    alice.send("/quit");
    bob.expect("alicia left");
    assert!(alice.wait_exit().success());
    bob.send("/peers");
    bob.expect_where("alicia listed as left", |l| {
        l.contains("alicia") && l.contains("left")
    });
}

#[test]
fn end_of_input_quits_cleanly() {
    let (mut alice, mut bob) = pair();
    bob.close_input();
    alice.expect("bob left");
    assert!(bob.wait_exit().success());
}

#[test]
fn add_by_ipv6_and_by_name() {
    let mut alice = Chat::start("alice", &[]);
    let mut bob = Chat::start("bob", &[]);
    bob.send(&format!("/add [::1]:{}", alice.port));
    bob.expect("alice joined");
    alice.expect("bob joined");
    let mut carol = Chat::start("carol", &[]);
    carol.send(&format!("/add localhost:{}", alice.port));
    carol.expect("alice joined");
    alice.expect("carol joined");
    carol.send("via a name");
    alice.expect("<carol> via a name");
}

/// `/whois` of our own nick says who we are to the peers: the id their accept_from names.
#[test]
fn whois_of_our_own_nick_gives_our_id() {
    let mut alice = Chat::start("alice", &["--bind", "127.0.0.1"]);
    alice.send("/whois alice");
    let said = alice.expect("alice is you");
    assert!(said.contains("accept_from = [\"alice#"), "{said}");
}

#[test]
fn bad_adds_and_commands_say_what_to_do() {
    let mut alice = Chat::start("alice", &["--bind", "127.0.0.1"]);
    alice.send("/add no-such-host.invalid");
    alice.expect("cannot resolve 'no-such-host.invalid'");
    alice.send("/add bad/name");
    alice.expect("expected HOST[:PORT]");
    alice.send("/add two words");
    alice.expect("usage: /add HOST[:PORT]");
    alice.send("/frobnicate");
    alice.expect_where("unknown command pointing at /help", |l| {
        l.contains("/frobnicate") && l.contains("/help")
    });
    alice.send("/msg nobody hi");
    alice.expect("no peer called 'nobody'");
    alice.send("hello?");
    alice.expect("nobody is here yet");
    alice.send("/help");
    alice.expect("send TEXT to everyone");
    for cmd in [
        "/msg", "/add", "/nick", "/peers", "/history", "/help", "/quit",
    ] {
        alice.expect_where(cmd, |l| l.split_whitespace().nth(1) == Some(cmd));
    }
}

#[test]
fn invalid_command_line_values_exit_2_with_clap_errors() {
    for args in [
        &["--port", "70000"][..],
        &["--nick", ""],
        &["--nick", "two words"],
        &["--bind", "not-an-ip"],
        &["--peer", "bad host"],
        &["--frobnicate"],
        &["attach"], // without --json
        &["--json", "send", "hello"],
        &["send", "--json", "hello"],
        &["send"], // no text, and none on standard input
        &["send", "--to", "bob", "  "],
    ] {
        let (mut cmd, _dir) = command(args);
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("error:"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    // A negative wait is a value out of range, not an unknown option.
    let (mut cmd, _dir) = command(&["--wait", "-1"]);
    let err = String::from_utf8_lossy(&cmd.output().unwrap().stderr).into_owned();
    assert!(err.contains("a number of seconds from 0"), "{err}");
}

#[test]
fn run_time_failures_exit_1_with_advice() {
    let alice = Chat::start("alice", &["--bind", "127.0.0.1"]);
    let port = alice.port.to_string();
    let (mut cmd, _dir) = command(&["--no-discovery", "--bind", "127.0.0.1", "--port", &port]);
    let out = cmd.stdin(std::process::Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("tailchat: cannot bind UDP 127.0.0.1:"),
        "{err}"
    );
    assert!(err.contains("--port"), "{err}");

    let (mut cmd, _dir) = command(&["--no-discovery", "--bind", "192.0.2.1", "--port", "0"]);
    let out = cmd.stdin(std::process::Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not on this machine"), "{err}");

    // A download folder that is a file is said at the start, naming the option.
    let file = _dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let dl = file.to_str().unwrap();
    let (mut cmd, _dir) = command(&[
        "--no-discovery",
        "--bind",
        "127.0.0.1",
        "--download-dir",
        dl,
    ]);
    let out = cmd.stdin(std::process::Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("tailchat: --download-dir: ") && err.contains("is not a folder"),
        "{err}"
    );
}

#[test]
fn hostile_text_from_a_peer_reaches_the_screen_defanged() {
    let (mut alice, mut bob) = pair();
    alice.send("evil \x1b]0;pwned\x07title \x1b[2Jclear \u{9b}31mred \u{202e}rtl");
    let line = bob.expect("<alice> evil");
    assert!(!line.contains('\x1b') && !line.contains('\u{9b}') && !line.contains('\x07'));
    assert!(!line.contains('\u{202e}'));
    assert!(line.contains("title") && line.contains("clear") && line.contains("red"));
}

#[test]
fn a_script_on_standard_input_reaches_its_peer() {
    // The README's example: printf '/add HOST\nbuild finished\n' | tailchat --nick ci-bot
    let mut alice = Chat::start("alice", &["--bind", "127.0.0.1"]);
    let (mut bot, _dir) = spawn_bot(&["--nick", "ci-bot"]);
    {
        use std::io::Write;
        let mut stdin = bot.stdin.take().unwrap();
        write!(stdin, "/add 127.0.0.1:{}\nbuild finished\n", alice.port).unwrap();
    } // closing stdin: end of input, which means /quit
    alice.expect("<ci-bot> build finished");
    alice.expect("ci-bot left");
    let out = bot.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("not sent"), "{text}");
}

/// Runs a script (`input` on standard input) with `args`; returns its exit code, standard
/// output and standard error.
fn script(args: &[&str], input: &str) -> (Option<i32>, String, String) {
    use std::io::Write;
    let mut all = vec!["--nick", "ci-bot"];
    all.extend_from_slice(args);
    let (mut bot, _dir) = spawn_bot(&all);
    bot.stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = bot.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A script's debug log goes to standard error as plain text when that is a file or a pipe:
/// no colour codes in a log someone greps.
#[test]
fn a_scripts_log_to_a_pipe_has_no_colour_codes() {
    let (mut cmd, _dir) = command(&["--no-discovery", "--bind", "127.0.0.1", "--port", "0"]);
    let out = cmd
        .env("RUST_LOG", "debug")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("DEBUG"), "{log}");
    assert!(!log.contains('\u{1b}'), "{log:?}");
}

#[test]
fn a_script_exits_0_only_when_everything_was_delivered() {
    let mut alice = Chat::start("alice", &["--bind", "127.0.0.1"]);
    let input = format!("/add 127.0.0.1:{}\nbuild finished\n", alice.port);
    let (code, stdout, stderr) = script(&[], &input);
    alice.expect("<ci-bot> build finished");
    assert_eq!(code, Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("<ci-bot> build finished"), "{stdout}");
    assert!(
        !stdout.contains("error"),
        "errors belong on standard error: {stdout}"
    );
}

#[test]
fn a_script_with_an_invalid_command_exits_3_with_the_error_on_stderr() {
    let too_long = format!("{}\n", "x".repeat(70_001));
    for bad in [
        "/frobnicate\n",
        "/msg nobody hi\n",
        "/add a b c\n",
        "/nick two words\n",
        // Over the 64 KiB a message may have: refused, so not "everything delivered".
        too_long.as_str(),
    ] {
        let (code, stdout, stderr) = script(&[], bad);
        assert_eq!(code, Some(3), "{bad:?}: stdout {stdout} stderr {stderr}");
        assert!(stderr.contains("error:"), "{bad:?}: {stderr}");
        assert!(!stdout.contains("error:"), "{bad:?}: {stdout}");
    }
}

#[test]
fn a_script_with_nobody_to_send_to_exits_4() {
    let (code, stdout, stderr) = script(&["--wait", "0.2"], "anyone there?\n");
    assert_eq!(code, Some(4), "stdout {stdout} stderr {stderr}");
    assert!(stderr.contains("nobody is here"), "{stderr}");
    // A burst: one line says it, and one at the end counts the rest (not 3000 alike).
    let lines: String = (1..=3000).map(|i| format!("{i}\n")).collect();
    let (code, stdout, stderr) = script(&["--wait", "0.2"], &lines);
    assert_eq!(code, Some(4), "stdout {stdout} stderr {stderr}");
    assert_eq!(stderr.matches("nobody is here").count(), 1, "{stderr}");
    assert!(
        stderr.contains("not sent either, for the same reason: 2999 more lines"),
        "{stderr}"
    );
}

/// A --peer the allow-list refuses is said to be refused, and the script's unsent line does
/// not then tell it to give a --peer.
#[test]
fn a_script_whose_peer_the_allow_list_refuses_is_told_so() {
    let (_code, _stdout, stderr) = script(
        &[
            "--wait",
            "0.2",
            "--allow",
            "100.64.0.0/10",
            "--peer",
            "127.0.0.1:9",
        ],
        "anyone there?\n",
    );
    assert!(stderr.contains("is not in your allow-list"), "{stderr}");
    assert!(
        stderr.contains("the addresses given could not be contacted (said above)"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("--peer HOST[:PORT] reaches someone"),
        "{stderr}"
    );
}

#[test]
fn a_script_whose_message_is_not_acknowledged_within_the_wait_exits_5() {
    let mut alice = Chat::start("alice", &["--bind", "127.0.0.1"]);
    let peer = format!("127.0.0.1:{}", alice.port);
    let (mut bot, _dir) = spawn_bot(&["--nick", "ci-bot", "--wait", "0.5", "--peer", &peer]);
    alice.expect("ci-bot joined");
    // alice stops answering (SIGSTOP: alive, silent), then the bot says something and ends.
    let stop = std::process::Command::new("kill")
        .args(["-STOP", &alice.pid().to_string()])
        .status()
        .unwrap();
    assert!(stop.success());
    {
        use std::io::Write;
        let mut stdin = bot.stdin.take().unwrap();
        writeln!(stdin, "is anyone listening").unwrap();
    }
    let out = bot.wait_with_output().unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-CONT", &alice.pid().to_string()])
        .status();
    assert_eq!(
        out.status.code(),
        Some(5),
        "stdout {} stderr {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A program driving tailchat with `--json`: every line it reads must be a JSON object of
/// schema version 1, and peer text must arrive byte-exact (escaped, not stripped).
#[test]
fn a_json_session_is_all_json_and_carries_peer_text_exactly() {
    use serde_json::Value;
    use std::io::{BufRead, BufReader, Write};
    let mut alice = Chat::start("alice", &["--bind", "127.0.0.1"]);
    let (mut bot, _dir) = spawn_bot(&["--nick", "bot", "--json"]);
    let mut stdin = bot.stdin.take().unwrap();
    let stdout = bot.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let v: Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
            assert_eq!(v["v"], 1, "{line}");
            assert!(v["type"].is_string(), "{line}");
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    let ready = rx.recv_timeout(common::WAIT).expect("a first line");
    assert_eq!(
        ready["type"], "ready",
        "ready comes first, as the README says: {ready}"
    );
    let mut seen = Vec::new();
    let mut expect = |what: &str, f: &dyn Fn(&Value) -> bool| -> Value {
        loop {
            let v = rx
                .recv_timeout(common::WAIT)
                .unwrap_or_else(|_| panic!("no {what}; saw {seen:#?}"));
            seen.push(v.clone());
            if f(&v) {
                return v;
            }
        }
    };
    assert_eq!(ready["nick"], "bot");
    assert!(ready["port"].as_u64().unwrap() > 0);
    let send = |stdin: &mut std::process::ChildStdin, v: Value| {
        writeln!(stdin, "{v}").unwrap();
    };
    send(
        &mut stdin,
        serde_json::json!({"cmd": "add", "host": format!("127.0.0.1:{}", alice.port)}),
    );
    let join = expect("alice's join", &|v| v["type"] == "join");
    assert_eq!(join["nick"], "alice");
    assert_eq!(join["id"].as_str().unwrap().len(), 16);

    let evil = "red \u{1b}[31malert\u{1b}[0m \u{7} \"quoted\" ünï";
    alice.send(evil);
    let msg = expect("alice's message", &|v| v["type"] == "message");
    assert_eq!(msg["text"], evil, "byte-exact in JSON");
    assert_eq!(msg["from"], "alice");
    assert_eq!(msg["direct"], false);
    assert!(msg["id"].is_u64() && msg["time"].is_string());
    let on_screen = alice.expect("<alice> red");
    assert!(
        !on_screen.contains('\u{1b}') && !on_screen.contains('\u{7}'),
        "{on_screen:?}"
    );

    send(
        &mut stdin,
        serde_json::json!({"cmd": "send", "text": "hello from a bot", "ignored": [1, 2]}),
    );
    let sent = expect("the sent echo", &|v| v["type"] == "sent");
    assert_eq!(sent["text"], "hello from a bot");
    assert_eq!(sent["recipients"].as_array().unwrap().len(), 1);
    alice.expect("<bot> hello from a bot");
    let delivered = expect("delivery", &|v| v["type"] == "delivered");
    assert_eq!(delivered["id"], sent["id"]);
    assert_eq!(delivered["to"], "alice");

    send(
        &mut stdin,
        serde_json::json!({"cmd": "msg", "to": "alice", "text": "psst"}),
    );
    let direct = expect("the direct echo", &|v| v["type"] == "sent");
    assert_eq!(direct["direct"], true);
    assert_eq!(direct["to"], "alice");
    alice.expect("*bot* psst");

    send(&mut stdin, serde_json::json!({"cmd": "peers"}));
    let peers = expect("the peer list", &|v| v["type"] == "peers");
    let list = peers["peers"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["nick"], "alice");
    assert_eq!(list[0]["state"], "online");
    assert!(list[0]["addrs"][0]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));

    send(
        &mut stdin,
        serde_json::json!({"cmd": "history", "count": 10}),
    );
    let history = expect("history", &|v| v["type"] == "history");
    assert_eq!(history["more"], false, "a short answer is one object");
    let texts: Vec<&str> = history["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["text"].as_str().unwrap())
        .collect();
    assert!(
        texts.contains(&evil) && texts.contains(&"hello from a bot"),
        "{texts:?}"
    );

    writeln!(stdin, "this is not json").unwrap();
    let err = expect("an error object", &|v| v["type"] == "error");
    assert!(err["message"]
        .as_str()
        .unwrap()
        .contains("not a JSON command"));
    send(&mut stdin, serde_json::json!({"cmd": "dance"}));
    let err = expect("an unknown-command error", &|v| {
        v["type"] == "error" && v["message"].as_str().unwrap_or("").contains("dance")
    });
    assert!(err["message"].as_str().unwrap().contains("unknown command"));

    // A file offered to the bot, accepted with a typed command.
    let files = tempfile::tempdir().unwrap();
    let offered = files.path().join("report.txt");
    std::fs::write(&offered, b"quarterly numbers").unwrap();
    alice.send(&format!("/send bot {}", offered.display()));
    // A `file` object: what a program acts on, no prose to parse.
    let offer = expect("the offer", &|v| {
        v["type"] == "file" && v["event"] == "offer"
    });
    assert_eq!(
        (
            &offer["direction"],
            &offer["peer"],
            &offer["name"],
            &offer["size"]
        ),
        (
            &Value::from("in"),
            &Value::from("alice"),
            &Value::from("report.txt"),
            &Value::from(17)
        ),
        "{offer}"
    );
    assert_eq!(offer["peer_id"], join["id"]);
    assert_eq!(
        (&offer["files"], &offer["took_ms"], &offer["resumed_from"]),
        (&Value::from(1), &Value::Null, &Value::Null),
        "{offer}"
    );
    assert!(offer["text"]
        .as_str()
        .unwrap()
        .contains("offers report.txt"));
    let number = offer["number"].as_u64().unwrap();
    let into = files.path().join("in");
    std::fs::create_dir(&into).unwrap();
    send(
        &mut stdin,
        serde_json::json!({"cmd": "command", "line": format!("/accept {number} {}", into.display())}),
    );
    expect("the accept", &|v| {
        v["type"] == "file" && v["event"] == "accepted"
    });
    let end = expect("the end line", &|v| {
        v["type"] == "file" && v["event"] == "received"
    });
    assert_eq!(end["number"].as_u64(), Some(number));
    let took = end["took_ms"].as_u64().unwrap();
    // The text says the same time (it was read twice, a few milliseconds apart).
    let said = match took {
        0 => "in under 1 ms".to_owned(),
        ms if ms < 100 => format!("in {ms} ms"),
        _ => "in ".to_owned(),
    };
    assert!(end["text"].as_str().unwrap().contains(&said), "{end}");
    assert_eq!(end["resumed_from"], Value::Null, "{end}");
    assert_eq!(
        end["path"].as_str(),
        Some(into.join("report.txt").to_str().unwrap())
    );
    assert!(end["text"]
        .as_str()
        .unwrap()
        .contains("received report.txt from alice"));
    assert_eq!(
        std::fs::read(into.join("report.txt")).unwrap(),
        b"quarterly numbers"
    );

    send(&mut stdin, serde_json::json!({"cmd": "quit"}));
    alice.expect("bot left");
    let status = bot.wait().unwrap();
    assert_eq!(status.code(), Some(3), "an invalid command was given, so 3");
}

/// A `history` answer longer than the output queue holds at once (5 MB) comes whole, in
/// objects of about a megabyte, each but the last saying `"more": true`; nothing is skipped.
#[test]
fn a_long_json_history_comes_whole_in_parts() {
    use serde_json::Value;
    use std::io::{BufRead, BufReader, Write};
    let mut alice = Chat::start("alice", &["--bind", "127.0.0.1"]);
    let peer = format!("127.0.0.1:{}", alice.port);
    let (mut bot, _dir) = spawn_bot(&["--nick", "bot", "--json", "--peer", &peer]);
    let mut stdin = bot.stdin.take().unwrap();
    let stdout = bot.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let v = serde_json::from_str(&line.unwrap()).expect("JSON");
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    let next = |what: &str| {
        rx.recv_timeout(common::WAIT * 4)
            .unwrap_or_else(|_| panic!("no {what}"))
    };
    while next("alice's join")["type"] != "join" {}
    let text = |i: usize| format!("{i:03} {}", "y".repeat(50_000));
    for i in 0..100 {
        alice.send(&text(i));
    }
    let mut heard = 0;
    while heard < 100 {
        let v = next("alice's messages");
        assert_ne!(v["type"], "error", "{v}");
        if v["type"] == "message" {
            heard += 1;
        }
    }
    writeln!(stdin, r#"{{"cmd":"history","count":200}}"#).unwrap();
    let mut parts = 0;
    let mut texts = Vec::new();
    loop {
        let v = next("the history");
        assert_ne!(v["type"], "error", "{v}");
        assert!(
            !v["text"].as_str().unwrap_or("").contains("not shown"),
            "nothing is skipped: {v}"
        );
        if v["type"] != "history" {
            continue;
        }
        parts += 1;
        for l in v["lines"].as_array().unwrap() {
            texts.push(l["text"].as_str().unwrap().to_owned());
        }
        if v["more"] == false {
            break;
        }
        assert_eq!(v["more"], true, "{}", v["more"]);
    }
    assert!(parts >= 4, "5 MB in parts of about a megabyte, not {parts}");
    assert!(
        texts == (0..100).map(text).collect::<Vec<_>>(),
        "every line once, in order"
    );
    writeln!(stdin, r#"{{"cmd":"quit"}}"#).unwrap();
    assert_eq!(bot.wait().unwrap().code(), Some(0));
}

/// A script whose input comes faster than its peer acknowledges waits for the peer: twenty
/// thousand lines piped at once all arrive, in order, and nothing is refused.
#[test]
fn a_script_faster_than_its_peer_waits_for_it_and_loses_nothing() {
    use std::io::Write;
    const LINES: usize = 20_000;
    let mut alice = Chat::start("alice", &["--bind", "127.0.0.1"]);
    let peer = format!("127.0.0.1:{}", alice.port);
    let (mut bot, _dir) = spawn_bot(&["--nick", "logbot", "--ephemeral", "--peer", &peer]);
    let input: String = (0..LINES)
        .map(|i| format!("L{i:05} {}\n", "z".repeat(40)))
        .collect();
    let mut stdin = bot.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    // A few seconds for all of it on an idle machine: waited for in steps, so that a busy
    // one (the whole suite running) has the expect's time for each step, not for all.
    for i in (0..LINES).step_by(2_500).skip(1).chain([LINES - 1]) {
        alice.expect(&format!("<logbot> L{i:05}"));
    }
    writer.join().unwrap().unwrap();
    let out = bot.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("error"), "{err}");
    let got: Vec<&String> = alice
        .seen
        .iter()
        .filter(|l| l.contains("<logbot> L"))
        .collect();
    assert_eq!(got.len(), LINES, "every line once");
    assert!(
        got.iter()
            .enumerate()
            .all(|(i, l)| l.contains(&format!("<logbot> L{i:05} "))),
        "in order"
    );
}

/// A script's /add of an address where nobody answers says so when the script goes on
/// without it (after --wait), rather than only "nobody is here".
#[test]
fn a_script_says_which_added_address_did_not_answer() {
    use std::io::Write;
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap(); // takes, never answers
    let addr = silent.local_addr().unwrap();
    let (mut bot, _dir) = spawn_bot(&["--nick", "bot", "--ephemeral", "--wait", "1"]);
    writeln!(bot.stdin.take().unwrap(), "/add {addr}\nhello").unwrap();
    let out = bot.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("no answer from {addr} within 1.0 s (--wait)")),
        "{stdout}"
    );
    assert_eq!(out.status.code(), Some(4), "nobody to send to");
    // Its error line does not tell it to give an address it gave, but that it waited too
    // little.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("have not answered in time: --wait SECONDS"),
        "{stderr}"
    );
}

/// tailchat as a program runs it: `--no-discovery --bind 127.0.0.1 --port 0` then `args`, with
/// its three standard streams piped; the temporary home goes with it.
fn spawn_bot(args: &[&str]) -> (std::process::Child, tempfile::TempDir) {
    let mut all = vec!["--no-discovery", "--bind", "127.0.0.1", "--port", "0"];
    all.extend_from_slice(args);
    let (mut cmd, dir) = command(&all);
    let child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    (child, dir)
}

#[test]
fn adding_our_own_address_says_it_is_ourselves() {
    let mut alice = Chat::start("alice", &["--bind", "127.0.0.1"]);
    alice.send(&format!("/add 127.0.0.1:{}", alice.port));
    alice.expect(&format!(
        "127.0.0.1:{} is this tailchat itself (it listens on port {})",
        alice.port, alice.port
    ));
    alice.send("/peers");
    alice.expect("no peers yet");
}

/// Bound to one address, a tailchat is not another on another loopback address that uses the
/// same port (two on one machine, each with `--bind`).
#[test]
fn the_same_port_on_another_bound_address_is_someone_else() {
    let mut alice = Chat::start("alice", &["--bind", "127.0.0.1"]);
    let port = alice.port.to_string();
    let mut bob = Chat::start("bob", &["--bind", "127.0.0.2", "--port", &port]);
    alice.send(&format!("/add 127.0.0.2:{port}"));
    alice.expect("bob joined (127.0.0.2:");
    bob.expect("alice joined");
}

/// An address the allow-list will never admit is not contacted: its answers would be
/// dropped, and the "no answer" that followed blamed the other side.
#[test]
fn adding_an_address_the_allow_list_keeps_out_says_so() {
    let mut bob = Chat::start("bob", &["--bind", "127.0.0.1"]);
    let mut alice = Chat::start("alice", &["--bind", "127.0.0.1", "--allow", "10.1.0.0/16"]);
    alice.send(&format!("/add 127.0.0.1:{}", bob.port));
    alice.expect(
        "127.0.0.1 is not in your allow-list (10.1.0.0/16): everything from it would be dropped — add it (--allow 127.0.0.1, or to allow in the config file) to reach it",
    );
    alice.send("/peers");
    alice.expect("no peers yet");
    bob.send("/peers");
    bob.expect("no peers yet");
}

#[test]
fn input_ends_at_quit_and_lines_after_it_are_not_errors() {
    let mut alice = Chat::start("alice", &["--bind", "127.0.0.1"]);
    let input = format!(
        "/add 127.0.0.1:{}\nbefore quit\n/quit\nafter quit\n",
        alice.port
    );
    let (code, stdout, stderr) = script(&[], &input);
    alice.expect("<ci-bot> before quit");
    assert_eq!(code, Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert!(!stderr.contains("error"), "{stderr}");
    assert!(!stdout.contains("after quit"), "{stdout}");
}

/// A script's --peer that does not answer its first hellos (a peer stopped for a few seconds)
/// still has the script's whole --wait: once it goes on, it answers the hellos waiting in its
/// socket, and the script's line reaches it (the script no longer gives up when the first
/// hellos go unanswered, about 4 s in, whatever --wait said).
#[test]
fn a_script_waits_its_whole_wait_for_a_peer_that_answers_late() {
    use std::io::Write;
    let mut alice = Chat::start("alice", &["--bind", "127.0.0.1"]);
    let peer = format!("127.0.0.1:{}", alice.port);
    assert!(alice.signal("-STOP"));
    let (mut bot, _dir) = spawn_bot(&["--nick", "latebot", "--wait", "15", "--peer", &peer]);
    {
        let mut stdin = bot.stdin.take().unwrap();
        writeln!(stdin, "better late than never").unwrap();
    }
    // The scenario, not a synchronisation: alice is stopped past the point where the first
    // hellos count as unanswered (about 4 s), well within the bot's 15 s.
    std::thread::sleep(std::time::Duration::from_secs(6));
    assert!(alice.signal("-CONT"));
    let out = bot.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    alice.expect("<latebot> better late than never");
}
