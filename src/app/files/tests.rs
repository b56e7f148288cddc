//! Progress of a running transfer, on a clock of the test's own: interactive users get a line
//! now and then without typing anything (a notice, which the terminal prints above the prompt,
//! so a half-typed line is drawn again below it, never broken); scripts and programs get none.

use super::data_threads::INTERRUPT_GRACE;
use super::*;
use crate::proto::{Config, Identity, Limits};
use crate::transfer::fetch::FetchError;
use crate::transfer::record::{Record, State, StoredOffer};
use crate::transfer::serve::ServeError;
use tokio::sync::mpsc::UnboundedReceiver;

/// For `Files::on_app_data`: no other identity ever went by a nick (the journal's answer
/// where it knows nobody else).
fn no_one_else(_: &str) -> Vec<PeerId> {
    Vec::new()
}

/// A 10 MB file offered by bob (PeerId 2) and accepted by us, not yet moving.
fn accepted(quiet: bool) -> (Files, TransferKey) {
    let mut files = Files::new(FilesSetup::default(), PeerId(1), quiet);
    let offer = Offer {
        id: 7,
        token: [1; 16],
        name: "report.pdf".into(),
        size: 10_000_000,
        files: 1,
        folder: false,
        manifest_hash: [2; 32],
        manifest_len: 50,
        port: 7654,
    };
    let record = Record {
        offerer: 2,
        id: 7,
        outgoing: false,
        peer: 2,
        peer_nick: "bob".into(),
        offer: StoredOffer::from_offer(&offer),
        source: None,
        dest: None,
        files_done: 0,
        bytes_done: 0,
        state: State::Accepted,
        reason: None,
        created_ms: 0,
        finished_ms: None,
        untold: false,
        number: 0,
        first_byte_ms: None,
    };
    let key = TransferKey {
        offerer: PeerId(2),
        id: 7,
    };
    files
        .transfers
        .insert(key, new_transfer(1, record, Some(offer), None));
    (files, key)
}

/// The transfer of [`accepted`] the other way: ours (PeerId 1) to bob, accepted by him.
fn ours_accepted() -> (Files, TransferKey) {
    let (mut files, theirs) = accepted(false);
    let mut t = files.transfers.remove(&theirs).unwrap();
    t.record.offerer = 1;
    t.record.outgoing = true;
    let key = t.record.key();
    files.transfers.insert(key, t);
    (files, key)
}

fn endpoint(now: Instant) -> Endpoint {
    Endpoint::new(
        Config {
            identity: Identity::from_secret([1; 32]),
            nick: "alice".into(),
            port: 7654,
            seed: 1,
            discovery: false,
            session: 1,
            limits: Limits::default(),
        },
        now,
    )
}

/// Feeds progress reports every 100 ms (as the fetch thread sends them) for `seconds`, at
/// 1 MB/s, and returns the notices shown, with when.
fn run(files: &mut Files, key: TransferKey, seconds: u64) -> Vec<(Duration, String)> {
    let start = Instant::now();
    let mut ep = endpoint(start);
    files.on_data_at(&mut ep, DataEvent::Fetching { key, from: 0 }, start);
    let mut shown = Vec::new();
    for tick in 1..=seconds * 10 {
        let at = Duration::from_millis(tick * 100);
        let done = tick * 100_000;
        files.on_data_at(&mut ep, DataEvent::FetchProgress { key, done }, start + at);
        for line in files.take_lines() {
            let Output::Notice(text) = line else {
                panic!("only notices: {line:?}");
            };
            shown.push((at, text));
        }
    }
    shown
}

#[test]
fn a_running_transfer_shows_its_progress_every_few_seconds() {
    let (mut files, key) = accepted(false);
    let shown = run(&mut files, key, 9);
    let times: Vec<Duration> = shown.iter().map(|(at, _)| *at).collect();
    assert_eq!(
        times,
        [Duration::from_secs(5)],
        "the first line after 5 s, then none before 10 s: {shown:?}"
    );
    let line = &shown[0].1;
    assert!(
        line.starts_with("report.pdf from bob: 50% of 10.0 MB, 1.0 MB/s"),
        "{line}"
    );
    assert!(line.ends_with(", 5.0 s left"), "{line}");
}

/// A long transfer does not fill the screen: its lines come further apart as it runs (each
/// gap as long as it had run, at most a minute).
#[test]
fn a_long_transfers_progress_lines_come_further_apart() {
    let (mut files, key) = accepted(false);
    files.transfers.get_mut(&key).unwrap().record.offer.size = 1_000_000_000;
    let shown = run(&mut files, key, 400);
    let times: Vec<u64> = shown.iter().map(|(at, _)| at.as_secs()).collect();
    assert_eq!(
        times,
        [5, 10, 20, 40, 80, 140, 200, 260, 320, 380],
        "{shown:?}"
    );
}

#[test]
fn a_folders_progress_line_names_the_file_it_is_at() {
    use crate::transfer::manifest::{Entry, Manifest};
    let (mut files, key) = accepted(false);
    {
        let t = files.transfers.get_mut(&key).unwrap();
        t.record.offer.folder = true;
        t.record.offer.name = "photos".into();
        let entry = |path: &str, size| Entry {
            path: path.into(),
            size,
            hash: [0; 32],
        };
        // The peer's paths, shown as they will be saved; an empty file is never "at".
        t.manifest = Some(Manifest {
            entries: vec![
                entry("a.jpg", 4_000_000),
                entry("empty", 0),
                entry("2024/../x\u{1b}[2Jb.jpg", 6_000_000),
            ],
            folders: vec![],
        });
    }
    let shown = run(&mut files, key, 5);
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert!(
        shown[0].1.ends_with(" left — file 3 of 3: 2024/x_[2Jb.jpg"),
        "{shown:?}"
    );
}

#[test]
fn scripts_and_programs_get_no_progress_lines() {
    let (mut files, key) = accepted(true);
    assert_eq!(run(&mut files, key, 12), []);
}

#[test]
fn durations_read_as_a_person_would_say_them() {
    let ms = Duration::from_millis;
    assert_eq!(seconds(Duration::from_micros(300)), "under 1 ms");
    assert_eq!(seconds(ms(12)), "12 ms");
    assert_eq!(seconds(ms(99)), "99 ms");
    assert_eq!(seconds(ms(100)), "0.1 s");
    assert_eq!(seconds(ms(4_250)), "4.2 s");
    assert_eq!(seconds(ms(42_000)), "42 s");
    assert_eq!(seconds(ms(125_000)), "2 min 5 s");
}

#[test]
fn the_sender_says_sent_only_when_it_served_something_in_this_run() {
    let done_line = |served: bool| {
        let (mut files, _) = ours_accepted();
        let now = Instant::now();
        let mut ep = endpoint(now);
        if served {
            let ended = DataEvent::ServeEnded {
                id: 7,
                from: 0,
                sent: 10_000_000,
                result: Ok(()),
            };
            files.on_data_at(&mut ep, ended, now);
        }
        let done = control::encode(&Control::Done { id: 7 });
        files.on_app_data(&mut ep, PeerId(2), &done, &no_one_else);
        let lines = notices(files.take_lines());
        assert_eq!(lines.len(), 1, "{lines:?}");
        lines[0].clone()
    };
    assert!(
        done_line(true).starts_with("sent report.pdf to bob (10.0 MB"),
        "{}",
        done_line(true)
    );
    assert_eq!(
        done_line(false),
        "bob says report.pdf arrived whole (10.0 MB); none of it was sent in this run (an earlier run sent it, or they had it)"
    );
}

/// Our data connection to bob for transfer 7, from byte `from`, ended having sent `sent`
/// bytes; `broken` says why it broke, if it did.
fn served(files: &mut Files, ep: &mut Endpoint, from: u64, sent: u64, broken: Option<&str>) {
    let result = broken.map_or(Ok(()), |why| Err(ServeError::Link(why.into())));
    let ended = DataEvent::ServeEnded {
        id: 7,
        from,
        sent,
        result,
    };
    files.on_data_at(ep, ended, Instant::now());
}

/// Bob says transfer 7 arrived whole.
fn done_from_bob(files: &mut Files, ep: &mut Endpoint) {
    files.on_app_data(
        ep,
        PeerId(2),
        &control::encode(&Control::Done { id: 7 }),
        &no_one_else,
    );
}

