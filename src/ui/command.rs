//! Turns one line typed at the prompt into a [`Command`].
//!
//! Pure: no terminal, no network, no clock, so every rule below is unit-tested. A line is a
//! command only when its very first character is `/`; anything else (including a line with
//! leading spaces) is chat text sent as typed. `//text` escapes the slash and sends `/text`.
//! Command names are matched ASCII-case-insensitively, as IRC clients do, because a stray
//! Shift should not turn `/MSG bob hi` into an error.

use std::fmt;

/// Usage of `/msg`, shared by [`COMMANDS`] and the error that quotes it so the two never drift.
const MSG_USAGE: &str = "/msg NICK TEXT";
/// Usage of `/add`.
const ADD_USAGE: &str = "/add HOST[:PORT]";
/// Usage of `/nick`.
const NICK_USAGE: &str = "/nick NEW";
/// Usage of `/peers`.
const PEERS_USAGE: &str = "/peers";
/// Usage of `/whois`.
const WHOIS_USAGE: &str = "/whois NICK";
/// Usage of `/history`.
const HISTORY_USAGE: &str = "/history [NICK] [N]";
/// Usage of `/send`.
const SEND_USAGE: &str = "/send NICK PATH";
/// Usage of `/accept`.
const ACCEPT_USAGE: &str = "/accept [N] [DIR]";
/// Usage of `/decline`.
const DECLINE_USAGE: &str = "/decline [N]";
/// Usage of `/cancel`.
const CANCEL_USAGE: &str = "/cancel N";
/// Usage of `/files`.
const FILES_USAGE: &str = "/files";
/// Usage of `/help`.
const HELP_USAGE: &str = "/help [COMMAND]";
/// Usage of `/me`.
const ME_USAGE: &str = "/me TEXT";
/// Usage of `/away`.
const AWAY_USAGE: &str = "/away [REASON]";
/// Usage of `/back`.
const BACK_USAGE: &str = "/back";
/// Usage of `/forget`.
const FORGET_USAGE: &str = "/forget NICK|ADDR";
/// Usage of `/quit`.
const QUIT_USAGE: &str = "/quit";

/// The nick rule is the protocol's, so what the prompt accepts is what peers accept.
pub use crate::proto::nick::{
    is_valid_nick, nick_problem, MAX_NICK_BYTES, MAX_NICK_CHARS, NICK_RULE,
};

/// Every command as `(usage, one-line description)`, in the order `/help` lists them.
///
/// The first word of each usage is the command name; tab completion takes names from here.
pub const COMMANDS: &[(&str, &str)] = &[
    (MSG_USAGE, "send TEXT privately to NICK"),
    (
        ME_USAGE,
        "an action to everyone: /me waves shows * NICK waves (your nick)",
    ),
    (
        AWAY_USAGE,
        "say you are away (with why); peers see it in /peers and when they /msg you",
    ),
    (
        BACK_USAGE,
        "say you are back (after an automatic away, typing anything also does)",
    ),
    (ADD_USAGE, "add a peer by address or name (without :PORT, the port you listen on, 7654 unless --port)"),
    (NICK_USAGE, "change your nick"),
    (
        PEERS_USAGE,
        "list known peers: state, round-trip time, queued messages, addresses",
    ),
    (
        WHOIS_USAGE,
        "all about one peer: id, nicks this run, state, addresses, round-trip time, queue (your own nick: your id)",
    ),
    (
        HISTORY_USAGE,
        "the last N lines (default 20) of the group, or of your conversation with NICK (NICK#ID: that identity alone)",
    ),
    (
        SEND_USAGE,
        "offer a file or a folder (with what is in it) to NICK",
    ),
    (
        ACCEPT_USAGE,
        "take file offer N (the latest when left out) into DIR or the download folder; or resume one paused by a full disk",
    ),
    (
        DECLINE_USAGE,
        "turn file offer N down (the latest when left out)",
    ),
    (CANCEL_USAGE, "stop file transfer N, sending or receiving"),
    (
        FILES_USAGE,
        "file transfers: direction, peer, name, size, state, progress, rate, time left",
    ),
    (
        FORGET_USAGE,
        "drop a peer who left for good: its address and the messages waiting for it (/forget ADDR: stop trying an /add nobody answers)",
    ),
    (HELP_USAGE, "show this list, or what COMMAND does"),
    (QUIT_USAGE, "leave the chat (also /exit)"),
];

