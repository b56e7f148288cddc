//! This peer's identity: its ed25519 key pair, kept across restarts in `identity.toml`.
//!
//! The file (mode 0600) holds `secret_key = "…"` (64 hex digits, the ed25519 seed) and, for
//! people reading it, `peer_id = "…"` (16 hex digits), which protocol 2 derives from the key
//! (other keys are ignored). Peers recognise each other by the key, so losing the file silently
//! would make this peer a stranger to everyone, and leaking it would let someone else be this
//! peer: a file that cannot be read as an identity is an error, never replaced, and files are
//! created mode 0600. A new file is written atomically (temporary file, fsync, link into place,
//! fsync of the directory), so a crash leaves either no identity or a whole one.
//!
//! A file written by tailchat before protocol 2 holds only a random `peer_id`. Such an id can
//! be claimed by anyone who has seen it, which is why protocol 2 derives the PeerId from a key;
//! the file is upgraded in place with a new key pair (the old id is kept in it as
//! `previous_peer_id`, for reference) and [`Loaded::upgraded_from`] tells the caller, who tells
//! the user: peers that knew the old id meet a new peer, once.

use crate::proto::identity::SECRET_KEY_LEN;
use crate::proto::{Identity, PeerId};
use crate::store::dirs::io_reason;
use serde::Deserialize;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The identity file's name in the data directory.
pub const IDENTITY_FILE: &str = "identity.toml";

/// The keys of the file that matter; unknown keys are tolerated so a newer version may add some.
#[derive(Deserialize)]
struct IdentityFile {
    /// The PeerId as 16 hex digits: derived from the key (protocol 2), or the whole identity
    /// (a file from before protocol 2).
    peer_id: Option<String>,
    /// The ed25519 seed as 64 hex digits.
    secret_key: Option<String>,
}

/// What an identity file holds.
enum Contents {
    /// A key pair.
    Current(Box<Identity>),
    /// Only a PeerId, from before protocol 2.
    Old(PeerId),
}

/// The identity to run as.
#[derive(Debug)]
pub struct Loaded {
    /// The key pair.
    pub identity: Identity,
    /// The PeerId of a file from before protocol 2 that was just upgraded to this key pair.
    pub upgraded_from: Option<PeerId>,
    /// The file did not exist: this key pair was made now.
    pub created: bool,
}

/// Reads this peer's identity from `dir/identity.toml`; creates the file with the key pair
/// `fresh()` gives (called only then) if it does not exist, or upgrades a file from before
/// protocol 2 with it.
///
/// # Errors
/// The file cannot be read or written, or exists and is not a tailchat identity; the message
/// names the file and how to recover.
pub fn load_or_create(
    dir: &Path,
    fresh: impl FnOnce() -> [u8; SECRET_KEY_LEN],
) -> Result<Loaded, String> {
    let path = dir.join(IDENTITY_FILE);
    match read(&path)? {
        Some(Contents::Current(identity)) => {
            return Ok(Loaded {
                identity: *identity,
                upgraded_from: None,
                created: false,
            })
        }
        Some(Contents::Old(old)) => {
            let identity = Identity::from_secret(fresh());
            return match replace(dir, &path, &identity, old) {
                Ok(()) => {
                    tracing::info!(
                        "upgraded identity {old} to {} in {}",
                        identity.peer_id(),
                        path.display()
                    );
                    Ok(Loaded {
                        identity,
                        upgraded_from: Some(old),
                        created: false,
                    })
                }
                Err(e) => Err(format!(
                    "cannot upgrade identity file {} to a key pair: {} — check the data \
                     directory, or choose another with --data-dir",
                    path.display(),
                    io_reason(&e)
                )),
            };
        }
        None => {}
    }
    let identity = Identity::from_secret(fresh());
    match create(dir, &path, &identity) {
        Ok(true) => {
            tracing::info!(
                "created identity {} in {}",
                identity.peer_id(),
                path.display()
            );
            Ok(Loaded {
                identity,
                upgraded_from: None,
                created: true,
            })
        }
        // Another process created the file since we looked: its key is the one on disk, so it
        // is the one to use.
        Ok(false) => match read(&path)? {
            Some(Contents::Current(identity)) => Ok(Loaded {
                identity: *identity,
                upgraded_from: None,
                created: false,
            }),
            _ => Err(format!(
                "identity file {} changed while being created — start again",
                path.display()
            )),
        },
        Err(e) => Err(format!(
            "cannot create identity file {}: {} — check the data directory, or choose another \
             with --data-dir",
            path.display(),
            io_reason(&e)
        )),
    }
}

