//! Goal: the crash windows of the node's disk paths recover. Each test arms a named
//! crash point (`cairn::crash_point`, built only with the `failpoints` feature),
//! lets a real node abort exactly there — as `kill -9` would — and checks that
//! it comes back with nothing acknowledged missing.
//!
//! Method: real `cairn server` processes on loopback (tests/common); crash points
//! are armed through the `FAILPOINTS` environment variable of one start.

#![cfg(feature = "failpoints")]

mod common;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use cairn::client::{PutObjectOptions, ReadConsistency};
use cairn::crash_point::names;
use common::{content, eventually, TestCluster, TestNode};

const WAIT: Duration = Duration::from_secs(30);
const MIB: usize = 1024 * 1024;
/// Snapshot every 20 entries, keep 5: a stopped follower soon needs a snapshot.
const SMALL_SNAPSHOTS: [&str; 4] = [
    "--snapshot-log-entries",
    "20",
    "--snapshot-log-entries-kept",
    "5",
];

fn chunk_files(data_dir: &Path) -> usize {
    let Ok(shards) = std::fs::read_dir(data_dir.join("chunks")) else {
        return 0;
    };
    shards
        .flatten()
        .flat_map(|shard| std::fs::read_dir(shard.path()).into_iter().flatten())
        .flatten()
        .filter(|f| !f.file_name().to_string_lossy().ends_with(".tmp"))
        .count()
}

fn arm(node: &mut TestNode, point: &str, action: &str) {
    node.env = vec![("FAILPOINTS".into(), format!("{point}={action}"))];
}

/// Waits (bounded) for a node armed with a crash point to abort.
async fn wait_for_abort(node: &mut TestNode, point: &str) {
    let exited = eventually(WAIT, || {
        let status = node.exited();
        async move { status.ok_or("still running") }
    })
    .await;
    assert!(
        !exited.success(),
        "node {} exited cleanly: {exited}",
        node.id
    );
    let logs = node.logs();
    assert!(
        logs.contains(&format!("crash point {point}: aborting")),
        "the node died elsewhere:\n{logs}"
    );
    node.kill(); // reap
}

/// Writes enough that every running node snapshots and purges its log.
async fn fill_log(client: &cairn::client::Client, namespace: &str, puts: u32) {
    eventually(WAIT, || client.create_namespace(namespace)).await;
    for i in 0..puts {
        let key = format!("k{i}");
        eventually(WAIT, || {
            client.put(namespace, key.as_bytes(), key.as_bytes())
        })
        .await;
    }
}

async fn wait_purged_past(cluster: &TestCluster, leader: u64, index: u64) {
    eventually(WAIT, || async {
        match cluster.status(leader).await.map_or(0, |s| s.purged_index) {
            purged if purged >= index => Ok(()),
            purged => Err(purged),
        }
    })
    .await;
}

/// Finding: openraft purges a follower's log up to a received snapshot while the
/// install still runs. A crash before the snapshot was durably current used to
/// leave a purged log over an older state: the node could never start again.
#[tokio::test(flavor = "multi_thread")]
async fn a_follower_that_crashes_mid_install_after_the_purge_comes_back_and_catches_up() {
    let mut cluster = TestCluster::start(3, &SMALL_SNAPSHOTS);
    let leader = cluster.wait_for_leader(WAIT).await;
    let client = cluster.client();
    fill_log(&client, "before", 5).await;
    let follower = cluster.nodes.iter().find(|n| n.id != leader).unwrap().id;
    let stopped_at = cluster.status(leader).await.unwrap().applied_index;
    cluster.node(follower).stop();
    fill_log(&client, "after", 60).await;
    let target = cluster.status(leader).await.unwrap().applied_index;
    // The follower's log ends at or before `stopped_at`: it needs a snapshot.
    wait_purged_past(&cluster, leader, stopped_at + 1).await;

    // Abort 1.5 s after copying the received snapshot: time for openraft's purge,
    // queued with the install, to run first.
    arm(
        cluster.node(follower),
        names::INSTALL_BEFORE_RENAME,
        "return(1500)",
    );
    cluster.node(follower).start();
    wait_for_abort(cluster.node(follower), names::INSTALL_BEFORE_RENAME).await;

    cluster.node(follower).env.clear();
    cluster.node(follower).start();
    cluster.wait_applied(follower, target, WAIT).await;
    let reader = cluster.node(follower).client();
    let got = eventually(WAIT, || {
        reader.get_with("after", b"k59", ReadConsistency::Stale)
    })
    .await;
    assert_eq!(got.map(|v| v.value), Some(Bytes::from_static(b"k59")));
    let logs = cluster.node(follower).logs();
    assert!(
        logs.contains("purge deferred"),
        "the purge never raced the install:\n{logs}"
    );
}

