//! tailchat: a peer-to-peer chat for the terminal, for a small trusted network.
//!
//! # Layout
//! Data flows one way: socket → `proto` → event → `app` → (journal, screen), and keyboard →
//! `app` → `proto` → datagram → socket.
//! - [`proto`]: the pure protocol core — wire format, reliable exactly-once delivery, the peer
//!   table, the nick rule. No sockets, no clock, no tokio.
//! - [`app`]: the application — the event loop, what each command and event does, the
//!   persistence policy (which events become journal records, synced before datagrams
//!   leave), settings and start-up. Unit-tested over channels.
//! - [`net`]: the socket, addresses as users type them, LAN discovery, and batched datagram
//!   I/O. Imports only `proto`.
//! - [`ui`]: the terminal — command parsing, rendering and presentation (pure), and the
//!   rustyline edge, fed over channels.
//! - [`store`]: everything on disk — the data directory (identity, and the journal of the
//!   conversation: history, and what a restart needs to resend and deduplicate) and the config
//!   file.
//! - [`transfer`]: files and folders sent to one peer — control messages in the chat's
//!   stream, the data over TCP, names made safe, hashes checked, unfinished transfers kept.
//! - [`clock`]: the wall clock, read one way (a clock before 1970 does not panic).
//! - `main.rs`: parses the command line, sets up logging, the runtime and the terminal, and
//!   hands over to [`app::run`].
pub mod app;
pub mod clock;
pub mod net;
pub mod proto;
pub mod store;
pub mod transfer;
pub mod ui;
