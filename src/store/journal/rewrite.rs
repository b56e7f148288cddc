//! The rewrite at the heart of compaction: the journal's records up to some offset, read
//! twice through a window (once to plan, once to copy), written to a temporary file with only
//! what must be kept; and the copy of records appended meanwhile.
//!
//! # What is kept
//! See [`super::limit`]: the history the [`HistoryLimit`](super::HistoryLimit) allows, shared fairly among senders;
//! whatever its age, every message of ours still undelivered to someone (its `Said` record,
//! listing only the recipients still waiting) and every message heard but not yet shown; for
//! each peer worth knowing, its latest `Peer` record, a [`Record::Received`] with the highest
//! id heard from it, and a [`Record::Shown`] with the highest shown; the largest session (one
//! [`Record::Opened`]); where our ids continue ([`Record::Compacted`], first in the file); and
//! records this version cannot decode, copied as they are. Deliveries, drops, older `Peer`
//! records and the other `Opened` and `Shown` records are folded into those. Messages keep
//! their order. Read back, the compacted journal gives the same restart summary for
//! everything kept: the same outbox, the same messages to replay, the same next id and session.
//!
//! The one `Opened` goes just before the first message kept that was never shown (or after
//! the last message if there is none): messages before it read as shown or as older than
//! tracking, as they were; messages after it are shown or not by the `Shown` records, as they
//! were.

use super::frame::{frame, frame_payload, read_record_at, scan_source, FileWindow, Source};
use super::history::Index;
use super::limit::{Census, Keep, Plan};
use super::restore::{Restored, Summarizer, OWN_LINES};
use super::view::RecordView;
use super::{Record, HEADER};
use crate::proto::PeerId;
use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// The temporary file a compaction writes before renaming it over the journal at `path`.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".compacting");
    path.with_file_name(name)
}

/// What a compaction did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compaction {
    /// The journal's size before, in bytes.
    pub bytes_before: u64,
    /// Its size after, in bytes.
    pub bytes_after: u64,
    /// The messages it held before.
    pub messages_before: u64,
    /// The messages it holds after (including those appended while it ran).
    pub messages_after: u64,
}

/// A compacted journal in the temporary file, not yet in place.
#[derive(Debug)]
pub(super) struct Rewritten {
    /// The temporary file, locked, opened for appending.
    pub(super) file: File,
    /// Its length.
    pub(super) len: u64,
    /// How much of the old journal it stands for: the old file's records up to this offset.
    pub(super) upto: u64,
    /// Its history index.
    pub(super) index: Index,
    /// What was done.
    pub(super) report: Compaction,
}

/// A [`FileWindow`] that fails with `Interrupted` once `cancel` is set.
struct Cancellable<'a> {
    /// The window.
    window: FileWindow<'a>,
    /// The flag.
    cancel: &'a AtomicBool,
}

impl Source for Cancellable<'_> {
    fn end(&self) -> u64 {
        self.window.end()
    }

    fn bytes_at(&mut self, at: u64, want: usize) -> io::Result<&[u8]> {
        if self.cancel.load(Ordering::Acquire) {
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "compaction stopped: the journal is being closed",
            ));
        }
        self.window.bytes_at(at, want)
    }
}

/// Before a message that was never shown (or, ours, never echoed): the one `Opened`, if it is
/// not written yet, so that the message reads back as tracked and not shown.
fn open_before(out: &mut Output, opened: &mut Option<Record>, never_shown: bool) -> io::Result<()> {
    match opened.take_if(|_| never_shown) {
        Some(o) => out.emit(&o),
        None => Ok(()),
    }
}

/// The compacted file being written.
struct Output {
    /// The temporary file, behind a buffer.
    w: BufWriter<File>,
    /// Its length so far.
    len: u64,
    /// Its history index so far.
    index: Index,
    /// Messages written.
    messages: u64,
}

impl Output {
    /// Writes `r`.
    fn emit(&mut self, r: &Record) -> io::Result<()> {
        // Every record here was read back within the limit, or is smaller than one that was.
        let framed = frame(r).map_err(|e| io::Error::other(e.to_string()))?;
        self.index.note(self.len, r.name());
        self.messages += u64::from(matches!(r, Record::Said { .. } | Record::Heard { .. }));
        self.write(&framed)
    }

