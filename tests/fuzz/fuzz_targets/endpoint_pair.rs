//! A stateful target: endpoint A and a real peer B (the handshake done honestly, so links
//! exist) on a virtual clock, with the fuzzer as the network and as strangers. Each step, one
//! of: a stranger's datagram to A from one of a few addresses; a datagram with B's header and
//! made-up frames; delivering, dropping, corrupting or replaying what A and B sent each other;
//! time passing (up to an hour at once); A or B sending, renaming, going away, leaving.
//!
//! Checked: no panic; every datagram A sends is within `MAX_DATAGRAM`; A's footprint stays
//! within its bounds; after `handle_timeout(now)`, A's next timeout is not still due (else the
//! driver would spin); one stranger's datagram makes at most a few datagrams back.
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tailchat::proto::wire::{self, MAX_DATAGRAM};
use tailchat::proto::{Config, Endpoint, Identity, Limits, Recipients, MAX_PEERS};

const A: &str = "10.0.0.1:7654";
const B: &str = "10.0.0.2:7654";
const ADDRS: [&str; 6] = [
    "10.0.0.2:7654",
    "10.0.0.2:9999",
    "10.0.0.3:7654",
    "[fd7a::3]:7654",
    "10.0.0.1:7654",
    "255.255.255.255:7654",
];
const MAX_STEPS: usize = 400;
const MAX_IN_FLIGHT: usize = 256;

fn config(secret: u8, nick: &str) -> Config {
    Config {
        identity: Identity::from_secret([secret; 32]),
        nick: nick.into(),
        port: 7654,
        seed: u64::from(secret),
        discovery: true,
        session: 9,
        limits: Limits::default(),
    }
}

struct World {
    now: Instant,
    a: Endpoint,
    b: Endpoint,
    a_addr: SocketAddr,
    b_addr: SocketAddr,
    to_a: VecDeque<Vec<u8>>,
    to_b: VecDeque<Vec<u8>>,
    seen_by_a: VecDeque<Vec<u8>>,
}

impl World {
    /// Drains both endpoints: A's datagrams to B's address go to B's queue (others are
    /// dropped, after the size check), B's to A's queue. Returns how many A sent.
    fn drain(&mut self) -> usize {
        let mut sent = 0;
        while let Some(t) = self.a.poll_transmit() {
            assert!(
                t.bytes.len() <= MAX_DATAGRAM,
                "A sent {} bytes",
                t.bytes.len()
            );
            sent += 1;
            if t.to == self.b_addr {
                push(&mut self.to_b, t.bytes);
            }
        }
        while self.a.poll_announce().is_some() {}
        while let Some(t) = self.b.poll_transmit() {
            if t.to == self.a_addr {
                push(&mut self.to_a, t.bytes);
            }
        }
        while self.b.poll_announce().is_some() {}
        while self.a.poll_event().is_some() {}
        while self.b.poll_event().is_some() {}
        sent
    }

    fn a_gets(&mut self, from: SocketAddr, bytes: &[u8]) -> usize {
        self.a.handle_datagram(self.now, from, bytes);
        if from == self.b_addr {
            push(&mut self.seen_by_a, bytes.to_vec());
        }
        self.drain()
    }

    fn tick(&mut self, by: Duration) {
        self.now += by;
        for _ in 0..1000 {
            self.a.handle_timeout(self.now);
            self.b.handle_timeout(self.now);
            self.drain();
            if self.a.poll_timeout().is_none_or(|t| t > self.now) {
                return;
            }
        }
        panic!("A's timeout stays due after 1000 rounds of handle_timeout at one instant");
    }

    fn check(&self) {
        let f = self.a.footprint();
        assert!(f.peers <= MAX_PEERS, "{f:?}");
        assert!(
            f.probes <= 10_000 && f.hints <= 10_000 && f.dormant <= 10_000,
            "{f:?}"
        );
        assert!(f.forgotten <= 10_000 && f.exchange_later <= 10_000, "{f:?}");
    }
}

fn push(q: &mut VecDeque<Vec<u8>>, bytes: Vec<u8>) {
    if q.len() >= MAX_IN_FLIGHT {
        q.pop_front();
    }
    q.push_back(bytes);
}

fn text(u: &mut Unstructured) -> Result<String> {
    let n = u.int_in_range(0..=3000usize)?;
    let bytes = u.bytes(n.min(u.len()))?;
    let mut s = String::from_utf8_lossy(bytes).into_owned();
    if u.ratio(1, 16)? {
        // Now and then a long one, to be fragmented.
        s = s.repeat(64).chars().take(70_000).collect();
    }
    Ok(s)
}

