//! The endpoint: this peer's identity, its peers, and the sans-IO interface (inputs
//! `handle_*` and commands, outputs `poll_*`; see [`crate::proto`] for the order to drive it
//! in).
//!
//! [`Endpoint`] is one struct whose `impl` blocks are spread over this module's files, one idea
//! each:
//! - this file: the inputs and outputs, the commands, and turning link events into events;
//! - `peers`: the peer table (admission, eviction, restored peers);
//! - `handshake`: hello, cookie, proof and proof reply; sessions and proven addresses;
//! - `discovery`: probing addresses until they answer, and LAN announcements;
//! - `hints`: addresses learned from peer lists, waiting to be probed at a bounded rate;
//! - `limits`: the token bucket and the per-address hello limiter;
//! - `exchange`: telling peers about each other.

mod discovery;
mod exchange;
mod handshake;
mod hints;
mod limits;
mod peers;

use self::discovery::{Announcer, Probes, HELLO_INTERVAL, HELLO_LIMITER_SLOTS};
use self::handshake::SignatureCache;
use self::hints::Hints;
use self::limits::{AddrLimiter, SlotLimiter, TokenBucket};
use self::peers::PeerTable;
use super::cookie::CookieJar;
use super::identity::PublicKey;
use super::ids::{MessageId, PeerId};
use super::link::{LinkEvent, LinkState, QueueError, Style};
use super::nick::{is_valid_nick, NICK_RULE};
use super::wire::{self, DecodeError, Frame};
use super::{
    AppDataError, Config, Event, ForgetReason, Found, PeerInfo, Recipients, RestoredPeer,
    SendError, Sent, Stats, Transmit, UndeliveredReason, MAX_MESSAGE_BYTES,
};
use rand::rngs::ChaCha8Rng;
use rand::SeedableRng;
use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Distinct senders told about a version mismatch at most (each once).
const MAX_VERSION_REPORTS: usize = 64;
/// Hellos per second answering datagrams from PeerIds we do not know (a peer that still talks
/// to an earlier run of ours, or whose proof reply we lost). Only those: a known PeerId at an
/// unproven address or in a stale session is answered by the per-address limiter alone, so a
/// flood of made-up PeerIds cannot delay a real peer's recovery.
const WHO_ARE_YOU_PER_SEC: u32 = 10;

/// What an endpoint holds for peers and addresses, for tests and diagnostics: every one of
/// these is bounded, whatever arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footprint {
    /// Peers in the table (each proved its key at an address).
    pub peers: usize,
    /// Addresses being probed.
    pub probes: usize,
    /// Learned addresses waiting to be probed.
    pub hints: usize,
    /// Restored peers waiting outside the table.
    pub dormant: usize,
    /// Evicted peers whose watermark is kept.
    pub forgotten: usize,
    /// Addresses the hello limiter can remember (fixed).
    pub hello_limiter: usize,
    /// PeerIds remembered as heard announcing (at most `MAX_HEARD_ANNOUNCING`).
    pub heard_announcing: usize,
    /// Newcomers whose peer exchange waits: those that proved themselves in the last
    /// `EXCHANGE_DELAY`, one entry each.
    pub exchange_later: usize,
}

/// How long [`Endpoint::learning_peers`] counts a peer passed on as still being met: a
/// handshake is two round trips, under a second even through a relay; one that has not
/// answered by then is not waited for.
pub const HINT_PATIENCE: Duration = Duration::from_secs(1);
/// Proofs to one address we do not probe go at most this often (see `Endpoint::proof_limiter`),
/// or once per twice the answer time if longer ([`Endpoint::note_answer`]).
pub const PROOF_INTERVAL: Duration = Duration::from_secs(1);
/// The longest [`Endpoint::note_answer`] spaces hellos answering one announcer, and proofs
/// to one address: a cookie's shortest life (§8.2), so a late answer is still good.
pub const PACE_MAX: Duration = crate::proto::cookie::COOKIE_EPOCH;
/// How many of the last handshakes' round trips make the answer time (their shortest).
pub const ANSWER_SAMPLES: usize = 8;
/// A datagram from an unknown PeerId at an address we sent a proof to within this long is
/// answered with a hello outside the strangers' budget ([`WHO_ARE_YOU_PER_SEC`]).
pub const PROVED_TO_LATELY: Duration = Duration::from_secs(60);
/// A proof reply of ours, sent again until its peer is heard ([`Endpoint::resend_replies`]).
#[derive(Debug)]
pub(super) struct UnconfirmedReply {
    /// Where it went.
    pub to: SocketAddr,
    /// The datagram.
    pub bytes: Vec<u8>,
    /// When it first went: it is not sent past the shortest life of the token it echoes.
    pub first: Instant,
    /// When it goes next.
    pub next: Instant,
    /// The gap before the first resend; each later one waits twice as long.
    pub gap: Duration,
    /// Sends so far.
    pub sent: u32,
}

/// When a proof reply whose peer has not been heard since goes again, at the least (then twice
/// as long each time; see [`Endpoint::resend_replies`]): or twice the round trip its
/// handshake took, or twice the time answers take lately, if longer.
pub const REPLY_RESEND_FIRST: Duration = Duration::from_millis(250);
/// A proof reply goes at most this often in all (at 0, 0.25, 0.75, 1.75 and 3.75 s: within
/// the 7 s the initiator's token lasts at the least).
pub const REPLY_SENDS: u32 = 5;

/// After a change of nick, a peer whose streams (re)start within this long is sent the nick
/// again: longer than a proof stays valid (a cookie lives at most 14 s, §8.2).
pub const NICK_RESEND_WINDOW: std::time::Duration = std::time::Duration::from_secs(15);

/// How long an ephemeral peer that left is kept, to acknowledge its leave again if our first
/// ack was lost (its sender gives up long before), before it is forgotten.
pub const EPHEMERAL_LINGER: std::time::Duration = std::time::Duration::from_secs(30);

