//! What an offer contains: every file's relative path, size and BLAKE3 hash, in the order the
//! data connection sends them. The sender builds it from a path ([`prepare`]); the offer
//! carries the hash of its encoding, so the receiver checks the manifest it is served against
//! the offer, and each file against the manifest.

use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Files in one offer at most. A peer that offers more is refused with a notice; a folder
/// with more is refused at `/send` (send an archive of it instead).
pub const MAX_FILES: usize = 5000;
/// Bytes of one relative path at most.
pub const MAX_PATH_BYTES: usize = 1024;
/// Empty folders in one offer at most (a list with more is ignored by a receiver; a folder
/// with more is refused at `/send`).
pub const MAX_FOLDERS: usize = 5000;
/// Bytes of a manifest's encoding at most (the largest possible with [`MAX_FILES`] entries of
/// paths of [`MAX_PATH_BYTES`] is about 5.3 MB; any real one is far smaller).
pub const MAX_MANIFEST_BYTES: u32 = 6 << 20;

/// One file of an offer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Its path relative to the offered folder, components joined with `/` (for a single
    /// file, its name). Untrusted on the receiver: see [`crate::transfer::names`].
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// BLAKE3 of its bytes.
    pub hash: [u8; 32],
}

/// Every file of an offer, in sending order, and a folder's empty folders.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    /// The files.
    pub entries: Vec<Entry>,
    /// The folders of an offered folder that nothing offered is in, and no other folder
    /// either (`logs`, `.git/refs/tags`): made by the receiver, with their parents, once the
    /// files are in place. Relative paths as the entries' are. Empty for a single file and
    /// for most folders, and then not in the encoding at all (spec §13.3).
    pub folders: Vec<String>,
}

impl Manifest {
    /// Bytes in all; `u64::MAX` when the sizes add up to more (a peer's list whose sizes
    /// wrap round to a small sum must not pass for that sum).
    pub fn total(&self) -> u64 {
        self.entries
            .iter()
            .try_fold(0u64, |sum, e| sum.checked_add(e.size))
            .unwrap_or(u64::MAX)
    }

    /// Bytes of the files before file `index` plus `offset`: a position in the whole offer
    /// (at most `u64::MAX`).
    pub fn position(&self, index: u32, offset: u64) -> u64 {
        self.entries
            .iter()
            .take(index as usize)
            .fold(offset, |sum, e| sum.saturating_add(e.size))
    }

    /// Its encoding (postcard): the entries, then the empty folders if there are any.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = postcard::to_allocvec(&self.entries).unwrap_or_default();
        if !self.folders.is_empty() {
            bytes.extend(postcard::to_allocvec(&self.folders).unwrap_or_default());
        }
        bytes
    }

    /// Decodes a manifest and checks its limits. What follows the entries is the list of
    /// empty folders if it decodes as one within [`MAX_FOLDERS`] and [`MAX_PATH_BYTES`];
    /// anything else there is ignored (room for later versions, spec §13.3).
    ///
    /// # Errors
    /// It does not decode, has more than [`MAX_FILES`] entries, or a path that is empty or
    /// longer than [`MAX_PATH_BYTES`].
    pub fn decode(bytes: &[u8]) -> Result<Manifest, String> {
        let path_ok = |p: &str| !p.is_empty() && p.len() <= MAX_PATH_BYTES;
        let (entries, rest) =
            take_list(bytes, MAX_FILES, |e: &Entry| path_ok(&e.path)).map_err(|e| match e {
                ListError::Decode => "its file list does not decode".to_owned(),
                ListError::TooMany(n) => {
                    format!("its file list has {n} files (the limit is {MAX_FILES})")
                }
                ListError::Refused => "its file list has an empty or over-long path".to_owned(),
            })?;
        let folders = take_list(rest, MAX_FOLDERS, |p: &String| path_ok(p))
            .map_or_else(|_| Vec::new(), |(folders, _)| folders);
        Ok(Manifest { entries, folders })
    }
}

/// Why [`take_list`] took no list.
enum ListError {
    /// It does not decode.
    Decode,
    /// Its count is over the limit (the count).
    TooMany(u64),
    /// An item is refused.
    Refused,
}

