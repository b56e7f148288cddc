//! Where tailchat's files live: the data directory (created on first use, private to the user)
//! and the config file (only ever read).
//!
//! Errors here are strings meant for the user: they name the path and say what to do, because
//! they are reported at start-up, before anything else can go wrong.

use directories::ProjectDirs;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Mode of a data directory this module creates: it holds the identity and the conversation,
/// which are nobody else's business.
const PRIVATE_DIR_MODE: u32 = 0o700;

/// The platform's directories for tailchat (`None` when no home directory can be found).
fn project_dirs() -> Option<ProjectDirs> {
    ProjectDirs::from("", "", "tailchat")
}

/// Where the data directory is (`explicit`, else the XDG data directory's `tailchat`), without
/// making it: for `attach`, which only looks for a running tailchat there.
///
/// # Errors
/// No directory was given and there is no home directory to put it in.
pub fn data_dir_path(explicit: Option<&Path>) -> Result<PathBuf, String> {
    match explicit {
        Some(dir) => Ok(dir.to_path_buf()),
        None => Ok(project_dirs()
            .ok_or_else(|| {
                "cannot find a home directory to put the data directory in (is HOME set?) \
                 — choose one with --data-dir"
                    .to_string()
            })?
            .data_dir()
            .to_path_buf()),
    }
}

/// The data directory to use, created (with its missing parents, mode 0700) if it does not
/// exist: `explicit` if given, else the platform's data directory for tailchat (on Linux
/// `$XDG_DATA_HOME/tailchat`, or `~/.local/share/tailchat`).
///
/// # Errors
/// No home directory to derive the default from, the directory cannot be created, or the path
/// exists and is not a directory. The message names the path and suggests `--data-dir`.
pub fn data_dir(explicit: Option<&Path>) -> Result<PathBuf, String> {
    let dir = data_dir_path(explicit)?;
    // `recursive` makes an existing directory a success, so a second start does not fail; the
    // mode applies only to directories created here, never to one the user made.
    DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(&dir)
        .map_err(|e| {
            format!(
                "cannot create data directory {}: {} — choose another with --data-dir",
                dir.display(),
                io_reason(&e)
            )
        })?;
    if !dir.is_dir() {
        return Err(format!(
            "data directory {} exists and is not a directory — choose another with --data-dir",
            dir.display()
        ));
    }
    Ok(dir)
}

/// The config file's path (on Linux `$XDG_CONFIG_HOME/tailchat/config.toml`, or
/// `~/.config/tailchat/config.toml`), or `None` when no home directory can be found. The file
/// need not exist.
pub fn config_file() -> Option<PathBuf> {
    project_dirs().map(|p| p.config_dir().join("config.toml"))
}

/// Checks that files can be created, written, synced and removed in `dir`, by doing so with a
/// small probe file. Run at start-up, so a read-only or full disk is reported once, clearly,
/// instead of as a failed journal write in the middle of a conversation.
///
/// # Errors
/// Any step fails; the message names the directory and the reason.
pub fn check_writable(dir: &Path) -> Result<(), String> {
    // The pid keeps two processes probing the same directory from tripping over each other.
    let probe = dir.join(format!(".tailchat-probe-{}", std::process::id()));
    let fail = |e: io::Error| {
        format!(
            "cannot write in data directory {}: {} — free some space, fix its permissions, \
             or choose another with --data-dir",
            dir.display(),
            io_reason(&e)
        )
    };
    let written = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&probe)
        .and_then(|mut f| {
            // Some bytes and a sync: on a full disk, creating an empty file can still succeed.
            f.write_all(&[0u8; 512])?;
            f.sync_data()
        });
    if let Err(e) = written {
        // Best effort: the probe may not exist, and the write error is the one to report.
        let _ = fs::remove_file(&probe);
        return Err(fail(e));
    }
    fs::remove_file(&probe).map_err(fail)
}

