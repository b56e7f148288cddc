//! The persistence policy: which events become journal records, and when the journal is
//! synced. The event loop appends a wake-up's records and calls [`Persistence::sync`] once
//! before any datagram of that wake-up leaves (group commit), so no ack goes out for a message
//! that is not on disk and no message of ours leaves before it is.
//!
//! A write failure turns storage off for the rest of the run (the chat carries on in memory),
//! and says so once.

use crate::proto::{
    Endpoint, Event, ForgetReason, Found, PeerId, PeerInfo, PeerState, Recipients, Sent,
};
use crate::store::journal::{HistoryFilter, HistoryLine, HistoryQuery, Journal, Record};

/// The journal as the application uses it.
#[derive(Debug)]
pub struct Persistence {
    /// Where the conversation is kept; `None` when storage is off. After a failure it stays
    /// open (so its lock keeps a second tailchat off this identity) but unused.
    journal: Option<Journal>,
    /// Writing failed: storage is off for the rest of the run.
    failed: bool,
    /// Records appended since the last sync.
    dirty: bool,
}

/// Why history cannot be shown.
#[derive(Debug, PartialEq, Eq)]
pub enum HistoryError {
    /// Storage is off (never on, or failed earlier).
    Off,
    /// The journal could not be read; the reason.
    Unreadable(String),
}

impl Persistence {
    /// Persistence through `journal`, or none.
    pub fn new(journal: Option<Journal>) -> Self {
        Self {
            journal,
            failed: false,
            dirty: false,
        }
    }

    /// Whether writing failed in this run (storage was on until then).
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Whether what happens is being kept on disk.
    pub fn storing(&self) -> bool {
        self.journal.as_ref().is_some_and(Journal::writable) && !self.failed
    }

    /// Appends a record, when storing. On failure storage goes off and the returned message
    /// says so (once).
    #[must_use = "a storage failure must be shown to the user"]
    pub fn append(&mut self, record: &Record) -> Option<String> {
        self.write(|journal| journal.append(record).map(|()| true))
    }

    /// Keeps `id` in the journal as a peer to find again after a restart, with how `ep`
    /// reaches it now (see [`Journal::keep_peer`]), when storing. On failure storage goes off
    /// and the returned message says so (once).
    #[must_use = "a storage failure must be shown to the user"]
    pub fn keep_peer(&mut self, ep: &Endpoint, id: PeerId) -> Option<String> {
        let (now, now_ms) = (std::time::Instant::now(), crate::clock::now_ms());
        let fresh = ep.peer(id).map(|p| {
            let heard = heard_ms(&p, now, now_ms);
            peer_record(p, heard)
        });
        self.write(|journal| journal.keep_peer(id, fresh.as_ref()))
    }

    /// Runs `write` on the journal, when storing (it says whether it appended anything); see
    /// [`Persistence::append`].
    fn write(
        &mut self,
        write: impl FnOnce(&mut Journal) -> Result<bool, crate::store::journal::JournalError>,
    ) -> Option<String> {
        if !self.storing() {
            return None; // off, failed, or read-only (said at start)
        }
        let journal = self.journal.as_mut()?;
        match write(journal) {
            Ok(wrote) => {
                self.dirty |= wrote;
                None
            }
            Err(e) => Some(self.fail(&e.to_string())),
        }
    }

    /// Makes every record appended so far durable. On failure storage goes off and the
    /// returned message says so (once).
    #[must_use = "a storage failure must be shown to the user"]
    pub fn sync(&mut self) -> Option<String> {
        if !std::mem::take(&mut self.dirty) || self.failed {
            return None;
        }
        let started = std::time::Instant::now();
        match self.journal.as_mut().map(Journal::sync) {
            Some(Err(e)) => Some(self.fail(&e.to_string())),
            _ => {
                tracing::debug!("journal synced in {:?}", started.elapsed());
                None
            }
        }
    }

    fn fail(&mut self, why: &str) -> String {
        self.failed = true;
        format!(
            "storage failed: {why} — the chat carries on, but history and undelivered messages are now kept in memory only"
        )
    }

