//! Jepsen-style logical client processes.
//!
//! Each process is one sequential client: it invokes an operation, waits for its
//! outcome, records both, and only then invokes the next. A process whose operation
//! ended `info` (outcome unknown) is retired, because that operation may still take
//! effect at any time; a new process id takes its place with fresh SDK clients, hence a
//! fresh session. Processes are paced together to the run's rate.
//!
//! A workload may ask for a *follow-up* right after an operation (the queue's ack of
//! the message a receive returned); it runs at once, outside the pacing, even past the
//! time limit (it completes the operation before it). It may also
//! let a process go on without a pacer slot (a queue consumer that just got a message
//! receives again at once, so consumers keep the queue near empty and their long polls
//! do the waiting), at most `UNPACED_RUN_MAX` operations in a row.
//!
//! A process has a *home* node. Its write client lists the home node first (the SDK
//! follows leader hints from there); its read client knows only the home node, so
//! linearizable reads are served by followers as well as by the leader.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn::client::{Client, Error};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::Value;

use super::cluster::Cluster;
use super::grudge::NodeId;
use super::recorder::{ClientEvent, EntryType, Recorder};
use super::workload::Workload;

/// Deadline of one write, SDK retries included: past it the outcome is unknown.
pub const WRITE_TIMEOUT_MS: u64 = 3_000;
/// Deadline of one read; a read that misses it simply failed (it changed nothing).
pub const READ_TIMEOUT_MS: u64 = 1_500;
/// Operations in a row a process may run without a pacer slot when its workload asks
/// (a queue consumer working through a backlog); then it takes a slot again.
const UNPACED_RUN_MAX: u32 = 50;
/// Extra time the harness allows an operation beyond its SDK deadline before it
/// records the outcome as unknown itself.
const OPERATION_SLACK_MS: u64 = 2_000;

/// One operation to invoke.
#[derive(Clone, Debug)]
pub struct Op {
    pub f: &'static str,
    pub key: Option<String>,
    pub value: Value,
}

/// How an operation ended.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Took effect; the completion's value.
    Ok(Value),
    /// Definitely did not take effect (or, error `mismatch`, a CAS that compared false).
    Fail { error: String },
    /// Unknown: it may take effect, now or later.
    Info { error: String },
}

/// A process's clients.
pub struct Session {
    pub process: u64,
    pub node_name: String,
    pub writer: Client,
    pub reader: Client,
}

impl Session {
    pub fn new(process: u64, home: NodeId, cluster: &Cluster) -> Result<Session, String> {
        let writer = Client::connect(cluster.endpoints_from(home))
            .map_err(|e| e.to_string())?
            .with_call_timeout(Duration::from_millis(WRITE_TIMEOUT_MS));
        let reader = Client::connect([cluster.grpc_addr(home).to_string()])
            .map_err(|e| e.to_string())?
            .with_call_timeout(Duration::from_millis(READ_TIMEOUT_MS));
        Ok(Session {
            process,
            node_name: format!("n{home}"),
            writer,
            reader,
        })
    }
}

/// The outcome of a write that returned `error`. Errors cairn documents as "nothing
/// changed" are `fail`; transport errors, timeouts, leader changes and anything
/// unrecognised leave the outcome unknown.
pub fn write_error_outcome(error: &Error) -> Outcome {
    let definite = match error {
        Error::VersionMismatch(_) => return fail("mismatch"),
        Error::AlreadyExists(_) => return fail("exists"),
        Error::NotFound(_)
        | Error::InvalidArgument { .. }
        | Error::LimitExceeded { .. }
        | Error::InvalidEndpoint(_)
        | Error::Fs { .. } => true,
        Error::Rejected { code, .. } => {
            code == "session_expired" || code == "session_window_exceeded"
        }
        Error::NotLeader { .. }
        | Error::Unavailable(_)
        | Error::Timeout(_)
        | Error::Internal(_) => false,
    };
    if definite {
        fail(error.code())
    } else {
        Outcome::Info {
            error: format!("{}: {error}", error.code()),
        }
    }
}

/// The outcome of a read that returned `error`: reads change nothing, so `fail`.
pub fn read_error_outcome(error: &Error) -> Outcome {
    fail(error.code())
}

fn fail(error: &str) -> Outcome {
    Outcome::Fail {
        error: error.to_string(),
    }
}

/// Spaces operations of all processes `1 / rate` apart.
pub struct Pacer {
    period: Duration,
    next: std::sync::Mutex<Instant>,
}

impl Pacer {
    pub fn new(rate_per_sec: u32) -> Pacer {
        Pacer {
            period: Duration::from_secs(1) / rate_per_sec.max(1),
            next: std::sync::Mutex::new(Instant::now()),
        }
    }

    /// Waits for this caller's slot; false (at once) if the slot is past `deadline`.
    pub async fn wait(&self, deadline: Instant) -> bool {
        let slot = {
            let mut next = self.next.lock().expect("pacer lock is never poisoned");
            let slot = (*next).max(Instant::now());
            *next = slot + self.period;
            slot
        };
        if slot >= deadline {
            return false;
        }
        tokio::time::sleep_until(slot.into()).await;
        true
    }
}

