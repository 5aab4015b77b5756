//! Queues on real clusters: FIFO order, lease expiry back to the original
//! position, the message size limit at its edge, long polling, batch receives
//! (order, per-message leases and receipts, the count limit), and no loss (and,
//! for pops, no duplicates) while the leader is killed and restarted, with single
//! and batch receives.
//! Method: server processes on loopback driven through the SDK; producers and
//! consumers are tasks recording what they sent and received.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn::client::{Client, Error, Message, ReceiveOptions};
use cairn::proto::clients::QueueClient;
use cairn::proto::v1;
use common::{eventually, TestCluster};
use tokio::sync::Mutex;

const WAIT: Duration = Duration::from_secs(60);
const MESSAGE_MAX: usize = 256 * 1024;

fn lease(secs: f64) -> ReceiveOptions {
    ReceiveOptions {
        lease: Some(Duration::from_secs_f64(secs)),
        wait: Duration::ZERO,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leased_message_reappears_after_its_timeout_ahead_of_later_ones() {
    let cluster = TestCluster::dev();
    let client = cluster.client();
    eventually(WAIT, || client.create_queue("q")).await;
    for body in ["first", "second", "third"] {
        client.send("q", body.as_bytes()).await.unwrap();
    }
    let leased = client.receive("q", lease(1.0)).await.unwrap().unwrap();
    assert_eq!(
        (leased.body.as_ref(), leased.delivery_count),
        (&b"first"[..], 1)
    );
    let next = client.receive("q", lease(30.0)).await.unwrap().unwrap();
    assert_eq!(next.body.as_ref(), b"second", "a leased message is hidden");
    // After the lease, "first" is visible again, ahead of "third". The lease is
    // the one thing here measured in time, so the test waits it out.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let again = client.receive("q", lease(30.0)).await.unwrap().unwrap();
    assert_eq!(
        (again.body.as_ref(), again.delivery_count),
        (&b"first"[..], 2)
    );
    // The first delivery's receipt is stale now; the current one acks.
    assert!(matches!(
        client.ack("q", &leased.receipt).await,
        Err(Error::NotFound(_))
    ));
    client.ack("q", &again.receipt).await.unwrap();
    client.ack("q", &next.receipt).await.unwrap();
    let third = client
        .receive("q", ReceiveOptions::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(third.body.as_ref(), b"third");
    assert_eq!(client.queue_length("q").await.unwrap(), 0);
    assert_eq!(
        client
            .receive("q", ReceiveOptions::default())
            .await
            .unwrap(),
        None
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_256_kib_message_is_accepted_and_one_byte_more_changes_nothing() {
    let cluster = TestCluster::dev();
    let client = cluster.client();
    eventually(WAIT, || client.create_queue("q")).await;
    client.send("q", &vec![1u8; MESSAGE_MAX]).await.unwrap();
    match client.send("q", &vec![2u8; MESSAGE_MAX + 1]).await {
        Err(Error::LimitExceeded {
            field,
            limit,
            message,
        }) => {
            assert_eq!((field.as_str(), limit), ("message", MESSAGE_MAX as u64));
            assert!(message.contains("262144"), "{message}");
        }
        other => panic!("expected a limit error, got {other:?}"),
    }
    assert_eq!(
        client.queue_length("q").await.unwrap(),
        1,
        "the rejected send enqueued nothing"
    );
    let got = client
        .receive("q", ReceiveOptions::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.body.len(), MESSAGE_MAX);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_poll_returns_as_soon_as_a_message_is_sent() {
    let cluster = TestCluster::dev();
    let client = cluster.client();
    eventually(WAIT, || client.create_queue("q")).await;
    let empty_start = Instant::now();
    let options = ReceiveOptions {
        lease: None,
        wait: Duration::from_millis(300),
    };
    assert_eq!(client.receive("q", options).await.unwrap(), None);
    assert!(
        empty_start.elapsed() >= Duration::from_millis(300),
        "an empty long poll waits its full time"
    );
    let sender = client.clone();
    let sent_at = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        sender.send("q", b"wake").await.unwrap();
        Instant::now()
    });
    let options = ReceiveOptions {
        lease: None,
        wait: Duration::from_secs(15),
    };
    let got = client
        .receive("q", options)
        .await
        .unwrap()
        .expect("the send wakes the poll");
    let received_at = Instant::now();
    let sent_at = sent_at.await.unwrap();
    assert_eq!(got.body.as_ref(), b"wake");
    let delay = received_at.saturating_duration_since(sent_at);
    eprintln!(
        "long poll returned {} ms after the send was acknowledged",
        delay.as_millis()
    );
    // Timing goals live in the benchmarks; here: woken by the send, not by the 15 s timeout.
    assert!(
        delay < Duration::from_secs(5),
        "the poll was not woken by the send: {delay:?}"
    );
}

fn bodies(messages: &[Message]) -> Vec<&[u8]> {
    messages.iter().map(|m| m.body.as_ref()).collect()
}

async fn send_all(client: &Client, bodies: &[&str]) {
    for body in bodies {
        client.send("q", body.as_bytes()).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_pop_takes_the_head_in_order_removes_exactly_those_and_stops_at_what_is_there() {
    let cluster = TestCluster::dev();
    let client = cluster.client();
    eventually(WAIT, || client.create_queue("q")).await;
    send_all(&client, &["m1", "m2", "m3", "m4", "m5"]).await;
    let popped = client
        .receive_batch("q", 3, ReceiveOptions::default())
        .await
        .unwrap();
    assert_eq!(bodies(&popped), [&b"m1"[..], b"m2", b"m3"]);
    assert!(popped.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(
        popped.iter().all(|m| m.receipt.is_empty()),
        "pops have no receipt"
    );
    assert_eq!(client.queue_length("q").await.unwrap(), 2);
    // Asking for more than is there returns what is there, at once.
    let rest = client
        .receive_batch("q", 100, ReceiveOptions::default())
        .await
        .unwrap();
    assert_eq!(bodies(&rest), [&b"m4"[..], b"m5"]);
    let none = client
        .receive_batch("q", 100, ReceiveOptions::default())
        .await
        .unwrap();
    assert!(none.is_empty());
    assert_eq!(client.queue_length("q").await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_lease_hides_its_messages_each_receipt_acks_alone_and_the_unacked_one_returns() {
    let cluster = TestCluster::dev();
    let client = cluster.client();
    eventually(WAIT, || client.create_queue("q")).await;
    send_all(&client, &["m1", "m2", "m3"]).await;
    let leased = client.receive_batch("q", 2, lease(1.0)).await.unwrap();
    assert_eq!(bodies(&leased), [&b"m1"[..], b"m2"]);
    assert_ne!(leased[0].receipt, leased[1].receipt);
    // Both are hidden: the next batch gets only m3.
    let next = client.receive_batch("q", 10, lease(30.0)).await.unwrap();
    assert_eq!(bodies(&next), [&b"m3"[..]]);
    client.ack("q", &leased[0].receipt).await.unwrap();
    client.ack("q", &next[0].receipt).await.unwrap();
    assert_eq!(
        client.queue_length("q").await.unwrap(),
        1,
        "m2 is still leased"
    );
    // m2's lease runs out (the one thing here measured in time, so the test waits
    // it out) and it comes back, on its second delivery.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let again = client.receive_batch("q", 10, lease(30.0)).await.unwrap();
    assert_eq!(bodies(&again), [&b"m2"[..]]);
    assert_eq!(again[0].delivery_count, 2);
    assert!(matches!(
        client.ack("q", &leased[1].receipt).await,
        Err(Error::NotFound(_))
    ));
    client.ack("q", &again[0].receipt).await.unwrap();
    assert_eq!(client.queue_length("q").await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_over_the_receive_limit_is_invalid_argument_and_changes_nothing() {
    const LIMIT: u32 = 256;
    let cluster = TestCluster::dev();
    let client = cluster.client();
    eventually(WAIT, || client.create_queue("q")).await;
    send_all(&client, &["m1", "m2"]).await;
    match client
        .receive_batch("q", LIMIT + 1, ReceiveOptions::default())
        .await
    {
        Err(Error::LimitExceeded { field, limit, .. }) => {
            assert_eq!((field.as_str(), limit), ("max_messages", u64::from(LIMIT)));
        }
        other => panic!("expected a limit error, got {other:?}"),
    }
    // In gRPC terms: INVALID_ARGUMENT, naming the field and the limit.
    let mut raw = QueueClient::connect(format!("http://{}", cluster.nodes[0].grpc))
        .await
        .unwrap();
    let request = v1::ReceiveRequest {
        queue: "q".into(),
        max_messages: LIMIT + 1,
        ..Default::default()
    };
    let status = raw.receive(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("max_messages") && status.message().contains("256"),
        "{status:?}"
    );
    assert_eq!(
        client.queue_length("q").await.unwrap(),
        2,
        "nothing was taken"
    );
    let at_limit = client
        .receive_batch("q", LIMIT, ReceiveOptions::default())
        .await
        .unwrap();
    assert_eq!(
        bodies(&at_limit),
        [&b"m1"[..], b"m2"],
        "exactly the limit is accepted"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_long_poll_wakes_when_a_message_is_sent() {
    let cluster = TestCluster::dev();
    let client = cluster.client();
    eventually(WAIT, || client.create_queue("q")).await;
    let sender = client.clone();
    let sent_at = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        sender.send("q", b"wake").await.unwrap();
        Instant::now()
    });
    let options = ReceiveOptions {
        lease: None,
        wait: Duration::from_secs(15),
    };
    let got = client.receive_batch("q", 10, options).await.unwrap();
    let received_at = Instant::now();
    let sent_at = sent_at.await.unwrap();
    // It returns with what is there rather than waiting to fill the batch.
    assert_eq!(bodies(&got), [&b"wake"[..]]);
    let delay = received_at.saturating_duration_since(sent_at);
    assert!(
        delay < Duration::from_secs(5),
        "the poll was not woken by the send: {delay:?}"
    );
}

const PRODUCERS: usize = 4;
const MESSAGES_PER_PRODUCER: usize = 250;
const CONSUMERS: usize = 3;

#[derive(Default)]
struct Record {
    /// (producer, index) → the seq the send got.
    sent: BTreeMap<(usize, usize), u64>,
    /// Every delivery: (consumer, seq, body).
    received: Vec<(usize, u64, String)>,
    /// The most messages one receive returned.
    largest_batch: usize,
}

fn parse_body(body: &str) -> (usize, usize) {
    let (p, i) = body.split_once('-').expect("body is P-I");
    (p.parse().unwrap(), i.parse().unwrap())
}

/// Producers and consumers run while the leader is killed and restarted once;
/// consumers take up to `batch` messages per receive.
async fn run_through_leader_kill(leased: bool, batch: u32) -> Record {
    let mut cluster = TestCluster::start(3, &[]);
    cluster.wait_for_leader(WAIT).await;
    let setup = cluster.client();
    eventually(WAIT, || setup.create_queue("work")).await;
    let record = Arc::new(Mutex::new(Record::default()));
    let mut tasks = Vec::new();
    for p in 0..PRODUCERS {
        let (client, record) = (cluster.client(), record.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..MESSAGES_PER_PRODUCER {
                let seq = client
                    .send("work", format!("{p}-{i}").as_bytes())
                    .await
                    .expect("send acknowledged");
                record.lock().await.sent.insert((p, i), seq);
            }
        }));
    }
    let total = PRODUCERS * MESSAGES_PER_PRODUCER;
    if batch > 1 {
        // Let a backlog build, so that batches are full while the leader dies.
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    for c in 0..CONSUMERS {
        let (client, record) = (cluster.client(), record.clone());
        let consumer = Consumer {
            client,
            record,
            consumer: c,
            leased,
            batch,
        };
        tasks.push(tokio::spawn(consume(consumer, total)));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let leader = cluster.wait_for_leader(WAIT).await;
    cluster.node(leader).kill();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    cluster.node(leader).start();
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(180), task)
            .await
            .expect("workers finish")
            .unwrap();
    }
    Arc::try_unwrap(record)
        .ok()
        .expect("workers are done")
        .into_inner()
}

struct Consumer {
    client: Client,
    record: Arc<Mutex<Record>>,
    consumer: usize,
    leased: bool,
    batch: u32,
}

impl Consumer {
    /// One receive: a single one for a batch of 1 (the SDK's `receive`), else
    /// `receive_batch`; empty on an error (the caller asks again).
    async fn receive(&self, options: ReceiveOptions) -> Vec<Message> {
        if self.batch == 1 {
            let received = self.client.receive("work", options).await;
            return received.ok().flatten().into_iter().collect();
        }
        let received = self.client.receive_batch("work", self.batch, options).await;
        received.unwrap_or_default()
    }
}

async fn consume(consumer: Consumer, total: usize) {
    let options = ReceiveOptions {
        lease: consumer.leased.then(|| Duration::from_secs(5)),
        wait: Duration::from_millis(500),
    };
    let deadline = Instant::now() + Duration::from_secs(150);
    while Instant::now() < deadline {
        let distinct: BTreeSet<u64> = consumer
            .record
            .lock()
            .await
            .received
            .iter()
            .map(|(_, s, _)| *s)
            .collect();
        if distinct.len() >= total {
            return;
        }
        let messages = consumer.receive(options).await;
        {
            let mut record = consumer.record.lock().await;
            record.largest_batch = record.largest_batch.max(messages.len());
        }
        for message in messages {
            let body = String::from_utf8(message.body.to_vec()).unwrap();
            let delivery = (consumer.consumer, message.seq, body);
            consumer.record.lock().await.received.push(delivery);
            if consumer.leased {
                // An ack that fails (lease lost to a slow election) means a redelivery, which is allowed.
                let _ = consumer.client.ack("work", &message.receipt).await;
            }
        }
    }
}

fn assert_fifo_per_producer(record: &Record) {
    for p in 0..PRODUCERS {
        let seqs: Vec<u64> = (0..MESSAGES_PER_PRODUCER)
            .map(|i| record.sent[&(p, i)])
            .collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "producer {p}'s messages are out of order: {seqs:?}"
        );
    }
}

fn assert_every_sent_message_received(record: &Record) {
    let received: BTreeSet<(usize, usize)> = record
        .received
        .iter()
        .map(|(_, _, b)| parse_body(b))
        .collect();
    let lost: Vec<_> = record
        .sent
        .keys()
        .filter(|k| !received.contains(k))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged messages lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    for (_, seq, body) in &record.received {
        assert_eq!(
            record.sent.get(&parse_body(body)),
            Some(seq),
            "{body} arrived with another seq"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn lease_ack_delivers_every_message_at_least_once_through_a_leader_kill() {
    let record = run_through_leader_kill(true, 1).await;
    assert_eq!(record.sent.len(), PRODUCERS * MESSAGES_PER_PRODUCER);
    assert_fifo_per_producer(&record);
    assert_every_sent_message_received(&record);
    eprintln!(
        "{} deliveries for {} messages",
        record.received.len(),
        record.sent.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pop_never_returns_a_message_twice_or_loses_one_through_a_leader_kill() {
    let record = run_through_leader_kill(false, 1).await;
    assert_pops_exactly_once_in_queue_order(&record);
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_pops_never_return_a_message_twice_or_lose_one_through_a_leader_kill() {
    let record = run_through_leader_kill(false, 16).await;
    assert_pops_exactly_once_in_queue_order(&record);
    eprintln!("the largest batch held {} messages", record.largest_batch);
    assert!(
        record.largest_batch > 1,
        "no receive took more than one message"
    );
}

fn assert_pops_exactly_once_in_queue_order(record: &Record) {
    assert_fifo_per_producer(record);
    assert_every_sent_message_received(record);
    let mut seen = BTreeSet::new();
    for (_, seq, body) in &record.received {
        assert!(
            seen.insert(*seq),
            "message {body} (seq {seq}) was popped twice"
        );
    }
    // Each consumer sees the queue's order: every pop takes the lowest seq.
    for c in 0..CONSUMERS {
        let seqs: Vec<u64> = record
            .received
            .iter()
            .filter(|(k, _, _)| *k == c)
            .map(|(_, s, _)| *s)
            .collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "consumer {c} saw pops out of order"
        );
    }
}