fn step(w: &mut World, u: &mut Unstructured) -> Result<()> {
    match u.int_in_range(0..=13u8)? {
        0 | 1 => {
            // A stranger (or someone spoofing an address) sends anything.
            let from: SocketAddr = ADDRS[u.choose_index(ADDRS.len())?].parse().unwrap();
            let n = u.int_in_range(0..=1500usize)?;
            let bytes = u.bytes(n.min(u.len()))?.to_vec();
            let sent = w.a_gets(from, &bytes);
            assert!(
                sent <= 8,
                "one datagram of {} bytes brought {sent} back",
                bytes.len()
            );
        }
        2 | 3 => {
            // B's header (sender, session, any packet number), then made-up frames.
            let header = wire::Header {
                sender: w.b.peer_id(),
                session: if u.ratio(7, 8)? {
                    w.b.session()
                } else {
                    u.arbitrary()?
                },
                packet: u.arbitrary()?,
            };
            let mut bytes = wire::encode(&header, &[]);
            let n = u.int_in_range(0..=1200usize)?;
            bytes.extend_from_slice(u.bytes(n.min(u.len()))?);
            let from = if u.ratio(7, 8)? {
                w.b_addr
            } else {
                ADDRS[2].parse().unwrap()
            };
            w.a_gets(from, &bytes);
        }
        4 | 5 => {
            // B's next datagram reaches A, perhaps with one byte changed.
            if let Some(mut bytes) = w.to_a.pop_front() {
                if u.ratio(1, 4)? && !bytes.is_empty() {
                    let i = u.choose_index(bytes.len())?;
                    bytes[i] ^= u.arbitrary::<u8>()?.max(1);
                }
                let b = w.b_addr;
                w.a_gets(b, &bytes);
            }
        }
        6 => {
            // A's next datagram reaches B.
            if let Some(bytes) = w.to_b.pop_front() {
                w.b.handle_datagram(w.now, w.a_addr, &bytes);
                w.drain();
            }
        }
        7 => {
            // Replay something A already had from B.
            if !w.seen_by_a.is_empty() {
                let i = u.choose_index(w.seen_by_a.len())?;
                let bytes = w.seen_by_a[i].clone();
                let b = w.b_addr;
                w.a_gets(b, &bytes);
            }
        }
        8 => {
            // Lose what is in flight.
            if u.arbitrary()? {
                w.to_a.pop_front();
            } else {
                w.to_b.pop_front();
            }
        }
        9 => {
            let ms = if u.ratio(1, 8)? {
                u.int_in_range(0..=3_600_000u64)?
            } else {
                u.int_in_range(0..=5_000u64)?
            };
            w.tick(Duration::from_millis(ms));
        }
        10 => {
            let t = text(u)?;
            let to = if u.arbitrary()? {
                Recipients::Everyone
            } else {
                Recipients::Peer(w.b.peer_id())
            };
            let _ = w.a.send_message_as(w.now, to, &t, u.arbitrary()?);
            w.drain();
        }
        11 => {
            let t = text(u)?;
            let to = if u.arbitrary()? {
                Recipients::Everyone
            } else {
                Recipients::Peer(w.a.peer_id())
            };
            let _ = w.b.send_message_as(w.now, to, &t, u.arbitrary()?);
            let n = u.int_in_range(0..=1100usize)?;
            let data = u.bytes(n.min(u.len()))?.to_vec();
            let _ = w.b.send_app_data(w.now, w.a.peer_id(), &data);
            w.drain();
        }
        12 => {
            let t = text(u)?;
            match u.int_in_range(0..=5u8)? {
                0 => drop(w.b.set_nick(w.now, &t)),
                1 => drop(w.b.set_away(w.now, Some(&t))),
                2 => drop(w.b.set_away(w.now, None)),
                3 => drop(w.a.set_nick(w.now, &t)),
                4 => drop(w.a.set_away(w.now, if u.arbitrary()? { Some(&t) } else { None })),
                _ => {
                    let addr: SocketAddr = ADDRS[u.choose_index(ADDRS.len())?].parse().unwrap();
                    w.a.add_address(w.now, addr);
                }
            }
            w.drain();
        }
        _ => match u.int_in_range(0..=3u8)? {
            0 => {
                w.b.leave(w.now);
                w.drain();
            }
            1 => {
                let id = w.b.peer_id();
                w.a.forget(w.now, id);
                w.drain();
            }
            2 => {
                // B restarts: a new endpoint with the same key and a later session.
                let mut c = config(2, "peer");
                c.session = w.b.session() + 1;
                w.b = Endpoint::new(c, w.now);
                w.b.add_address(w.now, w.a_addr);
                w.drain();
            }
            _ => {
                let _ = w.a.peers();
                let _ = w.a.stats();
                let _ = w.a.fullest_answering_queue();
                let _ = w.a.undelivered();
            }
        },
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let start = Instant::now();
    let a_addr: SocketAddr = A.parse().unwrap();
    let b_addr: SocketAddr = B.parse().unwrap();
    let mut w = World {
        now: start,
        a: Endpoint::new(config(1, "me"), start),
        b: Endpoint::new(config(2, "peer"), start),
        a_addr,
        b_addr,
        to_a: VecDeque::new(),
        to_b: VecDeque::new(),
        seen_by_a: VecDeque::new(),
    };
    // B finds A (hello, cookie, proof, proof reply), delivered honestly.
    w.b.add_address(start, a_addr);
    w.drain();
    for _ in 0..4 {
        while let Some(bytes) = w.to_a.pop_front() {
            w.a_gets(b_addr, &bytes);
        }
        while let Some(bytes) = w.to_b.pop_front() {
            w.b.handle_datagram(start, a_addr, &bytes);
            w.drain();
        }
    }
    let mut u = Unstructured::new(data);
    for _ in 0..MAX_STEPS {
        if u.is_empty() || step(&mut w, &mut u).is_err() {
            break;
        }
        w.check();
    }
});
