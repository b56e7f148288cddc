//! The data threads of file transfers — the one that reads and hashes an offer's files, and
//! the fetch of an accepted one — and what each of their reports does: the offer goes out,
//! progress is shown, a broken link is tried again, the end line is shown.

use super::ending::remove_parts;
use super::{seconds, Files, Transfer};
use crate::proto::{AppDataError, Endpoint, PeerId, PeerState};
use crate::transfer::control::{Control, Offer};
use crate::transfer::data::Status;
use crate::transfer::fetch::{self, FetchError, Plan};
use crate::transfer::manifest::{Manifest, Prepared};
use crate::transfer::record::{State, StoredOffer};
use crate::transfer::serve::{ServeError, Server, Serving};
use crate::transfer::{count, human_size, DataEvent, TransferKey};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long after a data connection broke the user is told: a Cancel from the peer, which
/// the broken connection may overtake, ends the transfer meanwhile, and then its own line
/// says so instead.
pub(super) const INTERRUPT_GRACE: Duration = Duration::from_secs(1);
/// How often a transfer paused for lack of space looks whether the rest fits now (then it
/// goes on by itself).
pub(super) const SPACE_CHECK_EVERY: Duration = Duration::from_secs(5);
/// How many times in a row "no such offer" is tried again before the transfer fails.
const UNKNOWN_TRIES: u32 = 2;
/// Failed tries to connect, while the sender answers chat, before TCP is said to be in the
/// way (with [`RETRY_FIRST`] doubling: 3.5 s) — or two, once they have failed for
/// [`BLOCKED_AFTER_TIME`] (each try waits up to 5 s where a firewall drops the connection).
const BLOCKED_AFTER: u32 = 4;
/// See [`BLOCKED_AFTER`].
const BLOCKED_AFTER_TIME: Duration = Duration::from_secs(5);
/// A broken link is tried again after this long, doubling up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(500);
/// The longest wait between two attempts while the peer is here.
const RETRY_MAX: Duration = Duration::from_secs(30);
/// A running transfer shows its first progress line this long after it started (interactive
/// only); then as long again after each line as it had run by then (10 s, 20 s, 40 s), at most
/// [`PROGRESS_LINE_MAX`] apart, so that a long transfer does not push the chat off the screen.
const PROGRESS_LINE_FIRST: Duration = Duration::from_secs(5);
/// Fetches from one peer that run at once; more accepted transfers from it wait their turn
/// (each holds a thread, a connection and a file open, and the offerer gives one receiver half
/// its data port's places: `docs/PROTOCOL.md` §13.4).
pub(super) const FETCHES_PER_PEER: usize = 4;
/// Fetches that run at once in all.
pub(super) const FETCHES_AT_ONCE: usize = 16;
/// The longest time between two progress lines of one transfer.
const PROGRESS_LINE_MAX: Duration = Duration::from_secs(60);

/// What failed tries to connect to the sender tell the user.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Failing {
    /// The sender answers chat, not TCP: said once, as a port blocked on the way.
    Blocked,
    /// The sender is away (stopped, killed, unplugged): said once.
    Away,
    /// Nothing (yet, or again).
    Quiet,
}

/// The rule for failed tries to connect: `retries` so far, failing for `failing_for`, the
/// sender `answering` chat since they began; whether the blocked line (`told_blocked`) or an
/// interruption (`told`) was said. A few tries come first, a second or so: a sender that has
/// just restarted answers chat a moment before its listener has its offers. While the sender
/// answers chat it is not said to be away.
pub(super) fn connect_failure(
    answering: bool,
    retries: u32,
    failing_for: Duration,
    told_blocked: bool,
    told: bool,
) -> Failing {
    if retries < 2 {
        return Failing::Quiet;
    }
    if answering {
        let long_enough = retries >= BLOCKED_AFTER || failing_for >= BLOCKED_AFTER_TIME;
        return if long_enough && !told_blocked {
            Failing::Blocked
        } else {
            Failing::Quiet
        };
    }
    if told {
        Failing::Quiet
    } else {
        Failing::Away
    }
}

