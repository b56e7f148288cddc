//! Identity in the simulator (protocol 2): a PeerId cannot be claimed without its key, a
//! session is bound to the address that proved it, a replayed proof gains nothing, a peer that
//! waits for messages or was heard lately is never evicted, and an older tailchat is told apart.

mod sim;

use sim::attacker::Fakes;
use sim::{LinkParams, Sim};
use std::net::SocketAddr;
use std::time::Duration;
use tailchat::proto::wire::{self, Ack, AckRange, Chat, Frame, Header, Hello};
use tailchat::proto::{
    Event, Identity, Limits, MessageId, PeerState, Recipients, RestoredPeer, PROTECTED_AFTER_HEARD,
};

const ALICE: usize = 0;
const BOB: usize = 1;
const STRANGER: usize = 2;

/// Alice and bob (who added her) know each other, and so does a stranger, who thereby learns
/// bob's PeerId, key and session from alice's peer list, as anyone on the network could.
fn alice_bob_and_a_stranger(seed: u64) -> Sim {
    let mut sim = Sim::new(seed, 3, LinkParams::lan());
    sim.add(BOB, ALICE);
    sim.add(STRANGER, ALICE);
    let ok = sim.run_until_cond(Duration::from_secs(5), |s| {
        s.nodes.iter().all(|n| n.ep.peers().len() == 2)
    });
    assert!(ok, "seed {seed}: the three did not meet");
    sim
}

fn texts(sim: &Sim, i: usize) -> Vec<String> {
    sim.received(i).into_iter().map(|m| m.3).collect()
}

/// A datagram from the stranger's own address that claims to be bob.
fn as_bob(sim: &Sim, session: u64, packet: u64, frames: &[Frame]) -> Vec<u8> {
    let header = Header {
        sender: sim.id(BOB),
        session,
        packet,
    };
    wire::encode(&header, frames)
}

