//! The set checker (Jepsen's `set`): clients add unique elements, then one final read
//! returns the whole set after the faults have healed.
//!
//! - *lost*: acknowledged adds missing from the final read (invalid);
//! - *unexpected*: elements read that no one tried to add (invalid);
//! - *failed but present*: adds that definitely failed, yet are present (invalid; Jepsen
//!   counts them as recovered, but cairn's clients know a `fail` did not happen);
//! - *recovered*: indeterminate adds that turned out to happen (fine).
//!
//! Without a final read the verdict is unknown.

use std::collections::{BTreeMap, BTreeSet};

use crate::checker::{Verdict, WriteOutcome};

/// One attempted add.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetAdd<E> {
    pub element: E,
    pub outcome: WriteOutcome,
}

/// What the set checker found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetReport<E> {
    pub verdict: Verdict,
    /// Distinct elements whose add was attempted.
    pub attempted_count: usize,
    /// Distinct elements whose add was acknowledged.
    pub acknowledged_count: usize,
    pub lost: Vec<E>,
    pub unexpected: Vec<E>,
    pub failed_but_present: Vec<E>,
    pub recovered: Vec<E>,
}

/// Checks adds against the final read (`None` if there was none).
pub fn check_set<E: Ord + Clone>(adds: &[SetAdd<E>], final_read: Option<&[E]>) -> SetReport<E> {
    let mut outcomes: BTreeMap<&E, WriteOutcome> = BTreeMap::new();
    for add in adds {
        let outcome = outcomes
            .get(&add.element)
            .map_or(add.outcome, |seen| seen.combine(add.outcome));
        outcomes.insert(&add.element, outcome);
    }
    let acknowledged_count = outcomes
        .values()
        .filter(|&&outcome| outcome == WriteOutcome::Acknowledged)
        .count();
    let mut report = SetReport {
        verdict: Verdict::Unknown,
        attempted_count: outcomes.len(),
        acknowledged_count,
        lost: Vec::new(),
        unexpected: Vec::new(),
        failed_but_present: Vec::new(),
        recovered: Vec::new(),
    };
    let Some(final_read) = final_read else {
        return report;
    };
    let present: BTreeSet<&E> = final_read.iter().collect();
    for (&element, &outcome) in &outcomes {
        let is_present = present.contains(element);
        match (outcome, is_present) {
            (WriteOutcome::Acknowledged, false) => report.lost.push(element.clone()),
            (WriteOutcome::Failed, true) => report.failed_but_present.push(element.clone()),
            (WriteOutcome::Unknown, true) => report.recovered.push(element.clone()),
            _ => {}
        }
    }
    report.unexpected = present
        .iter()
        .filter(|element| !outcomes.contains_key(*element))
        .map(|&element| element.clone())
        .collect();
    let anomalous = !report.lost.is_empty()
        || !report.unexpected.is_empty()
        || !report.failed_but_present.is_empty();
    report.verdict = if anomalous {
        Verdict::Invalid
    } else {
        Verdict::Valid
    };
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(element: u32, outcome: WriteOutcome) -> SetAdd<u32> {
        SetAdd { element, outcome }
    }

    #[test]
    fn every_acknowledged_add_present_is_valid() {
        let adds = [
            add(1, WriteOutcome::Acknowledged),
            add(2, WriteOutcome::Unknown),
            add(3, WriteOutcome::Unknown),
            add(4, WriteOutcome::Failed),
        ];
        let report = check_set(&adds, Some(&[1, 2]));
        assert_eq!(report.verdict, Verdict::Valid);
        assert_eq!(report.recovered, vec![2]);
        assert_eq!(report.attempted_count, 4);
        assert_eq!(report.acknowledged_count, 1);
    }

    #[test]
    fn a_lost_add_is_invalid() {
        let adds = [
            add(1, WriteOutcome::Acknowledged),
            add(2, WriteOutcome::Acknowledged),
        ];
        let report = check_set(&adds, Some(&[2]));
        assert_eq!(report.verdict, Verdict::Invalid);
        assert_eq!(report.lost, vec![1]);
    }

    #[test]
    fn unexpected_and_failed_elements_are_invalid() {
        let adds = [add(1, WriteOutcome::Failed)];
        let report = check_set(&adds, Some(&[1, 9]));
        assert_eq!(report.verdict, Verdict::Invalid);
        assert_eq!(report.unexpected, vec![9]);
        assert_eq!(report.failed_but_present, vec![1]);
    }

    #[test]
    fn a_retried_add_counts_if_any_attempt_was_acknowledged() {
        let adds = [
            add(1, WriteOutcome::Failed),
            add(1, WriteOutcome::Acknowledged),
        ];
        assert_eq!(check_set(&adds, Some(&[])).lost, vec![1]);
    }

    #[test]
    fn no_final_read_is_unknown() {
        let adds = [add(1, WriteOutcome::Acknowledged)];
        assert_eq!(check_set(&adds, None).verdict, Verdict::Unknown);
    }
}
