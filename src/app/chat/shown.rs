//! Which messages are on screen: a message heard is recorded as shown only once the screen
//! has written it, and one heard but never shown (a crash in between) is shown at the next
//! start.

use super::Chat;
use crate::app::json;
use crate::proto::PeerId;
use crate::store::journal::{format_history_line, Record, Unshown};
use crate::ui::render::Output;
use std::collections::BTreeMap;
use std::time::Duration;

/// Bytes of messages in one part of a replay: a part goes out whole.
const REPLAY_PART: usize = 1 << 20;
/// A part goes out while fewer bytes than this wait for the screen, so a replay never fills
/// its queue (and is skipped) however long it is.
const REPLAY_BACKLOG: usize = 2 << 20;
/// How often the screen is looked at while a replay waits for it.
pub(super) const REPLAY_EVERY: Duration = Duration::from_millis(50);

/// Some of the messages a replay shows, and what showing them confirms.
pub struct ReplayPart {
    /// With `--json`: one `missed` object; else a line each.
    lines: Vec<ReplayLine>,
    /// The highest message id per sender in the part.
    shown: BTreeMap<PeerId, u64>,
}

enum ReplayLine {
    Json(String),
    Human(Output),
}

impl Chat {
    /// Messages heard in an earlier run that never reached the screen (a crash between
    /// acknowledging and printing, or output nobody read): shown now, under a separator, in
    /// parts of about a megabyte that go out as the screen takes them, each recorded as
    /// shown once written.
    pub fn replay(&mut self, unshown: Vec<Unshown>) {
        if unshown.is_empty() {
            return;
        }
        if !self.json {
            let separator = Output::Notice("--- while you were away ---".to_owned());
            self.replay_rest.push_back(ReplayPart {
                lines: vec![ReplayLine::Human(separator)],
                shown: BTreeMap::new(),
            });
        }
        let mut bytes = 0;
        let mut part: Vec<Unshown> = Vec::new();
        for u in unshown {
            bytes += u.line.text.len() + u.line.nick.len() + 100;
            part.push(u);
            if bytes >= REPLAY_PART {
                let whole = std::mem::take(&mut part);
                self.replay_rest.push_back(self.replay_part(whole));
                bytes = 0;
            }
        }
        if !part.is_empty() {
            self.replay_rest.push_back(self.replay_part(part));
        }
        self.replay_more();
    }

    fn replay_part(&self, unshown: Vec<Unshown>) -> ReplayPart {
        let mut shown = BTreeMap::new();
        for u in &unshown {
            let through = shown.entry(u.from).or_insert(u.id);
            *through = (*through).max(u.id);
        }
        let lines = if self.json {
            let lines: Vec<_> = unshown.into_iter().map(|u| u.line).collect();
            vec![ReplayLine::Json(json::history("missed", &lines))]
        } else {
            unshown
                .iter()
                .map(|u| ReplayLine::Human(Output::Dated(format_history_line(&u.line))))
                .collect()
        };
        ReplayPart { lines, shown }
    }

    /// Hands the screen the next parts of a replay while little waits for it.
    pub(super) fn replay_more(&mut self) {
        while self.screen.backlog() < REPLAY_BACKLOG {
            let Some(part) = self.replay_rest.pop_front() else {
                return;
            };
            for line in part.lines {
                match line {
                    ReplayLine::Json(text) => self.screen.print_json(text),
                    ReplayLine::Human(out) => self.screen.print(&out),
                }
            }
            self.await_shown(part.shown);
        }
    }

    /// Messages just handed to the screen (highest id per sender), to record as shown once
    /// the screen has written them. While the screen lags, they join the newest unconfirmed
    /// entry under the later mark, so a stalled screen holds one entry, not one per wake-up.
    pub(super) fn await_shown(&mut self, shown: BTreeMap<PeerId, u64>) {
        if shown.is_empty() {
            return;
        }
        let mark = self.screen.mark();
        let reached = self.screen.reached();
        self.confirm_until = Some(std::time::Instant::now() + super::CONFIRM_SHOWN_FOR);
        match self.unconfirmed.last_mut() {
            Some((last, pending)) if *last > reached => {
                *last = mark;
                for (from, id) in shown {
                    let t = pending.entry(from).or_insert(id);
                    *t = (*t).max(id);
                }
            }
            _ => self.unconfirmed.push((mark, shown)),
        }
    }

