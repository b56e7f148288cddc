//! Reliability of the protocol core under loss, duplication, reordering and partitions, in the
//! deterministic simulator. Every test prints its seed on failure; rerun with that seed.

mod sim;

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use sim::{LinkParams, Sim};
use std::collections::BTreeMap;
use std::time::Duration;
use tailchat::proto::{Event, MessageId, PeerId, PeerState, Recipients, SendError};

/// What each receiver must end up with: for each sender, the message ids in send order.
type Expected = BTreeMap<(usize, usize), Vec<(MessageId, bool, String)>>;

/// Three nodes, each sending a mix of group and direct messages at random moments; checks that
/// every recipient gets each message meant for it exactly once, in order, and that the sender
/// hears of every delivery.
fn exchange(seed: u64, params: LinkParams, messages_per_node: usize) {
    let n = 3;
    let mut sim = Sim::new(seed, n, LinkParams::lan());
    sim.connect_star();
    sim.set_all_links(params);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    let mut expected: Expected = BTreeMap::new();
    let mut sent_to: Vec<(usize, MessageId, usize)> = Vec::new();
    for k in 0..messages_per_node * n {
        let from = k % n;
        let text = format!("m{k} from {from} {}", "x".repeat(rng.random_range(0..40)));
        let direct_to = rng
            .random_bool(0.3)
            .then(|| (from + rng.random_range(1..n)) % n);
        let to = match direct_to {
            Some(d) => Recipients::Peer(sim.id(d)),
            None => Recipients::Everyone,
        };
        let id = sim.send(from, to, &text);
        for r in (0..n).filter(|&r| r != from) {
            if direct_to.is_none() || direct_to == Some(r) {
                expected.entry((r, from)).or_default().push((
                    id,
                    direct_to.is_some(),
                    text.clone(),
                ));
                sent_to.push((from, id, r));
            }
        }
        sim.run_for(Duration::from_millis(rng.random_range(0..30)));
    }
    let everything = |s: &Sim| {
        (0..n).all(|r| {
            let got = s.received(r).len();
            let want: usize = (0..n)
                .map(|f| expected.get(&(r, f)).map_or(0, Vec::len))
                .sum();
            got >= want
        })
    };
    let done = sim.run_until_cond(Duration::from_secs(600), everything);
    assert!(done, "seed {seed}: not everything arrived");
    sim.run_for(Duration::from_secs(30)); // let acks and any stray duplicates land
    for r in 0..n {
        let got = sim.received(r);
        for f in (0..n).filter(|&f| f != r) {
            let from_f: Vec<(MessageId, bool, String)> = got
                .iter()
                .filter(|(p, ..)| *p == sim.id(f))
                .map(|(_, id, d, t)| (*id, *d, t.clone()))
                .collect();
            let want = expected.get(&(r, f)).cloned().unwrap_or_default();
            assert_eq!(from_f, want, "seed {seed}: node {r} from node {f}");
        }
    }
    for (from, id, to) in sent_to {
        let to_id = sim.id(to);
        let delivered = sim.nodes[from]
            .events
            .iter()
            .filter(|(_, e)| matches!(e, Event::Delivered { to, id: i, .. } if *to == to_id && *i == id))
            .count();
        assert_eq!(delivered, 1, "seed {seed}: delivery of {id} to node {to}");
        assert_eq!(sim.nodes[from].ep.undelivered(), 0, "seed {seed}");
    }
}