/// What the user asked for with one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Text for everyone, exactly as typed (a leading `//` is sent as `/`).
    Say(String),
    /// `/msg NICK TEXT`: a private message; `text` keeps its inner and trailing spaces.
    Msg {
        /// Who the message is for.
        nick: String,
        /// The message, as typed after the nick.
        text: String,
    },
    /// `/me TEXT`: an action to everyone, the text as typed after `/me `.
    Me(String),
    /// `/away [REASON]` (`Some`, perhaps empty) or `/back` (`None`).
    Away(Option<String>),
    /// `/forget NICK` (or `NICK#IDPREFIX`).
    Forget(String),
    /// `/add HOST[:PORT]`, unparsed: resolving names is the network driver's job.
    Add(String),
    /// `/nick NEW`, already checked with [`is_valid_nick`].
    Nick(String),
    /// `/peers`.
    Peers,
    /// `/whois NICK` (or `NICK#IDPREFIX`).
    Whois(String),
    /// `/help`, or `/help COMMAND` (the name, without its `/`).
    Help(Option<String>),
    /// `/quit` or `/exit`.
    Quit,
    /// A file-transfer command.
    File(FileCommand),
    /// `/history [NICK] [N]`.
    History {
        /// Only messages exchanged with this nick, when given.
        nick: Option<String>,
        /// Only the last `count` messages (at least 1), when given.
        count: Option<usize>,
    },
}

/// A file-transfer command (see `crate::app::files`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileCommand {
    /// `/send NICK PATH`: the path as typed (it may contain spaces; a leading `~` is home).
    Send {
        /// To whom.
        nick: String,
        /// What.
        path: String,
    },
    /// `/accept [N] [DIR]`.
    Accept {
        /// Which offer (the latest waiting when `None`).
        number: Option<u32>,
        /// Into which folder (the download folder when `None`).
        dir: Option<String>,
    },
    /// `/decline [N]`.
    Decline(Option<u32>),
    /// `/cancel N`.
    Cancel(u32),
    /// `/files`.
    List,
}

/// Why a line could not be understood; its `Display` tells the user what to type instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// The word after `/` is not a command; holds the word as typed, slash included.
    Unknown(String),
    /// A known command with missing or extra arguments; holds its usage line.
    Usage(&'static str),
    /// A nick that breaks the rules of [`is_valid_nick`] (or, for ours,
    /// [`is_valid_own_nick`]); holds what is wrong with it ([`nick_problem`]).
    InvalidNick(String),
    /// `NICK#…` whose part after `#` is not the start of a peer's id (hex digits).
    InvalidId(String),
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown(name) => match nearest_commands(name).as_slice() {
                [] => write!(f, "unknown command {name} — type /help for the list"),
                meant => {
                    let (last, rest) = meant.split_last().unwrap_or((&"", &[]));
                    let meant = if rest.is_empty() {
                        (*last).to_owned()
                    } else {
                        format!("{} or {last}", rest.join(", "))
                    };
                    write!(
                        f,
                        "unknown command {name} — did you mean {meant}? (/help lists them)"
                    )
                }
            },
            Self::Usage(usage) => write!(f, "usage: {usage}"),
            Self::InvalidNick(why) => write!(f, "{why} — {NICK_RULE}"),
            Self::InvalidId(name) => write!(
                f,
                "{name}: after # come 4 to 16 hex digits of the peer's id, as /whois shows it (bob#1d79, or #1d79e0c2 alone)"
            ),
        }
    }
}

impl std::error::Error for CommandError {}

