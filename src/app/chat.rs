//! The running chat: the protocol core plus the conversation with the user — what each command
//! does, what each event becomes on disk and on screen, and when a script's next line may go.
//! No sockets and no terminal: the event loop ([`super::run`]) feeds it and moves its bytes.

use crate::app::control::{ClientId, FromClient};
use crate::app::files::Files;
use crate::app::json;
use crate::app::lookup::find_peer;
use crate::app::persist::{HistoryError, Persistence};
use crate::app::presence::{self, Presence, AUTO_AWAY_REASON};
use crate::app::tailnet::{News, Tailnet};
use crate::app::{Screen, Setup};
use crate::net::addr::{self, HostSpec};
use crate::proto::{Endpoint, Event, PeerId, PeerState, Recipients};
use crate::store::journal::{format_history_line, HistoryFilter, Record, Unshown};
use crate::ui::command::{self, Command};
use crate::ui::present::{self, Outstanding};
use crate::ui::render::Output;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How long `/quit` waits for peers to acknowledge the goodbye.
pub const QUIT_GRACE: Duration = Duration::from_secs(1);

/// How a run went, for a script's exit code (see [`Outcome::exit_code`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// A command typed (or piped) was invalid: unknown, misused, or naming a peer or host
    /// that does not exist.
    pub invalid_command: bool,
    /// A message had nobody to go to.
    pub nobody_to_send_to: bool,
    /// Messages still unacknowledged by some recipient when the run ended.
    pub undelivered: usize,
}

impl Outcome {
    /// Everything sent was delivered to every recipient.
    pub const DELIVERED: u8 = 0;
    /// tailchat could not start (socket, data directory, config file); clap's own usage
    /// errors exit 2.
    pub const COULD_NOT_START: u8 = 1;
    /// A command was invalid.
    pub const INVALID_COMMAND: u8 = 3;
    /// A message had nobody to go to.
    pub const NOBODY_TO_SEND_TO: u8 = 4;
    /// Some messages were not delivered within the wait.
    pub const UNDELIVERED: u8 = 5;

    /// The exit code: the first of these that applies — invalid command, nobody to send to,
    /// undelivered — else 0.
    pub fn exit_code(&self) -> u8 {
        if self.invalid_command {
            Self::INVALID_COMMAND
        } else if self.nobody_to_send_to {
            Self::NOBODY_TO_SEND_TO
        } else if self.undelivered > 0 {
            Self::UNDELIVERED
        } else {
            Self::DELIVERED
        }
    }
}
/// `/history` without a count shows this many lines.
const HISTORY_DEFAULT: usize = 20;
/// A long `/history` reaches the screen this many lines per wake-up.
const HISTORY_SLICE: usize = 1024;

/// The lines of a `/history`, read and formatted off the event loop (a long one reads and
/// formats for a while): notices about damage, then the lines; or the error to show.
pub type HistoryLines = Result<(Vec<String>, VecDeque<String>), String>;

/// [`HistoryLines`], numbered in the order the `/history` commands were typed.
pub type HistoryAnswer = (u64, HistoryLines);

/// A finished name lookup for `/add` or `--peer`.
#[derive(Debug)]
pub struct Resolved {
    /// What the user typed, for messages.
    pub spec: HostSpec,
    /// The addresses, or why there are none.
    pub result: Result<Vec<SocketAddr>, String>,
}

/// Where a waiting line goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dest {
    /// The terminal (or standard output).
    Screen,
    /// A program on the control socket.
    Client(ClientId),
}

/// A line waiting for the screen.
enum Line {
    /// For a person.
    Human(Output),
    /// A JSON object for a program.
    Json(String),
}

/// The chat's state between wake-ups.
pub struct Chat {
    /// The protocol core.
    pub(super) ep: Endpoint,
    /// Where lines, the prompt's nick and the completion list go.
    screen: Box<dyn Screen>,
    /// Our messages awaiting acknowledgement, so notices can quote them.
    outstanding: Outstanding,
    /// Which address families the socket reaches, (v4, v6): addresses of another family are
    /// refused with a hint instead of being probed in vain.
    reaches: (bool, bool),
    /// Port for `/add` without one.
    default_port: u16,
    /// Sends lookups' results back into the loop.
    resolved_tx: mpsc::UnboundedSender<Resolved>,
    /// When `/quit` gives up waiting for acks; `Some` once quitting.
    quit_by: Option<Instant>,
    /// The journal and its policy.
    persist: Persistence,
    /// Input is a script, not a person: hold its lines while a contact it asked for is being
    /// made, so `printf '/add host\nhello\n' | tailchat` says hello to someone.
    scripted: bool,
    /// How long a script waits: for a contact it asked for, and at the end for its messages
    /// to be acknowledged.
    wait: Duration,
    /// Script lines are held until a contact is answered, or until this time.
    hold_until: Option<Instant>,
    /// Input has ended: once every message is acknowledged, or at this time, quit.
    drain_until: Option<Instant>,
    /// What went wrong, for the exit code.
    outcome: Outcome,
    /// Each peer's nicks in this run, oldest first, for `/whois`.
    nick_history: HashMap<PeerId, Vec<String>>,
    /// The core's counters as last logged.
    last_stats: String,
    /// Lines for the screen from this wake-up, shown in order once the journal is synced, so
    /// that the echo of a message (`<alice> hi`) is never on screen before the message is on
    /// disk: a line the user saw as sent survives a crash.
    pending: Vec<(Dest, Line)>,
    /// Programs connected through the control socket, by connection.
    clients: BTreeMap<ClientId, mpsc::Sender<String>>,
    /// The connection whose command is being carried out: answers go to it.
    reply_to: Option<ClientId>,
    /// Output is JSON lines for a program (`--json`), input JSON commands.
    json: bool,
    /// Messages handed to the screen and not yet known to be written: per screen mark, the
    /// highest id shown per sender. Recorded as shown once the screen passes the mark.
    unconfirmed: Vec<(u64, BTreeMap<PeerId, u64>)>,
    /// Absent peers already told about ("bob is not here: messages … wait"), until they are back:
    /// with a few peers away, a notice per line would drown the conversation.
    away_told: HashSet<PeerId>,
    /// The tailnet: its devices contacted, who each peer is, the allow-list (off unless
    /// [`Chat::set_tailnet`]).
    pub(super) tailnet: Tailnet,
    /// File transfers (see [`crate::app::files`]).
    pub(super) files: Files,
    /// Where `/history` answers come back from the thread that reads them.
    history_tx: mpsc::UnboundedSender<HistoryAnswer>,
    /// Where the loop takes them (see [`Self::history_answer`]).
    history_rx: mpsc::UnboundedReceiver<HistoryAnswer>,
    /// `/history` commands asked, and answers shown: answers are shown in the order asked.
    history_asked: u64,
    /// See `history_asked`.
    history_shown: u64,
    /// Answers that came back before an earlier one, waiting for it.
    history_early: BTreeMap<u64, HistoryLines>,
    /// Auto-away, forgetting, notifications.
    presence: Presence,
}

