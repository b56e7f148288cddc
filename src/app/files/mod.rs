//! Sending files: what `/send`, `/accept`, `/decline`, `/cancel` and `/files` do, what each
//! control message from a peer does, and what the data threads' reports become on screen and
//! on disk. The mechanics (manifests, safe names, the TCP data path, records) are in
//! [`crate::transfer`]; the chat ([`super::chat`]) only dispatches to [`Files`].
//!
//! The rules: an offer to a peer not heard in this run waits, like a message, and goes out
//! when it joins (every unfinished offer is offered again whenever the peer joins, so either
//! side may restart); nothing is written on the receiver's disk before the user accepts (or
//! `accept_from` names the peer); an accepted transfer resumes by itself after a cut link or
//! a restart of either side, from the bytes already on disk; each transfer ends with one
//! line, on both sides.
//!
//! # Layout
//! - this file: the state — [`Files`], each transfer as this run knows it and its rate — and
//!   the small steps the other parts share.
//! - `commands`: what `/send`, `/accept`, `/decline`, `/cancel` and `/files` do.
//! - `from_peer`: what a peer's coming back and its control messages do.
//! - `data_threads`: the threads that read and fetch files, and what their reports do.
//! - `ending`: how a transfer ends, on either side.

mod commands;
mod data_threads;
mod ending;
mod from_peer;

use crate::proto::{AppDataError, Endpoint, PeerId};
use crate::transfer::control::{self, Control, Offer};
use crate::transfer::manifest::{self, Manifest};
use crate::transfer::record::{Record, State, Store};
use crate::transfer::serve::{Server, Serving};
use crate::transfer::{count, human_size, DataEvent, TransferKey};
use crate::ui::render::Output;
use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// The rate shown is measured over this much of the recent past.
const RATE_WINDOW: Duration = Duration::from_secs(3);
/// Seconds of samples before a rate (and a time left) is given: the first moments of a
/// connection (socket buffers filling at once, a receiver reading its part back) say little
/// about the link.
const RATE_SETTLED: f64 = 1.0;

/// What the file-transfer part of the chat needs at start.
#[derive(Clone, Debug, Default)]
pub struct FilesSetup {
    /// The data directory, where unfinished transfers are kept (`None`: storage is off, and
    /// transfers last one run).
    pub data_dir: Option<PathBuf>,
    /// Where received files go, unless `/accept` names a folder.
    pub download_dir: Option<PathBuf>,
    /// Nicks whose offers are accepted without asking.
    pub accept_from: Vec<String>,
    /// The address the chat listens on (the data listener takes the same one).
    pub bind: Option<IpAddr>,
    /// The chat's UDP port: the data listener takes the same number when it is free.
    pub port: u16,
}

/// An `accept_from` entry: a nick, or `NICK#ID` naming one identity by 8 to 16 hex digits of
/// its id. One with fewer names none (an impostor could make a key whose id starts so), so the
/// config file is refused rather than the entry guessed at.
///
/// # Errors
/// What is wrong with `entry`, for the config file's error.
pub fn check_accept_from(entry: &str) -> Result<(), String> {
    if entry.contains('#') && !from_peer::pinned(entry) {
        return Err(format!(
            "'{}' names no one — after the #, give the peer's whole id, {} to 16 hex digits (/whois shows it)",
            crate::ui::render::sanitize(entry),
            from_peer::PIN_DIGITS
        ));
    }
    let nick = crate::ui::command::without_id(entry);
    if !crate::ui::command::is_valid_nick(nick) {
        return Err(format!(
            "'{}' is no peer's nick: {}",
            crate::ui::render::sanitize(nick),
            crate::ui::command::NICK_RULE
        ));
    }
    Ok(())
}

/// The default download folder: the user's download directory (XDG: `$XDG_DOWNLOAD_DIR`
/// when it is set to an absolute path, else the one `~/.config/user-dirs.dirs` names), in a
/// `tailchat` folder; else `~/Downloads/tailchat`.
pub fn default_download_dir() -> Option<PathBuf> {
    let from_env = std::env::var_os("XDG_DOWNLOAD_DIR").map(PathBuf::from);
    if let Some(dir) = xdg_download_dir(from_env) {
        return Some(dir.join("tailchat"));
    }
    directories::UserDirs::new().map(|u| {
        u.download_dir()
            .map_or_else(|| u.home_dir().join("Downloads"), Path::to_path_buf)
            .join("tailchat")
    })
}

/// `$XDG_DOWNLOAD_DIR` as the download directory, if it is an absolute path (XDG ignores a
/// relative one).
fn xdg_download_dir(var: Option<PathBuf>) -> Option<PathBuf> {
    var.filter(|p| p.is_absolute())
}

/// Progress measured over the recent past.
#[derive(Debug, Default)]
struct Rate {
    /// (when, bytes done) samples within [`RATE_WINDOW`].
    samples: VecDeque<(Instant, u64)>,
}

