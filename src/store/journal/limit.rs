//! How much of the conversation the journal keeps: the history limit, and the fair-share rule
//! that divides it among the people who wrote.
//!
//! # The rule
//! Compaction keeps, of the messages said and heard that are younger than
//! [`HistoryLimit::days`] (all, if unset), at most [`HistoryLimit::messages`] *units*: a message
//! weighs one unit, plus one per whole KiB of its text (so a 64 KiB message weighs 65), which
//! bounds the disk as well as the count. The units are shared out max-min fairly among senders
//! (we are one sender, each peer another): every sender keeps its newest messages up to a
//! common quota `q`, the largest for which the quotas fit in the limit; a sender that wrote
//! less than `q` keeps all of its own, and what it leaves unused goes to the others. So one
//! chatty or hostile peer, however fast it writes, only ever evicts its own history once the
//! journal is full: the quiet peers' messages stay until the quota falls to their level, which
//! takes as many other senders as the limit has units for each.
//!
//! Kept whatever the limit (they are not history but state): our messages still undelivered
//! to someone, messages heard but not yet shown, and for each peer still worth knowing its
//! latest `Peer` record, the highest message id heard from it (`Received`) and the highest
//! shown (`Shown`). A peer is worth knowing when it was added by hand, has a message of ours
//! waiting, has a message kept (or one of ours to it is), has a file transfer unfinished (the
//! journal is told which: [`Journal::open_keeping`](super::Journal::open_keeping) and
//! [`Journal::keep_peer`](super::Journal::keep_peer)), or is among the [`RECENT_PEERS`] peers
//! recorded last.

use super::view::RecordView;
use super::Restored;
use crate::proto::PeerId;
use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU32;

/// The default of [`HistoryLimit::messages`]. At the 100–300 bytes a message takes on disk,
/// that is 10–30 MB; it reaches back years for a chat of a few dozen messages a day and months
/// for a busy team, far past what anyone scrolls through with `/history`; and a journal of twice
/// that opens in well under the 300 ms start-up budget (see docs/BENCHMARKS.md).
pub const DEFAULT_HISTORY_MESSAGES: u64 = 100_000;

/// How many peers recorded last keep their `Peer` record through a compaction even with
/// nothing else to keep them: friends met recently who have not spoken yet.
pub const RECENT_PEERS: usize = 256;

/// What a compaction keeps besides the state a restart needs.
#[derive(Clone, Debug, Default)]
pub(super) struct Keep {
    /// How much history.
    pub(super) limit: HistoryLimit,
    /// Peers whose records are kept whatever the limit: those of file transfers (see
    /// [`Journal::keep_peer`](super::Journal::keep_peer)). It only grows while the journal
    /// is open, by a few ids.
    pub(super) peers: BTreeSet<PeerId>,
}

/// How much history the journal keeps (see the module doc for how it is shared out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryLimit {
    /// The most messages kept, in units of one per message plus one per whole KiB of text.
    /// Default [`DEFAULT_HISTORY_MESSAGES`].
    pub messages: u64,
    /// Messages older than this many days are dropped too; `None` (the default): no age limit,
    /// since a quiet chat's history is no burden on the disk and the user may well want it.
    pub days: Option<NonZeroU32>,
}

impl Default for HistoryLimit {
    fn default() -> Self {
        Self {
            messages: DEFAULT_HISTORY_MESSAGES,
            days: None,
        }
    }
}

impl HistoryLimit {
    /// The oldest `at_ms` kept when compacting at `now_ms`, if there is an age limit.
    fn cutoff_ms(&self, now_ms: i64) -> Option<i64> {
        self.days
            .map(|d| now_ms.saturating_sub(i64::from(d.get()) * 86_400_000))
    }
}

/// What a message whose text takes `len` bytes weighs in the limit: one, plus one per whole
/// KiB.
pub(super) fn units(len: usize) -> u64 {
    1 + len as u64 / 1024
}

/// Who wrote a message, for the fair share: `None` for us, or a peer.
pub(super) type Sender = Option<PeerId>;

/// One sender's messages young enough to keep.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    /// Their weight.
    units: u64,
    /// Their size in the file.
    bytes: u64,
    /// The weight of the newest: whether it fits the quota says if anything of theirs is kept.
    last_units: u64,
    /// Where the newest is among all messages (the count before it): the quota's remainder
    /// goes to those who wrote last.
    last_at: u64,
}

