//! Snapshots and membership on a live cluster: a node that was down while the log
//! was purged catches up by snapshot; a fourth node joins as a learner and is
//! promoted; a node is removed; writes keep succeeding throughout.
//! Method: three processes with a tiny snapshot threshold, then membership
//! changes through the SDK while a writer task runs.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn::client::ReadConsistency;
use common::{eventually, TestCluster};

const WAIT: Duration = Duration::from_secs(60);
const SNAPSHOT_ARGS: [&str; 4] = [
    "--snapshot-log-entries",
    "40",
    "--snapshot-log-entries-kept",
    "5",
];

#[tokio::test(flavor = "multi_thread")]
async fn a_node_down_while_the_log_was_purged_catches_up_by_snapshot() {
    let mut cluster = TestCluster::start(3, &SNAPSHOT_ARGS);
    let leader = cluster.wait_for_leader(WAIT).await;
    let client = cluster.client();
    eventually(WAIT, || client.create_namespace("ns")).await;
    let lagging = if leader == 3 { 2 } else { 3 };
    cluster.node(lagging).stop();
    let before = cluster.status(leader).await.unwrap().last_log_index;
    for i in 0..200 {
        client
            .put(
                "ns",
                format!("k{i:03}").as_bytes(),
                format!("{i}").as_bytes(),
            )
            .await
            .unwrap();
    }
    let status = eventually(WAIT, || async {
        let s = cluster.status(leader).await.ok_or("no status")?;
        if s.purged_index > before {
            Ok(s)
        } else {
            Err("log not purged yet")
        }
    })
    .await;
    assert!(
        status.snapshot_index > before,
        "the leader snapshotted past the lagging node's log"
    );
    cluster.node(lagging).start();
    cluster
        .wait_applied(lagging, status.applied_index, WAIT)
        .await;
    let caught_up = cluster.status(lagging).await.unwrap();
    assert!(
        caught_up.snapshot_index > before,
        "the lagging node installed a snapshot: {caught_up:?}"
    );
    let follower = cluster.node(lagging).client();
    for i in 0..200 {
        let got = follower
            .get_with("ns", format!("k{i:03}").as_bytes(), ReadConsistency::Stale)
            .await
            .unwrap();
        assert_eq!(
            got.expect("present after snapshot").value.as_ref(),
            format!("{i}").as_bytes()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_learner_joins_is_promoted_and_a_node_is_removed_while_writes_continue() {
    let mut cluster = TestCluster::start(3, &SNAPSHOT_ARGS);
    cluster.wait_for_leader(WAIT).await;
    let client = cluster.client();
    eventually(WAIT, || client.create_namespace("ns")).await;
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (client, stop, progress) = (client.clone(), stop.clone(), progress.clone());
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("w{i:05}");
                client
                    .put("ns", key.as_bytes(), b"v")
                    .await
                    .expect("writes keep succeeding");
                acked.push(key);
                progress.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            acked
        })
    };
    let index = cluster.spawn_joiner(4);
    let (grpc, http, peer) = (
        cluster.nodes[index].grpc.clone(),
        cluster.nodes[index].http.clone(),
        cluster.nodes[index].peer.clone(),
    );
    client.add_learner(4, &grpc, &http, &peer).await.unwrap();
    eventually(WAIT, || async {
        match cluster.status(4).await {
            Some(s) if s.role == "learner" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let reply = client.promote(4).await.unwrap();
    assert!(
        reply.members.iter().any(|m| m.id == 4 && m.voter),
        "{reply:?}"
    );
    let reply = client.remove_node(1).await.unwrap();
    assert!(!reply.members.iter().any(|m| m.id == 1), "{reply:?}");
    // The writer keeps succeeding after the removal.
    let after_remove = progress.load(Ordering::Relaxed);
    eventually(WAIT, || async {
        let done = progress.load(Ordering::Relaxed);
        if done >= after_remove + 50 {
            Ok(())
        } else {
            Err(done)
        }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let acked = writer.await.unwrap();
    cluster.node(1).stop();
    let survivors: Vec<String> = cluster
        .nodes
        .iter()
        .filter(|n| n.id != 1)
        .map(|n| n.grpc.clone())
        .collect();
    let client = cairn::client::Client::connect(survivors).unwrap();
    for key in &acked {
        assert!(
            client.get("ns", key.as_bytes()).await.unwrap().is_some(),
            "{key} lost"
        );
    }
    let leader = cluster.wait_for_leader(WAIT).await;
    let applied = cluster.status(leader).await.unwrap().applied_index;
    cluster.wait_applied(4, applied, WAIT).await;
}
