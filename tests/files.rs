//! File transfer with the real program on loopback: a file and a folder arrive byte-exact,
//! an offer is declined, a transfer is cancelled from either side; against a sender that lies
//! (a fake peer speaking the real protocol), nothing lands outside the download folder and
//! nothing that failed its check is kept.

mod common;

use common::Chat;
use std::fs;
use std::path::Path;

/// Deterministic pseudo-random bytes (xorshift), so a wrong byte anywhere shows.
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Alice and bob on loopback, bob receiving into `downloads`.
fn pair(downloads: &Path, bob_args: &[&str]) -> (Chat, Chat) {
    let mut alice = Chat::start("alice", &[]);
    let peer = format!("127.0.0.1:{}", alice.port);
    let dl = downloads.display().to_string();
    let mut args = vec!["--peer", &peer, "--download-dir", &dl];
    args.extend_from_slice(bob_args);
    let mut bob = Chat::start("bob", &args);
    bob.expect("alice joined");
    alice.expect("bob joined");
    (alice, bob)
}

/// The number in `… — /accept N or /decline N`.
fn offer_number(line: &str) -> u32 {
    line.rsplit("/decline ")
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no offer number in {line:?}"))
}

#[test]
fn a_file_and_a_folder_arrive_byte_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let downloads = tmp.path().join("dl");
    let (mut alice, mut bob) = pair(&downloads, &[]);

    let big = tmp.path().join("big.bin");
    let content = bytes(10 * 1024 * 1024, 7);
    fs::write(&big, &content).unwrap();
    alice.send(&format!("/send bob {}", big.display()));
    alice.expect("offered big.bin (10.5 MB) to bob");
    let offer = bob.expect("alice offers big.bin (10.5 MB)");
    assert!(
        !downloads.exists(),
        "nothing is written before the user accepts"
    );
    bob.send(&format!("/accept {}", offer_number(&offer)));
    let end = bob.expect("received big.bin from alice");
    assert!(end.contains("→"), "{end}");
    alice.expect("sent big.bin to bob");
    assert_eq!(fs::read(downloads.join("big.bin")).unwrap(), content);

    // A second time: the first is not overwritten.
    alice.send(&format!("/send bob {}", big.display()));
    let offer = bob.expect("alice offers big.bin");
    bob.send(&format!("/accept {}", offer_number(&offer)));
    bob.expect("received big.bin from alice");
    assert_eq!(fs::read(downloads.join("big (1).bin")).unwrap(), content);

    let folder = tmp.path().join("many");
    for i in 0..200 {
        let sub = folder.join(format!("d{}", i % 7));
        fs::create_dir_all(&sub).unwrap();
        fs::write(sub.join(format!("f{i}.txt")), bytes(i * 37, i as u64)).unwrap();
    }
    // Empty folders arrive too (a git repository without them is not one).
    fs::create_dir_all(folder.join("logs")).unwrap();
    fs::create_dir_all(folder.join(".git/refs/tags")).unwrap();
    fs::create_dir_all(folder.join("d3/empty")).unwrap();
    alice.send(&format!("/send bob {}", folder.display()));
    // A folder is read (hashed) before it is offered: said, with how to stop it.
    alice.expect("reading many/ to offer it to bob — /cancel 3 stops it");
    let offer = bob.expect("alice offers many/");
    assert!(offer.contains("200 files"), "{offer}");
    bob.send(&format!("/accept {}", offer_number(&offer)));
    bob.expect("received many/ from alice");
    alice.expect("sent many/ to bob");
    for i in 0..200 {
        let rel = format!("d{}/f{i}.txt", i % 7);
        assert_eq!(
            fs::read(downloads.join("many").join(&rel)).unwrap(),
            bytes(i * 37, i as u64),
            "{rel}"
        );
    }
    for empty in ["logs", ".git/refs/tags", "d3/empty"] {
        let made = downloads.join("many").join(empty);
        assert!(made.is_dir(), "{} was not made", made.display());
        assert_eq!(fs::read_dir(&made).unwrap().count(), 0);
    }
    let leftovers: Vec<_> = walk(&downloads)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_declined_offer_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let downloads = tmp.path().join("dl");
    let (mut alice, mut bob) = pair(&downloads, &[]);
    let f = tmp.path().join("no.txt");
    fs::write(&f, b"no thanks").unwrap();
    alice.send(&format!("/send bob {}", f.display()));
    bob.expect("alice offers no.txt (9 B)");
    bob.send("/decline");
    bob.expect("declined no.txt from alice");
    alice.expect("bob declined no.txt");
    bob.send("/files");
    bob.expect_where("the declined offer in /files", |l| {
        l.contains("no.txt") && l.contains("declined")
    });
    assert!(!downloads.exists());
}

/// An ephemeral peer (a throw-away script) that offers a file and quits never comes back: its
/// offer ends when it leaves, rather than waiting for an /accept that could only leave an
/// empty `.part` behind.
#[test]
fn an_offer_from_an_ephemeral_peer_that_left_is_withdrawn() {
    let tmp = tempfile::tempdir().unwrap();
    let downloads = tmp.path().join("dl");
    let (mut alice, mut bob) = pair(&downloads, &[]);
    alice.close_input();
    alice.wait_exit();
    bob.expect("alice left");
    // The script's own data directory, kept across its runs.
    let home = tmp.path().join("script");
    let peer = format!("127.0.0.1:{}", bob.port);
    let args = ["--ephemeral", "--peer", &peer];
    let mut alice = Chat::start_in(&home, "alice", &args, &[]);
    bob.expect("alice joined");
    let f = tmp.path().join("one-off.txt");
    fs::write(&f, b"take it or leave it").unwrap();
    alice.send(&format!("/send bob {}", f.display()));
    let offer = bob.expect("alice offers one-off.txt");
    alice.send("/quit");
    alice.wait_exit();
    // Alice is not promised a resume that will not come.
    assert!(
        alice
            .seen
            .iter()
            .any(|l| l.contains("one-off.txt (to bob) stopped at 0%: this run is ephemeral")),
        "{:#?}",
        alice.seen
    );
    let said = bob.expect("one-off.txt (from alice) stopped");
    assert!(said.contains("left for good"), "{said}");
    bob.send(&format!("/accept {}", offer_number(&offer)));
    bob.expect("no file transfer");
    assert!(!downloads.exists(), "nothing written");
    // Her next run from the same data directory does not offer it again (it ended at her
    // quit), nor say that it resumes.
    let mut alice = Chat::start_in(&home, "alice", &args, &[]);
    bob.expect("alice joined");
    alice.send("back again");
    // Stream order: an offer made again at her start would come before this line.
    bob.expect("back again");
    let offers = bob
        .seen
        .iter()
        .filter(|l| l.contains("offers one-off.txt"))
        .count();
    assert_eq!(offers, 1, "{:#?}", bob.seen);
    assert!(
        !alice.seen.iter().any(|l| l.contains("unfinished")),
        "{:#?}",
        alice.seen
    );
}

/// A path in quotes, as a shell would want one with a space: the quotes are not its name.
#[test]
fn a_quoted_path_is_sent_without_its_quotes() {
    let tmp = tempfile::tempdir().unwrap();
    let downloads = tmp.path().join("dl");
    let (mut alice, mut bob) = pair(&downloads, &[]);
    let f = tmp.path().join("my report.txt");
    fs::write(&f, b"quoted").unwrap();
    alice.send(&format!("/send bob \"{}\"", f.display()));
    bob.expect("alice offers my report.txt (6 B)");
    alice.send(&format!("/send bob '{}'", f.display()));
    bob.expect("alice offers my report.txt (6 B)");
    // Or with the space escaped, as a shell also takes it.
    let escaped = f.display().to_string().replace(' ', "\\ ");
    alice.send(&format!("/send bob {escaped}"));
    bob.expect("alice offers my report.txt (6 B)");
}

/// A symbolic link named to /send is followed (as cp does): the file it leads to arrives,
/// under the link's name.
#[test]
fn a_symbolic_link_named_to_send_is_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let downloads = tmp.path().join("dl");
    let (mut alice, mut bob) = pair(&downloads, &[]);
    let real = tmp.path().join("real.txt");
    fs::write(&real, b"through a link").unwrap();
    let link = tmp.path().join("link.txt");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    alice.send(&format!("/send bob {}", link.display()));
    let offer = bob.expect("alice offers link.txt (14 B)");
    bob.send(&format!("/accept {}", offer_number(&offer)));
    bob.expect("received link.txt from alice");
    assert_eq!(
        fs::read(downloads.join("link.txt")).unwrap(),
        b"through a link"
    );
}

