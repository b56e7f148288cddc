//! Which messages are on screen: a message heard is recorded as shown only once the screen
//! has written it, and one heard but never shown (a crash in between) is shown at the next
//! start. Long output (that replay, a long `/history`) goes to the screen in parts, as it
//! takes them.

use super::Chat;
use crate::app::json;
use crate::proto::PeerId;
use crate::store::journal::{format_history_line, HistoryLine, Record, Unshown};
use crate::ui::render::Output;
use std::collections::BTreeMap;
use std::time::Duration;

/// Bytes of text in one part of long output: a part goes out whole.
const PACED_PART: usize = 1 << 20;
/// A part goes out while fewer bytes than this wait for the screen, so long output never fills
/// its queue (and is skipped) however long it is.
const PACED_BACKLOG: usize = 2 << 20;
/// Entries of messages handed to the screen and not yet written that are kept apart (see
/// [`Chat::await_shown`]): a few per message at most, a small map each.
const MAX_UNCONFIRMED: usize = 4096;
/// How often the screen is looked at while long output waits for it.
pub(super) const PACED_EVERY: Duration = Duration::from_millis(50);

/// A part of long output, and, for a replay, what showing it confirms.
pub struct Paced {
    /// With `--json`: one object; else a line each.
    lines: Vec<PacedLine>,
    /// The highest message id per sender in the part.
    shown: BTreeMap<PeerId, u64>,
}

enum PacedLine {
    Json(String),
    Human(Output),
}

impl Paced {
    /// Lines for a person.
    pub(super) fn human(lines: impl IntoIterator<Item = Output>) -> Paced {
        Paced {
            lines: lines.into_iter().map(PacedLine::Human).collect(),
            shown: BTreeMap::new(),
        }
    }

    /// One JSON object.
    pub(super) fn json(text: String) -> Paced {
        Paced {
            lines: vec![PacedLine::Json(text)],
            shown: BTreeMap::new(),
        }
    }
}

/// `items` in order, cut into parts of about [`PACED_PART`] bytes as `size` counts them.
pub(super) fn in_parts<T>(
    items: impl IntoIterator<Item = T>,
    size: impl Fn(&T) -> usize,
) -> Vec<Vec<T>> {
    let mut parts = Vec::new();
    let (mut part, mut bytes) = (Vec::new(), 0);
    for item in items {
        bytes += size(&item);
        part.push(item);
        if bytes >= PACED_PART {
            parts.push(std::mem::take(&mut part));
            bytes = 0;
        }
    }
    if !part.is_empty() {
        parts.push(part);
    }
    parts
}

