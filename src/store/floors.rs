//! Where this peer's next run starts its numbering: `floors.toml` in the data directory, kept
//! apart from the journal, so that message ids and sessions never repeat or go back even when
//! the journal is lost or damaged and the clock has meanwhile stepped back.
//!
//! A receiver takes a message whose id is at or below the highest it showed from us for one it
//! already showed: it drops it and acknowledges it, so a repeated id is a message lost with
//! "delivered" said of it (spec §7.3). And a peer refuses a proof in a session smaller than the
//! one it has on record, so a session that went back locks us out of it until it restarts. The
//! journal records both, and both also grow with the wall clock; but a journal deleted or cut
//! short, with a clock set back since, left both behind an earlier run's.
//!
//! So each run writes here at start, atomically and synced, its own session and a message id
//! [`RESERVED`] above its first: the next run's session is larger and its ids start at or above
//! that. A run sends far fewer messages than that (its windows and queues bound it to well
//! under a million a second), so every id it uses is below what it wrote.

use serde::Deserialize;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The file's name in the data directory.
pub const FLOORS_FILE: &str = "floors.toml";

/// Message ids reserved per run: 2^36 (69 billion), far more than a run sends (its windows and
/// acknowledgements hold it to thousands a second). While the floor is ahead of the clock each
/// start moves it on by this much: from about 2^53 today, 2^26 (67 million) starts reach the
/// 2^62 past which the file is not believed — a start every 5 s for ten years.
pub const RESERVED: u64 = 1 << 36;

/// Larger numbers are not what a run writes (ids start near the clock's milliseconds × 4096,
/// about 2^53 today, sessions near its milliseconds × 2^16), and would make the counters that
/// start from them wrap: the file is then taken as damaged.
const PLAUSIBLE: u64 = 1 << 62;

/// Where the next run starts, as the last run wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Floors {
    /// The lowest message id the next run may use.
    pub message_ids_from: u64,
    /// The next run's session must be larger than this.
    pub session_after: u64,
}

/// The file as written: decimal strings, since TOML's integers stop at 2^63.
#[derive(Deserialize)]
struct File {
    message_ids_from: String,
    session_after: String,
}

/// What the last run wrote; all zero if there is no file.
///
/// # Errors
/// The file exists but cannot be read, or is not what this module writes (damaged): the
/// message says which, for the user; numbering then goes on from the journal and the clock.
pub fn read(dir: &Path) -> Result<Floors, String> {
    let path = dir.join(FLOORS_FILE);
    let read = super::dirs::read_kept(&path, 4096)
        .and_then(|bytes| String::from_utf8(bytes).map_err(io::Error::other));
    match read {
        Ok(text) => toml::from_str::<self::File>(&text)
            .ok()
            .and_then(|f| {
                Some(Floors {
                    message_ids_from: f.message_ids_from.parse().ok()?,
                    session_after: f.session_after.parse().ok()?,
                })
            })
            .filter(|f| f.message_ids_from <= PLAUSIBLE && f.session_after <= PLAUSIBLE)
            .ok_or_else(|| format!("{} is damaged: ignored", path.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Floors::default()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Writes `floors` for the next run: to a temporary file, synced, renamed into place, and the
/// directory synced, so a crash leaves the old numbers or the new ones.
///
/// # Errors
/// It could not be written (the disk is full, say).
pub fn write(dir: &Path, floors: Floors) -> io::Result<()> {
    let tmp = dir.join(format!(".{FLOORS_FILE}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        write!(
            file,
            "# Where tailchat's next run in this data directory starts numbering (written at\n\
             # each start; delete it only together with identity.toml).\n\
             message_ids_from = \"{}\"\n\
             session_after = \"{}\"\n",
            floors.message_ids_from, floors.session_after
        )?;
        file.sync_all()?;
        fs::rename(&tmp, dir.join(FLOORS_FILE))
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floors_are_read_back_and_a_damaged_file_is_said() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(read(tmp.path()), Ok(Floors::default()));
        let floors = Floors {
            message_ids_from: 1 << 60,
            session_after: 123_456_789_012,
        };
        write(tmp.path(), floors).unwrap();
        assert_eq!(read(tmp.path()), Ok(floors));
        // Numbers no run writes, near the end of the counters: damaged, not believed.
        let huge = Floors {
            message_ids_from: u64::MAX - 1,
            ..floors
        };
        write(tmp.path(), huge).unwrap();
        assert!(read(tmp.path()).unwrap_err().contains("damaged"));
        fs::write(tmp.path().join(FLOORS_FILE), "message_ids_from = \"x\"").unwrap();
        assert!(read(tmp.path()).unwrap_err().contains("damaged"));
        fs::remove_file(tmp.path().join(FLOORS_FILE)).unwrap();
        fs::create_dir(tmp.path().join(FLOORS_FILE)).unwrap();
        assert!(read(tmp.path()).is_err());
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
    }
}
