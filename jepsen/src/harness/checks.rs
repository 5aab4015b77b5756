//! The checkers of a run, each ending in a verdict, merged as Jepsen does (invalid >
//! unknown > valid):
//!
//! - `linear` (register): the history file through the colleague's linearizability
//!   checker with the versioned-KV model, one partition per key;
//! - `set` (set): adds against the final read (lost, unexpected, failed but present,
//!   recovered);
//! - `total-queue` and `fifo` (queue): see [`super::queue_checks`];
//! - `linear` and `fs-names` (fs): the file gets / puts as `linear` does, and the
//!   name operations against the final listing ([`crate::checker::fs_names`]);
//! - `stats`: completions per function; unknown if some function never succeeded;
//! - `nodes`: invalid if a node exited without being killed, or a node log shows a
//!   panic.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use super::cluster::Crash;
use super::grudge::NodeId;
use super::options::{QueueMode, WorkloadKind};
use super::queue_checks::check_queue;
use super::recorder::{Entry, EntryType};
use crate::check::{check_history_text, ModelKind};
use crate::checker::fs_names::{check_names, NameChange, NameOp};
use crate::checker::linear::{CheckOptions, LinearizabilityReport};
use crate::checker::sets::{check_set, SetAdd};
use crate::checker::{Verdict, WriteOutcome, REPORTED_ANOMALIES_MAX};
use crate::formats::{parse_events, Format};
use crate::history::{pair_events, Completion, OpRecord};

/// Per-key budget of the linearizability search, so one hard key cannot use it all.
const PARTITION_TIME_LIMIT_SECS: u64 = 20;
/// Unknown partitions listed in the results, at most.
const LISTED_UNKNOWN_MAX: usize = 10;
/// What a node log line must contain to count as a panic.
const PANIC_MARKER: &str = "panicked at";

pub struct CheckerResult {
    pub name: &'static str,
    pub verdict: Verdict,
    pub details: Value,
}

/// What the checkers look at.
pub struct RunFacts<'a> {
    pub workload: WorkloadKind,
    pub queue_mode: QueueMode,
    pub history_text: &'a str,
    pub entries: &'a [Entry],
    pub crashes: &'a [Crash],
    pub logs: &'a [(NodeId, PathBuf)],
    pub check_time_limit: Duration,
}

pub fn run_checkers(facts: &RunFacts<'_>) -> Vec<CheckerResult> {
    let mut checkers = match facts.workload {
        WorkloadKind::Register | WorkloadKind::Object => vec![check_linear(facts)],
        WorkloadKind::Set => vec![check_set_history(facts.history_text)],
        WorkloadKind::Queue => check_queue(facts.history_text, facts.queue_mode),
        WorkloadKind::Fs => vec![
            check_linear_text(&file_ops_only(facts.history_text), facts.check_time_limit),
            check_fs_names_history(facts.history_text),
        ],
    };
    checkers.extend([check_stats(facts.entries), check_nodes(facts)]);
    checkers
}

/// `true`, `false` or `"unknown"`, as results.json spells verdicts.
pub fn verdict_value(verdict: Verdict) -> Value {
    match verdict {
        Verdict::Valid => json!(true),
        Verdict::Invalid => json!(false),
        Verdict::Unknown => json!("unknown"),
    }
}

fn check_linear(facts: &RunFacts<'_>) -> CheckerResult {
    check_linear_text(facts.history_text, facts.check_time_limit)
}

fn check_linear_text(history_text: &str, time_limit: Duration) -> CheckerResult {
    let mut options = CheckOptions::new(time_limit);
    options.partition_time_limit = Some(Duration::from_secs(PARTITION_TIME_LIMIT_SECS));
    let checked = check_history_text(
        ModelKind::VersionedKv,
        Format::Jsonl,
        history_text,
        &options,
    );
    match checked {
        Ok(check) => CheckerResult {
            name: "linear",
            verdict: check.report.verdict,
            details: linear_details(&check.report),
        },
        Err(error) => CheckerResult {
            name: "linear",
            verdict: Verdict::Unknown,
            details: json!({ "error": error.to_string() }),
        },
    }
}