/// Alice offers a 10 MB file served at 2 MB/s; bob accepts it and waits until it is
/// arriving. Returns both, the downloads folder and bob's number for the transfer.
fn slow_transfer(tmp: &Path) -> (Chat, Chat, std::path::PathBuf) {
    let downloads = tmp.join("dl");
    let mut alice = Chat::start_env("alice", &[], &[("TAILCHAT_TEST_SEND_RATE", "2000000")]);
    let peer = format!("127.0.0.1:{}", alice.port);
    let dl = downloads.display().to_string();
    let mut bob = Chat::start("bob", &["--peer", &peer, "--download-dir", &dl]);
    bob.expect("alice joined");
    alice.expect("bob joined");
    let content = bytes(10 * 1024 * 1024, 3);
    offer_accepted(&mut alice, &mut bob, tmp, "slow.bin", &content);
    bob.expect("accepted slow.bin from alice");
    let part = downloads.join("slow.bin.part");
    common::wait_for("the part file to grow", || {
        fs::metadata(&part).is_ok_and(|m| m.len() > 0)
    });
    (alice, bob, downloads)
}

#[test]
fn a_file_changed_on_the_senders_disk_mid_way_stops_with_that_reason() {
    use std::io::{Seek, SeekFrom, Write};
    let tmp = tempfile::tempdir().unwrap();
    let (mut alice, mut bob, downloads) = slow_transfer(tmp.path());
    // Someone edits the file while it is sent (same size, other bytes near its end).
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(tmp.path().join("slow.bin"))
        .unwrap();
    f.seek(SeekFrom::Start(9 * 1024 * 1024)).unwrap();
    f.write_all(b"edited").unwrap();
    drop(f);
    let why = "slow.bin changed after it was offered: it must be offered again (/send)";
    alice.expect(why);
    bob.expect(why);
    common::wait_for("nothing left in the downloads", || {
        fs::read_dir(&downloads).unwrap().next().is_none()
    });
}

/// A file changed between the offer and the accept: both sides are told it changed and must
/// be offered again (the receiver learns it from the data connection's status 4, or from the
/// sender's Cancel, whichever comes first).
#[test]
fn a_file_changed_before_the_accept_says_it_must_be_offered_again() {
    let tmp = tempfile::tempdir().unwrap();
    let downloads = tmp.path().join("dl");
    let (mut alice, mut bob) = pair(&downloads, &[]);
    let f = tmp.path().join("x.bin");
    fs::write(&f, b"first version").unwrap();
    alice.send(&format!("/send bob {}", f.display()));
    bob.expect("alice offers x.bin (13 B)");
    fs::write(&f, b"first version, and more").unwrap();
    bob.send("/accept");
    alice.expect("x.bin changed after it was offered: it must be offered again (/send)");
    bob.expect("must be offered again");
    common::wait_for("nothing left in the downloads", || {
        !downloads.exists() || fs::read_dir(&downloads).unwrap().next().is_none()
    });
}

#[test]
fn the_receiver_cancels_half_way_and_keeps_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut alice, mut bob, downloads) = slow_transfer(tmp.path());
    bob.send("/cancel 1");
    bob.expect("cancelled slow.bin (from alice)");
    alice.expect("bob cancelled slow.bin");
    common::wait_for("the part file to go", || {
        fs::read_dir(&downloads).unwrap().next().is_none()
    });
}

#[test]
fn the_sender_cancels_half_way_and_the_receiver_keeps_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut alice, mut bob, downloads) = slow_transfer(tmp.path());
    alice.send("/cancel 1");
    alice.expect("cancelled slow.bin (to bob)");
    bob.expect("alice cancelled slow.bin");
    common::wait_for("the part file to go", || {
        fs::read_dir(&downloads).unwrap().next().is_none()
    });
    let rest = bob.drain();
    assert!(!rest.iter().any(|l| l.contains("received")), "{rest:?}");
}

#[test]
fn idle_connections_to_the_data_port_do_not_keep_a_transfer_out() {
    let tmp = tempfile::tempdir().unwrap();
    let downloads = tmp.path().join("dl");
    let (mut alice, mut bob) = pair(&downloads, &[]);
    let content = bytes(1 << 20, 11);
    let f = tmp.path().join("through.bin");
    fs::write(&f, &content).unwrap();
    alice.send(&format!("/send bob {}", f.display()));
    let offer = bob.expect("alice offers through.bin");
    // Alice now serves it, on her chat port's number. Twice as many connections as she serves
    // at once, none sending its request: a stuck program, or a peer that means harm.
    let idle: Vec<std::net::TcpStream> = (0..32)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", alice.port)).unwrap())
        .collect();
    bob.send(&format!("/accept {}", offer_number(&offer)));
    // Well before the idle ones would time out (30 s): the oldest make room for bob's.
    bob.expect("received through.bin from alice");
    assert_eq!(fs::read(downloads.join("through.bin")).unwrap(), content);
    drop(idle);
}

