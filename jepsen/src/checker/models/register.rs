//! Jepsen's cas-register: an integer register per key (initially `nil`) with read,
//! write and compare-and-set. This is the model of Porcupine's etcd fixtures.
//!
//! Record values: `read` completes with an integer or `null`; `write` invokes with an
//! integer; `cas` invokes with `[expected, new]`. A `cas` failing with
//! [`crate::history::CAS_MISMATCH_ERROR`] means the register did not hold `expected`.

use crate::checker::model::{partition_by_key, Model, Partition};
use crate::checker::models::{bad_value, ending, operation, unknown_function, Ending, KeyedInput};
use crate::error::Error;
use crate::history::{OpRecord, Operation, Value};

/// A register operation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RegisterOp {
    Read,
    Write(i64),
    Cas { expected: i64, new: i64 },
}

/// What a register operation returned.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RegisterOutput {
    Read(Option<i64>),
    Written,
    CasSucceeded,
    CasFailed,
}

pub type RegisterInput = KeyedInput<RegisterOp>;
pub type RegisterOperation = Operation<RegisterInput, RegisterOutput>;

/// The register model; the state is the value (`None` = never written).
#[derive(Clone, Copy, Debug, Default)]
pub struct RegisterModel;

impl Model for RegisterModel {
    type Input = RegisterInput;
    type Output = RegisterOutput;
    type State = Option<i64>;

    fn init(&self) -> Option<i64> {
        None
    }

    fn step(
        &self,
        state: &Option<i64>,
        input: &RegisterInput,
        output: Option<&RegisterOutput>,
    ) -> Option<Option<i64>> {
        match (&input.op, output) {
            (RegisterOp::Read, None) => Some(*state),
            (RegisterOp::Read, Some(RegisterOutput::Read(seen))) => {
                (seen == state).then_some(*state)
            }
            (RegisterOp::Write(value), None | Some(RegisterOutput::Written)) => Some(Some(*value)),
            (RegisterOp::Cas { expected, new }, None) => Some(if *state == Some(*expected) {
                Some(*new)
            } else {
                *state
            }),
            (RegisterOp::Cas { expected, new }, Some(RegisterOutput::CasSucceeded)) => {
                (*state == Some(*expected)).then_some(Some(*new))
            }
            (RegisterOp::Cas { expected, .. }, Some(RegisterOutput::CasFailed)) => {
                (*state != Some(*expected)).then_some(*state)
            }
            _ => None,
        }
    }

    fn is_read_only(&self, input: &RegisterInput) -> bool {
        input.op == RegisterOp::Read
    }

    fn partition(
        &self,
        operations: Vec<RegisterOperation>,
    ) -> Vec<Partition<RegisterInput, RegisterOutput>> {
        partition_by_key(operations, |input| &input.key)
    }
}

/// Decodes paired records (`read`, `write`, `cas`) into register operations.
pub fn decode(records: &[OpRecord]) -> Result<Vec<RegisterOperation>, Error> {
    let mut operations = Vec::with_capacity(records.len());
    for record in records {
        if let Some(operation) = decode_record(record)? {
            operations.push(operation);
        }
    }
    Ok(operations)
}

fn decode_record(record: &OpRecord) -> Result<Option<RegisterOperation>, Error> {
    let ending = ending(record);
    let (op, output) = match record.f.as_str() {
        "read" => {
            let output = match ending {
                Ending::Ok(value) => Some(RegisterOutput::Read(optional_integer(record, value)?)),
                Ending::Unknown => None,
                Ending::DidNotHappen | Ending::CasMismatch => return Ok(None),
            };
            (RegisterOp::Read, output)
        }
        "write" => {
            let value = integer(record, &record.invoke_value)?;
            let output = match ending {
                Ending::Ok(_) => Some(RegisterOutput::Written),
                Ending::Unknown => None,
                Ending::DidNotHappen | Ending::CasMismatch => return Ok(None),
            };
            (RegisterOp::Write(value), output)
        }
        "cas" => {
            let (expected, new) = integer_pair(record)?;
            let output = match ending {
                Ending::Ok(_) => Some(RegisterOutput::CasSucceeded),
                Ending::CasMismatch => Some(RegisterOutput::CasFailed),
                Ending::Unknown => None,
                Ending::DidNotHappen => return Ok(None),
            };
            (RegisterOp::Cas { expected, new }, output)
        }
        _ => return Err(unknown_function(record, "register")),
    };
    let input = KeyedInput {
        key: record.key.clone().unwrap_or_default(),
        op,
    };
    Ok(Some(operation(record, input, output)))
}

fn integer(record: &OpRecord, value: &Value) -> Result<i64, Error> {
    value
        .as_i64()
        .ok_or_else(|| bad_value(record, "an integer", value))
}

fn optional_integer(record: &OpRecord, value: &Value) -> Result<Option<i64>, Error> {
    match value {
        Value::Null => Ok(None),
        other => integer(record, other).map(Some),
    }
}