impl Files {
    /// The line for `t`, which was interrupted, going again `from` bytes into the offer:
    /// `report.pdf to bob: resumed at 1.8 MB (43%)`.
    fn going_again(ep: &Endpoint, t: &Transfer, from: u64) -> String {
        let size = t.record.offer.size;
        let pct = u128::from(from) * 100 / u128::from(size.max(1));
        let how = if t.record.outgoing && from < t.record.bytes_done {
            // Before where it had got to: the receiver did not keep all it was sent (what
            // its disk had not taken when it stopped, or files moved or deleted since they
            // arrived) — not a start all over again.
            format!(
                "going again from {} ({pct}%): {} asks again for what it did not keep",
                human_size(from),
                Self::nick(ep, t)
            )
        } else if from == 0 {
            "connected, from the start".to_owned()
        } else {
            format!("resumed at {} ({pct}%)", human_size(from))
        };
        format!(
            "{} {} {}: {how}",
            t.shown_name(),
            t.toward(),
            Self::nick(ep, t)
        )
    }

    /// Our offer `key` could not be made: forgotten, and its number given back if no later
    /// transfer took one (so failed `/send`s leave no gaps in `/files`).
    fn unmade(&mut self, key: TransferKey) {
        if let Some(store) = &self.store {
            store.remove(key);
        }
        if let Some(t) = self.transfers.remove(&key) {
            if t.number.checked_add(1) == Some(self.next_number) {
                self.next_number = t.number;
            }
        }
    }

    /// Our offer's files are read and hashed: serve them and offer them.
    fn prepared(&mut self, ep: &mut Endpoint, id: u64, result: Result<Prepared, String>) {
        let key = TransferKey {
            offerer: self.me,
            id,
        };
        let p = match result {
            Ok(p) => p,
            Err(e) => {
                self.unmade(key);
                return self.error(format!("not offered: {e}"));
            }
        };
        let Some(port) = self.server().map(Server::port) else {
            self.unmade(key);
            return;
        };
        if self
            .transfers
            .get(&key)
            .is_none_or(|t| t.record.state.is_finished())
        {
            return; // cancelled while it was being read
        }
        let offer = Offer {
            id,
            token: rand::random(),
            name: p.name.clone(),
            size: p.manifest.total(),
            files: u32::try_from(p.manifest.entries.len()).unwrap_or(u32::MAX),
            folder: p.folder,
            manifest_hash: p.hash,
            manifest_len: u32::try_from(p.bytes.len()).unwrap_or(u32::MAX),
            port,
        };
        let receiver = self.transfers.get(&key).map_or(0, |t| t.peer().0);
        if let Some(server) = &self.server {
            server.offer(
                offer.token,
                Serving {
                    id,
                    receiver,
                    root: p.root.clone(),
                    folder: p.folder,
                    manifest: p.manifest.clone(),
                    manifest_bytes: p.bytes.clone(),
                    cancelled: AtomicBool::new(false),
                    modified: p.modified.clone(),
                },
            );
        }
        if let Some(store) = &self.store {
            let _ = store.save_manifest(key, &p.bytes);
        }
        let Some(t) = self.transfers.get_mut(&key) else {
            return;
        };
        t.record.offer = StoredOffer::from_offer(&offer);
        t.record.source = Some(std::fs::canonicalize(&p.root).unwrap_or(p.root.clone()));
        t.offer = Some(offer.clone());
        t.manifest = Some(p.manifest);
        let (number, name, size) = (t.number, t.shown_name(), t.shown_size());
        let nick = Self::nick(ep, t);
        self.save(key);
        if p.skipped > 0 {
            self.notice(format!(
                "{name}: {} left out (symbolic links and special files are not sent)",
                count(
                    p.skipped as u64,
                    "symbolic link or special file",
                    "symbolic links or special files"
                )
            ));
        }
        let peer = PeerId(self.transfers[&key].record.peer);
        self.kept.push(peer);
        let away = ep.peer(peer).is_some_and(|p| p.state != PeerState::Online);
        match Self::control(ep, peer, &Control::Offer(offer)) {
            // Queued for a peer who is away, like a message.
            Ok(()) if away => self.event(ep, key, "offer", format!(
                "{nick} is not here: the offer of {name} ({size}) goes out when they are back — /cancel {number} withdraws it"
            )),
            Ok(()) => self.event(ep, key, "offer", format!(
                "offered {name} ({size}) to {nick} — /cancel {number} withdraws it"
            )),
            Err(AppDataError::NotHeard) => self.event(ep, key, "offer", format!(
                "{nick} is not here: the offer of {name} ({size}) goes out when they are back — /cancel {number} withdraws it"
            )),
            Err(e) => self.refused_by_peer(ep, key, e),
        }
    }

