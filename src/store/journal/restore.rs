//! The restart summary: what the records of a journal mean for a program starting again.

use super::view::{string, RecordView};
use super::{HistoryLine, Record};
use crate::proto::PeerId;
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::SocketAddr;

/// The sender under which [`super::Record::Shown`] marks our own lines shown: no peer's id is
/// 0 (ids are the first 8 bytes of a hash of the peer's key). A journal with no such mark was
/// written by a version that did not mark them, and none of its lines of ours is replayed.
pub const OWN_LINES: PeerId = PeerId(0);

/// One of our messages still on its way to one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// Our message id.
    pub id: u64,
    /// Whether it was a direct message (to this recipient only).
    pub direct: bool,
    /// An action (`/me`).
    pub action: bool,
    /// What we wrote.
    pub text: String,
    /// When we first sent it, in milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// A message heard that may never have reached the screen (heard, acknowledged, then a crash
/// before it was written), or one of ours sent but never echoed (`from` is [`OWN_LINES`]):
/// shown at the next start.
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
    /// When it was last heard from, in milliseconds since the Unix epoch (the latest of its
    /// `Peer` records and the messages heard from it); 0 if not known.
    pub heard_ms: i64,
    /// The key it proved, as last recorded.
    pub key: Option<crate::proto::PublicKey>,
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
    /// The last [`Record::Peer`] written for each peer, but for peers forgotten since.
    pub peers: BTreeMap<PeerId, PeerRecord>,
    /// Our away reason as last recorded (`None`: here).
    pub away: Option<String>,
    /// Peers forgotten (a [`Record::Forgot`] with no [`Record::Peer`] after it): not to be
    /// known again, though what was heard from them stays in history.
    pub forgotten: std::collections::BTreeSet<PeerId>,
    /// What was wrong with the file (skipped records, a truncated tail), one line each, for the
    /// user to see.
    pub warnings: Vec<String>,
    /// How many records were read.
    pub records: usize,
}

impl Restored {
    /// The summary of an empty journal.
    pub(super) fn default_empty() -> Restored {
        Restored {
            next_msg: 1,
            ..Restored::default()
        }
    }
}

/// The restart summary of `records`, read in file order.
#[cfg(test)]
pub(super) fn summarize(records: &[Record]) -> Restored {
    let mut s = Summarizer::default();
    for (at, r) in records.iter().enumerate() {
        let payload = postcard::to_allocvec(r).unwrap();
        s.add(&super::view::decode(&payload).unwrap(), at as u64);
    }
    s.finish(|at| Ok(records[at as usize].clone())).unwrap()
}

/// One of our messages waiting for recipients, until the summary is finished.
#[derive(Clone, Debug)]
struct Waiting {
    /// Where its `Said` record starts, to read its text again at the end.
    at: u64,
    /// When it was sent.
    at_ms: i64,
    /// Whether it was direct.
    direct: bool,
    /// The recipients that have neither acknowledged nor refused it.
    to: Vec<PeerId>,
}

/// A message heard and not yet shown, until the summary is finished.
#[derive(Clone, Copy, Debug)]
struct NotShown {
    /// Its position among the records, to give them back in the order heard.
    seq: usize,
    /// Its id.
    id: u64,
    /// Where its `Heard` record starts, to read it again at the end.
    at: u64,
}

