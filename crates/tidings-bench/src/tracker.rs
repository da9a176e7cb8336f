//! Loss and duplication accounting for one subscriber, by sequence number.
//!
//! A hub promises per-connection order, so the common case is `seq == next` and costs one
//! comparison. Anything else is remembered as a gap (a range of missing numbers); a number
//! that later fills a gap was late, not lost, and a number seen twice is a duplicate. Memory is
//! proportional to the number of gaps, not to the number of events.

use std::ops::Range;

/// What one subscriber has seen so far.
#[derive(Debug, Clone, Default)]
pub struct SeqTracker {
    /// The lowest number never seen and above every number seen.
    next: u64,
    /// Missing numbers below `next`, sorted, disjoint, non-empty.
    gaps: Vec<Range<u64>>,
    /// Events seen (duplicates included).
    received: u64,
    duplicated: u64,
}

impl SeqTracker {
    /// Records one delivered event.
    pub fn record(&mut self, seq: u64) {
        self.received += 1;
        if seq == self.next {
            self.next += 1;
        } else if seq > self.next {
            self.gaps.push(self.next..seq);
            self.next = seq + 1;
        } else {
            self.record_below(seq);
        }
    }

    fn record_below(&mut self, seq: u64) {
        // Gaps are sorted by start and disjoint: the only candidate is the last gap starting
        // at or before `seq`.
        let index = self.gaps.partition_point(|gap| gap.start <= seq);
        let Some(gap_index) = index.checked_sub(1) else {
            self.duplicated += 1;
            return;
        };
        let gap = self.gaps[gap_index].clone();
        if !gap.contains(&seq) {
            self.duplicated += 1;
            return;
        }
        let (left, right) = (gap.start..seq, seq + 1..gap.end);
        match (left.is_empty(), right.is_empty()) {
            (true, true) => {
                self.gaps.remove(gap_index);
            }
            (false, true) => self.gaps[gap_index] = left,
            (true, false) => self.gaps[gap_index] = right,
            (false, false) => {
                self.gaps[gap_index] = left;
                self.gaps.insert(gap_index + 1, right);
            }
        }
    }

    /// Events seen, duplicates included.
    #[cfg(test)]
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Events seen more than once (each extra copy counts one).
    pub fn duplicated(&self) -> u64 {
        self.duplicated
    }

    /// Whether every number in `0..events` has been seen, except those in `skip` (sorted):
    /// the publishes that failed, which no subscriber can receive.
    pub fn has_all(&self, events: u64, skip: &[u64]) -> bool {
        self.lost(events, skip) == 0
    }

    /// How many numbers in `0..events` were never seen, not counting those in `skip`
    /// (sorted, each below `events`).
    pub fn lost(&self, events: u64, skip: &[u64]) -> u64 {
        let mut missing: Vec<Range<u64>> = self
            .gaps
            .iter()
            .filter(|gap| gap.start < events)
            .map(|gap| gap.start..gap.end.min(events))
            .collect();
        if self.next < events {
            missing.push(self.next..events);
        }
        let total: u64 = missing.iter().map(|gap| gap.end - gap.start).sum();
        if total == 0 || skip.is_empty() {
            return total;
        }
        let skipped_and_missing = skip
            .iter()
            .filter(|seq| {
                let index = missing.partition_point(|gap| gap.start <= **seq);
                index > 0 && missing[index - 1].contains(seq)
            })
            .count() as u64;
        total - skipped_and_missing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(seqs: &[u64]) -> SeqTracker {
        let mut t = SeqTracker::default();
        for &s in seqs {
            t.record(s);
        }
        t
    }

    #[test]
    fn in_order_delivery_has_no_loss_and_no_duplicates() {
        let t = tracker(&[0, 1, 2, 3]);
        assert_eq!((t.lost(4, &[]), t.duplicated(), t.received()), (0, 0, 4));
        assert!(t.has_all(4, &[]));
    }

    #[test]
    fn missing_numbers_in_the_middle_and_at_the_end_are_lost() {
        let t = tracker(&[0, 3, 4, 7]);
        assert_eq!(t.lost(10, &[]), 2 + 2 + 2);
    }

    #[test]
    fn late_arrival_fills_its_gap_instead_of_counting_twice() {
        let t = tracker(&[0, 4, 2, 1, 3]);
        assert_eq!((t.lost(5, &[]), t.duplicated()), (0, 0));
    }

    #[test]
    fn a_number_inside_a_gap_splits_it() {
        let t = tracker(&[0, 10, 5]);
        assert_eq!(t.lost(11, &[]), 8);
        assert_eq!(t.gaps, vec![1..5, 6..10]);
    }

    #[test]
    fn repeats_count_once_each() {
        let t = tracker(&[0, 1, 1, 2, 0, 2, 2]);
        assert_eq!((t.lost(3, &[]), t.duplicated(), t.received()), (0, 4, 7));
    }

    #[test]
    fn a_repeat_of_a_number_before_a_gap_is_a_duplicate() {
        let t = tracker(&[0, 1, 5, 1]);
        assert_eq!((t.lost(6, &[]), t.duplicated()), (3, 1));
    }

    #[test]
    fn failed_publishes_are_not_counted_as_lost() {
        let t = tracker(&[0, 2, 4]);
        assert_eq!(t.lost(6, &[1, 5]), 1);
        assert!(tracker(&[0, 2]).has_all(3, &[1]));
    }

    #[test]
    fn nothing_received_loses_everything() {
        assert_eq!(SeqTracker::default().lost(7, &[]), 7);
    }
}
