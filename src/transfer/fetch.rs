//! The receiver's side of the data path: one thread per transfer attempt that connects to the
//! offerer, checks the manifest against the offer, writes each file as `NAME.part`, checks it
//! against its BLAKE3 hash, and only then moves it into place.
//!
//! A resumed attempt starts at the first file not yet in place and at the length of its
//! `.part`, whose bytes are hashed again from the disk (nothing is trusted that the hash has
//! not covered). A file that does not match its hash is deleted, never kept as if it were
//! good.
//!
//! Bytes are written a whole 1 MiB unit at a time (see [`super::hashing`]), so an attempt cut
//! off mid-unit leaves up to a unit read but not written, which the next attempt asks for
//! again; the progress shown then steps back by as much.

use super::control::Offer;
use super::data::{self, Request, Status};
use super::hashing::{self, HashPipe, Sharing};
use super::manifest::{self, reason, Manifest};
use super::names::{self, part_of};
use super::serve::{set_congestion, PROGRESS_EVERY};
use super::{DataEvent, TransferKey};
use socket2::SockRef;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the offerer may send nothing before the link counts as cut.
const STALL: Duration = Duration::from_secs(20);
/// How long the offerer's end of the connection is waited for after the offer's last byte.
const END_WAIT: Duration = Duration::from_secs(2);

/// Where a transfer's files go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// One file: written to `part`, moved to `wanted` (or `wanted (n)`).
    File {
        /// The name it should get.
        wanted: PathBuf,
    },
    /// A folder, created for this transfer: its files go under `top`.
    Folder {
        /// The folder.
        top: PathBuf,
    },
}

impl Plan {
    /// Where each file of `manifest` should end up, in order (paths sanitised, duplicates
    /// numbered), all inside the plan's folder. No file's path is another's `.part`: a list
    /// with `x.part` and `x` would have the second written over the first, already in place,
    /// so one of the two is numbered. Where two paths come out the same, one that needed no
    /// cleaning keeps its name and the cleaned one (` lead.txt`, `a\b.txt`) is numbered;
    /// otherwise the earlier in the list keeps it.
    pub fn finals(&self, manifest: &Manifest) -> Vec<PathBuf> {
        match self {
            Plan::File { wanted } => vec![wanted.clone(); manifest.entries.len().min(1)],
            Plan::Folder { top } => {
                let cleaned: Vec<(Vec<String>, bool)> = manifest
                    .entries
                    .iter()
                    .enumerate()
                    .map(|(i, e)| match names::sanitize_path(&e.path) {
                        Some(rel) => {
                            let same = rel.join("/") == e.path;
                            (rel, same)
                        }
                        None => (vec![format!("file-{i}")], false),
                    })
                    .collect();
                let mut used = HashSet::new();
                // The folders of the files named as sent, and the empty folders: a cleaned
                // name that comes out as one of them (` a` beside the folder `a`) is numbered,
                // or its file would stand where the folder must be made.
                let folders = manifest
                    .folders
                    .iter()
                    .filter_map(|p| names::sanitize_path(p));
                let parents = cleaned
                    .iter()
                    .filter(|(_, same)| *same)
                    .map(|(rel, _)| rel[..rel.len().saturating_sub(1)].to_vec());
                for rel in folders.chain(parents) {
                    let mut at = top.clone();
                    for c in rel {
                        at.push(c);
                        used.insert(at.clone());
                    }
                }
                // Per path as cleaned, the number its next duplicate tries first: the ones
                // below it are taken already (`used` only grows), so 5000 files of one name
                // cost 5000 tries, not 12.5 million (found by fuzzing).
                let mut next: HashMap<PathBuf, u32> = HashMap::new();
                let mut finals = vec![PathBuf::new(); cleaned.len()];
                // Those named as sent first, then the cleaned ones, each in list order.
                for first in [true, false] {
                    for (i, (rel, same)) in cleaned.iter().enumerate() {
                        if *same != first {
                            continue;
                        }
                        let mut path = top.clone();
                        path.extend(rel);
                        let n = next.entry(path.clone()).or_insert(1);
                        let name = rel.last().map_or("file", String::as_str);
                        let path = first_free(path, name, n, |p| {
                            used.contains(p) || used.contains(&part_of(p))
                        });
                        used.insert(part_of(&path));
                        used.insert(path.clone());
                        finals[i] = path;
                    }
                }
                finals
            }
        }
    }

    /// How a file the plan puts at `path` is named to the user: its name, or for a folder's
    /// file its path from the folder's parent (`photos/2024/a.jpg`).
    pub fn landed_name(&self, path: &Path) -> String {
        let base = match self {
            Plan::File { wanted } => wanted.parent(),
            Plan::Folder { top } => top.parent(),
        };
        let shown = base.and_then(|b| path.strip_prefix(b).ok()).unwrap_or(path);
        shown.display().to_string()
    }

