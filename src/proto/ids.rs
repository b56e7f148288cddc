//! Identifiers that cross the wire: who a peer is, and which message is which.
//!
//! A peer is named by a random [`PeerId`], never by its address (a peer may have several, and
//! they change) nor by its nick (two peers may share one). A [`MessageId`] numbers the messages
//! one sender writes, so a delivery report can say which message it is about; it is separate
//! from packet numbers and stream sequence numbers (see `docs/PROTOCOL.md`).

use serde::{Deserialize, Serialize};
use std::fmt;

/// A peer's random 64-bit identity, chosen once per identity and carried in every datagram.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PeerId(pub u64);

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({self})")
    }
}

/// The number a sender gives each message it writes (1, 2, 3, …), unique per sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MessageId(pub u64);

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}
