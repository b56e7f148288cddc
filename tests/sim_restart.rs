//! Restarts with a remembered identity, in the simulator: what storage gives back
//! ([`Endpoint::restore`]) plus the protocol's session handling must deliver every message
//! exactly once, whichever side restarts, and nothing meant for an earlier run may leak into
//! the next.

mod sim;

use sim::{LinkParams, Sim};
use std::time::Duration;
use tailchat::proto::Queued;
use tailchat::proto::{
    Event, Limits, MessageId, PeerState, Recipients, RestoredPeer, UndeliveredReason,
    FRAGMENT_BYTES,
};

/// Node `i` as another node's storage remembers it: added by hand, nothing waiting for it,
/// messages from it shown up to `shown`.
fn remembered(sim: &Sim, i: usize, shown: MessageId) -> RestoredPeer {
    RestoredPeer {
        id: sim.id(i),
        key: Some(sim.nodes[i].identity.public_key()),
        heard_ago: None,
        nick: format!("n{i}"),
        addrs: vec![sim.nodes[i].addr],
        manual: true,
        wanted: false,
        delivered_through: shown,
        outbox: vec![],
    }
}

fn texts(sim: &Sim, i: usize) -> Vec<String> {
    sim.received(i).into_iter().map(|m| m.3).collect()
}

#[test]
fn a_receiver_that_restarts_sees_each_message_once() {
    for seed in 1..=5 {
        let mut sim = Sim::new(seed, 2, LinkParams::lossy(0.1));
        sim.connect_star(); // node 1 added node 0
        sim.cut.insert((1, 0)); // node 1's acks are lost: node 0 will resend what node 1 has
        for k in 0..10 {
            sim.send(0, Recipients::Everyone, &format!("m{k}"));
        }
        assert!(sim.run_until_cond(Duration::from_secs(30), |s| s.received(1).len() == 10));
        let before = texts(&sim, 1);
        let last_seen = sim.received(1).last().unwrap().1;
        // Node 1 crashes and comes back; its journal says it has shown up to `last_seen`.
        let node0 = remembered(&sim, 0, last_seen);
        sim.restart_node_as(1, MessageId(1), vec![node0]);
        sim.nodes[1].events.clear();
        assert_eq!(sim.nodes[1].ep.peers()[0].state, PeerState::Offline);
        sim.cut.clear();
        for k in 10..15 {
            sim.send(0, Recipients::Everyone, &format!("m{k}"));
        }
        let ok = sim.run_until_cond(Duration::from_secs(60), |s| {
            s.received(1).len() >= 5 && s.nodes[0].ep.undelivered() == 0
        });
        assert!(ok, "seed {seed}: not delivered after the restart");
        sim.run_for(Duration::from_secs(10));
        let mut all = before;
        all.extend(texts(&sim, 1));
        let want: Vec<String> = (0..15).map(|k| format!("m{k}")).collect();
        assert_eq!(
            all, want,
            "seed {seed}: every message once, in order, across the restart"
        );
    }
}

#[test]
fn a_sender_that_restarts_with_a_queued_message_still_delivers_it() {
    let mut sim = Sim::new(2, 2, LinkParams::lan());
    sim.connect_star();
    sim.send(0, Recipients::Everyone, "before");
    sim.run_for(Duration::from_secs(1));
    sim.cut.insert((0, 1));
    sim.cut.insert((1, 0));
    let queued = sim.send(0, Recipients::Everyone, "queued while away");
    sim.run_for(Duration::from_secs(1));
    // Node 0 crashes; its journal has "queued while away" undelivered to node 1.
    let node1 = RestoredPeer {
        id: sim.id(1),
        key: None, // storage without keys: the PeerId binds it by hash
        heard_ago: None,
        nick: "n1".into(),
        addrs: vec![sim.nodes[1].addr],
        manual: false,
        wanted: false,
        delivered_through: MessageId(0),
        outbox: vec![Queued::message(queued, false, "queued while away")],
    };
    sim.restart_node_as(0, MessageId(queued.0 + 1), vec![node1]);
    sim.cut.clear();
    let after = sim.send(0, Recipients::Everyone, "after the restart");
    assert!(after.0 > queued.0, "message ids carry on after a restart");
    let ok = sim.run_until_cond(Duration::from_secs(30), |s| s.received(1).len() == 3);
    assert!(ok, "got {:?}", texts(&sim, 1));
    sim.run_for(Duration::from_secs(10));
    assert_eq!(
        texts(&sim, 1),
        vec!["before", "queued while away", "after the restart"]
    );
    assert!(sim.saw(
        0,
        |e| matches!(e, Event::Delivered { id, .. } if *id == queued)
    ));
}

