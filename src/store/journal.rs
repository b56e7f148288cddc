//! The journal: an append-only file holding the conversation — its history, and what a restart
//! needs to carry on: which of our messages still have to reach whom, which messages from each
//! peer we already have and have shown, and how to reach peers again — kept within a bound by
//! compaction.
//!
//! # File format
//! All integers are little-endian.
//!
//! ```text
//! file   = header record*
//! header = "TCJ1"                     4 bytes: identifies the file and its format version
//! record = marker length crc payload
//! marker = 0xC3 0x7A                  2 bytes: where a record starts
//! length = u32                        bytes in payload; over 1 MiB (1_048_576) is corrupt
//! crc    = u32                        CRC-32 (IEEE, as crc32fast computes it) of payload
//! payload = postcard encoding of a `Record`
//! ```
//!
//! In `Record::Peer`, each address is encoded as `V4([u8; 4] ip, u16 port)` or
//! `V6([u8; 16] ip, u16 port, u32 flowinfo, u32 scope_id)` rather than as serde encodes a
//! `SocketAddr`, which drops the scope id that a link-local IPv6 address needs.
//!
//! The order of [`Record`]'s variants and fields is part of the format: postcard numbers
//! variants by position and does not name fields. New kinds of record go at the end; an older
//! version skips them with a warning (a whole record whose checksum is right but whose payload
//! it cannot decode). The kinds, in order: `Said`, `Heard`, `Delivered`, `Dropped`, `Peer`,
//! `Opened`, `Shown`, then two that compaction writes: `Received` (per peer, the highest
//! message id heard, which the `Heard` records dropped no longer say) and `Compacted` (first
//! in a compacted file: when, and where our message ids continue). A version without them
//! loses, on a compacted journal, only those two facts (the clock floor still keeps our ids
//! new). Then `Forgot` (a peer forgotten) and `Away` (our away state).
//!
//! Fields may be appended to a kind: `Said` gained `action`, `Heard` gained `action` and
//! `written_ms`, `Peer` gained `heard_ms` and `key`. A record without them (written before) is read as the older layout, with
//! `false` and `at_ms` for the missing fields; an older version skips a record with the new
//! fields (bytes after the ones it knows) with a warning.
//!
//! # Reading a damaged file
//! The reader never gives up on the file, and one bad record never hides the ones around it. A
//! record whose marker, length or checksum is wrong is skipped with a warning naming its byte
//! offset and the reason, and reading resumes at the next marker that starts a record whose
//! length and checksum are right. If no such record follows, the bad bytes are the file's tail:
//! what a crash or power loss leaves when it interrupts a write (a torn tail).
//! [`Journal::open`] truncates a torn tail to the end of the last good record, so new records
//! are not glued to the garbage; damage in the middle is left as it is. A record that is whole
//! (right length and checksum) but does not decode is skipped and kept (compaction copies it).
//! The file is read through a window of a few MiB, never whole.
//!
//! # Durability
//! [`Journal::append`] buffers; [`Journal::sync`] writes the buffer and waits for the disk
//! (fdatasync). Callers append a batch of records and sync once before acting on any of them
//! (group commit): before acknowledging a message they heard, before sending one they wrote.
//! A record is durable only once synced; a crash may lose unsynced records, or leave a torn
//! tail, but never an earlier record.
//!
//! One process at a time: [`Journal::open`] takes an exclusive lock on the file, so a second
//! tailchat on the same data directory (which would also share this peer's identity) is refused.
//!
//! # Bounded
//! - Compaction (`journal/compact.rs`: when and how; `journal/rewrite.rs`: what) rewrites the
//!   journal with only the history [`HistoryLimit`] keeps, shared fairly among senders
//!   (`journal/limit.rs`), plus what a restart needs whatever its age: undelivered messages,
//!   messages not yet shown, and per peer its latest `Peer` record and the highest ids heard
//!   (`Received`) and shown (`Shown`). It runs when the journal holds more than twice what it
//!   would keep: at open (in the background past a few MiB, so start-up stays fast), and in
//!   the background while running, each time the file doubles. The new file replaces the old
//!   atomically: a crash leaves one or the other, never a mix.
//! - A stranger costs no record until it is a real peer (`journal/admit.rs`).
//! - `/history` reads the file backwards from the end through a small index
//!   (`journal/history.rs`), and can run off the event loop ([`Journal::history_query`]).

