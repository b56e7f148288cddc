//! A peer's names on our disk: every path component sanitised, nothing outside the chosen
//! folder, no symbolic link followed on the way in, and never an existing file overwritten.
//!
//! A name from a peer is only a suggestion. [`sanitize_path`] keeps its ordinary components
//! (`..`, `.`, empty components and a leading `/` are dropped) and replaces in each one what
//! could hide or fake something on a terminal or a file manager (control characters,
//! bidirectional overrides, invisible format characters) and the path separators. Files are
//! created with `O_CREAT | O_EXCL | O_NOFOLLOW`, folders one component at a time, and a
//! finished file is moved into place under a name nobody has taken (`report (1).pdf`) with a
//! hard link, which fails rather than replace what is there.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Bytes of one component at most (the usual file-system limit).
const MAX_COMPONENT_BYTES: usize = 255;
/// Components of a path at most (an offerer refuses to offer a folder nested deeper; a
/// receiver keeps the first ones and the file's own name).
pub const MAX_DEPTH: usize = 32;
/// Bytes of a component at most, with room for ` (n)` and [`PART_SUFFIX`] in the usual 255.
const KEPT_COMPONENT_BYTES: usize = MAX_COMPONENT_BYTES - PART_SUFFIX.len() - 8;
/// The longest extension kept whole when a long name is cut (`.txt`, `.tar.gz`'s `.gz`).
const MAX_EXTENSION_BYTES: usize = 16;
/// Suffix of a file still arriving.
pub const PART_SUFFIX: &str = ".part";

/// Whether `c` must not appear in a file name we create: control characters, bidirectional
/// controls and invisible format characters (they can make `gnp.exe` read as `exe.png`), the
/// line and paragraph separators (`U+2028`, `U+2029`: a name that breaks the line it is shown
/// on), and the path separators.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '/' | '\\' | '\u{2028}' | '\u{2029}')
        || crate::ui::render::is_bidi_control(c)
        || crate::ui::render::is_invisible(c)
}

/// One component made safe, or `None` if nothing usable is left (empty, `.` or `..`). It is
/// put in Unicode's composed form (NFC) first, as most systems but macOS write names: the
/// same name sent as NFD (`e` + U+0301) and as NFC (`é`) is one name here.
pub fn sanitize_component(s: &str) -> Option<String> {
    use unicode_normalization::UnicodeNormalization;
    let replaced: String = s
        .nfc()
        .map(|c| if unsafe_char(c) { '_' } else { c })
        .collect();
    let trimmed = replaced.trim();
    let usable = |s: &str| !(s.is_empty() || s == "." || s == "..");
    if !usable(trimmed) {
        return None;
    }
    if trimmed.len() <= KEPT_COMPONENT_BYTES {
        return Some(trimmed.to_owned());
    }
    // Too long: cut before its extension, which stays (`very long … name.txt`).
    let ext = trimmed
        .rfind('.')
        .filter(|&dot| dot > 0 && trimmed.len() - dot <= MAX_EXTENSION_BYTES)
        .map_or("", |dot| &trimmed[dot..]);
    let mut end = KEPT_COMPONENT_BYTES - ext.len();
    while !trimmed.is_char_boundary(end) {
        end -= 1;
    }
    // White space the cut left at the end is trimmed too (`a` + 300 spaces + `b` is `a`), and
    // what is left is checked again: `.` + 300 spaces + `.` would otherwise come out as `..`.
    let cut = format!("{}{ext}", trimmed[..end].trim_end());
    usable(&cut).then_some(cut)
}

/// A relative path from a peer made safe: its usable components, sanitised (`/` and `\` both
/// separate; `..`, `.`, empty ones and any root are dropped). `None` if none is left. Past
/// [`MAX_DEPTH`] components, the first ones and the last (the file's own name) are kept.
pub fn sanitize_path(p: &str) -> Option<Vec<String>> {
    let mut parts: Vec<String> = p
        .split(['/', '\\'])
        .filter_map(sanitize_component)
        .collect();
    if parts.len() > MAX_DEPTH {
        let name = parts.pop()?;
        parts.truncate(MAX_DEPTH - 1);
        parts.push(name);
    }
    (!parts.is_empty()).then_some(parts)
}

/// An offered name made safe as one component: the last usable component of it, else
/// `"file"`.
pub fn sanitize_name(name: &str) -> String {
    sanitize_path(name)
        .and_then(|mut parts| parts.pop())
        .unwrap_or_else(|| "file".to_owned())
}

/// `name` with ` (n)` before its extension: `report (1).pdf`, `photos (2)`, `.bashrc (1)`.
pub fn numbered(name: &str, n: u32) -> String {
    if n == 0 {
        return name.to_owned();
    }
    match name.rfind('.').filter(|&dot| dot > 0) {
        Some(dot) => format!("{} ({n}){}", &name[..dot], &name[dot..]),
        None => format!("{name} ({n})"),
    }
}

