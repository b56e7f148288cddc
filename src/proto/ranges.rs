//! A small set of `u64` held as disjoint inclusive ranges: the packet numbers a receiver has
//! seen, from which it builds ack frames.

use std::collections::BTreeMap;

/// Disjoint, non-adjacent inclusive ranges, keyed by their first value. It keeps only the
/// highest [`RangeSet::new`]`(limit)` ranges: a peer that sends far-apart numbers cannot make it
/// grow, and forgetting old ranges only costs a redundant retransmission.
#[derive(Clone, Debug)]
pub struct RangeSet {
    /// first → last of each range.
    ranges: BTreeMap<u64, u64>,
    /// How many ranges to keep at most.
    limit: usize,
}

impl RangeSet {
    /// An empty set that keeps at most `limit` ranges.
    pub fn new(limit: usize) -> Self {
        Self {
            ranges: BTreeMap::new(),
            limit: limit.max(1),
        }
    }

    /// Whether `v` is in the set.
    pub fn contains(&self, v: u64) -> bool {
        self.ranges
            .range(..=v)
            .next_back()
            .is_some_and(|(_, &last)| last >= v)
    }

    /// The highest value in the set.
    pub fn max(&self) -> Option<u64> {
        self.ranges.values().next_back().copied()
    }

    /// Adds `v`; returns false if it was already there.
    pub fn insert(&mut self, v: u64) -> bool {
        if self.contains(v) {
            return false;
        }
        let mut first = v;
        let mut last = v;
        if let Some((&f, &l)) = self.ranges.range(..v).next_back() {
            if l.checked_add(1) == Some(v) {
                first = f;
                self.ranges.remove(&f);
            }
        }
        if let Some(next) = v.checked_add(1) {
            if let Some(l) = self.ranges.remove(&next) {
                last = l;
            }
        }
        self.ranges.insert(first, last);
        while self.ranges.len() > self.limit {
            self.ranges.pop_first();
        }
        true
    }

    /// The ranges as (first, last), highest first.
    pub fn iter_desc(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.ranges.iter().rev().map(|(&f, &l)| (f, l))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_neighbours_and_detects_duplicates() {
        let mut s = RangeSet::new(8);
        for v in [1, 3, 2, 10, 9, 11, u64::MAX] {
            assert!(s.insert(v));
        }
        assert!(!s.insert(2));
        let got: Vec<_> = s.iter_desc().collect();
        assert_eq!(got, vec![(u64::MAX, u64::MAX), (9, 11), (1, 3)]);
        assert!(s.contains(10) && !s.contains(5) && !s.contains(0));
        assert_eq!(s.max(), Some(u64::MAX));
    }

    #[test]
    fn keeps_only_the_highest_ranges() {
        let mut s = RangeSet::new(3);
        for v in (0..100).step_by(2) {
            s.insert(v);
        }
        let got: Vec<_> = s.iter_desc().collect();
        assert_eq!(got, vec![(98, 98), (96, 96), (94, 94)]);
    }
}
