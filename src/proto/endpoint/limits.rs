//! Rate limits on what others can make us send, in bounded memory: a token bucket
//! ([`TokenBucket`], for starting probes of learned addresses) and a per-key limiter
//! ([`SlotLimiter`]: per address, for the hellos we send without keeping a probe — answers to
//! announcements and to datagrams we cannot place —; per announcer, so that the copies of one
//! announcement heard over IPv4 and IPv6 lead to one handshake). Neither limits who may join: a
//! newcomer's proof does that, so meshing runs at full speed whatever a flood does.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

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
        self.refill(now);
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }

    /// When a token will be there again, if none was left at the last take (the time may have
    /// passed already: then one is there now).
    pub fn ready_at(&self) -> Option<Instant> {
        (self.tokens == 0).then(|| self.since + Duration::from_secs(1))
    }

    fn refill(&mut self, now: Instant) {
        if now.saturating_duration_since(self.since) >= Duration::from_secs(1) {
            self.tokens = self.per_sec;
            self.since = now;
        }
    }
}

/// At most one datagram to an address per `interval`: a [`SlotLimiter`] keyed by address.
pub type AddrLimiter = SlotLimiter<SocketAddr>;

/// At most one thing per key (an address, an announcer) per `interval`, remembered in a fixed
/// number of slots (a key's slot is picked by a hash of it). Two keys that share a slot
/// overwrite each other, which can only let an extra one through: the memory is bounded
/// whatever the number of keys, and nobody can be held back by someone else's traffic.
#[derive(Clone, Debug)]
pub struct SlotLimiter<K> {
    /// The key last let through in each slot, and when.
    slots: Vec<Option<(K, Instant)>>,
    /// How long a key waits between two.
    interval: Duration,
}

impl<K: Copy + Eq + Hash> SlotLimiter<K> {
    /// A limiter of `slots` slots letting one through per `interval` for each key.
    pub fn new(slots: usize, interval: Duration) -> Self {
        Self {
            slots: vec![None; slots.max(1)],
            interval,
        }
    }

    /// From now on, one per `interval` for each key.
    pub fn set_interval(&mut self, interval: Duration) {
        self.interval = interval;
    }

    /// Whether one may go for `key` at `now`; if so, it counts as gone.
    pub fn allow(&mut self, now: Instant, key: K) -> bool {
        let i = self.slot_of(&key);
        let Some(slot) = self.slots.get_mut(i) else {
            return true;
        };
        if let Some((k, at)) = slot {
            if *k == key && now < *at + self.interval {
                return false;
            }
        }
        *slot = Some((key, now));
        true
    }

    /// Whether one went for `key` within `within` before `now`, as far as its slot still
    /// remembers (another key sharing the slot makes it forget: never more than the truth).
    pub fn went_within(&self, now: Instant, key: K, within: Duration) -> bool {
        self.slots
            .get(self.slot_of(&key))
            .and_then(|slot| slot.as_ref())
            .is_some_and(|(k, at)| *k == key && now.saturating_duration_since(*at) < within)
    }

    /// The slot of `key`.
    fn slot_of(&self, key: &K) -> usize {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        let len = self.slots.len() as u64;
        usize::try_from(h.finish() % len).unwrap_or(0)
    }

    /// How many keys it remembers at most.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn the_bucket_gives_its_tokens_then_waits_a_second() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(3, t0);
        assert!((0..3).all(|_| b.take(t0)));
        assert!(!b.take(t0 + SEC / 2));
        assert_eq!(b.ready_at(), Some(t0 + SEC));
        assert!(b.take(t0 + SEC));
        assert!(b.take(t0 + SEC) && b.take(t0 + SEC));
        assert!(
            !b.take(t0 + SEC * 3 / 2),
            "refilled at 1 s, not topped up since"
        );
    }

    #[test]
    fn one_datagram_per_interval_per_address() {
        let t0 = Instant::now();
        let mut l = AddrLimiter::new(64, SEC / 4);
        let a: SocketAddr = "10.0.0.1:7654".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:7654".parse().unwrap();
        assert!(l.allow(t0, a));
        assert!(!l.allow(t0, a));
        assert!(l.allow(t0, b), "another address has its own turn");
        assert!(!l.allow(t0 + SEC / 8, a));
        assert!(l.allow(t0 + SEC / 4, a));
        // A flood of other addresses can only make it more permissive, never block `a`.
        for i in 0..10_000u32 {
            let other = SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 7654));
            l.allow(t0 + SEC, other);
        }
        assert!(l.allow(t0 + SEC, a));
        assert_eq!(l.capacity(), 64);
    }
}
