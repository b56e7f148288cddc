//! The endpoint: this peer's identity, the table of known peers, handshakes, and the
//! sans-IO interface (inputs `handle_*` and commands, outputs `poll_*`).

use super::ids::{MessageId, PeerId};
use super::link::{Link, LinkCounters, LinkEvent, QueueError};
use super::wire::{self, DecodeError, Frame, Header, Hello, PeerEntry, MAX_NICK_BYTES};
use super::{MAX_MESSAGE_BYTES, MAX_PEERS};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// First interval between hellos to an address that has not answered; it doubles after each.
const PROBE_FIRST: Duration = Duration::from_millis(250);
/// Longest interval between hellos to an unanswered address (it is retried for ever, so a peer
/// that starts later is found by itself).
const PROBE_MAX: Duration = Duration::from_secs(30);
/// After this many unanswered hellos, the user is told the address does not answer.
const PROBE_REPORT_AFTER: u32 = 5;
/// After this many hellos the interval has reached [`PROBE_MAX`] (250 ms · 2⁸ / 2 > 30 s).
const PROBE_SLOW_ATTEMPTS: u32 = 8;
/// Hellos to an address heard announcing, or learned from a peer, before giving up on it
/// (250 ms doubling: about 16 s in all).
const PROBE_LIMIT_DISCOVERED: u32 = 6;
/// Peers heard from longer ago than this are not passed on in peer exchange.
const EXCHANGE_MAX_AGE: Duration = Duration::from_secs(120);
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
/// Addresses being probed at most; the oldest is dropped beyond it.
const MAX_PROBES: usize = 64;
/// Of those, learned from peer lists at most: a peer list cannot make us probe without bound.
const MAX_LEARNED_PROBES: usize = 32;
/// A newcomer is told of this many peers at most (the most recently heard): enough to mesh a
/// small network, and a stranger's hello cannot make us send a long list.
const MAX_SHARED_WITH_NEWCOMER: usize = 32;
/// Evicted peers whose message-id watermark is remembered at most.
const MAX_FORGOTTEN: usize = 1024;
/// Addresses remembered per peer.
const MAX_ADDRS: usize = 4;
/// Hellos per second we send in answer to datagrams from unknown senders (a burst of as many).
const WHO_ARE_YOU_PER_SEC: u32 = 10;
/// Distinct senders told about a version mismatch at most (each once).
const MAX_VERSION_REPORTS: usize = 64;

/// How this endpoint presents itself.
#[derive(Clone, Debug)]
pub struct Config {
    /// Our identity.
    pub peer_id: PeerId,
    /// Our display name.
    pub nick: String,
    /// The UDP port we listen on, told to peers in hellos.
    pub port: u16,
    /// Seed for all randomness (the session number), so runs can be replayed.
    pub seed: u64,
    /// Whether to announce ourselves on the LAN (see [`Endpoint::poll_announce`]).
    pub discovery: bool,
    /// This run's session number: non-zero, and larger than any earlier run's of the same
    /// identity (the driver takes the wall clock in milliseconds, shifted left 16 bits, plus
    /// random low bits), so a late hello from an earlier run is recognised as such.
    pub session: u64,
}

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub to: SocketAddr,
    /// The UDP payload, never over [`wire::MAX_DATAGRAM`] bytes.
    pub bytes: Vec<u8>,
}

/// Who a message is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recipients {
    /// Every known peer, including ones that left or are offline (they get it when back).
    Everyone,
    /// One peer, as a direct message.
    Peer(PeerId),
}

/// A message accepted by [`Endpoint::send_message`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// The id its delivery events will carry.
    pub id: MessageId,
    /// The peers it was queued for (empty if nobody is known yet).
    pub recipients: Vec<PeerId>,
    /// The peers whose queue was full: it will not reach them.
    pub refused: Vec<PeerId>,
}

/// A peer as storage remembers it, for [`Endpoint::restore`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoredPeer {
    /// Its identity.
    pub id: PeerId,
    /// Its last nick.
    pub nick: String,
    /// Its last addresses, the one that last worked first.
    pub addrs: Vec<SocketAddr>,
    /// Whether the user added it by hand (then it is contacted at start).
    pub manual: bool,
    /// The highest message id from it already shown.
    pub delivered_through: MessageId,
    /// Our messages it has not acknowledged, in id order: (id, direct, text).
    pub outbox: Vec<(MessageId, bool, String)>,
}

/// Why a message was refused as a whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendError {
    /// Longer than [`MAX_MESSAGE_BYTES`].
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// An empty message.
    Empty,
    /// A direct message to a peer that is not known.
    UnknownPeer,
    /// After [`Endpoint::leave`].
    Leaving,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::TooLong { len } => write!(
                f,
                "message is {len} bytes; the limit is {MAX_MESSAGE_BYTES} bytes (64 KiB)"
            ),
            SendError::Empty => write!(f, "empty message"),
            SendError::UnknownPeer => write!(f, "no such peer"),
            SendError::Leaving => write!(f, "leaving: no more messages are accepted"),
        }
    }
}

