//! The handshake (protocol 2): how a peer proves who it is and where it receives, in four
//! datagrams, without the answering side keeping anything for a stranger.
//!
//! ```text
//! initiator I                                   responder R
//!   Hello { token_I(addr R) }          ──►   (nothing kept)
//!                                      ◄──   Cookie { echo token_I, cookie_R(addr I, id I, session I) }
//!   (token checked: R got our hello)
//!   Proof { key I, echo cookie_R,      ──►   cookie checked (I receives at addr I), key hashes to
//!           challenge token_I, nick,          id I, signature checked: I is admitted, its session
//!           signature I }                     bound to addr I
//!                                      ◄──   ProofReply { key R, echo token_I, nick, signature R }
//!   token and signature checked: R is
//!   admitted, its session bound to addr R
//! ```
//!
//! Each side thus proves its key to the other, over a transcript naming both PeerIds, both
//! sessions and a value that the other side made for the address it sent to
//! ([`identity::Transcript`]). Nothing in an unproven datagram ever moves a session, a
//! watermark or an address: only a checked proof admits a peer, starts a new session of it,
//! or adds an address its datagrams are taken from (a peer that moved proves itself again, from
//! where it is now). A hello costs its receiver one cookie, and a stranger nothing more.

use super::{Endpoint, NICK_RESEND_WINDOW};
use crate::proto::cookie::Cookie;
use crate::proto::identity::{
    self, Identity, PublicKey, Signature, Transcript, PROOF_DOMAIN, PROOF_REPLY_DOMAIN,
};
use crate::proto::ids::PeerId;
use crate::proto::wire::{self, CookieReply, Frame, Header, Hello, Proof, ProofReply, Superseded};
use crate::proto::{Event, ForgetReason, Found, Transmit};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Earlier runs of peers seen or told about ([`Event::EarlierRunRefused`]) remembered at most.
const EARLIER_RUNS_TOLD: usize = 64;
/// How long after a first proof of an earlier run a second one shows that run is alive.
const EARLIER_RUN_AGAIN_AFTER: Duration = Duration::from_secs(1);
/// Peers whose refusal of an earlier run of ours ([`Event::Superseded`]) is remembered at most
/// (each is told once).
const SUPERSEDED_TOLD: usize = 64;
/// The cookies our latest proofs echoed (one per proof, with its address) remembered at most,
/// for a [`Frame::Superseded`] answering a proof reply.
const COOKIES_ECHOED: usize = 16;
/// Signatures made, and signatures verified, remembered (each) at most.
const SIGNATURES_REMEMBERED: usize = 64;
/// How long an online peer that proved itself at a new address has to answer at a proven one
/// instead (four round trips, within these bounds; the longest without a round trip measured)
/// before the new address is taken: a peer that moved no longer answers at the old one.
pub const ADDRESS_CHECK_MIN: Duration = Duration::from_millis(300);
/// See [`ADDRESS_CHECK_MIN`].
pub const ADDRESS_CHECK_MAX: Duration = Duration::from_secs(2);
/// How long after a new session was bound at an address first seen with it a proof of that
/// session at one of the peer's earlier addresses replaces it (see `accept`).
pub const FIRST_SEEN_WATCH: Duration = Duration::from_secs(3);

/// Recently made and verified signatures: a proof repeated (a retransmission, or a replay from
/// the same address within the cookie's life) costs a hash, not curve arithmetic.
#[derive(Debug, Default)]
pub struct SignatureCache {
    /// Hash of the transcript, and our signature of it.
    made: VecDeque<([u8; 32], Signature)>,
    /// Hashes of (key, signature, transcript) found valid.
    verified: VecDeque<[u8; 32]>,
}

impl SignatureCache {
    /// `identity`'s signature of `message`.
    fn sign(&mut self, identity: &Identity, message: &[u8]) -> Signature {
        let h = *blake3::hash(message).as_bytes();
        if let Some((_, sig)) = self.made.iter().find(|(m, _)| *m == h) {
            return *sig;
        }
        let sig = identity.sign(message);
        if self.made.len() >= SIGNATURES_REMEMBERED {
            self.made.pop_front();
        }
        self.made.push_back((h, sig));
        sig
    }

