//! What the user's file commands do: `/send` (the offer is built off the loop), `/accept`
//! (space checked, place made, fetch started), `/decline`, `/cancel`, and the `/files` table.

use super::{default_download_dir, new_transfer, now_ms, seconds, Files, Transfer, RATE_WINDOW};
use crate::proto::Endpoint;
use crate::transfer::control::{Control, Offer};
use crate::transfer::manifest;
use crate::transfer::names;
use crate::transfer::record::{Record, State};
use crate::transfer::{human_size, DataEvent, TransferKey};
use crate::ui::command::FileCommand;
use crate::ui::render::Output;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A file at least this big, or any folder, is said to be read before its offer goes out (it
/// is hashed first: a few seconds per gigabyte), so a user waiting for the offer line knows.
const SAY_READING_FROM: u64 = 64 << 20;

impl Files {
    /// A file command typed by the user.
    ///
    /// # Errors
    /// The command cannot be carried out (no such peer, number or path): the message says
    /// why.
    pub fn command(&mut self, ep: &mut Endpoint, cmd: FileCommand) -> Result<(), String> {
        match cmd {
            FileCommand::Send { nick, path } => self.send(ep, &nick, &path),
            FileCommand::Accept { number, dir } => {
                if let (None, Some(word)) = (number, &dir) {
                    typo_for_a_number(word)?;
                }
                if let Some(key) = self.pick_paused(number) {
                    return self.go_on(ep, key, dir.map(|d| typed_path(&d)));
                }
                let key = self.pick_offer(number)?;
                self.accept(ep, key, dir.map(|d| typed_path(&d)))
            }
            FileCommand::Decline(number) => {
                let key = self.pick_offer(number)?;
                self.finish(ep, key, State::Declined, None);
                Ok(())
            }
            FileCommand::Cancel(number) => {
                let key = self
                    .transfers
                    .values()
                    .find(|t| t.number == number && t.number > 0)
                    .map(Transfer::key)
                    .ok_or_else(|| format!("no file transfer {number} — /files lists them"))?;
                if self.transfers[&key].record.state.is_finished() {
                    return Err(format!("file transfer {number} is already over"));
                }
                self.finish(ep, key, State::Cancelled, None);
                Ok(())
            }
            FileCommand::List => {
                let lines = self.list(ep, Instant::now());
                self.lines.extend(lines.into_iter().map(Output::Info));
                Ok(())
            }
        }
    }

    /// The incoming offer `number` names, or the latest one waiting.
    fn pick_offer(&self, number: Option<u32>) -> Result<TransferKey, String> {
        let waiting = |t: &&Transfer| !t.record.outgoing && t.record.state == State::Offered;
        let found = match number {
            // Number 0 is no transfer's (those not listed carry it).
            Some(n) => self.transfers.values().find(|t| t.number == n && n > 0),
            None => self
                .transfers
                .values()
                .filter(waiting)
                .max_by_key(|t| t.number),
        };
        match (found, number) {
            (Some(t), _) if waiting(&t) => Ok(t.key()),
            // Accepted already (or ours, or over): /cancel is what stops it.
            (Some(t), _) if !t.record.state.is_finished() => Err(format!(
                "file transfer {} is not an offer waiting for you — /cancel {} stops it",
                t.number, t.number
            )),
            (Some(t), _) => Err(format!(
                "file transfer {} is not an offer waiting for you: it is over",
                t.number
            )),
            (None, Some(n)) => Err(format!("no file transfer {n} — /files lists them")),
            (None, None) => Err("no file offer is waiting for you".into()),
        }
    }

    /// The incoming transfer paused for lack of space that `/accept [N]` names: number `N`,
    /// or with no number the latest one, when no offer waits.
    fn pick_paused(&self, number: Option<u32>) -> Option<TransferKey> {
        let paused = |t: &&Transfer| t.paused && t.record.state == State::Accepted;
        let offers = || {
            self.transfers
                .values()
                .any(|t| !t.record.outgoing && t.record.state == State::Offered)
        };
        match number {
            Some(n) => self
                .transfers
                .values()
                .find(|t| t.number == n && n > 0)
                .filter(paused),
            None if offers() => None,
            None => self
                .transfers
                .values()
                .filter(paused)
                .max_by_key(|t| t.number),
        }
        .map(Transfer::key)
    }

    /// `/accept` of a transfer paused for lack of space: goes on where it is, if the rest fits.
    fn go_on(
        &mut self,
        ep: &mut Endpoint,
        key: TransferKey,
        dir: Option<PathBuf>,
    ) -> Result<(), String> {
        let t = &self.transfers[&key];
        let (dest, folder) = t.record.dest.as_deref().zip(t.folder()).ok_or("gone")?;
        // The folder it goes in, or (for a folder) the one it was accepted into.
        if dir.is_some_and(|d| d != folder && d != dest && dest.parent() != Some(d.as_path())) {
            return Err(format!(
                "file transfer {} goes to {}: /accept {} goes on there",
                t.number,
                dest.display(),
                t.number
            ));
        }
        self.room_for_the_rest(key)?;
        self.go_on_now(ep, key, "going on with");
        Ok(())
    }

    /// Whether what is left of paused transfer `key` fits in its folder now; if not, says so.
    pub(super) fn room_for_the_rest(&self, key: TransferKey) -> Result<(), String> {
        let t = self.transfers.get(&key).ok_or("gone")?;
        let folder = t.folder().ok_or("gone")?;
        let left = t.left_to_fetch();
        match free_space(folder) {
            Some(free) if left > free => Err(format!(
                "still not enough space for {} in {}: the rest needs {}, {} free — free some, and it goes on by itself (or /accept {} then)",
                t.shown_name(),
                folder.display(),
                human_size(left),
                human_size(free),
                t.number
            )),
            _ => Ok(()),
        }
    }

    /// Whether paused transfer `key` may go on by itself: its folder has more room than when
    /// it paused (so the same write does not just fail again, every few seconds, on a quota
    /// that free space does not show), enough bytes for the rest and an inode for each file
    /// still to come.
    pub(super) fn room_grew(&self, key: TransferKey) -> bool {
        let Some(t) = self.transfers.get(&key) else {
            return false;
        };
        let Some((bytes, inodes)) = t.folder().and_then(disk_room) else {
            return false;
        };
        let left = t.left_to_fetch();
        let files_left = t.record.offer.files.saturating_sub(t.record.files_done);
        may_go_on(
            (bytes, inodes),
            t.paused_room,
            (left, u64::from(files_left)),
        )
    }

    /// Unpauses `key` and fetches the rest, saying `how` ("going on with").
    pub(super) fn go_on_now(&mut self, ep: &Endpoint, key: TransferKey, how: &str) {
        let Some(t) = self.transfers.get_mut(&key) else {
            return;
        };
        t.paused = false;
        t.retries = 0;
        let (name, pct, nick) = (t.shown_name(), t.percent_done(), Self::nick(ep, t));
        self.notice(format!("{how} {name} from {nick} at {pct}%"));
        self.fetch_or_wait(ep, key, &format!("the rest of {name}"), &nick);
    }

    /// Starts fetching `key`, or, with its sender away, says that `what` comes when `nick`
    /// is back.
    fn fetch_or_wait(&mut self, ep: &Endpoint, key: TransferKey, what: &str, nick: &str) {
        self.start_fetch(ep, key);
        if self
            .transfers
            .get(&key)
            .is_some_and(|t| t.fetching.is_none() && !t.queued)
        {
            self.notice(format!(
                "{nick} is not here now: {what} comes when {nick} is back"
            ));
        }
    }

    /// `/send NICK PATH`: builds the offer off the loop; it goes out when ready.
    fn send(&mut self, ep: &mut Endpoint, nick: &str, path: &str) -> Result<(), String> {
        let peers = ep.peers();
        let (peer, nick) = crate::app::lookup::find_peer(&peers, nick).map_err(|e| {
            // The path first and the nick second: said which way round it goes.
            let swapped = crate::app::lookup::find_peer(&peers, path.trim()).is_ok()
                && (nick.contains('/') || std::fs::metadata(expand_home(nick)).is_ok());
            if swapped {
                format!("{e} — the nick comes first: /send {} {nick}", path.trim())
            } else if nick == ep.nick() {
                format!("{nick} is you: /send NICK PATH offers it to someone else")
            } else {
                e
            }
        })?;
        let path = typed_path(path);
        let Ok(meta) = std::fs::metadata(&path) else {
            return Err(format!(
                "cannot send {}: no such file or folder",
                path.display()
            ));
        };
        self.server()
            .ok_or("file transfers are off: no TCP listener")?;
        let id: u64 = rand::random();
        let tx = self.events_tx.clone();
        let source = path.clone();
        let spawned = std::thread::Builder::new()
            .name("tailchat-hash".into())
            .spawn(move || {
                let result = manifest::prepare(&source);
                let _ = tx.send(DataEvent::Prepared { id, result });
            });
        if spawned.is_err() {
            return Err("cannot start a thread to read the files".into());
        }
        let number = self.number();
        // What is offered is filled in once the files are read (`DataEvent::Prepared`); until
        // then it goes by the name it will be offered under, and the size the path has.
        let name = manifest::offered_name(&path).unwrap_or_else(|_| path.display().to_string());
        let size = if meta.is_dir() { 0 } else { meta.len() };
        if meta.is_dir() || size >= SAY_READING_FROM {
            let what = if meta.is_dir() {
                format!("{name}/")
            } else {
                format!("{name} ({})", human_size(size))
            };
            // Named as its lines name it (`robert#67dc012d` beside another robert).
            let shown = Self::nick_or(ep, peer, &nick);
            self.notice(format!(
                "reading {what} to offer it to {shown} — /cancel {number} stops it"
            ));
        }
        let unread = Offer {
            id,
            token: [0; 16],
            name,
            size,
            files: 0,
            folder: meta.is_dir(),
            manifest_hash: [0; 32],
            manifest_len: 0,
            port: 0,
        };
        let record = Record::offered(self.me.0, peer.0, nick, true, &unread, now_ms());
        let key = TransferKey {
            offerer: self.me,
            id,
        };
        self.transfers
            .insert(key, new_transfer(number, record, None, None));
        // Kept while it is read, so that a crash (kill -9) meanwhile is said at the next start
        // rather than lost without a word; its token of zeros marks it ([`unread`]).
        self.save(key);
        Ok(())
    }

    /// `/accept`: checks the space, makes the place, and starts fetching.
    pub(super) fn accept(
        &mut self,
        ep: &mut Endpoint,
        key: TransferKey,
        dir: Option<PathBuf>,
    ) -> Result<(), String> {
        let dir = self.accept_checks(key, dir)?;
        self.accept_into(ep, key, &dir)
    }

    /// [`Files::accept`] into `dir`, a folder [`Files::accept_checks`] passed.
    pub(super) fn accept_into(
        &mut self,
        ep: &mut Endpoint,
        key: TransferKey,
        dir: &Path,
    ) -> Result<(), String> {
        let t = &self.transfers[&key];
        let name = names::sanitize_name(&t.record.offer.name);
        let folder = t.record.offer.folder;
        // Not the name of another transfer accepted and not started yet (its `.part` may not be
        // on the disk): two files of one name accepted together would share a `.part`.
        let reserved: std::collections::HashSet<&Path> = self
            .open_incoming()
            .filter_map(|o| o.record.dest.as_deref())
            .collect();
        let dest = names::unique_but(dir, &name, |p| reserved.contains(p));
        let t = self.transfers.get_mut(&key).ok_or("gone")?;
        t.record.dest = Some(dest.clone());
        t.record.state = State::Accepted;
        let (peer, shown) = (t.peer(), t.shown_name());
        let nick = Self::nick(ep, t);
        // Saved before the folder or `.part` is made: a crash in between resumes into it (the
        // fetch makes it), instead of leaving it empty beside a `NAME (1)` made by a second
        // accept.
        self.save(key);
        // The name is taken on the disk at once, for other programs too: the folder, or an
        // empty `.part` (the fetch starts that again from nothing).
        let (made, making) = if folder {
            (dest.clone(), std::fs::create_dir(&dest))
        } else {
            let part = names::part_of(&dest);
            let making = names::open_part(&part, false).map(drop);
            (part, making)
        };
        if let Err(e) = making {
            let t = self.transfers.get_mut(&key).ok_or("gone")?;
            t.record.dest = None;
            t.record.state = State::Offered;
            // Not kept: an offer is written only once accepted (`save` would leave the
            // accepted record of a moment ago, to be resumed at the next start).
            if let Some(store) = &self.store {
                store.remove(key);
            }
            return Err(format!(
                "cannot create {}: {}",
                made.display(),
                manifest::reason(&e)
            ));
        }
        self.kept.push(peer);
        let _ = Self::control(ep, peer, &Control::Accept { id: key.id });
        self.event(
            ep,
            key,
            "accepted",
            format!("accepted {shown} from {nick} → {}", dest.display()),
        );
        self.fetch_or_wait(ep, key, &shown, &nick);
        Ok(())
    }

    /// What [`Files::accept`] checks before it takes anything: the folder `dir` (or the
    /// download folder) exists or is made, we may write in it, and the offer fits in its free
    /// space. Returns the folder, absolute.
    pub(super) fn accept_checks(
        &self,
        key: TransferKey,
        dir: Option<PathBuf>,
    ) -> Result<PathBuf, String> {
        let number = self.transfers[&key].number;
        let given = dir.is_some();
        let configured = !given && self.setup.download_dir.is_some();
        let dir = dir
            .or_else(|| self.setup.download_dir.clone())
            .or_else(default_download_dir)
            .ok_or_else(|| format!("no download folder: give one, /accept {number} DIR"))?;
        // Said and kept whole: the lines show where it is whatever the directory tailchat was
        // started in (`dl/report.pdf` would not say).
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        if dir.exists() && !dir.is_dir() {
            return Err(format!(
                "{} is not a folder: /accept {number} DIR takes the folder to put it in",
                dir.display()
            ));
        }
        // A folder typed with /accept is made if only its last part is missing (a new
        // folder), not a whole path: `~/Dowloads/x` is a typo, not a wish.
        let missing_parent = dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty() && !p.exists());
        if let (true, false, Some(parent)) = (given, dir.exists(), missing_parent) {
            return Err(format!(
                "no folder {}, nor {}: check the spelling, or create it first — /accept {number} DIR takes an existing folder, or a new one in an existing folder",
                dir.display(),
                parent.display()
            ));
        }
        // So is the download folder set with --download-dir or download_dir (the default one
        // is made whole: ~/Downloads may not exist yet on a fresh account).
        if let (true, false, Some(parent)) = (configured, dir.exists(), missing_parent) {
            return Err(format!(
                "your download folder {} does not exist, nor {} (--download-dir, or download_dir in the config file): check the spelling, or create it — /accept {number} DIR puts it elsewhere",
                dir.display(),
                parent.display()
            ));
        }
        std::fs::create_dir_all(&dir).map_err(|e| {
            format!(
                "cannot create {}: {} — /accept {number} DIR puts it elsewhere",
                dir.display(),
                manifest::reason(&e)
            )
        })?;
        // Checked here, while the offer can still be taken elsewhere: a folder we may not
        // write in would fail the transfer at its first file.
        let writable = nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK;
        if let Err(e) = nix::unistd::access(&dir, writable) {
            return Err(format!(
                "cannot write in {}: {} — /accept {number} DIR puts it elsewhere",
                dir.display(),
                manifest::reason(&std::io::Error::from(e))
            ));
        }
        let t = &self.transfers[&key];
        let size = t.record.offer.size;
        if let Some(free) = free_space(&dir) {
            // What transfers accepted already will still write on the same disk is not free
            // for this one.
            let here = device_of(&dir);
            let promised: u64 = self
                .transfers
                .values()
                .filter(|o| o.key() != key && !o.record.outgoing)
                .filter(|o| o.record.state == State::Accepted)
                .filter(|o| here.is_some() && o.folder().and_then(device_of) == here)
                .map(|o| o.record.offer.size.saturating_sub(o.record.bytes_done))
                .sum();
            if size > free.saturating_sub(promised) {
                let of_it = match promised {
                    0 => String::new(),
                    p => format!(
                        " (of which {} is for transfers accepted already)",
                        human_size(p.min(free))
                    ),
                };
                return Err(format!(
                    "not enough space for {} in {}: it needs {}, {} free{of_it} — free some, or /accept {number} DIR elsewhere",
                    t.shown_name(),
                    dir.display(),
                    human_size(size),
                    human_size(free)
                ));
            }
        }
        Ok(dir)
    }

    /// The `/files` table: every transfer of this run, and unfinished ones from before.
    pub fn list(&self, ep: &Endpoint, now: Instant) -> Vec<String> {
        let shown: Vec<&Transfer> = self
            .transfers
            .values()
            .filter(|t| {
                let ended_now = t.record.finished_ms.is_some_and(|f| f >= self.started_ms);
                t.number > 0 && (t.this_run || ended_now || !t.record.state.is_finished())
            })
            .collect();
        if shown.is_empty() {
            return vec!["no file transfers yet — /send NICK PATH offers one".into()];
        }
        let mut rows: Vec<Vec<String>> = vec![[
            "#", "dir", "peer", "name", "size", "state", "progress", "rate", "ETA",
        ]
        .map(String::from)
        .to_vec()];
        let mut sorted = shown;
        sorted.sort_by_key(|t| t.number);
        for t in sorted {
            let (size, done, pct) = (t.record.offer.size, t.bytes_done(), t.percent_done());
            let rate = t.rate.per_sec().filter(|_| {
                t.rate
                    .samples
                    .back()
                    .is_some_and(|(at, _)| now.saturating_duration_since(*at) < RATE_WINDOW)
            });
            // Rate and time left only while data moves.
            let moving = t.record.state == State::Accepted
                && (t.serving > 0 || (t.fetching.is_some() && t.failing_since.is_none()));
            // Every byte sent and acknowledged by the receiver's TCP, its Done not yet here:
            // it is still writing and checking what its kernel took (a folder of small files
            // fits in the socket buffers), unless it is gone.
            let all_sent = t.record.outgoing
                && t.started.is_some()
                && t.record.bytes_done >= t.record.offer.size
                && ep
                    .peer(t.peer())
                    .is_some_and(|p| p.state == crate::proto::PeerState::Online);
            let state = match t.record.state {
                State::Offered if t.record.outgoing && t.offer.is_none() => "reading",
                State::Offered if t.record.outgoing => "offered",
                State::Offered => "waiting for you",
                State::Accepted if t.record.outgoing && t.serving > 0 => "sending",
                State::Accepted if t.record.outgoing && t.paused_by_peer => "paused by receiver",
                State::Accepted if all_sent => "sent, receiver checking",
                State::Accepted if t.record.outgoing && t.started.is_some() => "interrupted",
                State::Accepted if t.record.outgoing => "accepted",
                // Connecting again after a failure: not receiving until it connects.
                State::Accepted if t.told_blocked => "TCP blocked, trying again",
                State::Accepted if t.failing_since.is_some() && t.told_interrupted => {
                    "interrupted, trying again"
                }
                State::Accepted if t.failing_since.is_some() => "connecting again",
                State::Accepted if t.fetching.is_some() => "receiving",
                State::Accepted if t.queued => "waiting its turn",
                State::Accepted if t.paused => "paused: disk full",
                State::Accepted => "interrupted",
                State::Done => "done",
                State::Declined => "declined",
                State::Cancelled => "cancelled",
                State::Failed => "failed",
            };
            // From an earlier run, and nothing has happened to it in this one.
            let ended_now = t.record.finished_ms.is_some_and(|f| f >= self.started_ms);
            let earlier = if t.this_run || t.started.is_some() || ended_now {
                ""
            } else {
                " (earlier run)"
            };
            rows.push(vec![
                t.number.to_string(),
                t.toward().into(),
                Self::nick(ep, t),
                shortened(&t.shown_name(), NAME_COLUMN),
                t.shown_size(),
                format!("{state}{earlier}"),
                format!("{pct}%"),
                match (moving, rate) {
                    (true, Some(r)) => format!("{}/s", human_size(r as u64)),
                    _ => "-".into(),
                },
                match (moving, rate) {
                    (true, Some(r)) if r > 0.0 => seconds(Duration::from_secs_f64(
                        size.saturating_sub(done) as f64 / r,
                    )),
                    _ => "-".into(),
                },
            ]);
        }
        // Rate and time left are columns only while some transfer moves, so that a list of
        // ended ones fits 80 columns (a folder's size cell, `900.0 KB, 4 files`, is wide).
        if rows[1..].iter().all(|r| r[7..].iter().all(|c| c == "-")) {
            for r in &mut rows {
                r.truncate(7);
            }
        }
        let widths: Vec<usize> = (0..rows[0].len())
            .map(|c| {
                rows.iter()
                    .map(|r| unicode_width::UnicodeWidthStr::width(r[c].as_str()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        rows.iter()
            .map(|r| {
                r.iter()
                    .zip(&widths)
                    .map(|(cell, w)| {
                        let pad = w - unicode_width::UnicodeWidthStr::width(cell.as_str());
                        format!("{cell}{}", " ".repeat(pad))
                    })
                    .collect::<Vec<_>>()
                    .join("  ")
                    .trim_end()
                    .to_owned()
            })
            .collect()
    }
}

/// `/accept WORD` without a number, where WORD is one word that names nothing here (`/accept
/// abc`, `/accept 3x`): most likely a mistyped number, not a new folder `abc` in whatever
/// directory tailchat was started in. A path (`./abc`, `~/in`, `/mnt/usb`) or an existing
/// folder is taken as the folder.
fn typo_for_a_number(word: &str) -> Result<(), String> {
    let path_like = word.contains('/') || word.starts_with('~') || word.starts_with('.');
    if path_like || Path::new(word).exists() {
        return Ok(());
    }
    Err(format!(
        "no file transfer '{word}': /accept takes a transfer's number (/files lists them) — to accept into a new folder {word}, write /accept ./{word}"
    ))
}

/// The widest a name is shown in the `/files` table, in columns: a long one (a peer's choice)
/// would widen every row. The lines of each transfer give it whole.
const NAME_COLUMN: usize = 40;

/// `name` in at most `max` columns: whole if it fits, else its start and its end (where the
/// extension is) around `…`.
fn shortened(name: &str, max: usize) -> String {
    use unicode_width::UnicodeWidthChar;
    if unicode_width::UnicodeWidthStr::width(name) <= max {
        return name.to_owned();
    }
    let take = |chars: &mut dyn Iterator<Item = char>, room: usize| {
        let mut used = 0;
        let mut out = Vec::new();
        for c in chars {
            let w = c.width().unwrap_or(0);
            if used + w > room {
                break;
            }
            used += w;
            out.push(c);
        }
        out
    };
    let tail_room = (max - 1) / 3;
    let head: String = take(&mut name.chars(), max - 1 - tail_room)
        .into_iter()
        .collect();
    let mut tail = take(&mut name.chars().rev(), tail_room);
    tail.reverse();
    format!("{head}…{}", tail.into_iter().collect::<String>())
}

/// `text` with each `\x` as `x` (a backslash as the last character stays), as a shell reads
/// an unquoted word.
fn shell_unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next().unwrap_or('\\')),
            c => out.push(c),
        }
    }
    out
}