/// What every process shares.
pub struct Processes {
    pub cluster: Arc<Cluster>,
    pub recorder: Arc<Recorder>,
    pub workload: Arc<Workload>,
    pub pacer: Pacer,
    /// No operation is invoked after this.
    pub deadline: Instant,
    /// Number of concurrent processes; a retired id `p` is replaced by `p + concurrency`.
    pub concurrency: usize,
    pub seed: u64,
}

/// Runs process slot `slot` until the deadline; returns how many operations it ran.
/// Slot `s` is homed on node `s mod n`; the first slots (one per node) are readers.
pub async fn run_slot(shared: Arc<Processes>, slot: usize) -> Result<u64, String> {
    let ids = shared.cluster.ids();
    let home = ids[slot % ids.len()];
    // One reader per node, as long as at least as many processes are left to write.
    let reader = slot < ids.len().min(shared.concurrency / 2);
    let mut rng = StdRng::seed_from_u64(shared.seed ^ (slot as u64).wrapping_mul(0x9e37_79b9));
    let mut session = Session::new(slot as u64, home, &shared.cluster)?;
    let mut count = 0;
    let mut unpaced_run = 0;
    loop {
        let go = if unpaced_run > 0 {
            Instant::now() < shared.deadline
        } else {
            shared.pacer.wait(shared.deadline).await
        };
        if !go {
            break;
        }
        let op = shared.workload.next_op(&mut rng, session.process, reader);
        let mut outcome = invoke(&shared.recorder, &shared.workload, &session, &op).await;
        count += 1;
        // A follow-up (the queue's ack of a message just received) runs at once, without
        // a pacer slot, so it lands well within the message's lease; at most one. It
        // completes its operation, so it runs even past the deadline.
        if let Some(follow_up) = shared.workload.follow_up(session.process) {
            outcome = invoke(&shared.recorder, &shared.workload, &session, &follow_up).await;
            count += 1;
        }
        let unpaced = shared.workload.next_unpaced(reader, &outcome);
        unpaced_run = if unpaced && unpaced_run < UNPACED_RUN_MAX {
            unpaced_run + 1
        } else {
            0
        };
        if matches!(outcome, Outcome::Info { .. }) {
            let process = session.process + shared.concurrency as u64;
            session = Session::new(process, home, &shared.cluster)?;
        }
    }
    Ok(count)
}

/// Records the invocation, runs the operation (bounded), records the completion.
pub async fn invoke(
    recorder: &Recorder,
    workload: &Workload,
    session: &Session,
    op: &Op,
) -> Outcome {
    let event = |entry_type, value, error| ClientEvent {
        process: session.process,
        entry_type,
        f: op.f,
        key: op.key.as_deref(),
        value,
        error,
        node: Some(session.node_name.clone()),
    };
    recorder.client(event(EntryType::Invoke, op.value.clone(), None));
    let limit = Duration::from_millis(WRITE_TIMEOUT_MS.max(READ_TIMEOUT_MS) + OPERATION_SLACK_MS);
    let outcome = tokio::time::timeout(limit, workload.execute(session, op))
        .await
        .unwrap_or_else(|_| Outcome::Info {
            error: "harness-timeout".to_string(),
        });
    workload.observe(session.process, op, &outcome);
    let completion = match &outcome {
        Outcome::Ok(value) => event(EntryType::Ok, value.clone(), None),
        Outcome::Fail { error } => event(EntryType::Fail, op.value.clone(), Some(error.clone())),
        Outcome::Info { error } => event(EntryType::Info, op.value.clone(), Some(error.clone())),
    };
    recorder.client(completion);
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(outcome: Outcome) -> (bool, String) {
        match outcome {
            Outcome::Fail { error } => (true, error),
            Outcome::Info { error } => (false, error),
            Outcome::Ok(_) => panic!("an error never maps to ok"),
        }
    }

    #[test]
    fn a_version_mismatch_is_the_checkers_cas_mismatch() {
        let outcome = write_error_outcome(&Error::VersionMismatch("v".into()));
        assert_eq!(error_of(outcome), (true, "mismatch".to_string()));
    }

    #[test]
    fn errors_cairn_documents_as_no_op_are_definite_failures() {
        let expired = Error::Rejected {
            code: "session_expired".into(),
            message: String::new(),
        };
        assert!(error_of(write_error_outcome(&expired)).0);
        assert!(error_of(write_error_outcome(&Error::AlreadyExists("k".into()))).0);
    }

    #[test]
    fn timeouts_leader_changes_and_unknown_codes_leave_a_write_unknown() {
        let unknown_code = Error::Rejected {
            code: "something_new".into(),
            message: String::new(),
        };
        for error in [
            Error::Timeout("t".into()),
            Error::Unavailable("u".into()),
            Error::NotLeader { leader_addr: None },
            Error::Internal("i".into()),
            unknown_code,
        ] {
            assert!(!error_of(write_error_outcome(&error)).0, "{error:?}");
        }
    }

    #[test]
    fn a_failed_read_is_a_failure() {
        assert!(error_of(read_error_outcome(&Error::Timeout("t".into()))).0);
    }
}
