//! The sender's limit on how fast a data connection may pace, so that a transfer through a
//! slow link leaves the queue a chat datagram waits in short.
//!
//! The kernel's BBR alone fills a deep bottleneck queue when a copy starts: through a veth pair
//! the handshake's round trip is tens of microseconds, so BBR's start-up paces at gigabytes per
//! second and lets about 190 KB into flight, 76 ms behind a 20 Mbit/s bucket
//! (`docs/BENCHMARKS.md`, "File transfer"). [`Pacer`] sits on top of it, LEDBAT-like
//! (RFC 6817): every few milliseconds it is shown the connection's `TCP_INFO`
//! ([`TcpSample`]) and answers with a cap for `SO_MAX_PACING_RATE`, which BBR honours. The
//! queueing delay is the smoothed RTT minus the minimum RTT.
//!
//! - **Starting**: the cap begins at [`START_RATE`] and doubles every round trip (every
//!   [`MIN_PERIOD`] at least) while the queueing delay stays under [`TARGET`] — a slow start
//!   that watches delay rather than loss. The first time the delay passes the target the cap
//!   drops to the rate the path delivered, less [`DRAIN`], and the pacer holds.
//! - **Holding**: the cap rises slowly while the delay is under the target and falls
//!   (first to the delivered rate, then proportionally) while it is over, so the queue
//!   settles near the target and the link stays busy.
//!
//! It only ever lowers the rate the kernel would use: once the cap passes [`CEILING`] it is
//! lifted. A receiver that is the limit (its window fills: `rwnd_limited` advances) also
//! makes RTTs grow, but no queue of ours is behind that, so delay is not acted on then.
//!
//! No clock is read here: times and samples are passed in, so it is tested deterministically.

use super::tcp_info::TcpSample;
use std::time::Duration;

/// Queueing delay (smoothed RTT over the minimum) the pacer aims at: a few milliseconds, what
/// a chat datagram may wait behind a transfer. It includes what is not a queue — a segment's
/// serialisation at the bottleneck, a delayed ack — about a millisecond at 20 Mbit/s.
pub const TARGET: Duration = Duration::from_micros(2500);
/// The bottleneck's rate assumed at first, in bytes per second (8 Mbit/s).
pub const START_RATE: f64 = 1e6;
/// Above this cap (bytes per second) there is no cap: no link a chat shares is this fast, and
/// the kernel reads the cap as 32 bits on older kernels.
pub const CEILING: f64 = 4e9;
/// The shortest round trip the start-up doubles over (also about how often samples come).
pub const MIN_PERIOD: Duration = Duration::from_millis(2);
/// How far the cap goes over (under) the bottleneck's rate with no queue (twice the target):
/// the queue then fills (drains) by this fraction of the rate.
pub const SWING: f64 = 0.1;
/// The weight of a new delivery-rate sample in the estimate, while a queue is there.
pub const GAIN: f64 = 0.25;
/// How long after the receiver's window last limited the connection delay is not acted on.
pub const RECEIVER_HOLD: Duration = Duration::from_millis(100);
/// The lowest cap, in bytes per second: a connection never stalls on the pacer.
pub const FLOOR: f64 = 64e3;

/// Which of its two behaviours the pacer is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Doubling while the delay stays low.
    Starting,
    /// Keeping the delay near the target.
    Holding,
}

/// The pacing cap of one data connection; see the module's documentation.
#[derive(Clone, Debug)]
pub struct Pacer {
    /// Starting or holding.
    phase: Phase,
    /// The bottleneck's rate as estimated, in bytes per second.
    rate: f64,
    /// The cap, in bytes per second (at [`CEILING`] or above: none).
    cap: f64,
    /// When the previous sample came, to know how much time a step covers.
    last: Option<Duration>,
    /// Bytes acknowledged at the previous sample: growth needs acks.
    acked: u64,
    /// The receiver-limited time of the previous sample, to see it advance.
    rwnd_limited: Duration,
    /// When the receiver's window was last seen limiting the connection.
    receiver_limited_at: Option<Duration>,
}

impl Default for Pacer {
    fn default() -> Self {
        Pacer::new()
    }
}

impl Pacer {
    /// A pacer for a new connection.
    pub fn new() -> Pacer {
        Pacer {
            phase: Phase::Starting,
            rate: START_RATE,
            cap: START_RATE,
            last: None,
            acked: 0,
            rwnd_limited: Duration::ZERO,
            receiver_limited_at: None,
        }
    }