    /// The folder everything goes in (for a file, its parent).
    pub fn top(&self) -> &Path {
        match self {
            Plan::File { wanted } => wanted.parent().unwrap_or(Path::new(".")),
            Plan::Folder { top } => top,
        }
    }
}

/// `path` if it is not `taken`, else the first of its numbered names (file name `name`) from
/// number `n` on that is not; `n` is left at the number after the one returned.
fn first_free(
    mut path: PathBuf,
    name: &str,
    n: &mut u32,
    mut taken: impl FnMut(&Path) -> bool,
) -> PathBuf {
    while taken(&path) {
        #[cfg(test)]
        tests::TRIES.with(|t| t.set(t.get() + 1));
        path.set_file_name(names::numbered(name, *n));
        *n += 1;
    }
    path
}

/// One attempt at fetching a transfer.
#[derive(Debug)]
pub struct Job {
    /// Which transfer.
    pub key: TransferKey,
    /// The offerer's data address (its chat address, the offer's port).
    pub addr: SocketAddr,
    /// The offer.
    pub offer: Offer,
    /// The manifest, when an earlier attempt fetched it.
    pub manifest: Option<Manifest>,
    /// Where the files go.
    pub plan: Plan,
    /// Files already in place, in manifest order.
    pub files_done: u32,
    /// Set to stop the attempt (cancel, quit).
    pub cancel: Arc<AtomicBool>,
}

/// How an attempt failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchError {
    /// No connection could be made to this address, for this reason: try again later.
    Connect(SocketAddr, String),
    /// The connection broke: try again later.
    Link(String),
    /// The offerer refused the request.
    Refused(Status),
    /// The offerer broke its own offer (another manifest, other bytes, more bytes): stopped.
    Broken(String),
    /// Our disk refused (read-only, a name it cannot take): stopped.
    Disk(String),
    /// Our disk is full (or the quota reached): what arrived is kept, to go on from when
    /// there is room.
    Full(String),
    /// We stopped it.
    Cancelled,
}

impl FetchError {
    /// Whether trying again later may work.
    pub fn is_transient(&self) -> bool {
        matches!(self, FetchError::Link(_) | FetchError::Connect(..))
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Connect(addr, why) => write!(f, "cannot connect to {addr} ({why})"),
            FetchError::Link(why) => write!(f, "connection lost ({why})"),
            FetchError::Refused(Status::Unknown) => write!(f, "the sender no longer offers it"),
            FetchError::Refused(Status::Cancelled) => write!(f, "the sender cancelled it"),
            FetchError::Refused(Status::Unreadable) => {
                write!(
                    f,
                    "the sender's copy changed since it was offered, or cannot be read any more: it must be offered again"
                )
            }
            FetchError::Refused(s) => write!(f, "the sender refused the request ({s:?})"),
            FetchError::Broken(why) | FetchError::Disk(why) | FetchError::Full(why) => {
                f.write_str(why)
            }
            FetchError::Cancelled => write!(f, "cancelled"),
        }
    }
}

/// The offerer's data address: its chat address `chat` (an IPv4 one as such, not mapped into
/// IPv6) with the offer's `port`; a link-local IPv6 address keeps its scope (the interface),
/// without which it cannot be reached.
pub fn data_addr(chat: SocketAddr, port: u16) -> SocketAddr {
    match chat {
        SocketAddr::V6(v6) if v6.ip().to_ipv4_mapped().is_none() => SocketAddr::V6(
            std::net::SocketAddrV6::new(*v6.ip(), port, 0, v6.scope_id()),
        ),
        other => SocketAddr::new(other.ip().to_canonical(), port),
    }
}

/// Where an attempt resumes: the first file not in place, and the length of its `.part`.
pub fn resume_point(job: &Job) -> (u32, u64) {
    let Some(manifest) = &job.manifest else {
        return (0, 0);
    };
    let finals = job.plan.finals(manifest);
    let i = job.files_done as usize;
    let offset = match (finals.get(i), manifest.entries.get(i)) {
        (Some(f), Some(e)) => fs::symlink_metadata(part_of(f))
            .ok()
            .filter(|m| m.is_file() && m.len() <= e.size)
            .map_or(0, |m| m.len()),
        _ => 0,
    };
    (job.files_done, offset)
}

/// The files the record counts as in place (before `job.files_done`) that are not at their
/// names any more (the user moved or deleted them, or their folder, since they were
/// received), as runs of consecutive indexes `(first, last)`: a transfer that went on from
/// after them would end "received" with files missing. A file that is there but changed is
/// the user's, and left alone (it cannot have been cut by a crash: files are put in place
/// whole, once checked).
fn missing_runs(job: &Job) -> Vec<(u32, u32)> {
    let Some(manifest) = &job.manifest else {
        return Vec::new();
    };
    let finals = job.plan.finals(manifest);
    let mut runs: Vec<(u32, u32)> = Vec::new();
    let placed = finals.iter().take(job.files_done as usize).enumerate();
    for (i, _) in placed.filter(|(_, p)| fs::symlink_metadata(p).is_err()) {
        let Ok(i) = u32::try_from(i) else { break };
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == i => *last = i,
            _ => runs.push((i, i)),
        }
    }
    runs
}