    /// Records as shown the messages whose screen mark is at or below `reached`, and as told
    /// the file transfers whose end lines are.
    pub(super) fn record_shown(&mut self, reached: u64) {
        let written = self
            .files_unconfirmed
            .partition_point(|(mark, _)| *mark <= reached);
        for (_, keys) in self.files_unconfirmed.drain(..written) {
            self.files.told(&keys);
        }
        let done = self
            .unconfirmed
            .partition_point(|(mark, _)| *mark <= reached);
        let mut through: BTreeMap<PeerId, u64> = BTreeMap::new();
        for (_, shown) in self.unconfirmed.drain(..done) {
            for (from, id) in shown {
                let t = through.entry(from).or_insert(id);
                *t = (*t).max(id);
            }
        }
        for (from, id) in through {
            self.append(&Record::Shown { from, id });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::Screen;
    use crate::store::journal::HistoryLine;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{mpsc, Arc};

    /// A screen whose backlog the test sets.
    struct Paced {
        out: mpsc::Sender<Output>,
        backlog: Arc<AtomicUsize>,
    }

    impl Screen for Paced {
        fn print(&self, out: &Output) {
            let _ = self.out.send(out.clone());
        }
        fn nick(&self, _nick: &str) {}
        fn peer_nicks(&self, _nicks: Vec<String>) {}
        fn mark(&self) -> u64 {
            0
        }
        fn reached(&self) -> u64 {
            0
        }
        fn flush(&self) {}
        fn print_json(&self, line: String) {
            let _ = self.out.send(Output::Info(line));
        }
        fn backlog(&self) -> usize {
            self.backlog.load(Ordering::Acquire)
        }
    }

    #[test]
    fn a_long_replay_goes_out_as_the_screen_takes_it_whole_and_in_order() {
        let (out, lines) = mpsc::channel();
        let backlog = Arc::new(AtomicUsize::new(0));
        let screen = Paced {
            out,
            backlog: Arc::clone(&backlog),
        };
        let setup = crate::app::start::test_setup();
        let (resolved_tx, _) = tokio::sync::mpsc::unbounded_channel();
        let mut chat = Chat::new(setup, Box::new(screen), resolved_tx);
        // 300 messages of 10 KB: three megabytes, more than the screen may hold at once.
        let unshown: Vec<Unshown> = (0..300u64)
            .map(|i| Unshown {
                from: PeerId(2),
                id: i + 1,
                line: HistoryLine {
                    at_ms: 1_700_000_000_000,
                    nick: "bob".into(),
                    to: None,
                    direct: false,
                    text: format!("{i:03} {}", "x".repeat(10_000)),
                    action: false,
                },
            })
            .collect();
        // The screen is behind: nothing more is handed to it yet.
        backlog.store(REPLAY_BACKLOG, Ordering::Release);
        chat.replay(unshown);
        assert_eq!(lines.try_iter().count(), 0);
        assert!(chat.next_wakeup().is_some(), "it looks again soon");
        // It caught up: the rest follows, separator first, every message once, in order.
        backlog.store(0, Ordering::Release);
        chat.replay_more();
        let shown: Vec<Output> = lines.try_iter().collect();
        assert!(
            matches!(&shown[0], Output::Notice(n) if n == "--- while you were away ---"),
            "{:?}",
            shown.first()
        );
        let numbers: Vec<String> = shown[1..]
            .iter()
            .map(|o| match o {
                Output::Dated(l) => l.split("<bob> ").nth(1).unwrap()[..3].to_owned(),
                other => panic!("{other:?}"),
            })
            .collect();
        let wanted: Vec<String> = (0..300).map(|i| format!("{i:03}")).collect();
        assert_eq!(numbers, wanted);
        assert!(chat.replay_rest.is_empty());
    }
}
