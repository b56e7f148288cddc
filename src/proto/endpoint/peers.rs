//! The peer table: the peers we know, who may join it, and who is forgotten when it is full.
//!
//! Admission is what strangers cannot abuse: a peer we did not ask for costs a token from a
//! bucket refilled each second ([`TokenBucket`]), and a full table takes a newcomer only by
//! forgetting a peer that is not online (left, offline or unreachable): the one with nothing
//! queued heard from longest ago, else the one heard from longest ago (its queue is dropped and
//! the user told). An online peer is never pushed out. A forgotten peer's message-id watermark
//! is kept, so that if it comes back in this run it is not shown messages twice; restored peers
//! that found no room wait, dormant, until they say hello.

use crate::proto::ids::{MessageId, PeerId};
use crate::proto::link::{Link, LinkState};
use crate::proto::stats::LinkCounters;
use crate::proto::{Found, Limits, PeerInfo, RestoredPeer};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Evicted peers whose message-id watermark is remembered at most.
const MAX_FORGOTTEN: usize = 1024;
/// Addresses remembered per peer.
pub const MAX_ADDRS: usize = 4;
/// Things per second strangers can make us do (admit them, answer them, probe them), in a
/// burst of as many.
pub const STRANGER_TOKENS_PER_SEC: u32 = 10;

/// A peer's addresses: never empty, the one that last worked first, at most [`MAX_ADDRS`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addresses {
    /// The address that last worked: where datagrams go.
    current: SocketAddr,
    /// Older ones, most recent first.
    older: Vec<SocketAddr>,
}

impl Addresses {
    /// One address.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            current: addr,
            older: Vec::new(),
        }
    }

    /// The first [`MAX_ADDRS`] of `addrs`, or `None` if there are none.
    pub fn from_list(addrs: &[SocketAddr]) -> Option<Self> {
        let (&current, rest) = addrs.split_first()?;
        let mut a = Self::new(current);
        a.older = rest.iter().copied().take(MAX_ADDRS - 1).collect();
        Some(a)
    }

    /// Where datagrams go.
    pub fn current(&self) -> SocketAddr {
        self.current
    }

    /// All of them, the current one first.
    pub fn iter(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        std::iter::once(self.current).chain(self.older.iter().copied())
    }

    /// Makes `from` the current address (it is the one that last worked).
    pub fn note(&mut self, from: SocketAddr) {
        if self.current == from {
            return;
        }
        self.older.retain(|a| *a != from);
        self.older.insert(0, self.current);
        self.older.truncate(MAX_ADDRS - 1);
        self.current = from;
    }
}

/// A token bucket: `per_sec` tokens, all refilled once a second has passed since the last
/// refill.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    /// Tokens a refill gives.
    per_sec: u32,
    /// Tokens left.
    tokens: u32,
    /// When it was last refilled.
    since: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(per_sec: u32, now: Instant) -> Self {
        Self {
            per_sec,
            tokens: per_sec,
            since: now,
        }
    }

    /// Takes a token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.since) >= Duration::from_secs(1) {
            self.tokens = self.per_sec;
            self.since = now;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// A known peer. Its state (offline, online, unreachable, left) is its link's
/// ([`Link::state`]): the link runs most of the transitions (acks, timeouts, a leave), and
/// the endpoint the rest ([`Link::restart`] on a hello).
#[derive(Debug)]
pub struct Peer {
    /// Its nick.
    pub nick: String,
    /// The session its datagrams must carry.
    pub session: u64,
    /// Where it is.
    pub addrs: Addresses,
    /// How we found it.
    pub found: Found,
    /// When we last heard from it.
    pub last_heard: Instant,
    /// The capability bits of its latest hello in this run (`None`: not heard yet).
    pub caps: Option<u64>,
    /// The reliable link.
    pub link: Link,
    /// Link counters already added to the endpoint's statistics, so only the difference is
    /// added.
    pub counted: LinkCounters,
}

