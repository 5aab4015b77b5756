//! cairn's KV API as a versioned register per key: get returns the value and its
//! version, put returns the new version, cas writes only if the current version equals
//! an expected one (cairn's `if_version`), delete removes the key.
//!
//! What the model assumes about versions, chosen to hold whether cairn numbers them per
//! key or by Raft log index: every successful put or cas gives the key a version
//! strictly greater than the one it replaces, and a get returns exactly the version of
//! the write it sees. After a delete the next version is only required to be positive,
//! in case versions restart when a key is re-created.
//!
//! A crashed put or cas leaves the new version unknown, so a state records either the
//! exact version or a lower bound ("above f"). A crashed cas whose comparison cannot be
//! decided from such a bound may or may not have applied, so this model is
//! nondeterministic and is checked through [`Powerset`]. The bound makes the model
//! sound (it never reports a valid history invalid) but lets a few anomalies involving
//! crashed writes go unseen.
//!
//! Record values (JSONL): `get` completes with `null` (absent) or `[version, "value"]`;
//! `put` invokes with `"value"` and completes with `[version, "value"]`; `cas` invokes
//! with `[expected_version, "value"]` and completes with `[version, "value"]`, or fails
//! with `error: "mismatch"`; a put or cas completing with `null` wrote a version the
//! client did not see; `delete` needs no value.

use crate::checker::model::{partition_by_key, NondeterministicModel, Partition, Powerset};
use crate::checker::models::{bad_value, ending, operation, unknown_function, Ending, KeyedInput};
use crate::error::Error;
use crate::history::{OpRecord, Operation, Value};

/// A versioned KV operation on one key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum VersionedOp {
    Get,
    Put(String),
    Cas {
        expected_version: u64,
        value: String,
    },
    Delete,
}

/// What a versioned KV operation returned.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum VersionedOutput {
    /// `None`: the key is absent.
    Got(Option<(String, u64)>),
    /// A put or a successful cas, with the version it wrote if the client saw it.
    Written {
        version: Option<u64>,
    },
    /// A cas whose expected version did not match.
    CasMismatch,
    Deleted,
}

pub type VersionedInput = KeyedInput<VersionedOp>;
pub type VersionedOperation = Operation<VersionedInput, VersionedOutput>;

/// What is known of a key's version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VersionKnowledge {
    Exactly(u64),
    /// Some version strictly greater than this.
    Above(u64),
}

impl VersionKnowledge {
    fn may_equal(self, version: u64) -> bool {
        match self {
            VersionKnowledge::Exactly(known) => known == version,
            VersionKnowledge::Above(floor) => version > floor,
        }
    }

    fn must_equal(self, version: u64) -> bool {
        self == VersionKnowledge::Exactly(version)
    }

    /// A version written next must be greater than this.
    fn floor(self) -> u64 {
        match self {
            VersionKnowledge::Exactly(version) | VersionKnowledge::Above(version) => version,
        }
    }
}

/// One possible state of a key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VersionedState {
    pub value: Option<String>,
    pub version: VersionKnowledge,
}

const ABSENT: VersionedState = VersionedState {
    value: None,
    version: VersionKnowledge::Exactly(0),
};

/// The nondeterministic versioned register; check it as [`VersionedKvModel`].
#[derive(Clone, Copy, Debug, Default)]
pub struct VersionedRegister;

/// The versioned KV model, ready for `check_operations`.
pub type VersionedKvModel = Powerset<VersionedRegister>;

/// The model value to pass to the checker.
pub fn versioned_kv_model() -> VersionedKvModel {
    Powerset(VersionedRegister)
}

impl NondeterministicModel for VersionedRegister {
    type Input = VersionedInput;
    type Output = VersionedOutput;
    type State = VersionedState;

    fn init(&self) -> VersionedState {
        ABSENT
    }

    fn step_all(
        &self,
        state: &VersionedState,
        input: &VersionedInput,
        output: Option<&VersionedOutput>,
    ) -> Vec<VersionedState> {
        match &input.op {
            VersionedOp::Get => step_get(state, output).into_iter().collect(),
            VersionedOp::Put(value) => step_put(state, value, output).into_iter().collect(),
            VersionedOp::Cas {
                expected_version,
                value,
            } => step_cas(state, *expected_version, value, output),
            VersionedOp::Delete => match output {
                None | Some(VersionedOutput::Deleted) => vec![ABSENT],
                Some(_) => Vec::new(),
            },
        }
    }

    fn is_read_only(&self, input: &VersionedInput) -> bool {
        input.op == VersionedOp::Get
    }

    fn partition(
        &self,
        operations: Vec<VersionedOperation>,
    ) -> Vec<Partition<VersionedInput, VersionedOutput>> {
        partition_by_key(operations, |input| &input.key)
    }
}

