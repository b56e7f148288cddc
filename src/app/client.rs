//! The other end of the control socket ([`super::control`]): `tailchat send` handing one
//! message to the user's running tailchat and waiting for its delivery, and
//! `tailchat attach --json` relaying JSON lines between a program and it. Plain blocking I/O:
//! these run instead of the chat, not inside it.

use crate::app::chat::Outcome;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// Connects to the socket at `path`; an error when nothing answers there (`ConnectionRefused`:
/// a socket file left by a tailchat that is gone).
pub fn connect(path: &Path) -> io::Result<UnixStream> {
    let (address, _held) = super::control::addressable(path)?;
    UnixStream::connect(address)
}

/// The commands that send `text` to `to` (everyone when empty).
fn commands(to: &[String], text: &str) -> Vec<Value> {
    if to.is_empty() {
        vec![json!({ "cmd": "send", "text": text })]
    } else {
        to.iter()
            .map(|nick| json!({ "cmd": "msg", "to": nick, "text": text }))
            .collect()
    }
}

/// Sends `text` through the running tailchat on `stream` and waits, at most `wait` after the
/// answers, for every recipient here (answering when it was sent) to acknowledge it; those
/// away are not waited for (the running tailchat keeps it for them). Errors, what was not
/// delivered and who it is kept for are said on standard error.
///
/// # Errors
/// The connection failed or closed before the answers came.
pub fn send(
    stream: UnixStream,
    to: &[String],
    text: &str,
    wait: Duration,
) -> Result<Outcome, String> {
    let lost = |e: io::Error| format!("lost the connection to the running tailchat: {e}");
    let mut writer = stream.try_clone().map_err(lost)?;
    let mut reader = BufReader::new(stream);
    let mut outcome = Outcome::default();
    if to.len() > 1 {
        // All or nothing: a message for several, one of them mistyped, goes to none. (An empty
        // list, no answer in time or no peer at all, leaves each recipient to be checked as
        // it is sent; with no peer, none of them is sent either.)
        let known = peer_nicks(&mut writer, &mut reader);
        let unknown: Vec<&String> = if known.is_empty() {
            Vec::new()
        } else {
            to.iter().filter(|n| !names_a_peer(n, &known)).collect()
        };
        if !unknown.is_empty() {
            for nick in unknown {
                eprintln!("error: no peer called '{nick}'");
            }
            eprintln!("error: nothing was sent (to any of them)");
            outcome.invalid_command = true;
            return Ok(outcome);
        }
    }
    let commands = commands(to, text);
    for c in &commands {
        writeln!(writer, "{c}").map_err(lost)?;
    }
    // (message id, recipient id) still waiting for an acknowledgement: from a recipient here,
    // and from one away when it was sent (not waited for).
    let mut waiting: BTreeSet<(u64, String)> = BTreeSet::new();
    let mut away: BTreeSet<(u64, String)> = BTreeSet::new();
    let mut names = std::collections::BTreeMap::new();
    let mut refused: Vec<String> = Vec::new();
    let mut answers = 0;
    // The answers come at once; deliveries within `wait` of them.
    let mut deadline = Instant::now() + wait + Duration::from_secs(5);
    let mut line = String::new();
    while answers < commands.len() || !waiting.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        reader
            .get_ref()
            .set_read_timeout(Some(left))
            .map_err(lost)?;
        line.clear();
        let ended = match reader.read_line(&mut line) {
            Ok(0) => Some("the running tailchat closed the connection".to_owned()),
            Ok(_) => None,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break
            }
            Err(e) => Some(lost(e)),
        };
        if let Some(why) = ended {
            // It went with the message handed over: taken (and journaled) if it answered, and
            // perhaps even if it had no time to; what is not acknowledged goes out when it
            // runs again — not delivered within the wait (5), rather than "could not start".
            let (taken, count) = if answers < commands.len() {
                (
                    "may be",
                    commands.len() - answers + waiting.len() + away.len(),
                )
            } else {
                ("is", waiting.len() + away.len())
            };
            eprintln!(
                "error: {why} before every recipient acknowledged: the message {taken} in its journal, and goes out when it runs again"
            );
            outcome.undelivered += count;
            return Ok(outcome);
        }
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let field = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        match v["type"].as_str() {
            Some("sent") if answers < commands.len() && v["text"].as_str() == Some(text) => {
                answers += 1;
                let id = v["id"].as_u64().unwrap_or_default();
                let ids = |k: &str| -> BTreeSet<String> {
                    (v[k].as_array().into_iter().flatten())
                        .filter_map(|r| r.as_str().map(str::to_owned))
                        .collect()
                };
                let not_here = ids("away");
                for r in ids("recipients") {
                    if not_here.contains(&r) {
                        away.insert((id, r));
                    } else {
                        waiting.insert((id, r));
                    }
                }
                // Not kept for these (their queues are full): said once the names are known.
                let before = refused.len();
                refused.extend(
                    v["refused"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|r| r.as_str().map(str::to_owned)),
                );
                if refused.len() > before {
                    outcome.refused += 1;
                }
                if answers == commands.len() {
                    deadline = Instant::now() + wait;
                }
            }
            Some("error") if answers < commands.len() => {
                answers += 1;
                let message = field("message");
                eprintln!("error: {message}");
                // By how the message begins: what follows may hold a peer's nick.
                if message.starts_with("not sent: nobody is here") {
                    outcome.nobody_to_send_to = true;
                } else if message.starts_with("not sent: too many messages already wait") {
                    outcome.refused += 1;
                } else {
                    outcome.invalid_command = true;
                }
            }
            Some("delivered") => {
                let key = (v["id"].as_u64().unwrap_or_default(), field("to_id"));
                waiting.remove(&key);
                away.remove(&key);
            }
            Some("delayed") => {
                names.insert(field("to_id"), field("to"));
            }
            Some("not_delivered") => {
                let key = (v["id"].as_u64().unwrap_or_default(), field("to_id"));
                if waiting.remove(&key) | away.remove(&key) {
                    eprintln!(
                        "error: not delivered to {}",
                        crate::ui::render::display_nick(&field("to"))
                    );
                    outcome.undelivered += 1;
                }
            }
            _ => {}
        }
    }
    if answers < commands.len() {
        // Handed over all the same: it takes the message when it carries on (it may be
        // stopped, or swamped), so this is "not delivered within the wait" (5), not "could
        // not start" (1) — a script that sent it again would send it twice.
        eprintln!(
            "error: your running tailchat did not answer within {} (stopped?): the message was handed to it and goes out if it carries on — do not send it again",
            crate::app::files::seconds(wait + Duration::from_secs(5))
        );
        outcome.undelivered += commands.len() - answers;
        return Ok(outcome);
    }
    if !waiting.is_empty() || !refused.is_empty() || !away.is_empty() {
        // Said by nick, not by id: the running tailchat knows them.
        names.extend(peer_nicks(&mut writer, &mut reader));
    }
    let names = told_apart(&names);
    for to in &refused {
        let name = names.get(to).map_or(to.as_str(), String::as_str);
        eprintln!(
            "error: not sent to {name}: too many messages already wait for them — this one is not kept"
        );
    }
    for (_, to) in &waiting {
        let name = names.get(to).cloned().unwrap_or_else(|| to.clone());
        eprintln!(
            "not yet delivered to {name}: your running tailchat keeps it and sends it when they are back"
        );
    }
    for (_, to) in &away {
        let name = names.get(to).cloned().unwrap_or_else(|| to.clone());
        eprintln!("{name} is away: your running tailchat keeps it and sends it when they are back");
    }
    outcome.undelivered += waiting.len();
    outcome.kept_for_away += away.len();
    let _ = writeln!(writer, "{}", json!({ "cmd": "quit" }));
    Ok(outcome)
}

