//! `/history`: the last lines of the group or of a conversation, read and formatted on a
//! blocking thread so a long history never holds up the network, and shown in the order
//! asked, a slice per wake-up.

use super::Chat;
use crate::app::json;
use crate::app::persist::HistoryError;
use crate::store::journal::{format_history_line, HistoryFilter};
use crate::ui::render::Output;
use std::collections::VecDeque;

/// `/history` without a count shows this many lines.
const HISTORY_DEFAULT: usize = 20;
/// A long `/history` reaches the screen this many lines per wake-up.
const HISTORY_SLICE: usize = 1024;

/// The lines of a `/history`, read and formatted off the event loop (a long one reads and
/// formats for a while): notices about damage, then the lines; or the error to show.
pub type HistoryLines = Result<(Vec<String>, VecDeque<String>), String>;

/// [`HistoryLines`], numbered in the order the `/history` commands were typed.
pub type HistoryAnswer = (u64, HistoryLines);

impl Chat {
    /// `/history [NICK] [N]`: the last N lines of the group, or of the conversation with NICK,
    /// read and formatted on a blocking thread, so that a long history never holds up the
    /// network; the answer comes back through [`Self::history_answer`].
    pub(super) fn history(&mut self, nick: Option<String>, count: Option<usize>) {
        let filter = match &nick {
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
            // A program's answer is one object, to whoever asked: read it here (a program
            // asks for what it can take; the screen's long answers go through the thread).
            return match query.run() {
                Ok((lines, warnings)) => {
                    for w in warnings {
                        self.print(Output::Notice(w));
                    }
                    self.answer_json(json::history("history", &lines));
                }
                Err(e) => self.print(Output::Error(format!("cannot read history: {e}"))),
            };
        }
        self.history_asked += 1;
        let (seq, tx) = (self.history_asked, self.history_tx.clone());
        tokio::spawn(async move {
            let read = tokio::task::spawn_blocking(move || {
                let (lines, mut warnings) = query.run().map_err(|e| e.to_string())?;
                if lines.is_empty() {
                    // A notice, with the clock: it is not a line of the history.
                    let what = nick.unwrap_or_else(|| "the group".to_owned());
                    warnings.push(format!("no history with {what} yet"));
                    return Ok((warnings, VecDeque::new()));
                }
                // Each line freed as it is formatted: a long history is not held twice.
                let text = lines.into_iter().map(|l| format_history_line(&l)).collect();
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

    /// Shows a `/history` answer, once every one asked before it is shown; a long one
    /// `HISTORY_SLICE` lines per wake-up, the rest sent back to come again, so the network
    /// is served between slices.
    pub fn on_history(&mut self, (seq, answer): HistoryAnswer) {
        self.history_early.insert(seq, answer);
        while let Some(answer) = self.history_early.remove(&(self.history_shown + 1)) {
            let seq = self.history_shown + 1;
            match answer {
                Ok((warnings, mut lines)) => {
                    for w in warnings {
                        self.print(Output::Notice(w));
                    }
                    for l in lines.drain(..lines.len().min(HISTORY_SLICE)) {
                        self.print(Output::Dated(l));
                    }
                    if !lines.is_empty() {
                        let _ = self.history_tx.send((seq, Ok((Vec::new(), lines))));
                        return;
                    }
                }
                Err(e) => self.print(Output::Error(format!("cannot read history: {e}"))),
            }
            self.history_shown = seq;
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
    async fn answers_are_shown_in_the_order_asked_and_long_ones_in_slices() {
        let (mut chat, lines) = chat();
        chat.history_asked = 2;
        assert!(!chat.accepts_input(), "a script waits for its answers");
        let long: Vec<String> = (0..HISTORY_SLICE + 10)
            .map(|i| format!("first {i}"))
            .collect();
        // The second answer comes back first: it waits.
        chat.on_history((2, Ok((Vec::new(), VecDeque::from(["second".to_owned()])))));
        chat.flush_screen();
        assert!(infos(&lines).is_empty());
        // The first: one slice now, the rest at the next wake-up, then the second.
        chat.on_history((1, Ok((Vec::new(), long.iter().cloned().collect()))));
        chat.flush_screen();
        assert_eq!(infos(&lines), long[..HISTORY_SLICE]);
        let rest = chat.history_answer().await;
        chat.on_history(rest);
        chat.flush_screen();
        let mut want = long[HISTORY_SLICE..].to_vec();
        want.push("second".to_owned());
        assert_eq!(infos(&lines), want);
        assert!(chat.accepts_input());
    }
}
