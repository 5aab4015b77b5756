//! The workloads behind one interface: setup, what the next operation is, how it runs
//! against cairn, what its outcome teaches the generator (and which follow-up it asks
//! for), and the final reads after healing.

use std::time::{Duration, Instant};

use cairn::client::Client;
use rand::rngs::StdRng;
use serde_json::Value;

use super::client::{invoke, Op, Outcome, Session};
use super::cluster::Cluster;
use super::fs::{self, FsWorkload};
use super::object::ObjectWorkload;
use super::options::{QueueMode, WorkloadKind};
use super::queue::{self, QueueWorkload};
use super::recorder::{ClientEvent, EntryType, Recorder};
use super::register::RegisterWorkload;
use super::set::SetWorkload;

/// The namespace every workload writes to (each run has fresh data directories).
pub const NAMESPACE: &str = "jepsen";
/// Process ids of the final readers start here, far above the workers' ids.
pub const FINAL_PROCESS_BASE: u64 = 1_000_000;
/// Register keys read at the end (the newest ones), per node.
const FINAL_READ_KEYS_MAX: usize = 20;
/// Attempts of the set's final read before it is left unknown.
const FINAL_READ_ATTEMPTS_MAX: u32 = 10;
/// Deadline of one attempt of the set's final read (all pages).
const FINAL_READ_TIMEOUT_MS: u64 = 10_000;
/// Pause between attempts of the set's final read.
const FINAL_READ_RETRY_MS: u64 = 1_000;

pub enum Workload {
    Register(RegisterWorkload),
    Object(ObjectWorkload),
    Set(SetWorkload),
    Queue(QueueWorkload),
    Fs(FsWorkload),
}

impl Workload {
    pub fn new(kind: WorkloadKind, queue_mode: QueueMode) -> Workload {
        match kind {
            WorkloadKind::Register => Workload::Register(RegisterWorkload::new(NAMESPACE)),
            WorkloadKind::Object => Workload::Object(ObjectWorkload::default()),
            WorkloadKind::Set => Workload::Set(SetWorkload::new(NAMESPACE)),
            WorkloadKind::Queue => Workload::Queue(QueueWorkload::new(queue_mode)),
            WorkloadKind::Fs => Workload::Fs(FsWorkload::default()),
        }
    }

    /// What must exist before the clients start (the queue), beyond the namespace.
    pub async fn setup(&self, cluster: &Cluster, deadline: Instant) -> Result<(), String> {
        match self {
            Workload::Queue(_) => queue::create_queue(cluster, deadline).await,
            Workload::Fs(_) => fs::setup(cluster, deadline).await,
            Workload::Register(_) | Workload::Object(_) | Workload::Set(_) => Ok(()),
        }
    }

    /// The next operation of `process`; `reader` processes only read (register) or
    /// only receive (queue).
    pub fn next_op(&self, rng: &mut StdRng, process: u64, reader: bool) -> Op {
        match self {
            Workload::Register(register) => register.next_op(rng, process, reader),
            Workload::Object(object) => object.next_op(rng, process, reader),
            Workload::Set(set) => set.next_op(),
            Workload::Queue(queue) => queue.next_op(process, reader),
            Workload::Fs(fs) => fs.next_op(rng, process, reader),
        }
    }

    pub async fn execute(&self, session: &Session, op: &Op) -> Outcome {
        match self {
            Workload::Register(register) => register.execute(session, op).await,
            Workload::Object(object) => object.execute(session, op).await,
            Workload::Set(set) => set.execute(session, op).await,
            Workload::Queue(queue) => queue.execute(session, op).await,
            Workload::Fs(fs) => fs.execute(session, op).await,
        }
    }

    pub fn observe(&self, process: u64, op: &Op, outcome: &Outcome) {
        match self {
            Workload::Register(register) => register.observe(op, outcome),
            Workload::Queue(queue) => queue.observe(process, op, outcome),
            Workload::Fs(fs) => fs.observe(op, outcome),
            Workload::Object(_) | Workload::Set(_) => {}
        }
    }

