//! Peer exchange: when a peer joins, it is told of the peers we know and they are told of it,
//! so a group meshes without anyone adding everyone. What a peer hears this way is only a
//! hint: the addresses are probed, and a peer is listed once it answers.

use super::peers::Peer;
use super::Endpoint;
use crate::proto::ids::PeerId;
use crate::proto::wire::{self, PeerEntry};
use crate::proto::Found;
use rand::RngExt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Peers heard from longer ago than this are not passed on in peer exchange.
const EXCHANGE_MAX_AGE: Duration = Duration::from_secs(120);
/// A peer that reached us first is shown as learned if a peer list names it within this
/// long of its joining: both came of the same exchange.
const LEARNED_WITHIN: Duration = Duration::from_secs(30);
/// A newcomer is told of this many peers at most (drawn at random among those that qualify):
/// it meets them, and each of them tells it of as many more, so it reaches a large group in a
/// few rounds, while one join costs us one short list.
const MAX_SHARED_WITH_NEWCOMER: usize = 16;
/// How long the peer exchange with a newcomer we heard announcing on our LAN waits: past its
/// burst of announcements at start (0, 0.5 and 1.5 s), by which time the peers of a LAN that
/// hears itself have met it by their announcements. Sent at once, its list would only start
/// probes that race those handshakes (at 250 hosts on one LAN, more hellos than the pairs).
pub const EXCHANGE_DELAY: Duration = Duration::from_millis(1500);
/// How often a peer picked at random among those online is told of (up to 16 of) the peers we
/// know, besides the exchange when a peer joins, ±10%. Two peers that missed each other then
/// (one was asleep, or the path between them failed for a while, while a third joined) meet
/// later through a third, within a few periods: in a group of N, each period brings each of
/// them an entry for the other with a chance of about 16/N from each of the others' lists.
pub const GOSSIP_EVERY: Duration = Duration::from_secs(60);

/// PeerIds remembered as heard announcing (the smallest makes room): a bound on what forged
/// announcements can make us keep.
pub const MAX_HEARD_ANNOUNCING: usize = 1024;

impl Endpoint {
    /// Peer exchange with `new`, which joined or restarted: at once, unless we heard it
    /// announce on our LAN; then after [`EXCHANGE_DELAY`], if it is still online. A script
    /// (`caps::SCRIPT`) is told at once all the same: it waits only a moment for the peers it
    /// is told of (a one-shot `echo … | tailchat` on the LAN missed those that do not announce),
    /// and scripts do not start by the hundred as a LAN's peers do after a power cut.
    pub(super) fn exchange_peers_soon(&mut self, now: Instant, new: PeerId) {
        let script = self
            .peers
            .get(&new)
            .and_then(|p| p.caps)
            .is_some_and(|c| c & wire::caps::SCRIPT != 0);
        if self.heard_announcing.contains(&new) && !script {
            // A restart within the wait makes one exchange, with the new session.
            self.exchange_later.retain(|(_, id)| *id != new);
            self.exchange_later.insert((now + EXCHANGE_DELAY, new));
        } else {
            self.exchange_peers(now, new);
        }
    }

