//! History queries: which records make up the group conversation or a direct one, how the
//! last lines are found without reading the whole journal, and how a line is printed.
//!
//! The journal keeps a small [`Index`] in memory: where records start, about every
//! [`CHECKPOINT_EVERY`] bytes, and each peer's changes of nick. A query reads the file
//! backwards one stretch between checkpoints at a time, each stretch forwards with the
//! tolerant reader, until it has the lines asked for: `/history 50` reads the last few dozen
//! KiB of the file whatever its size, and holds only the lines it returns.

use super::frame::{scan_source, FrameError, InMemory, HEADER};
use super::view::{string, RecordView};
use super::JournalError;
use crate::proto::PeerId;
use chrono::{Local, TimeZone};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

/// How far apart the index's checkpoints are, in bytes: what one step of a history query reads
/// (plus at most one record).
pub(super) const CHECKPOINT_EVERY: u64 = 64 * 1024;

/// Which part of the conversation [`Journal::history`](super::Journal::history) returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HistoryFilter {
    /// Messages to and from the group.
    Group,
    /// The direct messages between us and the peer(s) that ever went by `nick`.
    Direct {
        /// The peer's nick, exactly as it was recorded.
        nick: String,
    },
    /// The direct messages between us and one identity, whatever it was called.
    Peer {
        /// Its id.
        id: PeerId,
    },
}

/// One message of the conversation, as [`Journal::history`](super::Journal::history) returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryLine {
    /// When it was written (ours: sent; theirs: by our clock, its arrival less the age its
    /// sender gave it), in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// Who spoke: our nick then, or theirs.
    pub nick: String,
    /// Who spoke: `None` for us, else the peer (the nick alone is no proof of who it was).
    pub from: Option<PeerId>,
    /// For our direct messages, the recipient's nick (as last recorded before the message, or
    /// its id in hex if no nick was); `None` otherwise.
    pub to: Option<String>,
    /// Whether it was a direct message.
    pub direct: bool,
    /// The text, as written or received: unsanitised.
    pub text: String,
    /// An action (`/me`): shown as `* nick text`.
    pub action: bool,
}

#[cfg(test)]
impl HistoryLine {
    /// A group line written at `at_ms` by `nick` (`from`: `None` for us), for tests.
    pub fn group(at_ms: i64, nick: &str, from: Option<PeerId>, text: &str) -> Self {
        HistoryLine {
            at_ms,
            nick: nick.into(),
            from,
            to: None,
            direct: false,
            text: text.into(),
            action: false,
        }
    }
}

/// Where records start and what peers were called: enough to read history from the end.
#[derive(Clone, Debug)]
pub(super) struct Index {
    /// Offsets of record starts, increasing, the first right after the header, then the first
    /// record at or past every [`CHECKPOINT_EVERY`] bytes from the previous one.
    checkpoints: Vec<u64>,
    /// Per peer, each nick it was recorded under (by a `Heard` or `Peer` record) and the offset
    /// of the record where that nick first followed a different one.
    nicks: BTreeMap<PeerId, Vec<(u64, String)>>,
}

impl Default for Index {
    fn default() -> Self {
        Self {
            checkpoints: vec![HEADER.len() as u64],
            nicks: BTreeMap::new(),
        }
    }
}

impl Index {
    /// Notes that a record starts at `at` (decoded or not).
    pub(super) fn note_start(&mut self, at: u64) {
        let last = *self.checkpoints.last().expect("never empty");
        if at >= last + CHECKPOINT_EVERY {
            self.checkpoints.push(at);
        }
    }

    /// Notes a record that starts at `at` and, for a `Heard` or `Peer` record, the peer it
    /// names and what it calls it.
    pub(super) fn note(&mut self, at: u64, name: Option<(PeerId, &[u8])>) {
        self.note_start(at);
        if let Some((id, nick)) = name {
            let names = self.nicks.entry(id).or_default();
            if names.last().is_none_or(|(_, last)| last.as_bytes() != nick) {
                names.push((at, string(nick)));
            }
        }
    }

    /// Every peer recorded under `nick` (exactly) at some time, whatever it is called now.
    pub(super) fn went_by(&self, nick: &str) -> Vec<PeerId> {
        self.nicks
            .iter()
            .filter(|(_, names)| names.iter().any(|(_, n)| n == nick))
            .map(|(id, _)| *id)
            .collect()
    }

    /// The checkpoints, for tests.
    #[cfg(test)]
    pub(super) fn checkpoints(&self) -> &[u64] {
        &self.checkpoints
    }