/// The number before ` MB` after `label` in `line`.
fn megabytes_after(line: &str, label: &str) -> f64 {
    line.split(label)
        .nth(1)
        .and_then(|rest| rest.split(" MB").next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no '{label} N MB' in {line:?}"))
}

/// Alice offers bob `content` as file `name` (written in `dir`), and bob accepts it.
fn offer_accepted(alice: &mut Chat, bob: &mut Chat, dir: &Path, name: &str, content: &[u8]) {
    let f = dir.join(name);
    fs::write(&f, content).unwrap();
    alice.send(&format!("/send bob {}", f.display()));
    let offer = bob.expect(&format!("alice offers {name}"));
    bob.send(&format!("/accept {}", offer_number(&offer)));
}

/// The sender's end line `sent` says the transfer resumed at about `kept` bytes (what the
/// receiver's part held) and sent only the rest of the `len` bytes.
fn assert_only_the_rest_was_sent(sent: &str, kept: u64, len: usize) {
    let resumed_at = megabytes_after(sent, "resumed at");
    let sent_after = megabytes_after(sent, "sent the remaining");
    let total = len as f64 / 1e6;
    assert!(
        resumed_at * 1e6 >= kept as f64 - 0.1e6,
        "{sent} (kept {kept})"
    );
    assert!(
        (resumed_at + sent_after - total).abs() < 0.15,
        "only what had not arrived is sent again: {sent}"
    );
}

/// Both end lines of a resumed transfer tell it the same way: where it resumed, and how long
/// it took since its first bytes moved (the receiver's first run counted, so both about the
/// same), though one side restarted.
fn assert_both_ends_agree(received: &str, sent: &str) {
    let resumed = |line: &str| {
        let at = line
            .split("resumed at ")
            .nth(1)
            .unwrap_or_else(|| panic!("{line}"));
        at.split(" and").next().unwrap_or_default().to_owned()
    };
    assert_eq!(resumed(received), resumed(sent), "{received} / {sent}");
    assert!(received.contains("received the remaining"), "{received}");
    let took = |line: &str| -> f64 {
        let t = line.split(" in ").nth(1).unwrap_or_default();
        let t = t.split([';', ')']).next().unwrap_or_default();
        match t.split(' ').collect::<Vec<_>>()[..] {
            [n, "ms"] => n.parse::<f64>().unwrap() / 1000.0,
            [n, "s"] => n.parse().unwrap(),
            [m, "min", s, "s"] => m.parse::<f64>().unwrap() * 60.0 + s.parse::<f64>().unwrap(),
            _ => panic!("no duration in {line}"),
        }
    };
    assert!(
        (took(received) - took(sent)).abs() < 1.5,
        "{received} / {sent}"
    );
}

/// Waits until `part` holds more than half of `len` bytes, then kills `chat` (-9); returns
/// the length of the part it left.
fn kill_past_half_way(chat: &mut Chat, part: &Path, len: usize) -> u64 {
    let half = len as u64 / 2;
    common::wait_for("more than half of the file", || {
        fs::metadata(part).is_ok_and(|m| m.len() > half)
    });
    chat.kill_hard();
    let kept = fs::metadata(part).unwrap().len();
    assert!(kept > half && kept < len as u64, "{kept}");
    kept
}

#[test]
fn a_transfer_resumes_after_the_receiver_is_killed_past_half_way() {
    let tmp = tempfile::tempdir().unwrap();
    let downloads = tmp.path().join("dl");
    let bob_home = tmp.path().join("bob");
    fs::create_dir(&bob_home).unwrap();
    let mut alice = Chat::start_env("alice", &[], &[("TAILCHAT_TEST_SEND_RATE", "4000000")]);
    let peer = format!("127.0.0.1:{}", alice.port);
    let dl = downloads.display().to_string();
    let bob_args = ["--peer", peer.as_str(), "--download-dir", dl.as_str()];
    let mut bob = Chat::start_in(&bob_home, "bob", &bob_args, &[]);
    bob.expect("alice joined");
    let content = bytes(10 * 1024 * 1024, 11);
    offer_accepted(&mut alice, &mut bob, tmp.path(), "resume.bin", &content);
    let part = downloads.join("resume.bin.part");
    let written = kill_past_half_way(&mut bob, &part, content.len());
    // The receiver writes whole 1 MiB units; a part cut inside one (by an older version, or a
    // write the kill interrupted) must resume as well: its tail unit is read back from the
    // disk, completed from the socket and hashed whole.
    let kept = written - 4321;
    fs::OpenOptions::new()
        .write(true)
        .open(&part)
        .unwrap()
        .set_len(kept)
        .unwrap();
    assert!(kept > content.len() as u64 / 2, "{kept}");

    let mut bob = Chat::start_in(&bob_home, "bob", &bob_args, &[]);
    bob.expect("unfinished file transfer");
    // The restarted side says when it goes again, as the other side does.
    // (Alice may say nothing: bob was back within a second.)
    bob.expect("resume.bin from alice: resumed at");
    let end = bob.expect("received resume.bin from alice");
    let sent = alice.expect("sent resume.bin to bob");
    assert_only_the_rest_was_sent(&sent, kept, content.len());
    assert_both_ends_agree(&end, &sent);
    assert_eq!(fs::read(downloads.join("resume.bin")).unwrap(), content);
    assert!(!part.exists());
}

/// The folder `pics` of `files` (name, bytes) on its way from alice (4 MB/s) to bob, who
/// accepted it and runs from a data directory of his own.
struct FolderComing {
    alice: Chat,
    bob: Chat,
    bob_home: std::path::PathBuf,
    bob_args: Vec<String>,
    /// Where it lands.
    got: std::path::PathBuf,
}

impl FolderComing {
    /// Bob again, as he was started.
    fn restart_bob(&self) -> Chat {
        let args: Vec<&str> = self.bob_args.iter().map(String::as_str).collect();
        Chat::start_in(&self.bob_home, "bob", &args, &[])
    }
}

fn folder_coming(tmp: &Path, files: &[(&str, &[u8])]) -> FolderComing {
    let downloads = tmp.join("dl");
    let bob_home = tmp.join("bob");
    fs::create_dir(&bob_home).unwrap();
    let alice = Chat::start_env("alice", &[], &SLOW);
    let peer = format!("127.0.0.1:{}", alice.port);
    let bob_args = vec![
        "--peer".to_owned(),
        peer,
        "--download-dir".to_owned(),
        downloads.display().to_string(),
    ];
    let args: Vec<&str> = bob_args.iter().map(String::as_str).collect();
    let bob = Chat::start_in(&bob_home, "bob", &args, &[]);
    let mut coming = FolderComing {
        alice,
        bob,
        bob_home,
        bob_args,
        got: downloads.join("pics"),
    };
    coming.bob.expect("alice joined");
    let folder = tmp.join("pics");
    fs::create_dir(&folder).unwrap();
    for (name, bytes) in files {
        fs::write(folder.join(name), bytes).unwrap();
    }
    coming
        .alice
        .send(&format!("/send bob {}", folder.display()));
    let offer = coming.bob.expect("alice offers pics/");
    coming
        .bob
        .send(&format!("/accept {}", offer_number(&offer)));
    coming
}

/// Two files of a folder already received, with one still in place between them, are
/// deleted while the receiver is down: the resumed transfer fetches those two again, says so,
/// and ends with every file, rather than "received" with two missing; the file between them
/// (taken along on the same connection and dropped) and the one after them are not fetched
/// again as `b (1).bin`, and the file being received goes on from its part.
#[test]
fn files_received_and_removed_while_the_receiver_was_down_are_fetched_again() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c, d) = (
        bytes(1024 * 1024, 21),
        bytes(1024 * 1024, 22),
        bytes(64 * 1024, 24),
        bytes(8 * 1024 * 1024, 23),
    );
    let files: [(&str, &[u8]); 4] = [("a.bin", &a), ("b.bin", &b), ("c.bin", &c), ("d.bin", &d)];
    let mut coming = folder_coming(tmp.path(), &files);
    let got = coming.got.clone();
    let kept = kill_past_half_way(&mut coming.bob, &got.join("d.bin.part"), d.len());
    assert_eq!(
        fs::read(got.join("b.bin")).unwrap(),
        b,
        "b.bin was in place"
    );
    fs::remove_file(got.join("a.bin")).unwrap();
    fs::remove_file(got.join("c.bin")).unwrap();

    let mut bob = coming.restart_bob();
    let said = bob.expect("no longer there");
    assert!(
        said.contains("a.bin and 1 more,") && said.ends_with("receiving again"),
        "{said}"
    );
    let received = bob.expect("received pics/ from alice");
    // Its end line counts them, and nothing said the transfer began again "from the start".
    assert!(
        received.contains("; resumed at ")
            && received.contains(", and 2 files again (moved or deleted since they were received)"),
        "{received}"
    );
    assert!(
        !bob.seen.iter().any(|l| l.contains("from the start")),
        "{:#?}",
        bob.seen
    );
    let sent = coming.alice.expect("sent pics/ to bob");
    for (name, content) in files {
        assert!(fs::read(got.join(name)).unwrap() == content, "{name}");
    }
    assert_eq!(walk(&got).len(), 4, "{:?}", walk(&got));
    // The connection that fetched them again, closed by bob once he had them, is no outage.
    assert!(
        !coming.alice.seen.iter().any(|l| l.contains("interrupted")),
        "{:#?}",
        coming.alice.seen
    );
    // d.bin went on from its part: what was sent after the restart is a.bin to c.bin and
    // d.bin's rest.
    let total = (a.len() + b.len() + c.len() + d.len()) as u64;
    let at = megabytes_after(&sent, "resumed at");
    assert!(
        at * 1e6 >= (a.len() + b.len() + c.len()) as f64 + kept as f64 - 0.1e6,
        "{sent} (kept {kept} of d.bin, total {total})"
    );
}

/// The receiver's kept file list is damaged while it is down: it asks the sender for the list
/// again before anything else, so the files already in place are known and not fetched
/// again as `a (1).bin`.
#[test]
fn a_receiver_whose_kept_file_list_was_damaged_fetches_no_file_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (bytes(1024 * 1024, 41), bytes(8 * 1024 * 1024, 42));
    let mut coming = folder_coming(tmp.path(), &[("a.bin", &a), ("b.bin", &b)]);
    let got = coming.got.clone();
    kill_past_half_way(&mut coming.bob, &got.join("b.bin.part"), b.len());
    let kept = coming.bob_home.join("data/tailchat/transfers");
    for e in fs::read_dir(&kept).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "manifest") {
            fs::write(e.path(), b"damaged").unwrap();
        }
    }
    let mut bob = coming.restart_bob();
    bob.expect("received pics/ from alice");
    assert_eq!(fs::read(got.join("a.bin")).unwrap(), a);
    assert_eq!(fs::read(got.join("b.bin")).unwrap(), b);
    assert_eq!(walk(&got).len(), 2, "{:?}", walk(&got));
}

/// A file received is deleted while the rest of its folder still comes: before saying
/// "received", the receiver fetches it again.
#[test]
fn a_file_deleted_while_its_folder_still_comes_is_fetched_again_before_the_end() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (bytes(1024 * 1024, 31), bytes(8 * 1024 * 1024, 32));
    let coming = folder_coming(tmp.path(), &[("a.bin", &a), ("b.bin", &b)]);
    let (mut bob, got) = (coming.bob, coming.got);
    common::wait_for("a.bin in place", || got.join("a.bin").exists());
    fs::remove_file(got.join("a.bin")).unwrap();
    let said = bob.expect("no longer there");
    assert!(said.contains("a.bin,"), "{said}");
    bob.expect("received pics/ from alice");
    assert_eq!(fs::read(got.join("a.bin")).unwrap(), a);
    assert_eq!(fs::read(got.join("b.bin")).unwrap(), b);
}

/// Alice (sending at 4 MB/s from a data directory under `tmp`) offers bob `name`, 10 MiB,
/// and is killed once bob's part holds more than half of it.
struct SenderKilled {
    alice_home: std::path::PathBuf,
    /// Alice's chat address, as bob was given it.
    peer: String,
    bob: Chat,
    downloads: std::path::PathBuf,
    part: std::path::PathBuf,
    /// The length of bob's part when alice was killed.
    kept: u64,
    content: Vec<u8>,
}

const SLOW: [(&str, &str); 1] = [("TAILCHAT_TEST_SEND_RATE", "4000000")];

fn sender_killed_past_half_way(tmp: &Path, name: &str, seed: u64) -> SenderKilled {
    let downloads = tmp.join("dl");
    let alice_home = tmp.join("alice");
    fs::create_dir(&alice_home).unwrap();
    let mut alice = Chat::start_in(&alice_home, "alice", &[], &SLOW);
    let peer = format!("127.0.0.1:{}", alice.port);
    let dl = downloads.display().to_string();
    let mut bob = Chat::start(
        "bob",
        &["--peer", peer.as_str(), "--download-dir", dl.as_str()],
    );
    bob.expect("alice joined");
    let content = bytes(10 * 1024 * 1024, seed);
    offer_accepted(&mut alice, &mut bob, tmp, name, &content);
    let part = downloads.join(format!("{name}.part"));
    let kept = kill_past_half_way(&mut alice, &part, content.len());
    SenderKilled {
        alice_home,
        peer,
        bob,
        downloads,
        part,
        kept,
        content,
    }
}

