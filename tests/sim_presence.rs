//! Away and back, the age a message carries, ephemeral peers and forgetting, in the
//! deterministic simulator (virtual clock): under loss, across a partition and across restarts.

mod sim;

use sim::{LinkParams, Sim};
use std::time::Duration;
use tailchat::proto::{Event, ForgetReason, PeerState, Queued, Recipients};

/// Every presence change node `i` saw from `from`, in order: `Some(reason)` away, `None` back.
fn presence_seen(sim: &Sim, i: usize, from: usize) -> Vec<Option<String>> {
    let id = sim.id(from);
    sim.nodes[i]
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::PeerAway { peer, away, .. } if *peer == id => Some(away.clone()),
            _ => None,
        })
        .collect()
}

/// The age of the message with text `text` as node `i` received it.
fn age_of(sim: &Sim, i: usize, text: &str) -> Option<Duration> {
    sim.nodes[i].events.iter().find_map(|(_, e)| match e {
        Event::Message { text: t, age, .. } if t == text => Some(*age),
        _ => None,
    })
}

#[test]
fn away_and_back_arrive_once_and_in_order_under_heavy_loss() {
    for seed in 0..8 {
        let mut sim = Sim::new(seed, 2, LinkParams::lan());
        sim.connect_star();
        sim.set_all_links(LinkParams::lossy(0.5));
        let now = sim.now;
        sim.nodes[0].ep.set_away(now, Some("lunch")).unwrap();
        sim.flush(0);
        sim.send(0, Recipients::Everyone, "after going away");
        let now = sim.now;
        sim.nodes[0].ep.set_away(now, None).unwrap();
        sim.flush(0);
        let done = sim.run_until_cond(Duration::from_secs(300), |s| {
            presence_seen(s, 1, 0).len() >= 2
        });
        assert!(done, "seed {seed}: presence did not arrive");
        sim.run_for(Duration::from_secs(30));
        assert_eq!(
            presence_seen(&sim, 1, 0),
            [Some("lunch".to_owned()), None],
            "seed {seed}"
        );
        // In stream order: the message written while away sits between the two.
        let order: Vec<&str> = sim.nodes[1]
            .events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::PeerAway { away: Some(_), .. } => Some("away"),
                Event::PeerAway { away: None, .. } => Some("back"),
                Event::Message { .. } => Some("message"),
                _ => None,
            })
            .collect();
        assert_eq!(order, ["away", "message", "back"], "seed {seed}");
        let bob_view = sim.nodes[1].ep.peer(sim.id(0)).unwrap();
        assert_eq!(bob_view.away, None, "seed {seed}");
    }
}

#[test]
fn a_peer_that_joins_or_restarts_learns_we_are_away() {
    let mut sim = Sim::new(3, 2, LinkParams::lan());
    sim.connect_star();
    let now = sim.now;
    sim.nodes[0].ep.set_away(now, Some("")).unwrap();
    sim.flush(0);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(presence_seen(&sim, 1, 0), [Some(String::new())]);
    // Bob restarts (a new identity here): he meets alice afresh and hears she is away.
    sim.restart_node(1);
    sim.add(1, 0);
    let met = sim.run_until_cond(Duration::from_secs(30), |s| {
        presence_seen(s, 1, 0) == [Some(String::new())]
    });
    assert!(met, "the restarted peer was not told");
    let info = sim.nodes[1].ep.peer(sim.id(0)).unwrap();
    assert_eq!(info.away.as_deref(), Some(""));
    // Setting what is already set sends nothing new.
    let sent_before = sim.sent_by[0];
    let now = sim.now;
    sim.nodes[0].ep.set_away(now, Some("")).unwrap();
    sim.flush(0);
    assert_eq!(sim.sent_by[0], sent_before);
    assert!(sim.nodes[0]
        .ep
        .set_away(now, Some(&"x".repeat(257)))
        .is_err());
}

#[test]
fn a_message_that_waited_for_its_recipient_arrives_with_its_age() {
    let mut sim = Sim::new(5, 2, LinkParams::lan());
    sim.connect_star();
    sim.send(0, Recipients::Everyone, "live");
    sim.run_for(Duration::from_secs(1));
    let live = age_of(&sim, 1, "live").expect("live message");
    assert!(live < Duration::from_millis(50), "live age {live:?}");
    // Bob is cut off for five minutes; a message written at the start of it waits.
    sim.cut.insert((0, 1));
    sim.cut.insert((1, 0));
    sim.send(0, Recipients::Everyone, "written while you were gone");
    sim.run_for(Duration::from_secs(300));
    sim.cut.clear();
    let arrived = sim.run_until_cond(Duration::from_secs(120), |s| {
        age_of(s, 1, "written while you were gone").is_some()
    });
    assert!(arrived);
    let age = age_of(&sim, 1, "written while you were gone").unwrap();
    assert!(
        age >= Duration::from_secs(300) && age < Duration::from_secs(420),
        "age {age:?}"
    );
}

