//! Notices of peers that stop answering, or answer again, gathered into one line. When a part
//! of the network is cut off (a switch, a router, a VPN link), every peer behind it stops
//! answering within a few seconds of the others; a line for each would push the conversation
//! off the screen, twice (when they go, and when they come back). The first such notice waits
//! [`GATHER`] for others of its kind, then one line names them all. A peer that answers again
//! before its "not answering" was shown is not mentioned at all, nor one that stops again
//! before its "answering again" was: nothing changed for the user. Anything else said about a
//! peer whose notice waits here (it left, was forgotten, renamed, wrote) first lets the
//! waiting lines out ([`AnsweringNotices::involves`]), so that lines keep their order.

use crate::proto::PeerId;
use std::time::{Duration, Instant};

/// How long the first notice of a kind waits for others.
pub const GATHER: Duration = Duration::from_secs(2);
/// Names listed in one line at most; the rest are counted.
const NAMED: usize = 5;

/// The notices waiting to be shown.
#[derive(Debug, Default)]
pub struct AnsweringNotices {
    /// Peers that stopped answering: shown name, and our messages waiting for them.
    stopped: Vec<(PeerId, String, usize)>,
    /// When the first of `stopped` came.
    stopped_since: Option<Instant>,
    /// Peers that answer again: shown name.
    again: Vec<(PeerId, String)>,
    /// When the first of `again` came.
    again_since: Option<Instant>,
}

impl AnsweringNotices {
    /// `peer` (shown as `name`) stopped answering, with `queued` of our messages waiting:
    /// said, unless its "answering again" is still waiting here, which then goes unsaid.
    pub fn stopped(&mut self, now: Instant, peer: PeerId, name: String, queued: usize) {
        let before = self.again.len();
        self.again.retain(|(p, _)| *p != peer);
        if self.again.len() < before {
            if self.again.is_empty() {
                self.again_since = None;
            }
            return;
        }
        self.stopped.retain(|(p, ..)| *p != peer);
        self.stopped.push((peer, name, queued));
        self.stopped_since.get_or_insert(now);
    }

    /// `peer` (shown as `name`) answers again: said, unless its "not answering" is still
    /// waiting here, which then goes unsaid.
    pub fn answering(&mut self, now: Instant, peer: PeerId, name: String) {
        let before = self.stopped.len();
        self.stopped.retain(|(p, ..)| *p != peer);
        if self.stopped.len() < before {
            if self.stopped.is_empty() {
                self.stopped_since = None;
            }
            return;
        }
        self.again.retain(|(p, _)| *p != peer);
        self.again.push((peer, name));
        self.again_since.get_or_insert(now);
    }

    /// Whether a notice about `peer` waits here.
    pub fn involves(&self, peer: PeerId) -> bool {
        self.stopped.iter().any(|(p, ..)| *p == peer) || self.again.iter().any(|(p, _)| *p == peer)
    }

    /// When the next line is due.
    pub fn next_wakeup(&self) -> Option<Instant> {
        [self.stopped_since, self.again_since]
            .into_iter()
            .flatten()
            .min()
            .map(|t| t + GATHER)
    }

    /// The lines due at `now` (all of them when `all`, at quit), in the order their first
    /// notice came.
    pub fn due(&mut self, now: Instant, all: bool) -> Vec<String> {
        let is_due = |since: Option<Instant>| since.is_some_and(|t| all || now >= t + GATHER);
        let mut lines = Vec::new();
        if is_due(self.stopped_since) {
            let since = self.stopped_since.take();
            let stopped = std::mem::take(&mut self.stopped);
            let queued: usize = stopped.iter().map(|(_, _, q)| q).sum();
            let names: Vec<String> = stopped.into_iter().map(|(_, n, _)| n).collect();
            lines.push((since, not_answering_line(&names, queued)));
        }
        if is_due(self.again_since) {
            let since = self.again_since.take();
            let names: Vec<String> = std::mem::take(&mut self.again)
                .into_iter()
                .map(|(_, n)| n)
                .collect();
            lines.push((since, format!("{} answering again", subject(&names))));
        }
        lines.sort_by_key(|(since, _)| *since);
        lines.into_iter().map(|(_, line)| line).collect()
    }
}

