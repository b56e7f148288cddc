//! One peer's reliable link: packet numbers and acks, loss detection and retransmission, and
//! the ordered, de-duplicated stream of messages in each direction.
//!
//! Three numbers are kept apart (see `docs/PROTOCOL.md`): *packet numbers* count datagrams
//! towards this peer and are never reused, so every ack is unambiguous and every RTT sample
//! clean; *stream sequence numbers* order the items (messages, fragments, nick changes) sent to
//! this peer and are what the receiver de-duplicates and reorders by; *message ids* name a
//! message across all its recipients, for delivery reports. A lost packet's items go out again
//! in a new packet.

use super::ids::MessageId;
use super::ranges::RangeSet;
use super::rtt::{RttEstimator, MAX_ACK_DELAY};
use super::wire::{self, kind, Ack, AckRange, Frame, Header, PeerEntry, MAX_DATAGRAM};
use super::{
    DELAYED_AFTER, FRAGMENT_BYTES, KEEPALIVE_INTERVAL, MAX_MESSAGE_BYTES, MAX_QUEUED_ITEMS,
    REASSEMBLY_TIMEOUT, UNREACHABLE_AFTER, WINDOW,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Ranges of received packet numbers remembered for acks.
const ACK_RANGES_KEPT: usize = 32;
/// Bytes an ack frame may take in a datagram that also carries data. With the largest header
/// (35), a `Session` frame (12) and the largest stream item (1036) this stays within
/// [`MAX_DATAGRAM`], so an item always fits in a datagram of its own.
const ACK_BUDGET: usize = 100;
/// A packet is lost once this many later packets have been acknowledged (RFC 9002 §6.1.1).
const PACKET_THRESHOLD: u64 = 3;
/// Ack at once after this many ack-eliciting packets (RFC 9000 §13.2.2).
const ACK_EVERY: u32 = 2;
/// A packet number more than this far above the highest one received refuses the datagram.
pub const MAX_PACKET_JUMP: u64 = 1 << 16;

/// A message's stream items as (frame kind, encoded fields after the sequence number).
type Pieces = Vec<(u32, Arc<[u8]>)>;

/// What one stream item carries; it becomes a frame once a stream sequence number is attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// A whole message.
    Chat {
        /// Message id.
        msg: MessageId,
        /// Direct or group.
        direct: bool,
        /// The text.
        text: String,
    },
    /// A piece of a message.
    Fragment {
        /// Message id.
        msg: MessageId,
        /// Direct or group.
        direct: bool,
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
}

impl Item {
    fn from_frame(frame: Frame) -> Option<(u64, Item)> {
        match frame {
            Frame::Chat(c) => Some((
                c.seq,
                Item::Chat {
                    msg: c.msg,
                    direct: c.direct,
                    text: c.text,
                },
            )),
            Frame::Fragment(f) => Some((
                f.seq,
                Item::Fragment {
                    msg: f.msg,
                    direct: f.direct,
                    index: f.index,
                    count: f.count,
                    data: f.data,
                },
            )),
            Frame::Nick(n) => Some((n.seq, Item::Nick(n.nick))),
            Frame::Peers(p) => Some((p.seq, Item::Peers(p.peers))),
            _ => None,
        }
    }
}

/// Something the link reports upward; the endpoint turns these into public events.
#[derive(Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// A whole message arrived, in order, once.
    Message {
        /// Its id.
        msg: MessageId,
        /// Direct or group.
        direct: bool,
        /// Its text.
        text: String,
    },
    /// The peer changed its nick.
    Nick(String),
    /// The peer told us of peers it knows.
    Peers(Vec<PeerEntry>),
    /// A message was acknowledged in full; `late` if it had been reported delayed.
    Delivered(MessageId, bool),
    /// A message has waited [`DELAYED_AFTER`] without acknowledgement.
    Delayed(MessageId),
    /// Outstanding data has gone unacknowledged for [`UNREACHABLE_AFTER`].
    Unreachable,
    /// An unreachable peer acknowledged something again.
    Reachable,
    /// The peer said it is leaving.
    Left,
}

