//! A forger for the namespace flood test (`FLOOD=RATE scripts/netns-mesh.sh`): protocol-2
//! datagrams built with the library's own wire encoding, from made-up identities, at a high
//! rate, while real hosts mesh. Never run it outside network namespaces of your own.
//!
//! - forged Hellos, Cookies, Proofs (bad signatures) and peer lists (Session + Peers, from
//!   identities nobody knows) to every target, and Announces to the broadcast address, each
//!   from a new made-up PeerId, round-robin over the source addresses;
//! - `--answer K` fakes that do answer: each says hello to every target, proves a made-up key
//!   when the cookie comes back, then sends a peer list of 16 made-up addresses and
//!   acknowledges whatever it is sent (so it looks alive). They are real peers as far as the
//!   protocol can tell; the per-address bound (16) caps how many a target takes from one IP.
//!
//! Usage: forger --from IP[,IP…] --targets IP[,IP…] --broadcast IP [--port 7654] [--rate 20000]
//! [--secs 20] [--answer 0]. Prints what it sent and got so far, once a second.

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use tailchat::proto::identity::{PublicKey, Signature, Transcript, PROOF_DOMAIN};
use tailchat::proto::wire::{
    self, Ack, AckRange, Announce, CookieReply, Frame, Header, Hello, PeerEntry, PeerList, Proof,
};
use tailchat::proto::{Identity, PeerId};

/// The command line, parsed by hand (an example needs no more).
struct Args {
    /// Source addresses, one socket each.
    from: Vec<IpAddr>,
    /// The real hosts.
    targets: Vec<IpAddr>,
    /// Where announcements go.
    broadcast: IpAddr,
    /// Everyone's UDP port.
    port: u16,
    /// Forged datagrams a second, in all.
    rate: u64,
    /// How long to flood.
    secs: u64,
    /// Fakes that answer.
    answer: usize,
}

fn ips(s: &str) -> Vec<IpAddr> {
    s.split(',')
        .map(|x| x.parse().expect("an IP address"))
        .collect()
}

fn args() -> Args {
    let mut a = Args {
        from: Vec::new(),
        targets: Vec::new(),
        broadcast: IpAddr::from([255, 255, 255, 255]),
        port: 7654,
        rate: 20_000,
        secs: 20,
        answer: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().expect("a value after each flag");
        match flag.as_str() {
            "--from" => a.from = ips(&value),
            "--targets" => a.targets = ips(&value),
            "--broadcast" => a.broadcast = value.parse().expect("an IP address"),
            "--port" => a.port = value.parse().expect("a port"),
            "--rate" => a.rate = value.parse().expect("a number"),
            "--secs" => a.secs = value.parse().expect("a number"),
            "--answer" => a.answer = value.parse().expect("a number"),
            _ => panic!("unknown flag {flag}"),
        }
    }
    assert!(
        !a.from.is_empty() && !a.targets.is_empty(),
        "--from and --targets"
    );
    a
}

/// One fake that answers: its key, its run, where it speaks from, its next packet number.
struct Fake {
    identity: Identity,
    session: u64,
    socket: usize,
    packet: u64,
}

/// 16 made-up peers at made-up addresses.
fn made_up_entries(rng: &mut ChaCha8Rng) -> Vec<PeerEntry> {
    (0..16)
        .map(|_| PeerEntry {
            id: PeerId(rng.random()),
            nick: "ghost".into(),
            addrs: vec![SocketAddr::from((
                [10, 80, 220 + rng.random_range(0..30u8), rng.random()],
                7654,
            ))],
            heard_secs: 0,
        })
        .collect()
}

fn stranger(rng: &mut ChaCha8Rng) -> Header {
    Header {
        sender: PeerId(rng.random()),
        session: rng.random::<u64>() | 1,
        packet: 0,
    }
}

