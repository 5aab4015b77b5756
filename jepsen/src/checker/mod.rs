//! Checkers and their common verdict.
//!
//! - [`model`] and [`models`]: sequential specifications for the linearizability check.
//! - [`linear`]: the linearizability check over partitions (public entry point), built on
//!   [`schedule`] (time slices for partitions in turn, on a thread pool) and [`search`]
//!   (one partition's resumable Wing–Gong/Lowe search over an `event_list`).
//! - [`sets`], [`queues`], [`queue_seqs`], [`list_append`]: polynomial checkers over
//!   simple inputs, sharing [`WriteOutcome`] and a real-time precedence sweep
//!   (`precedence`).
//!
//! Every checker ends in a [`Verdict`]; several verdicts merge with
//! invalid > unknown > valid, as Jepsen merges `:valid?`.

mod event_list;
pub mod fs_names;
pub mod linear;
pub mod list_append;
pub mod model;
pub mod models;
mod precedence;
pub mod queue_seqs;
pub mod queues;
pub mod schedule;
pub mod search;
pub mod sets;

use std::fmt;

/// How a write-like operation (an add, a send, an append) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WriteOutcome {
    /// Acknowledged: it definitely took effect.
    Acknowledged,
    /// It definitely did not take effect.
    Failed,
    /// Indeterminate (`info`, or no answer).
    Unknown,
}

impl WriteOutcome {
    /// The outcome of several attempts of one value: acknowledged if any was,
    /// failed only if all failed.
    pub(crate) fn combine(self, other: WriteOutcome) -> WriteOutcome {
        use WriteOutcome::{Acknowledged, Failed, Unknown};
        match (self, other) {
            (Acknowledged, _) | (_, Acknowledged) => Acknowledged,
            (Unknown, _) | (_, Unknown) => Unknown,
            (Failed, Failed) => Failed,
        }
    }
}

/// Anomalies listed in a report, at most; counts are always complete.
pub const REPORTED_ANOMALIES_MAX: usize = 100;

/// The outcome of a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// The history is consistent with the specification.
    Valid,
    /// The history shows an anomaly.
    Invalid,
    /// The check could not decide (time limit, missing data).
    Unknown,
}

impl Verdict {
    /// The process exit code for this verdict, as Jepsen uses them: 0, 1, 2.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Valid => 0,
            Verdict::Invalid => 1,
            Verdict::Unknown => 2,
        }
    }

    /// Combines two verdicts: invalid wins over unknown, which wins over valid.
    pub fn merge(self, other: Verdict) -> Verdict {
        match (self, other) {
            (Verdict::Invalid, _) | (_, Verdict::Invalid) => Verdict::Invalid,
            (Verdict::Unknown, _) | (_, Verdict::Unknown) => Verdict::Unknown,
            (Verdict::Valid, Verdict::Valid) => Verdict::Valid,
        }
    }

    /// Merges any number of verdicts; no verdicts at all is valid.
    pub fn merge_all(verdicts: impl IntoIterator<Item = Verdict>) -> Verdict {
        verdicts.into_iter().fold(Verdict::Valid, Verdict::merge)
    }

    /// `valid`, `invalid` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Valid => "valid",
            Verdict::Invalid => "invalid",
            Verdict::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_beats_unknown_beats_valid() {
        assert_eq!(Verdict::merge_all([]), Verdict::Valid);
        assert_eq!(
            Verdict::merge_all([Verdict::Valid, Verdict::Unknown]),
            Verdict::Unknown
        );
        let all = [Verdict::Unknown, Verdict::Invalid, Verdict::Valid];
        assert_eq!(Verdict::merge_all(all), Verdict::Invalid);
    }

    #[test]
    fn exit_codes_follow_jepsen() {
        assert_eq!(Verdict::Valid.exit_code(), 0);
        assert_eq!(Verdict::Invalid.exit_code(), 1);
        assert_eq!(Verdict::Unknown.exit_code(), 2);
    }
}