#[test]
fn a_stranger_claiming_bobs_peer_id_captures_nothing() {
    for seed in 1..=5 {
        let mut sim = alice_bob_and_a_stranger(seed);
        let bob_before = sim.nodes[ALICE].ep.peer(sim.id(BOB)).unwrap();
        let bob_session = sim.session(BOB);
        let mallory = sim.nodes[STRANGER].addr;
        // Bob's link to alice is cut both ways for now: whatever alice counts as delivered to
        // bob meanwhile would be a lie.
        sim.cut.insert((ALICE, BOB));
        sim.cut.insert((BOB, ALICE));
        let m1 = sim.send(ALICE, Recipients::Everyone, "for bob's eyes");

        // 1. A hello with bob's PeerId and the largest session, from the stranger's address:
        //    alice answers with a cookie, and the stranger cannot sign a proof for bob's key.
        let hello = as_bob(
            &sim,
            u64::MAX,
            0,
            &[Frame::Hello(Hello {
                token: [1; 16],
                caps: 0,
            })],
        );
        sim.inject(ALICE, mallory, &hello);
        let cookie = sim.cookie_for(ALICE, mallory, sim.id(BOB), u64::MAX);
        let to_alice = (sim.id(ALICE), sim.session(ALICE));
        let stranger = sim.nodes[STRANGER].identity.clone();
        // Signed with the stranger's own key: that key's PeerId is not bob's.
        let mut own_key = sim::signed_proof(&stranger, u64::MAX, to_alice, cookie, "bob", false);
        let mut d = wire::decode(&own_key).unwrap();
        d.header.sender = sim.id(BOB);
        own_key = wire::encode(&d.header, &d.frames);
        sim.inject(ALICE, mallory, &own_key);
        // Bob's public key with a signature that is not bob's.
        let bob_key = sim.nodes[ALICE].ep.peer_key(sim.id(BOB)).unwrap();
        if let Some(Frame::Proof(p)) = d.frames.first_mut() {
            p.key = bob_key;
        }
        sim.inject(ALICE, mallory, &wire::encode(&d.header, &d.frames));
        assert_eq!(
            sim.nodes[ALICE].ep.stats().bad_proof,
            2,
            "seed {seed}: both refused"
        );

        // 2. Link datagrams as bob, in bob's session and in the huge one: a message with the
        //    largest id, acks of everything, a leave.
        for session in [bob_session, u64::MAX] {
            let forged = [
                Frame::Session(to_alice.1),
                Frame::Chat(Chat {
                    seq: 0,
                    msg: MessageId(u64::MAX),
                    direct: false,
                    text: "I am bob".into(),
                    flags: 0,
                    age_ms: 0,
                }),
                Frame::Ack(Ack {
                    delay_us: 0,
                    ranges: vec![AckRange {
                        first: 0,
                        last: 100_000,
                    }],
                }),
                Frame::Leave,
            ];
            for packet in 0..20 {
                sim.inject(ALICE, mallory, &as_bob(&sim, session, packet, &forged));
            }
        }
        sim.run_for(Duration::from_secs(3));
        let stats = sim.nodes[ALICE].ep.stats();
        assert!(stats.unproven_address >= 40, "seed {seed}: {stats:?}");

        // Alice still has bob, as he was: same address, online until the cut shows.
        let bob_now = sim.nodes[ALICE].ep.peer(sim.id(BOB)).unwrap();
        assert_eq!(bob_now.addrs, bob_before.addrs, "seed {seed}");
        assert!(!texts(&sim, ALICE).iter().any(|t| t == "I am bob"));
        assert!(!sim.saw(ALICE, |e| matches!(e, Event::PeerLeft { .. })));
        assert!(
            !sim.saw(
                ALICE,
                |e| matches!(e, Event::Delivered { to, .. } if *to == sim.id(BOB))
            ),
            "seed {seed}: nothing counts as delivered to bob while he got nothing"
        );

        // Bob comes back: he gets the message, it is reported delivered, and what he says is
        // shown (the watermark did not move to the forged id).
        sim.cut.clear();
        let ok = sim.run_until_cond(Duration::from_secs(30), |s| {
            s.saw(
                ALICE,
                |e| matches!(e, Event::Delivered { to, id, .. } if *to == s.id(BOB) && *id == m1),
            )
        });
        assert!(ok, "seed {seed}: not delivered after the cut healed");
        assert_eq!(texts(&sim, BOB), vec!["for bob's eyes"]);
        sim.send(BOB, Recipients::Everyone, "the real bob");
        let ok = sim.run_until_cond(Duration::from_secs(5), |s| {
            texts(s, ALICE).iter().any(|t| t == "the real bob")
        });
        assert!(ok, "seed {seed}: bob was muted");
        let bob_after = sim.nodes[ALICE].ep.peer(sim.id(BOB)).unwrap();
        assert_eq!(bob_after.state, PeerState::Online);
        assert_eq!(bob_after.addrs[0], sim.nodes[BOB].addr);
    }
}