impl Rate {
    fn note(&mut self, now: Instant, done: u64) {
        self.samples.push_back((now, done));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > RATE_WINDOW)
        {
            self.samples.pop_front();
        }
    }

    /// A new connection starts at `done`: the rate is measured from here, not over the
    /// outage before it (which made the time left read as an hour for seconds of work).
    fn restart(&mut self, now: Instant, done: u64) {
        self.samples.clear();
        self.note(now, done);
    }

    /// Bytes per second, once the samples span [`RATE_SETTLED`].
    fn per_sec(&self) -> Option<f64> {
        let ((t0, b0), (t1, b1)) = (self.samples.front()?, self.samples.back()?);
        let dt = t1.saturating_duration_since(*t0).as_secs_f64();
        (dt >= RATE_SETTLED).then(|| b1.saturating_sub(*b0) as f64 / dt)
    }
}

/// One transfer, as this run knows it.
#[derive(Debug)]
struct Transfer {
    /// The number the user types (`/accept 3`), stable for the run.
    number: u32,
    /// What is kept on disk (for an incoming offer not accepted, only in memory).
    record: Record,
    /// The offer (outgoing: once prepared).
    offer: Option<Offer>,
    /// The files (outgoing: once prepared; incoming: once fetched).
    manifest: Option<Manifest>,
    /// Started, offered or received in this run (else an unfinished one from before).
    this_run: bool,
    /// Incoming: a fetch attempt is running; set its flag to stop it.
    fetching: Option<Arc<AtomicBool>>,
    /// When bytes first moved in this run, and from where in the offer.
    started: Option<(Instant, u64)>,
    /// How long before `started` its first bytes moved, in an earlier run (zero if in this).
    earlier: Duration,
    /// How long it took, fixed when it ended ([`Transfer::stop_clock`]): its end line and its
    /// JSON event's `took_ms` say the same.
    took_at_end: Option<Duration>,
    /// Outgoing: bytes sent in this run.
    sent_this_run: u64,
    /// When a progress line was last shown for it (interactive only).
    progress_shown: Option<Instant>,
    /// Where the last data connection started in the offer, and what it sent (outgoing) or
    /// brought (incoming).
    last_connection: Option<(u64, u64)>,
    /// Outgoing: the furthest any of this run's data connections served, in bytes of the
    /// offer (a stalled connection may end after the one that finished).
    served_to: u64,
    /// Outgoing: bytes sent again in this run, before where earlier connections had got to
    /// (what the receiver did not keep: unsynced bytes of a killed receiver, or a folder's
    /// files moved or deleted), said with the end line.
    resent: u64,
    /// Outgoing: data connections being served now.
    serving: u32,
    /// Outgoing: the receiver's Done came while a connection was still being served (its
    /// last bytes read before our thread reported): the end line waits for that report.
    done_waiting: bool,
    /// Recent progress.
    rate: Rate,
    /// Failed attempts in a row (for the retry delay).
    retries: u32,
    /// The user was told the link broke (once, until it works again).
    told_interrupted: bool,
    /// Incoming: when the data connection first failed to open in the current run of
    /// failures (to tell a blocked TCP port from a sender that is gone).
    failing_since: Option<Instant>,
    /// Incoming: the user was told TCP may be blocked (once per run of failures).
    told_blocked: bool,
    /// Incoming: files received already, then moved or deleted, fetched again in this run
    /// (said with the end line: a resume's "the remaining" alone would not count them).
    again: u32,
    /// Incoming: "no such offer" answers in a row (see `UNKNOWN_TRIES`).
    unknowns: u32,
    /// A broken connection is to be told in a moment ([`DataEvent::Interrupted`]).
    interrupt_pending: bool,
    /// Outgoing: the receiver paused it ([`Control::Pause`]) until data moves again.
    paused_by_peer: bool,
    /// Incoming, paused: the free bytes and inodes of its folder when it paused.
    paused_room: Option<(u64, u64)>,
    /// Saving its record failed, and the user was told (once, until a save works again).
    told_unsaved: bool,
    /// A retry is scheduled.
    retry_pending: bool,
    /// Incoming: stopped because our disk is full, parts kept; no attempt is made until the
    /// user accepts it again (or the next run).
    paused: bool,
    /// Incoming: accepted, waiting for a fetch to end before its own starts
    /// ([`data_threads::FETCHES_PER_PEER`]).
    queued: bool,
}

impl Transfer {
    /// Whether a data connection of it runs (fetching, or serving), its end not handled yet.
    fn moving_data(&self) -> bool {
        self.fetching.is_some() || self.serving > 0
    }

    fn key(&self) -> TransferKey {
        self.record.key()
    }

    /// Bytes start to move in this run, from `from` in the offer: its clock starts, or, when
    /// its first bytes moved in an earlier run, goes on from then. True when the record got
    /// its first byte's time and wants saving.
    fn begin(&mut self, now: Instant, from: u64) -> bool {
        if self.started.is_some() {
            return false;
        }
        self.started = Some((now, from));
        let ms = now_ms();
        match self.record.first_byte_ms {
            Some(first) => {
                let before = u64::try_from(ms.saturating_sub(first)).unwrap_or(0);
                self.earlier = Duration::from_millis(before);
                false
            }
            None => {
                self.record.first_byte_ms = Some(ms);
                true
            }
        }
    }

