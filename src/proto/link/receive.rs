//! The receiving half of a link: which packet numbers arrived and when to acknowledge them
//! (RFC 9000 §13.2), the receive window, putting stream items back in order, and the message-id
//! watermark that shows each message once even across restarts.

use super::send::Style;
use crate::proto::ids::MessageId;
use crate::proto::ranges::RangeSet;
use crate::proto::rtt::MAX_ACK_DELAY;
use crate::proto::wire::{Ack, AckRange, Frame, PeerEntry};
use crate::proto::WINDOW;
use std::collections::BTreeMap;
use std::time::Instant;

/// Ranges of received packet numbers remembered for acks.
const ACK_RANGES_KEPT: usize = 32;
/// Bytes an ack frame may take in a datagram that also carries data. With the largest header
/// (35), a `Session` frame (12) and the largest stream item (1052: a Fragment of 1000 bytes
/// with every varint at its longest) this stays within
/// [`crate::proto::wire::MAX_DATAGRAM`], so an item always fits in a datagram of its own.
const ACK_BUDGET: usize = 100;
/// Ack at once after this many ack-eliciting packets (RFC 9000 §13.2.2).
const ACK_EVERY: u32 = 2;
/// A packet number more than this far above the highest one received refuses the datagram.
pub(super) const MAX_PACKET_JUMP: u64 = 1 << 16;

/// What one stream item carries, as received (its sequence number apart).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// A whole message.
    Chat {
        /// Message id.
        msg: MessageId,
        /// Direct or group, action or not.
        style: Style,
        /// How long ago it was written, as the sender said when it sent it.
        age_ms: u64,
        /// The text.
        text: String,
    },
    /// A piece of a message.
    Fragment {
        /// Message id.
        msg: MessageId,
        /// Direct or group, action or not.
        style: Style,
        /// How long ago it was written, as the sender said when it sent this piece.
        age_ms: u64,
        /// Which piece.
        index: u16,
        /// Of how many.
        count: u16,
        /// The piece's bytes.
        data: Vec<u8>,
    },
    /// The sender's new nick.
    Nick(String),
    /// Peers the sender knows.
    Peers(Vec<PeerEntry>),
    /// An opaque payload for the application.
    AppData(Vec<u8>),
    /// The sender is away (with a reason) or back.
    Presence(Option<String>),
}

impl Item {
    /// The sequence number and item of a stream frame; `None` for other frames.
    pub fn from_frame(frame: Frame) -> Option<(u64, Item)> {
        match frame {
            Frame::Chat(c) => Some((
                c.seq,
                Item::Chat {
                    msg: c.msg,
                    style: Style {
                        direct: c.direct,
                        flags: c.flags,
                    },
                    age_ms: c.age_ms,
                    text: c.text,
                },
            )),
            Frame::Fragment(f) => Some((
                f.seq,
                Item::Fragment {
                    msg: f.msg,
                    style: Style {
                        direct: f.direct,
                        flags: f.flags,
                    },
                    age_ms: f.age_ms,
                    index: f.index,
                    count: f.count,
                    data: f.data,
                },
            )),
            Frame::Nick(n) => Some((n.seq, Item::Nick(n.nick))),
            Frame::Peers(p) => Some((p.seq, Item::Peers(p.peers))),
            Frame::AppData(a) => Some((a.seq, Item::AppData(a.data))),
            Frame::Presence(p) => Some((p.seq, Item::Presence(p.away))),
            _ => None,
        }
    }
}

/// The peer's stream towards us, and the acks we owe it.
#[derive(Debug)]
pub struct Receiver {
    /// Packet numbers received, for acks.
    received: RangeSet,
    /// An ack is owed.
    ack_pending: bool,
    /// When the owed ack must go out.
    ack_deadline: Option<Instant>,
    /// Ack-eliciting packets since the last ack sent.
    eliciting_since_ack: u32,
    /// When the highest packet number arrived, for the ack delay field.
    largest_received_at: Option<Instant>,
    /// Next stream sequence number to deliver.
    next: u64,
    /// Items that arrived ahead of a gap, bounded by [`WINDOW`].
    reorder: BTreeMap<u64, Item>,
    /// The highest message id from this peer already shown.
    delivered_msg: MessageId,
    /// Items (and whole messages, by id) that arrived again after delivery.
    duplicates: u64,
    /// Datagrams refused for an item beyond the window or an implausible packet number.
    out_of_window: u64,
}

impl Default for Receiver {
    fn default() -> Self {
        Self {
            received: RangeSet::new(ACK_RANGES_KEPT),
            ack_pending: false,
            ack_deadline: None,
            eliciting_since_ack: 0,
            largest_received_at: None,
            next: 0,
            reorder: BTreeMap::new(),
            delivered_msg: MessageId(0),
            duplicates: 0,
            out_of_window: 0,
        }
    }
}