fn linear_details(report: &LinearizabilityReport) -> Value {
    let count = |verdict| {
        report
            .partitions
            .iter()
            .filter(|p| p.verdict == verdict)
            .count()
    };
    let failures: Vec<Value> = report
        .failures()
        .map(|failure| {
            json!({
                "key": failure.key,
                "cannot_linearize": failure.blocked_operation,
                "linearized": format!("{} of {}", failure.linearized_count, failure.operation_count),
                "linearized_tail": failure.linearized_tail,
                "model_state": failure.state,
            })
        })
        .collect();
    let unknown: Vec<Value> = report
        .partitions
        .iter()
        .filter(|p| p.verdict == Verdict::Unknown)
        .take(LISTED_UNKNOWN_MAX)
        .map(|p| json!({ "key": p.key, "reason": p.unknown_reason.map(|r| r.to_string()) }))
        .collect();
    json!({
        "model": "versioned-kv",
        "operations": report.operation_count,
        "crashed_reads_dropped": report.dropped_count,
        "keys": report.partitions.len(),
        "keys_valid": count(Verdict::Valid),
        "keys_invalid": count(Verdict::Invalid),
        "keys_unknown": count(Verdict::Unknown),
        "failures": failures,
        "unknown_keys": unknown,
    })
}

fn check_set_history(history_text: &str) -> CheckerResult {
    let records = parse_events(Format::Jsonl, history_text).and_then(|events| pair_events(&events));
    let records = match records {
        Ok(records) => records,
        Err(error) => {
            return CheckerResult {
                name: "set",
                verdict: Verdict::Unknown,
                details: json!({ "error": error.to_string() }),
            }
        }
    };
    let adds: Vec<SetAdd<String>> = records
        .iter()
        .filter(|record| record.f == "add")
        .map(|record| SetAdd {
            element: record.invoke_value.as_str().unwrap_or_default().to_string(),
            outcome: write_outcome(record),
        })
        .collect();
    let final_read = last_ok_read(&records);
    let report = check_set(&adds, final_read.as_deref());
    let listed = |elements: &[String]| -> Vec<String> {
        elements
            .iter()
            .take(REPORTED_ANOMALIES_MAX)
            .cloned()
            .collect()
    };
    CheckerResult {
        name: "set",
        verdict: report.verdict,
        details: json!({
            "attempted": report.attempted_count,
            "acknowledged": report.acknowledged_count,
            "final_read": final_read.as_ref().map(Vec::len),
            "lost_count": report.lost.len(),
            "lost": listed(&report.lost),
            "unexpected_count": report.unexpected.len(),
            "unexpected": listed(&report.unexpected),
            "failed_but_present_count": report.failed_but_present.len(),
            "failed_but_present": listed(&report.failed_but_present),
            "recovered_count": report.recovered.len(),
        }),
    }
}

/// The `get` / `put` lines of an fs history (the files part), for `linear`.
fn file_ops_only(history_text: &str) -> String {
    history_text
        .lines()
        .filter(|line| {
            let parsed: Option<Value> = serde_json::from_str(line).ok();
            parsed.is_some_and(|entry| matches!(entry["f"].as_str(), Some("get" | "put")))
        })
        .flat_map(|line| [line, "\n"])
        .collect()
}

/// The fs workload's name operations against its final listing.
fn check_fs_names_history(history_text: &str) -> CheckerResult {
    let records = parse_events(Format::Jsonl, history_text).and_then(|events| pair_events(&events));
    let records = match records {
        Ok(records) => records,
        Err(error) => {
            return CheckerResult {
                name: "fs-names",
                verdict: Verdict::Unknown,
                details: json!({ "error": error.to_string() }),
            }
        }
    };
    let text = |value: &Value| value.as_str().unwrap_or_default().to_string();
    let ops: Vec<NameOp> = records
        .iter()
        .filter_map(|record| {
            let value = &record.invoke_value;
            let change = match record.f.as_str() {
                "create" => NameChange::Create(text(value)),
                "rename" => NameChange::Rename {
                    from: text(&value[0]),
                    to: text(&value[1]),
                },
                "unlink" => NameChange::Unlink(text(value)),
                _ => return None,
            };
            Some(NameOp {
                change,
                outcome: write_outcome(record),
            })
        })
        .collect();
    let final_list = last_ok_list(&records);
    let report = check_names(&ops, final_list.as_deref());
    let listed = |names: &[String]| -> Vec<String> {
        names.iter().take(REPORTED_ANOMALIES_MAX).cloned().collect()
    };
    let pairs = |pairs: &[[String; 2]]| -> Vec<[String; 2]> {
        pairs.iter().take(REPORTED_ANOMALIES_MAX).cloned().collect()
    };
    let count = |f: &str| ops.iter().filter(|op| op_name(&op.change) == f).count();
    CheckerResult {
        name: "fs-names",
        verdict: report.verdict,
        details: json!({
            "creates": count("create"),
            "renames": count("rename"),
            "unlinks": count("unlink"),
            "names_attempted": report.attempted_count,
            "must_exist": report.must_exist_count,
            "must_not_exist": report.must_not_exist_count,
            "indeterminate": report.indeterminate_count,
            "final_list": final_list.as_ref().map(Vec::len),
            "missing_count": report.missing.len(),
            "missing": listed(&report.missing),
            "present_count": report.present.len(),
            "present": listed(&report.present),
            "unexpected_count": report.unexpected.len(),
            "unexpected": listed(&report.unexpected),
            "listed_twice": listed(&report.listed_twice),
            "duplicated": pairs(&report.duplicated),
            "vanished": pairs(&report.vanished),
        }),
    }
}

