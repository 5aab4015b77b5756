//! `cairn bench queue`: a closed-loop queue load generator with producers and
//! consumers running at once, reporting both sides' throughput and latency
//! percentiles and the backlog left at the end.
//!
//! P producer tasks each send one `--size`-byte message to the queue
//! [`BENCH_QUEUE`] and wait for the reply before sending the next; C consumer tasks
//! each receive up to `--batch` messages in one call (pop, or with `--lease-ms`
//! lease then ack every receipt, the acks in flight together) and wait for that
//! before asking again; a receive of k messages counts as k operations, each with
//! the call's latency. A receive long-polls for at most
//! [`RECEIVE_WAIT_MS_MAX`] (never past the end of the run), so idle consumers wait
//! on the server instead of spinning. Every task has its own connection (cairn: one
//! SDK `Client`). The queue is created if missing and purged before the clock
//! starts; connections are opened before it too.
//!
//! `--target nats` runs the same loops against a NATS JetStream cluster (see
//! `bench_nats.rs`, feature `nats-bench`); `cluster/bench-queue.sh` runs both and
//! `docs/benchmarks.md` ("Queues") explains the method.

use std::future::Future;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use serde::Serialize;

use super::bench::{cairn_client, print_json, WorkerResult};
use crate::client::{Client, ReceiveOptions};
use crate::limits::QUEUE_RECEIVE_MESSAGES_MAX;

/// The queue (and, for NATS, the stream and subject) the benchmark uses.
pub(super) const BENCH_QUEUE: &str = "bench-queue";
/// Latency samples one task keeps (4 bytes each); beyond it, samples are dropped
/// and counts stay exact. 128 tasks at the cap hold 256 MiB.
pub(super) const SAMPLES_PER_TASK_MAX: usize = 500_000;
/// The longest a consumer long-polls in one receive.
pub(super) const RECEIVE_WAIT_MS_MAX: u64 = 1_000;
/// Pause after a failed call, so a task facing a down cluster does not spin.
const ERROR_BACKOFF_MS: u64 = 10;
/// Error messages longer than this are cut in the report.
const ERROR_TEXT_CHARS_MAX: usize = 200;

/// The system `cairn bench queue` loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueTarget {
    Cairn,
    /// A NATS JetStream cluster at `--endpoints` (client ports), for comparisons
    /// (cluster/bench-queue.sh); needs a cairn built with `--features nats-bench`.
    Nats,
}

#[derive(Debug, Args)]
pub struct QueueBenchArgs {
    /// System to load: a cairn cluster, or a NATS JetStream one for comparison.
    #[arg(long, value_enum, default_value_t = QueueTarget::Cairn)]
    pub target: QueueTarget,
    /// Producer tasks, each with its own connection (0: receive only).
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Consumer tasks, each with its own connection (0: send only).
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Message size in bytes.
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// Lease each message for this many ms and ack it, instead of popping
    /// (cairn). For NATS, the consumer's ack wait (default 30 s); NATS always acks.
    #[arg(long)]
    pub lease_ms: Option<u64>,
    /// Messages one receive may take (1 to 256): cairn's `max_messages`, the size
    /// of a NATS fetch. Both return what is there rather than wait to fill it.
    #[arg(long, default_value_t = 1)]
    pub batch: u32,
    /// Replicas of the NATS stream (ignored for cairn, which replicates to every node).
    #[arg(long, default_value_t = 3)]
    pub nats_replicas: usize,
    #[arg(long)]
    pub json: bool,
}