fn seeds(count: u64) -> impl Iterator<Item = u64> {
    let base: u64 = std::env::var("SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    base..base + count
}

#[test]
fn exactly_once_in_order_without_loss() {
    for seed in seeds(20) {
        exchange(seed, LinkParams::lossy(0.0), 20);
    }
}

#[test]
fn exactly_once_in_order_at_10_percent_loss() {
    for seed in seeds(20) {
        exchange(seed, LinkParams::lossy(0.10), 20);
    }
}

#[test]
fn exactly_once_in_order_at_30_percent_loss() {
    for seed in seeds(20) {
        exchange(seed, LinkParams::lossy(0.30), 20);
    }
}

#[test]
fn exactly_once_in_order_at_50_percent_loss() {
    for seed in seeds(10) {
        exchange(seed, LinkParams::lossy(0.50), 15);
    }
}

#[test]
fn exactly_once_under_bursty_loss() {
    for seed in seeds(10) {
        let bursty = LinkParams {
            loss: 0.02,
            burst_enter: 0.05,
            burst_exit: 0.3,
            burst_loss: 0.9,
            ..LinkParams::lossy(0.0)
        };
        exchange(seed, bursty, 20);
    }
}

#[test]
fn a_64_kib_message_arrives_intact_under_30_percent_loss() {
    for seed in seeds(5) {
        let mut sim = Sim::new(seed, 2, LinkParams::lan());
        sim.connect_star();
        sim.set_all_links(LinkParams::lossy(0.30));
        let text: String = (0..64 * 1024)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        // A multi-byte character straddling a fragment boundary must survive too.
        let text = format!("é{}", &text[2..]);
        assert_eq!(text.len(), 64 * 1024);
        let id = sim.send(0, Recipients::Everyone, &text);
        let ok = sim.run_until_cond(Duration::from_secs(300), |s| !s.received(1).is_empty());
        assert!(ok, "seed {seed}: big message never arrived");
        sim.run_for(Duration::from_secs(10));
        let got = sim.received(1);
        assert_eq!(got.len(), 1, "seed {seed}");
        assert_eq!(got[0].1, id);
        assert!(got[0].3 == text, "seed {seed}: text differs");
        assert!(sim.saw(
            0,
            |e| matches!(e, Event::Delivered { id: i, .. } if *i == id)
        ));
    }
}

#[test]
fn a_message_over_64_kib_is_refused() {
    let mut sim = Sim::new(1, 2, LinkParams::lan());
    sim.connect_star();
    let now = sim.now;
    let text = "x".repeat(64 * 1024 + 1);
    let err = sim.nodes[0]
        .ep
        .send_message(now, Recipients::Everyone, &text)
        .unwrap_err();
    assert_eq!(err, SendError::TooLong { len: 64 * 1024 + 1 });
    assert!(err.to_string().contains("64 KiB"));
}

#[test]
fn a_30_second_partition_queues_then_delivers_everything_once() {
    for seed in seeds(5) {
        let mut sim = Sim::new(seed, 2, LinkParams::lan());
        sim.connect_star();
        sim.cut.insert((0, 1));
        sim.cut.insert((1, 0));
        let mut ids = Vec::new();
        for k in 0..10 {
            ids.push(sim.send(0, Recipients::Everyone, &format!("queued {k}")));
            sim.run_for(Duration::from_secs(3));
        }
        assert!(
            sim.saw(0, |e| matches!(e, Event::PeerUnreachable { .. })),
            "seed {seed}: unreachable not reported"
        );
        assert!(sim.saw(0, |e| matches!(e, Event::DeliveryDelayed { .. })));
        assert_eq!(sim.nodes[0].ep.peers()[0].state, PeerState::Unreachable);
        assert!(sim.received(1).is_empty());
        sim.cut.clear();
        let healed_at = sim.now;
        let ok = sim.run_until_cond(Duration::from_secs(30), |s| s.received(1).len() == 10);
        assert!(ok, "seed {seed}: queue not delivered after healing");
        let took = sim.now - healed_at;
        assert!(took <= Duration::from_secs(3), "seed {seed}: took {took:?}");
        sim.run_for(Duration::from_secs(10));
        let got: Vec<MessageId> = sim.received(1).iter().map(|m| m.1).collect();
        assert_eq!(got, ids, "seed {seed}");
        assert!(sim.saw(0, |e| matches!(e, Event::PeerReachable { .. })));
        assert_eq!(sim.nodes[0].ep.undelivered(), 0);
    }
}

#[test]
fn an_idle_peer_that_vanishes_is_reported_unreachable() {
    let mut sim = Sim::new(7, 2, LinkParams::lan());
    sim.connect_star();
    sim.run_for(Duration::from_secs(20));
    assert!(!sim.saw(0, |e| matches!(e, Event::PeerUnreachable { .. })));
    sim.cut.insert((1, 0));
    sim.cut.insert((0, 1));
    let cut_at = sim.now;
    let ok = sim.run_until_cond(Duration::from_secs(60), |s| {
        s.saw(0, |e| matches!(e, Event::PeerUnreachable { .. }))
    });
    assert!(ok);
    let took = sim.now - cut_at;
    // keepalive after 5 s of idleness, then 10 s without an ack
    assert!(took <= Duration::from_secs(16), "took {took:?}");
}

#[test]
fn nick_changes_are_ordered_with_messages() {
    let mut sim = Sim::new(3, 2, LinkParams::lossy(0.3));
    sim.connect_star();
    sim.send(0, Recipients::Everyone, "before");
    let now = sim.now;
    sim.nodes[0].ep.set_nick(now, "alicia").unwrap();
    sim.flush(0);
    sim.send(0, Recipients::Everyone, "after");
    sim.run_for(Duration::from_secs(30));
    let seen: Vec<String> = sim.nodes[1]
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Message { nick, text, .. } => Some(format!("{nick}:{text}")),
            Event::PeerRenamed { old, new, .. } => Some(format!("{old}->{new}")),
            _ => None,
        })
        .collect();
    assert_eq!(seen, vec!["n0:before", "n0->alicia", "alicia:after"]);
}

