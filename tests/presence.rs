//! The real program on loopback: `/me`, `/away` (and that it outlives a restart), a message
//! that waited hours shown with the time it was written, and `--ephemeral`.

mod common;

use common::Chat;

/// Alice and bob, each with a data directory under `a` and `b`, bob added to alice; waits until
/// both see the other.
fn pair(a: &std::path::Path, b: &std::path::Path) -> (Chat, Chat) {
    let mut bob = start_bob(b);
    let mut alice = start_alice(&[], a, &bob);
    alice.expect("bob joined");
    bob.expect("alice joined");
    (alice, bob)
}

/// Bob on loopback, his data under `home`.
fn start_bob(home: &std::path::Path) -> Chat {
    Chat::start("bob", &["--bind", "127.0.0.1", "--data-dir", &data(home)])
}

/// Alice on loopback, her data under `home`, adding `bob`; run through `wrapper` (see
/// [`Chat::start_under`]).
fn start_alice(wrapper: &[&str], home: &std::path::Path, bob: &Chat) -> Chat {
    let peer = format!("127.0.0.1:{}", bob.port);
    let args = [
        "--bind",
        "127.0.0.1",
        "--data-dir",
        &data(home),
        "--peer",
        &peer,
    ];
    Chat::start_under(wrapper, "alice", &args)
}

fn data(home: &std::path::Path) -> String {
    home.join("data").to_str().expect("UTF-8 path").to_owned()
}

#[test]
fn an_action_and_away_travel_to_the_peer() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (mut alice, mut bob) = pair(a.path(), b.path());
    alice.send("/me waves");
    alice.expect("* alice waves");
    bob.expect("* alice waves");
    alice.send("/away gone fishing");
    alice.expect("you are away: gone fishing");
    bob.expect("alice is away: gone fishing");
    bob.send("/peers");
    bob.expect_where("alice listed as away", |l| {
        l.contains("alice") && l.contains("away: gone fishing")
    });
    bob.send("/msg alice when are you back?");
    alice.expect("*bob* when are you back?");
    alice.send("/back");
    bob.expect("alice is back");
}

#[test]
fn away_outlives_a_restart() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (mut alice, mut bob) = pair(a.path(), b.path());
    alice.send("/away on holiday");
    bob.expect("alice is away: on holiday");
    alice.send("/quit");
    alice.wait_exit();
    bob.expect("alice left");
    let mut alice = start_alice(&[], a.path(), &bob);
    alice.expect("you are still away: on holiday");
    bob.expect("alice joined");
    bob.expect("alice is away: on holiday");
}

