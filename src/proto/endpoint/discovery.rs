//! Discovery: addresses we send hellos to until someone proves itself there ([`Probes`]), and
//! our LAN announcements ([`Announcer`]) and what we do with those of others.
//!
//! An address the user gave is tried for ever, ever more slowly, and the user is told when it
//! stays silent; one heard announcing or learned from a peer is given up after a few hellos.
//! Probes are bounded in number, per origin too, so announcements and peer lists from made-up
//! peers cannot crowd out the user's; an announcement that finds no room for a probe is still
//! answered with one hello (at most one per address per [`HELLO_INTERVAL`]), so a newcomer
//! meets us at once however many fakes announce. Announcements only ever lead to hellos: who
//! answers is admitted by its proof alone. With discovery off
//! ([`crate::proto::Config::discovery`]) we neither announce nor answer announcements.

use super::Endpoint;
use crate::proto::wire::{self, Announce, Frame, Header};
use crate::proto::{Event, Found};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// First interval between hellos to an address that has not answered; it doubles after each.
const PROBE_FIRST: Duration = Duration::from_millis(250);
/// Longest interval between hellos to an unanswered address (it is retried for ever, so a peer
/// that starts later is found by itself).
const PROBE_MAX: Duration = Duration::from_secs(30);
/// The longest a probe waits for the reply to its proof before saying hello again: the
/// shortest life of the token the reply must echo (§8.2).
const PROOF_WAIT_MAX: Duration = crate::proto::cookie::COOKIE_EPOCH;
/// After this many unanswered hellos, the user is told the address does not answer.
const PROBE_REPORT_AFTER: u32 = 5;
/// After this many hellos the interval has reached [`PROBE_MAX`] (250 ms · 2⁸ / 2 > 30 s).
const PROBE_SLOW_ATTEMPTS: u32 = 8;
/// Hellos to an address heard announcing, or learned from a peer, before giving up on it
/// (at 0, 0.25, 0.75 and 1.75 s; forgotten at 3.75 s).
const PROBE_LIMIT_DISCOVERED: u32 = 4;
/// Addresses being probed at most; the oldest is dropped beyond it.
pub const MAX_PROBES: usize = 64;
/// Probes of addresses heard announcing at most; beyond it an announcement gets one hello and
/// no probe.
pub const MAX_ANNOUNCED_PROBES: usize = 16;
/// Probes started from hints (addresses learned from peer lists) at most; a new one replaces
/// the oldest, so hints that never answer cannot hold the places of those that do (those are
/// answered within a round trip). The rate at which they start is the hint queue's.
pub const MAX_LEARNED_PROBES: usize = 32;
/// Hellos sent without a probe (answers to announcements and to datagrams we cannot place) go
/// to one address at most this often.
pub const HELLO_INTERVAL: Duration = Duration::from_millis(250);
/// At most one hello without a probe per announcer per this long (or twice the answer time,
/// if longer: [`super::Endpoint::note_answer`]). Such hellos answer
/// announcements once the probes for announcers are all taken (a large LAN): a burst's
/// announcements (0, 0.5, 1.5 s) and those a higher PeerId sends us alone each brought one,
/// and a cookie back — three handshakes' worth of them per pair at 250 hosts.
pub const STATELESS_ANNOUNCER_INTERVAL: Duration = Duration::from_secs(1);
/// Addresses the hello limiter remembers (a fixed 48 KiB or so).
pub const HELLO_LIMITER_SLOTS: usize = 1024;
/// Gaps after the first, second and third LAN announcements at start (or after a new
/// interface appears): at 0, 0.5 and 1.5 s, so one lost datagram does not hide us. Entry 0 is
/// unused (the first goes at once).
const ANNOUNCE_BURST: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_millis(500),
    Duration::from_millis(1000),
];
/// Gap between later announcements, ±10% jitter so peers started together do not stay in step.
/// Newcomers are found by their own announcements at once; these only catch peers that missed
/// them, so they can be rare: one small datagram per interface every half minute.
const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(30);