/// A stalled connection that ends after the one that served the rest (the receiver gave up
/// on it first and came back) does not make an honest "done" look like a lie.
#[tokio::test(start_paused = true)]
async fn a_done_after_a_stale_connection_ends_last_is_sent() {
    let (mut files, key) = ours_accepted();
    let now = Instant::now();
    let mut ep = endpoint(now);
    files.on_data_at(&mut ep, DataEvent::Serving { id: 7, from: 0 }, now);
    let resumed = DataEvent::Serving {
        id: 7,
        from: 4_000_000,
    };
    files.on_data_at(&mut ep, resumed, now);
    served(&mut files, &mut ep, 4_000_000, 6_000_000, None);
    done_from_bob(&mut files, &mut ep);
    served(
        &mut files,
        &mut ep,
        0,
        4_000_000,
        Some("nothing taken for 30 s"),
    );
    let lines = notices(files.take_lines());
    assert!(
        matches!(&lines[..], [l] if l.starts_with("sent report.pdf to bob")),
        "{lines:?}"
    );
    assert_eq!(files.transfers[&key].record.state, State::Done);
}

/// A receiver that says "done" before it was sent everything (a lie, or a bug in another
/// program): the sender does not say it sent what it did not.
#[tokio::test(start_paused = true)]
async fn a_done_before_all_was_sent_says_how_much_was() {
    let (mut files, key) = ours_accepted();
    let now = Instant::now();
    let mut ep = endpoint(now);
    files.on_data_at(&mut ep, DataEvent::Serving { id: 7, from: 0 }, now);
    done_from_bob(&mut files, &mut ep);
    served(
        &mut files,
        &mut ep,
        0,
        1_100_000,
        Some("connection reset by peer"),
    );
    let lines = notices(files.take_lines());
    assert_eq!(
        lines,
        ["bob says report.pdf arrived whole (10.0 MB), but only 1.1 MB of it was sent"]
    );
    assert_eq!(files.transfers[&key].record.state, State::Done);
}

/// What the loop would hand back a moment later (virtual time: the test does not wait).
async fn delivered_later(files: &mut Files, events: &mut UnboundedReceiver<DataEvent>) {
    let now = Instant::now();
    let mut ep = endpoint(now);
    let ev = tokio::time::timeout(Duration::from_secs(60), events.recv())
        .await
        .expect("an event comes back")
        .expect("the channel is open");
    files.on_data_at(&mut ep, ev, now);
}

/// A receiver that comes back without some of what it was sent (files of a folder moved or
/// deleted, or bytes its disk had not taken when it was killed) asks for it again: the
/// sender's line says so, not "connected, from the start".
#[tokio::test(start_paused = true)]
async fn a_folder_fetched_again_before_where_it_stopped_is_not_said_to_start_over() {
    let (mut files, key) = ours_accepted();
    files.transfers.get_mut(&key).unwrap().record.offer.folder = true;
    let mut events = files.take_events();
    let now = Instant::now();
    let mut ep = endpoint(now);
    files.on_data_at(&mut ep, DataEvent::Serving { id: 7, from: 0 }, now);
    files.on_data_at(
        &mut ep,
        DataEvent::ServeProgress {
            id: 7,
            done: 4_000_000,
        },
        now,
    );
    files.on_data_at(
        &mut ep,
        DataEvent::ServeEnded {
            id: 7,
            from: 0,
            sent: 4_000_000,
            result: Err(ServeError::Link("connection reset by peer".into())),
        },
        now,
    );
    delivered_later(&mut files, &mut events).await;
    let _ = files.take_lines();
    files.on_data_at(&mut ep, DataEvent::Serving { id: 7, from: 0 }, now);
    let lines = notices(files.take_lines());
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(
        lines[0],
        "report.pdf/ to bob: going again from 0 B (0%): bob asks again for what it did not keep"
    );
}

#[tokio::test(start_paused = true)]
async fn the_sender_is_told_once_when_its_connection_breaks_and_when_it_goes_again() {
    let (mut files, _) = ours_accepted();
    let mut events = files.take_events();
    let now = Instant::now();
    let mut ep = endpoint(now);
    let serving = |from| DataEvent::Serving { id: 7, from };
    let broken = |from, sent| DataEvent::ServeEnded {
        id: 7,
        from,
        sent,
        result: Err(ServeError::Link("connection reset by peer".into())),
    };
    files.on_data_at(&mut ep, serving(0), now);
    files.on_data_at(
        &mut ep,
        DataEvent::ServeProgress {
            id: 7,
            done: 2_900_000,
        },
        now,
    );
    files.on_data_at(&mut ep, broken(0, 3_000_000), now);
    assert_eq!(
        notices(files.take_lines()),
        [] as [String; 0],
        "not at once"
    );
    delivered_later(&mut files, &mut events).await;
    // A second connection that breaks before any went again: nothing more to say.
    files.on_data_at(&mut ep, serving(2_900_000), now);
    let lines = notices(files.take_lines());
    assert_eq!(
        lines,
        [
            "report.pdf to bob: interrupted at 29% (connection reset by peer); it resumes when bob connects again",
            "report.pdf to bob: resumed at 2.9 MB (29%)",
        ],
        "what was written but not acknowledged is not counted"
    );
    files.on_data_at(&mut ep, broken(2_900_000, 100), now);
    delivered_later(&mut files, &mut events).await;
    files.on_data_at(&mut ep, broken(2_900_000, 100), now);
    tokio::time::sleep(2 * INTERRUPT_GRACE).await;
    while let Ok(ev) = events.try_recv() {
        files.on_data_at(&mut ep, ev, now);
    }
    assert_eq!(
        notices(files.take_lines()).len(),
        1,
        "once per interruption"
    );
}

/// Our transfer 7 to bob, accepted, whose data connection broke after `sent` bytes (`why`):
/// the files, the events the loop would deliver later, a clock and an endpoint.
fn ours_broken(sent: u64, why: &str) -> (Files, UnboundedReceiver<DataEvent>, Instant, Endpoint) {
    let (mut files, _) = ours_accepted();
    let events = files.take_events();
    let now = Instant::now();
    let mut ep = endpoint(now);
    files.on_data_at(&mut ep, DataEvent::Serving { id: 7, from: 0 }, now);
    let broken = DataEvent::ServeEnded {
        id: 7,
        from: 0,
        sent,
        result: Err(ServeError::Link(why.into())),
    };
    files.on_data_at(&mut ep, broken, now);
    (files, events, now, ep)
}