impl Chat {
    /// The chat `setup` describes (its `peers` and `unshown` are for [`super::run`] and
    /// ignored here). Lookups it starts report back through `resolved_tx`.
    pub fn new(
        setup: Setup,
        screen: Box<dyn Screen>,
        resolved_tx: mpsc::UnboundedSender<Resolved>,
    ) -> Self {
        let Setup {
            endpoint: ep,
            session,
            journal,
            reaches,
            default_port,
            scripted,
            wait,
            json,
            files,
            presence,
            ..
        } = setup;
        let now = Instant::now();
        let mut presence = presence;
        if scripted || json {
            // Nobody types at a script: it is never idle.
            presence.auto_away = None;
        }
        let presence = Presence::new(presence, now);
        let files = Files::new(files, ep.peer_id(), scripted || json);
        let (history_tx, history_rx) = mpsc::unbounded_channel();
        let mut chat = Self {
            ep,
            screen,
            outstanding: Outstanding::default(),
            reaches,
            default_port,
            resolved_tx,
            quit_by: None,
            persist: Persistence::new(journal),
            scripted,
            wait,
            hold_until: None,
            drain_until: None,
            outcome: Outcome::default(),
            last_stats: String::new(),
            nick_history: HashMap::new(),
            pending: Vec::new(),
            clients: BTreeMap::new(),
            reply_to: None,
            json,
            unconfirmed: Vec::new(),
            away_told: HashSet::new(),
            tailnet: Tailnet::off(),
            files,
            history_tx,
            history_rx,
            history_asked: 0,
            history_shown: 0,
            history_early: BTreeMap::new(),
            presence,
        };
        if let Some(reason) = chat.presence.restored_away().map(str::to_owned) {
            if chat.ep.set_away(now, Some(&reason)).is_ok() {
                chat.print(Output::Notice(away_line("you are still away", &reason)));
            }
        }
        chat.show_file_lines();
        // From here on, messages heard are tracked until shown (see `Record::Shown`).
        let at_ms = chrono::Utc::now().timestamp_millis();
        let nick = chat.ep.nick().to_owned();
        chat.append(&Record::Opened {
            at_ms,
            session,
            nick,
        });
        chat
    }

    /// Uses `tailnet` from now on, and starts reading the device list.
    pub fn set_tailnet(&mut self, tailnet: Tailnet) {
        self.tailnet = tailnet;
        self.tailnet.start();
    }

    /// The core and the door in front of it, for the receive path: a datagram reaches
    /// `Endpoint::handle_datagram` only if [`Tailnet::admit`] lets it in.
    pub(super) fn receive_parts(&mut self) -> (&mut Endpoint, &mut Tailnet) {
        (&mut self.ep, &mut self.tailnet)
    }

    /// An answer from tailscaled's LocalAPI: a notice when its state changed, devices to
    /// contact, and what is now known of who the peers are.
    pub fn on_tailnet(&mut self, news: News) {
        let now = Instant::now();
        match news {
            News::Status(status) => {
                if let Some(line) = self.tailnet.on_status(now, status) {
                    self.print(Output::Notice(line));
                }
            }
            News::WhoIs(ip, answer) => self.tailnet.on_whois(now, ip, answer),
        }
        self.contact_tailnet(now);
        for line in self.tailnet.check_peers(&self.ep.peers()) {
            self.print(Output::Notice(line));
        }
    }

    /// Hands the core the tailnet addresses due now (see [`crate::app::tailnet::plan`]).
    fn contact_tailnet(&mut self, now: Instant) {
        let ep = &self.ep;
        let due = self.tailnet.due(now, || ep.peers());
        for addr in due {
            self.ep.add_address(now, addr);
        }
    }