/// An address we send hellos to until someone answers from it.
#[derive(Debug)]
pub struct Probe {
    /// Where.
    addr: SocketAddr,
    /// When the next hello goes.
    next: Instant,
    /// Hellos sent so far.
    attempts: u32,
    /// A cookie came back: a proof of ours is on its way, and a proof reply should follow.
    cookie_seen: bool,
    /// When the first hello went (the longest a cookie's round trip can have taken).
    first_sent: Option<Instant>,
    /// When the latest hello went.
    last_sent: Option<Instant>,
    /// Until when a proof of ours is awaited: cookies arriving before then get no second
    /// proof, and no hello goes (see [`Probe::on_cookie`]).
    proof_until: Option<Instant>,
    /// The last datagram from this address that overtook the proof reply (its sender's link
    /// sent it right after the reply, and it arrived first): taken in once the reply is.
    early: Option<Vec<u8>>,
    /// Why we probe it; becomes the peer's [`Found`].
    pub origin: Found,
    /// Give up after this many hellos (`None`: never, for addresses the user gave).
    limit: Option<u32>,
    /// Tell the user after [`PROBE_REPORT_AFTER`] unanswered hellos.
    report: bool,
    /// Started from a hint: one of at most [`MAX_LEARNED_PROBES`], the oldest making room.
    from_hint: bool,
}

impl Probe {
    /// A cookie came back at `now`.
    ///
    /// Returns whether to answer it with a proof: not while the answer to an earlier proof
    /// is awaited. A cookie's round trip is at most the time since the first hello; the
    /// proof's reply is awaited twice that (at least [`PROBE_FIRST`]), and meanwhile neither
    /// the cookies of the other hellos (sent again because answers were slow, and answered
    /// in turn) nor new hellos start another handshake. On a LAN that is 250 ms, as before;
    /// on hosts so busy that answers take seconds, it keeps a pair at one handshake instead
    /// of one per hello, each a signature to make and check on both sides. A lost proof is
    /// repaired by the next hello, after the wait. The wait is at most [`PROOF_WAIT_MAX`]: a
    /// reply later than that finds our token expired, and is refused anyway.
    pub fn on_cookie(&mut self, now: Instant) -> bool {
        self.cookie_seen = true;
        if self.proof_until.is_some_and(|t| now < t) {
            return false;
        }
        let Some(first) = self.first_sent else {
            return true; // not an answer to this probe's hellos: nothing to time
        };
        let wait = (now.saturating_duration_since(first) * 2).clamp(PROBE_FIRST, PROOF_WAIT_MAX);
        let until = now + wait;
        self.proof_until = Some(until);
        self.next = self.next.max(until);
        true
    }

    /// Keeps `bytes`, a datagram from the probed address that could not be placed yet, if a
    /// proof reply is expected from there (at most one datagram, the last, per probe). Its
    /// sender let us in, so the reply was sent: if it does not follow within [`PROBE_FIRST`]
    /// it was lost (or refused, too late), and a hello goes then instead of after the whole
    /// wait for it — the other side answers the new proof with a new reply. (At 250 hosts
    /// meshing on two cores, pairs stayed half-open for 20 s this way.)
    pub fn keep_early(&mut self, now: Instant, bytes: &[u8]) -> bool {
        if self.cookie_seen {
            self.early = Some(bytes.to_vec());
            let soon = now + PROBE_FIRST;
            if self.proof_until.is_none_or(|t| t > soon) {
                self.proof_until = Some(soon);
                self.next = self.next.min(soon);
            }
        }
        self.cookie_seen
    }

    /// The datagram kept by [`Probe::keep_early`].
    pub fn take_early(&mut self) -> Option<Vec<u8>> {
        self.early.take()
    }
}

/// The addresses being probed, oldest first, at most [`MAX_PROBES`].
#[derive(Debug, Default)]
pub struct Probes {
    /// The probes, oldest first.
    list: Vec<Probe>,
    /// The shortest gap between two hellos of a probe (see [`Probes::set_min_gap`]).
    min_gap: Duration,
}

