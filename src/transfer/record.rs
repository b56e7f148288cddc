//! Transfers kept across runs: one small JSON file per transfer in `DATA_DIR/transfers/`
//! (`OFFERER-ID.json`, written whole to a temporary file and renamed over the old one), and
//! beside it the manifest (`OFFERER-ID.manifest`), so an unfinished transfer resumes after a
//! restart of either side. Never the journal: a transfer's state changes often, and its bytes
//! are not conversation.
//!
//! An offer we received and have not accepted is not kept (nothing is written for it before
//! the user accepts); the offerer offers it again when we are back.

use super::TransferKey;
use crate::proto::PeerId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The folder under the data directory.
pub const DIR: &str = "transfers";
/// Finished transfers older than this are forgotten at start.
const KEEP_FINISHED_MS: i64 = 30 * 24 * 3600 * 1000;

/// Where a transfer stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Offered, not yet accepted (or the offer still has to reach the peer).
    Offered,
    /// Accepted: bytes are moving, or will when both sides are back.
    Accepted,
    /// Every file arrived and matched its hash.
    Done,
    /// The receiver declined.
    Declined,
    /// Cancelled by one side.
    Cancelled,
    /// Stopped by an error (a hash mismatch, a full disk, a broken offer).
    Failed,
}

impl State {
    /// Whether nothing more will happen to it.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            State::Done | State::Declined | State::Cancelled | State::Failed
        )
    }
}

/// One transfer as kept on disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Who offered it.
    pub offerer: u64,
    /// The offerer's id for it.
    pub id: u64,
    /// We offered it (we send), rather than received the offer.
    pub outgoing: bool,
    /// The other side.
    pub peer: u64,
    /// The other side's nick when it started.
    pub peer_nick: String,
    /// The offer, as sent or received (hex fields: token and hash).
    pub offer: StoredOffer,
    /// Outgoing: the offered file or folder on our disk.
    pub source: Option<PathBuf>,
    /// Incoming: the folder created for it, or the file name it should get.
    pub dest: Option<PathBuf>,
    /// Incoming: files already in place, in manifest order.
    pub files_done: u32,
    /// Bytes of the offer the receiver has, as last known.
    pub bytes_done: u64,
    /// Where it stands.
    pub state: State,
    /// Why it failed or was cancelled.
    pub reason: Option<String>,
    /// When it was offered, in ms since the Unix epoch.
    pub created_ms: i64,
    /// When it finished.
    pub finished_ms: Option<i64>,
    /// Finished, but the line that says so may not have reached the screen (the program
    /// stopped first): said at the next start. Absent (false) in records of older versions.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub untold: bool,
    /// The number the user knows it by (`/cancel 3`), kept so that it is the same after a
    /// restart. Absent (0) in records of older versions: those get a new one.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub number: u32,
    /// When its first bytes moved, in any run (ms since the Unix epoch): the time an end line
    /// gives counts from there, on both sides, across restarts. Absent in records of older
    /// versions and before any byte moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_byte_ms: Option<i64>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The offer's fields, as JSON can hold them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredOffer {
    /// Name offered.
    pub name: String,
    /// Bytes in all.
    pub size: u64,
    /// Files.
    pub files: u32,
    /// A folder.
    pub folder: bool,
    /// Token, hex.
    pub token: String,
    /// Manifest hash, hex.
    pub manifest_hash: String,
    /// Manifest length.
    pub manifest_len: u32,
    /// The offerer's TCP port.
    pub port: u16,
}

impl StoredOffer {
    /// From an offer.
    pub fn from_offer(o: &super::control::Offer) -> Self {
        StoredOffer {
            name: o.name.clone(),
            size: o.size,
            files: o.files,
            folder: o.folder,
            token: hex(&o.token),
            manifest_hash: hex(&o.manifest_hash),
            manifest_len: o.manifest_len,
            port: o.port,
        }
    }

    /// Back to an offer with id `id`; `None` if a hex field is damaged.
    pub fn to_offer(&self, id: u64) -> Option<super::control::Offer> {
        Some(super::control::Offer {
            id,
            token: unhex(&self.token)?,
            name: self.name.clone(),
            size: self.size,
            files: self.files,
            folder: self.folder,
            manifest_hash: unhex(&self.manifest_hash)?,
            manifest_len: self.manifest_len,
            port: self.port,
        })
    }
}

