//! A single-key list-append checker ("Elle-lite"): clients append unique elements to a
//! key's list and read the whole list. Reads expose the order of appends, so no search
//! is needed. Call [`check_list_append`] once per key. The longest read stands for the
//! final order; the checks are:
//!
//! - every read is a prefix of the longest read (*incompatible order* otherwise);
//! - no element twice in a read, none never attempted, none whose append failed;
//! - every append acknowledged before a read began is in that read (*missing append*);
//! - a read is at least as long as every read that ended before it began (*stale read*);
//! - if append `x` was acknowledged before append `y` began, `x` comes first (*order*).

use std::collections::{BTreeMap, BTreeSet};

use crate::checker::precedence::EndedBefore;
use crate::checker::{Verdict, WriteOutcome, REPORTED_ANOMALIES_MAX};
use crate::history::Time;

/// One attempted append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListAppend<E> {
    pub element: E,
    pub outcome: WriteOutcome,
    pub call_time: Time,
    /// When it was acknowledged; `None` unless acknowledged.
    pub acknowledged_time: Option<Time>,
}

/// One successful read of the key's list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListRead<E> {
    pub elements: Vec<E>,
    pub call_time: Time,
    pub return_time: Time,
}

/// An anomaly; reads are named by their index in the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListAppendAnomaly<E> {
    IncompatibleOrder {
        read_index: usize,
    },
    DuplicateElement {
        read_index: usize,
        element: E,
    },
    UnexpectedElement {
        read_index: usize,
        element: E,
    },
    FailedButPresent {
        read_index: usize,
        element: E,
    },
    MissingAppend {
        read_index: usize,
        element: E,
    },
    StaleRead {
        read_index: usize,
        earlier_read_index: usize,
    },
    OrderViolation {
        earlier: E,
        later: E,
    },
}

/// What the list-append checker found for one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListAppendReport<E> {
    pub verdict: Verdict,
    pub anomaly_count: usize,
    /// The first [`REPORTED_ANOMALIES_MAX`] anomalies.
    pub anomalies: Vec<ListAppendAnomaly<E>>,
}

/// Checks one key's appends and reads.
pub fn check_list_append<E: Ord + Clone>(
    appends: &[ListAppend<E>],
    reads: &[ListRead<E>],
) -> ListAppendReport<E> {
    let longest: &[E] = reads
        .iter()
        .map(|read| read.elements.as_slice())
        .max_by_key(|elements| elements.len())
        .unwrap_or(&[]);
    let position: BTreeMap<&E, usize> = longest
        .iter()
        .enumerate()
        .map(|(index, element)| (element, index))
        .collect();
    let mut outcomes: BTreeMap<&E, WriteOutcome> = BTreeMap::new();
    for append in appends {
        let outcome = outcomes
            .get(&append.element)
            .map_or(append.outcome, |seen| seen.combine(append.outcome));
        outcomes.insert(&append.element, outcome);
    }
    let mut anomalies = Vec::new();
    for (read_index, read) in reads.iter().enumerate() {
        check_read_contents(read_index, read, longest, &outcomes, &mut anomalies);
    }
    check_missing_appends(appends, reads, &position, &mut anomalies);
    check_stale_reads(reads, &mut anomalies);
    check_append_order(appends, &position, &mut anomalies);
    ListAppendReport {
        verdict: if anomalies.is_empty() {
            Verdict::Valid
        } else {
            Verdict::Invalid
        },
        anomaly_count: anomalies.len(),
        anomalies: anomalies.into_iter().take(REPORTED_ANOMALIES_MAX).collect(),
    }
}