#[test]
fn a_message_restored_from_storage_keeps_the_time_it_was_written() {
    let mut sim = Sim::new(9, 2, LinkParams::lan());
    sim.connect_star();
    let bob = sim.id(1);
    let next = tailchat::proto::MessageId(50);
    let mut waiting = Queued::message(next, false, "from yesterday");
    waiting.written_ago = Duration::from_secs(20 * 3600);
    waiting.action = true;
    let restored = tailchat::proto::RestoredPeer {
        id: bob,
        key: None,
        heard_ago: None,
        nick: "n1".into(),
        addrs: vec![sim.nodes[1].addr],
        manual: true,
        wanted: false,
        delivered_through: tailchat::proto::MessageId(0),
        outbox: vec![waiting],
    };
    sim.restart_node_as(0, tailchat::proto::MessageId(51), vec![restored]);
    let arrived = sim.run_until_cond(Duration::from_secs(60), |s| {
        age_of(s, 1, "from yesterday").is_some()
    });
    assert!(arrived);
    let age = age_of(&sim, 1, "from yesterday").unwrap();
    assert!(age >= Duration::from_secs(20 * 3600), "age {age:?}");
    let action = sim.nodes[1].events.iter().any(
        |(_, e)| matches!(e, Event::Message { text, action: true, .. } if text == "from yesterday"),
    );
    assert!(action, "the action flag survives the restart");
}

#[test]
fn an_ephemeral_peer_is_forgotten_once_it_leaves_and_nothing_is_kept_for_it() {
    let mut sim = Sim::new(11, 2, LinkParams::lossy(0.2));
    sim.nodes[1].ep.set_ephemeral(true);
    sim.connect_star();
    let bot = sim.id(1);
    assert!(sim.nodes[0].ep.peer(bot).unwrap().ephemeral);
    let now = sim.now;
    sim.nodes[1].ep.leave(now);
    sim.flush(1);
    let left = sim.run_until_cond(Duration::from_secs(60), |s| {
        s.saw(0, |e| matches!(e, Event::PeerLeft { .. }))
    });
    assert!(left);
    // Not listed from the moment it left...
    assert!(sim.nodes[0].ep.peer(bot).is_none());
    assert!(sim.nodes[0].ep.peers().is_empty());
    // ...but kept a while to acknowledge its leave again when an ack is lost.
    let acked = sim.run_until_cond(Duration::from_secs(20), |s| s.nodes[1].ep.leave_complete());
    assert!(acked, "its leave was not acknowledged");
    let forgotten = sim.run_until_cond(Duration::from_secs(40), |s| {
        s.saw(0, |e| {
            matches!(
                e,
                Event::PeerForgotten {
                    reason: ForgetReason::Ephemeral,
                    ..
                }
            )
        })
    });
    assert!(forgotten, "the ephemeral peer was not forgotten");
    // A group message now goes to nobody: nothing is queued for the bot.
    let now = sim.now;
    let sent = sim.nodes[0]
        .ep
        .send_message(now, Recipients::Everyone, "anyone?")
        .unwrap();
    assert!(sent.recipients.is_empty());
    assert_eq!(sim.nodes[0].ep.undelivered(), 0);
}

#[test]
fn a_peer_that_leaves_without_saying_it_is_ephemeral_is_kept_until_forgotten() {
    let mut sim = Sim::new(12, 2, LinkParams::lan());
    sim.connect_star();
    let bob = sim.id(1);
    let now = sim.now;
    sim.nodes[1].ep.leave(now);
    sim.flush(1);
    sim.run_for(Duration::from_secs(5));
    assert_eq!(
        sim.nodes[0].ep.peer(bob).map(|p| p.state),
        Some(PeerState::Left)
    );
    sim.send(0, Recipients::Everyone, "one");
    sim.send(0, Recipients::Peer(bob), "two");
    assert_eq!(sim.nodes[0].ep.undelivered(), 2);
    let now = sim.now;
    assert!(sim.nodes[0].ep.forget(now, bob));
    sim.flush(0);
    let dropped = sim.nodes[0].events.iter().find_map(|(_, e)| match e {
        Event::PeerForgotten {
            dropped,
            reason: ForgetReason::Asked,
            ..
        } => Some(dropped.len()),
        _ => None,
    });
    assert_eq!(dropped, Some(2));
    assert!(sim.nodes[0].ep.peer(bob).is_none());
    assert_eq!(sim.nodes[0].ep.undelivered(), 0);
    assert!(!sim.nodes[0].ep.forget(now, bob), "forgotten already");
}

#[test]
fn scripts_that_left_hold_no_place_among_the_peers_of_their_address() {
    // Node 0 takes at most 2 peers from one IP address; nodes 1..=3 are scripts run one after
    // another on one host (one address, other ports), each leaving before the next starts.
    let limits = tailchat::proto::Limits {
        max_peers_per_ip: 2,
        ..tailchat::proto::Limits::default()
    };
    let mut sim = Sim::with_limits(11, 4, LinkParams::lossy(0.2), limits);
    for i in 1..=3 {
        sim.nodes[i].addr = std::net::SocketAddr::from(([10, 0, 0, 99], 9000 + i as u16));
        sim.nodes[i].ep.set_ephemeral(true);
    }
    for i in 1..=3 {
        let bot = sim.id(i);
        sim.add(i, 0);
        let hub = sim.id(0);
        let joined = sim.run_until_cond(Duration::from_secs(20), |s| {
            s.nodes[0]
                .ep
                .peer(bot)
                .is_some_and(|p| p.state == PeerState::Online)
                && s.nodes[i]
                    .ep
                    .peer(hub)
                    .is_some_and(|p| p.state == PeerState::Online)
        });
        // The third used to wait until the first two were forgotten (30 s after leaving).
        assert!(joined, "script {i} was not let in");
        let now = sim.now;
        sim.nodes[i].ep.leave(now);
        sim.flush(i);
        let left = sim.run_until_cond(Duration::from_secs(20), |s| {
            s.saw(
                0,
                |e| matches!(e, Event::PeerLeft { peer, .. } if *peer == bot),
            )
        });
        assert!(left, "script {i} did not leave");
    }
}
