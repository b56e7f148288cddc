//! A link against another link, over a wire the tests control datagram by datagram: acks,
//! loss detection and retransmission, ordering, reassembly, liveness and restarts.

use super::send::Style;
use super::*;
use crate::proto::ids::PeerId;
use crate::proto::rtt::MAX_ACK_DELAY;
use crate::proto::{DELAYED_AFTER, FRAGMENT_BYTES, UNREACHABLE_AFTER};

const MS: Duration = Duration::from_millis(1);
const QUEUE: usize = 1000;

/// Two links to each other, both online.
fn pair(now: Instant) -> (Link, Link) {
    let mut a = Link::new(now, QUEUE);
    let mut b = Link::new(now, QUEUE);
    a.restart(now, false);
    b.restart(now, false);
    (a, b)
}

/// Every datagram `link` has ready at `now`.
fn datagrams(link: &mut Link, now: Instant) -> Vec<Vec<u8>> {
    let header = Header {
        sender: PeerId(1),
        session: 1,
        packet: 0,
    };
    std::iter::from_fn(|| link.poll_datagram(now, header, 1)).collect()
}

/// Hands datagrams to `link` at `now`; returns what it reported.
fn receive(link: &mut Link, now: Instant, datagrams: &[Vec<u8>]) -> Vec<LinkEvent> {
    let mut out = Vec::new();
    for bytes in datagrams {
        let d = wire::decode(bytes).expect("a link sends valid datagrams");
        assert!(bytes.len() <= MAX_DATAGRAM);
        link.on_datagram(now, d.header.packet, d.frames, &mut out);
    }
    out
}

/// Runs `link`'s timers at `now` if due; returns what it reported.
fn fire(link: &mut Link, now: Instant) -> Vec<LinkEvent> {
    let mut out = Vec::new();
    if link.next_timeout().is_some_and(|t| t <= now) {
        link.on_timeout(now, &mut out);
    }
    out
}

