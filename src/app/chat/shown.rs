//! Which messages are on screen: a message heard is recorded as shown only once the screen
//! has written it, and one heard but never shown (a crash in between) is shown at the next
//! start.

use super::Chat;
use crate::app::json;
use crate::proto::PeerId;
use crate::store::journal::{format_history_line, Record, Unshown};
use crate::ui::render::Output;
use std::collections::BTreeMap;

impl Chat {
    /// Messages heard in an earlier run that never reached the screen (a crash between
    /// acknowledging and printing): shown now, under a separator, and then recorded as shown.
    pub fn replay(&mut self, unshown: Vec<Unshown>) {
        if unshown.is_empty() {
            return;
        }
        let mut shown = BTreeMap::new();
        if self.json {
            let lines: Vec<_> = unshown.iter().map(|u| u.line.clone()).collect();
            // In parts of a megabyte or so: many long messages in one object would be a line
            // too long for the screen's queue, and skipped.
            for part in json::history_in_parts("missed", &lines, 1 << 20) {
                self.screen.print_json(part);
            }
        } else {
            self.screen
                .print(&Output::Notice("--- while you were away ---".to_owned()));
            for u in &unshown {
                self.screen
                    .print(&Output::Dated(format_history_line(&u.line)));
            }
        }
        for u in unshown {
            let through = shown.entry(u.from).or_insert(u.id);
            *through = (*through).max(u.id);
        }
        self.await_shown(shown);
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
