//! Notices about late delivery, gathered per recipient. A burst of messages to a peer that
//! restarted, or whose link stalled, is "not yet delivered" all at once, and "delivered after
//! all" all at once when it is back: one line each way per peer says so, instead of one per
//! message (thousands, for a script's burst). The first notice waits [`GATHER`] for others;
//! a message delivered before its "not yet delivered" was shown is not mentioned at all.

use super::answering::GATHER;
use crate::proto::{MessageId, PeerId};
use std::time::Instant;

/// Which notice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Not yet delivered, still trying.
    Delayed,
    /// Delivered after all.
    Late,
}

/// A message told about: its id and quoted beginning.
type Quoted = (MessageId, String);

/// The notices waiting to be shown.
#[derive(Debug, Default)]
pub struct DeliveryNotices {
    /// Per kind and recipient, in the order they first came: the recipient's shown name, and
    /// the messages (id and quoted beginning).
    waiting: Vec<(Kind, PeerId, String, Vec<Quoted>)>,
    /// When the first of them came.
    since: Option<Instant>,
}

impl DeliveryNotices {
    /// Message `id` (quoted as `quote`) is not yet delivered to `to` (shown as `name`).
    pub fn delayed(
        &mut self,
        now: Instant,
        to: PeerId,
        name: String,
        id: MessageId,
        quote: String,
    ) {
        self.add(now, Kind::Delayed, to, name, (id, quote));
    }

    /// Message `id` was delivered to `to` after all: said, unless its "not yet delivered" is
    /// still waiting here, which then goes unsaid too.
    pub fn late(&mut self, now: Instant, to: PeerId, name: String, id: MessageId, quote: String) {
        let delayed = self
            .waiting
            .iter_mut()
            .find(|(kind, peer, ..)| *kind == Kind::Delayed && *peer == to);
        if let Some((.., messages)) = delayed {
            let before = messages.len();
            messages.retain(|(m, _)| *m != id);
            if messages.len() < before {
                self.waiting.retain(|(.., messages)| !messages.is_empty());
                if self.waiting.is_empty() {
                    self.since = None;
                }
                return;
            }
        }
        self.add(now, Kind::Late, to, name, (id, quote));
    }

    fn add(
        &mut self,
        now: Instant,
        kind: Kind,
        to: PeerId,
        name: String,
        message: (MessageId, String),
    ) {
        match self
            .waiting
            .iter_mut()
            .find(|(k, peer, ..)| *k == kind && *peer == to)
        {
            Some((.., messages)) => messages.push(message),
            None => self.waiting.push((kind, to, name, vec![message])),
        }
        self.since.get_or_insert(now);
    }

    /// When the lines are due.
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.since.map(|t| t + GATHER)
    }

    /// The lines due at `now` (all of them when `all`, at quit), in the order they came.
    pub fn due(&mut self, now: Instant, all: bool) -> Vec<String> {
        if !self.since.is_some_and(|t| all || now >= t + GATHER) {
            return Vec::new();
        }
        self.since = None;
        std::mem::take(&mut self.waiting)
            .into_iter()
            .map(|(kind, _, name, messages)| {
                let first = messages.first().map(|(_, q)| q.clone()).unwrap_or_default();
                let what = match messages.len() {
                    0 | 1 => first,
                    n => format!("{first} and {} more", n - 1),
                };
                match kind {
                    Kind::Delayed => format!("not yet delivered to {name}: {what} (still trying)"),
                    Kind::Late => format!("delivered to {name} after all: {what}"),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_told_in_one_line_each_way_per_peer() {
        let t0 = Instant::now();
        let mut d = DeliveryNotices::default();
        let (alice, bob) = (PeerId(1), PeerId(2));
        for i in 1..=1824 {
            d.delayed(t0, alice, "alice".into(), MessageId(i), format!("“{i}”"));
        }
        d.delayed(t0, bob, "bob".into(), MessageId(1), "“1”".into());
        assert_eq!(d.next_wakeup(), Some(t0 + GATHER));
        assert!(d.due(t0 + GATHER / 2, false).is_empty(), "not yet");
        assert_eq!(
            d.due(t0 + GATHER, false),
            [
                "not yet delivered to alice: “1” and 1823 more (still trying)",
                "not yet delivered to bob: “1” (still trying)"
            ]
        );
        assert_eq!(d.next_wakeup(), None);
        let t1 = t0 + GATHER * 5;
        for i in 1..=1824 {
            d.late(t1, alice, "alice".into(), MessageId(i), format!("“{i}”"));
        }
        assert_eq!(
            d.due(t1, true),
            ["delivered to alice after all: “1” and 1823 more"]
        );
    }

    #[test]
    fn a_message_delivered_before_its_delay_was_told_is_not_mentioned() {
        let t0 = Instant::now();
        let mut d = DeliveryNotices::default();
        let alice = PeerId(1);
        d.delayed(t0, alice, "alice".into(), MessageId(7), "“seven”".into());
        d.delayed(t0, alice, "alice".into(), MessageId(8), "“eight”".into());
        d.late(t0, alice, "alice".into(), MessageId(7), "“seven”".into());
        assert_eq!(
            d.due(t0 + GATHER, false),
            ["not yet delivered to alice: “eight” (still trying)"]
        );
        d.delayed(t0, alice, "alice".into(), MessageId(9), "“nine”".into());
        d.late(t0, alice, "alice".into(), MessageId(9), "“nine”".into());
        assert!(d.due(t0 + GATHER, true).is_empty());
        assert_eq!(d.next_wakeup(), None);
    }
}