mod addrs;
mod admit;
mod compact;
mod error;
mod frame;
mod history;
mod limit;
mod restore;
mod rewrite;
mod view;

pub use admit::MAX_HELD;
pub use error::JournalError;
pub use frame::{HEADER, MARKER, MAX_PAYLOAD};
pub use history::{format_history_line, HistoryFilter, HistoryLine, HistoryQuery};
pub use limit::{HistoryLimit, DEFAULT_HISTORY_MESSAGES, RECENT_PEERS};
pub use restore::{Outgoing, PeerRecord, Restored, Unshown, OWN_LINES};
pub use rewrite::{temp_path, Compaction};

use admit::Admission;
use compact::Compactor;
use frame::{frame, read_record_at, scan_source, Damage, FileWindow, Tail};
use history::Index;
use limit::{Census, Keep};
use restore::Summarizer;

use crate::proto::{PeerId, PublicKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The journal's file name in the data directory.
pub const JOURNAL_FILE: &str = "journal";

/// One entry in the journal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// A message we sent; written before any datagram carrying it leaves.
    Said {
        /// When it was sent, in milliseconds since the Unix epoch.
        at_ms: i64,
        /// Its message id (our ids count 1, 2, 3, … across restarts).
        id: u64,
        /// Our nick when we sent it.
        nick: String,
        /// The peer it was for, if it was a direct message; `None` for the group.
        direct_to: Option<PeerId>,
        /// Every peer it was sent to: whose delivery we wait for.
        recipients: Vec<PeerId>,
        /// What we wrote.
        text: String,
        /// An action (`/me`). Absent from records of version 1 journals (read as `false`).
        action: bool,
    },
    /// A message we received; written (and synced) before it is acknowledged.
    Heard {
        /// When it arrived, in milliseconds since the Unix epoch.
        at_ms: i64,
        /// Who wrote it.
        from: PeerId,
        /// Their nick when they wrote it.
        nick: String,
        /// Its id in the sender's numbering.
        id: u64,
        /// Whether it was a direct message to us rather than to the group.
        direct: bool,
        /// What they wrote, as received (unsanitised).
        text: String,
        /// An action (`/me`). Absent from records of older versions (read as `false`).
        action: bool,
        /// When it was written, by our clock: its arrival less the age the sender gave it
        /// (equal to `at_ms` for a live message). Absent from records of older versions (read
        /// as `at_ms`).
        written_ms: i64,
    },
    /// A recipient acknowledged all of our message `id`.
    Delivered {
        /// The recipient.
        to: PeerId,
        /// Our message id.
        id: u64,
    },
    /// Our message `id` will never reach `to` (refused: its queue was full).
    Dropped {
        /// The recipient that will not get it.
        to: PeerId,
        /// Our message id.
        id: u64,
    },
    /// How to reach a peer again after a restart (written when a peer joins, or its nick or
    /// address changes). A stranger's is held back until it is a real peer (see
    /// `journal/admit.rs`).
    Peer {
        /// The peer.
        id: PeerId,
        /// Its nick at the time.
        nick: String,
        /// The addresses it was reachable at.
        #[serde(with = "addrs")]
        addrs: Vec<SocketAddr>,
        /// Whether the user added it by hand (`--peer`, `/connect`) rather than it being
        /// discovered: a manual peer is worth contacting again after a restart.
        manual: bool,
        /// When it was last heard from, in milliseconds since the Unix epoch; 0 if not known.
        /// Absent from records of older versions (read as 0).
        heard_ms: i64,
        /// The public key it proved, pinned: after a restart it must prove this very key.
        /// Absent from records of older versions (read as `None`: any key hashing to `id`).
        key: Option<PublicKey>,
    },
    /// A run started with this journal writable; from here on, [`Record::Shown`] says which
    /// messages heard reached the screen (a journal without it predates that, and nothing
    /// before it is replayed). Written again, with the same session, when our nick changes
    /// during the run.
    Opened {
        /// When, in milliseconds since the Unix epoch.
        at_ms: i64,
        /// The run's session number: the next run's is larger, whatever the clock says.
        session: u64,
        /// Our nick at the start of the run: the next run keeps it unless told otherwise.
        nick: String,
    },
    /// Every message heard from `from` up to `id` has been written to the screen (or counted
    /// there as skipped). Messages heard after the last [`Record::Opened`] and not covered are
    /// shown at the next start, under `--- while you were away ---`.
    Shown {
        /// The sender.
        from: PeerId,
        /// The highest of its message ids shown.
        id: u64,
    },
    /// Every message from `from` up to `through` was heard: a message with such an id is a
    /// duplicate. Written by compaction, which may drop the [`Record::Heard`] records that
    /// said so (see [`Restored::delivered_from`]).
    Received {
        /// The sender.
        from: PeerId,
        /// The highest of its message ids heard.
        through: u64,
    },
    /// The first record of a compacted journal: when it was compacted, and where our message
    /// ids continue (the [`Record::Said`] with the highest id may be gone).
    Compacted {
        /// When, in milliseconds since the Unix epoch.
        at_ms: i64,
        /// The id for our next message, as [`Restored::next_msg`] was then.
        next_msg: u64,
    },
    /// The user forgot `peer` (`/forget`, or not heard for `forget_after` days), or it was an
    /// ephemeral peer that left: its earlier [`Record::Peer`] records no longer make it known,
    /// and messages of ours still waiting for it are dropped. A later `Peer` record (it came
    /// back) makes it known again.
    Forgot {
        /// The peer.
        peer: PeerId,
        /// When, in milliseconds since the Unix epoch.
        at_ms: i64,
    },
    /// We went away with `reason` (`Some`, perhaps empty) or came back (`None`): the latest
    /// one holds at the next start.
    Away {
        /// Why, or `None` for back.
        reason: Option<String>,
    },
}

