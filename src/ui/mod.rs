//! The UI room: everything between the user's keyboard and screen and the rest of tailchat.
//!
//! # Layout
//!
//! - [`command`]: a typed line becomes a [`command::Command`] or a [`command::CommandError`]
//!   that tells the user what to type instead. Pure.
//! - [`render`]: an [`render::Output`] becomes one printable line. Pure, and the single place
//!   where peer text is made safe for a terminal ([`render::sanitize`]).
//! - [`completion`]: tab completion of command names and peer nicks. Pure.
//! - [`terminal`]: the edge. Runs rustyline (or plain stdin/stdout when not on a terminal) on
//!   threads of its own and talks to the async rest of the program through channels:
//!   [`terminal::Input`] lines in, [`render::Output`] values out through
//!   [`terminal::OutputSender`]. Its module documentation says how to shut down.
//! - [`tty`]: saves the terminal's modes before the first prompt and puts them back on every
//!   way out, panics included, for when the program ends with a prompt open.
//!
//! The pure modules are unit-tested without a terminal; `terminal` is kept thin because a
//! real terminal is what it cannot be tested against.

pub mod command;
pub mod completion;
pub mod present;
pub mod render;
pub mod terminal;
pub mod tty;
