//! The peer table: the peers we know, who may join it, and who is forgotten when it is full.
//!
//! Only a peer that proved its key at an address (see `handshake`) is ever added, so nothing
//! here is spent on anyone who never showed it receives where it claims. Even so the table is
//! bounded: a full table takes a newcomer only by forgetting a peer that is neither waiting for
//! our messages nor heard in the last day ([`PROTECTED_AFTER_HEARD`]) — the one heard longest ago
//! — and one IP address holds at most [`Limits::max_peers_per_ip`] peers the user did not add,
//! so a host answering on many ports cannot fill it. A forgotten peer's message-id watermark (and
//! key) is kept, so that if it comes back in this run it is not shown messages twice; restored
//! peers that found no room wait, dormant, until they prove themselves.

use crate::proto::identity::PublicKey;
use crate::proto::ids::{MessageId, PeerId};
use crate::proto::link::{Link, LinkState};
use crate::proto::stats::LinkCounters;
use crate::proto::{Found, Limits, PeerInfo, RestoredPeer, PROTECTED_AFTER_HEARD};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

/// Evicted peers whose message-id watermark is remembered at most.
const MAX_FORGOTTEN: usize = 1024;
/// Addresses remembered per peer.
pub const MAX_ADDRS: usize = 4;

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

/// A known peer. Its state (offline, online, unreachable, left) is its link's
/// ([`Link::state`]): the link runs most of the transitions (acks, timeouts, a leave), and
/// the endpoint the rest ([`Link::restart`] on a proof).
#[derive(Debug)]
pub struct Peer {
    /// Its nick.
    pub nick: String,
    /// Its public key, pinned once proven (or restored): another key is never taken for this
    /// PeerId. `None` only for a peer restored without one, until it proves itself.
    pub key: Option<PublicKey>,
    /// The session its datagrams must carry (0 until it proves itself in this run).
    pub session: u64,
    /// Where it is known to be (shown, stored, probed again), the one in use first.
    pub addrs: Addresses,
    /// The addresses its current session proved itself from: its datagrams are taken from
    /// these alone. Empty until it proves itself in this run.
    pub proven: Vec<SocketAddr>,
    /// How we found it.
    pub found: Found,
    /// When we last heard from it (for a restored peer: as the journal says, else when it was
    /// restored), for `/peers`.
    pub last_heard: Instant,
    /// The capability bits of its latest proof in this run (`None`: not heard yet).
    pub caps: Option<u64>,
    /// Away (with its reason) or here, as its current session last said.
    pub away: Option<String>,
    /// When we last heard from it, as far as we know (`None`: restored and never heard in this
    /// run, with no stored time): a peer heard in the last day is never evicted.
    pub heard_at: Option<Instant>,
    /// The reliable link.
    pub link: Link,
    /// Link counters already added to the endpoint's statistics, so only the difference is
    /// added.
    pub counted: LinkCounters,
    /// When it last joined (came online from away) in this run: a peer list naming it soon
    /// after shows it as learned, one much later does not change how it was found.
    pub joined_at: Option<Instant>,
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

    /// Whether its current session proved itself from `addr`.
    pub fn proven_at(&self, addr: SocketAddr) -> bool {
        self.proven.contains(&addr)
    }

    /// Its current session proved itself from `addr` (a new session forgets the addresses the
    /// old one proved).
    pub fn prove(&mut self, addr: SocketAddr, new_session: bool) {
        if new_session {
            self.proven.clear();
        }
        if !self.proven.contains(&addr) {
            if self.proven.len() >= MAX_ADDRS {
                self.proven.remove(0);
            }
            self.proven.push(addr);
        }
        self.addrs.note(addr);
    }

    /// It was heard from (a datagram its link took, or a proof) at `now`.
    pub fn heard(&mut self, now: Instant) {
        self.last_heard = now;
        self.heard_at = Some(now);
    }

    /// Whether it said it is ephemeral.
    pub fn is_ephemeral(&self) -> bool {
        self.caps
            .is_some_and(|c| c & crate::proto::wire::caps::EPHEMERAL != 0)
    }

    /// Whether it ever wrote us a message that we showed (in this run or an earlier one: its
    /// watermark says so, kept through restarts and evictions), or was added by the user. A
    /// peer that only ever acknowledged ours does not count: an identity made to hold a place
    /// acknowledges as cheaply as it proves itself.
    pub fn engaged(&self) -> bool {
        self.found == Found::Manual || self.link.delivered_through() > MessageId(0)
    }