    /// Queues one line for the screen (see [`Self::flush_screen`]); as JSON in JSON mode.
    pub fn print(&mut self, out: Output) {
        let line = if self.json || self.reply_to.is_some() {
            Line::Json(json::line(&out))
        } else {
            Line::Human(out)
        };
        self.pending.push((self.dest(), line));
    }

    /// Where an answer goes: the connection whose command it answers, else the screen.
    fn dest(&self) -> Dest {
        self.reply_to.map_or(Dest::Screen, Dest::Client)
    }

    /// Whether answers are JSON (JSON mode, or answering a connection).
    fn answers_json(&self) -> bool {
        self.json || self.reply_to.is_some()
    }

    /// Queues a JSON answer for whoever asked.
    fn answer_json(&mut self, text: String) {
        self.pending.push((self.dest(), Line::Json(text)));
    }

    /// A program connected through the control socket.
    pub fn client_connected(&mut self, id: ClientId, to: mpsc::Sender<String>) {
        self.clients.insert(id, to);
    }

    /// A line from a connected program: a JSON command, answered to it alone. `quit` ends
    /// the connection, not the chat.
    pub fn on_client(&mut self, msg: FromClient) {
        match msg {
            FromClient::Gone(id) => {
                self.clients.remove(&id);
            }
            FromClient::Line(id, line) => {
                self.reply_to = Some(id);
                match json::parse_command(&line) {
                    Ok(None) => {}
                    Ok(Some(Command::Quit)) => {
                        self.clients.remove(&id);
                    }
                    Ok(Some(cmd)) => self.on_command(cmd),
                    Err(e) => self.command_error(e),
                }
                self.reply_to = None;
            }
        }
    }

    /// Sends `line` to every connection; one that does not keep up is dropped.
    fn broadcast(&mut self, line: &str) {
        self.clients
            .retain(|_, to| to.try_send(line.to_owned()).is_ok());
    }

    /// Shows the queued lines. Call only when everything appended is synced.
    pub fn flush_screen(&mut self) {
        for (dest, line) in std::mem::take(&mut self.pending) {
            match (dest, line) {
                (Dest::Screen, line) => self.show_line(line),
                (Dest::Client(id), Line::Json(text)) => {
                    if self
                        .clients
                        .get(&id)
                        .is_some_and(|to| to.try_send(text).is_err())
                    {
                        self.clients.remove(&id);
                    }
                }
                (Dest::Client(_), Line::Human(_)) => {}
            }
        }
    }

    fn show_line(&self, line: Line) {
        match line {
            Line::Human(out) => self.screen.print(&out),
            Line::Json(text) => self.screen.print_json(text),
        }
    }

