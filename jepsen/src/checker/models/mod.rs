//! The models the harness checks against, and the decoding of paired records into their
//! typed operations:
//!
//! - [`register`]: one integer register per key with read / write / cas (Jepsen's
//!   cas-register; the etcd fixtures).
//! - [`kv`]: one string per key, starting empty, with get / put / append (Porcupine's KV
//!   fixtures).
//! - [`versioned_kv`]: cairn's KV API: get → (value, version), put → version,
//!   cas on the version, delete.
//!
//! All three partition by key. Decoding applies the meaning of `fail`: the operation
//! did not take effect and is left out, except a CAS failing with
//! [`crate::history::CAS_MISMATCH_ERROR`], which ran and found the comparison false.

pub mod kv;
pub mod register;
pub mod versioned_kv;

use std::fmt;

use crate::error::Error;
use crate::history::{Completion, OpRecord, Operation, Value};

/// An operation on one key of a keyed store. Keyless histories use the empty key.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KeyedInput<Op> {
    pub key: String,
    pub op: Op,
}

impl<Op: fmt::Debug> fmt::Debug for KeyedInput<Op> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(formatter, "{:?}", self.op)
        } else {
            write!(formatter, "{:?} {:?}", self.key, self.op)
        }
    }
}

/// How a record ended, in the terms models decode.
pub(crate) enum Ending<'a> {
    /// Took effect, with this completion value.
    Ok(&'a Value),
    /// A CAS that ran and found its comparison false.
    CasMismatch,
    /// Definitely did not take effect: not part of the history.
    DidNotHappen,
    /// May or may not have taken effect.
    Unknown,
}

pub(crate) fn ending(record: &OpRecord) -> Ending<'_> {
    match &record.completion {
        Completion::Ok(value) => Ending::Ok(value),
        Completion::Fail { .. } if record.is_cas_mismatch() => Ending::CasMismatch,
        Completion::Fail { .. } => Ending::DidNotHappen,
        Completion::Unknown => Ending::Unknown,
    }
}

/// Builds the operation for `record` with the given typed input and output.
pub(crate) fn operation<I, O>(record: &OpRecord, input: I, output: Option<O>) -> Operation<I, O> {
    Operation {
        process: record.process,
        call_time: record.call_time,
        return_time: record.return_time,
        input,
        output,
        line_number: record.line_number,
    }
}

pub(crate) fn bad_value(record: &OpRecord, what: &str, value: &Value) -> Error {
    let message = format!(":{} expects {what}, got {value}", record.f);
    Error::history(record.line_number, message)
}

pub(crate) fn unknown_function(record: &OpRecord, model: &str) -> Error {
    let message = format!("the {model} model has no function :{}", record.f);
    Error::history(record.line_number, message)
}