impl Record {
    /// A transfer just offered (by us when `outgoing`, to or by `peer`), nothing of it done.
    pub fn offered(
        offerer: u64,
        peer: u64,
        peer_nick: String,
        outgoing: bool,
        offer: &super::control::Offer,
        created_ms: i64,
    ) -> Self {
        Record {
            offerer,
            id: offer.id,
            outgoing,
            peer,
            peer_nick,
            offer: StoredOffer::from_offer(offer),
            source: None,
            dest: None,
            files_done: 0,
            bytes_done: 0,
            state: State::Offered,
            reason: None,
            created_ms,
            finished_ms: None,
            untold: false,
            number: 0,
            first_byte_ms: None,
        }
    }

    /// Its transfer.
    pub fn key(&self) -> TransferKey {
        TransferKey {
            offerer: PeerId(self.offerer),
            id: self.id,
        }
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `N` bytes from lowercase or uppercase hex.
pub fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The transfers folder of a data directory.
#[derive(Clone, Debug)]
pub struct Store {
    /// `DATA_DIR/transfers`.
    dir: PathBuf,
}

impl Store {
    /// Where the records are (`DATA_DIR/transfers`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The store in `data_dir` (the folder is made when first written).
    pub fn new(data_dir: &Path) -> Store {
        Store {
            dir: data_dir.join(DIR),
        }
    }

    fn path(&self, key: TransferKey, ext: &str) -> PathBuf {
        self.dir
            .join(format!("{}-{:016x}.{ext}", key.offerer, key.id))
    }

    /// Writes `r`, replacing its earlier version whole.
    ///
    /// # Errors
    /// The folder or file cannot be written.
    pub fn save(&self, r: &Record) -> io::Result<()> {
        let text = serde_json::to_vec_pretty(r).map_err(io::Error::other)?;
        self.write(&self.path(r.key(), "json"), &text)
    }

    /// Keeps a transfer's manifest.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn save_manifest(&self, key: TransferKey, bytes: &[u8]) -> io::Result<()> {
        self.write(&self.path(key, "manifest"), bytes)
    }

    /// Forgets a transfer: its record and manifest.
    pub fn remove(&self, key: TransferKey) {
        let _ = fs::remove_file(self.path(key, "json"));
        let _ = fs::remove_file(self.path(key, "manifest"));
    }

    /// A transfer's manifest, if kept.
    pub fn manifest(&self, key: TransferKey) -> Option<Vec<u8>> {
        // One byte more than a manifest may have: a longer file is not one.
        let limit = u64::from(super::manifest::MAX_MANIFEST_BYTES) + 1;
        crate::store::dirs::read_kept(&self.path(key, "manifest"), limit).ok()
    }

    /// Writes `bytes` to `path` whole or not at all, readable by the user only (a record holds
    /// the offer's token and the source's path), in a folder only the user can enter.
    fn write(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        // One an earlier version made open to others (0755) is closed too.
        if fs::metadata(&self.dir).is_ok_and(|m| m.permissions().mode() & 0o077 != 0) {
            fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))?;
        }
        let tmp = path.with_extension("tmp");
        let created = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp);
        let written = created.and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_data()?;
            fs::rename(&tmp, path)
        });
        if written.is_err() {
            // A full disk, say: no empty or cut file is left behind.
            let _ = fs::remove_file(&tmp);
        }
        written
    }

    /// The peers of unfinished transfers: the application wants them found again at start
    /// (see `RestoredPeer::wanted`).
    pub fn unfinished_peers(&self, now_ms: i64) -> BTreeSet<PeerId> {
        self.load(now_ms)
            .0
            .iter()
            .filter(|r| !r.state.is_finished())
            .map(|r| PeerId(r.peer))
            .collect()
    }

    /// Every transfer kept, oldest first, forgetting finished ones older than 30 days;
    /// and a warning per file that could not be read.
    pub fn load(&self, now_ms: i64) -> (Vec<Record>, Vec<String>) {
        let mut records = Vec::new();
        let mut warnings = Vec::new();
        let dir = match fs::read_dir(&self.dir) {
            Ok(dir) => dir,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return (records, warnings),
            Err(e) => {
                warnings.push(format!(
                    "cannot read {} ({}): unfinished file transfers are not resumed and finished ones are not listed — make it a folder you can read (or move it away to start afresh), then restart",
                    self.dir.display(),
                    crate::store::dirs::io_reason(&e)
                ));
                return (records, warnings);
            }
        };
        for entry in dir.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            match crate::store::dirs::read_kept(&path, MAX_RECORD_BYTES)
                .ok()
                .and_then(|b| serde_json::from_slice::<Record>(&b).ok())
            {
                Some(r)
                    if r.state.is_finished()
                        && r.finished_ms
                            .unwrap_or(r.created_ms)
                            .saturating_add(KEEP_FINISHED_MS)
                            < now_ms =>
                {
                    let _ = fs::remove_file(&path);
                    let _ = fs::remove_file(path.with_extension("manifest"));
                }
                Some(r) => records.push(r),
                None => warnings.push(format!(
                    "transfer record {} is damaged, so its transfer is forgotten: one you were sending must be sent again (the receiver is told so when it asks); one you were receiving comes again from the start when its sender offers it again (a .part it left can be deleted). Delete the record to stop this line",
                    path.display()
                )),
            }
        }
        records.sort_by_key(|r| r.created_ms);
        (records, warnings)
    }
}

