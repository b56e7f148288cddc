//! What a typed line does — or a program's command, or a script's line: each command of the
//! chat, and a message said to everyone or to one peer.

use super::output::{Dest, Line};
use super::{away_line, they_are, Chat};
use crate::app::json;
use crate::app::lookup::find_peer;
use crate::app::persist::Persistence;
use crate::net::addr;
use crate::proto::{PeerId, PeerInfo, PeerState, Recipients};
use crate::ui::command::{self, Command};
use crate::ui::present;
use crate::ui::render::Output;
use std::time::Instant;

impl Chat {
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

    pub(super) fn on_command(&mut self, cmd: Command) {
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
            Command::Forget(name) => {
                // An address added (`/add`) where nobody answers: no longer tried.
                let mut an_address = None;
                if let Ok(crate::net::addr::HostSpec {
                    host: crate::net::addr::Host::Ip(ip),
                    port,
                }) = addr::parse(&name, self.default_port)
                {
                    let at = std::net::SocketAddr::new(ip, port);
                    an_address = Some(at);
                    if self.ep.stop_trying(at) {
                        let shown = crate::ui::present::show_addr(at);
                        self.print(Output::Notice(format!(
                            "no longer trying {shown} (nobody answered there)"
                        )));
                        return;
                    }
                }
                // The peer meant is one that is gone: where a present bob and a departed one
                // share the nick, `/forget bob` is the departed one.
                let peers = self.ep.peers();
                let gone: Vec<crate::proto::PeerInfo> = peers
                    .iter()
                    .filter(|p| p.state != PeerState::Online)
                    .cloned()
                    .collect();
                match find_peer(&gone, &name).or_else(|_| find_peer(&peers, &name)) {
                    Ok((id, nick)) => {
                        let here = self
                            .ep
                            .peer(id)
                            .is_some_and(|p| p.state == PeerState::Online);
                        if here {
                            let shown = self.known_names(&peers).name_of(id, &nick);
                            self.command_error(format!(
                                "{shown} is here: /forget is for peers who have left for good"
                            ));
                        } else {
                            self.ep.forget(now, id);
                        }
                    }
                    Err(_) if name == self.ep.nick() => self.command_error(format!(
                        "{name} is you: /forget is for peers who have left for good"
                    )),
                    Err(e) => match an_address {
                        Some(at) => self.command_error(format!(
                            "nothing is being tried at {}: /forget ADDR stops an address you /added where nobody answers, /forget NICK a peer who has left",
                            crate::ui::present::show_addr(at)
                        )),
                        None => self.command_error(e),
                    },
                }
            }
            Command::Msg { nick, text } => match find_peer_or_addressed(&self.ep.peers(), &nick) {
                Ok((id, nick)) => {
                    // The echo says which one, when nicks look alike (another peer's, or
                    // ours): `*-> bob#1d79e0c2*`, as that peer's own lines name it.
                    let shown = self.current_names().name_of(id, &nick);
                    let away = self.ep.peer(id).and_then(|p| p.away);
                    let fresh = |r: &String| {
                        self.away_shown.get(&id).is_some_and(|(told, at)| {
                            told == r && at.elapsed() < super::AWAY_REMIND
                        })
                    };
                    if let Some(reason) = away.filter(|r| !fresh(r)) {
                        self.print(Output::Notice(away_line(
                            &format!("{shown} is away"),
                            &reason,
                        )));
                        self.away_shown.insert(id, (reason, now));
                    }
                    self.say(now, Recipients::Peer(id), Some(shown), text, false);
                }
                Err(e) => {
                    let line = self.your_line(&text);
                    let e = if nick == self.ep.nick() {
                        format!("{nick} is you: /msg NICK goes to someone else")
                    } else {
                        e
                    };
                    self.command_error(format!("{e}{line}"));
                }
            },
            Command::Add(text) => match addr::parse(&text, self.default_port) {
                Ok(spec) => self.resolve(spec),
                Err(e) => self.command_error(e),
            },
            Command::Nick(nick) if nick == self.ep.nick() => {
                self.print(Output::Notice(format!("you are {nick} already")));
            }
            Command::Nick(nick) => match self.ep.set_nick(now, &nick) {
                Ok(()) => {
                    // The next run starts under this nick, even if nothing is said under it.
                    self.append(&crate::store::journal::Record::Opened {
                        at_ms: crate::clock::now_ms(),
                        session: self.ep.session(),
                        nick: nick.clone(),
                    });
                    self.screen.nick(&nick);
                    self.print_own_change(format!("you are now {nick}"));
                    self.tell_nick_clash();
                }
                Err(e) => {
                    // The prompt showed the new nick as soon as it was typed: put ours back.
                    self.screen.nick(self.ep.nick());
                    self.command_error(e);
                }
            },
            Command::Peers if self.answers_json() => {
                let tailnet = &self.tailnet;
                let peers = json::peers_noted(&self.ep.peers(), now, |p| tailnet.note(p));
                self.answer_json(peers);
            }
            Command::Peers => {
                let tailnet = &self.tailnet;
                let me = Some((self.ep.peer_id(), self.ep.nick()));
                let lines =
                    present::peers_lines_noted(&self.ep.peers(), me, now, |p| tailnet.note(p));
                for line in lines {
                    self.print(Output::Info(line));
                }
            }
            Command::Whois(name) => match find_peer(&self.ep.peers(), &name) {
                Ok((id, _)) => {
                    if let Some(p) = self.ep.peer(id) {
                        let nicks = self.nick_history.get(&id).cloned().unwrap_or_default();
                        let note = self.tailnet.note(&p);
                        for line in present::whois_lines(&p, &nicks, &note, now) {
                            self.print(Output::Info(line));
                        }
                    }
                }
                // Our own nick: who we are to the others (what their accept_from names).
                Err(_) if name == self.ep.nick() => {
                    let (nick, id) = (self.ep.nick().to_owned(), self.ep.peer_id());
                    self.print(Output::Info(format!(
                        "{nick} is you: {nick}#{id} to your peers (their accept_from = [\"{nick}#{id}\"] names you alone)"
                    )));
                }
                Err(e) => self.command_error(e),
            },
            Command::Help(None) => {
                for line in command::help_lines() {
                    self.print(Output::Info(line));
                }
            }
            Command::Help(Some(topic)) => match command::help_for(&topic) {
                Ok(line) => self.print(Output::Info(line)),
                Err(e) => self.print(Output::Error(e)),
            },
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

    /// At the prompt, the text of a line that was not sent, to end its error with: the
    /// prompt took the line off the screen, expecting its echo (up-arrow brings it back too).
    /// A script has its input; it is not repeated there.
    fn your_line(&self, text: &str) -> String {
        if self.scripted {
            String::new()
        } else {
            format!(" (your line: {text})")
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
            // Refused for everyone it was for: too much already waits for them (they are
            // away). Answered, so that whoever sent it (a program too) knows; counted for the
            // exit code.
            Ok(sent) if sent.recipients.is_empty() && !sent.refused.is_empty() => {
                self.outcome.refused += 1;
                // As lines name them: `bob#1d79e0c2` while another known peer is bob too.
                let names = self.known_names(&self.ep.peers());
                let who: Vec<String> = sent
                    .refused
                    .iter()
                    .map(|id| names.name_of(*id, self.ep.nick_of(*id).unwrap_or("?")))
                    .collect();
                let line = self.your_line(&text);
                return self.print(Output::Error(format!(
                    "not sent: too many messages already wait for {} — this one is not kept{line}",
                    who.join(", ")
                )));
            }
            Ok(sent) if sent.recipients.is_empty() => {
                // A script's burst: the first line is said, the rest counted (said at the end).
                if self.scripted && self.outcome.nobody_to_send_to && self.reply_to.is_none() {
                    self.unsent_more += 1;
                    return;
                }
                self.outcome.nobody_to_send_to = true;
                // A script (or `tailchat send`) reaches someone with --peer, or an /add line
                // before its messages (not `tailchat send`, whose input is all text).
                // Addresses being tried that have not answered: the hint is the wait, not how
                // to give one (`--peer` was given, with `--wait 0`, say).
                let trying = self.ep.footprint().probes > 0;
                let how = match (self.scripted, trying) {
                    (true, false) if self.added_refused => {
                        "the addresses given could not be contacted (said above)"
                    }
                    (true, true) => "the addresses given have not answered in time: --wait SECONDS gives them longer",
                    (true, false) => "--peer HOST[:PORT] reaches someone (a script reading commands can also have an /add HOST[:PORT] line before it)",
                    (false, true) => "the addresses known have not answered yet: try again once someone has joined",
                    (false, false) => "/add HOST[:PORT] to reach someone",
                };
                let line = self.your_line(&text);
                return self.print(Output::Error(format!(
                    "not sent: nobody is here yet — {how}{line}"
                )));
            }
            Ok(sent) => {
                if !sent.refused.is_empty() {
                    self.outcome.refused += 1;
                }
                sent
            }
            // Too long, say: the input was wrong, and the line went nowhere.
            Err(e) => {
                self.outcome.invalid_command = true;
                return self.print(Output::Error(format!("not sent: {e}")));
            }
        };
        self.outstanding.sent(sent.id, &text, &sent.recipients);
        let me = self.ep.nick().to_owned();
        let now_ms = crate::clock::now_ms();
        self.append(&Persistence::said(&me, to, &sent, &text, action, now_ms));
        let peers = self.ep.peers();
        let names = self.known_names(&peers);
        // Recipients not answering now: the message waits for them (a script's `send` does
        // not wait for them, and says so).
        let not_here: Vec<&PeerInfo> = peers
            .iter()
            .filter(|p| sent.recipients.contains(&p.id) && p.state != PeerState::Online)
            .collect();
        let away_ids: Vec<PeerId> = not_here.iter().map(|p| p.id).collect();
        let away: Vec<String> = not_here
            .into_iter()
            .filter(|p| self.away_told.insert(p.id))
            .map(|p| {
                let name = names.name_of(p.id, &p.nick);
                if self.tailnet.shuts_out(&p.addrs) {
                    // Not coming back while the list stands: say why, not only "not here".
                    format!("{name} (known only at addresses your allow-list refuses)")
                } else {
                    name
                }
            })
            .collect();
        let to_json = match (to, &to_nick) {
            (Recipients::Peer(p), Some(n)) => Some((p, n.as_str())),
            _ => None,
        };
        let echo = json::sent(
            sent.id,
            &me,
            to_json,
            (&sent.recipients, &sent.refused, &away_ids),
            (&text, action),
            now_ms,
        );
        // Recorded as echoed once the screen has written it (see `OWN_LINES`).
        self.own_echoed = self.own_echoed.max(Some(sent.id.0));
        // Every connection hears of it (the one that asked, too), after the sync.
        for id in self.clients.keys().copied().collect::<Vec<_>>() {
            self.pending
                .push((Dest::Client(id), Line::Json(echo.clone())));
        }
        if self.json {
            self.pending.push((Dest::Screen, Line::Json(echo)));
        } else {
            // The user sees it too, even when a program sent it in their name.
            let direct = to_nick.is_some();
            self.print_to_screen(present::message_output(
                &me,
                to_nick.as_deref(),
                direct,
                action,
                &text,
            ));
        }
        if !away.is_empty() {
            let kept = if self.persist.storing() {
                "kept on disk"
            } else {
                "kept in memory"
            };
            let who = they_are(&away);
            let line = format!(
                "{who} not here: messages to them are {kept} and go out when they are back"
            );
            // Sent by a program in the user's name: the user hears it too (once per absence).
            if self.reply_to.is_some() {
                self.print_to_screen(Output::Notice(line.clone()));
            }
            self.print(Output::Notice(line));
        }
    }

    /// Shows an error in a command the user (or a script) gave, and remembers it for the
    /// exit code; a connected program's mistake is only told to it.
    pub(super) fn command_error(&mut self, message: String) {
        if self.reply_to.is_none() {
            self.outcome.invalid_command = true;
        }
        self.print(Output::Error(message));
    }
}

/// [`find_peer`], taking `bob:` or `bob,` (as Tab completes a nick at the start of a line, to
/// address someone in the group) for `bob` when no peer is called that.
fn find_peer_or_addressed(
    peers: &[crate::proto::PeerInfo],
    wanted: &str,
) -> Result<(crate::proto::PeerId, String), String> {
    find_peer(peers, wanted).or_else(|e| {
        match wanted
            .strip_suffix(':')
            .or_else(|| wanted.strip_suffix(','))
        {
            Some(nick) if !nick.is_empty() => find_peer(peers, nick).map_err(|_| e),
            _ => Err(e),
        }
    })
}