    /// The records an event means for storage: messages heard, deliveries, messages dropped
    /// for a forgotten peer, and how to reach peers. `ep` names the peer of a join or rename.
    pub fn records_for(ep: &Endpoint, e: &Event, now_ms: i64) -> Vec<Record> {
        match e {
            Event::Message {
                from,
                nick,
                id,
                direct,
                action,
                age,
                text,
            } => vec![Record::Heard {
                at_ms: now_ms,
                from: *from,
                nick: nick.clone(),
                id: id.0,
                direct: *direct,
                text: text.clone(),
                action: *action,
                written_ms: written_ms(now_ms, *age),
            }],
            Event::Delivered { to, id, .. } => vec![Record::Delivered { to: *to, id: id.0 }],
            // Dropped for good: a restart must not send them into the same hole.
            Event::Undelivered {
                to,
                id,
                reason: crate::proto::UndeliveredReason::Superseded,
            } => vec![Record::Dropped { to: *to, id: id.0 }],
            Event::PeerForgotten {
                peer,
                dropped,
                reason,
                ..
            } => {
                let mut records: Vec<Record> = dropped
                    .iter()
                    .map(|id| Record::Dropped {
                        to: *peer,
                        id: id.0,
                    })
                    .collect();
                // One evicted to make room is still known from the journal; one forgotten on
                // purpose, or ephemeral, is not.
                if *reason != ForgetReason::Room {
                    records.push(Record::Forgot {
                        peer: *peer,
                        at_ms: now_ms,
                    });
                }
                records
            }
            // Written at once, not when it is forgotten a little later: a restart in between
            // (a crash, a kill) must not bring the script back as a peer to wait for.
            Event::PeerLeft {
                peer,
                ephemeral: true,
                ..
            } => vec![Record::Forgot {
                peer: *peer,
                at_ms: now_ms,
            }],
            Event::PeerJoined { peer, .. } | Event::PeerRenamed { peer, .. } => ep
                .peer(*peer)
                .map(|p| peer_record(p, now_ms))
                .into_iter()
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The record of a message we wrote.
    pub fn said(
        nick: &str,
        to: Recipients,
        sent: &Sent,
        text: &str,
        action: bool,
        now_ms: i64,
    ) -> Record {
        Record::Said {
            at_ms: now_ms,
            id: sent.id.0,
            nick: nick.to_owned(),
            direct_to: match to {
                Recipients::Peer(p) => Some(p),
                Recipients::Everyone => None,
            },
            recipients: sent.recipients.clone(),
            text: text.to_owned(),
            action,
        }
    }

    /// Records of where every peer heard in this run was last (a peer may have moved since it
    /// joined), so the next run contacts it there. Peers not heard in this run are skipped:
    /// their record is already the latest.
    pub fn addresses(peers: &[PeerInfo]) -> Vec<Record> {
        let (now, now_ms) = (std::time::Instant::now(), crate::clock::now_ms());
        peers
            .iter()
            .filter(|p| p.state != PeerState::Offline)
            .map(|p| peer_record(p.clone(), heard_ms(p, now, now_ms)))
            .collect()
    }

    /// The last `count` lines of the group, or of the direct conversation with a nick. Call
    /// [`Self::sync`] first, so that what this wake-up appended is readable.
    ///
    /// # Errors
    /// [`HistoryError::Off`] when there is no journal (or writing it failed);
    /// [`HistoryError::Unreadable`] when the journal cannot be read. A read-only journal is
    /// read.
    pub fn history(
        &self,
        filter: &HistoryFilter,
        count: usize,
    ) -> Result<(Vec<HistoryLine>, Vec<String>), HistoryError> {
        self.history_query(filter, count)?
            .run()
            .map_err(|e| HistoryError::Unreadable(e.to_string()))
    }

    /// Every peer the journal recorded under `nick` at some time (none when there is no
    /// journal): see [`Journal::went_by`].
    pub fn went_by(&self, nick: &str) -> Vec<PeerId> {
        self.journal
            .as_ref()
            .map(|j| j.went_by(nick))
            .unwrap_or_default()
    }

    /// What [`Self::history`] reads, as a query to run off the event loop (see
    /// [`HistoryQuery::run`]). Call [`Self::sync`] first.
    ///
    /// # Errors
    /// [`HistoryError::Off`] when there is no journal (or writing it failed).
    pub fn history_query(
        &self,
        filter: &HistoryFilter,
        count: usize,
    ) -> Result<HistoryQuery, HistoryError> {
        let Some(journal) = self.journal.as_ref().filter(|_| !self.failed) else {
            return Err(HistoryError::Off);
        };
        Ok(journal.history_query(filter, count))
    }
}

/// When a message that arrived at `now_ms` (by our clock) was written, if it was `age` old.
pub fn written_ms(now_ms: i64, age: std::time::Duration) -> i64 {
    now_ms.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX))
}

/// The record of peer `p`, last heard at `heard_ms`.
fn peer_record(p: PeerInfo, heard_ms: i64) -> Record {
    Record::Peer {
        id: p.id,
        nick: p.nick,
        addrs: p.addrs,
        manual: p.found == Found::Manual,
        heard_ms,
        key: p.key,
    }
}