/// Why a message could not be queued.
#[derive(Debug, PartialEq, Eq)]
pub enum QueueError {
    /// The per-peer queue bound ([`MAX_QUEUED_ITEMS`]) would be passed; `first` for the first
    /// refusal since the queue last had room (so the user is told once, not per message).
    Full {
        /// First refusal since there was room.
        first: bool,
    },
}

/// An item the peer has not acknowledged yet, encoded once (it may be sent several times).
#[derive(Debug)]
struct OutItem {
    /// Frame kind (`Chat`, `Fragment` or `Nick`).
    kind: u32,
    /// The frame's fields after the sequence number, already encoded (shared with the
    /// message's pieces, kept for a restart).
    fields: Arc<[u8]>,
    /// The message it belongs to, for the delivery report.
    msg: Option<MessageId>,
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
    /// Whether [`LinkEvent::Delayed`] has been reported.
    delay_reported: bool,
}

/// A sent ack-eliciting packet awaiting its ack.
#[derive(Debug)]
struct SentPacket {
    /// When it left.
    time: Instant,
    /// Stream items it carried.
    seqs: Vec<u64>,
    /// Whether it carried a ping.
    ping: bool,
    /// Whether it carried a leave.
    leave: bool,
}

/// A message being reassembled from fragments (which arrive in stream order).
#[derive(Debug)]
struct Partial {
    /// Which message.
    msg: MessageId,
    /// Direct or group.
    direct: bool,
    /// Pieces in all.
    count: u16,
    /// Bytes so far.
    data: Vec<u8>,
    /// Pieces so far.
    next: u16,
    /// When the last piece came, for [`REASSEMBLY_TIMEOUT`].
    last_progress: Instant,
}

/// Counts a link keeps for the endpoint's statistics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LinkCounters {
    /// Stream items that arrived again after delivery.
    pub duplicates: u64,
    /// Stream items sent again after a loss.
    pub retransmitted: u64,
    /// Retransmission timeouts that fired.
    pub timeouts: u64,
    /// Datagrams dropped because an item lay beyond the receive window.
    pub out_of_window: u64,
    /// Fragments that did not fit the message being reassembled, and reassemblies abandoned.
    pub bad_fragments: u64,
}

/// The reliable link to one peer.
#[derive(Debug)]
pub struct Link {
    /// Round-trip time towards this peer.
    pub rtt: RttEstimator,
    /// Consecutive timeouts without an ack; the timeout grows 1.5× with each.
    backoff: u32,
    /// Whether the link is declared unreachable (reported once until it answers again).
    unreachable: bool,
    /// The peer has left: no timers run, queued items wait for its return.
    left: bool,
    /// Hearing an unreachable peer already triggered a resend in this timeout period.
    resent_on_heard: bool,
    /// A message was refused for a full queue and the queue has not had room since.
    full_reported: bool,
    /// The highest message id from this peer already shown.
    delivered_msg: MessageId,
    /// Counters for statistics.
    pub counters: LinkCounters,

    /// Next packet number to use; never reused.
    next_packet: u64,
    /// Ack-eliciting packets in flight, by packet number.
    sent: BTreeMap<u64, SentPacket>,
    /// Highest packet number the peer has acknowledged.
    largest_acked: Option<u64>,
    /// When the last ack-eliciting packet left (the timeout counts from it).
    last_eliciting_sent: Option<Instant>,
    /// Since when outstanding data has waited without any ack progress.
    waiting_since: Option<Instant>,
    /// Next stream sequence number to give an item.
    next_seq: u64,
    /// Items not yet acknowledged, by sequence number.
    items: BTreeMap<u64, OutItem>,
    /// Sequence numbers to (re)send, lowest first.
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
    recv_next: u64,
    /// Items that arrived ahead of a gap, bounded by [`WINDOW`].
    reorder: BTreeMap<u64, Item>,
    /// A message being reassembled.
    partial: Option<Partial>,
    /// When we last sent an ack-eliciting packet or heard the peer, for keepalives.
    last_activity: Instant,
}