    /// Whether `signature` is `key`'s over `message`.
    fn verify(&mut self, key: &PublicKey, message: &[u8], signature: &Signature) -> bool {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&key.0);
        hasher.update(&signature.0);
        hasher.update(message);
        let h = *hasher.finalize().as_bytes();
        if self.verified.contains(&h) {
            return true;
        }
        if !identity::verify(key, message, signature) {
            return false;
        }
        if self.verified.len() >= SIGNATURES_REMEMBERED {
            self.verified.pop_front();
        }
        self.verified.push_back(h);
        true
    }
}

/// What the checks of a proof found ([`Endpoint::check_proof`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Checked {
    /// All passed.
    Good,
    /// One failed (counted).
    Refused,
    /// It is from an earlier run of a known peer that is still running (fresh, signed, and
    /// again a while after the first): refused, and answered with [`Frame::Superseded`].
    EarlierRunAlive,
}

/// What a checked proof established.
struct Proven<'a> {
    /// Where it came from: the address now bound to the peer's session.
    from: SocketAddr,
    /// Sender and session.
    header: Header,
    /// The key it proved.
    key: PublicKey,
    /// Its nick, as signed.
    nick: &'a str,
    /// Its capability bits, as signed.
    caps: u64,
    /// The round trip the echo in its proof (or proof reply) measured (§8.2): the link's
    /// first RTT sample.
    rtt: Duration,
}

impl Endpoint {
    /// The capability bits we sign into proofs.
    fn our_caps(&self) -> u64 {
        let ephemeral = if self.ephemeral {
            wire::caps::EPHEMERAL
        } else {
            0
        };
        let script = if self.script { wire::caps::SCRIPT } else { 0 };
        ephemeral | script
    }

    /// The header of a datagram that carries no packet number (handshake, announcements);
    /// links set their own.
    pub(super) fn header(&self) -> Header {
        Header {
            sender: self.peer_id(),
            session: self.config.session,
            packet: 0,
        }
    }

    /// Sends a hello to `to`, with our token for that address.
    pub(super) fn send_hello(&mut self, now: Instant, to: SocketAddr) {
        let hello = Frame::Hello(Hello {
            token: self.jar.token(now, to),
            caps: 0,
        });
        let bytes = wire::encode(&self.header(), &[hello]);
        self.transmits.push_back(Transmit { to, bytes });
    }

    /// A hello with no probe behind it, at most one per address per
    /// [`super::discovery::HELLO_INTERVAL`] (nothing kept but the limiter's fixed slots).
    pub(super) fn stateless_hello(&mut self, now: Instant, to: SocketAddr) {
        if !self.leaving && self.hello_limiter.allow(now, to) {
            self.send_hello(now, to);
        }
    }

    /// A datagram we cannot place (unknown PeerId, an address its session did not prove, a
    /// stale session) asks for an answer: say hello, so whoever is there proves who it is now.
    pub(super) fn who_are_you(&mut self, now: Instant, from: SocketAddr) {
        self.stateless_hello(now, from);
    }

    /// A hello: answered with a cookie for its source address, sender and session, and nothing
    /// kept. Returns false: nothing changed.
    pub(super) fn on_hello(
        &mut self,
        now: Instant,
        from: SocketAddr,
        header: Header,
        hello: &Hello,
    ) -> bool {
        if self.leaving {
            return false;
        }
        if header.session == 0 {
            self.stats.malformed += 1; // no run is 0; a proof of it could never match
            return false;
        }
        let reply = Frame::Cookie(CookieReply {
            echo: hello.token,
            cookie: self.jar.cookie(now, from, header.sender, header.session),
        });
        let bytes = wire::encode(&self.header(), &[reply]);
        self.transmits.push_back(Transmit { to: from, bytes });
        false
    }