#[test]
fn a_message_that_waited_hours_is_shown_with_the_time_it_was_written() {
    let Some(later) = common::faketime("+2h", false) else {
        eprintln!("skipped: faketime is not installed (apt-get install faketime)");
        return;
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (mut alice, mut bob) = pair(a.path(), b.path());
    bob.send("/quit");
    bob.wait_exit();
    alice.expect("bob left");
    alice.send("see you later");
    alice.expect("messages to them are kept on disk");
    alice.send("/quit");
    alice.wait_exit();
    // Bob is back; alice comes back two hours after she wrote it (her clock, wall and
    // monotonic, moved on; bob's did not).
    let mut bob = start_bob(b.path());
    let written = tailchat::clock::local_now();
    let wrapper: Vec<&str> = later.iter().map(String::as_str).collect();
    let mut alice = start_alice(&wrapper, a.path(), &bob);
    alice.expect("bob joined");
    let line = bob.expect("see you later");
    // Shown at arrival, marked with the time it was written: two hours before that, by bob's
    // clock (a minute either way, for the test's own steps).
    let marks: Vec<String> = [-1, 0, 1]
        .iter()
        .map(|m| {
            let at = written - chrono::Duration::hours(2) + chrono::Duration::minutes(*m);
            if at.date_naive() == tailchat::clock::local_now().date_naive() {
                format!("(sent {})", at.format("%H:%M"))
            } else {
                format!("(sent {})", at.format("%b %d %H:%M"))
            }
        })
        .collect();
    assert!(
        marks.iter().any(|m| line.ends_with(m.as_str())),
        "{line:?} is not marked with any of {marks:?}"
    );
    // A live line is not marked.
    alice.send("and now live");
    let live = bob.expect("and now live");
    assert!(!live.contains("(sent"), "{live:?}");
}

/// Alice (her data under `home`) and an ephemeral deploybot that adds her, meets her and
/// says "deploy finished".
fn alice_and_a_bot(home: &std::path::Path) -> (Chat, Chat) {
    let mut alice = Chat::start_in(home, "alice", &["--bind", "127.0.0.1"], &[]);
    let peer = format!("127.0.0.1:{}", alice.port);
    let mut bot = Chat::start(
        "deploybot",
        &["--bind", "127.0.0.1", "--ephemeral", "--peer", &peer],
    );
    alice.expect("deploybot joined");
    bot.expect("alice joined");
    bot.send("deploy finished");
    alice.expect("<deploybot> deploy finished");
    (alice, bot)
}

#[test]
fn an_ephemeral_script_is_not_listed_once_it_has_left() {
    let home = tempfile::tempdir().unwrap();
    let (mut alice, mut bot) = alice_and_a_bot(home.path());
    alice.send("/whois deploybot");
    alice.expect("ephemeral  yes");
    bot.close_input();
    assert!(bot.wait_exit().success());
    alice.expect("deploybot left");
    alice.send("/peers");
    alice.expect("no peers yet");
    alice.send("thanks, bot");
    alice.expect("not sent: nobody is here yet");
    // Nor after alice restarts: nothing of it is kept.
    alice.send("/quit");
    alice.wait_exit(); // exit 4: the line above had nobody to go to
    let mut alice = Chat::start_in(home.path(), "alice", &["--bind", "127.0.0.1"], &[]);
    alice.send("/peers");
    alice.expect("no peers yet");
}

#[test]
fn an_ephemeral_script_stays_forgotten_when_tailchat_is_killed_right_after_it_left() {
    let home = tempfile::tempdir().unwrap();
    let (mut alice, mut bot) = alice_and_a_bot(home.path());
    bot.close_input();
    assert!(bot.wait_exit().success());
    alice.expect("deploybot left");
    // Killed while it would still acknowledge the bot's leave again (30 s), before it had
    // forgotten it: the journal already says the bot is gone for good.
    alice.kill_hard();
    let mut alice = Chat::start_in(home.path(), "alice", &["--bind", "127.0.0.1"], &[]);
    alice.send("/peers");
    alice.expect("no peers yet");
    alice.send("/history");
    alice.expect("<deploybot> deploy finished");
}

#[test]
fn a_mention_makes_a_desktop_notification_when_asked_to() {
    // A stand-in for notify-send that writes down what it was asked to show.
    let home = tempfile::tempdir().unwrap();
    let bin = home.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let shown = home.path().join("notified");
    let fake = bin.join("notify-send");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do printf '%s|' \"$a\"; done >> {}\necho >> {}\n",
            shown.display(),
            shown.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = home.path().join("config/tailchat");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(config.join("config.toml"), "notify = true\n").unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut bob = Chat::start_in(
        home.path(),
        "bob",
        &["--bind", "127.0.0.1"],
        &[
            ("PATH", &path),
            ("DBUS_SESSION_BUS_ADDRESS", "unix:path=/dev/null"),
        ],
    );
    let peer = format!("127.0.0.1:{}", bob.port);
    let mut alice = Chat::start("alice", &["--bind", "127.0.0.1", "--peer", &peer]);
    alice.expect("bob joined");
    bob.expect("alice joined");
    alice.send("no call here");
    bob.expect("<alice> no call here");
    alice.send("bob: <b>lunch</b> & coffee?");
    bob.expect("<alice> bob: <b>lunch</b> & coffee?");
    common::wait_for("the notification", || {
        std::fs::read_to_string(&shown).is_ok_and(|s| s.lines().count() >= 1)
    });
    let lines = std::fs::read_to_string(&shown).unwrap();
    assert_eq!(
        lines.lines().collect::<Vec<_>>(),
        ["--app-name=tailchat|--|tailchat: alice|bob: &lt;b&gt;lunch&lt;/b&gt; &amp; coffee?|"],
        "one notification, for the call only, its markup escaped"
    );
}
