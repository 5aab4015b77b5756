//! The queue workload's checkers, over the recorded history (workers and the drain):
//!
//! - `total-queue` ([`check_total_queue`]): every acknowledged send received at least
//!   once; nothing received that was never sent or whose send definitely failed. Lease
//!   mode allows duplicates (counted); pop mode does not. In pop mode a receive of
//!   unknown outcome may have popped a message and lost the reply, so lost messages
//!   such receives can account for ([`attribute_lost_to_unknown_receives`]) are counted
//!   apart, not as anomalies. Lost messages are an anomaly only if the drain ended with
//!   the queue's length at 0; otherwise they leave the verdict unknown.
//! - `fifo`: [`check_fifo`] over first deliveries (every pop; delivery count 1 in lease
//!   mode), all sends as one producer since cairn's queue is one log, and
//!   [`check_queue_seqs`] (sequence numbers against send order and delivery order).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::checks::{write_outcome, CheckerResult};
use super::options::QueueMode;
use super::workload::FINAL_PROCESS_BASE;
use crate::checker::queue_seqs::{check_queue_seqs, SeqReceive, SeqReport, SeqSend};
use crate::checker::queues::{
    attribute_lost_to_unknown_receives, check_fifo, check_total_queue, FifoReceive, FifoReport,
    FifoSend, LostMessage, QueueSend, TotalQueueOptions,
};
use crate::checker::{Verdict, WriteOutcome, REPORTED_ANOMALIES_MAX};
use crate::formats::{parse_events, Format};
use crate::history::{pair_events, Completion, OpRecord, Time};

/// A send as recorded.
struct Send {
    body: String,
    outcome: WriteOutcome,
    call_time: Time,
    return_time: Option<Time>,
    seq: Option<u64>,
}

/// A receive that returned a message.
struct Receive {
    process: u64,
    body: String,
    seq: u64,
    delivery_count: u32,
    call_time: Time,
    return_time: Time,
}

/// What the queue checkers read from the history.
struct QueueHistory {
    sends: Vec<Send>,
    receives: Vec<Receive>,
    /// Call times of receives whose outcome is unknown.
    unknown_receive_calls: Vec<Time>,
    /// The drain's last length read, if it succeeded.
    final_length: Option<u64>,
}

/// The `total-queue` and `fifo` checkers of a queue run.
pub fn check_queue(history_text: &str, mode: QueueMode) -> Vec<CheckerResult> {
    let records = parse_events(Format::Jsonl, history_text).and_then(|events| pair_events(&events));
    match records {
        Ok(records) => {
            let history = queue_history(&records);
            vec![total_queue(&history, mode), fifo(&history, mode)]
        }
        Err(error) => ["total-queue", "fifo"]
            .into_iter()
            .map(|name| CheckerResult {
                name,
                verdict: Verdict::Unknown,
                details: json!({ "error": error.to_string() }),
            })
            .collect(),
    }
}

fn queue_history(records: &[OpRecord]) -> QueueHistory {
    let mut history = QueueHistory {
        sends: Vec::new(),
        receives: Vec::new(),
        unknown_receive_calls: Vec::new(),
        final_length: None,
    };
    for record in records {
        let ok_value = match &record.completion {
            Completion::Ok(value) => Some(value),
            _ => None,
        };
        match record.f.as_str() {
            "send" => history.sends.push(Send {
                body: record.invoke_value.as_str().unwrap_or_default().to_string(),
                outcome: write_outcome(record),
                call_time: record.call_time,
                return_time: record.return_time,
                seq: ok_value.and_then(|value| value["seq"].as_u64()),
            }),
            "receive" if record.completion == Completion::Unknown => {
                history.unknown_receive_calls.push(record.call_time);
            }
            "receive" => {
                if let Some(receive) = ok_value.and_then(|value| received(record, value)) {
                    history.receives.push(receive);
                }
            }
            "length" => history.final_length = ok_value.and_then(Value::as_u64),
            _ => {}
        }
    }
    history
}