/// Whether `name` names one of `known` (id -> nick): its nick, or `NICK#IDPREFIX`.
fn names_a_peer(name: &str, known: &std::collections::BTreeMap<String, String>) -> bool {
    known
        .iter()
        .any(|(id, nick)| nick == name || crate::app::lookup::by_id_prefix(name, nick, id))
}

/// The nicks of the running tailchat's peers by id, asked on the connection (empty if it does
/// not answer within a second).
/// Each peer's name as the running tailchat's lines show it (`id -> name`): its nick, made
/// safe for the terminal, with `#` and digits of its id when another peer in `nicks` has the
/// same nick (so "not yet delivered to bob" says which bob), as `ShownNames` makes them.
fn told_apart(
    nicks: &std::collections::BTreeMap<String, String>,
) -> std::collections::BTreeMap<String, String> {
    let id = |hex: &str| u64::from_str_radix(hex, 16).ok().map(crate::proto::PeerId);
    let peers: Vec<(crate::proto::PeerId, &str)> = nicks
        .iter()
        .filter_map(|(hex, nick)| Some((id(hex)?, nick.as_str())))
        .collect();
    let names = crate::ui::present::ShownNames::new(&peers);
    nicks
        .iter()
        .map(|(hex, nick)| {
            let name = match id(hex) {
                Some(peer) => names.name_of(peer, nick),
                None => crate::ui::render::display_nick(nick),
            };
            (hex.clone(), name)
        })
        .collect()
}

