//! Histories at three levels of interpretation.
//!
//! 1. [`Event`]: one recorded line (an invocation or a completion), format-independent,
//!    with its value still an untyped JSON [`Value`].
//! 2. [`OpRecord`]: an invocation paired with its completion by [`pair_events`]. Pairing
//!    follows Jepsen's rules: each process has at most one operation open at a time; an
//!    `info` completion, or none at all by the end of the history, leaves the outcome
//!    unknown.
//! 3. [`Operation`]: a record decoded by a model into typed input and output (see
//!    `checker::models`), which is what the linearizability search consumes.
//!
//! Times are [`Time`] values from one monotonic clock; their unit depends on the source
//! (nanoseconds for JSONL, line numbers for Jepsen logs and EDN) and only their order
//! matters.

use std::collections::HashMap;
use std::fmt;

pub use serde_json::Value;

use crate::error::Error;

/// A point on the history's clock; only the order of two times is meaningful.
pub type Time = u64;

/// The `error` a `fail` completion of a compare-and-set carries when the comparison did
/// not hold (the CAS ran and changed nothing). Any other `fail` means the operation
/// definitely did not take effect.
pub const CAS_MISMATCH_ERROR: &str = "mismatch";

/// The kind of a recorded event, Jepsen's `:type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// The client sent the operation.
    Invoke,
    /// The operation definitely took effect.
    Ok,
    /// The operation definitely did not take effect (see [`CAS_MISMATCH_ERROR`]).
    Fail,
    /// The outcome is unknown (timeout, connection lost after sending).
    Info,
}

impl EventType {
    /// Parses Jepsen's spelling (`invoke`, `ok`, `fail`, `info`), without a leading colon.
    pub fn from_name(name: &str) -> Option<EventType> {
        match name {
            "invoke" => Some(EventType::Invoke),
            "ok" => Some(EventType::Ok),
            "fail" => Some(EventType::Fail),
            "info" => Some(EventType::Info),
            _ => None,
        }
    }
}

/// One recorded invocation or completion.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub process: u64,
    pub event_type: EventType,
    /// The operation's function, e.g. `read`, `put`, `cas` (no leading colon).
    pub f: String,
    /// The object the operation addresses, if the workload has several.
    pub key: Option<String>,
    pub value: Value,
    pub error: Option<String>,
    pub time: Time,
    /// Where the event was read from (1-based), for messages.
    pub line_number: u64,
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Completion {
    /// It took effect; the value is the completion's value.
    Ok(Value),
    /// It did not take effect, or (a CAS with [`CAS_MISMATCH_ERROR`]) ran without effect.
    Fail { value: Value, error: Option<String> },
    /// `info`, or no completion at all: it may or may not have taken effect.
    Unknown,
}

/// An invocation paired with its completion.
#[derive(Clone, Debug, PartialEq)]
pub struct OpRecord {
    pub process: u64,
    pub f: String,
    pub key: Option<String>,
    /// The value the invocation carried.
    pub invoke_value: Value,
    pub completion: Completion,
    pub call_time: Time,
    /// When the completion was recorded; `None` if it never was.
    pub return_time: Option<Time>,
    /// Line of the invocation.
    pub line_number: u64,
}

impl OpRecord {
    /// True if this is a CAS that ran and found the comparison false.
    pub fn is_cas_mismatch(&self) -> bool {
        matches!(&self.completion, Completion::Fail { error: Some(error), .. }
            if error == CAS_MISMATCH_ERROR)
    }
}

/// Pairs each invocation with the next completion of the same process.
///
/// Errors: a completion with no open invocation, a second invocation while the process
/// still has one open, a completion whose `f` differs from its invocation's, or a
/// completion recorded before its invocation. Operations come out in invocation order.
pub fn pair_events(events: &[Event]) -> Result<Vec<OpRecord>, Error> {
    let mut records: Vec<OpRecord> = Vec::new();
    let mut open_by_process: HashMap<u64, usize> = HashMap::new();
    for event in events {
        if event.event_type == EventType::Invoke {
            if let Some(&open) = open_by_process.get(&event.process) {
                let message = format!(
                    "process {} invoked again while its operation from line {} is open",
                    event.process, records[open].line_number
                );
                return Err(Error::history(event.line_number, message));
            }
            open_by_process.insert(event.process, records.len());
            records.push(record_from_invocation(event));
            continue;
        }
        let Some(open) = open_by_process.remove(&event.process) else {
            let message = format!("process {} completed with nothing open", event.process);
            return Err(Error::history(event.line_number, message));
        };
        complete_record(&mut records[open], event)?;
    }
    Ok(records)
}

