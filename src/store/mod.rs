//! Storage: everything tailchat keeps on disk, which all lives in one data directory (see
//! [`dirs::data_dir`]; `--data-dir` chooses another), except the config file, which is only
//! read.
//!
//! # What lives where
//! In the data directory (created mode 0700):
//! - `identity.toml` ([`identity`]): this peer's ed25519 key pair (mode 0600), created at first
//!   start; its [`PeerId`](crate::proto::PeerId) is derived from the public key. Peers know
//!   each other by it, so it is never replaced silently (a version-1 file, a bare PeerId, is
//!   upgraded once, with a notice).
//! - `journal` ([`journal`]): the append-only record of the conversation — what we said and
//!   heard, deliveries, and how to reach peers — from which a restart rebuilds the outbox, the
//!   deduplication state and the peer list, and `/history` reads. Kept bounded by compaction:
//!   the history [`journal::HistoryLimit`] allows (the config file's `history_limit`), shared
//!   fairly among senders, plus whatever a restart needs, whatever its age. While it is being
//!   compacted, `journal.compacting` holds the new file.
//! - `floors.toml` ([`floors`]): where the next run's message ids and session start, written
//!   at each start, so that they never repeat even when the journal is lost and the clock set
//!   back.
//! - `prompt_history`: the lines typed at the prompt, kept by the terminal's line editor.
//! - `tailchat.log`: the diagnostic log.
//!
//! Outside it, `config.toml` ([`config`], at [`dirs::config_file`]): defaults for the command
//! line's options.
//!
//! # When data reaches the disk
//! - The journal is synced (fdatasync) once per batch of work (group commit): after appending
//!   the batch's records, before any acknowledgement of a message heard in that batch leaves,
//!   and before any datagram carrying a message we wrote in it leaves. So a peer never believes
//!   we have a message that a crash could lose, and we never send a message that a restart
//!   would forget to resend or would number again.
//! - The identity is written once, atomically: temporary file, fsync, link into place, fsync of
//!   the directory.
//! - A compacted journal replaces the old one the same way: written to `journal.compacting`,
//!   fsynced, renamed over `journal`, directory fsynced; a crash leaves the old journal or the
//!   new one, and a leftover temporary file is removed at the next start.
//! - The config file is only read.
//! - The journal holds an exclusive lock while open: one data directory is one running peer.
//!
//! # Layout
//! - [`dirs`]: the data directory and config file paths, and the start-up writability check.
//! - [`identity`]: the identity file, read or created.
//! - [`journal`]: the journal's format, its tolerant reader, the restart summary, history,
//!   compaction and the history limit.
//! - [`config`]: the config file (`history_limit` among its settings), parsed with
//!   line-numbered errors.

pub mod config;
pub mod dirs;
pub mod floors;
pub mod identity;
pub mod journal;

/// The identity file's name in the data directory.
pub use identity::IDENTITY_FILE;
/// The journal's file name in the data directory.
pub use journal::JOURNAL_FILE;

/// The prompt history's file name in the data directory (kept by the line editor).
pub const PROMPT_HISTORY_FILE: &str = "prompt_history";
/// The log file's name in the data directory.
pub const LOG_FILE: &str = "tailchat.log";
