//! Stateless proofs that a datagram's sender receives at the address it claims (the idea of
//! WireGuard's cookie reply and QUIC's Retry token): what we put in our `Hello` (a *token* for
//! the address we send it to) and in our `Cookie` (a *cookie* for the address, PeerId and
//! session that said hello) are MACs under a secret of ours, so an answer that echoes one proves
//! its sender got our datagram at that address — without our keeping anything per address.
//!
//! The secret is derived from the endpoint's seed and rotates every [`COOKIE_EPOCH`] of `now`
//! (counted from the endpoint's start); a cookie or token is accepted in the epoch it was made
//! and the next one, so it lives between 7 and 14 s. Only the endpoint that made a value ever
//! checks it, so the construction below is this implementation's choice, not a wire rule (the
//! spec describes it, and what any construction must guarantee).

use super::ids::PeerId;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Bytes of a cookie or token on the wire.
pub const COOKIE_LEN: usize = 16;
/// Bytes at the front of a token or cookie that say when it was made: microseconds since the
/// jar's start, modulo 2³² (so each echo is also a round-trip sample, whichever of several it
/// answers; a LAN's round trip is a fraction of a millisecond).
const STAMP_LEN: usize = 4;
/// How often the secret changes; a value is accepted in its epoch and the next.
pub const COOKIE_EPOCH: Duration = Duration::from_secs(7);

/// A cookie or token.
pub type Cookie = [u8; COOKIE_LEN];

/// Makes and checks tokens and cookies.
#[derive(Clone)]
pub struct CookieJar {
    /// Derived from the seed: every epoch's secret is derived from it.
    master: [u8; 32],
    /// Epoch 0 starts here.
    start: Instant,
}

impl std::fmt::Debug for CookieJar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieJar") // the secret stays out of logs
    }
}

impl CookieJar {
    /// A jar whose secrets come from `seed`, with epoch 0 starting at `start`.
    pub fn new(seed: u64, start: Instant) -> Self {
        Self {
            master: blake3::derive_key("tailchat/2 cookie master", &seed.to_le_bytes()),
            start,
        }
    }

    /// Microseconds from the jar's start to `now`, as a stamp. It wraps every 71 minutes,
    /// and only ages of seconds are ever taken: a value made a whole wrap earlier (or more)
    /// looks recent, but was made in an epoch long gone, with another secret, so its MAC
    /// does not match the recent epoch's.
    fn stamp(&self, now: Instant) -> u32 {
        let us = now.saturating_duration_since(self.start).as_micros();
        // Truncation is the wrap.
        (us % (1 << 32)) as u32
    }

    /// How long ago a value stamped `stamp` was made, if in the current epoch or the one
    /// before (its secret is then the one of `epoch`).
    fn age(&self, now: Instant, stamp: u32) -> Option<(Duration, u64)> {
        let age = Duration::from_micros(u64::from(self.stamp(now).wrapping_sub(stamp)));
        let made = now.saturating_duration_since(self.start).checked_sub(age)?;
        let epoch = epoch_of(made);
        let current = self.epoch(now);
        (epoch == current || epoch + 1 == current).then_some((age, epoch))
    }

    /// The epoch `now` falls in.
    fn epoch(&self, now: Instant) -> u64 {
        epoch_of(now.saturating_duration_since(self.start))
    }

    /// The secret of `epoch`.
    fn secret(&self, epoch: u64) -> [u8; 32] {
        let mut input = b"tailchat/2 cookie secret".to_vec();
        input.extend_from_slice(&epoch.to_be_bytes());
        *blake3::keyed_hash(&self.master, &input).as_bytes()
    }

    /// A value made at `now`: its stamp, then the MAC of what `input` makes of the stamp.
    fn make(&self, now: Instant, input: impl Fn(u32) -> Vec<u8>) -> Cookie {
        let stamp = self.stamp(now);
        stamped(stamp, &self.secret(self.epoch(now)), &input(stamp))
    }