/// What compaction needs to know about a journal besides its restart summary, gathered in the
/// same pass over the records.
#[derive(Debug)]
pub(super) struct Census {
    /// See [`HistoryLimit::cutoff_ms`].
    cutoff_ms: Option<i64>,
    /// Per sender, its messages young enough to keep.
    tallies: BTreeMap<Sender, Tally>,
    /// For each peer we wrote directly to: our units before the last such message young enough
    /// to keep (if it is kept, the peer's name is worth keeping).
    direct_to: BTreeMap<PeerId, u64>,
    /// Each peer's last [`Record::Peer`](super::Record::Peer), by position among the records.
    peer_seen: BTreeMap<PeerId, usize>,
    /// When the run with the largest session started.
    opened: Option<(u64, i64)>,
    /// Records counted.
    seq: usize,
    /// Messages counted.
    pub(super) messages: u64,
    /// Messages counted that are older than the age limit.
    old: u64,
}

impl Census {
    /// An empty census for compacting under `limit` at `now_ms`.
    pub(super) fn new(limit: &HistoryLimit, now_ms: i64) -> Self {
        Self {
            cutoff_ms: limit.cutoff_ms(now_ms),
            tallies: BTreeMap::new(),
            direct_to: BTreeMap::new(),
            peer_seen: BTreeMap::new(),
            opened: None,
            seq: 0,
            messages: 0,
            old: 0,
        }
    }

    /// Counts the next record in file order, whose frame takes `frame_len` bytes.
    pub(super) fn add(&mut self, record: &RecordView<'_>, frame_len: u64) {
        self.seq += 1;
        let (sender, at_ms, text) = match record {
            RecordView::Said {
                at_ms,
                text,
                direct_to,
                ..
            } => {
                if let Some(p) = direct_to.filter(|_| self.young(*at_ms)) {
                    let ours = self.tallies.get(&None).map_or(0, |t| t.units);
                    self.direct_to.insert(p, ours);
                }
                (None, *at_ms, text)
            }
            RecordView::Heard {
                at_ms, from, text, ..
            } => (Some(*from), *at_ms, text),
            RecordView::Peer { id, .. } => {
                self.peer_seen.insert(*id, self.seq);
                return;
            }
            RecordView::Opened { at_ms, session, .. } => {
                if self.opened.is_none_or(|(s, _)| *session >= s) {
                    self.opened = Some((*session, *at_ms));
                }
                return;
            }
            _ => return,
        };
        self.messages += 1;
        if self.young(at_ms) {
            let t = self.tallies.entry(sender).or_default();
            let u = units(text.len());
            t.units += u;
            t.bytes += frame_len;
            t.last_units = u;
            t.last_at = self.messages;
        } else {
            self.old += 1;
        }
    }

    /// Whether a message of `at_ms` is young enough to keep.
    fn young(&self, at_ms: i64) -> bool {
        self.cutoff_ms.is_none_or(|c| at_ms >= c)
    }

    /// What to keep under `keep`, given the journal's summary.
    pub(super) fn plan(self, keep: &Keep, restored: &Restored) -> Plan {
        let limit = &keep.limit;
        let totals: BTreeMap<Sender, u64> =
            self.tallies.iter().map(|(s, t)| (*s, t.units)).collect();
        let last_at = |s: &Sender| self.tallies.get(s).map_or(0, |t| t.last_at);
        let quota = fair_share(&totals, limit.messages, last_at);
        let keeps = |s: &Sender| quota.get(s).copied().unwrap_or(0);
        let mut peers: BTreeSet<PeerId> = restored
            .peers
            .iter()
            .filter(|(_, p)| p.manual)
            .map(|(id, _)| *id)
            .collect();
        peers.extend(&keep.peers);
        peers.extend(restored.outbox.keys());
        peers.extend(
            restored
                .unshown
                .iter()
                .map(|u| u.from)
                .filter(|from| *from != super::OWN_LINES),
        );
        peers.extend(
            self.tallies
                .iter()
                .filter(|(s, t)| t.units > 0 && t.last_units <= keeps(s))
                .filter_map(|(s, _)| *s),
        );
        let ours = self.tallies.get(&None).map_or(0, |t| t.units);
        peers.extend(
            self.direct_to
                .iter()
                .filter(|(_, before)| ours - **before <= keeps(&None))
                .map(|(p, _)| *p),
        );
        let mut recent: Vec<(usize, PeerId)> =
            self.peer_seen.iter().map(|(p, seq)| (*seq, *p)).collect();
        recent.sort_unstable_by(|a, b| b.cmp(a));
        peers.extend(recent.iter().take(RECENT_PEERS).map(|(_, p)| *p));

        let messages_bytes: u64 = self
            .tallies
            .iter()
            .map(|(s, t)| {
                let kept = keeps(s).min(t.units);
                // In proportion to the units kept: exact unless sizes vary a lot.
                (u128::from(t.bytes) * u128::from(kept) / u128::from(t.units.max(1))) as u64
            })
            .sum();
        // Kept whatever the limit: the outbox and the messages never shown.
        let pending: u64 = restored
            .outbox
            .values()
            .flatten()
            .map(|o| 64 + o.text.len() as u64)
            .chain(
                restored
                    .unshown
                    .iter()
                    .map(|u| 64 + u.line.text.len() as u64),
            )
            .sum();
        Plan {
            cutoff_ms: self.cutoff_ms,
            totals,
            quota,
            kept_bytes: messages_bytes + pending + 80 * peers.len() as u64,
            peers,
            opened: self.opened,
            messages: self.messages,
            old_messages: self.old.saturating_sub(old_kept(self.cutoff_ms, restored)),
        }
    }
}

