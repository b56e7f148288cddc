//! The handshake: hellos and their replies, which admit a peer, tell its session (a new one
//! means it restarted, and both streams start again), its nick and its port, and give the
//! first RTT sample; and the stateless, rate-limited hello we send a stranger that wants
//! something of us, so that a peer still talking to an earlier run of ours learns who is here
//! now.

use super::peers::Refused;
use super::Endpoint;
use crate::proto::wire::{self, Frame, Header, Hello};
use crate::proto::{Event, Found, Transmit};
use std::net::SocketAddr;
use std::time::Instant;

impl Endpoint {
    /// What we say about ourselves in hellos and announcements.
    pub(super) fn my_hello(&self) -> Hello {
        Hello {
            nick: self.config.nick.clone(),
            port: self.config.port,
            caps: wire::caps::APP_DATA,
        }
    }

    /// The header of a datagram that carries no packet number (hellos, announcements); links
    /// set their own.
    pub(super) fn header(&self) -> Header {
        Header {
            sender: self.config.peer_id,
            session: self.config.session,
            packet: 0,
        }
    }

    /// Sends a hello (or, in answer to one, a hello reply) to `to`.
    pub(super) fn send_hello(&mut self, to: SocketAddr, reply: bool) {
        let hello = if reply {
            Frame::HelloReply(self.my_hello())
        } else {
            Frame::Hello(self.my_hello())
        };
        let bytes = wire::encode(&self.header(), &[hello]);
        self.transmits.push_back(Transmit { to, bytes });
    }

    /// An unknown sender wants something from us: say hello (rate-limited, no state kept), so
    /// a peer that still knows an old us learns who is at this address now.
    pub(super) fn who_are_you(&mut self, now: Instant, from: SocketAddr) {
        if !self.leaving && self.peers.allow_stranger(now) {
            self.send_hello(from, false);
        }
    }

    /// A hello (`reply`: a hello reply) from `from`: admits a new peer, notes a returning or
    /// restarted one, a new nick and address, and answers a hello with a reply.
    pub(super) fn on_hello(
        &mut self,
        now: Instant,
        from: SocketAddr,
        header: Header,
        h: Hello,
        reply: bool,
    ) {
        let (probed, handshake_rtt) = match self.probes.get(from) {
            Some(p) => (Some(p.origin), p.clean_rtt(now)),
            None => (None, None),
        };
        let id = header.sender;
        if !self.peers.contains(&id) {
            // A stranger we did not ask for costs a token (a flood of made-up identities is
            // admitted a few a second), and a full table must make room: until both, the
            // hello is dropped, and a probe of ours stays to try again.
            match self.peers.admit(now, probed.is_some()) {
                Err(Refused::NoToken | Refused::Full) => {
                    self.stats.table_full += 1;
                    return;
                }
                Ok(Some(gone)) if !gone.dropped.is_empty() => {
                    self.events.push_back(Event::PeerForgotten {
                        peer: gone.id,
                        nick: gone.nick,
                        dropped: gone.dropped,
                    });
                }
                Ok(_) => {}
            }
        }
        self.probes.remove(from);
        let found = probed.unwrap_or(Found::Incoming);
        let peer = self
            .peers
            .join(now, id, &h.nick, header.session, from, found);
        if let Some(rtt) = handshake_rtt {
            // One hello, one answer: the round trip is unambiguous (Karn), so `/peers` shows
            // an RTT from the first moment rather than after the first keepalive.
            peer.link.handshake_rtt(rtt);
        }
        if header.session < peer.session {
            // A late hello from an earlier run of this peer (sessions grow run by run): it
            // must not reset the streams of the current one. (The datagram is counted stale
            // once, by the session check that follows in `handle_datagram`.)
            return;
        }
        peer.caps = Some(h.caps);
        let new_session = peer.session != header.session;
        // A hello from an unreachable peer in the same session proves only that it reaches us;
        // it counts as reachable once it acknowledges something (no flapping on one-way loss).
        let was_unreachable = peer.link.is_unreachable();
        // A new peer's link starts offline, so it joins like one that left or was restored.
        let joined = peer.state().is_away();
        if probed == Some(Found::Manual) {
            peer.found = Found::Manual;
        }
        let share = joined || new_session;
        if share {
            peer.session = header.session;
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
        peer.addrs.note(from);
        if !reply && !self.leaving {
            self.send_hello(from, true);
        }
        if share {
            self.exchange_peers(now, id);
        }
    }
}
