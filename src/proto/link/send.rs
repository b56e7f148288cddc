//! The sending half of a link: the queue of stream items (messages, fragments, nick changes,
//! peer lists), the send window, and packing items into datagrams. Which items a lost packet
//! carried comes back here ([`SendQueue::on_lost`]) to be sent again; which ones an ack
//! covered ([`SendQueue::on_acked`]) is what delivery reports are made of.

use super::LinkEvent;
use crate::proto::ids::MessageId;
use crate::proto::wire::{self, kind, Frame, PeerEntry, MAX_DATAGRAM};
use crate::proto::{DELAYED_AFTER, FRAGMENT_BYTES, MAX_MESSAGE_BYTES, WINDOW};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a message is meant: to whom, and as what.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Style {
    /// To the receiver alone rather than to the group.
    pub direct: bool,
    /// Bits of [`wire::flags`].
    pub flags: u64,
}

impl Style {
    /// A message to one peer (`direct`) or the group, an action (`/me`) or not.
    pub fn new(direct: bool, action: bool) -> Self {
        let flags = if action { wire::flags::ACTION } else { 0 };
        Self { direct, flags }
    }

    /// Whether it is an action.
    pub fn is_action(self) -> bool {
        self.flags & wire::flags::ACTION != 0
    }
}

/// A message's stream items as (frame kind, encoded fields after the sequence number, up to
/// but not including the age).
/// A message's frames, each encoded once (kind, fields after the sequence number). A group
/// message's are made once and shared by every peer's queue: its bytes are held once, not once
/// per peer.
pub type Pieces = Vec<(u32, Arc<[u8]>)>;

/// Why a message could not be queued.
#[derive(Debug, PartialEq, Eq)]
pub enum QueueError {
    /// The per-peer queue bound ([`crate::proto::Limits::max_queued_items`]) would be passed;
    /// `first` for the first refusal since the queue last had room (so the user is told once,
    /// not per message).
    Full {
        /// First refusal since there was room.
        first: bool,
    },
}

/// What one packet carried that needs an ack: given back on its ack or its loss.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Carried {
    /// Stream items it carried.
    pub seqs: Vec<u64>,
    /// Whether it carried a ping.
    pub ping: bool,
    /// Whether it carried a leave.
    pub leave: bool,
}

impl Carried {
    /// Whether the receiver must acknowledge the packet (a ping alone counts too).
    pub fn is_ack_eliciting(&self) -> bool {
        !self.seqs.is_empty() || self.ping || self.leave
    }
}

/// An item the peer has not acknowledged yet, encoded once (it may be sent several times).
#[derive(Debug)]
struct OutItem {
    /// Frame kind (`Chat`, `Fragment`, `Nick` or `Peers`).
    kind: u32,
    /// The frame's fields after the sequence number, already encoded (shared with the
    /// message's pieces, kept for a restart).
    fields: Arc<[u8]>,
    /// An application payload the application took back ([`SendQueue::withdraw_app_data`]):
    /// not carried into a restarted stream.
    withdrawn: bool,
    /// The message it belongs to, for the delivery report; its frames end with the message's
    /// age, encoded anew at each sending from when it was written ([`PendingMessage`]: kept
    /// there once, not in each of its items, which a queue may hold thousands of).
    msg: Option<MessageId>,
}

/// When a message was written, as a time the queue knows and how long before it.
#[derive(Clone, Copy, Debug)]
struct Written {
    /// When it was queued in this run.
    queued: Instant,
    /// How long before that it was written (zero but for one restored from storage).
    before: Duration,
}

impl Written {
    /// Its age at `now`, in milliseconds.
    fn age_ms(self, now: Instant) -> u64 {
        let age = now.saturating_duration_since(self.queued) + self.before;
        u64::try_from(age.as_millis()).unwrap_or(u64::MAX)
    }
}

/// A message not yet acknowledged in full.
#[derive(Debug)]
struct PendingMessage {
    /// Its items, encoded, kept whole so that it can be sent again from the start if the peer
    /// restarts (a new stream) while only part of it was acknowledged.
    pieces: Pieces,
    /// Items of it still unacknowledged.
    remaining: u32,
    /// Sequence number of its last item in the current stream.
    last_seq: u64,
    /// When it was queued, for the delay notice.
    queued_at: Instant,
    /// When it was written (earlier than `queued_at` for a message restored from storage).
    written: Written,
    /// Whether [`LinkEvent::Delayed`] has been reported.
    delay_reported: bool,
}

