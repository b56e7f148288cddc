//! Tests of the journal: framing, damage (torn tails, corrupt records, foreign files), the
//! restart summary and history queries, all on real files in temporary directories.

use super::frame::{read_frame, scan, FRAME_HEADER};
use super::*;
use chrono::{Local, TimeZone};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;

const ALICE: PeerId = PeerId(0xa11ce);
const BOB: PeerId = PeerId(0xb0b);
const CAROL: PeerId = PeerId(0xca201);

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn said(id: u64, direct_to: Option<PeerId>, recipients: &[PeerId], text: &str) -> Record {
    Record::Said {
        at_ms: 1_700_000_000_000 + id as i64,
        id,
        nick: "me".into(),
        direct_to,
        recipients: recipients.to_vec(),
        text: text.into(),
        action: false,
    }
}

fn heard(from: PeerId, nick: &str, id: u64, direct: bool, text: &str) -> Record {
    Record::Heard {
        at_ms: 1_700_000_100_000 + id as i64,
        from,
        nick: nick.into(),
        id,
        direct,
        text: text.into(),
        action: false,
        written_ms: 1_700_000_100_000 + id as i64,
    }
}

fn peer(id: PeerId, nick: &str, addrs: &[&str], manual: bool) -> Record {
    Record::Peer {
        id,
        nick: nick.into(),
        addrs: addrs.iter().map(|a| addr(a)).collect(),
        manual,
        heard_ms: 0,
        key: None,
    }
}

/// One record of every kind, with the awkward values (negative time, empty and non-ASCII
/// text, IPv6 with a scope, extreme ids).
fn every_kind() -> Vec<Record> {
    vec![
        said(1, None, &[ALICE, BOB], "hello all"),
        Record::Said {
            at_ms: -5,
            id: u64::MAX,
            nick: "".into(),
            direct_to: Some(BOB),
            recipients: vec![BOB],
            text: "ünïcødé ✓ \u{1b}[31m".into(),
            action: false,
        },
        heard(ALICE, "alice", 7, false, ""),
        heard(PeerId(u64::MAX), "x", 0, true, "psst"),
        Record::Delivered { to: ALICE, id: 1 },
        Record::Dropped { to: BOB, id: 2 },
        peer(
            CAROL,
            "carol",
            &["192.0.2.1:7654", "[fe80::1%2]:7654"],
            true,
        ),
        peer(BOB, "bob", &[], false),
    ]
}

/// A new journal in a temporary directory holding `records` (synced), closed again.
fn journal_with(records: &[Record]) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(JOURNAL_FILE);
    let (mut journal, restored) = Journal::open(&path).unwrap();
    assert_eq!(
        restored,
        Restored {
            next_msg: 1,
            ..Restored::default()
        }
    );
    for r in records {
        journal.append(r).unwrap();
    }
    journal.sync().unwrap();
    (tmp, path)
}

/// The records the tolerant reader finds in the file at `path`.
fn records_in(path: &Path) -> Vec<Record> {
    scan(&fs::read(path).unwrap())
}

/// Byte ranges `[start, end)` of each record in a file without damage.
fn frame_bounds(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut bounds = Vec::new();
    let mut pos = HEADER.len();
    while pos < bytes.len() {
        let (_, end) = read_frame(bytes, pos).unwrap();
        bounds.push((pos, end));
        pos = end;
    }
    bounds
}

#[test]
fn round_trip_of_every_kind() {
    let records = every_kind();
    let (_tmp, path) = journal_with(&records);
    assert_eq!(records_in(&path), records);
    let (_journal, restored) = Journal::open(&path).unwrap();
    assert_eq!(restored.records, records.len());
    assert!(restored.warnings.is_empty(), "{:?}", restored.warnings);
}