    /// How long since its first bytes moved, in this run or an earlier one (until it ended).
    fn took(&self) -> Option<Duration> {
        self.took_at_end.or_else(|| {
            self.started
                .map(|(at, _)| self.earlier.saturating_add(at.elapsed()))
        })
    }

    /// It ended: how long it took, fixed from now on.
    fn stop_clock(&mut self) -> Option<Duration> {
        self.took_at_end = self.took();
        self.took_at_end
    }

    /// What an end line says of a resume, the same on both sides: where the last connection
    /// started and what it `moved` ("sent", "received") from there.
    fn resumed(&self, moved: &str) -> String {
        let resumed = match self.last_connection {
            Some((from, bytes)) if from > 0 => format!(
                "; resumed at {} and {moved} the remaining {}",
                human_size(from),
                human_size(bytes)
            ),
            _ => String::new(),
        };
        if self.record.outgoing && self.resent > 0 {
            return format!(
                "{resumed}{}{} again that {} did not keep",
                if resumed.is_empty() { "; " } else { ", and " },
                human_size(self.resent),
                crate::ui::render::display_nick(&self.record.peer_nick)
            );
        }
        match self.again {
            0 => resumed,
            n => format!(
                "{resumed}{}{n} file{} again (moved or deleted since {} received)",
                if resumed.is_empty() { "; " } else { ", and " },
                if n == 1 { "" } else { "s" },
                if n == 1 { "it was" } else { "they were" }
            ),
        }
    }

    fn peer(&self) -> PeerId {
        PeerId(self.record.peer)
    }

    /// Bytes of the offer the receiver has (all of it once done).
    fn bytes_done(&self) -> u64 {
        if self.record.state == State::Done {
            self.record.offer.size
        } else {
            self.record.bytes_done
        }
    }

    /// Incoming: paused for lack of space, noting its folder's room now (it goes on by itself
    /// only once there is more, see `Files::room_grew`).
    fn pause_for_room(&mut self) {
        self.paused = true;
        self.paused_room = self.folder().and_then(commands::disk_room);
    }

    /// Incoming, paused for lack of space: what tells the sender so.
    fn pause(&self) -> Control {
        Control::Pause {
            id: self.record.id,
            at: self.record.bytes_done,
            reason: from_peer::PAUSED_FULL.into(),
        }
    }

    /// Incoming: a data connection was made, so a run of failures to connect is over.
    fn connected(&mut self) {
        self.failing_since = None;
        self.told_blocked = false;
    }

    /// Incoming: bytes of the offer not yet on our disk.
    fn left_to_fetch(&self) -> u64 {
        self.record
            .offer
            .size
            .saturating_sub(ending::bytes_on_disk(self))
    }

    /// Incoming, accepted: the folder its files go in.
    fn folder(&self) -> Option<&Path> {
        let dest = self.record.dest.as_deref()?;
        Some(if self.record.offer.folder {
            dest
        } else {
            dest.parent().unwrap_or(dest)
        })
    }

    /// For a folder whose file list is known: which of its files the transfer is at (from
    /// 1), out of how many, and that file's path in the folder as it is shown (for an
    /// incoming one, as it will be saved).
    fn current_file(&self) -> Option<(usize, usize, String)> {
        let m = self
            .manifest
            .as_ref()
            .filter(|_| self.record.offer.folder)?;
        let done = self.bytes_done();
        let mut start = 0u64;
        let (i, e) = m.entries.iter().enumerate().find(|(_, e)| {
            start = start.saturating_add(e.size);
            start > done
        })?;
        let path = if self.record.outgoing {
            e.path.clone()
        } else {
            crate::transfer::names::sanitize_path(&e.path)
                .map_or_else(|| format!("file-{i}"), |c| c.join("/"))
        };
        Some((i + 1, m.entries.len(), crate::ui::render::sanitize(&path)))
    }

    /// How much of the offer the receiver has, in percent (an empty offer: 100).
    /// 100 only once it is done: a sender whose last bytes the receiver's TCP took (all
    /// acknowledged) but whose receiver has not said it has them all (it could not write them,
    /// or stopped before the check) shows 99.
    fn percent_done(&self) -> u64 {
        let size = self.record.offer.size;
        let pct = self
            .bytes_done()
            .saturating_mul(100)
            .checked_div(size)
            // Nothing to move: all there once done (until then nothing is).
            .unwrap_or(if self.record.state == State::Done {
                100
            } else {
                0
            });
        if self.record.state == State::Done {
            pct
        } else {
            pct.min(99)
        }
    }