impl Probes {
    /// Starts sending hellos to `addr` now, unless it is probed already (then a user's request
    /// makes it permanent and reported). Beyond [`MAX_PROBES`] the oldest probe the user did
    /// not ask for goes; one they did is never pushed out for a discovered address (a flood of
    /// announcements must not erase an `/add`).
    pub fn add(&mut self, now: Instant, addr: SocketAddr, origin: Found) {
        if let Some(p) = self.list.iter_mut().find(|p| p.addr == addr) {
            if origin == Found::Manual && p.origin != Found::Manual {
                p.origin = Found::Manual;
                p.limit = None;
                p.report = true;
            }
            return;
        }
        if origin == Found::Announced && self.count(Found::Announced) >= MAX_ANNOUNCED_PROBES {
            return;
        }
        if self.list.len() >= MAX_PROBES {
            match self.list.iter().position(|p| p.origin != Found::Manual) {
                Some(i) => {
                    self.list.remove(i);
                }
                None if origin == Found::Manual && !self.list.is_empty() => {
                    self.list.remove(0);
                }
                None => return,
            }
        }
        let (limit, report) = match origin {
            Found::Manual => (None, true),
            _ => (Some(PROBE_LIMIT_DISCOVERED), false),
        };
        self.list.push(Probe {
            addr,
            next: now,
            attempts: 0,
            cookie_seen: false,
            first_sent: None,
            last_sent: None,
            proof_until: None,
            early: None,
            origin,
            limit,
            report,
            from_hint: false,
        });
    }

    /// Starts probing `addr`, learned from a peer list, unless it is probed already; the oldest
    /// probe started from a hint makes room beyond [`MAX_LEARNED_PROBES`].
    pub fn add_hint(&mut self, now: Instant, addr: SocketAddr) {
        if self.contains(addr) {
            return;
        }
        if self.list.iter().filter(|p| p.from_hint).count() >= MAX_LEARNED_PROBES {
            if let Some(i) = self.list.iter().position(|p| p.from_hint) {
                self.list.remove(i);
            }
        }
        self.add(now, addr, Found::Learned);
        if let Some(p) = self.get_mut(addr) {
            p.from_hint = true;
        }
    }

    /// The probe of `addr`.
    pub fn get(&self, addr: SocketAddr) -> Option<&Probe> {
        self.list.iter().find(|p| p.addr == addr)
    }

    /// The probe of `addr`, to change.
    pub fn get_mut(&mut self, addr: SocketAddr) -> Option<&mut Probe> {
        self.list.iter_mut().find(|p| p.addr == addr)
    }

    /// How many addresses are probed.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether `addr` is being probed.
    pub fn contains(&self, addr: SocketAddr) -> bool {
        self.get(addr).is_some()
    }

    /// Stops probing `addr` (it answered).
    pub fn remove(&mut self, addr: SocketAddr) {
        self.list.retain(|p| p.addr != addr);
    }

    /// Stops probing everything.
    pub fn clear(&mut self) {
        self.list.clear();
    }

    /// How many probes have this origin.
    pub fn count(&self, origin: Found) -> usize {
        self.list.iter().filter(|p| p.origin == origin).count()
    }

    /// An announcement came from `addr`, which is being probed (a peer known from an earlier
    /// run, say, whose hellos back off while it was not there; not for an announcement, which
    /// the probe answers already, nor for a hint from a peer list, which the peer itself
    /// will answer too): its next hello goes at
    /// `now`, unless a proof of ours to it is awaited or a hello went too lately for its
    /// answer to be back (the probes' gap, at least [`PROBE_FIRST`]: on a busy LAN, where
    /// answers are slow, announcements must not bring a hello each). Whether one is now due.
    /// A probe that had given up (its last hello unanswered) is dropped instead, so that the
    /// announcement is answered as a newcomer's.
    pub fn hurry(&mut self, now: Instant, addr: SocketAddr) -> bool {
        let Some(i) = self.list.iter().position(|p| p.addr == addr) else {
            return false;
        };
        let Some(p) = self.list.get_mut(i) else {
            return false;
        };
        if p.origin == Found::Announced || p.from_hint {
            return false;
        }
        if p.limit.is_some_and(|l| p.attempts >= l) {
            self.list.remove(i);
            return false;
        }
        let gap = self.min_gap.max(PROBE_FIRST);
        if p.proof_until.is_some_and(|t| t > now) || p.last_sent.is_some_and(|t| now < t + gap) {
            return false;
        }
        p.next = p.next.min(now);
        true
    }

