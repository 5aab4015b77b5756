//! Real-time precedence queries shared by the polynomial checkers.
//!
//! Many anomalies have the shape "some `a` finished before `b` started, yet ...". Rather
//! than comparing all pairs, [`EndedBefore`] sweeps: items sorted by end time are added
//! as the query time passes them, keeping the one with the largest key, so a whole
//! sweep over queries in start-time order costs O(n log n).

use crate::history::Time;

/// Answers "of the items that ended strictly before `time`, which has the largest key?"
/// for queries with non-decreasing `time`.
pub(crate) struct EndedBefore<K> {
    /// (end time, key, item id), sorted by end time.
    items: Vec<(Time, K, usize)>,
    next_index: usize,
    best: Option<(K, usize)>,
}

impl<K: Ord + Copy> EndedBefore<K> {
    pub(crate) fn new(mut items: Vec<(Time, K, usize)>) -> EndedBefore<K> {
        items.sort_unstable_by_key(|&(end, _, _)| end);
        EndedBefore {
            items,
            next_index: 0,
            best: None,
        }
    }

    /// The (key, id) with the largest key among items ending before `time`.
    pub(crate) fn best_before(&mut self, time: Time) -> Option<(K, usize)> {
        while let Some(&(end, key, id)) = self.items.get(self.next_index) {
            if end >= time {
                break;
            }
            if self.best.is_none_or(|(best_key, _)| key > best_key) {
                self.best = Some((key, id));
            }
            self.next_index += 1;
        }
        self.best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_items_ending_strictly_before_count() {
        let mut sweep = EndedBefore::new(vec![(10, 5, 0), (20, 9, 1), (30, 1, 2)]);
        assert_eq!(sweep.best_before(10), None);
        assert_eq!(sweep.best_before(11), Some((5, 0)));
        assert_eq!(sweep.best_before(31), Some((9, 1)));
    }
}