/// Finding: a snapshot install ignored chunk fetches that failed and reported the
/// node up to date without the files; it never tried again until a restart.
#[tokio::test(flavor = "multi_thread")]
async fn an_install_keeps_fetching_chunks_its_peers_refused_at_first() {
    // Nodes 1 and 2 refuse their first 20 chunk requests: more than one full
    // round of node 3's fetch (6 chunks x 2 peers) asks of each.
    let mut cluster = TestCluster::start_with_env(3, &SMALL_SNAPSHOTS, |id| match id {
        3 => Vec::new(),
        _ => vec![(
            "FAILPOINTS".into(),
            format!("{}=20*return", names::SERVE_CHUNK_UNAVAILABLE),
        )],
    });
    cluster.wait_for_leader(WAIT).await;
    let client = cluster.client();
    eventually(WAIT, || client.list_buckets()).await;
    let opts = PutObjectOptions::default();
    cluster.node(3).stop();
    let leader = cluster.wait_for_leader(WAIT).await;
    let data = content("after", 6 * MIB);
    client
        .put_object_bytes("private", "after", Bytes::from(data.clone()), &opts)
        .await
        .unwrap();
    let after_index = cluster.status(leader).await.unwrap().applied_index;
    fill_log(&client, "filler", 60).await;
    wait_purged_past(&cluster, leader, after_index).await;

    cluster.node(3).start();
    let data_dir = cluster.node(3).dir.join("data");
    eventually(WAIT, || async {
        let files = chunk_files(&data_dir);
        let missing = cluster.status(3).await.map(|s| s.chunks_missing);
        match (files, missing) {
            (6, Some(0)) => Ok(()),
            other => Err(other),
        }
    })
    .await;
    let logs = cluster.node(3).logs();
    assert!(logs.contains("installed snapshot"), "{logs}");
    assert!(
        logs.contains("chunks still missing"),
        "the peers' refusals never reached the install:\n{logs}"
    );
    let reader = cluster.node(3).client();
    let (_, got) = eventually(WAIT, || reader.get_object("private", "after")).await;
    assert!(got == data, "node 3 serves the object byte-exact");
}

/// Window: apply wrote a batch's chunk files but crashed before committing the
/// batch. The restarted node re-applies the entry from its log; nothing is lost
/// and no chunk file is left that no record names.
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_between_chunk_files_and_their_record_recovers() {
    let mut cluster = TestCluster::dev();
    let node = &mut cluster.nodes[0];
    let client = node.client();
    eventually(WAIT, || client.list_buckets()).await;
    node.stop();
    arm(node, names::APPLY_AFTER_CHUNK_FILES, "return");
    node.start();
    let client = node.client();
    eventually(WAIT, || client.list_buckets()).await;
    // A large chunk (pushed outside the log) and a small tail chunk, which rides
    // in the log and has its file written by apply.
    let data = content("crash", MIB + 100 * 1024);
    let opts = PutObjectOptions::default();
    // The tail chunk's apply aborts the node: the upload cannot succeed.
    let put = client
        .with_call_timeout(Duration::from_secs(10))
        .put_object_bytes("private", "x", Bytes::from(data.clone()), &opts)
        .await;
    assert!(put.is_err(), "the upload reached past the crash point");
    wait_for_abort(node, names::APPLY_AFTER_CHUNK_FILES).await;
    node.env.clear();
    node.start();
    let client = node.client();
    eventually(WAIT, || {
        client.put_object_bytes("private", "x", Bytes::from(data.clone()), &opts)
    })
    .await;
    let (_, got) = client.get_object("private", "x").await.unwrap();
    assert!(got == data);
    assert_eq!(chunk_files(&node.dir.join("data")), 2);
}

/// Window: an upload stored a large chunk on a quorum of members (outside the log)
/// and crashed before proposing the record that names it. No object becomes
/// visible, and once the grace period has passed no node keeps the chunk's file.
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_between_a_chunk_quorum_and_its_record_leaks_nothing() {
    let armed = format!("{}=return", names::UPLOAD_AFTER_CHUNK_QUORUM);
    let mut cluster = TestCluster::start_with_env(3, &["--chunk-gc-grace-ms", "5000"], |_| {
        vec![("FAILPOINTS".into(), armed.clone())]
    });
    cluster.wait_for_leader(WAIT).await;
    let client = cluster.client();
    eventually(WAIT, || client.list_buckets()).await;
    let data = content("quorum", 2 * MIB);
    let opts = PutObjectOptions::default();
    // Every node that takes the upload aborts once a quorum holds a chunk (the
    // client retries elsewhere until too few nodes are left).
    let put = client
        .with_call_timeout(Duration::from_secs(10))
        .put_object_bytes("private", "x", Bytes::from(data.clone()), &opts)
        .await;
    assert!(put.is_err(), "the upload reached past the crash point");
    let crashed: Vec<u64> = cluster
        .nodes
        .iter_mut()
        .filter_map(|n| n.exited().map(|_| n.id))
        .collect();
    assert!(!crashed.is_empty(), "no node reached the crash point");
    let copies: usize = cluster
        .nodes
        .iter()
        .map(|n| chunk_files(&n.dir.join("data")))
        .sum();
    assert!(copies >= 2, "a quorum held the chunk: {copies} files");
    for id in crashed {
        let node = cluster.node(id);
        wait_for_abort(node, names::UPLOAD_AFTER_CHUNK_QUORUM).await;
        node.env.clear();
        node.start();
    }
    cluster.wait_for_leader(WAIT).await;
    let client = cluster.client();
    let head = eventually(WAIT, || async {
        match client.head_object("private", "x").await {
            Err(e) if e.code() == "not_found" => Ok(e),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(head.code(), "not_found");
    for node in &cluster.nodes {
        let dir = node.dir.join("data");
        eventually(WAIT, || {
            let files = chunk_files(&dir);
            async move {
                if files == 0 {
                    Ok(())
                } else {
                    Err(files)
                }
            }
        })
        .await;
    }
    // The cluster still takes the same upload, byte-exact.
    eventually(WAIT, || {
        client.put_object_bytes("private", "x", Bytes::from(data.clone()), &opts)
    })
    .await;
    let (_, got) = client.get_object("private", "x").await.unwrap();
    assert!(got == data);
}
