//! `cairn bench kv --target etcd`: the etcd side of the cairn-vs-etcd comparison
//! (`cluster/bench.sh`, `docs/benchmarks.md`). Only built with `--features etcd-bench`.
//!
//! It owns nothing but the etcd calls: the load is the cairn path's in every other
//! respect: closed loop (each client sends, waits for the reply, records the latency
//! in µs), one connection per client, the same key names and walk over them, the
//! same pre-population before gets, and the same `report()`/`print_report` output,
//! with target "etcd". Put is an etcd Put; a linearizable get is a Range with etcd's
//! default (linearizable) consistency; a stale get is a serializable Range.

use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, GetOptions, KvClient};

use super::bench::{
    key_name, report, BenchReport, Consistency, KvBenchArgs, Op, BENCH_NAMESPACE,
    SAMPLES_PER_CLIENT_MAX,
};
use crate::limits::CLIENT_CALL_TIMEOUT_MS_DEFAULT;

/// Bound on opening one etcd connection.
const ETCD_CONNECT_TIMEOUT_MS: u64 = 5_000;

/// The etcd key for bench key `key`: cairn's key name under the bench namespace
/// as a prefix, since etcd has one flat key space.
fn etcd_key(key: u64) -> String {
    format!("{BENCH_NAMESPACE}/{}", key_name(key))
}

fn connect_options() -> ConnectOptions {
    ConnectOptions::new()
        // The same per-call deadline as the cairn SDK's.
        .with_timeout(Duration::from_millis(CLIENT_CALL_TIMEOUT_MS_DEFAULT))
        .with_connect_timeout(Duration::from_millis(ETCD_CONNECT_TIMEOUT_MS))
}

async fn connect(endpoints: &[String]) -> anyhow::Result<Client> {
    Client::connect(endpoints, Some(connect_options()))
        .await
        .map_err(|e| anyhow::anyhow!("connecting to etcd at {}: {e}", endpoints.join(",")))
}

/// Runs the load described by `args` against the etcd cluster at `endpoints`.
pub async fn bench_kv(endpoints: &[String], args: &KvBenchArgs) -> anyhow::Result<BenchReport> {
    anyhow::ensure!(args.clients > 0, "--clients must be at least 1");
    let mut setup = connect(endpoints).await?.kv_client();
    let value = vec![b'x'; args.value_size];
    if args.op != Op::Put {
        for key in 0..args.keys {
            setup.put(etcd_key(key), value.clone(), None).await?;
        }
    }
    // One client (own balanced channel over all endpoints) per worker, like the
    // cairn workers' one SDK client each. Both open their connections lazily, on the
    // first call inside the timed window.
    let mut clients = Vec::with_capacity(args.clients);
    for _ in 0..args.clients {
        clients.push(connect(endpoints).await?.kv_client());
    }
    let duration = Duration::try_from_secs_f64(args.duration)?;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.clients);
    for (worker, client) in clients.into_iter().enumerate() {
        let (op, consistency, keys, value) = (args.op, args.consistency, args.keys, value.clone());
        tasks.push(tokio::spawn(async move {
            run_worker(
                client,
                worker as u64,
                op,
                consistency,
                keys,
                value,
                started + duration,
            )
            .await
        }));
    }
    let mut samples = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (worker_samples, worker_errors) = task.await?;
        samples.extend(worker_samples);
        errors += worker_errors;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(report("etcd".into(), args, samples, errors, elapsed))
}

/// One closed-loop client; returns its latency samples in µs and its error count.
async fn run_worker(
    mut client: KvClient,
    worker: u64,
    op: Op,
    consistency: Consistency,
    keys: u64,
    value: Vec<u8>,
    until: Instant,
) -> (Vec<u32>, u64) {
    let get_options = match consistency {
        Consistency::Linearizable => GetOptions::new(),
        Consistency::Stale => GetOptions::new().with_serializable(),
    };
    let mut samples = Vec::new();
    let mut errors = 0u64;
    // The same walk over the keys as the cairn workers.
    let mut i = worker.wrapping_mul(7919);
    while Instant::now() < until {
        i = i.wrapping_add(1);
        let key = etcd_key(i % keys.max(1));
        let is_put = match op {
            Op::Put => true,
            Op::Get => false,
            Op::Mixed => i.is_multiple_of(2),
        };
        let start = Instant::now();
        let ok = if is_put {
            client.put(key, value.clone(), None).await.is_ok()
        } else {
            client.get(key, Some(get_options.clone())).await.is_ok()
        };
        if !ok {
            errors += 1;
            continue;
        }
        if samples.len() < SAMPLES_PER_CLIENT_MAX {
            samples.push(start.elapsed().as_micros().min(u32::MAX as u128) as u32);
        }
    }
    (samples, errors)
}
