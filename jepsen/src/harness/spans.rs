//! The recorded history as intervals, for the plots and the timeline: each client
//! operation from invocation to completion, each fault from its start to its stop.

use std::collections::HashMap;

use super::recorder::{Entry, EntryType};

/// One client operation.
#[derive(Clone, Debug)]
pub struct OpSpan {
    pub process: u64,
    pub f: String,
    pub key: Option<String>,
    pub invoke_ns: u64,
    /// `None` if it never completed.
    pub complete_ns: Option<u64>,
    /// `Ok`, `Fail` or `Info`; `Invoke` if it never completed.
    pub outcome: EntryType,
    /// The invocation's value, the completion's value and error, for tooltips.
    pub description: String,
}

/// One fault, from its start to its stop (or the end of the run).
#[derive(Clone, Debug)]
pub struct FaultSpan {
    pub family: String,
    pub start_ns: u64,
    pub stop_ns: u64,
    pub description: String,
}

/// Pairs invocations with completions by process.
pub fn op_spans(entries: &[Entry]) -> Vec<OpSpan> {
    let mut spans: Vec<OpSpan> = Vec::new();
    let mut open: HashMap<u64, usize> = HashMap::new();
    for entry in entries {
        let Some(process) = entry.process else {
            continue;
        };
        if entry.entry_type == EntryType::Invoke {
            open.insert(process, spans.len());
            spans.push(OpSpan {
                process,
                f: entry.f.clone(),
                key: entry.key.clone(),
                invoke_ns: entry.time_ns,
                complete_ns: None,
                outcome: EntryType::Invoke,
                description: format!(
                    "{} {} {}",
                    entry.f,
                    entry.key.as_deref().unwrap_or(""),
                    entry.value
                ),
            });
        } else if let Some(index) = open.remove(&process) {
            let span = &mut spans[index];
            span.complete_ns = Some(entry.time_ns);
            span.outcome = entry.entry_type;
            span.description
                .push_str(&format!(" -> {:?} {}", entry.entry_type, entry.value));
            if let Some(error) = &entry.error {
                span.description.push_str(&format!(" ({error})"));
            }
        }
    }
    spans
}

/// Pairs `start-X` with the next `stop-X` (or `heal-all`, or `end_ns`).
pub fn fault_spans(entries: &[Entry], end_ns: u64) -> Vec<FaultSpan> {
    let mut spans = Vec::new();
    let mut open: HashMap<String, (u64, String)> = HashMap::new();
    for entry in entries
        .iter()
        .filter(|e| e.entry_type == EntryType::Nemesis)
    {
        if let Some(family) = entry.f.strip_prefix("start-") {
            open.insert(family.to_string(), (entry.time_ns, entry.value.to_string()));
        } else if let Some(family) = entry.f.strip_prefix("stop-") {
            if let Some((start_ns, description)) = open.remove(family) {
                spans.push(FaultSpan {
                    family: family.to_string(),
                    start_ns,
                    stop_ns: entry.time_ns,
                    description,
                });
            }
        } else if entry.f == "heal-all" {
            for (family, (start_ns, description)) in open.drain() {
                spans.push(FaultSpan {
                    family,
                    start_ns,
                    stop_ns: entry.time_ns,
                    description,
                });
            }
        }
    }
    for (family, (start_ns, description)) in open {
        spans.push(FaultSpan {
            family,
            start_ns,
            stop_ns: end_ns,
            description,
        });
    }
    spans.sort_by_key(|span| span.start_ns);
    spans
}

/// Fill colour of a fault family's band (plots and timeline agree).
pub fn fault_colour(family: &str) -> &'static str {
    match family {
        "kill" => "#f4a6a6",
        "pause" => "#a6c8f4",
        "partition" => "#f4d58d",
        "clock" => "#cfa6f4",
        "loss" => "#a6f4c1",
        "member" => "#f4c1a6",
        "disk-full" => "#a0a0a0",
        "power" => "#7fd1cc",
        _ => "#cccccc",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn entry(process: Option<u64>, entry_type: EntryType, f: &str, time_ns: u64) -> Entry {
        Entry {
            index: 0,
            process,
            entry_type,
            f: f.to_string(),
            key: None,
            value: Value::Null,
            error: None,
            time_ns,
            node: None,
        }
    }

    #[test]
    fn operations_pair_by_process_and_open_ones_stay_open() {
        let entries = [
            entry(Some(1), EntryType::Invoke, "get", 10),
            entry(Some(2), EntryType::Invoke, "put", 11),
            entry(Some(1), EntryType::Ok, "get", 20),
            entry(None, EntryType::Nemesis, "start-kill", 21),
        ];
        let spans = op_spans(&entries);
        assert_eq!(spans.len(), 2);
        assert_eq!(
            (spans[0].complete_ns, spans[0].outcome),
            (Some(20), EntryType::Ok)
        );
        assert_eq!(
            (spans[1].complete_ns, spans[1].outcome),
            (None, EntryType::Invoke)
        );
    }

    #[test]
    fn faults_end_at_their_stop_at_heal_all_or_at_the_end() {
        let mut start = entry(None, EntryType::Nemesis, "start-pause", 5);
        start.value = json!({ "node": 2 });
        let entries = [
            start,
            entry(None, EntryType::Nemesis, "stop-pause", 9),
            entry(None, EntryType::Nemesis, "start-kill", 12),
            entry(None, EntryType::Nemesis, "heal-all", 15),
            entry(None, EntryType::Nemesis, "start-partition", 20),
        ];
        let spans = fault_spans(&entries, 30);
        let summary: Vec<(&str, u64, u64)> = spans
            .iter()
            .map(|s| (s.family.as_str(), s.start_ns, s.stop_ns))
            .collect();
        assert_eq!(
            summary,
            [("pause", 5, 9), ("kill", 12, 15), ("partition", 20, 30)]
        );
    }
}
