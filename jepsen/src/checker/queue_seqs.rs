//! Sequence-number checks for a queue that numbers messages in commit order, as cairn
//! does: a message's sequence number is fixed when its send is committed, sends are
//! committed in an order consistent with real time, and a receive takes the visible
//! message with the lowest sequence number. [`check_queue_seqs`] reports:
//!
//! - *conflicts*: one message seen with two sequence numbers (its send's reply and a
//!   receive, or two receives), or one sequence number on two messages;
//! - *send order*: the send of `a` was acknowledged before the send of `b` was invoked,
//!   yet `a`'s sequence number is higher. This includes each producer's own sends in
//!   the order it made them (a producer waits for each send);
//! - *delivery order*: two *first deliveries* (delivery count 1) where the receive of
//!   `a` ended before the receive of `b` began, yet `a`'s sequence number is higher.
//!   When `a` was taken, `b` was already stored (lower number) and had never been
//!   delivered, hence visible, so the lowest-visible rule would have returned `b` or a
//!   lower one. This includes each consumer's successive pops (all pops are first
//!   deliveries), and holds in lease mode too: a message whose lease ran out comes
//!   back with a higher delivery count;
//! - *repeated deliveries*: one (message, delivery count) received twice; every
//!   delivery increments the count, so two receives can never share one.
//!
//! Sequence numbers of sends come from their replies or, for sends of unknown outcome,
//! from receives of their message. Every rule is sound: a history of a correct queue
//! never violates one.

use std::collections::BTreeMap;

use crate::checker::precedence::EndedBefore;
use crate::checker::{Verdict, REPORTED_ANOMALIES_MAX};
use crate::history::Time;

/// One attempted send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeqSend<E> {
    pub message: E,
    pub call_time: Time,
    /// When it was acknowledged; `None` unless it was.
    pub acknowledged_time: Option<Time>,
    /// The sequence number its reply carried (acknowledged sends).
    pub seq: Option<u64>,
}

/// One successful receive of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeqReceive<E> {
    pub message: E,
    pub call_time: Time,
    pub return_time: Time,
    pub seq: u64,
    pub delivery_count: u32,
}

/// An anomaly in sequence numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SeqViolation<E> {
    /// One message with two sequence numbers.
    TwoSeqs { message: E, seqs: (u64, u64) },
    /// One sequence number on two messages.
    SharedSeq { seq: u64, messages: (E, E) },
    /// `earlier` was acknowledged before `later` was sent, yet has the higher number.
    SendOrder { earlier: (E, u64), later: (E, u64) },
    /// A first delivery of `earlier` ended before one of `later` began, yet `earlier`
    /// has the higher number.
    DeliveryOrder { earlier: (E, u64), later: (E, u64) },
    /// The same delivery of a message received twice.
    RepeatedDelivery { message: E, delivery_count: u32 },
}

/// What [`check_queue_seqs`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeqReport<E> {
    pub verdict: Verdict,
    /// Sends whose sequence number is known (from the reply or a receive).
    pub sends_with_seq: usize,
    /// Receives with delivery count 1.
    pub first_deliveries: usize,
    pub violation_count: usize,
    /// The first [`REPORTED_ANOMALIES_MAX`] violations.
    pub violations: Vec<SeqViolation<E>>,
}

/// Checks the sequence numbers of sends and receives (messages must be unique).
pub fn check_queue_seqs<E: Ord + Clone>(
    sends: &[SeqSend<E>],
    receives: &[SeqReceive<E>],
) -> SeqReport<E> {
    let mut violations = Vec::new();
    let seqs = message_seqs(sends, receives, &mut violations);
    repeated_deliveries(receives, &mut violations);
    let sends_with_seq: Vec<(&SeqSend<E>, u64)> = sends
        .iter()
        .filter_map(|send| seqs.get(&send.message).map(|&seq| (send, seq)))
        .collect();
    send_order(&sends_with_seq, &mut violations);
    let first: Vec<&SeqReceive<E>> = receives.iter().filter(|r| r.delivery_count == 1).collect();
    delivery_order(&first, &mut violations);
    SeqReport {
        verdict: if violations.is_empty() {
            Verdict::Valid
        } else {
            Verdict::Invalid
        },
        sends_with_seq: sends_with_seq.len(),
        first_deliveries: first.len(),
        violation_count: violations.len(),
        violations: violations
            .into_iter()
            .take(REPORTED_ANOMALIES_MAX)
            .collect(),
    }
}

/// Each message's sequence number (the send's reply wins over receives), reporting
/// messages with two numbers and numbers on two messages.
fn message_seqs<'a, E: Ord + Clone>(
    sends: &'a [SeqSend<E>],
    receives: &'a [SeqReceive<E>],
    violations: &mut Vec<SeqViolation<E>>,
) -> BTreeMap<&'a E, u64> {
    let from_sends = sends
        .iter()
        .filter_map(|send| send.seq.map(|seq| (&send.message, seq)));
    let from_receives = receives.iter().map(|r| (&r.message, r.seq));
    let mut seqs: BTreeMap<&E, u64> = BTreeMap::new();
    let mut owners: BTreeMap<u64, &E> = BTreeMap::new();
    for (message, seq) in from_sends.chain(from_receives) {
        let known = *seqs.entry(message).or_insert(seq);
        if known != seq {
            violations.push(SeqViolation::TwoSeqs {
                message: message.clone(),
                seqs: (known, seq),
            });
        }
        let owner = *owners.entry(seq).or_insert(message);
        if owner != message {
            violations.push(SeqViolation::SharedSeq {
                seq,
                messages: (owner.clone(), message.clone()),
            });
        }
    }
    seqs
}