fn record_from_invocation(event: &Event) -> OpRecord {
    OpRecord {
        process: event.process,
        f: event.f.clone(),
        key: event.key.clone(),
        invoke_value: event.value.clone(),
        completion: Completion::Unknown,
        call_time: event.time,
        return_time: None,
        line_number: event.line_number,
    }
}

fn complete_record(record: &mut OpRecord, event: &Event) -> Result<(), Error> {
    if record.f != event.f {
        let message = format!(
            "completion :{} does not match the invocation :{} of line {}",
            event.f, record.f, record.line_number
        );
        return Err(Error::history(event.line_number, message));
    }
    if event.time < record.call_time {
        let message = format!(
            "completion is earlier than its invocation (line {})",
            record.line_number
        );
        return Err(Error::history(event.line_number, message));
    }
    record.return_time = Some(event.time);
    record.completion = match event.event_type {
        EventType::Ok => Completion::Ok(event.value.clone()),
        EventType::Fail => Completion::Fail {
            value: event.value.clone(),
            error: event.error.clone(),
        },
        EventType::Info | EventType::Invoke => Completion::Unknown,
    };
    Ok(())
}

/// One operation as a model sees it: typed input, and output if known.
#[derive(Clone, Debug, PartialEq)]
pub struct Operation<I, O> {
    pub process: u64,
    pub call_time: Time,
    /// `None` means "never returned" (+∞): the operation may take effect at any point
    /// after its call.
    pub return_time: Option<Time>,
    pub input: I,
    /// `None` means unknown: the model accepts any output.
    pub output: Option<O>,
    /// Line of the invocation in the source file (0 if made in code).
    pub line_number: u64,
}

impl<I: fmt::Debug, O: fmt::Debug> fmt::Display for Operation<I, O> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "process {} {:?} -> ", self.process, self.input)?;
        match &self.output {
            Some(output) => write!(formatter, "{output:?}")?,
            None => write!(formatter, "unknown")?,
        }
        write!(formatter, " (call {}, return ", self.call_time)?;
        match self.return_time {
            Some(time) => write!(formatter, "{time}")?,
            None => write!(formatter, "never")?,
        }
        write!(formatter, ", line {})", self.line_number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(process: u64, event_type: EventType, f: &str, time: Time) -> Event {
        Event {
            process,
            event_type,
            f: f.to_string(),
            key: None,
            value: Value::Null,
            error: None,
            time,
            line_number: time,
        }
    }

    #[test]
    fn pairs_completions_with_invocations_by_process() {
        let events = [
            event(1, EventType::Invoke, "read", 1),
            event(2, EventType::Invoke, "write", 2),
            event(2, EventType::Info, "write", 3),
            event(1, EventType::Ok, "read", 4),
            event(3, EventType::Invoke, "cas", 5),
        ];
        let records = pair_events(&events).expect("well-formed history");
        assert_eq!(records.len(), 3);
        assert_eq!(records[0].return_time, Some(4));
        assert_eq!(records[0].completion, Completion::Ok(Value::Null));
        assert_eq!(records[1].completion, Completion::Unknown);
        assert_eq!(records[2].return_time, None);
    }

    #[test]
    fn rejects_a_completion_without_an_invocation() {
        let events = [event(1, EventType::Ok, "read", 1)];
        assert!(pair_events(&events).is_err());
    }

    #[test]
    fn rejects_two_open_invocations_of_one_process() {
        let events = [
            event(1, EventType::Invoke, "read", 1),
            event(1, EventType::Invoke, "read", 2),
        ];
        assert!(pair_events(&events).is_err());
    }

    #[test]
    fn rejects_a_completion_of_another_function() {
        let events = [
            event(1, EventType::Invoke, "read", 1),
            event(1, EventType::Ok, "write", 2),
        ];
        assert!(pair_events(&events).is_err());
    }
}