/// How many messages older than `cutoff_ms` are kept whatever their age: ours not yet
/// delivered (once each, however many peers wait for it) and those heard but never shown.
fn old_kept(cutoff_ms: Option<i64>, restored: &Restored) -> u64 {
    let Some(cutoff) = cutoff_ms else {
        return 0;
    };
    // Ours: undelivered, or never echoed (each once).
    let ours: BTreeSet<u64> = restored
        .outbox
        .values()
        .flatten()
        .filter(|o| o.at_ms < cutoff)
        .map(|o| o.id)
        .chain(
            restored
                .unshown
                .iter()
                .filter(|u| u.from == super::OWN_LINES && u.line.at_ms < cutoff)
                .map(|u| u.id),
        )
        .collect();
    let theirs = restored
        .unshown
        .iter()
        .filter(|u| u.from != super::OWN_LINES && u.line.at_ms < cutoff)
        .count();
    ours.len() as u64 + theirs as u64
}

/// The max-min fair share of `limit` units among senders who wrote `totals`: the largest
/// common quota `q` with `Σ min(total, q) ≤ limit`, and each sender's `min(total, q)`; what
/// that leaves of `limit` goes one unit each to the senders who wrote more, those who wrote
/// last (by `last_at`) first — so that more senders than units still keep the newest lines.
pub(super) fn fair_share(
    totals: &BTreeMap<Sender, u64>,
    limit: u64,
    last_at: impl Fn(&Sender) -> u64,
) -> BTreeMap<Sender, u64> {
    let kept_at = |q: u64| -> u64 { totals.values().map(|t| (*t).min(q)).sum() };
    let (mut lo, mut hi) = (0, totals.values().copied().max().unwrap_or(0));
    if kept_at(hi) <= limit {
        lo = hi;
    }
    // Largest q in [lo, hi] with kept_at(q) <= limit; kept_at(lo) <= limit holds throughout.
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if kept_at(mid) <= limit {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let mut share: BTreeMap<Sender, u64> = totals.iter().map(|(s, t)| (*s, (*t).min(lo))).collect();
    let mut left = limit.saturating_sub(kept_at(lo));
    let mut more: Vec<Sender> = totals
        .iter()
        .filter(|(_, t)| **t > lo)
        .map(|(s, _)| *s)
        .collect();
    more.sort_by_key(|s| std::cmp::Reverse(last_at(s)));
    for s in more {
        if left == 0 {
            break;
        }
        if let Some(k) = share.get_mut(&s) {
            *k += 1;
            left -= 1;
        }
    }
    share
}

/// What a compaction keeps.
#[derive(Debug)]
pub(super) struct Plan {
    /// See [`HistoryLimit::cutoff_ms`].
    cutoff_ms: Option<i64>,
    /// Per sender, the units of its messages young enough to keep.
    totals: BTreeMap<Sender, u64>,
    /// Per sender, how many units of its newest messages are kept.
    quota: BTreeMap<Sender, u64>,
    /// Peers whose latest `Peer`, `Received` and `Shown` records are kept.
    pub(super) peers: BTreeSet<PeerId>,
    /// About how many bytes the compacted journal takes.
    pub(super) kept_bytes: u64,
    /// The session and start time of the latest run, if any was recorded.
    pub(super) opened: Option<(u64, i64)>,
    /// How many messages the journal holds.
    pub(super) messages: u64,
    /// How many of them are older than the age limit and not kept all the same (undelivered
    /// or never shown).
    pub(super) old_messages: u64,
}

impl Plan {
    /// Whether the history limit drops any message: one older than its age, or past its
    /// count. (Messages never delivered or never shown are kept all the same.)
    pub(super) fn drops_messages(&self) -> bool {
        self.old_messages > 0
            || self.quota.values().sum::<u64>() < self.totals.values().sum::<u64>()
    }

    /// Decides, for messages in file order, which the history limit keeps.
    pub(super) fn keeper(&self) -> Keeper<'_> {
        Keeper {
            plan: self,
            before: BTreeMap::new(),
        }
    }
}

