//! Presentation: what the user reads for each protocol event and for `/peers`. Pure functions
//! of their inputs, so they are tested without a terminal or a network.

use crate::proto::{
    Event, ForgetReason, Found, MessageId, PeerId, PeerInfo, PeerState, UndeliveredReason,
};
use crate::ui::render::{display_nick, Output};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use unicode_width::UnicodeWidthStr as _;

/// Characters of a message quoted in a delivery notice.
const SNIPPET_CHARS: usize = 24;
/// Our messages remembered for delivery notices at most (oldest forgotten first).
const MAX_TRACKED: usize = 4096;

/// Our messages still awaiting acknowledgement from some recipient, so that a notice can quote
/// them ("not yet delivered to bob: “see you at…”").
#[derive(Debug, Default)]
pub struct Outstanding {
    /// id → (quoted beginning, recipients not yet settled).
    messages: HashMap<MessageId, (String, HashSet<PeerId>)>,
}

impl Outstanding {
    /// Remembers a message queued for `recipients`.
    pub fn sent(&mut self, id: MessageId, text: &str, recipients: &[PeerId]) {
        if recipients.is_empty() {
            return;
        }
        if self.messages.len() >= MAX_TRACKED {
            if let Some(oldest) = self.messages.keys().min().copied() {
                self.messages.remove(&oldest);
            }
        }
        self.messages
            .insert(id, (snippet(text), recipients.iter().copied().collect()));
    }

    /// The quoted beginning of a message, or its id if it was forgotten.
    pub fn quote(&self, id: MessageId) -> String {
        self.messages
            .get(&id)
            .map_or_else(|| format!("message {id}"), |(s, _)| format!("“{s}”"))
    }

    /// One recipient is done with a message (delivered or given up). A peer the message was
    /// never queued for (refused at once, its queue full) changes nothing.
    pub fn settle(&mut self, id: MessageId, peer: PeerId) {
        if let Some((_, left)) = self.messages.get_mut(&id) {
            left.remove(&peer);
            if left.is_empty() {
                self.messages.remove(&id);
            }
        }
    }
}

/// The first few characters of a message, on one line.
pub fn snippet(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut s: String = one_line.chars().take(SNIPPET_CHARS).collect();
    if one_line.chars().count() > SNIPPET_CHARS {
        s.push('…');
    }
    s
}

/// What to print for an event, if anything. `nick_of` names a peer by id.
///
/// Nicks inside notices are shown as [`display_nick`] shows them, as the nicks of messages are
/// by [`crate::ui::render::render`]: a notice is only sanitized as text, which would keep a
/// joiner or a variation selector in a nick.
pub fn event_output(
    event: &Event,
    nick_of: impl Fn(PeerId) -> String,
    outstanding: &mut Outstanding,
) -> Option<Output> {
    let nick_of = |id| display_nick(&nick_of(id));
    let out = match event {
        // The application's own payloads (file transfer) are shown by whoever reads them.
        Event::AppData { .. } => return None,
        // A restart seen only as a new session changes nothing the user sees.
        Event::PeerRestarted { .. } => return None,
        Event::Message {
            nick,
            text,
            direct,
            action,
            ..
        } => message_output(nick, None, *direct, *action, text),
        Event::PeerAway { nick, away, .. } => {
            let nick = display_nick(nick);
            Output::Notice(match away.as_deref().map(shown_reason) {
                None => format!("{nick} is back"),
                Some(None) => format!("{nick} is away"),
                Some(Some(reason)) => format!("{nick} is away: {reason}"),
            })
        }
        Event::PeerJoined {
            nick, was, addr, ..
        } => Output::Notice(joined_line(nick, was.as_deref(), *addr, None)),
        Event::PeerRenamed { old, new, .. } => Output::Notice(format!(
            "{} is now {}",
            display_nick(old),
            display_nick(new)
        )),
        Event::PeerLeft { nick, queued, .. } => {
            let nick = display_nick(nick);
            Output::Notice(match queued {
                0 => format!("{nick} left"),
                n => format!("{nick} left; {n} of your messages {} for their return", wait(*n)),
            })
        }
        Event::PeerUnreachable { nick, queued, .. } => {
            let nick = display_nick(nick);
            Output::Notice(match queued {
                0 => format!("{nick} is not answering"),
                n => format!(
                    "{nick} is not answering; {n} of your messages {} and will be resent when they are back",
                    wait(*n)
                ),
            })
        }
        Event::PeerReachable { nick, .. } => {
            Output::Notice(format!("{} is answering again", display_nick(nick)))
        }
        Event::Delivered { to, id, late } => {
            let quote = outstanding.quote(*id);
            outstanding.settle(*id, *to);
            if !late {
                return None; // success is quiet
            }
            Output::Notice(format!("delivered to {} after all: {quote}", nick_of(*to)))
        }
        Event::DeliveryDelayed { to, id } => Output::Notice(format!(
            "not yet delivered to {}: {} (still trying)",
            nick_of(*to),
            outstanding.quote(*id)
        )),
        Event::Undelivered { to, id, reason } => {
            let quote = outstanding.quote(*id);
            outstanding.settle(*id, *to);
            let why = match reason {
                UndeliveredReason::QueueFull => "too many messages are already waiting for them",
                UndeliveredReason::Superseded => {
                    "they hear a later run of your identity instead of this one: send it from there"
                }
            };
            Output::Error(format!("not delivered to {}: {quote} — {why}", nick_of(*to)))
        }
        Event::PeerForgotten {
            nick,
            dropped,
            reason,
            ..
        } => {
            let nick = display_nick(nick);
            let n = dropped.len();
            match reason {
                ForgetReason::Room => Output::Error(format!(
                    "forgot {nick}, absent a while, to make room for new peers: {} waiting for them {} dropped",
                    messages(n),
                    if n == 1 { "was" } else { "were" }
                )),
                // It said it was a script, and it left: nothing to tell.
                ForgetReason::Ephemeral => return None,
                ForgetReason::Asked => Output::Notice(format!(
                    "forgot {nick}: {} waiting for them dropped",
                    messages(n)
                )),
            }
        }
        Event::NewcomerRefused {
            addr,
            nick,
            address_full,
        } => Output::Error(if *address_full {
            format!(
                "{} at {} could not join: that address already has as many peers as one may (16) — are they throw-away identities?",
                display_nick(nick),
                show_addr(*addr)
            )
        } else {
            format!(
                "{} at {} could not join: the peer table is full (every peer in it has messages waiting or was heard today) — /forget one you no longer need; told once in 10 minutes",
                display_nick(nick),
                show_addr(*addr)
            )
        }),
        Event::AddressUnanswered { addr } => Output::Notice(format!(
            "no answer from {shown} yet (still trying; /forget {shown} stops it) — is tailchat running there, and UDP port {} open?",
            addr.port(),
            shown = show_addr(*addr),
        )),
        Event::EarlierRunRefused { peer, addr, .. } => Output::Notice(format!(
            "an earlier run of {} is still running at {} and is refused: a later run of the same identity took its place (a copied data directory running beside its original?) — only the latest run is heard, and the other's messages do not reach you (it is told so, line by line): an identity must run only once",
            nick_of(*peer),
            show_addr(*addr)
        )),
        Event::Superseded { by, addr } => Output::Error(format!(
            "{} (at {}) no longer hears this run: a later run of your own identity took its place there — is this data directory a copy that also runs elsewhere? Run each copy with a data directory of its own (--data-dir; a copy then becomes a new peer), or quit this one; messages of this run to them are not delivered (each is said): send them from the run they hear",
            nick_of(*by),
            show_addr(*addr)
        )),
        Event::VersionMismatch { from, version } if *version < crate::proto::wire::VERSION => {
            Output::Notice(format!(
                "{} runs an older tailchat (protocol version {version}, this one speaks {}): \
                 the two cannot talk until it is upgraded",
                show_addr(*from),
                crate::proto::wire::VERSION
            ))
        }
        Event::VersionMismatch { from, version } => Output::Notice(format!(
            "{} runs a newer tailchat (protocol version {version}, this one speaks {}): \
             upgrade this one to talk to it",
            show_addr(*from),
            crate::proto::wire::VERSION
        )),
    };
    Some(out)
}