/// A record is a few hundred bytes (its names are bounded); far more is not one.
const MAX_RECORD_BYTES: u64 = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transfer::control::Offer;

    /// Whatever is put in `transfers/` in place of a record or a file list (a link to a
    /// device, a FIFO, a huge file, a folder) is said to be damaged at once: no hang at the
    /// start, no memory filled. A `transfers` that is a file is said too.
    #[test]
    fn what_is_not_a_record_is_refused_without_reading_it() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path());
        let dir = tmp.path().join("transfers");
        fs::create_dir(&dir).unwrap();
        let key = TransferKey {
            offerer: PeerId(5),
            id: 9,
        };
        std::os::unix::fs::symlink("/dev/zero", dir.join("a.json")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", store.path(key, "manifest")).unwrap();
        nix::unistd::mkfifo(&dir.join("b.json"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        fs::File::create(dir.join("c.json"))
            .unwrap()
            .set_len(2 * MAX_RECORD_BYTES)
            .unwrap();
        fs::create_dir(dir.join("d.json")).unwrap();
        let (records, warnings) = store.load(0);
        assert!(records.is_empty());
        assert_eq!(warnings.len(), 4, "{warnings:?}");
        assert!(
            warnings.iter().all(|w| w.contains("is damaged")),
            "{warnings:?}"
        );
        assert_eq!(store.manifest(key), None);

        fs::remove_dir_all(&dir).unwrap();
        fs::write(&dir, b"not a folder").unwrap();
        let (records, warnings) = store.load(0);
        assert!(records.is_empty());
        assert!(
            matches!(&warnings[..], [w] if w.starts_with("cannot read") && w.contains("not resumed")),
            "{warnings:?}"
        );
    }

    #[test]
    fn records_survive_a_restart_and_old_finished_ones_are_forgotten() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path());
        let offer = Offer {
            id: 9,
            token: [0xab; 16],
            name: "a.bin".into(),
            size: 10,
            files: 1,
            folder: false,
            manifest_hash: [3; 32],
            manifest_len: 44,
            port: 7000,
        };
        let mut r = Record {
            offerer: 5,
            id: 9,
            outgoing: false,
            peer: 5,
            peer_nick: "bob".into(),
            offer: StoredOffer::from_offer(&offer),
            source: None,
            dest: Some(tmp.path().join("a.bin")),
            files_done: 0,
            bytes_done: 3,
            state: State::Accepted,
            reason: None,
            created_ms: 1000,
            finished_ms: None,
            untold: false,
            number: 0,
            first_byte_ms: Some(1500),
        };
        store.save(&r).unwrap();
        store.save_manifest(r.key(), b"mf").unwrap();
        // Tokens and source paths: for the user's eyes only.
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&store.dir), 0o700);
        for e in fs::read_dir(&store.dir).unwrap() {
            assert_eq!(mode(&e.unwrap().path()), 0o600);
        }
        let (loaded, warnings) = store.load(2000);
        assert!(warnings.is_empty());
        assert_eq!(loaded, vec![r.clone()]);
        assert_eq!(loaded[0].offer.to_offer(9), Some(offer));
        assert_eq!(store.manifest(r.key()).as_deref(), Some(&b"mf"[..]));
        r.state = State::Done;
        r.finished_ms = Some(2000);
        store.save(&r).unwrap();
        assert_eq!(store.load(3000).0.len(), 1);
        assert!(store.load(2000 + KEEP_FINISHED_MS + 1).0.is_empty());
        assert!(store.manifest(r.key()).is_none());
        // A file on disk is input like any other: a time at the end of the range is kept,
        // not an overflow.
        r.finished_ms = Some(i64::MAX);
        store.save(&r).unwrap();
        assert_eq!(store.load(3000).0.len(), 1);
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(hex(&[0, 255, 16]), "00ff10");
        assert_eq!(unhex::<3>("00ff10"), Some([0, 255, 16]));
        assert_eq!(unhex::<3>("00ff1"), None);
        assert_eq!(unhex::<1>("zz"), None);
    }
}