/// `bob is` / `bob, carol are` / `n1, n2, n3, n4, n5 and 7 more are`.
fn subject(names: &[String]) -> String {
    match names {
        [] => "nobody is".to_owned(),
        [one] => format!("{one} is"),
        [rest @ .., last] if names.len() <= NAMED + 1 => {
            format!("{} and {last} are", rest.join(", "))
        }
        _ => format!(
            "{} and {} more are",
            names[..NAMED].join(", "),
            names.len() - NAMED
        ),
    }
}

/// The line for peers that stopped answering, with our messages waiting for them (`queued`:
/// the sum of each one's count, the same group message counted once per peer, so it is
/// given as a number only for one peer).
fn not_answering_line(names: &[String], queued: usize) -> String {
    let who = subject(names);
    match (queued, names.len()) {
        (0, _) => format!("{who} not answering"),
        (n, 1) => format!(
            "{who} not answering; {n} of your messages {} and will be resent when they are back",
            crate::ui::present::wait(n)
        ),
        _ => format!(
            "{who} not answering; your messages to them wait and will be resent when they are back"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: u64) -> Vec<(PeerId, String)> {
        (1..=n).map(|i| (PeerId(i), format!("n{i}"))).collect()
    }

    #[test]
    fn a_cut_off_segment_is_one_line_when_it_goes_and_one_when_it_comes_back() {
        let mut g = AnsweringNotices::default();
        let t0 = Instant::now();
        assert_eq!(g.next_wakeup(), None);
        for (i, (p, n)) in names(8).into_iter().enumerate() {
            g.stopped(t0 + Duration::from_millis(100 * i as u64), p, n, 1);
        }
        assert_eq!(g.next_wakeup(), Some(t0 + GATHER));
        assert!(g
            .due(t0 + GATHER - Duration::from_millis(1), false)
            .is_empty());
        assert_eq!(
            g.due(t0 + GATHER, false),
            ["n1, n2, n3, n4, n5 and 3 more are not answering; your messages to them wait and will be resent when they are back"]
        );
        assert_eq!(g.next_wakeup(), None);
        let t1 = t0 + Duration::from_secs(60);
        for (p, n) in names(3) {
            g.answering(t1, p, n);
        }
        assert_eq!(
            g.due(t1 + GATHER, false),
            ["n1, n2 and n3 are answering again"]
        );
        // Back, then gone again before that was said: neither line.
        g.answering(t1, PeerId(4), "n4".into());
        assert!(g.involves(PeerId(4)));
        g.stopped(t1, PeerId(4), "n4".into(), 0);
        assert!(!g.involves(PeerId(4)));
        assert!(g.due(t1 + GATHER, true).is_empty());
    }

    #[test]
    fn one_peer_reads_as_before_and_a_blip_is_not_told() {
        let mut g = AnsweringNotices::default();
        let t0 = Instant::now();
        g.stopped(t0, PeerId(1), "bob".into(), 0);
        assert_eq!(g.due(t0 + GATHER, false), ["bob is not answering"]);
        // Back within the gathering: neither line.
        g.stopped(t0, PeerId(2), "carol".into(), 2);
        g.answering(t0 + Duration::from_secs(1), PeerId(2), "carol".into());
        assert_eq!(g.next_wakeup(), None);
        assert!(g.due(t0 + GATHER * 2, true).is_empty());
        // At quit, whatever waits is said at once, in the order it came.
        g.answering(t0, PeerId(1), "bob".into());
        g.stopped(t0 + Duration::from_millis(10), PeerId(3), "dave".into(), 2);
        assert_eq!(
            g.due(t0, true),
            [
                "bob is answering again",
                "dave is not answering; 2 of your messages wait and will be resent when they are back"
            ]
        );
    }
}