/// The rule of [`Files::room_grew`]: free `(bytes, inodes)` now and when it paused, and the
/// `(bytes, files)` still to come.
fn may_go_on(now: (u64, u64), at_pause: Option<(u64, u64)>, need: (u64, u64)) -> bool {
    let grew = at_pause.is_none_or(|(b, i)| now.0 > b || now.1 > i);
    grew && now.0 >= need.0 && now.1 >= need.1
}

/// Bytes free for us in the file system of `dir`.
fn free_space(dir: &Path) -> Option<u64> {
    disk_room(dir).map(|(bytes, _)| bytes)
}

/// Bytes and inodes free for us in the file system of `dir` (inodes: `u64::MAX` where the
/// file system counts none).
pub(super) fn disk_room(dir: &Path) -> Option<(u64, u64)> {
    let s = nix::sys::statvfs::statvfs(dir).ok()?;
    let bytes = s.blocks_available().saturating_mul(s.fragment_size());
    let inodes = if s.files() == 0 {
        u64::MAX
    } else {
        s.files_available()
    };
    Some((bytes, inodes))
}

/// The device (file system) `path` is on: its own, or its nearest existing folder's.
fn device_of(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    path.ancestors()
        .find_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.dev())
}

/// A path as typed, with a leading `~` for the home directory.
fn expand_home(p: &str) -> PathBuf {
    crate::app::settings::expand_home(Path::new(p))
}

