//! JSON lines for programs (`--json`, and the control socket): one JSON object per line for
//! every event out, one JSON command per line in. The schema is in the README ("Scripts and
//! bots"); every object carries `"v": 1`. Peer text is JSON-escaped, never sanitised: a program
//! gets exactly what was sent. Pure: values in, strings out.

use crate::proto::{
    Event, ForgetReason, Found, MessageId, PeerId, PeerInfo, PeerState, UndeliveredReason,
};
use crate::store::journal::HistoryLine;
use crate::ui::command::{is_valid_nick, Command, NICK_RULE};
use crate::ui::present::PeerNote;
use crate::ui::render::Output;
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Instant;

/// The schema's version, in every object.
pub const VERSION: u32 = 1;

/// One command as a program sends it; unknown fields are ignored.
#[derive(Debug, Deserialize)]
struct Wire {
    /// What to do.
    cmd: String,
    /// `send`, `msg`: the message.
    text: Option<String>,
    /// `msg`: the recipient's nick (or `NICK#IDPREFIX`).
    to: Option<String>,
    /// `nick`: the new nick; `history`: whose conversation.
    nick: Option<String>,
    /// `add`: `HOST[:PORT]`.
    host: Option<String>,
    /// `history`: how many lines.
    count: Option<usize>,
    /// `command`: a `/command` line as a person would type it.
    line: Option<String>,
}

/// The command a JSON line asks for.
///
/// # Errors
/// Not JSON, not an object with a `cmd`, an unknown command, or a missing or invalid field:
/// the message says which.
pub fn parse_command(line: &str) -> Result<Option<Command>, String> {
    if line.trim().is_empty() {
        return Ok(None);
    }
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("not a JSON command: {e}"))?;
    if !value.is_object() {
        return Err(
            r#"not a command: send an object like {"cmd":"send","text":"hello"}"#.to_owned(),
        );
    }
    let w: Wire = serde_json::from_value(value).map_err(|e| format!("not a JSON command: {e}"))?;
    let need = |field: Option<String>, name: &str| {
        field.ok_or_else(|| format!("'{}' needs a \"{name}\" field", w.cmd))
    };
    let cmd = match w.cmd.as_str() {
        "send" => Command::Say(need(w.text.clone(), "text")?),
        "msg" => Command::Msg {
            nick: need(w.to.clone(), "to")?,
            text: need(w.text.clone(), "text")?,
        },
        "nick" => {
            let nick = need(w.nick.clone(), "nick")?;
            if !is_valid_nick(&nick) {
                return Err(NICK_RULE.to_owned());
            }
            Command::Nick(nick)
        }
        "add" => Command::Add(need(w.host.clone(), "host")?),
        "peers" => Command::Peers,
        "history" => {
            if w.count == Some(0) {
                return Err("'history' needs a \"count\" of at least 1".to_owned());
            }
            Command::History {
                nick: w.nick.clone(),
                count: w.count,
            }
        }
        "quit" => Command::Quit,
        "me" => Command::Me(need(w.text.clone(), "text")?),
        // "text" is the reason; without it, away with none.
        "away" => Command::Away(Some(w.text.clone().unwrap_or_default())),
        "back" => Command::Away(None),
        // Any command a person types (files among them: /send, /accept, /files, …).
        "command" => {
            let line = need(w.line.clone(), "line")?;
            if !line.starts_with('/') || line.starts_with("//") {
                return Err(
                    "'command' takes a /command line as typed; to say something, use send"
                        .to_owned(),
                );
            }
            return crate::ui::command::parse(&line).map_err(|e| e.to_string());
        }
        other => {
            return Err(format!(
                "unknown command '{other}' (known: send, me, msg, nick, add, peers, history, away, back, command, quit)"
            ))
        }
    };
    Ok(Some(cmd))
}

/// An object of `kind` with the version, and `fields`.
fn object(kind: &str, fields: Value) -> String {
    let mut o = json!({ "v": VERSION, "type": kind });
    if let (Some(o), Value::Object(fields)) = (o.as_object_mut(), fields) {
        o.extend(fields);
    }
    escape_invisible(&o.to_string())
}

