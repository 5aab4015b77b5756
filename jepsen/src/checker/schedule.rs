//! Scheduling the per-partition searches of one check.
//!
//! Partitions differ wildly in difficulty: most finish in milliseconds, a few can run
//! for ever (many concurrent writes, each order a different state). A plain worker pool
//! would let the first hard partitions hold every worker while an easy, invalid one
//! waits, so the check runs in rounds: each round gives every unfinished partition a
//! time slice on a pool of scoped threads, resuming its [`PartitionSearch`] where the
//! last slice left it, and the slice doubles from round to round. Cheap partitions
//! finish in the first rounds, an anomaly anywhere is found after roughly the time its
//! own partition needs times the number of hard partitions, and no work is repeated.
//!
//! Rounds stop when every partition has a verdict, at the deadline, or when an invalid
//! partition cancels the rest. Searches live in per-partition slots between rounds;
//! their memoisation caches share one [`CachePool`] bound.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::checker::linear::{describe_failure, CheckOptions, PartitionReport, UnknownReason};
use crate::checker::model::{Model, Partition};
use crate::checker::search::{
    Abandoned, Budget, CachePool, PartitionSearch, SearchOutcome, SearchStats,
};
use crate::checker::Verdict;

/// The first round's time slice per partition; each later round doubles it.
pub const TIME_SLICE_INITIAL: Duration = Duration::from_millis(20);

/// A partition's search between rounds, and its report once it has one.
struct Slot<'a, M: Model> {
    search: Option<PartitionSearch<'a, M>>,
    report: Option<PartitionReport>,
    elapsed: Duration,
}

/// What every slice of one round shares.
struct Round<'a, 'r, M: Model> {
    model: &'a M,
    partitions: &'a [Partition<M::Input, M::Output>],
    slots: &'r [Mutex<Slot<'a, M>>],
    options: &'r CheckOptions,
    deadline: Instant,
    slice: Duration,
    cancel: &'r AtomicBool,
    pool: &'a CachePool,
}

/// Checks every partition and returns their reports in partition order.
pub(crate) fn run_partitions<M: Model>(
    model: &M,
    partitions: &[Partition<M::Input, M::Output>],
    options: &CheckOptions,
) -> Vec<PartitionReport> {
    let deadline = deadline_after(Instant::now(), options.time_limit);
    let cancel = AtomicBool::new(false);
    let pool = CachePool::new(options.cache_entries_max);
    let slots: Vec<Mutex<Slot<'_, M>>> = partitions
        .iter()
        .map(|_| {
            Mutex::new(Slot {
                search: None,
                report: None,
                elapsed: Duration::ZERO,
            })
        })
        .collect();
    let mut slice = TIME_SLICE_INITIAL;
    let mut worker_failed = false;
    // Every round either gives each pending partition a full slice or reaches the
    // deadline, and slices double, so the rounds end by the deadline.
    loop {
        let pending: Vec<usize> = (0..slots.len())
            .filter(|&index| lock(&slots[index]).report.is_none())
            .collect();
        let stopped = worker_failed || cancel.load(Ordering::Relaxed);
        if pending.is_empty() || stopped || Instant::now() >= deadline {
            break;
        }
        let round = Round {
            model,
            partitions,
            slots: &slots,
            options,
            deadline,
            slice,
            cancel: &cancel,
            pool: &pool,
        };
        worker_failed = !run_round(&round, &pending);
        slice = slice.saturating_mul(2);
    }
    let reason = if worker_failed {
        UnknownReason::NotChecked
    } else if cancel.load(Ordering::Relaxed) {
        UnknownReason::Cancelled
    } else {
        UnknownReason::TimedOut
    };
    slots
        .into_iter()
        .zip(partitions)
        .map(|(slot, partition)| {
            let slot = slot
                .into_inner()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let stats = slot
                .search
                .as_ref()
                .map(PartitionSearch::stats)
                .unwrap_or_default();
            slot.report
                .unwrap_or_else(|| unknown_report(partition, reason, stats, slot.elapsed))
        })
        .collect()
}