/// Our stream towards one peer: what is queued, what is unsent, and what each message still
/// waits for.
#[derive(Debug)]
pub struct SendQueue {
    /// Items queued at most (unacknowledged ones count); see [`QueueError::Full`].
    max_items: usize,
    /// Next stream sequence number to give an item.
    next_seq: u64,
    /// Items not yet acknowledged, by sequence number.
    items: BTreeMap<u64, OutItem>,
    /// Sequence numbers to (re)send, lowest first; always a subset of `items`' keys.
    unsent: BTreeSet<u64>,
    /// Messages not yet acknowledged in full.
    messages: BTreeMap<MessageId, PendingMessage>,
    /// Messages up to this id have been checked for the delay notice. Ids grow with the time
    /// they were queued, so the unchecked ones are a suffix and the timer needs only the first.
    delay_checked: MessageId,
    /// A ping is waiting to be sent.
    ping_pending: bool,
    /// A leave is waiting to be sent.
    leave_pending: bool,
    /// A leave was sent and is not yet acknowledged.
    leave_unacked: bool,
    /// A message was refused for a full queue and the queue has not had room since.
    full_reported: bool,
    /// Items put back for sending after a loss (for [`crate::proto::LinkCounters`]).
    retransmitted: u64,
}

impl SendQueue {
    /// An empty queue that holds at most `max_items` items.
    pub fn new(max_items: usize) -> Self {
        Self {
            max_items,
            next_seq: 0,
            items: BTreeMap::new(),
            unsent: BTreeSet::new(),
            messages: BTreeMap::new(),
            delay_checked: MessageId(0),
            ping_pending: false,
            leave_pending: false,
            leave_unacked: false,
            full_reported: false,
            retransmitted: 0,
        }
    }

    /// Queues a message, split into fragments if needed.
    ///
    /// # Errors
    /// [`QueueError::Full`] if it would pass the queue bound.
    #[cfg(test)]
    pub fn queue_message(
        &mut self,
        now: Instant,
        msg: MessageId,
        style: Style,
        text: &str,
    ) -> Result<(), QueueError> {
        self.queue_pieces(now, msg, &pieces(msg, style, text))
    }

    /// Queues message `msg` made into `pieces` (by [`pieces`], maybe for other peers too).
    ///
    /// # Errors
    /// [`QueueError::Full`] if it would pass the queue bound.
    pub fn queue_pieces(
        &mut self,
        now: Instant,
        msg: MessageId,
        pieces: &Pieces,
    ) -> Result<(), QueueError> {
        if self.items.len() + pieces.len() > self.max_items {
            let first = !self.full_reported;
            self.full_reported = true;
            return Err(QueueError::Full { first });
        }
        let written = Written {
            queued: now,
            before: Duration::ZERO,
        };
        self.enqueue(now, written, msg, pieces.clone());
        Ok(())
    }

    /// Queues a message an earlier run accepted (restored from storage). The queue bound does
    /// not apply: refusing one would leave a gap in the ids, and the receiver's watermark
    /// would then swallow the missing message when it came later. It was written `before`
    /// `now`.
    pub fn requeue_message(
        &mut self,
        now: Instant,
        before: Duration,
        msg: MessageId,
        style: Style,
        text: &str,
    ) {
        let written = Written {
            queued: now,
            before,
        };
        self.enqueue(now, written, msg, pieces(msg, style, text));
    }

    /// Queues a message's pieces and remembers them whole until it is delivered.
    fn enqueue(&mut self, now: Instant, written: Written, msg: MessageId, pieces: Pieces) {
        for (kind, fields) in &pieces {
            self.push_message_item(*kind, fields.clone(), msg);
        }
        self.messages.insert(
            msg,
            PendingMessage {
                last_seq: self.next_seq.saturating_sub(1),
                remaining: u32::try_from(pieces.len()).unwrap_or(u32::MAX),
                pieces,
                queued_at: now,
                written,
                delay_reported: false,
            },
        );
    }

