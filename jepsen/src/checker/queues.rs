//! Queue checkers.
//!
//! [`check_total_queue`] (Jepsen's `total-queue`) compares what was sent with what was
//! received, counting multiplicities; receives must include a final drain:
//! - *lost*: acknowledged sends never received (invalid once the queue was drained);
//! - *duplicated*: received more often than sent (invalid unless duplicates are allowed,
//!   as for an at-least-once queue with redelivery);
//! - *unexpected*: received but never sent (invalid);
//! - *failed but received*: every send of it definitely failed (invalid);
//! - *recovered*: indeterminate sends that were received (fine).
//!
//! [`check_fifo`] checks order with pop semantics (each message is taken once by one
//! receive) on unique messages. Per producer: if the send of `a` was acknowledged before
//! the send of `b` began, the first receive of `b` must not end before the first receive
//! of `a` begins. A receive ending before its message's send began is also reported.
//! Put every send under one producer to check order across producers as well.
//!
//! [`attribute_lost_to_unknown_receives`] is for pop (at-most-once) queues: which lost
//! messages receives of unknown outcome may have taken.

use std::collections::BTreeMap;

use crate::checker::precedence::EndedBefore;
use crate::checker::{Verdict, WriteOutcome, REPORTED_ANOMALIES_MAX};
use crate::history::Time;

/// One attempted send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueSend<E> {
    pub message: E,
    pub outcome: WriteOutcome,
}

/// How [`check_total_queue`] judges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TotalQueueOptions {
    /// The receives include a final drain; without it, nothing can be called lost.
    pub drained: bool,
    /// At-least-once delivery: duplicates are reported but not invalid.
    pub duplicates_allowed: bool,
}

/// What the total-queue checker found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TotalQueueReport<E> {
    pub verdict: Verdict,
    pub attempted_count: usize,
    pub acknowledged_count: usize,
    pub received_count: usize,
    pub lost: Vec<E>,
    /// (message, times received).
    pub duplicated: Vec<(E, usize)>,
    pub unexpected: Vec<E>,
    pub failed_but_received: Vec<E>,
    pub recovered: Vec<E>,
}

#[derive(Clone, Copy)]
struct Tally {
    sent: usize,
    acknowledged: usize,
    outcome: Option<WriteOutcome>,
    received: usize,
}

/// Checks sends against every successful receive (including the final drain).
pub fn check_total_queue<E: Ord + Clone>(
    sends: &[QueueSend<E>],
    receives: &[E],
    options: TotalQueueOptions,
) -> TotalQueueReport<E> {
    let empty = Tally {
        sent: 0,
        acknowledged: 0,
        outcome: None,
        received: 0,
    };
    let mut tallies: BTreeMap<&E, Tally> = BTreeMap::new();
    for send in sends {
        let tally = tallies.entry(&send.message).or_insert(empty);
        tally.sent += 1;
        tally.acknowledged += usize::from(send.outcome == WriteOutcome::Acknowledged);
        tally.outcome = Some(
            tally
                .outcome
                .map_or(send.outcome, |seen| seen.combine(send.outcome)),
        );
    }
    for message in receives {
        tallies.entry(message).or_insert(empty).received += 1;
    }
    let mut report = TotalQueueReport {
        verdict: Verdict::Valid,
        attempted_count: sends.len(),
        acknowledged_count: tallies.values().map(|tally| tally.acknowledged).sum(),
        received_count: receives.len(),
        lost: Vec::new(),
        duplicated: Vec::new(),
        unexpected: Vec::new(),
        failed_but_received: Vec::new(),
        recovered: Vec::new(),
    };
    for (&message, tally) in &tallies {
        classify_message(&mut report, message, tally);
    }
    report.verdict = total_queue_verdict(&report, options);
    report
}

fn classify_message<E: Clone>(report: &mut TotalQueueReport<E>, message: &E, tally: &Tally) {
    let Some(outcome) = tally.outcome else {
        report.unexpected.push(message.clone());
        return;
    };
    if tally.received < tally.acknowledged {
        report.lost.push(message.clone());
    }
    if tally.received > tally.sent {
        report.duplicated.push((message.clone(), tally.received));
    }
    if tally.received > 0 {
        match outcome {
            WriteOutcome::Failed => report.failed_but_received.push(message.clone()),
            WriteOutcome::Unknown => report.recovered.push(message.clone()),
            WriteOutcome::Acknowledged => {}
        }
    }
}

fn total_queue_verdict<E>(report: &TotalQueueReport<E>, options: TotalQueueOptions) -> Verdict {
    let duplicates_bad = !options.duplicates_allowed && !report.duplicated.is_empty();
    if !report.unexpected.is_empty() || !report.failed_but_received.is_empty() || duplicates_bad {
        return Verdict::Invalid;
    }
    match (report.lost.is_empty(), options.drained) {
        (true, _) => Verdict::Valid,
        (false, true) => Verdict::Invalid,
        (false, false) => Verdict::Unknown,
    }
}