/// Makes the identity file in `dir` readable by its owner alone if others could read it (a
/// copy with `cp`, a backup unpacked), as ssh insists for its keys: it holds the secret key
/// that proves who we are. What to tell the user, if anything.
pub fn keep_private(dir: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(IDENTITY_FILE);
    let mode = fs::metadata(&path).ok()?.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        return None;
    }
    Some(
        match fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o700)) {
            Ok(()) => format!(
                "your identity file {} could be read by other users (mode {mode:o}); it holds your secret key, so it is now yours alone (mode {:o})",
                path.display(),
                mode & 0o700
            ),
            Err(e) => format!(
                "your identity file {} can be read by other users (mode {mode:o}), and holds your secret key: {} — make it yours alone with chmod 600",
                path.display(),
                io_reason(&e)
            ),
        },
    )
}

/// The identity in `dir`, without creating or upgrading one: for a data directory that cannot
/// be written. A file from before protocol 2 gives `None` (its id cannot be used any more).
///
/// # Errors
/// The file exists but cannot be read or is not an identity file.
pub fn load(dir: &Path) -> Result<Option<Identity>, String> {
    Ok(match read(&dir.join(IDENTITY_FILE))? {
        Some(Contents::Current(identity)) => Some(*identity),
        Some(Contents::Old(_)) | None => None,
    })
}

/// What `path` holds, or `None` if there is no such file.
fn read(path: &Path) -> Result<Option<Contents>, String> {
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
            "{}: not a tailchat identity (expected secret_key = \"64 hex digits\", and a \
             peer_id that matches it) — move it away to start as a new peer, or restore it from \
             a backup",
            path.display()
        )
    })
}

/// The identity in a file's contents, if they are one: a secret key (with, if present, the
/// PeerId it gives), or a PeerId alone (before protocol 2).
fn parse(bytes: &[u8]) -> Option<Contents> {
    let text = std::str::from_utf8(bytes).ok()?;
    let file: IdentityFile = toml::from_str(text).ok()?;
    let peer_id = match &file.peer_id {
        Some(hex) => Some(PeerId(u64::from_be_bytes(hex_bytes(hex)?))),
        None => None,
    };
    match file.secret_key {
        Some(hex) => {
            let identity = Identity::from_secret(hex_bytes(&hex)?);
            if peer_id.is_some_and(|id| id != identity.peer_id()) {
                return None; // damaged: the two disagree
            }
            Some(Contents::Current(Box::new(identity)))
        }
        None => peer_id.map(Contents::Old),
    }
}