impl std::error::Error for SendError {}

/// Why a message will not reach a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UndeliveredReason {
    /// That peer's queue is full (see [`super::MAX_QUEUED_ITEMS`]).
    QueueFull,
}

/// How a peer came to be known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// We added its address (`/add`, `--peer`).
    Manual,
    /// It announced itself on the LAN.
    Announced,
    /// Another peer told us of it (peer exchange).
    Learned,
    /// It contacted us first.
    Incoming,
}

/// A peer's state as the user sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerState {
    /// Known from an earlier run, not heard from since this one started.
    Offline,
    /// Answering.
    Online,
    /// Not acknowledging; messages wait in its queue.
    Unreachable,
    /// Said goodbye.
    Left,
}

/// Something that happened, for the user interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A new peer, or one that had left, said hello.
    PeerJoined {
        /// Who.
        peer: PeerId,
        /// Its nick.
        nick: String,
        /// Where it was heard from.
        addr: SocketAddr,
    },
    /// A peer changed its nick.
    PeerRenamed {
        /// Who.
        peer: PeerId,
        /// The nick before.
        old: String,
        /// The nick now.
        new: String,
    },
    /// A peer said goodbye.
    PeerLeft {
        /// Who.
        peer: PeerId,
        /// Its nick.
        nick: String,
        /// Our messages still queued for it, kept for its return.
        queued: usize,
    },
    /// A peer stopped acknowledging.
    PeerUnreachable {
        /// Who.
        peer: PeerId,
        /// Its nick.
        nick: String,
        /// Our messages queued for it.
        queued: usize,
    },
    /// An unreachable peer answered again; its queue is being resent.
    PeerReachable {
        /// Who.
        peer: PeerId,
        /// Its nick.
        nick: String,
    },
    /// A message arrived (exactly once, in the sender's order).
    Message {
        /// From whom.
        from: PeerId,
        /// The sender's nick when it arrived.
        nick: String,
        /// The sender's id for it.
        id: MessageId,
        /// Sent to us alone.
        direct: bool,
        /// The text, as sent (not yet sanitised for a terminal).
        text: String,
    },
    /// A peer acknowledged all of one of our messages.
    Delivered {
        /// Which peer.
        to: PeerId,
        /// Which message.
        id: MessageId,
        /// It had been reported as delayed.
        late: bool,
    },
    /// A message has not been acknowledged after [`super::DELAYED_AFTER`]; still trying.
    DeliveryDelayed {
        /// Which peer.
        to: PeerId,
        /// Which message.
        id: MessageId,
    },
    /// A message will not be delivered to a peer.
    Undelivered {
        /// Which peer.
        to: PeerId,
        /// Which message.
        id: MessageId,
        /// Why.
        reason: UndeliveredReason,
    },
    /// The peer table was full and this absent peer was forgotten to make room.
    PeerForgotten {
        /// Who.
        peer: PeerId,
        /// Its nick.
        nick: String,
        /// Our messages that were waiting for it, now dropped.
        dropped: Vec<MessageId>,
    },
    /// An address we were asked to contact has not answered several hellos (still trying).
    AddressUnanswered {
        /// The address.
        addr: SocketAddr,
    },
    /// A tailchat of another protocol version is sending to us (reported once per address).
    VersionMismatch {
        /// Its address.
        from: SocketAddr,
        /// Its version.
        version: u8,
    },
}

/// A snapshot of one peer, for `/peers`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// Identity.
    pub id: PeerId,
    /// Nick.
    pub nick: String,
    /// Known addresses, the one in use first.
    pub addrs: Vec<SocketAddr>,
    /// How it was found.
    pub found: Found,
    /// When we last heard from it.
    pub last_heard: Instant,
    /// Smoothed round-trip time, once measured.
    pub rtt: Option<Duration>,
    /// Our messages not yet acknowledged by it.
    pub undelivered: usize,
    /// Offline (restored, not heard from in this run), online, unreachable or left.
    pub state: PeerState,
}

/// Counters of what came in and what was dropped, for diagnostics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams handed to [`Endpoint::handle_datagram`].
    pub datagrams_in: u64,
    /// Datagrams produced by [`Endpoint::poll_transmit`].
    pub datagrams_out: u64,
    /// Dropped: not a tailchat datagram.
    pub not_tailchat: u64,
    /// Dropped: another protocol version.
    pub bad_version: u64,
    /// Dropped: malformed header or frame.
    pub malformed: u64,
    /// Dropped: our own datagram (heard back from a broadcast).
    pub own: u64,
    /// Dropped: a non-hello datagram from a peer we do not know.
    pub unknown_sender: u64,
    /// Dropped: a non-hello datagram from an old or unknown session of a known peer.
    pub stale_session: u64,
    /// Dropped: a hello from a new peer while the table was full.
    pub table_full: u64,
    /// Frames of unknown kinds skipped.
    pub unknown_frames: u64,
    /// The links' counters, summed over peers (duplicates, retransmissions, timeouts…).
    pub links: LinkCounters,
}

