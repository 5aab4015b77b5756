//! `cairn bench queue --target nats`: the NATS JetStream side of the queue
//! comparison (`cluster/bench-queue.sh`, `docs/benchmarks.md`). Only built with
//! `--features nats-bench`.
//!
//! It owns nothing but the NATS calls; the loops, the bounds and the report are
//! `bench_queue.rs`'s. Before the clock starts it deletes and re-creates the stream
//! [`BENCH_QUEUE`] (subject of the same name, file storage, `--nats-replicas`
//! replicas, work-queue retention: a message is removed once acked, like a
//! consumed cairn message) with one durable pull consumer (explicit acks, ack wait
//! `--lease-ms` or the server's 30 s), and opens one connection per task (the
//! client spreads them over the `--endpoints`).
//!
//! A send is a JetStream publish, waiting for the stream's publish ack. A receive
//! is a pull of one message (`batch`, expiring after the long-poll wait) and a
//! `double_ack` of it, which waits for the server's reply to the ack; there is no
//! pop in JetStream, so NATS always runs in "fetch-ack" mode.
//!
//! With `--batch N` above 1 a receive is a `fetch` of up to N (a no-wait pull: what
//! is there now), and only if that finds nothing, the one-message long poll above;
//! then a `double_ack` of every message, all in flight together. So, like cairn's
//! batch receive, it waits only while nothing is there and never to fill a batch
//! (a plain `batch` pull of N would wait until N arrive or the pull expires).

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream, Context};
use async_nats::{ConnectOptions, ServerAddr};
use futures::StreamExt;

use super::bench_queue::{
    build_report, join_all, run_consumer, run_producer, QueueBenchArgs, QueueBenchReport, Received,
    BENCH_QUEUE,
};
use crate::limits::CLIENT_CALL_TIMEOUT_MS_DEFAULT;

/// The durable pull consumer every consumer task shares.
const CONSUMER_NAME: &str = "bench";
/// Bound on opening one NATS connection.
const NATS_CONNECT_TIMEOUT_MS: u64 = 5_000;

async fn connect(endpoints: &[String]) -> anyhow::Result<Context> {
    let addrs = endpoints
        .iter()
        .map(|e| e.parse::<ServerAddr>())
        .collect::<Result<Vec<_>, _>>()?;
    let client = ConnectOptions::new()
        .name("cairn-bench-queue")
        .connection_timeout(Duration::from_millis(NATS_CONNECT_TIMEOUT_MS))
        // The same per-call deadline as the cairn SDK's.
        .request_timeout(Some(Duration::from_millis(CLIENT_CALL_TIMEOUT_MS_DEFAULT)))
        .connect(addrs)
        .await
        .map_err(|e| anyhow::anyhow!("connecting to NATS at {}: {e}", endpoints.join(",")))?;
    let mut context = jetstream::new(client);
    context.set_timeout(Duration::from_millis(CLIENT_CALL_TIMEOUT_MS_DEFAULT));
    Ok(context)
}