/// Builds the restart summary one record at a time, in file order, holding only what the
/// summary needs: where the few records it will show or send again are, not the records (it
/// reads those again at the end, see [`Summarizer::finish`]), so that opening a large journal
/// costs neither a copy of every message nor the memory for it.
#[derive(Debug, Default)]
pub(super) struct Summarizer {
    /// The highest id of ours in a `Said` record.
    max_said: u64,
    /// The next id a [`Record::Compacted`] carried over (its `Said` records may be gone).
    compacted_next: u64,
    /// See [`Restored::delivered_from`].
    delivered_from: BTreeMap<PeerId, u64>,
    /// By id, our messages that some recipient has neither acknowledged nor refused (ids
    /// grow, so a new one goes at the end of the map, cheaply).
    outbox: BTreeMap<u64, Waiting>,
    /// See [`Restored::peers`].
    peers: BTreeMap<PeerId, PeerRecord>,
    /// A [`Record::Opened`] was read: messages heard from here on are tracked until shown.
    tracking: bool,
    /// See [`Restored::last_session`].
    last_session: u64,
    /// See [`Restored::last_nick`].
    last_nick: Option<String>,
    /// See [`Restored::away`].
    away: Option<String>,
    /// See [`Restored::forgotten`].
    forgotten: std::collections::BTreeSet<PeerId>,
    /// The latest arrival of a message per sender, for [`PeerRecord::heard_ms`].
    heard_ms: BTreeMap<PeerId, i64>,
    /// Tracked messages not yet covered by a [`Record::Shown`], per sender, in the order heard.
    heard: BTreeMap<PeerId, VecDeque<NotShown>>,
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

    /// Takes the next record in file order, which starts at offset `at`.
    pub(super) fn add(&mut self, record: &RecordView<'_>, at: u64) {
        let seq = self.records;
        self.records += 1;
        match record {
            RecordView::Opened { session, nick, .. } => {
                self.tracking = true;
                self.last_session = self.last_session.max(*session);
                self.last_nick = Some(super::view::string(nick));
            }
            RecordView::Shown { from, id } => {
                let through = self.shown.entry(*from).or_insert(*id);
                *through = (*through).max(*id);
                let through = *through;
                if let Some(waiting) = self.heard.get_mut(from) {
                    // Ids grow in the order heard, so what is covered is at the front; any
                    // straggler is filtered out in `finish`.
                    while waiting.front().is_some_and(|n| n.id <= through) {
                        waiting.pop_front();
                    }
                    if waiting.is_empty() {
                        self.heard.remove(from);
                    }
                }
            }
            RecordView::Said {
                at_ms,
                id,
                nick,
                direct_to,
                recipients,
                ..
            } => {
                self.max_said = self.max_said.max(*id);
                self.last_nick = Some(super::view::string(nick));
                let mut to = recipients.clone();
                to.sort_unstable();
                to.dedup();
                // Tracked until echoed, as a message heard is until shown.
                let covered = self
                    .shown
                    .get(&OWN_LINES)
                    .is_some_and(|through| id <= through);
                if self.tracking && !covered {
                    let n = NotShown { seq, id: *id, at };
                    self.heard.entry(OWN_LINES).or_default().push_back(n);
                }
                // A second record with the same id (no version writes one) replaces the first.
                self.outbox.insert(
                    *id,
                    Waiting {
                        at,
                        at_ms: *at_ms,
                        direct: direct_to.is_some(),
                        to,
                    },
                );
            }
            RecordView::Heard {
                from, id, at_ms, ..
            } => {
                let heard = self.heard_ms.entry(*from).or_insert(*at_ms);
                *heard = (*heard).max(*at_ms);
                let highest = self.delivered_from.entry(*from).or_insert(*id);
                *highest = (*highest).max(*id);
                let covered = self.shown.get(from).is_some_and(|through| id <= through);
                if self.tracking && !covered {
                    let n = NotShown { seq, id: *id, at };
                    self.heard.entry(*from).or_default().push_back(n);
                }
            }
            RecordView::Delivered { to, id } | RecordView::Dropped { to, id } => {
                if let Some(w) = self.outbox.get_mut(id) {
                    w.to.retain(|p| p != to);
                    if w.to.is_empty() {
                        self.outbox.remove(id);
                    }
                }
            }
            RecordView::Peer {
                id,
                nick,
                addrs,
                manual,
                heard_ms,
                key,
            } => {
                self.forgotten.remove(id);
                let (before, known_key) = self
                    .peers
                    .get(id)
                    .map_or((0, None), |p| (p.heard_ms, p.key));
                self.peers.insert(
                    *id,
                    PeerRecord {
                        nick: string(nick),
                        addrs: addrs.clone(),
                        manual: *manual,
                        heard_ms: before.max(*heard_ms),
                        key: key.or(known_key),
                    },
                );
            }
            RecordView::Received { from, through } => {
                let highest = self.delivered_from.entry(*from).or_insert(*through);
                *highest = (*highest).max(*through);
            }
            RecordView::Compacted { next_msg, .. } => {
                self.compacted_next = self.compacted_next.max(*next_msg);
            }
            RecordView::Forgot { peer, .. } => {
                self.peers.remove(peer);
                self.forgotten.insert(*peer);
                self.outbox.retain(|_, w| {
                    w.to.retain(|p| p != peer);
                    !w.to.is_empty()
                });
            }
            RecordView::Away { reason } => {
                self.away = reason.map(string);
            }
        }
    }