    /// Whether it must stay: messages of ours wait for it, or it was heard in the last day —
    /// for a peer that is not [`Peer::engaged`], only that it was heard in the last
    /// [`crate::proto::UNENGAGED_PROTECTED_AFTER_HEARD`].
    pub fn protected(&self, now: Instant) -> bool {
        let heard_within = |d| {
            self.heard_at
                .is_some_and(|t| now.saturating_duration_since(t) < d)
        };
        if !self.engaged() {
            return heard_within(crate::proto::UNENGAGED_PROTECTED_AFTER_HEARD);
        }
        self.link.undelivered() > 0 || heard_within(PROTECTED_AFTER_HEARD)
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
            away: self.away.clone(),
            ephemeral: self
                .caps
                .is_some_and(|c| c & crate::proto::wire::caps::EPHEMERAL != 0),
            key: self.key,
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
    /// Our messages that were waiting for it, now dropped (none when it was evicted: a peer
    /// with messages waiting never is).
    pub dropped: Vec<MessageId>,
}

/// Why a newcomer was not admitted (counted in [`crate::proto::Stats::table_full`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Its IP address already holds as many peers as one may.
    AddressFull,
    /// The table is full of peers that must stay.
    Full,
}

/// What is remembered of a peer evicted from the table.
#[derive(Debug, Clone, Copy)]
struct Remembered {
    /// The highest message id shown from it.
    shown: MessageId,
    /// Its key, if it was known.
    key: Option<PublicKey>,
}

/// The known peers, and what is remembered of the ones that are not in the table.
#[derive(Debug)]
pub struct PeerTable {
    /// Known peers.
    peers: BTreeMap<PeerId, Peer>,
    /// Peers at most, per IP address, and the queue bound of their links.
    limits: Limits,
    /// Restored peers not in the table (no address, or no room): applied when they prove
    /// themselves.
    dormant: BTreeMap<PeerId, RestoredPeer>,
    /// What is kept of peers evicted from the table, applied if they come back.
    forgotten: BTreeMap<PeerId, Remembered>,
    /// Peers changed (handed out mutably) since the endpoint last drove them: their links may
    /// have something to send, or a new timer.
    dirty: BTreeSet<PeerId>,
    /// The next timer of each peer that is not dirty (none: no entry). With `dirty`, this lets
    /// the endpoint drive only the peers that have work, instead of every peer on every input:
    /// what a table of hundreds of peers needs.
    timers: BTreeMap<PeerId, Instant>,
    /// The same timers ordered by time, so that the due ones and the earliest are found
    /// without looking at every peer (each datagram in and every wake-up asks).
    by_time: BTreeSet<(Instant, PeerId)>,
    /// Counts changes to who is in the table and what they are called (see
    /// [`PeerTable::roster_version`]).
    roster: u64,
}

impl PeerTable {
    /// An empty table.
    pub fn new(limits: Limits) -> Self {
        Self {
            peers: BTreeMap::new(),
            limits,
            dormant: BTreeMap::new(),
            forgotten: BTreeMap::new(),
            dirty: BTreeSet::new(),
            timers: BTreeMap::new(),
            by_time: BTreeSet::new(),
            roster: 0,
        }
    }

    /// A number that changes whenever a peer enters or leaves the table, and whenever the
    /// endpoint says a peer joined, left, was renamed or forgotten (it calls
    /// [`PeerTable::roster_changed`]): what is computed from the peers' names and presence
    /// (the names that tell peers apart) is still good while this stays the same.
    pub fn roster_version(&self) -> u64 {
        self.roster
    }

    /// Notes a change of the peers' names or presence (see [`PeerTable::roster_version`]).
    pub fn roster_changed(&mut self) {
        self.roster = self.roster.wrapping_add(1);
    }

    /// The peer `id`.
    pub fn get(&self, id: &PeerId) -> Option<&Peer> {
        self.peers.get(id)
    }

    /// The peer `id`, to change (so it is driven at the next [`PeerTable::due`]).
    pub fn get_mut(&mut self, id: &PeerId) -> Option<&mut Peer> {
        let p = self.peers.get_mut(id)?;
        self.dirty.insert(*id);
        Some(p)
    }

