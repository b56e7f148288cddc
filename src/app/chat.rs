//! The running chat: the protocol core plus the conversation with the user — what each command
//! does, what each event becomes on disk and on screen, and when a script's next line may go.
//! No sockets and no terminal: the event loop ([`super::run`]) feeds it and moves its bytes.

use crate::app::lookup::{find_peer, present_nicks};
use crate::app::persist::{HistoryError, Persistence};
use crate::app::{Screen, Setup};
use crate::net::addr::{self, HostSpec};
use crate::proto::{Endpoint, Event, PeerId, PeerState, Recipients};
use crate::store::journal::{format_history_line, HistoryFilter, Record, Unshown};
use crate::ui::command::{self, Command};
use crate::ui::present::{self, Outstanding};
use crate::ui::render::Output;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How long a script's next line waits for a `/add` or `--peer` to be answered.
pub const SCRIPT_CONTACT_WAIT: Duration = Duration::from_secs(5);
/// How long `/quit` waits for peers to acknowledge the goodbye.
pub const QUIT_GRACE: Duration = Duration::from_secs(1);
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
    /// Script lines are held until a contact is answered, or until this time.
    hold_until: Option<Instant>,
    /// Lines for the screen from this wake-up, shown in order once the journal is synced, so
    /// that the echo of a message (`<alice> hi`) is never on screen before the message is on
    /// disk: a line the user saw as sent survives a crash.
    pending: Vec<Output>,
    /// Messages handed to the screen and not yet known to be written: per screen mark, the
    /// highest id shown per sender. Recorded as shown once the screen passes the mark.
    unconfirmed: Vec<(u64, BTreeMap<PeerId, u64>)>,
    /// Absent peers already told about ("bob is away: messages … wait"), until they are back:
    /// with a few peers away, a notice per line would drown the conversation.
    away_told: HashSet<PeerId>,
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
            ..
        } = setup;
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
            hold_until: None,
            pending: Vec::new(),
            unconfirmed: Vec::new(),
            away_told: HashSet::new(),
            history_tx,
            history_rx,
            history_asked: 0,
            history_shown: 0,
            history_early: BTreeMap::new(),
        };
        // From here on, messages heard are tracked until shown (see `Record::Shown`).
        let at_ms = chrono::Utc::now().timestamp_millis();
        chat.append(&Record::Opened { at_ms, session });
        chat
    }

    /// Queues one line for the screen (see [`Self::flush_screen`]).
    pub fn print(&mut self, out: Output) {
        self.pending.push(out);
    }

    /// Shows the queued lines. Call only when everything appended is synced.
    pub fn flush_screen(&mut self) {
        for out in self.pending.drain(..) {
            self.screen.print(&out);
        }
    }

    /// When the loop must wake up next even if nothing arrives.
    pub fn next_wakeup(&self) -> Option<Instant> {
        [self.ep.poll_timeout(), self.quit_by, self.hold_until]
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
    }

    /// Whether typed lines may be taken now (a script's line waits for its contact, and for
    /// the answer to its `/history`).
    pub fn accepts_input(&self) -> bool {
        self.hold_until.is_none() && !(self.scripted && self.history_asked > self.history_shown)
    }

    /// Whether the user has quit and the goodbye is acknowledged or has run out of time.
    pub fn finished(&self, now: Instant) -> bool {
        self.quit_by
            .is_some_and(|by| self.ep.leave_complete() || now >= by)
    }

    /// Whether quitting has started.
    pub fn quitting(&self) -> bool {
        self.quit_by.is_some()
    }

    /// First half of a wake-up's output: takes the core's events and makes durable what they
    /// mean (appended and synced), before the loop lets any datagram leave. Returns the
    /// events, for [`Self::show`] once the datagrams are sent.
    pub fn take_events(&mut self) -> Vec<Event> {
        let now_ms = chrono::Utc::now().timestamp_millis();
        self.record_shown(self.screen.reached());
        let mut events = Vec::new();
        while let Some(e) = self.ep.poll_event() {
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
            if let Event::Message { from, id, .. } = &e {
                shown.insert(*from, id.0);
            }
            let ep = &self.ep;
            let name = |id: PeerId| ep.nick_of(id).unwrap_or("?").to_owned();
            if let Some(out) = present::event_output(&e, name, &mut self.outstanding) {
                self.screen.print(&out);
            }
        }
        self.await_shown(shown);
        if changed_peers {
            self.screen.peer_nicks(present_nicks(&self.ep.peers()));
        }
    }

    /// Messages heard in an earlier run that never reached the screen (a crash between
    /// acknowledging and printing): shown now, under a separator, and then recorded as shown.
    pub fn replay(&mut self, unshown: Vec<Unshown>) {
        if unshown.is_empty() {
            return;
        }
        self.screen
            .print(&Output::Notice("--- while you were away ---".to_owned()));
        let mut shown = BTreeMap::new();
        for u in unshown {
            self.screen
                .print(&Output::Info(format_history_line(&u.line)));
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
            Command::Msg { nick, text } => match find_peer(&self.ep.peers(), &nick) {
                Ok((id, nick)) => self.say(now, Recipients::Peer(id), Some(nick), text),
                Err(e) => self.print(Output::Error(e)),
            },
            Command::Add(text) => match addr::parse(&text, self.default_port) {
                Ok(spec) => self.resolve(spec),
                Err(e) => self.print(Output::Error(e)),
            },
            Command::Nick(nick) => match self.ep.set_nick(now, &nick) {
                Ok(()) => {
                    self.screen.nick(&nick);
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
        let sent = match self.ep.send_message(now, to, &text) {
            Ok(sent) if sent.recipients.is_empty() => {
                return self.print(Output::Error(
                    "not sent: nobody is here yet — /add HOST[:PORT] to reach someone".to_owned(),
                ))
            }
            Ok(sent) => sent,
            Err(e) => return self.print(Output::Error(format!("not sent: {e}"))),
        };
        self.outstanding.sent(sent.id, &text, &sent.recipients);
        let me = self.ep.nick().to_owned();
        let now_ms = chrono::Utc::now().timestamp_millis();
        self.append(&Persistence::said(&me, to, &sent, &text, now_ms));
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
                "{who} away: messages to them are {kept} and go out when they are back"
            )));
        }
    }

    /// Looks a spec up off the loop; the answer comes back through `resolved_tx`.
    pub fn resolve(&mut self, spec: HostSpec) {
        if self.scripted {
            self.hold_until = Some(Instant::now() + SCRIPT_CONTACT_WAIT);
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
                return self.print(Output::Error(e));
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
            unshown: Vec::new(),
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