#[test]
fn a_transfer_resumes_after_the_sender_is_killed_past_half_way() {
    let tmp = tempfile::tempdir().unwrap();
    let SenderKilled {
        alice_home,
        mut bob,
        downloads,
        part,
        kept,
        content,
        ..
    } = sender_killed_past_half_way(tmp.path(), "cut.bin", 12);
    let slow = SLOW;

    // Alice comes back on another port, so bob, who added her by her old address, cannot
    // find her: she must find him. No message went either way, only the file, and that is
    // enough for her journal to keep how to reach him.
    // Bob is told the connection broke, not that TCP may be blocked (alice is gone).
    let told = bob.expect("cut.bin from alice: interrupted at");
    assert!(
        told.ends_with("it resumes when alice is reachable"),
        "{told}"
    );
    let mut alice = Chat::start_in(&alice_home, "alice", &[], &slow);
    alice.expect("unfinished file transfer");
    alice.expect("bob joined");
    // Where bob's disk has less than alice counted sent, she says he asks again for it.
    alice.expect_where("alice's resume line", |l| {
        l.contains("cut.bin to bob: resumed at") || l.contains("cut.bin to bob: going again from")
    });
    bob.expect("cut.bin from alice: resumed at");
    let end = bob.expect("received cut.bin from alice");
    let sent = alice.expect("sent cut.bin to bob");
    assert_only_the_rest_was_sent(&sent, kept, content.len());
    assert_both_ends_agree(&end, &sent);
    assert_eq!(fs::read(downloads.join("cut.bin")).unwrap(), content);
    assert!(!part.exists());
}

/// The sender's kept file list (`.manifest`) or record (`.json`) is damaged while it is down:
/// it says so at its start and serves no list other than the one it offered; the receiver,
/// asking to resume, is told the transfer ended rather than trying the sender's data port for
/// ever, and keeps nothing.
#[test]
fn a_sender_whose_kept_transfer_was_damaged_says_so_and_the_receiver_is_told() {
    for (kind, alice_says, bob_hears) in [
        (
            "manifest",
            "is missing or damaged",
            "ended on the sender's side",
        ),
        (
            "json",
            "is damaged, so its transfer is forgotten",
            "no longer offered",
        ),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let SenderKilled {
            alice_home,
            peer,
            mut bob,
            downloads,
            part,
            ..
        } = sender_killed_past_half_way(tmp.path(), "list.bin", 13);
        let slow = SLOW;
        let kept = alice_home.join("data/tailchat/transfers");
        let files: Vec<_> = fs::read_dir(&kept)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == kind))
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        let mut bytes = fs::read(&files[0]).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x20; // a list that still decodes, but is not the one offered
        if kind == "json" {
            bytes.truncate(middle);
        }
        fs::write(&files[0], &bytes).unwrap();

        let mut alice = Chat::start_in(&alice_home, "alice", &["--port", &peer[10..]], &slow);
        // Said at start: it may come before the start line the harness waited for.
        let said = alice.expect_seen_or(alice_says, |l| l.contains(alice_says));
        assert!(
            said.contains(if kind == "json" {
                "send"
            } else {
                "list.bin to bob"
            }),
            "{said}"
        );
        let told = bob.expect("alice stopped list.bin");
        assert!(
            told.contains(bob_hears) && told.contains("ask for it to be sent again"),
            "{told}"
        );
        common::wait_for("bob's part removed", || !part.exists());
        assert!(!downloads.join("list.bin").exists());
    }
}

#[test]
fn a_transfer_resumes_after_the_receiver_restarts_on_another_port() {
    // Alice added bob; bob never added alice and no message goes either way: only the file
    // he accepted makes his journal keep how to reach her.
    let tmp = tempfile::tempdir().unwrap();
    let downloads = tmp.path().join("dl");
    let bob_home = tmp.path().join("bob");
    fs::create_dir(&bob_home).unwrap();
    let dl = downloads.display().to_string();
    let bob_args = ["--download-dir", dl.as_str()];
    let mut bob = Chat::start_in(&bob_home, "bob", &bob_args, &[]);
    let bob_at = format!("127.0.0.1:{}", bob.port);
    let slow = [("TAILCHAT_TEST_SEND_RATE", "4000000")];
    let mut alice = Chat::start_env("alice", &["--peer", bob_at.as_str()], &slow);
    bob.expect("alice joined");
    let content = bytes(10 * 1024 * 1024, 14);
    offer_accepted(&mut alice, &mut bob, tmp.path(), "moved.bin", &content);
    kill_past_half_way(&mut bob, &downloads.join("moved.bin.part"), content.len());

    // Bob comes back on another port: alice looks for him where he was; he must find her.
    let mut bob = Chat::start_in(&bob_home, "bob", &bob_args, &[]);
    bob.expect("unfinished file transfer");
    bob.expect("alice joined");
    let end = bob.expect("received moved.bin from alice");
    assert!(end.contains("resumed at"), "{end}");
    alice.expect("sent moved.bin to bob");
    assert_eq!(fs::read(downloads.join("moved.bin")).unwrap(), content);
}

#[test]
fn an_accept_survives_a_kill_of_the_receiver_right_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    let downloads = tmp.path().join("dl");
    let bob_home = tmp.path().join("bob");
    fs::create_dir(&bob_home).unwrap();
    // Alice sends slowly (the 3 MB take 1.5 s), so the kill lands right after bob's accept,
    // before the file is all there.
    let mut alice = Chat::start_env("alice", &[], &[("TAILCHAT_TEST_SEND_RATE", "2000000")]);
    let peer = format!("127.0.0.1:{}", alice.port);
    let dl = downloads.display().to_string();
    let bob_args = ["--peer", peer.as_str(), "--download-dir", dl.as_str()];
    let mut bob = Chat::start_in(&bob_home, "bob", &bob_args, &[]);
    bob.expect("alice joined");
    let content = bytes(3 * 1024 * 1024 + 5, 13);
    offer_accepted(&mut alice, &mut bob, tmp.path(), "early.bin", &content);
    bob.expect("accepted early.bin from alice");
    bob.kill_hard();
    assert!(!downloads.join("early.bin").exists());

    let mut bob = Chat::start_in(&bob_home, "bob", &bob_args, &[]);
    bob.expect("unfinished file transfer");
    bob.expect("received early.bin from alice");
    alice.expect("sent early.bin to bob");
    assert_eq!(fs::read(downloads.join("early.bin")).unwrap(), content);
}

/// Where bob lives, so that he can be started again as the same peer.
struct BobHome {
    home: std::path::PathBuf,
    args: Vec<String>,
    downloads: std::path::PathBuf,
}

impl BobHome {
    /// Bob, started (again) in his home.
    fn start(&self) -> Chat {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        Chat::start_in(&self.home, "bob", &args, &[])
    }
}

/// Alice, and bob with a home of his own in `tmp`, receiving into `tmp/dl`, joined to her.
fn alice_and_bob_at_home(tmp: &Path) -> (Chat, Chat, BobHome) {
    let home = tmp.join("bob");
    fs::create_dir(&home).unwrap();
    let alice = Chat::start("alice", &[]);
    let downloads = tmp.join("dl");
    let args = vec![
        "--peer".to_owned(),
        format!("127.0.0.1:{}", alice.port),
        "--download-dir".to_owned(),
        downloads.display().to_string(),
    ];
    let bob_home = BobHome {
        home,
        args,
        downloads,
    };
    let mut bob = bob_home.start();
    bob.expect("alice joined");
    (alice, bob, bob_home)
}

#[test]
fn an_offer_reaches_a_receiver_that_restarts_before_the_sender_misses_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut alice, mut bob, bob_home) = alice_and_bob_at_home(tmp.path());
    let downloads = bob_home.downloads.clone();
    let content = bytes(100_000, 17);
    let f = tmp.path().join("quick.bin");
    fs::write(&f, &content).unwrap();
    alice.send(&format!("/send bob {}", f.display()));
    bob.expect("alice offers quick.bin");
    // Bob has acknowledged the offer: the message after it, in the same stream, is.
    alice.send("/msg bob did you get it?");
    bob.expect("did you get it?");
    let deadline = std::time::Instant::now() + common::WAIT;
    while alice.queued_for("bob") > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "bob never acknowledged"
        );
    }
    // Bob's program dies with the offer on his screen, unanswered, and is back at once: alice
    // meets a new run of bob without ever seeing him gone, and offers it again.
    bob.kill_hard();
    let mut bob = bob_home.start();
    let offer = bob.expect("alice offers quick.bin");
    bob.send(&format!("/accept {}", offer_number(&offer)));
    bob.expect("received quick.bin from alice");
    assert_eq!(fs::read(downloads.join("quick.bin")).unwrap(), content);
    let rest = alice.drain();
    assert!(
        !rest
            .iter()
            .any(|l| l.contains("bob left") || l.contains("not answering")),
        "alice must not have missed bob for this test to mean anything: {rest:?}"
    );
}