/// Runs of missing files fetched on one connection: the files in place between two runs
/// come along too, and are read and dropped, as long as they are no more than the manifest
/// (which every connection sends again) and [`GAP_TAKEN`] together. So a folder with every
/// other small file deleted is fetched again on one connection, not one per file; a big file
/// in place between two runs is not sent again.
fn batches(runs: &[(u32, u32)], manifest: &Manifest, limit: u64) -> Vec<Vec<(u32, u32)>> {
    let size = |i: u32| manifest.entries.get(i as usize).map_or(0, |e| e.size);
    let mut batches: Vec<Vec<(u32, u32)>> = Vec::new();
    for &(first, last) in runs {
        match batches.last_mut() {
            Some(batch)
                if batch
                    .last()
                    .is_some_and(|&(_, end)| (end + 1..first).map(size).sum::<u64>() <= limit) =>
            {
                batch.push((first, last));
            }
            _ => batches.push(vec![(first, last)]),
        }
    }
    batches
}

/// Bytes of files in place that a connection fetching gone files again may take along, on top
/// of the manifest's length, rather than connect again (see [`batches`]).
const GAP_TAKEN: u64 = 1 << 20;

/// Fetches again the files [`missing_runs`] finds, saying so first: runs close together on
/// one connection (see [`batches`]).
fn fetch_missing(job: &Job, events: &UnboundedSender<DataEvent>) -> Result<(), (u64, FetchError)> {
    let (Some(manifest), runs) = (&job.manifest, missing_runs(job)) else {
        return Ok(());
    };
    let Some(&(first, _)) = runs.first() else {
        return Ok(());
    };
    // Said once, for all of them.
    let _ = events.send(DataEvent::FilesGone {
        key: job.key,
        index: first,
        count: runs.iter().map(|(a, b)| b - a + 1).sum(),
        path: job.plan.finals(manifest).swap_remove(first as usize),
    });
    let limit = u64::from(job.offer.manifest_len) + GAP_TAKEN;
    for batch in batches(&runs, manifest, limit) {
        let (Some(&(first, _)), Some(&(_, last))) = (batch.first(), batch.last()) else {
            continue;
        };
        let take = Take::Again { last, kept: &batch };
        fetch(job, first, 0, take, events).map_err(|e| (manifest.position(first, 0), e))?;
    }
    Ok(())
}

/// Files from `job.files_done` on that are in place although the transfer's record does not
/// say so (the receiver stopped between moving a file into place and saving its record): a
/// regular file at its final name, no `.part` beside it, of the manifest's size and hash. A
/// `.part` that is the very file at the final name (the receiver stopped between the hard link
/// that put it in place and the removal of the `.part`) is removed first. Each is reported
/// done, so it is not fetched again as `NAME (1)`; returns how many there are.
fn already_placed(job: &Job, events: &UnboundedSender<DataEvent>) -> u32 {
    let Some(manifest) = &job.manifest else {
        return 0;
    };
    let finals = job.plan.finals(manifest);
    let mut placed = 0;
    let entries = manifest.entries.iter().zip(&finals).enumerate();
    for (i, (entry, path)) in entries.skip(job.files_done as usize) {
        let part = part_of(path);
        if let (Ok(p), Ok(f)) = (fs::symlink_metadata(&part), fs::symlink_metadata(path)) {
            if p.is_file() && p.dev() == f.dev() && p.ino() == f.ino() {
                let _ = fs::remove_file(&part);
            }
        }
        let whole = fs::symlink_metadata(&part).is_err()
            && fs::symlink_metadata(path).is_ok_and(|m| m.is_file() && m.len() == entry.size)
            && manifest::hash_file(path).is_ok_and(|(_, hash)| hash == entry.hash);
        if !whole || job.cancel.load(Ordering::Acquire) {
            break;
        }
        let _ = events.send(DataEvent::FileDone {
            key: job.key,
            index: u32::try_from(i).unwrap_or(u32::MAX),
            path: path.clone(),
        });
        placed += 1;
    }
    placed
}

