//! The driver: one tokio task that runs the protocol core against a real UDP socket, a real
//! clock and the user's commands. It owns the [`Endpoint`]; after every wake-up (a datagram, the
//! timer, a command, a resolved name) it drains every datagram and every event the core has.

use crate::net::addr::{self, HostSpec};
use crate::net::discovery::Discovery;
use crate::net::socket::{self, Bound};
use crate::proto::{Endpoint, Event, PeerId, PeerState, Recipients};
use crate::store::journal::{format_history_line, HistoryFilter, Journal, Record};
use crate::ui::command::{self, Command};
use crate::ui::present::{self, Outstanding};
use crate::ui::render::Output;
use crate::ui::terminal::{Input, OutputSender, Shared};

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Datagrams (or typed lines) taken in one wake-up before the core builds its answers: what
/// arrives together is answered together (shared datagrams, one ack), and the bound keeps one
/// busy source from starving the others.
const BATCH: usize = 64;
/// How long a script's next line waits for a `/add` or `--peer` to be answered.
const SCRIPT_CONTACT_WAIT: Duration = Duration::from_secs(5);
/// How long `/quit` waits for peers to acknowledge the goodbye.
const QUIT_GRACE: Duration = Duration::from_secs(1);
/// How often the network interfaces are scanned for changes (a new network means announcing
/// at once; a scan is one cheap system call).
const INTERFACE_SCAN: Duration = Duration::from_secs(5);

/// Everything the driver needs to start.
pub struct Setup {
    /// The protocol core, already configured.
    pub endpoint: Endpoint,
    /// The bound socket.
    pub bound: Bound,
    /// Peers to contact at start (`--peer`).
    pub peers: Vec<HostSpec>,
    /// The port assumed for `/add HOST` without a port.
    pub default_port: u16,
    /// Announce on and listen to the LAN.
    pub discovery: bool,
    /// The journal (history, outbox, delivered state), if storage is available.
    pub journal: Option<Journal>,
    /// Input is a script, not a person: hold its lines while a contact it asked for is being
    /// made, so `printf '/add host\nhello\n' | tailchat` says hello to someone.
    pub scripted: bool,
}

/// Where the driver's output lines go: the terminal, or a channel in tests and benchmarks.
pub trait OutputSink: Send {
    /// Shows one line; must not block.
    fn print(&self, out: &Output);
}

impl OutputSink for OutputSender {
    fn print(&self, out: &Output) {
        OutputSender::print(self, out);
    }
}

impl OutputSink for std::sync::mpsc::Sender<Output> {
    fn print(&self, out: &Output) {
        let _ = self.send(out.clone());
    }
}

/// The user-interface side, as the driver sees it.
pub struct UiPort {
    /// Lines typed (or piped) by the user.
    pub input: mpsc::UnboundedReceiver<Input>,
    /// Where output lines go.
    pub output: Box<dyn OutputSink>,
    /// The prompt's nick and the nicks offered for completion.
    pub shared: Arc<Shared>,
}

/// A finished name lookup for `/add` or `--peer`.
struct Resolved {
    /// What the user typed, for messages.
    spec: HostSpec,
    /// The addresses, or why there are none.
    result: Result<Vec<SocketAddr>, String>,
}

/// The running chat: the core plus the state of the conversation with the user.
struct Chat {
    /// The protocol core.
    ep: Endpoint,
    /// Where output goes.
    ui: Box<dyn OutputSink>,
    /// Prompt nick and completion list.
    shared: Arc<Shared>,
    /// Our messages awaiting acknowledgement, for notices.
    outstanding: Outstanding,
    /// Whether the socket is IPv6 (IPv4 peers then use mapped addresses).
    ipv6: bool,
    /// Which address families the socket reaches, (v4, v6).
    reaches: (bool, bool),
    /// Port for `/add` without one.
    default_port: u16,
    /// Sends lookups' results back into the loop.
    resolved_tx: mpsc::UnboundedSender<Resolved>,
    /// When `/quit` gives up waiting for acks; `Some` once quitting.
    quit_by: Option<Instant>,
    /// Datagrams the kernel refused to send (logged, not fatal).
    send_errors: u64,
    /// Where the conversation is kept; `None` when storage is off. After a failure it stays
    /// open (so its lock keeps a second tailchat off this identity) but unused.
    journal: Option<Journal>,
    /// Writing failed: storage is off for the rest of the run.
    journal_failed: bool,
    /// Records appended since the last sync.
    journal_dirty: bool,
    /// Whether input is a script (see [`Setup::scripted`]).
    scripted: bool,
    /// Script lines are held until a contact is answered, or until this time.
    hold_until: Option<Instant>,
    /// Absent peers already told about ("bob is away: messages … wait"), until they are back.
    away_told: std::collections::HashSet<PeerId>,
}