/// What a message counts for in a part: its text, and about what a line adds around it.
pub(super) fn line_size(line: &HistoryLine) -> usize {
    line.text.len() + line.nick.len() + 100
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
            // Lines of ours among them: sent, but the last run stopped before echoing them.
            let ours = unshown
                .iter()
                .any(|u| u.from == crate::store::journal::OWN_LINES);
            let separator = Output::Notice(if ours {
                "--- while you were away (with lines of yours the last run sent but never showed) ---".to_owned()
            } else {
                "--- while you were away ---".to_owned()
            });
            self.paced.push_back(Paced::human([separator]));
        }
        let parts = in_parts(unshown, |u| line_size(&u.line));
        let last = parts.len() - 1;
        for (i, part) in parts.into_iter().enumerate() {
            let part = self.replay_part(part, i < last);
            self.paced.push_back(part);
        }
        self.pace_more();
    }

    /// A part of a replay; with `--json`, a `missed` object that says whether `more` follow.
    fn replay_part(&self, unshown: Vec<Unshown>, more: bool) -> Paced {
        let mut shown = BTreeMap::new();
        for u in &unshown {
            let through = shown.entry(u.from).or_insert(u.id);
            *through = (*through).max(u.id);
        }
        let lines = if self.json {
            let lines: Vec<_> = unshown.into_iter().map(|u| u.line).collect();
            vec![PacedLine::Json(json::history("missed", &lines, more))]
        } else {
            unshown
                .iter()
                .map(|u| PacedLine::Human(Output::Dated(format_history_line(&u.line))))
                .collect()
        };
        Paced { lines, shown }
    }

    /// Hands the screen the next parts of long output while little waits for it.
    pub(super) fn pace_more(&mut self) {
        while self.screen.backlog() < PACED_BACKLOG {
            let Some(part) = self.paced.pop_front() else {
                return;
            };
            for line in part.lines {
                match line {
                    PacedLine::Json(text) => self.screen.print_json(text),
                    PacedLine::Human(out) => self.screen.print(&out),
                }
            }
            self.await_shown(part.shown);
        }
    }

    /// Messages just handed to the screen (highest id per sender), to record as shown once
    /// the screen has written them: an entry per wake-up, so that what the screen wrote
    /// before it fell behind (and perhaps skipped lines) is recorded as shown. Only past
    /// [`MAX_UNCONFIRMED`] entries do they join the newest one under the later mark, so a
    /// screen stalled for long holds a bounded list.
    pub(super) fn await_shown(&mut self, shown: BTreeMap<PeerId, u64>) {
        if shown.is_empty() {
            return;
        }
        let mark = self.screen.mark();
        let reached = self.screen.reached();
        self.confirm_until = Some(std::time::Instant::now() + super::CONFIRM_SHOWN_FOR);
        let full = self.unconfirmed.len() >= MAX_UNCONFIRMED;
        match self.unconfirmed.last_mut() {
            Some((last, pending)) if *last > reached && full => {
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
        for (from, id) in self.confirmed(reached) {
            self.append(&Record::Shown { from, id });
        }
    }

    /// Takes the messages whose screen mark is at or below `reached`: the highest id per
    /// sender.
    fn confirmed(&mut self, reached: u64) -> BTreeMap<PeerId, u64> {
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
        through
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::Screen;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{mpsc, Arc};

    /// A screen whose backlog the test sets.
    struct LaggingScreen {
        out: mpsc::Sender<Output>,
        backlog: Arc<AtomicUsize>,
    }

    impl Screen for LaggingScreen {
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

    /// A chat whose screen lags as the test says, and what reaches that screen.
    fn lagging() -> (Chat, mpsc::Receiver<Output>, Arc<AtomicUsize>) {
        let (out, lines) = mpsc::channel();
        let backlog = Arc::new(AtomicUsize::new(0));
        let screen = LaggingScreen {
            out,
            backlog: Arc::clone(&backlog),
        };
        let setup = crate::app::start::test_setup();
        let (resolved_tx, _) = tokio::sync::mpsc::unbounded_channel();
        let chat = Chat::new(setup, Box::new(screen), resolved_tx);
        (chat, lines, backlog)
    }

    #[test]
    fn a_long_history_goes_out_as_the_screen_takes_it_and_a_script_waits_for_it() {
        let (mut chat, lines, backlog) = lagging();
        chat.scripted = true;
        chat.history_asked = 1;
        // Three megabytes, more than the screen may hold at once, and it is behind.
        let long: Vec<String> = (0..300)
            .map(|i| format!("{i:03} {}", "h".repeat(10_000)))
            .collect();
        backlog.store(PACED_BACKLOG, Ordering::Release);
        chat.on_history((
            1,
            Ok((vec!["a damaged line was skipped".to_owned()], long.clone())),
        ));
        chat.flush_screen();
        let first: Vec<Output> = lines.try_iter().collect();
        assert!(matches!(&first[..], [Output::Notice(_)]), "{first:?}");
        assert!(
            !chat.accepts_input(),
            "a script's next command waits for the answer"
        );
        assert!(chat.next_wakeup().is_some(), "it looks again soon");
        backlog.store(0, Ordering::Release);
        chat.on_timer(std::time::Instant::now());
        let shown: Vec<String> = lines
            .try_iter()
            .map(|o| match o {
                Output::Dated(l) => l,
                other => panic!("{other:?}"),
            })
            .collect();
        assert!(shown == long, "every line once, in order");
        assert!(chat.accepts_input());
    }

    /// A screen that counts the lines handed to it (its marks) and writes as far as the test
    /// says.
    struct CountingScreen {
        marks: Arc<AtomicUsize>,
        written: Arc<AtomicUsize>,
    }

    impl Screen for CountingScreen {
        fn print(&self, _out: &Output) {
            self.marks.fetch_add(1, Ordering::AcqRel);
        }
        fn nick(&self, _nick: &str) {}
        fn peer_nicks(&self, _nicks: Vec<String>) {}
        fn mark(&self) -> u64 {
            self.marks.load(Ordering::Acquire) as u64
        }
        fn reached(&self) -> u64 {
            self.written.load(Ordering::Acquire) as u64
        }
        fn flush(&self) {}
        fn print_json(&self, _line: String) {
            self.marks.fetch_add(1, Ordering::AcqRel);
        }
    }

    #[test]
    fn what_the_screen_wrote_before_it_fell_behind_is_recorded_as_shown() {
        let (marks, written) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let screen = CountingScreen {
            marks: Arc::clone(&marks),
            written: Arc::clone(&written),
        };
        let setup = crate::app::start::test_setup();
        let (resolved_tx, _) = tokio::sync::mpsc::unbounded_channel();
        let mut chat = Chat::new(setup, Box::new(screen), resolved_tx);
        let bob = PeerId(2);
        // Three wake-ups, a message each, while the screen writes nothing.
        for id in 1..=3 {
            chat.screen.print(&Output::Info(format!("message {id}")));
            chat.await_shown(BTreeMap::from([(bob, id)]));
        }
        // It writes the first two, then skips the third (so it never gets past the second).
        written.store(2, Ordering::Release);
        assert_eq!(chat.confirmed(2), BTreeMap::from([(bob, 2)]));
        assert_eq!(chat.confirmed(2), BTreeMap::new(), "taken once");
        written.store(3, Ordering::Release);
        assert_eq!(chat.confirmed(3), BTreeMap::from([(bob, 3)]));
    }

    #[test]
    fn a_long_replay_goes_out_as_the_screen_takes_it_whole_and_in_order() {
        let (mut chat, lines, backlog) = lagging();
        // 300 messages of 10 KB: three megabytes, more than the screen may hold at once.
        let unshown: Vec<Unshown> = (0..300u64)
            .map(|i| Unshown {
                from: PeerId(2),
                id: i + 1,
                line: HistoryLine {
                    at_ms: 1_700_000_000_000,
                    nick: "bob".into(),
                    from: Some(PeerId(2)),
                    to: None,
                    direct: false,
                    text: format!("{i:03} {}", "x".repeat(10_000)),
                    action: false,
                },
            })
            .collect();
        // The screen is behind: nothing more is handed to it yet.
        backlog.store(PACED_BACKLOG, Ordering::Release);
        chat.replay(unshown);
        assert_eq!(lines.try_iter().count(), 0);
        assert!(chat.next_wakeup().is_some(), "it looks again soon");
        // It caught up: the rest follows, separator first, every message once, in order.
        backlog.store(0, Ordering::Release);
        chat.pace_more();
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
        assert!(chat.paced.is_empty());
    }
}