/// Runs one attempt on a thread of its own; its end is reported as
/// [`DataEvent::FetchEnded`] (at once, as a cut link to try again later, when no thread can be
/// started: the transfer must not look fetched for ever).
pub fn spawn(job: Job, events: UnboundedSender<DataEvent>) {
    let key = job.key;
    let report = events.clone();
    let spawned = std::thread::Builder::new()
        .name("tailchat-fetch".into())
        .spawn(move || {
            // Files in place but no list kept that names them (it was lost or damaged): the
            // list first (a request for the file past the last), so that those are known
            // and not fetched again as `NAME (1)`.
            let job = match job.manifest {
                None if job.files_done > 0 => {
                    let list_only = Take::Again {
                        last: job.offer.files,
                        kept: &[],
                    };
                    match fetch(&job, job.offer.files, 0, list_only, &events) {
                        Ok(manifest) => Job {
                            manifest: Some(manifest),
                            ..job
                        },
                        Err(e) => {
                            let (key, result) = (job.key, Err(e));
                            let _ = events.send(DataEvent::FetchEnded {
                                key,
                                from: 0,
                                result,
                            });
                            return;
                        }
                    }
                }
                _ => job,
            };
            if let Err((from, e)) = fetch_missing(&job, &events) {
                let _ = events.send(DataEvent::FetchEnded {
                    key: job.key,
                    from,
                    result: Err(e),
                });
                return;
            }
            let placed = already_placed(&job, &events);
            let job = Job {
                files_done: job.files_done + placed,
                ..job
            };
            let (file, offset) = resume_point(&job);
            let from = job
                .manifest
                .as_ref()
                .map_or(0, |m| m.position(file, offset));
            let key = job.key;
            // Files moved or deleted while this attempt ran are fetched again before the end
            // is said: "received" must be true when it is said.
            let result = fetch(&job, file, offset, Take::All, &events).and_then(|manifest| {
                let whole = Job {
                    files_done: u32::try_from(manifest.entries.len()).unwrap_or(u32::MAX),
                    manifest: Some(manifest),
                    ..job
                };
                fetch_missing(&whole, &events).map_err(|(_, e)| e)
            });
            let _ = events.send(DataEvent::FetchEnded { key, from, result });
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start a thread for file transfer {key:?}: {e}");
        let _ = report.send(DataEvent::FetchEnded {
            key,
            from: 0,
            result: Err(FetchError::Link(format!(
                "cannot start a thread for it: {e}"
            ))),
        });
    }
}

/// What one connection takes from its first file on.
#[derive(Clone, Copy, Debug)]
enum Take<'a> {
    /// Every file to the offer's end.
    All,
    /// Files fetched again (see [`fetch_missing`]), or the list alone (`kept` empty): up to
    /// file `last`, keeping those in the runs `kept` (sorted); the bytes of the others, which
    /// are in place, are read and dropped.
    Again { last: u32, kept: &'a [(u32, u32)] },
}

impl Take<'_> {
    /// Whether file `i` is kept.
    fn keeps(&self, i: u32) -> bool {
        match self {
            Take::All => true,
            Take::Again { kept, .. } => {
                let k = kept.partition_point(|&(_, end)| end < i);
                kept.get(k).is_some_and(|&(first, _)| first <= i)
            }
        }
    }

    fn last(&self) -> Option<u32> {
        match self {
            Take::All => None,
            Take::Again { last, .. } => Some(*last),
        }
    }
}