    /// If `value` is one [`CookieJar::make`] made with `input` in this epoch or the last: how
    /// long ago.
    fn check(
        &self,
        now: Instant,
        value: &Cookie,
        input: impl Fn(u32) -> Vec<u8>,
    ) -> Option<Duration> {
        let stamp = stamp_of(value);
        let (age, epoch) = self.age(now, stamp)?;
        let want = stamped(stamp, &self.secret(epoch), &input(stamp));
        constant_time_eq(&want, value).then_some(age)
    }

    /// Our token for `to`, made at `now` (what our hello to it carries).
    pub fn token(&self, now: Instant, to: SocketAddr) -> Cookie {
        self.make(now, |stamp| token_input(to, stamp))
    }

    /// If `token` is one we made for `from` in this epoch or the last: how long ago (the
    /// round trip of what carried it out and what echoed it back).
    pub fn check_token(&self, now: Instant, from: SocketAddr, token: &Cookie) -> Option<Duration> {
        self.check(now, token, |stamp| token_input(from, stamp))
    }

    /// The cookie our `Cookie` frame gives `peer` (run `session`), which said hello from `addr`.
    pub fn cookie(&self, now: Instant, addr: SocketAddr, peer: PeerId, session: u64) -> Cookie {
        self.make(now, |stamp| cookie_input(addr, peer, session, stamp))
    }

    /// If `cookie` is one we gave `peer` (run `session`) at `from` in this epoch or the last:
    /// how long ago (the round trip of our Cookie and the Proof that echoes it).
    pub fn check_cookie(
        &self,
        now: Instant,
        from: SocketAddr,
        peer: PeerId,
        session: u64,
        cookie: &Cookie,
    ) -> Option<Duration> {
        self.check(now, cookie, |stamp| {
            cookie_input(from, peer, session, stamp)
        })
    }
}

/// The epoch of a moment `elapsed` after the jar's start.
fn epoch_of(elapsed: Duration) -> u64 {
    elapsed.as_secs() / COOKIE_EPOCH.as_secs()
}

/// What a token's MAC covers: `"token"`, the address, the stamp.
fn token_input(to: SocketAddr, stamp: u32) -> Vec<u8> {
    let mut input = b"token".to_vec();
    input.extend_from_slice(&addr_bytes(to));
    input.extend_from_slice(&stamp.to_be_bytes());
    input
}

/// What a cookie's MAC covers: `"cookie"`, the address, PeerId, session, the stamp.
fn cookie_input(addr: SocketAddr, peer: PeerId, session: u64, stamp: u32) -> Vec<u8> {
    let mut input = b"cookie".to_vec();
    input.extend_from_slice(&addr_bytes(addr));
    input.extend_from_slice(&peer.0.to_be_bytes());
    input.extend_from_slice(&session.to_be_bytes());
    input.extend_from_slice(&stamp.to_be_bytes());
    input
}

/// The stamp a token or cookie starts with.
fn stamp_of(value: &Cookie) -> u32 {
    let mut stamp = [0u8; STAMP_LEN];
    stamp.copy_from_slice(value.get(..STAMP_LEN).unwrap_or(&[0; STAMP_LEN]));
    u32::from_be_bytes(stamp)
}

/// `stamp` (4 bytes, big-endian), then the first 12 bytes of keyed BLAKE3 of `input`.
fn stamped(stamp: u32, key: &[u8; 32], input: &[u8]) -> Cookie {
    let mut out = [0u8; COOKIE_LEN];
    let hash = blake3::keyed_hash(key, input);
    let (front, mac) = out.split_at_mut(STAMP_LEN);
    front.copy_from_slice(&stamp.to_be_bytes());
    mac.copy_from_slice(
        hash.as_bytes()
            .get(..COOKIE_LEN - STAMP_LEN)
            .unwrap_or(&[0; COOKIE_LEN - STAMP_LEN]),
    );
    out
}

