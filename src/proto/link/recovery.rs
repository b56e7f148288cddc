//! Loss recovery for one link: the packets in flight, what acknowledges them, which are lost
//! (RFC 9002 §6.1: three later packets acknowledged, or sent 9/8 RTT before one that was), the
//! round-trip time, and the retransmission timeout with its back-off.
//!
//! Packet numbers are never reused, so every ack is unambiguous and every RTT sample clean.
//! What a packet carried is kept as a [`Carried`] and handed back on its ack or its loss; the
//! send queue decides what that means.

use super::send::Carried;
use crate::proto::rtt::{RttEstimator, MAX_RTO};
use crate::proto::wire::Ack;
use crate::proto::UNREACHABLE_AFTER;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A packet is lost once this many later packets have been acknowledged (RFC 9002 §6.1.1).
const PACKET_THRESHOLD: u64 = 3;

/// Packets declared lost that are remembered, so that a late ack of one still counts: it
/// proves the loss spurious (the packet was only late), gives the RTT sample that explains
/// it, and acknowledges what the packet carried. Without it a host too busy to answer within
/// the timeout never gets a sample (every ack names a packet already declared lost), keeps
/// its short timeout and retransmits into the queue that made it late.
const LOST_KEPT: usize = 64;

/// A sent ack-eliciting packet awaiting its ack.
#[derive(Debug)]
struct SentPacket {
    /// When it left.
    time: Instant,
    /// What it carried.
    carried: Carried,
}

/// Packets in flight towards one peer, and the clocks that decide when they are lost.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Round-trip time towards this peer.
    rtt: RttEstimator,
    /// Consecutive timeouts without an ack; the timeout grows 1.5× with each.
    backoff: u32,
    /// Next packet number to use; never reused.
    next_packet: u64,
    /// Ack-eliciting packets in flight, by packet number.
    sent: BTreeMap<u64, SentPacket>,
    /// The latest [`LOST_KEPT`] packets declared lost, by packet number: an ack may still
    /// name them.
    lost: BTreeMap<u64, SentPacket>,
    /// Acks that named a packet already declared lost (for [`crate::proto::LinkCounters`]).
    spurious: u64,
    /// Highest packet number the peer has acknowledged.
    largest_acked: Option<u64>,
    /// When the last ack-eliciting packet left (the timeout counts from it).
    last_eliciting_sent: Option<Instant>,
    /// Since when outstanding data has waited without any ack progress.
    waiting_since: Option<Instant>,
    /// Retransmission timeouts that fired (for [`crate::proto::LinkCounters`]).
    timeouts: u64,
}

impl Recovery {
    /// The packet number the next packet gets.
    pub fn next_packet(&self) -> u64 {
        self.next_packet
    }

    /// The round-trip time measured so far.
    pub fn srtt(&self) -> Option<Duration> {
        self.rtt.srtt()
    }

    /// Takes an RTT measured outside the link (the handshake), if there is none yet, until
    /// the first ack gives one (see [`crate::proto::rtt::RttEstimator::provisional`]).
    pub fn first_rtt_sample(&mut self, rtt: Duration) {
        self.rtt.provisional(rtt);
    }

    /// Whether any ack-eliciting packet awaits its ack.
    pub fn in_flight(&self) -> bool {
        !self.sent.is_empty()
    }

    /// An ack-eliciting packet numbered [`Recovery::next_packet`] left at `now`.
    pub fn on_packet_sent(&mut self, now: Instant, carried: Carried) {
        if self.sent.is_empty() && self.waiting_since.is_none() {
            self.waiting_since = Some(now);
        }
        self.sent
            .insert(self.next_packet, SentPacket { time: now, carried });
        self.last_eliciting_sent = Some(now);
        self.next_packet += 1;
    }