fn integer_pair(record: &OpRecord) -> Result<(i64, i64), Error> {
    let value = &record.invoke_value;
    match value.as_array().map(Vec::as_slice) {
        Some([first, second]) => Ok((integer(record, first)?, integer(record, second)?)),
        _ => Err(bad_value(record, "[expected new]", value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::linear::{check_operations, CheckOptions};
    use crate::checker::Verdict;
    use std::time::Duration;

    fn op(
        process: u64,
        call: u64,
        ret: Option<u64>,
        op: RegisterOp,
        output: Option<RegisterOutput>,
    ) -> RegisterOperation {
        Operation {
            process,
            call_time: call,
            return_time: ret,
            input: KeyedInput {
                key: String::new(),
                op,
            },
            output,
            line_number: call,
        }
    }

    fn verdict(operations: Vec<RegisterOperation>) -> Verdict {
        let options = CheckOptions::new(Duration::from_secs(10));
        check_operations(&RegisterModel, operations, &options).verdict
    }

    #[test]
    fn a_read_after_a_completed_write_sees_it() {
        let history = vec![
            op(
                0,
                0,
                Some(10),
                RegisterOp::Write(1),
                Some(RegisterOutput::Written),
            ),
            op(
                1,
                20,
                Some(30),
                RegisterOp::Read,
                Some(RegisterOutput::Read(Some(1))),
            ),
        ];
        assert_eq!(verdict(history), Verdict::Valid);
    }

    #[test]
    fn a_stale_read_is_invalid() {
        let history = vec![
            op(
                0,
                0,
                Some(10),
                RegisterOp::Write(1),
                Some(RegisterOutput::Written),
            ),
            op(
                0,
                20,
                Some(30),
                RegisterOp::Write(2),
                Some(RegisterOutput::Written),
            ),
            op(
                1,
                40,
                Some(50),
                RegisterOp::Read,
                Some(RegisterOutput::Read(Some(1))),
            ),
        ];
        assert_eq!(verdict(history), Verdict::Invalid);
    }

    #[test]
    fn a_concurrent_read_may_see_either_value() {
        let history = vec![
            op(
                0,
                0,
                Some(10),
                RegisterOp::Write(1),
                Some(RegisterOutput::Written),
            ),
            op(
                0,
                20,
                Some(50),
                RegisterOp::Write(2),
                Some(RegisterOutput::Written),
            ),
            op(
                1,
                30,
                Some(40),
                RegisterOp::Read,
                Some(RegisterOutput::Read(Some(1))),
            ),
            op(
                2,
                30,
                Some(40),
                RegisterOp::Read,
                Some(RegisterOutput::Read(Some(2))),
            ),
        ];
        assert_eq!(verdict(history), Verdict::Valid);
    }

    #[test]
    fn a_crashed_write_may_take_effect_late_or_never() {
        let crashed = op(0, 0, None, RegisterOp::Write(7), None);
        let late_read = op(
            1,
            100,
            Some(110),
            RegisterOp::Read,
            Some(RegisterOutput::Read(Some(7))),
        );
        let early_read = op(
            2,
            50,
            Some(60),
            RegisterOp::Read,
            Some(RegisterOutput::Read(None)),
        );
        assert_eq!(
            verdict(vec![crashed.clone(), early_read.clone(), late_read]),
            Verdict::Valid
        );
        assert_eq!(verdict(vec![crashed, early_read]), Verdict::Valid);
    }

    #[test]
    fn cas_outcomes_must_match_the_value() {
        let write = op(
            0,
            0,
            Some(10),
            RegisterOp::Write(1),
            Some(RegisterOutput::Written),
        );
        let cas = RegisterOp::Cas {
            expected: 1,
            new: 2,
        };
        let failed_cas = op(
            1,
            20,
            Some(30),
            cas.clone(),
            Some(RegisterOutput::CasFailed),
        );
        assert_eq!(verdict(vec![write.clone(), failed_cas]), Verdict::Invalid);
        let good_cas = op(1, 20, Some(30), cas, Some(RegisterOutput::CasSucceeded));
        let read = op(
            2,
            40,
            Some(50),
            RegisterOp::Read,
            Some(RegisterOutput::Read(Some(2))),
        );
        assert_eq!(verdict(vec![write, good_cas, read]), Verdict::Valid);
    }

    #[test]
    fn decodes_jepsen_log_conventions() {
        let text = "INFO jepsen.util - 0 :invoke :cas [1 2]\n\
                    INFO jepsen.util - 1 :invoke :read nil\n\
                    INFO jepsen.util - 0 :fail :cas [1 2]\n\
                    INFO jepsen.util - 1 :fail :read :timed-out\n\
                    INFO jepsen.util - 2 :invoke :write 3\n";
        let events = crate::formats::jepsen_log::parse(text).expect("valid log");
        let records = crate::history::pair_events(&events).expect("pairs");
        let operations = decode(&records).expect("decodes");
        assert_eq!(operations.len(), 3);
        assert_eq!(operations[0].output, Some(RegisterOutput::CasFailed));
        assert_eq!(operations[1].output, None);
        assert_eq!(operations[2].return_time, None);
    }

    #[test]
    fn undecodable_records_are_errors() {
        let text = "INFO jepsen.util - 0 :invoke :cas 5\nINFO jepsen.util - 0 :ok :cas 5\n";
        let events = crate::formats::jepsen_log::parse(text).expect("valid log");
        let records = crate::history::pair_events(&events).expect("pairs");
        assert!(decode(&records).is_err());
        let text = "INFO jepsen.util - 0 :invoke :incr 5\n";
        let events = crate::formats::jepsen_log::parse(text).expect("valid log");
        let records = crate::history::pair_events(&events).expect("pairs");
        assert!(decode(&records).is_err());
    }
}