/// Runs the chat until the user quits, input ends, or `shutdown` completes.
///
/// # Errors
/// Only if the socket cannot be handed to tokio; everything later is reported to the user and
/// survived.
pub async fn run(setup: Setup, ui: UiPort, shutdown: impl Future<Output = ()>) -> io::Result<()> {
    let socket = UdpSocket::from_std(setup.bound.socket)?;
    let port = socket.local_addr()?.port();
    let mut discovery = setup
        .discovery
        .then(|| Discovery::new(port, setup.bound.ipv6));
    let (resolved_tx, mut resolved_rx) = mpsc::unbounded_channel();
    let mut chat = Chat {
        ep: setup.endpoint,
        ui: ui.output,
        shared: ui.shared,
        outstanding: Outstanding::default(),
        ipv6: setup.bound.ipv6,
        reaches: (setup.bound.reaches_v4, setup.bound.reaches_v6),
        default_port: setup.default_port,
        resolved_tx,
        quit_by: None,
        send_errors: 0,
        journal: setup.journal,
        journal_failed: false,
        journal_dirty: false,
        scripted: setup.scripted,
        hold_until: None,
        away_told: std::collections::HashSet::new(),
    };
    for spec in setup.peers {
        chat.resolve(spec);
    }
    if let Some(d) = discovery.as_mut() {
        d.refresh(&socket);
        let names = d.targets().names();
        chat.print(Output::Notice(if names.is_empty() {
            "LAN discovery: no network interface to announce on yet (still watching); /add HOST works".to_owned()
        } else {
            format!("LAN discovery: announcing on {}", names.join(", "))
        }));
    }
    let mut scan = tokio::time::interval(INTERFACE_SCAN);
    scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    scan.tick().await; // the first tick is immediate; the scan above did its work
    let mut input = ui.input;
    let mut input_open = true;
    tokio::pin!(shutdown);
    let mut buf = vec![0u8; 65536];
    loop {
        let timer = chat.next_wakeup();
        tokio::select! {
            () = &mut shutdown, if chat.quit_by.is_none() => chat.quit(),
            r = socket.recv_from(&mut buf) => {
                let mut next = Some(r);
                let mut taken = 0;
                while let Some(r) = next.take() {
                    match r {
                        Ok((n, from)) => {
                            let from = socket::normalize(from);
                            chat.ep.handle_datagram(Instant::now(), from, &buf[..n]);
                        }
                        // ICMP errors surface here on some systems; the protocol copes.
                        Err(e) => tracing::debug!("receive error: {e}"),
                    }
                    taken += 1;
                    if taken < BATCH {
                        next = socket.try_recv_from(&mut buf).ok().map(Ok);
                    }
                }
            },
            () = sleep_until(timer) => {
                let now = Instant::now();
                if chat.hold_until.is_some_and(|t| t <= now) {
                    chat.hold_until = None;
                }
                chat.ep.handle_timeout(now);
            }
            line = input.recv(), if input_open && chat.hold_until.is_none() => {
                let mut next = Some(line);
                let mut taken = 0;
                while let Some(line) = next.take() {
                    match line {
                        Some(Input::Line(line)) => chat.on_line(&line),
                        Some(Input::Eof) | None => {
                            input_open = false;
                            chat.quit();
                            break;
                        }
                    }
                    taken += 1;
                    // A script's line waits while a contact it asked for is being made.
                    if taken < BATCH && chat.hold_until.is_none() {
                        next = input.try_recv().ok().map(Some);
                    }
                }
            },
            Some(r) = resolved_rx.recv() => chat.on_resolved(r),
            _ = scan.tick(), if discovery.is_some() => {
                if discovery.as_mut().is_some_and(|d| d.refresh(&socket)) {
                    chat.ep.announce_soon(Instant::now());
                }
            }
        }
        chat.flush(&socket, discovery.as_ref()).await;
        if let Some(by) = chat.quit_by {
            if chat.ep.leave_complete() || Instant::now() >= by {
                break;
            }
        }
    }
    chat.remember_addresses();
    chat.goodbye();
    Ok(())
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
        None => std::future::pending().await,
    }
}

impl Chat {
    fn print(&self, out: Output) {
        self.ui.print(&out);
    }

