//! After the run: the checkers, `results.json`, the plots and the timeline, and the
//! console summary whose last line is the verdict.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::checks::{op_counts, run_checkers, verdict_value, CheckerResult, RunFacts};
use super::cluster::Crash;
use super::grudge::NodeId;
use super::options::{FaultFamily, WorkloadKind};
use super::recorder::{Entry, EntryType};
use super::run::Prepared;
use super::{plots, spans, timeline};
use crate::Verdict;

/// What the run left for the analysis.
#[derive(Default)]
pub struct RunSummary {
    pub subnet: String,
    pub logs: Vec<(NodeId, PathBuf)>,
    pub crashes: Vec<Crash>,
    pub entries: Vec<Entry>,
    pub notes: Vec<String>,
    /// The run stopped early (setup failed, final read impossible): at best unknown.
    pub aborted: bool,
    pub duration: Duration,
}

/// Checks the history, writes the reports, prints the summary; returns the verdict.
pub fn analyse(prepared: &Prepared, summary: &RunSummary) -> Verdict {
    let run_dir = &prepared.run_dir;
    let history_text = std::fs::read_to_string(run_dir.join("history.jsonl")).unwrap_or_default();
    let facts = RunFacts {
        workload: prepared.options.workload,
        queue_mode: prepared.options.queue_mode,
        history_text: &history_text,
        entries: &summary.entries,
        crashes: &summary.crashes,
        logs: &summary.logs,
        check_time_limit: Duration::from_secs(prepared.options.check_time_limit_secs),
    };
    let checkers = run_checkers(&facts);
    let mut verdict = Verdict::merge_all(checkers.iter().map(|c| c.verdict));
    if summary.aborted {
        verdict = verdict.merge(Verdict::Unknown);
    }
    let mut notes = summary.notes.clone();
    let end_ns = summary.entries.last().map_or(0, |e| e.time_ns);
    let ops = spans::op_spans(&summary.entries);
    let faults = spans::fault_spans(&summary.entries, end_ns);
    notes.extend(plots::render(
        run_dir,
        &ops,
        &faults,
        prepared.capabilities.gnuplot,
    ));
    let title = format!(
        "{} {} seed {}",
        prepared.options.workload_label(),
        prepared.options.nemesis_name(),
        prepared.seed
    );
    if let Err(error) = std::fs::write(
        run_dir.join("timeline.html"),
        timeline::render(&title, &ops, &faults),
    ) {
        notes.push(format!("timeline.html: {error}"));
    }
    let results = results_json(prepared, summary, &checkers, verdict, &notes);
    let text = serde_json::to_string_pretty(&results).expect("results always serialize");
    if let Err(error) = std::fs::write(run_dir.join("results.json"), text + "\n") {
        notes.push(format!("results.json: {error}"));
    }
    print_summary(prepared, summary, &checkers, &notes, verdict);
    verdict
}

fn results_json(
    prepared: &Prepared,
    summary: &RunSummary,
    checkers: &[CheckerResult],
    verdict: Verdict,
    notes: &[String],
) -> Value {
    let mut by_name = Map::new();
    for checker in checkers {
        let mut details = checker.details.clone();
        if let Value::Object(map) = &mut details {
            map.insert("valid".into(), verdict_value(checker.verdict));
        }
        by_name.insert(checker.name.to_string(), details);
    }
    let nemesis_events = summary
        .entries
        .iter()
        .filter(|e| e.entry_type == EntryType::Nemesis)
        .count();
    json!({
        "valid": verdict_value(verdict),
        "workload": prepared.options.workload.name(),
        "queue_mode": (prepared.options.workload == WorkloadKind::Queue)
            .then_some(prepared.options.queue_mode),
        "nemesis": prepared.options.nemesis_name(),
        "faults_run": prepared.faults,
        "skipped_faults": prepared.skipped,
        "nodes": prepared.options.nodes,
        "seed": prepared.seed,
        "unsafe_local_reads": prepared.options.unsafe_local_reads,
        "unsafe_ack_before_fsync": prepared.options.unsafe_ack_before_fsync,
        "read_lease": prepared.options.read_lease,
        "unsafe_read_lease_never_expires": prepared.options.unsafe_read_lease_never_expires,
        "power_scope": power_run(prepared).then(|| prepared.options.power_scope_name()),
        "power_cut": power_run(prepared).then_some(prepared.options.power_cut),
        "power": power_run(prepared).then(|| super::power::summarize(&summary.entries)),
        "subnet": summary.subnet,
        "duration_secs": summary.duration.as_secs_f64(),
        "history_events": summary.entries.len(),
        "nemesis_events": nemesis_events,
        "op_counts": op_counts(&summary.entries),
        "checkers": by_name,
        "notes": notes,
    })
}

fn power_run(prepared: &Prepared) -> bool {
    prepared.faults.contains(&FaultFamily::Power)
}

fn print_summary(
    prepared: &Prepared,
    summary: &RunSummary,
    checkers: &[CheckerResult],
    notes: &[String],
    verdict: Verdict,
) {
    println!(
        "{} events in {:.1} s; results in {}",
        summary.entries.len(),
        summary.duration.as_secs_f64(),
        prepared.run_dir.join("results.json").display()
    );
    for (f, counts) in op_counts(&summary.entries) {
        let parts: Vec<String> = counts.iter().map(|(t, n)| format!("{t} {n}")).collect();
        println!("  {f}: {}", parts.join(", "));
    }
    if power_run(prepared) {
        let power = super::power::summarize(&summary.entries);
        println!(
            "  power ({} cut, scopes {}): {} cuts ({} node cuts) dropped {} pages ({} bytes), \
             {} directory entries, {} inodes; {} restarts failed",
            prepared.options.power_cut.name(),
            prepared.options.power_scope_name(),
            power["cuts"],
            power["node_cuts"],
            power["pages_dropped"],
            power["bytes_dropped"],
            power["dir_entries_reverted"],
            power["inodes_dropped"],
            power["failed_restarts"],
        );
    }
    for checker in checkers {
        println!("checker {}: {}", checker.name, checker.verdict);
        if checker.verdict != Verdict::Valid {
            println!("  {}", checker.details);
        }
    }
    for note in notes {
        println!("note: {note}");
    }
    println!(
        "{}",
        match verdict {
            Verdict::Valid => "Everything looks good!",
            Verdict::Invalid => "Analysis invalid!",
            Verdict::Unknown => "Errors occurred during analysis, but no anomalies found.",
        }
    );
    println!("{verdict}");
}