fn check_read_contents<E: Ord + Clone>(
    read_index: usize,
    read: &ListRead<E>,
    longest: &[E],
    outcomes: &BTreeMap<&E, WriteOutcome>,
    anomalies: &mut Vec<ListAppendAnomaly<E>>,
) {
    if !longest.starts_with(&read.elements) {
        anomalies.push(ListAppendAnomaly::IncompatibleOrder { read_index });
    }
    let mut seen = BTreeSet::new();
    for element in &read.elements {
        if !seen.insert(element) {
            anomalies.push(ListAppendAnomaly::DuplicateElement {
                read_index,
                element: element.clone(),
            });
        }
        match outcomes.get(element) {
            None => anomalies.push(ListAppendAnomaly::UnexpectedElement {
                read_index,
                element: element.clone(),
            }),
            Some(WriteOutcome::Failed) => {
                anomalies.push(ListAppendAnomaly::FailedButPresent {
                    read_index,
                    element: element.clone(),
                });
            }
            Some(_) => {}
        }
    }
}

/// Appends acknowledged before a read began must lie within the read's length of the
/// final order (the prefix check covers reads that disagree with that order).
fn check_missing_appends<E: Ord + Clone>(
    appends: &[ListAppend<E>],
    reads: &[ListRead<E>],
    position: &BTreeMap<&E, usize>,
    anomalies: &mut Vec<ListAppendAnomaly<E>>,
) {
    let acknowledged: Vec<(Time, usize, usize)> = appends
        .iter()
        .enumerate()
        .filter_map(|(index, append)| {
            let at = append.acknowledged_time?;
            Some((
                at,
                position.get(&append.element).copied().unwrap_or(usize::MAX),
                index,
            ))
        })
        .collect();
    let mut sweep = EndedBefore::new(acknowledged);
    let mut by_call: Vec<usize> = (0..reads.len()).collect();
    by_call.sort_unstable_by_key(|&index| reads[index].call_time);
    for read_index in by_call {
        let read = &reads[read_index];
        if let Some((position, append_index)) = sweep.best_before(read.call_time) {
            if position >= read.elements.len() {
                let element = appends[append_index].element.clone();
                anomalies.push(ListAppendAnomaly::MissingAppend {
                    read_index,
                    element,
                });
            }
        }
    }
}

fn check_stale_reads<E>(reads: &[ListRead<E>], anomalies: &mut Vec<ListAppendAnomaly<E>>) {
    let ended: Vec<(Time, usize, usize)> = reads
        .iter()
        .enumerate()
        .map(|(index, read)| (read.return_time, read.elements.len(), index))
        .collect();
    let mut sweep = EndedBefore::new(ended);
    let mut by_call: Vec<usize> = (0..reads.len()).collect();
    by_call.sort_unstable_by_key(|&index| reads[index].call_time);
    for read_index in by_call {
        let read = &reads[read_index];
        if let Some((length, earlier_read_index)) = sweep.best_before(read.call_time) {
            if length > read.elements.len() {
                anomalies.push(ListAppendAnomaly::StaleRead {
                    read_index,
                    earlier_read_index,
                });
            }
        }
    }
}

