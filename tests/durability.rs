//! Crash durability: a client streams writes while nodes are `kill -9`ed and
//! restarted on the same data several times; afterwards every acknowledged write is
//! present, and every node holds identical data.
//! Method: three server processes; a writer task records each acknowledged key;
//! the test kills a node (the leader on every other round), restarts it, repeats.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn::client::{Client, ListOptions, ReadConsistency};
use common::{eventually, TestCluster};

const WAIT: Duration = Duration::from_secs(60);
const KILL_ROUNDS: u32 = 6;

async fn all_keys(client: &Client, consistency: ReadConsistency) -> Vec<(String, Vec<u8>)> {
    let mut options = ListOptions {
        consistency,
        ..Default::default()
    };
    let mut out = Vec::new();
    loop {
        let page = client.list_keys("ns", &options).await.unwrap();
        for key in &page.keys {
            let value = client
                .get_with("ns", key, consistency)
                .await
                .unwrap()
                .expect("listed key is readable");
            out.push((
                String::from_utf8(key.to_vec()).unwrap(),
                value.value.to_vec(),
            ));
        }
        match page.next_cursor {
            Some(cursor) => options.cursor = cursor,
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_writes_survive_repeated_kill_9_and_replicas_converge() {
    let mut cluster = TestCluster::start(
        3,
        &[
            "--snapshot-log-entries",
            "200",
            "--snapshot-log-entries-kept",
            "20",
        ],
    );
    cluster.wait_for_leader(WAIT).await;
    let client = cluster.client().with_call_timeout(Duration::from_secs(5));
    eventually(WAIT, || client.create_namespace("ns")).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (client, stop) = (client.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut acked, mut failed) = (Vec::new(), 0u32);
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("k{i:06}");
                // A failed (timed-out) write may or may not have landed; only
                // acknowledged ones are promised.
                match client.put("ns", key.as_bytes(), key.as_bytes()).await {
                    Ok(_) => acked.push(key),
                    Err(_) => failed += 1,
                }
                i += 1;
            }
            (acked, failed)
        })
    };
    for round in 0..KILL_ROUNDS {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let leader = cluster.wait_for_leader(WAIT).await;
        let victim = if round % 2 == 0 {
            leader
        } else {
            leader % 3 + 1
        };
        cluster.node(victim).kill();
        tokio::time::sleep(Duration::from_millis(500)).await;
        cluster.node(victim).start();
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);
    let (acked, failed) = writer.await.unwrap();
    eprintln!(
        "{} writes acknowledged, {failed} failed during {KILL_ROUNDS} kill -9 rounds",
        acked.len()
    );
    assert!(
        acked.len() > 50,
        "the writer made progress despite the kills"
    );

    let stored: std::collections::BTreeMap<_, _> = eventually(WAIT, || async {
        Ok::<_, ()>(all_keys(&client, ReadConsistency::Linearizable).await)
    })
    .await
    .into_iter()
    .collect();
    for key in &acked {
        assert_eq!(
            stored.get(key).map(Vec::as_slice),
            Some(key.as_bytes()),
            "acknowledged {key} lost"
        );
    }
    let leader = cluster.wait_for_leader(WAIT).await;
    let applied = cluster.status(leader).await.unwrap().applied_index;
    let nodes: Vec<(u64, String)> = cluster
        .nodes
        .iter()
        .map(|n| (n.id, n.grpc.clone()))
        .collect();
    for (id, grpc) in nodes {
        cluster.wait_applied(id, applied, WAIT).await;
        let local = Client::connect([grpc]).unwrap();
        let replica: std::collections::BTreeMap<_, _> = all_keys(&local, ReadConsistency::Stale)
            .await
            .into_iter()
            .collect();
        assert_eq!(
            replica, stored,
            "node {id} differs from the cluster's linearizable view"
        );
    }
}