impl Receiver {
    /// Whether a datagram numbered `packet` with these frames may be taken in. It is refused
    /// (and counted) if an item lies beyond the receive window, or if it asks for an ack with a
    /// packet number far beyond any seen: numbers go up by one per packet, and accepting it
    /// would fill the ack ranges with numbers the sender never used and crowd out the real
    /// ones. With nothing received yet (a new or restarted stream) any number is plausible: the
    /// sender's numbering does not start again when ours does.
    pub fn accepts(&mut self, packet: u64, frames: &[Frame]) -> bool {
        let window_end = self.next.saturating_add(WINDOW);
        let beyond = frames
            .iter()
            .any(|f| f.stream_seq().is_some_and(|seq| seq >= window_end));
        let jump = self
            .received
            .max()
            .is_some_and(|m| packet > m.saturating_add(MAX_PACKET_JUMP));
        let eliciting = frames.iter().any(Frame::is_ack_eliciting);
        if beyond || (eliciting && jump) {
            self.out_of_window += 1;
            return false;
        }
        true
    }

    /// Whether the item numbered `seq` comes after a gap.
    pub fn is_ahead(&self, seq: u64) -> bool {
        seq > self.next
    }

    /// Takes in a stream item; [`Receiver::pop_ready`] then gives the items now in order.
    /// An item already delivered or already waiting is a duplicate: counted and dropped.
    pub fn push(&mut self, seq: u64, item: Item) {
        if seq < self.next || self.reorder.contains_key(&seq) {
            self.duplicates += 1;
            return;
        }
        self.reorder.insert(seq, item);
    }

    /// The next item in stream order, if it has arrived.
    pub fn pop_ready(&mut self) -> Option<Item> {
        let item = self.reorder.remove(&self.next)?;
        self.next += 1;
        Some(item)
    }

    /// An ack-eliciting packet was taken in: an ack is owed, at once if the packet is a
    /// duplicate (our ack was probably lost), out of order (the sender learns of the gap
    /// sooner) or the second since the last ack; otherwise within [`MAX_ACK_DELAY`].
    pub fn on_eliciting_packet(&mut self, now: Instant, packet: u64, out_of_order: bool) {
        let expected = self.received.max().map_or(0, |m| m.saturating_add(1));
        let is_new = self.received.insert(packet);
        if self.received.max() == Some(packet) {
            self.largest_received_at = Some(now);
        }
        self.ack_pending = true;
        self.eliciting_since_ack += 1;
        let immediate =
            !is_new || packet != expected || out_of_order || self.eliciting_since_ack >= ACK_EVERY;
        let deadline = if immediate { now } else { now + MAX_ACK_DELAY };
        self.ack_deadline = Some(self.ack_deadline.map_or(deadline, |d| d.min(deadline)));
    }

    /// When the owed ack must go out, if one is owed.
    pub fn ack_deadline(&self) -> Option<Instant> {
        self.ack_deadline.filter(|_| self.ack_pending)
    }

    /// Whether the next datagram must carry an ack: one is owed, and either it is due or the
    /// datagram goes out anyway (`has_data`), so it may as well ride along.
    pub fn ack_due(&self, now: Instant, has_data: bool) -> bool {
        self.ack_pending && (has_data || self.ack_deadline.is_some_and(|d| d <= now))
    }

    /// The ack frame to send now (the highest ranges that fit its budget), and the debt
    /// settled.
    pub fn take_ack(&mut self, now: Instant) -> Option<Frame> {
        self.ack_pending = false;
        self.ack_deadline = None;
        self.eliciting_since_ack = 0;
        let delay_us = self.largest_received_at.map_or(0, |t| {
            u64::try_from(now.saturating_duration_since(t).as_micros()).unwrap_or(u64::MAX)
        });
        let ranges: Vec<AckRange> = self
            .received
            .iter_desc()
            .map(|(first, last)| AckRange { first, last })
            .collect();
        let mut ack = Ack { delay_us, ranges };
        // Usually one or two ranges; only after heavy loss do the oldest have to go.
        while ack.ranges.len() > 1 && Frame::Ack(ack.clone()).encoded_len() > ACK_BUDGET {
            ack.ranges.pop();
        }
        (!ack.ranges.is_empty()).then_some(Frame::Ack(ack))
    }

    /// Whether a whole message may be shown: only if its id is above the watermark. A sender's
    /// messages to us arrive in id order, so an id at or below it was shown before (a resend
    /// after a restart); that one is counted as a duplicate.
    pub fn accept_message(&mut self, msg: MessageId) -> bool {
        if msg <= self.delivered_msg {
            self.duplicates += 1;
            return false;
        }
        self.delivered_msg = msg;
        true
    }

    /// The highest message id from this peer already shown.
    pub fn delivered_through(&self) -> MessageId {
        self.delivered_msg
    }

    /// Raises the watermark of messages already shown (restored from storage after a
    /// restart, so a message resent across restarts is shown once).
    pub fn set_delivered_through(&mut self, id: MessageId) {
        self.delivered_msg = self.delivered_msg.max(id);
    }

    /// The peer restarted: its packet numbers and its stream start again. The watermark stays.
    pub fn restart(&mut self) {
        *self = Self {
            delivered_msg: self.delivered_msg,
            duplicates: self.duplicates,
            out_of_window: self.out_of_window,
            ..Self::default()
        };
    }

