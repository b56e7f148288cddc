//! Round-trip time estimation and the retransmission timeout derived from it.
//!
//! The estimator is RFC 6298 / RFC 9002 §5.3: the first sample R gives srtt = R and
//! rttvar = R/2; later ones rttvar = ¾·rttvar + ¼·|srtt − R| and srtt = ⅞·srtt + ⅛·R. Samples
//! come only from packets sent once (each retransmission gets a new packet number, so Karn's
//! ambiguity never arises) and have the receiver's reported ack delay taken out.

use std::time::Duration;

/// Assumed round-trip time before the first sample. A LAN answers in a few milliseconds, so
/// this is far below RFC 9002's 333 ms, yet above a tailnet's relayed paths (~100 ms).
pub const INITIAL_RTT: Duration = Duration::from_millis(100);
/// The lowest retransmission timeout. LAN round trips are 0.1–2 ms and our acks wait at most
/// [`MAX_ACK_DELAY`]; 15 ms leaves a wide margin for a busy machine's scheduler, while a loss
/// is repaired an order of magnitude sooner than with TCP's 200 ms floor.
pub const MIN_RTO: Duration = Duration::from_millis(15);
/// The highest retransmission timeout that backing off reaches: a peer that comes back after a
/// partition is retried within this long. (A timeout measured longer, srtt + 4·rttvar above
/// it, is kept: the cap limits the back-off, not the estimate.)
pub const MAX_RTO: Duration = Duration::from_secs(2);
/// The longest a receiver waits before acknowledging an in-order packet (QUIC allows 25 ms; a
/// shorter wait lets the sender's timeout be shorter too).
pub const MAX_ACK_DELAY: Duration = Duration::from_millis(5);
/// Clock granularity term of the timeout (RFC 9002's kGranularity).
const GRANULARITY: Duration = Duration::from_millis(1);

/// Smoothed round-trip time and its variation for one peer.
#[derive(Clone, Copy, Debug)]
pub struct RttEstimator {
    /// Smoothed RTT; [`INITIAL_RTT`] until the first sample.
    srtt: Duration,
    /// RTT variation.
    rttvar: Duration,
    /// The most recent sample, used by time-threshold loss detection.
    latest: Duration,
    /// Whether any sample has been taken (the UI shows "?" until then).
    sampled: bool,
    /// The only sample so far came from the handshake ([`RttEstimator::provisional`]): the
    /// first ack's sample replaces it rather than averaging with it.
    provisional: bool,
}

impl Default for RttEstimator {
    fn default() -> Self {
        Self {
            srtt: INITIAL_RTT,
            rttvar: INITIAL_RTT / 2,
            latest: INITIAL_RTT,
            sampled: false,
            provisional: false,
        }
    }
}

impl RttEstimator {
    /// Takes a sample measured outside the link (by the handshake), if there is none yet: it
    /// counts as the first, until the first ack gives one of the link's own, which replaces
    /// it (a handshake timed during a burst of others says more about that burst than about
    /// the path, and as a first sample it would set the variation to half of it).
    pub fn provisional(&mut self, rtt: Duration) {
        if !self.sampled {
            self.update(rtt, Duration::ZERO);
            self.provisional = true;
        }
    }

    /// Takes one sample: `rtt` measured from send to ack, `ack_delay` as reported by the peer.
    pub fn update(&mut self, rtt: Duration, ack_delay: Duration) {
        // Only subtract the ack delay where it leaves a plausible sample (RFC 9002 §5.3).
        let ack_delay = ack_delay.min(MAX_ACK_DELAY);
        let sample = if rtt > ack_delay {
            rtt - ack_delay
        } else {
            rtt
        };
        self.latest = sample;
        if !self.sampled || self.provisional {
            self.sampled = true;
            self.provisional = false;
            self.srtt = sample;
            self.rttvar = sample / 2;
            return;
        }
        let diff = self.srtt.abs_diff(sample);
        self.rttvar = (self.rttvar * 3 + diff) / 4;
        self.srtt = (self.srtt * 7 + sample) / 8;
    }