#[test]
fn datagrams_meant_for_an_earlier_run_are_dropped() {
    let mut sim = Sim::new(3, 2, LinkParams::lan());
    sim.connect_star();
    // Capture what node 0 sends to node 1's current run.
    let now = sim.now;
    sim.nodes[0]
        .ep
        .send_message(now, Recipients::Everyone, "for the old run")
        .unwrap();
    let mut old = Vec::new();
    while let Some(t) = sim.nodes[0].ep.poll_transmit() {
        old.push(t.bytes);
    }
    // Node 1 restarts (same identity, nothing shown yet) before any of it arrives.
    let node0 = remembered(&sim, 0, MessageId(0));
    sim.restart_node_as(1, MessageId(1), vec![node0]);
    sim.run_for(Duration::from_secs(2)); // they meet again
    let from = sim.nodes[0].addr;
    let stale_before = sim.nodes[1].ep.stats().stale_session;
    for bytes in &old {
        sim.inject(1, from, bytes);
    }
    assert!(sim.nodes[1].ep.stats().stale_session > stale_before);
    sim.run_for(Duration::from_secs(5));
    // The message itself still arrives once, resent in node 0's new stream to node 1.
    assert_eq!(texts(&sim, 1), vec!["for the old run"]);
}

#[test]
fn a_group_message_waits_for_a_peer_that_left() {
    let mut sim = Sim::new(4, 3, LinkParams::lan());
    sim.connect_star();
    let now = sim.now;
    sim.nodes[2].ep.leave(now);
    sim.flush(2);
    sim.run_for(Duration::from_secs(2));
    let sent = sim.send(0, Recipients::Everyone, "while you were out");
    let _ = sent;
    sim.run_for(Duration::from_secs(2));
    assert_eq!(texts(&sim, 1), vec!["while you were out"]);
    assert_eq!(
        sim.nodes[0].ep.undelivered(),
        1,
        "queued for the peer that left"
    );
    // It comes back (same identity): the message is delivered then.
    let node0 = remembered(&sim, 0, MessageId(0));
    sim.restart_node_as(2, MessageId(1), vec![node0]);
    let ok = sim.run_until_cond(Duration::from_secs(60), |s| {
        texts(s, 2) == vec!["while you were out"] && s.nodes[0].ep.undelivered() == 0
    });
    assert!(ok, "got {:?}", texts(&sim, 2));
}

#[test]
fn a_message_acknowledged_behind_a_gap_is_not_lost_when_the_receiver_restarts() {
    let mut sim = Sim::new(5, 2, LinkParams::lan());
    sim.connect_star();
    // m1's datagram is lost; m2's arrives and is acknowledged, but waits behind the gap.
    let now = sim.now;
    let m1 = sim.nodes[0]
        .ep
        .send_message(now, Recipients::Everyone, "m1")
        .unwrap()
        .id;
    while sim.nodes[0].ep.poll_transmit().is_some() {}
    let m2 = sim.send(0, Recipients::Everyone, "m2");
    sim.cut.insert((0, 1)); // and nothing more gets through for now
    sim.run_for(Duration::from_millis(50));
    assert!(texts(&sim, 1).is_empty(), "m2 is held behind the gap");
    assert!(
        !sim.saw(0, |e| matches!(e, Event::Delivered { id, .. } if *id == m2)),
        "m2 must not count as delivered while m1, before it, is not"
    );
    // The receiver restarts before the gap is filled: its reorder buffer is gone.
    let node0 = remembered(&sim, 0, MessageId(0));
    sim.restart_node_as(1, MessageId(1), vec![node0]);
    sim.cut.clear();
    let ok = sim.run_until_cond(Duration::from_secs(30), |s| texts(s, 1).len() == 2);
    assert!(ok, "got {:?}", texts(&sim, 1));
    assert_eq!(texts(&sim, 1), vec!["m1", "m2"]);
    sim.run_for(Duration::from_secs(5));
    for id in [m1, m2] {
        assert!(sim.saw(
            0,
            |e| matches!(e, Event::Delivered { id: i, .. } if *i == id)
        ));
    }
}

