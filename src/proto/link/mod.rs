//! One peer's reliable link: the ordered, de-duplicated stream of messages in each direction
//! over datagrams that may be lost, duplicated or reordered, and the peer's state as the link
//! sees it ([`LinkState`]).
//!
//! Three numbers are kept apart (see `docs/PROTOCOL.md`): *packet numbers* count datagrams
//! towards this peer and are never reused, so every ack is unambiguous and every RTT sample
//! clean; *stream sequence numbers* order the items (messages, fragments, nick changes) sent to
//! this peer and are what the receiver de-duplicates and reorders by; *message ids* name a
//! message across all its recipients, for delivery reports. A lost packet's items go out again
//! in a new packet.
//!
//! [`Link`] joins four parts, each in its own module with its own tests:
//! - `send`: the queue of outgoing items, the send window, and packing items into datagrams;
//! - `recovery`: packets in flight, acks, loss detection, RTT and the retransmission timeout;
//! - `receive`: packet numbers received and the acks owed, the receive window, reordering,
//!   and the message-id watermark;
//! - `reassembly`: messages sent as fragments.

mod reassembly;
mod receive;
mod recovery;
mod send;

use self::reassembly::{Piece, ReassemblyBuffer};
use self::receive::{Item, Receiver};
use self::recovery::Recovery;
pub use self::send::Style;
pub use self::send::{pieces, Pieces, QueueError};
use self::send::{Carried, SendQueue};
use super::ids::MessageId;
use super::stats::LinkCounters;
use super::wire::{self, Ack, Frame, Header, PeerEntry, MAX_DATAGRAM};
use super::KEEPALIVE_INTERVAL;
use std::time::{Duration, Instant};

/// A peer's state, which its link both runs and follows: one enum for what the user sees as
/// [`crate::proto::PeerState`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// Not heard from in this run: a peer restored from storage, or a link just made for a
    /// peer whose hello is being handled. No timers run; queued items wait.
    Offline,
    /// Answering.
    Online,
    /// Outstanding data has gone unacknowledged for [`crate::proto::UNREACHABLE_AFTER`]: one
    /// packet at a time until it acknowledges something.
    Unreachable {
        /// Hearing the peer already triggered a resend in this timeout period (so its
        /// datagrams cannot drive a resend loop).
        resent_on_heard: bool,
    },
    /// Said goodbye. No timers run; queued items wait for its return.
    Left,
}

impl LinkState {
    /// Whether the peer is away (offline or left): no timers run.
    pub fn is_away(self) -> bool {
        matches!(self, LinkState::Offline | LinkState::Left)
    }
}

impl From<LinkState> for super::PeerState {
    fn from(state: LinkState) -> Self {
        match state {
            LinkState::Offline => Self::Offline,
            LinkState::Online => Self::Online,
            LinkState::Unreachable { .. } => Self::Unreachable,
            LinkState::Left => Self::Left,
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
        /// Direct or group, action or not.
        style: Style,
        /// How long ago it was written, as the sender said.
        age: Duration,
        /// Its text.
        text: String,
    },
    /// The peer changed its nick.
    Nick(String),
    /// The peer told us of peers it knows.
    Peers(Vec<PeerEntry>),
    /// An opaque payload for the application arrived, in order, once per stream.
    AppData(Vec<u8>),
    /// The peer is away (with a reason) or back.
    Presence(Option<String>),
    /// A message was acknowledged in full; `late` if it had been reported delayed.
    Delivered(MessageId, bool),
    /// A message has waited [`crate::proto::DELAYED_AFTER`] without acknowledgement.
    Delayed(MessageId),
    /// Outstanding data has gone unacknowledged for [`crate::proto::UNREACHABLE_AFTER`].
    Unreachable,
    /// An unreachable peer acknowledged something again.
    Reachable,
    /// The peer said it is leaving.
    Left,
}

/// The reliable link to one peer.
#[derive(Debug)]
pub struct Link {
    /// Where the peer stands; decides which timers run and how much is sent.
    state: LinkState,
    /// What we send.
    send: SendQueue,
    /// What is in flight, and when it is lost.
    recovery: Recovery,
    /// What we receive, and the acks we owe.
    receive: Receiver,
    /// The peer's message being reassembled from fragments.
    reassembly: ReassemblyBuffer,
    /// When we last sent an ack-eliciting packet or heard the peer, for keepalives.
    last_activity: Instant,
    /// How long the link stays idle before it pings (set by the endpoint, which knows how
    /// many peers there are: [`crate::proto::keepalive_interval`]).
    keepalive: Duration,
}

impl Link {
    /// A fresh link at time `now`, [`LinkState::Offline`] until [`Link::restart`], that queues
    /// at most `max_queued_items` items.
    pub fn new(now: Instant, max_queued_items: usize) -> Self {
        Self {
            state: LinkState::Offline,
            send: SendQueue::new(max_queued_items),
            recovery: Recovery::default(),
            receive: Receiver::default(),
            reassembly: ReassemblyBuffer::default(),
            last_activity: now,
            keepalive: KEEPALIVE_INTERVAL,
        }
    }