impl Peer {
    /// Where it stands.
    pub fn state(&self) -> LinkState {
        self.link.state()
    }

    /// Whether it is online (answering, and not gone).
    pub fn is_online(&self) -> bool {
        self.state() == LinkState::Online
    }

    /// A snapshot for the user interface.
    pub fn info(&self, id: PeerId) -> PeerInfo {
        PeerInfo {
            id,
            nick: self.nick.clone(),
            addrs: self.addrs.iter().collect(),
            found: self.found,
            last_heard: self.last_heard,
            rtt: self.link.srtt(),
            undelivered: self.link.undelivered(),
            state: self.state().into(),
        }
    }
}

/// A peer forgotten to make room, for [`crate::proto::Event::PeerForgotten`].
#[derive(Debug, PartialEq, Eq)]
pub struct Forgotten {
    /// Who.
    pub id: PeerId,
    /// Its nick.
    pub nick: String,
    /// Our messages that were waiting for it, now dropped.
    pub dropped: Vec<MessageId>,
}

/// Why a newcomer was not admitted (counted in [`crate::proto::Stats::table_full`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// A stranger, and the bucket is empty this second.
    NoToken,
    /// The table is full of peers that are online.
    Full,
}

/// The known peers, and what is remembered of the ones that are not in the table.
#[derive(Debug)]
pub struct PeerTable {
    /// Known peers.
    peers: BTreeMap<PeerId, Peer>,
    /// Peers at most, and the queue bound of their links.
    limits: Limits,
    /// Tokens for what strangers can make us do.
    strangers: TokenBucket,
    /// Restored peers not in the table (no address, or no room): applied when they say hello.
    dormant: BTreeMap<PeerId, RestoredPeer>,
    /// Message-id watermarks of peers evicted from the table, applied if they come back.
    forgotten: BTreeMap<PeerId, MessageId>,
}

impl PeerTable {
    /// An empty table at `now`.
    pub fn new(limits: Limits, now: Instant) -> Self {
        Self {
            peers: BTreeMap::new(),
            limits,
            strangers: TokenBucket::new(STRANGER_TOKENS_PER_SEC, now),
            dormant: BTreeMap::new(),
            forgotten: BTreeMap::new(),
        }
    }

    /// The peer `id`.
    pub fn get(&self, id: &PeerId) -> Option<&Peer> {
        self.peers.get(id)
    }

    /// The peer `id`, to change.
    pub fn get_mut(&mut self, id: &PeerId) -> Option<&mut Peer> {
        self.peers.get_mut(id)
    }

    /// Whether `id` is in the table.
    pub fn contains(&self, id: &PeerId) -> bool {
        self.peers.contains_key(id)
    }

    /// Every known peer's id, in id order.
    pub fn ids(&self) -> Vec<PeerId> {
        self.peers.keys().copied().collect()
    }

