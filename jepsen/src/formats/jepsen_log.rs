//! Reader for Jepsen's text log lines, the format of Porcupine's etcd fixtures:
//!
//! ```text
//! INFO  jepsen.util - 3    :invoke    :cas    [3 0]
//! INFO  jepsen.util - 3    :fail    :cas    [3 0]
//! ```
//!
//! Fields are separated by tabs or spaces. Only `jepsen.util - P :TYPE :F VALUE` lines
//! with a numeric process are events; other lines (nemesis, logging) are skipped.
//! Values are `nil`, integers, vectors `[A B]` and keywords. Two Jepsen conventions are
//! applied here, where the format is known: a completion whose value is `:timed-out` has
//! an unknown outcome (becomes `info`), and a `:fail :cas` means the comparison did not
//! hold (it gets [`CAS_MISMATCH_ERROR`]).
//! Times are line numbers: the log is written in event order.

use crate::error::Error;
use crate::formats::numbered_lines;
use crate::history::{Event, EventType, Value, CAS_MISMATCH_ERROR};

const LINE_MARKER: &str = "jepsen.util - ";
const TIMED_OUT_KEYWORD: &str = ":timed-out";
/// Vectors in these logs are pairs; anything much longer is not this format.
const VECTOR_ITEMS_MAX: usize = 64;

/// Parses a whole log.
pub fn parse(text: &str) -> Result<Vec<Event>, Error> {
    let mut events = Vec::new();
    for (line_number, line) in numbered_lines(text) {
        if let Some(event) = parse_line(line_number, line)? {
            events.push(event);
        }
    }
    Ok(events)
}

fn parse_line(line_number: u64, line: &str) -> Result<Option<Event>, Error> {
    let Some(start) = line.find(LINE_MARKER) else {
        return Ok(None);
    };
    let rest = &line[start + LINE_MARKER.len()..];
    let mut fields = rest.split_whitespace();
    let (Some(process_text), Some(type_text), Some(f_text)) =
        (fields.next(), fields.next(), fields.next())
    else {
        return Ok(None);
    };
    let Ok(process) = process_text.parse::<u64>() else {
        return Ok(None); // The nemesis and other named processes are not clients.
    };
    let event_type = keyword_name(type_text)
        .and_then(EventType::from_name)
        .ok_or_else(|| Error::parse(line_number, format!("unknown type {type_text}")))?;
    let f = keyword_name(f_text)
        .ok_or_else(|| Error::parse(line_number, format!("function {f_text} is not a keyword")))?;
    let value_text = fields.collect::<Vec<_>>().join(" ");
    let value = parse_value(&value_text).map_err(|message| Error::parse(line_number, message))?;
    Ok(Some(build_event(
        line_number,
        process,
        event_type,
        f,
        value,
    )))
}

fn build_event(
    line_number: u64,
    process: u64,
    event_type: EventType,
    f: &str,
    value: LogValue,
) -> Event {
    let timed_out = matches!(&value, LogValue::Keyword(k) if k == TIMED_OUT_KEYWORD);
    let (event_type, value) = if timed_out && event_type != EventType::Invoke {
        (EventType::Info, Value::Null)
    } else {
        (event_type, value.into_json())
    };
    let error =
        (event_type == EventType::Fail && f == "cas").then(|| CAS_MISMATCH_ERROR.to_string());
    Event {
        process,
        event_type,
        f: f.to_string(),
        key: None,
        value,
        error,
        time: line_number,
        line_number,
    }
}

fn keyword_name(text: &str) -> Option<&str> {
    text.strip_prefix(':').filter(|name| !name.is_empty())
}

/// A value as written in the log, before conversion to JSON.
#[derive(Debug, PartialEq)]
enum LogValue {
    Nil,
    Integer(i64),
    Keyword(String),
    Vector(Vec<LogValue>),
}

impl LogValue {
    fn into_json(self) -> Value {
        match self {
            LogValue::Nil => Value::Null,
            LogValue::Integer(number) => Value::from(number),
            LogValue::Keyword(keyword) => Value::String(keyword),
            LogValue::Vector(items) => {
                Value::Array(items.into_iter().map(Self::into_json).collect())
            }
        }
    }
}

fn parse_value(text: &str) -> Result<LogValue, String> {
    let text = text.trim();
    if let Some(inner) = text.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or_else(|| format!("unterminated vector {text}"))?;
        let items: Vec<&str> = inner.split_whitespace().collect();
        if items.len() > VECTOR_ITEMS_MAX {
            return Err(format!("vector of {} items is too long", items.len()));
        }
        let parsed: Result<Vec<LogValue>, String> = items.into_iter().map(parse_atom).collect();
        return parsed.map(LogValue::Vector);
    }
    parse_atom(text)
}

fn parse_atom(text: &str) -> Result<LogValue, String> {
    if text == "nil" {
        return Ok(LogValue::Nil);
    }
    if text.starts_with(':') && text.len() > 1 {
        return Ok(LogValue::Keyword(text.to_string()));
    }
    text.parse::<i64>()
        .map(LogValue::Integer)
        .map_err(|_| format!("cannot read value {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tab_and_space_separated_lines() {
        let text = "INFO  jepsen.util - 3\t:invoke\t:cas\t[3 0]\n\
                    INFO  jepsen.util - 3   :fail   :cas    [3 0]\n\
                    some other log line\n\
                    INFO  jepsen.util - :nemesis :info :start nil\n";
        let events = parse(text).expect("valid log");
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].event_type, EventType::Invoke);
        assert_eq!(events[0].value, serde_json::json!([3, 0]));
        assert_eq!(events[1].error.as_deref(), Some(CAS_MISMATCH_ERROR));
        assert_eq!(events[1].line_number, 2);
    }

    #[test]
    fn a_timed_out_completion_is_info() {
        let text =
            "INFO jepsen.util - 0 :invoke :read nil\nINFO jepsen.util - 0 :fail :read :timed-out\n";
        let events = parse(text).expect("valid log");
        assert_eq!(events[1].event_type, EventType::Info);
        assert_eq!(events[1].value, Value::Null);
        assert_eq!(events[1].error, None);
    }

    #[test]
    fn bad_values_and_types_are_errors() {
        assert!(parse("INFO jepsen.util - 0 :invoke :write 1.5x\n").is_err());
        assert!(parse("INFO jepsen.util - 0 :invoked :write 1\n").is_err());
        assert!(parse("INFO jepsen.util - 0 :invoke :cas [1 2\n").is_err());
    }
}