/// An I/O error as a user reads it after a colon or in brackets: "permission denied",
/// without Rust's "(os error 13)" and with the system's capital lowered (only where the
/// second letter is small: "IO" stays).
pub(crate) fn io_reason(e: &io::Error) -> String {
    let text = e.to_string();
    let text = match text.find(" (os error ") {
        Some(i) => &text[..i],
        None => &text,
    };
    // Only the system's own text: one of ours may start with a path (`Incoming/a is in the
    // way`), which must stay as it is.
    if e.raw_os_error().is_none() {
        return text.to_owned();
    }
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (Some(first), Some(second)) if first.is_uppercase() && !second.is_uppercase() => first
            .to_lowercase()
            .chain(text[first.len_utf8()..].chars())
            .collect(),
        _ => text.to_owned(),
    }
}

/// The bytes of a small file tailchat keeps in the data directory (`transfers/`,
/// `floors.toml`), if it is a regular file of at most `limit` bytes: not through a symbolic
/// link, and without waiting on a FIFO or reading a device (something else put there must
/// not hang the start or fill memory).
///
/// # Errors
/// It cannot be opened (`NotFound` when it does not exist), is not a regular file, or is
/// larger than `limit`.
pub fn read_kept(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    if meta.len() > limit {
        return Err(io::Error::other("too large"));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(limit).read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn creates_missing_explicit_dir_and_parents_private() {
        let tmp = tempfile::tempdir().unwrap();
        let want = tmp.path().join("a/b/tailchat");
        let got = data_dir(Some(&want)).unwrap();
        assert_eq!(got, want);
        assert!(want.is_dir());
        let mode = fs::metadata(&want).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // A second call finds it there and succeeds.
        assert_eq!(data_dir(Some(&want)).unwrap(), want);
    }

    #[test]
    fn existing_dir_keeps_its_mode() {
        let tmp = tempfile::tempdir().unwrap();
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
        data_dir(Some(tmp.path())).unwrap();
        let mode = fs::metadata(tmp.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755);
    }

    #[test]
    fn uncreatable_dir_names_path_and_remedy() {
        // A regular file as a parent fails even for root, unlike a read-only directory.
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("file");
        fs::write(&file, "x").unwrap();
        let bad = file.join("data");
        let err = data_dir(Some(&bad)).unwrap_err();
        assert!(err.starts_with("cannot create data directory "), "{err}");
        assert!(err.contains(&bad.display().to_string()), "{err}");
        assert!(err.contains(": not a directory"), "{err}");
        assert!(!err.contains("os error"), "{err}");
        assert!(err.ends_with("choose another with --data-dir"), "{err}");
    }

    #[test]
    fn only_the_systems_text_is_put_in_lower_case() {
        let os = io::Error::from_raw_os_error(nix::libc::ENOSPC);
        assert_eq!(io_reason(&os), "no space left on device");
        let ours = io::Error::new(io::ErrorKind::AlreadyExists, "Incoming/a is in the way");
        assert_eq!(io_reason(&ours), "Incoming/a is in the way");
    }

    #[test]
    fn file_in_place_of_dir_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("file");
        fs::write(&file, "x").unwrap();
        let err = data_dir(Some(&file)).unwrap_err();
        assert!(err.contains(&file.display().to_string()), "{err}");
    }

    #[test]
    fn config_file_is_tailchat_config_toml() {
        // Depends on HOME; where there is none, there is no path to check.
        if let Some(path) = config_file() {
            assert!(path.ends_with("tailchat/config.toml"), "{}", path.display());
        }
    }

    #[test]
    fn writable_dir_passes_and_leaves_nothing_behind() {
        let tmp = tempfile::tempdir().unwrap();
        check_writable(tmp.path()).unwrap();
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn unusable_dir_is_reported_with_its_path() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("missing");
        let err = check_writable(&missing).unwrap_err();
        assert!(
            err.starts_with(&format!(
                "cannot write in data directory {}: no such file or directory",
                missing.display()
            )),
            "{err}"
        );
    }
}