#[test]
fn leave_is_acknowledged_and_reported() {
    let mut sim = Sim::new(4, 3, LinkParams::lossy(0.3));
    sim.connect_star();
    let now = sim.now;
    sim.nodes[0].ep.leave(now);
    sim.flush(0);
    let ok = sim.run_until_cond(Duration::from_secs(10), |s| s.nodes[0].ep.leave_complete());
    assert!(ok);
    for i in 1..3 {
        assert!(sim.saw(i, |e| matches!(e, Event::PeerLeft { .. })));
        let p = sim.nodes[i].ep.peers();
        let left = p.iter().find(|p| p.id == sim.id(0)).unwrap();
        assert_eq!(left.state, PeerState::Left);
    }
    let now = sim.now;
    assert_eq!(
        sim.nodes[0].ep.send_message(now, Recipients::Everyone, "x"),
        Err(SendError::Leaving)
    );
}

#[test]
fn a_direct_message_reaches_only_its_recipient() {
    let mut sim = Sim::new(5, 3, LinkParams::lan());
    sim.connect_star();
    let to = sim.id(2);
    sim.send(0, Recipients::Peer(to), "psst");
    sim.run_for(Duration::from_secs(2));
    assert_eq!(sim.received(2).len(), 1);
    assert!(sim.received(2)[0].2, "marked direct");
    assert!(sim.received(1).is_empty());
}

#[test]
fn an_unanswered_address_is_reported_and_found_once_it_answers() {
    let mut sim = Sim::new(6, 2, LinkParams::lan());
    sim.cut.insert((0, 1));
    sim.add(0, 1);
    let ok = sim.run_until_cond(Duration::from_secs(30), |s| {
        s.saw(0, |e| matches!(e, Event::AddressUnanswered { .. }))
    });
    assert!(ok);
    sim.cut.clear();
    let ok = sim.run_until_cond(Duration::from_secs(40), |s| {
        s.saw(0, |e| matches!(e, Event::PeerJoined { .. }))
            && s.saw(1, |e| matches!(e, Event::PeerJoined { .. }))
    });
    assert!(ok, "the address was not re-probed");
}

#[test]
fn one_peer_is_one_peer_whatever_its_address() {
    let mut sim = Sim::new(8, 2, LinkParams::lan());
    sim.connect_star();
    sim.send(0, Recipients::Everyone, "one");
    sim.run_for(Duration::from_secs(1));
    // Node 0 moves to a new address (say, from Wi-Fi to cable); it is still the same peer.
    sim.nodes[0].addr = "10.0.1.1:7654".parse().unwrap();
    sim.send(0, Recipients::Everyone, "two");
    sim.run_for(Duration::from_secs(2));
    let peers = sim.nodes[1].ep.peers();
    assert_eq!(peers.len(), 1);
    assert_eq!(
        peers[0].addrs[0], sim.nodes[0].addr,
        "replies go to the newest address"
    );
    assert_eq!(sim.received(1).len(), 2);
    assert_eq!(sim.nodes[0].ep.undelivered(), 0);
}

#[test]
fn peer_ids_differ_and_nicks_may_repeat() {
    let mut sim = Sim::new(9, 3, LinkParams::lan());
    let now = sim.now;
    sim.nodes[1].ep.set_nick(now, "bob").unwrap();
    sim.nodes[2].ep.set_nick(now, "bob").unwrap();
    sim.connect_star();
    let bobs: Vec<PeerId> = sim.nodes[0].ep.peers().iter().map(|p| p.id).collect();
    assert_eq!(bobs.len(), 2);
    assert_ne!(bobs[0], bobs[1]);
}