/// The protocol state machine for one tailchat instance. See the module documentation of
/// [`crate::proto`] for how to drive it.
#[derive(Debug)]
pub struct Endpoint {
    /// Identity, nick, session and limits.
    config: Config,
    /// Makes and checks the tokens and cookies of the handshake.
    jar: CookieJar,
    /// Learned addresses waiting to be probed.
    hints: Hints,
    /// At most one stateless hello per address per [`HELLO_INTERVAL`].
    hello_limiter: AddrLimiter,
    /// At most one proof per [`PROOF_INTERVAL`] (or twice the answer time) to an address we
    /// do not probe (its cookie answers a stateless hello, or a probe given up before slow
    /// answers came back): the cookies of several hellos then make one handshake, not one
    /// each. Probed addresses are paced by their probe ([`discovery::Probe::on_cookie`]).
    proof_limiter: AddrLimiter,
    /// At most one announcement answered per announcer (PeerId and session, as claimed) per
    /// [`HELLO_INTERVAL`]: one announcement arrives as up to three copies, from the announcer's
    /// IPv4 and IPv6 addresses, and one handshake is enough.
    announcers: SlotLimiter<(PeerId, u64)>,
    /// At most one hello with no probe behind it per announcer per
    /// [`discovery::STATELESS_ANNOUNCER_INTERVAL`] (or twice the answer time): on a large LAN
    /// (more announcers than probes) each announcement of a burst, and each sent to us alone,
    /// would otherwise bring another hello, and another cookie back.
    stateless_announcers: SlotLimiter<(PeerId, u64)>,
    /// Hellos answering datagrams from PeerIds we do not know, per second.
    strangers: TokenBucket,
    /// Seeded randomness (who is told of a newcomer).
    rng: ChaCha8Rng,
    /// Signatures recently made and verified, so a repeated proof costs no curve arithmetic.
    signatures: SignatureCache,
    /// Next message id.
    next_msg: u64,
    /// Known peers.
    peers: PeerTable,
    /// Addresses awaiting an answer.
    probes: Probes,
    /// When LAN announcements are due.
    announcer: Announcer,
    /// Datagrams ready to send.
    transmits: VecDeque<Transmit>,
    /// Announcement datagrams ready for the driver to broadcast.
    announces: VecDeque<Vec<u8>>,
    /// Events ready for the UI.
    events: VecDeque<Event>,
    /// Counters.
    stats: Stats,
    /// Addresses already told about a version mismatch.
    version_reported: BTreeSet<SocketAddr>,
    /// When a refused newcomer was last told ([`Event::NewcomerRefused`]).
    refused_told: Option<Instant>,
    /// [`Endpoint::leave`] was called.
    leaving: bool,
    /// After leaving: addresses a proof of ours went to, whose reply had not come, and until
    /// when it is awaited. The peer there may have admitted us, and is owed a goodbye once the
    /// reply comes (else it lists us until we stop answering).
    goodbyes_owed: Vec<(SocketAddr, Instant)>,
    /// Our proof replies not yet known to have arrived, per peer we admitted as responder.
    /// Dropped at the first datagram of the peer's that its link takes (it has admitted us).
    /// A lost reply would otherwise leave the pair half-open (we list the peer, it does not
    /// know us) until its next handshake goes through whole: four legs instead of one, long
    /// under heavy loss (§8.3).
    replies_unconfirmed: std::collections::BTreeMap<PeerId, UnconfirmedReply>,
    /// Earlier runs of peers whose proofs were refused, as (peer, session): when first, and
    /// whether the user was told (once each).
    earlier_runs: std::collections::BTreeMap<(PeerId, u64), (Instant, bool)>,
    /// Peers that told us a later run of our identity took our place there
    /// ([`Event::Superseded`]), told to our user once each.
    superseded_told: std::collections::BTreeSet<PeerId>,
    /// The cookies our latest proofs echoed, with where they went (see
    /// [`handshake::COOKIES_ECHOED`]).
    cookies_echoed: std::collections::VecDeque<(SocketAddr, crate::proto::cookie::Cookie)>,
    /// We are away, with this reason (see [`Endpoint::set_away`]).
    away: Option<String>,
    /// We say we are a script (see [`Endpoint::set_script`]).
    script: bool,
    /// We say we are ephemeral (see [`Endpoint::set_ephemeral`]).
    ephemeral: bool,
    /// When our nick last changed: a peer whose streams start soon after may have our older
    /// nick from a proof sent before the change.
    nick_changed: Option<Instant>,
    /// Ephemeral peers that left, and when they are forgotten: until then they are kept only
    /// to acknowledge their leave again, should our first ack be lost.
    departing: std::collections::BTreeMap<PeerId, Instant>,
    /// Online peers that proved themselves at a new address while their current one may still
    /// work, with that address and when it is taken if nothing comes from a proven one by then
    /// (see [`handshake`]'s `check_address`). At most one per peer.
    address_checks: std::collections::BTreeMap<PeerId, (SocketAddr, Instant, u64)>,
    /// Peers whose new session was bound at an address first seen with it, while they had
    /// others before: that address, until when a proof at one of the earlier ones replaces it,
    /// and the session (see [`handshake`]'s `accept`).
    first_seen: std::collections::BTreeMap<PeerId, (SocketAddr, Instant, u64)>,
    /// PeerIds heard announcing on our LAN (at most [`exchange::MAX_HEARD_ANNOUNCING`]): a
    /// newcomer among them hears the LAN's announcements too, so its peer exchange waits.
    heard_announcing: BTreeSet<PeerId>,
    /// Newcomers whose peer exchange waits, and until when ([`exchange::EXCHANGE_DELAY`]).
    exchange_later: BTreeSet<(Instant, PeerId)>,
    /// An input arrived at this time and datagrams are not built yet. Building them lazily, at
    /// the first `poll_*` after a batch of inputs, packs messages typed or received together
    /// into shared datagrams and one ack, without delaying anything.
    pending: Option<Instant>,
    /// When the links' keepalive intervals were last set for the number of peers online (they
    /// grow with it, [`crate::proto::keepalive_interval`]): at most once a second.
    keepalives_checked: Option<Instant>,
    /// When a peer picked at random is next told of the peers we know
    /// ([`exchange::GOSSIP_EVERY`]); `None` until the first pass.
    next_gossip: Option<Instant>,
    /// The round trips of our last handshakes (see [`Endpoint::note_answer`]).
    answers: VecDeque<Duration>,
}

impl Endpoint {
    /// A new endpoint, started at `now`.
    pub fn new(config: Config, now: Instant) -> Self {
        Self {
            announcer: Announcer::new(config.discovery, now, config.seed),
            peers: PeerTable::new(config.limits),
            jar: CookieJar::new(config.seed, now),
            hints: Hints::default(),
            hello_limiter: AddrLimiter::new(HELLO_LIMITER_SLOTS, HELLO_INTERVAL),
            proof_limiter: AddrLimiter::new(HELLO_LIMITER_SLOTS, PROOF_INTERVAL),
            announcers: SlotLimiter::new(HELLO_LIMITER_SLOTS, HELLO_INTERVAL),
            stateless_announcers: SlotLimiter::new(
                HELLO_LIMITER_SLOTS,
                discovery::STATELESS_ANNOUNCER_INTERVAL,
            ),
            strangers: TokenBucket::new(WHO_ARE_YOU_PER_SEC, now),
            rng: ChaCha8Rng::seed_from_u64(config.seed ^ 0x7461_696c_6368_6174),
            signatures: SignatureCache::default(),
            config,
            next_msg: 1,
            probes: Probes::default(),
            transmits: VecDeque::new(),
            announces: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            version_reported: BTreeSet::new(),
            refused_told: None,
            leaving: false,
            goodbyes_owed: Vec::new(),
            replies_unconfirmed: std::collections::BTreeMap::new(),
            earlier_runs: std::collections::BTreeMap::new(),
            superseded_told: std::collections::BTreeSet::new(),
            cookies_echoed: std::collections::VecDeque::new(),
            away: None,
            ephemeral: false,
            script: false,
            nick_changed: None,
            departing: std::collections::BTreeMap::new(),
            address_checks: std::collections::BTreeMap::new(),
            first_seen: std::collections::BTreeMap::new(),
            heard_announcing: BTreeSet::new(),
            exchange_later: BTreeSet::new(),
            pending: None,
            keepalives_checked: None,
            next_gossip: None,
            answers: VecDeque::with_capacity(ANSWER_SAMPLES),
        }
    }

    /// Says, in proofs from now on, that we are a script (`caps::SCRIPT`): a program that
    /// waits only a moment for the peers it is told of, so peers on our LAN pass theirs on at
    /// once rather than after `EXCHANGE_DELAY` (spec §8.7). Call it before any contact.
    pub fn set_script(&mut self, script: bool) {
        self.script = script;
    }

    /// Says, in proofs from now on, that we are ephemeral (a script): peers forget us once we
    /// have left, and keep nothing for us. Call it before any contact.
    pub fn set_ephemeral(&mut self, ephemeral: bool) {
        self.ephemeral = ephemeral;
    }

    /// Whether we say we are ephemeral ([`Endpoint::set_ephemeral`]).
    #[must_use]
    pub fn is_ephemeral(&self) -> bool {
        self.ephemeral
    }