    /// Every known peer, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&PeerId, &Peer)> {
        self.peers.iter()
    }

    /// Every known peer, to change.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Peer> {
        self.peers.values_mut()
    }

    /// Takes a token for something a stranger asks of us; false if none is left this second.
    pub fn allow_stranger(&mut self, now: Instant) -> bool {
        self.strangers.take(now)
    }

    /// Decides whether a peer not in the table may join it: a stranger we did not `invite`
    /// costs a token, and a full table must make room (see the module documentation). On
    /// success the caller adds it with [`PeerTable::join`].
    ///
    /// # Errors
    /// [`Refused`] if it may not join now; a probe of ours, if any, stays to try again.
    pub fn admit(&mut self, now: Instant, invited: bool) -> Result<Option<Forgotten>, Refused> {
        if !invited && !self.allow_stranger(now) {
            return Err(Refused::NoToken);
        }
        if self.peers.len() < self.limits.max_peers {
            return Ok(None);
        }
        let victim = self
            .peers
            .iter()
            .filter(|(_, p)| !p.is_online())
            .min_by_key(|(_, p)| (p.link.undelivered() > 0, p.last_heard))
            .map(|(&id, _)| id);
        let (id, p) = victim
            .and_then(|id| self.peers.remove(&id).map(|p| (id, p)))
            .ok_or(Refused::Full)?;
        // Should it come back in this run, it must not be shown again what it has seen.
        if self.forgotten.len() >= MAX_FORGOTTEN {
            self.forgotten.pop_first();
        }
        self.forgotten.insert(id, p.link.delivered_through());
        Ok(Some(Forgotten {
            id,
            nick: p.nick,
            dropped: p.link.pending_ids(),
        }))
    }

    /// The peer `id`, added (offline, until its hello is handled) if it is not known yet,
    /// with what is remembered of it: its watermark if it was forgotten, its outbox if it was
    /// dormant.
    pub fn join(
        &mut self,
        now: Instant,
        id: PeerId,
        nick: &str,
        session: u64,
        from: SocketAddr,
        found: Found,
    ) -> &mut Peer {
        let max_queued_items = self.limits.max_queued_items;
        let forgotten = &mut self.forgotten;
        let dormant = &mut self.dormant;
        self.peers.entry(id).or_insert_with(|| {
            let mut link = Link::new(now, max_queued_items);
            if let Some(shown) = forgotten.remove(&id) {
                link.set_delivered_through(shown);
            }
            if let Some(r) = dormant.remove(&id) {
                link.set_delivered_through(r.delivered_through);
                for (msg, direct, text) in &r.outbox {
                    link.requeue_message(now, *msg, *direct, text);
                }
            }
            Peer {
                nick: nick.to_owned(),
                session,
                addrs: Addresses::new(from),
                found,
                last_heard: now,
                caps: None,
                link,
                counted: LinkCounters::default(),
            }
        })
    }

    /// Takes in the peers storage remembers (see [`crate::proto::Endpoint::restore`]): the ones
    /// that matter most first (messages waiting for them, then added by hand) while there is
    /// room, offline; the rest, and those with no address, wait dormant until they say hello.
    /// Returns the addresses to contact, with why: every address of a peer added by hand or
    /// with messages waiting.
    pub fn restore(
        &mut self,
        now: Instant,
        me: PeerId,
        mut peers: Vec<RestoredPeer>,
    ) -> Vec<(SocketAddr, Found)> {
        peers.sort_by_key(|r| (r.outbox.is_empty(), !r.manual));
        let room = self.limits.max_peers.saturating_sub(self.peers.len());
        let mut contact = Vec::new();
        for (i, r) in peers.into_iter().enumerate() {
            if r.id == me {
                continue;
            }
            let addrs = match Addresses::from_list(&r.addrs) {
                Some(addrs) if i < room => addrs,
                // Nowhere to contact it, or no room: applied when it contacts us.
                _ => {
                    self.dormant.insert(r.id, r);
                    continue;
                }
            };
            let mut link = Link::new(now, self.limits.max_queued_items);
            link.set_delivered_through(r.delivered_through);
            for (msg, direct, text) in &r.outbox {
                // Whole and without gaps: an earlier run accepted these, so the bound does not
                // apply (a gap would let the receiver's watermark swallow the missing one).
                link.requeue_message(now, *msg, *direct, text);
            }
            let found = if r.manual {
                Found::Manual
            } else {
                Found::Learned
            };
            if r.manual || !r.outbox.is_empty() {
                contact.extend(addrs.iter().map(|a| (a, found)));
            }
            self.peers.insert(
                r.id,
                Peer {
                    nick: r.nick,
                    session: 0,
                    addrs,
                    found,
                    last_heard: now,
                    caps: None,
                    link,
                    counted: LinkCounters::default(),
                },
            );
        }
        contact
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::wire::Frame;

    const SEC: Duration = Duration::from_secs(1);

    fn addr(i: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, i], 7654))
    }

    fn table(max_peers: usize, now: Instant) -> PeerTable {
        let limits = Limits {
            max_peers,
            ..Limits::default()
        };
        PeerTable::new(limits, now)
    }

    /// Adds peer `id` (admitted already), online, heard at `now`.
    fn join_online(t: &mut PeerTable, now: Instant, id: u8) -> &mut Peer {
        let p = t.join(now, PeerId(id.into()), "p", 1, addr(id), Found::Incoming);
        p.link.restart(now, false);
        p
    }

    /// Admits and adds peer `id`, online, heard at `now`.
    fn online(t: &mut PeerTable, now: Instant, id: u8) -> &mut Peer {
        assert_eq!(t.admit(now, true), Ok(None), "room");
        join_online(t, now, id)
    }

    /// Makes a peer's link receive a leave.
    fn leave(p: &mut Peer, now: Instant) {
        let mut out = Vec::new();
        p.link.on_datagram(now, 0, vec![Frame::Leave], &mut out);
        assert_eq!(p.state(), LinkState::Left);
    }

    #[test]
    fn the_bucket_gives_its_tokens_then_waits_a_second() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(3, t0);
        assert!((0..3).all(|_| b.take(t0)));
        assert!(!b.take(t0 + SEC / 2));
        assert!(b.take(t0 + SEC));
        assert!(b.take(t0 + SEC) && b.take(t0 + SEC));
        assert!(
            !b.take(t0 + SEC * 3 / 2),
            "refilled at 1 s, not topped up since"
        );
    }

    #[test]
    fn addresses_keep_the_last_that_worked_first_and_are_bounded() {
        let mut a = Addresses::new(addr(1));
        for i in 2..=6 {
            a.note(addr(i));
        }
        a.note(addr(4));
        let all: Vec<SocketAddr> = a.iter().collect();
        assert_eq!(all, vec![addr(4), addr(6), addr(5), addr(3)]);
        assert_eq!(a.current(), addr(4));
        assert_eq!(Addresses::from_list(&[]), None);
        let many: Vec<SocketAddr> = (1..=9).map(addr).collect();
        assert_eq!(
            Addresses::from_list(&many).unwrap().iter().count(),
            MAX_ADDRS
        );
    }

    #[test]
    fn strangers_are_admitted_a_few_a_second() {
        let t0 = Instant::now();
        let mut t = table(100, t0);
        let admitted = (0..50).filter(|_| t.admit(t0, false).is_ok()).count();
        assert_eq!(admitted, STRANGER_TOKENS_PER_SEC as usize);
        assert_eq!(t.admit(t0, false), Err(Refused::NoToken));
        assert_eq!(
            t.admit(t0, true),
            Ok(None),
            "a peer we invited costs no token"
        );
        assert_eq!(t.admit(t0 + SEC, false), Ok(None));
    }

    #[test]
    fn a_table_full_of_online_peers_refuses_newcomers() {
        let t0 = Instant::now();
        let mut t = table(3, t0);
        for id in 1..=3 {
            online(&mut t, t0, id);
        }
        assert_eq!(t.admit(t0, true), Err(Refused::Full));
        assert_eq!(t.ids().len(), 3);
    }

    #[test]
    fn eviction_prefers_a_departed_peer_with_nothing_queued_heard_from_longest_ago() {
        let t0 = Instant::now();
        let mut t = table(4, t0);
        online(&mut t, t0, 1);
        // Left long ago, but with a message waiting.
        let p = online(&mut t, t0, 2);
        p.link
            .queue_message(t0, MessageId(7), false, "wait")
            .unwrap();
        leave(p, t0);
        // Left later, nothing waiting: this one goes first.
        let p = online(&mut t, t0 + SEC, 3);
        p.link.set_delivered_through(MessageId(42));
        leave(p, t0 + SEC);
        // Left last, nothing waiting.
        let p = online(&mut t, t0 + SEC * 2, 4);
        leave(p, t0 + SEC * 2);
        let now = t0 + SEC * 3;
        let first = t.admit(now, true).unwrap().unwrap();
        assert_eq!((first.id, first.dropped), (PeerId(3), vec![]));
        join_online(&mut t, now, 5);
        let second = t.admit(now, true).unwrap().unwrap();
        assert_eq!(second.id, PeerId(4));
        join_online(&mut t, now, 6);
        let third = t.admit(now, true).unwrap().unwrap();
        assert_eq!(
            (third.id, third.dropped),
            (PeerId(2), vec![MessageId(7)]),
            "then the one with a queue: it is dropped, and the caller tells the user"
        );
        // Peer 3 comes back: it is not shown again what it saw before it was forgotten.
        let back = t.join(now, PeerId(3), "p3", 2, addr(3), Found::Incoming);
        assert_eq!(back.link.delivered_through(), MessageId(42));
    }

    #[test]
    fn an_unreachable_or_offline_peer_can_be_evicted_but_an_online_one_cannot() {
        let t0 = Instant::now();
        let mut t = table(2, t0);
        online(&mut t, t0, 1);
        t.admit(t0, true).unwrap();
        t.join(t0, PeerId(2), "p2", 1, addr(2), Found::Incoming); // never restarted: offline
        let evicted = t.admit(t0, true).unwrap().unwrap();
        assert_eq!(evicted.id, PeerId(2));
        // Now make peer 3 unreachable: a message it never acknowledges.
        t.join(t0, PeerId(3), "p3", 1, addr(3), Found::Incoming)
            .link
            .restart(t0, false);
        let p = t.get_mut(&PeerId(3)).unwrap();
        p.link
            .queue_message(t0, MessageId(1), false, "hello?")
            .unwrap();
        let header = crate::proto::wire::Header {
            sender: PeerId(0),
            session: 1,
            packet: 0,
        };
        let mut now = t0;
        while p.state() == LinkState::Online {
            while p.link.poll_datagram(now, header, 1).is_some() {}
            now = p.link.next_timeout().unwrap();
            p.link.on_timeout(now, &mut Vec::new());
        }
        assert!(p.link.is_unreachable());
        let evicted = t.admit(now, true).unwrap().unwrap();
        assert_eq!(
            (evicted.id, evicted.dropped),
            (PeerId(3), vec![MessageId(1)])
        );
        join_online(&mut t, now, 4);
        assert_eq!(t.admit(now, true), Err(Refused::Full), "both are online");
    }

    #[test]
    fn restore_ranks_peers_and_keeps_the_rest_dormant() {
        let t0 = Instant::now();
        // Three places: a peer with nowhere to contact it takes one (as it always has).
        let mut t = table(3, t0);
        let restored = |id: u64, manual: bool, outbox: bool, addrs: Vec<SocketAddr>| RestoredPeer {
            id: PeerId(id),
            nick: format!("p{id}"),
            addrs,
            manual,
            delivered_through: MessageId(id),
            outbox: if outbox {
                vec![(MessageId(100 + id), false, "waiting".into())]
            } else {
                vec![]
            },
        };
        let contact = t.restore(
            t0,
            PeerId(99),
            vec![
                restored(1, false, false, vec![addr(1)]),
                restored(2, true, false, vec![addr(2), addr(22)]),
                restored(3, false, true, vec![addr(3)]),
                restored(4, false, true, vec![]),
            ],
        );
        assert_eq!(t.ids(), vec![PeerId(2), PeerId(3)]);
        assert!(t.iter().all(|(_, p)| p.state() == LinkState::Offline));
        assert_eq!(
            contact,
            vec![
                (addr(3), Found::Learned),
                (addr(2), Found::Manual),
                (addr(22), Found::Manual)
            ]
        );
        // A dormant peer brings its outbox and watermark along when it says hello.
        let four = t.join(t0, PeerId(4), "p4", 1, addr(4), Found::Incoming);
        assert_eq!(four.link.undelivered(), 1);
        assert_eq!(four.link.delivered_through(), MessageId(4));
    }
}