/// Whether anything (a file, a folder, a link, even a dangling one) is at `p`.
fn taken(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok()
}

/// The first of `name`, `name (1)`, … in `dir` such that neither it nor its `.part` exists.
pub fn unique(dir: &Path, name: &str) -> PathBuf {
    unique_but(dir, name, |_| false)
}

/// [`unique`], also passing over the paths `reserved` says are another transfer's (accepted,
/// its `.part` not made yet).
pub fn unique_but(dir: &Path, name: &str, reserved: impl Fn(&Path) -> bool) -> PathBuf {
    (0..)
        .map(|n| dir.join(numbered(name, n)))
        .find(|p| !taken(p) && !taken(&part_of(p)) && !reserved(p))
        .unwrap_or_else(|| dir.join(name))
}

/// The `.part` path of a final path.
pub fn part_of(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(PART_SUFFIX);
    PathBuf::from(s)
}

/// Makes the folders from `top` (which must exist) down to `parent`, one component at a time,
/// refusing to go through anything that is not a real folder (a symbolic link, say). Returns
/// how many it made.
///
/// # Errors
/// A component exists and is not a folder, or cannot be created.
pub fn make_parents(top: &Path, parent: &Path) -> io::Result<usize> {
    let rel = parent.strip_prefix(top).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "a path outside the transfer's folder",
        )
    })?;
    let mut at = top.to_path_buf();
    let mut made = 0;
    for c in rel.components() {
        at.push(c);
        match fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} is in the way (not a folder)", at.display()),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&at)?;
                made += 1;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(made)
}

/// Opens a `.part` file to write: a new one (never an existing file, never through a link),
/// or, to resume, the existing one (not through a link).
///
/// # Errors
/// Creating or opening fails.
pub fn open_part(path: &Path, resume: bool) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true).write(true).custom_flags(nix::libc::O_NOFOLLOW);
    if resume {
        o.open(path)
    } else {
        o.create_new(true).open(path)
    }
}