#[tokio::test(start_paused = true)]
async fn a_cancel_overtaken_by_the_broken_connection_is_not_told_as_an_interruption() {
    // Bob cancels: his data connection closes, and his Cancel comes a moment after.
    let (mut files, mut events, now, mut ep) = ours_broken(400_000, "broken pipe");
    let cancel = Control::Cancel {
        id: 7,
        by_offerer: false,
        reason: String::new(),
    };
    files.on_app_data(&mut ep, PeerId(2), &control::encode(&cancel), &no_one_else);
    delivered_later(&mut files, &mut events).await;
    let lines = notices(files.take_lines());
    assert!(
        matches!(&lines[..], [one] if one.starts_with("bob cancelled report.pdf")),
        "{lines:?}"
    );

    // The same on the receiving side: alice (here bob) cancels, and the fetch breaks first.
    let (mut files, key) = accepted(false);
    let mut events = files.take_events();
    files.on_data_at(&mut ep, DataEvent::Fetching { key, from: 0 }, now);
    let ended = DataEvent::FetchEnded {
        key,
        from: 0,
        result: Err(FetchError::Link("closed early".into())),
    };
    files.on_data_at(&mut ep, ended, now);
    let cancel = Control::Cancel {
        id: 7,
        by_offerer: true,
        reason: String::new(),
    };
    files.on_app_data(&mut ep, PeerId(2), &control::encode(&cancel), &no_one_else);
    // Two events come back: the retry and the notice (both find the transfer over).
    delivered_later(&mut files, &mut events).await;
    delivered_later(&mut files, &mut events).await;
    let lines = notices(files.take_lines());
    assert!(
        matches!(&lines[..], [one] if one.starts_with("bob cancelled report.pdf")),
        "{lines:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_receiver_whose_connection_broke_is_told_a_moment_later_once() {
    let (mut files, key) = accepted(false);
    let mut events = files.take_events();
    let now = Instant::now();
    let mut ep = endpoint(now);
    files.on_data_at(&mut ep, DataEvent::Fetching { key, from: 0 }, now);
    files.on_data_at(
        &mut ep,
        DataEvent::FetchProgress {
            key,
            done: 4_000_000,
        },
        now,
    );
    let ended = DataEvent::FetchEnded {
        key,
        from: 0,
        result: Err(FetchError::Link("connection reset by peer".into())),
    };
    files.on_data_at(&mut ep, ended, now);
    assert_eq!(
        notices(files.take_lines()),
        [] as [String; 0],
        "not at once"
    );
    // The retry (bob is not a peer of this endpoint: no attempt starts) and the notice.
    delivered_later(&mut files, &mut events).await;
    delivered_later(&mut files, &mut events).await;
    assert_eq!(
        notices(files.take_lines()),
        ["report.pdf from bob: interrupted at 40% (connection reset by peer); it resumes when bob is reachable"]
    );
}

#[test]
fn a_folder_stopped_half_way_says_which_files_it_kept() {
    let (mut files, key) = accepted(false);
    let dir = tempfile::tempdir().unwrap();
    let top = dir.path().join("photos");
    {
        let t = files.transfers.get_mut(&key).unwrap();
        t.record.offer.folder = true;
        t.record.offer.files = 10;
        t.record.files_done = 4;
        t.record.dest = Some(top.clone());
    }
    let mut ep = endpoint(Instant::now());
    let cancel = Control::Cancel {
        id: 7,
        by_offerer: true,
        reason: String::new(),
    };
    files.on_app_data(&mut ep, PeerId(2), &control::encode(&cancel), &no_one_else);
    let lines = notices(files.take_lines());
    let kept = format!(
        " — the 4 of 10 files that had arrived whole are kept in {}",
        top.display()
    );
    assert!(
        matches!(&lines[..], [l] if l.starts_with("bob cancelled") && l.ends_with(&kept)),
        "{lines:?}"
    );
}

#[test]
fn a_done_that_overtakes_the_end_of_our_serving_waits_for_it() {
    let (mut files, key) = ours_accepted();
    let now = Instant::now();
    let mut ep = endpoint(now);
    files.on_data_at(
        &mut ep,
        DataEvent::Serving {
            id: 7,
            from: 4_000_000,
        },
        now,
    );
    // The receiver read the last byte and said so before our thread reported its end.
    done_from_bob(&mut files, &mut ep);
    assert!(
        notices(files.take_lines()).is_empty(),
        "not before the figures"
    );
    served(&mut files, &mut ep, 4_000_000, 6_000_000, None);
    let lines = notices(files.take_lines());
    assert!(
        matches!(&lines[..], [l] if l.starts_with("sent report.pdf to bob") && l.contains("resumed at 4.0 MB and sent the remaining 6.0 MB")),
        "{lines:?}"
    );
    assert_eq!(files.transfers[&key].record.state, State::Done);
}

/// Bytes the receiver did not keep and asked for again are counted in the sender's end line,
/// as the receiver's counts the files it fetched again.
#[tokio::test(start_paused = true)]
async fn the_senders_end_line_counts_what_it_sent_again() {
    let (mut files, key) = ours_accepted();
    let now = Instant::now();
    let mut ep = endpoint(now);
    files.on_data_at(&mut ep, DataEvent::Serving { id: 7, from: 0 }, now);
    served(&mut files, &mut ep, 0, 5_000_000, Some("reset"));
    // The receiver had kept 4 MB: the fifth goes again, then the rest.
    let lines = the_rest_from_4_mb(&mut files, &mut ep, now);
    assert!(
        lines.iter().any(|l| l.starts_with("sent report.pdf to bob")
            && l.contains("resumed at 4.0 MB and sent the remaining 6.0 MB, and 1.0 MB again that bob did not keep")),
        "{lines:?}"
    );
    assert_eq!(files.transfers[&key].record.state, State::Done);
}

/// Transfer 7 served again from 4 MB to its end, and bob's Done: the notices said.
fn the_rest_from_4_mb(files: &mut Files, ep: &mut Endpoint, now: Instant) -> Vec<String> {
    let resumed = DataEvent::Serving {
        id: 7,
        from: 4_000_000,
    };
    files.on_data_at(ep, resumed, now);
    done_from_bob(files, ep);
    served(files, ep, 4_000_000, 6_000_000, None);
    notices(files.take_lines())
}

/// After a restart of ours, the bytes an earlier run sent that the receiver did not keep are
/// said to go again (as the line when the connection comes says), and counted in the end line.
#[tokio::test(start_paused = true)]
async fn what_an_earlier_run_sent_and_the_receiver_asks_again_is_counted_too() {
    let (mut files, key) = ours_accepted();
    // As restored: an earlier run had sent 5 MB; this run has served nothing yet.
    files.transfers.get_mut(&key).unwrap().record.bytes_done = 5_000_000;
    let now = Instant::now();
    let mut ep = endpoint(now);
    let lines = the_rest_from_4_mb(&mut files, &mut ep, now);
    assert!(
        lines.iter().any(|l| l
            .contains("going again from 4.0 MB (40%): bob asks again for what it did not keep")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("sent report.pdf to bob")
            && l.contains("and 1.0 MB again that bob did not keep")),
        "{lines:?}"
    );
}

/// A name with a control character reads the same on both sides: as the receiver lands it.
#[test]
fn an_offered_name_is_shown_to_its_sender_as_the_receiver_shows_it() {
    let name = "top\u{1b}[7mrev.txt";
    let (mut ours, key) = ours_accepted();
    let ours = ours.transfers.get_mut(&key).unwrap();
    ours.record.offer.name = name.into();
    let (mut theirs, key) = accepted(false);
    let theirs = theirs.transfers.get_mut(&key).unwrap();
    theirs.record.offer.name = name.into();
    assert_eq!(ours.shown_name(), "top_[7mrev.txt");
    assert_eq!(theirs.shown_name(), ours.shown_name());
}

/// The notices among `lines`.
fn notices(lines: Vec<Output>) -> Vec<String> {
    lines
        .into_iter()
        .filter_map(|l| match l {
            Output::Notice(text) => Some(text),
            Output::File(f) if !f.error => Some(f.text),
            _ => None,
        })
        .collect()
}

#[test]
fn an_end_line_the_screen_may_not_have_shown_is_shown_at_the_next_start() {
    let tmp = tempfile::tempdir().unwrap();
    let setup = || FilesSetup {
        data_dir: Some(tmp.path().to_path_buf()),
        ..FilesSetup::default()
    };
    let store = Store::new(tmp.path());
    // The transfer of `accepted`, ours this time, finished while running: its record says it is
    // done and untold until the chat has shown the line.
    let (mut files, key) = ours_accepted();
    files.store = Some(store.clone());
    let mut ep = endpoint(Instant::now());
    let done = control::encode(&Control::Done { id: 7 });
    files.on_app_data(&mut ep, PeerId(2), &done, &no_one_else);
    let untold = |store: &Store| {
        let (records, _) = store.load(now_ms());
        records.iter().filter(|r| r.untold).count()
    };
    assert_eq!(untold(&store), 1, "saved as untold when it ends");
    // The program stops before the line reaches the screen: the next start says it.
    let mut next = Files::new(setup(), PeerId(1), false);
    let lines = next.take_lines();
    // A program gets it as the end of that transfer, as it would have live.
    assert!(
        matches!(&lines[..], [Output::File(f)] if f.event == "sent" && f.direction == "out"),
        "{lines:?}"
    );
    assert_eq!(
        notices(lines),
        ["before tailchat last stopped: sent report.pdf to bob"]
    );
    let told = next.take_untold();
    next.told(&told);
    assert_eq!(untold(&store), 0, "told once shown");
    let mut after = Files::new(setup(), PeerId(1), false);
    assert!(notices(after.take_lines()).is_empty(), "and never again");
    // Shown while running: nothing at the next start.
    files.take_lines();
    let told = files.take_untold();
    assert_eq!(told, [key]);
    files.told(&told);
    assert_eq!(untold(&store), 0);
}

#[test]
fn accepting_into_a_file_says_a_folder_is_needed() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("passwd");
    std::fs::write(&file, b"x").unwrap();
    let (mut files, key) = accepted(false);
    let mut ep = endpoint(Instant::now());
    let err = files.accept(&mut ep, key, Some(file.clone())).unwrap_err();
    assert!(
        err.ends_with(&format!(
            "is not a folder: /accept {} DIR takes the folder to put it in",
            files.transfers[&key].number
        )),
        "{err}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
}

#[test]
fn a_forgotten_peers_transfers_end_with_a_line() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut files, key) = accepted(false);
    files.transfers.get_mut(&key).unwrap().record.dest = Some(tmp.path().join("report.pdf"));
    let mut ep = endpoint(Instant::now());
    files.on_peer_forgotten(&mut ep, PeerId(3), "carol");
    assert!(files.take_lines().is_empty(), "not carol's");
    files.on_peer_forgotten(&mut ep, PeerId(2), "bob");
    let lines = files.take_lines();
    assert!(
        matches!(&lines[..], [Output::File(f)] if f.error && f.event == "failed" && f.text == "report.pdf (from bob) stopped: bob is forgotten, nothing more will come"),
        "{lines:?}"
    );
    assert_eq!(files.transfers[&key].record.state, State::Failed);
}