/// A postcard list of `T` at the start of `bytes` (a `varint` count, then the items), and what
/// follows it. The count is checked against `max` before anything is read (a list of millions
/// of empty names fits in the largest manifest taken), and each item by `ok` as it is read.
fn take_list<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    max: usize,
    ok: impl Fn(&T) -> bool,
) -> Result<(Vec<T>, &[u8]), ListError> {
    let (count, mut rest) =
        postcard::take_from_bytes::<u64>(bytes).map_err(|_| ListError::Decode)?;
    if count > max as u64 {
        return Err(ListError::TooMany(count));
    }
    let mut items = Vec::new();
    for _ in 0..count {
        let (item, after) = postcard::take_from_bytes::<T>(rest).map_err(|_| ListError::Decode)?;
        if !ok(&item) {
            return Err(ListError::Refused);
        }
        items.push(item);
        rest = after;
    }
    Ok((items, rest))
}

/// An offer ready to go out: the manifest, its encoding, and what the user is told.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The offered name (the last component of the path).
    pub name: String,
    /// Whether it is a folder.
    pub folder: bool,
    /// Where it is on our disk (a folder's files are under it).
    pub root: PathBuf,
    /// The files.
    pub manifest: Manifest,
    /// Its encoding, as served.
    pub bytes: Vec<u8>,
    /// BLAKE3 of `bytes`.
    pub hash: [u8; 32],
    /// Entries of a folder left out: symbolic links (never followed out of it) and special
    /// files (devices, sockets, pipes).
    pub skipped: u32,
    /// Each file's modification time when it was read for its hash (`None` where the system
    /// has none): one that changes later was changed after it was offered.
    pub modified: Vec<Option<std::time::SystemTime>>,
}

/// The name `path` is offered under: its last component (`.` and `..` are named after the
/// folder they are; a symbolic link by its own name).
///
/// # Errors
/// It is the root folder, its name is not UTF-8 or too long, or (for `.` and `..`) it cannot
/// be resolved.
pub fn offered_name(path: &Path) -> Result<String, String> {
    let shown = path.display();
    // `.` and `..` are named after the folder they are.
    let canonical = match path.file_name() {
        Some(_) => None,
        None => Some(
            fs::canonicalize(path).map_err(|e| format!("cannot read {shown}: {}", reason(&e)))?,
        ),
    };
    let name = canonical
        .as_deref()
        .unwrap_or(path)
        .file_name()
        .ok_or_else(|| {
            format!(
                "cannot send {shown}: the root folder has no name to offer — name a folder in it"
            )
        })?
        .to_str()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("cannot send {shown}: its name is not UTF-8 text"))?
        .to_owned();
    if name.len() > crate::transfer::control::MAX_NAME_BYTES {
        return Err(format!("cannot send {shown}: its name is too long"));
    }
    Ok(name)
}

/// Builds the offer of `path`, a file or a folder (recursively; symbolic links and special
/// files inside it are skipped, not followed), hashing every file. Slow for large files: run
/// it off the event loop.
///
/// # Errors
/// The path does not exist or cannot be read, is neither a file nor a folder, has a name that
/// is not UTF-8, or holds more than [`MAX_FILES`] files.
pub fn prepare(path: &Path) -> Result<Prepared, String> {
    let shown = path.display();
    let meta = fs::metadata(path).map_err(|e| format!("cannot read {shown}: {}", reason(&e)))?;
    let name = offered_name(path)?;
    let mut skipped = 0;
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    let mut folders: Vec<String> = Vec::new();
    let folder = meta.is_dir();
    // The path named is followed when it is a symbolic link (the user chose it, as `cp` does;
    // links inside a folder are not): read and served from where it leads, offered under the
    // name given.
    let linked = fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    let source = if linked {
        fs::canonicalize(path).map_err(|e| format!("cannot read {shown}: {}", reason(&e)))?
    } else {
        path.to_path_buf()
    };
    if meta.is_file() {
        files.push((name.clone(), source.clone()));
    } else if folder {
        let mut found = Found {
            files: &mut files,
            folders: &mut folders,
            skipped: &mut skipped,
        };
        walk(path, &source, "", &mut found)?;
    } else {
        return Err(format!("cannot send {shown}: not a file or a folder"));
    }
    let mut entries = Vec::with_capacity(files.len());
    let mut modified = Vec::with_capacity(files.len());
    // Every file that cannot be read is named (a few), not only the first: one try shows
    // all there is to fix.
    let mut unreadable: Vec<(PathBuf, String)> = Vec::new();
    for (rel, full) in files {
        // Before the hash: a change while it is read shows as a later time.
        modified.push(fs::symlink_metadata(&full).and_then(|m| m.modified()).ok());
        match hash_file(&full) {
            Ok((size, hash)) => entries.push(Entry {
                path: rel,
                size,
                hash,
            }),
            Err(e) => unreadable.push((full, reason(&e))),
        }
    }
    if let Some(e) = unreadable_error(path, &unreadable) {
        return Err(e);
    }
    let manifest = Manifest { entries, folders };
    let bytes = manifest.encode();
    // Only with thousands of long paths: more than a receiver takes.
    if bytes.len() > MAX_MANIFEST_BYTES as usize {
        return Err(format!(
            "{shown} has too many long paths to list in one offer: send an archive of it instead (tar, zip)"
        ));
    }
    Ok(Prepared {
        hash: *blake3::hash(&bytes).as_bytes(),
        name,
        folder,
        root: source,
        manifest,
        bytes,
        skipped,
        modified,
    })
}