    /// The phase it is in.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The cap to set now, in bytes per second; `u64::MAX` for none.
    pub fn cap(&self) -> u64 {
        if self.cap >= CEILING {
            u64::MAX
        } else {
            self.cap as u64
        }
    }

    /// Takes the sample `s` read at `now` (any fixed origin, not going backwards) and returns
    /// the new cap ([`Pacer::cap`]).
    pub fn on_sample(&mut self, now: Duration, s: &TcpSample) -> u64 {
        let dt = self
            .last
            .map_or(Duration::ZERO, |last| now.saturating_sub(last));
        self.last = Some(now);
        let acked = s.bytes_acked > self.acked;
        self.acked = s.bytes_acked;
        if s.rwnd_limited > self.rwnd_limited {
            self.receiver_limited_at = Some(now);
        }
        self.rwnd_limited = s.rwnd_limited;
        if self
            .receiver_limited_at
            .is_some_and(|at| now.saturating_sub(at) < RECEIVER_HOLD)
        {
            // The receiver is the limit: its delays are no queue of ours, and a cap would
            // only slow the transfer further.
            self.phase = Phase::Holding;
            self.cap = CEILING;
            return self.cap();
        }
        if s.rtt.is_zero() || dt.is_zero() {
            return self.cap(); // no round trip measured yet, or no time passed
        }
        let delay = s.rtt.saturating_sub(s.min_rtt).as_secs_f64();
        let target = TARGET.as_secs_f64();
        let queued = delay > target / 2.0;
        let delivered = s.delivery_rate as f64;
        let dt = dt.as_secs_f64();
        let period = s.rtt.max(MIN_PERIOD).as_secs_f64();
        match self.phase {
            Phase::Starting if !queued => {
                // A doubling per round trip, as long as there is news that the cap is what
                // limits: acks, or deliveries near it (loopback's 64 KB segments are acked
                // one at a time, far apart under a low cap). Not on a stale delay reading
                // while nothing moves.
                if acked || delivered >= self.rate / 2.0 {
                    self.rate *= (dt / period).min(1.0).exp2();
                }
            }
            _ if queued => {
                // A queue: what is delivered is the bottleneck's rate. Samples can run high
                // (a burst through an idle token bucket), so one moves the estimate up by
                // SWING at most.
                self.phase = Phase::Holding;
                if delivered > 0.0 {
                    self.rate += (delivered.min(self.rate * (1.0 + SWING)) - self.rate) * GAIN;
                }
            }
            _ => {
                // No queue: the bottleneck may be faster than the estimate. The cap is over
                // it by up to SWING, so what gets through raises it by that much a round
                // trip at most.
                if acked {
                    let most = self.rate * (1.0 + 2.0 * SWING).powf((dt / period).min(1.0));
                    self.rate = self.rate.max(delivered.min(most));
                }
            }
        }
        self.rate = self.rate.clamp(FLOOR, CEILING);
        let off = ((target - delay) / target).clamp(-3.0, 1.0);
        self.cap = if self.phase == Phase::Starting {
            self.rate
        } else {
            self.rate * (1.0 + SWING * off)
        };
        self.cap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn sample(rtt_us: u64, delivery_rate: u64) -> TcpSample {
        TcpSample {
            rtt: Duration::from_micros(rtt_us),
            min_rtt: Duration::from_micros(20),
            delivery_rate,
            ..TcpSample::default()
        }
    }

    #[test]
    fn it_starts_capped_and_doubles_per_round_trip_while_no_queue_builds() {
        let mut p = Pacer::new();
        assert_eq!(p.cap(), START_RATE as u64);
        assert_eq!(p.on_sample(Duration::ZERO, &sample(300, 0)), START_RATE as u64);
        // Round trips under MIN_PERIOD count as MIN_PERIOD: one doubling per 2 ms.
        let cap = p.on_sample(2 * MS, &sample(300, 900_000));
        assert_eq!(cap, 2 * START_RATE as u64);
        let cap = p.on_sample(4 * MS, &sample(300, 1_900_000));
        assert_eq!(cap, 4 * START_RATE as u64);
        // A longer round trip doubles more slowly: half of an 8 ms round trip, √2.
        let far = TcpSample {
            min_rtt: Duration::from_micros(7900),
            ..sample(8000, 0)
        };
        let mut slow = Pacer::new();
        slow.on_sample(Duration::ZERO, &far);
        let cap = slow.on_sample(4 * MS, &far);
        assert!((1_400_000..1_420_000).contains(&cap), "{cap}");
        assert_eq!(p.phase(), Phase::Starting);
    }

    #[test]
    fn on_a_fast_path_the_cap_is_lifted_within_tens_of_milliseconds() {
        let mut p = Pacer::new();
        let mut t = Duration::ZERO;
        let mut cap = p.cap();
        while cap != u64::MAX {
            t += 2 * MS;
            assert!(t < 40 * MS, "still capped at {cap} after {t:?}");
            cap = p.on_sample(t, &sample(100, 1_000_000_000));
        }
        assert_eq!(p.phase(), Phase::Starting);
        // And it stays lifted while there is no queue.
        assert_eq!(p.on_sample(t + 2 * MS, &sample(100, 1_000_000_000)), u64::MAX);
    }

    #[test]
    fn a_queue_ends_the_start_up_at_the_delivered_rate_less_the_drain() {
        let mut p = Pacer::new();
        for i in 0..4 {
            p.on_sample(i * 2 * MS, &sample(500, 2_400_000));
        }
        assert!(p.cap() > 2_400_000);
        let cap = p.on_sample(8 * MS, &sample(3000, 2_400_000));
        assert_eq!(p.phase(), Phase::Holding);
        assert_eq!(cap, (2_400_000.0 * (1.0 - DRAIN)) as u64);
    }

    /// Holding at a 2.4 MB/s link: the cap grows under the target and shrinks over it.
    fn holding() -> (Pacer, Duration) {
        let mut p = Pacer::new();
        for i in 0..4 {
            p.on_sample(i * 2 * MS, &sample(500, 2_400_000));
        }
        p.on_sample(8 * MS, &sample(5000, 2_400_000));
        assert_eq!(p.phase(), Phase::Holding);
        (p, 8 * MS)
    }

    #[test]
    fn holding_it_rises_under_the_target_and_falls_over_it() {
        let (mut p, t) = holding();
        let before = p.cap();
        let up = p.on_sample(t + 10 * MS, &sample(520, 2_000_000));
        assert!(up > before, "{up} <= {before}");
        // Nearer the target, slower.
        let (mut q, t) = holding();
        let near = q.on_sample(t + 10 * MS, &sample(1800, 2_000_000));
        assert!(near > before && near < up, "{near} vs {up}");
        // Over it: first down to the delivered rate, then a proportional step.
        let (mut r, t) = holding();
        let down = r.on_sample(t + 2 * MS, &sample(4020, 1_500_000));
        assert_eq!(down, (1_500_000.0 * (1.0 - SHRINK_PER_SEC * 0.002)) as u64);
    }

    #[test]
    fn a_limiting_receiver_window_is_not_taken_for_a_queue() {
        let (mut p, t) = holding();
        let before = p.cap();
        let mut s = sample(6000, 1_000_000);
        s.rwnd_limited = 4 * MS;
        assert_eq!(p.on_sample(t + 2 * MS, &s), before);
        // For RECEIVER_HOLD after it last advanced.
        assert_eq!(p.on_sample(t + 50 * MS, &s), before);
        assert!(p.on_sample(t + 2 * MS + RECEIVER_HOLD, &s) < before);
    }

    #[test]
    fn it_never_goes_under_the_floor_nor_moves_without_time_or_an_rtt() {
        let (mut p, mut t) = holding();
        for _ in 0..1000 {
            t += 10 * MS;
            p.on_sample(t, &sample(50_000, 1000));
        }
        assert_eq!(p.cap(), FLOOR as u64);
        let before = p.cap();
        assert_eq!(p.on_sample(t, &sample(50_000, 1000)), before);
        assert_eq!(p.on_sample(t + MS, &sample(0, 1000)), before);
    }

    #[test]
    fn holding_a_link_keeps_the_cap_near_its_rate() {
        // A 2.4 MB/s bottleneck with a queue: the delay follows the bytes sent over the rate.
        let link = 2_400_000.0;
        let (mut p, mut t) = holding();
        let mut queue: f64 = 5e-3 * link;
        let mut caps = Vec::new();
        for _ in 0..2000 {
            let rate = p.cap() as f64;
            queue = (queue + (rate - link) * 0.002).max(0.0);
            t += 2 * MS;
            let rtt = 20 + (queue / link * 1e6) as u64;
            let delivered = if queue > 0.0 { link } else { rate.min(link) };
            caps.push(p.on_sample(t, &sample(rtt, delivered as u64)) as f64);
            assert!(queue / link < 0.006, "queue {queue} at {t:?}");
        }
        let tail = &caps[1000..];
        let mean = tail.iter().sum::<f64>() / tail.len() as f64;
        assert!((0.97 * link..1.03 * link).contains(&mean), "{mean}");
    }
}