    /// Pings after `keepalive` of idleness from now on; returns whether that changed.
    pub fn set_keepalive(&mut self, keepalive: Duration) -> bool {
        std::mem::replace(&mut self.keepalive, keepalive) != keepalive
    }

    /// Where the peer stands.
    pub fn state(&self) -> LinkState {
        self.state
    }

    /// Whether this link has been declared unreachable.
    pub fn is_unreachable(&self) -> bool {
        matches!(self.state, LinkState::Unreachable { .. })
    }

    /// Counters for statistics, since the link was made.
    pub fn counters(&self) -> LinkCounters {
        LinkCounters {
            duplicates: self.receive.duplicates(),
            retransmitted: self.send.retransmitted(),
            timeouts: self.recovery.timeouts(),
            spurious: self.recovery.spurious(),
            out_of_window: self.receive.out_of_window(),
            bad_fragments: self.reassembly.discarded(),
        }
    }

    /// Smoothed round-trip time, once measured.
    pub fn srtt(&self) -> Option<Duration> {
        self.recovery.srtt()
    }

    /// Takes the RTT the handshake measured, if there is none yet, until the first ack gives
    /// one of the link's own (see [`crate::proto::rtt::RttEstimator::provisional`]).
    pub fn handshake_rtt(&mut self, rtt: Duration) {
        self.recovery.first_rtt_sample(rtt);
    }

    /// Messages queued for this peer and not yet acknowledged.
    pub fn undelivered(&self) -> usize {
        self.send.undelivered()
    }

    /// Our messages from `first` on not yet acknowledged.
    pub fn undelivered_from(&self, first: MessageId) -> usize {
        self.send.undelivered_from(first)
    }

    /// How full its send queue is, as a share of the bound.
    pub fn fullness(&self) -> f64 {
        self.send.fullness()
    }

    /// Our messages it has not acknowledged, in id order.
    pub fn pending_ids(&self) -> Vec<MessageId> {
        self.send.pending_ids()
    }

    /// Whether a leave is still waiting for its ack.
    pub fn leave_outstanding(&self) -> bool {
        self.send.leave_outstanding()
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
        self.send.queue_message(now, msg, style, text)
    }

    /// Queues message `msg` already made into `pieces` ([`pieces`]; a group message's are
    /// made once for all its peers).
    ///
    /// # Errors
    /// [`QueueError::Full`] if it would pass the queue bound.
    pub fn queue_pieces(
        &mut self,
        now: Instant,
        msg: MessageId,
        pieces: &Pieces,
    ) -> Result<(), QueueError> {
        self.send.queue_pieces(now, msg, pieces)
    }

    /// Queues a message an earlier run accepted (and wrote `before` now), past the queue bound
    /// (see `SendQueue::requeue_message`).
    pub fn requeue_message(
        &mut self,
        now: Instant,
        before: Duration,
        msg: MessageId,
        style: Style,
        text: &str,
    ) {
        self.send.requeue_message(now, before, msg, style, text);
    }

    /// Queues a presence change, ordered after everything queued before it.
    pub fn queue_presence(&mut self, away: Option<&str>) {
        self.send.queue_presence(away);
    }

    /// Queues peer-exchange entries.
    pub fn queue_peers(&mut self, peers: &[PeerEntry]) {
        self.send.queue_peers(peers);
    }

    /// Queues an opaque application payload (at most [`wire::MAX_APP_DATA`] bytes).
    ///
    /// # Errors
    /// [`QueueError::Full`] if it would pass the queue bound.
    pub fn queue_app_data(&mut self, data: &[u8]) -> Result<(), QueueError> {
        self.send.queue_app_data(data)
    }

    /// Drops our messages not yet acknowledged; see [`SendQueue::drop_messages`].
    pub fn drop_messages(&mut self) -> Vec<MessageId> {
        self.send.drop_messages()
    }

    /// Takes back a queued application payload not yet acknowledged; see
    /// [`SendQueue::withdraw_app_data`].
    pub fn withdraw_app_data(&mut self, data: &[u8]) -> bool {
        self.send.withdraw_app_data(data)
    }

    /// Queues a nick change, ordered after everything queued before it.
    pub fn queue_nick(&mut self, nick: &str) {
        self.send.queue_nick(nick);
    }

    /// Queues a leave; it goes out even to a peer that is not answering.
    pub fn queue_leave(&mut self) {
        self.send.queue_leave();
    }

    /// The highest message id from this peer already shown.
    pub fn delivered_through(&self) -> MessageId {
        self.receive.delivered_through()
    }

