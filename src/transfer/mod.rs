//! File transfer: offering a file or a folder to one peer, and taking one in, outside the chat's
//! stream.
//!
//! The control messages (offer, accept, decline, resume, cancel, done) are small
//! [`control::Control`] values that the application sends in the chat's reliable stream as
//! `AppData` payloads; the bytes themselves go over one TCP connection per attempt, which the
//! receiver opens to the sender and authenticates with the offer's random token
//! ([`data`]). So a transfer never passes through the chat's 128-item window or its journal,
//! and TCP (with BBR where the kernel has it) does the congestion control, keeping the queue
//! a chat datagram waits behind short. `docs/PROTOCOL.md` §13 is the normative description.
//!
//! # Layout
//! - [`control`]: the control messages and their encoding.
//! - [`manifest`]: what is offered — every file's path, size and BLAKE3 hash — built from a
//!   path on the sender, checked on the receiver.
//! - [`names`]: making a peer's names safe on our disk: sanitising, unique names, never
//!   overwriting.
//! - [`data`]: the data connection's request and response headers.
//! - [`admit`]: who gets a place on the sender's data port.
//! - [`serve`]: the sender's side: a TCP listener that serves offered files to token holders.
//! - [`fetch`]: the receiver's side: one thread per transfer that pulls, writes `NAME.part`,
//!   checks each hash and moves the file into place.
//! - [`hashing`]: the receiver's BLAKE3 check, by 1 MiB units (whole subtrees) that a helper
//!   thread hashes, or the receiving thread itself when the helper is behind.
//! - [`record`]: one small JSON file per transfer in `DATA_DIR/transfers/`, so an unfinished
//!   transfer resumes after a restart of either side.
//!
//! Data moves on threads of its own (blocking sockets and files), never on the chat's event
//! loop, which only hears about it through [`DataEvent`]s.

pub mod admit;
pub mod control;
pub mod data;
pub mod fetch;
pub mod hashing;
pub mod manifest;
pub mod names;
pub mod pacing;
pub mod record;
pub mod serve;
pub mod tcp_info;

use crate::proto::PeerId;
use std::path::PathBuf;

/// A transfer, everywhere: the peer that offered it and the id that peer gave it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransferKey {
    /// Who offered it (us, for an outgoing transfer).
    pub offerer: PeerId,
    /// The offerer's random id for it.
    pub id: u64,
}

/// What the data threads tell the event loop.
#[derive(Debug)]
pub enum DataEvent {
    /// An outgoing offer's manifest is built (or could not be).
    Prepared {
        /// Which transfer.
        id: u64,
        /// The manifest, or why there is none.
        result: Result<manifest::Prepared, String>,
    },
    /// A receiver connected and is being served from byte `from` of the whole offer.
    Serving {
        /// Which of our offers.
        id: u64,
        /// Where in the whole offer it resumed, in bytes.
        from: u64,
    },
    /// Progress of serving: `done` bytes of the whole offer sent (including what an earlier
    /// connection sent).
    ServeProgress {
        /// Which of our offers.
        id: u64,
        /// Bytes of the offer the receiver has (or is about to have).
        done: u64,
    },
    /// A data connection of ours ended.
    ServeEnded {
        /// Which of our offers.
        id: u64,
        /// Where this connection started, in bytes of the whole offer.
        from: u64,
        /// Bytes this connection sent.
        sent: u64,
        /// What went wrong, if anything; `Err(Unreadable)` means the source changed.
        result: Result<(), serve::ServeError>,
    },
    /// A fetch attempt has the manifest and is about to take bytes, from byte `from` of the
    /// whole offer (the receiver's [`DataEvent::Serving`]).
    Fetching {
        /// Which transfer.
        key: TransferKey,
        /// Where in the whole offer it resumes, in bytes.
        from: u64,
    },
    /// Progress of a fetch: `done` bytes of the whole offer are on our disk.
    FetchProgress {
        /// Which transfer.
        key: TransferKey,
        /// Bytes done.
        done: u64,
    },
    /// A fetch got the offer's manifest (checked against the offer's hash).
    FetchManifest {
        /// Which transfer.
        key: TransferKey,
        /// Its encoding, to keep for a resume.
        bytes: Vec<u8>,
    },
    /// One file of a fetch was checked and moved into place.
    FileDone {
        /// Which transfer.
        key: TransferKey,
        /// Which file, in manifest order.
        index: u32,
        /// Where it is now.
        path: PathBuf,
    },
    /// Files the record counts as in place are not at their names any more (moved or
    /// deleted since they were received): `count` of them from file `index`, the first at
    /// `path`, are fetched again.
    FilesGone {
        /// Which transfer.
        key: TransferKey,
        /// The first file not in place, in manifest order.
        index: u32,
        /// How many in all.
        count: u32,
        /// Where the first should be.
        path: PathBuf,
    },
    /// A fetch attempt ended.
    FetchEnded {
        /// Which transfer.
        key: TransferKey,
        /// Where it started in bytes of the whole offer, and how it ended.
        from: u64,
        /// How it ended.
        result: Result<(), fetch::FetchError>,
    },
    /// Time to try a fetch again.
    Retry {
        /// Which transfer.
        key: TransferKey,
    },
    /// Time to look whether a transfer paused for lack of space fits now.
    SpaceCheck {
        /// Which transfer.
        key: TransferKey,
    },
    /// A data connection broke a moment ago, for this reason: said now, unless the
    /// transfer ended (a Cancel overtaken by the broken connection) or goes again.
    Interrupted {
        /// Which transfer.
        key: TransferKey,
        /// Why it broke.
        why: String,
    },
}

/// `n` things: `1 file`, `2 files` (`one` and `many` are the noun's two forms).
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `bytes` for people: `512 B`, `4.2 KB`, `4.2 MB`, `1.3 GB` (powers of 1000, as file managers
/// show sizes).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KB", "MB", "GB", "TB", "PB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1000.0;
    let mut unit = 0;
    while value >= 999.95 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS.get(unit).copied().unwrap_or("PB"))
}

#[cfg(test)]
mod tests {
    use super::human_size;

    #[test]
    fn sizes_read_like_a_file_manager() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(999), "999 B");
        assert_eq!(human_size(4_200_000), "4.2 MB");
        assert_eq!(human_size(10 * 1024 * 1024), "10.5 MB");
        assert_eq!(human_size(999_999), "1.0 MB");
        assert_eq!(human_size(1_300_000_000), "1.3 GB");
    }
}
