//! The sender's limit on how fast a data connection may pace, so that a transfer through a
//! slow link leaves the queue a chat datagram waits in short.
//!
//! The kernel's BBR alone fills a deep bottleneck queue when a copy starts: through a veth pair
//! the handshake's round trip is tens of microseconds, so BBR's start-up paces at gigabytes per
//! second and lets about 190 KB into flight, 76 ms behind a 20 Mbit/s bucket
//! (`docs/BENCHMARKS.md`, "File transfer"). [`Pacer`] sits on top of it, LEDBAT-like
//! (RFC 6817): every [`MIN_PERIOD`] it is shown the connection's `TCP_INFO` ([`TcpSample`])
//! and answers with a cap for `SO_MAX_PACING_RATE`, which BBR honours (the cap also shrinks
//! BBR's send quantum, and with it the extra it keeps in flight). The queueing delay is the
//! smoothed RTT minus the minimum RTT.
//!
//! - **Starting**: the cap begins at [`START_RATE`] and doubles every round trip (every
//!   [`MIN_PERIOD`] at least) while the queueing delay stays under half the [`TARGET`] — a
//!   slow start that watches delay rather than loss, lifted altogether past [`CEILING`].
//! - **Holding**, from the first queue on: the pacer keeps an estimate of the bottleneck's
//!   rate — what is delivered while a queue is there, and what gets through when none is —
//!   and caps at that estimate, up to [`SWING`] over it while the delay is under the target
//!   and down to three times that under it while the delay is over. The queue settles near
//!   the target, and the link stays busy.
//! - **Off**, for the rest of the connection, when the delay does not answer the cap: over
//!   the target for [`GIVE_UP_AFTER`] without a break, or over it in most of a
//!   [`GIVE_UP_WINDOW`] while the estimate halved (a path whose delay varies more than the
//!   target, or others' traffic: slowing down would only slow the transfer); or when the
//!   kernel reports no minimum RTT. Then BBR alone, as without a pacer.
//!
//! A receiver that is the limit (its window fills: `rwnd_limited` advances) also makes RTTs
//! grow, but no queue of ours is behind that, and a cap would only slow the transfer further:
//! the cap is lifted for [`RECEIVER_HOLD`] after.
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
/// Holding, a delay over the target this long without a break is not a queue of ours: ours
/// drains within a few round trips of the cap coming down. It is a path whose round trips
/// vary by more than the target (Wi-Fi, a tunnel over the Internet) or someone else's
/// traffic; slowing down for it would only slow the transfer, so the cap is lifted for the
/// rest of the connection (BBR alone, as without a pacer).
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(1);
/// Holding, the pacer looks back over windows this long (after the first, which holds the
/// start-up's overshoot coming down): if the delay was over the target in most samples of one
/// (half or more) and the estimate fell by half or more in it (or sits at the floor), the delay
/// is not answering the cap — a queue of ours drains when the cap comes down — and the cap is
/// lifted for the rest of the connection. It is a path whose delay varies by more than the
/// target but now and then dips under it (Wi-Fi, a tunnel over the Internet), which would
/// otherwise pull the estimate, which follows what is delivered and so at most the cap, down
/// to the floor.
pub const GIVE_UP_WINDOW: Duration = Duration::from_secs(1);

/// Which of its two behaviours the pacer is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Doubling while the delay stays low.
    Starting,
    /// Keeping the delay near the target.
    Holding,
    /// Given up: the delay did not answer the cap ([`GIVE_UP_AFTER`]); no cap.
    Off,
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
    /// Since when the delay has been over the target without a break, while holding.
    over_since: Option<Duration>,
    /// The current look-back window ([`GIVE_UP_WINDOW`]), while holding.
    window: Option<Window>,
    /// Windows looked back over so far.
    windows: u32,
}

/// What a [`GIVE_UP_WINDOW`] has seen so far.
#[derive(Clone, Copy, Debug)]
struct Window {
    /// When it began.
    start: Duration,
    /// The estimate then.
    rate: f64,
    /// Samples in it, and how many had the delay over the target.
    samples: u32,
    over: u32,
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
            over_since: None,
            window: None,
            windows: 0,
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

    /// Lifts the cap for the rest of the connection (BBR alone, as without a pacer).
    pub fn give_up(&mut self) -> u64 {
        self.phase = Phase::Off;
        self.cap = CEILING;
        self.cap()
    }

