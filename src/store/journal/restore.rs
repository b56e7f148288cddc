//! The restart summary: what the records of a journal mean for a program starting again.

use super::Record;
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
    for record in records {
        match record {
            Record::Said {
                at_ms,
                id,
                direct_to,
                recipients,
                text,
                ..
            } => {
                max_said = max_said.max(*id);
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
            Record::Heard { from, id, .. } => {
                let highest = delivered_from.entry(*from).or_insert(*id);
                *highest = (*highest).max(*id);
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
        peers,
        warnings: Vec::new(),
        records: records.len(),
    }
}
