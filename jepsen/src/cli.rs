//! Command-line interface: `cairn-jepsen check` reads a history file, decodes it for the
//! chosen model, runs the linearizability check and prints a short summary whose last
//! line is the verdict; `cairn-jepsen run` drives a cluster under faults, records a
//! history and checks it (see `cairn_jepsen::harness`), ending the same way.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use cairn_jepsen::check::{check_history_file, HistoryCheck, ModelKind};
use cairn_jepsen::checker::linear::{
    CheckOptions, LinearizabilityReport, PartitionReport, UnknownReason,
};
use cairn_jepsen::formats::Format;
use cairn_jepsen::harness::RunOptions;
use cairn_jepsen::Verdict;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// Partitions listed individually in the summary, at most (the worst first).
const LISTED_PARTITIONS_MAX: usize = 10;

#[derive(Parser, Debug)]
#[command(
    name = "cairn-jepsen",
    version,
    about = "Chaos-test history checker for cairn"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check a recorded history for linearizability; exit 0 valid, 1 invalid, 2 unknown.
    Check(CheckArgs),
    /// Run a workload against a real cairn cluster under faults and check the history;
    /// exit 0 valid, 1 invalid, 2 unknown. Needs root (network namespaces, iptables).
    Run(RunOptions),
    /// Remove the namespaces, bridges and FORWARD rules of runs whose harness died
    /// without cleaning up (SIGKILL); live runs are left alone. Exit 0, or 2 if
    /// something could not be removed.
    Clean,
}

#[derive(Args, Debug)]
struct CheckArgs {
    /// The sequential specification to check against.
    #[arg(long, value_enum)]
    model: ModelName,
    /// The history file's format.
    #[arg(long, value_enum)]
    format: FormatName,
    /// Wall-clock budget for the whole check; unfinished partitions are unknown.
    #[arg(long, default_value_t = 30)]
    time_limit_secs: u64,
    /// Budget per partition (key); by default only the overall limit applies.
    #[arg(long)]
    partition_time_limit_secs: Option<u64>,
    /// Worker threads; 0 = one per core.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// The history file.
    file: PathBuf,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ModelName {
    /// Integer register per key: read / write / cas [expected new].
    Register,
    /// String per key, starting empty: get / put / append.
    Kv,
    /// cairn KV: get -> [version value], put -> version, cas on version, delete.
    VersionedKv,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum FormatName {
    /// Jepsen text log lines `INFO jepsen.util - P :TYPE :F VALUE`.
    JepsenLog,
    /// One EDN map per line.
    Edn,
    /// The harness's JSONL history (see jepsen/README.md).
    Jsonl,
}

/// Runs a parsed command line and returns its verdict.
pub fn run(cli: Cli) -> Verdict {
    match cli.command {
        Command::Check(arguments) => run_check(&arguments),
        Command::Run(options) => cairn_jepsen::harness::run(options),
        Command::Clean => run_clean(),
    }
}

fn run_clean() -> Verdict {
    let report = cairn_jepsen::harness::leftovers::clean_dead_runs();
    for line in &report {
        println!("{line}");
    }
    if report.iter().all(|line| line.starts_with("removed")) {
        println!("clean");
        Verdict::Valid
    } else {
        Verdict::Unknown
    }
}

fn run_check(arguments: &CheckArgs) -> Verdict {
    let mut options = CheckOptions::new(Duration::from_secs(arguments.time_limit_secs));
    options.partition_time_limit = arguments.partition_time_limit_secs.map(Duration::from_secs);
    options.threads = arguments.threads;
    let outcome = check_file(arguments, &options);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let verdict = match outcome {
        Ok(HistoryCheck {
            event_count,
            report,
        }) => {
            // A closed stdout must not turn a verdict into a panic; the exit code stands.
            let _ = print_summary(&mut out, event_count, &report);
            report.verdict
        }
        Err(error) => {
            eprintln!("error: {error}");
            Verdict::Unknown
        }
    };
    let _ = writeln!(out, "{verdict}");
    verdict
}

fn check_file(
    arguments: &CheckArgs,
    options: &CheckOptions,
) -> Result<HistoryCheck, cairn_jepsen::Error> {
    let model = match arguments.model {
        ModelName::Register => ModelKind::Register,
        ModelName::Kv => ModelKind::Kv,
        ModelName::VersionedKv => ModelKind::VersionedKv,
    };
    let format = match arguments.format {
        FormatName::JepsenLog => Format::JepsenLog,
        FormatName::Edn => Format::Edn,
        FormatName::Jsonl => Format::Jsonl,
    };
    check_history_file(model, format, &arguments.file, options)
}

fn print_summary(
    out: &mut impl Write,
    event_count: usize,
    report: &LinearizabilityReport,
) -> std::io::Result<()> {
    let count_of = |verdict| {
        report
            .partitions
            .iter()
            .filter(|partition| partition.verdict == verdict)
            .count()
    };
    writeln!(
        out,
        "history: {event_count} events, {} operations ({} crashed reads dropped), {} partitions",
        report.operation_count,
        report.dropped_count,
        report.partitions.len()
    )?;
    writeln!(
        out,
        "partitions: {} valid, {} invalid, {} unknown",
        count_of(Verdict::Valid),
        count_of(Verdict::Invalid),
        count_of(Verdict::Unknown)
    )?;
    let cancelled =
        |partition: &&PartitionReport| partition.unknown_reason == Some(UnknownReason::Cancelled);
    let cancelled_count = report.partitions.iter().filter(cancelled).count();
    if cancelled_count > 0 {
        writeln!(
            out,
            "{cancelled_count} partitions not finished: stopped at the first invalid one"
        )?;
    }
    let mut listed: Vec<&PartitionReport> = report
        .partitions
        .iter()
        .filter(|partition| partition.verdict != Verdict::Valid && !cancelled(partition))
        .collect();
    listed.sort_by_key(|partition| partition.verdict != Verdict::Invalid);
    for partition in listed.iter().take(LISTED_PARTITIONS_MAX) {
        print_partition(out, partition)?;
    }
    if listed.len() > LISTED_PARTITIONS_MAX {
        writeln!(out, "... and {} more", listed.len() - LISTED_PARTITIONS_MAX)?;
    }
    Ok(())
}

fn print_partition(out: &mut impl Write, partition: &PartitionReport) -> std::io::Result<()> {
    let key = if partition.key.is_empty() {
        "(whole history)".to_string()
    } else {
        format!("{:?}", partition.key)
    };
    write!(
        out,
        "key {key}: {} ({} operations, {} steps",
        partition.verdict, partition.operation_count, partition.steps
    )?;
    writeln!(out, ", {:.3} s)", partition.elapsed.as_secs_f64())?;
    if let Some(reason) = &partition.unknown_reason {
        writeln!(out, "  {reason}")?;
    }
    if let Some(failure) = &partition.failure {
        writeln!(
            out,
            "  longest partial linearization: {} of {} operations",
            failure.linearized_count, failure.operation_count
        )?;
        for operation in &failure.linearized_tail {
            writeln!(out, "    ... {operation}")?;
        }
        writeln!(out, "  model state then: {}", failure.state)?;
        writeln!(out, "  cannot linearize: {}", failure.blocked_operation)?;
    }
    Ok(())
}