/// Parses one typed line.
///
/// Returns `Ok(None)` for an empty or whitespace-only line, which should simply be ignored.
///
/// # Errors
///
/// Returns a [`CommandError`] for an unknown `/command`, a command with the wrong arguments,
/// or an invalid nick; show it to the user and let them retype.
pub fn parse(line: &str) -> Result<Option<Command>, CommandError> {
    if line.trim().is_empty() {
        return Ok(None);
    }
    let Some(after_slash) = line.strip_prefix('/') else {
        return Ok(Some(Command::Say(line.to_owned())));
    };
    if after_slash.starts_with('/') {
        return Ok(Some(Command::Say(after_slash.to_owned())));
    }
    let (name, rest) = split_word(after_slash);
    let args: Vec<&str> = rest.split_whitespace().collect();
    let command = match name.to_ascii_lowercase().as_str() {
        "msg" => {
            let (nick, text) = split_word(rest.trim_start());
            if nick.is_empty() || text.trim().is_empty() {
                return Err(CommandError::Usage(MSG_USAGE));
            }
            Command::Msg {
                nick: checked_peer(nick)?,
                text: text.trim_start().to_owned(),
            }
        }
        "add" => match args.as_slice() {
            [address] => Command::Add((*address).to_owned()),
            _ => return Err(CommandError::Usage(ADD_USAGE)),
        },
        "nick" => match args.as_slice() {
            [] => return Err(CommandError::Usage(NICK_USAGE)),
            [nick] => match own_nick_problem(nick) {
                Some(why) => return Err(CommandError::InvalidNick(why)),
                None => Command::Nick((*nick).to_owned()),
            },
            // Several words are most likely a nick with a space in it, so say what is wrong
            // with the nick rather than repeating the usage.
            _ => {
                return Err(CommandError::InvalidNick(
                    nick_problem(" ").unwrap_or_default(),
                ))
            }
        },
        "peers" => no_arguments(&args, PEERS_USAGE, Command::Peers)?,
        "whois" => match args.as_slice() {
            [nick] => Command::Whois(checked_peer(nick)?),
            _ => return Err(CommandError::Usage(WHOIS_USAGE)),
        },
        "help" => match args.as_slice() {
            [] => Command::Help(None),
            [topic] => Command::Help(Some(topic.trim_start_matches('/').to_lowercase())),
            _ => return Err(CommandError::Usage(HELP_USAGE)),
        },
        "me" => {
            let text = rest.strip_prefix(' ').unwrap_or(rest);
            if text.trim().is_empty() {
                return Err(CommandError::Usage(ME_USAGE));
            }
            Command::Me(text.to_owned())
        }
        "away" => Command::Away(Some(rest.trim().to_owned())),
        "back" => no_arguments(&args, BACK_USAGE, Command::Away(None))?,
        "forget" => match args.as_slice() {
            [nick] => Command::Forget(checked_peer(nick)?),
            _ => return Err(CommandError::Usage(FORGET_USAGE)),
        },
        "quit" | "exit" => no_arguments(&args, QUIT_USAGE, Command::Quit)?,
        "history" => parse_history(&args)?,
        "send" => {
            let (nick, path) = split_word(rest.trim_start());
            let path = path.trim();
            if nick.is_empty() || path.is_empty() {
                return Err(CommandError::Usage(SEND_USAGE));
            }
            Command::File(FileCommand::Send {
                nick: checked_peer(nick)?,
                path: path.to_owned(),
            })
        }
        "accept" => {
            let (first, dir) = split_word(rest.trim_start());
            let dir = dir.trim();
            match (first.parse::<u32>(), first.is_empty()) {
                (Ok(n), _) => Command::File(FileCommand::Accept {
                    number: Some(n),
                    dir: (!dir.is_empty()).then(|| dir.to_owned()),
                }),
                (Err(_), true) => Command::File(FileCommand::Accept {
                    number: None,
                    dir: None,
                }),
                // No number: all of it is the folder (it may contain spaces).
                (Err(_), false) => Command::File(FileCommand::Accept {
                    number: None,
                    dir: Some(rest.trim().to_owned()),
                }),
            }
        }
        "decline" => match args.as_slice() {
            [] => Command::File(FileCommand::Decline(None)),
            [n] => Command::File(FileCommand::Decline(Some(
                n.parse().map_err(|_| CommandError::Usage(DECLINE_USAGE))?,
            ))),
            _ => return Err(CommandError::Usage(DECLINE_USAGE)),
        },
        "cancel" => match args.as_slice() {
            [n] => Command::File(FileCommand::Cancel(
                n.parse().map_err(|_| CommandError::Usage(CANCEL_USAGE))?,
            )),
            _ => return Err(CommandError::Usage(CANCEL_USAGE)),
        },
        "files" => no_arguments(&args, FILES_USAGE, Command::File(FileCommand::List))?,
        _ => return Err(CommandError::Unknown(format!("/{name}"))),
    };
    Ok(Some(command))
}

/// The `/help` text: one line per entry of [`COMMANDS`], descriptions aligned in a column.
#[must_use]
pub fn help_lines() -> Vec<String> {
    let width = COMMANDS
        .iter()
        .map(|(usage, _)| usage.chars().count())
        .max()
        .unwrap_or(0);
    let say = (
        "TEXT",
        "send TEXT to everyone (start it with // to send a leading /)",
    );
    std::iter::once(&say)
        .chain(COMMANDS.iter())
        .map(|(usage, description)| format!("{usage:<width$}  {description}"))
        .chain(HELP_FOOTER.iter().map(|l| (*l).to_owned()))
        .collect()
}