/// A lost message of an at-most-once (pop) queue, for
/// [`attribute_lost_to_unknown_receives`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LostMessage<E> {
    pub message: E,
    /// By when the message was certainly gone: the earliest end of a successful receive
    /// of a message with a higher sequence number (a pop takes the lowest, so this one
    /// was taken before); `None` if unknown.
    pub gone_by: Option<Time>,
}

/// Pop semantics: a receive whose outcome is unknown may have taken a message and lost
/// the reply, so acknowledged messages never received are not all anomalies. Each
/// unknown receive can account for one lost message, and only for one that was gone
/// after the receive was invoked (`call time < gone_by`). Returns the messages such
/// receives account for, a largest such set (lost messages by `gone_by`, each taking a
/// receive invoked before it; the sets of eligible receives are nested, so greedy is
/// optimal); the rest stay lost.
pub fn attribute_lost_to_unknown_receives<E: Clone>(
    lost: &[LostMessage<E>],
    unknown_receive_calls: &[Time],
) -> Vec<E> {
    let mut by_deadline: Vec<&LostMessage<E>> = lost.iter().collect();
    by_deadline.sort_by_key(|lost| lost.gone_by.unwrap_or(Time::MAX));
    let mut calls = unknown_receive_calls.to_vec();
    calls.sort_unstable();
    let mut attributed = Vec::new();
    for lost in by_deadline {
        let deadline = lost.gone_by.unwrap_or(Time::MAX);
        let eligible = calls.partition_point(|&call| call < deadline);
        if attributed.len() < eligible {
            attributed.push(lost.message.clone());
        }
    }
    attributed
}

/// A send, for the FIFO check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FifoSend<E> {
    pub producer: u64,
    pub message: E,
    pub call_time: Time,
    /// When it was acknowledged; `None` unless the send was acknowledged.
    pub acknowledged_time: Option<Time>,
}

/// A successful receive of one message, for the FIFO check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FifoReceive<E> {
    pub message: E,
    pub call_time: Time,
    pub return_time: Time,
}

/// An order anomaly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FifoViolation<E> {
    /// `earlier` was acknowledged before `later` was sent, yet `later` was received
    /// before the receive of `earlier` began.
    Reordered { producer: u64, earlier: E, later: E },
    /// A receive ended before the message's send began.
    ReceivedBeforeSent { message: E },
}

/// What the FIFO checker found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FifoReport<E> {
    pub verdict: Verdict,
    pub violation_count: usize,
    /// The first [`REPORTED_ANOMALIES_MAX`] violations.
    pub violations: Vec<FifoViolation<E>>,
}

/// A send together with the first receive of its message.
type ReceivedSend<'a, E> = (&'a FifoSend<E>, &'a FifoReceive<E>);

/// Checks per-producer FIFO order of first receives (messages must be unique).
pub fn check_fifo<E: Ord + Clone>(
    sends: &[FifoSend<E>],
    receives: &[FifoReceive<E>],
) -> FifoReport<E> {
    let mut first_receive: BTreeMap<&E, &FifoReceive<E>> = BTreeMap::new();
    for receive in receives {
        let slot = first_receive.entry(&receive.message).or_insert(receive);
        if receive.return_time < slot.return_time {
            *slot = receive;
        }
    }
    let mut by_producer: BTreeMap<u64, Vec<ReceivedSend<'_, E>>> = BTreeMap::new();
    for send in sends {
        if let Some(&receive) = first_receive.get(&send.message) {
            by_producer
                .entry(send.producer)
                .or_default()
                .push((send, receive));
        }
    }
    let mut violations = Vec::new();
    for (producer, pairs) in by_producer {
        fifo_violations_of_producer(producer, &pairs, &mut violations);
    }
    FifoReport {
        verdict: if violations.is_empty() {
            Verdict::Valid
        } else {
            Verdict::Invalid
        },
        violation_count: violations.len(),
        violations: violations
            .into_iter()
            .take(REPORTED_ANOMALIES_MAX)
            .collect(),
    }
}

/// The sweep for one producer over its received messages: a send `b` is compared with
/// the acknowledged-before-it send `a` whose receive began last.
fn fifo_violations_of_producer<E: Clone>(
    producer: u64,
    pairs: &[ReceivedSend<'_, E>],
    violations: &mut Vec<FifoViolation<E>>,
) {
    let acknowledged: Vec<(Time, Time, usize)> = pairs
        .iter()
        .enumerate()
        .filter_map(|(index, (send, receive))| {
            send.acknowledged_time
                .map(|at| (at, receive.call_time, index))
        })
        .collect();
    let mut sweep = EndedBefore::new(acknowledged);
    let mut by_send_call: Vec<usize> = (0..pairs.len()).collect();
    by_send_call.sort_unstable_by_key(|&index| pairs[index].0.call_time);
    for later in by_send_call {
        let (send, receive) = pairs[later];
        if receive.return_time < send.call_time {
            violations.push(FifoViolation::ReceivedBeforeSent {
                message: send.message.clone(),
            });
        }
        if let Some((receive_call_time, earlier)) = sweep.best_before(send.call_time) {
            if receive.return_time < receive_call_time {
                let earlier = pairs[earlier].0.message.clone();
                let later = send.message.clone();
                violations.push(FifoViolation::Reordered {
                    producer,
                    earlier,
                    later,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests;