fn step_get(state: &VersionedState, output: Option<&VersionedOutput>) -> Option<VersionedState> {
    match output {
        None => Some(state.clone()),
        Some(VersionedOutput::Got(None)) => state.value.is_none().then(|| state.clone()),
        Some(VersionedOutput::Got(Some((value, version)))) => {
            let matches = state.value.as_ref() == Some(value) && state.version.may_equal(*version);
            matches.then(|| VersionedState {
                value: Some(value.clone()),
                version: VersionKnowledge::Exactly(*version),
            })
        }
        Some(_) => None,
    }
}

fn step_put(
    state: &VersionedState,
    value: &str,
    output: Option<&VersionedOutput>,
) -> Option<VersionedState> {
    let floor = state.version.floor();
    let version = match output {
        None | Some(VersionedOutput::Written { version: None }) => VersionKnowledge::Above(floor),
        Some(VersionedOutput::Written {
            version: Some(version),
        }) if *version > floor => VersionKnowledge::Exactly(*version),
        Some(_) => return None,
    };
    Some(VersionedState {
        value: Some(value.to_string()),
        version,
    })
}

fn step_cas(
    state: &VersionedState,
    expected_version: u64,
    value: &str,
    output: Option<&VersionedOutput>,
) -> Vec<VersionedState> {
    let present = state.value.is_some();
    let may_apply = present && state.version.may_equal(expected_version);
    let must_apply = present && state.version.must_equal(expected_version);
    let written = |version| VersionedState {
        value: Some(value.to_string()),
        version,
    };
    match output {
        Some(VersionedOutput::Written {
            version: Some(version),
        }) if may_apply && *version > expected_version => {
            vec![written(VersionKnowledge::Exactly(*version))]
        }
        Some(VersionedOutput::Written { version: None }) if may_apply => {
            vec![written(VersionKnowledge::Above(expected_version))]
        }
        Some(VersionedOutput::CasMismatch) if !must_apply => vec![state.clone()],
        None => {
            let mut next = Vec::with_capacity(2);
            if may_apply {
                next.push(written(VersionKnowledge::Above(expected_version)));
            }
            if !must_apply {
                next.push(state.clone());
            }
            next
        }
        Some(_) => Vec::new(),
    }
}

/// Decodes paired records (`get`, `put`, `cas`, `delete`) into versioned KV operations.
pub fn decode(records: &[OpRecord]) -> Result<Vec<VersionedOperation>, Error> {
    let mut operations = Vec::with_capacity(records.len());
    for record in records {
        if let Some(operation) = decode_record(record)? {
            operations.push(operation);
        }
    }
    Ok(operations)
}

fn decode_record(record: &OpRecord) -> Result<Option<VersionedOperation>, Error> {
    let op = match record.f.as_str() {
        "get" => VersionedOp::Get,
        "put" => VersionedOp::Put(string(record, &record.invoke_value)?),
        "cas" => {
            let (expected_version, value) = version_and_value(record, &record.invoke_value)?;
            VersionedOp::Cas {
                expected_version,
                value,
            }
        }
        "delete" => VersionedOp::Delete,
        _ => return Err(unknown_function(record, "versioned-kv")),
    };
    let output = match ending(record) {
        Ending::Ok(value) => Some(decode_output(record, &op, value)?),
        Ending::CasMismatch if matches!(op, VersionedOp::Cas { .. }) => {
            Some(VersionedOutput::CasMismatch)
        }
        Ending::CasMismatch | Ending::DidNotHappen => return Ok(None),
        Ending::Unknown => None,
    };
    let key = record.key.clone().unwrap_or_default();
    Ok(Some(operation(record, KeyedInput { key, op }, output)))
}

fn decode_output(
    record: &OpRecord,
    op: &VersionedOp,
    value: &Value,
) -> Result<VersionedOutput, Error> {
    match op {
        VersionedOp::Get if value.is_null() => Ok(VersionedOutput::Got(None)),
        VersionedOp::Get => {
            let (version, text) = version_and_value(record, value)?;
            Ok(VersionedOutput::Got(Some((text, version))))
        }
        VersionedOp::Put(_) | VersionedOp::Cas { .. } if value.is_null() => {
            Ok(VersionedOutput::Written { version: None })
        }
        VersionedOp::Put(written) | VersionedOp::Cas { value: written, .. } => {
            let (version, text) = version_and_value(record, value)?;
            if &text != written {
                return Err(bad_value(record, "the value it was invoked with", value));
            }
            Ok(VersionedOutput::Written {
                version: Some(version),
            })
        }
        VersionedOp::Delete => Ok(VersionedOutput::Deleted),
    }
}

fn string(record: &OpRecord, value: &Value) -> Result<String, Error> {
    value
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| bad_value(record, "a string", value))
}

fn version_and_value(record: &OpRecord, value: &Value) -> Result<(u64, String), Error> {
    match value.as_array().map(Vec::as_slice) {
        Some([Value::Number(version), Value::String(text)]) => match version.as_u64() {
            Some(version) => Ok((version, text.clone())),
            None => Err(bad_value(record, "[version, \"value\"]", value)),
        },
        _ => Err(bad_value(record, "[version, \"value\"]", value)),
    }
}

#[cfg(test)]
mod tests;