fn op_name(change: &NameChange) -> &'static str {
    match change {
        NameChange::Create(_) => "create",
        NameChange::Rename { .. } => "rename",
        NameChange::Unlink(_) => "unlink",
    }
}

/// The names of the last successful final listing.
fn last_ok_list(records: &[OpRecord]) -> Option<Vec<String>> {
    records
        .iter()
        .rev()
        .find_map(|record| match &record.completion {
            Completion::Ok(Value::Array(names)) if record.f == "list" => Some(
                names
                    .iter()
                    .map(|name| name.as_str().unwrap_or_default().to_string())
                    .collect(),
            ),
            _ => None,
        })
}

pub(super) fn write_outcome(record: &OpRecord) -> WriteOutcome {
    match record.completion {
        Completion::Ok(_) => WriteOutcome::Acknowledged,
        Completion::Fail { .. } => WriteOutcome::Failed,
        Completion::Unknown => WriteOutcome::Unknown,
    }
}

fn last_ok_read(records: &[OpRecord]) -> Option<Vec<String>> {
    records
        .iter()
        .rev()
        .find_map(|record| match &record.completion {
            Completion::Ok(Value::Array(elements)) if record.f == "read" => Some(
                elements
                    .iter()
                    .map(|element| element.as_str().unwrap_or_default().to_string())
                    .collect(),
            ),
            _ => None,
        })
}

/// Completions per function and type: `{"get": {"ok": 10, "fail": 1, "info": 0}}`.
pub fn op_counts(entries: &[Entry]) -> BTreeMap<String, BTreeMap<&'static str, u64>> {
    let mut counts: BTreeMap<String, BTreeMap<&'static str, u64>> = BTreeMap::new();
    for entry in entries {
        let name = match entry.entry_type {
            EntryType::Ok => "ok",
            EntryType::Fail => "fail",
            EntryType::Info => "info",
            EntryType::Invoke | EntryType::Nemesis => continue,
        };
        let per_f = counts
            .entry(entry.f.clone())
            .or_insert_with(|| BTreeMap::from([("ok", 0), ("fail", 0), ("info", 0)]));
        *per_f.entry(name).or_default() += 1;
    }
    counts
}

fn check_stats(entries: &[Entry]) -> CheckerResult {
    let counts = op_counts(entries);
    let never_ok: Vec<&String> = counts
        .iter()
        .filter(|(_, per_type)| per_type.get("ok").copied().unwrap_or(0) == 0)
        .map(|(f, _)| f)
        .collect();
    let verdict = if never_ok.is_empty() && !counts.is_empty() {
        Verdict::Valid
    } else {
        Verdict::Unknown
    };
    CheckerResult {
        name: "stats",
        verdict,
        details: json!({ "by_function": counts, "never_succeeded": never_ok }),
    }
}

