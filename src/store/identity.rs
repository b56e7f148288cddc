//! This peer's identity: the [`PeerId`] it keeps across restarts, in `identity.toml`.
//!
//! The file holds one line that matters, `peer_id = "0123456789abcdef"` (16 hex digits; other
//! keys are ignored). Peers remember each other by this id, so losing it silently would make
//! this peer a stranger to everyone: a file that cannot be read as an identity is an error,
//! never replaced. A new file is written atomically (temporary file, fsync, link into place,
//! fsync of the directory), so a crash leaves either no identity or a whole one.

use crate::proto::PeerId;
use crate::store::dirs::io_reason;
use serde::Deserialize;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The identity file's name in the data directory.
pub const IDENTITY_FILE: &str = "identity.toml";

/// What the file must contain; unknown keys are tolerated so a newer version may add some.
#[derive(Deserialize)]
struct IdentityFile {
    /// The id as 16 hex digits.
    peer_id: String,
}

/// Reads this peer's id from `dir/identity.toml`, or, if the file does not exist, creates it
/// with the id `fresh()` returns (called only then).
///
/// # Errors
/// The file cannot be read or written, or exists and is not a tailchat identity; the message
/// names the file and how to recover.
pub fn load_or_create(dir: &Path, fresh: impl FnOnce() -> u64) -> Result<PeerId, String> {
    let path = dir.join(IDENTITY_FILE);
    if let Some(id) = read(&path)? {
        return Ok(id);
    }
    let id = PeerId(fresh());
    match create(dir, &path, id) {
        Ok(true) => {
            tracing::info!("created identity {id} in {}", path.display());
            Ok(id)
        }
        // Another process created the file since we looked: its id is the one on disk, so it is
        // the one to use.
        Ok(false) => read(&path)?.ok_or_else(|| {
            format!(
                "identity file {} vanished while being created — start again",
                path.display()
            )
        }),
        Err(e) => Err(format!(
            "cannot create identity file {}: {} — check the data directory, or choose another \
             with --data-dir",
            path.display(),
            io_reason(&e)
        )),
    }
}

/// The identity in `dir`, without creating one: for a data directory that cannot be written.
///
/// # Errors
/// The file exists but cannot be read or is not an identity file.
pub fn load(dir: &Path) -> Result<Option<PeerId>, String> {
    read(&dir.join(IDENTITY_FILE))
}

/// The id in `path`, or `None` if there is no such file.
fn read(path: &Path) -> Result<Option<PeerId>, String> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(format!(
                "cannot read identity file {}: {}",
                path.display(),
                io_reason(&e)
            ))
        }
    };
    parse(&bytes).map(Some).ok_or_else(|| {
        format!(
            "{}: not a tailchat identity (expected peer_id = \"16 hex digits\") — move it away \
             to start as a new peer, or restore it from a backup",
            path.display()
        )
    })
}

/// The id in an identity file's contents, if they are one.
fn parse(bytes: &[u8]) -> Option<PeerId> {
    let text = std::str::from_utf8(bytes).ok()?;
    let file: IdentityFile = toml::from_str(text).ok()?;
    let hex = file.peer_id;
    // Checked by hand because `from_str_radix` also accepts a sign and fewer digits.
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(&hex, 16).ok().map(PeerId)
}

/// Writes `id` to `path` atomically. `Ok(false)` if `path` appeared meanwhile (left as it is).
fn create(dir: &Path, path: &Path, id: PeerId) -> io::Result<bool> {
    let tmp: PathBuf = dir.join(format!(".{IDENTITY_FILE}.{}.tmp", std::process::id()));
    let written = write_synced(&tmp, id);
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // A hard link, unlike a rename, never replaces a file: if two processes race to create the
    // identity, one wins and the other adopts the winner's id.
    let placed = match fs::hard_link(&tmp, path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        // Some file systems have no hard links; a rename is still atomic for a crash.
        Err(_) => fs::rename(&tmp, path).map(|()| true),
    };
    // Nothing to lose if this fails: it is our temporary name, already linked or renamed.
    let _ = fs::remove_file(&tmp);
    let placed = placed?;
    // The new directory entry is only durable once the directory itself is synced.
    File::open(dir)?.sync_all()?;
    Ok(placed)
}

/// Creates `tmp` (mode 0600: the id is how other peers recognise us) holding `id`, synced.
fn write_synced(tmp: &Path, id: PeerId) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(tmp)?;
    write!(
        file,
        "# This peer's identity. Keep it to stay the same peer to others across restarts.\n\
         peer_id = \"{id}\"\n"
    )?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn creates_then_reloads_the_same_id() {
        let tmp = tempfile::tempdir().unwrap();
        let id = load_or_create(tmp.path(), || 0x0123_4567_89ab_cdef).unwrap();
        assert_eq!(id, PeerId(0x0123_4567_89ab_cdef));
        let path = tmp.path().join(IDENTITY_FILE);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("peer_id = \"0123456789abcdef\"\n"), "{text}");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let again = load_or_create(tmp.path(), || panic!("must not mint a new id")).unwrap();
        assert_eq!(again, id);
        // Only the identity is left: no temporary file.
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
    }

    #[test]
    fn reads_a_hand_written_file() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(
            tmp.path().join(IDENTITY_FILE),
            "# mine\npeer_id = \"FFFFFFFFFFFFFFFE\"\nfuture_key = 1\n",
        )
        .unwrap();
        let id = load_or_create(tmp.path(), || panic!("must not mint a new id")).unwrap();
        assert_eq!(id, PeerId(0xffff_ffff_ffff_fffe));
    }

    #[test]
    fn malformed_files_are_errors_and_left_untouched() {
        let bad: [&[u8]; 7] = [
            b"",
            b"peer_id = 12\n",
            b"peer_id = \"0123\"\n",
            b"peer_id = \"+123456789abcdef\"\n",
            b"peer_id = \"0123456789abcdeg\"\n",
            b"not toml at all [",
            b"\xff\xfe\x00",
        ];
        for contents in bad {
            let tmp = tempfile::tempdir().unwrap();
            let path = tmp.path().join(IDENTITY_FILE);
            fs::write(&path, contents).unwrap();
            let err = load_or_create(tmp.path(), || panic!("must not replace")).unwrap_err();
            assert_eq!(
                err,
                format!(
                    "{}: not a tailchat identity (expected peer_id = \"16 hex digits\") — move \
                     it away to start as a new peer, or restore it from a backup",
                    path.display()
                )
            );
            assert_eq!(fs::read(&path).unwrap(), contents);
        }
    }

    #[test]
    fn concurrent_creator_wins() {
        // `fresh` runs between the check and the write, so it can play the other process.
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(IDENTITY_FILE);
        let id = load_or_create(tmp.path(), || {
            fs::write(&path, "peer_id = \"00000000000000aa\"\n").unwrap();
            0xbb
        })
        .unwrap();
        assert_eq!(id, PeerId(0xaa));
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
    }

    #[test]
    fn unwritable_dir_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("missing");
        let err = load_or_create(&missing, || 1).unwrap_err();
        assert!(
            err.starts_with(&format!(
                "cannot create identity file {}: No such file or directory",
                missing.join(IDENTITY_FILE).display()
            )),
            "{err}"
        );
    }
}
