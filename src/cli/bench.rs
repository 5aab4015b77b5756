//! `cairn bench kv`: a closed-loop load generator (each client waits for its reply
//! before sending again) reporting throughput and latency percentiles.

use std::time::{Duration, Instant};

use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;

use crate::client::{Client, ReadConsistency};

/// Latency samples one client keeps; beyond it, samples are dropped (counts stay exact).
pub(super) const SAMPLES_PER_CLIENT_MAX: usize = 2_000_000;
pub(super) const BENCH_NAMESPACE: &str = "bench";

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Key-value puts and gets.
    Kv(KvBenchArgs),
    /// Queue sends and receives: producers and consumers at once.
    Queue(super::bench_queue::QueueBenchArgs),
    /// Object uploads then downloads: MB/s and per-object latency.
    Object(super::bench_object::ObjectBenchArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Put,
    Get,
    Mixed,
    /// Every key of `--keys` put once, the clients taking turns over them; ends when
    /// all are written (or at `--duration`): loads a data set of a known size.
    Fill,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    Linearizable,
    Stale,
}

/// The system `cairn bench kv` loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Cairn,
    /// An etcd v3 cluster at `--endpoints`, for comparisons (cluster/bench.sh);
    /// needs a cairn built with `--features etcd-bench`.
    Etcd,
}

#[derive(Debug, Args)]
pub struct KvBenchArgs {
    /// System to load: a cairn cluster, or an etcd one for comparison.
    #[arg(long, value_enum, default_value_t = Target::Cairn)]
    pub target: Target,
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    #[arg(long, value_enum, default_value_t = Op::Put)]
    pub op: Op,
    #[arg(long, value_enum, default_value_t = Consistency::Linearizable)]
    pub consistency: Consistency,
    /// Distinct keys the load spreads over.
    #[arg(long, default_value_t = 1000)]
    pub keys: u64,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub target: String,
    pub op: Op,
    pub consistency: Consistency,
    pub clients: usize,
    pub value_size_bytes: usize,
    pub duration_secs: f64,
    pub ops: u64,
    pub errors: u64,
    pub ops_per_sec: f64,
    pub latency_ms_p50: f64,
    pub latency_ms_p90: f64,
    pub latency_ms_p99: f64,
    pub latency_ms_max: f64,
}

/// A cairn client for a load generator, sending the CLI's token if one was given.
pub(super) fn cairn_client(endpoints: &[String], token: Option<&str>) -> anyhow::Result<Client> {
    let client = Client::connect(endpoints.iter().cloned())?;
    Ok(match token {
        Some(token) => client.with_token(token)?,
        None => client,
    })
}

pub async fn run(
    endpoints: &[String],
    token: Option<&str>,
    command: BenchCommand,
) -> anyhow::Result<()> {
    match command {
        BenchCommand::Kv(args) => {
            let report = match args.target {
                Target::Cairn => bench_kv(endpoints, token, &args).await?,
                Target::Etcd => bench_etcd(endpoints, &args).await?,
            };
            print_report(&report, args.json);
            Ok(())
        }
        BenchCommand::Queue(args) => super::bench_queue::run(endpoints, token, args).await,
        BenchCommand::Object(args) => super::bench_object::run(endpoints, token, args).await,
    }
}

/// One report as one JSON line (what the bench scripts collect).
pub fn print_json(report: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string(report).expect("reports always serialize")
    );
}

pub fn print_report(report: &BenchReport, as_json: bool) {
    if as_json {
        return print_json(report);
    }
    println!(
        "{} {:?}/{:?} clients={} value={}B: {:.0} ops/s ({} ops, {} errors in {:.1}s) \
         latency ms p50={:.2} p90={:.2} p99={:.2} max={:.2}",
        report.target,
        report.op,
        report.consistency,
        report.clients,
        report.value_size_bytes,
        report.ops_per_sec,
        report.ops,
        report.errors,
        report.duration_secs,
        report.latency_ms_p50,
        report.latency_ms_p90,
        report.latency_ms_p99,
        report.latency_ms_max
    );
}

#[cfg(feature = "etcd-bench")]
async fn bench_etcd(endpoints: &[String], args: &KvBenchArgs) -> anyhow::Result<BenchReport> {
    super::bench_etcd::bench_kv(endpoints, args).await
}

#[cfg(not(feature = "etcd-bench"))]
async fn bench_etcd(_endpoints: &[String], _args: &KvBenchArgs) -> anyhow::Result<BenchReport> {
    anyhow::bail!(
        "--target etcd needs a cairn built with the etcd load generator: \
         cargo build --release --features etcd-bench (building it needs protoc)"
    )
}