    /// A cookie: if it answers a hello of ours to that address, we prove our key to its sender
    /// — unless it claims to be a peer online in that session whose session proved itself at
    /// that address already: a proof would change nothing (two handshakes crossed, or a hello
    /// went again before the first one's proof reply came back), and we say nothing; or unless
    /// the probe of that address awaits the reply to a proof sent moments ago
    /// ([`super::discovery::Probe::on_cookie`]), or, with no probe there, a proof went to
    /// that address less than [`super::PROOF_INTERVAL`] (or twice the answer time) ago. Nothing
    /// about the sender is taken from it. Returns false: nothing changed.
    pub(super) fn on_cookie(
        &mut self,
        now: Instant,
        from: SocketAddr,
        header: Header,
        c: &CookieReply,
    ) -> bool {
        if self.leaving {
            return false;
        }
        // Its age is no sample: a Cookie is unsigned, and anyone who got one hello from us can
        // echo its token, late, again and again (the proof that follows is timed instead).
        if self.jar.check_token(now, from, &c.echo).is_none() {
            self.stats.bad_cookie += 1;
            return false;
        }
        let proven = self
            .peers
            .get(&header.sender)
            .is_some_and(|p| p.session == header.session && p.is_online() && p.proven_at(from));
        if proven {
            self.probes.remove(from);
            return false;
        }
        let prove = match self.probes.get_mut(from) {
            Some(p) => {
                let prove = p.on_cookie(now);
                if prove {
                    // Noted like a probe-less proof: its address is answered outside the
                    // strangers' budget should the reply be lost (`PROVED_TO_LATELY`).
                    self.proof_limiter.allow(now, from);
                }
                prove
            }
            None => self.proof_limiter.allow(now, from),
        };
        if !prove {
            return false;
        }
        let challenge = self.jar.token(now, from);
        let signed = self
            .transcript(PROOF_DOMAIN, c.cookie, challenge, header)
            .to_bytes();
        let signature = self.signatures.sign(&self.config.identity, &signed);
        let proof = Frame::Proof(Proof {
            key: self.public_key(),
            echo: c.cookie,
            challenge,
            nick: self.config.nick.clone(),
            port: self.config.port,
            caps: self.our_caps(),
            signature,
        });
        let bytes = wire::encode(&self.header(), &[proof]);
        self.transmits.push_back(Transmit { to: from, bytes });
        if self.cookies_echoed.len() >= COOKIES_ECHOED {
            self.cookies_echoed.pop_front();
        }
        self.cookies_echoed.push_back((from, c.cookie));
        false
    }

    /// Tells an earlier run of `peer`, at `to`, that its later run took its place here
    /// (§5.15), echoing `echo`, which it can check: its token in the proof we refused, or
    /// its cookie that our proof echoed. Else that run would never know why it is not heard.
    fn send_superseded(
        &mut self,
        to: SocketAddr,
        peer: PeerId,
        echo: crate::proto::cookie::Cookie,
    ) {
        let later = self.peers.get(&peer).map_or(0, |p| p.session);
        let answer = Frame::Superseded(Superseded {
            echo,
            session: later,
        });
        let bytes = wire::encode(&self.header(), &[answer]);
        self.transmits.push_back(Transmit { to, bytes });
    }

