//! The restart summary: what the records of a journal mean for a program starting again.

use super::{HistoryLine, Record};
use crate::proto::PeerId;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

/// One of our messages still on its way to one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// Our message id.
    pub id: u64,
    /// Whether it was a direct message (to this recipient only).
    pub direct: bool,
    /// What we wrote.
    pub text: String,
    /// When we first sent it, in milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// A message heard that may never have reached the screen (heard, acknowledged, then a crash
/// before it was written): shown at the next start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unshown {
    /// Who wrote it.
    pub from: PeerId,
    /// Its id in the sender's numbering.
    pub id: u64,
    /// The message as history shows it.
    pub line: HistoryLine,
}

/// What the journal last said about a peer: enough to contact it again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerRecord {
    /// Its last known nick.
    pub nick: String,
    /// Its last known addresses.
    pub addrs: Vec<SocketAddr>,
    /// Whether the user added it by hand.
    pub manual: bool,
}

/// What a restart needs from the journal, summarised when it is opened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    /// The id for our next message: the highest id we ever used plus one (at least 1), so ids
    /// are never reused across restarts and receivers' deduplication stays right.
    pub next_msg: u64,
    /// The highest message id heard from each sender: anything at or below it is a duplicate.
    pub delivered_from: BTreeMap<PeerId, u64>,
    /// Per recipient, in id order, our messages it has neither acknowledged nor refused: what
    /// to send again.
    pub outbox: BTreeMap<PeerId, Vec<Outgoing>>,
    /// Messages heard since the first [`Record::Opened`] and never marked [`Record::Shown`],
    /// in the order heard.
    pub unshown: Vec<Unshown>,
    /// The largest session number of an earlier run (0 if none was recorded): this run's
    /// must be larger, even if the clock went back.
    pub last_session: u64,
    /// The last [`Record::Peer`] written for each peer.
    pub peers: BTreeMap<PeerId, PeerRecord>,
    /// What was wrong with the file (skipped records, a truncated tail), one line each, for the
    /// user to see.
    pub warnings: Vec<String>,
    /// How many records were read.
    pub records: usize,
}

/// The restart summary of `records`, read in file order.
#[cfg(test)]
pub(super) fn summarize(records: &[Record]) -> Restored {
    let mut s = Summarizer::default();
    for r in records {
        s.add(r.clone());
    }
    s.finish()
}

/// Builds the restart summary one record at a time, in file order, holding only what the
/// summary needs (not the records): opening a large journal reads it through a small window.
#[derive(Debug, Default)]
pub(super) struct Summarizer {
    /// The highest id of ours in a `Said` record.
    max_said: u64,
    /// The next id a [`Record::Compacted`] carried over (its `Said` records may be gone).
    compacted_next: u64,
    /// See [`Restored::delivered_from`].
    delivered_from: BTreeMap<PeerId, u64>,
    /// Per recipient, keyed by id so each comes out in id order whatever the records' order.
    outbox: BTreeMap<PeerId, BTreeMap<u64, Outgoing>>,
    /// See [`Restored::peers`].
    peers: BTreeMap<PeerId, PeerRecord>,
    /// A [`Record::Opened`] was read: messages heard from here on are tracked until shown.
    tracking: bool,
    /// See [`Restored::last_session`].
    last_session: u64,
    /// Tracked messages not yet covered by a [`Record::Shown`], per sender, each with its
    /// position among the records (to give them back in the order heard).
    heard: BTreeMap<PeerId, VecDeque<(usize, Unshown)>>,
    /// The highest id shown per sender.
    shown: BTreeMap<PeerId, u64>,
    /// How many records were added.
    records: usize,
}

impl Summarizer {
    /// The highest id shown per sender, so far.
    pub(super) fn shown(&self) -> &BTreeMap<PeerId, u64> {
        &self.shown
    }

    /// Whether a [`Record::Opened`] was read, so far.
    pub(super) fn tracking(&self) -> bool {
        self.tracking
    }