/// Gives each pending partition one slice; false if a worker thread panicked.
fn run_round<M: Model>(round: &Round<'_, '_, M>, pending: &[usize]) -> bool {
    let next_position = AtomicUsize::new(0);
    let worker_count = worker_count(round.options.threads, pending.len());
    std::thread::scope(|scope| {
        let worker = || loop {
            // Each position is handed out once, so a worker ends after at most
            // `pending.len()` slices.
            let position = next_position.fetch_add(1, Ordering::Relaxed);
            let Some(&index) = pending.get(position) else {
                break;
            };
            run_slice(round, index);
        };
        let handles: Vec<_> = (0..worker_count).map(|_| scope.spawn(worker)).collect();
        // A worker that panicked (a model bug) leaves partitions without a report; they
        // end as unknown instead of taking the whole check down.
        // Join every handle before judging: `all` alone would stop at the first failure.
        let joined: Vec<bool> = handles
            .into_iter()
            .map(|handle| handle.join().is_ok())
            .collect();
        joined.into_iter().all(|ok| ok)
    })
}

/// Resumes one partition's search for one slice and files its report if it is done.
fn run_slice<M: Model>(round: &Round<'_, '_, M>, index: usize) {
    let mut slot = lock(&round.slots[index]);
    if slot.report.is_some() {
        return;
    }
    let partition = &round.partitions[index];
    let started = Instant::now();
    let mut slice_end = round.deadline.min(deadline_after(started, round.slice));
    let mut partition_deadline = round.deadline;
    if let Some(limit) = round.options.partition_time_limit {
        partition_deadline =
            partition_deadline.min(deadline_after(started, limit.saturating_sub(slot.elapsed)));
        slice_end = slice_end.min(partition_deadline);
    }
    let search = slot.search.get_or_insert_with(|| {
        PartitionSearch::new(round.model, &partition.operations, round.pool)
    });
    let outcome = search.resume(&Budget {
        deadline: slice_end,
        cancel: round.cancel,
    });
    let stats = search.stats();
    slot.elapsed += started.elapsed();
    let out_of_time = Instant::now() >= partition_deadline;
    let report = match outcome {
        SearchOutcome::Abandoned(Abandoned::TimedOut) if !out_of_time => return,
        SearchOutcome::Abandoned(reason) => {
            let reason = match reason {
                Abandoned::TimedOut => UnknownReason::TimedOut,
                Abandoned::Cancelled => UnknownReason::Cancelled,
                Abandoned::CacheFull => UnknownReason::CacheLimit,
            };
            unknown_report(partition, reason, stats, slot.elapsed)
        }
        SearchOutcome::Linearizable { .. } => {
            report(partition, Verdict::Valid, stats, slot.elapsed)
        }
        SearchOutcome::NotLinearizable {
            longest_prefix,
            blocked_operation,
            state,
        } => {
            if round.options.stop_at_first_invalid {
                round.cancel.store(true, Ordering::Relaxed);
            }
            let mut invalid = report(partition, Verdict::Invalid, stats, slot.elapsed);
            let failure = describe_failure(
                &partition.key,
                &partition.operations,
                &longest_prefix,
                blocked_operation,
                &state,
            );
            invalid.failure = Some(failure);
            invalid
        }
    };
    slot.report = Some(report);
    slot.search = None; // Frees the cache and its share of the pool.
}

fn report<I, O>(
    partition: &Partition<I, O>,
    verdict: Verdict,
    stats: SearchStats,
    elapsed: Duration,
) -> PartitionReport {
    PartitionReport {
        key: partition.key.clone(),
        operation_count: partition.operations.len(),
        verdict,
        unknown_reason: None,
        failure: None,
        steps: stats.steps,
        elapsed,
    }
}

fn unknown_report<I, O>(
    partition: &Partition<I, O>,
    reason: UnknownReason,
    stats: SearchStats,
    elapsed: Duration,
) -> PartitionReport {
    let mut unknown = report(partition, Verdict::Unknown, stats, elapsed);
    unknown.unknown_reason = Some(reason);
    unknown
}

fn lock<'m, T>(mutex: &'m Mutex<T>) -> std::sync::MutexGuard<'m, T> {
    // A poisoned slot only means a worker panicked mid-slice; no more rounds run after
    // that, and the slot's report (set last) is still meaningful.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn worker_count(threads: usize, task_count: usize) -> usize {
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |count| count.get())
    } else {
        threads
    };
    threads.min(task_count).max(1)
}

fn deadline_after(start: Instant, limit: Duration) -> Instant {
    // A limit too large to represent means "no limit"; a day stands in for it.
    start
        .checked_add(limit)
        .unwrap_or_else(|| start + Duration::from_secs(24 * 60 * 60))
}