    /// When the loop must wake up next even if nothing arrives.
    pub fn next_wakeup(&self) -> Option<Instant> {
        [
            self.ep.poll_timeout(),
            self.quit_by,
            self.hold_until,
            self.drain_until,
            self.tailnet.next_wakeup(),
            self.presence.next_wakeup(self.ep.away().is_some()),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The timer fired: the core's timers, and a script's hold running out.
    pub fn on_timer(&mut self, now: Instant) {
        if self.hold_until.is_some_and(|t| t <= now) {
            self.hold_until = None;
        }
        self.ep.handle_timeout(now);
        self.contact_tailnet(now);
        let now_ms = chrono::Utc::now().timestamp_millis();
        let ep = &self.ep;
        let due = self
            .presence
            .on_timer(now, now_ms, ep.away().is_some(), || ep.peers());
        if due.go_away {
            self.set_away(now, Some(AUTO_AWAY_REASON.to_owned()));
        }
        for (id, silent) in due.forget {
            let days = silent.as_secs() / 86_400;
            if let Some(nick) = self.ep.nick_of(id) {
                let nick = crate::ui::render::display_nick(nick);
                self.print(Output::Notice(format!(
                    "forgetting {nick}: not heard for {days} days (forget_after in the config file)"
                )));
            }
            self.ep.forget(now, id);
        }
    }

    /// Goes away with `reason` (`Some`, perhaps empty) or comes back (`None`): peers are told,
    /// the journal keeps it for the next run, and the user sees it.
    fn set_away(&mut self, now: Instant, reason: Option<String>) {
        if let Err(e) = self.ep.set_away(now, reason.as_deref()) {
            return self.command_error(e);
        }
        self.append(&Record::Away {
            reason: reason.clone(),
        });
        self.print(Output::Notice(match &reason {
            None => "you are back".to_owned(),
            Some(r) => away_line("you are away", r),
        }));
    }

    /// Whether typed lines may be taken now (a script's line waits for its contact, and for
    /// the answer to its `/history`).
    pub fn accepts_input(&self) -> bool {
        self.hold_until.is_none() && !(self.scripted && self.history_asked > self.history_shown)
    }

    /// Whether the user has quit and the goodbye is acknowledged or has run out of time.
    /// A script whose input has ended first waits for its messages to be acknowledged.
    pub fn finished(&mut self, now: Instant) -> bool {
        if let Some(until) = self.drain_until {
            if self.ep.undelivered() == 0 || now >= until {
                self.drain_until = None;
                self.quit();
            }
        }
        self.quit_by
            .is_some_and(|by| self.ep.leave_complete() || now >= by)
    }

    /// Input has ended: a script first waits (up to its wait) for its messages to be
    /// acknowledged; a person quits at once.
    pub fn end_of_input(&mut self) {
        if self.scripted && self.ep.undelivered() > 0 && !self.quitting() {
            self.drain_until
                .get_or_insert_with(|| Instant::now() + self.wait);
        } else {
            self.quit();
        }
    }

    /// Whether quitting has started.
    pub fn quitting(&self) -> bool {
        self.quit_by.is_some()
    }

    /// Logs the core's counters (datagrams in and out, dropped and why, retransmissions), at
    /// debug level, when they changed since the last time.
    pub fn log_stats(&mut self) {
        let stats = format!("{:?} {:?}", self.ep.stats(), self.tailnet.counters());
        if stats != self.last_stats {
            tracing::debug!("counters: {stats}");
            self.last_stats = stats;
        }
    }

    /// How the run went so far.
    pub fn outcome(&self) -> Outcome {
        Outcome {
            undelivered: self.ep.undelivered(),
            ..self.outcome
        }
    }

    /// Shows an error in a command the user (or a script) gave, and remembers it for the
    /// exit code; a connected program's mistake is only told to it.
    fn command_error(&mut self, message: String) {
        if self.reply_to.is_none() {
            self.outcome.invalid_command = true;
        }
        self.print(Output::Error(message));
    }

    /// First half of a wake-up's output: takes the core's events and makes durable what they
    /// mean (appended and synced), before the loop lets any datagram leave. Returns the
    /// events, for [`Self::show`] once the datagrams are sent.
    pub fn take_events(&mut self) -> Vec<Event> {
        let now_ms = chrono::Utc::now().timestamp_millis();
        self.record_shown(self.screen.reached());
        let mut events = Vec::new();
        while let Some(e) = self.ep.poll_event() {
            tracing::debug!("event: {e:?}");
            for record in Persistence::records_for(&self.ep, &e, now_ms) {
                self.append(&record);
            }
            events.push(e);
        }
        self.sync();
        events
    }

    /// Second half, once the journal is synced: the lines of this wake-up's commands (our
    /// echoes among them), then what the events mean for the user.
    pub fn show(&mut self, events: Vec<Event>) {
        self.flush_screen();
        let mut shown = BTreeMap::new();
        let mut changed_peers = false;
        for e in events {
            if let Event::AddressUnanswered { addr } = &e {
                if self.tailnet.is_tailnet_probe(*addr) {
                    // Most of a tailnet's devices run no tailchat: not worth a line.
                    continue;
                }
            }
            if let Event::AppData { from, data } = &e {
                self.files.on_app_data(&mut self.ep, *from, data);
                continue;
            }
            if let Event::PeerJoined { peer, .. } | Event::PeerReachable { peer, .. } = &e {
                self.files.on_peer_back(&mut self.ep, *peer);
            }
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
            if let Event::PeerJoined { peer, addr, .. } = &e {
                self.tailnet.joined(*peer, *addr, Instant::now());
            }
            changed_peers |= matches!(
                e,
                Event::PeerJoined { .. } | Event::PeerRenamed { .. } | Event::PeerLeft { .. }
            );
            if let Event::Message { from, id, .. } = &e {
                shown.insert(*from, id.0);
            }
            if let Event::PeerJoined { peer, nick, .. }
            | Event::PeerRenamed {
                peer, new: nick, ..
            } = &e
            {
                let nicks = self.nick_history.entry(*peer).or_default();
                if nicks.last() != Some(nick) {
                    nicks.push(nick.clone());
                }
            }
            let ep = &self.ep;
            let name = |id: PeerId| ep.nick_of(id).unwrap_or("?").to_owned();
            let as_json = (self.json || !self.clients.is_empty())
                .then(|| json::event(&e, name, chrono::Utc::now().timestamp_millis()));
            if let Some(line) = &as_json {
                self.broadcast(line);
            }
            match as_json {
                Some(line) if self.json => self.screen.print_json(line),
                _ => {
                    let e = self.told_apart(e);
                    let ep = &self.ep;
                    let name = |id: PeerId| ep.nick_of(id).unwrap_or("?").to_owned();
                    let calls_us = match &e {
                        Event::Message { direct, text, .. } => {
                            *direct || mentions(text, self.ep.nick())
                        }
                        _ => false,
                    };
                    let out = match &e {
                        Event::PeerJoined { nick, addr, .. } => {
                            self.tailnet.who_at(*addr).map(|who| {
                                Output::Notice(present::joined_line(nick, *addr, Some(&who)))
                            })
                        }
                        _ => None,
                    };
                    let out =
                        out.or_else(|| present::event_output(&e, name, &mut self.outstanding));
                    if let Some(out) = out {
                        let out = match &e {
                            Event::Message { age, .. } => {
                                present::late(out, *age, chrono::Local::now())
                            }
                            _ => out,
                        };
                        let calls = self.presence.calls();
                        if let (true, true, Event::Message { nick, text, .. }) =
                            (calls_us, calls.notify, &e)
                        {
                            if self.presence.may_notify(Instant::now()) {
                                presence::notify(nick, calls.notify_text.then_some(text.as_str()));
                            }
                        }
                        let out = if calls_us {
                            Output::Mention(Box::new(out))
                        } else {
                            out
                        };
                        self.screen.print(&out);
                    }
                }
            }
        }
        self.await_shown(shown);
        if changed_peers {
            self.screen.peer_nicks(self.completion_names());
            let peers = self.ep.peers();
            for line in self.tailnet.check_peers(&peers) {
                self.print(Output::Notice(line));
            }
            self.flush_screen();
        }
        self.show_file_lines();
        self.flush_screen();
    }

    /// A report from a file transfer's data thread.
    pub fn on_file_event(&mut self, ev: crate::transfer::DataEvent) {
        self.files.on_data(&mut self.ep, ev);
        self.show_file_lines();
    }

    /// Queues what file transfers have to say (see [`Self::flush_screen`]).
    fn show_file_lines(&mut self) {
        for line in self.files.take_lines() {
            self.print(line);
        }
    }

    /// The names completion offers: each present peer's nick, with `#IDPREFIX` where nicks
    /// are shared (so `/msg bob#1d79e0c2` picks one).
    fn completion_names(&self) -> Vec<String> {
        self.display_names()
            .into_iter()
            .map(|(_, name)| name)
            .collect()
    }

    /// Each present peer with the name it is shown under (see [`present::display_names`]).
    fn display_names(&self) -> Vec<(PeerId, String)> {
        let peers = self.ep.peers();
        let present: Vec<(PeerId, &str)> = peers
            .iter()
            .filter(|p| p.state != PeerState::Left)
            .map(|p| (p.id, p.nick.as_str()))
            .collect();
        let names = present::display_names(&present);
        present.iter().map(|(id, _)| *id).zip(names).collect()
    }

    /// A message whose sender's nick looks like another present peer's (or ours) is shown
    /// under the name that tells them apart (`bob#1d79e0c2`): a peer cannot pass for another
    /// by choosing a look-alike nick.
    fn told_apart(&self, e: Event) -> Event {
        let Event::Message {
            from,
            nick,
            id,
            direct,
            action,
            age,
            text,
        } = e
        else {
            return e;
        };
        let peers = self.ep.peers();
        let mut present: Vec<(PeerId, &str)> = peers
            .iter()
            .filter(|p| p.state != PeerState::Left || p.id == from)
            .map(|p| {
                (
                    p.id,
                    if p.id == from {
                        nick.as_str()
                    } else {
                        p.nick.as_str()
                    },
                )
            })
            .collect();
        present.push((self.ep.peer_id(), self.ep.nick()));
        let names = present::display_names(&present);
        let nick = present
            .iter()
            .position(|(p, _)| *p == from)
            .and_then(|i| names.get(i).cloned())
            .unwrap_or(nick);
        Event::Message {
            from,
            nick,
            id,
            direct,
            action,
            age,
            text,
        }
    }

    /// Messages heard in an earlier run that never reached the screen (a crash between
    /// acknowledging and printing): shown now, under a separator, and then recorded as shown.
    pub fn replay(&mut self, unshown: Vec<Unshown>) {
        if unshown.is_empty() {
            return;
        }
        let mut shown = BTreeMap::new();
        if self.json {
            let lines: Vec<_> = unshown.iter().map(|u| u.line.clone()).collect();
            self.screen.print_json(json::history("missed", &lines));
        } else {
            self.screen
                .print(&Output::Notice("--- while you were away ---".to_owned()));
            for u in &unshown {
                self.screen
                    .print(&Output::Info(format_history_line(&u.line)));
            }
        }
        for u in unshown {
            let through = shown.entry(u.from).or_insert(u.id);
            *through = (*through).max(u.id);
        }
        self.await_shown(shown);
    }

    /// Messages just handed to the screen (highest id per sender), to record as shown once
    /// the screen has written them. While the screen lags, they join the newest unconfirmed
    /// entry under the later mark, so a stalled screen holds one entry, not one per wake-up.
    fn await_shown(&mut self, shown: BTreeMap<PeerId, u64>) {
        if shown.is_empty() {
            return;
        }
        let mark = self.screen.mark();
        let reached = self.screen.reached();
        match self.unconfirmed.last_mut() {
            Some((last, pending)) if *last > reached => {
                *last = mark;
                for (from, id) in shown {
                    let t = pending.entry(from).or_insert(id);
                    *t = (*t).max(id);
                }
            }
            _ => self.unconfirmed.push((mark, shown)),
        }
    }

    /// Records as shown the messages whose screen mark is at or below `reached`.
    fn record_shown(&mut self, reached: u64) {
        let done = self
            .unconfirmed
            .partition_point(|(mark, _)| *mark <= reached);
        let mut through: BTreeMap<PeerId, u64> = BTreeMap::new();
        for (_, shown) in self.unconfirmed.drain(..done) {
            for (from, id) in shown {
                let t = through.entry(from).or_insert(id);
                *t = (*t).max(id);
            }
        }
        for (from, id) in through {
            self.append(&Record::Shown { from, id });
        }
    }

    /// A typed line.
    pub fn on_line(&mut self, line: &str) {
        let now = Instant::now();
        let parsed = if self.json {
            json::parse_command(line)
        } else {
            command::parse(line).map_err(|e| e.to_string())
        };
        // Typing ends an auto-away (but `/away` and `/back` say themselves what they want).
        let ends_auto_away = self.presence.typed(now) && self.ep.away().is_some();
        if ends_auto_away && !matches!(parsed, Ok(Some(Command::Away(_)))) {
            self.set_away(now, None);
        }
        match parsed {
            Ok(None) => {}
            Ok(Some(cmd)) => self.on_command(cmd),
            Err(e) => self.command_error(e),
        }
    }

    fn on_command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Say(text) => self.say(now, Recipients::Everyone, None, text, false),
            Command::Me(text) => self.say(now, Recipients::Everyone, None, text, true),
            Command::Away(reason) => {
                self.presence.set_by_hand();
                if self.ep.away() == reason.as_deref() {
                    self.print(Output::Notice(match &reason {
                        None => "you are not away".to_owned(),
                        Some(r) => away_line("you are already away", r),
                    }));
                } else {
                    self.set_away(now, reason);
                }
            }
            Command::Forget(name) => match find_peer(&self.ep.peers(), &name) {
                Ok((id, nick)) => {
                    let here = self
                        .ep
                        .peer(id)
                        .is_some_and(|p| p.state == PeerState::Online);
                    if here {
                        self.command_error(format!(
                            "{nick} is here: /forget is for peers who have left for good"
                        ));
                    } else {
                        self.ep.forget(now, id);
                    }
                }
                Err(e) => self.command_error(e),
            },
            Command::Msg { nick, text } => match find_peer(&self.ep.peers(), &nick) {
                Ok((id, nick)) => {
                    // The echo says which one, when nicks are shared: `*-> bob#1d79e0c2*`.
                    let shown = self
                        .display_names()
                        .into_iter()
                        .find(|(p, _)| *p == id)
                        .map_or(nick, |(_, name)| name);
                    if let Some(reason) = self.ep.peer(id).and_then(|p| p.away) {
                        self.print(Output::Notice(away_line(
                            &format!("{shown} is away"),
                            &reason,
                        )));
                    }
                    self.say(now, Recipients::Peer(id), Some(shown), text, false);
                }
                Err(e) => self.command_error(e),
            },
            Command::Add(text) => match addr::parse(&text, self.default_port) {
                Ok(spec) => self.resolve(spec),
                Err(e) => self.command_error(e),
            },
            Command::Nick(nick) => match self.ep.set_nick(now, &nick) {
                Ok(()) => {
                    self.screen.nick(&nick);
                    self.print(Output::Notice(format!("you are now {nick}")));
                    let taken = self.ep.peers().into_iter().any(|p| {
                        p.state != PeerState::Left
                            && crate::ui::render::display_nick(&p.nick) == nick
                    });
                    if taken {
                        self.print(Output::Notice(format!(
                            "someone here is also called {nick}: peers will tell you apart by your id ({nick}#{})",
                            &self.ep.peer_id().to_string()[..8]
                        )));
                    }
                }
                Err(e) => self.command_error(e),
            },
            Command::Peers if self.answers_json() => {
                let tailnet = &self.tailnet;
                let peers = json::peers_noted(&self.ep.peers(), now, |p| tailnet.note(p));
                self.answer_json(peers);
            }
            Command::Peers => {
                let tailnet = &self.tailnet;
                let lines = present::peers_lines_noted(&self.ep.peers(), now, |p| tailnet.note(p));
                for line in lines {
                    self.print(Output::Info(line));
                }
            }
            Command::Whois(name) => match find_peer(&self.ep.peers(), &name) {
                Ok((id, _)) => {
                    if let Some(p) = self.ep.peer(id) {
                        let nicks = self.nick_history.get(&id).cloned().unwrap_or_default();
                        for line in present::whois_lines(&p, &nicks, now) {
                            self.print(Output::Info(line));
                        }
                    }
                }
                Err(e) => self.command_error(e),
            },
            Command::Help => {
                for line in command::help_lines() {
                    self.print(Output::Info(line));
                }
            }
            Command::History { nick, count } => self.history(nick, count),
            // A script's /quit, like its end, first waits for its messages to be acknowledged.
            Command::Quit => self.end_of_input(),
            Command::File(cmd) => {
                if let Err(e) = self.files.command(&mut self.ep, cmd) {
                    self.command_error(e);
                }
                self.show_file_lines();
            }
        }
    }