/// One run's result: the send side and the receive side, each with exact counts
/// and latency percentiles over the successful operations.
#[derive(Debug, Serialize)]
pub struct QueueBenchReport {
    pub target: String,
    /// "pop", "lease-ack" (cairn) or "fetch-ack" (NATS).
    pub mode: String,
    pub producers: usize,
    pub consumers: usize,
    pub message_size_bytes: usize,
    /// The lease (cairn) or ack wait (NATS), if one was given.
    pub lease_ms: Option<u64>,
    /// Messages one receive call could take (`--batch`).
    pub batch: u32,
    /// Measured wall time from the start until every task had stopped.
    pub duration_secs: f64,
    /// Acknowledged sends.
    pub send_ops: u64,
    pub send_errors: u64,
    pub send_ops_per_sec: f64,
    pub send_latency_ms_p50: f64,
    pub send_latency_ms_p90: f64,
    pub send_latency_ms_p99: f64,
    pub send_latency_ms_max: f64,
    /// Messages consumed: popped, or leased and acked (NATS: fetched and acked).
    /// A receive call that took k messages counts k.
    pub receive_ops: u64,
    /// Receive calls that found no message within their long-poll wait.
    pub receive_empty: u64,
    pub receive_errors: u64,
    pub receive_ops_per_sec: f64,
    /// From asking for messages to having consumed them (the acks' replies
    /// included), so it includes any time spent waiting for a producer; every
    /// message of a batch has its call's latency.
    pub receive_latency_ms_p50: f64,
    pub receive_latency_ms_p90: f64,
    pub receive_latency_ms_p99: f64,
    pub receive_latency_ms_max: f64,
    /// Messages stored at the end (cairn: visible and leased; NATS: the stream's
    /// message count).
    pub backlog_messages: u64,
    /// The first error a producer / consumer saw, if any.
    pub send_first_error: Option<String>,
    pub receive_first_error: Option<String>,
}

/// What one receive call came back with.
pub(super) enum Received {
    /// This many messages (at least one) were consumed (popped, or leased and acked).
    Consumed(u64),
    /// The long-poll wait ended with no message.
    Empty,
    Failed(String),
}

/// What one closed-loop task measured.
#[derive(Debug, Default)]
pub(super) struct TaskResult {
    pub worker: WorkerResult,
    /// Consumers only: receives that found nothing.
    pub empty: u64,
    pub first_error: Option<String>,
}

impl TaskResult {
    /// `ops` operations that completed together, each with the latency since `start`.
    fn record_ok(&mut self, start: Instant, ops: u64) {
        self.worker.ops += ops;
        let us = start.elapsed().as_micros().min(u32::MAX as u128) as u32;
        let room = SAMPLES_PER_TASK_MAX.saturating_sub(self.worker.samples_us.len());
        let samples = usize::try_from(ops).unwrap_or(usize::MAX).min(room);
        self.worker
            .samples_us
            .extend(std::iter::repeat_n(us, samples));
    }

    async fn record_error(&mut self, error: String) {
        self.worker.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(error.chars().take(ERROR_TEXT_CHARS_MAX).collect());
        }
        tokio::time::sleep(Duration::from_millis(ERROR_BACKOFF_MS)).await;
    }
}

/// Sends until `until`, one call at a time; `send` resolves to `Err(text)` on failure.
pub(super) async fn run_producer<F, Fut>(until: Instant, mut send: F) -> TaskResult
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let mut result = TaskResult::default();
    while Instant::now() < until {
        let start = Instant::now();
        match send().await {
            Ok(()) => result.record_ok(start, 1),
            Err(e) => result.record_error(e).await,
        }
    }
    result
}

/// Receives until `until`, one call at a time, long-polling for at most
/// `RECEIVE_WAIT_MS_MAX` and never past `until`; `receive` gets the wait.
pub(super) async fn run_consumer<F, Fut>(until: Instant, mut receive: F) -> TaskResult
where
    F: FnMut(Duration) -> Fut,
    Fut: Future<Output = Received>,
{
    let mut result = TaskResult::default();
    loop {
        let start = Instant::now();
        // Whole milliseconds: cairn's wait is in ms, and 0 would mean "don't wait"
        // to cairn but "wait forever" to a NATS pull.
        let wait_ms = until
            .saturating_duration_since(start)
            .as_millis()
            .min(RECEIVE_WAIT_MS_MAX as u128) as u64;
        if wait_ms == 0 {
            break;
        }
        match receive(Duration::from_millis(wait_ms)).await {
            Received::Consumed(messages) => result.record_ok(start, messages),
            Received::Empty => result.empty += 1,
            Received::Failed(e) => result.record_error(e).await,
        }
    }
    result
}

/// Waits for every task; a panicked task is an error.
pub(super) async fn join_all(
    tasks: Vec<tokio::task::JoinHandle<TaskResult>>,
) -> anyhow::Result<Vec<TaskResult>> {
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await?);
    }
    Ok(results)
}

/// One side's totals and latency percentiles (ms, the same nearest-rank rule as
/// `bench::report`).
struct Side {
    ops: u64,
    errors: u64,
    empty: u64,
    ops_per_sec: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    first_error: Option<String>,
}

