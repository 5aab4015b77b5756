//! `latency.png` and `rate.png`, rendered by gnuplot from data files the harness
//! writes into `plot-data/` (as Jepsen does). Latency: every completed operation at
//! its invocation time, one series per function × outcome, log scale. Rate:
//! completions per second per function × outcome. Fault periods are shaded bands, one
//! colour per family. Without gnuplot the plots are skipped with a note.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::exec;
use super::recorder::EntryType;
use super::spans::{fault_colour, FaultSpan, OpSpan};

/// Image size, Jepsen's.
const PLOT_SIZE: &str = "900,400";
/// Rate buckets aim at this many points across the run.
const RATE_BUCKETS_TARGET: u64 = 60;

/// Renders both plots into `run_dir`; returns notes about anything skipped.
pub fn render(run_dir: &Path, ops: &[OpSpan], faults: &[FaultSpan], gnuplot: bool) -> Vec<String> {
    if !gnuplot {
        return vec!["gnuplot not found: plots skipped (apt-get install gnuplot-nox)".into()];
    }
    let data_dir = run_dir.join("plot-data");
    if let Err(error) = std::fs::create_dir_all(&data_dir) {
        return vec![format!("plots skipped: {}: {error}", data_dir.display())];
    }
    let mut notes = Vec::new();
    let plots = [
        ("latency", latency_script(&data_dir, ops, faults)),
        ("rate", rate_script(&data_dir, ops, faults)),
    ];
    for (name, script) in plots {
        if let Err(error) = script.and_then(|script| plot(run_dir, name, &script)) {
            notes.push(format!("{name}.png not rendered: {error}"));
        }
    }
    notes
}

/// Writes the script and runs gnuplot with the cairo terminal, then plain `png`.
fn plot(run_dir: &Path, name: &str, body: &str) -> Result<(), String> {
    let output = run_dir.join(format!("{name}.png"));
    let mut last_error = String::new();
    for terminal in ["pngcairo", "png"] {
        let script = format!(
            "set terminal {terminal} size {PLOT_SIZE}\nset output '{}'\n{body}",
            output.display()
        );
        let path = run_dir.join("plot-data").join(format!("{name}.gp"));
        std::fs::write(&path, &script).map_err(|e| e.to_string())?;
        match exec::run("gnuplot", &[path.to_str().unwrap_or_default()]) {
            Ok(_) => return Ok(()),
            Err(error) => last_error = error,
        }
    }
    Err(last_error)
}

fn outcome_name(outcome: EntryType) -> &'static str {
    match outcome {
        EntryType::Ok => "ok",
        EntryType::Fail => "fail",
        EntryType::Info => "info",
        EntryType::Invoke | EntryType::Nemesis => "open",
    }
}

/// Shaded bands for the faults, behind the data.
fn fault_objects(faults: &[FaultSpan]) -> String {
    let mut text = String::new();
    for (index, fault) in faults.iter().enumerate() {
        let _ = writeln!(
            text,
            "set object {} rect from {:.3}, graph 0 to {:.3}, graph 1 behind fc rgb '{}' fs solid 0.5 noborder",
            index + 1,
            fault.start_ns as f64 / 1e9,
            fault.stop_ns as f64 / 1e9,
            fault_colour(&fault.family)
        );
    }
    text
}

/// Writes `series` as gnuplot data blocks; returns the `plot` clauses.
fn write_series(
    path: &Path,
    series: &BTreeMap<String, Vec<(f64, f64)>>,
    style: &str,
) -> Result<String, String> {
    let mut data = String::new();
    let mut clauses = Vec::new();
    for (index, (title, points)) in series.iter().enumerate() {
        for (x, y) in points {
            let _ = writeln!(data, "{x:.4} {y:.4}");
        }
        data.push_str("\n\n");
        clauses.push(format!(
            "'{}' index {index} using 1:2 {style} title '{title}'",
            path.display()
        ));
    }
    std::fs::write(path, data).map_err(|e| e.to_string())?;
    Ok(clauses.join(", \\\n  "))
}

const LEGEND_NOTE: &str = "bands: kill red, pause blue, partition yellow, clock purple, loss green, member orange, disk-full grey, power teal";

fn latency_script(data_dir: &Path, ops: &[OpSpan], faults: &[FaultSpan]) -> Result<String, String> {
    let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for op in ops {
        let Some(complete_ns) = op.complete_ns else {
            continue;
        };
        let latency_ms = (complete_ns - op.invoke_ns) as f64 / 1e6;
        series
            .entry(format!("{} {}", op.f, outcome_name(op.outcome)))
            .or_default()
            .push((op.invoke_ns as f64 / 1e9, latency_ms.max(0.01)));
    }
    if series.is_empty() {
        return Err("no completed operations".into());
    }
    let clauses = write_series(
        &data_dir.join("latency.dat"),
        &series,
        "with points pt 7 ps 0.5",
    )?;
    Ok(format!(
        "set title 'latency ({LEGEND_NOTE})' noenhanced\nset xlabel 'time (s)'\nset ylabel 'latency (ms)'\n\
         set logscale y\nset key outside right noenhanced\n{}plot {clauses}\n",
        fault_objects(faults)
    ))
}

fn rate_script(data_dir: &Path, ops: &[OpSpan], faults: &[FaultSpan]) -> Result<String, String> {
    let end_ns = ops
        .iter()
        .filter_map(|op| op.complete_ns)
        .max()
        .unwrap_or(0);
    let bucket_secs = (end_ns / 1_000_000_000 / RATE_BUCKETS_TARGET).max(1);
    let bucket_ns = bucket_secs * 1_000_000_000;
    let mut counts: BTreeMap<String, BTreeMap<u64, u64>> = BTreeMap::new();
    for op in ops {
        let Some(complete_ns) = op.complete_ns else {
            continue;
        };
        let name = format!("{} {}", op.f, outcome_name(op.outcome));
        *counts
            .entry(name)
            .or_default()
            .entry(complete_ns / bucket_ns)
            .or_default() += 1;
    }
    if counts.is_empty() {
        return Err("no completed operations".into());
    }
    let buckets = end_ns / bucket_ns + 1;
    let series: BTreeMap<String, Vec<(f64, f64)>> = counts
        .into_iter()
        .map(|(name, per_bucket)| {
            let points = (0..buckets)
                .map(|bucket| {
                    let count = per_bucket.get(&bucket).copied().unwrap_or(0);
                    (
                        (bucket * bucket_secs) as f64,
                        count as f64 / bucket_secs as f64,
                    )
                })
                .collect();
            (name, points)
        })
        .collect();
    let clauses = write_series(&data_dir.join("rate.dat"), &series, "with steps")?;
    Ok(format!(
        "set title 'throughput ({LEGEND_NOTE})' noenhanced\nset xlabel 'time (s)'\n\
         set ylabel 'completions per second'\nset key outside right noenhanced\n{}plot {clauses}\n",
        fault_objects(faults)
    ))
}
