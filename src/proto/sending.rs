//! What [`crate::proto::Endpoint::send_message`] takes and gives back: who a message is for
//! ([`Recipients`]), what was accepted ([`Sent`]) and why a message was refused as a whole
//! ([`SendError`]).

use super::ids::{MessageId, PeerId};
use super::MAX_MESSAGE_BYTES;
use std::fmt;

/// Who a message is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recipients {
    /// Every known peer, including ones that left or are offline (they get it when back).
    Everyone,
    /// One peer, as a direct message.
    Peer(PeerId),
}

/// A message accepted by [`crate::proto::Endpoint::send_message`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// The id its delivery events will carry.
    pub id: MessageId,
    /// The peers it was queued for (empty if nobody is known yet).
    pub recipients: Vec<PeerId>,
    /// The peers whose queue was full: it will not reach them.
    pub refused: Vec<PeerId>,
}

/// Why a message was refused as a whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendError {
    /// Longer than [`MAX_MESSAGE_BYTES`].
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// An empty message.
    Empty,
    /// A direct message to a peer that is not known.
    UnknownPeer,
    /// After [`crate::proto::Endpoint::leave`].
    Leaving,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::TooLong { len } => write!(
                f,
                "message is {len} bytes; the limit is {MAX_MESSAGE_BYTES} bytes (64 KiB)"
            ),
            SendError::Empty => write!(f, "empty message"),
            SendError::UnknownPeer => write!(f, "no such peer"),
            SendError::Leaving => write!(f, "leaving: no more messages are accepted"),
        }
    }
}

impl std::error::Error for SendError {}

/// Why [`crate::proto::Endpoint::send_app_data`] did not queue a payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppDataError {
    /// No such peer.
    UnknownPeer,
    /// Not heard from in this run, so whether it understands application payloads is not
    /// known yet: try again once it has joined.
    NotHeard,
    /// Its hello does not have [`crate::proto::wire::caps::APP_DATA`]: an older tailchat.
    Unsupported,
    /// Longer than [`crate::proto::wire::MAX_APP_DATA`].
    TooLong,
    /// Its queue is full.
    QueueFull,
}

impl fmt::Display for AppDataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AppDataError::UnknownPeer => "no such peer",
            AppDataError::NotHeard => "not heard from yet in this run",
            AppDataError::Unsupported => "its tailchat does not understand application data",
            AppDataError::TooLong => "payload too long",
            AppDataError::QueueFull => "its queue is full",
        })
    }
}

impl std::error::Error for AppDataError {}