    /// "to" the peer (we send) or "from" it, for the lines that name both.
    fn toward(&self) -> &'static str {
        if self.record.outgoing {
            "to"
        } else {
            "from"
        }
    }

    /// The end of a transfer that finished just before the program stopped, for the next
    /// start (the line it got then may never have reached the screen).
    /// Its [`Output::File`] fields, with `peer` as the peer's name.
    fn file_event(
        &self,
        peer: String,
        event: &'static str,
        text: String,
        error: bool,
    ) -> crate::ui::render::FileEvent {
        let r = &self.record;
        let path = if r.outgoing { &r.source } else { &r.dest };
        crate::ui::render::FileEvent {
            event,
            number: self.number,
            direction: if r.outgoing { "out" } else { "in" },
            peer,
            peer_id: self.peer().to_string(),
            name: self.shown_name(),
            size: r.offer.size,
            files: r.offer.files,
            took_ms: self
                .took()
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            resumed_from: self
                .last_connection
                .map(|(from, _)| from)
                .filter(|&f| f > 0),
            path: path.as_ref().map(|p| p.display().to_string()),
            text,
            error,
        }
    }

    /// The event a finished transfer's end line is.
    fn end_event(&self) -> &'static str {
        match (self.record.state, self.record.outgoing) {
            (State::Done, false) => "received",
            (State::Done, true) => "sent",
            (State::Declined, _) => "declined",
            (State::Cancelled, _) => "cancelled",
            _ => "failed",
        }
    }

    fn told_late(&self) -> String {
        let r = &self.record;
        let (name, nick) = (
            self.shown_name(),
            crate::ui::render::display_nick(&r.peer_nick),
        );
        let what = match (r.state, r.outgoing) {
            (State::Done, false) => {
                let dest = r.dest.as_deref().map(Path::display);
                format!(
                    "received {name} from {nick}{}",
                    dest.map(|d| format!(" → {d}")).unwrap_or_default()
                )
            }
            (State::Done, true) => format!("sent {name} to {nick}"),
            (State::Declined, true) => format!("{nick} declined {name}"),
            (State::Declined, false) => format!("declined {name} from {nick}"),
            (state, _) => {
                let dir = self.toward();
                let why = r.reason.as_deref().map(crate::ui::render::sanitize);
                match (state, why) {
                    (State::Failed, Some(why)) => why,
                    // The peer's own line ("bob cancelled report.pdf").
                    (_, Some(why)) if why.contains(&name) => why,
                    (_, Some(why)) if !why.is_empty() => {
                        format!("cancelled {name} ({dir} {nick}): {why}")
                    }
                    _ => format!("cancelled {name} ({dir} {nick})"),
                }
            }
        };
        format!("before tailchat last stopped: {what}")
    }

    /// The name as shown: a folder with a trailing `/`. A peer's name is shown as it will be
    /// saved (made safe for our disk), so the offer line and the file on disk agree.
    fn shown_name(&self) -> String {
        // As the receiver shows it (and names the file it lands as), on both sides: a name
        // with a control character reads the same to sender and receiver.
        let raw = &self.record.offer.name;
        let name = crate::ui::render::sanitize(&crate::transfer::names::sanitize_name(raw));
        if self.record.offer.folder {
            format!("{name}/")
        } else {
            name
        }
    }

    /// Size as shown: `4.2 MB`, or `12.0 MB in 200 files`.
    fn shown_size(&self) -> String {
        let o = &self.record.offer;
        if o.folder {
            format!(
                "{}, {}",
                human_size(o.size),
                count(u64::from(o.files), "file", "files")
            )
        } else {
            human_size(o.size)
        }
    }
}

/// The file-transfer state of a running chat.
pub struct Files {
    /// What it was started with.
    setup: FilesSetup,
    /// Our identity (the offerer of our transfers).
    me: PeerId,
    /// Where transfers are kept, if storage is on.
    store: Option<Store>,
    /// The data listener, started with the first outgoing transfer.
    server: Option<Server>,
    /// Where the data threads report; cloned into each.
    events_tx: UnboundedSender<DataEvent>,
    /// Their reports, until the event loop takes the receiver.
    events_rx: Option<UnboundedReceiver<DataEvent>>,
    /// Every transfer known, by key.
    transfers: BTreeMap<TransferKey, Transfer>,
    /// The next number to give.
    next_number: u32,
    /// Lines for the screen, taken by the chat.
    lines: Vec<Output>,
    /// Peers offered a file or accepted from since the last [`Files::take_kept`]: the
    /// journal keeps how to reach them, so the transfer finds them after a restart.
    kept: Vec<PeerId>,
    /// Transfers finished (or found finished but untold at start) whose end line is among
    /// [`Self::lines`]: marked [`Files::told`] once the screen has written them.
    untold: Vec<TransferKey>,
    /// A script or a program reads the output: no progress lines, only the end lines.
    quiet: bool,
    /// When this run started (ms since the Unix epoch): a transfer from an earlier run that
    /// ends in this one is listed by `/files` with this run's.
    started_ms: i64,
    /// Peers already said to have sent a malformed file-transfer message (once per run).
    told_malformed: std::collections::HashSet<PeerId>,
    /// Peers whose offers are being refused for [`from_peer::OPEN_FROM_PEER`] open ones
    /// (said once, until one is taken again).
    told_too_many: std::collections::HashSet<PeerId>,
    /// Offers of an earlier run are being put back: the listener waits until all are in.
    restoring: bool,
}

