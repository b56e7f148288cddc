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

    /// The epoch `now` falls in.
    fn epoch(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.start);
        elapsed.as_secs() / COOKIE_EPOCH.as_secs()
    }

    /// The secret of `epoch`.
    fn secret(&self, epoch: u64) -> [u8; 32] {
        let mut input = b"tailchat/2 cookie secret".to_vec();
        input.extend_from_slice(&epoch.to_be_bytes());
        *blake3::keyed_hash(&self.master, &input).as_bytes()
    }

    /// The token our `Hello` to `to` carries at `now`.
    pub fn token(&self, now: Instant, to: SocketAddr) -> Cookie {
        self.token_in(self.epoch(now), to)
    }

    /// Whether `token` is one we put in a hello to `from` in this epoch or the last.
    pub fn check_token(&self, now: Instant, from: SocketAddr, token: &Cookie) -> bool {
        self.recent_epochs(now)
            .any(|e| constant_time_eq(&self.token_in(e, from), token))
    }

    /// The cookie our `Cookie` frame gives `peer` (run `session`), which said hello from `addr`.
    pub fn cookie(&self, now: Instant, addr: SocketAddr, peer: PeerId, session: u64) -> Cookie {
        self.cookie_in(self.epoch(now), addr, peer, session)
    }

    /// Whether `cookie` is one we gave `peer` (run `session`) at `from` in this epoch or the last.
    pub fn check_cookie(
        &self,
        now: Instant,
        from: SocketAddr,
        peer: PeerId,
        session: u64,
        cookie: &Cookie,
    ) -> bool {
        self.recent_epochs(now)
            .any(|e| constant_time_eq(&self.cookie_in(e, from, peer, session), cookie))
    }

    /// The current epoch and the one before it, if any.
    fn recent_epochs(&self, now: Instant) -> impl Iterator<Item = u64> {
        let e = self.epoch(now);
        std::iter::once(e).chain(e.checked_sub(1))
    }

    fn token_in(&self, epoch: u64, to: SocketAddr) -> Cookie {
        let mut input = b"token".to_vec();
        input.extend_from_slice(&addr_bytes(to));
        mac(&self.secret(epoch), &input)
    }

    fn cookie_in(&self, epoch: u64, addr: SocketAddr, peer: PeerId, session: u64) -> Cookie {
        let mut input = b"cookie".to_vec();
        input.extend_from_slice(&addr_bytes(addr));
        input.extend_from_slice(&peer.0.to_be_bytes());
        input.extend_from_slice(&session.to_be_bytes());
        mac(&self.secret(epoch), &input)
    }
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

/// The first [`COOKIE_LEN`] bytes of keyed BLAKE3.
fn mac(key: &[u8; 32], input: &[u8]) -> Cookie {
    let mut out = [0u8; COOKIE_LEN];
    let hash = blake3::keyed_hash(key, input);
    out.copy_from_slice(
        hash.as_bytes()
            .get(..COOKIE_LEN)
            .unwrap_or(&[0; COOKIE_LEN]),
    );
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
        assert!(jar.check_token(t0, a, &token));
        assert!(jar.check_token(t0, sa("[::ffff:10.0.0.1]:7654"), &token));
        assert!(!jar.check_token(t0, sa("10.0.0.1:7655"), &token));
        assert!(!jar.check_token(t0, sa("10.0.0.2:7654"), &token));
        assert!(jar.check_token(t0 + COOKIE_EPOCH * 2 - Duration::from_millis(1), a, &token));
        assert!(
            !jar.check_token(t0 + COOKIE_EPOCH * 2, a, &token),
            "expired"
        );
        assert!(
            !CookieJar::new(2, t0).check_token(t0, a, &token),
            "another secret"
        );
    }

    #[test]
    fn a_cookie_is_bound_to_address_peer_and_session() {
        let t0 = Instant::now();
        let jar = CookieJar::new(1, t0);
        let a = sa("10.0.0.1:7654");
        let c = jar.cookie(t0, a, PeerId(5), 9);
        assert!(jar.check_cookie(t0 + COOKIE_EPOCH, a, PeerId(5), 9, &c));
        assert!(!jar.check_cookie(t0, sa("10.0.0.9:7654"), PeerId(5), 9, &c));
        assert!(!jar.check_cookie(t0, a, PeerId(6), 9, &c));
        assert!(!jar.check_cookie(t0, a, PeerId(5), 10, &c));
        assert_ne!(c, jar.token(t0, a), "a token is not a cookie");
    }
}