/// Moves a finished `.part` into place at `wanted`, or at the first free `wanted (n)` if that
/// is taken, without ever replacing a file. Returns where it went.
///
/// # Errors
/// Linking or removing the part fails.
pub fn place(part: &Path, wanted: &Path) -> io::Result<PathBuf> {
    let dir = wanted.parent().unwrap_or(Path::new("."));
    let name = wanted
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("file")
        .to_owned();
    for n in 0..10_000 {
        let target = dir.join(numbered(&name, n));
        match fs::hard_link(part, &target) {
            Ok(()) => {
                fs::remove_file(part)?;
                return Ok(target);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            // A file system without hard links: check, then rename (a small race, on a file
            // system that cannot do better).
            Err(_) if !taken(&target) => {
                fs::rename(part, &target)?;
                return Ok(target);
            }
            Err(_) => continue,
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "every numbered name is taken",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_paths_stay_inside() {
        let p = |s: &str| sanitize_path(s).map(|v| v.join("/"));
        assert_eq!(p("../../etc/passwd").as_deref(), Some("etc/passwd"));
        assert_eq!(p("/etc/passwd").as_deref(), Some("etc/passwd"));
        assert_eq!(p("a/./b//c").as_deref(), Some("a/b/c"));
        assert_eq!(p("..\\..\\win.ini").as_deref(), Some("win.ini"));
        assert_eq!(p("../.."), None);
        assert_eq!(p(""), None);
        assert_eq!(
            p("evil\u{1b}[2J\u{202e}gnp.exe").as_deref(),
            Some("evil_[2J_gnp.exe")
        );
        assert_eq!(p("a\nb").as_deref(), Some("a_b"));
        // One name however its accents are written: composed (NFC), as it comes from a Mac
        // (NFD), or as a mix.
        assert_eq!(
            p("e\u{301}t\u{e9}.txt").as_deref(),
            Some("\u{e9}t\u{e9}.txt")
        );
        // Line and paragraph separators: a terminal breaks the line there.
        assert_eq!(
            p("report\u{2028}\u{2029}final.txt").as_deref(),
            Some("report__final.txt")
        );
        let long = "x".repeat(1000);
        assert_eq!(
            sanitize_component(&long).unwrap().len(),
            242,
            "as the spec says"
        );
        assert_eq!(
            p(&"d/".repeat(40)).unwrap().len(),
            2 * 32 - 1,
            "32 components at most"
        );
        // Too deep: the file keeps its own name (it does not become the 32nd folder's).
        let deep = format!("{}bottom.txt", "d/".repeat(40));
        let kept = sanitize_path(&deep).unwrap();
        assert_eq!(
            (kept.len(), kept.last().unwrap().as_str()),
            (32, "bottom.txt")
        );
        // Too long: cut before the extension, which stays.
        let name = format!("{}.txt", "y".repeat(300));
        let cut = sanitize_component(&name).unwrap();
        assert_eq!((cut.len(), cut.ends_with("y.txt")), (242, true), "{cut}");
        let dotless_tail = format!("a.{}", "z".repeat(300));
        assert_eq!(sanitize_component(&dotless_tail).unwrap().len(), 242);
        // White space where the cut falls is trimmed as at the ends (found by fuzzing: a
        // name could end in 241 invisible spaces), and the result is checked again.
        let spaced = format!("a{}b", " ".repeat(241));
        assert_eq!(sanitize_component(&spaced).as_deref(), Some("a"));
        let spaced = format!("invoice{}x.pdf", " ".repeat(300));
        assert_eq!(sanitize_component(&spaced).as_deref(), Some("invoice.pdf"));
        let dots = format!(".{}.", " ".repeat(300));
        assert_eq!(sanitize_component(&dots), None, "not `..`");
        assert_eq!(p(&format!("x/{dots}/y")).as_deref(), Some("x/y"));
        assert_eq!(
            sanitize_name("../evil\u{1b}.bin"),
            "evil_.bin",
            "the spec's example"
        );
        assert_eq!(sanitize_name("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_name(".."), "file");
        assert_eq!(sanitize_name("report.pdf"), "report.pdf");
    }

    #[test]
    fn names_are_numbered_before_the_extension() {
        assert_eq!(numbered("report.pdf", 1), "report (1).pdf");
        assert_eq!(numbered("photos", 2), "photos (2)");
        assert_eq!(numbered(".bashrc", 1), ".bashrc (1)");
        assert_eq!(numbered("a.tar.gz", 1), "a.tar (1).gz");
    }

    #[test]
    fn nothing_is_overwritten() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        fs::write(dir.join("report.pdf"), b"mine").unwrap();
        let wanted = unique(dir, "report.pdf");
        assert_eq!(wanted, dir.join("report (1).pdf"));
        let part = part_of(&wanted);
        assert_eq!(part, dir.join("report (1).pdf.part"));
        assert_eq!(unique(dir, "x"), dir.join("x"));
        let mut f = open_part(&part, false).unwrap();
        io::Write::write_all(&mut f, b"theirs").unwrap();
        assert!(open_part(&part, false).is_err(), "never an existing part");
        // Someone takes the name meanwhile: the file goes to the next one.
        fs::write(&wanted, b"also mine").unwrap();
        let placed = place(&part, &dir.join("report.pdf")).unwrap();
        assert_eq!(placed, dir.join("report (2).pdf"));
        assert_eq!(fs::read(dir.join("report.pdf")).unwrap(), b"mine");
        assert_eq!(fs::read(&wanted).unwrap(), b"also mine");
        assert_eq!(fs::read(&placed).unwrap(), b"theirs");
        assert!(!part.exists());
    }

    #[test]
    fn links_on_the_way_in_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().join("t");
        fs::create_dir(&top).unwrap();
        std::os::unix::fs::symlink(tmp.path(), top.join("up")).unwrap();
        assert!(make_parents(&top, &top.join("up/x")).is_err());
        make_parents(&top, &top.join("a/b")).unwrap();
        assert!(top.join("a/b").is_dir());
        std::os::unix::fs::symlink("/etc/passwd", top.join("f.part")).unwrap();
        assert!(open_part(&top.join("f.part"), true).is_err());
        assert!(open_part(&top.join("f.part"), false).is_err());
        assert_eq!(unique(tmp.path(), "t"), tmp.path().join("t (1)"));
        // A transfer's folder that is a link is refused too.
        std::os::unix::fs::symlink(tmp.path(), tmp.path().join("away")).unwrap();
        assert!(make_parents(tmp.path(), &tmp.path().join("away")).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// A cleaned name is its own cleaning, whatever composing, combining, expanding and
        /// invisible characters it had, and wherever a cut for length fell among them.
        #[test]
        fn cleaning_a_clean_name_changes_nothing(
            picks in proptest::collection::vec(0usize..17, 0..200)
        ) {
            const CHARS: [char; 17] = [
                'e', 'A', '.', ' ', '\u{301}', '\u{328}', '\u{308}', '\u{323}', '\u{958}',
                '\u{212b}', '\u{1100}', '\u{1161}', '\u{11a8}', '\u{ac00}', '\u{200b}',
                '\u{2028}', '\u{f900}',
            ];
            let s: String = picks.iter().map(|&i| CHARS[i]).collect();
            if let Some(clean) = sanitize_component(&s) {
                proptest::prop_assert!(clean.len() <= KEPT_COMPONENT_BYTES, "{clean:?}");
                proptest::prop_assert_eq!(sanitize_component(&clean), Some(clean));
            }
        }
    }
}