    /// Starts a fetch attempt if the transfer is accepted, none runs, and the peer is here;
    /// while [`FETCHES_PER_PEER`] from the same peer (or [`FETCHES_AT_ONCE`] in all) run, it
    /// is queued instead, and started by [`Files::start_queued`] when one ends.
    pub(super) fn start_fetch(&mut self, ep: &Endpoint, key: TransferKey) {
        let (from_peer, in_all) = self.running_fetches(key.offerer);
        let Some(t) = self.transfers.get_mut(&key) else {
            return;
        };
        if t.record.state != State::Accepted
            || t.fetching.is_some()
            || t.record.outgoing
            || t.paused
        {
            return;
        }
        let here = ep
            .peer(t.peer())
            .filter(|p| p.state != PeerState::Offline && p.state != PeerState::Left);
        let addr = here.and_then(|p| p.addrs.first().copied());
        let (Some(addr), Some(offer), Some(dest)) = (addr, t.offer.clone(), t.record.dest.clone())
        else {
            // It waits for the peer now, not for its turn (the peer's return starts it).
            t.queued = false;
            return;
        };
        if from_peer >= FETCHES_PER_PEER || in_all >= FETCHES_AT_ONCE {
            if !std::mem::replace(&mut t.queued, true) {
                let (name, nick) = (t.shown_name(), Self::nick(ep, t));
                let why = if from_peer >= FETCHES_PER_PEER {
                    format!("{from_peer} transfers from {nick} are running")
                } else {
                    format!("{in_all} transfers are running")
                };
                self.notice(format!(
                    "{name} from {nick} waits its turn: {why}; it starts when one of them ends"
                ));
            }
            return;
        }
        t.queued = false;
        let plan = if offer.folder {
            Plan::Folder { top: dest }
        } else {
            Plan::File { wanted: dest }
        };
        let cancel = Arc::new(AtomicBool::new(false));
        t.fetching = Some(Arc::clone(&cancel));
        let job = fetch::Job {
            key,
            addr: fetch::data_addr(addr, offer.port),
            offer,
            manifest: t.manifest.clone(),
            plan,
            files_done: t.record.files_done,
            cancel,
        };
        fetch::spawn(job, self.events_tx.clone());
    }

    /// Fetches running now: from `peer`, and in all.
    fn running_fetches(&self, peer: PeerId) -> (usize, usize) {
        let running = || self.transfers.values().filter(|t| t.fetching.is_some());
        (
            running().filter(|t| t.peer() == peer).count(),
            running().count(),
        )
    }

    /// Starts the queued fetches that have a place now, in the order they were numbered.
    pub(super) fn start_queued(&mut self, ep: &Endpoint) {
        let mut queued: Vec<(u32, TransferKey)> = self
            .transfers
            .values()
            .filter(|t| t.queued && t.fetching.is_none())
            .map(|t| (t.number, t.key()))
            .collect();
        queued.sort_unstable();
        for (_, key) in queued {
            self.start_fetch(ep, key);
        }
    }

    /// A report from a data thread.
    pub fn on_data(&mut self, ep: &mut Endpoint, ev: DataEvent) {
        self.on_data_at(ep, ev, Instant::now());
    }

