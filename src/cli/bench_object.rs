//! `cairn bench object`: uploads `--count` objects of `--size` bytes, `--clients`
//! at a time, then downloads each of them, and reports each phase's throughput
//! (object bytes over the phase's wall time) and per-object latency percentiles.
//!
//! Each object's content is expanded from its own seed by a fast PRNG, so no two
//! objects (nor two runs) share a chunk and dedupe cannot help; the same seed
//! yields the same bytes when the SDK re-sends an upload. Content is generated
//! while it streams, so memory stays at a few pieces per client whatever the
//! size. Objects go to the bucket [`BENCH_BUCKET`] under a per-run prefix and are
//! deleted after the run (untimed) unless `--keep`. Each client task has its own
//! SDK `Client`, connected before the clock starts.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use clap::Args;
use futures::{Stream, StreamExt};
use serde::Serialize;
use tokio::io::AsyncWrite;

use super::bench::{cairn_client, print_json, WorkerResult};
use crate::client::{Client, Error, PutObjectOptions};
use crate::limits::OBJECT_BYTES_MAX;

/// The bucket the benchmark writes to (created, private, if missing).
const BENCH_BUCKET: &str = "bench-objects";
/// Bytes per upload message: the SDK's own piece size for files.
const PIECE_BYTES: usize = 256 * 1024;
const OBJECT_COUNT_MAX: u64 = 100_000;
const CLIENTS_MAX: usize = 256;
/// Bytes one run may upload: bounds its time and the disk it fills (each byte is
/// stored twice per replica, in the Raft log and in a chunk file).
const RUN_BYTES_MAX: u64 = 64 * 1024 * 1024 * 1024;
/// Longest `--phase-secs-max`.
const PHASE_SECS_MAX: u64 = 3_600;
/// Deletes in flight while cleaning up.
const CLEANUP_DELETES_IN_FLIGHT_MAX: usize = 16;
/// Error messages longer than this are cut in the report.
const ERROR_TEXT_CHARS_MAX: usize = 200;

#[derive(Debug, Args)]
pub struct ObjectBenchArgs {
    /// Object size: bytes, or with a suffix: KiB, MiB, GiB (or K, M, G), KB, MB, GB.
    #[arg(long, default_value = "1MiB", value_parser = parse_size_bytes)]
    pub size: u64,
    /// Objects to upload (then download).
    #[arg(long, default_value_t = 64)]
    pub count: u64,
    /// Concurrent transfers, each with its own connection.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Seconds each phase (put, get) may start new transfers for; objects not
    /// uploaded by then are not downloaded either.
    #[arg(long, default_value_t = 600)]
    pub phase_secs_max: u64,
    /// Hash each download and compare it with the object's etag (costs client CPU).
    #[arg(long)]
    pub verify: bool,
    /// Leave the objects in the bucket instead of deleting them after the run.
    #[arg(long)]
    pub keep: bool,
    #[arg(long)]
    pub json: bool,
    /// Process ids of the servers (comma-separated): the report then gives the CPU
    /// seconds they used in each phase (from /proc), per MiB moved.
    #[arg(long, value_delimiter = ',')]
    pub server_pids: Vec<u32>,
}

/// One run: the put phase, then the get phase over the objects the put phase
/// stored. MB = 1,000,000 bytes.
#[derive(Debug, Serialize)]
pub struct ObjectBenchReport {
    pub target: String,
    pub object_size_bytes: u64,
    pub count: u64,
    pub clients: usize,
    pub put_objects: u64,
    pub put_errors: u64,
    pub put_bytes: u64,
    pub put_secs: f64,
    pub put_mb_per_sec: f64,
    pub put_latency_ms_p50: f64,
    pub put_latency_ms_p90: f64,
    pub put_latency_ms_p99: f64,
    pub put_latency_ms_max: f64,
    /// Chunks the uploads replicated, against the chunks of all objects: equal
    /// unless dedupe found chunks already stored.
    pub put_chunks_sent: u64,
    pub put_chunks_total: u64,
    pub get_objects: u64,
    pub get_errors: u64,
    pub get_bytes: u64,
    pub get_secs: f64,
    pub get_mb_per_sec: f64,
    pub get_latency_ms_p50: f64,
    pub get_latency_ms_p90: f64,
    pub get_latency_ms_p99: f64,
    pub get_latency_ms_max: f64,
    pub verified: bool,
    pub first_error: Option<String>,
    /// CPU seconds the `--server-pids` used in each phase (`None` without them).
    pub put_server_cpu_secs: Option<f64>,
    pub get_server_cpu_secs: Option<f64>,
    /// The same per MiB of object data moved, in milliseconds.
    pub put_server_cpu_ms_per_mib: Option<f64>,
    pub get_server_cpu_ms_per_mib: Option<f64>,
}