    /// An ack arrived. Returns what the newly acknowledged packets carried (in the order the
    /// ack lists them), or `None` if it acknowledged nothing new. Only packets we really sent
    /// count: an ack may name numbers we never used (a forged or replayed datagram reached the
    /// peer), and must not move anything on.
    pub fn on_ack(&mut self, now: Instant, ack: &Ack) -> Option<Vec<Carried>> {
        let largest = ack.ranges.first()?.last;
        let mut newly: Vec<(u64, SentPacket)> = Vec::new();
        let mut late: Option<(u64, Instant)> = None;
        for r in &ack.ranges {
            for (was_lost, map) in [(false, &mut self.sent), (true, &mut self.lost)] {
                let pns: Vec<u64> = map.range(r.first..=r.last).map(|(&pn, _)| pn).collect();
                for pn in pns {
                    let Some(p) = map.remove(&pn) else { continue };
                    if was_lost && late.is_none_or(|(l, _)| pn > l) {
                        late = Some((pn, p.time));
                    }
                    newly.push((pn, p));
                }
            }
        }
        let largest_newly = newly.iter().map(|(pn, _)| *pn).max()?;
        if let Some((_, p)) = newly.iter().find(|(pn, _)| *pn == largest) {
            // The ack was sent for its largest number: the sample, with the delay it reports.
            self.rtt.update(
                now.saturating_duration_since(p.time),
                Duration::from_micros(ack.delay_us),
            );
        } else if let Some((_, sent)) = late {
            // A packet declared lost was only late: its round trip (an upper bound, the ack
            // delay unknown) is what the timeout missed.
            self.rtt
                .update(now.saturating_duration_since(sent), Duration::ZERO);
        }
        if late.is_some() {
            self.spurious += 1;
        }
        self.largest_acked = Some(
            self.largest_acked
                .map_or(largest_newly, |l| l.max(largest_newly)),
        );
        self.backoff = 0;
        self.waiting_since = (!self.sent.is_empty()).then_some(now);
        Some(newly.into_iter().map(|(_, p)| p.carried).collect())
    }

    /// Removes and returns the packets a later ack proves lost (RFC 9002 §6.1).
    pub fn detect_lost(&mut self, now: Instant) -> Vec<Carried> {
        let Some(largest) = self.largest_acked else {
            return Vec::new();
        };
        let delay = self.rtt.loss_delay();
        let lost: Vec<u64> = self
            .sent
            .range(..largest)
            .filter(|(&pn, p)| largest - pn >= PACKET_THRESHOLD || p.time + delay <= now)
            .map(|(&pn, _)| pn)
            .collect();
        lost.into_iter()
            .filter_map(|pn| self.sent.remove(&pn).map(|p| self.remember_lost(pn, p)))
            .collect()
    }

    /// Keeps a packet declared lost among the latest [`LOST_KEPT`]; returns what it carried.
    fn remember_lost(&mut self, pn: u64, p: SentPacket) -> Carried {
        let carried = p.carried.clone();
        self.lost.insert(pn, p);
        while self.lost.len() > LOST_KEPT {
            self.lost.pop_first();
        }
        carried
    }

    /// When [`Recovery::detect_lost`] will next declare a packet lost by time.
    pub fn loss_deadline(&self) -> Option<Instant> {
        let largest = self.largest_acked?;
        let delay = self.rtt.loss_delay();
        self.sent
            .range(..largest)
            .next()
            .map(|(_, p)| p.time + delay)
    }

    /// When the retransmission timeout fires, if anything is in flight. Towards a peer
    /// declared unreachable (`probing`) it is at most [`MAX_RTO`], whatever the estimate: an
    /// estimate swollen while a host was overloaded must not space out the one packet that
    /// finds out it answers again (it costs one datagram per 2 s).
    pub fn rto_deadline(&self, probing: bool) -> Option<Instant> {
        if self.sent.is_empty() {
            return None;
        }
        let rto = self.rtt.rto(self.backoff);
        let rto = if probing { rto.min(MAX_RTO) } else { rto };
        self.last_eliciting_sent.map(|s| s + rto)
    }

    /// If the retransmission timeout has fired at `now`: counts it, backs the timeout off, and
    /// returns everything in flight, presumed lost. `None` if it has not fired.
    pub fn on_rto(&mut self, now: Instant, probing: bool) -> Option<Vec<Carried>> {
        if self.rto_deadline(probing).is_none_or(|t| t > now) {
            return None;
        }
        self.timeouts += 1;
        self.backoff = self.backoff.saturating_add(1);
        Some(self.take_all())
    }

    /// Removes and returns everything in flight (to be sent again).
    pub fn take_all(&mut self) -> Vec<Carried> {
        std::mem::take(&mut self.sent)
            .into_iter()
            .map(|(pn, p)| self.remember_lost(pn, p))
            .collect()
    }

    /// Sends at the base timeout again (the peer was heard, so it is worth trying quickly).
    pub fn reset_backoff(&mut self) {
        self.backoff = 0;
    }

    /// When outstanding data will have waited [`UNREACHABLE_AFTER`] without an ack.
    pub fn unreachable_deadline(&self) -> Option<Instant> {
        self.waiting_since.map(|w| w + UNREACHABLE_AFTER)
    }