    fn next_wakeup(&self) -> Option<Instant> {
        [self.ep.poll_timeout(), self.quit_by, self.hold_until]
            .into_iter()
            .flatten()
            .min()
    }

    /// Records, then sends, then shows. What an event means for storage (a message heard, a
    /// delivery) is appended and synced before any datagram of this batch leaves, so no ack
    /// goes out for a message that is not on disk, and no message of ours leaves before it is.
    async fn flush(&mut self, socket: &UdpSocket, discovery: Option<&Discovery>) {
        let mut events = Vec::new();
        while let Some(e) = self.ep.poll_event() {
            self.record_event(&e);
            events.push(e);
        }
        self.sync_journal();
        while let Some(bytes) = self.ep.poll_announce() {
            if let Some(d) = discovery {
                d.announce(socket, &bytes).await;
            }
        }
        while let Some(t) = self.ep.poll_transmit() {
            let to = socket::for_socket(t.to, self.ipv6);
            if let Err(e) = socket.send_to(&t.bytes, to).await {
                self.send_errors += 1;
                tracing::debug!("cannot send to {to}: {e}");
            }
        }
        let mut changed_peers = false;
        for e in events {
            if matches!(
                e,
                Event::PeerJoined { .. }
                    | Event::PeerReachable { .. }
                    | Event::AddressUnanswered { .. }
            ) {
                self.hold_until = None; // the contact a script waited for is made (or hopeless)
            }
            if let Event::PeerJoined { peer, .. } | Event::PeerReachable { peer, .. } = &e {
                self.away_told.remove(peer); // back: its next absence is worth telling again
            }
            changed_peers |= matches!(
                e,
                Event::PeerJoined { .. } | Event::PeerRenamed { .. } | Event::PeerLeft { .. }
            );
            let ep = &self.ep;
            let name = |id: PeerId| ep.nick_of(id).unwrap_or("?").to_owned();
            if let Some(out) = present::event_output(&e, name, &mut self.outstanding) {
                self.ui.print(&out);
            }
        }
        if changed_peers {
            let nicks = self.present_nicks();
            if let Ok(mut n) = self.shared.nicks.lock() {
                *n = nicks;
            }
        }
    }

    fn on_line(&mut self, line: &str) {
        match command::parse(line) {
            Ok(None) => {}
            Ok(Some(cmd)) => self.on_command(cmd),
            Err(e) => self.print(Output::Error(e.to_string())),
        }
    }