/// Parses `1048576`, `1MiB`, `1M`, `1MB`, `256KiB`, … into bytes. Binary suffixes
/// (KiB, MiB, GiB, TiB and the bare K, M, G, T) count in 1024s, decimal ones (KB,
/// MB, GB, TB) in 1000s; case does not matter.
pub fn parse_size_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(digits_end);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 4096, 1MiB, 256MiB)"))?;
    let multiplier: u64 = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        other => return Err(format!("unknown size suffix {other:?} in {text:?}")),
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("{text:?} is too large"))
}

fn validate(args: &ObjectBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=OBJECT_BYTES_MAX).contains(&args.size),
        "--size must be 1 byte to {OBJECT_BYTES_MAX} bytes (the object limit)"
    );
    anyhow::ensure!(
        (1..=OBJECT_COUNT_MAX).contains(&args.count),
        "--count must be 1 to {OBJECT_COUNT_MAX}"
    );
    anyhow::ensure!(
        (1..=CLIENTS_MAX).contains(&args.clients),
        "--clients must be 1 to {CLIENTS_MAX}"
    );
    anyhow::ensure!(
        (1..=PHASE_SECS_MAX).contains(&args.phase_secs_max),
        "--phase-secs-max must be 1 to {PHASE_SECS_MAX}"
    );
    let run_bytes = args.size.checked_mul(args.count);
    anyhow::ensure!(
        run_bytes.is_some_and(|b| b <= RUN_BYTES_MAX),
        "--size x --count must be at most {RUN_BYTES_MAX} bytes per run"
    );
    Ok(())
}

pub async fn run(
    endpoints: &[String],
    token: Option<&str>,
    args: ObjectBenchArgs,
) -> anyhow::Result<()> {
    validate(&args)?;
    let setup = cairn_client(endpoints, token)?;
    match setup.create_bucket(BENCH_BUCKET, false).await {
        Ok(()) | Err(Error::AlreadyExists(_)) => {}
        Err(e) => return Err(e.into()),
    }
    // One client per task, each connected (one bucket listing through the
    // leader) before the clock starts.
    let mut clients = Vec::with_capacity(args.clients);
    for _ in 0..args.clients {
        let client = cairn_client(endpoints, token)?;
        client.list_buckets().await?;
        clients.push(client);
    }
    let plan = Arc::new(Plan {
        run_seed: rand::random(),
        size_bytes: args.size,
        verify: args.verify,
        phase_time_max: Duration::from_secs(args.phase_secs_max),
    });
    let all: Vec<u64> = (0..args.count).collect();
    let pids = args.server_pids.clone();
    let cpu = move || (!pids.is_empty()).then(|| super::proc_cpu::cpu_secs(&pids));
    let cpu_start = cpu();
    let put = run_phase(&clients, &plan, Phase::Put, all).await?;
    let cpu_put = cpu();
    let stored: Vec<u64> = put.done.clone();
    let get = run_phase(&clients, &plan, Phase::Get, stored.clone()).await?;
    let cpu_get = cpu();
    if !args.keep {
        delete_objects(&setup, &plan, &stored).await;
    }
    let mut report = build_report(&args, put, get);
    let used = |from: Option<f64>, to: Option<f64>| Some(to? - from?);
    report.put_server_cpu_secs = used(cpu_start, cpu_put);
    report.get_server_cpu_secs = used(cpu_put, cpu_get);
    let per_mib = |secs: Option<f64>, bytes: u64| {
        let mib = bytes as f64 / (1024.0 * 1024.0);
        secs.filter(|_| mib > 0.0).map(|s| s * 1000.0 / mib)
    };
    report.put_server_cpu_ms_per_mib = per_mib(report.put_server_cpu_secs, report.put_bytes);
    report.get_server_cpu_ms_per_mib = per_mib(report.get_server_cpu_secs, report.get_bytes);
    print_report(&report, args.json);
    Ok(())
}