    /// A proof (we are the responder): checked — our cookie for that address, sender and
    /// session; the key is the sender's; its signature — and then the sender is admitted or
    /// updated, and answered with our own proof. Returns whether anything changed.
    pub(super) fn on_proof(
        &mut self,
        now: Instant,
        from: SocketAddr,
        header: Header,
        p: Proof,
    ) -> bool {
        if self.leaving {
            return false;
        }
        let Some(rtt) = self
            .jar
            .check_cookie(now, from, header.sender, header.session, &p.echo)
        else {
            self.stats.bad_cookie += 1;
            return false;
        };
        let signed = Transcript {
            domain: PROOF_DOMAIN,
            echo: p.echo,
            challenge: p.challenge,
            signer: header.sender,
            receiver: self.peer_id(),
            signer_session: header.session,
            receiver_session: self.config.session,
            key: p.key,
            port: p.port,
            caps: p.caps,
            nick: &p.nick,
        };
        match self.check_proof(now, from, header, &signed, &p.signature) {
            Checked::Good => {}
            Checked::Refused => return false,
            Checked::EarlierRunAlive => {
                self.send_superseded(from, header.sender, p.challenge);
                return false;
            }
        }
        let proven = Proven {
            from,
            header,
            key: p.key,
            nick: &p.nick,
            caps: p.caps,
            rtt,
        };
        if !self.accept(now, proven) {
            return false;
        }
        let signed = self
            .transcript(PROOF_REPLY_DOMAIN, p.challenge, [0; 16], header)
            .to_bytes();
        let signature = self.signatures.sign(&self.config.identity, &signed);
        let reply = Frame::ProofReply(ProofReply {
            key: self.public_key(),
            echo: p.challenge,
            nick: self.config.nick.clone(),
            port: self.config.port,
            caps: self.our_caps(),
            signature,
        });
        let bytes = wire::encode(&self.header(), &[reply]);
        // Paced by this handshake's round trip and by how slow answers are lately (a busy
        // host's peer takes in the reply late, and a resend would only add to its load).
        let gap = super::REPLY_RESEND_FIRST
            .max(rtt.saturating_mul(2))
            .max(self.probes.gap());
        let unconfirmed = super::UnconfirmedReply {
            to: from,
            bytes: bytes.clone(),
            first: now,
            next: now + gap,
            gap,
            sent: 1,
        };
        self.replies_unconfirmed.insert(header.sender, unconfirmed);
        self.transmits.push_back(Transmit { to: from, bytes });
        true
    }

    /// A proof reply (we are the initiator): checked — our token for that address; the key is
    /// the sender's; its signature — and then the sender is admitted or updated. Returns
    /// whether anything changed.
    pub(super) fn on_proof_reply(
        &mut self,
        now: Instant,
        from: SocketAddr,
        header: Header,
        p: ProofReply,
    ) -> bool {
        // Taken while leaving too: the peer that sent it has admitted us, and is owed a goodbye
        // (a user who quit before the reply came was left listed there until it timed out).
        let Some(rtt) = self.jar.check_token(now, from, &p.echo) else {
            self.stats.bad_cookie += 1;
            return false;
        };
        let signed = Transcript {
            domain: PROOF_REPLY_DOMAIN,
            echo: p.echo,
            challenge: [0; 16],
            signer: header.sender,
            receiver: self.peer_id(),
            signer_session: header.session,
            receiver_session: self.config.session,
            key: p.key,
            port: p.port,
            caps: p.caps,
            nick: &p.nick,
        };
        match self.check_proof(now, from, header, &signed, &p.signature) {
            Checked::Good => {}
            Checked::Refused => return false,
            Checked::EarlierRunAlive => {
                // Its cookie, which our proof echoed, is what it can check.
                let cookie = self.cookies_echoed.iter().rev().find(|(a, _)| *a == from);
                if let Some(&(_, cookie)) = cookie {
                    self.send_superseded(from, header.sender, cookie);
                }
                return false;
            }
        }
        let proven = Proven {
            from,
            header,
            key: p.key,
            nick: &p.nick,
            caps: p.caps,
            rtt,
        };
        let admitted = self.accept(now, proven);
        if self.leaving {
            self.goodbyes_owed.retain(|(addr, _)| *addr != from);
            if let Some(peer) = self.peers.get_mut(&header.sender) {
                peer.link.queue_leave();
            }
        }
        admitted
    }