fn main() {
    let a = args();
    let mut rng = ChaCha8Rng::seed_from_u64(u64::from(std::process::id()));
    let sockets: Vec<UdpSocket> = a
        .from
        .iter()
        .map(|ip| {
            let s = UdpSocket::bind((*ip, a.port)).expect("bind a source address");
            s.set_nonblocking(true).expect("non-blocking");
            s.set_broadcast(true).expect("broadcast");
            s
        })
        .collect();
    let mut fakes: Vec<Fake> = (0..a.answer)
        .map(|i| Fake {
            identity: Identity::from_secret(rng.random()),
            session: rng.random::<u64>() | 1,
            socket: i % sockets.len(),
            packet: 1,
        })
        .collect();
    let target = |i: u64| SocketAddr::new(a.targets[(i as usize) % a.targets.len()], a.port);
    let bcast = SocketAddr::new(a.broadcast, a.port);
    let (mut forged, mut fake_sent, mut cookies, mut admitted, mut errors) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let start = Instant::now();
    let end = start + Duration::from_secs(a.secs);
    let mut next_hellos = start;
    let mut buf = [0u8; 2048];
    let mut k = 0u64;
    let mut next_report = start + Duration::from_secs(1);
    while Instant::now() < end {
        if Instant::now() >= next_report {
            next_report += Duration::from_secs(1);
            let secs = start.elapsed().as_secs_f64();
            println!(
                "forger: {forged} forged datagrams in {secs:.1} s ({:.0}/s), {fake_sent} from {} answering fakes ({cookies} cookies, {admitted} proof replies), {errors} send errors",
                forged as f64 / secs,
                fakes.len()
            );
        }
        // The fakes that answer say hello to everyone once a second until let in.
        if Instant::now() >= next_hellos {
            next_hellos += Duration::from_secs(1);
            for (i, f) in fakes.iter().enumerate() {
                for t in &a.targets {
                    let mut token = [0u8; 16];
                    token[..8].copy_from_slice(&(i as u64).to_be_bytes());
                    let h = Header {
                        sender: f.identity.peer_id(),
                        session: f.session,
                        packet: 0,
                    };
                    let bytes = wire::encode(&h, &[Frame::Hello(Hello { token, caps: 0 })]);
                    let to = SocketAddr::new(*t, a.port);
                    if sockets[f.socket].send_to(&bytes, to).is_err() {
                        errors += 1;
                    }
                    fake_sent += 1;
                }
            }
        }
        // The flood: this millisecond's share.
        let due = (start.elapsed().as_micros() as u64 * a.rate / 1_000_000).saturating_sub(k);
        for _ in 0..due.min(10_000) {
            let h = stranger(&mut rng);
            let (to, frames) = match k % 5 {
                0 => (
                    target(k / 5),
                    vec![Frame::Hello(Hello {
                        token: rng.random(),
                        caps: 0,
                    })],
                ),
                1 => (bcast, vec![Frame::Announce(Announce { caps: 0 })]),
                2 => (
                    target(k / 5),
                    vec![
                        Frame::Session(rng.random()),
                        Frame::Peers(PeerList {
                            seq: 0,
                            peers: made_up_entries(&mut rng),
                        }),
                    ],
                ),
                3 => (
                    target(k / 5),
                    vec![Frame::Cookie(CookieReply {
                        echo: rng.random(),
                        cookie: rng.random(),
                    })],
                ),
                _ => (
                    target(k / 5),
                    vec![Frame::Proof(Proof {
                        key: PublicKey(rng.random()),
                        echo: rng.random(),
                        challenge: rng.random(),
                        nick: "ghost".into(),
                        port: a.port,
                        caps: 0,
                        signature: Signature([7; 64]),
                    })],
                ),
            };
            let h = Header {
                packet: if k % 5 == 2 { 1 } else { 0 },
                ..h
            };
            let bytes = wire::encode(&h, &frames);
            if sockets[(k as usize) % sockets.len()]
                .send_to(&bytes, to)
                .is_err()
            {
                errors += 1;
            }
            forged += 1;
            k += 1;
        }
        // What the hosts send back: cookies and proof replies for the fakes that answer, and
        // link datagrams, acknowledged.
        for (si, s) in sockets.iter().enumerate() {
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                let Ok(d) = wire::decode(&buf[..n]) else {
                    continue;
                };
                let host = d.header;
                match d.frames.first() {
                    Some(Frame::Cookie(c)) => {
                        let i = u64::from_be_bytes(c.echo[..8].try_into().unwrap_or([0; 8]));
                        let Some(f) = fakes.get(i as usize).filter(|f| f.socket == si) else {
                            continue;
                        };
                        cookies += 1;
                        let t = Transcript {
                            domain: PROOF_DOMAIN,
                            echo: c.cookie,
                            challenge: c.echo,
                            signer: f.identity.peer_id(),
                            receiver: host.sender,
                            signer_session: f.session,
                            receiver_session: host.session,
                            key: f.identity.public_key(),
                            port: a.port,
                            caps: 0,
                            nick: "ghost",
                        };
                        let proof = Frame::Proof(Proof {
                            key: f.identity.public_key(),
                            echo: c.cookie,
                            challenge: c.echo,
                            nick: "ghost".into(),
                            port: a.port,
                            caps: 0,
                            signature: f.identity.sign(&t.to_bytes()),
                        });
                        let h = Header {
                            sender: f.identity.peer_id(),
                            session: f.session,
                            packet: 0,
                        };
                        let _ = s.send_to(&wire::encode(&h, &[proof]), from);
                        fake_sent += 1;
                    }
                    Some(Frame::ProofReply(r)) => {
                        let i = u64::from_be_bytes(r.echo[..8].try_into().unwrap_or([0; 8]));
                        let Some(f) = fakes.get_mut(i as usize).filter(|f| f.socket == si) else {
                            continue;
                        };
                        admitted += 1;
                        let h = Header {
                            sender: f.identity.peer_id(),
                            session: f.session,
                            packet: f.packet,
                        };
                        f.packet += 1;
                        let frames = [
                            Frame::Session(host.session),
                            Frame::Peers(PeerList {
                                seq: 0,
                                peers: made_up_entries(&mut rng),
                            }),
                        ];
                        let _ = s.send_to(&wire::encode(&h, &frames), from);
                        fake_sent += 1;
                    }
                    Some(Frame::Session(_)) if d.is_ack_eliciting() => {
                        // A link datagram to one of our fakes: acknowledged, so it stays.
                        let Some(f) = fakes.iter_mut().find(|f| f.socket == si) else {
                            continue;
                        };
                        let h = Header {
                            sender: f.identity.peer_id(),
                            session: f.session,
                            packet: f.packet,
                        };
                        f.packet += 1;
                        let p = host.packet;
                        let frames = [
                            Frame::Session(host.session),
                            Frame::Ack(Ack {
                                delay_us: 0,
                                ranges: vec![AckRange { first: p, last: p }],
                            }),
                        ];
                        let _ = s.send_to(&wire::encode(&h, &frames), from);
                        fake_sent += 1;
                    }
                    _ => {}
                }
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "forger: {forged} forged datagrams in {secs:.1} s ({:.0}/s), {fake_sent} from {} answering fakes ({cookies} cookies, {admitted} proof replies), {errors} send errors",
        forged as f64 / secs,
        fakes.len()
    );
}