/// At quit the data connections are stopped first, and a receiver's quit line counts what is
/// on its disk (where it resumes), not the last progress report (the bytes kept moving until
/// the program exited, and the two sides' lines did not agree).
#[test]
fn quitting_stops_the_data_and_counts_what_is_on_disk() {
    let ep = endpoint(Instant::now());
    let dir = tempfile::tempdir().unwrap();
    let (mut files, key) = accepted(false);
    files.store = Some(Store::new(dir.path()));
    let flag = Arc::new(AtomicBool::new(false));
    {
        let t = files.transfers.get_mut(&key).unwrap();
        t.record.dest = Some(dir.path().join("report.pdf"));
        t.record.bytes_done = 2_500_000;
        t.manifest = Some(Manifest {
            entries: vec![crate::transfer::manifest::Entry {
                path: "report.pdf".into(),
                size: 10_000_000,
                hash: [0; 32],
            }],
            folders: vec![],
        });
        t.fetching = Some(Arc::clone(&flag));
    }
    std::fs::write(dir.path().join("report.pdf.part"), vec![0; 7_100_000]).unwrap();
    assert!(files.data_running());
    files.stop_data_for_quit();
    assert!(
        flag.load(std::sync::atomic::Ordering::Acquire),
        "the fetch is told to stop"
    );
    files.transfers.get_mut(&key).unwrap().fetching = None; // (its end, handled)
    assert!(!files.data_running());
    files.settle_for_quit();
    assert_eq!(
        files.left_unfinished(&ep),
        ["report.pdf from bob: 71% received, the rest comes when you are both back"]
    );
}

#[test]
fn what_is_left_unfinished_is_said_at_quit() {
    let ep = endpoint(Instant::now());
    let (mut files, key) = accepted(false);
    files.transfers.get_mut(&key).unwrap().record.bytes_done = 2_500_000;
    // Without storage nothing is kept.
    assert_eq!(
        files.left_unfinished(&ep),
        ["report.pdf (from bob) stopped at 25% and is not kept: storage is off"]
    );
    let dir = tempfile::tempdir().unwrap();
    files.store = Some(Store::new(dir.path()));
    assert_eq!(
        files.left_unfinished(&ep),
        ["report.pdf from bob: 25% received, the rest comes when you are both back"]
    );
    files.transfers.get_mut(&key).unwrap().record.state = State::Offered;
    assert_eq!(
        files.left_unfinished(&ep),
        ["bob's offer of report.pdf was not answered: bob offers it again when you are both back"]
    );
    files.transfers.get_mut(&key).unwrap().record.state = State::Done;
    assert!(
        files.left_unfinished(&ep).is_empty(),
        "a finished one is not"
    );

    let (mut ours, key) = ours_accepted();
    ours.store = Some(Store::new(dir.path()));
    ours.transfers.get_mut(&key).unwrap().record.bytes_done = 9_000_000;
    assert_eq!(
        ours.left_unfinished(&ep),
        ["report.pdf to bob: 90% sent, the rest goes when you are both back"]
    );
    ours.transfers.get_mut(&key).unwrap().record.state = State::Offered;
    assert_eq!(
        ours.left_unfinished(&ep),
        ["report.pdf to bob: not answered yet, offered again when you are both back"]
    );
}

#[test]
fn accepting_from_a_peer_who_is_away_says_it_waits_for_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut files, key) = accepted(false);
    {
        let t = files.transfers.get_mut(&key).unwrap();
        t.record.state = State::Offered;
        // A hostile name: shown as it will be saved.
        t.record.offer.name = "evil\u{1b}[31mred\u{202e}txt.exe".into();
    }
    let mut ep = endpoint(Instant::now());
    files
        .accept(&mut ep, key, Some(tmp.path().to_path_buf()))
        .unwrap();
    let lines = notices(files.take_lines());
    let saved = crate::transfer::names::sanitize_name("evil\u{1b}[31mred\u{202e}txt.exe");
    assert_eq!(
        lines,
        [
            format!(
                "accepted {saved} from bob → {}",
                tmp.path().join(&saved).display()
            ),
            format!("bob is not here now: {saved} comes when bob is back"),
        ]
    );
}

/// The transfer of [`accepted`], changed by `change`, going to `dir` and kept in `dir`'s
/// store; then the files of the next start, with that store.
fn kept_and_restarted(dir: &Path, change: impl FnOnce(&mut Transfer)) -> (Files, TransferKey) {
    let (mut files, key) = accepted(false);
    files.store = Some(Store::new(dir));
    let t = files.transfers.get_mut(&key).unwrap();
    t.record.dest = Some(dir.join("report.pdf"));
    change(t);
    files.save(key);
    let setup = FilesSetup {
        data_dir: Some(dir.to_path_buf()),
        ..FilesSetup::default()
    };
    (Files::new(setup, PeerId(1), false), key)
}

#[test]
fn an_unfinished_transfer_keeps_its_number_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    // The third of its run, accepted: kept on disk.
    let (mut again, key) = kept_and_restarted(dir.path(), |t| {
        t.number = 3;
        t.record.number = 3;
    });
    assert_eq!(again.transfers[&key].number, 3, "/cancel 3 still means it");
    assert_eq!(again.number(), 4, "and no new transfer takes 3");
}

/// After a restart an unfinished transfer shows what is on the disk (its record is saved at
/// each file, not at each byte): 30% of one big file received is 30%, not 0%.
#[test]
fn an_unfinished_transfer_shows_what_is_on_the_disk_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = Manifest {
        entries: vec![manifest::Entry {
            path: "report.pdf".into(),
            size: 10_000_000,
            hash: [0; 32],
        }],
        folders: vec![],
    };
    let store = Store::new(dir.path());
    let key = TransferKey {
        offerer: PeerId(2),
        id: 7,
    };
    let bytes = manifest.encode();
    store.save_manifest(key, &bytes).unwrap();
    std::fs::write(dir.path().join("report.pdf.part"), vec![0u8; 3_000_000]).unwrap();
    let offered = crate::transfer::record::hex(blake3::hash(&bytes).as_bytes());
    let (again, key) = kept_and_restarted(dir.path(), |t| {
        t.record.offer.manifest_hash = offered.clone()
    });
    assert_eq!(again.transfers[&key].percent_done(), 30);
    assert!(again.transfers[&key].manifest.is_some());
    let ep = endpoint(Instant::now());
    assert_eq!(
        again.left_unfinished(&ep),
        ["report.pdf from bob: 30% received, the rest comes when you are both back"]
    );
}

/// A receiver's kept file list that is not the one offered (damaged, or changed) is not used:
/// the next fetch asks the sender for it again.
#[test]
fn a_kept_file_list_other_than_the_offered_one_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let key = TransferKey {
        offerer: PeerId(2),
        id: 7,
    };
    let other = Manifest {
        entries: vec![manifest::Entry {
            path: "other.pdf".into(),
            size: 1,
            hash: [0; 32],
        }],
        folders: vec![],
    };
    Store::new(dir.path())
        .save_manifest(key, &other.encode())
        .unwrap();
    let (again, key) = kept_and_restarted(dir.path(), |_| {});
    assert!(again.transfers[&key].manifest.is_none());
}

/// A quit keeps each unfinished transfer's progress as it is then (records are saved at each
/// file): the next run's /files and lines start from it.
#[test]
fn a_quit_keeps_the_progress_of_unfinished_transfers() {
    let dir = tempfile::tempdir().unwrap();
    let (mut files, key) = ours_accepted();
    files.store = Some(Store::new(dir.path()));
    files.transfers.get_mut(&key).unwrap().record.source = Some(dir.path().join("report.pdf"));
    files.save(key);
    files.transfers.get_mut(&key).unwrap().record.bytes_done = 3_700_000;
    files.quitting(false);
    let (records, _) = Store::new(dir.path()).load(now_ms());
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].bytes_done, 3_700_000);
}

/// An ephemeral run's quit ends its unfinished transfers for good (its peers end them on its
/// Leave): the record is kept as failed, so the next run neither offers nor fetches it again.
#[test]
fn an_ephemeral_quit_ends_unfinished_transfers_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let (mut files, key) = ours_accepted();
    files.store = Some(Store::new(dir.path()));
    files.transfers.get_mut(&key).unwrap().record.source = Some(dir.path().join("report.pdf"));
    files.save(key);
    files.quitting(true);
    let (records, _) = Store::new(dir.path()).load(now_ms());
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].state, State::Failed);
    assert!(!records[0].untold, "its quit line said it already");
}

