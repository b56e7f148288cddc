//! Hostile input: replayed, out-of-window, truncated, random and flooding datagrams must change
//! nothing they should not, and never panic or grow memory without bound.

mod sim;

use proptest::prelude::*;
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use sim::{LinkParams, Sim};
use std::net::SocketAddr;
use std::time::Duration;
use tailchat::proto::identity::{PublicKey, Signature};
use tailchat::proto::wire::{self, Chat, Frame, Header, Hello};
use tailchat::proto::{Event, Limits, MessageId, PeerId, Recipients, WINDOW};

/// Two connected nodes that exchanged a few messages, and every datagram node 1 received.
fn recorded_session(seed: u64) -> (Sim, Vec<(SocketAddr, Vec<u8>)>) {
    let mut sim = Sim::new(seed, 2, LinkParams::lossy(0.1));
    sim.connect_star();
    for k in 0..5 {
        sim.send(0, Recipients::Everyone, &format!("hello {k}"));
        sim.send(0, Recipients::Everyone, &"long ".repeat(500));
    }
    sim.run_for(Duration::from_secs(5));
    // Record by re-sending what node 0 would send: capture node 0's transmits from now on.
    let mut recorded = Vec::new();
    for k in 0..3 {
        let now = sim.now;
        sim.nodes[0]
            .ep
            .send_message(now, Recipients::Everyone, &format!("late {k}"))
            .unwrap();
        while let Some(t) = sim.nodes[0].ep.poll_transmit() {
            recorded.push((sim.nodes[0].addr, t.bytes.clone()));
            sim.inject(1, sim.nodes[0].addr, &t.bytes);
        }
        sim.flush(1);
        sim.run_for(Duration::from_millis(100));
    }
    sim.run_for(Duration::from_secs(5));
    (sim, recorded)
}

fn messages(sim: &Sim, i: usize) -> usize {
    sim.received(i).len()
}

#[test]
fn replayed_datagrams_change_nothing() {
    for seed in 1..=5 {
        let (mut sim, recorded) = recorded_session(seed);
        let before = messages(&sim, 1);
        let peers_before = sim.nodes[1].ep.peers();
        for (from, bytes) in recorded.iter().cycle().take(recorded.len() * 3) {
            sim.inject(1, *from, bytes);
        }
        sim.run_for(Duration::from_secs(5));
        assert_eq!(
            messages(&sim, 1),
            before,
            "seed {seed}: replay delivered again"
        );
        let peers_after = sim.nodes[1].ep.peers();
        assert_eq!(peers_after.len(), peers_before.len());
        assert!(sim.nodes[1].ep.stats().links.duplicates > 0);
    }
}

#[test]
fn truncated_datagrams_are_counted_and_change_nothing() {
    let (mut sim, recorded) = recorded_session(11);
    let before = messages(&sim, 1);
    let malformed_before = sim.nodes[1].ep.stats().malformed;
    let mut cuts = 0;
    for (from, bytes) in &recorded {
        for cut in 0..bytes.len() {
            sim.inject(1, *from, &bytes[..cut]);
            cuts += 1;
        }
    }
    sim.run_for(Duration::from_secs(2));
    assert_eq!(messages(&sim, 1), before);
    assert!(cuts > 0);
    assert!(sim.nodes[1].ep.stats().malformed > malformed_before);
}

#[test]
fn datagrams_beyond_the_receive_window_are_refused() {
    let mut sim = Sim::new(12, 2, LinkParams::lan());
    sim.connect_star();
    // Craft a chat from node 0's identity and session far ahead of the stream.
    let (sender, session) = capture_header(&mut sim);
    let bytes = wire::encode(
        &Header {
            sender,
            session,
            packet: 1_000_000,
        },
        &[Frame::Chat(Chat {
            seq: WINDOW + 5,
            msg: MessageId(999),
            direct: false,
            text: "from the future".into(),
            flags: 0,
            age_ms: 0,
        })],
    );
    let from = sim.nodes[0].addr;
    sim.inject(1, from, &bytes);
    sim.run_for(Duration::from_secs(1));
    assert!(sim.received(1).is_empty());
    assert_eq!(sim.nodes[1].ep.stats().links.out_of_window, 1);
    // The real stream still works afterwards.
    sim.send(0, Recipients::Everyone, "real");
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.received(1).len(), 1);
}

/// Reads node 0's sender id and session from one of its datagrams.
fn capture_header(sim: &mut Sim) -> (PeerId, u64) {
    let now = sim.now;
    sim.nodes[0]
        .ep
        .send_message(now, Recipients::Everyone, "probe")
        .unwrap();
    let t = sim.nodes[0].ep.poll_transmit().unwrap();
    let d = wire::decode(&t.bytes).unwrap();
    sim.inject(1, sim.nodes[0].addr, &t.bytes);
    sim.run_for(Duration::from_millis(50));
    sim.nodes[1].events.clear();
    (d.header.sender, d.header.session)
}