    /// [`Files::on_data`] at `now` (tests drive progress on a clock of their own).
    pub(super) fn on_data_at(&mut self, ep: &mut Endpoint, ev: DataEvent, now: Instant) {
        match ev {
            DataEvent::Prepared { id, result } => self.prepared(ep, id, result),
            DataEvent::Serving { id, from } => {
                let mut save = false;
                let (mut accepted, mut again) = (None, None);
                if let Some(t) = self.mine(id) {
                    if t.record.state == State::Offered {
                        // Its data connection overtook the Accept.
                        accepted =
                            Some(format!("{} accepted {}", Self::nick(ep, t), t.shown_name()));
                    }
                    t.serving += 1;
                    t.paused_by_peer = false;
                    // Said when the break was (or, asked again for bytes sent before, a
                    // receiver killed and back before we saw it gone, it had to be).
                    let back = from < t.record.bytes_done;
                    if std::mem::take(&mut t.told_interrupted) || back {
                        again = Some(Self::going_again(ep, t, from));
                    }
                    // Where it had got to counts, in an earlier run too: what is sent again
                    // before it is in the end line, as the line above says.
                    t.served_to = t.served_to.max(t.record.bytes_done);
                    save = t.begin(now, from);
                    t.rate.restart(now, from);
                    if t.record.state == State::Offered {
                        t.record.state = State::Accepted;
                    }
                }
                let key = TransferKey {
                    offerer: self.me,
                    id,
                };
                if save {
                    self.save(key);
                }
                if let Some(line) = accepted {
                    self.event(ep, key, "accepted", line);
                }
                if let Some(line) = again {
                    self.notice(line);
                }
            }
            DataEvent::ServeProgress { id, done } => {
                if let Some(t) = self.mine(id) {
                    t.record.bytes_done = done;
                    t.rate.note(now, done);
                }
                let key = TransferKey {
                    offerer: self.me,
                    id,
                };
                self.progress_line(ep, key, now);
            }
            DataEvent::ServeEnded {
                id,
                from,
                sent,
                result,
            } => {
                let key = TransferKey {
                    offerer: self.me,
                    id,
                };
                let mut done_now = false;
                let mut interrupted = None;
                if let Some(t) = self.mine(id) {
                    t.sent_this_run += sent;
                    t.last_connection = Some((from, sent));
                    // Before where this run's connections had got to: sent again.
                    t.resent += sent.min(t.served_to.saturating_sub(from));
                    t.served_to = t.served_to.max(from.saturating_add(sent));
                    if result.is_ok() {
                        // (What a broken connection wrote may not have arrived.)
                        t.record.bytes_done = t.record.bytes_done.max(from + sent);
                    } else {
                        // But where it started had (and a report may not have come yet).
                        t.record.bytes_done = t.record.bytes_done.max(from);
                    }
                    t.serving = t.serving.saturating_sub(1);
                    done_now = t.done_waiting && t.serving == 0;
                    // The receiver's connection broke before it said it has everything: the
                    // sender is told once, as the receiver is (a moment later).
                    if let Err(ServeError::Link(why)) = &result {
                        if t.serving == 0
                            && t.record.state == State::Accepted
                            && !t.told_interrupted
                        {
                            interrupted = Some(why.clone());
                        }
                    }
                }
                if let Some(why) = interrupted {
                    if let Some(t) = self.transfers.get_mut(&key) {
                        t.interrupt_pending = true;
                    }
                    self.later(INTERRUPT_GRACE, DataEvent::Interrupted { key, why });
                }
                if done_now {
                    self.sent_done(ep, key);
                }
                if let Err(ServeError::Unreadable(why)) = result {
                    let name = self
                        .transfers
                        .get(&key)
                        .map(Transfer::shown_name)
                        .unwrap_or_default();
                    self.finish(
                        ep,
                        key,
                        State::Failed,
                        Some(format!("cannot send {name}: {why}")),
                    );
                }
            }
            DataEvent::Fetching { key, from } => {
                // Where bytes start to arrive: a fresh transfer's end line says no "resumed at"
                // (the first progress report comes only once bytes have arrived).
                let mut save = false;
                if let Some(t) = self.transfers.get_mut(&key) {
                    save = t.begin(now, from);
                    t.last_connection = Some((from, 0));
                    t.rate.restart(now, from);
                    t.connected();
                }
                if save {
                    self.save(key);
                }
            }
            DataEvent::FetchProgress { key, done } => {
                if let Some(t) = self.transfers.get_mut(&key) {
                    t.begin(now, done);
                    if let Some((from, brought)) = &mut t.last_connection {
                        *brought = done.saturating_sub(*from);
                    }
                    t.record.bytes_done = done;
                    t.rate.note(now, done);
                    t.retries = 0;
                    t.unknowns = 0;
                    t.connected();
                    // Fetching again files moved or deleted: that line said so ("receiving
                    // again"), and a connection from their place is no resume "from the start".
                    if std::mem::take(&mut t.told_interrupted) && t.again == 0 {
                        let from = t.last_connection.map_or(0, |(f, _)| f);
                        let line = Self::going_again(ep, t, from);
                        self.notice(line);
                    }
                }
                self.progress_line(ep, key, now);
            }
            DataEvent::FetchManifest { key, bytes } => {
                if let Some(store) = &self.store {
                    let _ = store.save_manifest(key, &bytes);
                }
                if let Some(t) = self.transfers.get_mut(&key) {
                    t.manifest = Manifest::decode(&bytes).ok();
                }
            }
            DataEvent::FileDone { key, index, path } => {
                if let Some(t) = self.transfers.get_mut(&key) {
                    // (Files fetched again come after later ones: the count never goes back.)
                    t.record.files_done = t.record.files_done.max(index + 1);
                    if !t.record.offer.folder {
                        t.record.dest = Some(path);
                    }
                    self.save(key);
                }
            }
            DataEvent::FilesGone {
                key, count, path, ..
            } => {
                let Some(t) = self.transfers.get_mut(&key) else {
                    return;
                };
                t.again += count;
                let (name, nick) = (t.shown_name(), Self::nick(ep, t));
                let more = match count {
                    1 => String::new(),
                    n => format!(" and {} more", n - 1),
                };
                self.notice(format!(
                    "{name} from {nick}: {}{more}, received already, no longer there (moved or deleted since): receiving again",
                    path.display()
                ));
            }
            DataEvent::FetchEnded { key, from, result } => {
                self.fetch_ended(ep, key, from, result);
                self.start_queued(ep);
            }
            DataEvent::Interrupted { key, why } => self.interrupted(ep, key, &why),
            DataEvent::SpaceCheck { key } => {
                let paused = self
                    .transfers
                    .get(&key)
                    .is_some_and(|t| t.paused && t.record.state == State::Accepted);
                if !paused {
                    return; // gone on (`/accept`), cancelled, or done
                }
                if self.room_grew(key) {
                    self.go_on_now(ep, key, "there is room again: going on with");
                } else {
                    self.later(SPACE_CHECK_EVERY, DataEvent::SpaceCheck { key });
                }
            }
            DataEvent::Retry { key } => {
                if let Some(t) = self.transfers.get_mut(&key) {
                    t.retry_pending = false;
                }
                self.start_fetch(ep, key);
            }
        }
    }