/// A transfer whose rest no longer fits (it paused for lack of space, or the disk filled while
/// tailchat was stopped) starts paused, with the reason, instead of saying it resumes and then
/// pausing again at its first write; one whose rest fits is not paused.
#[tokio::test]
async fn an_unfinished_transfer_that_cannot_fit_starts_paused_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let free = commands::disk_room(dir.path()).unwrap().0;
    for (size, fits) in [(1_000, true), (free.saturating_mul(4).max(1 << 50), false)] {
        let (mut again, key) = kept_and_restarted(dir.path(), |t| t.record.offer.size = size);
        let lines = again.take_lines();
        let paused: Vec<_> = lines
            .clone()
            .into_iter()
            .filter_map(|l| match l {
                Output::File(f) if f.event == "paused" => Some(f.text),
                _ => None,
            })
            .collect();
        assert_eq!(again.transfers[&key].paused, !fits, "{size} bytes");
        let said_resumes = notices(lines.clone())
            .iter()
            .any(|l| l.contains("resumes when"));
        assert_eq!(said_resumes, fits, "{size} bytes: {lines:?}");
        if fits {
            assert!(paused.is_empty(), "{paused:?}");
            continue;
        }
        assert!(
            matches!(&paused[..], [line] if line.starts_with("still not enough space for report.pdf in ")
                && line.ends_with("free some, and it goes on by itself (or /accept 1 then)")),
            "{paused:?}"
        );
        let ep = endpoint(Instant::now());
        let list = again.list(&ep, Instant::now()).join("\n");
        assert!(list.contains("paused: disk full"), "{list}");
        // It keeps looking for room, through the event loop.
        let mut events = again.take_events();
        assert!(matches!(
            events.try_recv(),
            Ok(DataEvent::SpaceCheck { key: k }) if k == key
        ));
    }
}

#[test]
fn a_transfer_from_an_earlier_run_that_ends_in_this_one_stays_in_the_list() {
    let (mut files, key) = accepted(false);
    let ep = endpoint(Instant::now());
    {
        let t = files.transfers.get_mut(&key).unwrap();
        t.this_run = false;
        t.record.state = State::Done;
        t.record.finished_ms = Some(files.started_ms - 1);
    }
    let listed = |files: &Files| files.list(&ep, Instant::now()).join("\n");
    assert!(
        !listed(&files).contains("report.pdf"),
        "ended before this run"
    );
    files.transfers.get_mut(&key).unwrap().record.finished_ms = Some(now_ms());
    let list = listed(&files);
    assert!(list.contains("report.pdf"), "{list}");
    assert!(
        !list.contains("earlier run"),
        "it ended in this run: {list}"
    );
    {
        let t = files.transfers.get_mut(&key).unwrap();
        t.record.state = State::Accepted;
        t.record.finished_ms = None;
    }
    assert!(listed(&files).contains("interrupted (earlier run)"));
    files.transfers.get_mut(&key).unwrap().started = Some((Instant::now(), 0));
    assert!(
        !listed(&files).contains("earlier run"),
        "it moved in this run"
    );
}

#[test]
fn a_data_connection_that_overtakes_the_accept_says_it_was_accepted() {
    let (mut files, key) = ours_accepted();
    files.transfers.get_mut(&key).unwrap().record.state = State::Offered;
    let now = Instant::now();
    let mut ep = endpoint(now);
    files.on_data_at(&mut ep, DataEvent::Serving { id: 7, from: 0 }, now);
    // The Accept, behind it, says nothing more.
    let accept = Control::Accept { id: 7 };
    files.on_app_data(&mut ep, PeerId(2), &control::encode(&accept), &no_one_else);
    assert_eq!(notices(files.take_lines()), ["bob accepted report.pdf"]);
}

#[test]
fn a_record_that_cannot_be_saved_is_said_once_not_at_every_save() {
    let tmp = tempfile::tempdir().unwrap();
    let not_a_dir = tmp.path().join("file");
    std::fs::write(&not_a_dir, b"x").unwrap();
    let (mut files, key) = accepted(false);
    files.store = Some(Store::new(&not_a_dir));
    files.transfers.get_mut(&key).unwrap().record.dest = Some(tmp.path().join("report.pdf"));
    for _ in 0..3 {
        files.save(key);
    }
    let errors: Vec<_> = files
        .take_lines()
        .into_iter()
        .filter(|l| matches!(l, Output::Error(e) if e.starts_with("cannot keep file transfer")))
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
}

#[test]
fn a_reason_told_to_the_peer_names_no_folder_of_ours() {
    use super::ending::for_peer;
    let dest = std::path::Path::new("/home/bob/Downloads/tailchat/photos");
    assert_eq!(
        for_peer(
            "cannot receive photos/ from alice: cannot write /home/bob/Downloads/tailchat/photos/a/b.jpg.part: no space left on device",
            Some(dest)
        ),
        "cannot receive photos/ from alice: cannot write photos/a/b.jpg.part: no space left on device"
    );
    assert_eq!(for_peer("cancelled", None), "cancelled");
}

#[tokio::test(start_paused = true)]
async fn a_pause_from_the_receiver_is_said_once_instead_of_an_interruption() {
    let (mut files, mut events, now, mut ep) = ours_broken(6_000_000, "connection reset by peer");
    // Its own count was 6 MB; bob has 5 MB on his disk. Sent again (or by a hostile peer,
    // many times): said once.
    let pause = control::encode(&Control::Pause {
        id: 7,
        at: 5_000_000,
        reason: "the disk \u{1b}[2Jis full".into(),
    });
    for _ in 0..3 {
        files.on_app_data(&mut ep, PeerId(2), &pause, &no_one_else);
    }
    delivered_later(&mut files, &mut events).await;
    assert_eq!(
        notices(files.take_lines()),
        ["bob paused report.pdf at 50%: the disk is full — it goes on when bob has made room"]
    );
    assert!(files
        .list(&ep, now)
        .iter()
        .any(|row| row.contains("paused by receiver")));
    // Going again: said, and a later pause is said again.
    let serving = || DataEvent::Serving {
        id: 7,
        from: 5_000_000,
    };
    files.on_data_at(&mut ep, serving(), now);
    assert_eq!(
        notices(files.take_lines()),
        ["report.pdf to bob: resumed at 5.0 MB (50%)"]
    );
    files.on_app_data(&mut ep, PeerId(2), &pause, &no_one_else);
    assert_eq!(notices(files.take_lines()).len(), 1);
    // Paused for another reason (bob cannot reach our data port): bob keeps trying.
    files.on_data_at(&mut ep, serving(), now);
    let _ = files.take_lines();
    let walled = control::encode(&Control::Pause {
        id: 7,
        at: 5_000_000,
        reason: "cannot connect to your TCP port 7654 (connection refused)".into(),
    });
    files.on_app_data(&mut ep, PeerId(2), &walled, &no_one_else);
    assert_eq!(
        notices(files.take_lines()),
        ["bob paused report.pdf at 50%: cannot connect to your TCP port 7654 (connection refused) — bob keeps trying"]
    );
    // Not from bob's peer: ignored.
    let (mut other, _) = ours_accepted();
    other.on_app_data(&mut ep, PeerId(3), &pause, &no_one_else);
    assert!(other.take_lines().is_empty());
}

#[test]
fn accept_from_names_an_identity_only_with_enough_of_its_id() {
    use super::from_peer::pinned;
    assert!(pinned("alice#1d79e0c2"));
    assert!(pinned("alice#1D79E0C2AB12CD34"));
    for weak in [
        "alice#",
        "alice#1d",
        "alice#1d79e0c",
        "#1d79e0c2",
        "alice#1d79e0cz",
        "alice#1d79e0c2ab12cd34ff",
    ] {
        assert!(!pinned(weak), "{weak}");
    }
    // Refused with the config file, not silently ignored (nor taken as any alice).
    let err = check_accept_from("alice#").unwrap_err();
    assert!(err.starts_with("'alice#' names no one — "), "{err}");
    assert_eq!(check_accept_from("bob"), Ok(()));
    assert_eq!(check_accept_from("carol#1d79e0c2"), Ok(()));
    let err = check_accept_from("b ob").unwrap_err();
    assert!(err.starts_with("'b ob' is no peer's nick: "), "{err}");
    assert!(check_accept_from("").is_err());
}

#[test]
fn malformed_file_messages_from_a_peer_are_said_once() {
    let (mut files, _) = accepted(false);
    let mut ep = endpoint(Instant::now());
    for _ in 0..30 {
        files.on_app_data(&mut ep, PeerId(2), &[control::TAG_FILES, 99], &no_one_else);
    }
    assert_eq!(files.take_lines().len(), 1);
    files.on_app_data(&mut ep, PeerId(3), &[control::TAG_FILES, 99], &no_one_else);
    assert_eq!(files.take_lines().len(), 1, "another peer's: said too");
}

#[tokio::test(start_paused = true)]
async fn no_such_offer_is_tried_again_twice_before_the_transfer_fails() {
    use crate::transfer::data::Status;
    let (mut files, key) = accepted(false);
    let _events = files.take_events();
    let now = Instant::now();
    let mut ep = endpoint(now);
    let unknown = || DataEvent::FetchEnded {
        key,
        from: 0,
        result: Err(FetchError::Refused(Status::Unknown)),
    };
    for _ in 0..2 {
        files.on_data_at(&mut ep, unknown(), now);
        assert_eq!(files.transfers[&key].record.state, State::Accepted);
        assert!(files.take_lines().is_empty());
    }
    files.on_data_at(&mut ep, unknown(), now);
    assert_eq!(files.transfers[&key].record.state, State::Failed);
}