    /// A query for the last `last` lines that `filter` selects in `file`, which can run on any
    /// thread (see [`HistoryQuery::run`]).
    pub(super) fn query(
        &self,
        path: PathBuf,
        file: Option<Arc<File>>,
        filter: &HistoryFilter,
        last: usize,
    ) -> HistoryQuery {
        let names = match filter {
            HistoryFilter::Group => BTreeMap::new(),
            // A nick can move between ids (a peer that lost its identity) and an id between
            // nicks (`/nick`): every id that ever had the nick is part of the conversation.
            HistoryFilter::Direct { nick: wanted } => self
                .nicks
                .iter()
                .filter(|(_, names)| names.iter().any(|(_, n)| n == wanted))
                .map(|(id, names)| (*id, names.clone()))
                .collect(),
            // Known by its id even if no nick of it was recorded.
            HistoryFilter::Peer { id } => {
                BTreeMap::from([(*id, self.nicks.get(id).cloned().unwrap_or_default())])
            }
        };
        let everyone = self
            .nicks
            .iter()
            .flat_map(|(id, names)| names.iter().map(|(_, n)| (*id, n.clone())))
            .collect();
        HistoryQuery {
            path,
            file,
            everyone,
            checkpoints: self.checkpoints.clone(),
            direct: !matches!(filter, HistoryFilter::Group),
            names,
            last,
        }
    }
}

/// A history query, independent of the journal once made: it holds its own handle on the
/// file, so it can run off the event loop, and it reads the file as it was when the query was
/// made even if a compaction replaces it meanwhile.
#[derive(Debug)]
pub struct HistoryQuery {
    /// The journal's path, for messages.
    path: PathBuf,
    /// The file; `None` for a read-only journal that was never created.
    file: Option<Arc<File>>,
    /// Every peer the journal names, with each nick it was recorded under: to tell apart in
    /// the lines the identities that went by nicks alike.
    everyone: Vec<(PeerId, String)>,
    /// See [`Index::checkpoints`].
    checkpoints: Vec<u64>,
    /// A direct conversation (with the peers in `names`) rather than the group.
    direct: bool,
    /// For a direct conversation, its peers and their nicks over time.
    names: BTreeMap<PeerId, Vec<(u64, String)>>,
    /// How many lines are wanted.
    last: usize,
}

impl HistoryQuery {
    /// Every peer the journal names, once with each nick it was recorded under.
    #[must_use]
    pub fn identities(&self) -> &[(PeerId, String)] {
        &self.everyone
    }

    /// The lines, oldest first, and the warnings about damage met on the way (in the stretches
    /// of the file read; damage elsewhere was reported when the journal was opened).
    ///
    /// # Errors
    /// The file cannot be read, or no longer starts with the journal header.
    pub fn run(self) -> Result<(Vec<HistoryLine>, Vec<String>), JournalError> {
        let Some(file) = self.file.as_deref() else {
            return Ok((Vec::new(), Vec::new()));
        };
        let io_err = |source| JournalError::Io {
            path: self.path.clone(),
            action: "read",
            source,
        };
        let len = file.metadata().map_err(io_err)?.len();
        let mut header = [0; HEADER.len()];
        if len < HEADER.len() as u64 || file.read_exact_at(&mut header, 0).is_err() {
            header = [0; HEADER.len()];
        }
        if header != HEADER {
            return Err(JournalError::NotAJournal {
                path: self.path.clone(),
            });
        }
        // Stretches from the end backwards; the lines and warnings of each, in file order. A
        // message recorded twice (a damaged journal can repeat a stretch) is shown once: its
        // last copy.
        let mut stretches: Vec<(Vec<HistoryLine>, Vec<String>)> = Vec::new();
        let mut seen = HashSet::new();
        let mut found = 0;
        let mut end = len;
        for &start in self.checkpoints.iter().rev() {
            if found >= self.last {
                break;
            }
            if start >= end {
                continue;
            }
            let bytes = read_range(file, start, end).map_err(io_err)?;
            let (keyed, damage) = self.read_stretch(&bytes, start, end == len);
            let mut lines: Vec<HistoryLine> = keyed
                .into_iter()
                .rev()
                .filter(|(key, _)| seen.insert(*key))
                .map(|(_, line)| line)
                .collect();
            lines.reverse();
            found += lines.len();
            stretches.push((lines, damage));
            end = start;
        }
        let mut lines = Vec::with_capacity(found.min(self.last));
        let mut warnings = Vec::new();
        for (l, w) in stretches.into_iter().rev() {
            lines.extend(l);
            warnings.extend(
                w.into_iter()
                    .map(|w| format!("journal {}: {w}", self.path.display())),
            );
        }
        lines.drain(..lines.len().saturating_sub(self.last));
        Ok((lines, warnings))
    }

