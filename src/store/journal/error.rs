//! Why the journal could not be opened, read or written: one error type, each variant with
//! what the user needs to act on it (which file, what was being done, what to do).

use super::MAX_PAYLOAD;
use crate::store::dirs::io_reason;
use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why the journal could not be opened, read or written.
#[derive(Debug)]
pub enum JournalError {
    /// The operating system refused an operation on the journal.
    Io {
        /// The journal's path.
        path: PathBuf,
        /// What was being done ("open", "read", "write to", …), for the message.
        action: &'static str,
        /// The operating system's reason.
        source: io::Error,
    },
    /// The file exists but is not a tailchat journal; it was left untouched.
    NotAJournal {
        /// The file's path.
        path: PathBuf,
    },
    /// Another process has the journal open.
    Locked {
        /// The journal's path.
        path: PathBuf,
    },
    /// The journal was opened read-only (its directory cannot be written).
    ReadOnly {
        /// The journal's path.
        path: PathBuf,
    },
    /// A record whose payload is over [`MAX_PAYLOAD`]; readers would take it for corruption.
    RecordTooLarge {
        /// The payload's size.
        bytes: usize,
    },
}

impl fmt::Display for JournalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalError::Io {
                path,
                action,
                source,
            } => write!(
                f,
                "cannot {action} journal {}: {}",
                path.display(),
                io_reason(source)
            ),
            JournalError::NotAJournal { path } if path.is_dir() => write!(
                f,
                "{} is a folder, not tailchat's journal file; it was left untouched — move it \
                 away, or choose another --data-dir",
                path.display()
            ),
            JournalError::NotAJournal { path } => write!(
                f,
                "{}: not a tailchat journal (it does not start with \"TCJ1\"); it was left \
                 untouched — move it away, or choose another --data-dir",
                path.display()
            ),
            JournalError::Locked { path } => write!(
                f,
                "journal {} is in use by another tailchat — quit that one, or choose another \
                 --data-dir (one data directory is one peer)",
                path.display()
            ),
            JournalError::ReadOnly { path } => write!(
                f,
                "journal {} is open read-only: its data directory cannot be written",
                path.display()
            ),
            JournalError::RecordTooLarge { bytes } => write!(
                f,
                "a journal record of {bytes} bytes is over the limit of {MAX_PAYLOAD} bytes"
            ),
        }
    }
}

impl std::error::Error for JournalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            JournalError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