    /// The addresses the user added that are still probed: nobody has answered there yet.
    pub fn manual(&self) -> Vec<SocketAddr> {
        self.list
            .iter()
            .filter(|p| p.origin == Found::Manual)
            .map(|p| p.addr)
            .collect()
    }

    /// Whether a probe started from a hint (an address another peer passed on) is going on,
    /// its first hello sent less than `within` ago (or not yet).
    pub fn any_from_hint_since(&self, now: Instant, within: Duration) -> bool {
        self.list.iter().any(|p| {
            p.from_hint
                && p.first_sent
                    .is_none_or(|at| now.saturating_duration_since(at) < within)
        })
    }

    /// Probes `addr` without telling the user that it does not answer.
    pub fn quiet(&mut self, addr: SocketAddr) {
        if let Some(p) = self.list.iter_mut().find(|p| p.addr == addr) {
            p.report = false;
        }
    }

    /// Probes `addr` as a new manual probe from `now` if it is probed already: the user asked
    /// for it again (`/add`), so a probe gone quiet and slow (its peer left, or it never
    /// answered) says hello at once and reports again.
    pub fn restart(&mut self, now: Instant, addr: SocketAddr) {
        if let Some(p) = self.list.iter_mut().find(|p| p.addr == addr) {
            p.next = now;
            p.attempts = 0;
            p.first_sent = None;
            p.report = true;
        }
    }

    /// Probes `addr` quietly at the slowest pace, from `now`: a peer the user added went away,
    /// and is looked for again in case it comes back.
    pub fn slow(&mut self, now: Instant, addr: SocketAddr) {
        if let Some(p) = self.list.iter_mut().find(|p| p.addr == addr) {
            p.report = false;
            p.attempts = p.attempts.max(PROBE_SLOW_ATTEMPTS);
            p.next = now + PROBE_MAX;
        }
    }

    /// When the next hello is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.list.iter().map(|p| p.next).min()
    }

    /// The probed addresses where a proof of ours went and its reply is still awaited, each
    /// with the end of that wait: the peer there may have let us in already.
    pub fn awaiting_proof_reply(&self, now: Instant) -> Vec<(SocketAddr, Instant)> {
        self.list
            .iter()
            .filter(|p| p.cookie_seen)
            .filter_map(|p| Some((p.addr, p.proof_until.filter(|t| *t > now)?)))
            .collect()
    }

    /// Spaces each probe's hellos by at least `gap` (twice how long answers take lately): a
    /// hello sent again before the first one's answer could be back only brings another
    /// answer, on hosts too busy to answer quickly.
    pub fn set_min_gap(&mut self, gap: Duration) {
        self.min_gap = gap;
    }

    /// The gap set by [`Probes::set_min_gap`].
    #[cfg(test)]
    pub fn min_gap(&self) -> Duration {
        self.min_gap
    }

    /// The gap set by [`Probes::set_min_gap`]: twice the time answers take lately.
    pub fn gap(&self) -> Duration {
        self.min_gap
    }

    /// The hellos due at `now`, as (address, whether to tell the user it does not answer);
    /// reschedules them, and forgets discovered addresses whose last hello went unanswered.
    pub fn due(&mut self, now: Instant) -> Vec<(SocketAddr, bool)> {
        self.list
            .retain(|p| !(p.next <= now && p.limit.is_some_and(|l| p.attempts >= l)));
        let mut due = Vec::new();
        for p in self.list.iter_mut().filter(|p| p.next <= now) {
            p.attempts += 1;
            p.first_sent.get_or_insert(now);
            p.last_sent = Some(now);
            let interval = PROBE_FIRST.saturating_mul(1 << p.attempts.min(10)) / 2;
            p.next = now + interval.min(PROBE_MAX).max(self.min_gap);
            due.push((p.addr, p.report && p.attempts == PROBE_REPORT_AFTER));
        }
        due
    }
}

/// When our LAN announcements go: a burst at start (and after [`Announcer::soon`]), then
/// rarely, with jitter.
#[derive(Debug)]
pub struct Announcer {
    /// When the next announcement is due (`None` without discovery, or after leaving).
    at: Option<Instant>,
    /// Announcements of the current burst already sent.
    burst: usize,
    /// Seeded randomness for the jitter.
    rng: ChaCha8Rng,
}