/// A message as shown: to the group or direct, ours (`to` is its recipient) or theirs, an
/// action or not. A direct action (no tailchat sends one, but the protocol allows it) is shown
/// as a direct message whose text starts `* nick`.
pub fn message_output(
    nick: &str,
    to: Option<&str>,
    direct: bool,
    action: bool,
    text: &str,
) -> Output {
    match (direct, action) {
        (false, false) => Output::Group {
            nick: nick.to_owned(),
            text: text.to_owned(),
        },
        (false, true) => Output::Action {
            nick: nick.to_owned(),
            text: text.to_owned(),
        },
        (true, _) => Output::Direct {
            from: nick.to_owned(),
            to: to.map(str::to_owned),
            text: if action {
                format!("* {nick} {text}")
            } else {
                text.to_owned()
            },
        },
    }
}

/// A message this old when it arrives is marked late: `(sent 09:03)` after it.
pub const LATE_AFTER: Duration = Duration::from_secs(60);

/// `out` marked late ([`Output::Late`]) if it was written `age` before `now`, at least
/// [`LATE_AFTER`]: with the time it was written, and the day too if that was not today.
pub fn late(out: Output, age: Duration, now: chrono::DateTime<chrono::Local>) -> Output {
    if age < LATE_AFTER {
        return out;
    }
    let written = chrono::TimeDelta::from_std(age)
        .ok()
        .and_then(|d| now.checked_sub_signed(d));
    let sent = match written {
        Some(w) if w.date_naive() == now.date_naive() => w.format("%H:%M").to_string(),
        // Within the last half year the month and day say it; older, the year too.
        Some(w) if age < Duration::from_secs(183 * 86_400) => w.format("%b %d %H:%M").to_string(),
        Some(w) => w.format("%Y-%m-%d %H:%M").to_string(),
        None => "long ago".to_owned(),
    };
    Output::Late {
        sent,
        message: Box::new(out),
    }
}

/// `n` messages: `1 message`, `2 messages`.
pub fn messages(n: usize) -> String {
    crate::transfer::count(n as u64, "message", "messages")
}

/// What `n` messages do while they wait: `1 of your messages waits`, `2 … wait`.
pub fn wait(n: usize) -> &'static str {
    if n == 1 {
        "waits"
    } else {
        "wait"
    }
}

/// The line for a peer forgotten for `forget_after`: not heard for `days`, with `dropped`
/// messages that were waiting for it.
pub fn forgotten_unheard_line(nick: &str, days: u64, dropped: usize) -> String {
    let nick = display_nick(nick);
    let dropped = match dropped {
        0 => String::new(),
        n => format!("; {} waiting for them dropped", messages(n)),
    };
    format!("forgot {nick}: not heard for {days} days (forget_after){dropped}")
}

