//! Goal: reproduce, deterministically and without faults, what the chaos harness's
//! `queue --queue-mode pop` workload can hit under faults: a pop whose reply was lost,
//! retried by the SDK under the same session seq, must return the same message again
//! (docs/consistency.md, "Queues": "The SDK's retries (same session seq) return the same
//! message again rather than popping another, so a pop whose reply was lost in a leader
//! change is still delivered once").
//!
//! Method: one `cairn server --dev` node on loopback; one message sent; then the raw
//! gRPC `Receive` the SDK sends for a pop with a long poll (`lease_ms` 0, `wait_ms`
//! 1000) under session (client 42, seq 1), sent twice, as the SDK resends it after an
//! attempt timed out or lost its connection. The second request must replay the first
//! answer. Regression test: before the fix, a long poll (`wait_ms` > 0) on a queue
//! that was empty by then never proposed, so it never consulted the session table,
//! and answered "empty": the SDK call succeeded with `None` and the popped message
//! was lost. Now the first round of every long poll proposes
//! (src/api/grpc/queue.rs, `long_poll`).

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cairn::client::Client;
use cairn::proto::clients::QueueClient;
use cairn::proto::v1;

/// Bound on the node's start and on creating the queue.
const SETUP_SECS: u64 = 30;

/// The server, killed when the test ends however it ends.
struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        // Already gone is fine.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

fn start_node(grpc: &str) -> Node {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("queue_pop_replay");
    // Old data only gets in the way; a missing directory is fine.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("node directory");
    let log = std::fs::File::create(dir.join("server.log")).expect("log file");
    let http = format!("127.0.0.1:{}", free_port());
    let child = Command::new(common::cairn_binary())
        .args(["server", "--id", "1", "--dev", "--grpc-addr", grpc])
        .args(["--http-addr", &http, "--data-dir"])
        .arg(dir.join("data"))
        .stdout(log.try_clone().expect("clone log"))
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn cairn server");
    Node(child)
}

/// The raw request the SDK sends, and resends on retry, for `receive(queue, pop, wait)`.
fn pop_request(wait_ms: u64) -> v1::ReceiveRequest {
    v1::ReceiveRequest {
        session: Some(v1::Session {
            client_id: 42,
            seq: 1,
            lowest_unanswered_seq: 1,
        }),
        queue: "q".to_string(),
        lease_ms: 0,
        wait_ms,
        max_messages: 1,
    }
}

#[tokio::test]
async fn a_long_poll_pop_retried_under_its_session_seq_replays_the_popped_message() {
    let grpc = format!("127.0.0.1:{}", free_port());
    let _node = start_node(&grpc);
    let client = Client::connect([grpc.clone()]).expect("client");
    let deadline = Instant::now() + Duration::from_secs(SETUP_SECS);
    while client.create_queue("q").await.is_err() {
        assert!(Instant::now() < deadline, "no queue within {SETUP_SECS} s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let seq = client.send("q", b"m1").await.expect("send");
    let mut raw = QueueClient::connect(format!("http://{grpc}"))
        .await
        .expect("connect");
    let first = raw
        .receive(pop_request(1_000))
        .await
        .expect("pop")
        .into_inner();
    assert!(first.found && first.seq == seq, "the first pop takes m1");
    // The SDK's retry after a lost reply, with the long poll the SDK was asked for.
    let retry = raw.receive(pop_request(1_000)).await.expect("retry");
    let retry = retry.into_inner();
    // The same retry without a long poll, for contrast.
    let no_wait = raw
        .receive(pop_request(0))
        .await
        .expect("retry")
        .into_inner();
    let answers = format!(
        "retry with wait_ms 1000: found={} seq={}; retry with wait_ms 0: found={} seq={}",
        retry.found, retry.seq, no_wait.found, no_wait.seq
    );
    assert!(no_wait.found && no_wait.seq == seq, "{answers}");
    assert!(
        retry.found && retry.seq == seq,
        "a retried pop must replay m1 (seq {seq}), whatever its wait; {answers}: m1 was \
         popped, and had the first reply been lost, no call would ever return it"
    );
    assert_eq!(client.queue_length("q").await.expect("length"), 0);
}
