//! Where the chat's lines go — the screen, or a program connected to the control socket —
//! and when: queued during a wake-up, shown once the journal is synced.

use super::Chat;
use crate::app::control::{ClientId, FromClient};
use crate::app::json;
use crate::ui::command::Command;
use crate::ui::render::Output;
use tokio::sync::mpsc;

/// Where a waiting line goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Dest {
    /// The terminal (or standard output).
    Screen,
    /// A program on the control socket.
    Client(ClientId),
}

/// A line waiting for the screen.
pub(super) enum Line {
    /// For a person.
    Human(Output),
    /// A JSON object for a program.
    Json(String),
}

impl Chat {
    /// Queues one line for the screen (see [`Self::flush_screen`]); as JSON in JSON mode.
    pub fn print(&mut self, out: Output) {
        let line = if self.json || self.reply_to.is_some() {
            Line::Json(json::line(&out))
        } else {
            Line::Human(out)
        };
        self.pending.push((self.dest(), line));
    }

    /// Queues one line for the user's screen even while answering a connection (what a
    /// program does in the user's name is shown to the user too).
    pub(super) fn print_to_screen(&mut self, out: Output) {
        let reply_to = self.reply_to.take();
        self.print(out);
        self.reply_to = reply_to;
    }

    /// A change of ours (nick, away): told to whoever asked for it, and, when a program did
    /// (`tailchat attach`), on the user's screen too, saying so — the user is not left away, or
    /// under another nick, without a word.
    pub(super) fn print_own_change(&mut self, line: String) {
        if self.reply_to.is_some() {
            self.print_to_screen(Output::Notice(format!(
                "{line} (by a program, tailchat attach)"
            )));
        }
        self.print(Output::Notice(line));
    }

    /// Where an answer goes: the connection whose command it answers, else the screen.
    fn dest(&self) -> Dest {
        self.reply_to.map_or(Dest::Screen, Dest::Client)
    }

    /// Whether answers are JSON (JSON mode, or answering a connection).
    pub(super) fn answers_json(&self) -> bool {
        self.json || self.reply_to.is_some()
    }

    /// Queues a JSON answer for whoever asked.
    pub(super) fn answer_json(&mut self, text: String) {
        self.pending.push((self.dest(), Line::Json(text)));
    }

    /// A program connected through the control socket: it hears `ready` first (who we are,
    /// on which UDP `port`), as a `--json` run's output begins.
    pub fn client_connected(&mut self, id: ClientId, to: mpsc::Sender<String>, port: u16) {
        self.clients.insert(id, to);
        let ready = json::ready(self.ep.nick(), self.ep.peer_id(), port);
        self.pending.push((Dest::Client(id), Line::Json(ready)));
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
                        // A typed `/quit` from a program may have meant the chat: it is told
                        // what it did. (`{"cmd":"quit"}` says what it does.)
                        let typed = serde_json::from_str::<serde_json::Value>(&line)
                            .is_ok_and(|v| v["cmd"] == "command");
                        if let Some(to) = self.clients.remove(&id).filter(|_| typed) {
                            let told = json::line(&Output::Notice(
                                "/quit from a program ends its connection: your tailchat runs on (quit it at its own prompt)".into(),
                            ));
                            let _ = to.try_send(told);
                        }
                    }
                    Ok(Some(cmd)) => self.on_command(cmd),
                    Err(e) => self.command_error(e),
                }
                self.reply_to = None;
            }
        }
    }

    /// Sends `line` to every connection but `except` (which has it as an answer); one that
    /// does not keep up is dropped.
    pub(super) fn broadcast(&mut self, line: &str, except: Option<ClientId>) {
        self.clients
            .retain(|id, to| Some(*id) == except || to.try_send(line.to_owned()).is_ok());
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
        if let Some(id) = self.own_echoed.take() {
            let own = std::collections::BTreeMap::from([(crate::store::journal::OWN_LINES, id)]);
            self.await_shown(own);
        }
        if !self.files_to_mark.is_empty() {
            let keys = std::mem::take(&mut self.files_to_mark);
            self.files_unconfirmed.push((self.screen.mark(), keys));
            self.confirm_until = Some(std::time::Instant::now() + super::CONFIRM_SHOWN_FOR);
        }
        // Long output queued in this wake-up goes after the lines queued before it.
        self.pace_more();
    }

    fn show_line(&self, line: Line) {
        match line {
            Line::Human(out) => self.screen.print(&out),
            Line::Json(text) => self.screen.print_json(text),
        }
    }
}