/// An offer made again (the offerer came back, maybe on another port) changes only the port:
/// a repeat that says another name or size does not change what was accepted.
#[test]
fn a_repeated_offer_changes_only_its_port() {
    let (mut files, key) = accepted(false);
    let mut ep = endpoint(Instant::now());
    let mut again = files.transfers[&key].offer.clone().unwrap();
    again.port = 9999;
    again.name = "evil.exe".into();
    again.size = 1;
    files.on_app_data(
        &mut ep,
        PeerId(2),
        &control::encode(&Control::Offer(again)),
        &no_one_else,
    );
    let t = &files.transfers[&key];
    let offer = t.offer.as_ref().unwrap();
    assert_eq!((offer.port, t.record.offer.port), (9999, 9999));
    assert_eq!(
        (offer.name.as_str(), offer.size),
        ("report.pdf", 10_000_000)
    );
    assert_eq!(t.shown_name(), "report.pdf");
    assert_eq!(t.record.offer.size, 10_000_000);
}

/// An empty file or folder is 0% while offered and 100% once it arrived; never "99%".
#[test]
fn an_empty_offer_is_not_shown_all_but_done() {
    let (mut files, key) = accepted(false);
    let t = files.transfers.get_mut(&key).unwrap();
    t.record.offer.size = 0;
    t.record.state = State::Offered;
    assert_eq!(t.percent_done(), 0);
    t.record.state = State::Declined;
    assert_eq!(t.percent_done(), 0);
    t.record.state = State::Done;
    assert_eq!(t.percent_done(), 100);
}

#[test]
fn xdg_download_dir_counts_only_when_absolute() {
    let dir = |s: &str| xdg_download_dir(Some(PathBuf::from(s)));
    assert_eq!(dir("/srv/dl"), Some(PathBuf::from("/srv/dl")));
    assert_eq!(dir("dl"), None);
    assert_eq!(dir(""), None);
    assert_eq!(xdg_download_dir(None), None);
}

/// A `/send` whose files cannot be read gives its number back, unless a later transfer has
/// taken one since (numbers are never reused once a later one is out).
#[test]
fn a_failed_send_gives_its_number_back_when_it_is_the_last() {
    for (next, back) in [(2, 1), (3, 3)] {
        let (mut files, key) = ours_accepted();
        files.transfers.get_mut(&key).unwrap().record.state = State::Offered;
        files.next_number = next;
        let mut ep = endpoint(Instant::now());
        let result = Err("cannot read /x: no such file or directory".into());
        files.on_data(&mut ep, DataEvent::Prepared { id: key.id, result });
        assert!(!files.transfers.contains_key(&key));
        assert_eq!(files.number(), back, "next was {next}");
    }
}

/// Failed tries to connect: nothing for the first, then "away" if the sender is silent, or
/// "is TCP blocked?" if it answers chat — after four quick tries or two slow ones (a firewall
/// that drops connections makes each try wait) — each said once; never "away" while it answers.
#[test]
fn failed_connections_say_away_or_blocked_once() {
    use super::data_threads::{connect_failure, Failing};
    let s = Duration::from_secs;
    // The first try fails: nothing yet.
    assert_eq!(
        connect_failure(false, 1, s(0), false, false),
        Failing::Quiet
    );
    assert_eq!(connect_failure(true, 1, s(9), false, false), Failing::Quiet);
    // The sender is silent: away, once.
    assert_eq!(connect_failure(false, 2, s(1), false, false), Failing::Away);
    assert_eq!(
        connect_failure(false, 5, s(30), false, true),
        Failing::Quiet
    );
    // It answers chat: not away; blocked after four quick tries or two slow ones, once.
    assert_eq!(connect_failure(true, 2, s(1), false, false), Failing::Quiet);
    assert_eq!(connect_failure(true, 3, s(3), false, false), Failing::Quiet);
    assert_eq!(
        connect_failure(true, 4, s(3), false, false),
        Failing::Blocked
    );
    assert_eq!(
        connect_failure(true, 2, s(6), false, false),
        Failing::Blocked
    );
    assert_eq!(connect_failure(true, 6, s(60), true, true), Failing::Quiet);
    // Said away earlier, answering now: blocked is still said.
    assert_eq!(
        connect_failure(true, 4, s(9), false, true),
        Failing::Blocked
    );
}

/// A folder stopped half-way: its end line counts the files in place on the disk, also those
/// whose reports from the fetch thread had not come yet.
#[test]
fn a_stopped_folder_counts_the_files_on_the_disk() {
    use crate::transfer::manifest::{Entry, Manifest};
    let dir = tempfile::tempdir().unwrap();
    let top = dir.path().join("photos");
    std::fs::create_dir_all(&top).unwrap();
    let (mut files, key) = accepted(false);
    let entry = |path: &str| Entry {
        path: path.into(),
        size: 1,
        hash: [0; 32],
    };
    {
        let t = files.transfers.get_mut(&key).unwrap();
        t.record.offer.folder = true;
        t.record.offer.files = 3;
        t.record.dest = Some(top.clone());
        t.record.files_done = 0; // no report has come yet
        t.manifest = Some(Manifest {
            entries: vec![
                entry("a.jpg"),
                entry("b.jpg"),
                entry("c.jpg"),
                entry("d.jpg"),
            ],
            folders: vec![],
        });
        t.record.offer.files = 4;
    }
    // a.jpg was received, then moved away by the user: not counted as kept.
    std::fs::write(top.join("b.jpg"), b"b").unwrap();
    std::fs::write(top.join("c.jpg"), b"c").unwrap();
    let mut ep = endpoint(Instant::now());
    files.finish(&mut ep, key, State::Cancelled, None);
    let lines = notices(files.take_lines());
    assert!(
        matches!(&lines[..], [l] if l.ends_with(&format!("the 2 of 4 files that had arrived whole are kept in {}", top.display()))),
        "{lines:?}"
    );
}

/// A `/send` whose files are still being read: `/files` says so, and quitting then says it
/// was not offered (nothing is kept to offer it later).
#[test]
fn a_send_still_reading_is_shown_so_and_not_promised_at_quit() {
    let (mut files, key) = ours_accepted();
    let ep = endpoint(Instant::now());
    {
        let t = files.transfers.get_mut(&key).unwrap();
        t.record.state = State::Offered;
        t.offer = None;
    }
    let list = files.list(&ep, Instant::now()).join("\n");
    assert!(list.contains("reading"), "{list}");
    let dir = tempfile::tempdir().unwrap();
    files.store = Some(Store::new(dir.path()));
    assert_eq!(
        files.left_unfinished(&ep),
        ["report.pdf to bob: not offered (tailchat stopped while reading it) — /send it again"]
    );
}

/// All of it sent and acknowledged by the receiver's TCP, its Done not come yet: "sent,
/// receiver checking" while the receiver is here; "interrupted" once it is not (here: a
/// receiver this endpoint does not know).
#[test]
fn a_sender_whose_receiver_went_after_all_was_sent_shows_interrupted() {
    let (mut files, key) = ours_accepted();
    let ep = endpoint(Instant::now());
    {
        let t = files.transfers.get_mut(&key).unwrap();
        t.started = Some((Instant::now(), 0));
        t.record.bytes_done = t.record.offer.size;
    }
    // Bob is not known to this endpoint, so not here: interrupted.
    let list = files.list(&ep, Instant::now()).join("\n");
    assert!(list.contains("interrupted"), "{list}");
}

/// `/files` has rate and time-left columns only while a transfer moves, so that a list of
/// ended transfers (a folder's size cell is wide) fits 80 columns.
#[test]
fn files_lists_rate_and_time_left_only_while_data_moves() {
    let (mut files, key) = ours_accepted();
    let ep = endpoint(Instant::now());
    files.transfers.get_mut(&key).unwrap().record.state = State::Done;
    let list = files.list(&ep, Instant::now());
    assert!(
        list[0].ends_with("progress") && !list[0].contains("rate"),
        "{list:#?}"
    );
    let now = Instant::now();
    {
        let t = files.transfers.get_mut(&key).unwrap();
        t.record.state = State::Accepted;
        t.serving = 1;
        t.rate.note(now - Duration::from_secs(2), 0);
        t.rate.note(now, 2_000_000);
    }
    let list = files.list(&ep, now);
    assert!(
        list[0].contains(" rate ") && list[0].ends_with("ETA"),
        "{list:#?}"
    );
    assert!(list[1].contains("/s"), "{list:#?}");
}