#[test]
fn an_offer_withdrawn_while_the_receiver_was_away_never_reaches_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut alice, mut bob, bob_home) = alice_and_bob_at_home(tmp.path());
    let downloads = bob_home.downloads.clone();
    alice.expect("bob joined");
    // Killed: alice does not know yet that bob is gone, so her offer goes into the stream to
    // him, unacknowledged, and would be carried to his next run.
    bob.kill_hard();
    let f = tmp.path().join("withdrawn.bin");
    fs::write(&f, bytes(10_000, 3)).unwrap();
    alice.send(&format!("/send bob {}", f.display()));
    let offered = alice.expect("offered withdrawn.bin");
    let number = offered
        .rsplit("/cancel ")
        .next()
        .and_then(|n| n.split_whitespace().next())
        .unwrap_or_else(|| panic!("no number in {offered:?}"))
        .to_owned();
    alice.send(&format!("/cancel {number}"));
    alice.expect("cancelled withdrawn.bin");
    let mut bob = bob_home.start();
    bob.expect("alice joined");
    // Everything alice queued for bob before this message comes before it.
    alice.send("/msg bob after the offer");
    bob.expect("after the offer");
    assert!(
        !bob.seen.iter().any(|l| l.contains("withdrawn.bin")),
        "bob was shown an offer that was over before he came back: {:#?}",
        bob.seen
    );
    assert!(!downloads.join("withdrawn.bin").exists());
}

/// A tmpfs of its own (`options`) at a new folder in `tmp`, unmounted on drop; `None` when
/// this is not root (mounting needs it), and the test then checks nothing.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(tmp: &Path, options: &str) -> Option<Tmpfs> {
        let at = tmp.join(format!("tmpfs-{}", options.len()));
        fs::create_dir(&at).ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tailchat-test"])
            .arg(&at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs(at))
    }

    /// Mounts it again with `options` (more room), keeping what is on it.
    fn remount(&self, options: &str) {
        let ok = std::process::Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot remount {} with {options}", self.0.display());
    }
}

/// The number in `… then /accept N to go on`.
fn paused_number(line: &str) -> u32 {
    line.rsplit("/accept ")
        .next()
        .and_then(|n| n.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number in {line:?}"))
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_gives_a_clear_message_and_no_part_that_looks_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let (Some(small), Some(few_inodes)) = (
        Tmpfs::mount(tmp.path(), "size=1m"),
        Tmpfs::mount(tmp.path(), "size=64m,nr_inodes=24"),
    ) else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let (mut alice, mut bob) = pair(&small.0, &[]);
    let f = tmp.path().join("two.bin");
    fs::write(&f, bytes(2_000_000, 5)).unwrap();
    alice.send(&format!("/send bob {}", f.display()));
    let offer = bob.expect("alice offers two.bin (2.0 MB)");
    bob.send(&format!("/accept {}", offer_number(&offer)));
    let refused = bob.expect("not enough space for two.bin");
    assert!(refused.contains("it needs 2.0 MB"), "{refused}");
    assert!(fs::read_dir(&small.0).unwrap().next().is_none());

    // Space enough at accept, but the disk fills up on the way (it runs out of inodes): the
    // transfer pauses, keeps what arrived, and goes on once there is room.
    let folder = tmp.path().join("many");
    fs::create_dir(&folder).unwrap();
    for i in 0..60 {
        fs::write(folder.join(format!("f{i:02}")), bytes(1000, i)).unwrap();
    }
    alice.send(&format!("/send bob {}", folder.display()));
    let offer = bob.expect("alice offers many/");
    bob.send(&format!(
        "/accept {} {}",
        offer_number(&offer),
        few_inodes.0.display()
    ));
    let paused = bob.expect("paused many/ from alice");
    assert!(paused.to_lowercase().contains("no space left"), "{paused}");
    // Alice is told why, not that the connection broke.
    let told = alice.expect("bob paused many/ at");
    assert!(told.contains("the disk is full"), "{told}");
    alice.send("/files");
    alice.expect("paused by receiver");
    let kept = walk(&few_inodes.0.join("many"));
    assert!(
        !kept.is_empty() && kept.len() < 60,
        "the whole files that arrived are kept: {kept:?}"
    );
    bob.send("/files");
    bob.expect("paused: disk full");
    few_inodes.remount("nr_inodes=200");
    bob.send(&format!("/accept {}", paused_number(&paused)));
    bob.expect("going on with many/ from alice");
    bob.expect("received many/ from alice");
    alice.expect("many/ to bob: resumed at");
    alice.expect("sent many/ to bob");
    let interrupted = alice.seen.iter().find(|l| l.contains("interrupted"));
    assert!(interrupted.is_none(), "{interrupted:?}");
    for i in 0..60 {
        let got = fs::read(few_inodes.0.join("many").join(format!("f{i:02}"))).unwrap();
        assert_eq!(got, bytes(1000, i), "f{i:02}");
    }
}

/// Space that a transfer accepted already will still fill is not free for the next offer; and
/// a disk that something else fills on the way pauses the transfer, which keeps its bytes in a
/// `NAME.part` shorter than the file and goes on by itself once there is room.
#[test]
fn a_disk_filled_on_the_way_pauses_and_room_promised_is_not_free() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(four) = Tmpfs::mount(tmp.path(), "size=4m,nr_inodes=1k") else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    // Alice serves at 1 MB/s, so that the disk fills while a.bin is on its way.
    let mut alice = Chat::start_env("alice", &[], &[("TAILCHAT_TEST_SEND_RATE", "1000000")]);
    let peer = format!("127.0.0.1:{}", alice.port);
    let dl = four.0.display().to_string();
    let mut bob = Chat::start("bob", &["--peer", &peer, "--download-dir", &dl]);
    bob.expect("alice joined");
    alice.expect("bob joined");
    let (a, b) = (tmp.path().join("a.bin"), tmp.path().join("b.bin"));
    fs::write(&a, bytes(3_000_000, 1)).unwrap();
    fs::write(&b, bytes(3_000_000, 2)).unwrap();
    let mut numbers = Vec::new();
    for f in [&a, &b] {
        alice.send(&format!("/send bob {}", f.display()));
        let name = f.file_name().unwrap().to_str().unwrap();
        numbers.push(offer_number(&bob.expect(&format!("alice offers {name}"))));
    }
    // Each fits in 4 MB, not both: the second is refused while the first is under way.
    bob.send(&format!("/accept {}", numbers[0]));
    bob.expect("accepted a.bin from alice");
    bob.send(&format!("/accept {}", numbers[1]));
    let refused = bob.expect("not enough space for b.bin");
    assert!(
        refused.contains("it needs 3.0 MB") && refused.contains("for transfers accepted already"),
        "{refused}"
    );
    // Something else takes 2 MB of the disk while a.bin arrives.
    fs::write(four.0.join("other.bin"), bytes(2_000_000, 9)).unwrap();
    let paused = bob.expect("paused a.bin from alice");
    assert!(paused.to_lowercase().contains("no space left"), "{paused}");
    alice.expect("bob paused a.bin at");
    let parts: Vec<_> = walk(&four.0)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "part"))
        .collect();
    assert_eq!(parts.len(), 1, "{parts:?}");
    let len = fs::metadata(&parts[0]).unwrap().len();
    assert!(
        len < 3_000_000,
        "{} looks complete: {len}",
        parts[0].display()
    );
    let number = paused_number(&paused);
    bob.send(&format!("/accept {number}"));
    let refused_again = bob.expect("still not enough space");
    assert!(refused_again.contains("the rest needs"), "{refused_again}");
    // Room again: it goes on by itself (it looks every few seconds).
    four.remount("size=16m");
    bob.expect("there is room again: going on with a.bin");
    bob.expect("received a.bin from alice");
    bob.send(&format!("/accept {}", numbers[1]));
    bob.expect("received b.bin from alice");
    assert_eq!(fs::read(four.0.join("a.bin")).unwrap(), bytes(3_000_000, 1));
    assert_eq!(fs::read(four.0.join("b.bin")).unwrap(), bytes(3_000_000, 2));
}

/// Bob receiving into `downloads` from a fake peer, mallory, that offers what a test tells it.
fn bob_and_mallory(downloads: &Path) -> (Chat, common::FakeOfferer) {
    let mallory = common::FakeOfferer::start("mallory");
    let peer = format!("127.0.0.1:{}", mallory.port);
    let dl = downloads.display().to_string();
    let mut bob = Chat::start("bob", &["--peer", &peer, "--download-dir", &dl]);
    bob.expect("mallory joined");
    (bob, mallory)
}

