//! An attacker for the simulator: made-up identities at addresses it controls that answer as a
//! real peer would — cookies, proofs, proof replies, acks of everything — and may send peer lists
//! of made-up addresses once they are in. It is a small second implementation of the handshake
//! (from `docs/PROTOCOL.md`), enough to be admitted and to keep a link online; it never
//! delivers a message.

use super::Outside;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;
use tailchat::proto::identity::{Transcript, PROOF_DOMAIN, PROOF_REPLY_DOMAIN};
use tailchat::proto::wire::{
    self, Ack, AckRange, CookieReply, Frame, Header, Hello, PeerEntry, PeerList, Proof, ProofReply,
};
use tailchat::proto::{Identity, PeerId};

/// One made-up identity at one address.
pub struct Fake {
    /// Its key pair.
    pub identity: Identity,
    /// Its session.
    pub session: u64,
    /// Its next stream sequence number towards each victim, by the victim's address.
    next_seq: BTreeMap<SocketAddr, u64>,
    /// Victims whose link datagrams it has heard (so it is in), with their session.
    pub admitted_by: BTreeMap<SocketAddr, u64>,
}

/// The attacker: fakes by address, and what they do.
pub struct Fakes {
    /// Every fake, by its address.
    pub fakes: BTreeMap<SocketAddr, Fake>,
    /// Made-up addresses each fake lists in peer lists once it is in (0: none).
    pub peer_list_entries: usize,
    /// Datagrams the fakes sent.
    pub sent: u64,
    /// A counter for made-up addresses.
    made_up: u32,
}

impl Fakes {
    /// `n` fakes at `addr(i)`, keys derived from `seed`.
    pub fn new(seed: u8, n: usize, addr: impl Fn(usize) -> SocketAddr) -> Self {
        let fakes = (0..n)
            .map(|i| {
                let mut secret = [seed; 32];
                secret[..8].copy_from_slice(&(i as u64).to_le_bytes());
                let fake = Fake {
                    identity: Identity::from_secret(secret),
                    session: 1 << 20 | i as u64,
                    next_seq: BTreeMap::new(),
                    admitted_by: BTreeMap::new(),
                };
                (addr(i), fake)
            })
            .collect();
        Self {
            fakes,
            peer_list_entries: 0,
            sent: 0,
            made_up: 0,
        }
    }

    /// A hello from the fake at `from` (any token: the victim's cookie echoes it back).
    pub fn hello(&self, from: SocketAddr) -> Vec<u8> {
        let fake = &self.fakes[&from];
        wire::encode(
            &header(fake, 0),
            &[Frame::Hello(Hello {
                token: [0x5a; 16],
                caps: 0,
            })],
        )
    }

    /// How many victims admitted some fake (counted per fake and victim).
    pub fn admissions(&self) -> usize {
        self.fakes.values().map(|f| f.admitted_by.len()).sum()
    }

    fn made_up_addr(&mut self) -> SocketAddr {
        self.made_up += 1;
        let i = self.made_up;
        SocketAddr::from(([10, 222, (i >> 8) as u8, i as u8], 7654))
    }
}

fn header(fake: &Fake, packet: u64) -> Header {
    Header {
        sender: fake.identity.peer_id(),
        session: fake.session,
        packet,
    }
}

fn transcript<'a>(
    fake: &'a Fake,
    domain: &'a [u8],
    echo: [u8; 16],
    challenge: [u8; 16],
    to: Header,
) -> Transcript<'a> {
    Transcript {
        domain,
        echo,
        challenge,
        signer: fake.identity.peer_id(),
        receiver: to.sender,
        signer_session: fake.session,
        receiver_session: to.session,
        key: fake.identity.public_key(),
        port: 7654,
        caps: 0,
        nick: "fake",
    }
}

impl Outside for Fakes {
    fn receive(
        &mut self,
        _now: Instant,
        from: SocketAddr,
        to: SocketAddr,
        bytes: &[u8],
    ) -> Vec<(SocketAddr, SocketAddr, Vec<u8>)> {
        let Ok(d) = wire::decode(bytes) else {
            return vec![];
        };
        let entries = self.peer_list_entries;
        let made_up: Vec<SocketAddr> = (0..entries).map(|_| self.made_up_addr()).collect();
        let Some(fake) = self.fakes.get_mut(&to) else {
            return vec![];
        };
        let mut out = Vec::new();
        let first = d.frames.first().cloned();
        match first {
            Some(Frame::Hello(h)) => {
                let c = Frame::Cookie(CookieReply {
                    echo: h.token,
                    cookie: [0xc0; 16],
                });
                out.push(wire::encode(&header(fake, 0), &[c]));
            }
            Some(Frame::Cookie(c)) => {
                let t = transcript(fake, PROOF_DOMAIN, c.cookie, [0; 16], d.header);
                let signature = fake.identity.sign(&t.to_bytes());
                let p = Frame::Proof(Proof {
                    key: fake.identity.public_key(),
                    echo: c.cookie,
                    challenge: [0; 16],
                    nick: "fake".into(),
                    port: 7654,
                    caps: 0,
                    signature,
                });
                out.push(wire::encode(&header(fake, 0), &[p]));
            }
            Some(Frame::Proof(p)) => {
                let t = transcript(fake, PROOF_REPLY_DOMAIN, p.challenge, [0; 16], d.header);
                let signature = fake.identity.sign(&t.to_bytes());
                let r = Frame::ProofReply(ProofReply {
                    key: fake.identity.public_key(),
                    echo: p.challenge,
                    nick: "fake".into(),
                    port: 7654,
                    caps: 0,
                    signature,
                });
                out.push(wire::encode(&header(fake, 0), &[r]));
            }
            Some(Frame::ProofReply(_)) => {}
            _ if d.is_ack_eliciting() => {
                // A link datagram: it is in. Ack it, as a live peer would.
                let first_time = fake.admitted_by.insert(from, d.header.session).is_none();
                let ack = Frame::Ack(Ack {
                    delay_us: 0,
                    ranges: vec![AckRange {
                        first: d.header.packet,
                        last: d.header.packet,
                    }],
                });
                let mut frames = vec![Frame::Session(d.header.session), ack];
                if first_time && !made_up.is_empty() {
                    for chunk in made_up.chunks(wire::MAX_ENTRY_ADDRS * 4) {
                        let seq = fake.next_seq.entry(from).or_insert(0);
                        let peers: Vec<PeerEntry> = chunk
                            .chunks(wire::MAX_ENTRY_ADDRS)
                            .enumerate()
                            .map(|(k, addrs)| PeerEntry {
                                id: PeerId(u64::from(k as u32) << 32 | u64::from(*seq as u32)),
                                nick: "ghost".into(),
                                addrs: addrs.to_vec(),
                                heard_secs: 0,
                            })
                            .collect();
                        frames.push(Frame::Peers(PeerList { seq: *seq, peers }));
                        *seq += 1;
                    }
                }
                // Acks carry no packet number that matters; the Peers items use packet 0 of
                // each reply (the victim acks them; nothing is ever resent).
                out.push(wire::encode(&header(fake, 0), &frames));
            }
            _ => {}
        }
        self.sent += out.len() as u64;
        out.into_iter().map(|b| (to, from, b)).collect()
    }
}