/// `/help COMMAND`: that command's line of [`help_lines`], or what to do instead.
pub fn help_for(topic: &str) -> Result<String, String> {
    let topic = if topic == "exit" { "quit" } else { topic };
    let wanted = format!("/{topic}");
    COMMANDS
        .iter()
        .find(|(usage, _)| usage.split_whitespace().next() == Some(wanted.as_str()))
        .map(|(usage, description)| format!("{usage}  {description}"))
        .ok_or_else(|| format!("no command {wanted}: /help lists them all"))
}

/// What `/help` says after the commands: the keys, and naming one of two peers with a nick.
const HELP_FOOTER: &[&str] = &[
    "Keys: Tab completes commands, nicks and paths; Up and Down recall earlier lines; Ctrl-C clears the line, and on an empty line quits, as Ctrl-D does; Ctrl-L redraws a screen garbled by a resize.",
    "Two peers with the same nick: write NICK#ID (the first hex digits of its id, as /whois shows it, and /peers while nicks are shared; Tab offers them); a nick you cannot type: #ID alone.",
];

/// The command names (`/msg`, `/add`, …) in [`COMMANDS`] order, then `/exit`, for completion.
pub fn command_names() -> impl Iterator<Item = &'static str> {
    COMMANDS
        .iter()
        .map(|(usage, _)| usage.split_whitespace().next().unwrap_or(usage))
        .chain(["/exit"])
}

/// The commands a mistyped `name` most likely meant: those it begins (`/pe` → `/peers`, `/m`
/// → `/me` or `/msg`), at most three, else the nearest one a typo or two away (one for names
/// of three characters or fewer: `/peer` → `/peers`).
fn nearest_commands(name: &str) -> Vec<&'static str> {
    let typed = name.to_lowercase();
    if typed.len() > 1 {
        let begun: Vec<&str> = command_names().filter(|c| c.starts_with(&typed)).collect();
        if !begun.is_empty() && begun.len() <= 3 {
            return begun;
        }
    }
    let most = if typed.chars().count() <= 3 { 1 } else { 2 };
    command_names()
        .map(|c| (strsim::damerau_levenshtein(&typed, c), c))
        .filter(|(d, _)| *d <= most)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
        .into_iter()
        .collect()
}

/// Splits off the first whitespace-separated word; the rest keeps its leading whitespace so
/// callers decide how much of the user's spacing to keep.
fn split_word(s: &str) -> (&str, &str) {
    match s.find(char::is_whitespace) {
        Some(end) => s.split_at(end),
        None => (s, ""),
    }
}

/// Whether `nick` may be ours: the protocol's rule, and shown exactly as written (no
/// invisible or format characters, no stacked marks), so nobody can take a nick that looks
/// like another's. Peers' nicks are only displayed that way, not refused.
#[must_use]
pub fn is_valid_own_nick(nick: &str) -> bool {
    own_nick_problem(nick).is_none()
}

/// What keeps `nick` from being ours ([`is_valid_own_nick`]), said so that the user can fix
/// it; `None` when nothing does.
#[must_use]
pub fn own_nick_problem(nick: &str) -> Option<String> {
    if let Some(why) = nick_problem(nick) {
        return Some(why);
    }
    // The first character after which the nick no longer shows as written.
    let mut end = 0;
    for c in nick.chars() {
        end += c.len_utf8();
        let so_far = &nick[..end];
        if crate::ui::render::display_nick(so_far) != so_far {
            return Some(format!(
                "U+{:04X} does not show as itself (invisible, a joiner or variation selector as in emoji sequences, or one mark too many): a nick must show exactly as typed",
                u32::from(c)
            ));
        }
    }
    None
}

/// Returns `nick` owned if [`is_valid_nick`] accepts it.
fn checked_nick(nick: &str) -> Result<String, CommandError> {
    match nick_problem(nick) {
        None => Ok(nick.to_owned()),
        Some(why) => Err(CommandError::InvalidNick(why)),
    }
}

/// A peer as a command names it: its nick, or `NICK#IDPREFIX` when nicks are shared (the
/// nick itself must follow the rule; which peer it is, is looked up later).
fn checked_peer(name: &str) -> Result<String, CommandError> {
    // `#1d79e0c2`: by id alone, for a peer whose nick cannot be typed.
    if is_id_alone(name) {
        return Ok(name.to_owned());
    }
    // `#abc`, `#xyz…`: an id alone, broken.
    if name.starts_with('#') {
        return Err(CommandError::InvalidId(name.to_owned()));
    }
    let nick = without_id(name);
    // `bob#zz`: a valid nick and a broken id, not a nick with a `#` in it.
    if nick == name && is_valid_nick(name.rsplit_once('#').map_or("", |(n, _)| n)) {
        return Err(CommandError::InvalidId(name.to_owned()));
    }
    checked_nick(nick).map(|_| name.to_owned())
}