fn received(record: &OpRecord, value: &Value) -> Option<Receive> {
    Some(Receive {
        process: record.process,
        body: value["body"].as_str()?.to_string(),
        seq: value["seq"].as_u64()?,
        delivery_count: u32::try_from(value["delivery_count"].as_u64()?).ok()?,
        call_time: record.call_time,
        return_time: record.return_time?,
    })
}

fn listed(messages: &[String]) -> Vec<&String> {
    messages.iter().take(REPORTED_ANOMALIES_MAX).collect()
}

fn total_queue(history: &QueueHistory, mode: QueueMode) -> CheckerResult {
    let sends: Vec<QueueSend<String>> = history
        .sends
        .iter()
        .map(|send| QueueSend {
            message: send.body.clone(),
            outcome: send.outcome,
        })
        .collect();
    let mut received: Vec<String> = history.receives.iter().map(|r| r.body.clone()).collect();
    let options = TotalQueueOptions {
        drained: history.final_length == Some(0),
        duplicates_allowed: mode == QueueMode::Lease,
    };
    let mut report = check_total_queue(&sends, &received, options);
    let mut attributed = Vec::new();
    if mode == QueueMode::Pop && !report.lost.is_empty() {
        attributed = attribute_lost_to_unknown_receives(
            &lost_messages(history, &report.lost),
            &history.unknown_receive_calls,
        );
        received.extend(attributed.iter().cloned());
        report = check_total_queue(&sends, &received, options);
    }
    let duplicated: Vec<Value> = report
        .duplicated
        .iter()
        .take(REPORTED_ANOMALIES_MAX)
        .map(|(message, times)| json!([message, times]))
        .collect();
    let drained_count = history
        .receives
        .iter()
        .filter(|r| r.process >= FINAL_PROCESS_BASE)
        .count();
    CheckerResult {
        name: "total-queue",
        verdict: report.verdict,
        details: json!({
            "mode": mode.name(),
            "attempted": report.attempted_count,
            "acknowledged": report.acknowledged_count,
            "received": history.receives.len(),
            "received_by_drain": drained_count,
            "drained": options.drained,
            "final_length": history.final_length,
            "unknown_receives": history.unknown_receive_calls.len(),
            "lost_count": report.lost.len(),
            "lost": listed(&report.lost),
            "lost_to_unknown_pops_count": attributed.len(),
            "lost_to_unknown_pops": listed(&attributed),
            "duplicated_count": report.duplicated.len(),
            "duplicated": duplicated,
            "unexpected_count": report.unexpected.len(),
            "unexpected": listed(&report.unexpected),
            "failed_but_received_count": report.failed_but_received.len(),
            "failed_but_received": listed(&report.failed_but_received),
            "recovered_count": report.recovered.len(),
        }),
    }
}

/// Lost messages with the time each was certainly gone by: the earliest end of a
/// receive of a higher sequence number (a pop takes the lowest visible message).
fn lost_messages(history: &QueueHistory, lost: &[String]) -> Vec<LostMessage<String>> {
    let mut by_seq: Vec<(u64, Time)> = history
        .receives
        .iter()
        .map(|r| (r.seq, r.return_time))
        .collect();
    by_seq.sort_unstable();
    // Earliest end among receives from index i on.
    let mut earliest_from = vec![Time::MAX; by_seq.len() + 1];
    for index in (0..by_seq.len()).rev() {
        earliest_from[index] = earliest_from[index + 1].min(by_seq[index].1);
    }
    let seq_of: BTreeMap<&str, u64> = history
        .sends
        .iter()
        .filter_map(|send| send.seq.map(|seq| (send.body.as_str(), seq)))
        .collect();
    lost.iter()
        .map(|message| {
            let gone_by = seq_of.get(message.as_str()).and_then(|&seq| {
                let first_higher = by_seq.partition_point(|&(s, _)| s <= seq);
                Some(earliest_from[first_higher]).filter(|&time| time != Time::MAX)
            });
            LostMessage {
                message: message.clone(),
                gone_by,
            }
        })
        .collect()
}