    /// Whether `id` is in the table.
    pub fn contains(&self, id: &PeerId) -> bool {
        self.peers.contains_key(id)
    }

    /// How many peers are in the table.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Restored peers waiting outside the table, and evicted peers whose watermark is kept.
    pub fn remembered(&self) -> (usize, usize) {
        (self.dormant.len(), self.forgotten.len())
    }

    /// Every known peer's id, in id order.
    pub fn ids(&self) -> Vec<PeerId> {
        self.peers.keys().copied().collect()
    }

    /// Every known peer, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&PeerId, &Peer)> {
        self.peers.iter()
    }

    /// Sets every link's keepalive interval for the number of peers online
    /// ([`crate::proto::keepalive_interval`]); a link whose interval changes is driven again.
    pub fn set_keepalives(&mut self) {
        let online = self.peers.values().filter(|p| p.is_online()).count();
        let keepalive = crate::proto::keepalive_interval(online);
        for (id, peer) in &mut self.peers {
            if peer.link.set_keepalive(keepalive) {
                self.dirty.insert(*id);
            }
        }
    }

    /// Every known peer, to change.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Peer> {
        self.dirty.extend(self.peers.keys().copied());
        self.peers.values_mut()
    }

    /// The peers the endpoint must drive at `now`, in id order: those changed since, and those
    /// whose timer is due.
    pub fn due(&self, now: Instant) -> Vec<PeerId> {
        let timed = self
            .by_time
            .iter()
            .take_while(|(t, _)| *t <= now)
            .map(|(_, id)| *id);
        let mut ids: BTreeSet<PeerId> = self.dirty.clone();
        ids.extend(timed);
        ids.into_iter().collect()
    }

    /// Peer `id` was driven: its timer is noted, and it is clean until changed again.
    pub fn settle(&mut self, id: PeerId) {
        self.dirty.remove(&id);
        self.unschedule(id);
        if let Some(t) = self.peers.get(&id).and_then(|p| p.link.next_timeout()) {
            self.timers.insert(id, t);
            self.by_time.insert((t, id));
        }
    }

    /// Peer `id`'s timer is no longer noted.
    fn unschedule(&mut self, id: PeerId) {
        if let Some(t) = self.timers.remove(&id) {
            self.by_time.remove(&(t, id));
        }
    }

    /// The earliest timer of any peer.
    pub fn next_timeout(&self) -> Option<Instant> {
        // The earliest timer of a peer not changed since it was noted (a changed peer's noted
        // timer may be stale: its link is asked instead).
        let clean = self
            .by_time
            .iter()
            .find(|(_, id)| !self.dirty.contains(id))
            .map(|(t, _)| *t);
        let changed = self
            .dirty
            .iter()
            .filter_map(|id| self.peers.get(id))
            .filter_map(|p| p.link.next_timeout());
        clean.into_iter().chain(changed).min()
    }

    /// The key `id` must prove, if one is known for it (in the table, restored with one, or
    /// remembered after eviction).
    pub fn pinned_key(&self, id: &PeerId) -> Option<PublicKey> {
        if let Some(p) = self.peers.get(id) {
            return p.key;
        }
        self.dormant
            .get(id)
            .and_then(|r| r.key)
            .or_else(|| self.forgotten.get(id).and_then(|f| f.key))
    }

    /// Whether some peer present in the table (not away) has proven itself from `addr`.
    pub fn proven_present_at(&self, addr: SocketAddr) -> bool {
        self.peers
            .values()
            .any(|p| !p.state().is_away() && p.proven_at(addr))
    }

    /// Decides whether a peer not in the table, which proved itself from an address at `ip`,
    /// may join it (see the module documentation); `manual`: at an address the user gave. On
    /// success the caller adds it with [`PeerTable::join`].
    ///
    /// # Errors
    /// [`Refused`] if it may not join now; it will try again (its probe, or ours, goes on).
    pub fn admit(
        &mut self,
        now: Instant,
        ip: IpAddr,
        manual: bool,
    ) -> Result<Option<Forgotten>, Refused> {
        let ip = ip.to_canonical();
        // A script that left (ephemeral) lingers only to acknowledge its leave again: it holds
        // no place, or a CI host running one short-lived script after another would be refused
        // from the 17th on, for as long as they linger.
        let at_ip: Vec<(&PeerId, &Peer)> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                p.found != Found::Manual && p.addrs.current().ip().to_canonical() == ip
            })
            .filter(|(_, p)| !(p.is_ephemeral() && p.state() == LinkState::Left))
            .collect();
        if !manual && at_ip.len() >= self.limits.max_peers_per_ip {
            // Room at that address is made as in the table: identities made by the dozen at
            // one address, silent since, do not keep the real ones there out.
            let victim = at_ip
                .iter()
                .filter(|(_, p)| !p.protected(now))
                .min_by_key(|(&id, p)| (p.engaged(), p.heard_at, p.last_heard, id))
                .map(|(&id, _)| id);
            return victim
                .and_then(|id| self.remove(id))
                .map(Some)
                .ok_or(Refused::AddressFull);
        }
        if self.peers.len() < self.limits.max_peers {
            return Ok(None);
        }
        let victim = self
            .peers
            .iter()
            .filter(|(_, p)| !p.protected(now))
            .min_by_key(|(&id, p)| (p.engaged(), p.heard_at, p.last_heard, id))
            .map(|(&id, _)| id);
        victim
            .and_then(|id| self.remove(id))
            .map(Some)
            .ok_or(Refused::Full)
    }

    /// Takes peer `id` out of the table, with its queue; what it has been shown is remembered,
    /// should it come back in this run.
    pub fn remove(&mut self, id: PeerId) -> Option<Forgotten> {
        let p = self.peers.remove(&id)?;
        self.roster_changed();
        self.dirty.remove(&id);
        self.unschedule(id);
        // Should it come back in this run, it must not be shown again what it has seen.
        if self.forgotten.len() >= MAX_FORGOTTEN {
            self.forgotten.pop_first();
        }
        self.forgotten.insert(
            id,
            Remembered {
                shown: p.link.delivered_through(),
                key: p.key,
            },
        );
        Some(Forgotten {
            id,
            nick: p.nick,
            dropped: p.link.pending_ids(),
        })
    }

    /// Remembers that peer `id`, not in the table, was shown messages up to `shown` (a peer
    /// forgotten in an earlier run): kept as [`PeerTable::remove`] keeps a peer forgotten now.
    pub fn remember_forgotten(&mut self, id: PeerId, shown: MessageId) {
        if self.peers.contains_key(&id) || self.forgotten.contains_key(&id) {
            return;
        }
        if self.forgotten.len() >= MAX_FORGOTTEN {
            self.forgotten.pop_first();
        }
        self.forgotten.insert(id, Remembered { shown, key: None });
    }

    /// The peer `id`, added (offline, until its proof is handled) if it is not known yet,
    /// with what is remembered of it: its watermark if it was forgotten, its outbox if it was
    /// dormant.
    #[allow(clippy::too_many_arguments)] // one peer's whole first appearance
    pub fn join(
        &mut self,
        now: Instant,
        id: PeerId,
        key: PublicKey,
        nick: &str,
        session: u64,
        from: SocketAddr,
        found: Found,
    ) -> &mut Peer {
        self.roster_changed();
        let max_queued_items = self.limits.max_queued_items;
        let forgotten = &mut self.forgotten;
        let dormant = &mut self.dormant;
        self.dirty.insert(id);
        self.peers.entry(id).or_insert_with(|| {
            let mut link = Link::new(now, max_queued_items);
            if let Some(f) = forgotten.remove(&id) {
                link.set_delivered_through(f.shown);
            }
            if let Some(r) = dormant.remove(&id) {
                link.set_delivered_through(r.delivered_through);
                for q in &r.outbox {
                    q.requeue(now, &mut link);
                }
            }
            Peer {
                nick: nick.to_owned(),
                key: Some(key),
                session,
                addrs: Addresses::new(from),
                proven: Vec::new(),
                found,
                last_heard: now,
                caps: None,
                away: None,
                heard_at: Some(now),
                link,
                counted: LinkCounters::default(),
                joined_at: None,
            }
        })
    }

    /// Takes in the peers storage remembers (see [`crate::proto::Endpoint::restore`]): the ones
    /// that matter most first (messages or the application waiting for them, then added by
    /// hand) while there is room, offline; the rest, and those with no address, wait dormant
    /// until they prove themselves. A stored key that is not the PeerId's own is dropped (the
    /// PeerId still binds the key by its hash). Returns the addresses to contact, with why:
    /// every address of a peer added by hand, wanted, or with messages waiting.
    pub fn restore(
        &mut self,
        now: Instant,
        me: PeerId,
        mut peers: Vec<RestoredPeer>,
    ) -> Vec<(SocketAddr, Found)> {
        peers.sort_by_key(|r| (r.outbox.is_empty() && !r.wanted, !r.manual));
        let room = self.limits.max_peers.saturating_sub(self.peers.len());
        let mut contact = Vec::new();
        for (i, mut r) in peers.into_iter().enumerate() {
            if r.id == me {
                continue;
            }
            r.key = r.key.filter(|k| k.peer_id() == r.id);
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
            for q in &r.outbox {
                // Whole and without gaps: an earlier run accepted these, so the bound does not
                // apply (a gap would let the receiver's watermark swallow the missing one).
                q.requeue(now, &mut link);
            }
            let found = if r.manual {
                Found::Manual
            } else {
                Found::Remembered
            };
            if r.manual || r.wanted || !r.outbox.is_empty() {
                contact.extend(addrs.iter().map(|a| (a, found)));
            }
            self.dirty.insert(r.id);
            self.roster_changed();
            let heard_at = r.heard_ago.and_then(|ago| now.checked_sub(ago));
            self.peers.insert(
                r.id,
                Peer {
                    nick: r.nick,
                    key: r.key,
                    session: 0,
                    addrs,
                    proven: Vec::new(),
                    found,
                    // `/peers` says when it was last heard as the journal knows it.
                    last_heard: heard_at.unwrap_or(now),
                    caps: None,
                    away: None,
                    heard_at,
                    link,
                    counted: LinkCounters::default(),
                    joined_at: None,
                },
            );
        }
        contact
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)] // a test that indexes out of bounds fails, as it should
mod tests {
    use super::*;
    use crate::proto::wire::Frame;
    use std::time::Duration;

