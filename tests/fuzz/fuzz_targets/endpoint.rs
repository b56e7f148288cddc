//! Any sequence of datagrams into a live endpoint that knows one peer: no panic, and every
//! datagram it sends stays within the size limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tailchat::proto::wire::{self, MAX_DATAGRAM};
use tailchat::proto::{Config, Endpoint, Identity, Limits, Recipients};

fuzz_target!(|data: &[u8]| {
    let start = Instant::now();
    let config = |secret: u8, nick: &str| Config {
        identity: Identity::from_secret([secret; 32]),
        nick: nick.into(),
        port: 7654,
        seed: u64::from(secret),
        discovery: false,
        session: 9,
        limits: Limits::default(),
    };
    let mut ep = Endpoint::new(config(1, "me"), start);
    // A real peer proves itself (hello, cookie, proof, proof reply), so the fuzzed datagrams
    // below reach a link, not just the handshake.
    let mut peer = Endpoint::new(config(2, "peer"), start);
    let me: SocketAddr = "10.0.0.1:7654".parse().unwrap();
    let from: SocketAddr = "10.0.0.2:7654".parse().unwrap();
    peer.add_address(start, me);
    for _ in 0..2 {
        while let Some(t) = peer.poll_transmit() {
            ep.handle_datagram(start, from, &t.bytes);
        }
        while let Some(t) = ep.poll_transmit() {
            peer.handle_datagram(start, me, &t.bytes);
        }
    }
    let header = wire::Header {
        sender: peer.peer_id(),
        session: 9,
        packet: 0,
    };
    let _ = ep.send_message(start, Recipients::Everyone, "hi");
    let mut now = start;
    // Split the input into datagrams at 0xff 0xff; each gets the known peer's header.
    for (i, chunk) in data.split(|&b| b == 0xff).enumerate() {
        now += Duration::from_millis(7);
        let mut bytes = wire::encode(
            &wire::Header {
                packet: i as u64,
                ..header
            },
            &[],
        );
        bytes.extend_from_slice(chunk);
        ep.handle_datagram(now, from, &bytes);
        ep.handle_timeout(now);
        while let Some(t) = ep.poll_transmit() {
            assert!(t.bytes.len() <= MAX_DATAGRAM);
        }
        while ep.poll_event().is_some() {}
    }
});