fn side(results: Vec<TaskResult>, elapsed_secs: f64) -> Side {
    let ops: u64 = results.iter().map(|r| r.worker.ops).sum();
    let errors = results.iter().map(|r| r.worker.errors).sum();
    let empty = results.iter().map(|r| r.empty).sum();
    let first_error = results.iter().find_map(|r| r.first_error.clone());
    let mut samples: Vec<u32> = results
        .into_iter()
        .flat_map(|r| r.worker.samples_us)
        .collect();
    samples.sort_unstable();
    let pct = |p: f64| -> f64 {
        if samples.is_empty() {
            return 0.0;
        }
        let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
        samples[i] as f64 / 1000.0
    };
    Side {
        ops,
        errors,
        empty,
        ops_per_sec: ops as f64 / elapsed_secs.max(1e-9),
        p50: pct(0.50),
        p90: pct(0.90),
        p99: pct(0.99),
        max: pct(1.0),
        first_error,
    }
}

/// Builds the report from what every producer and consumer measured.
pub(super) fn build_report(
    target: &str,
    mode: &str,
    args: &QueueBenchArgs,
    producers: Vec<TaskResult>,
    consumers: Vec<TaskResult>,
    elapsed_secs: f64,
    backlog_messages: u64,
) -> QueueBenchReport {
    let send = side(producers, elapsed_secs);
    let receive = side(consumers, elapsed_secs);
    QueueBenchReport {
        target: target.to_string(),
        mode: mode.to_string(),
        producers: args.producers,
        consumers: args.consumers,
        message_size_bytes: args.size,
        lease_ms: args.lease_ms,
        batch: args.batch,
        duration_secs: elapsed_secs,
        send_ops: send.ops,
        send_errors: send.errors,
        send_ops_per_sec: send.ops_per_sec,
        send_latency_ms_p50: send.p50,
        send_latency_ms_p90: send.p90,
        send_latency_ms_p99: send.p99,
        send_latency_ms_max: send.max,
        receive_ops: receive.ops,
        receive_empty: receive.empty,
        receive_errors: receive.errors,
        receive_ops_per_sec: receive.ops_per_sec,
        receive_latency_ms_p50: receive.p50,
        receive_latency_ms_p90: receive.p90,
        receive_latency_ms_p99: receive.p99,
        receive_latency_ms_max: receive.max,
        backlog_messages,
        send_first_error: send.first_error,
        receive_first_error: receive.first_error,
    }
}

pub async fn run(
    endpoints: &[String],
    token: Option<&str>,
    args: QueueBenchArgs,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.producers + args.consumers > 0,
        "--producers and --consumers cannot both be 0"
    );
    anyhow::ensure!(args.size > 0, "--size must be at least 1 byte");
    anyhow::ensure!(args.lease_ms != Some(0), "--lease-ms must be positive");
    anyhow::ensure!(
        (1..=QUEUE_RECEIVE_MESSAGES_MAX).contains(&args.batch),
        "--batch must be 1..={QUEUE_RECEIVE_MESSAGES_MAX}"
    );
    let report = match args.target {
        QueueTarget::Cairn => bench_cairn(endpoints, token, &args).await?,
        QueueTarget::Nats => bench_nats(endpoints, &args).await?,
    };
    print_report(&report, args.json);
    Ok(())
}

pub fn print_report(report: &QueueBenchReport, as_json: bool) {
    if as_json {
        return print_json(report);
    }
    println!(
        "{} {} producers={} consumers={} message={}B batch={} in {:.1}s\n  \
         send:    {:.0} ops/s ({} ops, {} errors) latency ms p50={:.2} p90={:.2} p99={:.2} max={:.2}\n  \
         receive: {:.0} ops/s ({} ops, {} empty, {} errors) latency ms p50={:.2} p90={:.2} p99={:.2} max={:.2}\n  \
         backlog at the end: {} messages",
        report.target,
        report.mode,
        report.producers,
        report.consumers,
        report.message_size_bytes,
        report.batch,
        report.duration_secs,
        report.send_ops_per_sec,
        report.send_ops,
        report.send_errors,
        report.send_latency_ms_p50,
        report.send_latency_ms_p90,
        report.send_latency_ms_p99,
        report.send_latency_ms_max,
        report.receive_ops_per_sec,
        report.receive_ops,
        report.receive_empty,
        report.receive_errors,
        report.receive_latency_ms_p50,
        report.receive_latency_ms_p90,
        report.receive_latency_ms_p99,
        report.receive_latency_ms_max,
        report.backlog_messages,
    );
    for (side, error) in [
        ("send", &report.send_first_error),
        ("receive", &report.receive_first_error),
    ] {
        if let Some(error) = error {
            println!("  first {side} error: {error}");
        }
    }
}