/// Accepting into a folder we may not write in is refused while the offer can still be taken
/// elsewhere (/proc/1: not writable even for root).
#[test]
fn accepting_into_a_folder_we_cannot_write_keeps_the_offer() {
    let (mut files, key) = accepted(false);
    files.transfers.get_mut(&key).unwrap().record.state = State::Offered;
    let mut ep = endpoint(Instant::now());
    let err = files
        .accept(&mut ep, key, Some(PathBuf::from("/proc/1")))
        .unwrap_err();
    assert!(
        err.starts_with("cannot write in /proc/1: ")
            && err.ends_with("/accept 1 DIR puts it elsewhere"),
        "{err}"
    );
    assert_eq!(files.transfers[&key].record.state, State::Offered);
}

/// `/accept N DIR` makes a new folder in an existing one, but not a whole path that does not
/// exist (a typo): that is refused while the offer can still be taken elsewhere.
#[test]
fn accepting_into_a_mistyped_path_is_refused_and_a_new_folder_is_made() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut files, key) = accepted(false);
    files.transfers.get_mut(&key).unwrap().record.state = State::Offered;
    let mut ep = endpoint(Instant::now());
    let typo = tmp.path().join("Dowloads").join("in");
    let err = files.accept(&mut ep, key, Some(typo.clone())).unwrap_err();
    assert!(
        err.starts_with("no folder ") && err.contains("check the spelling"),
        "{err}"
    );
    assert!(!tmp.path().join("Dowloads").exists(), "nothing made");
    assert_eq!(files.transfers[&key].record.state, State::Offered);
    let new = tmp.path().join("in");
    files.accept(&mut ep, key, Some(new.clone())).unwrap();
    assert!(new.is_dir());
}

/// Space that a transfer accepted already will still fill on the same disk is not counted as
/// free for the next one (two offers that each fit, but not together, were both accepted).
#[test]
fn space_promised_to_accepted_transfers_is_not_free() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut files, key) = accepted(false);
    let mut big = files.transfers[&key].record.clone();
    files.transfers.get_mut(&key).unwrap().record.state = State::Offered;
    let free = nix::sys::statvfs::statvfs(tmp.path())
        .map(|s| s.blocks_available() * s.fragment_size())
        .unwrap();
    big.id = 8;
    big.offer.size = free;
    big.dest = Some(tmp.path().join("big.bin"));
    let big_key = big.key();
    files
        .transfers
        .insert(big_key, new_transfer(2, big, None, None));
    let mut ep = endpoint(Instant::now());
    let err = files
        .accept(&mut ep, key, Some(tmp.path().to_owned()))
        .unwrap_err();
    assert!(err.starts_with("not enough space for report.pdf"), "{err}");
    assert!(err.contains("is for transfers accepted already"), "{err}");
    // Once that one is over, there is room again.
    files.transfers.get_mut(&big_key).unwrap().record.state = State::Done;
    files
        .accept(&mut ep, key, Some(tmp.path().to_owned()))
        .unwrap();
}

/// A download folder set with --download-dir (or download_dir) that is a typo is refused at
/// /accept as one typed there, not made whole; one missing only its last part is made.
#[test]
fn a_mistyped_download_dir_is_refused_at_accept() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut files, key) = accepted(false);
    files.transfers.get_mut(&key).unwrap().record.state = State::Offered;
    files.setup.download_dir = Some(tmp.path().join("nonexistent").join("x"));
    let mut ep = endpoint(Instant::now());
    let err = files.accept(&mut ep, key, None).unwrap_err();
    assert!(
        err.starts_with("your download folder ") && err.contains("check the spelling"),
        "{err}"
    );
    assert!(!tmp.path().join("nonexistent").exists(), "nothing made");
    files.setup.download_dir = Some(tmp.path().join("tailchat"));
    files.accept(&mut ep, key, None).unwrap();
    assert!(tmp.path().join("tailchat").is_dir());
}

/// The rate after a new connection is measured from it, not over the outage before it.
#[test]
fn the_rate_after_a_reconnection_leaves_out_the_outage() {
    let (mut files, key) = accepted(false);
    let start = Instant::now();
    let mut ep = endpoint(start);
    let at = |ms: u64| start + Duration::from_millis(ms);
    files.on_data_at(&mut ep, DataEvent::Fetching { key, from: 0 }, at(0));
    files.on_data_at(
        &mut ep,
        DataEvent::FetchProgress {
            key,
            done: 1_000_000,
        },
        at(1000),
    );
    // Cut at 1 MB; a new connection 1.5 s later (within the rate's window) goes on at 1 MB/s.
    files.on_data_at(
        &mut ep,
        DataEvent::Fetching {
            key,
            from: 1_000_000,
        },
        at(2500),
    );
    files.on_data_at(
        &mut ep,
        DataEvent::FetchProgress {
            key,
            done: 1_500_000,
        },
        at(3000),
    );
    // Half a second of it says too little yet (no rate, no time left).
    assert_eq!(files.transfers[&key].rate.per_sec(), None);
    files.on_data_at(
        &mut ep,
        DataEvent::FetchProgress {
            key,
            done: 2_000_000,
        },
        at(3500),
    );
    let rate = files.transfers[&key].rate.per_sec().unwrap();
    assert!((rate - 1e6).abs() < 1e3, "{rate}");
}

/// `/decline` (or `/accept`) of a transfer already accepted points to `/cancel`.
#[test]
fn declining_an_accepted_transfer_points_to_cancel() {
    let (mut files, _) = accepted(false);
    let mut ep = endpoint(Instant::now());
    let err = files
        .command(&mut ep, crate::ui::command::FileCommand::Decline(Some(1)))
        .unwrap_err();
    assert_eq!(
        err,
        "file transfer 1 is not an offer waiting for you — /cancel 1 stops it"
    );
}

/// Number 0 is no transfer's, whatever carries it (those not listed): `/accept 0` and
/// `/decline 0` say there is none, as `/cancel 0` does.
#[test]
fn transfer_number_0_is_nobodys() {
    let (mut files, key) = accepted(false);
    files.transfers.get_mut(&key).unwrap().number = 0;
    let mut ep = endpoint(Instant::now());
    use crate::ui::command::FileCommand;
    for command in [
        FileCommand::Decline(Some(0)),
        FileCommand::Accept {
            number: Some(0),
            dir: None,
        },
        FileCommand::Cancel(0),
    ] {
        let err = files.command(&mut ep, command).unwrap_err();
        assert_eq!(err, "no file transfer 0 — /files lists them");
    }
}

/// A folder transfer that stops leaves no empty folders behind: those holding a file that
/// arrived whole stay; with none, the transfer's folder goes too.
#[test]
fn a_stopped_folder_leaves_no_empty_folders() {
    let dir = tempfile::tempdir().unwrap();
    for keep_one in [true, false] {
        let top = dir.path().join(format!("photos-{keep_one}"));
        std::fs::create_dir_all(top.join("a/b")).unwrap();
        std::fs::create_dir_all(top.join("c")).unwrap();
        if keep_one {
            std::fs::write(top.join("c/x.jpg"), b"x").unwrap();
        }
        let (mut files, key) = accepted(false);
        {
            let t = files.transfers.get_mut(&key).unwrap();
            t.record.offer.folder = true;
            t.record.dest = Some(top.clone());
        }
        let mut ep = endpoint(Instant::now());
        files.finish(&mut ep, key, State::Cancelled, None);
        assert!(!top.join("a").exists());
        assert_eq!(top.join("c/x.jpg").exists(), keep_one);
        assert_eq!(top.exists(), keep_one);
    }
}

/// A sender whose bytes all went, waiting for the receiver's check, is told once that it is
/// interrupted when the receiver stops answering (its own connection ended well).
#[test]
fn a_sender_waiting_for_the_check_is_told_when_the_receiver_goes() {
    let (mut files, key) = ours_accepted();
    let ep = endpoint(Instant::now());
    {
        let t = files.transfers.get_mut(&key).unwrap();
        t.started = Some((Instant::now(), 0));
        t.record.bytes_done = t.record.offer.size;
    }
    files.on_peer_gone(&ep, PeerId(3), "not answering");
    assert!(files.take_lines().is_empty(), "not carol's");
    files.on_peer_gone(&ep, PeerId(2), "not answering");
    assert_eq!(
        notices(files.take_lines()),
        ["report.pdf to bob: interrupted at 99% (not answering) before bob confirmed it; it resumes when bob connects again"]
    );
    files.on_peer_gone(&ep, PeerId(2), "left");
    assert!(files.take_lines().is_empty(), "said once");
}

/// A `--json` end line carries how long it took and where its last connection resumed.
#[test]
fn an_end_event_says_how_long_and_where_it_resumed() {
    let (mut files, key) = accepted(false);
    let start = Instant::now();
    let mut ep = endpoint(start);
    files.on_data_at(
        &mut ep,
        DataEvent::Fetching {
            key,
            from: 4_000_000,
        },
        start,
    );
    files.on_data(
        &mut ep,
        DataEvent::FetchEnded {
            key,
            from: 4_000_000,
            result: Ok(()),
        },
    );
    let ends: Vec<_> = files
        .take_lines()
        .into_iter()
        .filter_map(|l| match l {
            Output::File(f) if f.event == "received" => Some(f),
            _ => None,
        })
        .collect();
    assert!(
        matches!(&ends[..], [f] if f.resumed_from == Some(4_000_000) && f.took_ms.is_some() && f.files == 1),
        "{ends:?}"
    );
}