    /// We are away with `reason` (`Some`, perhaps empty) or back (`None`): every peer is told,
    /// in order with our messages, and one that joins later is told when it does. Nothing is
    /// sent if nothing changed.
    ///
    /// # Errors
    /// A reason longer than [`wire::MAX_AWAY_BYTES`] bytes.
    pub fn set_away(&mut self, now: Instant, reason: Option<&str>) -> Result<(), String> {
        if reason.is_some_and(|r| r.len() > wire::MAX_AWAY_BYTES) {
            return Err(format!(
                "the reason is too long: {} bytes, at most {} (256 letters of English, fewer of other scripts: é takes 2, 字 3) — shorten it",
                reason.map_or(0, str::len),
                wire::MAX_AWAY_BYTES
            ));
        }
        if self.away.as_deref() == reason {
            return Ok(());
        }
        self.away = reason.map(str::to_owned);
        for p in self.peers.values_mut().filter(|p| !p.state().is_away()) {
            p.link.queue_presence(reason);
        }
        self.mark(now);
        Ok(())
    }

    /// Whether we are away, and why.
    pub fn away(&self) -> Option<&str> {
        self.away.as_deref()
    }

    /// Our identity: derived from our public key.
    pub fn peer_id(&self) -> PeerId {
        self.config.identity.peer_id()
    }

    /// Our public key.
    pub fn public_key(&self) -> PublicKey {
        self.config.identity.public_key()
    }

    /// The public key peer `id` proved (or was restored with), for storage to keep: a returning
    /// peer must prove the same key ([`RestoredPeer::key`]).
    pub fn peer_key(&self, id: PeerId) -> Option<PublicKey> {
        self.peers.get(&id).and_then(|p| p.key)
    }

    /// How much the endpoint holds for peers and addresses.
    pub fn footprint(&self) -> Footprint {
        let (dormant, forgotten) = self.peers.remembered();
        Footprint {
            peers: self.peers.len(),
            probes: self.probes.len(),
            hints: self.hints.len(),
            dormant,
            forgotten,
            hello_limiter: self.hello_limiter.capacity(),
            heard_announcing: self.heard_announcing.len(),
            exchange_later: self.exchange_later.len(),
        }
    }

    /// This run's session.
    pub fn session(&self) -> u64 {
        self.config.session
    }

    /// Our nick.
    pub fn nick(&self) -> &str {
        &self.config.nick
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Next event for the user interface and the journal. Drain these first after any input,
    /// and make durable what must be before sending anything (see [`crate::proto`]).
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.catch_up();
        let event = self.events.pop_front()?;
        if event.changes_roster() {
            self.peers.roster_changed();
        }
        Some(event)
    }

    /// A number that changes whenever the peers' names or presence may have (a peer joined,
    /// left, was renamed, forgotten or restored, or we renamed ourselves), by the time the
    /// event that says so is polled: what the UI computes from them (the names that tell peers
    /// apart) stays good while it stays the same.
    pub fn roster_version(&self) -> u64 {
        self.peers.roster_version()
    }

    /// Next LAN announcement to send to every broadcast and multicast address (only with
    /// [`Config::discovery`]). Drain it like [`Endpoint::poll_transmit`].
    #[must_use]
    pub fn poll_announce(&mut self) -> Option<Vec<u8>> {
        self.catch_up();
        let a = self.announces.pop_front()?;
        self.stats.datagrams_out += 1;
        Some(a)
    }