#[test]
fn a_dead_peer_costs_one_datagram_per_timeout() {
    let mut sim = Sim::new(10, 2, LinkParams::lan());
    sim.connect_star();
    sim.cut.insert((0, 1));
    sim.cut.insert((1, 0));
    for k in 0..200 {
        sim.send(0, Recipients::Everyone, &format!("{k} {}", "y".repeat(900)));
    }
    let ok = sim.run_until_cond(Duration::from_secs(30), |s| {
        s.saw(0, |e| matches!(e, Event::PeerUnreachable { .. }))
    });
    assert!(ok);
    sim.run_for(Duration::from_secs(5));
    let before = sim.sent_by[0];
    sim.run_for(Duration::from_secs(60));
    let per_minute = sim.sent_by[0] - before;
    // MAX_RTO is 2 s: about 30 probes a minute, not the whole queue again and again.
    assert!(
        per_minute <= 32,
        "{per_minute} datagrams a minute to a dead peer"
    );
    sim.cut.clear();
    let ok = sim.run_until_cond(Duration::from_secs(30), |s| s.received(1).len() == 200);
    assert!(ok, "queue not delivered after the peer came back");
}

#[test]
fn one_way_loss_does_not_make_the_state_flap() {
    let mut sim = Sim::new(20, 2, LinkParams::lan());
    sim.connect_star();
    sim.cut.insert((0, 1)); // node 0 can hear node 1, but nothing gets through to it
    sim.send(0, Recipients::Everyone, "lost in one direction");
    sim.run_for(Duration::from_secs(120));
    let count = |f: fn(&Event) -> bool| sim.nodes[0].events.iter().filter(|(_, e)| f(e)).count();
    assert_eq!(count(|e| matches!(e, Event::PeerUnreachable { .. })), 1);
    assert_eq!(count(|e| matches!(e, Event::PeerReachable { .. })), 0);
    sim.cut.clear();
    let ok = sim.run_until_cond(Duration::from_secs(10), |s| {
        s.received(1).len() == 1 && s.saw(0, |e| matches!(e, Event::PeerReachable { .. }))
    });
    assert!(
        ok,
        "not delivered, or not reported reachable, after healing"
    );
}

#[test]
fn leaving_right_after_a_near_full_datagram_stays_within_the_size_limit() {
    for len in 950..1000 {
        let mut sim = Sim::new(21, 2, LinkParams::lan());
        sim.connect_star();
        sim.cut.insert((1, 0)); // no acks: the chat and the leave share a datagram
        let now = sim.now;
        sim.nodes[0]
            .ep
            .send_message(now, Recipients::Everyone, &"z".repeat(len))
            .unwrap();
        sim.nodes[0].ep.leave(now);
        sim.flush(0); // asserts every datagram is ≤ 1200 bytes
        sim.run_for(Duration::from_secs(2));
    }
}

#[test]
fn a_late_hello_from_an_old_session_does_not_cut_the_peer_off() {
    use tailchat::proto::wire::{self, Frame};
    let mut sim = Sim::new(22, 2, LinkParams::lan());
    sim.connect_star();
    // Node 1 says hello to node 0 again; a proof reply signed by node 0's key, but from
    // another session (12345, smaller), answers it late.
    let now = sim.now;
    let to0 = sim.nodes[0].addr;
    sim.nodes[1].ep.add_address(now, to0);
    let hello = std::iter::from_fn(|| sim.nodes[1].ep.poll_transmit())
        .find(|t| t.to == to0)
        .expect("a hello");
    let Some(Frame::Hello(h)) = wire::decode(&hello.bytes).unwrap().frames.first().cloned() else {
        panic!("a hello");
    };
    let to = (sim.id(1), sim.session(1));
    let stale = sim::signed_proof(&sim.nodes[0].identity, 12345, to, h.token, "n0", true);
    let from = sim.nodes[0].addr;
    sim.inject(1, from, &stale);
    assert_eq!(sim.nodes[1].ep.stats().stale_session, 1);
    sim.send(0, Recipients::Everyone, "after the stale hello");
    let ok = sim.run_until_cond(Duration::from_secs(5), |s| s.received(1).len() == 1);
    assert!(ok, "node 1 never heard node 0 again");
}