/// The receiver cannot open TCP to the sender's data port while the sender answers chat (a
/// firewall on the sender's side, most likely): both are told — the receiver asks whether the
/// port is blocked, and the sender gets a Pause saying its port cannot be reached, since only
/// its user can open it.
#[test]
fn a_data_port_that_cannot_be_reached_is_told_to_both_sides() {
    use tailchat::transfer::control::Control;
    let tmp = tempfile::tempdir().unwrap();
    let (mut bob, mallory) = bob_and_mallory(tmp.path());
    // A port nobody listens on: every connection is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let body = b"never sent".to_vec();
    let m = manifest(vec![entry("walled.bin", &body)]);
    let offer = common::offer_of("walled.bin", false, &m, closed);
    mallory.offer(&offer, m.encode(), body);
    let line = bob.expect("mallory offers walled.bin");
    bob.send(&format!("/accept {}", offer_number(&line)));
    let said = bob.expect(&format!("is TCP port {closed} blocked on the way?"));
    assert!(said.contains("though mallory answers chat"), "{said}");
    // /files does not call it receiving.
    bob.send("/files");
    let row = bob.expect("walled.bin");
    assert!(row.contains("TCP blocked, trying again"), "{row}");
    assert!(!row.contains("receiving"), "{row}");
    mallory.expect_control("bob's pause", |c| {
        matches!(c, Control::Pause { id, reason, .. }
            if *id == offer.id
                && reason.contains(&format!("cannot connect to your TCP port {closed}"))
                && reason.contains("firewall"))
    });
}

/// One file's manifest entry for `content` under `path`.
fn entry(path: &str, content: &[u8]) -> tailchat::transfer::manifest::Entry {
    tailchat::transfer::manifest::Entry {
        path: path.to_owned(),
        size: content.len() as u64,
        hash: *blake3::hash(content).as_bytes(),
    }
}

fn manifest(
    entries: Vec<tailchat::transfer::manifest::Entry>,
) -> tailchat::transfer::manifest::Manifest {
    tailchat::transfer::manifest::Manifest {
        entries,
        folders: vec![],
    }
}

/// Offers `offer` (serving `served` and `body`), accepts it, and waits for the line that
/// says it stopped, which must contain `why`; mallory must be told with a Cancel.
fn accept_and_expect_stop(
    bob: &mut Chat,
    mallory: &common::FakeOfferer,
    offer: &tailchat::transfer::control::Offer,
    served: Vec<u8>,
    body: Vec<u8>,
    why: &str,
) -> String {
    use tailchat::transfer::control::Control;
    mallory.offer(offer, served, body);
    let line = bob.expect(&format!("mallory offers {}", offer.name));
    bob.send(&format!("/accept {}", offer_number(&line)));
    let stopped = bob.expect(&format!("stopped receiving {}", offer.name));
    assert!(stopped.contains(why), "{stopped}");
    // Told the cause, not bob's own line again ("stopped receiving NAME from mallory: …"):
    // mallory's line says who stopped what.
    mallory.expect_control("bob's cancel", |c| {
        matches!(c, Control::Cancel { id, by_offerer: false, reason }
            if *id == offer.id && stopped.contains(reason.as_str()) && !reason.contains("stopped receiving"))
    });
    stopped
}

/// Every file under `dir` (none if it does not exist).
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    if dir.exists() {
        walk(dir)
    } else {
        Vec::new()
    }
}

#[test]
fn offers_past_the_limits_are_refused_at_once_saying_why() {
    use tailchat::transfer::control::Control;
    let tmp = tempfile::tempdir().unwrap();
    let downloads = tmp.path().join("dl");
    let (mut bob, mallory) = bob_and_mallory(&downloads);
    let one = manifest(vec![entry("x", b"x")]);
    let refused = |bob: &mut Chat, offer: &tailchat::transfer::control::Offer, why: &str| {
        mallory.offer(offer, Vec::new(), Vec::new());
        let line = bob.expect(&format!("mallory offered {}", offer.name));
        assert!(line.ends_with(&format!("{why}: refused")), "{line}");
        mallory.expect_control(
            "bob's refusal",
            |c| matches!(c, Control::Cancel { id, by_offerer: false, .. } if *id == offer.id),
        );
    };
    let mut many = common::offer_of("many", true, &one, mallory.data_port);
    many.files = 10_000;
    refused(&mut bob, &many, "with 10000 files (at most 5000 are taken)");
    let mut long = common::offer_of("long", true, &one, mallory.data_port);
    long.manifest_len = 7 << 20;
    refused(
        &mut bob,
        &long,
        "with a file list of 7340032 bytes (at most 6291456 are taken)",
    );
    let mut two = common::offer_of("two.bin", false, &one, mallory.data_port);
    two.files = 2;
    refused(
        &mut bob,
        &two,
        "as a single file made of 2 files (a broken offer)",
    );
    assert!(!downloads.exists(), "nothing written for a refused offer");
}

#[test]
fn a_sender_that_lies_leaves_nothing_that_looks_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let downloads = tmp.path().join("dl");
    let (mut bob, mallory) = bob_and_mallory(&downloads);
    let port = mallory.data_port;
    let content = bytes(300_000, 21);
    let other = bytes(300_000, 22);

    // The file list served is not the one the offer's hash fixes.
    let offered = manifest(vec![entry("list.bin", &content)]);
    let offer = common::offer_of("list.bin", false, &offered, port);
    let served = manifest(vec![entry("list.bin", &other)]).encode();
    accept_and_expect_stop(
        &mut bob,
        &mallory,
        &offer,
        served,
        other.clone(),
        "another hash",
    );

    // The list is the offered one, the bytes are not: discarded, not kept as if good.
    let offered = manifest(vec![entry("hash.bin", &content)]);
    let offer = common::offer_of("hash.bin", false, &offered, port);
    let line = accept_and_expect_stop(
        &mut bob,
        &mallory,
        &offer,
        offered.encode(),
        other.clone(),
        "does not match its hash: discarded",
    );
    assert!(line.contains("mallory"), "{line}");

    // The offer says 1 KB; the list (and the bytes) say 300 KB.
    let offered = manifest(vec![entry("size.bin", &content)]);
    let mut offer = common::offer_of("size.bin", false, &offered, port);
    offer.size = 1000;
    accept_and_expect_stop(
        &mut bob,
        &mallory,
        &offer,
        offered.encode(),
        content.clone(),
        "does not match its offer",
    );

    // A folder of "5 B" whose two sizes, 2^63 and 2^63 + 5, add up to 5 when they wrap
    // round: refused before a byte is written (it used to write without end).
    let mut huge = entry("w1", b"x");
    huge.size = 1 << 63;
    let mut huger = entry("w2", b"x");
    huger.size = (1 << 63) + 5;
    let offered = manifest(vec![huge, huger]);
    let mut offer = common::offer_of("wrap", true, &offered, port);
    offer.size = 5;
    accept_and_expect_stop(
        &mut bob,
        &mallory,
        &offer,
        offered.encode(),
        content.clone(),
        "does not match its offer",
    );

    // The offered bytes, then more: the file is not kept either.
    let offered = manifest(vec![entry("more.bin", &content)]);
    let offer = common::offer_of("more.bin", false, &offered, port);
    let mut longer = content.clone();
    longer.extend_from_slice(&bytes(100_000, 23));
    accept_and_expect_stop(
        &mut bob,
        &mallory,
        &offer,
        offered.encode(),
        longer,
        "more bytes than it offered",
    );

    // A folder whose second file is not what its list says: the first, which matched, stays;
    // the second is discarded.
    let offered = manifest(vec![entry("a.bin", &content), entry("b.bin", &content)]);
    let offer = common::offer_of("pair", true, &offered, port);
    let mut body = content.clone();
    body.extend_from_slice(&other);
    accept_and_expect_stop(
        &mut bob,
        &mallory,
        &offer,
        offered.encode(),
        body,
        "pair/b.bin does not match its hash: discarded",
    );

    let mut left: Vec<String> = files_under(&downloads)
        .iter()
        .map(|p| p.strip_prefix(&downloads).unwrap().display().to_string())
        .collect();
    left.sort();
    assert_eq!(left, ["pair/a.bin"], "only the file that matched is kept");
    assert_eq!(fs::read(downloads.join("pair/a.bin")).unwrap(), content);
    bob.send("/files");
    bob.expect_where("the failed transfers in /files", |l| {
        l.contains("more.bin") && l.contains("failed")
    });
}