    /// A progress line above the prompt for a transfer that has run a while, first after
    /// [`PROGRESS_LINE_FIRST`], then further apart: visible without typing, and printed above a
    /// half-typed line, never into it. Not for scripts and programs (they get the end lines
    /// only).
    fn progress_line(&mut self, ep: &Endpoint, key: TransferKey, now: Instant) {
        if self.quiet {
            return;
        }
        let Some(t) = self.transfers.get_mut(&key) else {
            return;
        };
        let Some((started, _)) = t.started else {
            return;
        };
        let gap = match t.progress_shown {
            None => PROGRESS_LINE_FIRST,
            Some(last) => last
                .saturating_duration_since(started)
                .clamp(PROGRESS_LINE_FIRST, PROGRESS_LINE_MAX),
        };
        let since = t.progress_shown.unwrap_or(started);
        if now.saturating_duration_since(since) < gap {
            return;
        }
        t.progress_shown = Some(now);
        let size = t.record.offer.size;
        let done = t.record.bytes_done;
        let pct = t.percent_done();
        // No rate yet (a connection that has just started says little): none shown, rather
        // than "0 B/s" while bytes arrive.
        let rate = match t.rate.per_sec() {
            Some(rate) if rate > 0.0 => {
                let left = seconds(Duration::from_secs_f64(
                    size.saturating_sub(done) as f64 / rate,
                ));
                format!(", {}/s, {left} left", human_size(rate as u64))
            }
            Some(_) => ", 0 B/s".to_owned(),
            None => String::new(),
        };
        let line = format!(
            "{} {} {}: {pct}% of {}{rate}{}",
            t.shown_name(),
            t.toward(),
            Self::nick(ep, t),
            human_size(size),
            t.current_file()
                .map(|(i, n, path)| format!(" — file {i} of {n}: {path}"))
                .unwrap_or_default(),
        );
        self.notice(line);
    }