    /// The lines selected in `bytes`, the stretch of the file from `start` (a record's start)
    /// to the next checkpoint or, when `at_end`, to the end of the file; and its damage.
    fn read_stretch(
        &self,
        bytes: &[u8],
        start: u64,
        at_end: bool,
    ) -> (Vec<(MessageKey, HistoryLine)>, Vec<String>) {
        let mut lines = Vec::new();
        let mut src = InMemory { bytes, base: start };
        let end = start + bytes.len() as u64;
        let damage = scan_source(&mut src, start, |found| {
            if let Some(line) = found.record.and_then(|r| self.line(found.at, &r)) {
                lines.push(line);
            }
        })
        .expect("reading memory cannot fail");
        let mut warnings = damage.warnings;
        if let Some(tail) = damage.tail {
            warnings.push(if at_end {
                tail.describe(end)
            } else {
                // Not the file's end: the next stretch starts with a good record.
                skipped(tail.at, tail.error, end)
            });
        }
        (lines, warnings)
    }

    /// The line `record` (at offset `at`) makes, if it is a message this query selects, with
    /// the message it is.
    fn line(&self, at: u64, record: &RecordView<'_>) -> Option<(MessageKey, HistoryLine)> {
        match *record {
            RecordView::Said {
                at_ms,
                id,
                nick,
                direct_to,
                text: said,
                action,
                ..
            } => {
                let to = match direct_to {
                    None if !self.direct => None,
                    Some(p) if self.direct => Some(self.name_at(p, at)?),
                    _ => return None,
                };
                let line = HistoryLine {
                    at_ms,
                    nick: string(nick),
                    from: None,
                    direct: to.is_some(),
                    to,
                    text: string(said),
                    action,
                };
                Some(((None, id), line))
            }
            RecordView::Heard {
                from,
                nick,
                id,
                direct,
                text: heard,
                action,
                written_ms,
                ..
            } if direct == self.direct && (!direct || self.names.contains_key(&from)) => {
                let line = HistoryLine {
                    at_ms: written_ms,
                    nick: string(nick),
                    from: Some(from),
                    to: None,
                    direct,
                    text: string(heard),
                    action,
                };
                Some(((Some(from), id), line))
            }
            _ => None,
        }
    }

    /// What a peer of the conversation was called just before offset `at`: its nick recorded
    /// last before it, or its id; `None` if it is not of this conversation.
    fn name_at(&self, peer: PeerId, at: u64) -> Option<String> {
        let names = self.names.get(&peer)?;
        let before = names.partition_point(|(from, _)| *from < at);
        Some(match before {
            0 => peer.to_string(),
            n => names[n - 1].1.clone(),
        })
    }
}

/// A message: its sender (`None`: us) and its id in the sender's numbering.
type MessageKey = (Option<PeerId>, u64);

/// The warning for damage at `at` that runs to the good record at `next`.
fn skipped(at: u64, error: FrameError, next: u64) -> String {
    format!(
        "offset {at}: {error}; skipped {} bytes to the next good record at offset {next}",
        next - at
    )
}

/// The bytes of `file` from `start` to `end` (fewer if the file is shorter).
fn read_range(file: &File, start: u64, end: u64) -> io::Result<Vec<u8>> {
    let mut buf = vec![0; (end - start) as usize];
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], start + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(got);
    Ok(buf)
}

/// `l` as one line of text in local time: `2026-11-25 14:02 <alice> text` for the group,
/// `… *alice* text` for a direct message to us, `… *-> bob* text` for one from us. The text is
/// not sanitised here: the caller renders it for the terminal.
pub fn format_history_line(l: &HistoryLine) -> String {
    thread_local! {
        /// The UTC minute formatted last, and how: the lines of a history mostly share their
        /// minute with the line before, and working out the local time costs more than all the
        /// rest of a line. (Exact wherever the zone's offset is whole minutes, as every zone's
        /// has been since the 1970s; within a minute of the truth before that.)
        static LAST_MINUTE: RefCell<(i64, String)> = const { RefCell::new((i64::MIN, String::new())) };
    }
    let minute = l.at_ms.div_euclid(60_000);
    let when = LAST_MINUTE.with_borrow_mut(|(last, when)| {
        if *last != minute {
            *when = match Local.timestamp_millis_opt(l.at_ms).earliest() {
                Some(t) => t.format("%Y-%m-%d %H:%M").to_string(),
                // Out of chrono's range: only a damaged or hand-made record has such a time.
                None => "????-??-?? ??:??".to_string(),
            };
            *last = minute;
        }
        when.clone()
    });
    let who = match (&l.to, l.direct, l.action) {
        (Some(to), _, false) => format!("*-> {to}*"),
        (Some(to), _, true) => format!("*-> {to}* * {}", l.nick),
        (None, true, false) => format!("*{}*", l.nick),
        (None, true, true) => format!("*{}* * {}", l.nick, l.nick),
        (None, false, false) => format!("<{}>", l.nick),
        (None, false, true) => format!("* {}", l.nick),
    };
    format!("{when} {who} {}", l.text)
}