/// Whether `name` is `#` and 4 to 16 hex digits: a peer named by the start of its id alone.
#[must_use]
pub fn is_id_alone(name: &str) -> bool {
    name.strip_prefix('#')
        .is_some_and(|id| (4..=16).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A peer's name without the `#IDPREFIX` that tells apart peers sharing a nick
/// (`bob#1d79e0c2` → `bob`); any other name as it is.
#[must_use]
pub fn without_id(name: &str) -> &str {
    match name.rsplit_once('#') {
        Some((nick, id)) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()) => nick,
        _ => name,
    }
}

/// `command` if no argument was given; extra words are refused rather than silently dropped
/// so that a typo like `/peers bob` is noticed.
fn no_arguments(
    args: &[&str],
    usage: &'static str,
    command: Command,
) -> Result<Command, CommandError> {
    if args.is_empty() {
        Ok(command)
    } else {
        Err(CommandError::Usage(usage))
    }
}

/// `/history`, `/history N`, `/history NICK`, `/history NICK N`. A lone all-digit word is a
/// count, not a nick: a peer called `42` is reached with `/history 42 20`.
fn parse_history(args: &[&str]) -> Result<Command, CommandError> {
    let usage = CommandError::Usage(HISTORY_USAGE);
    let (nick, count) = match args {
        [] => (None, None),
        [word] => match parse_count(word) {
            Some(Ok(count)) => (None, Some(count)),
            Some(Err(())) => return Err(usage),
            None => (Some(checked_peer(word)?), None),
        },
        [nick, count] => match parse_count(count) {
            Some(Ok(count)) => (Some(checked_peer(nick)?), Some(count)),
            _ => return Err(usage),
        },
        _ => return Err(usage),
    };
    Ok(Command::History { nick, count })
}

/// `None` if `word` is not a number at all, `Some(Err)` if it is one but not a usable count
/// (zero or too large), `Some(Ok)` otherwise.
fn parse_count(word: &str) -> Option<Result<usize, ()>> {
    // A sign makes it a (bad) number, not a nick: `/history -3` is a usage error.
    let digits = word.strip_prefix(['-', '+']).unwrap_or(word);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if digits.len() != word.len() {
        return Some(Err(()));
    }
    Some(match word.parse::<usize>() {
        Ok(count) if count > 0 => Ok(count),
        _ => Err(()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(line: &str) -> Command {
        parse(line)
            .unwrap_or_else(|e| panic!("{line:?} failed: {e}"))
            .unwrap_or_else(|| panic!("{line:?} parsed as nothing"))
    }

    fn err(line: &str) -> CommandError {
        match parse(line) {
            Err(e) => e,
            Ok(c) => panic!("{line:?} parsed as {c:?}"),
        }
    }

    fn say(text: &str) -> Command {
        Command::Say(text.to_owned())
    }

    #[test]
    fn blank_lines_are_nothing() {
        for line in ["", " ", "\t", "   \t  "] {
            assert_eq!(parse(line), Ok(None), "{line:?}");
        }
    }

    #[test]
    fn plain_text_is_said_exactly_as_typed() {
        assert_eq!(ok("hello"), say("hello"));
        assert_eq!(ok("  two  spaces  "), say("  two  spaces  "));
        assert_eq!(ok("héllo 👋 世界"), say("héllo 👋 世界"));
        // Only a slash in the first column makes a command.
        assert_eq!(ok(" /quit"), say(" /quit"));
        assert_eq!(ok("a/b"), say("a/b"));
    }

    #[test]
    fn double_slash_sends_a_literal_slash() {
        assert_eq!(ok("//foo"), say("/foo"));
        assert_eq!(ok("//"), say("/"));
        assert_eq!(ok("///x y"), say("//x y"));
    }

    #[test]
    fn long_text_passes_through() {
        let text = "x".repeat(70_000);
        assert_eq!(ok(&text), say(&text));
    }

    #[test]
    fn msg_splits_nick_and_keeps_text_spacing() {
        assert_eq!(
            ok("/msg bob hi  there "),
            Command::Msg {
                nick: "bob".into(),
                text: "hi  there ".into()
            }
        );
        assert_eq!(
            ok("/msg   bob \t  hi"),
            Command::Msg {
                nick: "bob".into(),
                text: "hi".into()
            }
        );
    }

    #[test]
    fn msg_without_text_is_a_usage_error() {
        for line in ["/msg", "/msg ", "/msg bob", "/msg bob   "] {
            assert_eq!(err(line), CommandError::Usage(MSG_USAGE), "{line:?}");
        }
        assert_eq!(err("/msg bob").to_string(), "usage: /msg NICK TEXT");
    }

    #[test]
    fn msg_to_an_impossible_nick_is_refused() {
        let long = "n".repeat(MAX_NICK_CHARS + 1);
        assert!(matches!(
            err(&format!("/msg {long} hi")),
            CommandError::InvalidNick(_)
        ));
    }

    #[test]
    fn add_takes_exactly_one_address() {
        assert_eq!(ok("/add 10.0.0.2"), Command::Add("10.0.0.2".into()));
        assert_eq!(ok("/add host:7654 "), Command::Add("host:7654".into()));
        assert_eq!(ok("/add [::1]:7654"), Command::Add("[::1]:7654".into()));
        assert_eq!(err("/add"), CommandError::Usage(ADD_USAGE));
        assert_eq!(err("/add a b"), CommandError::Usage(ADD_USAGE));
    }

    #[test]
    fn nick_is_validated() {
        assert_eq!(ok("/nick alice"), Command::Nick("alice".into()));
        assert_eq!(ok("/nick Zoë_世界"), Command::Nick("Zoë_世界".into()));
        let longest = "é".repeat(MAX_NICK_CHARS);
        assert_eq!(ok(&format!("/nick {longest}")), Command::Nick(longest));
        assert_eq!(err("/nick"), CommandError::Usage(NICK_USAGE));
        assert_eq!(
            ok("/msg bob#1d79e0c2 hi"),
            Command::Msg {
                nick: "bob#1d79e0c2".into(),
                text: "hi".into()
            }
        );
        // A good nick with a broken id says what comes after `#`.
        for (line, name) in [
            ("/msg bob#zz hi", "bob#zz"),
            ("/history bob#zz", "bob#zz"),
            ("/whois bob#", "bob#"),
            // An id alone, too short, too long or not hex: the rule for ids, not for nicks.
            ("/msg #abc hi", "#abc"),
            ("/whois #1d79e0c2aa55bb66cc", "#1d79e0c2aa55bb66cc"),
            ("/msg #xyz0 hi", "#xyz0"),
        ] {
            assert_eq!(err(line), CommandError::InvalidId(name.into()), "{line}");
        }
        assert!(CommandError::InvalidId("bob#zz".into())
            .to_string()
            .contains("4 to 16 hex digits"));
        assert!(matches!(
            err("/msg b\u{7}b#zz hi"),
            CommandError::InvalidNick(_)
        ));
        assert!(matches!(
            err("/nick bob#1d79"),
            CommandError::InvalidNick(_)
        ));
        assert!(matches!(
            err("/nick b\u{200b}ob"),
            CommandError::InvalidNick(_)
        ));
        assert!(matches!(
            err("/nick bo\u{300}\u{300}\u{300}\u{300}\u{300}b"),
            CommandError::InvalidNick(_)
        ));
        assert!(matches!(
            err("/nick bob smith"),
            CommandError::InvalidNick(_)
        ));
        let too_long = "é".repeat(MAX_NICK_CHARS + 1);
        assert!(matches!(
            err(&format!("/nick {too_long}")),
            CommandError::InvalidNick(_)
        ));
        assert!(matches!(err("/nick a\u{7}b"), CommandError::InvalidNick(_)));
        assert!(matches!(
            err("/nick a\u{1b}[2Jb"),
            CommandError::InvalidNick(_)
        ));
        assert!(matches!(
            err("/nick \u{202e}evil"),
            CommandError::InvalidNick(_)
        ));
        // Each says what is wrong, then the rule.
        let said = |line: &str| err(line).to_string();
        assert!(
            said("/nick a b").starts_with("no spaces in a nick"),
            "{}",
            said("/nick a b")
        );
        assert!(said("/nick a b").ends_with(NICK_RULE));
        assert!(said("/nick bob#1d79").starts_with("no '#' in a nick"));
        assert!(said("/nick a\u{1b}[2Jb").starts_with("U+001B is a control character"));
        assert!(!said("/nick a\u{1b}[2Jb").contains('\u{1b}'));
        assert!(said("/nick \u{202e}evil").starts_with("U+202E changes the direction"));
        assert!(said(&format!("/nick {too_long}")).starts_with("33 characters is too long"));
        assert!(said(&format!("/nick {}", "😀".repeat(17))).starts_with("68 bytes of UTF-8"));
        assert!(said("/nick b\u{200b}ob").starts_with("U+200B does not show as itself"));
        // A family emoji is three joined by U+200D: the joiner is named.
        assert!(said("/nick 👨\u{200d}👩\u{200d}👧").starts_with("U+200D does not show"));
        assert_eq!(own_nick_problem("bob"), None);
        assert_eq!(own_nick_problem("ﾎﾞﾌﾞ"), None);
        // 17 emoji are 17 characters but 68 bytes: over the wire's limit.
        let emoji = "😀".repeat(17);
        assert!(matches!(
            err(&format!("/nick {emoji}")),
            CommandError::InvalidNick(_)
        ));
        assert!(is_valid_nick(&"😀".repeat(16)));
    }

    #[test]
    fn nick_rules() {
        assert!(is_valid_nick("a"));
        assert!(!is_valid_nick(""));
        assert!(!is_valid_nick("a\u{a0}b"), "no-break space is whitespace");
        assert!(!is_valid_nick("a\u{85}b"), "C1 control");
        assert!(!is_valid_nick("a\u{2066}b"), "bidi isolate");
    }

    #[test]
    fn argumentless_commands() {
        assert_eq!(ok("/peers"), Command::Peers);
        assert_eq!(ok("/help"), Command::Help(None));
        assert_eq!(ok("/help /MSG"), Command::Help(Some("msg".into())));
        assert_eq!(err("/help msg me"), CommandError::Usage(HELP_USAGE));
        assert!(help_for("whois")
            .unwrap()
            .starts_with("/whois NICK  all about one peer"));
        assert!(help_for("exit")
            .unwrap()
            .starts_with("/quit  leave the chat"));
        assert_eq!(
            help_for("frob").unwrap_err(),
            "no command /frob: /help lists them all"
        );
        assert_eq!(ok("/quit"), Command::Quit);
        assert_eq!(ok("/exit"), Command::Quit);
        assert_eq!(ok("/quit   "), Command::Quit);
        assert_eq!(err("/peers bob"), CommandError::Usage(PEERS_USAGE));
        assert_eq!(err("/exit now"), CommandError::Usage(QUIT_USAGE));
    }

    #[test]
    fn names_ignore_ascii_case() {
        assert_eq!(ok("/QUIT"), Command::Quit);
        assert_eq!(
            ok("/Msg Bob hi"),
            Command::Msg {
                nick: "Bob".into(),
                text: "hi".into()
            }
        );
    }

    #[test]
    fn history_forms() {
        let history = |nick: Option<&str>, count| Command::History {
            nick: nick.map(str::to_owned),
            count,
        };
        assert_eq!(ok("/history"), history(None, None));
        assert_eq!(ok("/history 50"), history(None, Some(50)));
        assert_eq!(ok("/history bob"), history(Some("bob"), None));
        assert_eq!(ok("/history bob 50"), history(Some("bob"), Some(50)));
        assert_eq!(ok("/history 42 5"), history(Some("42"), Some(5)));
    }

    #[test]
    fn history_rejects_bad_counts_and_extra_words() {
        for line in [
            "/history 0",
            "/history bob 0",
            "/history bob x",
            "/history 50 bob",
            "/history a b c",
            "/history 99999999999999999999999",
            "/history -3",
            "/history +3",
            "/history bob -3",
        ] {
            assert_eq!(err(line), CommandError::Usage(HISTORY_USAGE), "{line:?}");
        }
        assert!(matches!(
            err("/history b\u{1b}b"),
            CommandError::InvalidNick(_)
        ));
    }

    #[test]
    fn file_commands_parse() {
        let file = |l: &str| match parse(l) {
            Ok(Some(Command::File(f))) => f,
            other => panic!("{l}: {other:?}"),
        };
        assert_eq!(
            file("/send bob ~/My Documents/a b.pdf"),
            FileCommand::Send {
                nick: "bob".into(),
                path: "~/My Documents/a b.pdf".into()
            }
        );
        assert_eq!(
            file("/accept"),
            FileCommand::Accept {
                number: None,
                dir: None
            }
        );
        assert_eq!(
            file("/accept 3 /mnt/usb stick"),
            FileCommand::Accept {
                number: Some(3),
                dir: Some("/mnt/usb stick".into())
            }
        );
        assert_eq!(
            file("/accept ~/in"),
            FileCommand::Accept {
                number: None,
                dir: Some("~/in".into())
            }
        );
        assert_eq!(file("/decline"), FileCommand::Decline(None));
        assert_eq!(file("/decline 2"), FileCommand::Decline(Some(2)));
        assert_eq!(file("/cancel 4"), FileCommand::Cancel(4));
        assert_eq!(file("/files"), FileCommand::List);
        assert_eq!(err("/send bob"), CommandError::Usage(SEND_USAGE));
        assert_eq!(err("/cancel"), CommandError::Usage(CANCEL_USAGE));
        assert_eq!(err("/cancel x"), CommandError::Usage(CANCEL_USAGE));
        assert_eq!(err("/decline 1 2"), CommandError::Usage(DECLINE_USAGE));
    }

    #[test]
    fn unknown_commands_name_themselves_and_point_to_help() {
        assert_eq!(err("/foo bar"), CommandError::Unknown("/foo".into()));
        // A typo is pointed at the command it most likely meant.
        assert_eq!(
            err("/peer").to_string(),
            "unknown command /peer — did you mean /peers? (/help lists them)"
        );
        assert!(err("/Quti").to_string().contains("did you mean /quit?"));
        // The beginning of a command's name: each it begins.
        assert!(err("/pe").to_string().contains("did you mean /peers?"));
        assert!(err("/q").to_string().contains("did you mean /quit?"));
        assert!(err("/m bob hi")
            .to_string()
            .contains("did you mean /msg or /me?"));
        assert_eq!(
            err("/xyzzy").to_string(),
            "unknown command /xyzzy — type /help for the list"
        );
        assert_eq!(
            err("/foo").to_string(),
            "unknown command /foo — type /help for the list"
        );
        assert_eq!(err("/"), CommandError::Unknown("/".into()));
        assert_eq!(err("/ hi"), CommandError::Unknown("/".into()));
    }

    #[test]
    fn every_listed_command_parses_and_is_named() {
        let names: Vec<&str> = command_names().collect();
        assert_eq!(
            names,
            [
                "/msg", "/me", "/away", "/back", "/add", "/nick", "/peers", "/whois", "/history",
                "/send", "/accept", "/decline", "/cancel", "/files", "/forget", "/help", "/quit",
                "/exit"
            ]
        );
        for name in names {
            assert!(
                !matches!(parse(name), Err(CommandError::Unknown(_))),
                "{name} is listed but unknown to parse"
            );
        }
    }

    #[test]
    fn help_is_one_aligned_line_per_command() {
        let lines = help_lines();
        assert_eq!(
            lines.len(),
            COMMANDS.len() + 1 + HELP_FOOTER.len(),
            "plain text first, then each command, then the keys"
        );
        assert!(lines.last().unwrap().contains("NICK#ID"));
        assert!(lines[0].starts_with("TEXT ") && lines[0].contains("everyone"));
        let column = |line: &str, description: &str| line.find(description).unwrap();
        let first = column(&lines[1], COMMANDS[0].1);
        for (line, (usage, description)) in lines[1..=COMMANDS.len()].iter().zip(COMMANDS) {
            assert!(line.starts_with(usage), "{line:?}");
            assert_eq!(column(line, description), first, "{line:?} is not aligned");
        }
        assert_eq!(column(&lines[0], "send TEXT to everyone"), first);
        assert_eq!(lines[1], "/msg NICK TEXT       send TEXT privately to NICK");
    }
}

#[cfg(test)]
mod presence_tests {
    use super::*;

    #[test]
    fn me_away_back_and_forget_parse() {
        assert_eq!(
            parse("/me waves  at you"),
            Ok(Some(Command::Me("waves  at you".into())))
        );
        assert_eq!(parse("/ME waves"), Ok(Some(Command::Me("waves".into()))));
        assert_eq!(parse("/me"), Err(CommandError::Usage(ME_USAGE)));
        assert_eq!(parse("/me   "), Err(CommandError::Usage(ME_USAGE)));
        assert_eq!(
            parse("/away  out for lunch "),
            Ok(Some(Command::Away(Some("out for lunch".into()))))
        );
        assert_eq!(parse("/away"), Ok(Some(Command::Away(Some(String::new())))));
        assert_eq!(parse("/back"), Ok(Some(Command::Away(None))));
        assert_eq!(parse("/back now"), Err(CommandError::Usage(BACK_USAGE)));
        assert_eq!(
            parse("/forget bob#1d79"),
            Ok(Some(Command::Forget("bob#1d79".into())))
        );
        assert_eq!(parse("/forget"), Err(CommandError::Usage(FORGET_USAGE)));
        assert_eq!(parse("/forget a b"), Err(CommandError::Usage(FORGET_USAGE)));
    }

    #[test]
    fn help_names_every_new_command() {
        let help = help_lines().join("\n");
        for usage in [ME_USAGE, AWAY_USAGE, BACK_USAGE, FORGET_USAGE] {
            assert!(help.contains(usage), "{usage} missing from /help");
        }
    }
}
