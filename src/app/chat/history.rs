//! `/history`: the last lines of the group or of a conversation, read and formatted on a
//! blocking thread so a long history never holds up the network, and shown in the order
//! asked, in parts of about a megabyte as the screen takes them (see [`super::shown`]).

use super::shown::{in_parts, line_size, Paced};
use super::Chat;
use crate::app::json;
use crate::app::persist::HistoryError;
use crate::proto::PeerId;
use crate::store::journal::{format_history_line, HistoryFilter, HistoryLine};
use crate::ui::present::ShownNames;
use crate::ui::render::{display_nick, Output};

/// A line of the history as the screen shows it: the nicks as every other line shows them,
/// a peer's with its id (`bob#1d79e0c2`) when another identity of `names` went by a nick alike
/// (the text is cleaned as a message's is, by the screen).
fn shown_line(mut l: HistoryLine, names: &ShownNames) -> String {
    l.nick = match l.from {
        Some(from) => names.name_of(from, &l.nick),
        None => display_nick(&l.nick),
    };
    l.to = l.to.as_deref().map(display_nick);
    format_history_line(&l)
}

/// `/history` without a count shows this many lines.
const HISTORY_DEFAULT: usize = 20;

/// The lines of a `/history`, read and formatted off the event loop (a long one reads and
/// formats for a while): notices about damage, then the lines; or the error to show.
pub type HistoryLines = Result<(Vec<String>, Vec<String>), String>;

/// [`HistoryLines`], numbered in the order the `/history` commands were typed.
pub type HistoryAnswer = (u64, HistoryLines);