    /// Whether a process may run its next operation without waiting for a pacer slot:
    /// a queue consumer whose receive (and ack) just succeeded with a message.
    pub fn next_unpaced(&self, reader: bool, outcome: &Outcome) -> bool {
        matches!(self, Workload::Queue(_))
            && reader
            && matches!(outcome, Outcome::Ok(value) if !value.is_null())
    }

    /// An operation `process` must run at once, unpaced (the queue's ack), if any.
    pub fn follow_up(&self, process: u64) -> Option<Op> {
        match self {
            Workload::Queue(queue) => queue.follow_up(process),
            Workload::Register(_) | Workload::Object(_) | Workload::Set(_) | Workload::Fs(_) => {
                None
            }
        }
    }

    /// Reads after the faults have healed: the newest register keys on every node, the
    /// whole set through one fresh client, or the queue's drain.
    pub async fn final_reads(&self, cluster: &Cluster, recorder: &Recorder) -> Result<(), String> {
        match self {
            Workload::Register(_) | Workload::Object(_) => {
                let keys = match self {
                    Workload::Register(register) => register.keys(),
                    Workload::Object(object) => object.keys(),
                    _ => Vec::new(),
                };
                let newest = &keys[keys.len().saturating_sub(FINAL_READ_KEYS_MAX)..];
                for (offset, id) in cluster.ids().into_iter().enumerate() {
                    let session = Session::new(FINAL_PROCESS_BASE + offset as u64, id, cluster)?;
                    for key in newest {
                        let op = Op {
                            f: "get",
                            key: Some(key.clone()),
                            value: Value::Null,
                        };
                        invoke(recorder, self, &session, &op).await;
                    }
                }
                Ok(())
            }
            Workload::Set(set) => set_final_read(set, cluster, recorder).await,
            Workload::Queue(queue) => queue::drain(self, queue, cluster, recorder).await,
            Workload::Fs(fs) => fs::final_reads(self, fs, cluster, recorder).await,
        }
    }
}

/// The set's final read, retried (each attempt recorded) until one succeeds.
async fn set_final_read(
    set: &SetWorkload,
    cluster: &Cluster,
    recorder: &Recorder,
) -> Result<(), String> {
    final_read_retried(
        cluster,
        recorder,
        ("read", "the final read"),
        |client| async move {
            set.read_all(&client)
                .await
                .map_err(|error| error.code().to_string())
        },
    )
    .await
}

/// A final read after healing through one fresh client (from the first node's
/// endpoints, `FINAL_READ_TIMEOUT_MS` per call), recorded as operation `f` of process
/// `FINAL_PROCESS_BASE` and retried up to `FINAL_READ_ATTEMPTS_MAX` times until one
/// attempt succeeds. `read` returns the value, or the error code to record.
pub async fn final_read_retried<F, Fut>(
    cluster: &Cluster,
    recorder: &Recorder,
    (f, what): (&'static str, &str),
    read: F,
) -> Result<(), String>
where
    F: Fn(Client) -> Fut,
    Fut: std::future::Future<Output = Result<Value, String>>,
{
    let first = cluster.ids()[0];
    let client = Client::connect(cluster.endpoints_from(first))
        .map_err(|e| e.to_string())?
        .with_call_timeout(Duration::from_millis(FINAL_READ_TIMEOUT_MS));
    let event = |entry_type, value, error| ClientEvent {
        process: FINAL_PROCESS_BASE,
        entry_type,
        f,
        key: None,
        value,
        error,
        node: None,
    };
    for _ in 0..FINAL_READ_ATTEMPTS_MAX {
        recorder.client(event(EntryType::Invoke, Value::Null, None));
        match read(client.clone()).await {
            Ok(value) => {
                recorder.client(event(EntryType::Ok, value, None));
                return Ok(());
            }
            Err(code) => recorder.client(event(EntryType::Fail, Value::Null, Some(code))),
        }
        tokio::time::sleep(Duration::from_millis(FINAL_READ_RETRY_MS)).await;
    }
    Err(format!("{what} failed {FINAL_READ_ATTEMPTS_MAX} times"))
}
