//! Reader for histories written as one EDN map per line, as Jepsen and Porcupine's KV
//! fixtures do:
//!
//! ```text
//! {:process 0, :type :invoke, :f :append, :key "0", :value "x 0 0 y"}
//! ```
//!
//! A deliberately small EDN subset: a map with keyword keys whose values are `nil`,
//! booleans, integers, strings (with `\" \\ \n \t \r` escapes), keywords and vectors of
//! those. Recognised keys: `:process`, `:type`, `:f`, `:key`, `:value`, `:error`; others
//! (`:time`, `:index`, ...) are ignored. Lines whose `:process` is not an integer (the
//! nemesis) and blank lines are skipped. Times are line numbers: Jepsen writes histories
//! in event order.

use std::collections::BTreeMap;

use crate::error::Error;
use crate::formats::numbered_lines;
use crate::history::{Event, EventType, Value};

/// How deeply vectors may nest; the fixture format never nests at all.
const NESTING_DEPTH_MAX: u32 = 8;

/// Parses a whole EDN history.
pub fn parse(text: &str) -> Result<Vec<Event>, Error> {
    let mut events = Vec::new();
    for (line_number, line) in numbered_lines(text) {
        if line.trim().is_empty() {
            continue;
        }
        let map = parse_map(line).map_err(|message| Error::parse(line_number, message))?;
        if let Some(event) = event_from_map(line_number, map)? {
            events.push(event);
        }
    }
    Ok(events)
}

/// An EDN value of the supported subset.
#[derive(Clone, Debug, PartialEq)]
pub enum EdnValue {
    Nil,
    Bool(bool),
    Integer(i64),
    String(String),
    /// Without the leading colon.
    Keyword(String),
    Vector(Vec<EdnValue>),
}

impl EdnValue {
    /// Keywords become their name, so `:ok` and `"ok"` read the same.
    pub fn into_json(self) -> Value {
        match self {
            EdnValue::Nil => Value::Null,
            EdnValue::Bool(flag) => Value::Bool(flag),
            EdnValue::Integer(number) => Value::from(number),
            EdnValue::String(text) | EdnValue::Keyword(text) => Value::String(text),
            EdnValue::Vector(items) => {
                Value::Array(items.into_iter().map(Self::into_json).collect())
            }
        }
    }
}

fn event_from_map(
    line_number: u64,
    mut map: BTreeMap<String, EdnValue>,
) -> Result<Option<Event>, Error> {
    let process = match map.remove("process") {
        Some(EdnValue::Integer(number)) => {
            u64::try_from(number).map_err(|_| Error::parse(line_number, "negative :process"))?
        }
        Some(_) => return Ok(None), // The nemesis and other named processes.
        None => return Err(Error::parse(line_number, "missing :process")),
    };
    let event_type = match map.remove("type") {
        Some(EdnValue::Keyword(name)) => EventType::from_name(&name),
        _ => None,
    }
    .ok_or_else(|| Error::parse(line_number, ":type must be :invoke, :ok, :fail or :info"))?;
    let f = match map.remove("f") {
        Some(EdnValue::Keyword(name)) | Some(EdnValue::String(name)) => name,
        _ => return Err(Error::parse(line_number, "missing or bad :f")),
    };
    let key = match map.remove("key") {
        None | Some(EdnValue::Nil) => None,
        Some(EdnValue::String(text)) | Some(EdnValue::Keyword(text)) => Some(text),
        Some(EdnValue::Integer(number)) => Some(number.to_string()),
        Some(other) => return Err(Error::parse(line_number, format!("bad :key {other:?}"))),
    };
    let value = map.remove("value").map_or(Value::Null, EdnValue::into_json);
    let error = map.remove("error").map(|error| match error.into_json() {
        Value::String(text) => text,
        other => other.to_string(),
    });
    let time = line_number;
    Ok(Some(Event {
        process,
        event_type,
        f,
        key,
        value,
        error,
        time,
        line_number,
    }))
}

/// Parses one line holding one map with keyword keys.
pub fn parse_map(line: &str) -> Result<BTreeMap<String, EdnValue>, String> {
    let mut cursor = Cursor {
        chars: line.char_indices().peekable(),
        text: line,
    };
    cursor.skip_blank();
    cursor.expect('{')?;
    let mut map = BTreeMap::new();
    loop {
        cursor.skip_blank();
        if cursor.eat('}') {
            break;
        }
        let key = match cursor.value(0)? {
            EdnValue::Keyword(name) => name,
            other => return Err(format!("map key {other:?} is not a keyword")),
        };
        cursor.skip_blank();
        let value = cursor.value(0)?;
        if map.insert(key.clone(), value).is_some() {
            return Err(format!("duplicate key :{key}"));
        }
    }
    cursor.skip_blank();
    match cursor.chars.next() {
        None => Ok(map),
        Some((offset, _)) => Err(format!(
            "unexpected text after the map at column {}",
            offset + 1
        )),
    }
}

struct Cursor<'a> {
    chars: std::iter::Peekable<std::str::CharIndices<'a>>,
    text: &'a str,
}

