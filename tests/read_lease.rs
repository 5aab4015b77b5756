//! Goal: with `--read-lease`, linearizable reads on the leader are answered from the
//! lease (counted in `/metrics`) and still see every acknowledged write, including
//! after the leader is killed and another one takes over. Safety under faults is
//! the chaos suite's (`jepsen/tests/chaos.rs`, `broken_lease.rs`).
//!
//! Method: a real 3-node cluster on loopback started with `--read-lease`, driven
//! through the SDK; `/metrics` read over plain HTTP.

mod common;

use std::time::Duration;

use common::{eventually, http, TestCluster};

const WAIT: Duration = Duration::from_secs(30);

/// `cairn_read_lease_batches_total` on the node at `http_addr`.
async fn lease_batches(http_addr: &str) -> u64 {
    let response = http::request("GET", http_addr, "/metrics", &[], b"").await;
    assert_eq!(response.status, 200);
    let text = String::from_utf8_lossy(&response.body).to_string();
    text.lines()
        .find_map(|line| line.strip_prefix("cairn_read_lease_batches_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no lease counter in /metrics:\n{text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn lease_reads_see_every_acknowledged_write_across_a_leader_change() {
    let mut cluster = TestCluster::start(3, &["--read-lease"]);
    let leader = cluster.wait_for_leader(WAIT).await;
    let client = cluster.client();
    eventually(WAIT, || client.create_namespace("lease")).await;
    client.put("lease", b"k", b"v1").await.unwrap();
    for i in 0..200u32 {
        let value = client.get("lease", b"k").await.unwrap().expect("the key");
        assert_eq!(&value.value[..], b"v1", "read {i}");
    }
    let served = lease_batches(&cluster.node(leader).http.clone()).await;
    assert!(served > 0, "no read was answered from the lease");

    cluster.node(leader).kill();
    let next = cluster.wait_for_new_leader(leader, WAIT).await;
    eventually(WAIT, || client.put("lease", b"k", b"v2")).await;
    for i in 0..100u32 {
        let value = eventually(WAIT, || client.get("lease", b"k")).await;
        assert_eq!(
            &value.expect("the key").value[..],
            b"v2",
            "read {i} after the change"
        );
    }
    let http_addr = cluster.node(next).http.clone();
    assert!(
        lease_batches(&http_addr).await > 0,
        "the new leader never used its lease"
    );
}