/// A known peer.
#[derive(Debug)]
struct Peer {
    /// Its nick.
    nick: String,
    /// The session its datagrams must carry.
    session: u64,
    /// Addresses, most recently heard first.
    addrs: Vec<SocketAddr>,
    /// How we found it.
    found: Found,
    /// Left (or, when not `seen`, not heard from in this run).
    left: bool,
    /// Heard from in this run (false for a peer restored from storage until it says hello).
    seen: bool,
    /// When we last heard from it.
    last_heard: Instant,
    /// The reliable link.
    link: Link,
    /// Counters already added to [`Stats`], so only the difference is added.
    counted: LinkCounters,
}

/// An address we send hellos to until someone answers from it.
#[derive(Debug)]
struct Probe {
    /// Where.
    addr: SocketAddr,
    /// When the next hello goes.
    next: Instant,
    /// Hellos sent so far.
    attempts: u32,
    /// When the last hello went: if only one did, its answer is a clean first RTT sample.
    last_sent: Option<Instant>,
    /// Why we probe it; becomes the peer's [`Found`].
    origin: Found,
    /// Give up after this many hellos (`None`: never, for addresses the user gave).
    limit: Option<u32>,
    /// Tell the user after [`PROBE_REPORT_AFTER`] unanswered hellos.
    report: bool,
}

/// The protocol state machine for one tailchat instance. See the module documentation of
/// [`crate::proto`] for how to drive it.
#[derive(Debug)]
pub struct Endpoint {
    /// Identity and nick.
    config: Config,
    /// This run's random session number.
    session: u64,
    /// Next message id.
    next_msg: u64,
    /// Known peers.
    peers: BTreeMap<PeerId, Peer>,
    /// Addresses awaiting an answer.
    probes: Vec<Probe>,
    /// Datagrams ready to send.
    transmits: VecDeque<Transmit>,
    /// Events ready for the UI.
    events: VecDeque<Event>,
    /// Counters.
    stats: Stats,
    /// Addresses already told about a version mismatch.
    version_reported: BTreeSet<SocketAddr>,
    /// Tokens for answering unknown senders, refilled each second.
    who_are_you: (u32, Instant),
    /// [`Endpoint::leave`] was called.
    leaving: bool,
    /// Seeded randomness (announcement jitter).
    rng: ChaCha8Rng,
    /// An input arrived at this time and datagrams are not built yet. Building them lazily, at
    /// the first `poll_*` after a batch of inputs, packs messages typed or received together
    /// into shared datagrams and one ack, without delaying anything.
    pending: Option<Instant>,
    /// When the next LAN announcement is due (`None` without discovery).
    announce_at: Option<Instant>,
    /// Announcements of the current burst already sent.
    announce_burst: usize,
    /// Announcement datagrams ready for the driver to broadcast.
    announces: VecDeque<Vec<u8>>,
    /// Restored peers with no known address: applied when they say hello.
    dormant: BTreeMap<PeerId, RestoredPeer>,
    /// Message-id watermarks of peers evicted from the table, applied if they come back.
    forgotten: BTreeMap<PeerId, MessageId>,
}