/// `line` (serialised JSON) with every character that a terminal could take for a control,
/// or that reorders or hides text, written as `\uXXXX`: DEL and the C1 controls (U+007F to
/// U+009F; U+009B is CSI to some terminals), the line and paragraph separators, and the
/// bidirectional marks, embeddings, overrides and isolates, and every other character the
/// human output drops as invisible ([`crate::ui::render::is_invisible`]: zero-width spaces and
/// joiners, the BOM, soft hyphens, tag characters, …). serde_json escapes only what JSON
/// requires (below U+0020), and a peer's nick or text reaches a program's terminal as is when
/// someone watches `--json` output. Such characters occur only inside strings, so the line
/// stays valid JSON and decodes to the same text; one beyond U+FFFF is written as its UTF-16
/// surrogate pair, as JSON wants.
fn escape_invisible(line: &str) -> String {
    use std::fmt::Write;
    let hidden = |c: char| {
        // (The joiners too: the screen keeps them only between two characters they join.)
        matches!(c, '\u{7f}'..='\u{9f}' | '\u{2028}' | '\u{2029}' | '\u{61c}' | '\u{200c}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
            || crate::ui::render::is_invisible(c)
    };
    if !line.contains(hidden) {
        return line.to_owned();
    }
    let mut out = String::with_capacity(line.len() + 16);
    for c in line.chars() {
        if hidden(c) {
            for unit in c.encode_utf16(&mut [0; 2]) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The first object: who we are and where we listen.
pub fn ready(nick: &str, id: PeerId, port: u16) -> String {
    object(
        "ready",
        json!({ "nick": nick, "id": id.to_string(), "port": port, "version": env!("CARGO_PKG_VERSION") }),
    )
}

/// A human line (error, notice, information) as JSON.
pub fn line(out: &Output) -> String {
    match out {
        Output::Error(text) => object("error", json!({ "message": text })),
        Output::Notice(text) => object("notice", json!({ "text": text })),
        Output::Info(text) | Output::Dated(text) => object("info", json!({ "text": text })),
        Output::Group { nick, text } => {
            object("info", json!({ "text": format!("<{nick}> {text}") }))
        }
        Output::Direct { from, text, .. } => {
            object("info", json!({ "text": format!("*{from}* {text}") }))
        }
        Output::Action { nick, text } => {
            object("info", json!({ "text": format!("* {nick} {text}") }))
        }
        Output::Mention(inner) => line(inner),
        Output::Late { message, .. } => line(message),
        Output::File(f) => object(
            "file",
            json!({
                "event": f.event, "number": f.number, "direction": f.direction,
                "peer": f.peer, "peer_id": f.peer_id, "name": f.name, "size": f.size,
                "files": f.files, "took_ms": f.took_ms, "resumed_from": f.resumed_from,
                "path": f.path, "text": f.text, "error": f.error,
            }),
        ),
    }
}

/// A message of ours, as queued: `to` is the recipient of a direct message; `refused` are
/// the peers it was also for whose queues were full (it is not kept for them).
pub fn sent(
    id: MessageId,
    nick: &str,
    to: Option<(PeerId, &str)>,
    (recipients, refused, away): (&[PeerId], &[PeerId], &[PeerId]),
    (text, action): (&str, bool),
    at_ms: i64,
) -> String {
    object(
        "sent",
        json!({
            "id": id.0,
            "from": nick,
            "to": to.map(|(_, n)| n),
            "to_id": to.map(|(p, _)| p.to_string()),
            "direct": to.is_some(),
            "recipients": recipients.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "refused": refused.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "away": away.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "text": text,
            "action": action,
            "time": time(at_ms),
        }),
    )
}

/// A protocol event as JSON; `nick_of` names a peer by id.
pub fn event(e: &Event, nick_of: impl Fn(PeerId) -> String, at_ms: i64) -> String {
    match e {
        Event::Message {
            from,
            nick,
            id,
            direct,
            action,
            age,
            text,
        } => object(
            "message",
            json!({
                "id": id.0, "from": nick, "from_id": from.to_string(),
                "direct": direct, "action": action, "text": text, "time": time(at_ms),
                "written": time(crate::app::persist::written_ms(at_ms, *age)),
                "late": *age >= crate::ui::present::LATE_AFTER,
            }),
        ),
        Event::PeerAway { peer, nick, away } => object(
            "away",
            json!({ "nick": nick, "id": peer.to_string(), "away": away.is_some(), "reason": away }),
        ),
        Event::PeerJoined {
            peer,
            nick,
            was,
            addr,
        } => object(
            "join",
            json!({ "nick": nick, "id": peer.to_string(), "was": was, "addr": show(*addr) }),
        ),
        Event::PeerRenamed { peer, old, new } => object(
            "nick",
            json!({ "id": peer.to_string(), "old": old, "new": new }),
        ),
        Event::PeerLeft {
            peer, nick, queued, ..
        } => object(
            "leave",
            json!({ "nick": nick, "id": peer.to_string(), "queued": queued }),
        ),
        Event::PeerUnreachable { peer, nick, queued } => object(
            "unreachable",
            json!({ "nick": nick, "id": peer.to_string(), "queued": queued }),
        ),
        Event::PeerReachable { peer, nick } => {
            object("reachable", json!({ "nick": nick, "id": peer.to_string() }))
        }
        Event::PeerRestarted { peer, nick } => {
            object("restarted", json!({ "nick": nick, "id": peer.to_string() }))
        }
        Event::Delivered { to, id, late } => object(
            "delivered",
            json!({ "id": id.0, "to": nick_of(*to), "to_id": to.to_string(), "late": late }),
        ),
        Event::DeliveryDelayed { to, id } => object(
            "delayed",
            json!({ "id": id.0, "to": nick_of(*to), "to_id": to.to_string() }),
        ),
        Event::Undelivered { to, id, reason } => object(
            "not_delivered",
            json!({
                "id": id.0, "to": nick_of(*to), "to_id": to.to_string(),
                "reason": match reason {
                    UndeliveredReason::QueueFull => "queue_full",
                    UndeliveredReason::Superseded => "superseded",
                },
            }),
        ),
        Event::PeerForgotten {
            peer,
            nick,
            dropped,
            reason,
        } => object(
            "forgotten",
            json!({
                "nick": nick, "id": peer.to_string(),
                "dropped": dropped.iter().map(|m| m.0).collect::<Vec<_>>(),
                "reason": match reason {
                    ForgetReason::Room => "room",
                    ForgetReason::Ephemeral => "ephemeral",
                    ForgetReason::Asked => "asked",
                },
            }),
        ),
        Event::NewcomerRefused {
            addr,
            nick,
            address_full,
        } => object(
            "refused",
            json!({
                "addr": show(*addr), "nick": nick,
                "reason": if *address_full { "address_full" } else { "table_full" },
            }),
        ),
        Event::AddressUnanswered { addr } => object("no_answer", json!({ "addr": show(*addr) })),
        Event::EarlierRunRefused { peer, nick, addr } => object(
            "earlier_run",
            json!({ "nick": nick, "id": peer.to_string(), "addr": show(*addr) }),
        ),
        Event::Superseded { by, addr } => object(
            "superseded",
            json!({ "by_id": by.to_string(), "addr": show(*addr) }),
        ),
        Event::VersionMismatch { from, version } => object(
            "version_mismatch",
            json!({ "addr": show(*from), "version": version }),
        ),
        Event::AppData { from, data } => object(
            "app_data",
            json!({ "from_id": from.to_string(), "bytes": data.len() }),
        ),
    }
}

/// The answer to `peers`.
pub fn peers(list: &[PeerInfo], now: Instant) -> String {
    peers_noted(list, now, |_| PeerNote::default())
}

/// [`peers`], with what `note` adds: `found` is `tailnet` for a peer found through the
/// tailnet's device list, and `who` is who the tailnet says is at its address (or null).
pub fn peers_noted(
    list: &[PeerInfo],
    now: Instant,
    note: impl Fn(&PeerInfo) -> PeerNote,
) -> String {
    let peers: Vec<Value> = list
        .iter()
        .map(|p| {
            let note = note(p);
            json!({
                "nick": p.nick,
                "id": p.id.to_string(),
                "state": match p.state {
                    PeerState::Offline => "offline",
                    PeerState::Online => "online",
                    PeerState::Unreachable => "unreachable",
                    PeerState::Left => "left",
                },
                // In whole microseconds: 0.935, not 0.9349999999999999.
                "rtt_ms": p.rtt.map(|d| (d.as_micros() as f64) / 1e3),
                "queued": p.undelivered,
                "last_heard_s": now.saturating_duration_since(p.last_heard).as_secs_f64(),
                "found": match p.found {
                    _ if note.tailnet => "tailnet",
                    Found::Manual => "manual",
                    Found::Announced => "announced",
                    Found::Learned => "learned",
                    Found::Incoming => "incoming",
                    Found::Remembered => "remembered",
                },
                "addrs": p.addrs.iter().map(|a| show(*a)).collect::<Vec<_>>(),
                "who": note.who,
                "away": p.away,
                "ephemeral": p.ephemeral,
            })
        })
        .collect();
    object("peers", json!({ "peers": peers }))
}

/// The answer to `history` (`kind` "history"), or messages missed in an earlier run, shown at
/// start (`kind` "missed"): one part of it, and whether `more` parts follow (a long one comes
/// in parts of about a megabyte).
pub fn history(kind: &str, lines: &[HistoryLine], more: bool) -> String {
    let lines: Vec<Value> = lines.iter().map(history_line).collect();
    object(kind, json!({ "lines": lines, "more": more }))
}

fn history_line(l: &HistoryLine) -> Value {
    json!({
        "time": time(l.at_ms), "from": l.nick, "from_id": l.from.map(|id| id.to_string()), "to": l.to,
        "direct": l.direct, "action": l.action, "text": l.text,
    })
}

/// Milliseconds since the epoch as RFC 3339, UTC.
fn time(at_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(at_ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

fn show(a: std::net::SocketAddr) -> String {
    std::net::SocketAddr::new(a.ip().to_canonical(), a.port()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(line: &str) -> Value {
        serde_json::from_str(line).unwrap()
    }

    /// A history line says who wrote it by id as well as by nick (two identities may have
    /// gone by one nick); our own lines have no id.
    #[test]
    fn history_lines_carry_the_senders_id() {
        let line = |from| HistoryLine::group(1_700_000_000_000, "bob", from, "hi");
        let v = parsed(&history(
            "history",
            &[line(Some(PeerId(0xab))), line(None)],
            false,
        ));
        assert_eq!(v["lines"][0]["from_id"], "00000000000000ab");
        assert_eq!(v["lines"][1]["from_id"], Value::Null);
    }

    #[test]
    fn commands_parse_with_unknown_fields_ignored_and_errors_said() {
        assert_eq!(
            parse_command(r#"{"cmd":"send","text":"hi","extra":1}"#),
            Ok(Some(Command::Say("hi".into())))
        );
        assert_eq!(
            parse_command(r#"{"cmd":"msg","to":"bob","text":" two  spaces "}"#),
            Ok(Some(Command::Msg {
                nick: "bob".into(),
                text: " two  spaces ".into()
            }))
        );
        assert_eq!(
            parse_command(r#"{"cmd":"history","nick":"bob","count":5}"#),
            Ok(Some(Command::History {
                nick: Some("bob".into()),
                count: Some(5)
            }))
        );
        assert_eq!(parse_command("  "), Ok(None));
        assert!(parse_command(r#"{"cmd":"dance"}"#)
            .unwrap_err()
            .contains("unknown command 'dance'"));
        assert!(parse_command(r#"{"cmd":"msg","text":"x"}"#)
            .unwrap_err()
            .contains("\"to\""));
        assert!(parse_command("/msg bob hi")
            .unwrap_err()
            .contains("not a JSON command"));
        // Any typed command, files among them.
        assert_eq!(
            parse_command(r#"{"cmd":"command","line":"/accept 2 /tmp"}"#),
            crate::ui::command::parse("/accept 2 /tmp").map_err(|e| e.to_string())
        );
        assert!(matches!(
            parse_command(r#"{"cmd":"command","line":"/files"}"#),
            Ok(Some(Command::File(_)))
        ));
        assert!(parse_command(r#"{"cmd":"command","line":"hello"}"#)
            .unwrap_err()
            .contains("use send"));
        assert!(parse_command(r#"{"cmd":"command","line":"/dance"}"#).is_err());
        // Valid JSON that is not an object says what a command looks like, not serde's words.
        let e = parse_command("[]").unwrap_err();
        assert!(e.contains(r#"{"cmd":"send","text":"hello"}"#), "{e}");
        assert!(!e.contains("Wire"), "{e}");
        assert!(parse_command(r#"{"cmd":"nick","nick":"two words"}"#).is_err());
        assert!(parse_command(r#"{"cmd":"history","count":0}"#).is_err());
    }

    #[test]
    fn a_round_trip_time_is_in_whole_microseconds() {
        let p = PeerInfo {
            id: PeerId(1),
            nick: "bob".into(),
            addrs: vec![],
            found: crate::proto::Found::Manual,
            last_heard: Instant::now(),
            rtt: Some(std::time::Duration::from_nanos(934_999)),
            undelivered: 0,
            state: PeerState::Online,
            away: None,
            ephemeral: false,
            key: None,
        };
        let line = peers(&[p], Instant::now());
        assert!(line.contains(r#""rtt_ms":0.934,"#), "{line}");
    }

    #[test]
    fn peer_text_is_escaped_not_sanitised() {
        let evil =
            "\u{1b}]0;owned\u{7}hi\n\"quoted\"\u{9b}2J\u{7f}\u{85}\u{202e}lin\u{2028}e\u{2066}\
                    b\u{200b}ob\u{feff}\u{ad}\u{e0041}\u{200c}\u{200d}";
        let e = Event::Message {
            from: PeerId(0xab),
            nick: "mallory".into(),
            id: MessageId(7),
            direct: false,
            text: evil.into(),
            action: false,
            age: std::time::Duration::ZERO,
        };
        let line = event(&e, |_| String::new(), 0);
        assert!(line.is_ascii(), "{line}");
        assert!(
            line.contains(r"\u009b2J") && line.contains(r"\u202elin\u2028e"),
            "{line}"
        );
        // Invisible characters too; beyond U+FFFF as a surrogate pair.
        assert!(
            line.contains(r"b\u200bob\ufeff\u00ad\udb40\udc41\u200c\u200d"),
            "{line}"
        );
        let v = parsed(&line);
        assert_eq!(v["v"], 1);
        assert_eq!(v["type"], "message");
        assert_eq!(v["text"], evil);
        assert_eq!(v["from_id"], "00000000000000ab");
        assert_eq!(v["time"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["action"], false);
        assert_eq!(v["late"], false);
    }

    #[test]
    fn an_action_that_waited_and_away_are_told_to_programs() {
        let e = Event::Message {
            from: PeerId(0xab),
            nick: "bob".into(),
            id: MessageId(2),
            direct: false,
            text: "waves".into(),
            action: true,
            age: std::time::Duration::from_secs(120),
        };
        let v = parsed(&event(&e, |_| String::new(), 1_000_000));
        assert_eq!(v["action"], true);
        assert_eq!(v["late"], true);
        assert_eq!(v["time"], "1970-01-01T00:16:40.000Z");
        assert_eq!(v["written"], "1970-01-01T00:14:40.000Z");
        let away = Event::PeerAway {
            peer: PeerId(0xab),
            nick: "bob".into(),
            away: Some("lunch".into()),
        };
        let v = parsed(&event(&away, |_| String::new(), 0));
        assert_eq!(
            (
                v["type"].as_str(),
                v["away"].as_bool(),
                v["reason"].as_str()
            ),
            (Some("away"), Some(true), Some("lunch"))
        );
        let back = Event::PeerAway {
            peer: PeerId(0xab),
            nick: "bob".into(),
            away: None,
        };
        let v = parsed(&event(&back, |_| String::new(), 0));
        assert_eq!(
            (v["away"].as_bool(), v["reason"].is_null()),
            (Some(false), true)
        );
    }
}
