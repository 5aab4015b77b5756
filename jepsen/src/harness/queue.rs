//! The `queue` workload: producers send unique messages (`p<process>-<n>`) to one
//! queue, [`QUEUE_NAME`], created at setup; consumers receive from it with short long
//! polls. In `lease` mode (at-least-once) a consumer receives with a [`LEASE_MS`]
//! lease and acks the message at once (the ack is a follow-up operation, outside the
//! pacing); in `pop` mode it receives without a lease, which removes the message.
//!
//! As in the register workload, one process per node is a consumer (the `reader`
//! slots) and the others are producers. After the faults heal, [`drain`] empties the
//! queue through a fresh client and records every message, then reads the queue's
//! length; the checkers (`checks::queue`) compare sends with receives.
//!
//! History values: a send invokes with the body and completes with
//! `{"seq", "body"}` (the seq cairn assigned); a receive invokes with
//! `{"lease_ms", "wait_ms"}` (`lease_ms` null for a pop) and completes with `null`
//! (nothing within the wait) or `{"seq", "body", "delivery_count", "receipt"}`; an ack
//! invokes and completes with `{"seq", "body", "receipt"}`; `length` completes with the
//! number of messages stored (visible and leased).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cairn::client::{Message, ReceiveOptions};
use serde_json::{json, Value};

use super::client::{invoke, read_error_outcome, write_error_outcome, Op, Outcome, Session};
use super::cluster::Cluster;
use super::options::QueueMode;
use super::recorder::Recorder;
use super::workload::{Workload, FINAL_PROCESS_BASE};

/// The one queue every process uses.
pub const QUEUE_NAME: &str = "jepsen-queue";
/// Lease of a lease-mode receive: long enough for the ack that follows at once, short
/// enough that messages of crashed or cut-off consumers come back within a fault.
pub const LEASE_MS: u64 = 3_000;
/// Long-poll wait of every receive (the SDK adds it to the call's deadline).
pub const RECEIVE_WAIT_MS: u64 = 1_000;
/// Consecutive empty receives after which the drain reads the queue's length.
const DRAIN_EMPTY_POLLS: u32 = 3;
/// Bound on the drain's duration (leases of crashed consumers must run out first).
const DRAIN_SECS_MAX: u64 = 60;
/// Bound on the drain's operations.
const DRAIN_OPS_MAX: u32 = 100_000;
/// Pause after a drain operation failed, and between attempts to create the queue.
const RETRY_MS: u64 = 500;

pub struct QueueWorkload {
    pub mode: QueueMode,
    next_message: AtomicU64,
    /// The ack each process owes for the message it just received (lease mode).
    pending_acks: Mutex<HashMap<u64, Value>>,
}

impl QueueWorkload {
    pub fn new(mode: QueueMode) -> QueueWorkload {
        QueueWorkload {
            mode,
            next_message: AtomicU64::new(0),
            pending_acks: Mutex::new(HashMap::new()),
        }
    }

