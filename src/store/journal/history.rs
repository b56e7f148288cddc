//! History queries: which records make up the group conversation or a direct one, and how a
//! line of history is printed.

use super::Record;
use crate::proto::PeerId;
use chrono::{Local, TimeZone};
use std::collections::{BTreeMap, BTreeSet};

/// Which part of the conversation [`Journal::history`](super::Journal::history) returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HistoryFilter {
    /// Messages to and from the group.
    Group,
    /// The direct messages between us and the peer(s) that ever went by `nick`.
    Direct {
        /// The peer's nick, exactly as it was recorded.
        nick: String,
    },
}

/// One message of the conversation, as [`Journal::history`](super::Journal::history) returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryLine {
    /// When it was sent (ours) or received (theirs), in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// Who spoke: our nick then, or theirs.
    pub nick: String,
    /// For our direct messages, the recipient's nick (as last recorded before the message, or
    /// its id in hex if no nick was); `None` otherwise.
    pub to: Option<String>,
    /// Whether it was a direct message.
    pub direct: bool,
    /// The text, as written or received: unsanitised.
    pub text: String,
}

/// The lines of `records` that `filter` selects, in file order.
pub(super) fn select(records: &[Record], filter: &HistoryFilter) -> Vec<HistoryLine> {
    // The peers a direct conversation is with: a nick can move between ids (a peer that lost
    // its identity) and an id between nicks (`/nick`), so gather every id that had the nick.
    let direct_ids: BTreeSet<PeerId> = match filter {
        HistoryFilter::Group => BTreeSet::new(),
        HistoryFilter::Direct { nick: wanted } => records
            .iter()
            .filter_map(|r| match r {
                Record::Heard { from, nick, .. } | Record::Peer { id: from, nick, .. }
                    if nick == wanted =>
                {
                    Some(*from)
                }
                _ => None,
            })
            .collect(),
    };
    let wanted = |direct_to: Option<PeerId>| match filter {
        HistoryFilter::Group => direct_to.is_none(),
        HistoryFilter::Direct { .. } => direct_to.is_some_and(|p| direct_ids.contains(&p)),
    };
    // Each peer's nick as of the record being read, to name the recipient of our direct
    // messages as it was called then.
    let mut nicks: BTreeMap<PeerId, &str> = BTreeMap::new();
    let mut lines = Vec::new();
    for record in records {
        match record {
            Record::Said {
                at_ms,
                nick,
                direct_to,
                text,
                ..
            } if wanted(*direct_to) => lines.push(HistoryLine {
                at_ms: *at_ms,
                nick: nick.clone(),
                to: direct_to.map(|p| match nicks.get(&p) {
                    Some(nick) => nick.to_string(),
                    None => p.to_string(),
                }),
                direct: direct_to.is_some(),
                text: text.clone(),
            }),
            Record::Heard {
                at_ms,
                from,
                nick,
                direct,
                text,
                ..
            } => {
                nicks.insert(*from, nick);
                if wanted(direct.then_some(*from)) {
                    lines.push(HistoryLine {
                        at_ms: *at_ms,
                        nick: nick.clone(),
                        to: None,
                        direct: *direct,
                        text: text.clone(),
                    });
                }
            }
            Record::Peer { id, nick, .. } => {
                nicks.insert(*id, nick);
            }
            _ => {}
        }
    }
    lines
}

/// `l` as one line of text in local time: `2026-11-25 14:02 <alice> text` for the group,
/// `… *alice* text` for a direct message to us, `… *-> bob* text` for one from us. The text is
/// not sanitised here: the caller renders it for the terminal.
pub fn format_history_line(l: &HistoryLine) -> String {
    let when = match Local.timestamp_millis_opt(l.at_ms).earliest() {
        Some(t) => t.format("%Y-%m-%d %H:%M").to_string(),
        // Out of chrono's range: only a damaged or hand-made record has such a time.
        None => "????-??-?? ??:??".to_string(),
    };
    let who = match (&l.to, l.direct) {
        (Some(to), _) => format!("*-> {to}*"),
        (None, true) => format!("*{}*", l.nick),
        (None, false) => format!("<{}>", l.nick),
    };
    format!("{when} {who} {}", l.text)
}