impl Files {
    /// The transfers of `setup`'s data directory, unfinished ones offered and served again
    /// (an outgoing one is served as soon as this returns; the rest waits for the peer).
    pub fn new(setup: FilesSetup, me: PeerId, quiet: bool) -> Files {
        let (events_tx, events_rx) = unbounded_channel();
        let store = setup.data_dir.as_deref().map(Store::new);
        let mut files = Files {
            setup,
            me,
            store,
            server: None,
            events_tx,
            events_rx: Some(events_rx),
            transfers: BTreeMap::new(),
            next_number: 1,
            lines: Vec::new(),
            kept: Vec::new(),
            untold: Vec::new(),
            quiet,
            started_ms: now_ms(),
            told_malformed: std::collections::HashSet::new(),
            told_too_many: std::collections::HashSet::new(),
            restoring: false,
        };
        files.restoring = true;
        files.restore();
        files.restoring = false;
        let events = files.events_tx.clone();
        if let Some(Err(e)) = files.server.as_mut().map(|s| s.serve(events)) {
            files.error(format!(
                "cannot serve file transfers: {}",
                manifest::reason(&e)
            ));
        }
        files
    }

    /// The data threads' reports, for the event loop (once).
    pub fn take_events(&mut self) -> UnboundedReceiver<DataEvent> {
        self.events_rx
            .take()
            .unwrap_or_else(|| unbounded_channel().1)
    }