/// What every task of a run shares.
struct Plan {
    /// Makes this run's keys and contents differ from every other run's.
    run_seed: u64,
    size_bytes: u64,
    verify: bool,
    phase_time_max: Duration,
}

impl Plan {
    fn key(&self, index: u64) -> String {
        format!("run-{:016x}/{index:08}", self.run_seed)
    }

    fn seed(&self, index: u64) -> u64 {
        self.run_seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Put,
    Get,
}

/// What one phase measured, all tasks together.
#[derive(Debug, Default)]
struct PhaseResult {
    worker: WorkerResult,
    bytes: u64,
    secs: f64,
    chunks_sent: u64,
    chunks_total: u64,
    /// Indices of the objects transferred in full.
    done: Vec<u64>,
    first_error: Option<String>,
}

impl PhaseResult {
    fn merge(&mut self, other: PhaseResult) {
        self.worker.ops += other.worker.ops;
        self.worker.errors += other.worker.errors;
        self.worker.samples_us.extend(other.worker.samples_us);
        self.bytes += other.bytes;
        self.chunks_sent += other.chunks_sent;
        self.chunks_total += other.chunks_total;
        self.done.extend(other.done);
        self.first_error = self.first_error.take().or(other.first_error);
    }
}

/// Runs one phase over `indices` with one task per client; a task takes the next
/// index until none is left or the phase's time is up.
async fn run_phase(
    clients: &[Client],
    plan: &Arc<Plan>,
    phase: Phase,
    indices: Vec<u64>,
) -> anyhow::Result<PhaseResult> {
    let indices = Arc::new(indices);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let until = started + plan.phase_time_max;
    let mut tasks = Vec::with_capacity(clients.len());
    for client in clients {
        let (client, plan) = (client.clone(), Arc::clone(plan));
        let (indices, next) = (Arc::clone(&indices), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            let mut result = PhaseResult::default();
            while Instant::now() < until {
                let Some(&index) = indices.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    break;
                };
                let start = Instant::now();
                let outcome = transfer(&client, &plan, phase, index).await;
                record(&mut result, index, start, outcome);
            }
            result
        }));
    }
    let mut total = PhaseResult::default();
    for task in tasks {
        total.merge(task.await?);
    }
    total.secs = started.elapsed().as_secs_f64();
    total.done.sort_unstable();
    Ok(total)
}

/// Bytes moved and (puts) chunks sent and total, or the error's text.
type Outcome = Result<(u64, u64, u64), String>;

fn record(result: &mut PhaseResult, index: u64, start: Instant, outcome: Outcome) {
    result.worker.record(outcome.is_ok(), start);
    match outcome {
        Ok((bytes, chunks_sent, chunks_total)) => {
            result.bytes += bytes;
            result.chunks_sent += chunks_sent;
            result.chunks_total += chunks_total;
            result.done.push(index);
        }
        Err(e) if result.first_error.is_none() => {
            result.first_error = Some(e.chars().take(ERROR_TEXT_CHARS_MAX).collect());
        }
        Err(_) => {}
    }
}

async fn transfer(client: &Client, plan: &Plan, phase: Phase, index: u64) -> Outcome {
    let (key, size) = (plan.key(index), plan.size_bytes);
    match phase {
        Phase::Put => {
            let seed = plan.seed(index);
            let uploaded = client
                .put_object_from(
                    BENCH_BUCKET,
                    &key,
                    &PutObjectOptions::default(),
                    size,
                    move || async move { Some(content(seed, size)) },
                )
                .await
                .map_err(|e| format!("put {key}: {e}"))?;
            if uploaded.size != size {
                return Err(format!(
                    "put {key}: stored {} of {size} bytes",
                    uploaded.size
                ));
            }
            Ok((size, uploaded.chunks_sent, uploaded.chunks_total))
        }
        Phase::Get => {
            let mut sink = CountingSink::new(plan.verify);
            let info = client
                .get_object_to(BENCH_BUCKET, &key, (0, 0), &mut sink, None)
                .await
                .map_err(|e| format!("get {key}: {e}"))?;
            sink.check(size, &info.etag)
                .map_err(|e| format!("get {key}: {e}"))?;
            Ok((size, 0, 0))
        }
    }
}

