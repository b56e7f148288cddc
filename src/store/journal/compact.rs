//! Compaction: when the journal is rewritten (see [`super::rewrite`] for what is kept), how it
//! runs beside the event loop, and how the new file is put in place atomically.
//!
//! # When
//! - At open, when the file is over [`OPEN_FLOOR`] and over twice what would be kept, or when
//!   the history limit drops messages older than its age or from a file under the floor: right
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

use super::limit::{HistoryLimit, Keep, Plan};
use super::rewrite::{copy_tail, rewrite, sync_dir, temp_path, Compaction, Rewritten};
use super::{Journal, JournalError};
use std::fs;
use std::io::{self, BufWriter, Write};
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

/// When to compact, and the compaction running in the background.
#[derive(Debug)]
pub(super) struct Compactor {
    /// What to keep.
    pub(super) keep: Keep,
    /// When the file reaches this length, a background compaction is tried.
    pub(super) next_check: u64,
    /// The compaction running, if any.
    worker: Option<Worker>,
}

impl Compactor {
    /// For a journal of `len` bytes, compacted to what `keep` says.
    pub(super) fn new(keep: Keep, len: u64) -> Self {
        Self {
            keep,
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

impl Journal {
    /// Starts the compaction that `plan` (made while opening) calls for, if any: here for a
    /// small journal, in the background for a large one.
    pub(super) fn compact_at_open(&mut self, plan: &Plan) {
        // Worth the work: a file twice what it would keep. Due: messages the history limit
        // drops in a file too small for that (the limit is a promise of what is kept, which a
        // quiet chat's small journal would otherwise never see kept), or older than its
        // age limit (what `days` is set for: old words gone).
        let worth = self.end > OPEN_FLOOR && self.end > plan.kept_bytes.saturating_mul(2);
        let due = plan.drops_messages() && (self.end <= OPEN_FLOOR || plan.old_messages > 0);
        if !worth && !due {
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
        let keep = self.compactor.keep.clone();
        let tmp = temp_path(&self.path);
        let (stop, copied) = (cancel.clone(), synced.clone());
        let spawned = std::thread::Builder::new()
            .name("journal-compaction".into())
            .spawn(move || {
                let now_ms = crate::clock::now_ms();
                let Some(mut rw) = rewrite(&old, upto, &keep, now_ms, &tmp, force, &stop)? else {
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
        let now_ms = crate::clock::now_ms();
        let tmp = temp_path(&self.path);
        let keep = self.compactor.keep.clone();
        let never = AtomicBool::new(false);
        let rewritten =
            flushed.and_then(|()| rewrite(&old, self.end, &keep, now_ms, &tmp, true, &never));
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
        self.compactor.keep.limit = limit;
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