fn repeated_deliveries<E: Ord + Clone>(
    receives: &[SeqReceive<E>],
    violations: &mut Vec<SeqViolation<E>>,
) {
    let mut seen: BTreeMap<(&E, u32), usize> = BTreeMap::new();
    for receive in receives {
        let count = seen
            .entry((&receive.message, receive.delivery_count))
            .or_default();
        *count += 1;
        if *count == 2 {
            violations.push(SeqViolation::RepeatedDelivery {
                message: receive.message.clone(),
                delivery_count: receive.delivery_count,
            });
        }
    }
}

/// Acknowledged-before-invoked sends must have increasing numbers.
fn send_order<E: Clone>(sends: &[(&SeqSend<E>, u64)], violations: &mut Vec<SeqViolation<E>>) {
    let acknowledged: Vec<(Time, u64, usize)> = sends
        .iter()
        .enumerate()
        .filter_map(|(index, (send, seq))| send.acknowledged_time.map(|at| (at, *seq, index)))
        .collect();
    let mut sweep = EndedBefore::new(acknowledged);
    let mut by_call: Vec<usize> = (0..sends.len()).collect();
    by_call.sort_unstable_by_key(|&index| sends[index].0.call_time);
    for later in by_call {
        let (send, seq) = sends[later];
        if let Some((best_seq, earlier)) = sweep.best_before(send.call_time) {
            if best_seq > seq {
                violations.push(SeqViolation::SendOrder {
                    earlier: (sends[earlier].0.message.clone(), best_seq),
                    later: (send.message.clone(), seq),
                });
            }
        }
    }
}

/// First deliveries in real-time order must have increasing numbers.
fn delivery_order<E: Clone>(first: &[&SeqReceive<E>], violations: &mut Vec<SeqViolation<E>>) {
    let ended: Vec<(Time, u64, usize)> = first
        .iter()
        .enumerate()
        .map(|(index, receive)| (receive.return_time, receive.seq, index))
        .collect();
    let mut sweep = EndedBefore::new(ended);
    let mut by_call: Vec<usize> = (0..first.len()).collect();
    by_call.sort_unstable_by_key(|&index| first[index].call_time);
    for later in by_call {
        let receive = first[later];
        if let Some((best_seq, earlier)) = sweep.best_before(receive.call_time) {
            if best_seq > receive.seq {
                violations.push(SeqViolation::DeliveryOrder {
                    earlier: (first[earlier].message.clone(), best_seq),
                    later: (receive.message.clone(), receive.seq),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(message: u32, call: Time, acked: Option<Time>, seq: Option<u64>) -> SeqSend<u32> {
        SeqSend {
            message,
            call_time: call,
            acknowledged_time: acked,
            seq,
        }
    }

    fn receive(message: u32, call: Time, ret: Time, seq: u64, count: u32) -> SeqReceive<u32> {
        SeqReceive {
            message,
            call_time: call,
            return_time: ret,
            seq,
            delivery_count: count,
        }
    }

    #[test]
    fn numbers_in_send_and_delivery_order_are_valid() {
        let sends = [
            send(1, 0, Some(10), Some(1)),
            send(2, 5, Some(12), Some(3)), // concurrent with 1: any order
            send(3, 20, None, None),       // unknown; its number comes from a receive
        ];
        let receives = [
            receive(1, 30, 40, 1, 1),
            receive(2, 35, 38, 3, 1), // overlaps the receive of 1
            receive(1, 50, 60, 1, 2), // redelivered after a lease: not a first delivery
            receive(3, 70, 80, 4, 1),
        ];
        let report = check_queue_seqs(&sends, &receives);
        assert_eq!(report.violations, vec![]);
        assert_eq!((report.sends_with_seq, report.first_deliveries), (3, 3));
    }

    #[test]
    fn a_later_send_with_a_lower_number_is_invalid() {
        let sends = [send(1, 0, Some(10), Some(5)), send(2, 20, None, None)];
        let receives = [receive(2, 30, 40, 4, 1)];
        let report = check_queue_seqs(&sends, &receives);
        assert_eq!(report.verdict, Verdict::Invalid);
        assert!(report.violations.contains(&SeqViolation::SendOrder {
            earlier: (1, 5),
            later: (2, 4)
        }));
    }

    #[test]
    fn a_first_delivery_overtaking_a_lower_number_is_invalid() {
        let receives = [receive(7, 0, 10, 7, 1), receive(3, 20, 30, 3, 1)];
        let report = check_queue_seqs(&[], &receives);
        assert_eq!(
            report.violations,
            vec![SeqViolation::DeliveryOrder {
                earlier: (7, 7),
                later: (3, 3)
            }]
        );
    }

    #[test]
    fn conflicting_numbers_and_repeated_deliveries_are_invalid() {
        let sends = [send(1, 0, Some(10), Some(1))];
        let receives = [
            receive(1, 20, 30, 2, 1),
            receive(9, 40, 50, 2, 1),
            receive(9, 60, 70, 2, 1),
        ];
        let violations = check_queue_seqs(&sends, &receives).violations;
        assert!(violations.contains(&SeqViolation::TwoSeqs {
            message: 1,
            seqs: (1, 2)
        }));
        assert!(violations.contains(&SeqViolation::SharedSeq {
            seq: 2,
            messages: (1, 9)
        }));
        assert!(violations.contains(&SeqViolation::RepeatedDelivery {
            message: 9,
            delivery_count: 1
        }));
    }
}