    fn say(
        &mut self,
        now: Instant,
        to: Recipients,
        to_nick: Option<String>,
        text: String,
        action: bool,
    ) {
        let sent = match self.ep.send_message_as(now, to, &text, action) {
            Ok(sent) if sent.recipients.is_empty() => {
                self.outcome.nobody_to_send_to = true;
                return self.print(Output::Error(
                    "not sent: nobody is here yet — /add HOST[:PORT] to reach someone".to_owned(),
                ));
            }
            Ok(sent) => sent,
            Err(e) => return self.print(Output::Error(format!("not sent: {e}"))),
        };
        self.outstanding.sent(sent.id, &text, &sent.recipients);
        let me = self.ep.nick().to_owned();
        let now_ms = chrono::Utc::now().timestamp_millis();
        self.append(&Persistence::said(&me, to, &sent, &text, action, now_ms));
        let away: Vec<String> = self
            .ep
            .peers()
            .into_iter()
            .filter(|p| sent.recipients.contains(&p.id) && p.state != PeerState::Online)
            .filter(|p| self.away_told.insert(p.id))
            .map(|p| p.nick)
            .collect();
        let to_json = match (to, &to_nick) {
            (Recipients::Peer(p), Some(n)) => Some((p, n.as_str())),
            _ => None,
        };
        let echo = json::sent(
            sent.id,
            &me,
            to_json,
            &sent.recipients,
            (&text, action),
            now_ms,
        );
        // Every connection hears of it (the one that asked, too), after the sync.
        for id in self.clients.keys().copied().collect::<Vec<_>>() {
            self.pending
                .push((Dest::Client(id), Line::Json(echo.clone())));
        }
        if self.json {
            self.pending.push((Dest::Screen, Line::Json(echo)));
        } else {
            // The user sees it too, even when a program sent it in their name.
            let reply_to = self.reply_to.take();
            let direct = to_nick.is_some();
            self.print(present::message_output(
                &me,
                to_nick.as_deref(),
                direct,
                action,
                &text,
            ));
            self.reply_to = reply_to;
        }
        if !away.is_empty() {
            let kept = if self.persist.storing() {
                "kept on disk"
            } else {
                "kept in memory"
            };
            let who = match away.as_slice() {
                [one] => format!("{one} is"),
                many => format!("{} are", many.join(", ")),
            };
            self.print(Output::Notice(format!(
                "{who} not here: messages to them are {kept} and go out when they are back"
            )));
        }
    }