fn check_nodes(facts: &RunFacts<'_>) -> CheckerResult {
    let crashes: Vec<Value> = facts
        .crashes
        .iter()
        .map(|crash| json!({ "node": crash.node, "status": crash.status }))
        .collect();
    let mut panics = Vec::new();
    for (node, path) in facts.logs {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        panics.extend(
            text.lines()
                .filter(|line| line.contains(PANIC_MARKER))
                .take(REPORTED_ANOMALIES_MAX)
                .map(|line| json!({ "node": node, "line": line })),
        );
    }
    let verdict = if crashes.is_empty() && panics.is_empty() {
        Verdict::Valid
    } else {
        Verdict::Invalid
    };
    CheckerResult {
        name: "nodes",
        verdict,
        details: json!({ "unexpected_exits": crashes, "panics": panics }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::recorder::{ClientEvent, Recorder};

    /// Records `events` (process, type, f, value) with the harness's recorder, as a run
    /// would, and returns the file's text and the entries.
    fn record(name: &str, events: &[(u64, EntryType, &str, Value)]) -> (String, Vec<Entry>) {
        let path =
            std::env::temp_dir().join(format!("cj-test-{}-{name}.jsonl", std::process::id()));
        let recorder = Recorder::create(&path).expect("temp file");
        for (process, entry_type, f, value) in events {
            recorder.client(ClientEvent {
                process: *process,
                entry_type: *entry_type,
                f,
                key: (*f != "add" && *f != "read").then_some("r0"),
                value: value.clone(),
                error: None,
                node: None,
            });
        }
        recorder.nemesis("start-partition", json!("halves"));
        recorder.flush().expect("flushed");
        let text = std::fs::read_to_string(&path).expect("written");
        let _ = std::fs::remove_file(&path); // a leftover temp file is harmless
        (text, recorder.entries())
    }

    fn verdicts(
        workload: WorkloadKind,
        text: &str,
        entries: &[Entry],
    ) -> Vec<(&'static str, Verdict)> {
        let facts = RunFacts {
            workload,
            queue_mode: QueueMode::Lease,
            history_text: text,
            entries,
            crashes: &[],
            logs: &[],
            check_time_limit: Duration::from_secs(10),
        };
        run_checkers(&facts)
            .iter()
            .map(|c| (c.name, c.verdict))
            .collect()
    }

    #[test]
    fn a_recorded_stale_read_is_invalid_for_the_linearizability_checker() {
        use EntryType::{Invoke, Ok};
        let mut events = vec![
            (0, Invoke, "put", json!("a")),
            (0, Ok, "put", json!([4096, "a"])),
            (0, Invoke, "put", json!("b")),
            (0, Ok, "put", json!([8192, "b"])),
        ];
        let (text, entries) = record("fresh", &events);
        let fresh = verdicts(WorkloadKind::Register, &text, &entries);
        assert_eq!(fresh[0], ("linear", Verdict::Valid));
        events.push((1, Invoke, "get", Value::Null));
        events.push((1, Ok, "get", json!([4096, "a"])));
        let (text, entries) = record("stale", &events);
        let stale = verdicts(WorkloadKind::Register, &text, &entries);
        assert_eq!(stale[0], ("linear", Verdict::Invalid));
    }

    #[test]
    fn a_recorded_fs_history_with_a_missing_name_is_invalid() {
        use EntryType::{Info, Invoke, Ok};
        let mut events = vec![
            (0, Invoke, "put", json!("0-1")),
            (0, Ok, "put", json!([4096, "0-1"])),
            (1, Invoke, "get", Value::Null),
            (1, Ok, "get", json!([4096, "0-1"])),
            (0, Invoke, "create", json!("n1")),
            (0, Ok, "create", json!("n1")),
            (0, Invoke, "create", json!("n2")),
            (0, Ok, "create", json!("n2")),
            (0, Invoke, "rename", json!(["n1", "n3"])),
            (0, Ok, "rename", json!(["n1", "n3"])),
            (0, Invoke, "unlink", json!("n2")),
            (0, Info, "unlink", json!("n2")),
            (2, Invoke, "create", json!("n4")),
            (2, Ok, "create", json!("n4")),
            (3, Invoke, "list", Value::Null),
        ];
        let mut valid = events.clone();
        valid.push((3, Ok, "list", json!(["n3", "n4"])));
        let (text, entries) = record("fs-valid", &valid);
        let result = verdicts(WorkloadKind::Fs, &text, &entries);
        assert_eq!(
            result[..2],
            [("linear", Verdict::Valid), ("fs-names", Verdict::Valid)]
        );
        events.push((3, Ok, "list", json!(["n2", "n3"])));
        let (text, entries) = record("fs-missing", &events);
        let result = verdicts(WorkloadKind::Fs, &text, &entries);
        assert_eq!(result[1], ("fs-names", Verdict::Invalid));
        assert_eq!(op_counts(&entries)["rename"]["ok"], 1);
    }

    #[test]
    fn a_recorded_set_with_a_lost_add_is_invalid() {
        use EntryType::{Info, Invoke, Ok};
        let events = [
            (0, Invoke, "add", json!("s1")),
            (0, Ok, "add", json!("s1")),
            (1, Invoke, "add", json!("s2")),
            (1, Info, "add", json!("s2")),
            (2, Invoke, "add", json!("s3")),
            (2, Ok, "add", json!("s3")),
            (3, Invoke, "read", Value::Null),
            (3, Ok, "read", json!(["s1", "s2"])),
        ];
        let (text, entries) = record("set", &events);
        let result = verdicts(WorkloadKind::Set, &text, &entries);
        assert_eq!(result[0], ("set", Verdict::Invalid));
        assert_eq!(op_counts(&entries)["add"]["info"], 1);
    }
}
