//! Floods and newcomers in the simulator (protocol 2): forged hellos, announcements and peer
//! lists — from made-up identities, some of which answer and acknowledge — neither slow
//! meshing, nor cost more than about one datagram each, nor hold more than bounded memory; and
//! a hundred peers that each know one other mesh within seconds, with no global rate on
//! newcomers.

mod sim;

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use sim::attacker::Fakes;
use sim::{LinkParams, Sim};
use std::net::SocketAddr;
use std::time::Duration;
use tailchat::proto::identity::{PublicKey, Signature};
use tailchat::proto::wire::{
    self, Announce, CookieReply, Frame, Hello, PeerEntry, PeerList, Proof,
};
use tailchat::proto::{PeerId, PeerState};

/// Whether every node knows every other one, online (fakes apart).
fn meshed(s: &Sim) -> bool {
    let real: Vec<PeerId> = (0..s.nodes.len()).map(|i| s.id(i)).collect();
    s.nodes.iter().enumerate().all(|(i, node)| {
        let peers = node.ep.peers();
        real.iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .all(|(_, id)| {
                peers
                    .iter()
                    .any(|p| p.id == *id && p.state == PeerState::Online)
            })
    })
}

/// One forged datagram of the flood, `k`: a hello, an announcement, a peer list, a cookie or
/// a proof, from a made-up identity at a made-up address (nobody there answers).
fn forged(rng: &mut ChaCha8Rng, k: u64) -> (SocketAddr, Vec<u8>) {
    let from = SocketAddr::from(([10, 100 + (k % 50) as u8, (k >> 8) as u8, k as u8], 7654));
    let frame = match k % 5 {
        0 => Frame::Hello(Hello {
            token: rng.random(),
            caps: 0,
        }),
        1 => Frame::Announce(Announce { caps: 0 }),
        2 => Frame::Peers(PeerList {
            seq: 0,
            peers: (0..16)
                .map(|i| PeerEntry {
                    id: PeerId(rng.random()),
                    nick: "ghost".into(),
                    addrs: vec![SocketAddr::from(([10, 99, i, k as u8], 7654))],
                    heard_secs: 0,
                })
                .collect(),
        }),
        3 => Frame::Cookie(CookieReply {
            echo: rng.random(),
            cookie: rng.random(),
        }),
        _ => Frame::Proof(Proof {
            key: PublicKey(rng.random()),
            echo: rng.random(),
            challenge: rng.random(),
            nick: "ghost".into(),
            port: 7654,
            caps: 0,
            signature: Signature([7; 64]),
        }),
    };
    (from, sim::from_stranger(rng, frame))
}

/// Runs `sim` until it meshes (at most `max`), injecting `flood` forged datagrams spread over
/// its first second (one slice a millisecond), round-robin over the nodes, and checking at each
/// slice that nothing was admitted and memory stayed bounded. Returns when it meshed.
fn mesh_under_flood(sim: &mut Sim, flood: u64, max: Duration) -> Duration {
    let mut rng = ChaCha8Rng::seed_from_u64(sim.seed ^ 0xf100d);
    let slices = 1000u64;
    let per_slice = flood / slices;
    let start = sim.now;
    let mut meshed_at = None;
    let mut k = 0u64;
    for slice in 0..slices {
        for _ in 0..per_slice {
            let (from, bytes) = forged(&mut rng, k);
            let to = (k as usize) % sim.nodes.len();
            sim.inject(to, from, &bytes);
            k += 1;
        }
        for node in &sim.nodes {
            let f = node.ep.footprint();
            assert!(
                f.peers < sim.nodes.len(),
                "a forged datagram admitted someone"
            );
            assert!(f.probes <= 64 && f.hints == 0, "{f:?}");
        }
        let slice_end = start + Duration::from_millis(slice + 1);
        if meshed_at.is_none() && sim.run_until_cond(slice_end - sim.now, meshed) {
            meshed_at = Some(sim.elapsed());
        }
        sim.run_for(slice_end - sim.now);
    }
    match meshed_at {
        Some(t) => t,
        None => {
            assert!(
                sim.run_until_cond(max, meshed),
                "seed {}: no mesh within {max:?}",
                sim.seed
            );
            sim.elapsed()
        }
    }
}

#[test]
fn forged_floods_neither_slow_meshing_nor_cost_more_than_one_datagram_each() {
    const FLOOD: u64 = 100_000;
    for seed in [1, 2] {
        // Ten peers on a LAN find each other by their announcements.
        let mut quiet = Sim::new_lan(seed, 10, LinkParams::lan());
        assert!(quiet.run_until_cond(Duration::from_secs(5), meshed));
        let without = quiet.elapsed();
        quiet.run_for(Duration::from_secs(2) - without);
        let mut flooded = Sim::new_lan(seed, 10, LinkParams::lan());
        let with = mesh_under_flood(&mut flooded, FLOOD, Duration::from_secs(5));
        flooded.run_for(Duration::from_secs(2) - flooded.elapsed());
        eprintln!(
            "seed {seed}: meshed in {without:?} without a flood, {with:?} under {FLOOD} forged datagrams"
        );
        assert!(
            with <= without + Duration::from_micros(100),
            "seed {seed}: the flood slowed meshing from {without:?} to {with:?}"
        );
        let extra = flooded.sent - quiet.sent;
        let per = extra as f64 / FLOOD as f64;
        eprintln!("seed {seed}: {extra} datagrams more than without the flood, {per:.3} per forged datagram");
        assert!(
            per <= 1.01,
            "seed {seed}: {per} datagrams per forged datagram"
        );
        for node in &flooded.nodes {
            let f = node.ep.footprint();
            assert_eq!(f.peers, 9, "only the real peers");
        }
    }
}

