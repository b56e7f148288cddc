//! tailchat, a peer-to-peer terminal chat. This file only wires in the UI room for now.

pub mod ui;