/// One attempt, from file `first` byte `offset`.
fn fetch(
    job: &Job,
    first: u32,
    offset: u64,
    take: Take<'_>,
    events: &UnboundedSender<DataEvent>,
) -> Result<Manifest, FetchError> {
    let last = take.last();
    let link = |e: io::Error| {
        FetchError::Link(match e.kind() {
            // The read timeout: said as what it means.
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                format!("nothing came for {} s", STALL.as_secs())
            }
            // read_exact's "failed to fill whole buffer", said as what it means.
            io::ErrorKind::UnexpectedEof => "the sender closed the connection".into(),
            _ => reason(&e),
        })
    };
    let mut stream = TcpStream::connect_timeout(&job.addr, CONNECT_TIMEOUT).map_err(|e| {
        let why = reason(&e);
        let mut chars = why.chars();
        let why = chars.next().map_or(String::new(), |c| {
            c.to_lowercase().chain(chars).collect() // "Connection refused" as the others
        });
        FetchError::Connect(job.addr, why)
    })?;
    let _ = stream.set_read_timeout(Some(STALL));
    set_congestion(&SockRef::from(&stream));
    let request = Request {
        token: job.offer.token,
        id: job.offer.id,
        file: first,
        offset,
    };
    stream.write_all(&request.encode()).map_err(link)?;
    let (status, len) = data::read_response(&mut stream).map_err(|e| {
        if e.kind() == io::ErrorKind::Unsupported {
            FetchError::Broken(e.to_string())
        } else {
            link(e)
        }
    })?;
    if status != Status::Ok {
        return Err(FetchError::Refused(status));
    }
    let manifest = read_manifest(&mut stream, &job.offer, len)?;
    if job.manifest.is_none() {
        let _ = events.send(DataEvent::FetchManifest {
            key: job.key,
            bytes: manifest.encode(),
        });
    }
    let finals = job.plan.finals(&manifest);
    let mut done = manifest.position(first, offset);
    let _ = events.send(DataEvent::Fetching {
        key: job.key,
        from: done,
    });
    let mut reported = Instant::now();
    // A resumed part is read back from the disk first (seconds, for a large one): once that is
    // done, bytes arrive, and the rate is measured from there, not over the read-back (which
    // made the first progress line's time left read as an hour for seconds of work).
    let mut arriving = offset == 0;
    if let Plan::Folder { top } = &job.plan {
        // Made at accept, unless the receiver stopped right after saving that it accepted.
        let disk = |e: io::Error| disk_error(&e, format!("cannot create {}", top.display()));
        names::make_parents(top.parent().unwrap_or(top), top).map_err(disk)?;
    }
    for (i, (entry, wanted)) in manifest.entries.iter().zip(&finals).enumerate() {
        if i < first as usize {
            continue;
        }
        let index = u32::try_from(i).unwrap_or(u32::MAX);
        if !take.keeps(index) {
            drop_file(&mut stream, entry.size, job, &mut done, &link)?;
            continue;
        }
        let skip = if i == first as usize { offset } else { 0 };
        let part = part_of(wanted);
        let disk = |e: io::Error| disk_error(&e, format!("cannot write {}", part.display()));
        if let Some(parent) = part.parent() {
            names::make_parents(job.plan.top(), parent).map_err(disk)?;
        }
        let shrank = || FetchError::Disk(format!("{} shrank", part.display()));
        let mut file = if skip > 0 {
            let f = names::open_part(&part, true).map_err(disk)?;
            // Shorter than when the attempt began (another program cut it): setting its length
            // would pad it with zeros that the hash then rejects only after the whole download.
            if f.metadata().map_err(disk)?.len() < skip {
                return Err(shrank());
            }
            f.set_len(skip).map_err(disk)?;
            f
        } else {
            // A part left by an attempt that wrote nothing we kept: ours, in our folder.
            if fs::symlink_metadata(&part).is_ok_and(|m| m.is_file()) {
                fs::remove_file(&part).map_err(disk)?;
            }
            names::open_part(&part, false).map_err(disk)?
        };
        let len = entry.size;
        let mut hashing = HashPipe::new(len, len >= hashing::THREADED_FROM, Sharing::next());
        // Unit by unit: what a resumed attempt has on the disk is read back and hashed again
        // (nothing is trusted that the hash has not seen), the rest comes from the socket and
        // is written after it.
        for index in 0..hashing::units(len) {
            // Also between units read back from the disk, which take a while for a large part.
            if job.cancel.load(Ordering::Acquire) {
                return Err(FetchError::Cancelled);
            }
            let n = hashing::unit_len(len, index);
            let start = index * hashing::UNIT as u64;
            let have = usize::try_from(skip.saturating_sub(start)).map_or(n, |h| h.min(n));
            let mut buf = hashing.buffer();
            if have > 0 {
                file.read_exact(&mut buf[..have]).map_err(|e| {
                    if e.kind() == io::ErrorKind::UnexpectedEof {
                        shrank()
                    } else {
                        disk(e)
                    }
                })?;
            }
            let mut got = have;
            if got < n && !arriving {
                arriving = true;
                let _ = events.send(DataEvent::Fetching {
                    key: job.key,
                    from: done,
                });
                reported = Instant::now();
            }
            while got < n {
                if job.cancel.load(Ordering::Acquire) {
                    return Err(FetchError::Cancelled);
                }
                match stream.read(&mut buf[got..n]) {
                    Ok(0) => return Err(FetchError::Link("closed early".into())),
                    Ok(r) => {
                        got += r;
                        done += r as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(link(e)),
                }
                if reported.elapsed() >= PROGRESS_EVERY {
                    reported = Instant::now();
                    let _ = events.send(DataEvent::FetchProgress { key: job.key, done });
                }
            }
            // A full disk keeps what was written: it is the offer's bytes, in order, and the
            // next attempt (once there is room) reads them back and hashes them again.
            file.write_all(&buf[have..n]).map_err(disk)?;
            hashing.hash(buf, index);
        }
        file.flush().map_err(disk)?;
        drop(file);
        let hash = hashing
            .finish()
            .ok_or_else(|| FetchError::Disk("the hashing thread failed".into()))?;
        if hash.as_bytes() != &entry.hash {
            let _ = fs::remove_file(&part);
            // Named as it would have landed, not by the peer's own text for it.
            return Err(FetchError::Broken(format!(
                "{} does not match its hash: discarded",
                job.plan.landed_name(wanted)
            )));
        }
        // Bytes past the offer's end make the whole offer suspect: the last file is not put
        // in place (so a stopped single-file transfer leaves no file that looks complete).
        if i + 1 == manifest.entries.len() {
            if let Err(e) = nothing_more(&mut stream) {
                let _ = fs::remove_file(&part);
                return Err(e);
            }
        }
        // Stopped meanwhile: what the end line counted as kept is what stays.
        if job.cancel.load(Ordering::Acquire) {
            let _ = fs::remove_file(&part);
            return Err(FetchError::Cancelled);
        }
        let placed = names::place(&part, wanted).map_err(disk)?;
        let _ = events.send(DataEvent::FetchProgress { key: job.key, done });
        let _ = events.send(DataEvent::FileDone {
            key: job.key,
            index,
            path: placed,
        });
        if last == Some(index) {
            // Files fetched again (see `fetch_missing`): the rest is not asked for here.
            return Ok(manifest);
        }
    }
    if last.is_some() {
        // Only the list was asked for (see `spawn`): nothing else follows.
        return Ok(manifest);
    }
    // Unless there were no files to take this time, the end was checked before the last one
    // was put in place.
    if (first as usize) >= manifest.entries.len() {
        nothing_more(&mut stream)?;
    }
    make_empty_folders(job, &manifest)?;
    Ok(manifest)
}