#[test]
fn a_peer_that_restarts_before_it_is_missed_is_reported_as_restarted_once() {
    let mut sim = Sim::new(8, 2, LinkParams::lan());
    sim.connect_star(); // node 1 added node 0
    assert!(sim.run_until_cond(Duration::from_secs(5), |s| {
        s.saw(0, |e| matches!(e, Event::PeerJoined { .. }))
    }));
    sim.send(0, Recipients::Everyone, "before");
    assert!(sim.run_until_cond(Duration::from_secs(5), |s| texts(s, 1).len() == 1));
    sim.nodes[0].events.clear();
    // Node 1 dies and is back at once, remembering node 0: node 0 never finds it gone.
    let node0 = remembered(&sim, 0, sim.received(1)[0].1);
    sim.restart_node_as(1, MessageId(1), vec![node0]);
    sim.nodes[1].events.clear();
    let restarted = |s: &Sim| {
        s.nodes[0]
            .events
            .iter()
            .filter(|(_, e)| matches!(e, Event::PeerRestarted { peer, .. } if *peer == s.id(1)))
            .count()
    };
    assert!(sim.run_until_cond(Duration::from_secs(5), |s| restarted(s) == 1));
    sim.send(0, Recipients::Everyone, "after");
    assert!(sim.run_until_cond(Duration::from_secs(5), |s| texts(s, 1) == ["after"]));
    sim.run_for(Duration::from_secs(20));
    assert_eq!(restarted(&sim), 1, "once per new run");
    let others: Vec<_> = sim.nodes[0]
        .events
        .iter()
        .filter(|(_, e)| {
            matches!(
                e,
                Event::PeerJoined { .. }
                    | Event::PeerLeft { .. }
                    | Event::PeerUnreachable { .. }
                    | Event::PeerReachable { .. }
            )
        })
        .collect();
    assert!(others.is_empty(), "a restart only: {others:?}");
}

#[test]
fn a_late_hello_from_an_earlier_run_does_not_reset_the_current_one() {
    let mut sim = Sim::new(6, 2, LinkParams::lan());
    sim.connect_star();
    sim.send(0, Recipients::Everyone, "one");
    sim.run_for(Duration::from_secs(1));
    // A proof from node 0's previous run (a smaller session, signed with its key, with a cookie
    // node 1 gave that run) arrives late at node 1.
    let from = sim.nodes[0].addr;
    let cookie = sim.cookie_for(1, from, sim.id(0), 5);
    let to = (sim.id(1), sim.session(1));
    let stale = sim::signed_proof(&sim.nodes[0].identity, 5, to, cookie, "n0", false);
    let stale_before = sim.nodes[1].ep.stats().stale_session;
    sim.inject(1, from, &stale);
    assert_eq!(sim.nodes[1].ep.stats().stale_session, stale_before + 1);
    for k in 0..20 {
        sim.send(0, Recipients::Everyone, &format!("after {k}"));
        sim.send(1, Recipients::Everyone, &format!("back {k}"));
    }
    let ok = sim.run_until_cond(Duration::from_secs(30), |s| {
        texts(s, 1).len() == 21 && texts(s, 0).len() == 20
    });
    assert!(
        ok,
        "node 1 got {:?}, node 0 got {:?}",
        texts(&sim, 1),
        texts(&sim, 0)
    );
}