impl Cursor<'_> {
    /// Whitespace and commas separate items in EDN.
    fn skip_blank(&mut self) {
        while self
            .chars
            .next_if(|&(_, c)| c.is_whitespace() || c == ',')
            .is_some()
        {}
    }

    fn eat(&mut self, expected: char) -> bool {
        self.chars.next_if(|&(_, c)| c == expected).is_some()
    }

    fn expect(&mut self, expected: char) -> Result<(), String> {
        if self.eat(expected) {
            Ok(())
        } else {
            Err(format!("expected {expected:?}"))
        }
    }

    fn value(&mut self, depth: u32) -> Result<EdnValue, String> {
        match self.chars.peek().map(|&(_, c)| c) {
            None => Err("unexpected end of line".to_string()),
            Some('"') => self.string().map(EdnValue::String),
            Some('[') if depth < NESTING_DEPTH_MAX => self.vector(depth + 1),
            Some('[') => Err("vectors nested too deeply".to_string()),
            Some(_) => self.symbol(),
        }
    }

    fn vector(&mut self, depth: u32) -> Result<EdnValue, String> {
        self.expect('[')?;
        let mut items = Vec::new();
        loop {
            self.skip_blank();
            if self.eat(']') {
                return Ok(EdnValue::Vector(items));
            }
            items.push(self.value(depth)?);
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.expect('"')?;
        let mut text = String::new();
        loop {
            match self.chars.next().map(|(_, c)| c) {
                None => return Err("unterminated string".to_string()),
                Some('"') => return Ok(text),
                Some('\\') => text.push(self.escape()?),
                Some(c) => text.push(c),
            }
        }
    }

    fn escape(&mut self) -> Result<char, String> {
        match self.chars.next().map(|(_, c)| c) {
            Some('"') => Ok('"'),
            Some('\\') => Ok('\\'),
            Some('n') => Ok('\n'),
            Some('t') => Ok('\t'),
            Some('r') => Ok('\r'),
            other => Err(format!("unsupported escape {other:?}")),
        }
    }

    /// `nil`, `true`, `false`, an integer or a keyword: a run up to a delimiter.
    fn symbol(&mut self) -> Result<EdnValue, String> {
        let Some(&(start, _)) = self.chars.peek() else {
            return Err("unexpected end of line".to_string());
        };
        let mut end = start;
        while let Some((offset, c)) = self.chars.next_if(|&(_, c)| !is_delimiter(c)) {
            end = offset + c.len_utf8();
        }
        let token = &self.text[start..end];
        match token {
            "" => Err(format!("unexpected character at column {}", start + 1)),
            "nil" => Ok(EdnValue::Nil),
            "true" => Ok(EdnValue::Bool(true)),
            "false" => Ok(EdnValue::Bool(false)),
            _ if token.len() > 1 && token.starts_with(':') => {
                Ok(EdnValue::Keyword(token[1..].to_string()))
            }
            _ => token
                .parse::<i64>()
                .map(EdnValue::Integer)
                .map_err(|_| format!("cannot read {token:?}")),
        }
    }
}

fn is_delimiter(c: char) -> bool {
    c.is_whitespace() || matches!(c, ',' | '{' | '}' | '[' | ']' | '"')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_fixture_line() {
        let line = r#"{:process 0, :type :invoke, :f :append, :key "0", :value "x 0 0 y"}"#;
        let events = parse(line).expect("valid EDN");
        assert_eq!(events.len(), 1);
        let event = &events[0];
        assert_eq!(event.process, 0);
        assert_eq!(event.event_type, EventType::Invoke);
        assert_eq!(event.f, "append");
        assert_eq!(event.key.as_deref(), Some("0"));
        assert_eq!(event.value, Value::String("x 0 0 y".to_string()));
    }

    #[test]
    fn reads_nil_escapes_vectors_and_skips_the_nemesis() {
        let text = "{:process 2, :type :ok, :f :get, :key \"k\", :value \"a\\\"b\"}\n\
                    \n\
                    {:process :nemesis, :type :info, :f :start, :value nil}\n\
                    {:process 1 :type :ok :f :cas :value [1 [2 -3]] :time 99}\n";
        let events = parse(text).expect("valid EDN");
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].value, Value::String("a\"b".to_string()));
        assert_eq!(events[1].value, serde_json::json!([1, [2, -3]]));
        assert_eq!(events[1].time, 4);
    }

    #[test]
    fn malformed_lines_are_errors_not_panics() {
        let bad_lines = [
            "{:process 0, :type :invoke",
            "{:process 0, :type :invoke, :f :get, :value \"open}",
            "{:process 0, :type :bogus, :f :get}",
            "{:process -1, :type :ok, :f :get}",
            "{\"process\" 0}",
            "{:process 0, :process 1}",
            "{:process 0, :type :ok, :f :get} trailing",
            "{:process 0, :type :ok, :f :get, :value [[[[[[[[[[1]]]]]]]]]]}",
            "{:process 0, :type :ok, :f :get, :value \"\\q\"}",
            "[1 2]",
            "{:process 0, :type :ok, :f :get, :value é}",
        ];
        for line in bad_lines {
            assert!(parse(line).is_err(), "{line} should be rejected");
        }
    }
}
