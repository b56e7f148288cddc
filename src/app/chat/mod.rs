//! The running chat: the protocol core plus the conversation with the user — what each command
//! does, what each event becomes on disk and on screen, and when a script's next line may go.
//! No sockets and no terminal: the event loop ([`super::run`]) feeds it and moves its bytes.
//!
//! # Layout
//! - this file: [`Chat`] — its state, its start, its timers, the tailnet's news, the journal.
//! - `output`: where lines go (the screen, or a program on the control socket), and when.
//! - `commands`: what a typed line, or a program's command, does.
//! - `events`: what the core's events become: journal records first, then lines on screen.
//! - `shown`: messages recorded as shown once the screen has written them.
//! - `history`: `/history`, read off the event loop and shown in the order asked.
//! - `host_lookup`: the names of `/add` and `--peer` looked up off the loop, then contacted.
//! - `quitting`: leaving, and a script's wait for its messages to be acknowledged.
//! - `outcome`: how the run went, for a script's exit code.
//! - `mention`: whether a line calls us.
//! - `answering`: peers that stop answering (or answer again) told together, not one by one.

mod answering;
mod commands;
mod delivery;
mod events;
mod history;
mod host_lookup;
mod mention;
mod outcome;
mod output;
mod quitting;
mod shown;

pub use history::{HistoryAnswer, HistoryLines};
pub use host_lookup::Resolved;
pub use mention::mentions;
pub use outcome::Outcome;
pub use quitting::QUIT_GRACE;

use crate::app::control::ClientId;
use crate::app::files::Files;
use crate::app::persist::Persistence;
use crate::app::presence::{Presence, AUTO_AWAY_REASON};
use crate::app::tailnet::{News, Tailnet};
use crate::app::{Screen, Setup};
use crate::proto::{Endpoint, MessageId, PeerId, PeerState};
use crate::store::journal::Record;
use crate::ui::present::{Outstanding, ShownNames};
use crate::ui::render::Output;
use output::{Dest, Line};

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// A script that discovers its LAN starts once this long has passed without a new peer after
/// the first one joined: the others answer the same announcement within a few milliseconds
/// on a LAN, well within this.
const DISCOVERY_QUIET: Duration = Duration::from_millis(300);
/// The longest a script waits for its LAN before its first line: announcements go out at
/// start and 0.5 s later, and peers answer within milliseconds, so a LAN silent for this long
/// has nobody (a script that only talks across a tailnet is not held longer than this).
const DISCOVERY_WAIT_MAX: Duration = Duration::from_millis(1500);
/// A script's input waits while the queue to a peer that is answering is this full (a share
/// of [`crate::proto::Limits::max_queued_items`]).
const INPUT_PAUSE_FULLNESS: f64 = 0.5;
/// The longest a script waits at start for the peers it knew from earlier runs (a few round
/// trips across a tailnet, with a Hello lost on the way); also, after a contact it asked for
/// answered, for the peers that contact passed on.
const KNOWN_WAIT_MAX: Duration = Duration::from_secs(3);
/// How often a script holding for passed-on peers looks again whether they are still tried.
const EXCHANGE_POLL: Duration = Duration::from_millis(50);

/// How soon the loop looks again whether the screen has written the lines handed to it.
const CONFIRM_SHOWN_EVERY: Duration = Duration::from_millis(25);
/// After this long, a `/msg` to a peer who is away says so again (the notice has scrolled away).
const AWAY_REMIND: Duration = Duration::from_secs(600);