fn fifo(history: &QueueHistory, mode: QueueMode) -> CheckerResult {
    let order = fifo_order(history, mode);
    let seqs = seq_order(history);
    let strings = |violations: Vec<String>| json!(violations);
    CheckerResult {
        name: "fifo",
        verdict: order.verdict.merge(seqs.verdict),
        details: json!({
            "order_violation_count": order.violation_count,
            "order_violations": strings(order.violations.iter().map(|v| format!("{v:?}")).collect()),
            "sends_with_seq": seqs.sends_with_seq,
            "first_deliveries": seqs.first_deliveries,
            "seq_violation_count": seqs.violation_count,
            "seq_violations": strings(seqs.violations.iter().map(|v| format!("{v:?}")).collect()),
        }),
    }
}

/// When a send was acknowledged, if it was.
fn acknowledged_time(send: &Send) -> Option<Time> {
    send.return_time
        .filter(|_| send.outcome == WriteOutcome::Acknowledged)
}

/// Real-time order of first deliveries (all sends as one producer).
fn fifo_order(history: &QueueHistory, mode: QueueMode) -> FifoReport<&str> {
    let sends: Vec<FifoSend<&str>> = history
        .sends
        .iter()
        .map(|send| FifoSend {
            producer: 0,
            message: send.body.as_str(),
            call_time: send.call_time,
            acknowledged_time: acknowledged_time(send),
        })
        .collect();
    let first_deliveries: Vec<FifoReceive<&str>> = history
        .receives
        .iter()
        .filter(|r| mode == QueueMode::Pop || r.delivery_count == 1)
        .map(|r| FifoReceive {
            message: r.body.as_str(),
            call_time: r.call_time,
            return_time: r.return_time,
        })
        .collect();
    check_fifo(&sends, &first_deliveries)
}