#[test]
fn a_replayed_proof_from_another_address_gains_nothing() {
    let mut sim = Sim::new(2, 3, LinkParams::lan());
    sim.tap = Some(Vec::new());
    sim.add(BOB, ALICE);
    assert!(
        sim.run_until_cond(Duration::from_secs(5), |s| s.nodes[ALICE].ep.peers().len()
            == 1)
    );
    let tapped = sim.tap.take().unwrap();
    let kind = |bytes: &[u8]| match wire::decode(bytes).unwrap().frames.first() {
        Some(Frame::Proof(_)) => "proof",
        Some(Frame::ProofReply(_)) => "reply",
        _ => "",
    };
    let proof = tapped
        .iter()
        .find(|(from, _, b)| *from == BOB && kind(b) == "proof")
        .map(|(_, _, b)| b.clone())
        .expect("bob's proof");
    let reply = tapped
        .iter()
        .find(|(from, _, b)| *from == ALICE && kind(b) == "reply")
        .map(|(_, _, b)| b.clone())
        .expect("alice's proof reply");
    let events_before = sim.nodes[ALICE].events.len();
    let bob_before = sim.nodes[ALICE].ep.peer(sim.id(BOB)).unwrap();
    let elsewhere = sim.nodes[STRANGER].addr;
    // Replayed from another address, at once and later: the cookie was for bob's address.
    sim.inject(ALICE, elsewhere, &proof);
    sim.inject(BOB, elsewhere, &reply);
    sim.run_for(Duration::from_secs(20));
    sim.inject(ALICE, elsewhere, &proof);
    assert_eq!(sim.nodes[ALICE].ep.stats().bad_cookie, 2);
    assert_eq!(sim.nodes[BOB].ep.stats().bad_cookie, 1);
    // Replayed from bob's own address after the cookie expired: refused too.
    let bob_addr = sim.nodes[BOB].addr;
    sim.inject(ALICE, bob_addr, &proof);
    assert_eq!(sim.nodes[ALICE].ep.stats().bad_cookie, 3);
    let bob_after = sim.nodes[ALICE].ep.peer(sim.id(BOB)).unwrap();
    assert_eq!(bob_after.addrs, bob_before.addrs, "no address gained");
    assert!(
        sim.nodes[ALICE].events[events_before..]
            .iter()
            .all(|(_, e)| !matches!(e, Event::PeerJoined { .. } | Event::PeerRenamed { .. })),
        "no join, no rename"
    );
    // And bob, who never left, is still heard.
    sim.send(BOB, Recipients::Everyone, "still me");
    assert!(sim.run_until_cond(Duration::from_secs(2), |s| texts(s, ALICE) == ["still me"]));
}

#[test]
fn a_peer_that_moves_proves_itself_again_from_where_it_is() {
    let mut sim = Sim::new(3, 2, LinkParams::lan());
    sim.connect_star();
    let moved: SocketAddr = "10.0.9.9:7654".parse().unwrap();
    sim.nodes[ALICE].addr = moved;
    sim.send(ALICE, Recipients::Everyone, "from my new desk");
    let ok = sim.run_until_cond(Duration::from_secs(2), |s| s.received(BOB).len() == 1);
    assert!(ok, "the moved peer was not heard");
    let alice = sim.nodes[BOB].ep.peer(sim.id(ALICE)).unwrap();
    assert_eq!(alice.addrs[0], moved);
    assert!(
        sim.nodes[BOB].ep.stats().unproven_address > 0,
        "it had to prove itself"
    );
}

/// Mallory, at an address of her own, forwards datagrams unchanged between it and alice and
/// bob, who are linked already.
struct Relay {
    at: SocketAddr,
    alice: SocketAddr,
    bob: SocketAddr,
    /// Datagrams forwarded.
    forwarded: std::rc::Rc<std::cell::Cell<u32>>,
}

impl sim::Outside for Relay {
    fn receive(
        &mut self,
        _now: std::time::Instant,
        from: SocketAddr,
        to: SocketAddr,
        bytes: &[u8],
    ) -> Vec<(SocketAddr, SocketAddr, Vec<u8>)> {
        let other = match from {
            f if f == self.alice => self.bob,
            f if f == self.bob => self.alice,
            _ => return Vec::new(),
        };
        if to != self.at {
            return Vec::new();
        }
        self.forwarded.set(self.forwarded.get() + 1);
        vec![(self.at, other, bytes.to_vec())]
    }
}

/// Alice and bob, linked, and mallory at an address of her own, relaying between them: the
/// simulation, her address, and the count of what she forwarded.
fn alice_bob_and_a_relay(seed: u64) -> (Sim, SocketAddr, std::rc::Rc<std::cell::Cell<u32>>) {
    let mut sim = Sim::new(seed, 2, LinkParams::lan());
    sim.connect_star();
    let mallory: SocketAddr = "10.0.66.6:7654".parse().unwrap();
    let forwarded = std::rc::Rc::new(std::cell::Cell::new(0));
    sim.outside = Some(Box::new(Relay {
        at: mallory,
        alice: sim.nodes[ALICE].addr,
        bob: sim.nodes[BOB].addr,
        forwarded: forwarded.clone(),
    }));
    (sim, mallory, forwarded)
}