    /// Queues peer-exchange entries (at most [`wire::MAX_PEER_ENTRIES`] per frame).
    /// Each frame's entries are chosen to fit in one datagram beside a header and an ack.
    pub fn queue_peers(&mut self, peers: &[PeerEntry]) {
        let mut chunk: Vec<PeerEntry> = Vec::new();
        for entry in peers {
            chunk.push(entry.clone());
            let too_big = wire::stream_fields(&chunk).len() > FRAGMENT_BYTES;
            if too_big || chunk.len() > wire::MAX_PEER_ENTRIES {
                // The entry just pushed starts the next frame; the ones before it fit.
                chunk.pop();
                if !chunk.is_empty() {
                    self.push_item(kind::PEERS, wire::stream_fields(&chunk).into(), None);
                }
                chunk = vec![entry.clone()];
            }
        }
        if !chunk.is_empty() {
            self.push_item(kind::PEERS, wire::stream_fields(&chunk).into(), None);
        }
    }

    /// Queues an opaque application payload.
    ///
    /// # Errors
    /// [`QueueError::Full`] if it would pass the queue bound.
    pub fn queue_app_data(&mut self, data: &[u8]) -> Result<(), QueueError> {
        if self.items.len() >= self.max_items {
            let first = !self.full_reported;
            self.full_reported = true;
            return Err(QueueError::Full { first });
        }
        self.push_item(kind::APP_DATA, wire::stream_fields(&data).into(), None);
        Ok(())
    }

    /// Takes back an application payload queued earlier and not yet acknowledged (the first
    /// such copy of `data`): it is not carried into a restarted stream, so a peer that
    /// restarts before acknowledging it never sees it. In the current stream it keeps its
    /// place (it may have been sent already, and its sequence number is the peer's to
    /// expect). Returns whether such a payload was queued.
    pub fn withdraw_app_data(&mut self, data: &[u8]) -> bool {
        let fields: Arc<[u8]> = wire::stream_fields(&data).into();
        let found = self
            .items
            .values_mut()
            .find(|i| i.kind == kind::APP_DATA && !i.withdrawn && i.fields == fields);
        found.map(|i| i.withdrawn = true).is_some()
    }

    /// Drops every message not yet acknowledged (their items too; other items stay): the
    /// peer will never take them (see [`crate::proto::Event::Superseded`]). Returns their
    /// ids.
    pub fn drop_messages(&mut self) -> Vec<MessageId> {
        let ids: Vec<MessageId> = self.messages.keys().copied().collect();
        self.items.retain(|_, i| i.msg.is_none());
        let items = &self.items;
        self.unsent.retain(|seq| items.contains_key(seq));
        self.messages.clear();
        ids
    }

    /// Queues a nick change, ordered after everything queued before it.
    pub fn queue_nick(&mut self, nick: &str) {
        self.push_item(kind::NICK, wire::stream_fields(&nick).into(), None);
    }

    /// Queues a leave; it goes out even to a peer that is not answering.
    pub fn queue_leave(&mut self) {
        self.leave_pending = true;
    }

    /// Asks for a ping in the next datagram (keepalive, or a probe after a timeout).
    pub fn request_ping(&mut self) {
        self.ping_pending = true;
    }

    /// Queues a presence change (away with a reason, or back), ordered after everything
    /// queued before it.
    pub fn queue_presence(&mut self, away: Option<&str>) {
        self.push_item(kind::PRESENCE, wire::stream_fields(&away).into(), None);
    }

    /// Gives an item the next sequence number and marks it for sending.
    fn push_item(&mut self, kind: u32, fields: Arc<[u8]>, msg: Option<MessageId>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.items.insert(
            seq,
            OutItem {
                kind,
                fields,
                msg,
                withdrawn: false,
            },
        );
        self.unsent.insert(seq);
    }

    /// [`Self::push_item`] for a piece of message `msg` (its [`PendingMessage`] says when it
    /// was written).
    fn push_message_item(&mut self, kind: u32, fields: Arc<[u8]>, msg: MessageId) {
        self.push_item(kind, fields, Some(msg));
    }