    /// What we sign towards the sender of `to` (whose header we answer).
    fn transcript(
        &self,
        domain: &'static [u8],
        echo: Cookie,
        challenge: Cookie,
        to: Header,
    ) -> Transcript<'_> {
        Transcript {
            domain,
            echo,
            challenge,
            signer: self.peer_id(),
            receiver: to.sender,
            signer_session: self.config.session,
            receiver_session: to.session,
            key: self.public_key(),
            port: self.config.port,
            caps: self.our_caps(),
            nick: &self.config.nick,
        }
    }

    /// A `Superseded` (we are the earlier run): if it echoes our token for that address, a
    /// peer there refused our proof because a later run of our identity took our place; our
    /// user is told once per such peer. Returns false: nothing changed.
    pub(super) fn on_superseded(
        &mut self,
        now: Instant,
        from: SocketAddr,
        header: Header,
        s: &Superseded,
    ) -> bool {
        let ours = self.jar.check_token(now, from, &s.echo).is_some()
            || self
                .jar
                .check_cookie(now, from, header.sender, header.session, &s.echo)
                .is_some();
        if !ours {
            self.stats.bad_cookie += 1;
            return false;
        }
        // Never delivered now: that peer takes the later run's messages, whose ids ours share
        // (a later run of the same journal), and would drop ours as already shown. Said, and
        // dropped, rather than reported delivered one day, or never.
        if let Some(p) = self.peers.get_mut(&header.sender) {
            for id in p.link.drop_messages() {
                self.events.push_back(Event::Undelivered {
                    to: header.sender,
                    id,
                    reason: crate::proto::UndeliveredReason::Superseded,
                });
            }
        }
        if self.superseded_told.contains(&header.sender) {
            return false;
        }
        if self.superseded_told.len() >= SUPERSEDED_TOLD {
            self.superseded_told.clear();
        }
        self.superseded_told.insert(header.sender);
        self.events.push_back(Event::Superseded {
            by: header.sender,
            addr: from,
        });
        false
    }

    /// The checks a proof passes after its echo: the key is the PeerId's (its hash, and the key
    /// pinned for it, if any), its session is not older than the one on record, and the
    /// signature is the key's. Counted when it fails.
    fn check_proof(
        &mut self,
        now: Instant,
        from: SocketAddr,
        header: Header,
        signed: &Transcript<'_>,
        sig: &Signature,
    ) -> Checked {
        let id = header.sender;
        let pinned = self.peers.pinned_key(&id);
        if signed.key.peer_id() != id || pinned.is_some_and(|k| k != signed.key) {
            self.stats.bad_proof += 1;
            return Checked::Refused;
        }
        if self
            .peers
            .get(&id)
            .is_some_and(|p| header.session < p.session)
        {
            // A proof from an earlier run of this peer (sessions grow run by run): it must not
            // take the current run's place. Fresh (its echo was checked) and signed, and again
            // a while later (not one datagram of a run that has ended, delayed past its
            // restart), it is that run, still running: told once, since nothing else would
            // say why it is never heard (the same identity twice, from a copied data
            // directory).
            self.stats.stale_session += 1;
            let run = (id, header.session);
            let seen = self.earlier_runs.get(&run).copied();
            let due = match seen {
                None => true,
                Some((first, told)) => {
                    !told && now.saturating_duration_since(first) >= EARLIER_RUN_AGAIN_AFTER
                }
            };
            if due && self.signatures.verify(&signed.key, &signed.to_bytes(), sig) {
                if self.earlier_runs.len() >= EARLIER_RUNS_TOLD {
                    self.earlier_runs.clear();
                }
                let first = seen.map_or(now, |(first, _)| first);
                self.earlier_runs.insert(run, (first, seen.is_some()));
                if seen.is_some() {
                    self.events.push_back(Event::EarlierRunRefused {
                        peer: id,
                        nick: signed.nick.to_owned(),
                        addr: from,
                    });
                    return Checked::EarlierRunAlive;
                }
            } else if seen.is_some_and(|(_, told)| told) {
                // Told already: its later proofs are answered too (one answer may be lost),
                // its echo fresh, without checking the signature again.
                return Checked::EarlierRunAlive;
            }
            return Checked::Refused;
        }
        if !self.signatures.verify(&signed.key, &signed.to_bytes(), sig) {
            self.stats.bad_proof += 1;
            return Checked::Refused;
        }
        Checked::Good
    }

    /// Addresses whose check ([`Endpoint::accept`]) is over: the peer was not heard at a proven
    /// address meanwhile, so it moved, and the new one is taken (its next datagrams from there
    /// are, and it becomes the current address).
    pub(super) fn take_checked_addresses(&mut self, now: Instant) {
        let due: Vec<(PeerId, SocketAddr, u64)> = self
            .address_checks
            .iter()
            .filter(|(_, (_, t, _))| *t <= now)
            .map(|(id, (addr, _, session))| (*id, *addr, *session))
            .collect();
        for (id, addr, session) in due {
            self.address_checks.remove(&id);
            // Proven by that session: a peer that restarted since proves its addresses anew.
            if let Some(peer) = self.peers.get_mut(&id).filter(|p| p.session == session) {
                peer.prove(addr, false);
            }
        }
    }

    /// A peer proved its key, session and address: admits it if it is new (and there is room),
    /// notes a returning or restarted one (a new session starts both streams again), binds its
    /// session to the address, takes its nick, and starts peer exchange when it joins or
    /// restarts. Returns false if it could not be admitted.
    fn accept(&mut self, now: Instant, proven: Proven<'_>) -> bool {
        let Proven {
            from,
            header,
            key,
            nick,
            caps,
            rtt,
        } = proven;
        self.note_answer(rtt);
        let probed = self.probes.get(from).map(|p| p.origin);
        let early = self.probes.get_mut(from).and_then(|p| p.take_early());
        let id: PeerId = header.sender;
        if !self.peers.contains(&id) {
            // Room is made only by forgetting a peer that nothing waits for and that was not
            // heard in the last day; until then the newcomer waits (its probe, or ours, goes on).
            match self
                .peers
                .admit(now, from.ip(), probed == Some(Found::Manual))
            {
                Err(why) => {
                    self.stats.table_full += 1;
                    let due = self.refused_told.is_none_or(|at| {
                        now.saturating_duration_since(at) >= crate::proto::REFUSED_TOLD_EVERY
                    });
                    if due {
                        self.refused_told = Some(now);
                        self.events.push_back(Event::NewcomerRefused {
                            addr: from,
                            nick: nick.to_owned(),
                            address_full: why == super::peers::Refused::AddressFull,
                        });
                    }
                    return false;
                }
                Ok(Some(gone)) if !gone.dropped.is_empty() => {
                    self.events.push_back(Event::PeerForgotten {
                        peer: gone.id,
                        nick: gone.nick,
                        dropped: gone.dropped,
                        reason: ForgetReason::Room,
                    });
                }
                Ok(_) => {}
            }
        }
        self.probes.remove(from);
        let found = probed.unwrap_or(Found::Incoming);
        let was = self
            .peers
            .get(&id)
            .map(|p| p.nick.clone())
            .filter(|old| old != nick);
        let peer = self
            .peers
            .join(now, id, key, nick, header.session, from, found);
        peer.key = Some(key);
        // The proof's (or reply's) echo timed its round trip, so `/peers` shows an RTT from
        // the first moment, on both sides.
        peer.link.handshake_rtt(rtt);
        // Every protocol-2 peer takes AppData (an older one cannot even make contact).
        peer.caps = Some(caps | wire::caps::APP_DATA);
        let new_session = peer.session != header.session;
        // A proof from an unreachable peer in the same session proves only that it reaches us;
        // it counts as reachable once it acknowledges something (no flapping on one-way loss).
        let was_unreachable = peer.link.is_unreachable();
        // A new peer's link starts offline, so it joins like one that left or was restored.
        let joined = peer.state().is_away();
        if probed == Some(Found::Manual) {
            peer.found = Found::Manual;
        }
        // Known from an earlier run, and found again another way in this one (or it reached
        // us first): said so.
        if peer.found == Found::Remembered {
            peer.found = probed.unwrap_or(Found::Incoming);
        }
        // A peer that restarted was bound at an address first seen with its new session (a
        // third party may have relayed that proof, racing the peer's own); now the same
        // session proves itself where the peer was before: that address is taken at once,
        // and the other dropped.
        let relayed = self
            .first_seen
            .get(&id)
            .copied()
            .filter(|&(x, until, session)| {
                until > now
                    && session == header.session
                    && from != x
                    && peer.addrs.iter().any(|a| a == from)
            });
        if let Some((x, _, _)) = relayed {
            self.first_seen.remove(&id);
            self.address_checks.remove(&id);
            peer.proven.retain(|a| *a != x);
            peer.prove(from, false);
            peer.heard(now);
            self.stats.address_kept += 1;
            return true;
        }
        // An online peer in the same session, proven elsewhere, proving itself at a new
        // address: taken only if it does not answer at the old ones meanwhile.
        let check = !new_session
            && !joined
            && !was_unreachable
            && peer.is_online()
            && !peer.proven.is_empty()
            && !peer.proven_at(from);
        if check {
            let wait = peer
                .link
                .srtt()
                .map_or(ADDRESS_CHECK_MAX, |rtt| rtt.saturating_mul(4))
                .clamp(ADDRESS_CHECK_MIN, ADDRESS_CHECK_MAX);
            // A ping to where it is now: a peer that did not move acknowledges it from there.
            peer.link.request_ping();
            let due = now + wait;
            // One at a time: a proof from yet another address meanwhile neither replaces it
            // nor moves its deadline (it is checked in turn, if it comes again).
            let session = peer.session;
            self.address_checks
                .entry(id)
                .or_insert((from, due, session));
            return true;
        }
        // Bound at once (a join, a restart, an unreachable peer, or one proven nowhere yet):
        // a check under way has nothing left to decide.
        self.address_checks.remove(&id);
        let share = joined || new_session;
        // A (re)joining peer at an address it never had, while it had others: those are
        // contacted, and a proof there in this session soon replaces this one (above).
        let earlier: Vec<SocketAddr> = peer.addrs.iter().filter(|a| *a != from).collect();
        let first_seen = share && !earlier.is_empty() && !peer.addrs.iter().any(|a| a == from);
        peer.prove(from, new_session);
        if share {
            peer.session = header.session;
            peer.link.restart(now, new_session);
            if new_session {
                // A new run of the peer says again whether it is away.
                peer.away = None;
            }
            // Our stream to it starts again. If our nick changed lately, the proof it saw may
            // predate the change: the nick goes first (ignored when it already has it). Then
            // whether we are away.
            let renamed_lately = self
                .nick_changed
                .is_some_and(|t| now.saturating_duration_since(t) <= NICK_RESEND_WINDOW);
            if renamed_lately {
                peer.link.queue_nick(&self.config.nick);
            }
            if let Some(reason) = &self.away {
                peer.link.queue_presence(Some(reason));
            }
            if joined {
                peer.joined_at = Some(now);
                self.events.push_back(Event::PeerJoined {
                    peer: id,
                    nick: nick.to_owned(),
                    was,
                    addr: from,
                });
            } else if was_unreachable {
                self.events.push_back(Event::PeerReachable {
                    peer: id,
                    nick: nick.to_owned(),
                });
            } else if new_session {
                self.events.push_back(Event::PeerRestarted {
                    peer: id,
                    nick: nick.to_owned(),
                });
            }
        }
        if peer.nick != nick {
            let old = std::mem::replace(&mut peer.nick, nick.to_owned());
            // A join already shows the new nick; anything else is a rename to tell.
            if !joined {
                self.events.push_back(Event::PeerRenamed {
                    peer: id,
                    old,
                    new: nick.to_owned(),
                });
            }
        }
        peer.heard(now);
        if share && !self.leaving {
            self.exchange_peers_soon(now, id);
        }
        if first_seen {
            self.first_seen
                .insert(id, (from, now + FIRST_SEEN_WATCH, header.session));
            // A few hellos each (as a learned address gets), not a probe for ever.
            for addr in earlier {
                self.add_probe(now, addr, Found::Learned);
            }
        }
        if let Some(bytes) = early {
            self.take_datagram(now, from, &bytes);
        }
        true
    }
}