    /// Counts a holding sample into the look-back window (`over`: its delay was over the
    /// target); at the end of a window (not the first), whether the delay did not answer the
    /// cap ([`GIVE_UP_WINDOW`]).
    fn delay_does_not_answer(&mut self, now: Duration, over: bool) -> bool {
        let rate = self.rate;
        let w = self.window.get_or_insert(Window {
            start: now,
            rate,
            samples: 0,
            over: 0,
        });
        w.samples += 1;
        w.over += u32::from(over);
        if now.saturating_sub(w.start) < GIVE_UP_WINDOW {
            return false;
        }
        // Halved in the window, or down at the floor already (a spiral that ended within the
        // first window): with the delay mostly over the target all the same.
        let fell = rate < w.rate / 2.0 || rate <= FLOOR * 1.5;
        let verdict = self.windows > 0 && w.over * 2 >= w.samples && fell;
        self.windows += 1;
        self.window = None;
        verdict
    }

    /// Takes the sample `s` read at `now` (any fixed origin, not going backwards) and returns
    /// the new cap ([`Pacer::cap`]).
    pub fn on_sample(&mut self, now: Duration, s: &TcpSample) -> u64 {
        if self.phase == Phase::Off {
            return self.cap();
        }
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
        if s.min_rtt.is_zero() {
            return self.give_up(); // a kernel that does not report it: no delay to read
        }
        let delay = s.rtt.saturating_sub(s.min_rtt).as_secs_f64();
        let target = TARGET.as_secs_f64();
        let queued = delay > target / 2.0;
        if self.phase == Phase::Holding && delay > target {
            let since = *self.over_since.get_or_insert(now);
            if now.saturating_sub(since) >= GIVE_UP_AFTER {
                return self.give_up();
            }
        } else {
            self.over_since = None;
        }
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
        if self.phase == Phase::Holding && self.delay_does_not_answer(now, delay > target) {
            return self.give_up();
        }
        let off = ((target - delay) / target).clamp(-3.0, 1.0);
        self.cap = if self.phase == Phase::Starting {
            self.rate
        } else {
            (self.rate * (1.0 + SWING * off)).max(FLOOR)
        };
        self.cap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// A sample with this RTT over a 20 µs minimum, `acked` bytes acknowledged in all.
    fn sample(rtt_us: u64, delivery_rate: u64, acked: u64) -> TcpSample {
        TcpSample {
            rtt: Duration::from_micros(rtt_us),
            min_rtt: Duration::from_micros(20),
            delivery_rate,
            bytes_acked: acked,
            ..TcpSample::default()
        }
    }

    #[test]
    fn it_starts_capped_and_doubles_per_round_trip_while_acks_come_and_no_queue_builds() {
        let mut p = Pacer::new();
        assert_eq!(p.cap(), START_RATE as u64);
        assert_eq!(p.on_sample(Duration::ZERO, &sample(300, 0, 0)), 1_000_000);
        // Round trips under MIN_PERIOD count as MIN_PERIOD: one doubling per 2 ms.
        assert_eq!(p.on_sample(2 * MS, &sample(300, 0, 1000)), 2_000_000);
        assert_eq!(p.on_sample(4 * MS, &sample(300, 0, 2000)), 4_000_000);
        // Nothing acked and deliveries far under the cap: the delay reading is stale.
        assert_eq!(
            p.on_sample(6 * MS, &sample(300, 1_000_000, 2000)),
            4_000_000
        );
        // No ack, but deliveries near the cap (one large segment acked long ago).
        assert_eq!(
            p.on_sample(8 * MS, &sample(300, 2_000_000, 2000)),
            8_000_000
        );
        assert_eq!(p.phase(), Phase::Starting);
        // A longer round trip doubles more slowly: half of an 8 ms round trip, √2.
        let far = TcpSample {
            min_rtt: Duration::from_micros(7900),
            ..sample(8000, 0, 0)
        };
        let mut slow = Pacer::new();
        slow.on_sample(Duration::ZERO, &far);
        let cap = slow.on_sample(
            4 * MS,
            &TcpSample {
                bytes_acked: 1,
                ..far
            },
        );
        assert!((1_410_000..1_420_000).contains(&cap), "{cap}");
    }

    #[test]
    fn on_a_fast_path_the_cap_is_lifted_within_tens_of_milliseconds() {
        let mut p = Pacer::new();
        let mut t = Duration::ZERO;
        let mut cap = p.cap();
        let mut acked = 0;
        while cap != u64::MAX {
            t += 2 * MS;
            acked += 1 << 20;
            assert!(t < 40 * MS, "still capped at {cap} after {t:?}");
            cap = p.on_sample(t, &sample(100, 1_000_000_000, acked));
        }
        assert_eq!(p.phase(), Phase::Starting);
        assert_eq!(
            p.on_sample(t + 2 * MS, &sample(100, 1_000_000_000, acked)),
            u64::MAX
        );
    }

    /// A pacer that started and met a queue at 4 MB/s, at 8 ms.
    fn holding() -> (Pacer, Duration) {
        let mut p = Pacer::new();
        for i in 0..3 {
            p.on_sample(i * 2 * MS, &sample(500, 0, u64::from(i) * 1000));
        }
        assert_eq!(p.cap(), 4_000_000);
        p.on_sample(6 * MS, &sample(2020, 2_400_000, 9000));
        assert_eq!(p.phase(), Phase::Holding);
        (p, 6 * MS)
    }

    #[test]
    fn a_queue_ends_the_start_up_and_the_cap_comes_down_towards_what_is_delivered() {
        let (p, _) = holding();
        // The estimate moved a quarter of the way from 4 to 2.4 MB/s; the delay (2 ms) is
        // under the target, so the cap is a little over it.
        let rate = 4_000_000.0 - 1_600_000.0 * GAIN;
        let off = (2.5 - 2.0) / 2.5;
        assert_eq!(p.cap(), (rate * (1.0 + SWING * off)) as u64);
    }

    #[test]
    fn holding_the_cap_is_over_the_estimate_under_the_target_and_under_it_over() {
        let (mut p, t) = holding();
        let estimate = 2_400_000.0;
        let mut t = t;
        for _ in 0..40 {
            t += 2 * MS;
            p.on_sample(t, &sample(2520, estimate as u64, 9000)); // at the target
        }
        let at = p.cap() as f64;
        assert!((at - estimate).abs() < 0.01 * estimate, "{at}");
        // No delay at all: SWING over (no news, so the estimate stays).
        let over = p.on_sample(t + 2 * MS, &sample(20, 0, 9000)) as f64;
        assert!((over / at - (1.0 + SWING)).abs() < 0.01, "{over}");
        // Four times the target: 3 × SWING under (the clamp).
        let under = p.on_sample(t + 4 * MS, &sample(10_020, estimate as u64, 9000)) as f64;
        assert!((under / at - (1.0 - 3.0 * SWING)).abs() < 0.01, "{under}");
    }

    #[test]
    fn a_delivery_sample_far_over_the_estimate_moves_it_a_little_under_a_queue() {
        let (mut p, t) = holding();
        let before = p.cap() as f64;
        // A burst through an idle token bucket measured at 40 MB/s, delay unchanged.
        let after = p.on_sample(t + 2 * MS, &sample(2020, 40_000_000, 9000)) as f64;
        assert!(
            after <= before * (1.0 + SWING * GAIN) + 1.0,
            "{after} vs {before}"
        );
    }

    #[test]
    fn a_limiting_receiver_window_lifts_the_cap() {
        let (mut p, t) = holding();
        let mut s = sample(6000, 1_000_000, 9000);
        s.rwnd_limited = 4 * MS;
        assert_eq!(p.on_sample(t + 2 * MS, &s), u64::MAX);
        // For RECEIVER_HOLD after it last advanced; then delay counts again.
        assert_eq!(p.on_sample(t + 50 * MS, &s), u64::MAX);
        assert!(p.on_sample(t + 2 * MS + RECEIVER_HOLD, &s) < u64::MAX);
    }

    #[test]
    fn it_never_goes_under_the_floor_nor_moves_without_time_or_an_rtt() {
        let (mut p, t) = holding();
        // A queue that drains slowly (a link that slowed down): down to the floor at most,
        // never under it, for as long as the delay answers (here, a sample under the target
        // every other time).
        let mut lowest = u64::MAX;
        let mut t = t;
        for i in 0..40 {
            t += 10 * MS;
            let rtt = if i % 2 == 0 { 50_000 } else { 20 };
            lowest = lowest.min(p.on_sample(t, &sample(rtt, 1000, 9000)));
        }
        assert!(lowest >= FLOOR as u64, "{lowest}");
        // Neither a sample at the same moment nor one without an RTT moves a holding pacer.
        let (mut p, t) = holding();
        let before = p.cap();
        assert!(before < u64::MAX);
        assert_eq!(p.on_sample(t, &sample(20, 100_000_000, 1 << 30)), before);
        assert_eq!(
            p.on_sample(t + MS, &sample(0, 100_000_000, 1 << 30)),
            before
        );
    }

    /// A path whose delay varies by more than the target but dips under it now and then
    /// (Wi-Fi, a tunnel over the Internet: 0–9 ms of noise over a 30 ms path): the estimate
    /// follows what is delivered, which is at most the cap, so it would spiral to the floor;
    /// a window in which it halved with the delay mostly over the target makes it give up.
    #[test]
    fn a_noisy_path_that_dips_under_the_target_makes_it_give_up_too() {
        for spread in [9000, 6000] {
            gives_up_on_a_noisy_path(spread);
        }
    }

    /// The noisy path above, its delay varying by up to `spread` µs.
    fn gives_up_on_a_noisy_path(spread: u64) {
        let mut p = Pacer::new();
        let (lowest, _) = run_noisy_path(&mut p, 30_000, 5000, |step| (step * 7919) % spread);
        assert_eq!(p.phase(), Phase::Off, "noise up to {spread} µs");
        assert!(lowest >= FLOOR as u64, "{lowest}");
    }

    /// Runs `p` for `steps` samples 2 ms apart on a 50 MB/s path (never the limit) whose RTT
    /// is `base` µs plus `noise(step)` µs whatever is sent; returns the lowest cap it set and
    /// the time of the last sample.
    fn run_noisy_path(
        p: &mut Pacer,
        base: u64,
        steps: u64,
        noise: impl Fn(u64) -> u64,
    ) -> (u64, Duration) {
        let path = 50_000_000.0;
        let (mut acked, mut t) = (0.0_f64, Duration::ZERO);
        let mut lowest = u64::MAX;
        for step in 0..steps {
            t = Duration::from_millis(2 * step);
            let sent = (p.cap() as f64).min(path) * 0.002;
            acked += sent;
            let s = TcpSample {
                rtt: Duration::from_micros(base + noise(step)),
                min_rtt: Duration::from_micros(base),
                delivery_rate: (sent / 0.002) as u64,
                bytes_acked: acked as u64,
                ..TcpSample::default()
            };
            lowest = lowest.min(p.on_sample(t, &s));
        }
        (lowest, t)
    }

    #[test]
    fn a_kernel_without_the_minimum_rtt_gets_no_cap() {
        let mut p = Pacer::new();
        p.on_sample(Duration::ZERO, &sample(300, 0, 0));
        let s = TcpSample {
            min_rtt: Duration::ZERO,
            ..sample(300, 0, 1000)
        };
        assert_eq!(p.on_sample(2 * MS, &s), u64::MAX);
        assert_eq!(p.phase(), Phase::Off);
    }

    /// A path whose round trips vary by more than the target whatever is sent (a noisy
    /// radio, a tunnel): the delay does not answer the cap, so after GIVE_UP_AFTER the cap
    /// is lifted for good instead of spiralling down to the floor.
    #[test]
    fn a_delay_that_does_not_answer_the_cap_makes_it_give_up() {
        let mut p = Pacer::new();
        // 20 µs of path, plus 3–9 ms of noise that has nothing to do with the rate.
        let (lowest, t) = run_noisy_path(&mut p, 20, 2000, |step| 3000 + (step * 7919) % 6000);
        assert_eq!(p.phase(), Phase::Off);
        assert_eq!(p.cap(), u64::MAX);
        assert!(lowest >= FLOOR as u64);
        // And it stays off, whatever comes.
        assert_eq!(p.on_sample(t + 2 * MS, &sample(20, 1000, 1)), u64::MAX);
    }

    /// A 2.4 MB/s bottleneck (20 Mbit/s) behind which the queue is what the cap sends over
    /// its rate, on a 1 ms path: from the start, the queue stays within 5 ms (BBR alone: 76)
    /// and the link busy.
    #[test]
    fn through_a_slow_link_the_queue_stays_short_and_the_link_busy() {
        let link = 2_400_000.0;
        let base = 1000.0; // µs
        let mut p = Pacer::new();
        let (mut queue, mut acked, mut delivered_total) = (0.0_f64, 0.0, 0.0);
        let mut worst: f64 = 0.0;
        for step in 0..5000u32 {
            let t = Duration::from_millis(2 * u64::from(step));
            let cap = p.cap() as f64;
            let sent = cap.min(1e12) * 0.002;
            let out = (queue + sent).min(link * 0.002);
            queue = queue + sent - out;
            acked += out;
            if step >= 500 {
                delivered_total += out;
            }
            worst = worst.max(queue / link);
            let s = TcpSample {
                rtt: Duration::from_micros((base + queue / link * 1e6) as u64),
                min_rtt: Duration::from_micros(base as u64),
                delivery_rate: (out / 0.002) as u64,
                bytes_acked: acked as u64,
                ..TcpSample::default()
            };
            p.on_sample(t, &s);
        }
        assert!(worst < 0.005, "the queue reached {worst} s");
        let busy = delivered_total / (link * 4500.0 * 0.002);
        assert!(busy > 0.97, "the link was busy {busy} of the time");
        assert_eq!(p.phase(), Phase::Holding, "a queue of ours: it holds on");
    }
}