    /// The peer restarted (a new session): the stream starts again from sequence number 0.
    /// Unacknowledged messages are queued again, whole and in id order (the receiver's
    /// message-id watermark drops any it had already shown), then unacknowledged application
    /// payloads, in their order (the application may see one again: it must be idempotent).
    /// Nick changes and peer lists in flight are dropped: the peer's hello carries the nick,
    /// and peers are exchanged again on rejoining.
    pub fn restart_stream(&mut self) {
        let app_data: Vec<Arc<[u8]>> = self
            .items
            .values()
            .filter(|i| i.kind == kind::APP_DATA && !i.withdrawn)
            .map(|i| i.fields.clone())
            .collect();
        self.items.clear();
        self.unsent.clear();
        self.next_seq = 0;
        let pending: Vec<(MessageId, Pieces)> = self
            .messages
            .iter()
            .map(|(&id, m)| (id, m.pieces.clone()))
            .collect();
        for (id, pieces) in pending {
            let count = u32::try_from(pieces.len()).unwrap_or(u32::MAX);
            for (kind, fields) in pieces {
                self.push_message_item(kind, fields, id);
            }
            if let Some(m) = self.messages.get_mut(&id) {
                m.remaining = count;
                m.last_seq = self.next_seq.saturating_sub(1);
            }
        }
        for fields in app_data {
            self.push_item(kind::APP_DATA, fields, None);
        }
    }

    /// Messages queued and not yet acknowledged.
    pub fn undelivered(&self) -> usize {
        self.messages.len()
    }

    /// Our messages from `first` on (by id) not yet acknowledged.
    pub fn undelivered_from(&self, first: MessageId) -> usize {
        self.messages.range(first..).count()
    }

    /// How full the queue is: items waiting, as a share of the bound (0.0–1.0).
    pub fn fullness(&self) -> f64 {
        self.items.len() as f64 / self.max_items.max(1) as f64
    }

    /// Our messages not yet acknowledged, in id order.
    pub fn pending_ids(&self) -> Vec<MessageId> {
        self.messages.keys().copied().collect()
    }

    /// Whether a leave is still waiting to be sent or acknowledged.
    pub fn leave_outstanding(&self) -> bool {
        self.leave_pending || self.leave_unacked
    }

    /// Whether a leave is waiting to be sent.
    pub fn leave_pending(&self) -> bool {
        self.leave_pending
    }

    /// Whether a ping is waiting to be sent.
    pub fn ping_pending(&self) -> bool {
        self.ping_pending
    }

    /// Whether every item has been sent (some may still await their ack).
    pub fn all_sent(&self) -> bool {
        self.unsent.is_empty()
    }

    /// The first sequence number beyond the send window: at most [`WINDOW`] items past the
    /// oldest unacknowledged one, which is what the receiver buffers.
    pub fn window_end(&self) -> u64 {
        self.items
            .keys()
            .next()
            .map_or(self.next_seq, |&s| s)
            .saturating_add(WINDOW)
    }

    /// Whether anything ack-eliciting waits to be sent within the window `window_end`.
    pub fn has_data(&self, window_end: u64) -> bool {
        self.ping_pending
            || self.leave_pending
            || self.unsent.first().is_some_and(|&s| s < window_end)
    }

    /// Appends unsent items below `window_end` to `buf`, lowest first, while they fit in
    /// [`MAX_DATAGRAM`]; notes them in `carried`. A message's frames carry their age at `now`.
    pub fn fill(
        &mut self,
        now: Instant,
        buf: &mut Vec<u8>,
        window_end: u64,
        carried: &mut Carried,
    ) {
        // At most as many as could fit in one datagram (an item takes ≥ 4 bytes).
        let candidates: Vec<u64> = self
            .unsent
            .range(..window_end)
            .take(MAX_DATAGRAM / 4)
            .copied()
            .collect();
        for seq in candidates {
            let Some(item) = self.items.get(&seq) else {
                // Cannot happen (`unsent` only names queued items), but must not stick.
                self.unsent.remove(&seq);
                continue;
            };
            // A message's items are acknowledged before it is forgotten; its age 0 otherwise,
            // so that a message's frame never goes without one.
            let age = item.msg.map(|m| {
                self.messages
                    .get(&m)
                    .map_or(0, |pending| pending.written.age_ms(now))
            });
            let len = wire::stream_frame_len(item.kind, seq, item.fields.len(), age);
            if buf.len() + len > MAX_DATAGRAM {
                break;
            }
            wire::encode_stream_frame(item.kind, seq, &item.fields, age, buf);
            self.unsent.remove(&seq);
            carried.seqs.push(seq);
        }
    }

    /// Appends the pending leave to `buf` if it fits; notes it in `carried`.
    pub fn fill_leave(&mut self, buf: &mut Vec<u8>, carried: &mut Carried) {
        if self.leave_pending && buf.len() + Frame::Leave.encoded_len() <= MAX_DATAGRAM {
            Frame::Leave.encode_into(buf);
            carried.leave = true;
            self.leave_pending = false;
            self.leave_unacked = true;
        }
    }