/// Mallory, who reaches both, claims bob's PeerId towards alice from her own address and then
/// only forwards: alice's hello to her address reaches bob, whose cookie, proofs and replies
/// reach alice through her, so each would prove the other at mallory's address and move
/// their link there — where she could drop and change what they say. Neither takes the new
/// address while the other still answers where it was proven.
#[test]
fn a_third_party_relaying_a_handshake_does_not_move_a_live_link() {
    for seed in 1..=5 {
        let (mut sim, mallory, forwarded) = alice_bob_and_a_relay(seed);
        let bob_session = sim.session(BOB);
        let ping = as_bob(
            &sim,
            bob_session,
            1 << 20,
            &[Frame::Session(sim.session(ALICE)), Frame::Ping],
        );
        sim.inject(ALICE, mallory, &ping);
        sim.run_for(Duration::from_secs(5));
        assert!(
            forwarded.get() >= 4,
            "seed {seed}: the handshake went through mallory ({} datagrams)",
            forwarded.get()
        );
        for (me, other) in [(ALICE, BOB), (BOB, ALICE)] {
            let seen = sim.nodes[me].ep.peer(sim.id(other)).unwrap();
            assert_eq!(
                seen.addrs[0], sim.nodes[other].addr,
                "seed {seed}: node {me} moved its link to {:?}",
                seen.addrs
            );
            assert!(
                !seen.addrs.contains(&mallory),
                "seed {seed}: {:?}",
                seen.addrs
            );
            assert!(
                sim.nodes[me].ep.stats().address_kept >= 1,
                "seed {seed}: node {me} kept the address"
            );
        }
        // What mallory sends as bob from her address is still not taken.
        let forged = as_bob(
            &sim,
            bob_session,
            1 << 20,
            &[
                Frame::Session(sim.session(ALICE)),
                Frame::Chat(Chat {
                    seq: 1,
                    msg: MessageId(1 << 40),
                    direct: false,
                    text: "please deploy tonight".into(),
                    flags: 0,
                    age_ms: 0,
                }),
            ],
        );
        sim.inject(ALICE, mallory, &forged);
        sim.run_for(Duration::from_secs(1));
        assert!(
            texts(&sim, ALICE).is_empty(),
            "seed {seed}: {:?}",
            texts(&sim, ALICE)
        );
        // And the two still talk.
        sim.send(BOB, Recipients::Everyone, "do not deploy tonight");
        let ok = sim.run_until_cond(Duration::from_secs(2), |s| {
            texts(s, ALICE) == ["do not deploy tonight"]
        });
        assert!(ok, "seed {seed}: {:?}", texts(&sim, ALICE));
    }
}

/// Bob restarts (same identity, new session, alice remembered), and mallory races his own
/// handshake: she claims his new session towards alice from her address and relays, so that
/// each side first proves the other's new run at her address, bound at once as a new
/// session's is. Each side then contacts the other where it was before, and the proof there
/// replaces hers: the link is on the real addresses, and hers is not proven.
#[test]
fn a_third_party_relaying_at_a_restart_does_not_keep_the_link() {
    for seed in 1..=5 {
        let (mut sim, mallory, forwarded) = alice_bob_and_a_relay(seed);
        let alice_then = sim.nodes[BOB].ep.peer(sim.id(ALICE)).unwrap();
        let remembered = RestoredPeer {
            id: sim.id(ALICE),
            key: sim.nodes[BOB].ep.peer_key(sim.id(ALICE)),
            heard_ago: Some(Duration::ZERO),
            nick: alice_then.nick.clone(),
            addrs: alice_then.addrs.clone(),
            manual: false,
            wanted: false,
            delivered_through: MessageId(0),
            outbox: vec![],
        };
        sim.restart_node_as(BOB, MessageId(1 << 20), vec![remembered]);
        let ping = as_bob(
            &sim,
            sim.session(BOB),
            1,
            &[Frame::Session(sim.session(ALICE)), Frame::Ping],
        );
        sim.inject(ALICE, mallory, &ping);
        sim.run_for(Duration::from_secs(10));
        assert!(
            forwarded.get() >= 4,
            "seed {seed}: nothing went through mallory"
        );
        for (me, other) in [(ALICE, BOB), (BOB, ALICE)] {
            let seen = sim.nodes[me].ep.peer(sim.id(other)).unwrap();
            assert_eq!(
                seen.addrs[0], sim.nodes[other].addr,
                "seed {seed}: node {me} keeps its link at {:?}",
                seen.addrs
            );
        }
        // What mallory sends as bob's new run from her address is not taken.
        let forged = as_bob(
            &sim,
            sim.session(BOB),
            1 << 10,
            &[Frame::Session(sim.session(ALICE)), Frame::Ping],
        );
        let before = sim.nodes[ALICE].ep.stats().unproven_address;
        sim.inject(ALICE, mallory, &forged);
        assert_eq!(
            sim.nodes[ALICE].ep.stats().unproven_address,
            before + 1,
            "seed {seed}: mallory's address is still proven"
        );
        sim.send(BOB, Recipients::Everyone, "back, and still me");
        let ok = sim.run_until_cond(Duration::from_secs(3), |s| {
            texts(s, ALICE).contains(&"back, and still me".to_owned())
        });
        assert!(ok, "seed {seed}: {:?}", texts(&sim, ALICE));
    }
}