    /// The peer came back: the unreachable clock starts afresh.
    pub fn clear_waiting(&mut self) {
        self.waiting_since = None;
    }

    /// The peer restarted: acks from now on are about a new run's view of our packets.
    pub fn forget_acks(&mut self) {
        self.largest_acked = None;
        self.sent.clear();
        self.lost.clear();
    }

    /// Retransmission timeouts that fired, since the start.
    pub fn timeouts(&self) -> u64 {
        self.timeouts
    }

    /// Acks that named a packet already declared lost (a spurious loss), since the start.
    pub fn spurious(&self) -> u64 {
        self.spurious
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::rtt::{MAX_RTO, MIN_RTO};
    use crate::proto::wire::AckRange;

    const MS: Duration = Duration::from_millis(1);

    fn carrying(seq: u64) -> Carried {
        Carried {
            seqs: vec![seq],
            ..Carried::default()
        }
    }

    fn ack(ranges: &[(u64, u64)]) -> Ack {
        Ack {
            delay_us: 0,
            ranges: ranges
                .iter()
                .map(|&(first, last)| AckRange { first, last })
                .collect(),
        }
    }

    /// `n` packets sent 1 ms apart from `t0`, packet `i` carrying item `i`.
    fn sent(n: u64, t0: Instant) -> Recovery {
        let mut r = Recovery::default();
        for i in 0..n {
            r.on_packet_sent(t0 + MS * i as u32, carrying(i));
        }
        r
    }

    #[test]
    fn an_ack_returns_what_the_packets_carried_and_samples_the_largest() {
        let t0 = Instant::now();
        let mut r = sent(3, t0);
        let got = r.on_ack(t0 + MS * 12, &ack(&[(1, 2)])).unwrap();
        assert_eq!(got, vec![carrying(1), carrying(2)]);
        assert_eq!(r.srtt(), Some(MS * 10), "12 ms now − 2 ms sent");
        assert!(
            r.on_ack(t0 + MS * 13, &ack(&[(1, 2)])).is_none(),
            "nothing new"
        );
    }

    #[test]
    fn an_ack_of_numbers_never_sent_changes_nothing() {
        let t0 = Instant::now();
        let mut r = sent(2, t0);
        assert!(r.on_ack(t0 + MS, &ack(&[(500, 900)])).is_none());
        assert_eq!(r.srtt(), None);
        assert!(
            r.detect_lost(t0 + MS * 100).is_empty(),
            "no largest acked yet"
        );
    }

    #[test]
    fn a_packet_three_behind_an_acknowledged_one_is_lost_at_once() {
        let t0 = Instant::now();
        let mut r = sent(5, t0);
        // A 100 ms RTT, so that no packet here is lost by time.
        let at = t0 + MS * 103;
        r.on_ack(at, &ack(&[(3, 3)])).unwrap();
        // 3 − 0 ≥ 3: packet 0 is lost; 1 and 2 are not (yet).
        assert_eq!(r.detect_lost(at), vec![carrying(0)]);
        r.on_ack(at + MS, &ack(&[(4, 4)])).unwrap();
        assert_eq!(r.detect_lost(at + MS), vec![carrying(1)]);
    }

    #[test]
    fn a_packet_sent_well_before_an_acknowledged_one_is_lost_after_the_loss_delay() {
        let t0 = Instant::now();
        let mut r = sent(2, t0);
        let acked_at = t0 + MS * 11;
        r.on_ack(acked_at, &ack(&[(1, 1)])).unwrap(); // RTT 10 ms
        assert!(r.detect_lost(acked_at).is_empty());
        let deadline = r.loss_deadline().unwrap();
        assert_eq!(deadline, t0 + Duration::from_micros(11_250), "9/8 of 10 ms");
        assert_eq!(r.detect_lost(deadline), vec![carrying(0)]);
        assert_eq!(r.loss_deadline(), None);
    }

    #[test]
    fn a_late_ack_of_a_packet_presumed_lost_acknowledges_it_and_lengthens_the_timeout() {
        let t0 = Instant::now();
        let mut r = sent(1, t0);
        // A 1 ms LAN round trip. Then the peer's host gets busy: its answers now take 3 s.
        // Packet 1 times out, goes again as packet 2, which times out too.
        r.on_ack(t0 + MS, &ack(&[(0, 0)])).unwrap();
        r.on_packet_sent(t0 + MS * 10, carrying(1));
        let first = r.rto_deadline(false).unwrap();
        assert_eq!(r.on_rto(first, false), Some(vec![carrying(1)]));
        r.on_packet_sent(first, carrying(1));
        let second = r.rto_deadline(false).unwrap();
        assert_eq!(r.on_rto(second, false), Some(vec![carrying(1)]));
        // Packet 1's ack arrives 3 s after it left: its item is acknowledged, and the round
        // trip it took is learned.
        let late = t0 + MS * 3010;
        assert_eq!(r.on_ack(late, &ack(&[(1, 1)])), Some(vec![carrying(1)]));
        assert_eq!(r.spurious(), 1);
        assert!(r.srtt().unwrap() > MS * 300);
        // The next packet waits longer than that round trip before it is sent again (the
        // 2 s cap of the back-off does not cut a timeout measured longer).
        r.on_packet_sent(late, carrying(2));
        assert!(r.rto_deadline(false).unwrap() > late + MS * 3000);
        assert!(r.on_rto(late + MS * 2999, false).is_none());
        // Towards a peer declared unreachable the one packet out goes again within 2 s, so
        // that a swollen estimate does not delay finding out it answers again.
        assert_eq!(r.rto_deadline(true), Some(late + MAX_RTO));
        // Packet 2's ack, later still, is no news to the items (already acknowledged) but
        // counts: forgetting lost packets is bounded.
        assert_eq!(
            r.on_ack(late + MS, &ack(&[(2, 2)])),
            Some(vec![carrying(1)])
        );
        for i in 0..(LOST_KEPT as u64 + 10) {
            r.on_packet_sent(late, carrying(i));
        }
        r.take_all();
        assert_eq!(r.lost.len(), LOST_KEPT);
    }

    #[test]
    fn the_timeout_backs_off_and_an_ack_resets_it() {
        let t0 = Instant::now();
        let mut r = sent(1, t0);
        r.on_ack(t0 + MS, &ack(&[(0, 0)])).unwrap(); // RTT 1 ms: the floor applies
        assert_eq!(r.rto_deadline(false), None, "nothing in flight");
        let t1 = t0 + MS * 10;
        r.on_packet_sent(t1, carrying(1));
        assert_eq!(r.rto_deadline(false), Some(t1 + MIN_RTO));
        assert!(r.on_rto(t1 + MIN_RTO - MS, false).is_none());
        assert_eq!(r.on_rto(t1 + MIN_RTO, false), Some(vec![carrying(1)]));
        assert_eq!(r.timeouts(), 1);
        let t2 = t1 + MIN_RTO;
        r.on_packet_sent(t2, carrying(1));
        assert_eq!(
            r.rto_deadline(false),
            Some(t2 + MIN_RTO * 3 / 2),
            "1.5× after one"
        );
        for _ in 0..30 {
            let at = r.rto_deadline(false).unwrap();
            r.on_rto(at, false).unwrap();
            r.on_packet_sent(at, carrying(1));
        }
        let sent_at = r.last_eliciting_sent.unwrap();
        assert_eq!(r.rto_deadline(false).unwrap() - sent_at, MAX_RTO, "capped");
        let pn = r.next_packet() - 1;
        r.on_ack(sent_at + MS, &ack(&[(pn, pn)])).unwrap();
        let t3 = sent_at + MS * 2;
        r.on_packet_sent(t3, carrying(2));
        assert_eq!(
            r.rto_deadline(false),
            Some(t3 + MIN_RTO),
            "reset by the ack"
        );
    }

    #[test]
    fn waiting_without_ack_progress_leads_to_the_unreachable_deadline() {
        let t0 = Instant::now();
        let mut r = Recovery::default();
        assert_eq!(r.unreachable_deadline(), None);
        r.on_packet_sent(t0, carrying(0));
        r.on_packet_sent(t0 + MS, carrying(1));
        assert_eq!(r.unreachable_deadline(), Some(t0 + UNREACHABLE_AFTER));
        r.on_ack(t0 + MS * 5, &ack(&[(0, 0)])).unwrap();
        assert_eq!(
            r.unreachable_deadline(),
            Some(t0 + MS * 5 + UNREACHABLE_AFTER),
            "progress restarts the clock while something is still in flight"
        );
        r.on_ack(t0 + MS * 6, &ack(&[(0, 1)])).unwrap();
        assert_eq!(r.unreachable_deadline(), None);
    }

    #[test]
    fn packet_numbers_are_never_reused() {
        let t0 = Instant::now();
        let mut r = sent(3, t0);
        assert_eq!(r.take_all().len(), 3);
        r.forget_acks();
        assert_eq!(r.next_packet(), 3);
    }
}