impl Announcer {
    /// Announcing from `now` if `on`, with randomness from `seed`.
    pub fn new(on: bool, now: Instant, seed: u64) -> Self {
        Self {
            at: on.then_some(now),
            burst: 0,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// When the next announcement is due.
    pub fn next(&self) -> Option<Instant> {
        self.at
    }

    /// Starts a new burst at `now`, if announcing at all; returns whether it did.
    pub fn soon(&mut self, now: Instant) -> bool {
        if self.at.is_none() {
            return false;
        }
        self.at = Some(now);
        self.burst = 0;
        true
    }

    /// Announces no more.
    pub fn stop(&mut self) {
        self.at = None;
    }

    /// Whether an announcement is due at `now`; if so, schedules the next one.
    pub fn due(&mut self, now: Instant) -> bool {
        let Some(at) = self.at.filter(|&at| at <= now) else {
            return false;
        };
        self.burst += 1;
        let gap = match ANNOUNCE_BURST.get(self.burst) {
            Some(gap) => *gap,
            None => ANNOUNCE_INTERVAL.mul_f64(self.rng.random_range(0.9..1.1)),
        };
        self.at = Some(at.max(now) + gap);
        true
    }
}

impl Endpoint {
    /// Starts contacting a peer at `addr` (`/add`, `--peer`): hellos go out until it answers.
    pub fn add_address(&mut self, now: Instant, addr: SocketAddr) {
        self.add_probe(now, addr, Found::Manual);
        if !self.leaving {
            self.probes.restart(now, addr);
        }
        self.mark(now);
    }

    /// Announces again soon, in a burst: a network interface appeared (a laptop joined a
    /// network), so peers there have not heard of us.
    pub fn announce_soon(&mut self, now: Instant) {
        if !self.leaving && self.announcer.soon(now) {
            self.mark(now);
        }
    }

    /// Starts sending hellos to `addr` (not after leaving); what gives up, and whether the
    /// user hears of it, depends on `origin`.
    pub(super) fn add_probe(&mut self, now: Instant, addr: SocketAddr, origin: Found) {
        if !self.leaving {
            self.probes.add(now, addr, origin);
        }
    }

    /// An announcement heard on the LAN. Without discovery it is dropped. Otherwise whoever
    /// sent it gets a hello — from a probe if one of the few for announcements is free, else a
    /// single one (at most one per address per [`HELLO_INTERVAL`]) — unless it claims to be a
    /// peer that is online in that session (it is reachable already; one that moved is asked
    /// to prove its new address by its own datagrams from there), or an announcer answered
    /// from another address within [`HELLO_INTERVAL`] (the copies of one announcement, over
    /// IPv4 and IPv6: one handshake is enough, and a later announcement is answered again).
    /// An address already probed gets that probe's next hello at once.
    /// Nothing else: an announcement proves nothing, so it changes nothing about a peer.
    /// Returns whether a probe started (the endpoint has work to do).
    pub(super) fn on_announce(&mut self, now: Instant, from: SocketAddr, header: Header) -> bool {
        if !self.config.discovery {
            self.stats.discovery_off += 1;
            return false;
        }
        if self.leaving {
            return false;
        }
        self.heard_announcing(header.sender);
        if let Some(peer) = self.peers.get_mut(&header.sender) {
            if peer.session == header.session && peer.is_online() {
                // Only what `/peers` shows: a peer that reached us first, or that a peer list
                // named before its announcement came, is on our LAN all the same.
                let relabel = matches!(
                    peer.found,
                    Found::Incoming | Found::Learned | Found::Remembered
                );
                if relabel && peer.proven_at(from) {
                    peer.found = Found::Announced;
                }
                // Found again through IPv6 link-local while IPv4 was out, and announcing from
                // an address this session proved before: back to that one, whose meaning does
                // not depend on an interface (a link-local address is never passed on, and
                // means nothing in another run).
                if is_link_local(peer.addrs.current())
                    && !is_link_local(from)
                    && peer.proven_at(from)
                {
                    peer.addrs.note(from);
                }
                return false;
            }
        }
        if self.probes.contains(from) {
            // Already looked for there: for a peer known from before, its hellos backing off,
            // it is there now. (Not counted as an answer to the announcer: the copies of the
            // announcement from its other addresses are answered as before.)
            if self.probes.hurry(now, from) {
                return true;
            }
            if self.probes.contains(from) {
                return false;
            }
        }
        if !self.announcers.allow(now, (header.sender, header.session)) {
            return false;
        }
        if self.peer_id() > header.sender {
            // Both sides hear each other's announcements; one handshake per pair is enough,
            // and the lower PeerId makes it. We prompt it with an announcement to it alone (it
            // may not have heard ours): one small datagram, one per address per 250 ms.
            if self.hello_limiter.allow(now, from) {
                let bytes = wire::encode(&self.header(), &[Frame::Announce(Announce { caps: 0 })]);
                self.transmits
                    .push_back(crate::proto::Transmit { to: from, bytes });
            }
            return false;
        }
        self.add_probe(now, from, Found::Announced);
        if self.probes.contains(from) {
            return true;
        }
        if self
            .stateless_announcers
            .allow(now, (header.sender, header.session))
        {
            self.stateless_hello(now, from);
        }
        false
    }

    /// Sends the hellos and the announcement due at `now`, after turning waiting hints into
    /// probes as far as the bounds allow.
    pub(super) fn run_discovery(&mut self, now: Instant) {
        self.start_learned_probes(now);
        let due = self.probes.due(now);
        if self.announcer.due(now) {
            let bytes = wire::encode(&self.header(), &[Frame::Announce(Announce { caps: 0 })]);
            self.announces.push_back(bytes);
        }
        for (addr, report) in due {
            self.send_hello(now, addr);
            if report {
                self.events.push_back(Event::AddressUnanswered { addr });
            }
        }
    }

    /// Turns waiting hints into probes as fast as the hint queue's rate allows.
    fn start_learned_probes(&mut self, now: Instant) {
        while !self.leaving {
            let Some(addr) = self.hints.next(now) else {
                break;
            };
            if !self.peers.proven_present_at(addr) {
                self.probes.add_hint(now, addr);
            }
        }
    }

    /// When hints wait for a probe that the rate holds back.
    pub(super) fn hints_due(&self) -> Option<Instant> {
        if self.leaving {
            return None;
        }
        self.hints.ready_at()
    }
}

/// Whether `addr` is an IPv6 link-local address (`fe80::/10`), whose zone is lost on the wire.
pub(super) fn is_link_local(addr: SocketAddr) -> bool {
    matches!(addr.ip().to_canonical(), std::net::IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn addr(i: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], i))
    }

