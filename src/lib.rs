//! tailchat: a peer-to-peer chat for the terminal, for a small trusted network.
//!
//! # Layout
//! - [`proto`]: the pure protocol core (wire format, reliable delivery, peer table).
pub mod proto;