    /// Next datagram to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.catch_up();
        let t = self.transmits.pop_front()?;
        self.stats.datagrams_out += 1;
        Some(t)
    }

    /// When [`Endpoint::handle_timeout`] must next be called, if ever.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.pending.is_some() {
            return self.pending; // work is waiting: call `handle_timeout` (or a `poll_*`) now
        }
        self.peers
            .next_timeout()
            .into_iter()
            .chain(self.probes.next_due())
            .chain(self.announcer.next())
            .chain(self.hints_due())
            .chain(self.departing.values().copied())
            .chain(self.address_checks.values().map(|(_, t, _)| *t))
            .chain(self.exchange_later.first().map(|(t, _)| *t))
            .chain(self.next_gossip)
            .chain(self.goodbyes_owed.iter().map(|(_, t)| *t))
            .chain(self.replies_unconfirmed.values().map(|r| r.next))
            .min()
    }

    /// Runs whatever timers are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.goodbyes_owed.retain(|(_, until)| *until > now);
        self.mark(now);
    }

    /// One datagram arrived from `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.stats.datagrams_in += 1;
        self.take_datagram(now, from, bytes);
    }

    /// Handles a datagram (counted already): one that arrived, or one kept because it overtook
    /// a proof reply.
    fn take_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        if bytes.len() > wire::MAX_DATAGRAM {
            // No tailchat sends more; accepting it would let one item be any size.
            self.stats.malformed += 1;
            return;
        }
        let mut datagram = match wire::decode(bytes) {
            Ok(d) => d,
            Err(e) => {
                self.count_decode_error(now, from, e);
                return;
            }
        };
        self.stats.unknown_frames += u64::from(datagram.unknown_frames);
        let header = datagram.header;
        if header.sender == self.peer_id() {
            self.stats.own += 1;
            return;
        }
        // A handshake frame travels alone; one is acted on, and nothing else in its datagram.
        let handshake = datagram.frames.iter().position(|f| {
            matches!(
                f,
                Frame::Hello(_)
                    | Frame::Cookie(_)
                    | Frame::Proof(_)
                    | Frame::ProofReply(_)
                    | Frame::Superseded(_)
            )
        });
        if let Some(i) = handshake {
            let changed = match datagram.frames.swap_remove(i) {
                Frame::Hello(h) => self.on_hello(now, from, header, &h),
                Frame::Cookie(c) => self.on_cookie(now, from, header, &c),
                Frame::Proof(p) => self.on_proof(now, from, header, p),
                Frame::ProofReply(p) => self.on_proof_reply(now, from, header, p),
                Frame::Superseded(s) => self.on_superseded(now, from, header, &s),
                _ => false,
            };
            if changed {
                self.mark(now);
            }
            return;
        }
        if let Some(Frame::Announce(_)) = datagram.frames.first() {
            if self.on_announce(now, from, header) {
                self.mark(now);
            }
            return;
        }
        let eliciting = datagram.is_ack_eliciting();
        let session = self.config.session;
        let placed = self.peers.get(&header.sender).is_some_and(|p| {
            p.proven_at(from)
                && p.session == header.session
                && datagram.frames.iter().all(|f| match f {
                    Frame::Session(s) => *s == session,
                    _ => true,
                })
        });
        if !placed {
            if let Some(probe) = self.probes.get_mut(from) {
                // Sent right after the proof reply we wait for, and arrived first: taken in
                // once the reply is (an answer now would only start another handshake).
                if probe.keep_early(now, bytes) {
                    return;
                }
            }
        }
        let Some(peer) = self.peers.get_mut(&header.sender) else {
            self.stats.unknown_sender += 1;
            // An address we proved ourselves to lately most likely let us in and its proof
            // reply was lost (or came too late to be taken): answered whatever strangers
            // cost, or the pair stays half-open until the shared budget reaches it (at 250
            // hosts meshing, 15 s). The per-address hello limiter still bounds it.
            let proved_to = self.probes.contains(from)
                || self.proof_limiter.went_within(now, from, PROVED_TO_LATELY);
            if eliciting && (proved_to || self.strangers.take(now)) {
                self.who_are_you(now, from);
            }
            return;
        };
        // A PeerId proves nothing: its datagrams count only from an address its current session
        // proved itself at. Anyone else claiming it (or the peer itself, moved) gets a hello, to
        // which the real peer answers with a proof from where it is now.
        if !peer.proven_at(from) {
            self.stats.unproven_address += 1;
            if eliciting {
                self.who_are_you(now, from);
            }
            return;
        }
        // Meant for another run of ours (we restarted), or from another run of the peer: dropped,
        // and a hello back makes the peer prove its current session and learn ours.
        let for_us = datagram.frames.iter().all(|f| match f {
            Frame::Session(s) => *s == session,
            _ => true,
        });
        if peer.session != header.session || !for_us {
            self.stats.stale_session += 1;
            if eliciting {
                self.who_are_you(now, from);
            }
            return;
        }
        peer.heard(now);
        self.replies_unconfirmed.remove(&header.sender);
        peer.addrs.note(from);
        if self.address_checks.remove(&header.sender).is_some() {
            // It still answers where it was proven before: the new address is not taken.
            self.stats.address_kept += 1;
        }
        let mut out = Vec::new();
        peer.link
            .on_datagram(now, header.packet, datagram.frames, &mut out);
        self.link_events(now, header.sender, out);
        self.mark(now);
    }

    /// Sends `text` to `to`.
    ///
    /// # Errors
    /// A [`SendError`] if the message is refused as a whole. A peer whose queue is full gets an
    /// [`Event::Undelivered`] instead.
    pub fn send_message(
        &mut self,
        now: Instant,
        to: Recipients,
        text: &str,
    ) -> Result<Sent, SendError> {
        self.send_message_as(now, to, text, false)
    }

    /// [`Endpoint::send_message`], as an action (`/me waves`) when `action`.
    ///
    /// # Errors
    /// As [`Endpoint::send_message`].
    pub fn send_message_as(
        &mut self,
        now: Instant,
        to: Recipients,
        text: &str,
        action: bool,
    ) -> Result<Sent, SendError> {
        if self.leaving {
            return Err(SendError::Leaving);
        }
        if text.is_empty() {
            return Err(SendError::Empty);
        }
        if text.len() > MAX_MESSAGE_BYTES {
            return Err(SendError::TooLong { len: text.len() });
        }
        // Everyone we know takes part in the group, present or not: a peer that left or is
        // offline gets the message when it is back.
        let (candidates, direct): (Vec<PeerId>, bool) = match to {
            // An ephemeral peer that left gets nothing more.
            Recipients::Everyone => (
                self.peers
                    .ids()
                    .into_iter()
                    .filter(|id| !self.departing.contains_key(id))
                    .collect(),
                false,
            ),
            Recipients::Peer(id) if self.departing.contains_key(&id) => {
                return Err(SendError::UnknownPeer)
            }
            Recipients::Peer(id) if self.peers.contains(&id) => (vec![id], true),
            Recipients::Peer(_) => return Err(SendError::UnknownPeer),
        };
        let style = Style::new(direct, action);
        let id = MessageId(self.next_msg);
        self.next_msg += 1;
        let mut recipients = Vec::new();
        let mut refused = Vec::new();
        let mut contact = Vec::new();
        // Encoded once, its bytes shared by every peer's queue.
        let pieces = crate::proto::link::pieces(id, style, text);
        for peer_id in candidates {
            let Some(peer) = self.peers.get_mut(&peer_id) else {
                continue;
            };
            // A peer restored from storage and not heard in this run is contacted once a
            // message waits for it (restore only contacts those that had one already).
            if peer.state() == LinkState::Offline {
                contact.extend(peer.addrs.iter().map(|a| (a, peer.found)));
            }
            match peer.link.queue_pieces(now, id, &pieces) {
                Ok(()) => recipients.push(peer_id),
                Err(QueueError::Full { first }) => {
                    refused.push(peer_id);
                    if first {
                        self.events.push_back(Event::Undelivered {
                            to: peer_id,
                            id,
                            reason: UndeliveredReason::QueueFull,
                        });
                    }
                }
            }
        }
        for (addr, origin) in contact {
            if !self.probes.contains(addr) {
                self.add_probe(now, addr, origin);
                self.probes.quiet(addr);
            }
        }
        self.mark(now);
        Ok(Sent {
            id,
            recipients,
            refused,
        })
    }

    /// Queues an opaque application payload for peer `to`, ordered with our other stream
    /// items to it and delivered once as [`Event::AppData`] (again, if the peer restarts
    /// before acknowledging it). It waits in the queue while the peer is away, like a message,
    /// but only for this run: the application keeps what must outlive it.
    ///
    /// # Errors
    /// An [`AppDataError`]: an unknown peer, one whose capabilities are not known yet (not
    /// heard in this run) or lack [`wire::caps::APP_DATA`], a payload over
    /// [`wire::MAX_APP_DATA`], or a full queue.
    pub fn send_app_data(
        &mut self,
        now: Instant,
        to: PeerId,
        data: &[u8],
    ) -> Result<(), AppDataError> {
        if data.len() > wire::MAX_APP_DATA {
            return Err(AppDataError::TooLong);
        }
        let peer = self.peers.get_mut(&to).ok_or(AppDataError::UnknownPeer)?;
        match peer.caps {
            None => return Err(AppDataError::NotHeard),
            Some(caps) if caps & wire::caps::APP_DATA == 0 => {
                return Err(AppDataError::Unsupported)
            }
            Some(_) => {}
        }
        peer.link
            .queue_app_data(data)
            .map_err(|_| AppDataError::QueueFull)?;
        self.mark(now);
        Ok(())
    }

    /// Takes back an application payload queued for `to` with [`Endpoint::send_app_data`] and
    /// not yet acknowledged: if the peer restarts before acknowledging it, it is not sent
    /// again (`docs/PROTOCOL.md` §13.2, an offer withdrawn). Returns whether it was still
    /// waiting.
    pub fn withdraw_app_data(&mut self, to: PeerId, data: &[u8]) -> bool {
        self.peers
            .get_mut(&to)
            .is_some_and(|p| p.link.withdraw_app_data(data))
    }

    /// Brings back what storage remembers from an earlier run: the next message id, and for
    /// each peer its nick, addresses, the highest message id already shown from it, and our
    /// messages it has not acknowledged (queued again, in id order, past the queue bound).
    /// Such peers are listed as offline until they say hello; the ones added by hand, the ones
    /// with messages waiting, and the ones the application wants (see
    /// [`RestoredPeer::wanted`]) are contacted at their last addresses. The table takes the
    /// peers that matter most first; the rest wait, dormant, until they say hello. Call it
    /// once, before anything else.
    pub fn restore(&mut self, now: Instant, next_msg: MessageId, peers: Vec<RestoredPeer>) {
        self.next_msg = self.next_msg.max(next_msg.0);
        let me = self.peer_id();
        for (addr, origin) in self.peers.restore(now, me, peers) {
            self.add_probe(now, addr, origin);
            self.probes.quiet(addr);
        }
        self.mark(now);
    }

    /// Restores what is remembered of peers forgotten in earlier runs: the highest message id
    /// shown from each, so that one coming back is not shown again a message it resends
    /// (§10.8). Bounded as the peers forgotten in this run are.
    pub fn restore_forgotten(&mut self, shown: impl IntoIterator<Item = (PeerId, MessageId)>) {
        for (id, through) in shown {
            self.peers.remember_forgotten(id, through);
        }
    }

    /// Changes our nick and tells every peer (ordered with our messages to it).
    ///
    /// # Errors
    /// Refuses a nick that breaks the rule of [`crate::proto::nick`], with [`NICK_RULE`] as the
    /// message.
    pub fn set_nick(&mut self, now: Instant, nick: &str) -> Result<(), String> {
        if !is_valid_nick(nick) {
            return Err(NICK_RULE.to_owned());
        }
        nick.clone_into(&mut self.config.nick);
        self.nick_changed = Some(now);
        self.peers.roster_changed();
        for p in self.peers.values_mut().filter(|p| !p.state().is_away()) {
            p.link.queue_nick(nick);
        }
        self.mark(now);
        Ok(())
    }

    /// Says goodbye to every peer. Keep driving the endpoint until
    /// [`Endpoint::leave_complete`] (or a short grace period) so the goodbyes are acknowledged.
    pub fn leave(&mut self, now: Instant) {
        self.leaving = true;
        self.replies_unconfirmed.clear();
        self.goodbyes_owed = self.probes.awaiting_proof_reply(now);
        self.probes.clear();
        self.hints.clear();
        self.exchange_later.clear();
        self.announcer.stop();
        for p in self.peers.values_mut().filter(|p| !p.state().is_away()) {
            p.link.queue_leave();
        }
        self.mark(now);
    }

    /// True once every peer has acknowledged our leave and every message to a peer that is
    /// online has been delivered (or there was nobody to tell).
    pub fn leave_complete(&self) -> bool {
        self.goodbyes_owed.is_empty()
            && self.peers.iter().all(|(_, p)| {
                let waiting = p.is_online() && p.link.undelivered() > 0;
                !(p.link.leave_outstanding() || waiting)
            })
    }

    /// Messages queued and not yet acknowledged, summed over peers.
    pub fn undelivered(&self) -> usize {
        self.peers.iter().map(|(_, p)| p.link.undelivered()).sum()
    }

    /// Like [`Endpoint::undelivered`], counting only messages from `first` on (those of this
    /// run, when `first` is what [`Endpoint::next_message_id`] said at its start).
    pub fn undelivered_from(&self, first: MessageId) -> usize {
        self.peers
            .iter()
            .map(|(_, p)| p.link.undelivered_from(first))
            .sum()
    }

    /// [`Self::undelivered_from`] in two: waiting for peers online (answering) now, and for
    /// the others (away: not heard in this run, not answering, or left).
    pub fn undelivered_from_here_and_away(&self, first: MessageId) -> (usize, usize) {
        self.peers.iter().fold((0, 0), |(here, away), (_, p)| {
            let n = p.link.undelivered_from(first);
            if p.is_online() {
                (here + n, away)
            } else {
                (here, away + n)
            }
        })
    }

    /// Whether addresses other peers passed on (peer exchange) are still being tried: queued,
    /// or probed for less than [`HINT_PATIENCE`] and not yet answered. A script that `/add`ed
    /// one peer waits on this, so that its first message reaches the peers that one brings
    /// in, but not for one that does not answer at all (a tailnet peer it cannot reach).
    pub fn learning_peers(&self, now: Instant) -> bool {
        self.hints.len() > 0 || self.probes.any_from_hint_since(now, HINT_PATIENCE)
    }

    /// Addresses the user added (`/add`, `--peer`) where nobody has answered yet.
    pub fn unanswered_added(&self) -> Vec<SocketAddr> {
        self.probes.manual()
    }

    /// Stops trying `addr`, an address the user added where nobody has answered (`/forget
    /// ADDR`: a mistyped `/add`); whether it was being tried.
    pub fn stop_trying(&mut self, addr: SocketAddr) -> bool {
        let tried = self.probes.manual().contains(&addr);
        if tried {
            self.probes.remove(addr);
        }
        tried
    }

    /// The id the next message will get.
    pub fn next_message_id(&self) -> MessageId {
        MessageId(self.next_msg)
    }

    /// How full the fullest send queue of a peer that is answering is, as a share of the
    /// bound (0.0 with none): what a program that writes faster than its peers acknowledge
    /// waits on, before its messages would be refused. Peers that are away do not count:
    /// their queues fill until they are back, however long that is.
    pub fn fullest_answering_queue(&self) -> f64 {
        self.peers
            .iter()
            .filter(|(_, p)| p.state() == LinkState::Online)
            .map(|(_, p)| p.link.fullness())
            .fold(0.0, f64::max)
    }

    /// Forgets at once the ephemeral peers that left and are still lingering
    /// ([`EPHEMERAL_LINGER`]): for a program that stops, so that they are not kept as peers
    /// past its end. Each is reported as [`Event::PeerForgotten`].
    pub fn forget_departing(&mut self) {
        for id in std::mem::take(&mut self.departing).into_keys() {
            let left = self
                .peers
                .get(&id)
                .is_some_and(|p| p.state() == LinkState::Left);
            if left {
                self.forget_peer(id, ForgetReason::Ephemeral);
            }
        }
    }

    /// A snapshot of every known peer, ordered by nick (an ephemeral peer that left is no
    /// longer listed).
    pub fn peers(&self) -> Vec<PeerInfo> {
        let mut v: Vec<PeerInfo> = self
            .peers
            .iter()
            .filter(|(id, _)| !self.departing.contains_key(id))
            .map(|(&id, p)| p.info(id))
            .collect();
        v.sort_by(|a, b| a.nick.cmp(&b.nick).then(a.id.cmp(&b.id)));
        v
    }

    /// A snapshot of one known peer.
    pub fn peer(&self, id: PeerId) -> Option<PeerInfo> {
        if self.departing.contains_key(&id) {
            return None;
        }
        self.peers.get(&id).map(|p| p.info(id))
    }

    /// The nick of a known peer.
    pub fn nick_of(&self, peer: PeerId) -> Option<&str> {
        self.peers.get(&peer).map(|p| p.nick.as_str())
    }

    /// Counts a datagram that did not decode, and reports another version once per address —
    /// and answers it once with a hello of ours, so that the other side, which cannot read it,
    /// tells its user which version we speak.
    fn count_decode_error(&mut self, now: Instant, from: SocketAddr, e: DecodeError) {
        match e {
            DecodeError::NotTailchat => self.stats.not_tailchat += 1,
            DecodeError::UnsupportedVersion(version) => {
                self.stats.bad_version += 1;
                if self.version_reported.len() < MAX_VERSION_REPORTS
                    && self.version_reported.insert(from)
                {
                    self.events
                        .push_back(Event::VersionMismatch { from, version });
                    if !self.leaving {
                        self.send_hello(now, from);
                    }
                }
            }
            DecodeError::BadHeader | DecodeError::BadFrame(_) | DecodeError::Truncated => {
                self.stats.malformed += 1
            }
        }
    }

    /// Turns what peer `id`'s link reported into events (and peer exchange, and looking again
    /// for a peer the user added that went away).
    fn link_events(&mut self, now: Instant, id: PeerId, out: Vec<LinkEvent>) {
        for e in out {
            let Some(peer) = self.peers.get_mut(&id) else {
                return;
            };
            if matches!(e, LinkEvent::Unreachable | LinkEvent::Left) && peer.found == Found::Manual
            {
                // A peer the user added is looked for again at its address: if it restarts (a
                // new identity there), it comes back by itself.
                let addr = peer.addrs.current();
                self.add_probe(now, addr, Found::Manual);
                self.probes.slow(now, addr);
            }
            let Some(peer) = self.peers.get_mut(&id) else {
                return;
            };
            let event = match e {
                LinkEvent::Peers(entries) => {
                    self.on_peer_entries(now, id, entries);
                    continue;
                }
                LinkEvent::AppData(data) => Event::AppData { from: id, data },
                LinkEvent::Message {
                    msg,
                    style,
                    age,
                    text,
                } => Event::Message {
                    from: id,
                    nick: peer.nick.clone(),
                    id: msg,
                    direct: style.direct,
                    action: style.is_action(),
                    age,
                    text,
                },
                LinkEvent::Presence(away) => {
                    if peer.away == away {
                        continue;
                    }
                    peer.away.clone_from(&away);
                    Event::PeerAway {
                        peer: id,
                        nick: peer.nick.clone(),
                        away,
                    }
                }
                LinkEvent::Nick(new) => {
                    if peer.nick == new {
                        continue; // already learned from a hello
                    }
                    let old = std::mem::replace(&mut peer.nick, new.clone());
                    Event::PeerRenamed { peer: id, old, new }
                }
                LinkEvent::Delivered(msg, late) => Event::Delivered {
                    to: id,
                    id: msg,
                    late,
                },
                LinkEvent::Delayed(msg) => Event::DeliveryDelayed { to: id, id: msg },
                LinkEvent::Reachable => Event::PeerReachable {
                    peer: id,
                    nick: peer.nick.clone(),
                },
                LinkEvent::Unreachable => Event::PeerUnreachable {
                    peer: id,
                    nick: peer.nick.clone(),
                    queued: peer.link.undelivered(),
                },
                LinkEvent::Left => {
                    let ephemeral = peer.is_ephemeral();
                    if ephemeral {
                        self.departing.insert(id, now + EPHEMERAL_LINGER);
                    }
                    Event::PeerLeft {
                        peer: id,
                        nick: peer.nick.clone(),
                        queued: peer.link.undelivered(),
                        ephemeral,
                    }
                }
            };
            self.events.push_back(event);
        }
    }

    /// Notes that inputs arrived at `now`; the work happens at the next `poll_*`.
    fn mark(&mut self, now: Instant) {
        self.pending = Some(self.pending.map_or(now, |p| p.max(now)));
    }

    /// Does the work that inputs since the last `poll_*` left waiting.
    fn catch_up(&mut self) {
        if let Some(now) = self.pending.take() {
            self.drive(now);
        }
    }

    /// Runs due timers and builds every datagram that is ready: for the peers changed since the
    /// last time and those whose timer is due (the others have nothing to do).
    fn drive(&mut self, now: Instant) {
        if self
            .keepalives_checked
            .is_none_or(|t| now >= t + Duration::from_secs(1))
        {
            self.keepalives_checked = Some(now);
            self.peers.set_keepalives();
        }
        // Peer lists that waited (§8.7) are queued first, so they go in this pass.
        while let Some(&(t, id)) = self.exchange_later.first() {
            if t > now {
                break;
            }
            self.exchange_later.pop_first();
            if self.peers.get(&id).is_some_and(|p| p.is_online()) {
                self.exchange_peers(now, id);
            }
        }
        self.gossip(now);
        for id in self.peers.due(now) {
            let header = self.header();
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            let mut out = Vec::new();
            if peer.link.next_timeout().is_some_and(|t| t <= now) {
                peer.link.on_timeout(now, &mut out);
            }
            let to = peer.addrs.current();
            while let Some(bytes) = peer.link.poll_datagram(now, header, peer.session) {
                self.transmits.push_back(Transmit { to, bytes });
            }
            self.stats
                .links
                .add_since(&mut peer.counted, peer.link.counters());
            self.link_events(now, id, out);
            self.peers.settle(id);
        }
        self.take_checked_addresses(now);
        let due: Vec<PeerId> = self
            .departing
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.departing.remove(&id);
            if self
                .peers
                .get(&id)
                .is_some_and(|p| p.state() == LinkState::Left)
            {
                self.forget_peer(id, ForgetReason::Ephemeral);
            }
        }
        self.run_discovery(now);
        self.resend_replies(now);
    }

    /// Sends again the proof replies whose peers have not been heard since (see
    /// [`Endpoint::replies_unconfirmed`]): after the reply's gap, then twice as long each
    /// time, [`REPLY_SENDS`] in all, within the life of the token the reply echoes.
    fn resend_replies(&mut self, now: Instant) {
        let mut due = Vec::new();
        self.replies_unconfirmed.retain(|id, r| {
            if r.next > now {
                return true;
            }
            due.push((*id, r.to, r.bytes.clone()));
            r.next = now + r.gap * (1 << r.sent.min(8));
            r.sent += 1;
            r.sent < REPLY_SENDS && r.next < r.first + crate::proto::cookie::COOKIE_EPOCH
        });
        for (id, to, bytes) in due {
            // Only to a peer still listed there in the same session.
            let current = self.peers.get(&id).is_some_and(|p| p.proven_at(to));
            if current {
                self.transmits.push_back(Transmit { to, bytes });
            }
        }
    }

    /// Takes the round trip a signed handshake measured (the echo in a Proof or ProofReply,
    /// §8.2) into how long answers take lately — the shortest of the last
    /// [`ANSWER_SAMPLES`]: slow only when all of them are, as on hosts that are themselves
    /// overloaded, and not because some peers (or fakes with keys of their own) answer late
    /// on purpose — and paces what goes without a probe behind it, and a probe's hellos, to
    /// twice that: stateless hellos per announcer and proofs to unprobed addresses at most
    /// once per `clamp(2 × answer time, their usual 1 s, PACE_MAX)`, a probe's hellos at
    /// least `min(2 × answer time, PACE_MAX)` apart. Hosts so busy that answers take seconds
    /// (hundreds of hosts meshing on a few cores) would otherwise send each announcer a hello,
    /// and each address a proof, every second while the first ones are still on their way —
    /// each answered in turn; on a LAN that answers within milliseconds nothing changes.
    pub(super) fn note_answer(&mut self, rtt: Duration) {
        if self.answers.len() >= ANSWER_SAMPLES {
            self.answers.pop_front();
        }
        self.answers.push_back(rtt);
        let time = self.answers.iter().min().copied().unwrap_or(rtt);
        let pace = time.saturating_mul(2);
        self.stateless_announcers
            .set_interval(pace.clamp(discovery::STATELESS_ANNOUNCER_INTERVAL, PACE_MAX));
        self.proof_limiter
            .set_interval(pace.clamp(PROOF_INTERVAL, PACE_MAX));
        self.probes.set_min_gap(pace.min(PACE_MAX));
    }

    /// Forgets peer `id` now: it leaves the table with our messages waiting for it (dropped)
    /// and [`Event::PeerForgotten`] says so. Should it come back, it joins as new, but is not
    /// shown again what it was shown before. Returns false if there is no such peer.
    pub fn forget(&mut self, now: Instant, id: PeerId) -> bool {
        self.mark(now);
        self.forget_peer(id, ForgetReason::Asked)
    }

    /// [`Endpoint::forget`], for `reason`.
    fn forget_peer(&mut self, id: PeerId, reason: ForgetReason) -> bool {
        self.address_checks.remove(&id);
        self.first_seen.remove(&id);
        let Some(gone) = self.peers.remove(id) else {
            return false;
        };
        self.events.push_back(Event::PeerForgotten {
            peer: id,
            nick: gone.nick,
            dropped: gone.dropped,
            reason,
        });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::wire::Proof;
    use crate::proto::{Identity, Limits};
    use std::time::Duration;

    fn endpoint(secret: u8, now: Instant) -> Endpoint {
        let config = Config {
            identity: Identity::from_secret([secret; 32]),
            nick: "me".into(),
            port: 7654,
            seed: u64::from(secret),
            discovery: false,
            session: 1 << 16,
            limits: Limits::default(),
        };
        Endpoint::new(config, now)
    }

    #[test]
    fn slow_answers_space_the_hellos_and_proofs_sent_without_a_probe() {
        let t0 = Instant::now();
        let mut ep = endpoint(1, t0);
        let secs = |s: f64| t0 + Duration::from_secs_f64(s);
        let announcer = (PeerId(9), 1);
        let addr: SocketAddr = "10.0.0.9:7654".parse().unwrap();
        // Answers within milliseconds: once a second, as always.
        ep.note_answer(Duration::from_millis(2));
        assert!(ep.stateless_announcers.allow(secs(0.0), announcer));
        assert!(!ep.stateless_announcers.allow(secs(0.9), announcer));
        assert!(ep.stateless_announcers.allow(secs(1.0), announcer));
        assert!(ep.proof_limiter.allow(secs(1.0), addr));
        assert!(ep.proof_limiter.allow(secs(2.0), addr));
        // Handshakes that all took 3 s: twice that between two.
        for _ in 0..ANSWER_SAMPLES {
            ep.note_answer(Duration::from_secs(3));
        }
        assert!(!ep.stateless_announcers.allow(secs(6.9), announcer));
        assert!(ep.stateless_announcers.allow(secs(7.0), announcer));
        assert!(!ep.proof_limiter.allow(secs(7.9), addr));
        assert!(ep.proof_limiter.allow(secs(8.0), addr));
        assert_eq!(
            ep.probes.min_gap(),
            Duration::from_secs(6),
            "and probes' hellos"
        );
        // Never past a cookie's shortest life, however slow.
        for _ in 0..ANSWER_SAMPLES {
            ep.note_answer(Duration::from_secs(60));
        }
        assert!(!ep.stateless_announcers.allow(secs(13.9), announcer));
        assert!(ep.stateless_announcers.allow(secs(14.0), announcer));
        // One quick answer among them is enough to say the host is not the slow one: peers
        // that answer late (on purpose, or far away) do not slow the others' discovery.
        ep.note_answer(Duration::from_millis(2));
        assert!(ep.stateless_announcers.allow(secs(15.0), announcer));
        assert_eq!(ep.probes.min_gap(), Duration::from_millis(4));
    }

    fn addr(i: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, i], 7654))
    }

    /// Every datagram `from` has to send, decoded.
    fn sent(from: &mut Endpoint) -> Vec<(SocketAddr, wire::Datagram)> {
        std::iter::from_fn(|| from.poll_transmit())
            .map(|t| (t.to, wire::decode(&t.bytes).unwrap()))
            .collect()
    }

    /// Hands `to` every datagram `from` (at `from_addr`) has to send; returns how many.
    fn pass(from: &mut Endpoint, from_addr: SocketAddr, to: &mut Endpoint, now: Instant) -> usize {
        let all: Vec<Transmit> = std::iter::from_fn(|| from.poll_transmit()).collect();
        for t in &all {
            to.handle_datagram(now, from_addr, &t.bytes);
        }
        all.len()
    }

    #[test]
    fn set_nick_follows_the_one_nick_rule() {
        let now = Instant::now();
        let mut ep = endpoint(1, now);
        for bad in ["", "c#dev", "two words", &"x".repeat(33)] {
            assert_eq!(ep.set_nick(now, bad), Err(NICK_RULE.to_owned()), "{bad:?}");
        }
        assert_eq!(ep.nick(), "me");
        assert_eq!(ep.set_nick(now, "Zoë_世界"), Ok(()));
        assert_eq!(ep.nick(), "Zoë_世界");
    }

    /// Moves datagrams between two endpoints (at `a_addr` and `b_addr`) until both are quiet;
    /// returns the events of `b`.
    fn pump(
        now: Instant,
        a: &mut Endpoint,
        a_addr: SocketAddr,
        b: &mut Endpoint,
        b_addr: SocketAddr,
    ) -> Vec<Event> {
        let mut b_events = Vec::new();
        for _ in 0..20 {
            let mut moved = false;
            while let Some(t) = a.poll_transmit() {
                b.handle_datagram(now, a_addr, &t.bytes);
                moved = true;
            }
            while let Some(t) = b.poll_transmit() {
                a.handle_datagram(now, b_addr, &t.bytes);
                moved = true;
            }
            while a.poll_event().is_some() {}
            while let Some(e) = b.poll_event() {
                b_events.push(e);
            }
            if !moved {
                break;
            }
        }
        b_events
    }

    #[test]
    fn application_data_reaches_a_peer_in_order() {
        let now = Instant::now();
        let (a_addr, b_addr) = (addr(1), addr(2));
        let (mut a, mut b) = (endpoint(1, now), endpoint(2, now));
        let (a_id, b_id) = (a.peer_id(), b.peer_id());
        assert_eq!(
            a.send_app_data(now, b_id, b"x"),
            Err(AppDataError::UnknownPeer)
        );
        a.add_address(now, b_addr);
        pump(now, &mut a, a_addr, &mut b, b_addr);
        let too_long = vec![0; wire::MAX_APP_DATA + 1];
        assert_eq!(
            a.send_app_data(now, b_id, &too_long),
            Err(AppDataError::TooLong)
        );
        a.send_app_data(now, b_id, b"offer").unwrap();
        a.send_app_data(now, b_id, &[9; wire::MAX_APP_DATA])
            .unwrap();
        let got: Vec<Vec<u8>> = pump(now, &mut a, a_addr, &mut b, b_addr)
            .into_iter()
            .filter_map(|e| match e {
                Event::AppData { from, data } if from == a_id => Some(data),
                _ => None,
            })
            .collect();
        assert_eq!(got, vec![b"offer".to_vec(), vec![9; wire::MAX_APP_DATA]]);
    }

    #[test]
    fn application_data_is_refused_for_a_peer_not_heard_in_this_run() {
        let now = Instant::now();
        let mut ep = endpoint(1, now);
        let restored = RestoredPeer {
            id: PeerId(3),
            key: None,
            heard_ago: None,
            nick: "away".into(),
            addrs: vec![addr(3)],
            manual: false,
            wanted: false,
            delivered_through: MessageId(0),
            outbox: Vec::new(),
        };
        ep.restore(now, MessageId(1), vec![restored]);
        assert_eq!(
            ep.send_app_data(now, PeerId(3), b"offer"),
            Err(AppDataError::NotHeard)
        );
    }

    #[test]
    fn four_datagrams_make_two_peers_known_to_each_other() {
        let now = Instant::now();
        let (mut a, mut b) = (endpoint(1, now), endpoint(2, now));
        a.add_address(now, addr(2));
        assert_eq!(pass(&mut a, addr(1), &mut b, now), 1, "hello");
        assert_eq!(
            b.footprint().peers,
            0,
            "a hello costs nothing but its cookie"
        );
        assert_eq!(pass(&mut b, addr(2), &mut a, now), 1, "cookie");
        assert_eq!(pass(&mut a, addr(1), &mut b, now), 1, "proof");
        assert!(
            matches!(b.poll_event(), Some(Event::PeerJoined { peer, .. }) if peer == a.peer_id())
        );
        assert_eq!(b.peer_key(a.peer_id()), Some(a.public_key()));
        assert_eq!(pass(&mut b, addr(2), &mut a, now), 1, "proof reply");
        assert!(
            matches!(a.poll_event(), Some(Event::PeerJoined { peer, .. }) if peer == b.peer_id())
        );
        assert_eq!(a.footprint().probes, 0, "the probe ends with the proof");
    }

    #[test]
    fn a_nick_changed_while_the_handshake_runs_still_reaches_the_peer() {
        let now = Instant::now();
        let (mut a, mut b) = (endpoint(1, now), endpoint(2, now));
        a.add_address(now, addr(2));
        pass(&mut a, addr(1), &mut b, now); // hello
        pass(&mut b, addr(2), &mut a, now); // cookie
        pass(&mut a, addr(1), &mut b, now); // proof, signed as "me"
        a.set_nick(now, "alicia").unwrap();
        pass(&mut b, addr(2), &mut a, now); // proof reply: a's streams start
        pass(&mut a, addr(1), &mut b, now);
        assert_eq!(b.nick_of(a.peer_id()), Some("alicia"));
        // Long after a change, a join costs no extra item.
        let later = now + NICK_RESEND_WINDOW + Duration::from_secs(1);
        let (mut c, mut d) = (endpoint(3, later), endpoint(4, later));
        c.set_nick(now, "carol").unwrap();
        c.add_address(later, addr(4));
        pass(&mut c, addr(3), &mut d, later);
        pass(&mut d, addr(4), &mut c, later);
        pass(&mut c, addr(3), &mut d, later);
        pass(&mut d, addr(4), &mut c, later);
        assert_eq!(
            pass(&mut c, addr(3), &mut d, later),
            0,
            "nothing more to send"
        );
        assert_eq!(d.nick_of(c.peer_id()), Some("carol"));
    }

    #[test]
    fn a_proof_with_a_nick_that_breaks_the_rule_is_malformed() {
        let now = Instant::now();
        let (mut a, mut b) = (endpoint(1, now), endpoint(2, now));
        a.add_address(now, addr(2));
        pass(&mut a, addr(1), &mut b, now);
        pass(&mut b, addr(2), &mut a, now);
        let (_, mut proof) = sent(&mut a).pop().unwrap();
        if let Some(Frame::Proof(p)) = proof.frames.first_mut() {
            p.nick = "c#dev".into();
        }
        let bytes = wire::encode(&proof.header, &proof.frames);
        b.handle_datagram(now, addr(1), &bytes);
        assert_eq!(b.stats().malformed, 1);
        assert!(b.poll_event().is_none() && b.poll_transmit().is_none());
    }

    #[test]
    fn a_proof_is_bound_to_its_cookie_its_key_and_its_signature() {
        let now = Instant::now();
        let (mut a, mut b) = (endpoint(1, now), endpoint(2, now));
        a.add_address(now, addr(2));
        pass(&mut a, addr(1), &mut b, now);
        pass(&mut b, addr(2), &mut a, now);
        let (_, proof) = sent(&mut a).pop().unwrap();
        let Some(Frame::Proof(good)) = proof.frames.first().cloned() else {
            panic!("a proof");
        };
        let send = |b: &mut Endpoint, from: SocketAddr, p: Proof| {
            let bytes = wire::encode(&proof.header, &[Frame::Proof(p)]);
            b.handle_datagram(now, from, &bytes);
        };
        // From another address: the cookie was for addr(1).
        send(&mut b, addr(9), good.clone());
        assert_eq!(b.stats().bad_cookie, 1);
        // Another key (hashing to another id), or a signature that is not the key's.
        let other = Identity::from_secret([3; 32]).public_key();
        send(
            &mut b,
            addr(1),
            Proof {
                key: other,
                ..good.clone()
            },
        );
        let mut bent = good.clone();
        bent.signature.0[0] ^= 1;
        send(&mut b, addr(1), bent);
        let renamed = Proof {
            nick: "mallory".into(),
            ..good.clone()
        };
        send(&mut b, addr(1), renamed);
        assert_eq!(b.stats().bad_proof, 3);
        assert_eq!(b.footprint().peers, 0);
        assert!(b.poll_event().is_none() && b.poll_transmit().is_none());
        send(&mut b, addr(1), good);
        assert!(matches!(b.poll_event(), Some(Event::PeerJoined { .. })));
    }

    /// An endpoint that announces itself and answers announcements.
    fn discovering(secret: u8, now: Instant) -> Endpoint {
        let mut ep = endpoint(secret, now);
        ep.config.discovery = true;
        ep.announcer = Announcer::new(true, now, u64::from(secret));
        ep.handle_timeout(now); // the first announcement is due at once
        ep
    }

    /// The hellos among what `from` has to send, by address.
    fn hellos(from: &mut Endpoint) -> Vec<SocketAddr> {
        sent(from)
            .into_iter()
            .filter(|(_, d)| matches!(d.frames.first(), Some(Frame::Hello(_))))
            .map(|(to, _)| to)
            .collect()
    }

    #[test]
    fn the_copies_of_one_announcement_lead_to_one_hello() {
        let now = Instant::now();
        let (mut a, mut b) = (discovering(1, now), discovering(2, now));
        let announce = a.poll_announce().expect("a burst at start");
        let v6: SocketAddr = "[fe80::1]:7654".parse().unwrap();
        // Broadcast, IPv4 multicast (both from a's IPv4 address) and IPv6 multicast.
        for from in [addr(1), addr(1), v6] {
            b.handle_datagram(now, from, &announce);
        }
        assert_eq!(hellos(&mut b), vec![addr(1)]);
        // The next announcement of the burst, heard only over IPv6 while a is still unknown:
        // answered there too (a path that works may be only that one), beside the probe's
        // second hello to the first address.
        let later = now + HELLO_INTERVAL;
        b.handle_datagram(later, v6, &announce);
        assert_eq!(hellos(&mut b), vec![addr(1), v6]);
    }

    #[test]
    fn an_announcement_from_a_peer_online_in_that_session_changes_nothing() {
        let now = Instant::now();
        let (mut a, mut b) = (discovering(1, now), discovering(2, now));
        let announce = a.poll_announce().expect("a burst at start");
        b.handle_datagram(now, addr(1), &announce);
        pump(now, &mut b, addr(2), &mut a, addr(1));
        assert_eq!(b.peers().len(), 1);
        // The same run of a, heard at another address (another interface, or IPv6): it is
        // reachable already, so nobody is asked to prove anything.
        let later = now + HELLO_INTERVAL * 4;
        b.handle_datagram(later, "[fe80::1]:7654".parse().unwrap(), &announce);
        assert!(hellos(&mut b).is_empty());
    }

    #[test]
    fn a_cookie_from_a_peer_proven_at_that_address_gets_no_second_proof() {
        let now = Instant::now();
        let (mut a, mut b) = (endpoint(1, now), endpoint(2, now));
        a.add_address(now, addr(2));
        b.add_address(now, addr(1));
        // Both hellos cross; a's handshake completes first.
        let a_hello = sent(&mut a);
        let b_hello = sent(&mut b);
        assert_eq!((a_hello.len(), b_hello.len()), (1, 1));
        let encode = |d: &wire::Datagram| wire::encode(&d.header, &d.frames);
        b.handle_datagram(now, addr(1), &encode(&a_hello[0].1));
        let b_cookie = sent(&mut b);
        a.handle_datagram(now, addr(2), &encode(&b_hello[0].1));
        let a_cookie = sent(&mut a);
        a.handle_datagram(now, addr(2), &encode(&b_cookie[0].1));
        pump(now, &mut a, addr(1), &mut b, addr(2));
        assert_eq!((a.peers().len(), b.peers().len()), (1, 1));
        // b's own hello's cookie comes back now: a proof would change nothing.
        b.handle_datagram(now, addr(1), &encode(&a_cookie[0].1));
        assert!(sent(&mut b).is_empty());
        assert_eq!(b.footprint().probes, 0, "and its probe is done");
    }

    #[test]
    fn a_cookie_that_answers_no_hello_of_ours_is_dropped() {
        let now = Instant::now();
        let (mut a, mut b) = (endpoint(1, now), endpoint(2, now));
        a.add_address(now, addr(2));
        pass(&mut a, addr(1), &mut b, now);
        let cookies: Vec<Transmit> = std::iter::from_fn(|| b.poll_transmit()).collect();
        a.handle_datagram(now, addr(3), &cookies[0].bytes);
        assert_eq!(a.stats().bad_cookie, 1, "not from where our hello went");
        assert!(a.poll_transmit().is_none());
        let late = now + crate::proto::cookie::COOKIE_EPOCH * 2;
        a.handle_datagram(late, addr(2), &cookies[0].bytes);
        assert_eq!(a.stats().bad_cookie, 2, "expired");
    }
}