    fn on_command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Say(text) => self.say(now, Recipients::Everyone, None, text),
            Command::Msg { nick, text } => match self.find_peer(&nick) {
                Ok((id, nick)) => self.say(now, Recipients::Peer(id), Some(nick), text),
                Err(e) => self.print(Output::Error(e)),
            },
            Command::Add(text) => match addr::parse(&text, self.default_port) {
                Ok(spec) => self.resolve(spec),
                Err(e) => self.print(Output::Error(e)),
            },
            Command::Nick(nick) => match self.ep.set_nick(now, &nick) {
                Ok(()) => {
                    if let Ok(mut n) = self.shared.nick.lock() {
                        n.clone_from(&nick);
                    }
                    self.print(Output::Notice(format!("you are now {nick}")));
                }
                Err(e) => self.print(Output::Error(e)),
            },
            Command::Peers => {
                for line in present::peers_lines(&self.ep.peers(), now) {
                    self.print(Output::Info(line));
                }
            }
            Command::Help => {
                for line in command::help_lines() {
                    self.print(Output::Info(line));
                }
            }
            Command::History { nick, count } => self.history(nick, count),
            Command::Quit => self.quit(),
        }
    }

    fn say(&mut self, now: Instant, to: Recipients, to_nick: Option<String>, text: String) {
        match self.ep.send_message(now, to, &text) {
            Ok(sent) if sent.recipients.is_empty() => self.print(Output::Error(
                "not sent: nobody is here yet — /add HOST[:PORT] to reach someone".to_owned(),
            )),
            Ok(sent) => {
                self.outstanding.sent(sent.id, &text, sent.recipients.len());
                let me = self.ep.nick().to_owned();
                self.append(&Record::Said {
                    at_ms: chrono::Utc::now().timestamp_millis(),
                    id: sent.id.0,
                    nick: me.clone(),
                    direct_to: match to {
                        Recipients::Peer(p) => Some(p),
                        Recipients::Everyone => None,
                    },
                    recipients: sent.recipients.clone(),
                    text: text.clone(),
                });
                // Told once per absence, not on every message: with a few peers away, a
                // notice per line would drown the conversation.
                let away: Vec<String> = self
                    .ep
                    .peers()
                    .into_iter()
                    .filter(|p| sent.recipients.contains(&p.id) && p.state != PeerState::Online)
                    .filter(|p| self.away_told.insert(p.id))
                    .map(|p| p.nick)
                    .collect();
                self.print(match to_nick {
                    Some(nick) => Output::Direct {
                        from: me,
                        to: Some(nick),
                        text,
                    },
                    None => Output::Group { nick: me, text },
                });
                if !away.is_empty() {
                    let kept = if self.storing() {
                        "kept on disk"
                    } else {
                        "kept in memory"
                    };
                    self.print(Output::Notice(format!(
                        "{} away: messages to them are {kept} and go out when they are back",
                        if away.len() == 1 {
                            format!("{} is", away[0])
                        } else {
                            format!("{} are", away.join(", "))
                        }
                    )));
                }
            }
            Err(e) => self.print(Output::Error(format!("not sent: {e}"))),
        }
    }

    /// Nicks of the peers that have not left (for completion and error messages).
    fn present_nicks(&self) -> Vec<String> {
        self.ep
            .peers()
            .into_iter()
            .filter(|p| p.state != PeerState::Left)
            .map(|p| p.nick)
            .collect()
    }

    /// Finds the one peer a `/msg` means: by nick, or `nick#idprefix` when nicks are shared.
    fn find_peer(&self, wanted: &str) -> Result<(PeerId, String), String> {
        let (nick, prefix) = match wanted.split_once('#') {
            Some((n, p)) => (n, Some(p.to_ascii_lowercase())),
            None => (wanted, None),
        };
        let candidates: Vec<_> = self
            .ep
            .peers()
            .into_iter()
            .filter(|p| p.state != PeerState::Left && p.nick == nick)
            .filter(|p| {
                prefix
                    .as_deref()
                    .is_none_or(|pre| p.id.to_string().starts_with(pre))
            })
            .collect();
        match candidates.as_slice() {
            [one] => Ok((one.id, one.nick.clone())),
            [] => {
                let here = self.present_nicks();
                Err(if here.is_empty() {
                    format!("no peer called '{wanted}'; nobody is here yet — /add HOST[:PORT]")
                } else {
                    format!("no peer called '{wanted}'; here now: {}", here.join(", "))
                })
            }
            many => {
                let names: Vec<String> = many
                    .iter()
                    .map(|p| {
                        let id = p.id.to_string();
                        let addr = p.addrs.first().map(|a| present::show_addr(*a));
                        format!("{}#{} ({})", p.nick, &id[..8], addr.unwrap_or_default())
                    })
                    .collect();
                Err(format!(
                    "'{wanted}' is ambiguous: {} — use /msg NICK#ID TEXT",
                    names.join(", ")
                ))
            }
        }
    }

    /// Looks a spec up off the loop; the answer comes back through `resolved_tx`.
    fn resolve(&mut self, spec: HostSpec) {
        if self.scripted {
            self.hold_until = Some(Instant::now() + SCRIPT_CONTACT_WAIT);
        }
        let tx = self.resolved_tx.clone();
        tokio::spawn(async move {
            let result = addr::resolve(&spec).await;
            let _ = tx.send(Resolved { spec, result });
        });
    }

    fn on_resolved(&mut self, r: Resolved) {
        let addrs = match r.result {
            Ok(a) => a,
            Err(e) => {
                self.hold_until = None;
                return self.print(Output::Error(e));
            }
        };
        let (v4, v6) = self.reaches;
        let usable: Vec<SocketAddr> = addrs
            .into_iter()
            .map(socket::normalize)
            .filter(|a| if a.is_ipv4() { v4 } else { v6 })
            .collect();
        if usable.is_empty() {
            return self.print(Output::Error(format!(
                "cannot reach {}: its addresses are of a family this socket does not speak (check --bind)",
                r.spec
            )));
        }
        let peers = self.ep.peers();
        let now = Instant::now();
        for a in &usable {
            if let Some(p) = peers
                .iter()
                .find(|p| p.state == PeerState::Online && p.addrs.contains(a))
            {
                self.print(Output::Notice(format!(
                    "already connected to {} at {}",
                    p.nick,
                    present::show_addr(*a)
                )));
                continue;
            }
            self.ep.add_address(now, *a);
            self.print(Output::Notice(format!(
                "contacting {}…",
                present::show_addr(*a)
            )));
        }
    }

    /// Appends a record; a failure turns storage off for the rest of the run, with a notice.
    fn append(&mut self, record: &Record) {
        if self.journal_failed {
            return;
        }
        let Some(journal) = self.journal.as_mut() else {
            return;
        };
        match journal.append(record) {
            Ok(()) => self.journal_dirty = true,
            Err(e) => self.storage_failed(&e.to_string()),
        }
    }

    fn sync_journal(&mut self) {
        if !self.journal_dirty {
            return;
        }
        self.journal_dirty = false;
        if self.journal_failed {
            return;
        }
        if let Some(Err(e)) = self.journal.as_mut().map(Journal::sync) {
            self.storage_failed(&e.to_string());
        }
    }

    /// Whether what happens is being kept on disk.
    fn storing(&self) -> bool {
        self.journal.is_some() && !self.journal_failed
    }

    fn storage_failed(&mut self, why: &str) {
        self.journal_failed = true;
        self.print(Output::Error(format!(
            "storage failed: {why} — the chat carries on, but history and undelivered messages are now kept in memory only"
        )));
    }

    /// What storage keeps of an event: messages heard, deliveries, and how to reach peers.
    fn record_event(&mut self, e: &Event) {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let record = match e {
            Event::Message {
                from,
                nick,
                id,
                direct,
                text,
            } => Record::Heard {
                at_ms: now_ms,
                from: *from,
                nick: nick.clone(),
                id: id.0,
                direct: *direct,
                text: text.clone(),
            },
            Event::Delivered { to, id, .. } => Record::Delivered { to: *to, id: id.0 },
            Event::PeerForgotten { peer, dropped, .. } => {
                for id in dropped {
                    self.append(&Record::Dropped {
                        to: *peer,
                        id: id.0,
                    });
                }
                return;
            }
            Event::PeerJoined { peer, .. } | Event::PeerRenamed { peer, .. } => {
                let Some(p) = self.ep.peer(*peer) else {
                    return;
                };
                Record::Peer {
                    id: p.id,
                    nick: p.nick,
                    addrs: p.addrs,
                    manual: p.found == crate::proto::Found::Manual,
                }
            }
            _ => return,
        };
        self.append(&record);
    }

    /// `/history [NICK] [N]`: the last N lines of the group, or of the conversation with NICK.
    fn history(&mut self, nick: Option<String>, count: Option<usize>) {
        // What this batch appended must be readable: flush it first.
        self.sync_journal();
        let Some(journal) = self.journal.as_ref().filter(|_| !self.journal_failed) else {
            return self.print(Output::Error(
                "no history: storage is off (see the notices above)".to_owned(),
            ));
        };
        let filter = match &nick {
            Some(n) => HistoryFilter::Direct { nick: n.clone() },
            None => HistoryFilter::Group,
        };
        match journal.history(&filter, count.unwrap_or(20)) {
            Ok((lines, warnings)) => {
                for w in warnings {
                    self.print(Output::Notice(w));
                }
                if lines.is_empty() {
                    let what = nick.unwrap_or_else(|| "the group".to_owned());
                    return self.print(Output::Info(format!("no history with {what} yet")));
                }
                for l in &lines {
                    self.print(Output::Info(format_history_line(l)));
                }
            }
            Err(e) => self.print(Output::Error(format!("cannot read history: {e}"))),
        }
    }

    fn quit(&mut self) {
        if self.quit_by.is_none() {
            self.ep.leave(Instant::now());
            self.quit_by = Some(Instant::now() + QUIT_GRACE);
        }
    }

    /// Before exiting: every peer's current addresses go to the journal (a peer may have
    /// moved since it joined), so the next run contacts it where it was last heard.
    fn remember_addresses(&mut self) {
        for p in self.ep.peers() {
            if p.state == PeerState::Offline {
                continue; // not heard in this run: its record is already the latest
            }
            self.append(&Record::Peer {
                id: p.id,
                nick: p.nick,
                addrs: p.addrs,
                manual: p.found == crate::proto::Found::Manual,
            });
        }
        self.sync_journal();
    }

    fn goodbye(&self) {
        let waiting = self.ep.undelivered();
        if waiting > 0 && self.storing() {
            self.print(Output::Notice(format!(
                "{waiting} message(s) not yet acknowledged are kept, and sent when you and they are both back"
            )));
        } else if waiting > 0 {
            self.print(Output::Error(format!(
                "{waiting} message(s) had not been acknowledged and are lost: storage is off"
            )));
        }
        if self.send_errors > 0 {
            tracing::info!("{} datagrams could not be sent", self.send_errors);
        }
    }
}