    /// Lines to show since the last call.
    pub fn take_lines(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.lines)
    }

    /// Peers to keep in the journal since the last call (see `kept`).
    pub fn take_kept(&mut self) -> Vec<PeerId> {
        std::mem::take(&mut self.kept)
    }

    /// For a script's end: how many files (or folders) it offered in this run have not
    /// arrived yet (being read, waiting for an answer, or accepted and not done), and whether
    /// one of them is moving bytes now.
    pub fn script_offers(&self) -> (usize, bool) {
        let open = || {
            self.transfers
                .values()
                .filter(|t| t.this_run && t.record.outgoing && !t.record.state.is_finished())
        };
        (open().count(), open().any(|t| t.serving > 0))
    }

    /// The transfers offered to us that have not ended (waiting for an answer, or accepted).
    fn open_incoming(&self) -> impl Iterator<Item = &Transfer> {
        self.transfers
            .values()
            .filter(|t| !t.record.outgoing && !t.record.state.is_finished())
    }

    /// At quit, after [`Files::left_unfinished`] has said where each transfer stands: forgets
    /// the offers still being read (their records are only for a crash to be told at the next
    /// start); and without storage, where nothing resumes, removes the empty `.part`s that
    /// accepted transfers not started yet had taken their names with. An ephemeral run's
    /// unfinished transfers end here (`ephemeral`): its peers end them when it leaves, so a
    /// later run from the same data directory must not offer or fetch them again.
    pub fn quitting(&mut self, ephemeral: bool) {
        if ephemeral {
            self.end_for_good_at_quit();
        }
        let Some(store) = &self.store else {
            for t in self.transfers.values() {
                let waiting = t.record.state == State::Accepted && t.fetching.is_none();
                if let Some(part) = ending::part_path(t).filter(|_| waiting) {
                    if std::fs::symlink_metadata(&part).is_ok_and(|m| m.is_file() && m.len() == 0) {
                        let _ = std::fs::remove_file(part);
                    }
                }
            }
            return;
        };
        for t in self.transfers.values().filter(|t| unread(&t.record)) {
            store.remove(t.key());
        }
        // Their progress as it is now (records are saved at each file, not at each byte), so
        // the next run's /files and quit lines start from it.
        let unfinished: Vec<TransferKey> = self
            .transfers
            .values()
            .filter(|t| !t.record.state.is_finished() && !unread(&t.record))
            .map(Transfer::key)
            .collect();
        for key in unfinished {
            self.save(key);
        }
    }

    /// [`Files::quitting`] of an ephemeral run: each unfinished transfer stops, an incoming one
    /// leaves no `.part` (what [`Files::left_unfinished`] has just said), and its record is
    /// kept as failed and already told. No Cancel goes out: the peers end an ephemeral run's
    /// transfers on its Leave.
    fn end_for_good_at_quit(&mut self) {
        let keys: Vec<TransferKey> = self
            .transfers
            .values()
            .filter(|t| !t.record.state.is_finished())
            .map(Transfer::key)
            .collect();
        for key in keys {
            self.stop(key);
            let Some(t) = self.transfers.get_mut(&key) else {
                continue;
            };
            if !t.record.outgoing {
                ending::remove_parts(t);
            }
            let pct = t.percent_done();
            t.record.state = State::Failed;
            t.record.reason = Some(format!("stopped at {pct}% when this ephemeral run quit"));
            t.record.finished_ms = Some(now_ms());
            t.record.untold = false;
            self.save(key);
        }
    }

    /// Quitting: every data connection is stopped, so that what the quit lines say is where
    /// the transfers stopped, not where they were when the user quit while bytes kept moving
    /// until the program exited. [`Self::data_running`] says when all have ended.
    pub fn stop_data_for_quit(&mut self) {
        let keys: Vec<TransferKey> = self
            .transfers
            .values()
            .filter(|t| t.moving_data())
            .map(Transfer::key)
            .collect();
        for key in keys {
            self.stop(key);
        }
    }

    /// Whether a data connection still runs (its end not handled yet).
    #[must_use]
    pub fn data_running(&self) -> bool {
        self.transfers.values().any(Transfer::moving_data)
    }

    /// Before the quit lines: what each unfinished incoming transfer has on disk (where it
    /// will resume), rather than the last progress report.
    pub fn settle_for_quit(&mut self) {
        for t in self.transfers.values_mut() {
            if !t.record.outgoing && t.record.state == State::Accepted && t.manifest.is_some() {
                t.record.bytes_done = ending::bytes_on_disk(t);
            }
        }
    }

    /// What stays unfinished when the program stops, one line each, for the user to know it
    /// was not forgotten (or that it is lost, without storage).
    pub fn left_unfinished(&self, ep: &Endpoint) -> Vec<String> {
        let kept = self.store.is_some();
        // Peers end an ephemeral run's transfers when it leaves (it never comes back).
        let ephemeral = ep.is_ephemeral();
        self.transfers
            .values()
            .filter(|t| !t.record.state.is_finished())
            .map(|t| {
                let r = &t.record;
                // As lines name it: `alice#f0d31d29` while another alice (or we) is here.
                let (name, nick) = (t.shown_name(), Self::nick(ep, t));
                let pct = t.percent_done();
                if ephemeral && kept {
                    return format!(
                        "{name} ({} {nick}) stopped at {pct}%: this run is ephemeral, so {nick} ends the transfers it has with this run once this run has left",
                        t.toward()
                    );
                }
                match (r.state, r.outgoing, kept) {
                    // Its files were still being read: nothing went out, nothing is kept.
                    (State::Offered, true, _) if t.offer.is_none() => format!(
                        "{name} to {nick}: not offered (tailchat stopped while reading it) — /send it again"
                    ),
                    (State::Accepted, true, true) => format!(
                        "{name} to {nick}: {pct}% sent, the rest goes when you are both back"
                    ),
                    (State::Accepted, false, true) if t.paused => format!(
                        "{name} from {nick}: {pct}% received and kept, paused for lack of space; it goes on when you are both back, if there is room"
                    ),
                    (State::Accepted, false, true) => format!(
                        "{name} from {nick}: {pct}% received, the rest comes when you are both back"
                    ),
                    (_, true, true) => format!(
                        "{name} to {nick}: not answered yet, offered again when you are both back"
                    ),
                    (_, false, true) if r.state != State::Accepted => format!(
                        "{nick}'s offer of {name} was not answered: {nick} offers it again when you are both back"
                    ),
                    _ => format!(
                        "{name} ({} {nick}) stopped at {pct}% and is not kept: storage is off",
                        t.toward()
                    ),
                }
            })
            .collect()
    }

    /// The transfers whose end lines are among those the last [`Files::take_lines`] took: to
    /// be marked [`Files::told`] once the screen has written them.
    pub fn take_untold(&mut self) -> Vec<TransferKey> {
        std::mem::take(&mut self.untold)
    }

    /// The end lines of `keys` are on the screen: they need not be said again after a restart.
    pub fn told(&mut self, keys: &[TransferKey]) {
        for &key in keys {
            if let Some(t) = self.transfers.get_mut(&key).filter(|t| t.record.untold) {
                t.record.untold = false;
                self.save(key);
            }
        }
    }

    fn notice(&mut self, text: String) {
        self.lines.push(Output::Notice(text));
    }

    fn error(&mut self, text: String) {
        self.lines.push(Output::Error(text));
    }

    /// A line about transfer `key` that a program may act on: `text` for a person, and
    /// `event` with the transfer's fields for `--json` ([`Output::File`]).
    fn event(&mut self, ep: &Endpoint, key: TransferKey, event: &'static str, text: String) {
        self.file_line(ep, key, event, text, false);
    }

    /// [`Files::event`], shown as an error.
    fn event_error(&mut self, ep: &Endpoint, key: TransferKey, event: &'static str, text: String) {
        self.file_line(ep, key, event, text, true);
    }

    fn file_line(
        &mut self,
        ep: &Endpoint,
        key: TransferKey,
        event: &'static str,
        text: String,
        error: bool,
    ) {
        let Some(t) = self.transfers.get(&key) else {
            return self.lines.push(if error {
                Output::Error(text)
            } else {
                Output::Notice(text)
            });
        };
        // For programs the nick itself: `peer_id` tells two of the same nick apart.
        let nick = ep
            .nick_of(t.peer())
            .unwrap_or(&t.record.peer_nick)
            .to_owned();
        let line = t.file_event(nick, event, text, error);
        self.lines.push(Output::File(Box::new(line)));
    }

    /// Takes in the kept transfers: unfinished ones get a number and outgoing ones are served.
    fn restore(&mut self) {
        let Some(store) = self.store.clone() else {
            return;
        };
        let (records, warnings) = store.load(now_ms());
        for w in warnings {
            self.notice(w);
        }
        // Numbers go on from the highest kept, so an unfinished transfer keeps the number the
        // user was given (`/cancel 3` still means it after a restart) and no new one takes it.
        let kept = records.iter().map(|r| r.number).max().unwrap_or(0);
        self.next_number = self.next_number.max(kept.saturating_add(1));
        let mut taken = std::collections::BTreeSet::new();
        for mut record in records {
            let key = record.key();
            if unread(&record) {
                // Tailchat stopped (a crash: a quit forgets it) while it read the files: nothing
                // went out. Said once, as an end line.
                let name = crate::ui::render::sanitize(&record.offer.name);
                let nick = crate::ui::render::display_nick(&record.peer_nick);
                record.state = State::Failed;
                record.reason = Some(format!(
                    "{name} to {nick}: not offered, its files were still being read — /send it again"
                ));
                record.finished_ms = Some(now_ms());
                record.untold = true;
                let _ = store.save(&record);
            }
            let mut offer = record.offer.to_offer(record.id);
            let kept_manifest = store.manifest(key);
            // Ours must be the very list we offered (its hash is in the offer): a damaged one
            // served as is would make the receiver throw away all it has.
            let ours_as_offered = kept_manifest.as_ref().is_some_and(|b| {
                offer
                    .as_ref()
                    .is_some_and(|o| blake3::hash(b).as_bytes() == &o.manifest_hash)
            });
            // A receiver's list that is not the offered one is not trusted either: the next
            // fetch asks the sender for it again.
            let manifest = kept_manifest
                .filter(|_| ours_as_offered)
                .and_then(|b| Manifest::decode(&b).ok());
            if record.outgoing
                && !record.state.is_finished()
                && (manifest.is_none() || !ours_as_offered)
            {
                let name = crate::ui::render::sanitize(&record.offer.name);
                let nick = crate::ui::render::display_nick(&record.peer_nick);
                let why = format!(
                    "{name} to {nick}: its file list in {} is missing or damaged, so it cannot go on — /send it again",
                    store.dir().display()
                );
                record.state = State::Failed;
                record.reason = Some(why.clone());
                record.finished_ms = Some(now_ms());
                // Found now, and said now (not as a line from before the restart).
                self.error(why);
                let _ = store.save(&record);
            }
            let unfinished = !record.state.is_finished();
            let number = match record.number {
                _ if !unfinished => 0,
                n if n > 0 && taken.insert(n) => n,
                _ => self.number(),
            };
            if unfinished && record.outgoing {
                if let (Some(o), Some(m), Some(src)) = (&mut offer, &manifest, &record.source) {
                    let serving = Serving {
                        id: o.id,
                        receiver: record.peer,
                        root: src.clone(),
                        folder: o.folder,
                        manifest: m.clone(),
                        manifest_bytes: m.encode(),
                        cancelled: AtomicBool::new(false),
                        modified: Vec::new(),
                    };
                    if let Some(server) = self.server() {
                        server.offer(o.token, serving);
                        // This run's listener may have another port than the earlier run's
                        // (the chat's port changed, or it was taken): the offer sent again
                        // names this one.
                        o.port = server.port();
                        record.offer.port = o.port;
                    }
                }
            }
            // One that had moved bytes was interrupted by the restart: the line saying it
            // goes again comes when it does, as after any interruption.
            let moved = record.state == State::Accepted && record.first_byte_ms.is_some();
            let mut restored = Transfer {
                this_run: false,
                told_interrupted: moved,
                ..new_transfer(number, record, offer, manifest)
            };
            if restored.record.state == State::Accepted && !restored.record.outgoing {
                // What is on the disk, not the record's count (saved only at each file): a
                // transfer killed at 37% of one big file is at 37%, not 0%.
                restored.record.bytes_done = ending::bytes_on_disk(&restored);
            }
            if restored.record.untold {
                let nick = restored.record.peer_nick.clone();
                let line = restored.told_late();
                let error = restored.record.state == State::Failed;
                let event = restored.file_event(nick, restored.end_event(), line, error);
                self.lines.push(Output::File(Box::new(event)));
                self.untold.push(key);
            }
            let incoming = restored.record.state == State::Accepted && !restored.record.outgoing;
            self.transfers.insert(key, restored);
            if incoming {
                self.pause_if_no_room(key);
            }
        }
        let waiting = self
            .transfers
            .values()
            .filter(|t| !t.record.state.is_finished() && !t.paused) // a pause said why
            .count();
        if waiting > 0 {
            self.notice(format!(
                "{waiting} unfinished file {} from an earlier run {} when the peers are back — /files lists them",
                if waiting == 1 { "transfer" } else { "transfers" },
                if waiting == 1 { "resumes" } else { "resume" }
            ));
        }
    }

    /// An incoming transfer from an earlier run whose rest does not fit in its folder (it was
    /// paused for lack of space then, or the disk filled while tailchat was not running):
    /// paused now, with the reason, rather than started only to pause again at the first
    /// write. It goes on by itself once there is more room, as any pause does.
    fn pause_if_no_room(&mut self, key: TransferKey) {
        let Err(why) = self.room_for_the_rest(key) else {
            return;
        };
        let Some(t) = self.transfers.get_mut(&key) else {
            return;
        };
        t.pause_for_room();
        let nick = t.record.peer_nick.clone();
        let event = t.file_event(nick, "paused", why, true);
        self.lines.push(Output::File(Box::new(event)));
        // The first look comes through the event loop, which then looks every few seconds.
        let _ = self.events_tx.send(DataEvent::SpaceCheck { key });
    }

    fn number(&mut self) -> u32 {
        let n = self.next_number;
        self.next_number += 1;
        n
    }

    /// The data listener, started if it is not yet.
    fn server(&mut self) -> Option<&Server> {
        if self.server.is_none() {
            // While restoring, bound only: it accepts once every restored offer is in.
            let started = if self.restoring {
                Server::bind(self.setup.bind, self.setup.port)
            } else {
                Server::start(self.setup.bind, self.setup.port, self.events_tx.clone())
            };
            match started {
                Ok(s) => self.server = Some(s),
                Err(e) => {
                    self.error(format!(
                        "cannot listen for file transfers on TCP: {}",
                        manifest::reason(&e)
                    ));
                    return None;
                }
            }
        }
        self.server.as_ref()
    }

    fn save(&mut self, key: TransferKey) {
        let (Some(store), Some(t)) = (&self.store, self.transfers.get(&key)) else {
            return;
        };
        // An incoming offer is written only once accepted.
        if !t.record.outgoing && t.record.dest.is_none() {
            return;
        }
        let saved = store.save(&t.record);
        let (told, number) = (t.told_unsaved, t.number);
        if let Some(t) = self.transfers.get_mut(&key) {
            t.told_unsaved = saved.is_err();
        }
        match saved {
            // Said once: a transfer saves its record at every file of a folder.
            Err(e) if !told => {
                let e = format!(
                    "cannot keep file transfer {} on disk ({}): it will not resume after a restart",
                    number,
                    manifest::reason(&e)
                );
                self.error(e);
            }
            _ => {}
        }
    }

    /// Queues a control message for `peer`.
    fn control(ep: &mut Endpoint, peer: PeerId, c: &Control) -> Result<(), AppDataError> {
        ep.send_app_data(Instant::now(), peer, &control::encode(c))
    }

    /// The peer's present nick, shown as chat lines show it: `bob#1d79e0c2` while another
    /// peer (or we) goes by the same.
    fn nick(ep: &Endpoint, t: &Transfer) -> String {
        Self::nick_or(ep, t.peer(), &t.record.peer_nick)
    }

    /// [`Files::nick`] of peer `id`.
    fn nick_of(ep: &Endpoint, id: PeerId) -> String {
        Self::nick_or(ep, id, "?")
    }

    /// [`Files::nick`] of peer `id`, called `known` if the endpoint has no nick for it.
    fn nick_or(ep: &Endpoint, id: PeerId, known: &str) -> String {
        let nick = ep.nick_of(id).unwrap_or(known);
        crate::app::lookup::shown_names(&ep.peers(), Some((ep.peer_id(), ep.nick())))
            .name_of(id, nick)
    }
}