impl Endpoint {
    /// A new endpoint, started at `now`.
    pub fn new(config: Config, now: Instant) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(config.seed);
        Self {
            session: config.session,
            announce_at: config.discovery.then_some(now),
            announce_burst: 0,
            announces: VecDeque::new(),
            pending: None,
            dormant: BTreeMap::new(),
            forgotten: BTreeMap::new(),
            rng,
            config,
            next_msg: 1,
            peers: BTreeMap::new(),
            probes: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            version_reported: BTreeSet::new(),
            who_are_you: (WHO_ARE_YOU_PER_SEC, now),
            leaving: false,
        }
    }

    /// Our identity.
    pub fn peer_id(&self) -> PeerId {
        self.config.peer_id
    }

    /// Our nick.
    pub fn nick(&self) -> &str {
        &self.config.nick
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Next datagram to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.catch_up();
        let t = self.transmits.pop_front()?;
        self.stats.datagrams_out += 1;
        Some(t)
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

    /// Announces again soon, in a burst: a network interface appeared (a laptop joined a
    /// network), so peers there have not heard of us.
    pub fn announce_soon(&mut self, now: Instant) {
        if self.announce_at.is_some() && !self.leaving {
            self.announce_at = Some(now);
            self.announce_burst = 0;
            self.mark(now);
        }
    }

    /// Next event for the user interface.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.catch_up();
        self.events.pop_front()
    }

    /// When [`Endpoint::handle_timeout`] must next be called, if ever.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.pending.is_some() {
            return self.pending; // work is waiting: call `handle_timeout` (or a `poll_*`) now
        }
        let peers = self.peers.values().filter_map(|p| p.link.next_timeout());
        let probes = self.probes.iter().map(|p| p.next);
        peers.chain(probes).chain(self.announce_at).min()
    }

    /// Runs whatever timers are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.mark(now);
    }

    /// One datagram arrived from `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.stats.datagrams_in += 1;
        if bytes.len() > wire::MAX_DATAGRAM {
            // No tailchat sends more; accepting it would let one item be any size.
            self.stats.malformed += 1;
            return;
        }
        let datagram = match wire::decode(bytes) {
            Ok(d) => d,
            Err(e) => {
                self.count_decode_error(from, e);
                return;
            }
        };
        self.stats.unknown_frames += u64::from(datagram.unknown_frames);
        let header = datagram.header;
        if header.sender == self.config.peer_id {
            self.stats.own += 1;
            return;
        }
        let hello = datagram.frames.iter().find_map(|f| match f {
            Frame::Hello(h) => Some((h.clone(), false)),
            Frame::HelloReply(h) => Some((h.clone(), true)),
            _ => None,
        });
        if let Some((hello, is_reply)) = hello {
            self.on_hello(now, from, header, hello, is_reply);
        } else if let Some(Frame::Announce(_)) = datagram.frames.first() {
            self.on_announce(now, from, header);
            self.mark(now);
            return;
        }
        let eliciting = datagram.is_ack_eliciting();
        let Some(peer) = self.peers.get_mut(&header.sender) else {
            self.stats.unknown_sender += 1;
            if eliciting {
                self.who_are_you(now, from);
            }
            return;
        };
        // Meant for another run of ours (we restarted), or from another run of the peer (a late
        // hello from an earlier run may have switched the session we expect): dropped, and a
        // hello back (rate-limited) makes the peer state its current session and learn ours.
        let for_us = datagram.frames.iter().all(|f| match f {
            Frame::Session(s) => *s == self.session,
            _ => true,
        });
        if peer.session != header.session || !for_us {
            self.stats.stale_session += 1;
            if eliciting {
                self.who_are_you(now, from);
            }
            return;
        }
        peer.last_heard = now;
        note_address(&mut peer.addrs, from);
        let mut out = Vec::new();
        peer.link
            .on_datagram(now, header.packet, datagram.frames, &mut out);
        self.link_events(now, header.sender, out);
        self.mark(now);
    }

    /// Starts contacting a peer at `addr` (`/add`, `--peer`): hellos go out until it answers.
    pub fn add_address(&mut self, now: Instant, addr: SocketAddr) {
        self.add_probe(now, addr, Found::Manual);
        self.mark(now);
    }

    /// Starts sending hellos to `addr`; what gives up, and whether the user hears of it,
    /// depends on `origin`.
    fn add_probe(&mut self, now: Instant, addr: SocketAddr, origin: Found) {
        if let Some(p) = self.probes.iter_mut().find(|p| p.addr == addr) {
            if origin == Found::Manual && p.origin != Found::Manual {
                // The user asked for it: keep trying for ever, and say so if it stays silent.
                p.origin = Found::Manual;
                p.limit = None;
                p.report = true;
            }
            return;
        }
        if self.leaving {
            return;
        }
        if self.probes.len() >= MAX_PROBES {
            // Forget the oldest probe the user did not ask for; never push out one they did
            // for a discovered address (a flood of announcements must not erase a /add).
            match self.probes.iter().position(|p| p.origin != Found::Manual) {
                Some(i) => {
                    self.probes.remove(i);
                }
                None if origin == Found::Manual => {
                    self.probes.remove(0);
                }
                None => return,
            }
        }
        let (limit, report) = match origin {
            Found::Manual => (None, true),
            _ => (Some(PROBE_LIMIT_DISCOVERED), false),
        };
        self.probes.push(Probe {
            addr,
            next: now,
            attempts: 0,
            last_sent: None,
            origin,
            limit,
            report,
        });
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
            Recipients::Everyone => (self.peers.keys().copied().collect(), false),
            Recipients::Peer(id) if self.peers.contains_key(&id) => (vec![id], true),
            Recipients::Peer(_) => return Err(SendError::UnknownPeer),
        };
        let id = MessageId(self.next_msg);
        self.next_msg += 1;
        let mut recipients = Vec::new();
        let mut refused = Vec::new();
        for peer_id in candidates {
            let peer = self.peers.get_mut(&peer_id).expect("listed above");
            match peer.link.queue_message(now, id, direct, text) {
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
        self.mark(now);
        Ok(Sent {
            id,
            recipients,
            refused,
        })
    }

    /// Brings back what storage remembers from an earlier run: the next message id, and for
    /// each peer its nick, addresses, the highest message id already shown from it, and our
    /// messages it has not acknowledged (queued again, in id order). Such peers are listed as
    /// offline until they say hello; the ones added by hand, and the ones with messages
    /// waiting, are contacted at their last addresses. Call it once, before anything else.
    pub fn restore(&mut self, now: Instant, next_msg: MessageId, peers: Vec<RestoredPeer>) {
        self.next_msg = self.next_msg.max(next_msg.0);
        // The table takes the peers that matter most first: messages waiting for them, then
        // added by hand; the rest wait, dormant, until they say hello.
        let mut peers = peers;
        peers.sort_by_key(|r| (r.outbox.is_empty(), !r.manual));
        let room = MAX_PEERS.saturating_sub(self.peers.len());
        for (i, r) in peers.into_iter().enumerate() {
            if r.id == self.config.peer_id {
                continue;
            }
            if r.addrs.is_empty() || i >= room {
                // Nowhere to contact it, or no room: applied when it contacts us.
                self.dormant.insert(r.id, r);
                continue;
            }
            let mut link = Link::new(now);
            link.set_away();
            link.set_delivered_through(r.delivered_through);
            for (msg, direct, text) in &r.outbox {
                // Whole and without gaps: an earlier run accepted these, so the bound does not
                // apply (a gap would let the receiver's watermark swallow the missing one).
                link.requeue_message(now, *msg, *direct, text);
            }
            let contact = r.manual || !r.outbox.is_empty();
            let origin = if r.manual {
                Found::Manual
            } else {
                Found::Learned
            };
            let addrs_to_probe: Vec<SocketAddr> = r.addrs.iter().copied().take(MAX_ADDRS).collect();
            self.peers.insert(
                r.id,
                Peer {
                    nick: r.nick,
                    session: 0,
                    addrs: r.addrs.into_iter().take(MAX_ADDRS).collect(),
                    found: origin,
                    left: true,
                    seen: false,
                    last_heard: now,
                    link,
                    counted: LinkCounters::default(),
                },
            );
            if contact {
                for addr in addrs_to_probe {
                    self.add_probe(now, addr, origin);
                    if let Some(p) = self.probes.iter_mut().find(|p| p.addr == addr) {
                        p.report = false;
                    }
                }
            }
        }
        self.mark(now);
    }

    /// Changes our nick and tells every peer (ordered with our messages to it).
    ///
    /// # Errors
    /// Refuses an empty nick or one over [`MAX_NICK_BYTES`] bytes, with a message saying so.
    pub fn set_nick(&mut self, now: Instant, nick: &str) -> Result<(), String> {
        if nick.is_empty() || nick.len() > MAX_NICK_BYTES {
            return Err(format!("a nick must be 1 to {MAX_NICK_BYTES} bytes long"));
        }
        self.config.nick = nick.to_owned();
        for p in self.peers.values_mut().filter(|p| !p.left) {
            p.link.queue_nick(nick);
        }
        self.mark(now);
        Ok(())
    }

    /// Says goodbye to every peer. Keep driving the endpoint until
    /// [`Endpoint::leave_complete`] (or a short grace period) so the goodbyes are acknowledged.
    pub fn leave(&mut self, now: Instant) {
        self.leaving = true;
        self.probes.clear();
        self.announce_at = None;
        for p in self.peers.values_mut().filter(|p| !p.left) {
            p.link.queue_leave();
        }
        self.mark(now);
    }

    /// True once every peer has acknowledged our leave and every message to a peer that is
    /// online has been delivered (or there was nobody to tell).
    pub fn leave_complete(&self) -> bool {
        self.peers.values().all(|p| {
            let online = p.seen && !p.left && !p.link.is_unreachable();
            let waiting = online && p.link.undelivered() > 0;
            !(p.link.leave_outstanding() || waiting)
        })
    }

    /// Messages queued and not yet acknowledged, summed over peers.
    pub fn undelivered(&self) -> usize {
        self.peers.values().map(|p| p.link.undelivered()).sum()
    }

    /// A snapshot of every known peer, ordered by nick.
    pub fn peers(&self) -> Vec<PeerInfo> {
        let mut v: Vec<PeerInfo> = self.peers.keys().filter_map(|&id| self.peer(id)).collect();
        v.sort_by(|a, b| a.nick.cmp(&b.nick).then(a.id.cmp(&b.id)));
        v
    }

    /// A snapshot of one known peer.
    pub fn peer(&self, id: PeerId) -> Option<PeerInfo> {
        let p = self.peers.get(&id)?;
        Some(PeerInfo {
            id,
            nick: p.nick.clone(),
            addrs: p.addrs.clone(),
            found: p.found,
            last_heard: p.last_heard,
            rtt: p.link.rtt.srtt(),
            undelivered: p.link.undelivered(),
            state: if !p.seen {
                PeerState::Offline
            } else if p.left {
                PeerState::Left
            } else if p.link.is_unreachable() {
                PeerState::Unreachable
            } else {
                PeerState::Online
            },
        })
    }

    /// The nick of a known peer.
    pub fn nick_of(&self, peer: PeerId) -> Option<&str> {
        self.peers.get(&peer).map(|p| p.nick.as_str())
    }

    fn count_decode_error(&mut self, from: SocketAddr, e: DecodeError) {
        match e {
            DecodeError::NotTailchat => self.stats.not_tailchat += 1,
            DecodeError::UnsupportedVersion(version) => {
                self.stats.bad_version += 1;
                if self.version_reported.len() < MAX_VERSION_REPORTS
                    && self.version_reported.insert(from)
                {
                    self.events
                        .push_back(Event::VersionMismatch { from, version });
                }
            }
            DecodeError::BadHeader | DecodeError::BadFrame(_) | DecodeError::Truncated => {
                self.stats.malformed += 1
            }
        }
    }

    /// What we say about ourselves in hellos and announcements.
    fn my_hello(&self) -> Hello {
        Hello {
            nick: self.config.nick.clone(),
            port: self.config.port,
            caps: 0,
        }
    }

    fn hello_frame(&self, reply: bool) -> Frame {
        if reply {
            Frame::HelloReply(self.my_hello())
        } else {
            Frame::Hello(self.my_hello())
        }
    }

    fn header(&self) -> Header {
        Header {
            sender: self.config.peer_id,
            session: self.session,
            packet: 0,
        }
    }

    fn send_hello(&mut self, to: SocketAddr, reply: bool) {
        let bytes = wire::encode(&self.header(), &[self.hello_frame(reply)]);
        self.transmits.push_back(Transmit { to, bytes });
    }

    /// An unknown sender wants something from us: say hello (rate-limited, no state kept), so
    /// a peer that still knows an old us learns who is at this address now.
    fn who_are_you(&mut self, now: Instant, from: SocketAddr) {
        if !self.leaving && self.take_token(now) {
            self.send_hello(from, false);
        }
    }

    fn on_hello(&mut self, now: Instant, from: SocketAddr, header: Header, h: Hello, reply: bool) {
        let probe = self.probes.iter().position(|p| p.addr == from);
        let probed = probe.map(|i| self.probes[i].origin);
        // One hello, one answer: the round trip is unambiguous (Karn), so `/peers` shows an RTT
        // from the first moment rather than after the first keepalive.
        let handshake_rtt = probe
            .map(|i| &self.probes[i])
            .filter(|p| p.attempts == 1)
            .and_then(|p| p.last_sent)
            .map(|sent| now.saturating_duration_since(sent));
        if !self.peers.contains_key(&header.sender) {
            // A stranger we did not ask for costs a token (a flood of made-up identities is
            // admitted a few a second), and a full table must make room: until both, the
            // hello is dropped, and a probe of ours stays to try again.
            if probed.is_none() && !self.take_token(now) {
                self.stats.table_full += 1;
                return;
            }
            if !self.make_room() {
                self.stats.table_full += 1;
                return;
            }
        }
        if let Some(i) = probe {
            self.probes.remove(i);
        }
        let id = header.sender;
        let peer = self.peers.entry(id).or_insert_with(|| Peer {
            nick: h.nick.clone(),
            session: header.session,
            addrs: vec![from],
            found: probed.unwrap_or(Found::Incoming),
            left: true, // so that the code below reports it as joining
            seen: true,
            last_heard: now,
            link: Link::new(now),
            counted: LinkCounters::default(),
        });
        if let Some(rtt) = handshake_rtt.filter(|_| peer.link.rtt.srtt().is_none()) {
            peer.link.rtt.update(rtt, Duration::ZERO);
        }
        if let Some(shown) = self.forgotten.remove(&id) {
            peer.link.set_delivered_through(shown);
        }
        if let Some(r) = self.dormant.remove(&id) {
            peer.link.set_delivered_through(r.delivered_through);
            for (msg, direct, text) in &r.outbox {
                peer.link.requeue_message(now, *msg, *direct, text);
            }
        }
        if header.session < peer.session {
            // A late hello from an earlier run of this peer (sessions grow run by run): it
            // must not reset the streams of the current one. (The datagram is counted stale
            // once, by the session check that follows in `handle_datagram`.)
            return;
        }
        let new_session = peer.session != header.session;
        // A hello from an unreachable peer in the same session proves only that it reaches us;
        // it counts as reachable once it acknowledges something (no flapping on one-way loss).
        let was_unreachable = peer.link.is_unreachable();
        let returning = peer.left || new_session;
        if probed == Some(Found::Manual) {
            peer.found = Found::Manual;
        }
        let mut share = false;
        let mut joined = false;
        if returning {
            peer.seen = true;
            joined = peer.left;
            share = joined || new_session;
            peer.session = header.session;
            peer.left = false;
            peer.link.restart(now, new_session);
            if joined {
                self.events.push_back(Event::PeerJoined {
                    peer: id,
                    nick: h.nick.clone(),
                    addr: from,
                });
            } else if was_unreachable {
                self.events.push_back(Event::PeerReachable {
                    peer: id,
                    nick: h.nick.clone(),
                });
            }
        }
        if peer.nick != h.nick {
            let old = std::mem::replace(&mut peer.nick, h.nick.clone());
            // A join already shows the new nick; anything else is a rename to tell.
            if !joined {
                self.events.push_back(Event::PeerRenamed {
                    peer: id,
                    old,
                    new: h.nick,
                });
            }
        }
        peer.last_heard = now;
        note_address(&mut peer.addrs, from);
        if !reply && !self.leaving {
            self.send_hello(from, true);
        }
        if share {
            self.exchange_peers(now, id);
        }
    }

    /// An announcement heard on the LAN. A peer we are not talking to gets a hello at once (so a
    /// newcomer learns everyone within a round trip); one we know is simply noted at this
    /// address too.
    fn on_announce(&mut self, now: Instant, from: SocketAddr, header: Header) {
        if self.leaving {
            return;
        }
        if let Some(peer) = self.peers.get_mut(&header.sender) {
            let current = peer.session == header.session && !peer.left;
            if current && !peer.link.is_unreachable() {
                if peer.found == Found::Incoming {
                    peer.found = Found::Announced;
                }
                peer.last_heard = now;
                note_address(&mut peer.addrs, from);
                return;
            }
        }
        if self.probes.iter().any(|p| p.addr == from) {
            return;
        }
        // Rate-limited like other answers to strangers: a flood of announcements from made-up
        // identities costs a few hellos a second, and at most MAX_PROBES entries.
        if self.take_token(now) {
            self.add_probe(now, from, Found::Announced);
        }
    }

    /// Peer exchange when `new` joins: it learns the peers we know, and they learn of it.
    fn exchange_peers(&mut self, now: Instant, new: PeerId) {
        // An entry for `about`, as `to` can use it: only addresses that mean the same there.
        let entry = |peers: &BTreeMap<PeerId, Peer>, about: PeerId, to: PeerId| {
            let p = peers.get(&about)?;
            let to_addr = peers.get(&to)?.addrs[0];
            let fresh = now.saturating_duration_since(p.last_heard) <= EXCHANGE_MAX_AGE;
            if p.left || p.link.is_unreachable() || !fresh {
                return None;
            }
            let addrs: Vec<SocketAddr> = p
                .addrs
                .iter()
                .copied()
                .filter(|a| shareable(a, &to_addr))
                .take(wire::MAX_ENTRY_ADDRS)
                .collect();
            (!addrs.is_empty()).then(|| PeerEntry {
                id: about,
                nick: p.nick.clone(),
                addrs,
                heard_secs: now.saturating_duration_since(p.last_heard).as_secs() as u32,
            })
        };
        let others: Vec<PeerId> = self.peers.keys().copied().filter(|&id| id != new).collect();
        let mut for_new: Vec<PeerEntry> = others
            .iter()
            .filter_map(|&o| entry(&self.peers, o, new))
            .collect();
        for_new.sort_by_key(|e| e.heard_secs);
        for_new.truncate(MAX_SHARED_WITH_NEWCOMER);
        let about_new: Vec<(PeerId, PeerEntry)> = others
            .iter()
            .filter(|&&o| entry(&self.peers, o, new).is_some())
            .filter_map(|&o| entry(&self.peers, new, o).map(|e| (o, e)))
            .collect();
        if let Some(p) = self.peers.get_mut(&new) {
            if !for_new.is_empty() {
                p.link.queue_peers(&for_new);
            }
        }
        for (to, e) in about_new {
            if let Some(p) = self.peers.get_mut(&to) {
                p.link.queue_peers(&[e]);
            }
        }
    }

    /// Entries from peer exchange: peers we do not know yet are contacted directly, and listed
    /// only once they answer.
    fn on_peer_entries(&mut self, now: Instant, from: PeerId, entries: Vec<PeerEntry>) {
        for e in entries {
            if e.id == self.config.peer_id
                || u64::from(e.heard_secs) > EXCHANGE_MAX_AGE.as_secs()
                || self.peers.get(&e.id).is_some_and(|p| !p.left)
            {
                continue;
            }
            let via = self.peers.get(&from).map(|p| p.addrs[0]);
            for addr in e.addrs {
                let learned = self.probes.iter().filter(|p| p.origin == Found::Learned);
                if learned.count() >= MAX_LEARNED_PROBES {
                    return;
                }
                if via.is_some_and(|v| shareable(&addr, &v)) {
                    self.add_probe(now, addr, Found::Learned);
                }
            }
        }
    }

    /// Frees a slot in the peer table if it is full, by forgetting a departed peer with nothing
    /// queued. Returns false if no slot could be had.
    fn make_room(&mut self) -> bool {
        if self.peers.len() < MAX_PEERS {
            return true;
        }
        // Among the peers not online (left, offline or unreachable): the one with nothing
        // waiting heard from longest ago, else the one heard from longest ago (its queue is
        // dropped, and the user told). Peers that are online are never pushed out.
        let gone = |p: &Peer| p.left || !p.seen || p.link.is_unreachable();
        let victim = self
            .peers
            .iter()
            .filter(|(_, p)| gone(p))
            .min_by_key(|(_, p)| (p.link.undelivered() > 0, p.last_heard))
            .map(|(&id, _)| id);
        let Some(peer) = victim.and_then(|id| self.peers.remove(&id).map(|p| (id, p))) else {
            return false;
        };
        let (id, p) = peer;
        // Should it come back in this run, it must not be shown again what it has seen.
        if self.forgotten.len() >= MAX_FORGOTTEN {
            self.forgotten.pop_first();
        }
        self.forgotten.insert(id, p.link.delivered_through());
        let dropped = p.link.pending_ids();
        if !dropped.is_empty() {
            self.events.push_back(Event::PeerForgotten {
                peer: id,
                nick: p.nick,
                dropped,
            });
        }
        true
    }

    /// Takes a token from the bucket that limits what strangers can make us do.
    fn take_token(&mut self, now: Instant) -> bool {
        let (tokens, since) = &mut self.who_are_you;
        if now.saturating_duration_since(*since) >= Duration::from_secs(1) {
            *tokens = WHO_ARE_YOU_PER_SEC;
            *since = now;
        }
        if *tokens == 0 {
            return false;
        }
        *tokens -= 1;
        true
    }

    fn link_events(&mut self, now: Instant, id: PeerId, out: Vec<LinkEvent>) {
        for e in out {
            let Some(peer) = self.peers.get_mut(&id) else {
                return;
            };
            if matches!(e, LinkEvent::Unreachable | LinkEvent::Left) && peer.found == Found::Manual
            {
                // A peer the user added is looked for again at its address: if it restarts (a
                // new identity there), it comes back by itself.
                let addr = peer.addrs[0];
                self.add_probe(now, addr, Found::Manual);
                if let Some(p) = self.probes.iter_mut().find(|p| p.addr == addr) {
                    // Every PROBE_MAX, quietly: start the schedule where it is already slow.
                    p.report = false;
                    p.attempts = p.attempts.max(PROBE_SLOW_ATTEMPTS);
                    p.next = now + PROBE_MAX;
                }
            }
            let Some(peer) = self.peers.get_mut(&id) else {
                return;
            };
            let event = match e {
                LinkEvent::Peers(entries) => {
                    self.on_peer_entries(now, id, entries);
                    continue;
                }
                LinkEvent::Message { msg, direct, text } => Event::Message {
                    from: id,
                    nick: peer.nick.clone(),
                    id: msg,
                    direct,
                    text,
                },
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
                    peer.left = true;
                    Event::PeerLeft {
                        peer: id,
                        nick: peer.nick.clone(),
                        queued: peer.link.undelivered(),
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

    fn catch_up(&mut self) {
        if let Some(now) = self.pending.take() {
            self.drive(now);
        }
    }

    /// Runs due timers and builds every datagram that is ready.
    fn drive(&mut self, now: Instant) {
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            let mut out = Vec::new();
            let header = self.header();
            let peer = self.peers.get_mut(&id).expect("listed above");
            if peer.link.next_timeout().is_some_and(|t| t <= now) {
                peer.link.on_timeout(now, &mut out);
            }
            let to = peer.addrs[0];
            while let Some(bytes) = peer.link.poll_datagram(now, header, peer.session) {
                self.transmits.push_back(Transmit { to, bytes });
            }
            add_counters(&mut self.stats, &mut peer.counted, peer.link.counters);
            self.link_events(now, id, out);
        }
        // A discovered address that never answered is forgotten once its last hello timed out.
        self.probes
            .retain(|p| !(p.next <= now && p.limit.is_some_and(|l| p.attempts >= l)));
        let mut due = Vec::new();
        for p in self.probes.iter_mut().filter(|p| p.next <= now) {
            p.attempts += 1;
            p.last_sent = Some(now);
            let interval = PROBE_FIRST.saturating_mul(1 << p.attempts.min(10)) / 2;
            p.next = now + interval.min(PROBE_MAX);
            due.push((p.addr, p.report && p.attempts == PROBE_REPORT_AFTER));
        }
        if let Some(at) = self.announce_at.filter(|&at| at <= now) {
            let bytes = wire::encode(&self.header(), &[Frame::Announce(self.my_hello())]);
            self.announces.push_back(bytes);
            self.announce_burst += 1;
            let gap = match ANNOUNCE_BURST.get(self.announce_burst) {
                Some(gap) => *gap,
                None => {
                    let jitter = self.rng.random_range(0.9..1.1);
                    ANNOUNCE_INTERVAL.mul_f64(jitter)
                }
            };
            self.announce_at = Some(at.max(now) + gap);
        }
        for (addr, report) in due {
            self.send_hello(addr, false);
            if report {
                self.events.push_back(Event::AddressUnanswered { addr });
            }
        }
    }
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
            !(v6.is_unspecified() || v6.is_multicast() || (v6.segments()[0] & 0xffc0) == 0xfe80)
        }
    }
}

/// Puts `from` first in a peer's address list (it is the one that last worked).
fn note_address(addrs: &mut Vec<SocketAddr>, from: SocketAddr) {
    if addrs.first() == Some(&from) {
        return;
    }
    addrs.retain(|a| *a != from);
    addrs.insert(0, from);
    addrs.truncate(MAX_ADDRS);
}

fn add_counters(stats: &mut Stats, counted: &mut LinkCounters, now: LinkCounters) {
    let s = &mut stats.links;
    s.duplicates += now.duplicates - counted.duplicates;
    s.retransmitted += now.retransmitted - counted.retransmitted;
    s.timeouts += now.timeouts - counted.timeouts;
    s.out_of_window += now.out_of_window - counted.out_of_window;
    s.bad_fragments += now.bad_fragments - counted.bad_fragments;
    *counted = now;
}