    /// Appends the pending ping to `buf` if it fits; notes it in `carried`.
    pub fn fill_ping(&mut self, buf: &mut Vec<u8>, carried: &mut Carried) {
        if self.ping_pending && buf.len() + Frame::Ping.encoded_len() <= MAX_DATAGRAM {
            Frame::Ping.encode_into(buf);
            carried.ping = true;
        }
    }

    /// A packet went out carrying something to acknowledge: a pending ping is no longer
    /// needed (that packet's ack measures the same).
    pub fn on_packet_sent(&mut self) {
        self.ping_pending = false;
    }

    /// A packet's contents were acknowledged. Reports every message now delivered in full.
    pub fn on_acked(&mut self, carried: Carried, out: &mut Vec<LinkEvent>) {
        self.full_reported &= self.items.len() >= self.max_items / 2;
        if carried.leave {
            self.leave_unacked = false;
        }
        for seq in carried.seqs {
            self.unsent.remove(&seq);
            let Some(item) = self.items.remove(&seq) else {
                continue;
            };
            let Some(msg) = item.msg else { continue };
            if let Some(m) = self.messages.get_mut(&msg) {
                m.remaining = m.remaining.saturating_sub(1);
            }
        }
        // A message is delivered once all of it AND everything before it is acknowledged: the
        // receiver shows (and stores) items in order, so an acked item behind a gap is only
        // held in its reorder buffer, and would be lost if it restarted now.
        let floor = self.items.keys().next().copied();
        while let Some((&id, m)) = self.messages.first_key_value() {
            if m.remaining > 0 || floor.is_some_and(|f| f <= m.last_seq) {
                break;
            }
            let late = m.delay_reported;
            self.messages.remove(&id);
            out.push(LinkEvent::Delivered(id, late));
        }
    }

    /// A packet was lost (or presumed lost): what it carried goes out again.
    pub fn on_lost(&mut self, carried: Carried) {
        for seq in carried.seqs {
            if self.items.contains_key(&seq) && self.unsent.insert(seq) {
                self.retransmitted += 1;
            }
        }
        self.ping_pending |= carried.ping;
        if carried.leave && self.leave_unacked {
            self.leave_pending = true;
            self.leave_unacked = false;
        }
    }

    /// When the next message becomes late enough for a delay notice.
    pub fn next_delay_notice(&self) -> Option<Instant> {
        self.unchecked_messages()
            .next()
            .map(|(_, m)| m.queued_at + DELAYED_AFTER)
    }

    /// Reports every message unacknowledged [`DELAYED_AFTER`] after it was queued (once each).
    pub fn report_delays(&mut self, now: Instant, out: &mut Vec<LinkEvent>) {
        let due: Vec<MessageId> = self
            .unchecked_messages()
            .take_while(|(_, m)| m.queued_at + DELAYED_AFTER <= now)
            .map(|(&id, _)| id)
            .collect();
        for id in due {
            if let Some(m) = self.messages.get_mut(&id) {
                m.delay_reported = true;
            }
            self.delay_checked = id;
            out.push(LinkEvent::Delayed(id));
        }
    }

    /// The peer is back (it joined, restarted, or answers again): the messages that waited for
    /// it meanwhile are not late yet, whatever their age; their delay clock starts now (the
    /// user was told they wait, and a delay notice is for a peer that is there and does not
    /// take them).
    pub fn restart_delay_clock(&mut self, now: Instant) {
        use std::ops::Bound::{Excluded, Unbounded};
        for (_, m) in self
            .messages
            .range_mut((Excluded(self.delay_checked), Unbounded))
        {
            m.queued_at = m.queued_at.max(now);
        }
    }

    /// Messages not yet checked for the delay notice, in id (and so queueing) order.
    fn unchecked_messages(&self) -> impl Iterator<Item = (&MessageId, &PendingMessage)> {
        use std::ops::Bound::{Excluded, Unbounded};
        self.messages
            .range((Excluded(self.delay_checked), Unbounded))
    }

    /// Items put back for sending after a loss, since the start.
    pub fn retransmitted(&self) -> u64 {
        self.retransmitted
    }
}