/// An object's content: `size_bytes` bytes from `seed`, in upload pieces. BLAKE3's
/// extendable output is a fast, reproducible stream of incompressible bytes.
fn content(seed: u64, size_bytes: u64) -> impl Stream<Item = Bytes> + Send {
    let reader = blake3::Hasher::new()
        .update(&seed.to_le_bytes())
        .finalize_xof();
    futures::stream::unfold((reader, 0u64), move |(mut reader, sent)| async move {
        if sent >= size_bytes {
            return None;
        }
        let length = (size_bytes - sent).min(PIECE_BYTES as u64) as usize;
        let mut piece = BytesMut::zeroed(length);
        reader.fill(&mut piece);
        Some((piece.freeze(), (reader, sent + length as u64)))
    })
}

/// A download's destination: counts bytes and, when verifying, hashes them.
struct CountingSink {
    bytes: u64,
    hasher: Option<blake3::Hasher>,
}

impl CountingSink {
    fn new(verify: bool) -> Self {
        CountingSink {
            bytes: 0,
            hasher: verify.then(blake3::Hasher::new),
        }
    }

    fn check(&self, size_bytes: u64, etag: &str) -> Result<(), String> {
        if self.bytes != size_bytes {
            return Err(format!("received {} of {size_bytes} bytes", self.bytes));
        }
        match &self.hasher {
            Some(h) if h.finalize().to_hex().as_str() != etag => {
                Err(format!("content does not match etag {etag}"))
            }
            _ => Ok(()),
        }
    }
}