#[cfg(feature = "nats-bench")]
async fn bench_nats(
    endpoints: &[String],
    args: &QueueBenchArgs,
) -> anyhow::Result<QueueBenchReport> {
    super::bench_nats::bench_queue(endpoints, args).await
}

#[cfg(not(feature = "nats-bench"))]
async fn bench_nats(
    _endpoints: &[String],
    _args: &QueueBenchArgs,
) -> anyhow::Result<QueueBenchReport> {
    anyhow::bail!(
        "--target nats needs a cairn built with the NATS load generator: \
         cargo build --release --features nats-bench"
    )
}

async fn bench_cairn(
    endpoints: &[String],
    token: Option<&str>,
    args: &QueueBenchArgs,
) -> anyhow::Result<QueueBenchReport> {
    let setup = cairn_client(endpoints, token)?;
    setup.create_queue(BENCH_QUEUE).await?;
    setup.purge_queue(BENCH_QUEUE).await?;
    let lease = args.lease_ms.map(Duration::from_millis);
    let batch = args.batch;
    // One client per task, each connected (one linearizable read through the
    // leader) before the clock starts.
    let mut producer_clients = Vec::with_capacity(args.producers);
    let mut consumer_clients = Vec::with_capacity(args.consumers);
    for i in 0..args.producers + args.consumers {
        let client = cairn_client(endpoints, token)?;
        client.queue_length(BENCH_QUEUE).await?;
        if i < args.producers {
            producer_clients.push(client);
        } else {
            consumer_clients.push(client);
        }
    }
    let body = vec![b'x'; args.size];
    let duration = Duration::try_from_secs_f64(args.duration)?;
    let started = Instant::now();
    let until = started + duration;
    let mut producers = Vec::with_capacity(args.producers);
    for client in producer_clients {
        let body = body.clone();
        producers.push(tokio::spawn(async move {
            run_producer(until, || {
                let (client, body) = (client.clone(), body.clone());
                async move {
                    client
                        .send(BENCH_QUEUE, &body)
                        .await
                        .map(|_| ())
                        .map_err(|e| format!("send: {e}"))
                }
            })
            .await
        }));
    }
    let mut consumers = Vec::with_capacity(args.consumers);
    for client in consumer_clients {
        consumers.push(tokio::spawn(async move {
            run_consumer(until, |wait| {
                let client = client.clone();
                async move { receive_cairn(&client, lease, wait, batch).await }
            })
            .await
        }));
    }
    let producers = join_all(producers).await?;
    let consumers = join_all(consumers).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let backlog = setup.queue_length(BENCH_QUEUE).await?;
    let mode = if lease.is_some() { "lease-ack" } else { "pop" };
    Ok(build_report(
        "cairn", mode, args, producers, consumers, elapsed, backlog,
    ))
}

/// One receive of up to `batch` messages: popped, or leased and then every receipt
/// acked (the acks in flight together, as a consumer done with a batch would).
async fn receive_cairn(
    client: &Client,
    lease: Option<Duration>,
    wait: Duration,
    batch: u32,
) -> Received {
    let options = ReceiveOptions { lease, wait };
    let messages = match client.receive_batch(BENCH_QUEUE, batch, options).await {
        Ok(messages) if messages.is_empty() => return Received::Empty,
        Ok(messages) => messages,
        Err(e) => return Received::Failed(format!("receive: {e}")),
    };
    let count = messages.len() as u64;
    if lease.is_none() {
        return Received::Consumed(count);
    }
    let acks = messages
        .iter()
        .map(|message| client.ack(BENCH_QUEUE, &message.receipt));
    // A failed ack fails the whole call (one error, none of its messages counted):
    // errors are reported apart, and undercounting keeps the rate conservative.
    match futures::future::join_all(acks)
        .await
        .into_iter()
        .find_map(Result::err)
    {
        None => Received::Consumed(count),
        Some(e) => Received::Failed(format!("ack: {e}")),
    }
}