fn new_transfer(
    number: u32,
    mut record: Record,
    offer: Option<Offer>,
    manifest: Option<Manifest>,
) -> Transfer {
    if number > 0 {
        record.number = number;
    }
    Transfer {
        number,
        record,
        offer,
        manifest,
        this_run: true,
        fetching: None,
        started: None,
        earlier: Duration::ZERO,
        took_at_end: None,
        sent_this_run: 0,
        last_connection: None,
        served_to: 0,
        resent: 0,
        serving: 0,
        done_waiting: false,
        progress_shown: None,
        rate: Rate::default(),
        retries: 0,
        told_interrupted: false,
        failing_since: None,
        told_blocked: false,
        again: 0,
        unknowns: 0,
        interrupt_pending: false,
        paused_by_peer: false,
        paused_room: None,
        told_unsaved: false,
        retry_pending: false,
        paused: false,
        queued: false,
    }
}

/// Whether `r` is an offer of ours whose files were still being read when it was saved (its
/// token is all zeros until they are).
fn unread(r: &Record) -> bool {
    r.outgoing
        && r.state == State::Offered
        && r.offer.token == crate::transfer::record::hex(&[0; 16])
}

fn now_ms() -> i64 {
    crate::clock::now_ms()
}

/// A duration for people: `12 ms`, `0.3 s`, `42 s`, `3 min 5 s`.
pub(crate) fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 0.1 {
        // "0.0 s" would say it took no time: a 4 MB file on a LAN takes milliseconds.
        match d.as_millis() {
            0 => "under 1 ms".to_string(),
            ms => format!("{ms} ms"),
        }
    } else if s < 10.0 {
        format!("{s:.1} s")
    } else if s < 60.0 {
        format!("{s:.0} s")
    } else {
        format!("{} min {} s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

#[cfg(test)]
mod tests;
