//! Addresses learned from peer lists: hints, never a way in. They wait in a bounded queue and
//! become probes at a bounded rate — each peer's hints at most [`PROBES_PER_SOURCE_PER_SEC`],
//! taken from the peers in turn — and at most `MAX_LEARNED_PROBES` such probes run at once (the
//! oldest making room). So one peer's list of made-up addresses makes us send a few hellos, not
//! a burst; and since every peer has its own budget and its own share of the queue, peers that
//! list made-up addresses, however many, cannot hold back what real peers tell us: meshing goes
//! as fast as the real peers' lists.

use super::limits::TokenBucket;
use crate::proto::ids::PeerId;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::ops::Bound;
use std::time::{Duration, Instant};

/// Hints kept at most, from all peers; beyond it the peer with the most gives one up.
pub const MAX_HINTS: usize = 512;
/// Hints kept at most from one peer.
pub const MAX_HINTS_PER_SOURCE: usize = 64;
/// A hint not probed within this long is dropped (peer lists only carry peers heard within
/// 120 s; an old hint is likely stale).
pub const HINT_TTL: Duration = Duration::from_secs(60);
/// Probes started per second at most from the hints of one peer.
pub const PROBES_PER_SOURCE_PER_SEC: u32 = 8;

/// The hints one peer gave.
#[derive(Debug)]
struct Source {
    /// The addresses in the order told, with when.
    queue: VecDeque<(SocketAddr, Instant)>,
    /// Probe starts per second from them.
    bucket: TokenBucket,
}

/// The queue of learned addresses waiting for a probe.
#[derive(Debug, Default)]
pub struct Hints {
    /// Per peer that told us, its hints.
    by_source: BTreeMap<PeerId, Source>,
    /// How many addresses wait, over all peers.
    total: usize,
    /// The peer whose hint was taken last: the next comes from the one after it.
    cursor: Option<PeerId>,
}

impl Hints {
    /// Queues `addr`, told by `source`, unless it waits already or that peer's share is full.
    /// A full queue makes room by dropping the oldest hint of the peer that has the most.
    /// Returns whether it was queued.
    pub fn push(&mut self, now: Instant, source: PeerId, addr: SocketAddr) -> bool {
        if self.contains(addr)
            || self
                .by_source
                .get(&source)
                .is_some_and(|s| s.queue.len() >= MAX_HINTS_PER_SOURCE)
        {
            return false;
        }
        if self.total >= MAX_HINTS {
            let largest = self
                .by_source
                .iter()
                .max_by_key(|(_, s)| s.queue.len())
                .map(|(id, _)| *id);
            if let Some(s) = largest.and_then(|id| self.by_source.get_mut(&id)) {
                if s.queue.pop_front().is_some() {
                    self.total -= 1;
                }
            }
        }
        let entry = self.by_source.entry(source).or_insert_with(|| Source {
            queue: VecDeque::new(),
            bucket: TokenBucket::new(PROBES_PER_SOURCE_PER_SEC, now),
        });
        entry.queue.push_back((addr, now));
        self.total += 1;
        true
    }

    /// Whether `addr` waits.
    pub fn contains(&self, addr: SocketAddr) -> bool {
        self.by_source
            .values()
            .any(|s| s.queue.iter().any(|(a, _)| *a == addr))
    }

    /// How many addresses wait.
    pub fn len(&self) -> usize {
        self.total
    }

    /// The next address to probe, if one waits whose peer's budget allows a probe now: from
    /// the peers after the one served last, each its oldest; hints past [`HINT_TTL`] are
    /// dropped on the way.
    pub fn next(&mut self, now: Instant) -> Option<SocketAddr> {
        self.expire(now);
        let after = self.cursor.map_or(Bound::Unbounded, Bound::Excluded);
        let order: Vec<PeerId> = self
            .by_source
            .range((after, Bound::Unbounded))
            .chain(
                self.by_source
                    .range(..=self.cursor.unwrap_or(PeerId(u64::MAX))),
            )
            .map(|(id, _)| *id)
            .collect();
        for id in order {
            let Some(source) = self.by_source.get_mut(&id) else {
                continue;
            };
            if source.queue.is_empty() || !source.bucket.take(now) {
                continue;
            }
            let (addr, _) = source.queue.pop_front()?;
            self.total -= 1;
            self.cursor = Some(id);
            return Some(addr);
        }
        None
    }

    /// When [`Hints::next`] may give an address again, if addresses wait but their peers'
    /// budgets hold them back.
    pub fn ready_at(&self) -> Option<Instant> {
        self.by_source
            .values()
            .filter(|s| !s.queue.is_empty())
            .filter_map(|s| s.bucket.ready_at())
            .min()
    }

    /// Drops every hint.
    pub fn clear(&mut self) {
        self.by_source.clear();
        self.total = 0;
    }

    /// Drops hints past [`HINT_TTL`], and peers with neither hints nor a spent budget.
    fn expire(&mut self, now: Instant) {
        let mut dropped = 0;
        self.by_source.retain(|_, s| {
            let before = s.queue.len();
            s.queue
                .retain(|(_, at)| now.saturating_duration_since(*at) < HINT_TTL);
            dropped += before - s.queue.len();
            // A peer's spent budget is kept until it refills, so it cannot be reset by
            // sending its hints one at a time.
            !s.queue.is_empty() || s.bucket.ready_at().is_some_and(|t| t > now)
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
    fn hints_are_bounded_per_peer_and_in_all_and_a_newcomer_always_has_room() {
        let t0 = Instant::now();
        let mut h = Hints::default();
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
        assert!(h.contains(addr(99_099)));
        assert!(!h.push(t0, PeerId(7), addr(99_099)), "already waiting");
        assert!(h.push(t0, PeerId(500), addr(99_999)), "room is made");
        assert_eq!(h.len(), MAX_HINTS);
    }

    #[test]
    fn each_peer_has_its_own_budget_and_peers_take_turns() {
        let t0 = Instant::now();
        let mut h = Hints::default();
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
        assert_eq!(
            n,
            PROBES_PER_SOURCE_PER_SEC as usize + 2,
            "peer 1's budget is spent"
        );
        assert_eq!(h.ready_at(), Some(t0 + Duration::from_secs(1)));
        h.push(t0, PeerId(4), addr(700));
        assert_eq!(h.next(t0), Some(addr(700)), "another peer is not held back");
        assert!(h.next(t0 + Duration::from_secs(1)).is_some());
    }

    #[test]
    fn old_hints_are_dropped() {
        let t0 = Instant::now();
        let mut h = Hints::default();
        h.push(t0, PeerId(1), addr(1));
        assert_eq!(h.next(t0 + HINT_TTL), None);
        assert_eq!(h.len(), 0);
    }
}