    /// Looks a spec up off the loop; the answer comes back through `resolved_tx`.
    pub fn resolve(&mut self, spec: HostSpec) {
        if self.scripted {
            self.hold_until = Some(Instant::now() + self.wait);
        }
        let tx = self.resolved_tx.clone();
        tokio::spawn(async move {
            let result = addr::resolve(&spec).await;
            let _ = tx.send(Resolved { spec, result });
        });
    }

    /// A lookup finished: contact every usable address not already connected.
    pub fn on_resolved(&mut self, r: Resolved) {
        let addrs = match r.result {
            Ok(a) => a,
            Err(e) => {
                self.hold_until = None;
                return self.command_error(e);
            }
        };
        let (v4, v6) = self.reaches;
        let usable: Vec<SocketAddr> = addrs
            .into_iter()
            .map(|a| SocketAddr::new(a.ip().to_canonical(), a.port()))
            .filter(|a| if a.is_ipv4() { v4 } else { v6 })
            .collect();
        if usable.is_empty() {
            self.hold_until = None;
            return self.command_error(format!(
                "cannot reach {}: its addresses are of a family this socket does not speak (check --bind)",
                r.spec
            ));
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
            self.tailnet.user_added(*a);
            self.print(Output::Notice(format!(
                "contacting {}…",
                present::show_addr(*a)
            )));
        }
    }

