//! Send-to-delivery latency of the protocol core in the simulator, at 1 ms RTT with 0%, 10% and
//! 30% loss each way (virtual time, so the figures are exact and repeatable).
//!
//! Run: `cargo bench --bench sim_latency`. Results are recorded in docs/BENCHMARKS.md.

#[path = "../tests/sim/mod.rs"]
mod sim;

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use sim::{LinkParams, Sim};
use std::collections::HashMap;
use std::time::Duration;
use tailchat::proto::{Event, Recipients};

const MESSAGES: usize = 20_000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    println!("| loss each way | messages | p50 | p99 | max | retransmitted |");
    println!("|---|---|---|---|---|---|");
    for loss in [0.0, 0.10, 0.30] {
        let seed = 42;
        let mut sim = Sim::new(seed, 2, LinkParams::lan());
        sim.connect_star();
        // 1 ms RTT: 0.5 ms each way, ±50 µs of jitter; loss only, no duplication.
        sim.set_all_links(LinkParams {
            loss,
            jitter: Duration::from_micros(100),
            ..LinkParams::lan()
        });
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut sent_at = HashMap::new();
        for k in 0..MESSAGES {
            let id = sim.send(0, Recipients::Everyone, &format!("message {k}"));
            sent_at.insert(id, sim.now);
            // Chat pace: a message every 20–200 ms.
            sim.run_for(Duration::from_millis(rng.random_range(20..200)));
        }
        sim.run_for(Duration::from_secs(30));
        let mut lat: Vec<Duration> = sim.nodes[1]
            .events
            .iter()
            .filter_map(|(t, e)| match e {
                Event::Message { id, .. } => Some(*t - sent_at[id]),
                _ => None,
            })
            .collect();
        assert_eq!(lat.len(), MESSAGES, "every message arrives");
        lat.sort();
        println!(
            "| {:.0}% | {} | {:.2} ms | {:.2} ms | {:.2} ms | {} |",
            loss * 100.0,
            lat.len(),
            percentile(&lat, 0.50).as_secs_f64() * 1e3,
            percentile(&lat, 0.99).as_secs_f64() * 1e3,
            lat.last().unwrap().as_secs_f64() * 1e3,
            sim.nodes[0].ep.stats().links.retransmitted,
        );
    }
}
