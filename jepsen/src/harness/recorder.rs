//! The history as it happens: every invocation, completion and nemesis event, stamped
//! with monotonic nanoseconds since the run began, appended to `history.jsonl` in the
//! checker's JSONL format (see `jepsen/README.md`) and kept in memory for the reports.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

/// The `type` of a recorded line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryType {
    Invoke,
    Ok,
    Fail,
    Info,
    Nemesis,
}

/// One line of `history.jsonl`.
#[derive(Clone, Debug, Serialize)]
pub struct Entry {
    pub index: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<u64>,
    #[serde(rename = "type")]
    pub entry_type: EntryType,
    pub f: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub value: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub time_ns: u64,
    /// The node a client process prefers (first endpoint); not necessarily the one
    /// that served the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// A client event before it gets its index and time.
pub struct ClientEvent<'a> {
    pub process: u64,
    pub entry_type: EntryType,
    pub f: &'a str,
    pub key: Option<&'a str>,
    pub value: Value,
    pub error: Option<String>,
    pub node: Option<String>,
}

struct Inner {
    writer: BufWriter<File>,
    entries: Vec<Entry>,
    write_error: Option<String>,
}

pub struct Recorder {
    start: Instant,
    inner: Mutex<Inner>,
}

impl Recorder {
    pub fn create(path: &Path) -> Result<Recorder, String> {
        let file = File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Recorder {
            start: Instant::now(),
            inner: Mutex::new(Inner {
                writer: BufWriter::new(file),
                entries: Vec::new(),
                write_error: None,
            }),
        })
    }

    /// Nanoseconds since the run began.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Records a client event; the time is taken under the lock so indices and times
    /// agree on the order.
    pub fn client(&self, event: ClientEvent<'_>) {
        self.push(|index, time_ns| Entry {
            index,
            process: Some(event.process),
            entry_type: event.entry_type,
            f: event.f.to_string(),
            key: event.key.map(str::to_string),
            value: event.value,
            error: event.error,
            time_ns,
            node: event.node,
        });
    }

    /// Records a fault event (`start-kill`, `stop-partition`, ...).
    pub fn nemesis(&self, f: &str, value: Value) {
        self.push(|index, time_ns| Entry {
            index,
            process: None,
            entry_type: EntryType::Nemesis,
            f: f.to_string(),
            key: None,
            value,
            error: None,
            time_ns,
            node: None,
        });
    }

    fn push(&self, make: impl FnOnce(u64, u64) -> Entry) {
        let mut inner = self.inner.lock().expect("recorder lock is never poisoned");
        let index = inner.entries.len() as u64;
        let entry = make(index, self.now_ns());
        let line = serde_json::to_string(&entry).expect("entries always serialize");
        if let Err(error) = writeln!(inner.writer, "{line}") {
            inner.write_error.get_or_insert(error.to_string());
        }
        inner.entries.push(entry);
    }

    /// Flushes the file; returns the first write error, if any.
    pub fn flush(&self) -> Result<(), String> {
        let mut inner = self.inner.lock().expect("recorder lock is never poisoned");
        if let Err(error) = inner.writer.flush() {
            inner.write_error.get_or_insert(error.to_string());
        }
        inner.write_error.clone().map_or(Ok(()), Err)
    }

    /// A copy of everything recorded so far.
    pub fn entries(&self) -> Vec<Entry> {
        self.inner
            .lock()
            .expect("recorder lock is never poisoned")
            .entries
            .clone()
    }
}