#[test]
fn a_peer_with_messages_waiting_or_heard_today_is_never_evicted() {
    // A table of 8. Bob has a message waiting (he is cut off); carol is online. Answering
    // fakes, each at its own IP address, keep proving themselves to alice.
    const CAROL: usize = 2;
    const DAVE: usize = 3;
    let limits = Limits {
        max_peers: 8,
        ..Limits::default()
    };
    let mut sim = Sim::with_limits(4, 4, LinkParams::lan(), limits);
    sim.add(BOB, ALICE);
    sim.add(CAROL, ALICE);
    assert!(
        sim.run_until_cond(Duration::from_secs(5), |s| s.nodes[ALICE].ep.peers().len()
            == 2)
    );
    sim.cut.insert((ALICE, BOB));
    sim.cut.insert((BOB, ALICE));
    sim.send(ALICE, Recipients::Peer(sim.id(BOB)), "wait for me");
    // Dave is remembered from an earlier run, last heard two days ago, nothing waiting.
    let dave = RestoredPeer {
        id: sim.id(DAVE),
        key: Some(sim.nodes[DAVE].identity.public_key()),
        heard_ago: Some(PROTECTED_AFTER_HEARD * 2),
        nick: "dave".into(),
        addrs: vec!["10.0.7.7:7654".parse().unwrap()],
        manual: false,
        wanted: false,
        delivered_through: MessageId(0),
        outbox: vec![],
    };
    let now = sim.now;
    sim.nodes[ALICE].ep.restore(now, MessageId(10), vec![dave]);
    sim.flush(ALICE);
    assert_eq!(sim.nodes[ALICE].ep.peers().len(), 3);
    let fake_addr = |i: usize| SocketAddr::from(([10, 200, (i >> 8) as u8, i as u8], 7654));
    let fakes = Fakes::new(9, 200, fake_addr);
    let hellos: Vec<(SocketAddr, Vec<u8>)> = (0..200)
        .map(|i| (fake_addr(i), fakes.hello(fake_addr(i))))
        .collect();
    sim.outside = Some(Box::new(fakes));
    let to = sim.nodes[ALICE].addr;
    for (i, (from, hello)) in hellos.into_iter().enumerate() {
        sim.send_from_outside(from, to, hello);
        if i % 10 == 9 {
            sim.run_for(Duration::from_millis(100));
        }
        let peers = sim.nodes[ALICE].ep.peers();
        assert!(peers.len() <= limits.max_peers);
        assert!(peers.iter().any(|p| p.id == sim.id(BOB)), "bob evicted");
        assert!(peers.iter().any(|p| p.id == sim.id(CAROL)), "carol evicted");
    }
    sim.run_for(Duration::from_secs(10));
    let peers = sim.nodes[ALICE].ep.peers();
    assert_eq!(peers.len(), limits.max_peers, "fakes took the free places");
    assert!(
        peers.iter().all(|p| p.id != sim.id(DAVE)),
        "dave, silent for two days with nothing waiting, made room"
    );
    assert!(
        sim.nodes[ALICE].ep.stats().table_full > 0,
        "the rest were refused"
    );
    // Alice's user is told, once for the whole crowd, that newcomers could not join.
    let told = sim.nodes[ALICE]
        .events
        .iter()
        .filter(|(_, e)| {
            matches!(
                e,
                Event::NewcomerRefused {
                    address_full: false,
                    ..
                }
            )
        })
        .count();
    assert_eq!(told, 1, "told once");
    assert!(!sim.saw(ALICE, |e| matches!(e, Event::PeerForgotten { .. })));
    // Bob comes back and gets his message.
    sim.cut.clear();
    let ok = sim.run_until_cond(Duration::from_secs(30), |s| {
        texts(s, BOB) == ["wait for me"]
    });
    assert!(ok, "bob's message was lost");
}