/// A peer offering without end: past 100 open offers the rest are refused (said once), other
/// peers still get through, and offers made and withdrawn over and over are remembered 200 at
/// most, so memory and the screen stay bounded.
#[test]
fn a_flood_of_offers_is_refused_past_a_hundred_open_and_forgotten_past_two_hundred() {
    let (mut files, key) = accepted(false); // one of bob's already open
    let mut ep = endpoint(Instant::now());
    let base = files.transfers[&key].offer.clone().unwrap();
    let offer = |id: u64| {
        let mut o = base.clone();
        o.id = id;
        control::encode(&Control::Offer(o))
    };
    for id in 100..20_100 {
        files.on_app_data(&mut ep, PeerId(2), &offer(id), &no_one_else);
    }
    let lines = notices(files.take_lines());
    let said: Vec<&String> = lines.iter().filter(|l| l.contains("open here")).collect();
    assert_eq!(said.len(), 1, "said once: {said:?}");
    assert!(said[0].contains("has 100 offers open here"), "{said:?}");
    assert_eq!(lines.iter().filter(|l| l.contains("/accept")).count(), 99);
    assert_eq!(files.transfers.len(), 100);
    // Another peer's offer is taken.
    files.on_app_data(&mut ep, PeerId(3), &offer(5), &no_one_else);
    assert_eq!(files.transfers.len(), 101);
    // Bob withdraws his open offers and makes new ones, over and over.
    for id in 100..199 {
        let cancel = Control::Cancel {
            id,
            by_offerer: true,
            reason: String::new(),
        };
        files.on_app_data(&mut ep, PeerId(2), &control::encode(&cancel), &no_one_else);
    }
    for id in 30_000..31_000 {
        files.on_app_data(&mut ep, PeerId(2), &offer(id), &no_one_else);
        let cancel = Control::Cancel {
            id,
            by_offerer: true,
            reason: String::new(),
        };
        files.on_app_data(&mut ep, PeerId(2), &control::encode(&cancel), &no_one_else);
    }
    let bobs = files.transfers.values().filter(|t| t.peer() == PeerId(2));
    assert_eq!(
        bobs.count(),
        1 + 200,
        "the accepted one and the last 200 withdrawn"
    );
    assert!(
        files.transfers.contains_key(&key),
        "an accepted one is never forgotten"
    );
}

/// Identities that come and go (scripts that leave for good) leave no records behind: the
/// offers of a forgotten peer that were never taken go, each with its end line; one that was
/// accepted stays, as every transfer of this run does.
#[test]
fn a_forgotten_peers_untaken_offers_are_not_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut files, key) = accepted(false);
    files.transfers.get_mut(&key).unwrap().record.dest = Some(tmp.path().join("report.pdf"));
    let mut ep = endpoint(Instant::now());
    let base = files.transfers[&key].offer.clone().unwrap();
    for id in 100..150 {
        let mut o = base.clone();
        o.id = id;
        files.on_app_data(
            &mut ep,
            PeerId(2),
            &control::encode(&Control::Offer(o.clone())),
            &no_one_else,
        );
        files.on_app_data(
            &mut ep,
            PeerId(3),
            &control::encode(&Control::Offer(o)),
            &no_one_else,
        );
    }
    assert_eq!(files.transfers.len(), 101);
    files.take_lines();
    files.on_peer_forgotten(&mut ep, PeerId(2), "bob");
    let ended = files.take_lines();
    let said =
        |l: &Output| matches!(l, Output::File(f) if f.error && f.text.contains("bob is forgotten"));
    assert_eq!(ended.iter().filter(|l| said(l)).count(), 51, "{ended:?}");
    assert!(files.transfers.contains_key(&key), "the accepted one stays");
    assert_eq!(
        files
            .transfers
            .values()
            .filter(|t| t.peer() == PeerId(2))
            .count(),
        1
    );
    assert_eq!(
        files
            .transfers
            .values()
            .filter(|t| t.peer() == PeerId(3))
            .count(),
        50,
        "not carol's"
    );
}

/// A `/send` still reading its files when tailchat is killed: the next start says it was not
/// offered (once); one that a quit has already spoken of is not said again.
#[test]
fn a_send_cut_by_a_crash_while_reading_is_said_at_the_next_start() {
    let restart = |quit: bool| {
        let dir = tempfile::tempdir().unwrap();
        let (mut files, key) = ours_accepted();
        files.store = Some(Store::new(dir.path()));
        {
            let t = files.transfers.get_mut(&key).unwrap();
            t.record.state = State::Offered;
            t.record.offer.token = crate::transfer::record::hex(&[0; 16]);
            t.offer = None;
        }
        files.save(key);
        if quit {
            let _ = files.left_unfinished(&endpoint(Instant::now()));
            files.quitting(false);
        }
        let setup = || FilesSetup {
            data_dir: Some(dir.path().to_path_buf()),
            ..FilesSetup::default()
        };
        let texts = |lines: Vec<Output>| -> Vec<String> {
            lines
                .into_iter()
                .filter_map(|l| match l {
                    Output::File(f) => Some(f.text),
                    Output::Notice(t) | Output::Error(t) => Some(t),
                    _ => None,
                })
                .collect()
        };
        let mut next = Files::new(setup(), PeerId(1), false);
        let said = texts(next.take_lines());
        let told = next.take_untold();
        next.told(&told);
        let mut third = Files::new(setup(), PeerId(1), false);
        (said, texts(third.take_lines()))
    };
    let (said, again) = restart(false);
    assert_eq!(
        said,
        ["before tailchat last stopped: report.pdf to bob: not offered, its files were still being read — /send it again"]
    );
    assert!(again.is_empty(), "said once: {again:?}");
    assert_eq!(restart(true), (vec![], vec![]), "a quit said it already");
}

/// An accept whose `.part` cannot be made (here: its path would be longer than the system
/// takes) is refused, and nothing of it is kept: the next start does not resume it.
#[test]
fn an_accept_whose_part_cannot_be_made_keeps_nothing() {
    let data = tempfile::tempdir().unwrap();
    let (mut files, key) = accepted(false);
    files.store = Some(Store::new(data.path()));
    files.transfers.get_mut(&key).unwrap().record.state = State::Offered;
    // Folders of 200 bytes down to just under 4096 bytes in all: `report.pdf.part` inside
    // goes over.
    let mut dir = data.path().join("dl");
    while dir.as_os_str().len() < 4096 - 220 {
        dir.push("d".repeat(200));
    }
    let pad = 4096 - 8 - dir.as_os_str().len();
    // Made, as a folder typed with /accept must be but for its last part.
    std::fs::create_dir_all(&dir).unwrap();
    dir.push("e".repeat(pad));
    let mut ep = endpoint(Instant::now());
    let err = files.accept(&mut ep, key, Some(dir)).unwrap_err();
    assert!(err.starts_with("cannot create "), "{err}");
    assert_eq!(files.transfers[&key].record.state, State::Offered);
    let (records, _) = Store::new(data.path()).load(now_ms());
    assert!(records.is_empty(), "kept: {records:?}");
}

/// A progress line due just after a resumed part was read back: bytes arrive, but too few
/// moments have been measured for a rate, so none is given (not "0 B/s", nor a time left).
#[test]
fn a_progress_line_without_a_rate_yet_gives_none() {
    let (mut files, key) = accepted(false);
    let start = Instant::now();
    let mut ep = endpoint(start);
    let at = |ms: u64| start + Duration::from_millis(ms);
    files.on_data_at(
        &mut ep,
        DataEvent::Fetching {
            key,
            from: 2_000_000,
        },
        at(0),
    );
    // The part was read back for 4.6 s; then bytes arrive (the fetch says so again).
    files.on_data_at(
        &mut ep,
        DataEvent::Fetching {
            key,
            from: 2_000_000,
        },
        at(4600),
    );
    let mut shown = Vec::new();
    for (i, ms) in (4700..=5400).step_by(100).enumerate() {
        let done = 2_000_000 + (i as u64 + 1) * 200_000;
        files.on_data_at(&mut ep, DataEvent::FetchProgress { key, done }, at(ms));
        shown.extend(files.take_lines());
    }
    let [Output::Notice(line)] = shown.as_slice() else {
        panic!("one progress line: {shown:?}");
    };
    assert_eq!(line, "report.pdf from bob: 28% of 10.0 MB", "{shown:?}");
}