fn texts(events: &[LinkEvent]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| match e {
            LinkEvent::Message { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

fn delivered(events: &[LinkEvent]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            LinkEvent::Delivered(id, _) => Some(id.0),
            _ => None,
        })
        .collect()
}

/// Lets `from` send to `to` and `to` acknowledge, over a perfect wire, running both sides'
/// timers, until `from` has nothing left to deliver; returns what each reported (from's, to's).
fn settle(from: &mut Link, to: &mut Link, now: &mut Instant) -> (Vec<LinkEvent>, Vec<LinkEvent>) {
    let (mut from_events, mut to_events) = (Vec::new(), Vec::new());
    for _ in 0..1000 {
        let d = datagrams(from, *now);
        to_events.extend(receive(to, *now, &d));
        let back = datagrams(to, *now);
        from_events.extend(receive(from, *now, &back));
        if d.is_empty() && back.is_empty() {
            if from.undelivered() == 0 && !from.leave_outstanding() {
                return (from_events, to_events);
            }
            let next = [from.next_timeout(), to.next_timeout()]
                .into_iter()
                .flatten()
                .min()
                .expect("work left, so a timer");
            *now = next.max(*now);
            from_events.extend(fire(from, *now));
            to_events.extend(fire(to, *now));
        }
    }
    panic!("the links did not settle");
}

#[test]
fn a_message_is_delivered_once_and_acknowledged() {
    let mut now = Instant::now();
    let (mut a, mut b) = pair(now);
    a.queue_message(now, MessageId(1), Style::default(), "hello")
        .unwrap();
    let d = datagrams(&mut a, now);
    assert_eq!(d.len(), 1);
    assert_eq!(texts(&receive(&mut b, now, &d)), vec!["hello"]);
    assert!(datagrams(&mut b, now).is_empty(), "the ack waits a little");
    assert_eq!(b.next_timeout(), Some(now + MAX_ACK_DELAY));
    now += MAX_ACK_DELAY;
    let ack = datagrams(&mut b, now);
    assert_eq!(ack.len(), 1);
    assert_eq!(delivered(&receive(&mut a, now, &ack)), vec![1]);
    assert_eq!(a.undelivered(), 0);
    assert!(a.srtt().is_some());
    // An ack is not acknowledged.
    assert!(datagrams(&mut a, now + MAX_ACK_DELAY).is_empty());
}

#[test]
fn a_lost_datagram_is_sent_again_when_the_timeout_fires() {
    let mut now = Instant::now();
    let (mut a, mut b) = pair(now);
    a.queue_message(now, MessageId(1), Style::default(), "lost once")
        .unwrap();
    assert_eq!(datagrams(&mut a, now).len(), 1); // and dropped
    let rto = a.next_timeout().unwrap();
    assert!(datagrams(&mut a, rto - MS).is_empty());
    now = rto;
    assert!(fire(&mut a, now).is_empty());
    assert_eq!(a.counters().timeouts, 1);
    assert_eq!(a.counters().retransmitted, 1);
    let (a_events, b_events) = settle(&mut a, &mut b, &mut now);
    assert_eq!(texts(&b_events), vec!["lost once"]);
    assert_eq!(delivered(&a_events), vec![1]);
}

#[test]
fn later_acks_declare_a_packet_lost_before_any_timeout() {
    let mut now = Instant::now();
    let (mut a, mut b) = pair(now);
    let mut sent = Vec::new();
    for i in 1..=4 {
        a.queue_message(now, MessageId(i), Style::default(), &format!("m{i}"))
            .unwrap();
        sent.extend(datagrams(&mut a, now));
    }
    assert_eq!(sent.len(), 4, "one datagram each, sent as queued");
    // The first is lost; the others arrive out of order and are acked at once.
    let after_the_first = sent.get(1..).unwrap_or_default();
    let events = receive(&mut b, now, after_the_first);
    assert!(texts(&events).is_empty(), "held behind the gap");
    now += MS;
    let acks = datagrams(&mut b, now);
    assert!(!acks.is_empty());
    let events = receive(&mut a, now, &acks);
    assert!(
        delivered(&events).is_empty(),
        "nothing before the gap is acknowledged"
    );
    assert_eq!(
        a.counters().retransmitted,
        1,
        "three later packets acked: lost"
    );
    assert_eq!(a.counters().timeouts, 0);
    let resent = datagrams(&mut a, now);
    assert_eq!(resent.len(), 1);
    assert_eq!(
        texts(&receive(&mut b, now, &resent)),
        vec!["m1", "m2", "m3", "m4"]
    );
    let (a_events, _) = settle(&mut a, &mut b, &mut now);
    assert_eq!(delivered(&a_events), vec![1, 2, 3, 4]);
}

#[test]
fn reordered_and_duplicated_datagrams_give_each_message_once_in_order() {
    let now = Instant::now();
    let (mut a, mut b) = pair(now);
    let mut sent = Vec::new();
    for i in 1..=3 {
        a.queue_message(now, MessageId(i), Style::default(), &format!("m{i}"))
            .unwrap();
        sent.extend(datagrams(&mut a, now));
    }
    let wire: Vec<Vec<u8>> = [2, 0, 2, 1, 0, 1]
        .iter()
        .filter_map(|&i| sent.get(i).cloned())
        .collect();
    let events = receive(&mut b, now, &wire);
    assert_eq!(texts(&events), vec!["m1", "m2", "m3"]);
    assert_eq!(b.counters().duplicates, 3);
    // Duplicates are re-acked at once: our ack was probably lost.
    assert_eq!(b.next_timeout(), Some(now));
}

#[test]
fn a_long_message_is_sent_as_fragments_and_reassembled() {
    let mut now = Instant::now();
    let (mut a, mut b) = pair(now);
    let text: String = (0..5 * FRAGMENT_BYTES)
        .map(|i| if i % 2 == 0 { 'é' } else { 'x' })
        .collect();
    a.queue_message(
        now,
        MessageId(9),
        Style {
            direct: true,
            flags: 0,
        },
        &text,
    )
    .unwrap();
    let d = datagrams(&mut a, now);
    assert!(
        d.len() >= 7,
        "{} datagrams for {} bytes",
        d.len(),
        text.len()
    );
    // Delivered out of order, it is still whole once.
    let reversed: Vec<Vec<u8>> = d.iter().rev().cloned().collect();
    let events = receive(&mut b, now, &reversed);
    assert_eq!(
        events,
        vec![LinkEvent::Message {
            msg: MessageId(9),
            style: Style {
                direct: true,
                flags: 0
            },
            age: Duration::ZERO,
            text
        }]
    );
    let (a_events, _) = settle(&mut a, &mut b, &mut now);
    assert_eq!(delivered(&a_events), vec![9]);
    assert_eq!(b.counters().bad_fragments, 0);
}

#[test]
fn silence_makes_a_peer_unreachable_and_its_ack_brings_it_back() {
    let mut now = Instant::now();
    let (mut a, mut b) = pair(now);
    a.queue_message(now, MessageId(1), Style::default(), "anyone?")
        .unwrap();
    let mut events = Vec::new();
    let mut sent = 0;
    let until = now + UNREACHABLE_AFTER;
    while now < until {
        sent += datagrams(&mut a, now).len(); // all lost
        now = a.next_timeout().unwrap().min(until);
        events.extend(fire(&mut a, now));
    }
    assert!(events.contains(&LinkEvent::Delayed(MessageId(1))));
    assert_eq!(events.last(), Some(&LinkEvent::Unreachable));
    assert_eq!(
        a.state(),
        LinkState::Unreachable {
            resent_on_heard: false
        }
    );
    assert!(sent < 30, "timeouts back off: {sent} datagrams");
    // While unreachable, one packet at a time.
    a.queue_message(now, MessageId(2), Style::default(), "more")
        .unwrap();
    let d = datagrams(&mut a, now);
    assert!(d.is_empty(), "a packet is already in flight");
    now = a.next_timeout().unwrap();
    fire(&mut a, now);
    let d = datagrams(&mut a, now);
    assert_eq!(d.len(), 1);
    assert_eq!(texts(&receive(&mut b, now, &d)), vec!["anyone?", "more"]);
    let (a_events, _) = settle(&mut a, &mut b, &mut now);
    assert!(a_events.contains(&LinkEvent::Reachable));
    assert_eq!(delivered(&a_events), vec![1, 2]);
    assert_eq!(a.state(), LinkState::Online);
}

#[test]
fn a_leave_stops_the_timers_and_keeps_the_queue_for_a_return() {
    let mut now = Instant::now();
    let (mut a, mut b) = pair(now);
    b.queue_leave();
    let d = datagrams(&mut b, now);
    assert_eq!(receive(&mut a, now, &d), vec![LinkEvent::Left]);
    assert_eq!(a.state(), LinkState::Left);
    a.queue_message(now, MessageId(1), Style::default(), "for later")
        .unwrap();
    // The leave is acknowledged, and then nothing runs.
    now += MAX_ACK_DELAY;
    let ack = datagrams(&mut a, now);
    assert_eq!(ack.len(), 1);
    receive(&mut b, now, &ack);
    assert!(!b.leave_outstanding());
    assert_eq!(a.next_timeout(), None);
    assert!(datagrams(&mut a, now + Duration::from_secs(60)).is_empty());
    // It comes back a minute later: the message goes out, and is not late (the user was told
    // it waits; "not yet delivered" is for a peer that is there and does not take it).
    now += Duration::from_secs(60);
    a.restart(now, false);
    let (a_events, b_events) = settle(&mut a, &mut b, &mut now);
    assert_eq!(texts(&b_events), vec!["for later"]);
    assert_eq!(a_events, vec![LinkEvent::Delivered(MessageId(1), false)]);
}

#[test]
fn a_new_link_is_offline_and_sends_nothing_until_restarted() {
    let now = Instant::now();
    let mut a = Link::new(now, QUEUE);
    assert_eq!(a.state(), LinkState::Offline);
    a.requeue_message(
        now,
        Duration::ZERO,
        MessageId(1),
        Style::default(),
        "restored",
    );
    assert_eq!(a.next_timeout(), None);
    assert!(datagrams(&mut a, now).is_empty());
    a.restart(now, false);
    assert_eq!(datagrams(&mut a, now).len(), 1);
}

#[test]
fn an_idle_link_pings_to_keep_its_rtt_and_liveness() {
    let mut now = Instant::now();
    let (mut a, mut b) = pair(now);
    assert_eq!(a.next_timeout(), Some(now + KEEPALIVE_INTERVAL));
    now += KEEPALIVE_INTERVAL;
    fire(&mut a, now);
    let ping = datagrams(&mut a, now);
    assert_eq!(ping.len(), 1);
    let frames = wire::decode(ping.first().unwrap()).unwrap().frames;
    assert!(frames.contains(&Frame::Ping));
    receive(&mut b, now, &ping);
    now += MS;
    fire(&mut b, now + MAX_ACK_DELAY);
    let ack = datagrams(&mut b, now + MAX_ACK_DELAY);
    receive(&mut a, now + MAX_ACK_DELAY, &ack);
    assert!(a.srtt().is_some());
}

#[test]
fn a_peer_restart_resends_unacknowledged_messages_in_a_new_stream() {
    let mut now = Instant::now();
    let (mut a, mut b) = pair(now);
    a.queue_message(now, MessageId(1), Style::default(), "one")
        .unwrap();
    let (_, b_events) = settle(&mut a, &mut b, &mut now);
    assert_eq!(texts(&b_events), vec!["one"]);
    a.queue_message(now, MessageId(2), Style::default(), "two")
        .unwrap();
    let _lost = datagrams(&mut a, now);
    // b restarts: a new link (same watermark, as storage would give it), a new session.
    let mut b2 = Link::new(now, QUEUE);
    b2.set_delivered_through(b.delivered_through());
    b2.restart(now, true);
    a.restart(now, true);
    let (a_events, b_events) = settle(&mut a, &mut b2, &mut now);
    assert_eq!(texts(&b_events), vec!["two"]);
    assert_eq!(delivered(&a_events), vec![2]);
}

#[test]
fn a_delayed_message_is_reported_once_and_its_delivery_marked_late() {
    let mut now = Instant::now();
    let (mut a, mut b) = pair(now);
    a.queue_message(now, MessageId(1), Style::default(), "slow")
        .unwrap();
    let mut events = Vec::new();
    let until = now + DELAYED_AFTER;
    while now < until {
        let _lost = datagrams(&mut a, now);
        now = a.next_timeout().unwrap().min(until);
        events.extend(fire(&mut a, now));
    }
    assert_eq!(events, vec![LinkEvent::Delayed(MessageId(1))]);
    let (a_events, _) = settle(&mut a, &mut b, &mut now);
    assert!(a_events.contains(&LinkEvent::Delivered(MessageId(1), true)));
}