#[test]
fn random_bytes_never_panic_and_are_counted() {
    let mut sim = Sim::new(13, 2, LinkParams::lan());
    sim.connect_star();
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let from: SocketAddr = "10.9.9.9:1234".parse().unwrap();
    for i in 0..20_000 {
        let len = rng.random_range(0..1500);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        if i % 2 == 0 && bytes.len() >= 5 {
            bytes[..4].copy_from_slice(&wire::MAGIC);
            bytes[4] = wire::VERSION;
        }
        sim.inject(1, from, &bytes);
    }
    let s = sim.nodes[1].ep.stats();
    assert!(
        s.not_tailchat > 0 && s.malformed + s.unknown_sender > 0,
        "{s:?}"
    );
    assert!(sim.received(1).is_empty());
    assert_eq!(sim.nodes[1].ep.peers().len(), 1);
}

#[test]
fn a_flood_from_random_identities_is_bounded() {
    // A table of 16 peers rather than the default 256: the flood fills it in two seconds
    // instead of half a minute, and each simulated second costs a sixteenth.
    let limits = Limits {
        max_peers: 16,
        ..Limits::default()
    };
    let mut sim = Sim::with_limits(14, 3, LinkParams::lan(), limits);
    sim.add(0, 1);
    assert!(sim.run_until_cond(Duration::from_secs(5), |s| s.nodes[1].ep.peers().len() == 1));
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    // Non-hello datagrams from unknown ids: no state, and only a trickle of answers.
    let sent_before = sim.sent;
    for i in 0..5_000u32 {
        let bytes = wire::encode(
            &Header {
                sender: PeerId(rng.random()),
                session: 1,
                packet: 0,
            },
            &[Frame::Ping],
        );
        let from = SocketAddr::from(([10, 50, (i >> 8) as u8, i as u8], 7654));
        sim.inject(1, from, &bytes);
    }
    assert_eq!(sim.nodes[1].ep.peers().len(), 1);
    assert!(
        sim.sent - sent_before <= 20,
        "answered {}",
        sim.sent - sent_before
    );
    // Hellos from random ids, 100 a second for a minute: each is answered by one cookie and
    // nothing else, nobody who does not answer is admitted, the table never grows past its
    // bound, and it never locks out a newcomer.
    let mut n = 0u32;
    for _ in 0..60 {
        let sent_before = sim.sent;
        for _ in 0..100 {
            n += 1;
            let bytes = sim::from_stranger(
                &mut rng,
                Frame::Hello(Hello {
                    token: [7; 16],
                    caps: 0,
                }),
            );
            let from = SocketAddr::from(([10, 60, (n >> 8) as u8, n as u8], 7654));
            sim.inject(1, from, &bytes);
        }
        assert_eq!(sim.sent - sent_before, 100, "one cookie each");
        sim.run_for(Duration::from_secs(1));
        assert!(sim.nodes[1].ep.peers().len() <= limits.max_peers);
    }
    assert_eq!(
        sim.nodes[1].ep.peers().len(),
        1,
        "a hello that is not followed by a proof admits nobody"
    );
    assert_eq!(sim.nodes[1].ep.footprint().probes, 0);
    // The real peer still gets through.
    sim.send(0, Recipients::Everyone, "still here");
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.received(1).len(), 1);
    // And a newcomer is admitted at once.
    sim.add(2, 1);
    let newcomer = sim.id(2);
    let ok = sim.run_until_cond(Duration::from_millis(10), |s| {
        s.nodes[1].ep.peers().iter().any(|p| p.id == newcomer)
    });
    assert!(ok, "a newcomer was locked out by the flood");
}

#[test]
fn another_version_is_reported_once_per_sender() {
    let mut sim = Sim::new(15, 1, LinkParams::lan());
    let mut bytes = wire::encode(
        &Header {
            sender: PeerId(1),
            session: 1,
            packet: 0,
        },
        &[Frame::Ping],
    );
    bytes[4] = 1; // an older tailchat
    let a: SocketAddr = "10.1.1.1:7654".parse().unwrap();
    let b: SocketAddr = "10.1.1.2:7654".parse().unwrap();
    for _ in 0..10 {
        sim.inject(0, a, &bytes);
        sim.inject(0, b, &bytes);
    }
    let reports: Vec<&Event> = sim.nodes[0]
        .events
        .iter()
        .map(|(_, e)| e)
        .filter(|e| matches!(e, Event::VersionMismatch { version: 1, .. }))
        .collect();
    assert_eq!(reports.len(), 2);
    assert_eq!(sim.nodes[0].ep.stats().bad_version, 20);
    // Each sender got one datagram of ours, so that it reports our version to its user.
    assert_eq!(sim.sent_outside, 2);
}

#[test]
fn own_datagrams_are_ignored() {
    let mut sim = Sim::new(16, 2, LinkParams::lan());
    sim.connect_star();
    let now = sim.now;
    sim.nodes[0]
        .ep
        .send_message(now, Recipients::Everyone, "echo")
        .unwrap();
    let t = sim.nodes[0].ep.poll_transmit().unwrap();
    sim.inject(0, sim.nodes[1].addr, &t.bytes);
    assert_eq!(sim.nodes[0].ep.stats().own, 1);
    assert!(sim.received(0).is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1400)) {
        let _ = wire::decode(&bytes);
    }

    #[test]
    fn decoding_arbitrary_frames_after_a_valid_prelude_never_panics(
        tail in proptest::collection::vec(any::<u8>(), 0..1400)
    ) {
        let mut bytes = wire::encode(&Header { sender: PeerId(1), session: 2, packet: 3 }, &[]);
        bytes.extend_from_slice(&tail);
        let _ = wire::decode(&bytes);
    }

}