impl Chat {
    /// `/history [NICK] [N]`: the last N lines of the group, or of the conversation with NICK,
    /// read and formatted on a blocking thread, so that a long history never holds up the
    /// network; the answer comes back through [`Self::history_answer`].
    pub(super) fn history(&mut self, nick: Option<String>, count: Option<usize>) {
        let filter = match &nick {
            // `bob#1d79e0c2`: that identity alone (another that went by bob is not it).
            Some(n) if n.contains('#') => {
                let peers = self.ep.peers();
                // Whatever it was called: the id names it (`bob#…` where bob is now alice).
                let by_id = |e| {
                    let id = n.find('#').map_or(n.as_str(), |i| &n[i..]);
                    crate::app::lookup::find_peer(&peers, id).map_err(|_| e)
                };
                match crate::app::lookup::find_peer(&peers, n).or_else(by_id) {
                    Ok((id, _)) => HistoryFilter::Peer { id },
                    Err(e) => return self.command_error(e),
                }
            }
            // Our own nick, which no peer known goes by: there is no conversation with us.
            Some(n) if *n == self.ep.nick() && !self.ep.peers().iter().any(|p| p.nick == *n) => {
                return self.command_error(format!(
                    "{n} is you: /history NICK shows your conversation with NICK, /history the group's"
                ));
            }
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
        if self.answers_json() {
            // A program's answer, to whoever asked: read here (a program asks for what it can
            // take; the screen's long answers go through the thread), in objects of about a
            // megabyte each, all but the last saying more follow; on standard output, each
            // as the screen takes it.
            return match query.run() {
                Ok((lines, warnings)) => {
                    for w in warnings {
                        self.print(Output::Notice(w));
                    }
                    let parts = in_parts(lines, line_size);
                    let last = parts.len().saturating_sub(1);
                    for i in 0..=last {
                        let part = parts.get(i).map_or(&[][..], Vec::as_slice);
                        let text = json::history("history", part, i < last);
                        if self.reply_to.is_some() {
                            self.answer_json(text);
                        } else {
                            self.paced.push_back(Paced::json(text));
                        }
                    }
                }
                Err(e) => self.print(Output::Error(format!("cannot read history: {e}"))),
            };
        }
        self.history_asked += 1;
        let (seq, tx) = (self.history_asked, self.history_tx.clone());
        // Everyone who ever went by a nick: the journal's, the peers known now, and us.
        let mut everyone = query.identities().to_vec();
        everyone.extend(self.ep.peers().into_iter().map(|p| (p.id, p.nick)));
        everyone.push((self.ep.peer_id(), self.ep.nick().to_owned()));
        tokio::spawn(async move {
            let read = tokio::task::spawn_blocking(move || {
                let (lines, mut warnings) = query.run().map_err(|e| e.to_string())?;
                if lines.is_empty() {
                    // A notice, with the clock: it is not a line of the history.
                    let known = |n: &String| everyone.iter().any(|(_, x)| x == n);
                    warnings.push(match nick {
                        // A typo is not a peer who never wrote.
                        Some(n) if !n.contains('#') && !known(&n) => format!(
                            "nobody called {n} here now or in your history — /peers lists who is here"
                        ),
                        Some(n) => format!("no history with {n} yet"),
                        None => "no history with the group yet".to_owned(),
                    });
                    return Ok((warnings, Vec::new()));
                }
                let named: Vec<(PeerId, &str)> =
                    everyone.iter().map(|(id, n)| (*id, n.as_str())).collect();
                let names = ShownNames::new(&named);
                // Each line freed as it is formatted: a long history is not held twice.
                let text = lines.into_iter().map(|l| shown_line(l, &names)).collect();
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

    /// Shows a `/history` answer, once every one asked before it is shown: its notices, then
    /// its lines in parts that go out as the screen takes them, so a long one is never
    /// skipped and the network is served between parts.
    pub fn on_history(&mut self, (seq, answer): HistoryAnswer) {
        self.history_early.insert(seq, answer);
        while let Some(answer) = self.history_early.remove(&(self.history_shown + 1)) {
            match answer {
                Ok((warnings, lines)) => {
                    for w in warnings {
                        self.print(Output::Notice(w));
                    }
                    for part in in_parts(lines, |l| l.len()) {
                        let part = Paced::human(part.into_iter().map(Output::Dated));
                        self.paced.push_back(part);
                    }
                }
                Err(e) => self.print(Output::Error(format!("cannot read history: {e}"))),
            }
            self.history_shown += 1;
        }
    }
}

#[cfg(test)]
mod history_tests {
    use super::*;
    use tokio::sync::mpsc;

    /// A chat without storage, whose screen is a channel.
    fn chat() -> (Chat, std::sync::mpsc::Receiver<Output>) {
        let (screen, lines) = std::sync::mpsc::channel();
        let setup = crate::app::start::test_setup();
        let (resolved_tx, _) = mpsc::unbounded_channel();
        (Chat::new(setup, Box::new(screen), resolved_tx), lines)
    }

    fn infos(lines: &std::sync::mpsc::Receiver<Output>) -> Vec<String> {
        lines
            .try_iter()
            .filter_map(|o| match o {
                Output::Dated(l) => Some(l),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn answers_are_shown_in_the_order_asked() {
        let (mut chat, lines) = chat();
        chat.history_asked = 2;
        assert!(!chat.accepts_input(), "a script waits for its answers");
        let long: Vec<String> = (0..3000).map(|i| format!("first {i}")).collect();
        // The second answer comes back first: it waits.
        chat.on_history((2, Ok((Vec::new(), vec!["second".to_owned()]))));
        chat.flush_screen();
        assert!(infos(&lines).is_empty());
        // The first: then both, in order.
        chat.on_history((1, Ok((Vec::new(), long.clone()))));
        chat.flush_screen();
        let mut want = long;
        want.push("second".to_owned());
        assert_eq!(infos(&lines), want);
        assert!(chat.accepts_input());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nick_in_the_history_reads_as_on_every_other_line() {
        let nick = "ev\u{9b}31m\u{202e}il\u{200b}\u{85}x\u{1b}]0;T\u{7}\u{2028}y";
        let line = |to: Option<&str>| {
            shown_line(
                HistoryLine {
                    at_ms: 0,
                    nick: nick.into(),
                    from: None,
                    to: to.map(str::to_owned),
                    direct: to.is_some(),
                    text: "hi".into(),
                    action: false,
                },
                &ShownNames::default(),
            )
        };
        let shown = display_nick(nick);
        // Two identities that went by bob: each line says which; ours stay as written.
        let names = ShownNames::new(&[(PeerId(0x1d79_e0c2_0000_0001), "bob"), (PeerId(2), "bob")]);
        let heard = |from| shown_line(HistoryLine::group(0, "bob", from, "hi"), &names);
        assert!(heard(Some(PeerId(0x1d79_e0c2_0000_0001))).contains("<bob#1d79e0c2> hi"));
        assert!(heard(Some(PeerId(2))).contains("<bob#00000000> hi"));
        assert!(heard(None).contains("<bob> hi"));
        assert!(
            line(None).ends_with(&format!(" <{shown}> hi")),
            "{}",
            line(None)
        );
        assert!(
            line(Some(nick)).ends_with(&format!(" *-> {shown}* hi")),
            "{}",
            line(Some(nick))
        );
        assert!(
            shown.chars().all(|c| !c.is_control() && c != '\u{202e}'),
            "{shown}"
        );
    }
}
