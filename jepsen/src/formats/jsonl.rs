//! Reader for the harness's own history format: one JSON object per line.
//!
//! ```text
//! {"process":3,"type":"invoke","f":"put","key":"k1","value":"v17","time_ns":1200345}
//! {"process":3,"type":"ok","f":"put","key":"k1","value":[5,"v17"],"time_ns":1900012}
//! {"type":"nemesis","f":"partition","value":"majority","time_ns":2000000}
//! ```
//!
//! Client events need `process` (integer), `type` (`invoke`/`ok`/`fail`/`info`), `f` and
//! `time_ns` (monotonic nanoseconds since the run began); `key`, `value` and `error` are
//! optional. `"type":"nemesis"` lines record faults and are skipped here, as are unknown
//! fields (`index`, `node`, ...). The meaning of `value` per model and function is
//! documented in `jepsen/README.md`.

use serde::Deserialize;

use crate::error::Error;
use crate::formats::numbered_lines;
use crate::history::{Event, EventType, Value};

/// The `type` of fault-injection events, which checkers ignore.
pub const NEMESIS_TYPE: &str = "nemesis";

#[derive(Deserialize)]
struct Line {
    #[serde(rename = "type")]
    event_type: String,
    process: Option<u64>,
    f: Option<String>,
    #[serde(default)]
    key: Value,
    #[serde(default)]
    value: Value,
    #[serde(default)]
    error: Value,
    time_ns: Option<u64>,
}

/// Parses a whole JSONL history.
pub fn parse(text: &str) -> Result<Vec<Event>, Error> {
    let mut events = Vec::new();
    for (line_number, line) in numbered_lines(text) {
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line = serde_json::from_str(line)
            .map_err(|error| Error::parse(line_number, error.to_string()))?;
        if parsed.event_type == NEMESIS_TYPE {
            continue;
        }
        events.push(event_from_line(line_number, parsed)?);
    }
    Ok(events)
}

fn event_from_line(line_number: u64, line: Line) -> Result<Event, Error> {
    let event_type = EventType::from_name(&line.event_type)
        .ok_or_else(|| Error::parse(line_number, format!("unknown type {:?}", line.event_type)))?;
    let process = line
        .process
        .ok_or_else(|| Error::parse(line_number, "missing process"))?;
    let f = line
        .f
        .ok_or_else(|| Error::parse(line_number, "missing f"))?;
    let time = line
        .time_ns
        .ok_or_else(|| Error::parse(line_number, "missing time_ns"))?;
    let key = match line.key {
        Value::Null => None,
        Value::String(text) => Some(text),
        Value::Number(number) => Some(number.to_string()),
        other => return Err(Error::parse(line_number, format!("bad key {other}"))),
    };
    let error = match line.error {
        Value::Null => None,
        Value::String(text) => Some(text),
        other => Some(other.to_string()),
    };
    Ok(Event {
        process,
        event_type,
        f,
        key,
        value: line.value,
        error,
        time,
        line_number,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_client_events_and_skips_nemesis_events() {
        let text = r#"{"process":3,"type":"invoke","f":"put","key":"k1","value":"v1","time_ns":10}
{"type":"nemesis","f":"partition","value":"majority","time_ns":15}

{"process":3,"type":"fail","f":"put","key":7,"error":"not-leader","time_ns":20,"node":"n2"}
"#;
        let events = parse(text).expect("valid JSONL");
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].time, 10);
        assert_eq!(events[1].key.as_deref(), Some("7"));
        assert_eq!(events[1].error.as_deref(), Some("not-leader"));
        assert_eq!(events[1].line_number, 4);
    }

    #[test]
    fn malformed_lines_are_errors() {
        let bad_lines = [
            r#"{"process":1,"type":"invoke","f":"get"}"#,
            r#"{"process":1,"type":"begin","f":"get","time_ns":1}"#,
            r#"{"type":"ok","f":"get","time_ns":1}"#,
            r#"{"process":-1,"type":"ok","f":"get","time_ns":1}"#,
            r#"{"process":1,"type":"ok","f":"get","key":[1],"time_ns":1}"#,
            r#"not json"#,
        ];
        for line in bad_lines {
            assert!(parse(line).is_err(), "{line} should be rejected");
        }
    }
}
