//! Queue checker tests: hand-made histories on both sides of each rule.

use super::*;

fn send(message: u32, outcome: WriteOutcome) -> QueueSend<u32> {
    QueueSend { message, outcome }
}

const EXACTLY_ONCE: TotalQueueOptions = TotalQueueOptions {
    drained: true,
    duplicates_allowed: false,
};

#[test]
fn every_acknowledged_send_received_once_is_valid() {
    let sends = [
        send(1, WriteOutcome::Acknowledged),
        send(2, WriteOutcome::Unknown),
        send(3, WriteOutcome::Failed),
    ];
    let report = check_total_queue(&sends, &[2, 1], EXACTLY_ONCE);
    assert_eq!(report.verdict, Verdict::Valid);
    assert_eq!(report.recovered, vec![2]);
    assert_eq!(report.acknowledged_count, 1);
    assert_eq!(report.received_count, 2);
}

#[test]
fn a_lost_message_is_invalid_once_drained() {
    let sends = [
        send(1, WriteOutcome::Acknowledged),
        send(2, WriteOutcome::Acknowledged),
    ];
    let report = check_total_queue(&sends, &[2], EXACTLY_ONCE);
    assert_eq!(report.verdict, Verdict::Invalid);
    assert_eq!(report.lost, vec![1]);
    let undrained = TotalQueueOptions {
        drained: false,
        ..EXACTLY_ONCE
    };
    assert_eq!(
        check_total_queue(&sends, &[2], undrained).verdict,
        Verdict::Unknown
    );
}

#[test]
fn a_duplicated_message_is_invalid_for_exactly_once() {
    let sends = [send(1, WriteOutcome::Acknowledged)];
    let report = check_total_queue(&sends, &[1, 1], EXACTLY_ONCE);
    assert_eq!(report.verdict, Verdict::Invalid);
    assert_eq!(report.duplicated, vec![(1, 2)]);
    let at_least_once = TotalQueueOptions {
        duplicates_allowed: true,
        ..EXACTLY_ONCE
    };
    assert_eq!(
        check_total_queue(&sends, &[1, 1], at_least_once).verdict,
        Verdict::Valid
    );
}

#[test]
fn unexpected_and_failed_messages_are_invalid() {
    let sends = [send(1, WriteOutcome::Failed)];
    let report = check_total_queue(&sends, &[1, 7], EXACTLY_ONCE);
    assert_eq!(report.verdict, Verdict::Invalid);
    assert_eq!(report.unexpected, vec![7]);
    assert_eq!(report.failed_but_received, vec![1]);
}

fn fifo_send(
    producer: u64,
    message: u32,
    call_time: Time,
    acknowledged_time: Option<Time>,
) -> FifoSend<u32> {
    FifoSend {
        producer,
        message,
        call_time,
        acknowledged_time,
    }
}

fn receive(message: u32, call_time: Time, return_time: Time) -> FifoReceive<u32> {
    FifoReceive {
        message,
        call_time,
        return_time,
    }
}

#[test]
fn in_order_receives_are_valid() {
    let sends = [
        fifo_send(0, 1, 0, Some(10)),
        fifo_send(0, 2, 20, Some(30)),
        fifo_send(1, 3, 5, Some(6)),
    ];
    let receives = [receive(3, 40, 45), receive(1, 50, 60), receive(2, 70, 80)];
    assert_eq!(check_fifo(&sends, &receives).verdict, Verdict::Valid);
}

#[test]
fn a_fifo_violation_is_invalid() {
    // 1 was acknowledged before 2 was sent, but 2 came out before anyone asked for 1.
    let sends = [fifo_send(0, 1, 0, Some(10)), fifo_send(0, 2, 20, Some(30))];
    let receives = [receive(2, 40, 50), receive(1, 60, 70)];
    let report = check_fifo(&sends, &receives);
    assert_eq!(report.verdict, Verdict::Invalid);
    let expected = FifoViolation::Reordered {
        producer: 0,
        earlier: 1,
        later: 2,
    };
    assert_eq!(report.violations, vec![expected]);
}

#[test]
fn overlapping_receives_and_other_producers_do_not_count() {
    let sends = [
        fifo_send(0, 1, 0, Some(10)),
        fifo_send(0, 2, 20, Some(30)),
        fifo_send(1, 3, 0, Some(1)),
    ];
    // The receives of 1 and 2 overlap, so either order is possible; 3 is another
    // producer's message and may come out anywhere.
    let receives = [receive(2, 40, 55), receive(1, 50, 60), receive(3, 90, 95)];
    assert_eq!(check_fifo(&sends, &receives).verdict, Verdict::Valid);
}

#[test]
fn an_indeterminate_send_orders_nothing_before_it() {
    let sends = [fifo_send(0, 1, 0, None), fifo_send(0, 2, 20, Some(30))];
    let receives = [receive(2, 40, 50), receive(1, 60, 70)];
    assert_eq!(check_fifo(&sends, &receives).verdict, Verdict::Valid);
}

#[test]
fn a_message_received_before_it_was_sent_is_invalid() {
    let sends = [fifo_send(0, 1, 100, Some(110))];
    let receives = [receive(1, 10, 20)];
    let report = check_fifo(&sends, &receives);
    assert_eq!(
        report.violations,
        vec![FifoViolation::ReceivedBeforeSent { message: 1 }]
    );
}

fn lost(message: u32, gone_by: Option<Time>) -> LostMessage<u32> {
    LostMessage { message, gone_by }
}

#[test]
fn each_unknown_receive_accounts_for_one_message_gone_after_its_call() {
    // Receives of unknown outcome invoked at 10 and 50. Message 1 was gone by 20: only
    // the first can have taken it; 2 was gone by 30, and nothing else was there for it.
    let attributed = attribute_lost_to_unknown_receives(
        &[lost(2, Some(30)), lost(1, Some(20)), lost(3, None)],
        &[50, 10],
    );
    assert_eq!(attributed, vec![1, 3]);
    assert!(attribute_lost_to_unknown_receives(&[lost(1, Some(5))], &[10]).is_empty());
    assert!(attribute_lost_to_unknown_receives(&[lost(1, None)], &[]).is_empty());
}