/// The open journal, ready to append to (or only to read, see [`Journal::open_read_only`]).
pub struct Journal {
    /// Where it is, for messages.
    path: PathBuf,
    /// The file, opened for appending and locked, behind a buffer so a batch of records costs
    /// one write; `None` when opened read-only.
    file: Option<BufWriter<File>>,
    /// A handle on the same file for reading history, shared with queries running elsewhere;
    /// `None` for a read-only journal that does not exist.
    reader: Option<Arc<File>>,
    /// Where the next record goes: the file's length once the buffer is written.
    end: u64,
    /// Where records start and what peers were called, for history.
    index: Index,
    /// Which peers are recorded, and the strangers held back.
    admission: Admission,
    /// When to compact, and the compaction running in the background, if any.
    compactor: Compactor,
}

impl fmt::Debug for Journal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal").field("path", &self.path).finish()
    }
}

impl Journal {
    /// [`Journal::open_with`] the default [`HistoryLimit`].
    ///
    /// # Errors
    /// As [`Journal::open_with`].
    pub fn open(path: &Path) -> Result<(Journal, Restored), JournalError> {
        Self::open_with(path, &HistoryLimit::default())
    }

    /// Opens the journal at `path`, creating it (mode 0600, header written and synced) if it
    /// does not exist or is empty, and reads it back into a [`Restored`] summary. A torn tail
    /// is truncated (see the module doc); any damage is described in [`Restored::warnings`]. A
    /// temporary file left by an interrupted compaction is removed. If the journal holds more
    /// than twice what `limit` keeps, it is compacted: here when it is small, in the background
    /// otherwise (see `journal/compact.rs`).
    ///
    /// # Errors
    /// The file cannot be opened, locked, read or repaired; it is held by another process; or
    /// it exists and does not start with the journal header (it is then left untouched).
    pub fn open_with(
        path: &Path,
        limit: &HistoryLimit,
    ) -> Result<(Journal, Restored), JournalError> {
        Self::open_keeping(path, limit, BTreeSet::new())
    }