/// Exactly `2 × N` hex digits as `N` bytes (checked by hand: `from_str_radix` also takes a sign).
fn hex_bytes<const N: usize>(hex: &str) -> Option<[u8; N]> {
    if hex.len() != 2 * N || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; N];
    for (slot, pair) in out.iter_mut().zip(hex.as_bytes().chunks(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *slot = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

/// Writes `identity` to `path` atomically. `Ok(false)` if `path` appeared meanwhile (left as
/// it is).
fn create(dir: &Path, path: &Path, identity: &Identity) -> io::Result<bool> {
    let tmp = temporary(dir);
    if let Err(e) = write_synced(&tmp, identity, None) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // A hard link, unlike a rename, never replaces a file: if two processes race to create the
    // identity, one wins and the other adopts the winner's key.
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

/// Replaces a file from before protocol 2 with `identity`, atomically (a rename: a crash
/// leaves the old file or the new one, never neither).
fn replace(dir: &Path, path: &Path, identity: &Identity, old: PeerId) -> io::Result<()> {
    let tmp = temporary(dir);
    let written = write_synced(&tmp, identity, Some(old)).and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    File::open(dir)?.sync_all()
}

/// A temporary file name in `dir`, ours alone.
fn temporary(dir: &Path) -> PathBuf {
    dir.join(format!(".{IDENTITY_FILE}.{}.tmp", std::process::id()))
}

/// Creates `tmp` (mode 0600: the secret key is who we are) holding `identity`, synced.
fn write_synced(tmp: &Path, identity: &Identity, old: Option<PeerId>) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(tmp)?;
    let secret: String = identity
        .secret()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    write!(
        file,
        "# This peer's identity (tailchat protocol 2). Keep it, to stay the same peer to others\n\
         # across restarts, and keep it secret: whoever has the secret key is this peer.\n\
         peer_id = \"{}\"\n\
         secret_key = \"{secret}\"\n",
        identity.peer_id()
    )?;
    if let Some(old) = old {
        writeln!(
            file,
            "# The peer id this file held before the upgrade to protocol 2 (no longer used).\n\
             previous_peer_id = \"{old}\""
        )?;
    }
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_key_file_others_can_read_is_made_private_and_said() {
        let tmp = tempfile::tempdir().unwrap();
        load_or_create(tmp.path(), || [3; SECRET_KEY_LEN]).unwrap();
        let path = tmp.path().join(IDENTITY_FILE);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600, "created private");
        assert_eq!(keep_private(tmp.path()), None);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let said = keep_private(tmp.path()).expect("said");
        assert!(
            said.contains("could be read by other users (mode 644)"),
            "{said}"
        );
        assert_eq!(mode(&path), 0o600);
        assert_eq!(keep_private(tmp.path()), None, "said once");
        let loaded = load_or_create(tmp.path(), || [9; SECRET_KEY_LEN]).unwrap();
        assert_eq!(
            loaded.identity.peer_id(),
            Identity::from_secret([3; SECRET_KEY_LEN]).peer_id()
        );
    }

    const SECRET: [u8; 32] = [0x42; 32];

    fn secret_hex(b: u8) -> String {
        format!("{b:02x}").repeat(32)
    }

    #[test]
    fn creates_then_reloads_the_same_key() {
        let tmp = tempfile::tempdir().unwrap();
        let loaded = load_or_create(tmp.path(), || SECRET).unwrap();
        let me = Identity::from_secret(SECRET);
        assert_eq!(loaded.identity.peer_id(), me.peer_id());
        assert_eq!(loaded.upgraded_from, None);
        let path = tmp.path().join(IDENTITY_FILE);
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(&format!("peer_id = \"{}\"\n", me.peer_id())),
            "{text}"
        );
        assert!(
            text.contains(&format!("secret_key = \"{}\"\n", secret_hex(0x42))),
            "{text}"
        );
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let again = load_or_create(tmp.path(), || panic!("must not mint a new key")).unwrap();
        assert_eq!(again.identity.secret(), SECRET);
        // Only the identity is left: no temporary file.
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
        assert_eq!(load(tmp.path()).unwrap().unwrap().secret(), SECRET);
    }

    #[test]
    fn reads_a_hand_written_file() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(
            tmp.path().join(IDENTITY_FILE),
            format!(
                "# mine\nsecret_key = \"{}\"\nfuture_key = 1\n",
                secret_hex(0xAB).to_uppercase()
            ),
        )
        .unwrap();
        let loaded = load_or_create(tmp.path(), || panic!("must not mint a new key")).unwrap();
        assert_eq!(loaded.identity.secret(), [0xab; 32]);
    }

    #[test]
    fn a_file_from_before_protocol_2_is_upgraded_in_place_once() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(IDENTITY_FILE);
        fs::write(&path, "peer_id = \"0123456789abcdef\"\n").unwrap();
        assert!(load(tmp.path()).unwrap().is_none(), "read-only: not usable");
        let loaded = load_or_create(tmp.path(), || SECRET).unwrap();
        assert_eq!(loaded.upgraded_from, Some(PeerId(0x0123_4567_89ab_cdef)));
        assert_eq!(loaded.identity.secret(), SECRET);
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("previous_peer_id = \"0123456789abcdef\""),
            "{text}"
        );
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let again = load_or_create(tmp.path(), || panic!("upgraded once only")).unwrap();
        assert_eq!(again.upgraded_from, None);
        assert_eq!(again.identity.secret(), SECRET);
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
    }

    #[test]
    fn malformed_files_are_errors_and_left_untouched() {
        let mismatched = format!(
            "peer_id = \"0123456789abcdef\"\nsecret_key = \"{}\"\n",
            secret_hex(1)
        );
        let bad: [&[u8]; 9] = [
            b"",
            b"peer_id = 12\n",
            b"peer_id = \"0123\"\n",
            b"peer_id = \"+123456789abcdef\"\n",
            b"peer_id = \"0123456789abcdeg\"\n",
            b"secret_key = \"00\"\n",
            mismatched.as_bytes(),
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
                    "{}: not a tailchat identity (expected secret_key = \"64 hex digits\", and \
                     a peer_id that matches it) — move it away to start as a new peer, or \
                     restore it from a backup",
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
        let loaded = load_or_create(tmp.path(), || {
            fs::write(&path, format!("secret_key = \"{}\"\n", secret_hex(0xaa))).unwrap();
            [0xbb; 32]
        })
        .unwrap();
        assert_eq!(loaded.identity.secret(), [0xaa; 32]);
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
    }

    #[test]
    fn unwritable_dir_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("missing");
        let err = load_or_create(&missing, || SECRET).unwrap_err();
        assert!(
            err.starts_with(&format!(
                "cannot create identity file {}: no such file or directory",
                missing.join(IDENTITY_FILE).display()
            )),
            "{err}"
        );
    }
}