/// A path as typed after `/send NICK` or `/accept N`: in quotes, as a shell wants one with
/// spaces (the quotes are not part of it, unless a file is really named so), or with its
/// spaces escaped (`my\ report.pdf`), as a shell also takes it; `~` is the home folder.
fn typed_path(path: &str) -> PathBuf {
    let literal = std::fs::metadata(expand_home(path)).is_ok();
    let unquoted = ['"', '\'']
        .iter()
        .find_map(|q| path.strip_prefix(*q)?.strip_suffix(*q))
        .filter(|inner| !inner.is_empty() && !literal);
    let unescaped = path
        .contains('\\')
        .then(|| shell_unescape(path))
        .filter(|p| !literal && *p != path);
    expand_home(unescaped.as_deref().or(unquoted).unwrap_or(path))
}

#[cfg(test)]
mod tests {
    use super::{may_go_on, shortened, typed_path, typo_for_a_number};

    /// `/accept N DIR` reads its folder as `/send` reads its path: quotes and `\ ` as a
    /// shell does, `~` as the home folder.
    #[test]
    fn a_typed_folder_is_read_as_a_shell_would() {
        let home = std::path::PathBuf::from(std::env::var_os("HOME").expect("HOME in tests"));
        let want = home.join("my box");
        assert_eq!(typed_path("\"~/my box\""), want);
        assert_eq!(typed_path("'~/my box'"), want);
        assert_eq!(typed_path("~/my\\ box"), want);
        assert_eq!(
            typed_path("/tmp/plain"),
            std::path::PathBuf::from("/tmp/plain")
        );
    }