    /// The times of the first `n` hellos to a probe added at `t0`.
    fn schedule(origin: Found, n: usize, t0: Instant) -> Vec<(Duration, bool)> {
        schedule_spaced(origin, n, t0, Duration::ZERO)
    }

    /// [`schedule`], with answers taking so long that hellos are at least `gap` apart.
    fn schedule_spaced(
        origin: Found,
        n: usize,
        t0: Instant,
        gap: Duration,
    ) -> Vec<(Duration, bool)> {
        let mut probes = Probes::default();
        probes.set_min_gap(gap);
        probes.add(t0, addr(1), origin);
        let mut got = Vec::new();
        while got.len() < n {
            let Some(at) = probes.next_due() else { break };
            for (_, report) in probes.due(at) {
                got.push((at - t0, report));
            }
        }
        got
    }

    #[test]
    fn a_manual_address_is_tried_for_ever_ever_more_slowly_and_reported_once() {
        let t0 = Instant::now();
        let got = schedule(Found::Manual, 12, t0);
        let times: Vec<u64> = got.iter().map(|(d, _)| d.as_millis() as u64).collect();
        assert_eq!(
            times,
            vec![0, 250, 750, 1750, 3750, 7750, 15750, 31750, 61750, 91750, 121750, 151750]
        );
        let reports: Vec<usize> = got
            .iter()
            .enumerate()
            .filter_map(|(i, (_, report))| report.then_some(i))
            .collect();
        assert_eq!(reports, vec![PROBE_REPORT_AFTER as usize - 1]);
    }