#[test]
fn new_file_has_header_and_mode_0600() {
    let (_tmp, path) = journal_with(&[]);
    assert_eq!(fs::read(&path).unwrap(), HEADER);
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn frame_layout_is_as_documented() {
    let record = Record::Delivered { to: BOB, id: 3 };
    let (_tmp, path) = journal_with(std::slice::from_ref(&record));
    let bytes = fs::read(&path).unwrap();
    let payload = postcard::to_allocvec(&record).unwrap();
    let mut want = b"TCJ1\xC3\x7A".to_vec();
    want.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    want.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    want.extend_from_slice(&payload);
    assert_eq!(bytes, want);
}

#[test]
fn appends_after_reopen_follow_earlier_records() {
    let (_tmp, path) = journal_with(&[said(1, None, &[ALICE], "one")]);
    {
        let (mut journal, restored) = Journal::open(&path).unwrap();
        assert_eq!(restored.next_msg, 2);
        journal.append(&said(2, None, &[ALICE], "two")).unwrap();
        // Dropped without sync: the buffer is still written out.
    }
    let texts: Vec<_> = records_in(&path)
        .into_iter()
        .map(|r| match r {
            Record::Said { text, .. } => text,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(texts, ["one", "two"]);
}

#[test]
fn restart_summary() {
    let records = [
        peer(ALICE, "alice", &["192.0.2.1:7654"], false),
        said(1, None, &[ALICE, BOB], "to all"),
        said(2, Some(BOB), &[BOB], "to bob"),
        heard(ALICE, "alice", 5, false, "hi"),
        heard(ALICE, "alice", 4, false, "late duplicate id"),
        heard(BOB, "bob", 1, true, "psst"),
        said(3, None, &[ALICE, BOB], "again"),
        Record::Delivered { to: ALICE, id: 1 },
        Record::Dropped { to: BOB, id: 2 },
        Record::Delivered { to: ALICE, id: 3 },
        // Reports about messages that are not in the outbox change nothing.
        Record::Delivered { to: CAROL, id: 3 },
        Record::Delivered { to: BOB, id: 99 },
        peer(ALICE, "alicia", &["192.0.2.9:7000"], true),
    ];
    let (_tmp, path) = journal_with(&records);
    let (_journal, restored) = Journal::open(&path).unwrap();
    let outgoing = |id: u64, direct: bool, text: &str| Outgoing {
        id,
        direct,
        text: text.into(),
        at_ms: 1_700_000_000_000 + id as i64,
        action: false,
    };
    assert_eq!(
        restored,
        Restored {
            next_msg: 4,
            delivered_from: BTreeMap::from([(ALICE, 5), (BOB, 1)]),
            outbox: BTreeMap::from([(
                BOB,
                vec![outgoing(1, false, "to all"), outgoing(3, false, "again")]
            )]),
            unshown: Vec::new(),
            last_session: 0,
            last_nick: Some("me".into()),
            peers: BTreeMap::from([(
                ALICE,
                PeerRecord {
                    nick: "alicia".into(),
                    addrs: vec![addr("192.0.2.9:7000")],
                    manual: true,
                    // Its latest message arrived then.
                    heard_ms: 1_700_000_100_005,
                    key: None,
                }
            )]),
            warnings: vec![],
            records: records.len(),
            away: None,
            forgotten: Default::default(),
        }
    );
}

#[test]
fn outbox_keeps_id_order_and_direct_flag() {
    let (_tmp, path) = journal_with(&[said(2, Some(BOB), &[BOB], "b"), said(1, None, &[BOB], "a")]);
    let (_journal, restored) = Journal::open(&path).unwrap();
    let pending: Vec<_> = restored.outbox[&BOB]
        .iter()
        .map(|o| (o.id, o.direct))
        .collect();
    assert_eq!(pending, [(1, false), (2, true)]);
    assert_eq!(restored.next_msg, 3);
}

#[test]
fn torn_tail_at_every_offset_is_truncated_and_appendable() {
    let records = every_kind();
    let (_tmp, path) = journal_with(&records);
    let whole = fs::read(&path).unwrap();
    let &(last_start, last_end) = frame_bounds(&whole).last().unwrap();
    assert_eq!(last_end, whole.len());
    for cut in last_start + 1..last_end {
        fs::write(&path, &whole[..cut]).unwrap();
        let (mut journal, restored) = Journal::open(&path).unwrap();
        assert_eq!(restored.records, records.len() - 1, "cut at {cut}");
        assert_eq!(restored.warnings.len(), 1, "cut at {cut}");
        let warning = &restored.warnings[0];
        assert!(
            warning.starts_with(&format!(
                "journal {}: offset {last_start}: torn tail, incomplete record",
                path.display()
            )),
            "{warning}"
        );
        assert!(
            warning.ends_with(&format!(
                "truncated the file to {last_start} bytes, after the last good record"
            )),
            "{warning}"
        );
        assert_eq!(fs::metadata(&path).unwrap().len(), last_start as u64);

        let extra = heard(CAROL, "carol", 1, false, "after the crash");
        journal.append(&extra).unwrap();
        journal.sync().unwrap();
        drop(journal);
        let mut want = records[..records.len() - 1].to_vec();
        want.push(extra);
        assert_eq!(records_in(&path), want, "cut at {cut}");
        let (_journal, restored) = Journal::open(&path).unwrap();
        assert!(restored.warnings.is_empty(), "{:?}", restored.warnings);
    }
}

#[test]
fn cut_at_a_record_boundary_is_no_damage() {
    let records = every_kind();
    let (_tmp, path) = journal_with(&records);
    let whole = fs::read(&path).unwrap();
    let &(last_start, _) = frame_bounds(&whole).last().unwrap();
    fs::write(&path, &whole[..last_start]).unwrap();
    let (_journal, restored) = Journal::open(&path).unwrap();
    assert_eq!(restored.records, records.len() - 1);
    assert!(restored.warnings.is_empty(), "{:?}", restored.warnings);
}

/// A journal whose header alone is damaged (its records follow it whole) is read as usual,
/// its header written again, and said: the intact records are not hidden behind four bytes.
#[test]
fn a_damaged_header_alone_is_repaired_and_every_record_read() {
    let records = every_kind();
    let (_tmp, path) = journal_with(&records);
    let mut bytes = fs::read(&path).unwrap();
    for b in &mut bytes[..HEADER.len()] {
        *b ^= 0xff;
    }
    fs::write(&path, &bytes).unwrap();
    // Read-only, it is read all the same (and left as it is).
    let (_journal, restored) = Journal::open_read_only(&path).unwrap();
    assert_eq!(restored.records, records.len());
    assert_eq!(fs::read(&path).unwrap(), bytes);
    let (_journal, restored) = Journal::open(&path).unwrap();
    assert_eq!(restored.records, records.len());
    assert!(
        restored
            .warnings
            .iter()
            .any(|w| w.contains("first 4 bytes were damaged")),
        "{:?}",
        restored.warnings
    );
    assert_eq!(&fs::read(&path).unwrap()[..HEADER.len()], HEADER);
    assert_eq!(records_in(&path), records);
}

/// Damages the third record of [`every_kind`] with `damage(bytes, start, end)` and checks that
/// exactly that record is lost, with one warning naming its offset, and nothing is truncated.
fn check_middle_damage(damage: impl Fn(&mut Vec<u8>, usize, usize), why: &str) {
    let records = every_kind();
    let (_tmp, path) = journal_with(&records);
    let mut bytes = fs::read(&path).unwrap();
    let (start, end) = frame_bounds(&bytes)[2];
    damage(&mut bytes, start, end);
    fs::write(&path, &bytes).unwrap();

    let (_journal, restored) = Journal::open(&path).unwrap();
    assert_eq!(
        restored.warnings,
        [format!(
            "journal {}: offset {start}: {why}; skipped {} bytes to the next good record at \
             offset {end}",
            path.display(),
            end - start
        )]
    );
    let mut want = records.clone();
    want.remove(2);
    assert_eq!(records_in(&path), want);
    assert_eq!(restored.records, want.len());
    assert_eq!(fs::read(&path).unwrap(), bytes, "nothing truncated");
}

#[test]
fn flipped_payload_byte_skips_only_that_record() {
    check_middle_damage(|b, _, end| b[end - 1] ^= 0x40, "checksum mismatch");
}

#[test]
fn flipped_checksum_skips_only_that_record() {
    check_middle_damage(|b, start, _| b[start + 7] ^= 0x01, "checksum mismatch");
}

#[test]
fn huge_length_skips_only_that_record() {
    check_middle_damage(
        |b, start, _| b[start + 2..start + 6].copy_from_slice(&u32::MAX.to_le_bytes()),
        "length 4294967295 is over the limit of 1048576 bytes",
    );
}

#[test]
fn length_past_the_end_skips_only_that_record() {
    let records = every_kind();
    let (_tmp, path) = journal_with(&records);
    let remaining =
        fs::metadata(&path).unwrap().len() as usize - frame_bounds(&fs::read(&path).unwrap())[2].0;
    let length = (remaining - FRAME_HEADER + 1) as u32;
    check_middle_damage(
        |b, start, _| b[start + 2..start + 6].copy_from_slice(&length.to_le_bytes()),
        &format!(
            "incomplete record ({remaining} of {} bytes before the end of the file)",
            remaining + 1
        ),
    );
}

#[test]
fn shorter_length_skips_only_that_record() {
    check_middle_damage(
        |b, start, _| b[start + 2] = b[start + 2].wrapping_sub(1),
        "checksum mismatch",
    );
}

#[test]
fn broken_marker_skips_only_that_record() {
    check_middle_damage(|b, start, _| b[start] = 0, "no record marker");
}

#[test]
fn garbage_between_records_is_skipped() {
    let records = every_kind();
    let (_tmp, path) = journal_with(&records);
    let mut bytes = fs::read(&path).unwrap();
    let (start, _) = frame_bounds(&bytes)[3];
    // Includes a false marker followed by nonsense.
    let garbage = [0u8, 0xC3, 0x7A, 0xff, 0, 0, 0, 1, 2, 3, 4, 0xC3];
    bytes.splice(start..start, garbage);
    fs::write(&path, &bytes).unwrap();
    let (_journal, restored) = Journal::open(&path).unwrap();
    assert_eq!(restored.warnings.len(), 1, "{:?}", restored.warnings);
    assert_eq!(records_in(&path), records);
}

/// A whole frame (right length and checksum) around a payload that is not a `Record`: what a
/// newer version's new kind of record looks like to this one.
fn foreign_frame() -> Vec<u8> {
    // Variant index 200 (postcard varint 0xC8 0x01) does not exist.
    let payload = [0xC8, 0x01, 0x00];
    let mut frame = MARKER.to_vec();
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    frame.extend_from_slice(&payload);
    frame
}

#[test]
fn undecodable_whole_record_is_skipped_and_kept() {
    let records = every_kind();
    let (_tmp, path) = journal_with(&records);
    let mut bytes = fs::read(&path).unwrap();
    let (start, _) = frame_bounds(&bytes)[1];
    bytes.splice(start..start, foreign_frame());
    // Also last in the file: it must not be taken for a torn tail and truncated.
    bytes.extend_from_slice(&foreign_frame());
    fs::write(&path, &bytes).unwrap();

    let (_journal, restored) = Journal::open(&path).unwrap();
    assert_eq!(restored.records, records.len());
    assert_eq!(restored.warnings.len(), 2, "{:?}", restored.warnings);
    assert!(
        restored.warnings[0].starts_with(&format!(
            "journal {}: offset {start}: skipped a record this version cannot decode",
            path.display()
        )),
        "{:?}",
        restored.warnings
    );
    assert_eq!(fs::read(&path).unwrap(), bytes, "nothing truncated");
}

#[test]
fn unreadable_tail_is_truncated() {
    let records = every_kind();
    let (_tmp, path) = journal_with(&records);
    let mut bytes = fs::read(&path).unwrap();
    let good_len = bytes.len();
    // As a crash can leave it: the file grew, but the data never reached the disk.
    bytes.extend_from_slice(&[0u8; 100]);
    fs::write(&path, &bytes).unwrap();
    let (_journal, restored) = Journal::open(&path).unwrap();
    assert_eq!(restored.records, records.len());
    assert_eq!(
        restored.warnings,
        [format!(
            "journal {}: offset {good_len}: no record marker, and no good record in the 100 \
             bytes from there to the end; truncated the file to {good_len} bytes, after the \
             last good record",
            path.display()
        )]
    );
    assert_eq!(fs::metadata(&path).unwrap().len(), good_len as u64);
}

#[test]
fn foreign_file_is_an_error_and_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(JOURNAL_FILE);
    let contents = b"Dear diary, today I chose a bad --data-dir.\n";
    fs::write(&path, contents).unwrap();
    let err = Journal::open(&path).unwrap_err();
    assert!(matches!(err, JournalError::NotAJournal { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: not a tailchat journal (it does not start with \"TCJ1\"); it was left \
             untouched — move it away, or choose another --data-dir",
            path.display()
        )
    );
    assert_eq!(fs::read(&path).unwrap(), contents);
    // A folder where the journal should be is named as one.
    let folder = tmp.path().join("other");
    fs::create_dir(folder.join("")).unwrap();
    let err = Journal::open_read_only(&folder).unwrap_err();
    assert!(
        err.to_string()
            .contains("other is a folder, not tailchat's journal file"),
        "{err}"
    );
}

#[test]
fn empty_or_header_prefix_file_becomes_a_journal() {
    for contents in [&b""[..], b"TC"] {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(JOURNAL_FILE);
        fs::write(&path, contents).unwrap();
        let (mut journal, restored) = Journal::open(&path).unwrap();
        assert!(restored.warnings.is_empty());
        journal
            .append(&Record::Delivered { to: BOB, id: 1 })
            .unwrap();
        journal.sync().unwrap();
        assert_eq!(records_in(&path), [Record::Delivered { to: BOB, id: 1 }]);
    }
}

#[test]
fn second_opener_is_refused() {
    let (_tmp, path) = journal_with(&[]);
    let (_journal, _) = Journal::open(&path).unwrap();
    let err = Journal::open(&path).unwrap_err();
    assert!(matches!(err, JournalError::Locked { .. }), "{err:?}");
    assert!(
        err.to_string().contains("in use by another tailchat"),
        "{err}"
    );
}

#[test]
fn unopenable_path_names_it() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("missing").join(JOURNAL_FILE);
    let err = Journal::open(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot open journal {}: no such file or directory",
            path.display()
        )
    );
}

#[test]
fn oversized_record_is_refused_and_nothing_written() {
    let (_tmp, path) = journal_with(&[]);
    let (mut journal, _) = Journal::open(&path).unwrap();
    let big = said(1, None, &[BOB], &"x".repeat(MAX_PAYLOAD));
    let err = journal.append(&big).unwrap_err();
    assert!(
        matches!(err, JournalError::RecordTooLarge { .. }),
        "{err:?}"
    );
    journal.sync().unwrap();
    assert_eq!(fs::read(&path).unwrap(), HEADER);
}

/// A conversation with group and direct messages, a peer that changed nick (bob → robert) and
/// a nick that moved to a new id (carol lost her identity and came back as a new peer).
fn conversation() -> Vec<Record> {
    const CAROL2: PeerId = PeerId(0xca202);
    vec![
        peer(BOB, "bob", &["192.0.2.2:7654"], false),
        peer(CAROL, "carol", &["192.0.2.3:7654"], false),
        said(1, None, &[BOB, CAROL], "hello all"),
        heard(BOB, "bob", 1, false, "hi from bob"),
        said(2, Some(BOB), &[BOB], "psst bob"),
        heard(BOB, "bob", 2, true, "psst back"),
        heard(CAROL, "carol", 1, true, "carol here, privately"),
        peer(BOB, "robert", &["192.0.2.2:7654"], false),
        said(3, Some(BOB), &[BOB], "hi robert"),
        heard(BOB, "robert", 3, false, "robert to all"),
        Record::Delivered { to: BOB, id: 3 },
        peer(CAROL2, "carol", &["192.0.2.4:7654"], false),
        said(4, Some(CAROL2), &[CAROL2], "welcome back carol"),
        said(5, Some(PeerId(0xdead)), &[PeerId(0xdead)], "to a stranger"),
    ]
}

/// `(speaker, to, direct, text)` of each history line, for compact assertions.
fn summary(lines: &[HistoryLine]) -> Vec<(&str, Option<&str>, bool, &str)> {
    lines
        .iter()
        .map(|l| (l.nick.as_str(), l.to.as_deref(), l.direct, l.text.as_str()))
        .collect()
}

#[test]
fn history_of_the_group() {
    let (_tmp, path) = journal_with(&conversation());
    let (journal, _) = Journal::open(&path).unwrap();
    let (lines, warnings) = journal.history(&HistoryFilter::Group, 100).unwrap();
    assert!(warnings.is_empty());
    assert_eq!(
        summary(&lines),
        [
            ("me", None, false, "hello all"),
            ("bob", None, false, "hi from bob"),
            ("robert", None, false, "robert to all"),
        ]
    );
    assert_eq!(lines[0].at_ms, 1_700_000_000_001);
}

#[test]
fn history_of_a_direct_conversation_follows_nick_changes() {
    let (_tmp, path) = journal_with(&conversation());
    let (journal, _) = Journal::open(&path).unwrap();
    let direct = |nick: &str| HistoryFilter::Direct { nick: nick.into() };

    // bob's id also went by robert: one conversation, under either name, each message naming
    // the recipient as it was called then.
    let bob = [
        ("me", Some("bob"), true, "psst bob"),
        ("bob", None, true, "psst back"),
        ("me", Some("robert"), true, "hi robert"),
    ];
    assert_eq!(
        summary(&journal.history(&direct("bob"), 100).unwrap().0),
        bob
    );
    assert_eq!(
        summary(&journal.history(&direct("robert"), 100).unwrap().0),
        bob
    );

    // Both ids that were carol.
    assert_eq!(
        summary(&journal.history(&direct("carol"), 100).unwrap().0),
        [
            ("carol", None, true, "carol here, privately"),
            ("me", Some("carol"), true, "welcome back carol"),
        ]
    );
    assert!(journal
        .history(&direct("nobody"), 100)
        .unwrap()
        .0
        .is_empty());

    // One of the two carols alone, by its id (`/history carol#…`).
    let second = HistoryFilter::Peer {
        id: PeerId(0xca202),
    };
    assert_eq!(
        summary(&journal.history(&second, 100).unwrap().0),
        [("me", Some("carol"), true, "welcome back carol")]
    );
}

#[test]
fn history_recipient_without_a_nick_yet_is_its_id() {
    // The peer's nick is only learnt after our message to it.
    let stranger = PeerId(0xdead);
    let records = [
        said(5, Some(stranger), &[stranger], "hi"),
        peer(stranger, "x", &[], true),
    ];
    let (_tmp, path) = journal_with(&records);
    let (journal, _) = Journal::open(&path).unwrap();
    let (lines, _) = journal
        .history(&HistoryFilter::Direct { nick: "x".into() }, 10)
        .unwrap();
    assert_eq!(
        summary(&lines),
        [("me", Some("000000000000dead"), true, "hi")]
    );
}

#[test]
fn history_keeps_the_last_n() {
    let (_tmp, path) = journal_with(&conversation());
    let (journal, _) = Journal::open(&path).unwrap();
    let (lines, _) = journal.history(&HistoryFilter::Group, 2).unwrap();
    assert_eq!(
        summary(&lines),
        [
            ("bob", None, false, "hi from bob"),
            ("robert", None, false, "robert to all"),
        ]
    );
    assert!(journal
        .history(&HistoryFilter::Group, 0)
        .unwrap()
        .0
        .is_empty());
}

/// A journal whose records were written twice (damage can repeat a stretch of a file) shows
/// each message once, however far apart the copies are.
#[test]
fn history_shows_a_message_recorded_twice_once() {
    let mut records = conversation();
    // Enough to span several checkpoints, so copies fall in different stretches.
    let filler = "x".repeat(200);
    records.extend((10..1010).map(|id| heard(BOB, "bob", id, false, &filler)));
    let (_tmp, path) = journal_with(&records);
    let mut bytes = fs::read(&path).unwrap();
    let body = bytes[HEADER.len()..].to_vec();
    bytes.extend_from_slice(&body);
    fs::write(&path, &bytes).unwrap();
    let (journal, _) = Journal::open(&path).unwrap();
    let (lines, _) = journal.history(&HistoryFilter::Group, 5000).unwrap();
    assert_eq!(lines.len(), 3 + 1000);
    assert_eq!(
        summary(&lines[..3]),
        [
            ("me", None, false, "hello all"),
            ("bob", None, false, "hi from bob"),
            ("robert", None, false, "robert to all"),
        ]
    );
    let (last, _) = journal.history(&HistoryFilter::Group, 10).unwrap();
    assert_eq!(last.len(), 10);
    let direct = HistoryFilter::Direct { nick: "bob".into() };
    assert_eq!(journal.history(&direct, 100).unwrap().0.len(), 3);
}

#[test]
fn history_reports_damage_without_repairing() {
    let (_tmp, path) = journal_with(&conversation());
    let (journal, _) = Journal::open(&path).unwrap();
    let mut bytes = fs::read(&path).unwrap();
    let (start, end) = frame_bounds(&bytes)[2];
    bytes[end - 1] ^= 0x01;
    bytes.extend_from_slice(&[0xC3, 0x7A, 9]);
    fs::write(&path, &bytes).unwrap();
    let (lines, warnings) = journal.history(&HistoryFilter::Group, 100).unwrap();
    assert_eq!(
        lines.len(),
        2,
        "the damaged one is lost, the others are not"
    );
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].contains(&format!("offset {start}: checksum mismatch")));
    assert!(warnings[1].contains("torn tail"), "{warnings:?}");
    assert_eq!(fs::read(&path).unwrap(), bytes, "history repairs nothing");
}

