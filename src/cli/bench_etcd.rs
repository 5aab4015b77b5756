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
    key_name, report_workers, BenchReport, Consistency, KeyWalk, KvBenchArgs, Op, WorkerResult,
    BENCH_NAMESPACE,
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
    if matches!(args.op, Op::Get | Op::Mixed) {
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
    Ok(report_workers("etcd".into(), args, results, elapsed))
}

/// One closed-loop client.
async fn run_worker(
    mut client: KvClient,
    mut walk: KeyWalk,
    consistency: Consistency,
    value: Vec<u8>,
    until: Instant,
) -> WorkerResult {
    let get_options = match consistency {
        Consistency::Linearizable => GetOptions::new(),
        Consistency::Stale => GetOptions::new().with_serializable(),
    };
    let mut result = WorkerResult::default();
    // The same walk over the keys as the cairn workers.
    while Instant::now() < until {
        let Some((key, is_put)) = walk.next_op() else {
            break;
        };
        let key = etcd_key(key);
        let start = Instant::now();
        let ok = if is_put {
            client.put(key, value.clone(), None).await.is_ok()
        } else {
            client.get(key, Some(get_options.clone())).await.is_ok()
        };
        result.record(ok, start);
    }
    result
}
