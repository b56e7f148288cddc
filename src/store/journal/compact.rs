//! Compaction: the journal rewritten with only what it must keep, and put in place atomically.
//!
//! # What is kept
//! See [`super::limit`]: the history the [`HistoryLimit`] allows, shared fairly among senders;
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
//!
//! # When
//! - At open, when the file is over [`OPEN_FLOOR`] and over twice what would be kept: right
//!   there when it is at most [`FOREGROUND_MAX`] (a few milliseconds), otherwise in the
//!   background, so a first start on a huge journal is not slowed.
//! - While running, each time the file reaches twice its size after the last compaction (and
//!   at least [`RUNNING_FLOOR`]): a background thread checks whether compacting is worth it
//!   (the file over twice what would be kept) and, if so, does it.
//!
//! # Without stalling the event loop, and keeping the lock
//! The background thread reads the journal through its own handle, only up to what was synced
//! when it started, and writes the temporary file `journal.compacting` next to it; the loop
//! carries on appending to the journal meanwhile. The thread then copies, verbatim, what the
//! loop synced since (in rounds, until less than [`CATCH_UP_SLACK`] is left). The loop notices
//! the thread is done at its next [`Journal::sync`], and there does the rest, which is small:
//! copies the few records appended since the thread's last round, syncs the new file, renames
//! it over the journal and syncs the directory, and from then on appends to the new file. The
//! new file is locked (it is a fresh file no one else can have open) before it is renamed over
//! the journal, so from the instant the name points to it, it is locked: a second tailchat can
//! never open the journal unlocked.
//!
//! # Atomic
//! The old file is only ever replaced by a rename of a complete, synced new file; a crash
//! before the rename leaves the old journal and a temporary file, which the next
//! [`Journal::open`] removes (it holds the lock then, so no compaction of another process can
//! be running); a crash after it leaves the new journal, complete. Never a mix, never nothing.

use super::frame::{frame, frame_payload, scan_source, FileWindow, Source};
use super::history::Index;
use super::limit::{Census, HistoryLimit, Plan};
use super::restore::Summarizer;
use super::view::RecordView;
use super::{Journal, JournalError, Record, HEADER};
use crate::proto::PeerId;
use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Below this size a journal is never compacted at open: there is nothing worth the work.
pub(super) const OPEN_FLOOR: u64 = 64 * 1024;
/// Up to this size, a compaction at open is done before returning (it takes milliseconds);
/// above it, in the background.
pub(super) const FOREGROUND_MAX: u64 = 4 << 20;
/// While running, no compaction is tried before the file reaches this size.
pub(super) const RUNNING_FLOOR: u64 = 4 << 20;
/// The background thread catches up with the loop's appends until less than this is left
/// for the loop to copy.
const CATCH_UP_SLACK: u64 = 256 * 1024;

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

/// When to compact, and the compaction running in the background.
#[derive(Debug)]
pub(super) struct Compactor {
    /// What to keep.
    pub(super) limit: HistoryLimit,
    /// When the file reaches this length, a background compaction is tried.
    pub(super) next_check: u64,
    /// The compaction running, if any.
    worker: Option<Worker>,
}

impl Compactor {
    /// For a journal of `len` bytes, compacted under `limit`.
    pub(super) fn new(limit: HistoryLimit, len: u64) -> Self {
        Self {
            limit,
            next_check: next_check(len),
            worker: None,
        }
    }
}

/// When a journal of `len` bytes after its last compaction (or check) is next checked.
fn next_check(len: u64) -> u64 {
    len.saturating_mul(2).max(RUNNING_FLOOR)
}

/// A compaction on its thread.
#[derive(Debug)]
struct Worker {
    /// The thread; it gives back the new file, or `None` when compacting was not worth it.
    handle: JoinHandle<io::Result<Option<Rewritten>>>,
    /// Set to stop it early (the journal is being closed).
    cancel: Arc<AtomicBool>,
    /// How far the journal is synced: the thread copies up to there.
    synced: Arc<AtomicU64>,
    /// How far the journal was synced when it started.
    upto: u64,
}

/// A compacted journal in the temporary file, not yet in place.
#[derive(Debug)]
struct Rewritten {
    /// The temporary file, locked, opened for appending.
    file: File,
    /// Its length.
    len: u64,
    /// How much of the old journal it stands for: the old file's records up to this offset.
    upto: u64,
    /// Its history index.
    index: Index,
    /// What was done.
    report: Compaction,
}

impl Journal {
    /// Starts the compaction that `plan` (made while opening) calls for, if any: here for a
    /// small journal, in the background for a large one.
    pub(super) fn compact_at_open(&mut self, plan: &Plan) {
        if self.end <= OPEN_FLOOR || self.end <= plan.kept_bytes.saturating_mul(2) {
            return;
        }
        tracing::info!(
            "journal {}: {} bytes, {} messages, about {} bytes to keep: compacting",
            self.path.display(),
            self.end,
            plan.messages,
            plan.kept_bytes
        );
        if self.end <= FOREGROUND_MAX {
            if let Err(e) = self.compact() {
                tracing::warn!("{e}; carrying on with the journal as it is");
            }
        } else {
            self.start_compaction(true);
        }
    }