#[test]
fn the_handshake_gives_a_first_round_trip_time() {
    let mut sim = Sim::new(23, 2, LinkParams::lan());
    sim.add(1, 0); // node 1 says hello, node 0 answers
    assert!(sim.run_until_cond(Duration::from_secs(1), |s| !s.nodes[1]
        .ep
        .peers()
        .is_empty()));
    let rtt = sim.nodes[1].ep.peers()[0]
        .rtt
        .expect("an RTT from the hello and its reply");
    // 0.5 ms each way plus up to 0.1 ms of jitter each way.
    assert!(
        rtt >= Duration::from_micros(1000) && rtt <= Duration::from_micros(1200),
        "{rtt:?}"
    );
}

/// A peer that quits while its proof's reply is on the way (the other side has admitted it
/// already) still says goodbye: it takes the reply and sends a leave, so the other side says
/// it left at once instead of listing it until it stops answering (15 s).
#[test]
fn quitting_before_the_handshake_is_answered_still_says_goodbye() {
    for seed in 0..5 {
        let mut sim = Sim::new(seed, 2, LinkParams::lan());
        sim.add(1, 0);
        let joined = |s: &Sim| s.saw(0, |e| matches!(e, Event::PeerJoined { .. }));
        assert!(sim.run_until_cond(Duration::from_secs(2), joined));
        // Node 0 admitted node 1 and sent its reply; node 1 has not read it yet.
        assert!(!sim.saw(1, |e| matches!(e, Event::PeerJoined { .. })));
        let now = sim.now;
        sim.nodes[1].ep.leave(now);
        // The reply is awaited: a program that exited now would leave node 0 listing it.
        assert!(!sim.nodes[1].ep.leave_complete(), "seed {seed}");
        sim.flush(1);
        let left = |s: &Sim| s.saw(0, |e| matches!(e, Event::PeerLeft { .. }));
        assert!(
            sim.run_until_cond(Duration::from_secs(2), left),
            "seed {seed}: no goodbye"
        );
        assert!(sim.run_until_cond(Duration::from_secs(2), |s| s.nodes[1].ep.leave_complete()));
    }
}

/// The same, with the reply lost: the goodbye waits for it only as long as a reply could take,
/// then the peer leaves all the same (the other side finds out when it stops answering).
#[test]
fn quitting_while_a_lost_reply_is_awaited_waits_only_for_its_time() {
    let mut sim = Sim::new(1, 2, LinkParams::lan());
    sim.add(1, 0);
    let joined = |s: &Sim| s.saw(0, |e| matches!(e, Event::PeerJoined { .. }));
    assert!(sim.run_until_cond(Duration::from_secs(2), joined));
    let now = sim.now;
    sim.nodes[1].ep.leave(now);
    sim.drop_in_flight();
    assert!(!sim.nodes[1].ep.leave_complete());
    let done = |s: &Sim| s.nodes[1].ep.leave_complete();
    assert!(sim.run_until_cond(Duration::from_secs(3), done));
    assert!(!sim.saw(0, |e| matches!(e, Event::PeerLeft { .. })));
}

/// A peer we added leaves, and starts again at its address: we look for it there slowly (it
/// may be gone for a while), but an `/add` of it again says hello at once.
#[test]
fn adding_again_a_peer_that_left_says_hello_at_once() {
    for seed in 0..5 {
        let mut sim = Sim::new(seed, 2, LinkParams::lan());
        sim.add(1, 0);
        let online = |s: &Sim| {
            let id = s.id(0);
            s.nodes[1]
                .ep
                .peers()
                .iter()
                .any(|p| p.id == id && p.state == PeerState::Online)
        };
        assert!(sim.run_until_cond(Duration::from_secs(2), online));
        let now = sim.now;
        sim.nodes[0].ep.leave(now);
        sim.flush(0);
        let left = |s: &Sim| s.saw(1, |e| matches!(e, Event::PeerLeft { .. }));
        assert!(sim.run_until_cond(Duration::from_secs(2), left));
        sim.run_for(Duration::from_secs(1));
        sim.restart_node(0);
        sim.add(1, 0);
        let back = |s: &Sim| {
            s.nodes[1]
                .ep
                .peers()
                .iter()
                .any(|p| p.state == PeerState::Online)
        };
        assert!(
            sim.run_until_cond(Duration::from_secs(1), back),
            "seed {seed}: the second /add was not answered within 1 s"
        );
    }
}