    /// Raises the watermark of messages already shown from this peer (restored from storage
    /// after a restart, so a message resent across restarts is shown once).
    pub fn set_delivered_through(&mut self, id: MessageId) {
        self.receive.set_delivered_through(id);
    }

    /// The peer came back (a hello, or a new session): it is online and everything in flight
    /// is sent afresh. With a new session, its packet numbers and both streams start again:
    /// our unacknowledged messages are queued again, whole and in id order (the receiver's
    /// watermark drops any it had already shown).
    pub fn restart(&mut self, now: Instant, new_session: bool) {
        self.last_activity = now;
        self.send.restart_delay_clock(now);
        self.recovery.reset_backoff();
        self.requeue_all_sent();
        self.recovery.clear_waiting();
        self.state = LinkState::Online;
        if new_session {
            self.receive.restart();
            self.reassembly.clear();
            self.recovery.forget_acks();
            self.send.restart_stream();
        }
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
        if !self.receive.accepts(packet, &frames) {
            return false;
        }
        let eliciting = frames.iter().any(Frame::is_ack_eliciting);
        self.heard(now);
        let mut out_of_order = false;
        for frame in frames {
            match frame {
                Frame::Ack(ack) => self.on_ack(now, &ack, out),
                Frame::Leave => {
                    if !self.state.is_away() {
                        self.state = LinkState::Left;
                        self.requeue_all_sent();
                        out.push(LinkEvent::Left);
                    }
                }
                other => {
                    if let Some((seq, item)) = Item::from_frame(other) {
                        out_of_order |= self.receive.is_ahead(seq);
                        self.receive.push(seq, item);
                        while let Some(item) = self.receive.pop_ready() {
                            self.deliver(now, item, out);
                        }
                    }
                }
            }
        }
        if eliciting {
            self.receive.on_eliciting_packet(now, packet, out_of_order);
        }
        true
    }

    /// The peer spoke: if it was unreachable, everything in flight is resent at once. It counts
    /// as reachable again only once it acknowledges something (hearing it proves one direction
    /// only; with loss the other way, the state would flap).
    fn heard(&mut self, now: Instant) {
        self.last_activity = now;
        if let LinkState::Unreachable { resent_on_heard } = &mut self.state {
            // Once per timeout period: the peer's acks (of packets other than ours, say) must
            // not drive a resend loop.
            if !*resent_on_heard {
                *resent_on_heard = true;
                self.recovery.reset_backoff();
                self.requeue_all_sent();
                self.probe_if_idle();
            }
        }
    }

    /// A ping in the next datagram: whether the peer still answers here.
    pub fn request_ping(&mut self) {
        self.send.request_ping();
    }

    /// Towards an unreachable peer with nothing in flight and nothing to send (what was
    /// outstanding got acknowledged late, by acks of packets presumed lost), a Ping: only an
    /// ack of something in flight makes it reachable again, and without one the link would
    /// stay unreachable for good, the peer hearing us and acking nothing.
    fn probe_if_idle(&mut self) {
        if !self.recovery.in_flight() && self.send.all_sent() && !self.send.leave_pending() {
            self.send.request_ping();
        }
    }

    /// An item in stream order: shown, passed up, or added to the message being reassembled.
    fn deliver(&mut self, now: Instant, item: Item, out: &mut Vec<LinkEvent>) {
        match item {
            Item::Chat {
                msg,
                style,
                age_ms,
                text,
            } => {
                self.reassembly.abandon();
                self.deliver_message(msg, style, age_ms, text, out);
            }
            Item::Nick(nick) => out.push(LinkEvent::Nick(nick)),
            Item::Peers(peers) => out.push(LinkEvent::Peers(peers)),
            Item::AppData(data) => out.push(LinkEvent::AppData(data)),
            Item::Presence(away) => out.push(LinkEvent::Presence(away)),
            Item::Fragment {
                msg,
                style,
                age_ms,
                index,
                count,
                data,
            } => {
                let piece = Piece {
                    msg,
                    style,
                    age_ms,
                    index,
                    count,
                    data,
                };
                if let Some(w) = self.reassembly.push(now, piece) {
                    self.deliver_message(w.msg, w.style, w.age_ms, w.text, out);
                }
            }
        }
    }

    /// Shows a whole message unless the watermark says it was shown before.
    fn deliver_message(
        &mut self,
        msg: MessageId,
        style: Style,
        age_ms: u64,
        text: String,
        out: &mut Vec<LinkEvent>,
    ) {
        if self.receive.accept_message(msg) {
            out.push(LinkEvent::Message {
                msg,
                style,
                age: Duration::from_millis(age_ms),
                text,
            });
        }
    }

