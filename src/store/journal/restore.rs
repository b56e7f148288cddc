//! The restart summary: what the records of a journal mean for a program starting again.

use super::{HistoryLine, Record};
use crate::proto::PeerId;
use std::collections::BTreeMap;
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
    /// Our nick as last recorded (a run's start, or a message we wrote).
    pub last_nick: Option<String>,
    /// The last [`Record::Peer`] written for each peer.
    pub peers: BTreeMap<PeerId, PeerRecord>,
    /// What was wrong with the file (skipped records, a truncated tail), one line each, for the
    /// user to see.
    pub warnings: Vec<String>,
    /// How many records were read.
    pub records: usize,
}

/// The restart summary of `records`, read in file order.
pub(super) fn summarize(records: &[Record]) -> Restored {
    let mut max_said = 0;
    let mut delivered_from = BTreeMap::new();
    // Per recipient, keyed by id so each comes out in id order whatever the records' order.
    let mut outbox: BTreeMap<PeerId, BTreeMap<u64, Outgoing>> = BTreeMap::new();
    let mut peers = BTreeMap::new();
    let mut tracking = false;
    let mut last_session = 0;
    let mut last_nick = None;
    let mut heard = Vec::new();
    let mut shown: BTreeMap<PeerId, u64> = BTreeMap::new();
    for record in records {
        match record {
            Record::Opened { session, nick, .. } => {
                tracking = true;
                last_session = last_session.max(*session);
                last_nick = Some(nick.clone());
            }
            Record::Shown { from, id } => {
                let through = shown.entry(*from).or_insert(*id);
                *through = (*through).max(*id);
            }
            Record::Said {
                at_ms,
                id,
                nick,
                direct_to,
                recipients,
                text,
            } => {
                max_said = max_said.max(*id);
                last_nick = Some(nick.clone());
                for to in recipients {
                    outbox.entry(*to).or_default().insert(
                        *id,
                        Outgoing {
                            id: *id,
                            direct: direct_to.is_some(),
                            text: text.clone(),
                            at_ms: *at_ms,
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
                let highest = delivered_from.entry(*from).or_insert(*id);
                *highest = (*highest).max(*id);
                if tracking {
                    heard.push(Unshown {
                        from: *from,
                        id: *id,
                        line: HistoryLine {
                            at_ms: *at_ms,
                            nick: nick.clone(),
                            to: None,
                            direct: *direct,
                            text: text.clone(),
                        },
                    });
                }
            }
            Record::Delivered { to, id } | Record::Dropped { to, id } => {
                if let Some(pending) = outbox.get_mut(to) {
                    pending.remove(id);
                }
            }
            Record::Peer {
                id,
                nick,
                addrs,
                manual,
            } => {
                peers.insert(
                    *id,
                    PeerRecord {
                        nick: nick.clone(),
                        addrs: addrs.clone(),
                        manual: *manual,
                    },
                );
            }
        }
    }
    Restored {
        next_msg: max_said.saturating_add(1),
        delivered_from,
        outbox: outbox
            .into_iter()
            .filter(|(_, pending)| !pending.is_empty())
            .map(|(to, pending)| (to, pending.into_values().collect()))
            .collect(),
        unshown: heard
            .into_iter()
            .filter(|u| shown.get(&u.from).is_none_or(|through| u.id > *through))
            .collect(),
        peers,
        last_session,
        last_nick,
        warnings: Vec::new(),
        records: records.len(),
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
            nick: "alice".into(),
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
        let opened = |session| Record::Opened {
            at_ms: 0,
            session,
            nick: "alice".into(),
        };
        assert_eq!(summarize(&[]).last_session, 0);
        assert_eq!(
            summarize(&[opened(5), opened(9), opened(7)]).last_session,
            9
        );
    }
}