/// Any frame this version knows, with arbitrary field values.
fn arb_frame() -> impl Strategy<Value = Frame> {
    let seq = 0u64..300;
    prop_oneof![
        (seq.clone(), any::<u64>(), any::<bool>(), ".{0,40}").prop_map(|(seq, m, direct, text)| {
            Frame::Chat(Chat {
                seq,
                msg: MessageId(m),
                direct,
                text,
                flags: 0,
                age_ms: 0,
            })
        }),
        (
            seq.clone(),
            0u64..4,
            0u16..5,
            2u16..6,
            proptest::collection::vec(any::<u8>(), 1..50)
        )
            .prop_map(
                |(seq, m, index, count, data)| Frame::Fragment(wire::Fragment {
                    seq,
                    msg: MessageId(m),
                    direct: false,
                    index,
                    count,
                    data,
                    flags: 0,
                    age_ms: 0,
                })
            ),
        (
            any::<u64>(),
            proptest::collection::vec((0u64..400, 0u64..5), 1..6)
        )
            .prop_map(|(delay_us, raw)| {
                // Build valid descending, disjoint ranges from arbitrary pieces.
                let mut ranges = Vec::new();
                let mut top = 1000u64;
                for (gap, len) in raw {
                    let last = top.saturating_sub(gap + 2);
                    let first = last.saturating_sub(len);
                    if last < 2 || first + 1 >= top {
                        break;
                    }
                    ranges.push(wire::AckRange { first, last });
                    top = first;
                }
                if ranges.is_empty() {
                    ranges.push(wire::AckRange { first: 0, last: 0 });
                }
                Frame::Ack(wire::Ack { delay_us, ranges })
            }),
        Just(Frame::Ping),
        Just(Frame::Leave),
        any::<u64>().prop_map(Frame::Session),
        (any::<[u8; 16]>(), any::<u64>())
            .prop_map(|(token, caps)| Frame::Hello(Hello { token, caps })),
        (any::<[u8; 16]>(), any::<[u8; 16]>())
            .prop_map(|(echo, cookie)| Frame::Cookie(wire::CookieReply { echo, cookie })),
        any::<u64>().prop_map(|caps| Frame::Announce(wire::Announce { caps })),
        (
            any::<[u8; 32]>(),
            any::<[u8; 16]>(),
            "[a-z]{1,8}",
            any::<u16>(),
            any::<[u8; 32]>(),
            any::<bool>()
        )
            .prop_map(|(key, echo, nick, port, half, reply)| {
                let signature = Signature([half, half].concat().try_into().unwrap());
                if reply {
                    Frame::ProofReply(wire::ProofReply {
                        key: PublicKey(key),
                        echo,
                        nick,
                        port,
                        caps: 0,
                        signature,
                    })
                } else {
                    Frame::Proof(wire::Proof {
                        key: PublicKey(key),
                        echo,
                        challenge: echo,
                        nick,
                        port,
                        caps: 0,
                        signature,
                    })
                }
            }),
        (
            0u64..300,
            any::<u64>(),
            "[a-z]{1,8}",
            any::<[u8; 4]>(),
            any::<u16>()
        )
            .prop_map(|(seq, id, nick, ip, port)| Frame::Peers(wire::PeerList {
                seq,
                peers: vec![wire::PeerEntry {
                    id: PeerId(id),
                    nick,
                    addrs: vec![SocketAddr::from((ip, port))],
                    heard_secs: 1,
                }],
            })),
        (seq, "[a-z]{1,10}").prop_map(|(seq, nick)| Frame::Nick(wire::NickChange { seq, nick })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_endpoint_survives_arbitrary_frames_from_a_known_peer(
        datagrams in proptest::collection::vec(
            (any::<u64>(), proptest::collection::vec(arb_frame(), 1..6)), 1..30)
    ) {
        let mut sim = Sim::new(17, 2, LinkParams::lan());
        sim.connect_star();
        let (sender, session) = capture_header(&mut sim);
        let from = sim.nodes[0].addr;
        for (packet, frames) in &datagrams {
            let bytes = wire::encode(&Header { sender, session, packet: *packet }, frames);
            if bytes.len() <= 1400 {
                sim.inject(1, from, &bytes);
            }
        }
        // Both sides keep running their timers without panicking, sending oversize datagrams
        // or falling into a retransmission storm (a forged packet number once caused one).
        let sent_before = sim.sent;
        sim.run_for(Duration::from_secs(30));
        prop_assert!(sim.largest_datagram <= wire::MAX_DATAGRAM);
        prop_assert!(sim.sent - sent_before < 300, "{} datagrams in 30 s", sim.sent - sent_before);
    }
}
