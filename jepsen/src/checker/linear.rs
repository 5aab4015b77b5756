//! The linearizability check of a whole history: options, preparation, partitioning,
//! and the merged report. Scheduling the per-partition searches is `checker::schedule`.
//!
//! Preparation applies Jepsen's crash rules: an operation with an unknown outcome that
//! cannot change the state (a crashed read) tells nothing and is dropped; any other
//! operation with an unknown outcome may take effect at any time after its call, so its
//! return becomes +∞. The overall verdict is invalid if any partition is, else unknown
//! if any is, else valid.

use std::time::Duration;

use crate::checker::model::{Model, ModelOperation};
use crate::checker::schedule::run_partitions;
use crate::checker::Verdict;
use crate::history::Operation;

/// Operations of the longest partial linearization shown in a failure report.
pub const FAILURE_TAIL_OPERATIONS_MAX: usize = 8;

/// Default for [`CheckOptions::cache_entries_max`]: about 1-2 GB at the worst state
/// sizes seen in the fixtures.
pub const CACHE_ENTRIES_MAX_DEFAULT: u64 = 10_000_000;

/// How a check runs. Build with [`CheckOptions::new`] and adjust fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckOptions {
    /// Wall-clock budget for the whole check; partitions unfinished by then are unknown.
    pub time_limit: Duration,
    /// Optional budget for each partition, so one hard key cannot starve the others.
    pub partition_time_limit: Option<Duration>,
    /// Worker threads; 0 means one per available core.
    pub threads: usize,
    /// Stop the other partitions as soon as one is invalid (they report unknown).
    pub stop_at_first_invalid: bool,
    /// Memoised configurations all searches may hold at once (memory bound: roughly
    /// 100 to 200 bytes each with small states). A search that would exceed it ends
    /// with an unknown verdict and frees its share.
    pub cache_entries_max: u64,
}

impl CheckOptions {
    pub fn new(time_limit: Duration) -> CheckOptions {
        CheckOptions {
            time_limit,
            partition_time_limit: None,
            threads: 0,
            stop_at_first_invalid: true,
            cache_entries_max: CACHE_ENTRIES_MAX_DEFAULT,
        }
    }
}

/// Why a partition is invalid, at the deepest point the search reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The partition's key.
    pub key: String,
    /// The operation that could not be linearized after the longest partial order.
    pub blocked_operation: String,
    /// Length of the longest partial linearization found.
    pub linearized_count: usize,
    pub operation_count: usize,
    /// Its last operations, in order (at most [`FAILURE_TAIL_OPERATIONS_MAX`]).
    pub linearized_tail: Vec<String>,
    /// The model state after it.
    pub state: String,
}

/// Why a partition's verdict is unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnknownReason {
    /// The time limit ran out during its search.
    TimedOut,
    /// Stopped because another partition was invalid.
    Cancelled,
    /// The search's memoisation cache reached its share of the memory bound.
    CacheLimit,
    /// Not finished because a checker thread failed (a model bug).
    NotChecked,
}

impl std::fmt::Display for UnknownReason {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            UnknownReason::TimedOut => "time limit reached",
            UnknownReason::Cancelled => "stopped: another partition is invalid",
            UnknownReason::CacheLimit => "memoisation cache limit reached",
            UnknownReason::NotChecked => "not finished: a checker thread failed",
        })
    }
}

/// The result for one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionReport {
    pub key: String,
    pub operation_count: usize,
    pub verdict: Verdict,
    /// Set exactly when the verdict is unknown.
    pub unknown_reason: Option<UnknownReason>,
    pub failure: Option<Failure>,
    pub steps: u64,
    pub elapsed: Duration,
}

/// The result for a whole history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinearizabilityReport {
    pub verdict: Verdict,
    /// Operations given to the check.
    pub operation_count: usize,
    /// Crashed read-only operations dropped before the search.
    pub dropped_count: usize,
    /// In partition-key order.
    pub partitions: Vec<PartitionReport>,
}

impl LinearizabilityReport {
    /// Failures of the invalid partitions.
    pub fn failures(&self) -> impl Iterator<Item = &Failure> {
        self.partitions
            .iter()
            .filter_map(|partition| partition.failure.as_ref())
    }
}

/// Checks that `operations` are linearizable with respect to `model`.
pub fn check_operations<M: Model>(
    model: &M,
    operations: Vec<Operation<M::Input, M::Output>>,
    options: &CheckOptions,
) -> LinearizabilityReport {
    let operation_count = operations.len();
    let (kept, dropped_count) = prepare(model, operations);
    let partitions = model.partition(kept);
    let reports = run_partitions(model, &partitions, options);
    LinearizabilityReport {
        verdict: Verdict::merge_all(reports.iter().map(|report| report.verdict)),
        operation_count,
        dropped_count,
        partitions: reports,
    }
}

/// Applies the crash rules; returns the kept operations and how many were dropped.
fn prepare<M: Model>(
    model: &M,
    operations: Vec<Operation<M::Input, M::Output>>,
) -> (Vec<ModelOperation<M>>, usize) {
    let mut kept = Vec::with_capacity(operations.len());
    let mut dropped_count = 0;
    for mut operation in operations {
        if operation.output.is_none() {
            if model.is_read_only(&operation.input) {
                dropped_count += 1;
                continue;
            }
            operation.return_time = None;
        }
        // A return before the call is bad input; treat the operation as instantaneous.
        if let Some(return_time) = operation.return_time {
            operation.return_time = Some(return_time.max(operation.call_time));
        }
        kept.push(operation);
    }
    (kept, dropped_count)
}

pub(crate) fn describe_failure<I: std::fmt::Debug, O: std::fmt::Debug, S: std::fmt::Debug>(
    key: &str,
    operations: &[Operation<I, O>],
    longest_prefix: &[usize],
    blocked_operation: usize,
    state: &S,
) -> Failure {
    let tail_start = longest_prefix
        .len()
        .saturating_sub(FAILURE_TAIL_OPERATIONS_MAX);
    let describe = |index: usize| {
        operations.get(index).map_or_else(
            || format!("operation #{index}"),
            |operation| operation.to_string(),
        )
    };
    Failure {
        key: key.to_string(),
        blocked_operation: describe(blocked_operation),
        linearized_count: longest_prefix.len(),
        operation_count: operations.len(),
        linearized_tail: longest_prefix[tail_start..]
            .iter()
            .map(|&index| describe(index))
            .collect(),
        state: format!("{state:?}"),
    }
}

#[cfg(test)]
mod tests;
