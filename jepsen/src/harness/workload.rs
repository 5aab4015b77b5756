//! The workloads behind one interface: what the next operation is, how it runs against
//! cairn, what its outcome teaches the generator, and the final reads after healing.

use std::time::Duration;

use cairn::client::Client;
use rand::rngs::StdRng;
use serde_json::Value;

use super::client::{invoke, Op, Outcome, Session};
use super::cluster::Cluster;
use super::options::WorkloadKind;
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
    Set(SetWorkload),
}

impl Workload {
    pub fn new(kind: WorkloadKind) -> Workload {
        match kind {
            WorkloadKind::Register => Workload::Register(RegisterWorkload::new(NAMESPACE)),
            WorkloadKind::Set => Workload::Set(SetWorkload::new(NAMESPACE)),
        }
    }

    /// The next operation of `process`; `reader` processes only read (register).
    pub fn next_op(&self, rng: &mut StdRng, process: u64, reader: bool) -> Op {
        match self {
            Workload::Register(register) => register.next_op(rng, process, reader),
            Workload::Set(set) => set.next_op(),
        }
    }

    pub async fn execute(&self, session: &Session, op: &Op) -> Outcome {
        match self {
            Workload::Register(register) => register.execute(session, op).await,
            Workload::Set(set) => set.execute(session, op).await,
        }
    }

    pub fn observe(&self, op: &Op, outcome: &Outcome) {
        if let Workload::Register(register) = self {
            register.observe(op, outcome);
        }
    }

    /// Reads after the faults have healed: the newest register keys on every node, or
    /// the whole set through one fresh client.
    pub async fn final_reads(&self, cluster: &Cluster, recorder: &Recorder) -> Result<(), String> {
        match self {
            Workload::Register(register) => {
                let keys = register.keys();
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
        }
    }
}

/// The set's final read, retried (each attempt recorded) until one succeeds.
async fn set_final_read(
    set: &SetWorkload,
    cluster: &Cluster,
    recorder: &Recorder,
) -> Result<(), String> {
    let first = cluster.ids()[0];
    let client = Client::connect(cluster.endpoints_from(first))
        .map_err(|e| e.to_string())?
        .with_call_timeout(Duration::from_millis(FINAL_READ_TIMEOUT_MS));
    let event = |entry_type, value, error| ClientEvent {
        process: FINAL_PROCESS_BASE,
        entry_type,
        f: "read",
        key: None,
        value,
        error,
        node: None,
    };
    for _ in 0..FINAL_READ_ATTEMPTS_MAX {
        recorder.client(event(EntryType::Invoke, Value::Null, None));
        match set.read_all(&client).await {
            Ok(elements) => {
                recorder.client(event(EntryType::Ok, elements, None));
                return Ok(());
            }
            Err(error) => {
                let error = Some(error.code().to_string());
                recorder.client(event(EntryType::Fail, Value::Null, error));
            }
        }
        tokio::time::sleep(Duration::from_millis(FINAL_READ_RETRY_MS)).await;
    }
    Err(format!(
        "the final read failed {FINAL_READ_ATTEMPTS_MAX} times"
    ))
}