/// Reads the `len` bytes of a file in place (see [`Take::Again`]) and drops them; `link` says
/// what a socket error means.
fn drop_file(
    stream: &mut TcpStream,
    len: u64,
    job: &Job,
    done: &mut u64,
    link: &dyn Fn(io::Error) -> FetchError,
) -> Result<(), FetchError> {
    let mut scratch = [0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        if job.cancel.load(Ordering::Acquire) {
            return Err(FetchError::Cancelled);
        }
        let n = usize::try_from(left).map_or(scratch.len(), |l| l.min(scratch.len()));
        match stream.read(&mut scratch[..n]) {
            Ok(0) => return Err(FetchError::Link("closed early".into())),
            Ok(r) => {
                left -= r as u64;
                *done += r as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(link(e)),
        }
    }
    Ok(())
}

/// Makes a folder transfer's empty folders (with their parents) under its folder, once its
/// files are in place: named as the files' folders are, and passed over where a path cleans
/// to nothing or something that is not a folder is in the way. Another error (a full disk)
/// stops the transfer as a file's would; the next attempt finds the files in place and
/// makes the folders. A cancel stops it; a list that would make more than
/// [`MAX_FOLDERS_MADE`] folders in all is a broken offer.
fn make_empty_folders(job: &Job, manifest: &Manifest) -> Result<(), FetchError> {
    let Plan::Folder { top } = &job.plan else {
        return Ok(());
    };
    let mut made = 0;
    for rel in manifest
        .folders
        .iter()
        .filter_map(|p| names::sanitize_path(p))
    {
        if job.cancel.load(Ordering::Acquire) {
            return Err(FetchError::Cancelled);
        }
        let mut at = top.clone();
        at.extend(rel);
        match names::make_parents(top, &at) {
            Ok(n) => made += n,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(disk_error(&e, format!("cannot create {}", at.display()))),
        }
        if made > MAX_FOLDERS_MADE {
            return Err(FetchError::Broken(format!(
                "its list of empty folders makes more than {MAX_FOLDERS_MADE} folders: the files are in place, the rest of the folders not made"
            )));
        }
    }
    Ok(())
}

/// Folders the empty-folder list of one transfer may make in all (its paths, up to 32 deep,
/// with their parents): twice as many as the list may name.
const MAX_FOLDERS_MADE: usize = 2 * crate::transfer::manifest::MAX_FOLDERS;

/// What our disk's `e` means for the transfer: a full disk (or quota) pauses it, anything
/// else stops it. `what` says what was being done (`cannot write /dl/a.part`).
fn disk_error(e: &io::Error, what: String) -> FetchError {
    let full = matches!(
        e.raw_os_error(),
        Some(nix::libc::ENOSPC | nix::libc::EDQUOT)
    );
    let why = format!("{what}: {}", reason(e));
    if full {
        FetchError::Full(why)
    } else {
        FetchError::Disk(why)
    }
}

/// Checks that the offerer sends nothing after the offer's last byte: it closes its side
/// right after it (§13.4), so its end comes at once; one that keeps the connection open is
/// waited for [`END_WAIT`] at most, not the whole [`STALL`].
fn nothing_more(stream: &mut TcpStream) -> Result<(), FetchError> {
    let _ = stream.set_read_timeout(Some(END_WAIT));
    let mut extra = [0u8; 1];
    match stream.read(&mut extra) {
        Ok(n) if n > 0 => Err(FetchError::Broken(
            "it sent more bytes than it offered: connection closed".into(),
        )),
        _ => Ok(()),
    }
}

/// Reads the manifest and checks it against the offer: its length and hash, then its files'
/// count, total size and (for a single file) that there is one.
fn read_manifest(stream: &mut TcpStream, offer: &Offer, len: u32) -> Result<Manifest, FetchError> {
    let broken = |why: &str| FetchError::Broken(format!("its file list {why}"));
    if len != offer.manifest_len {
        return Err(broken("is not the one it offered (another length)"));
    }
    let mut bytes = vec![0u8; len as usize];
    stream
        .read_exact(&mut bytes)
        .map_err(|e| FetchError::Link(reason(&e)))?;
    if blake3::hash(&bytes).as_bytes() != &offer.manifest_hash {
        return Err(broken("is not the one it offered (another hash)"));
    }
    let m = Manifest::decode(&bytes).map_err(FetchError::Broken)?;
    let count_ok = u32::try_from(m.entries.len()).is_ok_and(|n| n == offer.files);
    if !count_ok || m.total() != offer.size || (!offer.folder && m.entries.len() != 1) {
        return Err(broken(&format!(
            "does not match its offer ({} files, {} bytes listed)",
            m.entries.len(),
            m.total()
        )));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::PeerId;
    use crate::transfer::manifest::Entry;

    /// After the last byte: more bytes stop the transfer; the offerer's close, or a wait of
    /// [`END_WAIT`] for an offerer that keeps the connection open, end it well.
    #[test]
    fn after_the_last_byte_only_the_end_is_waited_for_a_short_while() {
        use std::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        for how in ["more", "close", "open"] {
            let mut ours = TcpStream::connect(addr).unwrap();
            ours.set_read_timeout(Some(STALL)).unwrap();
            let (mut theirs, _) = listener.accept().unwrap();
            match how {
                "more" => theirs.write_all(b"x").unwrap(),
                "close" => theirs.shutdown(std::net::Shutdown::Write).unwrap(),
                _ => {}
            }
            let started = Instant::now();
            let got = nothing_more(&mut ours);
            assert_eq!(got.is_err(), how == "more", "{how}: {got:?}");
            assert!(started.elapsed() < STALL, "{how}: waited as for a stall");
            drop(theirs);
        }
    }

    #[test]
    fn the_data_address_is_the_chat_address_with_the_offers_port() {
        let v4: SocketAddr = "192.0.2.7:5000".parse().unwrap();
        assert_eq!(data_addr(v4, 6000), "192.0.2.7:6000".parse().unwrap());
        // A dual-stack socket's view of an IPv4 peer: connected to as IPv4.
        let mapped: SocketAddr = "[::ffff:192.0.2.7]:5000".parse().unwrap();
        assert_eq!(data_addr(mapped, 6000), "192.0.2.7:6000".parse().unwrap());
        // Link-local: the interface stays, or the address names no one.
        let link = SocketAddr::V6(std::net::SocketAddrV6::new(
            "fe80::1".parse().unwrap(),
            5000,
            0,
            3,
        ));
        match data_addr(link, 6000) {
            SocketAddr::V6(a) => assert_eq!((a.port(), a.scope_id()), (6000, 3)),
            other => panic!("{other}"),
        }
    }

    /// A folder of three files received in an earlier run, whose record says none is in place
    /// (the receiver stopped before saving it): the first two are in place whole, the third
    /// has the right size but other bytes (not ours, or cut): only the first two count.
    #[test]
    fn files_in_place_whole_are_not_fetched_again() {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().join("pics");
        fs::create_dir(&top).unwrap();
        let contents: [&[u8]; 3] = [b"first", b"second", b"third"];
        let entries: Vec<Entry> = contents
            .iter()
            .enumerate()
            .map(|(i, c)| Entry {
                path: format!("f{i}"),
                size: c.len() as u64,
                hash: *blake3::hash(c).as_bytes(),
            })
            .collect();
        fs::write(top.join("f0"), contents[0]).unwrap();
        fs::write(top.join("f1"), contents[1]).unwrap();
        fs::write(top.join("f2"), b"THIRD").unwrap();
        let manifest = Manifest {
            entries,
            folders: vec![],
        };
        let bytes = manifest.encode();
        let job = |files_done| Job {
            key: TransferKey {
                offerer: PeerId(7),
                id: 1,
            },
            addr: "127.0.0.1:9".parse().unwrap(),
            offer: Offer {
                id: 1,
                token: [0; 16],
                name: "pics".into(),
                size: 16,
                files: 3,
                folder: true,
                manifest_hash: *blake3::hash(&bytes).as_bytes(),
                manifest_len: u32::try_from(bytes.len()).unwrap(),
                port: 9,
            },
            manifest: Some(manifest.clone()),
            plan: Plan::Folder { top: top.clone() },
            files_done,
            cancel: Arc::new(AtomicBool::new(false)),
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        assert_eq!(already_placed(&job(0), &tx), 2);
        let mut done = Vec::new();
        while let Ok(DataEvent::FileDone { index, path, .. }) = rx.try_recv() {
            done.push((index, path));
        }
        assert_eq!(done, [(0, top.join("f0")), (1, top.join("f1"))]);
        // Counted from where the record is; a `.part` beside a file means it was not placed.
        assert_eq!(already_placed(&job(1), &tx), 1);
        fs::write(top.join("f1.part"), b"sec").unwrap();
        assert_eq!(already_placed(&job(1), &tx), 0);
        // Stopped between the hard link that placed it and the removal of the part: the part
        // is the placed file itself, so it goes and the file counts.
        fs::remove_file(top.join("f1.part")).unwrap();
        fs::hard_link(top.join("f1"), top.join("f1.part")).unwrap();
        assert_eq!(already_placed(&job(1), &tx), 1);
        assert!(!top.join("f1.part").exists());
        assert!(top.join("f1").exists());
        // With no manifest yet (a first attempt), nothing is looked at.
        let first = Job {
            manifest: None,
            ..job(0)
        };
        assert_eq!(already_placed(&first, &tx), 0);
    }

    #[test]
    fn no_file_of_a_folder_lands_on_another_ones_part() {
        let entry = |path: &str| Entry {
            path: path.into(),
            size: 1,
            hash: [0; 32],
        };
        let top = PathBuf::from("/dl/pc");
        let finals = |paths: &[&str]| {
            Plan::Folder { top: top.clone() }.finals(&Manifest {
                entries: paths.iter().map(|p| entry(p)).collect(),
                folders: vec![],
            })
        };
        // `x.part` in place first, then `x` would be written to `x.part`: numbered instead.
        assert_eq!(
            finals(&["x.part", "x"]),
            [top.join("x.part"), top.join("x (1)")]
        );
        assert_eq!(
            finals(&["x", "x.part"]),
            [top.join("x"), top.join("x (1).part")]
        );
        assert_eq!(finals(&["a", "a"]), [top.join("a"), top.join("a (1)")]);
        assert_eq!(finals(&["a", "b"]), [top.join("a"), top.join("b")]);
        // A name that needed cleaning does not take the name of one that did not, even when
        // it comes first in the list.
        assert_eq!(
            finals(&[" lead.txt", "lead.txt", "a\\b.txt", "a/b.txt"]),
            [
                top.join("lead (1).txt"),
                top.join("lead.txt"),
                top.join("a/b (1).txt"),
                top.join("a/b.txt")
            ]
        );
        // Numbers skip a name the list holds as sent.
        assert_eq!(
            finals(&["a", "a (1)", "a", "a"]),
            [
                top.join("a"),
                top.join("a (1)"),
                top.join("a (2)"),
                top.join("a (3)")
            ]
        );
    }

    thread_local! {
        /// Numbered names tried by `first_free` on this thread.
        pub(super) static TRIES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }

    /// A hostile manifest of the most files allowed, all of one name (found by fuzzing): each
    /// duplicate goes on from the number the one before it took, so the names cost one try
    /// each, where starting from 1 every time cost 12.5 million, seconds on the event loop.
    #[test]
    fn many_files_of_one_name_are_numbered_in_linear_time() {
        let entries = (0..crate::transfer::manifest::MAX_FILES)
            .map(|_| Entry {
                path: "a".into(),
                size: 0,
                hash: [0; 32],
            })
            .collect();
        let top = PathBuf::from("/dl/pc");
        TRIES.with(|t| t.set(0));
        let finals = Plan::Folder { top: top.clone() }.finals(&Manifest {
            entries,
            folders: vec![],
        });
        let tries = TRIES.with(std::cell::Cell::get);
        let n = finals.len();
        assert_eq!(n, 5000);
        assert_eq!(finals[n - 1], top.join("a (4999)"));
        assert_eq!(finals.iter().collect::<HashSet<_>>().len(), n, "all apart");
        assert!(tries < 2 * n as u64, "{tries} tries for {n} names");
    }

    /// Gone files are fetched again on as few connections as the files in place between them
    /// allow: small ones in between come along (and are dropped), a big one splits the batch.
    #[test]
    fn gone_files_close_together_share_a_connection() {
        let sizes = [10, 10, 10, 10, 5_000, 10, 10];
        let manifest = Manifest {
            entries: sizes
                .iter()
                .map(|&size| Entry {
                    path: "f".into(),
                    size,
                    hash: [0; 32],
                })
                .collect(),
            folders: vec![],
        };
        // Files 0, 2, 3 and 6 gone; 1 (10 bytes) and 4 + 5 (5 010 bytes) in place.
        let runs = [(0, 0), (2, 3), (6, 6)];
        assert_eq!(
            batches(&runs, &manifest, 100),
            vec![vec![(0, 0), (2, 3)], vec![(6, 6)]]
        );
        assert_eq!(batches(&runs, &manifest, 5_010), vec![runs.to_vec()]);
        assert_eq!(
            batches(&runs, &manifest, 9),
            vec![vec![(0, 0)], vec![(2, 3)], vec![(6, 6)]]
        );
        assert_eq!(batches(&[], &manifest, 100), Vec::<Vec<(u32, u32)>>::new());
        // What a connection of the first batch keeps: the gone files only.
        let take = Take::Again {
            last: 3,
            kept: &[(0, 0), (2, 3)],
        };
        let kept: Vec<u32> = (0..7).filter(|&i| take.keeps(i)).collect();
        assert_eq!(kept, [0, 2, 3]);
        assert!((0..7).all(|i| Take::All.keeps(i)));
    }
}