/// A message's stream items: one chat, or fragments of [`FRAGMENT_BYTES`].
pub fn pieces(msg: MessageId, style: Style, text: &str) -> Pieces {
    debug_assert!(text.len() <= MAX_MESSAGE_BYTES);
    let Style { direct, flags } = style;
    if text.len() <= FRAGMENT_BYTES {
        return vec![(
            kind::CHAT,
            wire::stream_fields(&(msg, direct, text, flags)).into(),
        )];
    }
    let chunks: Vec<&[u8]> = text.as_bytes().chunks(FRAGMENT_BYTES).collect();
    // At most MAX_MESSAGE_BYTES / FRAGMENT_BYTES + 1 = 66 pieces: far within u16.
    let count = u16::try_from(chunks.len()).unwrap_or(u16::MAX);
    (0..count)
        .zip(chunks)
        .map(|(i, data)| {
            let fields = (msg, direct, i, count, data, flags);
            (kind::FRAGMENT, wire::stream_fields(&fields).into())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> Instant {
        Instant::now()
    }

    /// A group message's bytes are held once however many peers' queues hold it (255 silent
    /// peers made each 64 KiB message cost 16 MB when every queue encoded its own copy).
    #[test]
    fn queues_given_the_same_pieces_share_their_bytes() {
        let text = "x".repeat(MAX_MESSAGE_BYTES);
        let made = pieces(MessageId(1), Style::default(), &text);
        let mut queues: Vec<SendQueue> = (0..10).map(|_| SendQueue::new(8192)).collect();
        for q in &mut queues {
            q.queue_pieces(t0(), MessageId(1), &made).unwrap();
        }
        for q in &queues {
            let (_, first) = q.items.first_key_value().unwrap();
            assert!(Arc::ptr_eq(&first.fields, &made[0].1));
        }
        // Each queue holds each piece twice (as an item, and in the message kept whole).
        assert_eq!(Arc::strong_count(&made[0].1), 1 + 10 * 2);
    }

    /// Everything `fill` puts in one fresh datagram buffer.
    fn fill_one(q: &mut SendQueue) -> Carried {
        let mut buf = Vec::new();
        let mut carried = Carried::default();
        q.fill(t0(), &mut buf, q.window_end(), &mut carried);
        assert!(buf.len() <= MAX_DATAGRAM);
        carried
    }

    #[test]
    fn a_long_message_becomes_fragments_of_at_most_fragment_bytes() {
        assert_eq!(pieces(MessageId(1), Style::default(), "short").len(), 1);
        let text = "x".repeat(FRAGMENT_BYTES * 2 + 1);
        let p = pieces(MessageId(1), Style::default(), &text);
        assert_eq!(p.len(), 3);
        assert!(p.iter().all(|(k, _)| *k == kind::FRAGMENT));
        let most = "y".repeat(MAX_MESSAGE_BYTES);
        assert_eq!(
            pieces(
                MessageId(2),
                Style {
                    direct: true,
                    flags: 0
                },
                &most
            )
            .len(),
            MAX_MESSAGE_BYTES.div_ceil(FRAGMENT_BYTES)
        );
    }

    #[test]
    fn the_queue_bound_refuses_and_says_so_once_until_there_is_room() {
        let now = t0();
        let mut q = SendQueue::new(4);
        let three = "z".repeat(FRAGMENT_BYTES * 3);
        assert_eq!(
            q.queue_message(now, MessageId(1), Style::default(), &three),
            Ok(())
        );
        assert_eq!(
            q.queue_message(now, MessageId(2), Style::default(), "a"),
            Ok(())
        );
        let full = q.queue_message(now, MessageId(3), Style::default(), "b");
        assert_eq!(full, Err(QueueError::Full { first: true }));
        let again = q.queue_message(now, MessageId(4), Style::default(), "c");
        assert_eq!(again, Err(QueueError::Full { first: false }));
        // A restored message is queued past the bound.
        q.requeue_message(now, Duration::ZERO, MessageId(5), Style::default(), "d");
        assert_eq!(q.undelivered(), 3);
        // The notice is re-armed by an ack that finds the queue below half full.
        let mut out = Vec::new();
        while !q.all_sent() {
            let sent = fill_one(&mut q);
            q.on_acked(sent, &mut out);
        }
        assert_eq!(q.undelivered(), 0);
        q.queue_message(now, MessageId(6), Style::default(), "e")
            .unwrap();
        let sent = fill_one(&mut q);
        q.on_acked(sent, &mut out);
        q.queue_message(now, MessageId(7), Style::default(), &three)
            .unwrap();
        q.queue_message(now, MessageId(8), Style::default(), "f")
            .unwrap();
        let refused = q.queue_message(now, MessageId(9), Style::default(), "g");
        assert_eq!(refused, Err(QueueError::Full { first: true }));
    }

    #[test]
    fn items_fill_a_datagram_in_order_within_its_size() {
        let now = t0();
        let mut q = SendQueue::new(1000);
        let text = "w".repeat(400);
        for i in 1..=5 {
            q.queue_message(now, MessageId(i), Style::default(), &text)
                .unwrap();
        }
        let first = fill_one(&mut q);
        assert_eq!(first.seqs, vec![0, 1], "two 400-byte chats fit, not three");
        let second = fill_one(&mut q);
        assert_eq!(second.seqs, vec![2, 3]);
        let third = fill_one(&mut q);
        assert_eq!(third.seqs, vec![4]);
        assert!(q.all_sent());
    }

    #[test]
    fn the_window_stops_sending_until_the_oldest_item_is_acknowledged() {
        let now = t0();
        let mut q = SendQueue::new(10_000);
        let total = WINDOW + 10;
        for i in 0..total {
            q.queue_message(now, MessageId(i + 1), Style::default(), "m")
                .unwrap();
        }
        let mut sent = Vec::new();
        while q.has_data(q.window_end()) {
            sent.push(fill_one(&mut q));
        }
        let count: usize = sent.iter().map(|c| c.seqs.len()).sum();
        assert_eq!(count as u64, WINDOW, "no more than the window in flight");
        // Acknowledging the first packet (which holds seq 0) moves the window on.
        let mut out = Vec::new();
        q.on_acked(sent.remove(0), &mut out);
        assert!(q.has_data(q.window_end()));
    }

    #[test]
    fn a_message_is_delivered_only_once_everything_before_it_is_acknowledged() {
        let now = t0();
        let mut q = SendQueue::new(100);
        q.queue_message(now, MessageId(1), Style::default(), &"a".repeat(700))
            .unwrap();
        q.queue_message(now, MessageId(2), Style::default(), &"b".repeat(700))
            .unwrap();
        let p1 = fill_one(&mut q);
        let p2 = fill_one(&mut q);
        let mut out = Vec::new();
        q.on_acked(p2, &mut out);
        assert!(out.is_empty(), "message 2 is held behind message 1");
        q.on_acked(p1, &mut out);
        assert_eq!(
            out,
            vec![
                LinkEvent::Delivered(MessageId(1), false),
                LinkEvent::Delivered(MessageId(2), false)
            ]
        );
    }

    #[test]
    fn lost_items_go_out_again_and_are_counted() {
        let now = t0();
        let mut q = SendQueue::new(100);
        q.queue_message(now, MessageId(1), Style::default(), "x")
            .unwrap();
        q.queue_leave();
        let mut buf = Vec::new();
        let mut carried = Carried::default();
        q.fill(t0(), &mut buf, q.window_end(), &mut carried);
        q.fill_leave(&mut buf, &mut carried);
        assert!(q.all_sent() && !q.leave_pending() && q.leave_outstanding());
        q.on_lost(carried.clone());
        assert_eq!(q.retransmitted(), 1);
        assert!(!q.all_sent() && q.leave_pending());
        // Lost twice before being resent counts once.
        q.on_lost(carried);
        assert_eq!(q.retransmitted(), 1);
    }

    #[test]
    fn a_restarted_stream_resends_whole_messages_from_zero() {
        let now = t0();
        let mut q = SendQueue::new(100);
        q.queue_nick("new");
        let long = "f".repeat(FRAGMENT_BYTES + 1);
        q.queue_message(now, MessageId(7), Style::default(), &long)
            .unwrap();
        let first = fill_one(&mut q);
        assert_eq!(first.seqs, vec![0, 1, 2], "the nick and both fragments");
        // Only the nick and the first fragment are acknowledged before the peer restarts.
        let mut out = Vec::new();
        let part = Carried {
            seqs: vec![0, 1],
            ..Carried::default()
        };
        q.on_acked(part, &mut out);
        assert!(out.is_empty());
        q.restart_stream();
        let again = fill_one(&mut q);
        assert_eq!(
            again.seqs,
            vec![0, 1],
            "both fragments, renumbered; no nick"
        );
        q.on_acked(again, &mut out);
        assert_eq!(out, vec![LinkEvent::Delivered(MessageId(7), false)]);
    }

    #[test]
    fn application_payloads_survive_a_restarted_stream_and_count_in_the_bound() {
        let mut q = SendQueue::new(3);
        q.queue_nick("n");
        q.queue_app_data(b"one").unwrap();
        q.queue_app_data(b"two").unwrap();
        assert_eq!(
            q.queue_app_data(b"three"),
            Err(QueueError::Full { first: true })
        );
        let sent = fill_one(&mut q);
        assert_eq!(sent.seqs, vec![0, 1, 2]);
        let mut out = Vec::new();
        let first = Carried {
            seqs: vec![0, 1],
            ..Carried::default()
        };
        q.on_acked(first, &mut out);
        q.restart_stream();
        let mut buf = Vec::new();
        let mut carried = Carried::default();
        q.fill(t0(), &mut buf, q.window_end(), &mut carried);
        assert_eq!(
            carried.seqs,
            vec![0],
            "only the unacknowledged payload, renumbered"
        );
        let d = wire::decode(&[wire::encode(&header(), &[]), buf].concat()).unwrap();
        assert_eq!(
            d.frames,
            vec![Frame::AppData(wire::AppData {
                seq: 0,
                data: b"two".to_vec()
            })]
        );
    }

    #[test]
    fn a_withdrawn_payload_is_not_carried_into_a_restarted_stream() {
        let mut q = SendQueue::new(8);
        q.queue_app_data(b"offer").unwrap();
        q.queue_app_data(b"cancel").unwrap();
        assert!(q.withdraw_app_data(b"offer"));
        assert!(!q.withdraw_app_data(b"offer"), "only once");
        assert!(!q.withdraw_app_data(b"never queued"));
        // In the current stream it keeps its place.
        let sent = fill_one(&mut q);
        assert_eq!(sent.seqs, vec![0, 1]);
        q.restart_stream();
        let mut buf = Vec::new();
        let mut carried = Carried::default();
        q.fill(t0(), &mut buf, q.window_end(), &mut carried);
        assert_eq!(carried.seqs, vec![0]);
        let d = wire::decode(&[wire::encode(&header(), &[]), buf].concat()).unwrap();
        assert_eq!(
            d.frames,
            vec![Frame::AppData(wire::AppData {
                seq: 0,
                data: b"cancel".to_vec()
            })]
        );
    }

    fn header() -> wire::Header {
        wire::Header {
            sender: crate::proto::PeerId(1),
            session: 1,
            packet: 0,
        }
    }

    #[test]
    fn a_delay_is_reported_once_per_message_and_marks_its_delivery_late() {
        let now = t0();
        let mut q = SendQueue::new(100);
        q.queue_message(now, MessageId(1), Style::default(), "x")
            .unwrap();
        assert_eq!(q.next_delay_notice(), Some(now + DELAYED_AFTER));
        let mut out = Vec::new();
        q.report_delays(now + Duration::from_millis(10), &mut out);
        assert!(out.is_empty());
        q.report_delays(now + DELAYED_AFTER, &mut out);
        assert_eq!(out, vec![LinkEvent::Delayed(MessageId(1))]);
        assert_eq!(q.next_delay_notice(), None);
        out.clear();
        let c = fill_one(&mut q);
        q.on_acked(c, &mut out);
        assert_eq!(out, vec![LinkEvent::Delivered(MessageId(1), true)]);
    }

    #[test]
    fn a_long_peer_list_is_split_into_frames_that_fit() {
        let mut q = SendQueue::new(100);
        let entries: Vec<PeerEntry> = (0..40u64)
            .map(|i| PeerEntry {
                id: crate::proto::PeerId(i),
                nick: format!("peer{i}"),
                addrs: vec![std::net::SocketAddr::from(([10, 0, 0, 1], 7654))],
                heard_secs: 1,
            })
            .collect();
        q.queue_peers(&entries);
        let mut frames = 0;
        while !q.all_sent() {
            frames += fill_one(&mut q).seqs.len();
        }
        assert_eq!(frames, 3, "16 + 16 + 8 entries");
    }
}