#[test]
fn hostile_names_stay_inside_the_download_folder() {
    let tmp = tempfile::tempdir().unwrap();
    // Deep enough that `../..` from it still lands inside the test's folder, where the test
    // can see it.
    let downloads = tmp.path().join("one/two/dl");
    // (A download folder is made if only its last part is missing.)
    fs::create_dir_all(tmp.path().join("one/two")).unwrap();
    let outside = tmp.path().join("outside");
    let (mut bob, mallory) = bob_and_mallory(&downloads);
    let passwd = fs::read("/etc/passwd").ok();
    let absolute = outside.join("abs.txt").display().to_string();
    let content = b"hello from mallory".to_vec();

    let single = [
        "../../etc/passwd",
        "/etc/passwd",
        "a/../../b",
        absolute.as_str(),
        "../../../../outside/up.txt",
        "evil\u{1b}[2J\u{202e}gnp.exe\r\n\u{7}",
    ];
    for name in single {
        let offer = common::offer_of(
            name,
            false,
            &manifest(vec![entry(name, &content)]),
            mallory.data_port,
        );
        mallory.offer(
            &offer,
            manifest(vec![entry(name, &content)]).encode(),
            content.clone(),
        );
        let line = bob.expect_where("mallory's offer", |l| l.contains("mallory offers"));
        bob.send(&format!("/accept {}", offer_number(&line)));
        let end = bob.expect("received");
        assert!(end.contains(&downloads.display().to_string()), "{end}");
        assert!(
            !end.contains("resumed"),
            "a first attempt is no resume: {end}"
        );
        mallory.expect_control(
            "bob's done",
            |c| matches!(c, tailchat::transfer::control::Control::Done { id } if *id == offer.id),
        );
    }

    // A folder, itself with a hostile name, of hostile paths (two of which become the same).
    let paths = [
        "../../etc/passwd",
        "/etc/passwd",
        "a/../../b",
        absolute.as_str(),
        "..",
        "c\u{1b}]0;title\u{7}d/e\u{202e}f",
        "x\\..\\..\\y",
    ];
    let entries: Vec<_> = paths.iter().map(|p| entry(p, &content)).collect();
    let body = content.repeat(paths.len());
    let mut offered = manifest(entries);
    // And empty folders of hostile names, one where files are (they are numbered).
    offered.folders = [
        "../../../../outside/made",
        "/etc/evil",
        "..",
        "etc/passwd",
        "deep\u{1b}[2J/x",
    ]
    .map(str::to_owned)
    .to_vec();
    let offer = common::offer_of("../../up", true, &offered, mallory.data_port);
    mallory.offer(&offer, offered.encode(), body);
    // Shown as it will be saved: "../../" is no part of it.
    let line = bob.expect("mallory offers up/");
    bob.send(&format!("/accept {}", offer_number(&line)));
    bob.expect("received up/ from mallory");

    // Everything the test's folder holds is in the download folder.
    let everything = walk(tmp.path());
    for p in &everything {
        assert!(p.starts_with(&downloads), "{} is outside", p.display());
        let name = p.file_name().unwrap().to_str().unwrap();
        assert!(!name.chars().any(char::is_control), "{name:?}");
        assert!(!name.contains('\u{202e}'), "{name:?}");
        assert!(!name.ends_with(".part"), "{name:?}");
        assert_eq!(fs::read(p).unwrap(), content, "{}", p.display());
    }
    assert_eq!(everything.len(), single.len() + paths.len());
    let mut names: Vec<String> = everything
        .iter()
        .map(|p| p.strip_prefix(&downloads).unwrap().display().to_string())
        .collect();
    names.sort();
    let abs_inside = absolute.trim_start_matches('/');
    let mut want = vec![
        "passwd".to_owned(),
        "passwd (1)".to_owned(),
        "b".to_owned(),
        "abs.txt".to_owned(),
        "up.txt".to_owned(),
        "evil_[2J_gnp.exe___".to_owned(),
        // The empty folder `etc/passwd` keeps its name: the files are numbered.
        "up/etc/passwd (1)".to_owned(),
        "up/etc/passwd (2)".to_owned(),
        "up/a/b".to_owned(),
        format!("up/{abs_inside}"),
        "up/file-4".to_owned(),
        "up/c_]0;title_d/e_f".to_owned(),
        "up/x/y".to_owned(),
    ];
    want.sort();
    assert_eq!(names, want);
    assert!(!outside.exists());
    let up = downloads.join("up");
    for made in ["outside/made", "etc/evil", "deep_[2J/x"] {
        assert!(up.join(made).is_dir(), "{made} was not made");
    }
    assert!(up.join("etc/passwd").is_dir());
    assert_eq!(
        fs::read("/etc/passwd").ok(),
        passwd,
        "/etc/passwd untouched"
    );
    for p in [
        "/etc/passwd (1)",
        "/etc/passwd.part",
        "/b",
        "/etc/b",
        "/etc/evil",
    ] {
        assert!(fs::symlink_metadata(p).is_err(), "{p} was created");
    }
    // Nothing a peer named reaches the terminal as a control character.
    for line in &bob.seen {
        assert!(
            !line.chars().any(|c| c.is_control() && c != '\t'),
            "{line:?}"
        );
        assert!(!line.contains('\u{202e}'), "{line:?}");
    }
}

/// A piped script's `/send` is waited for like its messages: the script ends once the file
/// has arrived (exit 0), not at the end of its input with the offer not even made; and one
/// whose offer nobody takes within --wait ends with exit 5.
#[test]
fn a_script_waits_for_the_files_it_sends() {
    let tmp = tempfile::tempdir().unwrap();
    let downloads = tmp.path().join("dl");
    let bob_home = tmp.path().join("bob");
    let mut bob = bob_accepting_from(&bob_home, &downloads, "\"dave\"", &["--bind", "127.0.0.1"]);
    let peer = format!("127.0.0.1:{}", bob.port);
    let f = tmp.path().join("log.bin");
    fs::write(&f, bytes(2_000_000, 7)).unwrap();
    let mut dave = Chat::start("dave", &["--peer", &peer]);
    dave.send(&format!("/send bob {}", f.display()));
    dave.close_input();
    assert_eq!(dave.wait_exit().code(), Some(0), "{:#?}", dave.seen);
    bob.expect("received log.bin from dave");
    assert_eq!(
        fs::read(downloads.join("log.bin")).unwrap(),
        bytes(2_000_000, 7)
    );
    // Nobody accepts carol's offer: after the wait, exit 5.
    let mut carol = Chat::start("carol", &["--peer", &peer, "--wait", "1"]);
    carol.send(&format!("/send bob {}", f.display()));
    carol.close_input();
    bob.expect("carol offers log.bin");
    assert_eq!(carol.wait_exit().code(), Some(5), "{:#?}", carol.seen);
}

/// A throw-away script calling itself alice offers bob a file while the real alice is here,
/// and ends without it being taken: the line that ends its offer names it with its id, as
/// its lines did — not as plain "alice", which would read as the real one.
#[test]
fn an_impostors_offer_ends_under_its_id() {
    let tmp = tempfile::tempdir().unwrap();
    let (_alice, mut bob, _downloads) = alice_and_accepting_bob(tmp.path(), &[]);
    let peer = format!("127.0.0.1:{}", bob.port);
    let f = tmp.path().join("imp.txt");
    fs::write(&f, b"not from alice").unwrap();
    let mut imp = Chat::start("alice", &["--ephemeral", "--peer", &peer, "--wait", "1"]);
    imp.send(&format!("/send bob {}", f.display()));
    imp.close_input();
    let offered = bob.expect("offers imp.txt");
    assert!(offered.contains("not accepted by itself"), "{offered}");
    assert_eq!(imp.wait_exit().code(), Some(5), "{:#?}", imp.seen);
    let ended = bob.expect("imp.txt (from");
    assert!(
        ended.contains("(from alice#") && ended.contains("stopped: alice#"),
        "{ended}"
    );
}

/// [`alice_and_accepting_bob`] in `tmp`, and one.bin sent by alice, accepted by itself and
/// received.
fn one_file_accepted_from_alice(tmp: &Path) -> (Chat, Chat, std::path::PathBuf) {
    let (mut alice, mut bob, downloads) = alice_and_accepting_bob(tmp, &[]);
    let f = tmp.join("one.bin");
    fs::write(&f, bytes(3000, 1)).unwrap();
    alice.send(&format!("/send bob {}", f.display()));
    bob.expect("alice offers one.bin (3.0 KB) — accepted (accept_from)");
    bob.expect("received one.bin from alice");
    (alice, bob, downloads)
}

/// A fake peer calling itself alice, added by bob, offers him evil.bin: the fake (kept
/// running while it is held) and bob's offer line.
fn offer_from_another_alice(bob: &mut Chat) -> (common::FakeOfferer, String) {
    let mallory = common::FakeOfferer::start("alice");
    bob.send(&format!("/add 127.0.0.1:{}", mallory.port));
    bob.expect_where("the other alice", |l| {
        l.contains("joined") && l.contains("alice")
    });
    let body = b"not from alice".to_vec();
    let m = manifest(vec![entry("evil.bin", &body)]);
    let offer = common::offer_of("evil.bin", false, &m, mallory.data_port);
    mallory.offer(&offer, m.encode(), body);
    let line = bob.expect("offers evil.bin");
    (mallory, line)
}