    #[test]
    fn a_word_that_names_nothing_is_taken_for_a_mistyped_number() {
        let err = typo_for_a_number("abc").unwrap_err();
        assert!(err.starts_with("no file transfer 'abc': "), "{err}");
        assert!(err.ends_with("write /accept ./abc"), "{err}");
        assert!(typo_for_a_number("3x").is_err());
        for path in ["./abc", "~/in", "/mnt/usb stick", "a/b", "..", "/"] {
            assert_eq!(typo_for_a_number(path), Ok(()), "{path}");
        }
        let dir = tempfile::tempdir().unwrap();
        let here = dir.path().join("existing");
        std::fs::create_dir(&here).unwrap();
        // An existing folder named by one word: relative to where tailchat runs, so tested
        // by its whole path (the test does not change the working directory).
        assert_eq!(typo_for_a_number(here.to_str().unwrap()), Ok(()));
    }

    #[test]
    fn long_names_are_shortened_in_the_table_keeping_their_end() {
        assert_eq!(shortened("report.pdf", 40), "report.pdf");
        let long = format!("{}.tar.gz", "a".repeat(60));
        let short = shortened(&long, 40);
        assert_eq!(
            unicode_width::UnicodeWidthStr::width(short.as_str()),
            40,
            "{short}"
        );
        assert!(
            short.starts_with("aaaa") && short.ends_with("a.tar.gz"),
            "{short}"
        );
        assert!(short.contains('…'), "{short}");
        // Wide characters count two columns; never more than the room.
        let wide = shortened(&"界".repeat(30), 40);
        assert!(
            unicode_width::UnicodeWidthStr::width(wide.as_str()) <= 40,
            "{wide}"
        );
    }

    #[test]
    fn a_paused_transfer_goes_on_by_itself_only_when_room_grew_enough() {
        let paused = Some((1_000, 0)); // 1 kB and no inode free when it paused
                                       // Freed bytes but no inode (a folder out of inodes): not yet.
        assert!(!may_go_on((5_000_000, 0), paused, (2_000_000, 3)));
        // Inodes back, bytes enough: yes.
        assert!(may_go_on((5_000_000, 10), paused, (2_000_000, 3)));
        // Room enough but nothing changed since the pause (a quota statvfs does not show):
        // not by itself, or it would fail again every few seconds.
        assert!(!may_go_on((1_000, 0), paused, (0, 0)));
        // More room, but not enough for the rest.
        assert!(!may_go_on((1_500_000, 10), paused, (2_000_000, 3)));
        // Not known when it paused: as soon as it fits.
        assert!(may_go_on((2_000_000, 3), None, (2_000_000, 3)));
    }
}