    /// The smoothed RTT, or `None` before the first sample.
    pub fn srtt(&self) -> Option<Duration> {
        self.sampled.then_some(self.srtt)
    }

    /// How long after sending a packet a later acked packet proves it lost (9/8 of the RTT).
    pub fn loss_delay(&self) -> Duration {
        (self.srtt.max(self.latest) * 9 / 8).max(GRANULARITY)
    }

    /// The retransmission timeout after `backoff` consecutive expiries.
    pub fn rto(&self, backoff: u32) -> Duration {
        let base = self.srtt + (self.rttvar * 4).max(GRANULARITY) + MAX_ACK_DELAY;
        let base = base.max(MIN_RTO);
        // Back off by 1.5× per consecutive expiry (KCP's nodelay factor) rather than TCP's 2×:
        // on a LAN a run of timeouts is far more often random loss than congestion, and the
        // cap below, not the factor, is what keeps a dead peer's traffic small.
        // The cap bounds the back-off, not the estimate: a peer measured to answer in 3 s
        // (a host so busy that its socket holds seconds of datagrams) gets a timeout above
        // its round trip, or every packet to it would be sent twice into that queue.
        let cap = MAX_RTO.max(base);
        let mut rto = base;
        for _ in 0..backoff.min(16) {
            rto = rto * 3 / 2;
            if rto >= cap {
                break;
            }
        }
        rto.min(cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_handshake_sample_counts_until_the_first_ack_replaces_it() {
        let mut r = RttEstimator::default();
        r.provisional(MS * 3000);
        assert_eq!(r.srtt(), Some(MS * 3000), "shown at once");
        r.provisional(MS * 10);
        assert_eq!(r.srtt(), Some(MS * 3000), "one handshake sample only");
        r.update(MS * 10, Duration::ZERO);
        assert_eq!(
            r.srtt(),
            Some(MS * 10),
            "the first ack's sample replaces it"
        );
        assert_eq!(r.rttvar, MS * 5);
        r.update(MS * 18, Duration::ZERO);
        assert_eq!(r.srtt(), Some(MS * 11), "and later ones average as usual");
    }

    #[test]
    fn first_sample_sets_srtt_and_half_variation() {
        let mut r = RttEstimator::default();
        assert_eq!(r.srtt(), None);
        r.update(MS * 10, Duration::ZERO);
        assert_eq!(r.srtt(), Some(MS * 10));
        assert_eq!(r.rttvar, MS * 5);
    }

    #[test]
    fn later_samples_follow_rfc6298() {
        let mut r = RttEstimator::default();
        r.update(MS * 10, Duration::ZERO);
        r.update(MS * 20, Duration::ZERO);
        // rttvar = 3/4·5 + 1/4·|10−20| = 6.25; srtt = 7/8·10 + 1/8·20 = 11.25
        assert_eq!(r.rttvar, Duration::from_micros(6250));
        assert_eq!(r.srtt, Duration::from_micros(11250));
    }

    #[test]
    fn ack_delay_is_subtracted_but_capped() {
        let mut r = RttEstimator::default();
        r.update(MS * 8, MS * 3);
        assert_eq!(r.srtt(), Some(MS * 5));
        let mut r = RttEstimator::default();
        r.update(MS * 100, MS * 90);
        assert_eq!(
            r.srtt(),
            Some(MS * 95),
            "peer may not claim more than MAX_ACK_DELAY"
        );
    }

    #[test]
    fn timeout_has_a_floor_backs_off_and_is_capped() {
        let mut r = RttEstimator::default();
        assert_eq!(r.rto(0), MS * 305, "before a sample: 100 + 4·50 + 5");
        for _ in 0..20 {
            r.update(MS, Duration::ZERO);
        }
        assert_eq!(r.rto(0), MIN_RTO);
        assert_eq!(r.rto(1), MIN_RTO * 3 / 2);
        assert_eq!(r.rto(2), MIN_RTO * 9 / 4);
        assert_eq!(r.rto(30), MAX_RTO);
    }
}