    fn append(&mut self, record: &Record) {
        if let Some(failure) = self.persist.append(record) {
            self.print(Output::Error(failure));
        }
    }

    fn sync(&mut self) {
        if let Some(failure) = self.persist.sync() {
            self.print(Output::Error(failure));
        }
    }

    /// `/history [NICK] [N]`: the last N lines of the group, or of the conversation with NICK,
    /// read and formatted on a blocking thread, so that a long history never holds up the
    /// network; the answer comes back through [`Self::history_answer`].
    fn history(&mut self, nick: Option<String>, count: Option<usize>) {
        let filter = match &nick {
            Some(n) => HistoryFilter::Direct { nick: n.clone() },
            None => HistoryFilter::Group,
        };
        self.sync(); // what this wake-up appended must be readable
        let query = match self
            .persist
            .history_query(&filter, count.unwrap_or(HISTORY_DEFAULT))
        {
            Ok(query) => query,
            Err(why) => {
                return self.print(Output::Error(match why {
                    HistoryError::Off => {
                        "no history: storage is off (see the notices above)".to_owned()
                    }
                    HistoryError::Unreadable(e) => format!("cannot read history: {e}"),
                }))
            }
        };
        if self.answers_json() {
            // A program's answer is one object, to whoever asked: read it here (a program
            // asks for what it can take; the screen's long answers go through the thread).
            return match query.run() {
                Ok((lines, warnings)) => {
                    for w in warnings {
                        self.print(Output::Notice(w));
                    }
                    self.answer_json(json::history("history", &lines));
                }
                Err(e) => self.print(Output::Error(format!("cannot read history: {e}"))),
            };
        }
        self.history_asked += 1;
        let (seq, tx) = (self.history_asked, self.history_tx.clone());
        tokio::spawn(async move {
            let read = tokio::task::spawn_blocking(move || {
                let (lines, warnings) = query.run().map_err(|e| e.to_string())?;
                if lines.is_empty() {
                    let what = nick.unwrap_or_else(|| "the group".to_owned());
                    let none = format!("no history with {what} yet");
                    return Ok((warnings, VecDeque::from([none])));
                }
                // Each line freed as it is formatted: a long history is not held twice.
                let text = lines.into_iter().map(|l| format_history_line(&l)).collect();
                Ok((warnings, text))
            })
            .await;
            let answer = read.unwrap_or_else(|e| Err(format!("reading it failed: {e}")));
            let _ = tx.send((seq, answer));
        });
    }

    /// The next `/history` answer read (pending forever when none is asked).
    pub async fn history_answer(&mut self) -> HistoryAnswer {
        match self.history_rx.recv().await {
            Some(answer) => answer,
            // Never: the chat holds a sender.
            None => std::future::pending().await,
        }
    }