    const SEC: Duration = Duration::from_secs(1);
    const DAY: Duration = PROTECTED_AFTER_HEARD;

    fn addr(i: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, i], 7654))
    }

    fn ip(i: u8) -> IpAddr {
        addr(i).ip()
    }

    fn table(max_peers: usize, now: Instant) -> PeerTable {
        let _ = now;
        let limits = Limits {
            max_peers,
            ..Limits::default()
        };
        PeerTable::new(limits)
    }

    /// Adds peer `id` (admitted already), online, heard at `now`, one we exchanged messages
    /// with (see [`join_unengaged`] for one we did not).
    fn join_online(t: &mut PeerTable, now: Instant, id: u8) -> &mut Peer {
        let p = join_unengaged(t, now, id);
        p.link.set_delivered_through(MessageId(1));
        p
    }

    /// Adds peer `id` (admitted already), online, heard at `now`, with nothing exchanged.
    fn join_unengaged(t: &mut PeerTable, now: Instant, id: u8) -> &mut Peer {
        let key = PublicKey([id; 32]);
        let p = t.join(
            now,
            PeerId(id.into()),
            key,
            "p",
            1,
            addr(id),
            Found::Incoming,
        );
        p.link.restart(now, false);
        p
    }

    /// Admits and adds peer `id`, online, heard at `now`.
    fn online(t: &mut PeerTable, now: Instant, id: u8) -> &mut Peer {
        assert_eq!(t.admit(now, ip(id), false), Ok(None), "room");
        join_online(t, now, id)
    }

    /// Makes a peer's link receive a leave.
    fn leave(p: &mut Peer, now: Instant) {
        let mut out = Vec::new();
        p.link.on_datagram(now, 0, vec![Frame::Leave], &mut out);
        assert_eq!(p.state(), LinkState::Left);
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
    fn timers_are_found_in_time_order_and_go_with_their_peer() {
        let t0 = Instant::now();
        let mut t = table(4, t0);
        let mut at = Vec::new();
        for id in 1..=3u8 {
            // Peer 3 is the first to join, so its timer is the earliest.
            let p = online(&mut t, t0 + SEC * u32::from(4 - id), id);
            at.push(p.link.next_timeout().expect("an online link keeps a timer"));
            t.settle(PeerId(id.into()));
        }
        assert!(at[2] < at[1] && at[1] < at[0]);
        assert_eq!(t.next_timeout(), Some(at[2]));
        assert_eq!(t.due(at[2] - SEC / 2), vec![]);
        assert_eq!(t.due(at[2]), vec![PeerId(3)]);
        assert_eq!(
            t.due(at[0]),
            vec![PeerId(1), PeerId(2), PeerId(3)],
            "in id order"
        );
        t.remove(PeerId(3));
        assert_eq!(t.next_timeout(), Some(at[1]));
        assert_eq!(t.due(at[1]), vec![PeerId(2)]);
        // Settled again with a later timer: the old one is gone from the order.
        t.get_mut(&PeerId(2)).unwrap().link.restart(at[0], false);
        let later = t.get(&PeerId(2)).unwrap().link.next_timeout().unwrap();
        assert_eq!(
            t.next_timeout(),
            Some(at[0].min(later)),
            "a changed peer's link is asked"
        );
        assert_eq!(
            t.due(at[1]),
            vec![PeerId(2)],
            "changed: driven at the next due"
        );
        t.settle(PeerId(2));
        assert_eq!(t.due(at[1]), vec![]);
        assert_eq!(t.next_timeout(), Some(at[0]));
    }

    #[test]
    fn a_session_proves_addresses_and_a_new_session_starts_over() {
        let t0 = Instant::now();
        let mut t = table(4, t0);
        let p = online(&mut t, t0, 1);
        assert!(!p.proven_at(addr(1)), "joined, not yet proven");
        p.prove(addr(1), false);
        p.prove(addr(2), false);
        assert!(p.proven_at(addr(1)) && p.proven_at(addr(2)));
        assert_eq!(p.addrs.current(), addr(2));
        p.prove(addr(3), true);
        assert!(!p.proven_at(addr(1)) && p.proven_at(addr(3)));
        assert_eq!(p.addrs.iter().count(), 3, "still known, for contact");
    }

    #[test]
    fn a_table_full_of_peers_heard_today_refuses_newcomers() {
        let t0 = Instant::now();
        let mut t = table(3, t0);
        for id in 1..=3 {
            let p = online(&mut t, t0, id);
            leave(p, t0); // gone, but heard today
        }
        assert_eq!(t.admit(t0 + DAY - SEC, ip(9), false), Err(Refused::Full));
        assert_eq!(t.ids().len(), 3);
        let gone = t.admit(t0 + DAY, ip(9), false).unwrap().unwrap();
        assert_eq!(
            gone.id,
            PeerId(1),
            "a day later: heard longest ago, lowest id"
        );
    }

    /// Identities that proved themselves and went silent, never exchanging a message, hold
    /// their places for ten minutes only, messages waiting for them or not; at one address as
    /// in the table.
    #[test]
    fn peers_that_never_exchanged_a_message_are_protected_only_a_while() {
        use crate::proto::UNENGAGED_PROTECTED_AFTER_HEARD as WHILE;
        let t0 = Instant::now();
        let mut t = table(3, t0);
        for id in 1..=3 {
            assert_eq!(t.admit(t0, ip(id), false), Ok(None));
            let p = join_unengaged(&mut t, t0, id);
            p.link
                .queue_message(
                    t0,
                    MessageId(7),
                    crate::proto::link::Style::default(),
                    "all",
                )
                .unwrap();
        }
        assert_eq!(t.admit(t0 + WHILE - SEC, ip(9), false), Err(Refused::Full));
        let gone = t.admit(t0 + WHILE, ip(9), false).unwrap().unwrap();
        assert_eq!((gone.id, gone.dropped), (PeerId(1), vec![MessageId(7)]));
        // An engaged peer goes after every unengaged one.
        let mut t = table(2, t0);
        online(&mut t, t0, 1);
        assert_eq!(t.admit(t0, ip(2), false), Ok(None));
        join_unengaged(&mut t, t0 + SEC, 2);
        let gone = t.admit(t0 + DAY, ip(3), false).unwrap().unwrap();
        assert_eq!(gone.id, PeerId(2), "the unengaged one, though heard later");
        // At one address: the 17th is let in once one of the 16 there is silent a while.
        let mut t = PeerTable::new(Limits::default());
        let at = |i: u8| SocketAddr::from(([10, 0, 0, 1], 7000 + u16::from(i)));
        for i in 0..16u8 {
            assert_eq!(t.admit(t0, at(i).ip(), false), Ok(None));
            t.join(
                t0,
                PeerId(100 + u64::from(i)),
                PublicKey([i; 32]),
                "f",
                1,
                at(i),
                Found::Incoming,
            );
        }
        assert_eq!(t.admit(t0, at(16).ip(), false), Err(Refused::AddressFull));
        assert!(t.admit(t0 + WHILE, at(16).ip(), false).unwrap().is_some());
        // Restored after a restart with a group message waiting for it: one that never wrote
        // to us is still unengaged (storage kept it only because it was sent that message);
        // one that did is protected.
        let mut t = table(2, t0);
        let restored = |id: u64, shown: u64| RestoredPeer {
            id: PeerId(id),
            key: None,
            heard_ago: Some(Duration::ZERO),
            nick: format!("p{id}"),
            addrs: vec![addr(id as u8)],
            manual: false,
            wanted: false,
            delivered_through: MessageId(shown),
            outbox: vec![crate::proto::Queued {
                id: MessageId(7),
                direct: false,
                action: false,
                written_ago: Duration::ZERO,
                text: "all".into(),
            }],
        };
        t.restore(t0, PeerId(99), vec![restored(1, 0), restored(2, 5)]);
        let gone = t.admit(t0 + DAY, ip(9), false).unwrap().unwrap();
        assert_eq!(gone.id, PeerId(1));
        join_online(&mut t, t0 + DAY * 30, 9);
        assert_eq!(
            t.admit(t0 + DAY * 30, ip(8), false),
            Err(Refused::Full),
            "peer 2 wrote to us and a message waits for it; 9 was heard just now"
        );
    }

    #[test]
    fn a_peer_with_messages_waiting_is_never_evicted() {
        let t0 = Instant::now();
        let mut t = table(2, t0);
        let p = online(&mut t, t0, 1);
        p.link
            .queue_message(
                t0,
                MessageId(7),
                crate::proto::link::Style::default(),
                "wait",
            )
            .unwrap();
        leave(p, t0);
        let p = online(&mut t, t0, 2);
        p.link.set_delivered_through(MessageId(42));
        leave(p, t0);
        let later = t0 + DAY * 30;
        let gone = t.admit(later, ip(3), false).unwrap().unwrap();
        assert_eq!((gone.id, gone.dropped), (PeerId(2), vec![]));
        join_online(&mut t, later, 3);
        assert_eq!(
            t.admit(later, ip(4), false),
            Err(Refused::Full),
            "peer 1 has a message waiting, peer 3 was heard just now"
        );
        // Peer 2 comes back: it is not shown again what it saw before it was forgotten, and
        // its key stays pinned.
        assert_eq!(t.pinned_key(&PeerId(2)), Some(PublicKey([2; 32])));
        let back = t.join(
            later,
            PeerId(2),
            PublicKey([2; 32]),
            "p2",
            2,
            addr(2),
            Found::Incoming,
        );
        assert_eq!(back.link.delivered_through(), MessageId(42));
    }

    /// A peer forgotten in an earlier run (the journal keeps what it was shown) that comes
    /// back is not shown again what it resends.
    #[test]
    fn a_peer_forgotten_in_an_earlier_run_comes_back_with_its_watermark() {
        let t0 = Instant::now();
        let mut t = PeerTable::new(Limits::default());
        t.remember_forgotten(PeerId(2), MessageId(42));
        let back = join_unengaged(&mut t, t0, 2);
        assert_eq!(back.link.delivered_through(), MessageId(42));
        // One known (or remembered already) is left as it is.
        t.remember_forgotten(PeerId(2), MessageId(50));
        assert_eq!(
            t.get(&PeerId(2)).unwrap().link.delivered_through(),
            MessageId(42)
        );
    }

    #[test]
    fn one_ip_address_holds_a_bounded_number_of_peers_unless_added_by_hand() {
        let t0 = Instant::now();
        let mut t = PeerTable::new(Limits {
            max_peers: 100,
            max_peers_per_ip: 3,
            ..Limits::default()
        });
        let host = ip(7);
        for port in 0..3u16 {
            assert_eq!(t.admit(t0, host, false), Ok(None));
            let id = PeerId(100 + u64::from(port));
            let at = SocketAddr::new(host, 9000 + port);
            t.join(t0, id, PublicKey([1; 32]), "p", 1, at, Found::Incoming);
        }
        assert_eq!(t.admit(t0, host, false), Err(Refused::AddressFull));
        assert_eq!(
            t.admit(t0, "::ffff:10.0.0.7".parse().unwrap(), false),
            Err(Refused::AddressFull),
            "one address, however written"
        );
        assert_eq!(t.admit(t0, host, true), Ok(None), "the user's choice");
        assert_eq!(t.admit(t0, ip(8), false), Ok(None));
    }

    #[test]
    fn restore_ranks_peers_and_keeps_the_rest_dormant() {
        let t0 = Instant::now();
        // Three places: a peer with nowhere to contact it takes one (as it always has).
        let mut t = table(3, t0);
        let restored = |id: u64, manual: bool, outbox: bool, addrs: Vec<SocketAddr>| RestoredPeer {
            id: PeerId(id),
            key: None,
            heard_ago: None,
            nick: format!("p{id}"),
            addrs,
            manual,
            wanted: false,
            delivered_through: MessageId(id),
            outbox: if outbox {
                vec![crate::proto::Queued {
                    id: MessageId(100 + id),
                    direct: false,
                    action: false,
                    written_ago: Duration::ZERO,
                    text: "waiting".into(),
                }]
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
        assert!(t.iter().all(|(_, p)| p.proven.is_empty() && p.session == 0));
        assert_eq!(
            contact,
            vec![
                (addr(3), Found::Remembered),
                (addr(2), Found::Manual),
                (addr(22), Found::Manual)
            ]
        );
        // A dormant peer brings its outbox and watermark along when it proves itself.
        let four = t.join(
            t0,
            PeerId(4),
            PublicKey([4; 32]),
            "p4",
            1,
            addr(4),
            Found::Incoming,
        );
        assert_eq!(four.link.undelivered(), 1);
        assert_eq!(four.link.delivered_through(), MessageId(4));
    }

    #[test]
    fn a_peer_the_application_wants_is_restored_first_and_contacted() {
        let t0 = Instant::now();
        // One place: a peer added by hand and a plain one wait; the wanted one takes it.
        let mut t = table(1, t0);
        let restored = |id: u64, manual: bool, wanted: bool| RestoredPeer {
            id: PeerId(id),
            key: None,
            heard_ago: None,
            nick: format!("p{id}"),
            addrs: vec![addr(id as u8)],
            manual,
            wanted,
            delivered_through: MessageId(0),
            outbox: vec![],
        };
        let contact = t.restore(
            t0,
            PeerId(99),
            vec![
                restored(1, false, false),
                restored(2, true, false),
                restored(3, false, true),
            ],
        );
        assert_eq!(t.ids(), vec![PeerId(3)]);
        assert_eq!(contact, vec![(addr(3), Found::Remembered)]);
    }

    #[test]
    fn a_restored_key_must_be_the_peer_ids_own_and_old_peers_are_not_protected() {
        let t0 = Instant::now() + DAY * 3;
        let mut t = table(8, t0);
        let real = crate::proto::Identity::from_secret([5; 32]);
        let restored = |id: PeerId, key, heard_ago| RestoredPeer {
            id,
            key,
            heard_ago,
            nick: "x".into(),
            addrs: vec![addr(1)],
            manual: false,
            wanted: false,
            delivered_through: MessageId(0),
            outbox: vec![],
        };
        t.restore(
            t0,
            PeerId(99),
            vec![
                restored(real.peer_id(), Some(real.public_key()), Some(SEC)),
                restored(PeerId(7), Some(real.public_key()), Some(DAY * 2)),
            ],
        );
        assert_eq!(t.pinned_key(&real.peer_id()), Some(real.public_key()));
        assert_eq!(t.pinned_key(&PeerId(7)), None, "not its key: dropped");
        assert!(t.get(&real.peer_id()).unwrap().protected(t0));
        // `/peers` says when it was last heard, as the journal has it, not "just now".
        let info = t.get(&real.peer_id()).unwrap().info(real.peer_id());
        assert_eq!(t0.duration_since(info.last_heard), SEC);
        assert!(
            !t.get(&PeerId(7)).unwrap().protected(t0),
            "heard two days ago"
        );
    }
}