    fn pending_acks(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Value>> {
        self.pending_acks
            .lock()
            .expect("pending acks lock is never poisoned")
    }

    /// A receive for a `consumer`, else a send of a new message.
    pub fn next_op(&self, process: u64, consumer: bool) -> Op {
        if consumer {
            return self.receive_op();
        }
        let n = self.next_message.fetch_add(1, Ordering::Relaxed);
        Op {
            f: "send",
            key: None,
            value: json!(format!("p{process}-{n}")),
        }
    }

    pub fn receive_op(&self) -> Op {
        let lease_ms = match self.mode {
            QueueMode::Lease => json!(LEASE_MS),
            QueueMode::Pop => Value::Null,
        };
        Op {
            f: "receive",
            key: None,
            value: json!({ "lease_ms": lease_ms, "wait_ms": RECEIVE_WAIT_MS }),
        }
    }

    fn receive_options(&self) -> ReceiveOptions {
        ReceiveOptions {
            lease: match self.mode {
                QueueMode::Lease => Some(Duration::from_millis(LEASE_MS)),
                QueueMode::Pop => None,
            },
            wait: Duration::from_millis(RECEIVE_WAIT_MS),
        }
    }

    pub async fn execute(&self, session: &Session, op: &Op) -> Outcome {
        let client = &session.writer;
        match op.f {
            "send" => {
                let body = op.value.as_str().unwrap_or_default();
                match client.send(QUEUE_NAME, body.as_bytes()).await {
                    Ok(seq) => Outcome::Ok(json!({ "seq": seq, "body": body })),
                    Err(error) => write_error_outcome(&error),
                }
            }
            "receive" => match client.receive(QUEUE_NAME, self.receive_options()).await {
                Ok(None) => Outcome::Ok(Value::Null),
                Ok(Some(message)) => Outcome::Ok(message_value(&message)),
                Err(error) => write_error_outcome(&error),
            },
            "ack" => {
                let receipt = op.value["receipt"].as_str().unwrap_or_default();
                match client.ack(QUEUE_NAME, receipt).await {
                    Ok(()) => Outcome::Ok(op.value.clone()),
                    Err(error) => write_error_outcome(&error),
                }
            }
            _ => match client.queue_length(QUEUE_NAME).await {
                Ok(length) => Outcome::Ok(json!(length)),
                Err(error) => read_error_outcome(&error),
            },
        }
    }

    /// In lease mode, remembers the ack `process` owes for the message it received.
    pub fn observe(&self, process: u64, op: &Op, outcome: &Outcome) {
        let Outcome::Ok(message) = outcome else {
            return;
        };
        if op.f != "receive" || message.is_null() || self.mode != QueueMode::Lease {
            return;
        }
        let ack = json!({
            "seq": message["seq"],
            "body": message["body"],
            "receipt": message["receipt"],
        });
        self.pending_acks().insert(process, ack);
    }

    /// The ack `process` owes, if any (taken: asked once).
    pub fn follow_up(&self, process: u64) -> Option<Op> {
        self.pending_acks().remove(&process).map(|value| Op {
            f: "ack",
            key: None,
            value,
        })
    }
}

fn message_value(message: &Message) -> Value {
    json!({
        "seq": message.seq,
        "body": String::from_utf8_lossy(&message.body),
        "delivery_count": message.delivery_count,
        "receipt": message.receipt,
    })
}

/// Creates the queue, retrying through elections (an existing queue is success).
pub async fn create_queue(cluster: &Cluster, deadline: Instant) -> Result<(), String> {
    let client = cairn::client::Client::connect(cluster.endpoints_from(cluster.ids()[0]))
        .map_err(|e| e.to_string())?;
    loop {
        match client.create_queue(QUEUE_NAME).await {
            Ok(()) => return Ok(()),
            Err(error) if Instant::now() >= deadline => {
                return Err(format!("creating queue {QUEUE_NAME}: {error}"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(RETRY_MS)).await,
        }
    }
}

/// The final drain, after healing: one fresh client receives (and in lease mode acks)
/// until `DRAIN_EMPTY_POLLS` long polls in a row come back empty and the queue's
/// length is 0, recording everything; a new process and client after every `info`.
/// Bounded by `DRAIN_SECS_MAX` and `DRAIN_OPS_MAX`; a drain that runs out leaves
/// the length read missing or non-zero, which the checker reports (lost = unknown).
pub async fn drain(
    workload: &Workload,
    queue: &QueueWorkload,
    cluster: &Cluster,
    recorder: &Recorder,
) -> Result<(), String> {
    let home = cluster.ids()[0];
    let mut session = Session::new(FINAL_PROCESS_BASE, home, cluster)?;
    let deadline = Instant::now() + Duration::from_secs(DRAIN_SECS_MAX);
    let mut empty_polls = 0;
    let mut ops = 0;
    while ops < DRAIN_OPS_MAX && Instant::now() < deadline {
        let op = if empty_polls >= DRAIN_EMPTY_POLLS {
            empty_polls = 0;
            Op {
                f: "length",
                key: None,
                value: Value::Null,
            }
        } else {
            queue.receive_op()
        };
        let mut outcome = invoke(recorder, workload, &session, &op).await;
        ops += 1;
        match &outcome {
            Outcome::Ok(Value::Null) => empty_polls += 1,
            Outcome::Ok(length) if op.f == "length" => {
                if length.as_u64() == Some(0) {
                    return Ok(());
                }
            }
            Outcome::Ok(_) => empty_polls = 0,
            Outcome::Fail { .. } | Outcome::Info { .. } => {
                tokio::time::sleep(Duration::from_millis(RETRY_MS)).await;
            }
        }
        if let Some(ack) = workload.follow_up(session.process) {
            outcome = invoke(recorder, workload, &session, &ack).await;
            ops += 1;
        }
        if matches!(outcome, Outcome::Info { .. }) {
            session = Session::new(session.process + 1, home, cluster)?;
        }
    }
    println!(
        "note: the queue was not drained within {DRAIN_SECS_MAX} s / {DRAIN_OPS_MAX} operations"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(seq: u64) -> Outcome {
        Outcome::Ok(json!({"seq": seq, "body": "p3-0", "delivery_count": 1, "receipt": "1.7.1"}))
    }

    #[test]
    fn consumers_receive_and_producers_send_unique_messages() {
        let workload = QueueWorkload::new(QueueMode::Lease);
        let receive = workload.next_op(0, true);
        assert_eq!(receive.f, "receive");
        assert_eq!(receive.value["lease_ms"], json!(LEASE_MS));
        let bodies: Vec<Value> = (0..3).map(|_| workload.next_op(3, false).value).collect();
        assert_eq!(bodies, [json!("p3-0"), json!("p3-1"), json!("p3-2")]);
        let pop = QueueWorkload::new(QueueMode::Pop).next_op(0, true);
        assert_eq!(pop.value["lease_ms"], Value::Null);
    }

    #[test]
    fn a_leased_message_is_acked_once_by_its_process_and_a_pop_never() {
        let workload = QueueWorkload::new(QueueMode::Lease);
        let receive = workload.receive_op();
        workload.observe(4, &receive, &Outcome::Ok(Value::Null));
        assert!(
            workload.follow_up(4).is_none(),
            "nothing received, nothing to ack"
        );
        workload.observe(4, &receive, &received(7));
        assert!(
            workload.follow_up(5).is_none(),
            "another process owes nothing"
        );
        let ack = workload.follow_up(4).expect("the receiver acks");
        assert_eq!((ack.f, &ack.value["receipt"]), ("ack", &json!("1.7.1")));
        assert!(workload.follow_up(4).is_none(), "one ack per receive");
        let pop = QueueWorkload::new(QueueMode::Pop);
        pop.observe(4, &pop.receive_op(), &received(7));
        assert!(pop.follow_up(4).is_none());
    }
}