/// A fresh stream and consumer: the NATS counterpart of create-then-purge.
async fn setup(js: &Context, args: &QueueBenchArgs) -> anyhow::Result<stream::Stream> {
    match js.delete_stream(BENCH_QUEUE).await {
        Ok(_) => {}
        Err(e) if is_not_found(&e.kind()) => {}
        Err(e) => anyhow::bail!("deleting the NATS stream {BENCH_QUEUE}: {e}"),
    }
    let stream = js
        .create_stream(stream::Config {
            name: BENCH_QUEUE.to_string(),
            subjects: vec![BENCH_QUEUE.to_string()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            num_replicas: args.nats_replicas,
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("creating the NATS stream {BENCH_QUEUE}: {e}"))?;
    let mut config = consumer::pull::Config {
        durable_name: Some(CONSUMER_NAME.to_string()),
        ack_policy: consumer::AckPolicy::Explicit,
        ..Default::default()
    };
    if let Some(lease_ms) = args.lease_ms {
        config.ack_wait = Duration::from_millis(lease_ms);
    }
    stream
        .create_consumer(config)
        .await
        .map_err(|e| anyhow::anyhow!("creating the NATS consumer {CONSUMER_NAME}: {e}"))?;
    Ok(stream)
}

fn is_not_found(kind: &jetstream::context::DeleteStreamErrorKind) -> bool {
    matches!(
        kind,
        jetstream::context::DeleteStreamErrorKind::JetStream(e)
            if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

/// Runs the load described by `args` against the NATS cluster at `endpoints`.
pub async fn bench_queue(
    endpoints: &[String],
    args: &QueueBenchArgs,
) -> anyhow::Result<QueueBenchReport> {
    let js = connect(endpoints).await?;
    let mut stream = setup(&js, args).await?;
    let mut producer_contexts = Vec::with_capacity(args.producers);
    for _ in 0..args.producers {
        producer_contexts.push(connect(endpoints).await?);
    }
    let mut pull_consumers = Vec::with_capacity(args.consumers);
    for _ in 0..args.consumers {
        let consumer: consumer::PullConsumer = connect(endpoints)
            .await?
            .get_stream(BENCH_QUEUE)
            .await?
            .get_consumer(CONSUMER_NAME)
            .await
            .map_err(|e| anyhow::anyhow!("opening the NATS consumer {CONSUMER_NAME}: {e}"))?;
        pull_consumers.push(consumer);
    }
    let body = bytes::Bytes::from(vec![b'x'; args.size]);
    let duration = Duration::try_from_secs_f64(args.duration)?;
    let started = Instant::now();
    let until = started + duration;
    let mut producers = Vec::with_capacity(args.producers);
    for js in producer_contexts {
        let body = body.clone();
        producers.push(tokio::spawn(async move {
            run_producer(until, || {
                let (js, body) = (js.clone(), body.clone());
                async move {
                    let ack = js
                        .publish(BENCH_QUEUE, body)
                        .await
                        .map_err(|e| format!("publish: {e}"))?;
                    ack.await
                        .map(|_| ())
                        .map_err(|e| format!("publish ack: {e}"))
                }
            })
            .await
        }));
    }
    let batch = usize::try_from(args.batch)?;
    let mut consumers = Vec::with_capacity(args.consumers);
    for pull in pull_consumers {
        consumers.push(tokio::spawn(async move {
            run_consumer(until, |wait| {
                let pull = pull.clone();
                async move { fetch_ack(&pull, wait, batch).await }
            })
            .await
        }));
    }
    let producers = join_all(producers).await?;
    let consumers = join_all(consumers).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let backlog = stream.info().await?.state.messages;
    Ok(build_report(
        "nats",
        "fetch-ack",
        args,
        producers,
        consumers,
        elapsed,
        backlog,
    ))
}

/// One receive: up to `batch` messages (see the module doc), waiting up to `wait`
/// while there is none, each acked (waiting for the server's replies).
async fn fetch_ack(pull: &consumer::PullConsumer, wait: Duration, batch: usize) -> Received {
    let mut messages = Vec::new();
    if batch > 1 {
        match pull.fetch().max_messages(batch).messages().await {
            Ok(stream) => {
                if let Err(e) = collect(stream, &mut messages).await {
                    return Received::Failed(format!("fetch: {e}"));
                }
            }
            Err(e) => return Received::Failed(format!("fetch: {e}")),
        }
    }
    if messages.is_empty() {
        match pull.batch().max_messages(1).expires(wait).messages().await {
            Ok(stream) => {
                if let Err(e) = collect(stream, &mut messages).await {
                    return Received::Failed(format!("pull: {e}"));
                }
            }
            Err(e) => return Received::Failed(format!("pull: {e}")),
        }
    }
    if messages.is_empty() {
        return Received::Empty;
    }
    let count = messages.len() as u64;
    let acks = messages.iter().map(|message| message.double_ack());
    // As for cairn: a failed ack fails the whole call.
    match futures::future::join_all(acks)
        .await
        .into_iter()
        .find_map(Result::err)
    {
        None => Received::Consumed(count),
        Some(e) => Received::Failed(format!("ack: {e}")),
    }
}

/// Reads a pull's messages until the server ends it (batch filled, no messages
/// left, or expired); the stream holds at most the pull's batch size.
async fn collect(
    mut stream: consumer::pull::Batch,
    messages: &mut Vec<jetstream::Message>,
) -> Result<(), async_nats::Error> {
    while let Some(message) = stream.next().await {
        messages.push(message?);
    }
    Ok(())
}