    /// After a successful sync: hands the thread the new synced length, puts its result in
    /// place when it is done, or starts one when the file has grown enough.
    pub(super) fn after_sync(&mut self) {
        match &self.compactor.worker {
            Some(w) => {
                w.synced.store(self.end, Ordering::Release);
                if w.handle.is_finished() {
                    self.finish_compaction();
                }
            }
            None if self.end >= self.compactor.next_check => self.start_compaction(false),
            None => {}
        }
    }

    /// Starts a background compaction of everything synced so far; with `force`, whether or
    /// not it is worth it.
    fn start_compaction(&mut self, force: bool) {
        let Some(old) = self.reader.clone() else {
            return;
        };
        let cancel = Arc::new(AtomicBool::new(false));
        let synced = Arc::new(AtomicU64::new(self.end));
        let upto = self.end;
        let limit = self.compactor.limit.clone();
        let tmp = temp_path(&self.path);
        let (stop, copied) = (cancel.clone(), synced.clone());
        let spawned = std::thread::Builder::new()
            .name("journal-compaction".into())
            .spawn(move || {
                let now_ms = chrono::Utc::now().timestamp_millis();
                let Some(mut rw) = rewrite(&old, upto, &limit, now_ms, &tmp, force, &stop)? else {
                    return Ok(None);
                };
                let caught_up = (|| {
                    loop {
                        let target = copied.load(Ordering::Acquire);
                        if target <= rw.upto + CATCH_UP_SLACK {
                            break;
                        }
                        copy_tail(&old, &mut rw, target, &stop)?;
                    }
                    rw.file.sync_data()
                })();
                match caught_up {
                    Ok(()) => Ok(Some(rw)),
                    Err(e) => {
                        let _ = fs::remove_file(&tmp);
                        Err(e)
                    }
                }
            });
        match spawned {
            Ok(handle) => {
                self.compactor.worker = Some(Worker {
                    handle,
                    cancel,
                    synced,
                    upto,
                });
            }
            Err(e) => {
                tracing::warn!("cannot start compacting the journal: {e}");
                self.compactor.next_check = next_check(self.end);
            }
        }
    }

    /// Takes the background compaction's result (waiting for it if it is still running) and
    /// puts the new file in place. Returns what was done, or `None` if nothing was.
    fn finish_compaction(&mut self) -> Option<Compaction> {
        let worker = self.compactor.worker.take()?;
        let outcome = worker
            .handle
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the compaction thread panicked")));
        let done = match outcome {
            Ok(Some(rw)) => self.put_in_place(rw),
            Ok(None) => {
                self.compactor.next_check = next_check(worker.upto);
                return None;
            }
            Err(e) => Err(e),
        };
        match done {
            Ok(report) => {
                tracing::info!(
                    "journal {}: compacted from {} to {} bytes ({} of {} messages kept)",
                    self.path.display(),
                    report.bytes_before,
                    report.bytes_after,
                    report.messages_after,
                    report.messages_before
                );
                Some(report)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                // Stopped on purpose, the journal being closed: done again at the next start.
                tracing::info!("journal {}: {e}", self.path.display());
                let _ = fs::remove_file(temp_path(&self.path));
                None
            }
            Err(e) => {
                tracing::warn!(
                    "journal {}: compaction failed ({e}); the journal is as it was",
                    self.path.display()
                );
                let _ = fs::remove_file(temp_path(&self.path));
                self.compactor.next_check = next_check(self.end);
                None
            }
        }
    }

    /// Finishes `rw`: copies what was appended since it was written, syncs it, renames it over
    /// the journal, syncs the directory, and appends to it from now on.
    fn put_in_place(&mut self, mut rw: Rewritten) -> io::Result<Compaction> {
        let old = self
            .reader
            .clone()
            .ok_or_else(|| io::Error::other("the journal is read-only"))?;
        let Some(file) = self.file.as_mut() else {
            return Err(io::Error::other("the journal is read-only"));
        };
        file.flush()?;
        copy_tail(&old, &mut rw, self.end, &AtomicBool::new(false))?;
        rw.file.sync_data()?;
        let reader = rw.file.try_clone()?;
        fs::rename(temp_path(&self.path), &self.path)?;
        // From here the new file is the journal: switch to it whatever happens next.
        let dir_synced = sync_dir(&self.path);
        rw.report.bytes_before = self.end;
        rw.report.bytes_after = rw.len;
        self.file = Some(BufWriter::new(rw.file));
        self.reader = Some(Arc::new(reader));
        self.end = rw.len;
        self.index = rw.index;
        self.compactor.next_check = next_check(rw.len);
        if let Err(e) = dir_synced {
            tracing::warn!(
                "journal {}: cannot sync its directory after compacting ({e}); a power loss \
                 now may bring back the journal as it was before, which is whole",
                self.path.display()
            );
        }
        Ok(rw.report)
    }

