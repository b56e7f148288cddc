//! What an endpoint gives back: datagrams to send ([`Transmit`], from
//! [`crate::proto::Endpoint::poll_transmit`]) and what happened, for the user interface and the
//! journal ([`Event`], from [`crate::proto::Endpoint::poll_event`]).

use super::ids::{MessageId, PeerId};
use std::net::SocketAddr;
use std::time::Duration;

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub to: SocketAddr,
    /// The UDP payload, never over [`crate::proto::wire::MAX_DATAGRAM`] bytes.
    pub bytes: Vec<u8>,
}

/// Why a message will not reach a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UndeliveredReason {
    /// That peer's queue is full (see [`crate::proto::Limits::max_queued_items`]).
    QueueFull,
    /// That peer hears a later run of our own identity instead of this one
    /// ([`Event::Superseded`]): it would take our messages for that run's, already shown.
    Superseded,
}

/// Why a peer was forgotten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForgetReason {
    /// The table was full and this absent peer, with nothing waiting for it and not heard in
    /// the last day, made room for a newcomer.
    Room,
    /// It said it was ephemeral, and it left.
    Ephemeral,
    /// The application asked ([`crate::proto::Endpoint::forget`]): `/forget`, or not heard
    /// for too long.
    Asked,
}

/// Something that happened, for the user interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A new peer, or one that had left, said hello.
    PeerJoined {
        /// Who.
        peer: PeerId,
        /// Its nick.
        nick: String,
        /// The nick it had when last heard, if it comes back under another one (it renamed
        /// while away, or restarted with another `--nick`).
        was: Option<String>,
        /// Where it was heard from.
        addr: SocketAddr,
    },
    /// A peer changed its nick.
    PeerRenamed {
        /// Who.
        peer: PeerId,
        /// The nick before.
        old: String,
        /// The nick now.
        new: String,
    },
    /// A peer said goodbye.
    PeerLeft {
        /// Who.
        peer: PeerId,
        /// Its nick.
        nick: String,
        /// Our messages still queued for it, kept for its return.
        queued: usize,
        /// It said it is ephemeral: it is forgotten once its leave is acknowledged again if
        /// need be ([`ForgetReason::Ephemeral`]), and never known again after a restart.
        ephemeral: bool,
    },
    /// A peer stopped acknowledging.
    PeerUnreachable {
        /// Who.
        peer: PeerId,
        /// Its nick.
        nick: String,
        /// Our messages queued for it.
        queued: usize,
    },
    /// An unreachable peer answered again; its queue is being resent.
    PeerReachable {
        /// Who.
        peer: PeerId,
        /// Its nick.
        nick: String,
    },
    /// A peer online all along proved a new session: it restarted before it was missed. Its
    /// link started again (our messages it had not acknowledged go to the new run), but what
    /// the earlier run was told and acknowledged is gone with it unless it kept it: what
    /// rests on that (a file offer it never answered) is worth saying again.
    PeerRestarted {
        /// Who.
        peer: PeerId,
        /// Its nick.
        nick: String,
    },
    /// A message arrived (exactly once, in the sender's order).
    Message {
        /// From whom.
        from: PeerId,
        /// The sender's nick when it arrived.
        nick: String,
        /// The sender's id for it.
        id: MessageId,
        /// Sent to us alone.
        direct: bool,
        /// An action (`/me waves`): shown as `* alice waves`.
        action: bool,
        /// How long before its arrival it was written, as the sender measured (its clock
        /// need not be right): a message that waited in an outbox arrives old.
        age: Duration,
        /// The text, as sent (not yet sanitised for a terminal).
        text: String,
    },
    /// A peer said it is away (`Some(reason)`, perhaps empty) or back (`None`).
    PeerAway {
        /// Who.
        peer: PeerId,
        /// Its nick.
        nick: String,
        /// Its reason, or `None` for back.
        away: Option<String>,
    },
    /// A peer acknowledged all of one of our messages.
    Delivered {
        /// Which peer.
        to: PeerId,
        /// Which message.
        id: MessageId,
        /// It had been reported as delayed.
        late: bool,
    },
    /// A message has not been acknowledged after [`crate::proto::DELAYED_AFTER`]; still
    /// trying.
    DeliveryDelayed {
        /// Which peer.
        to: PeerId,
        /// Which message.
        id: MessageId,
    },
    /// A message will not be delivered to a peer.
    Undelivered {
        /// Which peer.
        to: PeerId,
        /// Which message.
        id: MessageId,
        /// Why.
        reason: UndeliveredReason,
    },
    /// A peer was forgotten: taken out of the table with its queue.
    PeerForgotten {
        /// Who.
        peer: PeerId,
        /// Its nick.
        nick: String,
        /// Our messages that were waiting for it, now dropped.
        dropped: Vec<MessageId>,
        /// Why.
        reason: ForgetReason,
    },
    /// A new peer proved itself but could not join: the table is full of peers that must stay
    /// (messages wait for them, or they were heard today), or its address holds as many peers
    /// as one may. Told at most once per [`crate::proto::REFUSED_TOLD_EVERY`] (a crowd of
    /// newcomers is one notice), and counted in [`crate::proto::Stats::table_full`].
    NewcomerRefused {
        /// Where it came from.
        addr: SocketAddr,
        /// The nick it gave.
        nick: String,
        /// The address's share was full, rather than the whole table.
        address_full: bool,
    },
    /// An address we were asked to contact has not answered several hellos (still trying).
    AddressUnanswered {
        /// The address.
        addr: SocketAddr,
    },
    /// An application payload arrived from a peer (see [`crate::proto::Endpoint::send_app_data`]),
    /// in the sender's order. After the peer restarts, one may arrive again.
    AppData {
        /// From whom.
        from: PeerId,
        /// The payload, as sent.
        data: Vec<u8>,
    },
    /// An earlier run of a known peer (an older session than the one on record, its proof fresh
    /// and its signature good) is still running, and is refused: a later run took its place
    /// (its identity runs twice, from a copied data directory, say). Reported once per run.
    EarlierRunRefused {
        /// The peer.
        peer: PeerId,
        /// The nick that run proved.
        nick: String,
        /// Where that run is.
        addr: SocketAddr,
    },
    /// A peer refused a proof of ours because a later run of our own identity (a copy of our
    /// data directory, running elsewhere) took our place there: that peer no longer hears this
    /// run. Reported once per peer.
    Superseded {
        /// The peer that refused us.
        by: PeerId,
        /// Where it is.
        addr: SocketAddr,
    },
    /// A tailchat of another protocol version is sending to us (reported once per address).
    VersionMismatch {
        /// Its address.
        from: SocketAddr,
        /// Its version.
        version: u8,
    },
}

impl Event {
    /// Whether it may change who is present or what they are called (see
    /// [`crate::proto::Endpoint::roster_version`]). Only what is known to change neither says
    /// no, so that a kind of event added later counts as a change until shown otherwise.
    #[must_use]
    pub fn changes_roster(&self) -> bool {
        // Away, or reachable again (from unreachable only): present before and after (only
        // a peer that left is not), under the same nick (a nick that changes with it comes as
        // its own event). "Unreachable" changes nothing either today (only an online link
        // becomes unreachable) but still counts: that rests on the link's timers, and a wrong
        // name costs more than a rebuild.
        !matches!(
            self,
            Event::Message { .. }
                | Event::PeerAway { .. }
                | Event::PeerReachable { .. }
                | Event::PeerRestarted { .. }
                | Event::AppData { .. }
                | Event::Delivered { .. }
                | Event::DeliveryDelayed { .. }
                | Event::Undelivered { .. }
                | Event::AddressUnanswered { .. }
                | Event::EarlierRunRefused { .. }
                | Event::Superseded { .. }
                | Event::VersionMismatch { .. }
        )
    }
}