#[test]
fn history_line_format() {
    let at_ms = 1_700_000_000_000;
    let when = Local
        .timestamp_millis_opt(at_ms)
        .unwrap()
        .format("%Y-%m-%d %H:%M")
        .to_string();
    assert_eq!(when.len(), "2026-11-25 14:02".len());
    let line = |nick: &str, to: Option<&str>, direct: bool| HistoryLine {
        at_ms,
        nick: nick.into(),
        from: None,
        to: to.map(Into::into),
        direct,
        text: "hi \u{1b}[2J there".into(),
        action: false,
    };
    assert_eq!(
        format_history_line(&line("alice", None, false)),
        format!("{when} <alice> hi \u{1b}[2J there")
    );
    assert_eq!(
        format_history_line(&line("alice", None, true)),
        format!("{when} *alice* hi \u{1b}[2J there")
    );
    assert_eq!(
        format_history_line(&line("me", Some("bob"), true)),
        format!("{when} *-> bob* hi \u{1b}[2J there")
    );
    assert_eq!(
        format_history_line(&HistoryLine {
            at_ms: i64::MAX,
            ..line("alice", None, false)
        }),
        "????-??-?? ??:?? <alice> hi \u{1b}[2J there"
    );
}

/// Property tests run from a fixed seed, so a run is repeatable and a failure reproduces.
fn fixed(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x07a1_c4a7),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(fixed(2048))]

    #[test]
    fn arbitrary_bytes_after_the_header_never_panic(
        tail in proptest::collection::vec(any::<u8>(), 0..2048)
    ) {
        let mut bytes = HEADER.to_vec();
        bytes.extend_from_slice(&tail);
        let _ = scan(&bytes);
    }

    #[test]
    fn arbitrary_bytes_with_markers_never_panic(
        chunks in proptest::collection::vec(
            prop_oneof![
                Just(MARKER.to_vec()),
                proptest::collection::vec(any::<u8>(), 0..12),
            ],
            0..64,
        )
    ) {
        let mut bytes = HEADER.to_vec();
        bytes.extend(chunks.concat());
        let _ = scan(&bytes);
    }
}

proptest! {
    // Each case creates, syncs and reopens a real file: fewer cases.
    #![proptest_config(fixed(64))]

    #[test]
    fn good_records_survive_garbage_after_them_and_appends_land(
        garbage in proptest::collection::vec(any::<u8>(), 0..512)
    ) {
        let records = every_kind();
        let (_tmp, path) = journal_with(&records);
        let mut bytes = fs::read(&path).unwrap();
        bytes.extend_from_slice(&garbage);
        fs::write(&path, &bytes).unwrap();
        let (mut journal, restored) = Journal::open(&path).unwrap();
        prop_assert_eq!(restored.records, records.len());
        let extra = Record::Delivered { to: CAROL, id: 42 };
        journal.append(&extra).unwrap();
        journal.sync().unwrap();
        drop(journal);
        let read = records_in(&path);
        prop_assert_eq!(&read[..records.len()], &records[..]);
        prop_assert_eq!(read.last(), Some(&extra));
    }
}