/// Goes through the messages in file order and says which to keep: a sender's message is
/// kept when it and every later one of that sender fit the sender's quota.
#[derive(Debug)]
pub(super) struct Keeper<'p> {
    /// The plan.
    plan: &'p Plan,
    /// Per sender, the units of its messages seen so far.
    before: BTreeMap<Sender, u64>,
}

impl Keeper<'_> {
    /// Whether the next message (of `sender`, sent at `at_ms`, with `len` bytes of text) is
    /// kept.
    pub(super) fn keep(&mut self, sender: Sender, at_ms: i64, len: usize) -> bool {
        if self.plan.cutoff_ms.is_some_and(|c| at_ms < c) {
            return false;
        }
        let before = self.before.entry(sender).or_insert(0);
        let from_here = self.plan.totals.get(&sender).copied().unwrap_or(0) - *before;
        *before += units(len);
        from_here <= self.plan.quota.get(&sender).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fair_share_gives_the_quiet_everything_and_the_loud_the_rest() {
        let totals = BTreeMap::from([(None, 10), (Some(PeerId(1)), 1_000), (Some(PeerId(2)), 40)]);
        let share = fair_share(&totals, 100, |_| 0);
        // q = 50: 10 + 50 + 40 = 100.
        assert_eq!(share[&None], 10);
        assert_eq!(share[&Some(PeerId(2))], 40);
        assert_eq!(share[&Some(PeerId(1))], 50);
        // Under the limit: everything.
        assert_eq!(fair_share(&totals, 5_000, |_| 0), totals);
        // Nothing allowed: nothing kept.
        assert!(fair_share(&totals, 0, |_| 0).values().all(|k| *k == 0));
        // Three equally loud senders split it evenly, the remainder to the one who wrote last.
        let loud: BTreeMap<Sender, u64> = (1..=3).map(|p| (Some(PeerId(p)), 1_000)).collect();
        let last = |s: &Sender| s.map_or(0, |p| p.0);
        let share = fair_share(&loud, 100, last);
        assert_eq!(share.values().copied().collect::<Vec<_>>(), [33, 33, 34]);
    }

    /// More senders than the limit allows messages: the limit is still used up, by the
    /// newest writers' newest messages (it had kept nothing at all).
    #[test]
    fn more_senders_than_the_limit_keep_the_newest_writers() {
        let totals: BTreeMap<Sender, u64> = (1..=12).map(|p| (Some(PeerId(p)), 2)).collect();
        let last = |s: &Sender| s.map_or(0, |p| p.0);
        let share = fair_share(&totals, 10, last);
        assert_eq!(share.values().sum::<u64>(), 10);
        assert_eq!(share[&Some(PeerId(1))], 0);
        assert_eq!(share[&Some(PeerId(2))], 0);
        assert!((3..=12).all(|p| share[&Some(PeerId(p))] == 1), "{share:?}");
        // Two writers, a limit of three: all three kept.
        let two: BTreeMap<Sender, u64> = (1..=2).map(|p| (Some(PeerId(p)), 5)).collect();
        assert_eq!(fair_share(&two, 3, last).values().sum::<u64>(), 3);
    }

    #[test]
    fn a_message_weighs_one_plus_one_per_whole_kib() {
        assert_eq!(units(0), 1);
        assert_eq!(units(1023), 1);
        assert_eq!(units(1024), 2);
        assert_eq!(units(64 * 1024), 65);
    }
}