fn seq_order(history: &QueueHistory) -> SeqReport<&str> {
    let sends: Vec<SeqSend<&str>> = history
        .sends
        .iter()
        .map(|send| SeqSend {
            message: send.body.as_str(),
            call_time: send.call_time,
            acknowledged_time: acknowledged_time(send),
            seq: send.seq,
        })
        .collect();
    let receives: Vec<SeqReceive<&str>> = history
        .receives
        .iter()
        .map(|r| SeqReceive {
            message: r.body.as_str(),
            call_time: r.call_time,
            return_time: r.return_time,
            seq: r.seq,
            delivery_count: r.delivery_count,
        })
        .collect();
    check_queue_seqs(&sends, &receives)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A history built one whole operation at a time, 10 ns apart.
    #[derive(Default)]
    struct History {
        lines: Vec<String>,
        time: u64,
    }

    impl History {
        fn op(&mut self, process: u64, f: &str, invoke: Value, end: &str, value: Value) {
            for (kind, value) in [("invoke", &invoke), (end, &value)] {
                self.time += 10;
                let line = json!({"process": process, "type": kind, "f": f, "value": value,
                                  "time_ns": self.time});
                self.lines.push(line.to_string());
            }
        }

        fn send(&mut self, process: u64, body: &str, seq: Option<u64>) {
            match seq {
                Some(seq) => self.op(
                    process,
                    "send",
                    json!(body),
                    "ok",
                    json!({"seq": seq, "body": body}),
                ),
                None => self.op(process, "send", json!(body), "info", json!(body)),
            }
        }

        fn receive(&mut self, process: u64, body: &str, seq: u64, delivery_count: u32) {
            let message = json!({"seq": seq, "body": body, "delivery_count": delivery_count});
            self.op(process, "receive", Value::Null, "ok", message);
        }

        fn verdicts(&self, length: u64, mode: QueueMode) -> Vec<CheckerResult> {
            let mut lines = self.lines.clone();
            lines.push(
                json!({"process": FINAL_PROCESS_BASE, "type": "invoke", "f": "length",
                              "value": null, "time_ns": self.time + 1})
                .to_string(),
            );
            lines.push(
                json!({"process": FINAL_PROCESS_BASE, "type": "ok", "f": "length",
                              "value": length, "time_ns": self.time + 2})
                .to_string(),
            );
            check_queue(&lines.join("\n"), mode)
        }
    }

    fn verdicts_of(results: &[CheckerResult]) -> Vec<(&'static str, Verdict)> {
        results.iter().map(|r| (r.name, r.verdict)).collect()
    }

    #[test]
    fn lease_mode_counts_redeliveries_and_catches_a_lost_message() {
        let mut history = History::default();
        history.send(0, "p0-0", Some(1));
        history.send(0, "p0-1", Some(2));
        history.receive(1, "p0-0", 1, 1);
        history.receive(1, "p0-1", 2, 1);
        history.receive(2, "p0-0", 1, 2); // the lease ran out before the ack: allowed
        let results = history.verdicts(0, QueueMode::Lease);
        let valid = [("total-queue", Verdict::Valid), ("fifo", Verdict::Valid)];
        assert_eq!(verdicts_of(&results), valid);
        assert_eq!(results[0].details["duplicated_count"], 1);
        history.send(0, "p0-2", Some(3));
        let lost = history.verdicts(0, QueueMode::Lease);
        assert_eq!(lost[0].verdict, Verdict::Invalid);
        assert_eq!(lost[0].details["lost"], json!(["p0-2"]));
        // Not drained (the queue still holds a message): lost is not proven.
        assert_eq!(
            history.verdicts(1, QueueMode::Lease)[0].verdict,
            Verdict::Unknown
        );
    }

    #[test]
    fn pop_mode_rejects_a_duplicate_and_excuses_only_explainable_losses() {
        let mut history = History::default();
        history.send(0, "p0-0", Some(1));
        history.send(0, "p0-1", Some(2));
        history.op(1, "receive", Value::Null, "info", Value::Null); // may have popped p0-0
        history.receive(4, "p0-1", 2, 1);
        let results = history.verdicts(0, QueueMode::Pop);
        assert_eq!(results[0].verdict, Verdict::Valid);
        assert_eq!(results[0].details["lost_to_unknown_pops"], json!(["p0-0"]));
        history.receive(5, "p0-1", 2, 1);
        let duplicated = history.verdicts(0, QueueMode::Pop);
        assert_eq!(duplicated[0].verdict, Verdict::Invalid);
        assert_eq!(duplicated[0].details["duplicated"], json!([["p0-1", 2]]));
        // A pop that came back empty explains nothing.
        let mut empty = History::default();
        empty.send(0, "p0-0", Some(1));
        empty.op(1, "receive", Value::Null, "ok", Value::Null);
        assert_eq!(
            empty.verdicts(0, QueueMode::Pop)[0].verdict,
            Verdict::Invalid
        );
    }

    #[test]
    fn pops_out_of_sequence_order_are_a_fifo_violation() {
        let mut history = History::default();
        history.send(0, "p0-0", Some(1));
        history.send(0, "p0-1", Some(2));
        history.receive(1, "p0-1", 2, 1);
        history.receive(1, "p0-0", 1, 1);
        let results = history.verdicts(0, QueueMode::Pop);
        assert_eq!(results[1].verdict, Verdict::Invalid);
        assert_eq!(results[1].details["order_violation_count"], 1);
        assert_eq!(results[1].details["seq_violation_count"], 1);
        // In lease mode a redelivery may come after later messages.
        let mut lease = History::default();
        lease.send(0, "p0-0", Some(1));
        lease.send(0, "p0-1", Some(2));
        lease.receive(1, "p0-1", 2, 1);
        lease.receive(1, "p0-0", 1, 2);
        assert_eq!(
            lease.verdicts(0, QueueMode::Lease)[1].verdict,
            Verdict::Valid
        );
    }
}
