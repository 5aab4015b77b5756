//! The `register` workload: get / put / cas on independent keys of namespace
//! `jepsen`, checked with the versioned-KV linearizability model, one partition per key.
//!
//! All processes work on the same key at once (so reads on followers race with writes
//! on the leader), and after [`OPS_PER_KEY_MAX`] operations the generator moves on to a
//! fresh key, which keeps every partition small enough to check. Values are unique
//! (`<process>-<n>`); a cas expects the newest version any client has seen on the key.
//!
//! As in Jepsen's etcd test, one process per node only reads: a reader never waits
//! out a write stuck on a deposed leader, so every node, the isolated one included,
//! keeps serving reads throughout a fault. The other processes mostly write.

use std::sync::Mutex;

use cairn::client::PutOptions;
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value};

use super::client::{read_error_outcome, write_error_outcome, Op, Outcome, Session};

/// Operations per key before the generator moves to a new key (Jepsen's etcd default).
pub const OPS_PER_KEY_MAX: u64 = 200;
/// Share of reads among a writer process's operations, in percent.
const WRITER_READ_PERCENT: u32 = 20;
/// Share of cas among writes, in percent (the rest are plain puts).
const CAS_PERCENT_OF_WRITES: u32 = 50;

/// Where a per-key workload stands: every process works on the current key, and the
/// generator moves to a fresh key once the key's budget of operations is spent.
#[derive(Default)]
pub struct KeyCursor {
    pub key_index: u64,
    ops_on_key: u64,
    /// Counts operations over all keys; makes written values unique.
    pub next_value: u64,
}

impl KeyCursor {
    /// Counts one more operation; true if it starts a fresh key.
    pub fn advance(&mut self, ops_per_key_max: u64) -> bool {
        let fresh = self.ops_on_key >= ops_per_key_max;
        if fresh {
            self.key_index += 1;
            self.ops_on_key = 0;
        }
        self.ops_on_key += 1;
        self.next_value += 1;
        fresh
    }
}

#[derive(Default)]
struct KeyState {
    cursor: KeyCursor,
    /// Highest version seen on the current key.
    newest_version: Option<u64>,
}

pub struct RegisterWorkload {
    pub namespace: String,
    state: Mutex<KeyState>,
}

pub fn key_name(index: u64) -> String {
    format!("r{index}")
}

impl RegisterWorkload {
    pub fn new(namespace: &str) -> RegisterWorkload {
        RegisterWorkload {
            namespace: namespace.to_string(),
            state: Mutex::new(KeyState::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, KeyState> {
        self.state
            .lock()
            .expect("register state lock is never poisoned")
    }

    /// Keys used so far, oldest first.
    pub fn keys(&self) -> Vec<String> {
        (0..=self.state().cursor.key_index).map(key_name).collect()
    }

    /// The next operation of `process`; a `reader` process only reads.
    pub fn next_op(&self, rng: &mut StdRng, process: u64, reader: bool) -> Op {
        let mut state = self.state();
        if state.cursor.advance(OPS_PER_KEY_MAX) {
            state.newest_version = None;
        }
        let key = Some(key_name(state.cursor.key_index));
        let value = format!("{process}-{}", state.cursor.next_value);
        if reader || rng.gen_range(0..100) < WRITER_READ_PERCENT {
            return Op {
                f: "get",
                key,
                value: Value::Null,
            };
        }
        match state.newest_version {
            Some(version) if rng.gen_range(0..100) < CAS_PERCENT_OF_WRITES => Op {
                f: "cas",
                key,
                value: json!([version, value]),
            },
            _ => Op {
                f: "put",
                key,
                value: json!(value),
            },
        }
    }

    pub async fn execute(&self, session: &Session, op: &Op) -> Outcome {
        let key = op.key.as_deref().unwrap_or_default().as_bytes();
        match op.f {
            "get" => match session.reader.get(&self.namespace, key).await {
                Ok(None) => Outcome::Ok(Value::Null),
                Ok(Some(found)) => {
                    let text = String::from_utf8_lossy(&found.value).into_owned();
                    Outcome::Ok(json!([found.version, text]))
                }
                Err(error) => read_error_outcome(&error),
            },
            "put" => {
                let value = op.value.as_str().unwrap_or_default();
                let written = session
                    .writer
                    .put(&self.namespace, key, value.as_bytes())
                    .await;
                written_outcome(written, value)
            }
            _ => {
                let expected = op.value[0].as_u64().unwrap_or_default();
                let value = op.value[1].as_str().unwrap_or_default();
                let options = PutOptions::if_version(expected);
                let written = session
                    .writer
                    .put_with(&self.namespace, key, value.as_bytes(), options)
                    .await;
                written_outcome(written, value)
            }
        }
    }

    /// Remembers the newest version seen on the current key, for the next cas.
    pub fn observe(&self, op: &Op, outcome: &Outcome) {
        let Outcome::Ok(value) = outcome else {
            return;
        };
        let Some(version) = value.get(0).and_then(Value::as_u64) else {
            return;
        };
        let mut state = self.state();
        if op.key.as_deref() == Some(key_name(state.cursor.key_index).as_str())
            && state.newest_version.is_none_or(|newest| version > newest)
        {
            state.newest_version = Some(version);
        }
    }
}

fn written_outcome(written: Result<u64, cairn::client::Error>, value: &str) -> Outcome {
    match written {
        Ok(version) => Outcome::Ok(json!([version, value])),
        Err(error) => write_error_outcome(&error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn the_generator_moves_to_a_fresh_key_after_the_per_key_budget() {
        let workload = RegisterWorkload::new("jepsen");
        let mut rng = StdRng::seed_from_u64(1);
        let keys: Vec<Option<String>> = (0..=OPS_PER_KEY_MAX)
            .map(|_| workload.next_op(&mut rng, 0, false).key)
            .collect();
        assert!(keys[..OPS_PER_KEY_MAX as usize]
            .iter()
            .all(|k| k.as_deref() == Some("r0")));
        assert_eq!(keys[OPS_PER_KEY_MAX as usize].as_deref(), Some("r1"));
        assert_eq!(workload.keys(), ["r0", "r1"]);
    }

    #[test]
    fn readers_only_read_and_cas_expects_the_newest_version_seen() {
        let workload = RegisterWorkload::new("jepsen");
        let mut rng = StdRng::seed_from_u64(2);
        assert!((0..50).all(|_| workload.next_op(&mut rng, 0, true).f == "get"));
        let put = Op {
            f: "put",
            key: Some(key_name(0)),
            value: json!("0-1"),
        };
        workload.observe(&put, &Outcome::Ok(json!([7, "0-1"])));
        workload.observe(&put, &Outcome::Ok(json!([5, "0-0"])));
        let cas = (0..200)
            .map(|_| workload.next_op(&mut rng, 3, false))
            .find(|op| op.f == "cas")
            .expect("writers issue a cas once a version is known");
        assert_eq!(cas.value[0], json!(7));
    }
}