fn check_append_order<E: Ord + Clone>(
    appends: &[ListAppend<E>],
    position: &BTreeMap<&E, usize>,
    anomalies: &mut Vec<ListAppendAnomaly<E>>,
) {
    let placed: Vec<(usize, usize)> = appends
        .iter()
        .enumerate()
        .filter_map(|(index, append)| position.get(&append.element).map(|&at| (index, at)))
        .collect();
    let acknowledged: Vec<(Time, usize, usize)> = placed
        .iter()
        .filter_map(|&(index, at)| {
            appends[index]
                .acknowledged_time
                .map(|time| (time, at, index))
        })
        .collect();
    let mut sweep = EndedBefore::new(acknowledged);
    let mut by_call = placed;
    by_call.sort_unstable_by_key(|&(index, _)| appends[index].call_time);
    for (later_index, later_position) in by_call {
        if let Some((earlier_position, earlier_index)) =
            sweep.best_before(appends[later_index].call_time)
        {
            if earlier_position > later_position {
                let earlier = appends[earlier_index].element.clone();
                let later = appends[later_index].element.clone();
                anomalies.push(ListAppendAnomaly::OrderViolation { earlier, later });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(element: u32, call_time: Time, acknowledged_time: Option<Time>) -> ListAppend<u32> {
        let outcome = if acknowledged_time.is_some() {
            WriteOutcome::Acknowledged
        } else {
            WriteOutcome::Unknown
        };
        ListAppend {
            element,
            outcome,
            call_time,
            acknowledged_time,
        }
    }

    fn read(elements: &[u32], call_time: Time, return_time: Time) -> ListRead<u32> {
        ListRead {
            elements: elements.to_vec(),
            call_time,
            return_time,
        }
    }

    fn anomalies(
        appends: &[ListAppend<u32>],
        reads: &[ListRead<u32>],
    ) -> Vec<ListAppendAnomaly<u32>> {
        check_list_append(appends, reads).anomalies
    }

    #[test]
    fn growing_prefixes_are_valid() {
        let appends = [
            append(1, 0, Some(10)),
            append(2, 20, Some(30)),
            append(3, 25, None),
        ];
        let reads = [
            read(&[], 0, 5),
            read(&[1], 15, 18),
            read(&[1, 2, 3], 40, 50),
            read(&[1, 2], 35, 45),
        ];
        assert_eq!(check_list_append(&appends, &reads).verdict, Verdict::Valid);
    }

    #[test]
    fn a_read_missing_an_acknowledged_append_is_invalid() {
        let appends = [append(1, 0, Some(10)), append(2, 20, Some(30))];
        let reads = [read(&[1], 40, 50), read(&[1, 2], 60, 70)];
        let expected = ListAppendAnomaly::MissingAppend {
            read_index: 0,
            element: 2,
        };
        assert_eq!(anomalies(&appends, &reads), vec![expected]);
    }

    #[test]
    fn diverging_reads_are_invalid() {
        let appends = [append(1, 0, None), append(2, 0, None)];
        // Concurrent reads (so neither is stale) that disagree on the order.
        let reads = [read(&[2, 1], 40, 50), read(&[1], 45, 70)];
        assert_eq!(
            anomalies(&appends, &reads),
            vec![ListAppendAnomaly::IncompatibleOrder { read_index: 1 }]
        );
    }

    #[test]
    fn a_shorter_read_after_a_longer_one_is_stale() {
        let appends = [append(1, 0, None), append(2, 0, None)];
        let reads = [read(&[1, 2], 10, 20), read(&[1], 30, 40)];
        let expected = ListAppendAnomaly::StaleRead {
            read_index: 1,
            earlier_read_index: 0,
        };
        assert_eq!(anomalies(&appends, &reads), vec![expected]);
    }

    #[test]
    fn appends_out_of_real_time_order_are_invalid() {
        let appends = [append(1, 0, Some(10)), append(2, 20, None)];
        let reads = [read(&[2, 1], 40, 50)];
        let expected = ListAppendAnomaly::OrderViolation {
            earlier: 1,
            later: 2,
        };
        assert_eq!(anomalies(&appends, &reads), vec![expected]);
    }

    #[test]
    fn duplicates_unknown_and_failed_elements_are_invalid() {
        let failed = ListAppend {
            element: 3,
            outcome: WriteOutcome::Failed,
            call_time: 0,
            acknowledged_time: None,
        };
        let appends = [append(1, 0, None), failed];
        let reads = [read(&[1, 1, 3, 9], 10, 20)];
        let found = anomalies(&appends, &reads);
        assert!(found.contains(&ListAppendAnomaly::DuplicateElement {
            read_index: 0,
            element: 1
        }));
        assert!(found.contains(&ListAppendAnomaly::FailedButPresent {
            read_index: 0,
            element: 3
        }));
        assert!(found.contains(&ListAppendAnomaly::UnexpectedElement {
            read_index: 0,
            element: 9
        }));
    }
}