/// When `p` was last heard, by the wall clock (`now` and `now_ms` being the same moment).
pub fn heard_ms(p: &PeerInfo, now: std::time::Instant, now_ms: i64) -> i64 {
    let ago = now.saturating_duration_since(p.last_heard);
    written_ms(now_ms, ago)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{MessageId, PeerId};

    fn journal_in(dir: &std::path::Path) -> Journal {
        Journal::open(&dir.join("journal")).unwrap().0
    }

    #[test]
    fn heard_messages_and_deliveries_are_recorded_other_events_are_not() {
        let ep = crate::app::start::test_endpoint("alice");
        let heard = Event::Message {
            from: PeerId(2),
            nick: "bob".into(),
            id: MessageId(9),
            direct: true,
            text: "hi".into(),
            action: false,
            age: std::time::Duration::ZERO,
        };
        let recs = Persistence::records_for(&ep, &heard, 1234);
        assert!(matches!(
            &recs[..],
            [Record::Heard {
                at_ms: 1234,
                id: 9,
                direct: true,
                ..
            }]
        ));
        let delivered = Event::Delivered {
            to: PeerId(2),
            id: MessageId(5),
            late: false,
        };
        assert!(matches!(
            &Persistence::records_for(&ep, &delivered, 0)[..],
            [Record::Delivered { id: 5, .. }]
        ));
        let forgotten = Event::PeerForgotten {
            peer: PeerId(3),
            nick: "carol".into(),
            dropped: vec![MessageId(1), MessageId(2)],
            reason: crate::proto::ForgetReason::Room,
        };
        assert_eq!(Persistence::records_for(&ep, &forgotten, 0).len(), 2);
        let delayed = Event::DeliveryDelayed {
            to: PeerId(2),
            id: MessageId(5),
        };
        assert!(Persistence::records_for(&ep, &delayed, 0).is_empty());
    }

    #[test]
    fn an_ephemeral_peer_is_forgotten_in_the_journal_the_moment_it_leaves() {
        let ep = crate::app::start::test_endpoint("alice");
        let left = |ephemeral| Event::PeerLeft {
            peer: PeerId(4),
            nick: "bot".into(),
            queued: 0,
            ephemeral,
        };
        assert!(matches!(
            &Persistence::records_for(&ep, &left(true), 77)[..],
            [Record::Forgot {
                peer: PeerId(4),
                at_ms: 77
            }]
        ));
        // One that is not ephemeral is kept, to wait for its return.
        assert!(Persistence::records_for(&ep, &left(false), 77).is_empty());
    }

    #[test]
    fn history_reads_what_was_appended_and_synced() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Persistence::new(Some(journal_in(dir.path())));
        assert!(p.storing());
        let sent = Sent {
            id: MessageId(1),
            recipients: vec![PeerId(2)],
            refused: Vec::new(),
        };
        let rec = Persistence::said("alice", Recipients::Everyone, &sent, "hello", false, 0);
        assert_eq!(p.append(&rec), None);
        assert_eq!(p.sync(), None);
        let (lines, warnings) = p.history(&HistoryFilter::Group, 10).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].text, "hello");
    }

    #[test]
    fn a_read_only_journal_is_read_but_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let (mut writable, _) = Journal::open(&path).unwrap();
        let sent = Sent {
            id: MessageId(1),
            recipients: vec![PeerId(2)],
            refused: Vec::new(),
        };
        let said = Persistence::said("alice", Recipients::Everyone, &sent, "kept", false, 0);
        writable.append(&said).unwrap();
        writable.sync().unwrap();
        drop(writable);
        let before = std::fs::read(&path).unwrap();
        let (read_only, restored) = Journal::open_read_only(&path).unwrap();
        assert_eq!(restored.next_msg, 2);
        let mut p = Persistence::new(Some(read_only));
        assert!(!p.storing());
        assert_eq!(p.append(&said), None, "skipped quietly, not a failure");
        assert_eq!(p.sync(), None);
        let (lines, _) = p.history(&HistoryFilter::Group, 10).unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn without_a_journal_nothing_is_stored_and_history_says_so() {
        let mut p = Persistence::new(None);
        assert!(!p.storing());
        let rec = Record::Delivered {
            to: PeerId(1),
            id: 1,
        };
        assert_eq!(p.append(&rec), None);
        assert_eq!(p.sync(), None);
        assert!(matches!(
            p.history(&HistoryFilter::Group, 5),
            Err(HistoryError::Off)
        ));
    }
}
