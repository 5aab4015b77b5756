//! A string register per key, initially empty, with get / put / append: the model of
//! Porcupine's KV fixtures (`test_data/kv/cNN-*.txt`).
//!
//! Record values: `put` and `append` invoke with a string; `get` completes with the
//! current string (`null` reads as the empty string, which is where every key starts).

use crate::checker::model::{partition_by_key, Model, Partition};
use crate::checker::models::{bad_value, ending, operation, unknown_function, Ending, KeyedInput};
use crate::error::Error;
use crate::history::{OpRecord, Operation, Value};

/// A KV operation on one key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvOp {
    Get,
    Put(String),
    Append(String),
}

/// What a KV operation returned.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvOutput {
    Got(String),
    Done,
}

pub type KvInput = KeyedInput<KvOp>;
pub type KvOperation = Operation<KvInput, KvOutput>;

/// The KV model; the state of one key's partition is its string.
#[derive(Clone, Copy, Debug, Default)]
pub struct KvModel;

impl Model for KvModel {
    type Input = KvInput;
    type Output = KvOutput;
    type State = String;

    fn init(&self) -> String {
        String::new()
    }

    fn step(&self, state: &String, input: &KvInput, output: Option<&KvOutput>) -> Option<String> {
        match (&input.op, output) {
            (KvOp::Get, None) => Some(state.clone()),
            (KvOp::Get, Some(KvOutput::Got(seen))) => (seen == state).then(|| state.clone()),
            (KvOp::Put(value), None | Some(KvOutput::Done)) => Some(value.clone()),
            (KvOp::Append(suffix), None | Some(KvOutput::Done)) => Some(format!("{state}{suffix}")),
            _ => None,
        }
    }

    fn is_read_only(&self, input: &KvInput) -> bool {
        input.op == KvOp::Get
    }

    fn partition(&self, operations: Vec<KvOperation>) -> Vec<Partition<KvInput, KvOutput>> {
        partition_by_key(operations, |input| &input.key)
    }
}

/// Decodes paired records (`get`, `put`, `append`) into KV operations.
pub fn decode(records: &[OpRecord]) -> Result<Vec<KvOperation>, Error> {
    let mut operations = Vec::with_capacity(records.len());
    for record in records {
        if let Some(operation) = decode_record(record)? {
            operations.push(operation);
        }
    }
    Ok(operations)
}

fn decode_record(record: &OpRecord) -> Result<Option<KvOperation>, Error> {
    let ending = ending(record);
    let op = match record.f.as_str() {
        "get" => KvOp::Get,
        "put" => KvOp::Put(string(record, &record.invoke_value)?),
        "append" => KvOp::Append(string(record, &record.invoke_value)?),
        _ => return Err(unknown_function(record, "kv")),
    };
    let output = match ending {
        Ending::Ok(value) if op == KvOp::Get => Some(KvOutput::Got(string(record, value)?)),
        Ending::Ok(_) => Some(KvOutput::Done),
        Ending::Unknown => None,
        Ending::DidNotHappen | Ending::CasMismatch => return Ok(None),
    };
    let key = record.key.clone().unwrap_or_default();
    Ok(Some(operation(record, KeyedInput { key, op }, output)))
}

fn string(record: &OpRecord, value: &Value) -> Result<String, Error> {
    match value {
        Value::Null => Ok(String::new()),
        Value::String(text) => Ok(text.clone()),
        other => Err(bad_value(record, "a string", other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::linear::{check_operations, CheckOptions};
    use crate::checker::Verdict;
    use crate::formats::edn;
    use crate::history::pair_events;
    use std::time::Duration;

    fn verdict_of_edn(text: &str) -> Verdict {
        let events = edn::parse(text).expect("valid EDN");
        let operations = decode(&pair_events(&events).expect("pairs")).expect("decodes");
        let options = CheckOptions::new(Duration::from_secs(10));
        check_operations(&KvModel, operations, &options).verdict
    }

    #[test]
    fn appends_accumulate_per_key() {
        let text = r#"{:process 0, :type :invoke, :f :append, :key "a", :value "x"}
{:process 0, :type :ok, :f :append, :key "a", :value "x"}
{:process 0, :type :invoke, :f :append, :key "b", :value "z"}
{:process 0, :type :ok, :f :append, :key "b", :value "z"}
{:process 1, :type :invoke, :f :append, :key "a", :value "y"}
{:process 1, :type :ok, :f :append, :key "a", :value "y"}
{:process 2, :type :invoke, :f :get, :key "a", :value nil}
{:process 2, :type :ok, :f :get, :key "a", :value "xy"}
{:process 2, :type :invoke, :f :get, :key "c", :value nil}
{:process 2, :type :ok, :f :get, :key "c", :value ""}"#;
        assert_eq!(verdict_of_edn(text), Verdict::Valid);
    }

    #[test]
    fn a_lost_write_is_invalid() {
        // The put of "new" completed before the get began, yet the get saw "old".
        let text = r#"{:process 0, :type :invoke, :f :put, :key "k", :value "old"}
{:process 0, :type :ok, :f :put, :key "k", :value "old"}
{:process 1, :type :invoke, :f :put, :key "k", :value "new"}
{:process 1, :type :ok, :f :put, :key "k", :value "new"}
{:process 2, :type :invoke, :f :get, :key "k", :value nil}
{:process 2, :type :ok, :f :get, :key "k", :value "old"}"#;
        assert_eq!(verdict_of_edn(text), Verdict::Invalid);
    }

    #[test]
    fn a_crashed_append_may_have_happened() {
        let text = r#"{:process 0, :type :invoke, :f :append, :key "k", :value "x"}
{:process 0, :type :info, :f :append, :key "k", :value "x"}
{:process 2, :type :invoke, :f :get, :key "k", :value nil}
{:process 2, :type :ok, :f :get, :key "k", :value "x"}"#;
        assert_eq!(verdict_of_edn(text), Verdict::Valid);
    }

    #[test]
    fn non_string_values_are_errors() {
        let text = r#"{:process 0, :type :invoke, :f :put, :key "k", :value 5}"#;
        let events = edn::parse(text).expect("valid EDN");
        assert!(decode(&pair_events(&events).expect("pairs")).is_err());
    }
}