fn peer_nicks(
    writer: &mut UnixStream,
    reader: &mut BufReader<UnixStream>,
) -> std::collections::BTreeMap<String, String> {
    let mut nicks = std::collections::BTreeMap::new();
    if writeln!(writer, "{}", json!({ "cmd": "peers" })).is_err() {
        return nicks;
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut line = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || reader.get_ref().set_read_timeout(Some(left)).is_err() {
            return nicks;
        }
        line.clear();
        if !matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
            return nicks;
        }
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if v["type"] == "peers" {
            for p in v["peers"].as_array().into_iter().flatten() {
                if let (Some(id), Some(nick)) = (p["id"].as_str(), p["nick"].as_str()) {
                    nicks.insert(id.to_owned(), nick.to_owned());
                }
            }
            return nicks;
        }
    }
}

/// Relays standard input (JSON commands) to the running tailchat on `stream`, and its JSON
/// events to standard output, until it closes the connection; end of standard input detaches.
/// Returns whether one of our commands was answered with an `error` (answers go to the
/// connection that asked alone), for the exit code.
///
/// # Errors
/// The connection failed.
pub fn attach(stream: UnixStream, socket: &Path) -> Result<bool, String> {
    let lost = |e: io::Error| format!("lost the connection to the running tailchat: {e}");
    let mut writer = stream.try_clone().map_err(lost)?;
    let detached = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let detaching = detached.clone();
    std::thread::spawn(move || {
        // Bytes that are not UTF-8 (a Latin-1 log) become U+FFFD, as with `--json`: the
        // line is still a command, and the session goes on.
        let mut stdin = io::stdin().lock();
        let mut bytes = Vec::new();
        while matches!(stdin.read_until(b'\n', &mut bytes), Ok(n) if n > 0) {
            let line = String::from_utf8_lossy(&bytes);
            let line = line.trim_end_matches(['\n', '\r']);
            if serde_json::from_str::<Value>(line).is_ok_and(|v| asks_to_detach(&v)) {
                // Our own goodbye: the connection ends because we asked.
                detaching.store(true, std::sync::atomic::Ordering::Release);
            }
            if writeln!(writer, "{line}").is_err() {
                return;
            }
            bytes.clear();
        }
        detaching.store(true, std::sync::atomic::Ordering::Release);
        let _ = writeln!(writer, "{}", json!({ "cmd": "quit" }));
        let _ = writer.shutdown(std::net::Shutdown::Write);
    });
    let mut stdout = io::stdout().lock();
    let mut refused = false;
    for line in BufReader::new(stream).lines() {
        let line = line.map_err(lost)?;
        refused |= serde_json::from_str::<Value>(&line).is_ok_and(|v| v["type"] == "error");
        if writeln!(stdout, "{line}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            break; // nobody reads our output any more
        }
    }
    // The tailchat followed ended the connection, not we: said, so that a program can tell
    // (it quit, or it dropped a connection that did not keep up or sent too long a line).
    if !detached.load(std::sync::atomic::Ordering::Acquire) {
        let text = if connect(socket).is_ok() {
            "your tailchat dropped this connection (it did not keep up with the events, or sent a line over 128 KiB); it still runs: attach ends"
        } else {
            "your tailchat quit: attach ends"
        };
        let last = json!({ "v": 1, "type": "notice", "text": text });
        let _ = writeln!(stdout, "{last}").and_then(|()| stdout.flush());
    }
    Ok(refused)
}