    /// [`Journal::open_with`], and `peers` keep their `Peer` records through every compaction,
    /// whatever the limit: the peers of file transfers left unfinished, which a restart must
    /// still be able to reach (more are added by [`Journal::keep_peer`]).
    ///
    /// # Errors
    /// As [`Journal::open_with`].
    pub fn open_keeping(
        path: &Path,
        limit: &HistoryLimit,
        peers: BTreeSet<PeerId>,
    ) -> Result<(Journal, Restored), JournalError> {
        let io_err = |action| {
            let path = path.to_path_buf();
            move |source| JournalError::Io {
                path,
                action,
                source,
            }
        };
        // Append mode: every write lands at the end, whatever the file offset, including after
        // the truncation below.
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(io_err("open"))?;
        // Locked before reading: two writers would interleave their records.
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(JournalError::Locked {
                    path: path.to_path_buf(),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err("lock")(e)),
        }
        // Ours now: a compaction interrupted by a crash left it, and the journal is whole.
        rewrite::remove_leftover(path);
        let mut len = file.metadata().map_err(io_err("read"))?.len();

        // Empty (or cut inside the header): a journal whose creation was interrupted, since
        // nothing else writes this name; there is nothing in it to lose.
        if len < HEADER.len() as u64 && HEADER.starts_with(&read_start(&file, len)) {
            file.set_len(0).map_err(io_err("truncate"))?;
            file.write_all(&HEADER).map_err(io_err("write to"))?;
            file.sync_all().map_err(io_err("sync"))?;
            // The new directory entry is only durable once the directory is synced.
            rewrite::sync_dir(path).map_err(io_err("sync the directory of"))?;
            len = HEADER.len() as u64;
        }
        // Only the header damaged (its records follow it whole): written again, and said.
        let mut repaired = None;
        if read_start(&file, len) != HEADER {
            if !header_alone_damaged(&file, len).map_err(io_err("read"))? {
                return Err(JournalError::NotAJournal {
                    path: path.to_path_buf(),
                });
            }
            let writer = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(io_err("open"))?;
            writer
                .write_all_at(&HEADER, 0)
                .map_err(io_err("write to"))?;
            writer.sync_all().map_err(io_err("sync"))?;
            repaired = Some(format!(
                "{}: its first {} bytes were damaged (not a journal's header): written again; its records were read as usual",
                path.display(),
                HEADER.len()
            ));
        }

        let now_ms = crate::clock::now_ms();
        let mut census = Census::new(limit, now_ms);
        let mut read = read_back(&file, len, Some(&mut census)).map_err(io_err("read"))?;
        let torn_at = read.damage.tail.as_ref().map(|t| t.at);
        let restored = read
            .restored(path, &file, |tail| {
                format!(
                    "{}; truncated the file to {} bytes, after the last good record",
                    tail.describe(len),
                    tail.at
                )
            })
            .map_err(io_err("read"))?;
        let mut restored = restored;
        restored.warnings.extend(repaired);
        if let Some(at) = torn_at {
            file.set_len(at).map_err(io_err("truncate"))?;
            file.sync_all().map_err(io_err("sync"))?;
        }
        let end = torn_at.unwrap_or(len);
        let reader = file.try_clone().map_err(io_err("open"))?;
        let keep = Keep {
            limit: limit.clone(),
            peers,
        };
        let plan = census.plan(&keep, &restored);
        let mut journal = Journal {
            path: path.to_path_buf(),
            file: Some(BufWriter::new(file)),
            reader: Some(Arc::new(reader)),
            end,
            index: read.index,
            admission: read.admission,
            compactor: Compactor::new(keep, end),
        };
        journal.compact_at_open(&plan);
        Ok((journal, restored))
    }

    /// Opens the journal at `path` only to read: for a data directory that cannot be written
    /// (a read-only mount, a full disk), so that history and what a restart needs are still
    /// known. Nothing is created, locked, repaired or compacted; a missing file reads as empty.
    /// Appending fails with [`JournalError::ReadOnly`]; syncing does nothing.
    ///
    /// # Errors
    /// The file exists but cannot be read, or is not a journal.
    pub fn open_read_only(path: &Path) -> Result<(Journal, Restored), JournalError> {
        let io_err = |source| JournalError::Io {
            path: path.to_path_buf(),
            action: "read",
            source,
        };
        let (reader, restored, index) = match File::open(path) {
            Ok(file) => {
                let len = file.metadata().map_err(io_err)?.len();
                if read_start(&file, len) != HEADER
                    && !header_alone_damaged(&file, len).map_err(io_err)?
                {
                    return Err(JournalError::NotAJournal {
                        path: path.to_path_buf(),
                    });
                }
                let mut read = read_back(&file, len, None).map_err(io_err)?;
                let restored = read
                    .restored(path, &file, |tail| tail.describe(len))
                    .map_err(io_err)?;
                (Some(Arc::new(file)), restored, read.index)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                (None, Restored::default_empty(), Index::default())
            }
            Err(source) => return Err(io_err(source)),
        };
        let journal = Journal {
            path: path.to_path_buf(),
            file: None,
            reader,
            end: 0,
            index,
            admission: Admission::default(),
            compactor: Compactor::new(Keep::default(), u64::MAX),
        };
        Ok((journal, restored))
    }