impl AsyncWrite for CountingSink {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buffer: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.bytes += buffer.len() as u64;
        if let Some(h) = &mut self.hasher {
            h.update(buffer);
        }
        Poll::Ready(Ok(buffer.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Deletes the run's objects; failures are reported, not fatal: the numbers are
/// already measured.
async fn delete_objects(client: &Client, plan: &Plan, indices: &[u64]) {
    let failed = futures::stream::iter(indices)
        .map(|&index| async move { client.delete_object(BENCH_BUCKET, &plan.key(index)).await })
        .buffer_unordered(CLEANUP_DELETES_IN_FLIGHT_MAX)
        .filter(|r| std::future::ready(r.is_err()))
        .count()
        .await;
    if failed > 0 {
        eprintln!("warning: {failed} benchmark objects in bucket {BENCH_BUCKET} were not deleted");
    }
}

/// Latency percentiles in ms over samples in µs (nearest rank, as `bench::report`).
fn percentiles_ms(mut samples_us: Vec<u32>) -> [f64; 4] {
    samples_us.sort_unstable();
    [0.50, 0.90, 0.99, 1.0].map(|p| {
        if samples_us.is_empty() {
            return 0.0;
        }
        let i = ((samples_us.len() as f64 - 1.0) * p).round() as usize;
        f64::from(samples_us[i]) / 1000.0
    })
}

fn mb_per_sec(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs.max(1e-9)
}

fn build_report(args: &ObjectBenchArgs, put: PhaseResult, get: PhaseResult) -> ObjectBenchReport {
    let [put_p50, put_p90, put_p99, put_max] = percentiles_ms(put.worker.samples_us);
    let [get_p50, get_p90, get_p99, get_max] = percentiles_ms(get.worker.samples_us);
    ObjectBenchReport {
        target: "cairn".into(),
        object_size_bytes: args.size,
        count: args.count,
        clients: args.clients,
        put_objects: put.worker.ops,
        put_errors: put.worker.errors,
        put_bytes: put.bytes,
        put_secs: put.secs,
        put_mb_per_sec: mb_per_sec(put.bytes, put.secs),
        put_latency_ms_p50: put_p50,
        put_latency_ms_p90: put_p90,
        put_latency_ms_p99: put_p99,
        put_latency_ms_max: put_max,
        put_chunks_sent: put.chunks_sent,
        put_chunks_total: put.chunks_total,
        get_objects: get.worker.ops,
        get_errors: get.worker.errors,
        get_bytes: get.bytes,
        get_secs: get.secs,
        get_mb_per_sec: mb_per_sec(get.bytes, get.secs),
        get_latency_ms_p50: get_p50,
        get_latency_ms_p90: get_p90,
        get_latency_ms_p99: get_p99,
        get_latency_ms_max: get_max,
        verified: args.verify,
        first_error: put.first_error.or(get.first_error),
        put_server_cpu_secs: None,
        get_server_cpu_secs: None,
        put_server_cpu_ms_per_mib: None,
        get_server_cpu_ms_per_mib: None,
    }
}

pub fn print_report(report: &ObjectBenchReport, as_json: bool) {
    if as_json {
        return print_json(report);
    }
    println!(
        "{} object size={}B count={} clients={}\n  \
         put: {:.1} MB/s ({} objects, {} errors, {} bytes in {:.2}s; {} of {} chunks sent) \
         latency ms p50={:.1} p90={:.1} p99={:.1} max={:.1}\n  \
         get: {:.1} MB/s ({} objects, {} errors, {} bytes in {:.2}s{}) \
         latency ms p50={:.1} p90={:.1} p99={:.1} max={:.1}",
        report.target,
        report.object_size_bytes,
        report.count,
        report.clients,
        report.put_mb_per_sec,
        report.put_objects,
        report.put_errors,
        report.put_bytes,
        report.put_secs,
        report.put_chunks_sent,
        report.put_chunks_total,
        report.put_latency_ms_p50,
        report.put_latency_ms_p90,
        report.put_latency_ms_p99,
        report.put_latency_ms_max,
        report.get_mb_per_sec,
        report.get_objects,
        report.get_errors,
        report.get_bytes,
        report.get_secs,
        if report.verified { ", verified" } else { "" },
        report.get_latency_ms_p50,
        report.get_latency_ms_p90,
        report.get_latency_ms_p99,
        report.get_latency_ms_max,
    );
    if let Some(error) = &report.first_error {
        println!("  first error: {error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_and_decimal_suffixes() {
        assert_eq!(parse_size_bytes("4096"), Ok(4096));
        assert_eq!(parse_size_bytes("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size_bytes("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size_bytes("256mib"), Ok(256 << 20));
        assert_eq!(parse_size_bytes("1M"), Ok(1 << 20));
        assert_eq!(parse_size_bytes("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size_bytes("1MB"), Ok(1_000_000));
        assert_eq!(parse_size_bytes("7B"), Ok(7));
        assert_eq!(parse_size_bytes(" 3 KiB "), Ok(3 << 10));
    }

    #[test]
    fn malformed_or_overflowing_sizes_are_rejected() {
        for text in [
            "",
            "MiB",
            "1.5MiB",
            "-1",
            "1XB",
            "1 MiB extra",
            "99999999999TiB",
        ] {
            assert!(parse_size_bytes(text).is_err(), "{text:?} was accepted");
        }
    }

    async fn collect(seed: u64, size_bytes: u64) -> Vec<u8> {
        let pieces: Vec<Bytes> = content(seed, size_bytes).collect().await;
        pieces.concat()
    }

    #[tokio::test]
    async fn content_is_reproducible_per_seed_and_differs_between_seeds() {
        let size = PIECE_BYTES as u64 * 2 + 13;
        let first = collect(1, size).await;
        assert_eq!(first.len() as u64, size);
        assert_eq!(first, collect(1, size).await);
        assert_ne!(first[..4096], collect(2, size).await[..4096]);
        assert!(collect(1, 0).await.is_empty());
    }

    #[test]
    fn each_object_of_a_run_gets_its_own_seed_and_key() {
        let plan = Plan {
            run_seed: 42,
            size_bytes: 1,
            verify: false,
            phase_time_max: Duration::from_secs(1),
        };
        assert_ne!(plan.seed(0), plan.seed(1));
        assert_ne!(plan.key(0), plan.key(1));
        assert_eq!(plan.key(7), "run-000000000000002a/00000007");
    }

    #[tokio::test]
    async fn the_sink_checks_size_and_etag() {
        let mut sink = CountingSink::new(true);
        tokio::io::AsyncWriteExt::write_all(&mut sink, b"abc")
            .await
            .unwrap();
        let etag = blake3::hash(b"abc").to_hex().to_string();
        assert!(sink.check(3, &etag).is_ok());
        assert!(sink.check(4, &etag).is_err());
        assert!(sink.check(3, "00").is_err());
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        assert_eq!(percentiles_ms(vec![]), [0.0; 4]);
        let samples = (1..=100).map(|ms| ms * 1000).collect();
        assert_eq!(percentiles_ms(samples), [51.0, 90.0, 99.0, 100.0]);
    }
}
