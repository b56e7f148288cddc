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

use crate::proto::{AppDataError, Endpoint, PeerId, PeerState};
use crate::transfer::control::{self, Control, ControlError, Offer};
use crate::transfer::fetch::{self, FetchError, Plan};
use crate::transfer::manifest::{self, Manifest, Prepared};
use crate::transfer::names;
use crate::transfer::record::{Record, State, Store, StoredOffer};
use crate::transfer::serve::{ServeError, Server, Serving};
use crate::transfer::{human_size, DataEvent, TransferKey};
use crate::ui::command::FileCommand;
use crate::ui::render::Output;
use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// A broken link is tried again after this long, doubling up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(500);
/// The longest wait between two attempts while the peer is here.
const RETRY_MAX: Duration = Duration::from_secs(30);
/// A running transfer shows a progress line this often (interactive only).
const PROGRESS_LINE_EVERY: Duration = Duration::from_secs(5);
/// The rate shown is measured over this much of the recent past.
const RATE_WINDOW: Duration = Duration::from_secs(3);

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

/// The default download folder: the user's download directory (XDG), in a `tailchat`
/// folder; else `~/Downloads/tailchat`.
pub fn default_download_dir() -> Option<PathBuf> {
    directories::UserDirs::new().map(|u| {
        u.download_dir()
            .map_or_else(|| u.home_dir().join("Downloads"), Path::to_path_buf)
            .join("tailchat")
    })
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

    /// Bytes per second, once two samples are apart.
    fn per_sec(&self) -> Option<f64> {
        let ((t0, b0), (t1, b1)) = (self.samples.front()?, self.samples.back()?);
        let dt = t1.saturating_duration_since(*t0).as_secs_f64();
        (dt > 0.05).then(|| b1.saturating_sub(*b0) as f64 / dt)
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
    /// Outgoing: bytes sent in this run.
    sent_this_run: u64,
    /// When a progress line was last shown for it (interactive only).
    progress_shown: Option<Instant>,
    /// Outgoing: where the last data connection started in the offer, and what it sent.
    last_connection: Option<(u64, u64)>,
    /// Recent progress.
    rate: Rate,
    /// Failed attempts in a row (for the retry delay).
    retries: u32,
    /// The user was told the link broke (once, until it works again).
    told_interrupted: bool,
    /// A retry is scheduled.
    retry_pending: bool,
}

impl Transfer {
    fn key(&self) -> TransferKey {
        self.record.key()
    }

    fn peer(&self) -> PeerId {
        PeerId(self.record.peer)
    }

    /// The name as shown: a folder with a trailing `/`.
    fn shown_name(&self) -> String {
        let name = crate::ui::render::sanitize(&self.record.offer.name);
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
            format!("{}, {} files", human_size(o.size), o.files)
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
    /// A script or a program reads the output: no progress lines, only the end lines.
    quiet: bool,
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
            quiet,
        };
        files.restore();
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

    /// Whether a transfer is moving bytes or waiting to (for a script's end).
    pub fn busy(&self) -> bool {
        self.transfers
            .values()
            .any(|t| t.this_run && t.record.state == State::Accepted)
    }

    fn notice(&mut self, text: String) {
        self.lines.push(Output::Notice(text));
    }

    fn error(&mut self, text: String) {
        self.lines.push(Output::Error(text));
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
        for record in records {
            let key = record.key();
            let offer = record.offer.to_offer(record.id);
            let manifest = store.manifest(key).and_then(|b| Manifest::decode(&b).ok());
            let unfinished = !record.state.is_finished();
            let number = if unfinished { self.number() } else { 0 };
            if unfinished && record.outgoing {
                if let (Some(o), Some(m), Some(src)) = (&offer, &manifest, &record.source) {
                    let serving = Serving {
                        id: o.id,
                        root: src.clone(),
                        folder: o.folder,
                        manifest: m.clone(),
                        manifest_bytes: m.encode(),
                        cancelled: AtomicBool::new(false),
                    };
                    if let Some(server) = self.server() {
                        server.offer(o.token, serving);
                    }
                }
            }
            self.transfers.insert(
                key,
                Transfer {
                    number,
                    record,
                    offer,
                    manifest,
                    this_run: false,
                    fetching: None,
                    started: None,
                    sent_this_run: 0,
                    last_connection: None,
                    progress_shown: None,
                    rate: Rate::default(),
                    retries: 0,
                    told_interrupted: false,
                    retry_pending: false,
                },
            );
        }
        let waiting = self
            .transfers
            .values()
            .filter(|t| !t.record.state.is_finished())
            .count();
        if waiting > 0 {
            self.notice(format!(
                "{waiting} unfinished file transfer(s) from an earlier run resume when the peers are back — /files lists them"
            ));
        }
    }

    fn number(&mut self) -> u32 {
        let n = self.next_number;
        self.next_number += 1;
        n
    }

    /// The data listener, started if it is not yet.
    fn server(&mut self) -> Option<&Server> {
        if self.server.is_none() {
            match Server::start(self.setup.bind, self.setup.port, self.events_tx.clone()) {
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
        if let Err(e) = store.save(&t.record) {
            let e = format!(
                "cannot keep file transfer {} on disk ({}): it will not resume after a restart",
                t.number,
                manifest::reason(&e)
            );
            self.error(e);
        }
    }

    /// Queues a control message for `peer`.
    fn control(ep: &mut Endpoint, peer: PeerId, c: &Control) -> Result<(), AppDataError> {
        ep.send_app_data(Instant::now(), peer, &control::encode(c))
    }

    fn nick(ep: &Endpoint, t: &Transfer) -> String {
        crate::ui::render::display_nick(ep.nick_of(t.peer()).unwrap_or(&t.record.peer_nick))
    }

    /// A file command typed by the user.
    ///
    /// # Errors
    /// The command cannot be carried out (no such peer, number or path): the message says
    /// why.
    pub fn command(&mut self, ep: &mut Endpoint, cmd: FileCommand) -> Result<(), String> {
        match cmd {
            FileCommand::Send { nick, path } => self.send(ep, &nick, &path),
            FileCommand::Accept { number, dir } => {
                let key = self.pick_offer(number)?;
                self.accept(ep, key, dir.map(|d| expand_home(&d)))
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
            Some(n) => self.transfers.values().find(|t| t.number == n),
            None => self
                .transfers
                .values()
                .filter(waiting)
                .max_by_key(|t| t.number),
        };
        match (found, number) {
            (Some(t), _) if waiting(&t) => Ok(t.key()),
            (Some(t), _) => Err(format!(
                "file transfer {} is not an offer waiting for you",
                t.number
            )),
            (None, Some(n)) => Err(format!("no file transfer {n} — /files lists them")),
            (None, None) => Err("no file offer is waiting for you".into()),
        }
    }

    /// `/send NICK PATH`: builds the offer off the loop; it goes out when ready.
    fn send(&mut self, ep: &mut Endpoint, nick: &str, path: &str) -> Result<(), String> {
        let (peer, nick) = crate::app::lookup::find_peer(&ep.peers(), nick)?;
        let path = expand_home(path);
        if std::fs::metadata(&path).is_err() {
            return Err(format!(
                "cannot send {}: no such file or folder",
                path.display()
            ));
        }
        self.server()
            .ok_or("file transfers are off: no TCP listener")?;
        let id: u64 = rand::random();
        let tx = self.events_tx.clone();
        let spawned = std::thread::Builder::new()
            .name("tailchat-hash".into())
            .spawn(move || {
                let result = manifest::prepare(&path);
                let _ = tx.send(DataEvent::Prepared { id, result });
            });
        if spawned.is_err() {
            return Err("cannot start a thread to read the files".into());
        }
        let number = self.number();
        let record = Record {
            offerer: self.me.0,
            id,
            outgoing: true,
            peer: peer.0,
            peer_nick: nick,
            offer: StoredOffer::from_offer(&Offer {
                id,
                token: [0; 16],
                name: String::new(),
                size: 0,
                files: 0,
                folder: false,
                manifest_hash: [0; 32],
                manifest_len: 0,
                port: 0,
            }),
            source: None,
            dest: None,
            files_done: 0,
            bytes_done: 0,
            state: State::Offered,
            reason: None,
            created_ms: now_ms(),
            finished_ms: None,
        };
        self.transfers.insert(
            TransferKey {
                offerer: self.me,
                id,
            },
            new_transfer(number, record, None, None),
        );
        Ok(())
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
                self.transfers.remove(&key);
                return self.error(format!("not offered: {e}"));
            }
        };
        let Some(port) = self.server().map(Server::port) else {
            self.transfers.remove(&key);
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
        if let Some(server) = &self.server {
            server.offer(
                offer.token,
                Serving {
                    id,
                    root: p.root.clone(),
                    folder: p.folder,
                    manifest: p.manifest.clone(),
                    manifest_bytes: p.bytes.clone(),
                    cancelled: AtomicBool::new(false),
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
                "{name}: {} symbolic link(s) or special file(s) left out",
                p.skipped
            ));
        }
        match Self::control(ep, PeerId(self.transfers[&key].record.peer), &Control::Offer(offer)) {
            Ok(()) => self.notice(format!(
                "offered {name} ({size}) to {nick} — /cancel {number} withdraws it"
            )),
            Err(AppDataError::NotHeard) => self.notice(format!(
                "{nick} is away: the offer of {name} ({size}) goes out when they are back — /cancel {number} withdraws it"
            )),
            Err(e) => self.refused_by_peer(ep, key, e),
        }
    }

    /// A control message could not be queued for good.
    fn refused_by_peer(&mut self, ep: &mut Endpoint, key: TransferKey, e: AppDataError) {
        let Some(t) = self.transfers.get(&key) else {
            return;
        };
        let nick = Self::nick(ep, t);
        let why = match e {
            AppDataError::Unsupported => {
                format!("{nick}'s tailchat cannot receive files (an older version)")
            }
            other => format!("cannot reach {nick}: {other}"),
        };
        self.finish(ep, key, State::Failed, Some(why));
    }

    /// `/accept`: checks the space, makes the place, and starts fetching.
    fn accept(
        &mut self,
        ep: &mut Endpoint,
        key: TransferKey,
        dir: Option<PathBuf>,
    ) -> Result<(), String> {
        let dir = dir
            .or_else(|| self.setup.download_dir.clone())
            .or_else(default_download_dir)
            .ok_or("no download folder: give one, /accept N DIR")?;
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {}", dir.display(), manifest::reason(&e)))?;
        let t = &self.transfers[&key];
        let size = t.record.offer.size;
        if let Some(free) = free_space(&dir) {
            if size > free {
                return Err(format!(
                    "not enough space for {} in {}: it needs {}, {} free — free some, or /accept {} DIR elsewhere",
                    t.shown_name(),
                    dir.display(),
                    human_size(size),
                    human_size(free),
                    t.number
                ));
            }
        }
        let name = names::sanitize_name(&t.record.offer.name);
        let dest = if t.record.offer.folder {
            names::create_unique_dir(&dir, &name).map_err(|e| {
                format!(
                    "cannot create a folder in {}: {}",
                    dir.display(),
                    manifest::reason(&e)
                )
            })?
        } else {
            names::unique(&dir, &name)
        };
        let t = self.transfers.get_mut(&key).ok_or("gone")?;
        t.record.dest = Some(dest.clone());
        t.record.state = State::Accepted;
        let (peer, shown) = (t.peer(), t.shown_name());
        let nick = Self::nick(ep, t);
        self.save(key);
        let _ = Self::control(ep, peer, &Control::Accept { id: key.id });
        self.notice(format!("accepted {shown} from {nick} → {}", dest.display()));
        self.start_fetch(ep, key);
        Ok(())
    }

    /// Starts a fetch attempt if the transfer is accepted, none runs, and the peer is here.
    fn start_fetch(&mut self, ep: &Endpoint, key: TransferKey) {
        let Some(t) = self.transfers.get_mut(&key) else {
            return;
        };
        if t.record.state != State::Accepted || t.fetching.is_some() || t.record.outgoing {
            return;
        }
        let here = ep
            .peer(t.peer())
            .filter(|p| p.state != PeerState::Offline && p.state != PeerState::Left);
        let (Some(peer), Some(offer), Some(dest)) = (here, t.offer.clone(), t.record.dest.clone())
        else {
            return;
        };
        let Some(addr) = peer.addrs.first() else {
            return;
        };
        let plan = if offer.folder {
            Plan::Folder { top: dest }
        } else {
            Plan::File { wanted: dest }
        };
        let cancel = Arc::new(AtomicBool::new(false));
        t.fetching = Some(Arc::clone(&cancel));
        let job = fetch::Job {
            key,
            addr: SocketAddr::new(addr.ip().to_canonical(), offer.port),
            offer,
            manifest: t.manifest.clone(),
            plan,
            files_done: t.record.files_done,
            cancel,
        };
        fetch::spawn(job, self.events_tx.clone());
    }

    /// A peer joined (or came back): offers to it go out again, and fetches from it resume.
    pub fn on_peer_back(&mut self, ep: &mut Endpoint, peer: PeerId) {
        let keys: Vec<TransferKey> = self
            .transfers
            .values()
            .filter(|t| t.peer() == peer && !t.record.state.is_finished())
            .map(Transfer::key)
            .collect();
        for key in keys {
            let t = &self.transfers[&key];
            if t.record.outgoing {
                if let Some(offer) = t.offer.clone() {
                    if let Err(e @ AppDataError::Unsupported) =
                        Self::control(ep, peer, &Control::Offer(offer))
                    {
                        self.refused_by_peer(ep, key, e);
                    }
                }
            } else if t.record.state == State::Accepted && t.fetching.is_none() {
                let _ = Self::control(
                    ep,
                    peer,
                    &Control::Resume {
                        id: key.id,
                        file: t.record.files_done,
                        offset: 0,
                    },
                );
                self.start_fetch(ep, key);
            }
        }
    }

    /// A payload from a peer: a control message, done.
    pub fn on_app_data(&mut self, ep: &mut Endpoint, from: PeerId, data: &[u8]) {
        let c = match control::decode(data) {
            Ok(c) => c,
            Err(ControlError::OtherTag) => return,
            Err(ControlError::Malformed) => {
                let nick = ep.nick_of(from).unwrap_or("?").to_owned();
                return self.notice(format!(
                    "{} sent a malformed file-transfer message: ignored",
                    crate::ui::render::display_nick(&nick)
                ));
            }
        };
        let mine = TransferKey {
            offerer: self.me,
            id: c.id(),
        };
        let theirs = TransferKey {
            offerer: from,
            id: c.id(),
        };
        match c {
            Control::Offer(offer) => self.on_offer(ep, from, offer),
            Control::Cancel {
                by_offerer, reason, ..
            } => {
                let key = if by_offerer { theirs } else { mine };
                let Some(t) = self
                    .transfers
                    .get(&key)
                    .filter(|t| t.peer() == from && !t.record.state.is_finished())
                else {
                    return;
                };
                let (nick, name) = (Self::nick(ep, t), t.shown_name());
                let reason = crate::ui::render::sanitize(&reason);
                let line = if reason.is_empty() {
                    format!("{nick} cancelled {name}")
                } else {
                    format!("{nick} stopped {name}: {reason}")
                };
                self.finish_remote(ep, key, State::Cancelled, line);
            }
            other => {
                let Some(t) = self.transfers.get_mut(&mine).filter(|t| t.peer() == from) else {
                    return;
                };
                if t.record.state.is_finished() {
                    return;
                }
                let nick = Self::nick(ep, t);
                let name = t.shown_name();
                match other {
                    Control::Accept { .. } if t.record.state == State::Offered => {
                        t.record.state = State::Accepted;
                        self.save(mine);
                        self.notice(format!("{nick} accepted {name}"));
                    }
                    Control::Resume { .. } if t.record.state == State::Offered => {
                        t.record.state = State::Accepted;
                        self.save(mine);
                    }
                    Control::Decline { .. } => {
                        self.finish_remote(
                            ep,
                            mine,
                            State::Declined,
                            format!("{nick} declined {name}"),
                        );
                    }
                    Control::Done { .. } => self.sent_done(ep, mine),
                    _ => {}
                }
            }
        }
    }

    /// An offer from `from`: a new one is shown (or accepted, for `accept_from`); a known one
    /// updates the port and resumes, or is answered with how it ended.
    fn on_offer(&mut self, ep: &mut Endpoint, from: PeerId, offer: Offer) {
        let key = TransferKey {
            offerer: from,
            id: offer.id,
        };
        let nick = crate::ui::render::display_nick(ep.nick_of(from).unwrap_or("?"));
        if let Some(t) = self.transfers.get_mut(&key) {
            let answer = match t.record.state {
                State::Done => Some(Control::Done { id: key.id }),
                State::Declined => Some(Control::Decline { id: key.id }),
                State::Cancelled | State::Failed => Some(Control::Cancel {
                    id: key.id,
                    by_offerer: false,
                    reason: t
                        .record
                        .reason
                        .clone()
                        .unwrap_or_else(|| "cancelled".into()),
                }),
                State::Offered | State::Accepted => None,
            };
            if let Some(answer) = answer {
                let _ = Self::control(ep, from, &answer);
                return;
            }
            let same = t
                .offer
                .as_ref()
                .is_some_and(|o| o.token == offer.token && o.manifest_hash == offer.manifest_hash);
            if !same {
                return; // an offer that changed under the same id: not trusted
            }
            t.record.offer.port = offer.port;
            t.offer = Some(offer);
            self.save(key);
            self.start_fetch(ep, key);
            return;
        }
        let number = self.number();
        let record = Record {
            offerer: from.0,
            id: offer.id,
            outgoing: false,
            peer: from.0,
            peer_nick: ep.nick_of(from).unwrap_or("?").to_owned(),
            offer: StoredOffer::from_offer(&offer),
            source: None,
            dest: None,
            files_done: 0,
            bytes_done: 0,
            state: State::Offered,
            reason: None,
            created_ms: now_ms(),
            finished_ms: None,
        };
        let files_ok = (offer.files as usize) <= manifest::MAX_FILES
            && offer.manifest_len <= manifest::MAX_MANIFEST_BYTES
            && (offer.folder || offer.files == 1);
        let t = new_transfer(number, record, Some(offer.clone()), None);
        let (name, size) = (t.shown_name(), t.shown_size());
        self.transfers.insert(key, t);
        if !files_ok {
            let why = format!(
                "{nick} offered {name} with {} files (at most {} are taken): refused",
                offer.files,
                manifest::MAX_FILES
            );
            self.finish(ep, key, State::Failed, Some(why));
            return;
        }
        let auto = self
            .setup
            .accept_from
            .iter()
            .any(|n| ep.nick_of(from) == Some(n.as_str()));
        if auto {
            self.notice(format!(
                "{nick} offers {name} ({size}) — accepted (accept_from)"
            ));
            if let Err(e) = self.accept(ep, key, None) {
                self.error(e);
            }
        } else {
            self.notice(format!(
                "{nick} offers {name} ({size}) — /accept {number} or /decline {number}"
            ));
        }
    }

    /// The receiver says everything arrived and matched: the sender's end line.
    fn sent_done(&mut self, ep: &mut Endpoint, key: TransferKey) {
        let Some(t) = self.transfers.get_mut(&key) else {
            return;
        };
        let took = t.started.map(|(at, _)| at.elapsed());
        let resumed = match t.last_connection {
            Some((from, sent)) if from > 0 => format!(
                "; the last connection resumed at {} and sent {}",
                human_size(from),
                human_size(sent)
            ),
            _ => String::new(),
        };
        let line = format!(
            "sent {} to {} ({}{}{})",
            t.shown_name(),
            Self::nick(ep, t),
            t.shown_size(),
            took.map(|d| format!(" in {}", seconds(d)))
                .unwrap_or_default(),
            resumed
        );
        t.record.bytes_done = t.record.offer.size;
        self.finish(ep, key, State::Done, None);
        self.notice(line);
    }

    /// The peer ended a transfer: `line` says how.
    fn finish_remote(&mut self, ep: &mut Endpoint, key: TransferKey, state: State, line: String) {
        self.stop(key);
        if let Some(t) = self.transfers.get_mut(&key) {
            t.record.state = state;
            t.record.reason = Some(line.clone());
            t.record.finished_ms = Some(now_ms());
            if t.fetching.is_none() {
                remove_parts(t);
            }
        }
        let _ = ep;
        self.save(key);
        self.notice(line);
    }

    /// Ends a transfer on our side: stops its data, tells the peer, keeps the state, and
    /// (unless it is done) says why.
    fn finish(
        &mut self,
        ep: &mut Endpoint,
        key: TransferKey,
        state: State,
        reason: Option<String>,
    ) {
        self.stop(key);
        let Some(t) = self.transfers.get_mut(&key) else {
            return;
        };
        let was = t.record.state;
        t.record.state = state;
        t.record.reason.clone_from(&reason);
        t.record.finished_ms = Some(now_ms());
        let (peer, outgoing, name) = (t.peer(), t.record.outgoing, t.shown_name());
        let nick = Self::nick(ep, t);
        if t.fetching.is_none() && state != State::Done {
            remove_parts(t);
        }
        let message = match state {
            State::Done if !outgoing => Some(Control::Done { id: key.id }),
            State::Declined => Some(Control::Decline { id: key.id }),
            State::Cancelled | State::Failed if was != State::Offered || !outgoing => {
                Some(Control::Cancel {
                    id: key.id,
                    by_offerer: outgoing,
                    reason: reason.clone().unwrap_or_default(),
                })
            }
            // An offer that never went out is withdrawn quietly.
            State::Cancelled | State::Failed => Some(Control::Cancel {
                id: key.id,
                by_offerer: true,
                reason: reason.clone().unwrap_or_default(),
            }),
            _ => None,
        };
        if let Some(m) = message {
            if !matches!(reason.as_deref(), Some(r) if r.contains("cannot receive files")) {
                let _ = Self::control(ep, peer, &m);
            }
        }
        self.save(key);
        match state {
            State::Declined => self.notice(format!("declined {name} from {nick}")),
            State::Cancelled => {
                let dir = if outgoing { "to" } else { "from" };
                self.notice(format!("cancelled {name} ({dir} {nick})"));
            }
            State::Failed => self.error(reason.unwrap_or_default()),
            _ => {}
        }
    }

    /// Stops the data of a transfer: no more serving, and a running fetch stops.
    fn stop(&mut self, key: TransferKey) {
        let Some(t) = self.transfers.get(&key) else {
            return;
        };
        if let Some(flag) = &t.fetching {
            flag.store(true, Ordering::Release);
        }
        if let (true, Some(offer), Some(server)) = (t.record.outgoing, &t.offer, &self.server) {
            server.withdraw(&offer.token);
        }
    }

    /// A report from a data thread.
    pub fn on_data(&mut self, ep: &mut Endpoint, ev: DataEvent) {
        self.on_data_at(ep, ev, Instant::now());
    }

    /// [`Files::on_data`] at `now` (tests drive progress on a clock of their own).
    fn on_data_at(&mut self, ep: &mut Endpoint, ev: DataEvent, now: Instant) {
        match ev {
            DataEvent::Prepared { id, result } => self.prepared(ep, id, result),
            DataEvent::Serving { id, from } => {
                if let Some(t) = self.mine(id) {
                    t.started.get_or_insert((now, from));
                    t.rate.note(now, from);
                    if t.record.state == State::Offered {
                        t.record.state = State::Accepted;
                    }
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
                self.progress_line(key, now);
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
                if let Some(t) = self.mine(id) {
                    t.sent_this_run += sent;
                    t.last_connection = Some((from, sent));
                    t.record.bytes_done = t.record.bytes_done.max(from + sent);
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
                if let Some(t) = self.transfers.get_mut(&key) {
                    t.started.get_or_insert((now, from));
                    t.rate.note(now, from);
                }
            }
            DataEvent::FetchProgress { key, done } => {
                if let Some(t) = self.transfers.get_mut(&key) {
                    t.started.get_or_insert((now, done));
                    t.record.bytes_done = done;
                    t.rate.note(now, done);
                    t.retries = 0;
                    if std::mem::take(&mut t.told_interrupted) {
                        let line = format!("{}: resumed", t.shown_name());
                        self.notice(line);
                    }
                }
                self.progress_line(key, now);
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
                    t.record.files_done = index + 1;
                    if !t.record.offer.folder {
                        t.record.dest = Some(path);
                    }
                    self.save(key);
                }
            }
            DataEvent::FetchEnded { key, from, result } => self.fetch_ended(ep, key, from, result),
            DataEvent::Retry { key } => {
                if let Some(t) = self.transfers.get_mut(&key) {
                    t.retry_pending = false;
                }
                self.start_fetch(ep, key);
            }
        }
    }

    /// A progress line above the prompt for a transfer that has run a while, at most every
    /// [`PROGRESS_LINE_EVERY`]: visible without typing, and printed above a half-typed line,
    /// never into it. Not for scripts and programs (they get the end lines only).
    fn progress_line(&mut self, key: TransferKey, now: Instant) {
        if self.quiet {
            return;
        }
        let Some(t) = self.transfers.get_mut(&key) else {
            return;
        };
        let Some((started, _)) = t.started else {
            return;
        };
        let since = t.progress_shown.unwrap_or(started);
        if now.saturating_duration_since(since) < PROGRESS_LINE_EVERY {
            return;
        }
        t.progress_shown = Some(now);
        let size = t.record.offer.size;
        let done = t.record.bytes_done;
        let pct = done.saturating_mul(100).checked_div(size).unwrap_or(100);
        let rate = t.rate.per_sec().unwrap_or(0.0);
        let left = if rate > 0.0 {
            format!(
                ", {} left",
                seconds(Duration::from_secs_f64(
                    size.saturating_sub(done) as f64 / rate
                ))
            )
        } else {
            String::new()
        };
        let line = format!(
            "{} {} {}: {pct}% of {}, {}/s{left}",
            t.shown_name(),
            if t.record.outgoing { "to" } else { "from" },
            crate::ui::render::display_nick(&t.record.peer_nick),
            human_size(size),
            human_size(rate as u64),
        );
        self.notice(line);
    }

    fn mine(&mut self, id: u64) -> Option<&mut Transfer> {
        self.transfers.get_mut(&TransferKey {
            offerer: self.me,
            id,
        })
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
        if t.started.is_none() && result.is_ok() {
            t.started = Some((Instant::now(), from));
        }
        if t.record.state != State::Accepted {
            if t.record.state != State::Done {
                remove_parts(t); // cancelled while running
            }
            return;
        }
        let nick = Self::nick(ep, t);
        let name = t.shown_name();
        match result {
            Ok(()) => {
                let took = t.started.map(|(at, _)| at.elapsed()).unwrap_or_default();
                let resumed = t.started.map_or(0, |(_, f)| f);
                let line = format!(
                    "received {name} from {nick} ({} in {}{}) → {}",
                    t.shown_size(),
                    seconds(took),
                    if resumed > 0 {
                        format!("; resumed at {}", human_size(resumed))
                    } else {
                        String::new()
                    },
                    t.record
                        .dest
                        .as_deref()
                        .map(Path::display)
                        .map(|d| d.to_string())
                        .unwrap_or_default()
                );
                t.record.bytes_done = t.record.offer.size;
                self.finish(ep, key, State::Done, None);
                self.notice(line);
            }
            Err(e) if e.is_transient() => {
                let delay = RETRY_FIRST
                    .saturating_mul(1 << t.retries.min(6))
                    .min(RETRY_MAX);
                t.retries += 1;
                let tell = !t.told_interrupted && t.retries >= 2;
                t.told_interrupted |= tell;
                if !t.retry_pending {
                    t.retry_pending = true;
                    let tx = self.events_tx.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        let _ = tx.send(DataEvent::Retry { key });
                    });
                }
                if tell {
                    self.notice(format!(
                        "{name} from {nick}: {e}; it resumes when {nick} is reachable"
                    ));
                }
            }
            Err(FetchError::Cancelled) => {}
            Err(e) => {
                let why = match &e {
                    FetchError::Broken(why) => {
                        format!("stopped receiving {name} from {nick}: {why}")
                    }
                    FetchError::Disk(why) => format!("cannot receive {name} from {nick}: {why}"),
                    other => format!("{name} from {nick}: {other}"),
                };
                remove_parts(t);
                self.finish(ep, key, State::Failed, Some(why));
            }
        }
    }

    /// The `/files` table: every transfer of this run, and unfinished ones from before.
    pub fn list(&self, ep: &Endpoint, now: Instant) -> Vec<String> {
        let shown: Vec<&Transfer> = self
            .transfers
            .values()
            .filter(|t| t.number > 0 && (t.this_run || !t.record.state.is_finished()))
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
            let size = t.record.offer.size;
            let done = if t.record.state == State::Done {
                size
            } else {
                t.record.bytes_done
            };
            let pct = done.saturating_mul(100).checked_div(size).unwrap_or(100);
            let rate = t.rate.per_sec().filter(|_| {
                t.rate
                    .samples
                    .back()
                    .is_some_and(|(at, _)| now.saturating_duration_since(*at) < RATE_WINDOW)
            });
            let moving = t.record.state == State::Accepted;
            let state = match t.record.state {
                State::Offered if t.record.outgoing => "offered",
                State::Offered => "waiting for you",
                State::Accepted if t.record.outgoing && t.started.is_some() => "sending",
                State::Accepted if t.record.outgoing => "accepted",
                State::Accepted if t.fetching.is_some() => "receiving",
                State::Accepted => "interrupted",
                State::Done => "done",
                State::Declined => "declined",
                State::Cancelled => "cancelled",
                State::Failed => "failed",
            };
            let earlier = if t.this_run { "" } else { " (earlier run)" };
            rows.push(vec![
                t.number.to_string(),
                if t.record.outgoing { "to" } else { "from" }.into(),
                Self::nick(ep, t),
                t.shown_name(),
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

fn new_transfer(
    number: u32,
    record: Record,
    offer: Option<Offer>,
    manifest: Option<Manifest>,
) -> Transfer {
    Transfer {
        number,
        record,
        offer,
        manifest,
        this_run: true,
        fetching: None,
        started: None,
        sent_this_run: 0,
        last_connection: None,
        progress_shown: None,
        rate: Rate::default(),
        retries: 0,
        told_interrupted: false,
        retry_pending: false,
    }
}

/// Removes what an unfinished incoming transfer left: the `.part` of the file it was on (the
/// files already checked and in place stay).
fn remove_parts(t: &Transfer) {
    if t.record.outgoing {
        return;
    }
    let Some(dest) = &t.record.dest else { return };
    let part = match (&t.manifest, t.record.offer.folder) {
        (Some(m), true) => Plan::Folder { top: dest.clone() }
            .finals(m)
            .get(t.record.files_done as usize)
            .map(|f| names::part_of(f)),
        (_, false) => Some(names::part_of(dest)),
        (None, true) => None,
    };
    if let Some(part) = part {
        if std::fs::symlink_metadata(&part).is_ok_and(|m| m.is_file()) {
            let _ = std::fs::remove_file(part);
        }
    }
}

/// Bytes free for us in the file system of `dir`.
fn free_space(dir: &Path) -> Option<u64> {
    let s = nix::sys::statvfs::statvfs(dir).ok()?;
    Some(s.blocks_available().saturating_mul(s.fragment_size()))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A duration for people: `0.3 s`, `42 s`, `3 min 5 s`.
fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 10.0 {
        format!("{s:.1} s")
    } else if s < 60.0 {
        format!("{s:.0} s")
    } else {
        format!("{} min {} s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

/// A path as typed, with a leading `~` for the home directory.
fn expand_home(p: &str) -> PathBuf {
    crate::app::settings::expand_home(Path::new(p))
}

#[cfg(test)]
mod tests;