    /// Whether records can be appended (not opened read-only).
    pub fn writable(&self) -> bool {
        self.file.is_some()
    }

    /// Adds `r` to the write buffer. It reaches the disk at the next [`Journal::sync`] (or
    /// earlier, when the buffer fills); only a sync makes it durable. A stranger's
    /// [`Record::Peer`] is held back instead, and written before the record that makes it a
    /// real peer (see `journal/admit.rs`).
    ///
    /// # Errors
    /// The record is over [`MAX_PAYLOAD`] (nothing is written), or writing failed. After a
    /// write error the file may end in a partial record; the next [`Journal::open`] repairs
    /// that, so the caller should report the error and stop using this journal.
    pub fn append(&mut self, r: &Record) -> Result<(), JournalError> {
        let framed = frame(r)?;
        if self.file.is_none() {
            return Err(JournalError::ReadOnly {
                path: self.path.clone(),
            });
        }
        let (before, write) = self.admission.admit(r);
        for b in &before {
            self.write_frame(b, &frame(b)?)?;
        }
        if write {
            self.write_frame(r, &framed)?;
        }
        Ok(())
    }

    /// Makes `id` a peer worth finding again after a restart although no message went either
    /// way (a file offered to it or accepted from it; see `journal/admit.rs`). If it was a
    /// stranger, how to reach it is appended: `fresh` (its `Peer` record as of now), else the
    /// one held back. Either way its record is kept through compactions from now on, while
    /// the journal is open (a restart passes the peers still needed to
    /// [`Journal::open_keeping`]). Returns whether anything was appended.
    ///
    /// # Errors
    /// As [`Journal::append`].
    pub fn keep_peer(&mut self, id: PeerId, fresh: Option<&Record>) -> Result<bool, JournalError> {
        if self.file.is_none() {
            return Err(JournalError::ReadOnly {
                path: self.path.clone(),
            });
        }
        self.compactor.keep.peers.insert(id);
        let Some(held) = self.admission.make_real(id) else {
            return Ok(false); // real already: its changes are written as they come
        };
        let Some(r) = fresh.cloned().or(held) else {
            return Ok(false);
        };
        self.write_frame(&r, &frame(&r)?)?;
        Ok(true)
    }

    /// Writes one framed record to the buffer and notes it in the index.
    fn write_frame(&mut self, r: &Record, framed: &[u8]) -> Result<(), JournalError> {
        let Some(file) = self.file.as_mut() else {
            return Err(JournalError::ReadOnly {
                path: self.path.clone(),
            });
        };
        file.write_all(framed)
            .map_err(|source| self.io_error("write to", source))?;
        self.index.note(self.end, r.name());
        self.end += framed.len() as u64;
        Ok(())
    }

    /// Writes every appended record and waits until the disk has them (fdatasync). Call it
    /// once per batch, before acknowledging or sending anything appended in it. It is also
    /// where a background compaction is started, and put in place once done (which costs a
    /// copy of what was appended meanwhile, usually a few KiB, and two more syncs).
    ///
    /// # Errors
    /// Writing or syncing failed (a full disk, an I/O error); the records appended since the
    /// last successful sync may not be durable. A failed compaction is not an error here: it
    /// is logged, its temporary file removed, and the journal carries on as it was.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let flushed = file.flush().and_then(|()| file.get_ref().sync_data());
        flushed.map_err(|source| self.io_error("sync", source))?;
        self.after_sync();
        Ok(())
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last `last` lines of the conversation that `filter` selects, oldest first, read
    /// again from the file (with the same tolerance of damage as [`Journal::open`], but
    /// repairing nothing), from the end backwards until there are enough. Records appended
    /// since the last [`Journal::sync`] may be missing. Also returns the warnings about damage
    /// met on the way.
    ///
    /// # Errors
    /// The file cannot be read, or no longer starts with the journal header.
    pub fn history(
        &self,
        filter: &HistoryFilter,
        last: usize,
    ) -> Result<(Vec<HistoryLine>, Vec<String>), JournalError> {
        self.history_query(filter, last).run()
    }