    /// Peer exchange with a peer picked at random among those online, every
    /// [`GOSSIP_EVERY`] (±10%); the first a period after the first call.
    pub(super) fn gossip(&mut self, now: Instant) {
        if self.next_gossip.is_some_and(|at| at > now) {
            return;
        }
        let first = self.next_gossip.is_none();
        self.next_gossip = Some(now + GOSSIP_EVERY.mul_f64(self.rng.random_range(0.9..1.1)));
        if first || self.leaving {
            return;
        }
        let online: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.is_online())
            .map(|(&id, _)| id)
            .collect();
        if !online.is_empty() {
            if let Some(&to) = online.get(self.rng.random_range(0..online.len())) {
                self.exchange_peers(now, to);
            }
        }
    }

    /// A LAN announcement from `id` was heard.
    pub(super) fn heard_announcing(&mut self, id: PeerId) {
        if self.heard_announcing.insert(id) && self.heard_announcing.len() > MAX_HEARD_ANNOUNCING {
            self.heard_announcing.pop_first();
        }
    }

    /// Peer exchange when `new` joins (or restarts): it is told of (up to 16 of) the peers we
    /// know. The others are not told of it: it contacts them, and is admitted by its proof, so
    /// one join costs one short list instead of an entry to every peer we know (which in a
    /// forming mesh of N peers made N³ entries).
    pub(super) fn exchange_peers(&mut self, now: Instant, new: PeerId) {
        let Some(to_addr) = self.peers.get(&new).map(|p| p.addrs.current()) else {
            return;
        };
        let mut for_new: Vec<PeerEntry> = self
            .peers
            .iter()
            .filter(|(&id, _)| id != new)
            .filter_map(|(&id, p)| entry_for(now, id, p, to_addr))
            .collect();
        // A partial Fisher–Yates shuffle: the first MAX_SHARED_WITH_NEWCOMER are a uniform draw,
        // so newcomers told by different peers learn of different peers.
        for i in 0..for_new.len().min(MAX_SHARED_WITH_NEWCOMER) {
            let j = self.rng.random_range(i..for_new.len());
            for_new.swap(i, j);
        }
        for_new.truncate(MAX_SHARED_WITH_NEWCOMER);
        for_new.sort_by_key(|e| (e.heard_secs, e.id));
        if let Some(p) = self.peers.get_mut(&new) {
            if !for_new.is_empty() {
                p.link.queue_peers(&for_new);
            }
        }
    }

    /// Entries from peer exchange, from peer `from`: the addresses of peers we do not know yet
    /// (or that are away) become hints, probed at a bounded rate; a peer is listed only once it
    /// proves itself at one of them.
    pub(super) fn on_peer_entries(&mut self, now: Instant, from: PeerId, entries: Vec<PeerEntry>) {
        let via = self.peers.get(&from).map(|p| p.addrs.current());
        for e in entries {
            if e.id == self.peer_id() || u64::from(e.heard_secs) > EXCHANGE_MAX_AGE.as_secs() {
                continue;
            }
            if let Some(p) = self.peers.get_mut(&e.id) {
                let lately = p
                    .joined_at
                    .is_some_and(|t| now.saturating_duration_since(t) <= LEARNED_WITHIN);
                if p.found == Found::Incoming && lately {
                    // It reached us first, but through the same exchange (the list came as
                    // it joined): shown as learned (only what `/peers` shows; nothing else is
                    // taken from the entry). A list much later changes nothing of it.
                    p.found = Found::Learned;
                }
                if !p.state().is_away() {
                    continue;
                }
            }
            for addr in e.addrs {
                if via.is_some_and(|v| shareable(&addr, &v)) && !self.probes.contains(addr) {
                    self.hints.push(now, from, addr);
                }
            }
        }
    }
}

/// An entry about peer `about` for a peer we reach at `to_addr`: only if `about` is online and
/// heard from lately, with only the addresses that mean the same there.
fn entry_for(now: Instant, about: PeerId, p: &Peer, to_addr: SocketAddr) -> Option<PeerEntry> {
    let age = now.saturating_duration_since(p.last_heard);
    if !p.is_online() || age > EXCHANGE_MAX_AGE {
        return None;
    }
    let addrs: Vec<SocketAddr> = p
        .addrs
        .iter()
        .filter(|a| shareable(a, &to_addr))
        .take(wire::MAX_ENTRY_ADDRS)
        .collect();
    (!addrs.is_empty()).then(|| PeerEntry {
        id: about,
        nick: p.nick.clone(),
        addrs,
        heard_secs: u32::try_from(age.as_secs()).unwrap_or(u32::MAX),
    })
}

/// Whether `addr` means the same thing to a peer we reach at `via`: a unicast address, not
/// link-local (an IPv6 zone is lost on the wire; 169.254/16 is per link), and loopback only
/// between peers that talk over loopback (that is, on one machine).
fn shareable(addr: &SocketAddr, via: &SocketAddr) -> bool {
    let ip = addr.ip().to_canonical();
    if ip.is_loopback() {
        return via.ip().to_canonical().is_loopback();
    }
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_unspecified() || v4.is_link_local() || v4.is_multicast() || v4.is_broadcast())
        }
        IpAddr::V6(v6) => {
            !(v6.is_unspecified() || v6.is_multicast() || super::discovery::is_link_local(*addr))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_addresses_that_mean_the_same_to_the_receiver_are_shared() {
        let lan = sa("192.168.1.9:7654");
        for ok in [
            "10.0.0.2:7654",
            "100.64.1.2:1",
            "[fd7a:115c::5]:7654",
            "[2001:db8::1]:9",
        ] {
            assert!(shareable(&sa(ok), &lan), "{ok}");
        }
        for bad in [
            "169.254.3.4:7654",
            "0.0.0.0:7654",
            "224.0.0.1:7654",
            "255.255.255.255:7654",
            "[fe80::1]:7654",
            "[::]:7654",
            "[ff02::1]:7654",
            "127.0.0.1:7654",
            "[::1]:7654",
        ] {
            assert!(!shareable(&sa(bad), &lan), "{bad}");
        }
        let local = sa("127.0.0.1:7000");
        assert!(
            shareable(&sa("127.0.0.1:7654"), &local),
            "loopback on one machine"
        );
        assert!(shareable(&sa("[::ffff:127.0.0.1]:7654"), &local));
    }
}