/// Fakes at their own IP addresses, which say hello to every node, answer, acknowledge, and
/// once in send peer lists of `entries` made-up addresses.
fn with_fakes(sim: &mut Sim, fakes: usize, entries: usize) {
    let fake_addr =
        |i: usize| SocketAddr::from(([10, 210 + (i / 250) as u8, (i % 250) as u8, 1], 7654));
    let mut f = Fakes::new(3, fakes, fake_addr);
    f.peer_list_entries = entries;
    let hellos: Vec<(SocketAddr, Vec<u8>)> = (0..fakes)
        .map(|i| (fake_addr(i), f.hello(fake_addr(i))))
        .collect();
    sim.outside = Some(Box::new(f));
    for (from, hello) in hellos {
        for n in 0..sim.nodes.len() {
            let to = sim.nodes[n].addr;
            sim.send_from_outside(from, to, hello.clone());
        }
    }
}

/// `n` nodes in a ring: each adds the next one, and knows nobody else.
fn ring(seed: u64, n: usize) -> Sim {
    let mut sim = Sim::new(seed, n, LinkParams::lan());
    for i in 0..n {
        sim.add(i, (i + 1) % n);
    }
    sim
}

#[test]
fn answering_fakes_with_peer_lists_of_made_up_addresses_do_not_slow_meshing() {
    for seed in [3, 4] {
        let mut quiet = ring(seed, 20);
        assert!(quiet.run_until_cond(Duration::from_secs(10), meshed));
        let without = quiet.elapsed();
        // 40 fakes, each at its own address, each listing 64 made-up addresses to every node
        // that lets it in.
        let mut flooded = ring(seed, 20);
        with_fakes(&mut flooded, 40, 64);
        let ok = flooded.run_until_cond(Duration::from_secs(10), |s| {
            for node in &s.nodes {
                let f = node.ep.footprint();
                assert!(f.probes <= 64 && f.hints <= 512, "{f:?}");
            }
            meshed(s)
        });
        assert!(ok, "seed {seed}: no mesh with the fakes about");
        let with = flooded.elapsed();
        eprintln!("seed {seed}: a ring of 20 meshed in {without:?} alone, {with:?} with 40 answering fakes");
        assert!(
            with <= without * 3 / 2 + Duration::from_millis(50),
            "seed {seed}: the fakes slowed meshing from {without:?} to {with:?}"
        );
        flooded.run_for(Duration::from_secs(5));
        for node in &flooded.nodes {
            let f = node.ep.footprint();
            assert!(f.peers <= 19 + 40, "{f:?}");
        }
    }
}

#[test]
fn a_hundred_peers_each_knowing_one_other_mesh_within_ten_seconds() {
    let mut sim = ring(7, 100);
    let ok = sim.run_until_cond(Duration::from_secs(10), meshed);
    let took = sim.elapsed();
    eprintln!("100 peers in a ring meshed in {took:?}");
    assert!(ok, "not meshed within 10 s of virtual time");
}

#[test]
fn a_flood_of_forged_hellos_keeps_no_newcomer_waiting() {
    // The office-of-250 report: 100 forged hellos a second kept three newcomers in four out for
    // 30 s. Now four newcomers arrive during such a flood and are in at once.
    let mut sim = Sim::new(8, 5, LinkParams::lan());
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let mut k = 0u64;
    for second in 0..30 {
        for _ in 0..100 {
            let from = SocketAddr::from(([10, 77, (k >> 8) as u8, k as u8], 7654));
            let token = rng.random();
            let hello = sim::from_stranger(&mut rng, Frame::Hello(Hello { token, caps: 0 }));
            sim.inject(0, from, &hello);
            k += 1;
        }
        if second == 10 {
            for newcomer in 1..5 {
                sim.add(newcomer, 0);
            }
            let ok = sim.run_until_cond(Duration::from_millis(20), |s| {
                s.nodes[0].ep.peers().len() == 4
            });
            assert!(ok, "a newcomer was kept waiting");
        }
        sim.run_for(Duration::from_secs(1));
    }
    assert_eq!(sim.nodes[0].ep.peers().len(), 4);
    assert_eq!(sim.nodes[0].ep.footprint().probes, 0);
    let _ = wire::MAX_DATAGRAM;
}