    /// Writes a record as it was read: `payload`, decoded as `view` if this version can.
    fn copy(&mut self, payload: &[u8], view: Option<&RecordView<'_>>) -> io::Result<()> {
        match view {
            Some(v) => {
                self.index.note(self.len, v.name());
                self.messages += u64::from(matches!(
                    v,
                    RecordView::Said { .. } | RecordView::Heard { .. }
                ));
            }
            None => self.index.note_start(self.len),
        }
        self.write(&frame_payload(payload))
    }

    /// Writes one framed record.
    fn write(&mut self, framed: &[u8]) -> io::Result<()> {
        self.w.write_all(framed)?;
        self.len += framed.len() as u64;
        Ok(())
    }
}

/// Writes the compaction of `old`'s records up to offset `upto` into `tmp` (created afresh,
/// locked, synced). Returns `None`, having written nothing, when it is not `force`d and the
/// file is not over twice what would be kept. On error (`cancel` set among them) `tmp` is
/// removed.
pub(super) fn rewrite(
    old: &File,
    upto: u64,
    keep: &Keep,
    now_ms: i64,
    tmp: &Path,
    force: bool,
    cancel: &AtomicBool,
) -> io::Result<Option<Rewritten>> {
    let source = || Cancellable {
        window: FileWindow::new(old, upto),
        cancel,
    };
    // First pass: the summary and the census, to plan.
    let mut census = Census::new(&keep.limit, now_ms);
    let mut summary = Summarizer::default();
    let mut nicks = PastNicks::default();
    scan_source(&mut source(), HEADER.len() as u64, |found| {
        if let Some(record) = found.record {
            census.add(&record, found.end - found.at);
            summary.add(&record, found.at);
            nicks.note(&record);
        }
    })?;
    let shown = summary.shown().clone();
    let tracked = summary.tracking();
    let restored = summary.finish(|at| read_record_at(old, at))?;
    let plan = census.plan(keep, &restored);
    if !force && upto <= plan.kept_bytes.saturating_mul(2) {
        return Ok(None);
    }

    let _ = fs::remove_file(tmp);
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)?;
    // No one else can have it yet; locked before it takes the journal's name.
    let kept = Kept {
        plan,
        restored,
        shown,
        tracked,
        now_ms,
        nicks,
    };
    let written = file
        .try_lock()
        .map_err(|e| io::Error::other(e.to_string()))
        .and_then(|()| {
            let w = BufWriter::with_capacity(1 << 20, file.try_clone()?);
            write_compacted(&kept, w, &mut source())
        });
    match written {
        Ok((len, index, messages_before, messages_after)) => {
            file.sync_all()?;
            Ok(Some(Rewritten {
                file,
                len,
                upto,
                index,
                report: Compaction {
                    bytes_before: upto,
                    bytes_after: len,
                    messages_before,
                    messages_after,
                },
            }))
        }
        Err(e) => {
            let _ = fs::remove_file(tmp);
            Err(e)
        }
    }
}

/// What the first pass of [`rewrite`] decided, for the second.
struct Kept {
    /// What the history limit keeps.
    plan: Plan,
    /// The restart summary of the records compacted.
    restored: Restored,
    /// The highest id shown per sender.
    shown: BTreeMap<PeerId, u64>,
    /// Whether any run recorded [`Record::Opened`] (messages heard are tracked until shown).
    tracked: bool,
    /// When it is compacted.
    now_ms: i64,
    /// The nicks each peer went by before its latest.
    nicks: PastNicks,
}

/// The most nicks kept per peer besides its latest.
const PAST_NICKS: usize = 16;

/// The nicks each peer was recorded under (by a `Heard` or `Peer` record), kept through
/// compaction as a `Peer` record each before its latest: who went by a nick is what
/// `accept_from` and `/history` tell identities apart by, and a peer that renamed must not
/// leave its old nick free for another to take once the records that said so are compacted.
#[derive(Debug, Default)]
struct PastNicks(BTreeMap<PeerId, Vec<String>>);