/// Whether a program's command ends its connection: `{"cmd":"quit"}`, or `/quit` (`/exit`)
/// as a typed line, which from a program detaches it too (the tailchat runs on).
fn asks_to_detach(v: &Value) -> bool {
    v["cmd"] == "quit"
        || (v["cmd"] == "command"
            && v["line"]
                .as_str()
                .is_some_and(|l| matches!(l.trim_end(), "/quit" | "/exit")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quit_as_a_command_or_a_typed_line_detaches() {
        for (line, detaches) in [
            (r#"{"cmd":"quit"}"#, true),
            (r#"{"cmd":"command","line":"/quit"}"#, true),
            (r#"{"cmd":"command","line":"/exit "}"#, true),
            (r#"{"cmd":"command","line":"/quiet"}"#, false),
            (r#"{"cmd":"send","text":"/quit"}"#, false),
        ] {
            let v: Value = serde_json::from_str(line).unwrap();
            assert_eq!(asks_to_detach(&v), detaches, "{line}");
        }
    }

    #[test]
    fn names_are_told_apart_and_made_safe() {
        let nicks: std::collections::BTreeMap<String, String> = [
            ("1d79e0c2ab12cd34", "bob"),
            ("2e01a9f300000000", "bob"),
            ("3f00000000000000", "car\u{1b}[2Jol"),
        ]
        .into_iter()
        .map(|(id, n)| (id.to_owned(), n.to_owned()))
        .collect();
        let names = told_apart(&nicks);
        assert_eq!(names["1d79e0c2ab12cd34"], "bob#1d79e0c2");
        assert_eq!(names["2e01a9f300000000"], "bob#2e01a9f3");
        assert!(!names["3f00000000000000"].contains('\u{1b}'));
        assert!(!names["3f00000000000000"].contains('#'));
    }

    /// A running tailchat played by a thread: answers each command read with `answer(cmd)`
    /// (zero or more lines), until the client quits or goes.
    fn fake_tailchat(answer: impl Fn(&Value) -> Vec<Value> + Send + 'static) -> UnixStream {
        let (ours, theirs) = UnixStream::pair().unwrap();
        std::thread::spawn(move || {
            let mut writer = theirs.try_clone().unwrap();
            for line in BufReader::new(theirs).lines() {
                let Ok(cmd) = serde_json::from_str::<Value>(&line.unwrap_or_default()) else {
                    return;
                };
                if cmd["cmd"] == "quit" {
                    return;
                }
                for a in answer(&cmd) {
                    if writeln!(writer, "{a}").is_err() {
                        return;
                    }
                }
            }
        });
        ours
    }

    const BOB: &str = "00000000000000b0";
    const CAROL: &str = "00000000000000c0";

    fn peers() -> Value {
        json!({ "type": "peers", "peers": [
            { "id": BOB, "nick": "bob" }, { "id": CAROL, "nick": "carol" },
        ]})
    }

    #[test]
    fn a_message_refused_for_a_full_queue_counts_for_the_exit_code() {
        // Delivered to carol, refused for bob (his queue is full): exit code 5, not 0.
        let stream = fake_tailchat(|cmd| match cmd["cmd"].as_str() {
            Some("send") => vec![
                json!({ "type": "sent", "id": 1, "text": "hi",
                        "recipients": [CAROL], "refused": [BOB] }),
                json!({ "type": "delivered", "id": 1, "to": "carol", "to_id": CAROL }),
            ],
            Some("peers") => vec![peers()],
            _ => vec![],
        });
        let outcome = send(stream, &[], "hi", Duration::from_secs(5)).unwrap();
        assert_eq!((outcome.refused, outcome.undelivered), (1, 0));
        assert_eq!(outcome.exit_code(), Outcome::UNDELIVERED);

        // Refused for everyone it was for: an error answer, the same count (not a bad command).
        let stream = fake_tailchat(|cmd| match cmd["cmd"].as_str() {
            Some("msg") => vec![json!({ "type": "error",
                "message": "not sent: too many messages already wait for bob — this one is not kept" })],
            _ => vec![],
        });
        let outcome = send(stream, &["bob".into()], "hi", Duration::from_secs(5)).unwrap();
        assert!(!outcome.invalid_command);
        assert_eq!(outcome.exit_code(), Outcome::UNDELIVERED);

        // And delivered to all: 0.
        let stream = fake_tailchat(|cmd| match cmd["cmd"].as_str() {
            Some("send") => vec![
                json!({ "type": "sent", "id": 1, "text": "hi",
                        "recipients": [CAROL], "refused": [] }),
                json!({ "type": "delivered", "id": 1, "to": "carol", "to_id": CAROL }),
            ],
            _ => vec![],
        });
        let outcome = send(stream, &[], "hi", Duration::from_secs(5)).unwrap();
        assert_eq!(outcome.exit_code(), Outcome::DELIVERED);
    }
}