    /// The summary of every record added; `read_at(offset)` reads again the record at an
    /// offset given to [`Summarizer::add`], for the texts of the messages to send or show.
    ///
    /// # Errors
    /// Reading a record again failed.
    pub(super) fn finish(
        self,
        mut read_at: impl FnMut(u64) -> io::Result<Record>,
    ) -> io::Result<Restored> {
        let shown = self.shown;
        let mut not_shown: Vec<(PeerId, NotShown)> = self
            .heard
            .into_iter()
            .flat_map(|(from, waiting)| waiting.into_iter().map(move |n| (from, n)))
            .filter(|(from, n)| match shown.get(from) {
                Some(through) => n.id > *through,
                // Ours are tracked only in a journal that marks them (see `OWN_LINES`).
                None => *from != OWN_LINES,
            })
            .collect();
        not_shown.sort_by_key(|(_, n)| n.seq);
        let mut unshown = Vec::with_capacity(not_shown.len());
        for (from, n) in not_shown {
            let line = match read_at(n.at)? {
                Record::Heard {
                    written_ms,
                    nick,
                    direct,
                    text,
                    action,
                    ..
                } => HistoryLine {
                    at_ms: written_ms,
                    nick,
                    from: Some(from),
                    to: None,
                    direct,
                    text,
                    action,
                },
                Record::Said {
                    at_ms,
                    nick,
                    direct_to,
                    text,
                    action,
                    ..
                } => HistoryLine {
                    at_ms,
                    nick,
                    from: None,
                    // The recipient as last recorded, or its id.
                    to: direct_to.map(|to| {
                        self.peers
                            .get(&to)
                            .map_or_else(|| to.to_string(), |p| p.nick.clone())
                    }),
                    direct: direct_to.is_some(),
                    text,
                    action,
                },
                _ => continue,
            };
            unshown.push(Unshown {
                from,
                id: n.id,
                line,
            });
        }
        let mut outbox: BTreeMap<PeerId, Vec<Outgoing>> = BTreeMap::new();
        for (id, w) in self.outbox {
            // Read once, however many recipients wait for it.
            let (text, action) = match read_at(w.at)? {
                Record::Said { text, action, .. } => (text, action),
                _ => (String::new(), false),
            };
            for to in w.to {
                outbox.entry(to).or_default().push(Outgoing {
                    id,
                    direct: w.direct,
                    action,
                    text: text.clone(),
                    at_ms: w.at_ms,
                });
            }
        }
        let mut peers = self.peers;
        for (id, p) in &mut peers {
            if let Some(heard) = self.heard_ms.get(id) {
                p.heard_ms = p.heard_ms.max(*heard);
            }
        }
        Ok(Restored {
            next_msg: self.max_said.saturating_add(1).max(self.compacted_next),
            delivered_from: self.delivered_from,
            outbox,
            unshown,
            peers,
            away: self.away,
            forgotten: self.forgotten,
            last_session: self.last_session,
            last_nick: self.last_nick,
            warnings: Vec::new(),
            records: self.records,
        })
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
            action: false,
            written_ms: 0,
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
            nick: "alice".into(),
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

#[cfg(test)]
mod presence_tests {
    use super::*;

    fn peer(id: u64, heard_ms: i64) -> Record {
        Record::Peer {
            id: PeerId(id),
            nick: format!("p{id}"),
            addrs: vec!["192.0.2.1:7654".parse().unwrap()],
            manual: false,
            heard_ms,
            key: (id == 1).then_some(crate::proto::PublicKey([1; 32])),
        }
    }

    #[test]
    fn a_peers_key_is_remembered_even_past_a_record_without_one() {
        let without = Record::Peer {
            id: PeerId(1),
            nick: "p1".into(),
            addrs: vec![],
            manual: false,
            heard_ms: 0,
            key: None,
        };
        let r = summarize(&[peer(1, 0), without]);
        assert_eq!(
            r.peers[&PeerId(1)].key,
            Some(crate::proto::PublicKey([1; 32]))
        );
    }

    fn said_to(id: u64, to: &[u64]) -> Record {
        Record::Said {
            at_ms: 0,
            id,
            nick: "me".into(),
            direct_to: None,
            recipients: to.iter().map(|p| PeerId(*p)).collect(),
            text: format!("m{id}"),
            action: id == 2,
        }
    }

    #[test]
    fn the_latest_away_holds() {
        let away = |r: Option<&str>| Record::Away {
            reason: r.map(str::to_owned),
        };
        assert_eq!(summarize(&[]).away, None);
        assert_eq!(
            summarize(&[away(Some("lunch")), away(None), away(Some(""))]).away,
            Some(String::new())
        );
        assert_eq!(summarize(&[away(Some("lunch")), away(None)]).away, None);
    }

    #[test]
    fn a_forgotten_peer_is_not_known_and_nothing_waits_for_it_until_it_comes_back() {
        let forgot = Record::Forgot {
            peer: PeerId(1),
            at_ms: 5,
        };
        let r = summarize(&[
            peer(1, 100),
            peer(2, 0),
            said_to(1, &[1, 2]),
            said_to(2, &[1]),
            forgot.clone(),
        ]);
        assert!(!r.peers.contains_key(&PeerId(1)));
        assert!(r.forgotten.contains(&PeerId(1)));
        assert!(!r.outbox.contains_key(&PeerId(1)));
        let to_2: Vec<u64> = r.outbox[&PeerId(2)].iter().map(|o| o.id).collect();
        assert_eq!(to_2, [1], "message 2 was for the forgotten peer alone");
        assert_eq!(r.next_msg, 3, "ids still continue after it");
        // It came back: known again.
        let back = summarize(&[peer(1, 100), forgot, peer(1, 200)]);
        assert_eq!(back.peers[&PeerId(1)].heard_ms, 200);
        assert!(back.forgotten.is_empty());
    }

    #[test]
    fn an_action_waiting_in_the_outbox_stays_an_action() {
        let r = summarize(&[peer(1, 0), said_to(2, &[1])]);
        assert!(r.outbox[&PeerId(1)][0].action);
    }

    #[test]
    fn a_peer_is_heard_when_its_last_message_arrived_whatever_the_record_order() {
        let heard = |at_ms| Record::Heard {
            at_ms,
            from: PeerId(1),
            nick: "p1".into(),
            id: 1,
            direct: false,
            text: "hi".into(),
            action: false,
            written_ms: at_ms,
        };
        let before = summarize(&[heard(300), peer(1, 100)]);
        let after = summarize(&[peer(1, 100), heard(300)]);
        assert_eq!(before.peers[&PeerId(1)].heard_ms, 300);
        assert_eq!(after.peers[&PeerId(1)].heard_ms, 300);
    }
}