async fn bench_kv(
    endpoints: &[String],
    token: Option<&str>,
    args: &KvBenchArgs,
) -> anyhow::Result<BenchReport> {
    anyhow::ensure!(args.clients > 0, "--clients must be at least 1");
    let setup = cairn_client(endpoints, token)?;
    match setup.create_namespace(BENCH_NAMESPACE).await {
        Ok(()) | Err(crate::client::Error::AlreadyExists(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let value = vec![b'x'; args.value_size];
    if matches!(args.op, Op::Get | Op::Mixed) {
        for key in 0..args.keys {
            setup
                .put(BENCH_NAMESPACE, key_name(key).as_bytes(), &value)
                .await?;
        }
    }
    let duration = Duration::try_from_secs_f64(args.duration)?;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.clients);
    for worker in 0..args.clients {
        let client = cairn_client(endpoints, token)?;
        let walk = KeyWalk::new(worker as u64, args.clients as u64, args.op, args.keys);
        let (consistency, value) = (args.consistency, value.clone());
        tasks.push(tokio::spawn(async move {
            run_worker(client, walk, consistency, value, started + duration).await
        }));
    }
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(report_workers("cairn".into(), args, results, elapsed))
}

pub(super) fn key_name(key: u64) -> String {
    format!("key-{key:08}")
}

async fn run_worker(
    client: Client,
    mut walk: KeyWalk,
    consistency: Consistency,
    value: Vec<u8>,
    until: Instant,
) -> WorkerResult {
    let consistency = match consistency {
        Consistency::Linearizable => ReadConsistency::Linearizable,
        Consistency::Stale => ReadConsistency::Stale,
    };
    let mut result = WorkerResult::default();
    while Instant::now() < until {
        let Some((key, is_put)) = walk.next_op() else {
            break;
        };
        let key = key_name(key);
        let start = Instant::now();
        let ok = if is_put {
            client
                .put(BENCH_NAMESPACE, key.as_bytes(), &value)
                .await
                .is_ok()
        } else {
            client
                .get_with(BENCH_NAMESPACE, key.as_bytes(), consistency)
                .await
                .is_ok()
        };
        result.record(ok, start);
    }
    result
}

/// The order in which a worker visits keys and chooses puts or gets; every target
/// (cairn, etcd) uses the same walk so the loads are the same.
pub(super) struct KeyWalk {
    i: u64,
    op: Op,
    keys: u64,
    /// `Fill`: the number of clients, each taking every `stride`-th key.
    stride: u64,
}

impl KeyWalk {
    pub(super) fn new(worker: u64, clients: u64, op: Op, keys: u64) -> Self {
        KeyWalk {
            i: match op {
                Op::Fill => worker,
                _ => worker.wrapping_mul(7919),
            },
            op,
            keys: keys.max(1),
            stride: clients.max(1),
        }
    }

    /// The next key index and whether the operation is a put; `None` once a fill
    /// has written its share of the keys.
    pub(super) fn next_op(&mut self) -> Option<(u64, bool)> {
        if self.op == Op::Fill {
            let key = self.i;
            self.i = self.i.saturating_add(self.stride);
            return (key < self.keys).then_some((key, true));
        }
        self.i = self.i.wrapping_add(1);
        let is_put = match self.op {
            Op::Put | Op::Fill => true,
            Op::Get => false,
            Op::Mixed => self.i.is_multiple_of(2),
        };
        Some((self.i % self.keys, is_put))
    }
}

/// What one closed-loop client measured.
#[derive(Debug, Default)]
pub struct WorkerResult {
    /// Successful operations (exact, even when samples are capped).
    pub ops: u64,
    pub errors: u64,
    /// Latency of successful operations, µs, up to `SAMPLES_PER_CLIENT_MAX`.
    pub samples_us: Vec<u32>,
}

impl WorkerResult {
    /// Counts one finished operation that began at `start`.
    pub fn record(&mut self, ok: bool, start: Instant) {
        if !ok {
            self.errors += 1;
            return;
        }
        self.ops += 1;
        if self.samples_us.len() < SAMPLES_PER_CLIENT_MAX {
            self.samples_us
                .push(start.elapsed().as_micros().min(u32::MAX as u128) as u32);
        }
    }
}

/// Builds a report from what every client measured; counts are exact even when
/// latency samples were capped.
pub fn report_workers(
    target: String,
    args: &KvBenchArgs,
    results: Vec<WorkerResult>,
    elapsed: f64,
) -> BenchReport {
    let ops: u64 = results.iter().map(|r| r.ops).sum();
    let errors = results.iter().map(|r| r.errors).sum();
    let samples = results.into_iter().flat_map(|r| r.samples_us).collect();
    let mut report = report(target, args, samples, errors, elapsed);
    report.ops = ops;
    report.ops_per_sec = ops as f64 / elapsed.max(1e-9);
    report
}

/// Builds a report from latency samples in microseconds.
pub fn report(
    target: String,
    args: &KvBenchArgs,
    mut samples: Vec<u32>,
    errors: u64,
    elapsed: f64,
) -> BenchReport {
    samples.sort_unstable();
    let pct = |p: f64| -> f64 {
        if samples.is_empty() {
            return 0.0;
        }
        let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
        samples[i] as f64 / 1000.0
    };
    BenchReport {
        target,
        op: args.op,
        consistency: args.consistency,
        clients: args.clients,
        value_size_bytes: args.value_size,
        duration_secs: elapsed,
        ops: samples.len() as u64,
        errors,
        ops_per_sec: samples.len() as f64 / elapsed.max(1e-9),
        latency_ms_p50: pct(0.50),
        latency_ms_p90: pct(0.90),
        latency_ms_p99: pct(0.99),
        latency_ms_max: pct(1.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fill_writes_every_key_once_across_its_clients() {
        let clients = 3;
        let mut seen = Vec::new();
        for worker in 0..clients {
            let mut walk = KeyWalk::new(worker, clients, Op::Fill, 10);
            while let Some((key, is_put)) = walk.next_op() {
                assert!(is_put);
                seen.push(key);
            }
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
    }
}