    #[test]
    fn a_discovered_address_is_given_up_after_a_few_hellos() {
        let t0 = Instant::now();
        let got = schedule(Found::Announced, 100, t0);
        assert_eq!(got.len(), PROBE_LIMIT_DISCOVERED as usize);
        assert!(got.iter().all(|(_, report)| !report));
    }

    #[test]
    fn the_user_asking_for_a_discovered_address_makes_it_permanent() {
        let t0 = Instant::now();
        let mut probes = Probes::default();
        probes.add(t0, addr(1), Found::Learned);
        probes.add(t0, addr(1), Found::Manual);
        assert_eq!(probes.get(addr(1)).map(|p| p.origin), Some(Found::Manual));
        let mut hellos = 0;
        while hellos < 20 {
            let at = probes.next_due().unwrap();
            hellos += probes.due(at).len();
        }
    }

    #[test]
    fn a_flood_of_discovered_addresses_never_pushes_out_a_manual_one() {
        let t0 = Instant::now();
        let mut probes = Probes::default();
        probes.add(t0, addr(1), Found::Manual);
        // Announced probes stop at their own bound; learned ones (bounded by the endpoint's
        // hint queue) fill the list.
        for i in 2..500 {
            probes.add(t0, addr(i), Found::Learned);
        }
        assert_eq!(probes.list.len(), MAX_PROBES);
        assert!(probes.contains(addr(1)));
        assert!(probes.contains(addr(499)) && !probes.contains(addr(2)));
        for i in 1000..1000 + MAX_PROBES as u16 {
            probes.add(t0, addr(i), Found::Manual);
        }
        probes.add(t0, addr(9), Found::Learned);
        assert!(!probes.contains(addr(9)), "no room among manual probes");
        assert!(
            !probes.contains(addr(1)),
            "the oldest manual one made room for a newer"
        );
    }

    #[test]
    fn a_proof_awaits_its_reply_for_twice_the_cookies_round_trip() {
        let t0 = Instant::now();
        let mut probes = Probes::default();
        probes.add(t0, addr(1), Found::Announced);
        // Answers are slow: all four hellos go before the first cookie is back, 3 s later.
        let mut hellos = 0;
        let mut at = t0;
        while at < t0 + MS * 3000 {
            hellos += probes.due(at).len();
            at = probes.next_due().unwrap();
        }
        assert_eq!(hellos, 4);
        let p = probes.get_mut(addr(1)).unwrap();
        assert!(p.on_cookie(t0 + MS * 3000), "the first cookie is proved");
        // The cookies of the other three hellos follow: no second proof, and no hello, for
        // twice the 3 s the first round trip may have taken.
        for late in [3250, 3750, 4750] {
            assert!(!p.on_cookie(t0 + MS * late), "cookie at {late} ms");
        }
        assert_eq!(probes.next_due(), Some(t0 + MS * 9000));
        // Then a cookie (of a hello sent again) is proved again: the first proof was lost.
        let p = probes.get_mut(addr(1)).unwrap();
        assert!(p.on_cookie(t0 + MS * 9001));
    }

    #[test]
    fn the_wait_for_a_proof_reply_ends_with_the_token_or_when_its_sender_talks() {
        let t0 = Instant::now();
        let mut probes = Probes::default();
        probes.add(t0, addr(1), Found::Announced);
        assert_eq!(probes.due(t0).len(), 1);
        // A cookie 10 s late: twice that would be 20 s, but a reply after 7 s (the shortest
        // life of our token) could not be taken: hello again then.
        let p = probes.get_mut(addr(1)).unwrap();
        assert!(p.on_cookie(t0 + MS * 10_000));
        assert_eq!(probes.next_due(), Some(t0 + MS * 10_000 + PROOF_WAIT_MAX));
        // Its sender talks to us (it let us in): the reply was sent, and if it is not here
        // within a quarter second it was lost.
        let p = probes.get_mut(addr(1)).unwrap();
        assert!(p.keep_early(t0 + MS * 11_000, b"early"));
        assert_eq!(probes.next_due(), Some(t0 + MS * 11_250));
        assert_eq!(probes.due(t0 + MS * 11_250).len(), 1, "hello again");
        let p = probes.get_mut(addr(1)).unwrap();
        assert!(p.on_cookie(t0 + MS * 11_260), "and a new proof");
        assert_eq!(p.take_early().as_deref(), Some(&b"early"[..]));
    }