#[test]
fn a_restored_outbox_is_queued_whole_even_past_the_bound() {
    // A queue bound of 16 items rather than the default 8192: the same property, passed with
    // a few messages instead of thousands of fragments.
    let limits = Limits {
        max_queued_items: 16,
        ..Limits::default()
    };
    let mut sim = Sim::with_limits(7, 2, LinkParams::lan(), limits);
    sim.connect_star();
    // More waiting pieces than a live queue accepts (an earlier run accepted them over time):
    // six messages of three fragments each, and a small one.
    let big = "x".repeat(3 * FRAGMENT_BYTES);
    let mut outbox: Vec<Queued> = (1..=6)
        .map(|i| Queued::message(MessageId(i), false, &big))
        .collect();
    outbox.push(Queued::message(MessageId(7), false, "small"));
    let mut node1 = remembered(&sim, 1, MessageId(0));
    node1.outbox = outbox;
    sim.restart_node_as(0, MessageId(8), vec![node1]);
    assert_eq!(
        sim.nodes[0].ep.undelivered(),
        7,
        "no gap: every message queued"
    );
    // The queue is past its bound: a live message is refused for that peer.
    let now = sim.now;
    let to = Recipients::Peer(sim.id(1));
    let live = sim.nodes[0].ep.send_message(now, to, "one more").unwrap();
    assert_eq!(
        live.refused,
        vec![sim.id(1)],
        "the bound applies to live messages"
    );
    let ok = sim.run_until_cond(Duration::from_secs(600), |s| {
        s.nodes[0].ep.undelivered() == 0
    });
    assert!(ok);
    let shown: Vec<u64> = sim.received(1).iter().map(|m| m.1 .0).collect();
    assert_eq!(shown, (1..=7).collect::<Vec<u64>>());
}

#[test]
fn restoring_more_peers_than_the_table_holds_loses_nothing() {
    let mut sim = Sim::new(8, 2, LinkParams::lan());
    sim.connect_star();
    // 300 remembered peers (identities seen over time); the last one has a message waiting,
    // and node 1 is one of them, with messages already shown.
    let mut peers: Vec<RestoredPeer> = (0..300u64)
        .map(|i| RestoredPeer {
            id: tailchat::proto::PeerId(1000 + i),
            key: None,
            heard_ago: None,
            nick: format!("p{i}"),
            addrs: vec![std::net::SocketAddr::from((
                [10, 9, (i / 250) as u8, (i % 250) as u8 + 1],
                7654,
            ))],
            manual: false,
            wanted: false,
            delivered_through: MessageId(0),
            outbox: vec![],
        })
        .collect();
    peers[299].outbox = vec![Queued::message(MessageId(1), true, "for the last one")];
    let mut node1 = remembered(&sim, 1, MessageId(5));
    node1.manual = false;
    node1.outbox = vec![Queued::message(MessageId(2), false, "for node 1")];
    peers.push(node1);
    sim.restart_node_as(0, MessageId(3), peers);
    assert_eq!(
        sim.nodes[0].ep.undelivered(),
        2,
        "both waiting messages kept"
    );
    let ok = sim.run_until_cond(Duration::from_secs(30), |s| !s.received(1).is_empty());
    assert!(ok, "node 1 did not get its message");
    assert_eq!(texts(&sim, 1), vec!["for node 1"]);
}

/// Node `i` as another node's storage remembers a peer it only learned of (not added by hand)
/// with nothing waiting for it: restored offline, and not contacted.
fn learned(sim: &Sim, i: usize) -> RestoredPeer {
    RestoredPeer {
        manual: false,
        wanted: false,
        ..remembered(sim, i, MessageId(0))
    }
}

