//! Addresses learned from peer lists: hints, never a way in. They wait in a bounded queue and
//! become probes at a bounded rate ([`LEARNED_PROBES_PER_SEC`]; at most `MAX_LEARNED_PROBES`
//! run at once, the oldest making room), taken from each peer that sent them in turn, so one
//! peer's list of made-up addresses neither makes us send a burst of hellos nor holds back the
//! addresses other peers told us.
//! A hint that answers is admitted only through its own proof, like anyone.

use super::limits::TokenBucket;
use crate::proto::ids::PeerId;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::ops::Bound;
use std::time::{Duration, Instant};

/// Hints kept at most, from all peers.
pub const MAX_HINTS: usize = 512;
/// Hints kept at most from one peer.
pub const MAX_HINTS_PER_SOURCE: usize = 64;
/// A hint not probed within this long is dropped (peer lists only carry peers heard within
/// 120 s; an old hint is likely stale).
pub const HINT_TTL: Duration = Duration::from_secs(60);
/// Probes of learned addresses started per second at most.
pub const LEARNED_PROBES_PER_SEC: u32 = 32;

/// The queue of learned addresses waiting for a probe.
#[derive(Debug)]
pub struct Hints {
    /// Per peer that told us, the addresses in the order told, with when.
    by_source: BTreeMap<PeerId, VecDeque<(SocketAddr, Instant)>>,
    /// How many addresses wait, over all peers.
    total: usize,
    /// The peer whose hint was taken last: the next comes from the one after it.
    cursor: Option<PeerId>,
    /// Probe starts per second.
    bucket: TokenBucket,
}

impl Hints {
    /// An empty queue at `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            by_source: BTreeMap::new(),
            total: 0,
            cursor: None,
            bucket: TokenBucket::new(LEARNED_PROBES_PER_SEC, now),
        }
    }

    /// Queues `addr`, told by `source`, unless it waits already or the queue (or that peer's
    /// share of it) is full. Returns whether it was queued.
    pub fn push(&mut self, now: Instant, source: PeerId, addr: SocketAddr) -> bool {
        if self.total >= MAX_HINTS || self.contains(addr) {
            return false;
        }
        let queue = self.by_source.entry(source).or_default();
        if queue.len() >= MAX_HINTS_PER_SOURCE {
            return false;
        }
        queue.push_back((addr, now));
        self.total += 1;
        true
    }

    /// Whether `addr` waits.
    pub fn contains(&self, addr: SocketAddr) -> bool {
        self.by_source
            .values()
            .any(|q| q.iter().any(|(a, _)| *a == addr))
    }

    /// How many addresses wait.
    pub fn len(&self) -> usize {
        self.total
    }

    /// The next address to probe, if one waits and the rate allows a probe now: from the peer
    /// after the one served last, oldest first; hints past [`HINT_TTL`] are dropped on the way.
    pub fn next(&mut self, now: Instant) -> Option<SocketAddr> {
        self.expire(now);
        if self.total == 0 || !self.bucket.take(now) {
            return None;
        }
        let after = self.cursor.map_or(Bound::Unbounded, Bound::Excluded);
        let source = self
            .by_source
            .range((after, Bound::Unbounded))
            .map(|(id, _)| *id)
            .next()
            .or_else(|| self.by_source.keys().next().copied())?;
        self.cursor = Some(source);
        let queue = self.by_source.get_mut(&source)?;
        let (addr, _) = queue.pop_front()?;
        if queue.is_empty() {
            self.by_source.remove(&source);
        }
        self.total -= 1;
        Some(addr)
    }

    /// When [`Hints::next`] may give an address again, if addresses wait but the rate holds
    /// them back.
    pub fn ready_at(&self) -> Option<Instant> {
        if self.total == 0 {
            return None;
        }
        self.bucket.ready_at()
    }

    /// Drops every hint.
    pub fn clear(&mut self) {
        self.by_source.clear();
        self.total = 0;
    }

    fn expire(&mut self, now: Instant) {
        let mut dropped = 0;
        self.by_source.retain(|_, q| {
            let before = q.len();
            q.retain(|(_, at)| now.saturating_duration_since(*at) < HINT_TTL);
            dropped += before - q.len();
            !q.is_empty()
        });
        self.total -= dropped;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: u32) -> SocketAddr {
        SocketAddr::from(([10, 9, (i >> 8) as u8, i as u8], 7654))
    }

    #[test]
    fn hints_are_bounded_per_peer_and_in_all() {
        let t0 = Instant::now();
        let mut h = Hints::new(t0);
        for i in 0..1000 {
            h.push(t0, PeerId(1), addr(i));
        }
        assert_eq!(h.len(), MAX_HINTS_PER_SOURCE);
        for s in 2..100u64 {
            for i in 0..100 {
                h.push(t0, PeerId(s), addr(1000 * s as u32 + i));
            }
        }
        assert_eq!(h.len(), MAX_HINTS);
        assert!(!h.push(t0, PeerId(1), addr(0)), "already waiting");
    }

    #[test]
    fn peers_take_turns_and_the_rate_is_bounded() {
        let t0 = Instant::now();
        let mut h = Hints::new(t0);
        for i in 0..50 {
            h.push(t0, PeerId(1), addr(i)); // a long list from one peer
        }
        h.push(t0, PeerId(2), addr(500));
        h.push(t0, PeerId(3), addr(600));
        let first: Vec<SocketAddr> = (0..4).filter_map(|_| h.next(t0)).collect();
        assert_eq!(first, vec![addr(0), addr(500), addr(600), addr(1)]);
        let mut n = 4;
        while h.next(t0).is_some() {
            n += 1;
        }
        assert_eq!(n, LEARNED_PROBES_PER_SEC as usize, "a second's worth");
        assert_eq!(h.ready_at(), Some(t0 + Duration::from_secs(1)));
        assert!(h.next(t0 + Duration::from_secs(1)).is_some());
    }

    #[test]
    fn old_hints_are_dropped() {
        let t0 = Instant::now();
        let mut h = Hints::new(t0);
        h.push(t0, PeerId(1), addr(1));
        assert_eq!(h.next(t0 + HINT_TTL), None);
        assert_eq!(h.len(), 0);
    }
}