    #[test]
    fn on_a_lan_a_lost_proof_is_retried_after_a_quarter_second() {
        let t0 = Instant::now();
        let mut probes = Probes::default();
        probes.add(t0, addr(1), Found::Manual);
        assert_eq!(probes.due(t0).len(), 1);
        let p = probes.get_mut(addr(1)).unwrap();
        assert!(p.on_cookie(t0 + MS));
        assert!(!p.on_cookie(t0 + MS * 2), "a duplicate cookie");
        assert_eq!(probes.next_due(), Some(t0 + MS * 251));
        assert!(probes.due(t0 + MS * 251).len() == 1, "hello again");
        let p = probes.get_mut(addr(1)).unwrap();
        assert!(p.on_cookie(t0 + MS * 252));
    }

    #[test]
    fn slow_answers_space_a_probes_hellos() {
        let t0 = Instant::now();
        let times = |gap: u64| -> Vec<u64> {
            schedule_spaced(Found::Announced, 4, t0, MS * gap as u32)
                .iter()
                .map(|(d, _)| d.as_millis() as u64)
                .collect()
        };
        assert_eq!(times(0), [0, 250, 750, 1750], "answers in a moment");
        assert_eq!(times(3_000), [0, 3_000, 6_000, 9_000], "answers in 1.5 s");
        assert_eq!(
            times(700),
            [0, 700, 1_400, 2_400],
            "the usual gap once longer"
        );
    }

    #[test]
    fn announced_probes_are_few_and_never_push_out_others() {
        let t0 = Instant::now();
        let mut probes = Probes::default();
        probes.add(t0, addr(1), Found::Learned);
        for i in 2..200 {
            probes.add(t0, addr(i), Found::Announced);
        }
        assert_eq!(probes.count(Found::Announced), MAX_ANNOUNCED_PROBES);
        assert!(probes.contains(addr(1)));
        // Each is given up after a few hellos, so the slots free up.
        let mut at = t0;
        while probes.count(Found::Announced) > 0 {
            at = probes.next_due().unwrap();
            probes.due(at);
        }
        assert_eq!(at - t0, MS * 3750);
    }

    #[test]
    fn slowed_probes_wait_the_longest_interval_quietly() {
        let t0 = Instant::now();
        let mut probes = Probes::default();
        probes.add(t0, addr(1), Found::Manual);
        probes.slow(t0, addr(1));
        assert_eq!(probes.next_due(), Some(t0 + PROBE_MAX));
        let mut at = t0;
        for _ in 0..10 {
            at = probes.next_due().unwrap();
            assert!(probes.due(at).iter().all(|(_, report)| !report));
        }
        assert_eq!(probes.next_due(), Some(at + PROBE_MAX));
    }

    #[test]
    fn announcements_go_in_a_burst_then_every_half_minute_or_so() {
        let t0 = Instant::now();
        let mut a = Announcer::new(true, t0, 7);
        let mut times = Vec::new();
        for _ in 0..6 {
            let at = a.next().unwrap();
            assert!(a.due(at));
            times.push(at - t0);
        }
        assert_eq!(
            times.get(..3),
            Some(&[Duration::ZERO, MS * 500, MS * 1500][..])
        );
        let later_gaps = times.iter().skip(2).zip(times.iter().skip(3));
        for gap in later_gaps.map(|(earlier, later)| *later - *earlier) {
            assert!(gap >= ANNOUNCE_INTERVAL * 9 / 10 && gap <= ANNOUNCE_INTERVAL * 11 / 10);
        }
        let last = times.last().copied().unwrap_or_default();
        assert!(!a.due(t0 + last), "not twice at one time");
        assert!(a.soon(t0 + MS * 100_000));
        assert_eq!(a.next(), Some(t0 + MS * 100_000));
        a.stop();
        assert!(!a.soon(t0) && a.next().is_none());
        assert!(!Announcer::new(false, t0, 7).soon(t0));
    }
}
