//! Leaving: peers are told and given a moment to acknowledge; a script whose input ended
//! first waits for its messages; before exiting, what is still waiting is kept and told.

use super::Chat;
use crate::app::persist::Persistence;
use crate::proto::Event;
use crate::ui::render::Output;
use std::time::{Duration, Instant};

/// How long `/quit` waits for peers to acknowledge the goodbye.
pub const QUIT_GRACE: Duration = Duration::from_secs(1);

impl Chat {
    /// Whether the user has quit and the goodbye is acknowledged or has run out of time.
    /// A script whose input has ended first waits for its messages to be acknowledged.
    pub fn finished(&mut self, now: Instant) -> bool {
        if let Some(until) = self.drain_until {
            // Its offers too: waited for until they arrive, past the wait while bytes move.
            let (offers, moving) = self.files.script_offers();
            let all_there = self.ep.undelivered_from(self.first_msg) == 0 && offers == 0;
            if all_there || (now >= until && !moving) {
                self.drain_until = None;
                self.quit();
            }
        }
        self.quit_by
            .is_some_and(|by| self.ep.leave_complete() || now >= by)
    }

    /// Input has ended: a script first waits (up to its wait) for its messages — this run's,
    /// not those an earlier run left waiting for peers who are away — to be acknowledged; a
    /// person quits at once.
    pub fn end_of_input(&mut self) {
        let waiting =
            self.ep.undelivered_from(self.first_msg) > 0 || self.files.script_offers().0 > 0;
        if self.scripted && waiting && !self.quitting() {
            self.drain_until
                .get_or_insert_with(|| Instant::now() + self.wait);
        } else {
            self.quit();
        }
    }

    /// Whether quitting has started.
    pub fn quitting(&self) -> bool {
        self.quit_by.is_some()
    }

    /// Starts leaving (once): peers are told, and the loop ends when they acknowledge or
    /// [`QUIT_GRACE`] runs out.
    pub fn quit(&mut self) {
        if self.quit_by.is_none() {
            self.ep.leave(Instant::now());
            self.quit_by = Some(Instant::now() + QUIT_GRACE);
        }
    }

    /// Before exiting: where every peer was last heard goes to the journal, and the user is
    /// told what is still waiting.
    pub fn goodbye(&mut self) {
        if self.unsent_more > 0 {
            let n = self.unsent_more;
            self.print(Output::Error(format!(
                "not sent either, for the same reason: {n} more {}",
                if n == 1 { "line" } else { "lines" }
            )));
        }
        self.print_gathered(Instant::now(), true);
        self.screen.flush();
        self.record_shown(self.screen.reached());
        // Scripts that left a moment ago would be forgotten in a moment: now, not kept.
        self.ep.forget_departing();
        let now_ms = crate::clock::now_ms();
        while let Some(e) = self.ep.poll_event() {
            for record in Persistence::records_for(&self.ep, &e, now_ms) {
                self.append(&record);
            }
            if let Event::PeerForgotten { peer, nick, .. } = &e {
                let name = self.current_names().name_of(*peer, nick);
                self.files.on_peer_forgotten(&mut self.ep, *peer, &name);
            }
        }
        for record in Persistence::addresses(&self.ep.peers()) {
            self.append(&record);
        }
        self.sync();
        let waiting = self.ep.undelivered();
        // For whom, so that the user knows whom to expect back.
        let peers = self.ep.peers();
        let names = self.known_names(&peers);
        let whom: Vec<String> = peers
            .iter()
            .filter(|p| p.undelivered > 0)
            .map(|p| names.name_of(p.id, &p.nick))
            .collect();
        let whom = whom.join(", ");
        if waiting > 0 && self.persist.storing() {
            self.print(Output::Notice(format!(
                "{} not yet acknowledged by {whom} {} kept, and sent when you and they are both back",
                crate::ui::present::messages(waiting),
                if waiting == 1 { "is" } else { "are" }
            )));
        } else if waiting > 0 {
            // Those of earlier runs are still in the journal (storage went off in this run, or
            // was never on for writing): only this run's can be lost.
            let this_run = self.ep.undelivered_from(self.first_msg);
            let earlier = waiting - this_run.min(waiting);
            let kept = match earlier {
                0 => String::new(),
                n => format!(
                    "; {n} more from earlier runs stay in the journal, and go out at a later start"
                ),
            };
            if this_run > 0 {
                // Since storage failed, or all of them when it was never on.
                let lost = match (self.persist.failed(), this_run) {
                    (true, 1) => "may be lost (it was written since storage failed)",
                    (true, _) => "may be lost (those written since storage failed)",
                    (false, 1) => "is lost",
                    (false, _) => "are lost",
                };
                self.print(Output::Error(format!(
                    "{} of this run had not been acknowledged by {whom} and {lost}: storage is off{kept}",
                    crate::ui::present::messages(this_run)
                )));
            } else {
                let (stay, go) = match earlier {
                    1 => ("stays", "goes"),
                    _ => ("stay", "go"),
                };
                self.print(Output::Notice(format!(
                    "{} from earlier runs not yet acknowledged by {whom} {stay} in the journal, and {go} out at a later start",
                    crate::ui::present::messages(earlier)
                )));
            }
        }
        for line in self.files.left_unfinished(&self.ep) {
            self.print(Output::Notice(line));
        }
        if self.scripted {
            self.outcome.files_unfinished = self.files.script_offers().0;
        }
        self.files.quitting(self.ep.is_ephemeral());
        self.flush_screen();
    }
}