    fn mine(&mut self, id: u64) -> Option<&mut Transfer> {
        self.transfers.get_mut(&TransferKey {
            offerer: self.me,
            id,
        })
    }

    /// Hands `ev` to the loop after `delay`.
    fn later(&self, delay: Duration, ev: DataEvent) {
        let tx = self.events_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(ev);
        });
    }

    /// A data connection broke [`INTERRUPT_GRACE`] ago: the user is told, once, unless the
    /// transfer ended meanwhile (its own line said how) or data moves again.
    fn interrupted(&mut self, ep: &Endpoint, key: TransferKey, why: &str) {
        let Some(t) = self.transfers.get_mut(&key) else {
            return;
        };
        t.interrupt_pending = false;
        let stopped = if t.record.outgoing {
            t.serving == 0 && !t.paused_by_peer
        } else {
            t.retries > 0 && !t.paused
        };
        if t.record.state != State::Accepted || t.told_interrupted || !stopped {
            return;
        }
        t.told_interrupted = true;
        let (name, nick, pct) = (t.shown_name(), Self::nick(ep, t), t.percent_done());
        let line = if t.record.outgoing {
            format!("{name} to {nick}: interrupted at {pct}% ({why}); it resumes when {nick} connects again")
        } else {
            format!("{name} from {nick}: interrupted at {pct}% ({why}); it resumes when {nick} is reachable")
        };
        self.notice(line);
    }

    /// A fetch attempt ended: the end line, a retry, or why it stopped.
    fn fetch_ended(
        &mut self,
        ep: &mut Endpoint,
        key: TransferKey,
        from: u64,
        result: Result<(), FetchError>,
    ) {
        let Some(t) = self.transfers.get_mut(&key) else {
            return;
        };
        t.fetching = None;
        if result.is_ok() {
            t.begin(Instant::now(), from);
        }
        if t.record.state != State::Accepted {
            if t.record.state != State::Done {
                remove_parts(t); // cancelled while running
            }
            return;
        }
        let nick = Self::nick(ep, t);
        let name = t.shown_name();
        let retry_unknown = result == Err(FetchError::Refused(Status::Unknown)) && {
            t.unknowns += 1;
            t.unknowns <= UNKNOWN_TRIES
        };
        match result {
            Ok(()) => {
                let line = format!(
                    "received {name} from {nick} ({} in {}{}) → {}",
                    t.shown_size(),
                    seconds(t.stop_clock().unwrap_or_default()),
                    t.resumed("received"),
                    t.record
                        .dest
                        .as_deref()
                        .map(Path::display)
                        .map(|d| d.to_string())
                        .unwrap_or_default()
                );
                t.record.bytes_done = t.record.offer.size;
                self.finish(ep, key, State::Done, None);
                self.event(ep, key, "received", line);
            }
            // "No such offer" from a sender that has just restarted may come before its
            // offers are back (another implementation's race): tried again twice before it
            // counts.
            Err(e) if e.is_transient() || retry_unknown => {
                let delay = RETRY_FIRST
                    .saturating_mul(1 << t.retries.min(6))
                    .min(RETRY_MAX);
                t.retries += 1;
                let schedule_retry = !std::mem::replace(&mut t.retry_pending, true);
                let line = match &e {
                    // Data was coming and the connection broke: said in a moment (a Cancel
                    // may be on its way).
                    FetchError::Link(why) => {
                        // Counted from what is on disk, where it will resume (what was read
                        // but not written is asked for again).
                        t.record.bytes_done = super::ending::bytes_on_disk(t);
                        if !t.told_interrupted && !t.interrupt_pending {
                            t.interrupt_pending = true;
                            self.later(
                                INTERRUPT_GRACE,
                                DataEvent::Interrupted {
                                    key,
                                    why: why.clone(),
                                },
                            );
                        }
                        None
                    }
                    FetchError::Refused(_) => None,
                    // No connection. Chat heard from the sender since the first failure: it
                    // is there, and TCP is in the way. Otherwise it is away (stopped, killed,
                    // unplugged), said once a second try failed too.
                    _ => {
                        let since = *t.failing_since.get_or_insert_with(Instant::now);
                        let answering = ep
                            .peer(t.peer())
                            .is_some_and(|p| p.state == PeerState::Online && p.last_heard > since);
                        let told = t.told_interrupted || t.interrupt_pending;
                        let port = match &e {
                            FetchError::Connect(addr, _) => addr.port(),
                            _ => t.offer.as_ref().map_or(0, |o| o.port),
                        };
                        match connect_failure(
                            answering,
                            t.retries,
                            since.elapsed(),
                            t.told_blocked,
                            told,
                        ) {
                            Failing::Blocked => {
                                t.told_blocked = true;
                                t.told_interrupted = true;
                                // The sender is told too: its firewall is the likely one,
                                // and only its user can open the port.
                                let pause = Control::Pause {
                                    id: key.id,
                                    at: t.record.bytes_done,
                                    reason: format!(
                                        "cannot connect to your TCP port {port} ({}) though you answer chat — is a firewall on your side blocking it?",
                                        match &e {
                                            FetchError::Connect(_, why) => why.clone(),
                                            other => other.to_string(),
                                        }
                                    ),
                                };
                                let _ = Self::control(ep, t.peer(), &pause);
                                Some(format!(
                                    "{name} from {nick}: {e}, though {nick} answers chat — is TCP port {port} blocked on the way? Trying again"
                                ))
                            }
                            Failing::Away => {
                                t.told_interrupted = true;
                                Some(format!(
                                    "{name} from {nick}: {e}; it resumes when {nick} is reachable"
                                ))
                            }
                            Failing::Quiet => None,
                        }
                    }
                };
                if schedule_retry {
                    self.later(delay, DataEvent::Retry { key });
                }
                if let Some(line) = line {
                    self.notice(line);
                }
            }
            Err(FetchError::Cancelled) => {}
            Err(FetchError::Full(why)) => {
                // Nothing is lost: the parts stay, and the sender keeps offering it (told
                // why, rather than seeing only a broken connection).
                t.pause_for_room();
                t.record.bytes_done = super::ending::bytes_on_disk(t);
                let (pct, number, peer) = (t.percent_done(), t.number, t.peer());
                let _ = Self::control(ep, peer, &t.pause());
                self.save(key);
                self.event_error(ep, key, "paused", format!(
                    "paused {name} from {nick} at {pct}%: {why} — what arrived is kept; free some space and it goes on by itself (or /accept {number} then)"
                ));
                self.later(SPACE_CHECK_EVERY, DataEvent::SpaceCheck { key });
            }
            Err(e) => {
                let line = match &e {
                    FetchError::Broken(why) => {
                        format!("stopped receiving {name} from {nick}: {why}")
                    }
                    FetchError::Disk(why) => format!("cannot receive {name} from {nick}: {why}"),
                    other => format!("{name} from {nick}: {other}"),
                };
                remove_parts(t);
                // The sender's line says who stopped what ("bob stopped NAME: …"): told the
                // cause alone.
                let cause = match &e {
                    FetchError::Disk(why) => format!("cannot receive it: {why}"),
                    other => other.to_string(),
                };
                self.finish_telling(ep, key, State::Failed, Some(line), Some(cause));
            }
        }
    }
}
