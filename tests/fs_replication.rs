//! File systems across the cluster: a node behind a snapshot catches up on files
//! fetching only the chunks it lacks, and removing files frees their chunks on
//! every node after the grace period.

mod common;

use std::time::Duration;

use bytes::Bytes;
use cairn::client::UploadOptions;
use common::chunks::{chunk_usage, wait_for_chunks};
use common::{content, eventually, TestCluster};

const WAIT: Duration = Duration::from_secs(60);
const MIB: usize = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_behind_a_snapshot_catches_up_on_files() {
    let mut cluster = TestCluster::start(
        3,
        &[
            "--snapshot-log-entries",
            "20",
            "--snapshot-log-entries-kept",
            "5",
        ],
    );
    let leader = cluster.wait_for_leader(WAIT).await;
    let client = cluster.client();
    let fs = client.fs("default");
    let before = content("before", 2 * MIB);
    fs.upload_bytes(
        "/before",
        Bytes::from(before.clone()),
        &UploadOptions {
            parents: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let lagging = cluster.nodes.iter().find(|n| n.id != leader).unwrap().id;
    let had = wait_for_chunks(&cluster.node(lagging).dir.join("data"), 2).await;
    cluster.node(lagging).stop();
    let after = content("after", 3 * MIB + 5);
    fs.upload_bytes(
        "/dir/after",
        Bytes::from(after.clone()),
        &UploadOptions {
            parents: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    fs.rename("/before", "/dir/renamed").await.unwrap();
    let index = cluster.status(leader).await.unwrap().applied_index;
    // Enough entries that the leader snapshots and purges past the file changes.
    for i in 0..60 {
        fs.mkdir(&format!("/filler/{i}"), 0o755, true)
            .await
            .unwrap();
    }
    eventually(WAIT, || async {
        let purged = cluster.status(leader).await.map_or(0, |s| s.purged_index);
        if purged >= index {
            Ok(())
        } else {
            Err(purged)
        }
    })
    .await;
    cluster.node(lagging).start();
    let node = cluster.nodes.iter().find(|n| n.id == lagging).unwrap();
    // A client that only knows the restarted node reads through it.
    let reader = node.client().fs("default");
    let got = eventually(WAIT, || reader.read_file("/dir/after")).await;
    assert!(got == after, "the caught-up node serves the new file");
    assert!(reader.read_file("/dir/renamed").await.unwrap() == before);
    let listing = reader.list("/filler").await.unwrap();
    assert_eq!(listing.len(), 60);
    assert_eq!(
        chunk_usage(&node.dir.join("data")).0,
        had.0 + 4,
        "only the 4 new chunks were fetched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn removed_files_free_their_chunks_on_every_node() {
    let cluster = TestCluster::start(3, &["--chunk-gc-grace-ms", "3000"]);
    cluster.wait_for_leader(WAIT).await;
    let client = cluster.client();
    let fs = client.fs("default");
    let data = Bytes::from(content("gc", 4 * MIB));
    let options = UploadOptions {
        parents: true,
        ..Default::default()
    };
    fs.upload_bytes("/a/one", data.clone(), &options)
        .await
        .unwrap();
    fs.upload_bytes("/a/two", data.clone(), &options)
        .await
        .unwrap();
    fs.link("/a/one", "/a/link").await.unwrap();
    for node in &cluster.nodes {
        assert_eq!(
            wait_for_chunks(&node.dir.join("data"), 4).await.0,
            4,
            "stored once"
        );
    }
    assert_eq!(fs.statfs().await.unwrap().bytes_used, 8 * MIB as u64);
    fs.unlink("/a/one").await.unwrap();
    fs.remove_all("/a/two").await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    // `/a/link` still names the first file: its chunks stay.
    assert!(fs.read_file("/a/link").await.unwrap() == data);
    for node in &cluster.nodes {
        assert_eq!(chunk_usage(&node.dir.join("data")).0, 4);
    }
    assert_eq!(fs.remove_all("/a").await.unwrap(), 2);
    for node in &cluster.nodes {
        assert_eq!(
            wait_for_chunks(&node.dir.join("data"), 0).await,
            (0, 0),
            "node {}",
            node.id
        );
    }
    let usage = fs.statfs().await.unwrap();
    assert_eq!(
        (usage.bytes_used, usage.inodes_used),
        (0, 1),
        "only the root is left"
    );
}
