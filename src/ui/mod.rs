//! The UI room: everything between the user's keyboard and screen and the rest of tailchat.
//!
//! # Layout
//!
//! - [`command`]: a typed line becomes a [`command::Command`] or a [`command::CommandError`]
//!   that tells the user what to type instead. Pure.
//! - [`render`]: an [`render::Output`] becomes one printable line. Pure, and the single place
//!   where peer text is made safe for a terminal ([`render::sanitize`]).
//! - [`completion`]: tab completion of command names and peer nicks. Pure.
//!
//! The modules are pure and unit-tested without a terminal.

pub mod command;
pub mod completion;
pub mod render;