/// The error for the files of `top` that could not be read, `(path, why)` each: the one, or
/// how many with the first few named; `None` if there are none.
fn unreadable_error(top: &Path, unreadable: &[(PathBuf, String)]) -> Option<String> {
    match unreadable {
        [] => None,
        [(one, why)] => Some(format!("cannot read {}: {why}", one.display())),
        many => {
            let shown: Vec<String> = many
                .iter()
                .take(3)
                .map(|(p, why)| format!("{} ({why})", p.display()))
                .collect();
            let more = many.len().saturating_sub(shown.len());
            Some(format!(
                "cannot read {} files of {}: {}{} — fix them or move them out, then /send again",
                many.len(),
                top.display(),
                shown.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ))
        }
    }
}

/// What [`walk`] finds in a folder.
struct Found<'a> {
    /// Regular files: relative path, and where it is.
    files: &'a mut Vec<(String, PathBuf)>,
    /// Folders that nothing offered is in, and no other folder.
    folders: &'a mut Vec<String>,
    /// Symbolic links and special files, left out.
    skipped: &'a mut u32,
}

/// Adds the regular files under `dir` (relative paths under `prefix`) to `found`, in name
/// order, depth first, and `dir` itself to its empty folders if nothing offered is in it (nor
/// any folder); counts symbolic links and special files. `top` is the folder offered (named
/// when it holds too many files).
fn walk(top: &Path, dir: &Path, prefix: &str, found: &mut Found<'_>) -> Result<(), String> {
    let before = (found.files.len(), found.folders.len());
    let too_deep = |what: &str, path: &Path| {
        format!(
            "{} has {what} nested more than {} folders deep ({}): send an archive of it instead (tar, zip)",
            top.display(),
            crate::transfer::names::MAX_DEPTH - 1,
            path.display()
        )
    };
    let read = |e: io::Error| format!("cannot read {}: {}", dir.display(), reason(&e));
    let mut children: Vec<fs::DirEntry> = fs::read_dir(dir)
        .map_err(read)?
        .collect::<Result<_, _>>()
        .map_err(read)?;
    children.sort_by_key(fs::DirEntry::file_name);
    for child in children {
        let Some(name) = child.file_name().to_str().map(str::to_owned) else {
            return Err(format!(
                "cannot send {}: its name is not UTF-8 text",
                child.path().display()
            ));
        };
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        // Not followed: a link could lead out of the folder.
        let kind = child.file_type().map_err(read)?;
        if kind.is_dir() {
            walk(top, &child.path(), &rel, found)?;
        } else if kind.is_file() {
            if found.files.len() >= MAX_FILES {
                return Err(format!(
                    "{} has more than {MAX_FILES} files: send an archive of it instead (tar, zip)",
                    top.display()
                ));
            }
            if rel.len() > MAX_PATH_BYTES {
                return Err(format!("cannot send {}: its path is too long", rel));
            }
            // Deeper than a receiver keeps (it would flatten the rest): said, not sent.
            if rel.split('/').count() > crate::transfer::names::MAX_DEPTH {
                return Err(too_deep("files", &child.path()));
            }
            found.files.push((rel, child.path()));
        } else {
            *found.skipped += 1;
        }
    }
    if !prefix.is_empty() && before == (found.files.len(), found.folders.len()) {
        if found.folders.len() >= MAX_FOLDERS {
            return Err(format!(
                "{} has more than {MAX_FOLDERS} empty folders: send an archive of it instead (tar, zip)",
                top.display()
            ));
        }
        if prefix.len() > MAX_PATH_BYTES {
            return Err(format!("cannot send {prefix}: its path is too long"));
        }
        // A receiver keeps a file's first folders and its name; a folder has no name to keep.
        if prefix.split('/').count() >= crate::transfer::names::MAX_DEPTH {
            return Err(too_deep("folders", dir));
        }
        found.folders.push(prefix.to_owned());
    }
    Ok(())
}