#[test]
fn a_restored_peer_nothing_waits_for_is_contacted_only_when_wanted() {
    let mut sim = Sim::new(7, 2, LinkParams::lan());
    sim.connect_star();
    // Both crash; neither added the other by hand and no message waits.
    let (n0, n1) = (learned(&sim, 0), learned(&sim, 1));
    sim.restart_node_as(0, MessageId(1), vec![n1.clone()]);
    sim.restart_node_as(1, MessageId(1), vec![n0]);
    sim.run_for(Duration::from_secs(20));
    assert_eq!(sim.nodes[0].ep.peers()[0].state, PeerState::Offline);
    // Node 0 restarts again, and this time the application wants node 1 (what is left
    // between them is an unfinished file transfer, which the application keeps).
    let wanted = RestoredPeer { wanted: true, ..n1 };
    sim.restart_node_as(0, MessageId(1), vec![wanted]);
    let ok = sim.run_until_cond(Duration::from_secs(5), |s| {
        s.nodes[0].ep.peers()[0].state == PeerState::Online
            && s.nodes[1].ep.peers()[0].state == PeerState::Online
    });
    assert!(ok, "a wanted peer is contacted at start");
}

/// The same identity running twice (a data directory copied and started beside its original):
/// node 2 takes over node 1's identity with a later session, node 0 takes it, and node 1's
/// run is refused from then on; `node1_goes_on`: node 1 keeps running (else it is cut off right
/// after its first refused proof, as a run that ended with a datagram still on its way).
/// Returns whether node 0 said an earlier run is still running, within 30 s, and whether node 1
/// (that earlier run) was told that node 0 no longer hears it.
fn earlier_run_told(node1_goes_on: bool) -> (bool, bool) {
    let mut sim = Sim::new(5, 3, LinkParams::lan());
    sim.add(1, 0);
    let online = |s: &Sim| {
        s.nodes[0]
            .ep
            .peers()
            .iter()
            .any(|p| p.id == s.id(1) && p.state == PeerState::Online)
    };
    assert!(sim.run_until_cond(Duration::from_secs(2), online));
    let config = tailchat::proto::Config {
        identity: sim.nodes[1].identity.clone(),
        nick: "n1".into(),
        port: 7654,
        seed: 99,
        discovery: false,
        session: sim.nodes[1].ep.session() + 1,
        limits: Limits::default(),
    };
    let now = sim.now;
    sim.nodes[2].identity = sim.nodes[1].identity.clone();
    sim.nodes[2].ep = tailchat::proto::Endpoint::new(config, now);
    sim.add(2, 0);
    let refused = |s: &Sim| s.nodes[0].ep.stats().stale_session > 0;
    assert!(sim.run_until_cond(Duration::from_secs(30), refused));
    // The earlier run writes to node 0, which takes only the later run's messages (their ids
    // are shared): never delivered, and said so once that run is told.
    let lost = node1_goes_on.then(|| sim.send(1, Recipients::Everyone, "from the earlier run"));
    if !node1_goes_on {
        sim.cut.insert((1, 0));
        sim.cut.insert((0, 1));
    }
    sim.run_for(Duration::from_secs(30));
    let told = sim.nodes[0]
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::EarlierRunRefused { addr, .. } if *addr == sim.nodes[1].addr))
        .count();
    assert!(told <= 1, "said {told} times");
    let superseded = sim.nodes[1]
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::Superseded { by, addr } if *by == sim.id(0) && *addr == sim.nodes[0].addr))
        .count();
    assert!(superseded <= 1, "node 1 told {superseded} times");
    if let Some(lost) = lost {
        let to0 = sim.id(0);
        let said = sim.nodes[1].events.iter().any(|(_, e)| {
            matches!(e, Event::Undelivered { to, id, reason: UndeliveredReason::Superseded }
                if *to == to0 && *id == lost)
        });
        let delivered = sim.nodes[1].events.iter().any(
            |(_, e)| matches!(e, Event::Delivered { to, id, .. } if *to == to0 && *id == lost),
        );
        assert!(said && !delivered, "said {said}, delivered {delivered}");
    }
    (told == 1, superseded == 1)
}

/// One refused proof of an earlier run is not enough to say it runs: it may be a datagram of
/// a run that has ended, delayed past its restart. A run that goes on proving itself is.
#[test]
fn an_earlier_run_is_told_only_when_it_proves_itself_again() {
    assert_eq!(
        earlier_run_told(false),
        (false, false),
        "told of a run that had ended"
    );
    assert_eq!(
        earlier_run_told(true),
        (true, true),
        "a run still going: both sides are told"
    );
}