impl PastNicks {
    /// Notes the nick `record` gives a peer, if any (at most [`PAST_NICKS`] + 1 kept per
    /// peer, the latest ones, each once).
    fn note(&mut self, record: &RecordView<'_>) {
        if let Some((id, nick)) = record.name() {
            let names = self.0.entry(id).or_default();
            if names.last().is_some_and(|n| n.as_bytes() == nick) {
                return;
            }
            names.retain(|n| n.as_bytes() != nick);
            names.push(super::view::string(nick));
            if names.len() > PAST_NICKS + 1 {
                names.remove(0);
            }
        }
    }

    /// The nicks `id` went by, oldest first, but `latest`.
    fn before(&self, id: PeerId, latest: &str) -> impl Iterator<Item = &String> {
        let latest = latest.to_owned();
        self.0
            .get(&id)
            .into_iter()
            .flatten()
            .filter(move |n| **n != latest)
    }
}

/// The second pass of [`rewrite`]: what `kept` says to keep of `src`, written through `w`.
/// Returns the file's length, its index, and the messages before and after.
fn write_compacted(
    kept: &Kept,
    w: BufWriter<File>,
    src: &mut impl Source,
) -> io::Result<(u64, Index, u64, u64)> {
    let Kept {
        plan,
        restored,
        shown,
        tracked,
        now_ms,
        nicks,
    } = kept;
    let mut out = Output {
        w,
        len: 0,
        index: Index::default(),
        messages: 0,
    };
    out.w.write_all(&HEADER)?;
    out.len = HEADER.len() as u64;
    out.emit(&Record::Compacted {
        at_ms: *now_ms,
        next_msg: restored.next_msg,
    })?;
    if restored.away.is_some() {
        out.emit(&Record::Away {
            reason: restored.away.clone(),
        })?;
    }
    for p in &plan.peers {
        if let Some(r) = restored.peers.get(p) {
            for nick in nicks.before(*p, &r.nick) {
                out.emit(&Record::Peer {
                    id: *p,
                    nick: nick.clone(),
                    addrs: r.addrs.clone(),
                    manual: r.manual,
                    heard_ms: r.heard_ms,
                    key: r.key,
                })?;
            }
            out.emit(&Record::Peer {
                id: *p,
                nick: r.nick.clone(),
                addrs: r.addrs.clone(),
                manual: r.manual,
                heard_ms: r.heard_ms,
                key: r.key,
            })?;
        }
        if let Some(through) = restored.delivered_from.get(p) {
            out.emit(&Record::Received {
                from: *p,
                through: *through,
            })?;
        }
        if let Some(id) = shown.get(p) {
            out.emit(&Record::Shown { from: *p, id: *id })?;
        }
    }
    // Our own lines echoed (see `OWN_LINES`).
    if let Some(id) = shown.get(&OWN_LINES) {
        out.emit(&Record::Shown {
            from: OWN_LINES,
            id: *id,
        })?;
    }
    // Who still waits for each of our messages.
    let mut waiting: BTreeMap<u64, Vec<PeerId>> = BTreeMap::new();
    for (to, pending) in &restored.outbox {
        for o in pending {
            waiting.entry(o.id).or_default().push(*to);
        }
    }
    let unshown: HashSet<(PeerId, u64)> = restored.unshown.iter().map(|u| (u.from, u.id)).collect();
    let mut opened = plan
        .opened
        .filter(|_| *tracked)
        .map(|(session, at_ms)| Record::Opened {
            at_ms,
            session,
            nick: restored.last_nick.clone().unwrap_or_default(),
        });

    let mut keeper = plan.keeper();
    let mut failed = None;
    scan_source(src, HEADER.len() as u64, |found| {
        if failed.is_some() {
            return;
        }
        let written = match &found.record {
            None => out.copy(found.payload, None),
            Some(RecordView::Said {
                at_ms,
                id,
                direct_to,
                text,
                ..
            }) => {
                let kept = keeper.keep(None, *at_ms, text.len());
                // Sent and never echoed: kept, after the `Opened` that tracks it.
                let never_shown = unshown.contains(&(OWN_LINES, *id));
                open_before(&mut out, &mut opened, never_shown).and_then(|()| {
                    match (
                        waiting.get(id),
                        found.record.as_ref().map(RecordView::to_record),
                    ) {
                        // Only the recipients still waiting are listed: the deliveries are gone.
                        (
                            pending,
                            Some(Record::Said {
                                nick, text, action, ..
                            }),
                        ) if kept || pending.is_some() || never_shown => out.emit(&Record::Said {
                            at_ms: *at_ms,
                            id: *id,
                            nick,
                            direct_to: *direct_to,
                            recipients: pending.cloned().unwrap_or_default(),
                            text,
                            action,
                        }),
                        _ => Ok(()),
                    }
                })
            }
            Some(
                heard @ RecordView::Heard {
                    at_ms,
                    from,
                    id,
                    text,
                    ..
                },
            ) => {
                let kept = keeper.keep(Some(*from), *at_ms, text.len());
                let never_shown = unshown.contains(&(*from, *id));
                let mut written = open_before(&mut out, &mut opened, never_shown);
                if kept || never_shown {
                    written = written.and_then(|()| out.copy(found.payload, Some(heard)));
                }
                written
            }
            Some(_) => Ok(()),
        };
        if let Err(e) = written {
            failed = Some(e);
        }
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    if let Some(o) = opened {
        out.emit(&o)?;
    }
    out.w.flush()?;
    Ok((out.len, out.index, plan.messages, out.messages))
}

/// Appends to `rw` the records of `old` from `rw.upto` to `to`, as they are, and moves
/// `rw.upto` there.
pub(super) fn copy_tail(
    old: &File,
    rw: &mut Rewritten,
    to: u64,
    cancel: &AtomicBool,
) -> io::Result<()> {
    if to <= rw.upto {
        return Ok(());
    }
    let mut src = Cancellable {
        window: FileWindow::new(old, to),
        cancel,
    };
    let mut w = BufWriter::with_capacity(1 << 20, &rw.file);
    let (mut len, index, mut failed) = (rw.len, &mut rw.index, None);
    let messages = &mut rw.report.messages_after;
    let damage = scan_source(&mut src, rw.upto, |found| {
        if failed.is_some() {
            return;
        }
        let framed = frame_payload(found.payload);
        match &found.record {
            Some(r) => {
                index.note(len, r.name());
                *messages += u64::from(matches!(
                    r,
                    RecordView::Said { .. } | RecordView::Heard { .. }
                ));
            }
            None => index.note_start(len),
        }
        if let Err(e) = w.write_all(&framed) {
            failed = Some(e);
        }
        len += framed.len() as u64;
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    w.flush()?;
    drop(w);
    if !damage.warnings.is_empty() || damage.tail.is_some() {
        // Only whole records synced by this process are copied: damage here is news.
        tracing::warn!("journal damaged while compacting: {:?}", damage.warnings);
    }
    rw.len = len;
    rw.upto = to;
    Ok(())
}

/// Writes the compaction of the journal `file` at `path` under `limit` to its temporary file,
/// and stops there, as a crash before the rename would; returns the new file's length.
#[cfg(test)]
pub(super) fn rewrite_for_test(file: &File, path: &Path, limit: &super::HistoryLimit) -> u64 {
    let len = file.metadata().unwrap().len();
    let never = AtomicBool::new(false);
    let keep = Keep {
        limit: limit.clone(),
        ..Keep::default()
    };
    let rw = rewrite(file, len, &keep, 0, &temp_path(path), true, &never).unwrap();
    rw.expect("forced").len
}

/// Removes the temporary file an interrupted compaction of the journal at `path` left, if any.
/// Only while holding the journal's lock: then no compaction is writing it.
pub(super) fn remove_leftover(path: &Path) {
    let tmp = temp_path(path);
    match fs::remove_file(&tmp) {
        Ok(()) => tracing::info!(
            "removed {}, left by a compaction that was interrupted",
            tmp.display()
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!("cannot remove {}: {e}", tmp.display()),
    }
}

/// Syncs the directory holding `path`, so that a new or renamed entry there is durable.
pub(super) fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => File::open(".")?.sync_all(),
    }
}