    /// An ack: delivery reports for what it covers, reachable again if it was not, and losses
    /// it reveals.
    fn on_ack(&mut self, now: Instant, ack: &Ack, out: &mut Vec<LinkEvent>) {
        let Some(acked) = self.recovery.on_ack(now, ack) else {
            return;
        };
        for carried in acked {
            self.send.on_acked(carried, out);
        }
        if self.is_unreachable() {
            self.state = LinkState::Online;
            self.send.restart_delay_clock(now);
            out.push(LinkEvent::Reachable);
        }
        self.requeue_lost(now);
    }

    /// Sends again what a later ack proves lost.
    fn requeue_lost(&mut self, now: Instant) {
        for carried in self.recovery.detect_lost(now) {
            self.send.on_lost(carried);
        }
    }

    /// Sends again everything in flight.
    fn requeue_all_sent(&mut self) {
        for carried in self.recovery.take_all() {
            self.send.on_lost(carried);
        }
    }

    /// The earliest time [`Link::on_timeout`] has work to do.
    pub fn next_timeout(&self) -> Option<Instant> {
        let ack = self.receive.ack_deadline();
        if self.state.is_away() {
            return ack.into_iter().chain(self.reassembly.deadline()).min();
        }
        let reachable = !self.is_unreachable();
        let keepalive = (!self.recovery.in_flight()
            && reachable
            && self.send.all_sent()
            && !self.send.ping_pending())
        .then_some(self.last_activity + self.keepalive);
        let unreachable = self.recovery.unreachable_deadline().filter(|_| reachable);
        let delay = self.send.next_delay_notice().filter(|_| reachable);
        [
            ack,
            self.recovery.loss_deadline(),
            self.recovery.rto_deadline(self.is_unreachable()),
            keepalive,
            unreachable,
            delay,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs the timers that are due at `now`.
    pub fn on_timeout(&mut self, now: Instant, out: &mut Vec<LinkEvent>) {
        if self.state.is_away() {
            self.reassembly.expire(now);
            return;
        }
        self.requeue_lost(now);
        if let Some(lost) = self.recovery.on_rto(now, self.is_unreachable()) {
            // Timeout: everything in flight is presumed lost and goes out again.
            if let LinkState::Unreachable { resent_on_heard } = &mut self.state {
                *resent_on_heard = false;
            }
            for carried in lost {
                self.send.on_lost(carried);
            }
            if self.send.all_sent() && !self.send.leave_pending() {
                self.send.request_ping();
            }
        }
        let reachable = !self.is_unreachable();
        if !self.recovery.in_flight()
            && self.send.all_sent()
            && reachable
            && self.last_activity + self.keepalive <= now
        {
            self.send.request_ping();
        }
        if reachable
            && self
                .recovery
                .unreachable_deadline()
                .is_some_and(|t| t <= now)
        {
            self.state = LinkState::Unreachable {
                resent_on_heard: false,
            };
            out.push(LinkEvent::Unreachable);
            self.probe_if_idle();
        }
        if self.is_unreachable() {
            return; // the unreachable notice already said that messages wait
        }
        self.send.report_delays(now, out);
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
        let window_end = self.send.window_end();
        // Towards a peer declared unreachable, one packet at a time until it answers: a dead
        // peer costs one datagram per timeout. Before that, new data is sent even while timeouts
        // back off: its acks are the fastest way to find (and repair) what was lost, and on a
        // LAN random loss is far more likely than congestion.
        let probing = self.is_unreachable() && self.recovery.in_flight();
        let has_data = !probing && !self.state.is_away() && self.send.has_data(window_end);
        let ack_due = self.receive.ack_due(now, has_data);
        // A leave goes out even when probing or away: it is the last thing we say.
        let leave_now = self.send.leave_pending();
        if !has_data && !ack_due && !leave_now {
            return None;
        }
        header.packet = self.recovery.next_packet();
        let mut buf = Vec::with_capacity(MAX_DATAGRAM);
        wire::encode_header(&header, &mut buf);
        Frame::Session(to_session).encode_into(&mut buf);
        let empty_len = buf.len();
        if ack_due {
            if let Some(ack) = self.receive.take_ack(now) {
                ack.encode_into(&mut buf);
            }
        }
        let mut carried = Carried::default();
        if has_data {
            self.send.fill(now, &mut buf, window_end, &mut carried);
        }
        if leave_now {
            self.send.fill_leave(&mut buf, &mut carried);
        }
        if has_data && !carried.is_ack_eliciting() {
            self.send.fill_ping(&mut buf, &mut carried);
        }
        if carried.is_ack_eliciting() {
            self.send.on_packet_sent();
            self.recovery.on_packet_sent(now, carried);
            self.last_activity = now;
        }
        debug_assert!(buf.len() <= MAX_DATAGRAM);
        // Nothing fitted (cannot happen with the size limits, but must never loop).
        (buf.len() > empty_len).then_some(buf)
    }
}

#[cfg(test)]
mod tests;