    /// Compacts the journal now, on this thread, whether or not it is worth it (waiting for a
    /// background compaction first, if one runs). For tests, benchmarks and tools: the program
    /// itself compacts at open and in the background.
    ///
    /// # Errors
    /// The journal is read-only, or reading, writing, syncing or renaming failed (the journal
    /// is then as it was, and the temporary file removed).
    pub fn compact(&mut self) -> Result<Compaction, JournalError> {
        if !self.writable() {
            return Err(JournalError::ReadOnly {
                path: self.path.clone(),
            });
        }
        self.finish_compaction();
        let old = self
            .reader
            .clone()
            .expect("a writable journal has a reader");
        let flushed = self.file.as_mut().map_or(Ok(()), |f| f.flush());
        let now_ms = chrono::Utc::now().timestamp_millis();
        let tmp = temp_path(&self.path);
        let limit = self.compactor.limit.clone();
        let never = AtomicBool::new(false);
        let rewritten =
            flushed.and_then(|()| rewrite(&old, self.end, &limit, now_ms, &tmp, true, &never));
        let done =
            rewritten.and_then(|rw| self.put_in_place(rw.expect("forced: always rewritten")));
        match done {
            Ok(report) => Ok(report),
            Err(source) => {
                let _ = fs::remove_file(&tmp);
                Err(self.io_error("compact", source))
            }
        }
    }

    /// Changes what compactions from now on keep.
    pub fn set_history_limit(&mut self, limit: HistoryLimit) {
        self.compactor.limit = limit;
    }

    /// Waits for the background compaction, if one runs, and puts it in place. For tests and
    /// benchmarks: the program lets [`Journal::sync`] notice it is done.
    pub fn wait_for_compaction(&mut self) -> Option<Compaction> {
        if let Some(w) = &self.compactor.worker {
            w.synced.store(self.end, Ordering::Release);
        }
        self.finish_compaction()
    }

    /// Whether a compaction runs in the background.
    pub fn compacting(&self) -> bool {
        self.compactor.worker.is_some()
    }
}

impl Drop for Journal {
    /// A finished background compaction is put in place; an unfinished one is stopped (its
    /// temporary file removed), to be done again at the next start.
    fn drop(&mut self) {
        let Some(worker) = &self.compactor.worker else {
            return;
        };
        if !worker.handle.is_finished() {
            worker.cancel.store(true, Ordering::Release);
        }
        self.finish_compaction();
    }
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
fn rewrite(
    old: &File,
    upto: u64,
    limit: &HistoryLimit,
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
    let mut census = Census::new(limit, now_ms);
    let mut summary = Summarizer::default();
    scan_source(&mut source(), HEADER.len() as u64, |found| {
        if let Some(record) = found.record {
            census.add(&record, found.end - found.at);
            summary.add(&record, found.at);
        }
    })?;
    let shown = summary.shown().clone();
    let tracked = summary.tracking();
    let restored = summary.finish(|at| super::frame::read_record_at(old, at))?;
    let plan = census.plan(limit, &restored);
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
    restored: super::Restored,
    /// The highest id shown per sender.
    shown: BTreeMap<PeerId, u64>,
    /// Whether any run recorded [`Record::Opened`] (messages heard are tracked until shown).
    tracked: bool,
    /// When it is compacted.
    now_ms: i64,
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
    for p in &plan.peers {
        if let Some(r) = restored.peers.get(p) {
            out.emit(&Record::Peer {
                id: *p,
                nick: r.nick.clone(),
                addrs: r.addrs.clone(),
                manual: r.manual,
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
        .map(|(session, at_ms)| Record::Opened { at_ms, session });

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
                match (
                    waiting.get(id),
                    found.record.as_ref().map(RecordView::to_record),
                ) {
                    // Only the recipients still waiting are listed: the deliveries are gone.
                    (pending, Some(Record::Said { nick, text, .. }))
                        if kept || pending.is_some() =>
                    {
                        out.emit(&Record::Said {
                            at_ms: *at_ms,
                            id: *id,
                            nick,
                            direct_to: *direct_to,
                            recipients: pending.cloned().unwrap_or_default(),
                            text,
                        })
                    }
                    _ => Ok(()),
                }
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
                let mut written = Ok(());
                if never_shown {
                    if let Some(o) = opened.take() {
                        written = out.emit(&o);
                    }
                }
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
fn copy_tail(old: &File, rw: &mut Rewritten, to: u64, cancel: &AtomicBool) -> io::Result<()> {
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
pub(super) fn rewrite_for_test(file: &File, path: &Path, limit: &HistoryLimit) -> u64 {
    let len = file.metadata().unwrap().len();
    let never = AtomicBool::new(false);
    let rw = rewrite(file, len, limit, 0, &temp_path(path), true, &never).unwrap();
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