    /// The query [`Journal::history`] runs, to run elsewhere: it holds its own handle on the
    /// file and a copy of the little it needs from the index, so a long `/history` can be read
    /// on another thread while the journal is written.
    pub fn history_query(&self, filter: &HistoryFilter, last: usize) -> HistoryQuery {
        self.index
            .query(self.path.clone(), self.reader.clone(), filter, last)
    }

    /// Every peer the journal has recorded under `nick` (exactly: a `Heard` or `Peer` record
    /// with that nick), whatever it is called now: a nick is not proof of who uses it, and
    /// this says who else did.
    #[must_use]
    pub fn went_by(&self, nick: &str) -> Vec<PeerId> {
        self.index.went_by(nick)
    }

    /// An I/O error on this journal.
    fn io_error(&self, action: &'static str, source: io::Error) -> JournalError {
        JournalError::Io {
            path: self.path.clone(),
            action,
            source,
        }
    }
}

impl Record {
    /// The peer this record names and what it calls it, for a `Heard` or `Peer` record.
    fn name(&self) -> Option<(PeerId, &[u8])> {
        match self {
            Record::Heard { from: id, nick, .. } | Record::Peer { id, nick, .. } => {
                Some((*id, nick.as_bytes()))
            }
            _ => None,
        }
    }
}

/// The first bytes of `file` (of length `len`), up to the header's length.
/// Whether a file that does not start with [`HEADER`] is a journal whose header alone was
/// damaged: a whole record (checksum and all) starts right where the header ends, which the
/// bytes of a file that is not a journal do not do but by a one-in-four-billion chance.
fn header_alone_damaged(file: &File, len: u64) -> io::Result<bool> {
    if !file.metadata()?.is_file() {
        return Ok(false); // a folder, say: named as such
    }
    let mut first = None;
    let mut src = FileWindow::new(file, len);
    scan_source(&mut src, HEADER.len() as u64, |found| {
        first.get_or_insert((found.at, found.record.is_some()));
    })?;
    Ok(first == Some((HEADER.len() as u64, true)))
}

fn read_start(file: &File, len: u64) -> Vec<u8> {
    let mut start = vec![0; HEADER.len().min(len as usize)];
    match file.read_exact_at(&mut start, 0) {
        Ok(()) => start,
        Err(_) => Vec::new(),
    }
}

/// What reading a whole journal gives.
struct ReadBack {
    /// The restart summary, before damage is described.
    summary: Summarizer,
    /// Damage met.
    damage: Damage,
    /// The history index.
    index: Index,
    /// The peers it records.
    admission: Admission,
}

impl ReadBack {
    /// The restart summary of the journal `file` at `path`, its warnings prefixed by the
    /// path; a torn tail is described by `tail_warning`.
    ///
    /// # Errors
    /// A record to send or show again cannot be read again.
    fn restored(
        &mut self,
        path: &Path,
        file: &File,
        tail_warning: impl FnOnce(&Tail) -> String,
    ) -> io::Result<Restored> {
        let mut warnings = std::mem::take(&mut self.damage.warnings);
        if let Some(tail) = &self.damage.tail {
            warnings.push(tail_warning(tail));
        }
        let summary = std::mem::take(&mut self.summary);
        let mut restored = summary.finish(|at| read_record_at(file, at))?;
        restored.warnings = warnings
            .into_iter()
            .map(|w| format!("journal {}: {w}", path.display()))
            .collect();
        tracing::debug!(
            "journal {}: {} records, {} warnings",
            path.display(),
            restored.records,
            restored.warnings.len()
        );
        Ok(restored)
    }
}

/// Reads the records of `file` (`len` bytes, header checked) through a window, into the
/// restart summary, the history index and the census for compaction, if one is wanted.
fn read_back(file: &File, len: u64, mut census: Option<&mut Census>) -> io::Result<ReadBack> {
    let mut summary = Summarizer::default();
    let mut index = Index::default();
    let mut admission = Admission::default();
    let mut src = FileWindow::new(file, len);
    let damage = scan_source(&mut src, HEADER.len() as u64, |found| {
        let Some(record) = found.record else {
            index.note_start(found.at);
            return;
        };
        if let Some(census) = census.as_deref_mut() {
            census.add(&record, found.end - found.at);
        }
        index.note(found.at, record.name());
        admission.note(&record);
        summary.add(&record, found.at);
    })?;
    Ok(ReadBack {
        summary,
        damage,
        index,
        admission,
    })
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod compaction_tests;