/// Size and BLAKE3 of the file at `path` (not following a symbolic link there).
///
/// # Errors
/// It cannot be opened or read.
pub fn hash_file(path: &Path) -> io::Result<(u64, [u8; 32])> {
    let file = File::options()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut counted = Counted { inner: &file, n: 0 };
    hasher.update_reader(&mut counted)?;
    let size = file.metadata()?.len();
    // A file whose size is not what reading it gives (`/proc/cpuinfo` says 0 bytes and reads
    // as thousands; one being written grows) cannot be served as hashed.
    if counted.n != size {
        return Err(io::Error::other(format!(
            "its size is {size} bytes but {} were read: it changes as it is read (a file being written, or one of the system's): not sent",
            counted.n
        )));
    }
    Ok((size, *hasher.finalize().as_bytes()))
}

/// A reader that counts the bytes it gives.
struct Counted<R> {
    inner: R,
    n: u64,
}

impl<R: io::Read> io::Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n += k as u64;
        Ok(k)
    }
}

/// An I/O error as a person reads it: "no such file or directory", not "No such file or
/// directory (os error 2)".
pub fn reason(e: &io::Error) -> String {
    crate::store::dirs::io_reason(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_lists_its_files_in_order_skipping_links() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("photos");
        fs::create_dir_all(root.join("b/c")).unwrap();
        fs::write(root.join("z.txt"), b"zz").unwrap();
        fs::write(root.join("a.txt"), b"a").unwrap();
        fs::write(root.join("b/c/d.bin"), b"ddd").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("dirlink")).unwrap();
        let p = prepare(&root).unwrap();
        assert!(p.folder);
        assert_eq!(p.name, "photos");
        assert_eq!(p.skipped, 2);
        let paths: Vec<&str> = p.manifest.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["a.txt", "b/c/d.bin", "z.txt"]);
        assert_eq!(p.manifest.total(), 6);
        assert_eq!(p.manifest.entries[0].hash, *blake3::hash(b"a").as_bytes());
        assert_eq!(p.manifest.position(2, 1), 5);
        assert_eq!(Manifest::decode(&p.bytes).unwrap(), p.manifest);
        assert_eq!(p.hash, *blake3::hash(&p.bytes).as_bytes());
    }

    /// Folders that nothing offered is in are listed, the innermost only (making one makes
    /// its parents); a folder holding only a link is one of them. Without any, the encoding
    /// is the entries' alone, as a receiver of the first revision reads it.
    #[test]
    fn empty_folders_are_listed_innermost_only() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("repo");
        for d in [
            "logs",
            ".git/refs/tags",
            ".git/refs/heads",
            "src/deep/er",
            "full",
        ] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::write(root.join(".git/refs/heads/main"), b"ref").unwrap();
        fs::write(root.join("full/x.txt"), b"x").unwrap();
        fs::create_dir(root.join("linked")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("linked/out")).unwrap();
        let p = prepare(&root).unwrap();
        assert_eq!(
            p.manifest.folders,
            [".git/refs/tags", "linked", "logs", "src/deep/er"]
        );
        assert_eq!(Manifest::decode(&p.bytes).unwrap(), p.manifest);
        assert_eq!(p.hash, *blake3::hash(&p.bytes).as_bytes());

        fs::remove_dir_all(root.join("logs")).unwrap();
        fs::remove_dir_all(root.join("linked")).unwrap();
        fs::remove_dir_all(root.join("src")).unwrap();
        fs::remove_dir_all(root.join(".git/refs/tags")).unwrap();
        let p = prepare(&root).unwrap();
        assert!(p.manifest.folders.is_empty());
        assert_eq!(p.bytes, postcard::to_allocvec(&p.manifest.entries).unwrap());
        // A folder with nothing in it at all: no files, and itself is the offer's folder.
        let bare = tmp.path().join("bare");
        fs::create_dir(&bare).unwrap();
        let p = prepare(&bare).unwrap();
        assert_eq!((p.manifest.entries.len(), p.manifest.folders.len()), (0, 0));
    }

    /// What follows the entries is used only if it is a list of folders within the limits.
    #[test]
    fn a_folder_list_out_of_its_limits_is_ignored() {
        let entry = Entry {
            path: "a".into(),
            size: 1,
            hash: [3; 32],
        };
        let with = |folders: Vec<String>| Manifest {
            entries: vec![entry.clone()],
            folders,
        };
        let ok = with(vec!["x/y".into(), "z".into()]);
        assert_eq!(Manifest::decode(&ok.encode()).unwrap(), ok);
        let mut later = ok.encode();
        later.extend_from_slice(b"more from a later version");
        assert_eq!(Manifest::decode(&later).unwrap(), ok);
        for bad in [
            vec![String::new()],
            vec!["p".repeat(MAX_PATH_BYTES + 1)],
            vec!["f".into(); MAX_FOLDERS + 1],
        ] {
            assert_eq!(Manifest::decode(&with(bad).encode()).unwrap(), with(vec![]));
        }
        // Millions of empty names: the count is refused before any is read.
        let mut huge = with(vec![]).encode();
        huge.extend(postcard::to_allocvec(&6_000_000u64).unwrap());
        huge.resize(huge.len() + 6_000_000, 0);
        assert_eq!(Manifest::decode(&huge).unwrap(), with(vec![]));
    }

    #[test]
    fn a_single_file_is_one_entry_under_its_name() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("report.pdf");
        fs::write(&f, vec![7u8; 10_000]).unwrap();
        let p = prepare(&f).unwrap();
        assert!(!p.folder);
        assert_eq!(p.manifest.entries.len(), 1);
        assert_eq!(p.manifest.entries[0].path, "report.pdf");
        assert_eq!(p.manifest.entries[0].size, 10_000);
        assert!(prepare(&tmp.path().join("missing")).is_err());
    }

    #[test]
    fn dot_and_dot_dot_are_named_after_their_folder_and_the_root_is_refused_clearly() {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().join("photos");
        fs::create_dir_all(top.join("sub")).unwrap();
        fs::write(top.join("sub/a.jpg"), b"a").unwrap();
        assert_eq!(prepare(&top.join("sub/..")).unwrap().name, "photos");
        assert_eq!(prepare(&top.join(".")).unwrap().name, "photos");
        let root = prepare(Path::new("/")).unwrap_err();
        assert!(root.contains("the root folder has no name"), "{root}");
    }

    /// Too many files deep inside: the folder offered is named, not the one where the count
    /// ran over.
    #[test]
    fn a_folder_with_too_many_files_is_named_as_offered() {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().join("big");
        let deep = top.join("a/b");
        fs::create_dir_all(&deep).unwrap();
        for i in 0..=MAX_FILES {
            fs::write(deep.join(i.to_string()), b"").unwrap();
        }
        let err = prepare(&top).unwrap_err();
        assert_eq!(
            err,
            format!(
                "{} has more than {MAX_FILES} files: send an archive of it instead (tar, zip)",
                top.display()
            )
        );
    }

    /// Files that cannot be read are all counted, and the first few named, in one error.
    #[test]
    fn every_unreadable_file_is_counted() {
        let top = Path::new("/photos");
        let denied = |n: u32| (top.join(format!("{n}.jpg")), "permission denied".to_owned());
        assert_eq!(unreadable_error(top, &[]), None);
        assert_eq!(
            unreadable_error(top, &[denied(1)]).unwrap(),
            "cannot read /photos/1.jpg: permission denied"
        );
        let five: Vec<_> = (1..=5).map(denied).collect();
        assert_eq!(
            unreadable_error(top, &five).unwrap(),
            "cannot read 5 files of /photos: /photos/1.jpg (permission denied), /photos/2.jpg (permission denied), /photos/3.jpg (permission denied) and 2 more — fix them or move them out, then /send again"
        );
    }

    /// A file whose size is not what reading it gives is refused, saying why.
    #[test]
    fn a_file_whose_size_lies_is_not_offered() {
        let err = prepare(Path::new("/proc/self/status")).unwrap_err();
        assert!(err.contains("it changes as it is read"), "{err}");
    }

    /// The path named may be a symbolic link (to a file or a folder): followed, offered under
    /// the link's name; links inside a folder are still left out.
    #[test]
    fn a_symbolic_link_named_is_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("real.txt");
        fs::write(&target, b"real").unwrap();
        let link = tmp.path().join("link.txt");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let p = prepare(&link).unwrap();
        assert_eq!(p.name, "link.txt");
        assert_eq!(p.manifest.entries[0].size, 4);
        assert_eq!(p.root, fs::canonicalize(&target).unwrap());
        let folder = tmp.path().join("folder");
        fs::create_dir(&folder).unwrap();
        fs::write(folder.join("a.txt"), b"a").unwrap();
        std::os::unix::fs::symlink(&target, folder.join("inner-link")).unwrap();
        let folder_link = tmp.path().join("folder-link");
        std::os::unix::fs::symlink(&folder, &folder_link).unwrap();
        let p = prepare(&folder_link).unwrap();
        assert_eq!(p.name, "folder-link");
        assert_eq!(p.manifest.entries.len(), 1);
        assert_eq!(p.skipped, 1);
    }

    #[test]
    fn a_folder_nested_deeper_than_a_receiver_keeps_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().join("deep");
        let mut at = top.clone();
        for i in 0..31 {
            at.push(format!("l{i}"));
        }
        fs::create_dir_all(&at).unwrap();
        fs::write(at.join("ok.txt"), b"31 folders and a file: kept whole").unwrap();
        assert!(prepare(&top).is_ok());
        at.push("l31");
        fs::create_dir_all(&at).unwrap();
        fs::write(at.join("bottom.txt"), b"one too deep").unwrap();
        let err = prepare(&top).unwrap_err();
        assert!(
            err.starts_with(&format!(
                "{} has files nested more than 31 folders deep",
                top.display()
            )),
            "{err}"
        );
    }

    #[test]
    fn too_many_files_or_bad_entries_are_refused() {
        let many = Manifest {
            entries: vec![
                Entry {
                    path: "x".into(),
                    size: 0,
                    hash: [0; 32]
                };
                MAX_FILES + 1
            ],
            folders: vec![],
        };
        assert!(Manifest::decode(&many.encode()).is_err());
        let empty = Manifest {
            entries: vec![Entry {
                path: String::new(),
                size: 1,
                hash: [0; 32],
            }],
            folders: vec![],
        };
        assert!(Manifest::decode(&empty.encode()).is_err());
        assert!(Manifest::decode(&[0xff, 0xff]).is_err());
    }

    #[test]
    fn sizes_that_add_up_past_u64_do_not_wrap_round_to_a_small_total() {
        let entry = |size| Entry {
            path: "w".into(),
            size,
            hash: [0; 32],
        };
        // 2^63 + (2^63 + 5) wraps to 5: a "5 B" offer that writes without end.
        let m = Manifest {
            entries: vec![entry(1 << 63), entry((1 << 63) + 5)],
            folders: vec![],
        };
        assert_eq!(m.total(), u64::MAX);
        assert_eq!(m.position(2, 0), u64::MAX);
        assert_eq!(m.position(1, 7), (1 << 63) + 7);
    }

    #[test]
    fn bytes_after_the_last_entry_are_ignored() {
        let m = Manifest {
            entries: vec![Entry {
                path: "a".into(),
                size: 3,
                hash: [7; 32],
            }],
            folders: vec![],
        };
        let mut bytes = m.encode();
        bytes.extend_from_slice(&[0xff, 0x01, 0x02]);
        assert_eq!(Manifest::decode(&bytes).unwrap(), m);
    }
}