    /// Shows a `/history` answer, once every one asked before it is shown; a long one
    /// `HISTORY_SLICE` lines per wake-up, the rest sent back to come again, so the network
    /// is served between slices.
    pub fn on_history(&mut self, (seq, answer): HistoryAnswer) {
        self.history_early.insert(seq, answer);
        while let Some(answer) = self.history_early.remove(&(self.history_shown + 1)) {
            let seq = self.history_shown + 1;
            match answer {
                Ok((warnings, mut lines)) => {
                    for w in warnings {
                        self.print(Output::Notice(w));
                    }
                    for l in lines.drain(..lines.len().min(HISTORY_SLICE)) {
                        self.print(Output::Info(l));
                    }
                    if !lines.is_empty() {
                        let _ = self.history_tx.send((seq, Ok((Vec::new(), lines))));
                        return;
                    }
                }
                Err(e) => self.print(Output::Error(format!("cannot read history: {e}"))),
            }
            self.history_shown = seq;
        }
    }

    /// Starts leaving (once): peers are told, and the loop ends when they acknowledge or
    /// [`QUIT_GRACE`] runs out.
    pub fn quit(&mut self) {
        if self.quit_by.is_none() {
            self.ep.leave(Instant::now());
            self.quit_by = Some(Instant::now() + QUIT_GRACE);
        }
    }

    /// Before exiting: where every peer was last heard goes to the journal, and the user is
    /// told what is still waiting.
    pub fn goodbye(&mut self) {
        self.screen.flush();
        self.record_shown(self.screen.reached());
        for record in Persistence::addresses(&self.ep.peers()) {
            self.append(&record);
        }
        self.sync();
        let waiting = self.ep.undelivered();
        if waiting > 0 && self.persist.storing() {
            self.print(Output::Notice(format!(
                "{waiting} message(s) not yet acknowledged are kept, and sent when you and they are both back"
            )));
        } else if waiting > 0 {
            self.print(Output::Error(format!(
                "{waiting} message(s) had not been acknowledged and are lost: storage is off"
            )));
        }
        self.flush_screen();
    }
}

/// `what` (`you are away`, `bob is away`) with the reason, if one was given.
fn away_line(what: &str, reason: &str) -> String {
    if reason.is_empty() {
        what.to_owned()
    } else {
        format!("{what}: {reason}")
    }
}

/// Whether `text` calls `nick`: the nick as a word of its own, ignoring case (`alice:`,
/// `hi Alice!`, not `malice`).
pub fn mentions(text: &str, nick: &str) -> bool {
    let (text, nick) = (text.to_lowercase(), nick.to_lowercase());
    if nick.is_empty() {
        return false;
    }
    let word_char = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(&nick).any(|(at, _)| {
        let before = text.get(..at).and_then(|s| s.chars().next_back());
        let after = text.get(at + nick.len()..).and_then(|s| s.chars().next());
        !before.is_some_and(word_char) && !after.is_some_and(word_char)
    })
}

#[cfg(test)]
mod mention_tests {
    use super::mentions;

    #[test]
    fn a_nick_is_mentioned_as_a_word_in_any_case() {
        for text in [
            "alice: lunch?",
            "hi Alice!",
            "ALICE",
            "ping @alice.",
            "(alice)",
        ] {
            assert!(mentions(text, "alice"), "{text}");
        }
        for text in ["malice", "alices", "alice_2 here", "al ice", ""] {
            assert!(!mentions(text, "alice"), "{text}");
        }
        assert!(mentions("ça va, zoë ?", "Zoë"));
    }
}

#[cfg(test)]
mod history_tests {
    use super::*;

    /// A chat without storage, whose screen is a channel.
    fn chat() -> (Chat, std::sync::mpsc::Receiver<Output>) {
        let (screen, lines) = std::sync::mpsc::channel();
        let setup = Setup {
            endpoint: crate::app::start::test_endpoint("alice"),
            session: 1,
            peers: Vec::new(),
            default_port: 7654,
            reaches: (true, true),
            journal: None,
            scripted: true,
            wait: std::time::Duration::from_secs(5),
            json: false,
            control_dir: None,
            files: Default::default(),
            unshown: Vec::new(),
            presence: Default::default(),
        };
        let (resolved_tx, _) = mpsc::unbounded_channel();
        (Chat::new(setup, Box::new(screen), resolved_tx), lines)
    }

    fn infos(lines: &std::sync::mpsc::Receiver<Output>) -> Vec<String> {
        lines
            .try_iter()
            .filter_map(|o| match o {
                Output::Info(l) => Some(l),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn answers_are_shown_in_the_order_asked_and_long_ones_in_slices() {
        let (mut chat, lines) = chat();
        chat.history_asked = 2;
        assert!(!chat.accepts_input(), "a script waits for its answers");
        let long: Vec<String> = (0..HISTORY_SLICE + 10)
            .map(|i| format!("first {i}"))
            .collect();
        // The second answer comes back first: it waits.
        chat.on_history((2, Ok((Vec::new(), VecDeque::from(["second".to_owned()])))));
        chat.flush_screen();
        assert!(infos(&lines).is_empty());
        // The first: one slice now, the rest at the next wake-up, then the second.
        chat.on_history((1, Ok((Vec::new(), long.iter().cloned().collect()))));
        chat.flush_screen();
        assert_eq!(infos(&lines), long[..HISTORY_SLICE]);
        let rest = chat.history_answer().await;
        chat.on_history(rest);
        chat.flush_screen();
        let mut want = long[HISTORY_SLICE..].to_vec();
        want.push("second".to_owned());
        assert_eq!(infos(&lines), want);
        assert!(chat.accepts_input());
    }
}
