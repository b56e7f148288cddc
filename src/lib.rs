//! tailchat: a peer-to-peer chat for the terminal, for a small trusted network.
//!
//! # Layout
//! - [`proto`]: the pure protocol core — wire format, reliable exactly-once delivery, the peer
//!   table. No sockets, no clock, no tokio.
//! - [`net`]: the socket, addresses as users type them, and the driver task that runs the core
//!   against the network and the clock.
//! - [`ui`]: the terminal — command parsing and rendering (pure), presentation of events, and
//!   the rustyline edge.
//! - [`store`]: everything on disk — the data directory (identity, and the journal of the
//!   conversation: history, and what a restart needs to resend and deduplicate) and the config
//!   file.
//! - `main.rs`: the command line, logging, and start-up.
pub mod net;
pub mod proto;
pub mod store;
pub mod ui;
