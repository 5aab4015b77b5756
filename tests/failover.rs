//! Three nodes on loopback: writes through any node, leader failover without
//! losing acknowledged writes, catch-up of a restarted node, exactly-once across a
//! leader change, and no stale linearizable read from a paused old leader.
//! Method: real server processes; SIGTERM/SIGKILL/SIGSTOP on their PIDs.

mod common;

use std::time::Duration;

use bytes::Bytes;
use cairn::client::{Client, ReadConsistency};
use cairn::proto::v1::{self, kv_client::KvClient};
use common::{eventually, TestCluster};

const ELECTION_WAIT: Duration = Duration::from_secs(30);

async fn three_nodes() -> TestCluster {
    let cluster = TestCluster::start(3, &[]);
    cluster.wait_for_leader(ELECTION_WAIT).await;
    let client = cluster.client();
    eventually(ELECTION_WAIT, || client.create_namespace("ns")).await;
    cluster
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_through_any_node_survive_leader_loss_and_the_old_leader_catches_up() {
    let mut cluster = three_nodes().await;
    // Each node alone as the client's only endpoint: followers redirect to the leader.
    for node in &cluster.nodes {
        let client = node.client();
        client
            .put("ns", format!("via-{}", node.id).as_bytes(), b"v")
            .await
            .unwrap();
    }
    let client = cluster.client();
    for i in 0..50 {
        client
            .put("ns", format!("k{i}").as_bytes(), format!("{i}").as_bytes())
            .await
            .unwrap();
    }
    let leader = cluster.wait_for_leader(ELECTION_WAIT).await;
    cluster.node(leader).stop();
    let new_leader = cluster.wait_for_new_leader(leader, ELECTION_WAIT).await;
    assert_ne!(new_leader, leader);
    for i in 0..50 {
        let got = client
            .get("ns", format!("k{i}").as_bytes())
            .await
            .unwrap()
            .expect("acknowledged write");
        assert_eq!(got.value, Bytes::from(format!("{i}")));
    }
    for i in 50..60 {
        client
            .put("ns", format!("k{i}").as_bytes(), b"after")
            .await
            .unwrap();
    }
    let target = cluster.status(new_leader).await.unwrap().applied_index;
    cluster.node(leader).start();
    cluster.wait_applied(leader, target, ELECTION_WAIT).await;
    let restarted = cluster.node(leader).client();
    for i in 0..60 {
        let got = restarted
            .get_with("ns", format!("k{i}").as_bytes(), ReadConsistency::Stale)
            .await
            .unwrap();
        assert!(got.is_some(), "k{i} missing on the restarted node");
    }
}

fn tagged_cas(seq: u64) -> v1::PutRequest {
    v1::PutRequest {
        session: Some(v1::Session {
            client_id: 77,
            seq,
            lowest_unanswered_seq: seq,
        }),
        namespace: "ns".into(),
        key: Bytes::from_static(b"counter"),
        value: Bytes::from_static(b"1"),
        ttl_ms: 0,
        condition: Some(v1::put_request::Condition::IfAbsent(true)),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_retried_on_the_new_leader_after_failover_applies_once() {
    let mut cluster = three_nodes().await;
    let leader = cluster.wait_for_leader(ELECTION_WAIT).await;
    let leader_addr = cluster.node(leader).grpc.clone();
    let mut raw = KvClient::connect(format!("http://{leader_addr}"))
        .await
        .unwrap();
    let first = raw.put(tagged_cas(1)).await.unwrap().into_inner();
    cluster.node(leader).kill();
    let new_leader = cluster.wait_for_new_leader(leader, ELECTION_WAIT).await;
    let new_addr = cluster.node(new_leader).grpc.clone();
    let retry = eventually(ELECTION_WAIT, || {
        let addr = new_addr.clone();
        async move {
            let mut raw = KvClient::connect(format!("http://{addr}"))
                .await
                .map_err(|e| e.to_string())?;
            raw.put(tagged_cas(1))
                .await
                .map(|r| r.into_inner())
                .map_err(|s| s.to_string())
        }
    })
    .await;
    assert_eq!(
        retry.version, first.version,
        "the retry replays the first answer instead of failing the CAS"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_old_leader_never_serves_a_stale_linearizable_read() {
    let mut cluster = three_nodes().await;
    let client = cluster.client();
    client.put("ns", b"x", b"old").await.unwrap();
    let leader = cluster.wait_for_leader(ELECTION_WAIT).await;
    let old_addr = cluster.node(leader).grpc.clone();
    cluster.node(leader).pause();
    let new_leader = cluster.wait_for_new_leader(leader, ELECTION_WAIT).await;
    let others: Vec<String> = cluster
        .nodes
        .iter()
        .filter(|n| n.id != leader)
        .map(|n| n.grpc.clone())
        .collect();
    let fresh = Client::connect(others).unwrap();
    eventually(ELECTION_WAIT, || fresh.put("ns", b"x", b"new")).await;
    cluster.node(leader).resume();
    // Ask the old leader directly, many times, right as it wakes up: it must answer
    // "new" or refuse, never "old".
    let mut raw = KvClient::connect(format!("http://{old_addr}"))
        .await
        .unwrap();
    let mut answered = 0;
    for _ in 0..50 {
        let request = v1::GetRequest {
            namespace: "ns".into(),
            key: Bytes::from_static(b"x"),
            consistency: 0,
        };
        if let Ok(reply) = raw.get(request).await {
            let reply = reply.into_inner();
            assert_eq!(
                reply.value.as_ref(),
                b"new",
                "stale linearizable read from the old leader"
            );
            answered += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = cluster.status(leader).await.unwrap();
    assert_ne!(
        status.role, "leader",
        "the old leader stepped down (new leader is {new_leader})"
    );
    eprintln!("old leader answered {answered} of 50 reads, all fresh");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follower_serves_linearizable_reads_through_the_leaders_read_index() {
    let cluster = three_nodes().await;
    let leader = cluster.wait_for_leader(ELECTION_WAIT).await;
    let follower = cluster
        .nodes
        .iter()
        .find(|n| n.id != leader)
        .unwrap()
        .grpc
        .clone();
    let mut raw = KvClient::connect(format!("http://{follower}"))
        .await
        .unwrap();
    let client = cluster.client();
    for i in 0..20u32 {
        let value = format!("v{i}");
        client.put("ns", b"fresh", value.as_bytes()).await.unwrap();
        // Straight to the follower, right after the acknowledgement: a linearizable
        // read must already see the write (the follower waits for the read index).
        let request = v1::GetRequest {
            namespace: "ns".into(),
            key: Bytes::from_static(b"fresh"),
            consistency: 0,
        };
        let reply = raw.get(request).await.unwrap().into_inner();
        assert_eq!(
            reply.value.as_ref(),
            value.as_bytes(),
            "follower read {i} was stale"
        );
    }
}