/// Bob, in `home`, with `accept_from` set to `entries` and downloads going to `downloads`.
fn bob_accepting_from(home: &Path, downloads: &Path, entries: &str, args: &[&str]) -> Chat {
    let config = home.join("config").join("tailchat");
    fs::create_dir_all(&config).unwrap();
    fs::write(
        config.join("config.toml"),
        format!(
            "download_dir = \"{}\"\naccept_from = [{entries}]\n",
            downloads.display()
        ),
    )
    .unwrap();
    Chat::start_in(home, "bob", args, &[])
}

#[test]
fn accept_from_takes_a_listed_peer_but_not_a_nick_two_peers_go_by() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut alice, mut bob, downloads) = one_file_accepted_from_alice(tmp.path());
    assert_eq!(fs::read(downloads.join("one.bin")).unwrap(), bytes(3000, 1));

    // Another peer calls itself alice: a nick is not proof, so its offer is asked about,
    // under a name that tells the two apart, and nothing is written.
    let (_mallory, line) = offer_from_another_alice(&mut bob);
    assert!(
        line.contains("alice#") && line.contains("not accepted by itself"),
        "{line}"
    );
    let pin = line
        .split("accept_from = [\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no entry suggested: {line}"))
        .to_owned();
    assert!(!downloads.join("evil.bin").exists());

    // The entry suggested names the peer that offered. The real alice, named so, is
    // accepted again while the other one still goes by her nick.
    let rows = bob.peers_rows();
    let alice_id = rows
        .iter()
        .filter_map(|r| r.split_whitespace().nth(1)) // after the time
        .find(|n| n.starts_with("alice#") && !pin.starts_with(n) && !n.starts_with(&pin))
        .unwrap_or_else(|| panic!("no other alice than {pin} in {rows:?}"))
        .to_owned();
    bob.send("/quit");
    bob.wait_exit();
    let mut bob = bob_accepting_from(
        &tmp.path().join("bob"),
        &downloads,
        &format!("\"{alice_id}\""),
        &["--bind", "127.0.0.1"],
    );
    bob.expect_where("alice back", |l| {
        l.contains("alice") && l.contains("joined")
    });
    let g = tmp.path().join("two.bin");
    fs::write(&g, bytes(2000, 2)).unwrap();
    alice.expect("bob joined");
    alice.send(&format!("/send bob {}", g.display()));
    bob.expect("offers two.bin (2.0 KB) — accepted (accept_from)");
    bob.expect("received two.bin");
}

/// `accept_from = ["alice"]` trusts the alice it accepted: when she takes another nick and
/// someone else then calls itself alice, that one's offer is asked about, not taken.
#[test]
fn accept_from_by_nick_does_not_follow_the_nick_to_someone_else() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut alice, mut bob, downloads) = one_file_accepted_from_alice(tmp.path());

    alice.send("/nick ally");
    bob.expect("alice is now ally");
    let (_mallory, line) = offer_from_another_alice(&mut bob);
    assert!(line.contains("not accepted by itself"), "{line}");
    assert!(line.contains("accept_from = [\"alice#"), "{line}");
    assert!(!downloads.join("evil.bin").exists());
}

/// Alice serving at 1 MB/s a connection, so that transfers of a megabyte overlap on loopback,
/// and bob accepting from her (`accept_from`) into the returned downloads folder.
fn slow_alice_and_accepting_bob(tmp: &Path) -> (Chat, Chat, std::path::PathBuf) {
    alice_and_accepting_bob(tmp, &[("TAILCHAT_TEST_SEND_RATE", "1000000")])
}

/// accept_from with a download folder that cannot take the offer: the offer line says why
/// and what to do, rather than "accepted" followed by an error saying it was not.
#[test]
fn accept_from_that_cannot_take_an_offer_says_why_in_the_offer() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut alice, mut bob, downloads) = alice_and_accepting_bob(tmp.path(), &[]);
    fs::write(&downloads, b"a file where the folder should be").unwrap();
    let f = tmp.path().join("one.bin");
    fs::write(&f, bytes(3000, 1)).unwrap();
    alice.send(&format!("/send bob {}", f.display()));
    let line = bob.expect("alice offers one.bin");
    assert!(
        line.contains("accept_from would take it, but")
            && line.contains("is not a folder")
            && line.contains("/accept 1 DIR")
            && line.contains("/decline 1"),
        "{line}"
    );
    let other = tmp.path().join("elsewhere");
    bob.send(&format!("/accept 1 {}", other.display()));
    bob.expect("received one.bin from alice");
    assert_eq!(fs::read(other.join("one.bin")).unwrap(), bytes(3000, 1));
}

/// Alice (with `env`), and bob in `tmp/bob` accepting from her (`accept_from = ["alice"]`)
/// into the returned downloads folder, `tmp/dl`; they have met.
fn alice_and_accepting_bob(tmp: &Path, env: &[(&str, &str)]) -> (Chat, Chat, std::path::PathBuf) {
    let (home, downloads) = (tmp.join("bob"), tmp.join("dl"));
    let mut alice = Chat::start_env("alice", &[], env);
    let peer = format!("127.0.0.1:{}", alice.port);
    let mut bob = bob_accepting_from(
        &home,
        &downloads,
        "\"alice\"",
        &["--bind", "127.0.0.1", "--peer", &peer],
    );
    bob.expect("alice joined");
    alice.expect("bob joined");
    (alice, bob, downloads)
}

/// Six offers accepted at once from one peer: four are fetched at once, the other two wait
/// their turn, saying so, and start as the first ones end; all six arrive.
#[test]
fn accepted_transfers_beyond_four_from_one_peer_wait_their_turn() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut alice, mut bob, downloads) = slow_alice_and_accepting_bob(tmp.path());
    let mut sent = Vec::new();
    for i in 0..6u64 {
        let f = tmp.path().join(format!("f{i}.bin"));
        let content = bytes(1_000_000, 40 + i);
        fs::write(&f, &content).unwrap();
        alice.send(&format!("/send bob {}", f.display()));
        alice.expect(&format!("offered f{i}.bin"));
        sent.push(content);
    }
    let waits = bob.expect("waits its turn: 4 transfers from alice are running");
    assert!(waits.contains("f4.bin from alice"), "{waits}");
    bob.expect("f5.bin from alice waits its turn");
    for i in 0..6 {
        // In whatever order they end.
        let done = format!("received f{i}.bin from alice");
        bob.expect_seen_or(&done, |l| l.contains(&done));
    }
    for (i, content) in sent.iter().enumerate() {
        assert_eq!(
            &fs::read(downloads.join(format!("f{i}.bin"))).unwrap(),
            content
        );
    }
    // Alice was here all along: waiting its turn is not waiting for her.
    bob.drain();
    let away: Vec<&String> = bob.seen.iter().filter(|l| l.contains("not here")).collect();
    assert!(away.is_empty(), "{away:?}");
}

/// Six files of one name accepted together (so that most wait their turn, their `.part` not
/// started): each gets a name of its own at accept, and each received line names the file that
/// holds its bytes. (They shared one `.part`, and a partial file landed under a final name.)
#[test]
fn files_of_one_name_accepted_together_each_land_whole_under_their_own_name() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut alice, mut bob, downloads) = slow_alice_and_accepting_bob(tmp.path());
    // Sizes tell the six apart.
    let sources: Vec<Vec<u8>> = (0..6u64)
        .map(|i| bytes(600_000 + 100_000 * i as usize, 60 + i))
        .collect();
    for (i, content) in sources.iter().enumerate() {
        let dir = tmp.path().join(format!("src{i}"));
        fs::create_dir(&dir).unwrap();
        let f = dir.join("same.bin");
        fs::write(&f, content).unwrap();
        alice.send(&format!("/send bob {}", f.display()));
        alice.expect("offered same.bin");
    }
    let mut dests = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let line = bob.expect_where("an accepted line", |l| l.contains("accepted same.bin"));
        let dest = line.rsplit("→ ").next().unwrap().to_owned();
        assert!(dests.insert(dest), "two transfers into one file: {line}");
    }
    let mut landed = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let line = bob.expect_where("a received line", |l| l.contains("received same.bin"));
        let path = line.rsplit("→ ").next().unwrap().to_owned();
        let got = fs::read(&path).unwrap();
        assert!(
            sources.contains(&got),
            "{path} holds no source whole: {line}"
        );
        assert!(landed.insert(got.len()), "one source twice: {line}");
    }
    let mut names: Vec<String> = fs::read_dir(&downloads)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 6, "six files and no part left: {names:?}");
    assert!(!names.iter().any(|n| n.ends_with(".part")), "{names:?}");
}