    /// Duplicates counted since the start.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Datagrams refused since the start.
    pub fn out_of_window(&self) -> u64 {
        self.out_of_window
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::wire::Chat;
    use std::time::Duration;

    fn chat(seq: u64) -> Frame {
        Frame::Chat(Chat {
            seq,
            msg: MessageId(seq + 1),
            direct: false,
            text: format!("m{seq}"),
            flags: 0,
            age_ms: 0,
        })
    }

    fn nick(n: &str) -> Item {
        Item::Nick(n.to_owned())
    }

    fn ranges(f: Option<Frame>) -> Vec<(u64, u64)> {
        match f {
            Some(Frame::Ack(a)) => a.ranges.iter().map(|r| (r.first, r.last)).collect(),
            other => panic!("not an ack: {other:?}"),
        }
    }

    #[test]
    fn items_are_given_in_order_once() {
        let mut r = Receiver::default();
        r.push(1, nick("b"));
        assert_eq!(r.pop_ready(), None, "held behind the gap at 0");
        assert!(r.is_ahead(1) && !r.is_ahead(0));
        r.push(1, nick("b"));
        assert_eq!(r.duplicates(), 1, "already waiting");
        r.push(0, nick("a"));
        assert_eq!(r.pop_ready(), Some(nick("a")));
        assert_eq!(r.pop_ready(), Some(nick("b")));
        assert_eq!(r.pop_ready(), None);
        r.push(0, nick("a"));
        assert_eq!(r.duplicates(), 2, "already delivered");
    }

    #[test]
    fn the_window_and_packet_number_jumps_are_refused() {
        let mut r = Receiver::default();
        assert!(r.accepts(1 << 40, &[chat(0)]), "anything goes at first");
        r.on_eliciting_packet(Instant::now(), 5, false);
        assert!(!r.accepts(6, &[chat(WINDOW)]), "beyond the window");
        assert!(r.accepts(6, &[chat(WINDOW - 1)]));
        assert!(!r.accepts(5 + MAX_PACKET_JUMP + 1, &[Frame::Ping]));
        assert!(
            r.accepts(5 + MAX_PACKET_JUMP + 1, &[]),
            "a datagram that asks for no ack is not recorded, so its number does not matter"
        );
        assert_eq!(r.out_of_window(), 2);
    }

    #[test]
    fn an_in_order_packet_is_acked_after_a_delay_or_with_the_second() {
        let now = Instant::now();
        let mut r = Receiver::default();
        r.on_eliciting_packet(now, 0, false);
        assert_eq!(r.ack_deadline(), Some(now + MAX_ACK_DELAY));
        assert!(!r.ack_due(now, false));
        assert!(r.ack_due(now, true), "rides along with data");
        let later = now + Duration::from_millis(1);
        r.on_eliciting_packet(later, 1, false);
        assert_eq!(r.ack_deadline(), Some(later), "every second packet at once");
        assert_eq!(ranges(r.take_ack(later)), vec![(0, 1)]);
        assert_eq!(r.ack_deadline(), None);
    }

    #[test]
    fn gaps_duplicates_and_reordering_are_acked_at_once() {
        let now = Instant::now();
        let mut r = Receiver::default();
        r.on_eliciting_packet(now, 0, false);
        r.take_ack(now);
        r.on_eliciting_packet(now, 2, false);
        assert_eq!(r.ack_deadline(), Some(now), "packet 1 is missing");
        assert_eq!(ranges(r.take_ack(now)), vec![(2, 2), (0, 0)]);
        r.on_eliciting_packet(now, 2, false);
        assert_eq!(r.ack_deadline(), Some(now), "a duplicate");
        r.take_ack(now);
        r.on_eliciting_packet(now, 3, true);
        assert_eq!(r.ack_deadline(), Some(now), "its items came after a gap");
    }

    #[test]
    fn the_ack_reports_its_delay_and_keeps_to_its_budget() {
        let now = Instant::now();
        let mut r = Receiver::default();
        for pn in (0..100).step_by(2) {
            r.on_eliciting_packet(now, pn, false);
        }
        let f = r.take_ack(now + Duration::from_micros(300)).unwrap();
        assert!(f.encoded_len() <= ACK_BUDGET);
        let Frame::Ack(a) = f else { unreachable!() };
        assert_eq!(a.delay_us, 300);
        assert_eq!(
            a.ranges.first(),
            Some(&AckRange {
                first: 98,
                last: 98
            })
        );
        assert!(a.ranges.len() > 1, "as many of the highest ranges as fit");
    }

    #[test]
    fn the_watermark_shows_each_message_once_across_restarts() {
        let mut r = Receiver::default();
        r.set_delivered_through(MessageId(4));
        assert!(!r.accept_message(MessageId(4)));
        assert!(r.accept_message(MessageId(5)));
        r.push(0, nick("x"));
        r.on_eliciting_packet(Instant::now(), 9, false);
        r.restart();
        assert_eq!(r.delivered_through(), MessageId(5));
        assert_eq!(r.pop_ready(), None, "the old stream's items are gone");
        assert_eq!(r.ack_deadline(), None);
        assert!(!r.accept_message(MessageId(5)));
        assert_eq!(r.duplicates(), 2);
    }
}