/// The line for a peer that joined: `bob joined (100.64.0.2:7654)`, and with who the tailnet
/// says is at that address, `bob joined (100.64.0.2:7654, bob@example.com on laptop)`. A
/// peer back under another nick than it had (`was`) is told as such: `bob joined
/// (10.0.0.2:7654), known before as robert`.
pub fn joined_line(nick: &str, was: Option<&str>, addr: SocketAddr, who: Option<&str>) -> String {
    let line = match who {
        Some(who) => format!("{} joined ({}, {who})", display_nick(nick), show_addr(addr)),
        None => format!("{} joined ({})", display_nick(nick), show_addr(addr)),
    };
    match was {
        Some(was) => format!("{line}, known before as {}", display_nick(was)),
        None => line,
    }
}

/// What the application knows of a peer beyond the core's view of it, for `/peers`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerNote {
    /// Found because the tailnet's device list named its address: `found` says `tailnet`.
    pub tailnet: bool,
    /// Who the tailnet says is at its address (`bob@example.com on laptop`), shown after it.
    pub who: Option<String>,
}

/// An address as people write it (no `::ffff:` prefix).
pub fn show_addr(addr: SocketAddr) -> String {
    SocketAddr::new(addr.ip().to_canonical(), addr.port()).to_string()
}

/// The names to show for the peers present, in the order given: each nick as
/// [`display_nick`] shows it, followed by `#` and the first 8 hex digits of the peer's id when
/// it would otherwise look like another peer's name.
///
/// A shown nick gets the suffix when another peer's shown nick is the same string (compared
/// case-sensitively: `bob` and `b\u{200b}ob` both show as `bob`, so both are suffixed), and
/// always when it contains `#` itself, which no nick typed into tailchat can, so that a peer
/// called `bob#0123abcd` cannot pass for a suffixed `bob`. Peers choose their own ids, so two
/// names still equal with 8 digits get all 16. A suffixed name therefore differs from every
/// unsuffixed one (those contain no `#`) and from every other suffixed one (the part after
/// the last `#` is the id), unless the same id is listed twice.
#[must_use]
pub fn display_names(peers: &[(PeerId, &str)]) -> Vec<String> {
    let names = ShownNames::new(peers);
    peers
        .iter()
        .map(|(id, nick)| names.name_of(*id, nick))
        .collect()
}

/// The names the present peers are shown under, kept to name the sender of each message
/// without building every peer's name again for it (which at a few hundred peers cost more
/// than the rest of receiving the message). [`ShownNames::name_of`] names a peer by the rule
/// of [`display_names`], which it also serves.
#[derive(Debug, Default)]
pub struct ShownNames {
    /// The look of each shown nick ([`looks`] of [`display_nick`]), with the peers shown
    /// under a nick that looks like it.
    by_name: HashMap<String, Vec<PeerId>>,
}

/// What a shown nick looks like: its compatibility form, in lower case, as a UTS #39
/// confusable skeleton, without accents — so that nicks a reader could take for one another
/// (`alice` and Cyrillic `аlice`, `aIice` with a capital i, `Alice`, `alíce`) have one look,
/// and are told apart by their ids as equal nicks are.
fn looks(shown: &str) -> String {
    use unicode_normalization::char::is_combining_mark;
    use unicode_normalization::UnicodeNormalization;
    let compatible: String = shown.nfkc().collect();
    // Case is folded after the skeleton, which tells `I` for `l` apart from `i`.
    unicode_security::confusable_detection::skeleton(&compatible)
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Whether a shown nick could pass for something else in a line: it holds what frames a nick
/// or a line (`<`, `>`, `*`, whitespace), characters that are another's compatibility form
/// (fullwidth `＃`, ligatures), or the mark of what cannot be shown (a nick of invisible
/// characters only shows as `�`): such a nick is always shown with its id.
fn not_plain(shown: &str) -> bool {
    use unicode_normalization::UnicodeNormalization;
    shown.contains(|c: char| {
        c.is_whitespace() || matches!(c, '<' | '>' | '*' | '#') || c == '\u{fffd}'
    }) || !shown.chars().nfkc().eq(shown.chars())
}

impl ShownNames {
    /// The names of `peers` (each listed once).
    #[must_use]
    pub fn new(peers: &[(PeerId, &str)]) -> Self {
        let mut by_name: HashMap<String, Vec<PeerId>> = HashMap::new();
        for (id, nick) in peers {
            by_name
                .entry(looks(&display_nick(nick)))
                .or_default()
                .push(*id);
        }
        Self { by_name }
    }

    /// The peers but `id` shown under a nick that looks like `nick`.
    pub fn alike(&self, id: PeerId, nick: &str) -> Vec<PeerId> {
        self.others_alike(id, &display_nick(nick))
            .copied()
            .collect()
    }

    /// [`Self::alike`], for a nick as [`display_nick`] shows it.
    fn others_alike(&self, id: PeerId, shown: &str) -> impl Iterator<Item = &PeerId> {
        self.by_name
            .get(&looks(shown))
            .into_iter()
            .flatten()
            .filter(move |&&other| other != id)
    }

    /// The name peer `id` is shown under when it calls itself `nick`: as [`display_names`]
    /// names it in the list this was made from, with `id`'s entry there (if any) calling
    /// itself `nick` instead (a message carries the nick its sender had when it wrote it).
    #[must_use]
    pub fn name_of(&self, id: PeerId, nick: &str) -> String {
        let name = display_nick(nick);
        let mut others = self.others_alike(id, &name).peekable();
        if others.peek().is_none() && !not_plain(&name) {
            return name;
        }
        // Suffixed like every other peer shown as `name`; all 16 digits when one of them has
        // the same first 8.
        let full = id.to_string();
        let short = full.get(..8).unwrap_or(&full);
        if others.any(|other| other.to_string().starts_with(short)) {
            format!("{name}#{full}")
        } else {
            format!("{name}#{short}")
        }
    }
}

/// Headings of the `/peers` columns.
const PEERS_HEADINGS: [&str; 7] = [
    "nick",
    "state",
    "rtt",
    "queued",
    "last heard",
    "found",
    "addresses",
];
/// Which `/peers` columns are right-aligned (the numbers).
const PEERS_RIGHT_ALIGNED: [bool; 7] = [false, false, true, true, true, false, false];

/// How a peer's state is shown.
fn state_name(state: PeerState) -> &'static str {
    match state {
        PeerState::Offline => "offline",
        PeerState::Online => "online",
        PeerState::Unreachable => "unreachable",
        PeerState::Left => "left",
    }
}