#[test]
fn an_older_tailchat_is_told_apart_and_told_which_version_we_speak() {
    let mut sim = Sim::new(5, 1, LinkParams::lan());
    // A version-1 Hello (vector `hello` of the version-1 spec).
    let v1 = [
        0x54, 0x43, 0x48, 0x54, 0x01, 0xef, 0x9b, 0xaf, 0xcd, 0xf8, 0xac, 0xd1, 0x91, 0x01, 0x2a,
        0x00, 0x01, 0x09, 0x05, 0x61, 0x6c, 0x69, 0x63, 0x65, 0xe6, 0x3b, 0x00,
    ];
    let old: SocketAddr = "10.3.3.3:7654".parse().unwrap();
    sim.tap = Some(Vec::new());
    for _ in 0..5 {
        sim.inject(0, old, &v1);
    }
    let reports: Vec<&Event> = sim.nodes[0]
        .events
        .iter()
        .map(|(_, e)| e)
        .filter(|e| matches!(e, Event::VersionMismatch { .. }))
        .collect();
    assert_eq!(
        reports,
        vec![&Event::VersionMismatch {
            from: old,
            version: 1
        }]
    );
    let tapped = sim.tap.take().unwrap();
    assert_eq!(tapped.len(), 1, "one answer, so the old one reports us too");
    let (_, to, bytes) = &tapped[0];
    assert_eq!(*to, old);
    assert_eq!(&bytes[..5], b"TCHT\x02", "a version-2 datagram");
    assert_eq!(sim.nodes[0].ep.peers().len(), 0);
}

#[test]
fn a_returning_peer_is_recognised_by_its_key() {
    // Node 0 remembers node 1 with a message waiting: with node 1's key, without a key (storage
    // that keeps none: the PeerId is the hash of the key), or with a damaged key (ignored). In
    // each case node 1, proving its key, gets the message once; a peer with another key never
    // could, since its PeerId would differ.
    let other = Identity::from_secret([9; 32]).public_key();
    for stored in [Some(true), None, Some(false)] {
        let mut sim = Sim::new(6, 2, LinkParams::lan());
        let key = stored.map(|right| {
            if right {
                sim.nodes[1].identity.public_key()
            } else {
                other
            }
        });
        let restored = RestoredPeer {
            id: sim.id(1),
            key,
            heard_ago: None,
            nick: "n1".into(),
            addrs: vec![sim.nodes[1].addr],
            manual: true,
            wanted: false,
            delivered_through: MessageId(0),
            outbox: vec![tailchat::proto::Queued {
                id: MessageId(1),
                direct: false,
                action: false,
                written_ago: std::time::Duration::ZERO,
                text: "hello again".into(),
            }],
        };
        sim.restart_node_as(0, MessageId(2), vec![restored]);
        let ok = sim.run_until_cond(Duration::from_secs(3), |s| {
            texts(s, 1) == ["hello again"] && s.nodes[0].ep.undelivered() == 0
        });
        assert!(ok, "stored key {stored:?}: got {:?}", texts(&sim, 1));
        assert_eq!(
            sim.nodes[0].ep.peer_key(sim.id(1)),
            Some(sim.nodes[1].identity.public_key())
        );
    }
}