    /// Takes the next record in file order.
    pub(super) fn add(&mut self, record: Record) {
        let seq = self.records;
        self.records += 1;
        match record {
            Record::Opened { session, .. } => {
                self.tracking = true;
                self.last_session = self.last_session.max(session);
            }
            Record::Shown { from, id } => {
                let through = self.shown.entry(from).or_insert(id);
                *through = (*through).max(id);
                let through = *through;
                if let Some(waiting) = self.heard.get_mut(&from) {
                    // Ids grow in the order heard, so what is covered is at the front; any
                    // straggler is filtered out in `finish`.
                    while waiting.front().is_some_and(|(_, u)| u.id <= through) {
                        waiting.pop_front();
                    }
                    if waiting.is_empty() {
                        self.heard.remove(&from);
                    }
                }
            }
            Record::Said {
                at_ms,
                id,
                direct_to,
                recipients,
                text,
                ..
            } => {
                self.max_said = self.max_said.max(id);
                for to in recipients {
                    self.outbox.entry(to).or_default().insert(
                        id,
                        Outgoing {
                            id,
                            direct: direct_to.is_some(),
                            text: text.clone(),
                            at_ms,
                        },
                    );
                }
            }
            Record::Heard {
                at_ms,
                from,
                nick,
                id,
                direct,
                text,
            } => {
                let highest = self.delivered_from.entry(from).or_insert(id);
                *highest = (*highest).max(id);
                let covered = self.shown.get(&from).is_some_and(|through| id <= *through);
                if self.tracking && !covered {
                    let unshown = Unshown {
                        from,
                        id,
                        line: HistoryLine {
                            at_ms,
                            nick,
                            to: None,
                            direct,
                            text,
                        },
                    };
                    self.heard
                        .entry(from)
                        .or_default()
                        .push_back((seq, unshown));
                }
            }
            Record::Delivered { to, id } | Record::Dropped { to, id } => {
                if let Some(pending) = self.outbox.get_mut(&to) {
                    pending.remove(&id);
                    if pending.is_empty() {
                        self.outbox.remove(&to);
                    }
                }
            }
            Record::Peer {
                id,
                nick,
                addrs,
                manual,
            } => {
                self.peers.insert(
                    id,
                    PeerRecord {
                        nick,
                        addrs,
                        manual,
                    },
                );
            }
            Record::Received { from, through } => {
                let highest = self.delivered_from.entry(from).or_insert(through);
                *highest = (*highest).max(through);
            }
            Record::Compacted { next_msg, .. } => {
                self.compacted_next = self.compacted_next.max(next_msg);
            }
        }
    }

    /// The summary of every record added.
    pub(super) fn finish(self) -> Restored {
        let shown = self.shown;
        let mut unshown: Vec<(usize, Unshown)> = self
            .heard
            .into_values()
            .flatten()
            .filter(|(_, u)| shown.get(&u.from).is_none_or(|through| u.id > *through))
            .collect();
        unshown.sort_by_key(|(seq, _)| *seq);
        Restored {
            next_msg: self.max_said.saturating_add(1).max(self.compacted_next),
            delivered_from: self.delivered_from,
            outbox: self
                .outbox
                .into_iter()
                .map(|(to, pending)| (to, pending.into_values().collect()))
                .collect(),
            unshown: unshown.into_iter().map(|(_, u)| u).collect(),
            peers: self.peers,
            last_session: self.last_session,
            warnings: Vec::new(),
            records: self.records,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heard(from: u64, id: u64) -> Record {
        Record::Heard {
            at_ms: 0,
            from: PeerId(from),
            nick: "bob".into(),
            id,
            direct: false,
            text: format!("m{id}"),
        }
    }

    fn shown(from: u64, id: u64) -> Record {
        Record::Shown {
            from: PeerId(from),
            id,
        }
    }

    fn unshown(records: &[Record]) -> Vec<(u64, u64)> {
        summarize(records)
            .unshown
            .iter()
            .map(|u| (u.from.0, u.id))
            .collect()
    }

    #[test]
    fn messages_heard_but_not_shown_are_replayed_once_tracking_began() {
        let opened = Record::Opened {
            at_ms: 0,
            session: 1,
        };
        // Before any Opened (an older version wrote these): never replayed.
        assert!(unshown(&[heard(1, 1), heard(1, 2)]).is_empty());
        let records = [
            heard(1, 1),
            opened.clone(),
            heard(1, 2),
            heard(2, 7),
            heard(1, 3),
            shown(1, 2),
            heard(2, 8),
            shown(2, 7),
            heard(1, 4),
        ];
        assert_eq!(unshown(&records), [(1, 3), (2, 8), (1, 4)]);
        let mut all_shown = records.to_vec();
        all_shown.extend([shown(1, 4), shown(2, 8)]);
        assert!(unshown(&all_shown).is_empty());
    }
}

#[cfg(test)]
mod session_tests {
    use super::*;

    #[test]
    fn the_last_session_is_the_largest_recorded() {
        let opened = |session| Record::Opened { at_ms: 0, session };
        assert_eq!(summarize(&[]).last_session, 0);
        assert_eq!(
            summarize(&[opened(5), opened(9), opened(7)]).last_session,
            9
        );
    }
}