/// For how long after lines were handed to the screen the loop keeps looking.
const CONFIRM_SHOWN_FOR: Duration = Duration::from_secs(2);

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
    /// The UDP port we listen on: `/add` of one of our own addresses with it is ourselves.
    own_port: u16,
    /// The one address our socket listens on, when `--bind` named one (else every address).
    own_bind: Option<std::net::IpAddr>,
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
    /// A script with LAN discovery on: its lines are held at start until the LAN has
    /// answered (no new peer for [`DISCOVERY_QUIET`] after one joined), at most until this
    /// time, so its first message reaches everyone on the LAN, not the first to answer.
    discovery_hold: Option<Instant>,
    /// A script: the peers it knew from earlier runs and contacts at start, until each has
    /// answered or [`KNOWN_WAIT_MAX`] has passed (then `known_hold`): its lines are held
    /// meanwhile, so that a message to them is not said to wait for peers who are a moment
    /// from joining.
    awaiting_known: HashSet<PeerId>,
    /// When a script stops waiting for `awaiting_known`.
    known_hold: Option<Instant>,
    /// A script whose contact answered: its lines wait, until this time at most, while the
    /// peers that contact passed on (peer exchange) are being tried, so that its first
    /// message reaches them too.
    exchange_hold: Option<Instant>,
    /// See [`Setup::awaited`].
    awaited: Option<Vec<String>>,
    /// The addresses a script's `/add` and `--peer` contacted (until said not to answer).
    script_added: HashSet<std::net::SocketAddr>,
    /// An address given to contact (`--peer`, `/add`) was refused here (the allow-list's, or
    /// our own): said at once, and not blamed on the wait later.
    added_refused: bool,
    /// A script's lines not sent for want of anyone to send them to, after the first (which
    /// was said): counted, and said once at the end.
    unsent_more: usize,
    /// The id of this run's first message: a script's wait at the end and its exit code are
    /// about its own messages, not those an earlier run left waiting.
    first_msg: MessageId,
    /// Input has ended: once every message is acknowledged, or at this time, quit.
    drain_until: Option<Instant>,
    /// What went wrong, for the exit code.
    outcome: Outcome,
    /// Each peer's nicks in this run, oldest first, for `/whois`.
    /// Peers being forgotten for `forget_after`, with how many days they were not heard:
    /// their forgetting is said in one line, with the messages dropped.
    forgetting_unheard: HashMap<PeerId, u64>,
    /// Peers not heard for `forget_after` but kept, since messages wait for them (said once).
    kept_unheard: std::collections::HashSet<PeerId>,
    nick_history: HashMap<PeerId, Vec<String>>,
    /// The present peers' names (and ours) as of the endpoint's roster version, to name the
    /// sender of each message (rebuilt only when someone joins, leaves or is renamed).
    shown_names: Option<(u64, ShownNames)>,
    /// The core's counters as last logged.
    last_stats: String,
    /// Lines for the screen from this wake-up, shown in order once the journal is synced, so
    /// that the echo of a message (`<alice> hi`) is never on screen before the message is on
    /// disk: a line the user saw as sent survives a crash.
    pending: Vec<(Dest, Line)>,
    /// The highest id of our messages echoed among the lines pending: marked shown once the
    /// screen has written them, so that one sent but never echoed (a crash between) is shown
    /// at the next start.
    own_echoed: Option<u64>,
    /// Peers that stopped answering, or answer again, waiting to be told together.
    answering: answering::AnsweringNotices,
    /// Late-delivery notices waiting to be told together.
    delivery: delivery::DeliveryNotices,
    /// Programs connected through the control socket, by connection.
    clients: BTreeMap<ClientId, mpsc::Sender<String>>,
    /// The connection whose command is being carried out: answers go to it.
    reply_to: Option<ClientId>,
    /// Output is JSON lines for a program (`--json`), input JSON commands.
    json: bool,
    /// Messages handed to the screen and not yet known to be written: per screen mark, the
    /// highest id shown per sender. Recorded as shown once the screen passes the mark.
    unconfirmed: Vec<(u64, BTreeMap<PeerId, u64>)>,
    /// File transfers whose end lines were handed to the screen, by screen mark: told once
    /// the screen has written them (`Files::told`), so a crash before then says them again.
    files_unconfirmed: Vec<(u64, Vec<crate::transfer::TransferKey>)>,
    /// File transfers whose end lines wait among the lines for the screen: given a mark in
    /// [`Self::files_unconfirmed`] when they are handed to it.
    files_to_mark: Vec<crate::transfer::TransferKey>,
    /// Until when the loop looks every [`CONFIRM_SHOWN_EVERY`] whether the screen has written
    /// what it was handed: a while after lines were handed to it, not for ever (a screen that
    /// stopped, Ctrl-S or a pager, is confirmed at the next ordinary wake-up).
    confirm_until: Option<Instant>,
    /// Absent peers already told about ("bob is not here: messages … wait"), until they are back:
    /// with a few peers away, a notice per line would drown the conversation.
    away_told: HashSet<PeerId>,
    /// The away reason last shown per peer (its notice, or before a `/msg` to it), and when:
    /// a `/msg` says it again only when it changed or [`AWAY_REMIND`] has passed, not right
    /// under the notice that just said it.
    away_shown: HashMap<PeerId, (String, Instant)>,
    /// Our nick when we were last told a peer here goes by one like it (said once each).
    clash_told: Option<String>,
    /// The rest of a replay of messages not shown in an earlier run ([`Chat::replay`]),
    /// going out as the screen takes it.
    paced: std::collections::VecDeque<shown::Paced>,
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
            awaited,
            wait,
            json,
            files,
            presence,
            ..
        } = setup;
        let first_msg = ep.next_message_id();
        let now = Instant::now();
        let mut presence = presence;
        if scripted || json {
            // Nobody types at a script: it is never idle.
            presence.auto_away = None;
        }
        let presence = Presence::new(presence, now);
        let own_port = files.port;
        let own_bind = files.bind.filter(|ip| !ip.is_unspecified());
        let files = Files::new(files, ep.peer_id(), scripted || json);
        let (history_tx, history_rx) = mpsc::unbounded_channel();
        let mut chat = Self {
            ep,
            screen,
            outstanding: Outstanding::default(),
            reaches,
            default_port,
            own_port,
            own_bind,
            resolved_tx,
            quit_by: None,
            persist: Persistence::new(journal),
            scripted,
            wait,
            hold_until: None,
            discovery_hold: None,
            exchange_hold: None,
            awaiting_known: HashSet::new(),
            known_hold: None,
            awaited,
            script_added: HashSet::new(),
            added_refused: false,
            unsent_more: 0,
            first_msg,
            drain_until: None,
            outcome: Outcome::default(),
            last_stats: String::new(),
            nick_history: HashMap::new(),
            forgetting_unheard: HashMap::new(),
            kept_unheard: std::collections::HashSet::new(),
            shown_names: None,
            pending: Vec::new(),
            own_echoed: None,
            clients: BTreeMap::new(),
            answering: answering::AnsweringNotices::default(),
            delivery: delivery::DeliveryNotices::default(),
            reply_to: None,
            json,
            unconfirmed: Vec::new(),
            files_unconfirmed: Vec::new(),
            files_to_mark: Vec::new(),
            confirm_until: None,
            away_told: HashSet::new(),
            away_shown: HashMap::new(),
            clash_told: None,
            paced: std::collections::VecDeque::new(),
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
        let at_ms = crate::clock::now_ms();
        let nick = chat.ep.nick().to_owned();
        chat.append(&Record::Opened {
            at_ms,
            session,
            nick,
        });
        chat
    }

    /// A script that announces itself on the LAN: its lines wait until the LAN has answered
    /// (see [`Self::discovery_hold`]), at most [`DISCOVERY_WAIT_MAX`] (or `--wait`, if less).
    pub fn hold_for_discovery(&mut self, now: Instant) {
        if self.scripted {
            let cap = now + self.wait.min(DISCOVERY_WAIT_MAX);
            self.discovery_hold = Some(cap);
            self.hold_until = Some(self.hold_until.map_or(cap, |t| t.max(cap)));
            // (A lookup asked for with --peer may hold it longer, up to --wait.)
        }
    }

    /// A script: its lines wait until the peers it knew from earlier runs (contacted at start,
    /// see [`crate::app::start::endpoint`]) have answered, at most [`KNOWN_WAIT_MAX`] (or
    /// `--wait`, if less).
    pub fn hold_for_known(&mut self, now: Instant) {
        if !self.scripted {
            return;
        }
        let peers = self.ep.peers();
        let names_it = |n: &String, p: &crate::proto::PeerInfo| {
            *n == p.nick || crate::app::lookup::by_id_prefix(n, &p.nick, &p.id.to_string())
        };
        // A name no known peer goes by (a typo, or someone met under another nick): all are
        // waited for, so that what the error then says of who is here is true.
        let unknown = self
            .awaited
            .as_ref()
            .is_some_and(|names| names.iter().any(|n| !peers.iter().any(|p| names_it(n, p))));
        let named = |p: &crate::proto::PeerInfo| {
            unknown
                || self
                    .awaited
                    .as_ref()
                    .is_none_or(|names| names.iter().any(|n| names_it(n, p)))
        };
        self.awaiting_known = peers
            .iter()
            .filter(|p| p.state == PeerState::Offline && !p.addrs.is_empty() && named(p))
            .map(|p| p.id)
            .collect();
        if !self.awaiting_known.is_empty() {
            let cap = now + self.wait.min(KNOWN_WAIT_MAX);
            self.known_hold = Some(cap);
            self.hold_until = Some(self.hold_until.map_or(cap, |t| t.max(cap)));
        }
    }

    /// Uses `tailnet` from now on, and starts reading the device list.
    pub fn set_tailnet(&mut self, tailnet: Tailnet) {
        self.tailnet = tailnet;
        self.tailnet.start();
        // Remembered peers the allow-list keeps out would otherwise only ever be "not here".
        let peers = self.ep.peers();
        let names = self.known_names(&peers);
        let shut: Vec<String> = peers
            .iter()
            .filter(|p| self.tailnet.shuts_out(&p.addrs))
            .map(|p| names.name_of(p.id, &p.nick))
            .collect();
        if !shut.is_empty() {
            let who = they_are(&shut);
            self.print(Output::Notice(format!(
                "{who} known only at addresses your allow-list refuses: not contacted there while it stands (messages to them wait until they reach you from an address it admits)"
            )));
        }
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

    /// When the loop must wake up next even if nothing arrives.
    pub fn next_wakeup(&self) -> Option<Instant> {
        // Lines handed to the screen are recorded as shown once it has written them, which
        // takes it a moment: soon, not at whatever wakes the loop next (seconds, when idle),
        // so a crash meanwhile repeats a few lines at most.
        let now = Instant::now();
        let waiting = !self.unconfirmed.is_empty() || !self.files_unconfirmed.is_empty();
        let confirm = (waiting && self.confirm_until.is_some_and(|t| t > now))
            .then(|| now + CONFIRM_SHOWN_EVERY);
        let replay = (!self.paced.is_empty()).then(|| now + shown::PACED_EVERY);
        [
            confirm,
            replay,
            self.ep.poll_timeout(),
            self.quit_by,
            self.hold_until,
            self.drain_until,
            self.tailnet.next_wakeup(),
            self.presence.next_wakeup(self.ep.away().is_some()),
            self.answering.next_wakeup(),
            self.delivery.next_wakeup(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The timer fired: the core's timers, and a script's hold running out.
    pub fn on_timer(&mut self, now: Instant) {
        self.pace_more();
        self.print_gathered(now, false);
        if self.hold_until.is_some_and(|t| t <= now) {
            // Peers the contact passed on are still being tried: a little longer.
            if let Some(cap) = self.exchange_hold.filter(|&cap| cap > now) {
                if self.ep.learning_peers(now) {
                    self.hold_until = Some((now + EXCHANGE_POLL).min(cap));
                }
            }
        }
        if self.hold_until.is_some_and(|t| t <= now) {
            // A script goes on without what it waited for; an address it added that has not
            // answered is said (a person sees "no answer" later, as the probe goes on).
            if self.scripted {
                for addr in self.ep.unanswered_added() {
                    // Its own /add and --peer, not the tailnet's devices (told otherwise); once.
                    if self.script_added.remove(&addr) {
                        self.print(Output::Notice(format!(
                            "no answer from {} within {} (--wait): going on without it",
                            crate::ui::present::show_addr(addr),
                            crate::app::files::seconds(self.wait)
                        )));
                    }
                }
            }
            self.hold_until = None;
            self.discovery_hold = None;
            self.known_hold = None;
            self.exchange_hold = None;
            self.awaiting_known.clear();
        }
        self.ep.handle_timeout(now);
        self.contact_tailnet(now);
        let now_ms = crate::clock::now_ms();
        let ep = &self.ep;
        let due = self
            .presence
            .on_timer(now, now_ms, ep.away().is_some(), || ep.peers());
        if due.go_away {
            // Not kept for the next run: whoever starts tailchat again is at the keyboard
            // (a window closed while idle-away began the next run "away: idle").
            self.set_away_kept(now, Some(AUTO_AWAY_REASON.to_owned()), false);
        }
        for (id, silent) in due.forget {
            let days = silent.as_secs() / 86_400;
            // Never the user's messages without a word from the user: one who has some
            // waiting (a clock set weeks ahead looks the same as a month away) is kept, said
            // once a run, for the user to /forget.
            let (nick, waiting) = self
                .ep
                .peer(id)
                .map_or_else(Default::default, |p| (p.nick, p.undelivered));
            if waiting > 0 {
                if self.kept_unheard.insert(id) {
                    let name = self.current_names().name_of(id, &nick);
                    self.print(Output::Notice(format!(
                        "{name} not heard for {days} days (forget_after), but {} {} for them: kept — /forget {name} drops them",
                        crate::ui::present::messages(waiting),
                        crate::ui::present::wait(waiting)
                    )));
                }
                continue;
            }
            // Said with the event, in one line with what it drops.
            self.forgetting_unheard.insert(id, days);
            self.ep.forget(now, id);
        }
    }

    /// Goes away with `reason` (`Some`, perhaps empty) or comes back (`None`): peers are told,
    /// the journal keeps it for the next run, and the user sees it.
    fn set_away(&mut self, now: Instant, reason: Option<String>) {
        self.set_away_kept(now, reason, true);
    }

    /// [`Self::set_away`], kept in the journal for the next run only if `kept`.
    fn set_away_kept(&mut self, now: Instant, reason: Option<String>, kept: bool) {
        if let Err(e) = self.ep.set_away(now, reason.as_deref()) {
            return self.command_error(e);
        }
        if kept {
            self.append(&Record::Away {
                reason: reason.clone(),
            });
        }
        self.print_own_change(match &reason {
            None => "you are back".to_owned(),
            Some(r) => away_line("you are away", r),
        });
    }

    /// Whether typed lines may be taken now (a script's line waits for its contact, and for
    /// the answer to its `/history`). None after `/quit`: input ends there, and lines after it
    /// are not read (they are not errors).
    pub fn accepts_input(&self) -> bool {
        self.hold_until.is_none()
            && !(self.scripted
                && (self.history_asked > self.history_shown || !self.paced.is_empty()))
            // A script that writes faster than its peers acknowledge waits for them, rather
            // than having its messages refused once a queue is full.
            && !(self.scripted && self.ep.fullest_answering_queue() >= INPUT_PAUSE_FULLNESS)
            && self.drain_until.is_none()
            && !self.quitting()
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
        let (mut undelivered, mut kept_for_away) =
            self.ep.undelivered_from_here_and_away(self.first_msg);
        if !self.persist.storing() {
            // Not kept for anyone: lost at exit.
            undelivered += std::mem::take(&mut kept_for_away);
        }
        Outcome {
            undelivered,
            kept_for_away,
            ..self.outcome
        }
    }

    fn append(&mut self, record: &Record) {
        if let Some(failure) = self.persist.append(record) {
            self.print(Output::Error(failure));
        }
    }

    /// Lets out the notices gathered for a moment (peers not answering or answering again,
    /// late deliveries) that are due at `now`, or all of them when `all`.
    pub(super) fn print_gathered(&mut self, now: Instant, all: bool) {
        let due: Vec<String> = self
            .answering
            .due(now, all)
            .into_iter()
            .chain(self.delivery.due(now, all))
            .collect();
        for line in due {
            self.print(Output::Notice(line));
        }
    }

    /// Syncs the journal. If that fails, the error goes before the lines waiting for this
    /// sync (the echoes of what was typed meanwhile): those lines were not made durable.
    fn sync(&mut self) {
        if let Some(failure) = self.persist.sync() {
            let waiting = self.pending.len();
            self.print(Output::Error(failure));
            let added = self.pending.len() - waiting;
            self.pending.rotate_right(added);
        }
    }
}

/// `what` (`you are away`, `bob is away`) with the reason, if one was given.
/// `bob is`, or `bob, carol are`: the start of a notice about the peers `names`.
pub(super) fn they_are(names: &[String]) -> String {
    match names {
        [one] => format!("{one} is"),
        many => format!("{} are", many.join(", ")),
    }
}

fn away_line(what: &str, reason: &str) -> String {
    if reason.is_empty() {
        what.to_owned()
    } else {
        format!("{what}: {reason}")
    }
}
