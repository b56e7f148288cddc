//! Any sequence of datagrams into a live endpoint that knows one peer: no panic, and every
//! datagram it sends stays within the size limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tailchat::proto::wire::{self, Frame, Header, Hello, MAX_DATAGRAM};
use tailchat::proto::{Config, Endpoint, Limits, PeerId, Recipients};

fuzz_target!(|data: &[u8]| {
    let start = Instant::now();
    let mut ep = Endpoint::new(
        Config { peer_id: PeerId(1), nick: "me".into(), port: 7654, seed: 1, discovery: false, session: 1, limits: Limits::default() },
        start,
    );
    let from: SocketAddr = "10.0.0.2:7654".parse().unwrap();
    let header = Header { sender: PeerId(2), session: 9, packet: 0 };
    let hello = Frame::Hello(Hello { nick: "peer".into(), port: 7654, caps: 0 });
    ep.handle_datagram(start, from, &wire::encode(&header, &[hello]));
    let _ = ep.send_message(start, Recipients::Everyone, "hi");
    let mut now = start;
    // Split the input into datagrams at 0xff 0xff; each gets the known peer's header.
    for (i, chunk) in data.split(|&b| b == 0xff).enumerate() {
        now += Duration::from_millis(7);
        let mut bytes = wire::encode(&Header { packet: i as u64, ..header }, &[]);
        bytes.extend_from_slice(chunk);
        ep.handle_datagram(now, from, &bytes);
        ep.handle_timeout(now);
        while let Some(t) = ep.poll_transmit() {
            assert!(t.bytes.len() <= MAX_DATAGRAM);
        }
        while ep.poll_event().is_some() {}
    }
});