/// How the way a peer was found is shown.
fn found_name(found: Found) -> &'static str {
    match found {
        Found::Manual => "manual",
        Found::Announced => "announced",
        Found::Learned => "learned",
        Found::Incoming => "incoming",
        Found::Remembered => "remembered",
    }
}

/// Lines of `/whois`: everything known about one peer. `nicks` are the nicks it had in this
/// run, oldest first; `note` what the tailnet says of it, as `/peers` shows it.
pub fn whois_lines(p: &PeerInfo, nicks: &[String], note: &PeerNote, now: Instant) -> Vec<String> {
    let mut lines = vec![
        format!("{} — id {}", display_nick(&p.nick), p.id),
        format!("  state      {}", state_name(p.state)),
    ];
    if let Some(reason) = p.away.as_deref().map(shown_reason) {
        lines.push(format!(
            "  away       {}",
            reason.unwrap_or_else(|| "yes (no reason given)".to_owned())
        ));
    }
    if p.ephemeral {
        lines.push("  ephemeral  yes: forgotten once it leaves".to_owned());
    }
    if nicks.len() > 1 {
        let shown: Vec<String> = nicks.iter().map(|n| display_nick(n)).collect();
        lines.push(format!("  nicks      {} (this run)", shown.join(" → ")));
    }
    let addrs: Vec<String> = p.addrs.iter().map(|a| show_addr(*a)).collect();
    lines.push(format!(
        "  addresses  {} (found: {})",
        if addrs.is_empty() {
            "none known".to_owned()
        } else {
            addrs.join(", ")
        },
        if note.tailnet {
            "tailnet"
        } else {
            found_name(p.found)
        }
    ));
    if let Some(who) = &note.who {
        lines.push(format!("  tailnet    {who} (at its first address)"));
    }
    lines.push(format!(
        "  rtt        {}",
        p.rtt
            .map_or_else(|| "not measured yet".to_owned(), show_rtt)
    ));
    lines.push(format!(
        "  queued     {} of your messages {} for them",
        p.undelivered,
        wait(p.undelivered)
    ));
    lines.push(format!(
        "  last heard {}",
        ago(now.saturating_duration_since(p.last_heard))
    ));
    lines
}

/// An away reason as shown, or `None` if nothing of it can be (none given, or only controls
/// and spaces).
fn shown_reason(reason: &str) -> Option<String> {
    let shown = crate::ui::render::sanitize(reason);
    (!shown.trim().is_empty()).then_some(shown)
}

/// Longest away reason shown in `/peers`, in characters (`/whois` shows it whole).
const AWAY_CELL_CHARS: usize = 24;

/// The state column of `/peers`: the state, or for a peer online that is away, `away` and its
/// reason, cut short.
fn state_cell(p: &PeerInfo) -> String {
    match (p.away.as_deref().map(shown_reason), p.state) {
        (Some(None), PeerState::Online) => "away".to_owned(),
        (Some(Some(reason)), PeerState::Online) => {
            let mut short: String = reason.chars().take(AWAY_CELL_CHARS).collect();
            if reason.chars().count() > AWAY_CELL_CHARS {
                short.push('…');
            }
            format!("away: {short}")
        }
        _ => state_name(p.state).to_owned(),
    }
}

/// Lines of `/peers`: a header and one line per peer, in columns that line up on a terminal.
///
/// Nicks are the [`display_names`] of the peers listed. Every column is as wide, in terminal
/// columns (a CJK character or an emoji counts two), as its widest heading or value as
/// displayed, so each row's columns start at the same place.
pub fn peers_lines(peers: &[PeerInfo], now: Instant) -> Vec<String> {
    peers_lines_noted(peers, None, now, |_| PeerNote::default())
}

/// [`peers_lines`], with what `note` adds for each peer: `tailnet` in the found column, and
/// who the tailnet says is at its address after the addresses (`100.64.0.2:7654
/// (bob@example.com on laptop)`). With `me` (our id and nick), a peer whose nick looks like
/// ours is shown with its id too, as its lines are.
pub fn peers_lines_noted(
    peers: &[PeerInfo],
    me: Option<(PeerId, &str)>,
    now: Instant,
    note: impl Fn(&PeerInfo) -> PeerNote,
) -> Vec<String> {
    if peers.is_empty() {
        return vec!["no peers yet — /add HOST[:PORT] to reach someone".to_owned()];
    }
    let mut named: Vec<(PeerId, &str)> = peers.iter().map(|p| (p.id, p.nick.as_str())).collect();
    named.extend(me);
    let names = ShownNames::new(&named);
    let mut rows = vec![PEERS_HEADINGS.map(str::to_owned)];
    for p in peers {
        let name = names.name_of(p.id, &p.nick);
        let note = note(p);
        let state = state_cell(p);
        let found = if note.tailnet {
            "tailnet"
        } else {
            found_name(p.found)
        };
        let mut addrs: Vec<String> = p.addrs.iter().map(|a| show_addr(*a)).collect();
        if let (Some(who), Some(first)) = (&note.who, addrs.first_mut()) {
            first.push_str(&format!(" ({who})"));
        }
        rows.push([
            name,
            state,
            p.rtt.map_or_else(|| "?".to_owned(), show_rtt),
            p.undelivered.to_string(),
            ago(now.saturating_duration_since(p.last_heard)),
            found.to_owned(),
            addrs.join(", "),
        ]);
    }
    table(&rows, PEERS_RIGHT_ALIGNED)
}