/// An address as the MACs read it: an IPv4-mapped IPv6 address is its IPv4 address, so the
/// two spellings of one address give one cookie. `04`, 4 octets, port; or `06`, 16 octets, port.
pub fn addr_bytes(addr: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(19);
    match addr.ip().to_canonical() {
        IpAddr::V4(v4) => {
            out.push(4);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.push(6);
            out.extend_from_slice(&v6.octets());
        }
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
    out
}

/// Compares without an early exit, so timing says nothing about how much of a guess was right.
fn constant_time_eq(a: &Cookie, b: &Cookie) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_token_is_bound_to_its_address_and_expires() {
        let t0 = Instant::now();
        let jar = CookieJar::new(1, t0);
        let a = sa("10.0.0.1:7654");
        let token = jar.token(t0, a);
        assert!(jar.check_token(t0, a, &token).is_some());
        assert!(jar
            .check_token(t0, sa("[::ffff:10.0.0.1]:7654"), &token)
            .is_some());
        assert!(jar.check_token(t0, sa("10.0.0.1:7655"), &token).is_none());
        assert!(jar.check_token(t0, sa("10.0.0.2:7654"), &token).is_none());
        let last = t0 + COOKIE_EPOCH * 2 - Duration::from_millis(1);
        assert!(jar.check_token(last, a, &token).is_some());
        assert!(
            jar.check_token(t0 + COOKIE_EPOCH * 2, a, &token).is_none(),
            "expired"
        );
        assert!(
            CookieJar::new(2, t0).check_token(t0, a, &token).is_none(),
            "another secret"
        );
    }

    #[test]
    fn an_echo_says_how_long_ago_it_was_made_and_its_stamp_cannot_be_moved() {
        let t0 = Instant::now();
        let jar = CookieJar::new(1, t0);
        let a = sa("10.0.0.1:7654");
        let ms = |n: u64| Duration::from_millis(n);
        // Made late in an epoch, echoed early in the next: still good, and timed.
        let made = t0 + ms(6_999) + Duration::from_micros(700);
        let token = jar.token(made, a);
        assert_eq!(jar.check_token(made + ms(3), a, &token), Some(ms(3)));
        assert_eq!(
            jar.check_token(made + ms(2_500), a, &token),
            Some(ms(2_500))
        );
        let cookie = jar.cookie(made, a, PeerId(5), 9);
        let later = made + ms(1_234);
        assert_eq!(
            jar.check_cookie(later, a, PeerId(5), 9, &cookie),
            Some(ms(1_234))
        );
        // A stamp changed (to look older, newer, or of another epoch) no longer matches.
        for delta in [1u32, 1_000, 7_000, u32::MAX] {
            let mut moved = token;
            let stamp = u32::from_be_bytes(moved[..4].try_into().unwrap()).wrapping_add(delta);
            moved[..4].copy_from_slice(&stamp.to_be_bytes());
            assert!(jar.check_token(later, a, &moved).is_none(), "{delta}");
        }
        // A LAN's round trip, a fraction of a millisecond, is measured as it is.
        let quick = jar.token(later, a);
        let us = Duration::from_micros(250);
        assert_eq!(jar.check_token(later + us, a, &quick), Some(us));
        // A stamp wraps every 2³² µs (71 min): one made a whole wrap before looks recent, but
        // its epoch's secret is long gone.
        let wrap = Duration::from_micros(1 << 32);
        assert!(jar.check_token(made + wrap + ms(3), a, &token).is_none());
        // Nor does one from before the jar started, or from the future.
        assert!(jar.check_token(t0, a, &token).is_none());
    }

    #[test]
    fn a_cookie_is_bound_to_address_peer_and_session() {
        let t0 = Instant::now();
        let jar = CookieJar::new(1, t0);
        let a = sa("10.0.0.1:7654");
        let c = jar.cookie(t0, a, PeerId(5), 9);
        assert!(jar
            .check_cookie(t0 + COOKIE_EPOCH, a, PeerId(5), 9, &c)
            .is_some());
        assert!(jar
            .check_cookie(t0, sa("10.0.0.9:7654"), PeerId(5), 9, &c)
            .is_none());
        assert!(jar.check_cookie(t0, a, PeerId(6), 9, &c).is_none());
        assert!(jar.check_cookie(t0, a, PeerId(5), 10, &c).is_none());
        assert_ne!(c, jar.token(t0, a), "a token is not a cookie");
    }
}