impl Link {
    /// A fresh link at time `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            rtt: RttEstimator::default(),
            backoff: 0,
            unreachable: false,
            left: false,
            resent_on_heard: false,
            full_reported: false,
            delivered_msg: MessageId(0),
            counters: LinkCounters::default(),
            next_packet: 0,
            sent: BTreeMap::new(),
            largest_acked: None,
            last_eliciting_sent: None,
            waiting_since: None,
            next_seq: 0,
            items: BTreeMap::new(),
            unsent: BTreeSet::new(),
            messages: BTreeMap::new(),
            delay_checked: MessageId(0),
            ping_pending: false,
            leave_pending: false,
            leave_unacked: false,
            received: RangeSet::new(ACK_RANGES_KEPT),
            ack_pending: false,
            ack_deadline: None,
            eliciting_since_ack: 0,
            largest_received_at: None,
            recv_next: 0,
            reorder: BTreeMap::new(),
            partial: None,
            last_activity: now,
        }
    }

    /// Messages queued for this peer and not yet acknowledged.
    pub fn undelivered(&self) -> usize {
        self.messages.len()
    }

    /// Whether a leave is still waiting for its ack.
    pub fn leave_outstanding(&self) -> bool {
        self.leave_pending || self.leave_unacked
    }

    /// Whether this link has been declared unreachable.
    pub fn is_unreachable(&self) -> bool {
        self.unreachable
    }

    /// Queues a message, split into fragments if needed.
    ///
    /// # Errors
    /// [`QueueError::Full`] if it would pass [`MAX_QUEUED_ITEMS`].
    pub fn queue_message(
        &mut self,
        now: Instant,
        msg: MessageId,
        direct: bool,
        text: &str,
    ) -> Result<(), QueueError> {
        let pieces = Self::pieces(msg, direct, text);
        if self.items.len() + pieces.len() > MAX_QUEUED_ITEMS {
            let first = !self.full_reported;
            self.full_reported = true;
            return Err(QueueError::Full { first });
        }
        self.enqueue(now, msg, pieces);
        Ok(())
    }

    /// Queues a message an earlier run accepted (restored from storage). The queue bound does
    /// not apply: refusing one would leave a gap in the ids, and the receiver's watermark
    /// would then swallow the missing message when it came later.
    pub fn requeue_message(&mut self, now: Instant, msg: MessageId, direct: bool, text: &str) {
        let pieces = Self::pieces(msg, direct, text);
        self.enqueue(now, msg, pieces);
    }

    /// A message's stream items: one chat, or fragments of [`FRAGMENT_BYTES`].
    fn pieces(msg: MessageId, direct: bool, text: &str) -> Pieces {
        debug_assert!(text.len() <= MAX_MESSAGE_BYTES);
        if text.len() <= FRAGMENT_BYTES {
            return vec![(kind::CHAT, wire::stream_fields(&(msg, direct, text)).into())];
        }
        let chunks: Vec<&[u8]> = text.as_bytes().chunks(FRAGMENT_BYTES).collect();
        let count = chunks.len() as u16;
        chunks
            .into_iter()
            .enumerate()
            .map(|(i, data)| {
                let fields = (msg, direct, i as u16, count, data);
                (kind::FRAGMENT, wire::stream_fields(&fields).into())
            })
            .collect()
    }

    fn enqueue(&mut self, now: Instant, msg: MessageId, pieces: Pieces) {
        for (kind, fields) in &pieces {
            self.push_item(*kind, fields.clone(), Some(msg));
        }
        self.messages.insert(
            msg,
            PendingMessage {
                last_seq: self.next_seq - 1,
                remaining: pieces.len() as u32,
                pieces,
                queued_at: now,
                delay_reported: false,
            },
        );
    }

    /// The peer restarted (a new session): both streams start again from sequence number 0.
    /// Our unacknowledged messages are queued again, whole and in id order; the receiver's
    /// message-id watermark ([`Link::set_delivered_through`]) drops any it had already shown.
    /// Nick changes and peer lists in flight are dropped: the peer's hello carries the nick, and
    /// peers are exchanged again on rejoining.
    fn reset_streams(&mut self) {
        self.recv_next = 0;
        self.reorder.clear();
        self.partial = None;
        self.sent.clear();
        self.items.clear();
        self.unsent.clear();
        self.next_seq = 0;
        let pending: Vec<(MessageId, Pieces)> = self
            .messages
            .iter()
            .map(|(&id, m)| (id, m.pieces.clone()))
            .collect();
        for (id, pieces) in pending {
            let count = pieces.len() as u32;
            for (kind, fields) in pieces {
                self.push_item(kind, fields, Some(id));
            }
            if let Some(m) = self.messages.get_mut(&id) {
                m.remaining = count;
                m.last_seq = self.next_seq - 1;
            }
        }
    }

    /// The highest message id from this peer already shown.
    pub fn delivered_through(&self) -> MessageId {
        self.delivered_msg
    }

    /// Our messages it has not acknowledged, in id order.
    pub fn pending_ids(&self) -> Vec<MessageId> {
        self.messages.keys().copied().collect()
    }

    /// Raises the watermark of messages already shown from this peer (restored from storage
    /// after a restart, so a message resent across restarts is shown once).
    pub fn set_delivered_through(&mut self, id: MessageId) {
        self.delivered_msg = self.delivered_msg.max(id);
    }

    /// Shows a whole message unless its id is not above the watermark: a sender's messages to
    /// us arrive in id order, so an id at or below it was shown before (a resend after a
    /// restart).
    fn deliver_message(
        &mut self,
        msg: MessageId,
        direct: bool,
        text: String,
        out: &mut Vec<LinkEvent>,
    ) {
        if msg <= self.delivered_msg {
            self.counters.duplicates += 1;
            return;
        }
        self.delivered_msg = msg;
        out.push(LinkEvent::Message { msg, direct, text });
    }

    /// Queues peer-exchange entries (at most [`wire::MAX_PEER_ENTRIES`] per frame).
    /// Each frame's entries are chosen to fit in one datagram beside a header and an ack.
    pub fn queue_peers(&mut self, peers: &[PeerEntry]) {
        let mut chunk: Vec<PeerEntry> = Vec::new();
        for entry in peers {
            chunk.push(entry.clone());
            let too_big = wire::stream_fields(&chunk).len() > FRAGMENT_BYTES;
            if too_big || chunk.len() > wire::MAX_PEER_ENTRIES {
                let last = chunk.pop().expect("just pushed");
                if !chunk.is_empty() {
                    self.push_item(kind::PEERS, wire::stream_fields(&chunk).into(), None);
                }
                chunk = vec![last];
            }
        }
        if !chunk.is_empty() {
            self.push_item(kind::PEERS, wire::stream_fields(&chunk).into(), None);
        }
    }

    /// Queues a nick change, ordered after everything queued before it.
    pub fn queue_nick(&mut self, nick: &str) {
        self.push_item(kind::NICK, wire::stream_fields(&nick).into(), None);
    }

    fn push_item(&mut self, kind: u32, fields: Arc<[u8]>, msg: Option<MessageId>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.items.insert(seq, OutItem { kind, fields, msg });
        self.unsent.insert(seq);
    }

    /// Marks a peer restored from storage as away: no timers run until it says hello.
    pub fn set_away(&mut self) {
        self.left = true;
    }

    /// Queues a leave; it goes out even to a peer that is not answering.
    pub fn queue_leave(&mut self) {
        self.leave_pending = true;
    }

    /// Handles the frames of one datagram from this peer (session already checked). Returns
    /// false if the datagram was refused (an item beyond the receive window), in which case it
    /// is not acknowledged either.
    pub fn on_datagram(
        &mut self,
        now: Instant,
        packet: u64,
        frames: Vec<Frame>,
        out: &mut Vec<LinkEvent>,
    ) -> bool {
        let window_end = self.recv_next.saturating_add(WINDOW);
        let beyond = frames
            .iter()
            .any(|f| f.stream_seq().is_some_and(|seq| seq >= window_end));
        // A packet number far beyond any seen is not from a sane sender (numbers go up by one
        // per packet); accepting it would fill the ack ranges with numbers the sender never
        // used and crowd out the real ones.
        // With nothing received yet (a new or restarted stream) any number is plausible: the
        // sender's numbering does not start again when ours does.
        let jump = self
            .received
            .max()
            .is_some_and(|m| packet > m.saturating_add(MAX_PACKET_JUMP));
        let eliciting = frames.iter().any(Frame::is_ack_eliciting);
        if beyond || (eliciting && jump) {
            self.counters.out_of_window += 1;
            return false;
        }
        self.heard(now);
        let mut out_of_order = false;
        for frame in frames {
            match frame {
                Frame::Ack(ack) => self.on_ack(now, &ack, out),
                Frame::Leave => {
                    if !self.left {
                        self.left = true;
                        self.requeue_all_sent();
                        out.push(LinkEvent::Left);
                    }
                }
                other => {
                    if let Some((seq, item)) = Item::from_frame(other) {
                        out_of_order |= seq > self.recv_next;
                        self.on_item(now, seq, item, out);
                    }
                }
            }
        }
        if eliciting {
            self.on_eliciting_packet(now, packet, out_of_order);
        }
        true
    }

    /// The peer spoke: if it was unreachable, everything in flight is resent at once. It counts
    /// as reachable again only once it acknowledges something (hearing it proves one direction
    /// only; with loss the other way, the state would flap).
    fn heard(&mut self, now: Instant) {
        self.last_activity = now;
        // Once per timeout period: the peer's acks (of packets other than ours, say) must not
        // drive a resend loop.
        if self.unreachable && !self.resent_on_heard {
            self.resent_on_heard = true;
            self.backoff = 0;
            self.requeue_all_sent();
        }
    }

    /// The peer came back (a hello, or a new session): it is live again and everything in
    /// flight is sent afresh.
    pub fn restart(&mut self, now: Instant, new_session: bool) {
        self.left = false;
        self.heard(now);
        self.backoff = 0;
        self.requeue_all_sent();
        self.unreachable = false;
        self.waiting_since = None;
        if new_session {
            // The peer's packet numbers and streams start again; forget the old ones.
            self.received = RangeSet::new(ACK_RANGES_KEPT);
            self.ack_pending = false;
            self.ack_deadline = None;
            self.eliciting_since_ack = 0;
            self.largest_acked = None;
            self.reset_streams();
        }
    }

    fn on_eliciting_packet(&mut self, now: Instant, packet: u64, out_of_order: bool) {
        let expected = self.received.max().map_or(0, |m| m.saturating_add(1));
        let is_new = self.received.insert(packet);
        if self.received.max() == Some(packet) {
            self.largest_received_at = Some(now);
        }
        self.ack_pending = true;
        self.eliciting_since_ack += 1;
        // Duplicates are re-acked at once (our ack was probably lost); so are packets out of
        // order, which tell the sender about the gap sooner.
        let immediate =
            !is_new || packet != expected || out_of_order || self.eliciting_since_ack >= ACK_EVERY;
        let deadline = if immediate { now } else { now + MAX_ACK_DELAY };
        self.ack_deadline = Some(self.ack_deadline.map_or(deadline, |d| d.min(deadline)));
    }

    fn on_item(&mut self, now: Instant, seq: u64, item: Item, out: &mut Vec<LinkEvent>) {
        if seq < self.recv_next || self.reorder.contains_key(&seq) {
            self.counters.duplicates += 1;
            return;
        }
        self.reorder.insert(seq, item);
        while let Some(item) = self.reorder.remove(&self.recv_next) {
            self.recv_next += 1;
            self.deliver(now, item, out);
        }
    }

    fn deliver(&mut self, now: Instant, item: Item, out: &mut Vec<LinkEvent>) {
        match item {
            Item::Chat { msg, direct, text } => {
                if self.partial.take().is_some() {
                    self.counters.bad_fragments += 1;
                }
                self.deliver_message(msg, direct, text, out);
            }
            Item::Nick(nick) => out.push(LinkEvent::Nick(nick)),
            Item::Peers(peers) => out.push(LinkEvent::Peers(peers)),
            Item::Fragment {
                msg,
                direct,
                index,
                count,
                data,
            } => {
                if index == 0 {
                    if self.partial.is_some() {
                        self.counters.bad_fragments += 1;
                    }
                    self.partial = Some(Partial {
                        msg,
                        direct,
                        count,
                        data: Vec::new(),
                        next: 0,
                        last_progress: now,
                    });
                }
                let fits = self.partial.as_ref().is_some_and(|p| {
                    p.msg == msg
                        && p.count == count
                        && p.next == index
                        && p.data.len() + data.len() <= MAX_MESSAGE_BYTES
                });
                if !fits {
                    self.counters.bad_fragments += 1;
                    self.partial = None;
                    return;
                }
                let Some(p) = self.partial.as_mut() else {
                    return;
                };
                p.data.extend_from_slice(&data);
                p.next += 1;
                p.last_progress = now;
                if p.next == p.count {
                    let p = self.partial.take().expect("checked above");
                    match String::from_utf8(p.data) {
                        Ok(text) => self.deliver_message(p.msg, p.direct, text, out),
                        Err(_) => self.counters.bad_fragments += 1,
                    }
                }
            }
        }
    }

    fn on_ack(&mut self, now: Instant, ack: &Ack, out: &mut Vec<LinkEvent>) {
        let largest = ack.ranges[0].last;
        let mut newly: Vec<(u64, SentPacket)> = Vec::new();
        for r in &ack.ranges {
            let pns: Vec<u64> = self
                .sent
                .range(r.first..=r.last)
                .map(|(&pn, _)| pn)
                .collect();
            for pn in pns {
                if let Some(p) = self.sent.remove(&pn) {
                    newly.push((pn, p));
                }
            }
        }
        // Only packets we really sent count: an ack may name numbers we never used (a forged
        // or replayed datagram reached the peer), and must not move `largest_acked` past them.
        let Some(largest_newly) = newly.iter().map(|(pn, _)| *pn).max() else {
            return;
        };
        if let Some((_, p)) = newly.iter().find(|(pn, _)| *pn == largest) {
            self.rtt.update(
                now.saturating_duration_since(p.time),
                Duration::from_micros(ack.delay_us),
            );
        }
        for (_, p) in newly {
            self.acked(now, p, out);
        }
        self.largest_acked = Some(
            self.largest_acked
                .map_or(largest_newly, |l| l.max(largest_newly)),
        );
        self.backoff = 0;
        self.waiting_since = (!self.sent.is_empty()).then_some(now);
        if self.unreachable {
            self.unreachable = false;
            out.push(LinkEvent::Reachable);
        }
        self.detect_lost(now);
    }

    fn acked(&mut self, _now: Instant, p: SentPacket, out: &mut Vec<LinkEvent>) {
        self.full_reported &= self.items.len() >= MAX_QUEUED_ITEMS / 2;
        if p.leave {
            self.leave_unacked = false;
        }
        for seq in p.seqs {
            self.unsent.remove(&seq);
            let Some(item) = self.items.remove(&seq) else {
                continue;
            };
            let Some(msg) = item.msg else { continue };
            if let Some(m) = self.messages.get_mut(&msg) {
                m.remaining -= 1;
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

    /// Declares lost the packets that a later ack proves lost (RFC 9002 §6.1).
    fn detect_lost(&mut self, now: Instant) {
        let Some(largest) = self.largest_acked else {
            return;
        };
        let delay = self.rtt.loss_delay();
        let lost: Vec<u64> = self
            .sent
            .range(..largest)
            .filter(|(&pn, p)| largest - pn >= PACKET_THRESHOLD || p.time + delay <= now)
            .map(|(&pn, _)| pn)
            .collect();
        for pn in lost {
            if let Some(p) = self.sent.remove(&pn) {
                self.requeue(p);
            }
        }
    }

    fn requeue(&mut self, p: SentPacket) {
        for seq in p.seqs {
            if self.items.contains_key(&seq) && self.unsent.insert(seq) {
                self.counters.retransmitted += 1;
            }
        }
        self.ping_pending |= p.ping;
        if p.leave && self.leave_unacked {
            self.leave_pending = true;
            self.leave_unacked = false;
        }
    }

    fn requeue_all_sent(&mut self) {
        for (_, p) in std::mem::take(&mut self.sent) {
            self.requeue(p);
        }
    }

    /// The earliest time [`Link::on_timeout`] has work to do.
    pub fn next_timeout(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut consider = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        if self.ack_pending {
            consider(self.ack_deadline);
        }
        if self.left {
            consider(
                self.partial
                    .as_ref()
                    .map(|p| p.last_progress + REASSEMBLY_TIMEOUT),
            );
            return t;
        }
        if let Some(largest) = self.largest_acked {
            let delay = self.rtt.loss_delay();
            consider(
                self.sent
                    .range(..largest)
                    .next()
                    .map(|(_, p)| p.time + delay),
            );
        }
        if !self.sent.is_empty() {
            consider(
                self.last_eliciting_sent
                    .map(|s| s + self.rtt.rto(self.backoff)),
            );
        } else if !self.unreachable && self.unsent.is_empty() && !self.ping_pending {
            consider(Some(self.last_activity + KEEPALIVE_INTERVAL));
        }
        if !self.unreachable {
            consider(self.waiting_since.map(|w| w + UNREACHABLE_AFTER));
        }
        if !self.unreachable {
            consider(
                self.unchecked_messages()
                    .next()
                    .map(|(_, m)| m.queued_at + DELAYED_AFTER),
            );
        }
        t
    }

    /// Runs the timers that are due at `now`.
    pub fn on_timeout(&mut self, now: Instant, out: &mut Vec<LinkEvent>) {
        // Only a departed peer's half message times out: while the peer is here, its ordered
        // stream must complete the message, and dropping the pieces already acknowledged would
        // lose it silently.
        if self.left
            && self
                .partial
                .as_ref()
                .is_some_and(|p| p.last_progress + REASSEMBLY_TIMEOUT <= now)
        {
            self.partial = None;
            self.counters.bad_fragments += 1;
        }
        if self.left {
            return;
        }
        self.detect_lost(now);
        if !self.sent.is_empty()
            && self
                .last_eliciting_sent
                .is_some_and(|s| s + self.rtt.rto(self.backoff) <= now)
        {
            // Timeout: everything in flight is presumed lost and goes out again.
            self.counters.timeouts += 1;
            self.resent_on_heard = false;
            self.backoff = self.backoff.saturating_add(1);
            self.requeue_all_sent();
            if self.unsent.is_empty() && !self.leave_pending {
                self.ping_pending = true;
            }
        }
        if self.sent.is_empty()
            && self.unsent.is_empty()
            && !self.unreachable
            && self.last_activity + KEEPALIVE_INTERVAL <= now
        {
            self.ping_pending = true;
        }
        if !self.unreachable
            && self
                .waiting_since
                .is_some_and(|w| w + UNREACHABLE_AFTER <= now)
        {
            self.unreachable = true;
            out.push(LinkEvent::Unreachable);
        }
        if self.unreachable {
            return; // the unreachable notice already said that messages wait
        }
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

    fn unchecked_messages(&self) -> impl Iterator<Item = (&MessageId, &PendingMessage)> {
        use std::ops::Bound::{Excluded, Unbounded};
        self.messages
            .range((Excluded(self.delay_checked), Unbounded))
    }

    /// Builds the next datagram for this peer, if there is anything to send at `now`.
    ///
    /// `to_session` is the peer's session as we know it; it goes in a `Session` frame so that a
    /// peer that restarted drops what we meant for its previous run.
    pub fn poll_datagram(
        &mut self,
        now: Instant,
        mut header: Header,
        to_session: u64,
    ) -> Option<Vec<u8>> {
        let send_window_end = self
            .items
            .keys()
            .next()
            .map_or(self.next_seq, |&s| s)
            .saturating_add(WINDOW);
        // Towards a peer declared unreachable, one packet at a time until it answers: a dead
        // peer costs one datagram per timeout. Before that, new data is sent even while timeouts
        // back off: its acks are the fastest way to find (and repair) what was lost, and on a
        // LAN random loss is far more likely than congestion.
        let probing = self.unreachable && !self.sent.is_empty();
        let has_data = !probing
            && !self.left
            && (self.ping_pending
                || self.leave_pending
                || self.unsent.first().is_some_and(|&s| s < send_window_end));
        let ack_due = self.ack_pending && (has_data || self.ack_deadline.is_some_and(|d| d <= now));
        // A leave goes out even when probing or left: it is the last thing we say.
        let leave_now = self.leave_pending;
        if !has_data && !ack_due && !leave_now {
            return None;
        }
        header.packet = self.next_packet;
        let mut buf = Vec::with_capacity(MAX_DATAGRAM);
        wire::encode_header(&header, &mut buf);
        Frame::Session(to_session).encode_into(&mut buf);
        let empty_len = buf.len();
        if ack_due {
            if let Some(ack) = self.build_ack(now) {
                ack.encode_into(&mut buf);
            }
            self.ack_pending = false;
            self.ack_deadline = None;
            self.eliciting_since_ack = 0;
        }
        let mut packet = SentPacket {
            time: now,
            seqs: Vec::new(),
            ping: false,
            leave: false,
        };
        if has_data {
            // At most as many as could fit in one datagram (an item takes ≥ 4 bytes).
            let candidates: Vec<u64> = self
                .unsent
                .range(..send_window_end)
                .take(MAX_DATAGRAM / 4)
                .copied()
                .collect();
            for seq in candidates {
                let item = &self.items[&seq];
                if buf.len() + wire::stream_frame_len(item.kind, seq, item.fields.len())
                    > MAX_DATAGRAM
                {
                    break;
                }
                wire::encode_stream_frame(item.kind, seq, &item.fields, &mut buf);
                self.unsent.remove(&seq);
                packet.seqs.push(seq);
            }
        }
        if leave_now && buf.len() + Frame::Leave.encoded_len() <= MAX_DATAGRAM {
            Frame::Leave.encode_into(&mut buf);
            packet.leave = true;
            self.leave_pending = false;
            self.leave_unacked = true;
        }
        let eliciting = !packet.seqs.is_empty() || packet.leave;
        if self.ping_pending
            && !eliciting
            && has_data
            && buf.len() + Frame::Ping.encoded_len() <= MAX_DATAGRAM
        {
            Frame::Ping.encode_into(&mut buf);
            packet.ping = true;
        }
        if packet.ping || eliciting {
            self.ping_pending = false;
            if self.sent.is_empty() && self.waiting_since.is_none() {
                self.waiting_since = Some(now);
            }
            self.sent.insert(self.next_packet, packet);
            self.last_eliciting_sent = Some(now);
            self.last_activity = now;
            self.next_packet += 1;
        }
        debug_assert!(buf.len() <= MAX_DATAGRAM);
        // Nothing fitted (cannot happen with the size limits, but must never loop).
        (buf.len() > empty_len).then_some(buf)
    }

    fn build_ack(&self, now: Instant) -> Option<Frame> {
        let delay_us = self
            .largest_received_at
            .map_or(0, |t| now.saturating_duration_since(t).as_micros() as u64);
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
}