/// Lays `rows` out in columns two spaces apart, each padded to its widest cell in terminal
/// columns; the last column is not padded, so no line ends in spaces.
fn table<const N: usize>(rows: &[[String; N]], right_aligned: [bool; N]) -> Vec<String> {
    let mut widths = [0; N];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.width());
        }
    }
    rows.iter()
        .map(|row| {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = " ".repeat(widths[i] - cell.width());
                if right_aligned[i] {
                    line.push_str(&pad);
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    if i + 1 < N {
                        line.push_str(&pad);
                    }
                }
            }
            line
        })
        .collect()
}

fn show_rtt(d: Duration) -> String {
    if d < Duration::from_millis(10) {
        format!("{:.2}ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{}ms", d.as_millis())
    }
}

fn ago(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "just now".to_owned(),
        1..=119 => format!("{s}s ago"),
        120..=7199 => format!("{}m ago", s / 60),
        _ => format!("{}h ago", s / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(nick: &str, state: PeerState) -> PeerInfo {
        PeerInfo {
            id: PeerId(1),
            nick: nick.into(),
            addrs: vec!["[::ffff:10.0.0.2]:7654".parse().unwrap()],
            found: Found::Manual,
            last_heard: Instant::now(),
            rtt: Some(Duration::from_micros(420)),
            undelivered: 3,
            state,
            away: None,
            ephemeral: false,
            key: None,
        }
    }

    #[test]
    fn peers_table_shows_every_column() {
        let lines = peers_lines(&[info("bob", PeerState::Unreachable)], Instant::now());
        assert_eq!(lines.len(), 2);
        let l = &lines[1];
        for part in [
            "bob",
            "unreachable",
            "0.42ms",
            "3",
            "just now",
            "manual",
            "10.0.0.2:7654",
        ] {
            assert!(l.contains(part), "{part} missing in {l}");
        }
        assert!(!l.contains("::ffff:"));
        assert!(peers_lines(&[], Instant::now())[0].contains("/add"));
    }

    /// The terminal column where each of `cells` starts in `line`, looked for left to right.
    fn starts(line: &str, cells: &[&str]) -> Vec<usize> {
        let mut from = 0;
        cells
            .iter()
            .map(|cell| {
                let at = from
                    + line[from..]
                        .find(cell)
                        .unwrap_or_else(|| panic!("{cell:?} not in {line:?}"));
                from = at + cell.len();
                line[..at].width()
            })
            .collect()
    }

    #[test]
    fn peers_columns_line_up_whatever_the_nicks() {
        // Instants after a start, never before it: a machine up for less than the oldest
        // `ago` has no instant that far back.
        let start = Instant::now();
        let now = start + Duration::from_secs(7200);
        let peer = |id, nick: &str, state, rtt, undelivered, ago: u64, found| PeerInfo {
            id: PeerId(id),
            nick: nick.into(),
            addrs: vec!["10.0.0.2:7654".parse().unwrap()],
            found,
            last_heard: start + Duration::from_secs(7200 - ago),
            rtt,
            undelivered,
            state,
            away: None,
            ephemeral: false,
            key: None,
        };
        let ms = Duration::from_micros;
        #[rustfmt::skip]
        let peers = [
            peer(0x0123_4567_89ab_cdef, "bob", PeerState::Online, Some(ms(420)), 3, 0, Found::Manual),
            peer(0xfedc_ba98_7654_3210, "b\u{200b}ob", PeerState::Offline, None, 0, 5, Found::Announced),
            peer(3, "李小龍", PeerState::Unreachable, Some(ms(25_000)), 12, 180, Found::Learned),
            peer(4, "👩\u{200d}💻\u{fe0f}", PeerState::Left, Some(ms(1500)), 7, 7200, Found::Incoming),
            peer(5, "e\u{301}ve", PeerState::Online, Some(ms(900)), 1, 1, Found::Announced),
        ];
        let lines = peers_lines(&peers, now);
        #[rustfmt::skip]
        let cells: [[&str; 7]; 6] = [
            PEERS_HEADINGS,
            ["bob#01234567", "online", "0.42ms", "3", "just now", "manual", "10.0.0.2:7654"],
            ["bob#fedcba98", "offline", "?", "0", "5s ago", "announced", "10.0.0.2:7654"],
            ["李小龍", "unreachable", "25ms", "12", "3m ago", "learned", "10.0.0.2:7654"],
            ["👩💻", "left", "1.50ms", "7", "2h ago", "incoming", "10.0.0.2:7654"],
            ["e\u{301}ve", "online", "0.90ms", "1", "1s ago", "announced", "10.0.0.2:7654"],
        ];
        assert_eq!(lines.len(), cells.len());
        // Where each column starts (left-aligned) or ends (right-aligned), on screen.
        let edges: Vec<Vec<usize>> = lines
            .iter()
            .zip(&cells)
            .map(|(line, cells)| {
                assert!(!line.ends_with(' '), "{line:?}");
                starts(line, cells)
                    .into_iter()
                    .zip(cells)
                    .zip(PEERS_RIGHT_ALIGNED)
                    .map(|((start, cell), right)| if right { start + cell.width() } else { start })
                    .collect()
            })
            .collect();
        for (line, row) in lines.iter().zip(&edges) {
            assert_eq!(
                row, &edges[0],
                "misaligned: {line:?} against {:?}",
                lines[0]
            );
        }
        assert_eq!(edges[0][0], 0);
    }

    #[test]
    fn tailnet_peers_say_so_and_who_they_are() {
        let mut bob = info("bob", PeerState::Online);
        bob.addrs = vec![
            "100.64.0.2:7654".parse().unwrap(),
            "10.0.0.2:7654".parse().unwrap(),
        ];
        let carol = PeerInfo {
            id: PeerId(2),
            nick: "carol".into(),
            ..info("carol", PeerState::Online)
        };
        let lines = peers_lines_noted(&[bob, carol], None, Instant::now(), |p| PeerNote {
            tailnet: p.nick == "bob",
            who: (p.nick == "bob").then(|| "bob@example.com on laptop".to_owned()),
        });
        assert!(
            lines[1]
                .ends_with("tailnet  100.64.0.2:7654 (bob@example.com on laptop), 10.0.0.2:7654"),
            "{lines:#?}"
        );
        assert!(lines[2].ends_with("manual   10.0.0.2:7654"), "{lines:#?}");
        assert_eq!(
            joined_line(
                "bob",
                None,
                "100.64.0.2:7654".parse().unwrap(),
                Some("bob@example.com on laptop")
            ),
            "bob joined (100.64.0.2:7654, bob@example.com on laptop)"
        );
    }

    #[test]
    fn look_alike_nicks_are_told_apart_by_id() {
        let bob = PeerId(0x0123_4567_89ab_cdef);
        let fake = PeerId(0xfedc_ba98_7654_3210);
        let carol = PeerId(7);
        assert_eq!(
            display_names(&[(bob, "bob"), (fake, "b\u{200b}ob"), (carol, "carol")]),
            ["bob#01234567", "bob#fedcba98", "carol"]
        );
        // Alone, a nick is shown as it is; alike but for case or accents, with ids.
        assert_eq!(display_names(&[(fake, "b\u{200b}ob")]), ["bob"]);
        // A nick of invisible characters only, shown as �: with its id even alone.
        assert_eq!(display_names(&[(fake, "\u{200b}")]), ["\u{fffd}#fedcba98"]);
        assert_eq!(
            display_names(&[(bob, "bob"), (fake, "Bob")]),
            ["bob#01234567", "Bob#fedcba98"]
        );
        assert_eq!(
            display_names(&[
                (bob, "alice"),
                (fake, "al\u{ed}ce"),
                (carol, "al\u{131}\u{307}ce")
            ]),
            [
                "alice#01234567",
                "al\u{ed}ce#fedcba98",
                "al\u{131}\u{307}ce#00000000"
            ]
        );
        assert!(display_names(&[]).is_empty());
        // Look-alikes by their shapes: Cyrillic а and е, a capital i for an l.
        assert_eq!(
            display_names(&[
                (bob, "alice"),
                (fake, "\u{430}lic\u{435}"),
                (carol, "carol")
            ]),
            ["alice#01234567", "\u{430}lic\u{435}#fedcba98", "carol"]
        );
        assert_eq!(
            display_names(&[(bob, "alice"), (fake, "aIice")]),
            ["alice#01234567", "aIice#fedcba98"]
        );
        // A nick that could pass for a line's frame or an id, even alone, is shown with its
        // own: `<alice> hi <bob` would make a line read `<alice> hi <bob> …`.
        assert_eq!(
            display_names(&[(fake, "alice> hi <bob")]),
            ["alice> hi <bob#fedcba98"]
        );
        assert_eq!(
            display_names(&[(fake, "alice\u{ff03}46a877f5")]),
            ["alice\u{ff03}46a877f5#fedcba98"]
        );
        // A nick that brings its own suffix gets a real one after it.
        assert_eq!(
            display_names(&[(bob, "bob"), (fake, "bob#01234567")]),
            ["bob", "bob#01234567#fedcba98"]
        );
        // Ids that agree in their first 8 digits are shown whole.
        let twin = PeerId(0x0123_4567_0000_0000);
        assert_eq!(
            display_names(&[(bob, "bob"), (twin, "bob\u{2060}"), (fake, "bob")]),
            [
                "bob#0123456789abcdef",
                "bob#0123456700000000",
                "bob#fedcba98"
            ]
        );
        // Nothing visible: still a name, and two of them are told apart.
        assert_eq!(
            display_names(&[(bob, "\u{200b}"), (fake, "\u{feff}")]),
            ["\u{fffd}#01234567", "\u{fffd}#fedcba98"]
        );
    }

    /// The rule of [`display_names`] as it was first written, counting over the whole list:
    /// the model the kept names are checked against.
    fn reference_names(peers: &[(PeerId, &str)]) -> Vec<String> {
        let shown: Vec<String> = peers.iter().map(|(_, nick)| display_nick(nick)).collect();
        let mut count: HashMap<String, usize> = HashMap::new();
        for name in &shown {
            *count.entry(looks(name)).or_default() += 1;
        }
        let suffixed: Vec<Option<String>> = peers
            .iter()
            .zip(&shown)
            .map(|((id, _), name)| {
                (count[&looks(name)] > 1 || not_plain(name))
                    .then(|| format!("{name}#{}", &id.to_string()[..8]))
            })
            .collect();
        // Shown whole when another of the same look has the same first 8 digits.
        let key = |id: &PeerId, name: &str| (looks(name), id.to_string()[..8].to_owned());
        let mut short_count: HashMap<(String, String), usize> = HashMap::new();
        for ((id, _), (name, suffixed)) in peers.iter().zip(shown.iter().zip(&suffixed)) {
            if suffixed.is_some() {
                *short_count.entry(key(id, name)).or_default() += 1;
            }
        }
        peers
            .iter()
            .zip(shown.iter().zip(&suffixed))
            .map(|((id, _), (name, suffixed))| match suffixed {
                None => name.clone(),
                Some(short) if short_count[&key(id, name)] == 1 => short.clone(),
                Some(_) => format!("{name}#{id}"),
            })
            .collect()
    }

    proptest::proptest! {
        /// The kept names give a message's sender the name the whole list would: its entry
        /// replaced by the nick the message carries (or added, if it is not listed).
        #[test]
        fn kept_names_name_a_sender_as_the_whole_list_would(
            listed in proptest::collection::btree_map(0..8usize, 0..6usize, 0..8),
            sender in 0..8usize,
            nick in 0..6usize,
        ) {
            // Ids that agree in their first 8 digits, and nicks alike, with a suffix of their
            // own, or of nothing visible.
            const IDS: [u64; 8] = [
                0x0123_4567_89ab_cdef, 0x0123_4567_0000_0000, 0xfedc_ba98_7654_3210, 1, 2,
                0x0123_4567_0000_0001, 3, 0xfedc_ba98_0000_0000,
            ];
            const NICKS: [&str; 6] =
                ["bob", "b\u{200b}ob", "Bob", "bob#01234567", "\u{200b}", "carol"];
            let list: Vec<(PeerId, &str)> =
                listed.iter().map(|(&i, &n)| (PeerId(IDS[i]), NICKS[n])).collect();
            let from = PeerId(IDS[sender]);
            let kept = ShownNames::new(&list);
            let mut whole: Vec<(PeerId, &str)> =
                list.iter().copied().filter(|(id, _)| *id != from).collect();
            whole.push((from, NICKS[nick]));
            let names = reference_names(&whole);
            proptest::prop_assert_eq!(kept.name_of(from, NICKS[nick]), names.last().cloned().unwrap());
            // And the whole list, named through the kept names, as the model names it.
            proptest::prop_assert_eq!(display_names(&whole), names);
        }
    }

    #[test]
    fn a_peer_forgotten_for_forget_after_is_one_line_with_what_it_drops() {
        assert_eq!(
            forgotten_unheard_line("car\u{1b}[2Jol", 31, 2),
            "forgot car[2Jol: not heard for 31 days (forget_after); 2 messages waiting for them dropped"
        );
        assert_eq!(
            forgotten_unheard_line("carol", 40, 0),
            "forgot carol: not heard for 40 days (forget_after)"
        );
    }

    #[test]
    fn notices_show_nicks_as_displayed() {
        let mut o = Outstanding::default();
        let name = |_| "b\u{200d}ob".to_owned();
        let joined = Event::PeerJoined {
            peer: PeerId(1),
            nick: "é\u{200d}é\u{fe0f}".into(),
            was: None,
            addr: "10.0.0.2:7654".parse().unwrap(),
        };
        assert_eq!(
            event_output(&joined, name, &mut o),
            Some(Output::Notice("éé joined (10.0.0.2:7654)".into()))
        );
        let back = Event::PeerJoined {
            peer: PeerId(1),
            nick: "carl".into(),
            was: Some("rob\u{1b}[2Jert".into()),
            addr: "10.0.0.2:7654".parse().unwrap(),
        };
        assert_eq!(
            event_output(&back, name, &mut o),
            Some(Output::Notice(
                "carl joined (10.0.0.2:7654), known before as rob[2Jert".into()
            ))
        );
        let renamed = Event::PeerRenamed {
            peer: PeerId(1),
            old: "bob\u{2063}".into(),
            new: "ö\u{200c}b".into(),
        };
        assert_eq!(
            event_output(&renamed, name, &mut o),
            Some(Output::Notice("bob is now öb".into()))
        );
        let delayed = Event::DeliveryDelayed {
            to: PeerId(1),
            id: MessageId(1),
        };
        assert!(matches!(
            event_output(&delayed, name, &mut o),
            Some(Output::Notice(s)) if s.starts_with("not yet delivered to bob:")
        ));
    }

    #[test]
    fn success_is_quiet_but_delay_and_late_delivery_are_told() {
        let mut o = Outstanding::default();
        let id = MessageId(7);
        o.sent(
            id,
            "see you at the station tonight",
            &[PeerId(1), PeerId(2)],
        );
        let name = |_| "bob".to_owned();
        let delayed = event_output(&Event::DeliveryDelayed { to: PeerId(1), id }, name, &mut o);
        assert_eq!(
            delayed,
            Some(Output::Notice(
                "not yet delivered to bob: “see you at the station t…” (still trying)".into()
            ))
        );
        let quiet = event_output(
            &Event::Delivered {
                to: PeerId(2),
                id,
                late: false,
            },
            name,
            &mut o,
        );
        assert_eq!(quiet, None);
        let late = event_output(
            &Event::Delivered {
                to: PeerId(1),
                id,
                late: true,
            },
            name,
            &mut o,
        );
        assert!(
            matches!(late, Some(Output::Notice(s)) if s.starts_with("delivered to bob after all"))
        );
        assert!(o.messages.is_empty(), "settled messages are forgotten");
    }

    #[test]
    fn a_refusal_for_a_peer_never_queued_keeps_the_quote_for_the_others() {
        let mut o = Outstanding::default();
        let id = MessageId(3);
        o.sent(id, "lunch?", &[PeerId(1)]);
        let name = |_| "carol".to_owned();
        let refused = Event::Undelivered {
            to: PeerId(9),
            id,
            reason: UndeliveredReason::QueueFull,
        };
        assert!(event_output(&refused, name, &mut o).is_some());
        let delayed = event_output(&Event::DeliveryDelayed { to: PeerId(1), id }, name, &mut o);
        assert!(
            matches!(&delayed, Some(Output::Notice(s)) if s.contains("“lunch?”")),
            "{delayed:?}"
        );
    }

    #[test]
    fn snippets_are_one_line() {
        assert_eq!(snippet("a\nb"), "a b");
        assert_eq!(snippet("short"), "short");
    }
}

#[cfg(test)]
mod late_tests {
    use super::*;
    use crate::ui::render::render;
    use chrono::TimeZone;

    fn group() -> Output {
        Output::Group {
            nick: "alice".into(),
            text: "colour test".into(),
        }
    }

    #[test]
    fn a_message_a_minute_old_or_more_is_marked_with_when_it_was_written() {
        let now = chrono::Local
            .with_ymd_and_hms(2026, 11, 29, 9, 6, 30)
            .unwrap();
        assert_eq!(late(group(), Duration::from_secs(59), now), group());
        let out = late(group(), Duration::from_secs(200), now);
        assert_eq!(
            render(&out, now.time(), false),
            "09:06 <alice> colour test (sent 09:03)"
        );
        // Written yesterday: the date too.
        let out = late(group(), Duration::from_secs(86_400), now);
        assert_eq!(
            render(&out, now.time(), false),
            "09:06 <alice> colour test (sent Nov 28 09:06)"
        );
        // Written more than half a year ago: the year too (400 days back is last year).
        let out = late(group(), Duration::from_secs(400 * 86_400), now);
        assert_eq!(
            render(&out, now.time(), false),
            "09:06 <alice> colour test (sent 2025-10-25 09:06)"
        );
        // An age no clock can hold is still shown, as long ago.
        let out = late(group(), Duration::from_secs(u64::MAX), now);
        assert!(render(&out, now.time(), false).ends_with("(sent long ago)"));
    }

    #[test]
    fn actions_and_direct_actions_are_shown_as_such() {
        let t = chrono::NaiveTime::from_hms_opt(9, 0, 0).unwrap();
        let show = |o: Output| render(&o, t, false);
        assert_eq!(
            show(message_output("alice", None, false, true, "waves")),
            "09:00 * alice waves"
        );
        assert_eq!(
            show(message_output("bob", None, true, true, "nods")),
            "09:00 *bob* * bob nods"
        );
        assert_eq!(
            show(message_output("me", Some("bob"), true, false, "hi")),
            "09:00 *-> bob* hi"
        );
        // Hostile text in an action is defanged like any message.
        let hostile = show(message_output(
            "eve\x1b[2J",
            None,
            false,
            true,
            "x\x1b]0;pwned\x07y",
        ));
        assert!(
            hostile.ends_with(" xy") && !hostile.contains('\x1b'),
            "{hostile:?}"
        );
    }

    #[test]
    fn peers_and_whois_show_away_with_the_reason_made_safe() {
        let now = Instant::now();
        let mut p = PeerInfo {
            id: PeerId(1),
            nick: "bob".into(),
            addrs: vec![],
            found: Found::Announced,
            last_heard: now,
            rtt: None,
            undelivered: 0,
            state: PeerState::Online,
            away: Some("lunch\x1b[31m, back at 2 — long reason here, really".into()),
            ephemeral: false,
            key: None,
        };
        let rows = peers_lines(std::slice::from_ref(&p), now);
        assert!(
            rows[1].contains("away: lunch, back at 2 — long …"),
            "{rows:?}"
        );
        assert!(!rows[1].contains('\x1b'));
        let whois = whois_lines(&p, &[], &PeerNote::default(), now).join("\n");
        assert!(whois.contains("away       lunch, back at 2 — long reason here, really"));
        // On a tailnet, as /peers says it.
        let note = PeerNote {
            tailnet: true,
            who: Some("bob@example.com on laptop".into()),
        };
        let whois = whois_lines(&p, &[], &note, now).join("\n");
        assert!(whois.contains("(found: tailnet)"), "{whois}");
        assert!(
            whois.contains("  tailnet    bob@example.com on laptop (at its first address)"),
            "{whois}"
        );
        p.away = Some(String::new());
        assert!(peers_lines(std::slice::from_ref(&p), now)[1].contains("away"));
        // A reason of nothing but controls reads as none.
        p.away = Some("\x1b[31m\u{202e} ".into());
        let row = &peers_lines(std::slice::from_ref(&p), now)[1];
        assert!(row.contains("away") && !row.contains("away:"), "{row}");
        let whois = whois_lines(&p, &[], &PeerNote::default(), now).join("\n");
        assert!(
            whois.contains("away       yes (no reason given)"),
            "{whois}"
        );
        let away = Event::PeerAway {
            peer: PeerId(2),
            nick: "bob".into(),
            away: p.away.clone(),
        };
        let shown = event_output(&away, |_| String::new(), &mut Outstanding::default());
        assert_eq!(shown, Some(Output::Notice("bob is away".into())));
        // Away matters only while it is here.
        p.state = PeerState::Left;
        assert!(peers_lines(&[p], now)[1].contains("left"));
    }
}
