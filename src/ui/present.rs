//! Presentation: what the user reads for each protocol event and for `/peers`. Pure functions
//! of their inputs, so they are tested without a terminal or a network.

use crate::proto::{Event, Found, MessageId, PeerId, PeerInfo, PeerState, UndeliveredReason};
use crate::ui::render::Output;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

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
    fn quote(&self, id: MessageId) -> String {
        self.messages
            .get(&id)
            .map_or_else(|| format!("message {id}"), |(s, _)| format!("“{s}”"))
    }

    /// One recipient is done with a message (delivered or given up). A peer the message was
    /// never queued for (refused at once, its queue full) changes nothing.
    fn settle(&mut self, id: MessageId, peer: PeerId) {
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
pub fn event_output(
    event: &Event,
    nick_of: impl Fn(PeerId) -> String,
    outstanding: &mut Outstanding,
) -> Option<Output> {
    let out = match event {
        Event::Message {
            nick, text, direct, ..
        } => {
            if *direct {
                Output::Direct {
                    from: nick.clone(),
                    to: None,
                    text: text.clone(),
                }
            } else {
                Output::Group {
                    nick: nick.clone(),
                    text: text.clone(),
                }
            }
        }
        Event::PeerJoined { nick, addr, .. } => {
            Output::Notice(format!("{nick} joined ({})", show_addr(*addr)))
        }
        Event::PeerRenamed { old, new, .. } => Output::Notice(format!("{old} is now {new}")),
        Event::PeerLeft { nick, queued, .. } => Output::Notice(match queued {
            0 => format!("{nick} left"),
            n => format!("{nick} left; {n} of your messages wait for their return"),
        }),
        Event::PeerUnreachable { nick, queued, .. } => Output::Notice(match queued {
            0 => format!("{nick} is not answering"),
            n => format!("{nick} is not answering; {n} of your messages wait and will be resent when they are back"),
        }),
        Event::PeerReachable { nick, .. } => Output::Notice(format!("{nick} is answering again")),
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
            };
            Output::Error(format!("not delivered to {}: {quote} — {why}", nick_of(*to)))
        }
        Event::PeerForgotten { nick, dropped, .. } => Output::Error(format!(
            "forgot {nick}, long absent, to make room for new peers: {} message(s) waiting for them were dropped",
            dropped.len()
        )),
        Event::AddressUnanswered { addr } => Output::Notice(format!(
            "no answer from {} yet (still trying) — is tailchat running there, and UDP port {} open?",
            show_addr(*addr),
            addr.port()
        )),
        Event::VersionMismatch { from, version } => Output::Notice(format!(
            "{} runs tailchat protocol version {version}, this one speaks {}: upgrade the older one",
            show_addr(*from),
            crate::proto::wire::VERSION
        )),
    };
    Some(out)
}

/// An address as people write it (no `::ffff:` prefix).
pub fn show_addr(addr: SocketAddr) -> String {
    SocketAddr::new(addr.ip().to_canonical(), addr.port()).to_string()
}

/// Lines of `/peers`: a header and one line per peer.
pub fn peers_lines(peers: &[PeerInfo], now: Instant) -> Vec<String> {
    if peers.is_empty() {
        return vec!["no peers yet — /add HOST[:PORT] to reach someone".to_owned()];
    }
    let nick_w = peers
        .iter()
        .map(|p| p.nick.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut lines = vec![format!(
        "{:nick_w$}  {:11}  {:>8}  {:>6}  {:>10}  {:8}  addresses",
        "nick", "state", "rtt", "queued", "last heard", "found"
    )];
    for p in peers {
        let state = match p.state {
            PeerState::Offline => "offline",
            PeerState::Online => "online",
            PeerState::Unreachable => "unreachable",
            PeerState::Left => "left",
        };
        let rtt = p.rtt.map_or_else(|| "?".to_owned(), show_rtt);
        let found = match p.found {
            Found::Manual => "manual",
            Found::Announced => "announced",
            Found::Learned => "learned",
            Found::Incoming => "incoming",
        };
        let addrs: Vec<String> = p.addrs.iter().map(|a| show_addr(*a)).collect();
        lines.push(format!(
            "{:nick_w$}  {:11}  {:>8}  {:>6}  {:>10}  {:8}  {}",
            p.nick,
            state,
            rtt,
            p.undelivered,
            ago(now.saturating_duration_since(p.last_heard)),
            found,
            addrs.join(", ")
        ));
    }
    lines
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
