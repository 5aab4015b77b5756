//! Object storage on three real nodes: byte-exact round trips (0 B, 1 MiB, 64 MiB),
//! an upload that survives a leader kill mid-stream, overwrites that never mix,
//! dedupe measured from the chunk store, GC returning disk space, and a node that
//! catches up from a snapshot fetching only the chunks it lacks.
//! Method: real server processes on loopback, driven through the SDK; chunk files
//! are counted on disk.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn::client::{Client, ListObjectsOptions, PutObjectOptions};
use common::chunks::{chunk_usage, wait_for_chunks};
use common::{content, eventually, TestCluster};

const ELECTION_WAIT: Duration = Duration::from_secs(30);
const MIB: usize = 1024 * 1024;

/// Log text without terminal colour codes.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Waits until an upload's progress reached `bytes`.
async fn wait_until_sent(sent: &AtomicU64, bytes: u64) {
    eventually(ELECTION_WAIT, || {
        let now = sent.load(Ordering::Relaxed);
        async move {
            if now >= bytes {
                Ok(())
            } else {
                Err(now)
            }
        }
    })
    .await
}

async fn three_nodes(extra: &[&str]) -> (TestCluster, Client) {
    let cluster = TestCluster::start(3, extra);
    cluster.wait_for_leader(ELECTION_WAIT).await;
    let client = cluster.client();
    eventually(ELECTION_WAIT, || client.list_buckets()).await;
    (cluster, client)
}

fn opts() -> PutObjectOptions {
    PutObjectOptions::default()
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_round_trip_byte_exact_through_every_node() {
    let (cluster, client) = three_nodes(&[]).await;
    let objects = [
        ("empty", Vec::new()),
        ("one-mib", content("one", MIB)),
        ("odd/size.bin", content("odd", 3 * MIB + 12_345)),
        ("big/64mib", content("big", 64 * MIB)),
    ];
    for (key, data) in &objects {
        let mut options = opts();
        options.content_type = "application/x-test".into();
        options.metadata.insert("owner".into(), "tests".into());
        let put = client
            .put_object_bytes("private", key, Bytes::from(data.clone()), &options)
            .await
            .unwrap();
        assert_eq!(put.size, data.len() as u64);
        assert_eq!(put.etag, blake3::hash(data).to_hex().to_string());
        assert_eq!(put.chunks_total, data.len().div_ceil(MIB) as u64);
    }
    // Each node alone: followers answer reads from their own chunk files.
    for node in &cluster.nodes {
        let reader = node.client();
        for (key, data) in &objects {
            let (info, got) = reader.get_object("private", key).await.unwrap();
            assert_eq!(got.len(), data.len(), "{key} via node {}", node.id);
            assert!(got == *data, "{key} differs via node {}", node.id);
            assert_eq!(info.content_type, "application/x-test");
            assert_eq!(
                info.metadata.get("owner").map(String::as_str),
                Some("tests")
            );
        }
    }
    // A range across a chunk boundary.
    let big = &objects[3].1;
    let mut part = Vec::new();
    let range = (MIB as u64 - 10, 20);
    client
        .get_object_to("private", "big/64mib", range, &mut part, None)
        .await
        .unwrap();
    assert_eq!(part, big[MIB - 10..MIB + 10]);
    // Listing with a delimiter folds "big/" and "odd/".
    let page = client
        .list_objects(
            "private",
            &ListObjectsOptions {
                delimiter: "/".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let keys: Vec<_> = page.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["empty", "one-mib"]);
    assert_eq!(page.common_prefixes, ["big/", "odd/"]);
    // Copy shares chunks; delete succeeds also for a missing key.
    client
        .copy_object(("private", "one-mib"), ("public", "copied"))
        .await
        .unwrap();
    assert_eq!(
        client.get_object("public", "copied").await.unwrap().1,
        objects[1].1
    );
    assert!(client.delete_object("private", "one-mib").await.unwrap());
    assert!(!client.delete_object("private", "one-mib").await.unwrap());
    let missing = client.head_object("private", "one-mib").await.unwrap_err();
    assert_eq!(missing.code(), "not_found");
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_survives_the_leader_being_killed_mid_stream() {
    let (mut cluster, client) = three_nodes(&[]).await;
    let data = content("killed", 64 * MIB);
    let path = cluster.dir.path().join("upload.bin");
    std::fs::write(&path, &data).unwrap();
    let leader = cluster.wait_for_leader(ELECTION_WAIT).await;
    let sent = Arc::new(AtomicU64::new(0));
    let progress_sent = sent.clone();
    let progress: cairn::client::Progress = Arc::new(move |bytes| {
        progress_sent.fetch_max(bytes, Ordering::Relaxed);
    });
    let uploader = client.clone();
    let upload_path = path.clone();
    let upload = tokio::spawn(async move {
        uploader
            .put_object_file("private", "survivor", &upload_path, &opts(), Some(progress))
            .await
    });
    wait_until_sent(&sent, 16 * MIB as u64).await;
    cluster.node(leader).kill();
    let result = upload.await.unwrap();
    cluster.wait_for_new_leader(leader, ELECTION_WAIT).await;
    let uploaded = result.is_ok();
    match result {
        Ok(put) => {
            assert_eq!(put.etag, blake3::hash(&data).to_hex().to_string());
            let (_, got) = client.get_object("private", "survivor").await.unwrap();
            assert!(got == data, "the retried upload reads back byte-exact");
        }
        Err(e) => {
            // The other allowed outcome: nothing visible.
            let head = client.head_object("private", "survivor").await.unwrap_err();
            assert_eq!(
                head.code(),
                "not_found",
                "failed upload ({e}) left an object"
            );
        }
    }
    // The killed leader restarts and serves the same bytes from its own chunks.
    cluster.node(leader).start();
    let restarted = cluster
        .nodes
        .iter()
        .find(|n| n.id == leader)
        .unwrap()
        .client();
    if uploaded {
        let (_, got) = eventually(ELECTION_WAIT, || {
            restarted.get_object("private", "survivor")
        })
        .await;
        assert!(got == data);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_abandoned_upload_leaves_nothing_visible_and_gc_collects_its_chunks() {
    let (cluster, client) = three_nodes(&["--chunk-gc-grace-ms", "3000"]).await;
    let data = Bytes::from(content("abandoned", 16 * MIB));
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let uploader = client.clone();
    let upload = tokio::spawn(async move {
        uploader
            .put_object_from(
                "private",
                "abandoned",
                &opts(),
                32 * MIB as u64,
                move || {
                    let data = data.clone();
                    let counter = counter.clone();
                    async move {
                        // Sends 16 MiB, then stalls forever: the client gives up mid-stream.
                        let pieces = (0..16).map(move |i| {
                            counter.fetch_add(MIB as u64, Ordering::Relaxed);
                            data.slice(i * MIB..(i + 1) * MIB)
                        });
                        Some(futures::StreamExt::chain(
                            futures::stream::iter(pieces.collect::<Vec<_>>()),
                            futures::stream::pending(),
                        ))
                    }
                },
            )
            .await
    });
    wait_until_sent(&sent, 16 * MIB as u64).await;
    // Let some chunks commit, then abandon the upload.
    tokio::time::sleep(Duration::from_secs(2)).await;
    upload.abort();
    let _ = upload.await;
    let head = client
        .head_object("private", "abandoned")
        .await
        .unwrap_err();
    assert_eq!(head.code(), "not_found");
    for node in &cluster.nodes {
        let dir = node.dir.join("data");
        wait_for_chunks(&dir, 0).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_overwrites_are_read_whole_never_mixed() {
    let (_cluster, client) = three_nodes(&[]).await;
    const WRITERS: u8 = 3;
    const ROUNDS: u8 = 4;
    let version_of = |writer: u8, round: u8| vec![writer * 16 + round + 1; 3 * MIB + 77];
    client
        .put_object_bytes(
            "private",
            "contended",
            Bytes::from(version_of(0, 0)),
            &opts(),
        )
        .await
        .unwrap();
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let client = client.clone();
        writers.push(tokio::spawn(async move {
            for round in 0..ROUNDS {
                let data = Bytes::from(version_of(writer, round));
                client
                    .put_object_bytes("private", "contended", data, &opts())
                    .await
                    .unwrap();
            }
        }));
    }
    let mut reads = 0;
    while writers.iter().any(|w| !w.is_finished()) || reads < 5 {
        let (info, got) = client.get_object("private", "contended").await.unwrap();
        assert_eq!(got.len(), 3 * MIB + 77);
        let first = got[0];
        assert!(got.iter().all(|b| *b == first), "a read mixed two versions");
        assert_eq!(info.etag, blake3::hash(&got).to_hex().to_string());
        reads += 1;
    }
    for w in writers {
        w.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn identical_content_is_stored_once_and_deleting_frees_the_disk() {
    let (cluster, client) = three_nodes(&["--chunk-gc-grace-ms", "3000"]).await;
    let data = Bytes::from(content("twice", 64 * MIB));
    let first = client
        .put_object_bytes("private", "a", data.clone(), &opts())
        .await
        .unwrap();
    let second = client
        .put_object_bytes("public", "b", data.clone(), &opts())
        .await
        .unwrap();
    assert_eq!(first.chunks_sent, 64);
    assert_eq!(
        second.chunks_sent, 0,
        "the second upload replicated no chunk"
    );
    for node in &cluster.nodes {
        // A follower may still be applying the last chunks (a loaded machine).
        let (files, bytes) = wait_for_chunks(&node.dir.join("data"), 64).await;
        assert_eq!(files, 64, "node {} holds each chunk once", node.id);
        assert_eq!(bytes, 64 * MIB as u64, "node {}", node.id);
    }
    // One delete keeps the shared chunks; the second frees them after the grace period.
    client.delete_object("private", "a").await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(client.get_object("public", "b").await.unwrap().1, data);
    for node in &cluster.nodes {
        assert_eq!(chunk_usage(&node.dir.join("data")).0, 64);
    }
    client.delete_object("public", "b").await.unwrap();
    for node in &cluster.nodes {
        let dir = node.dir.join("data");
        assert_eq!(wait_for_chunks(&dir, 0).await, (0, 0), "node {}", node.id);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_behind_a_snapshot_fetches_only_the_chunks_it_lacks() {
    let (mut cluster, client) = three_nodes(&[
        "--snapshot-log-entries",
        "20",
        "--snapshot-log-entries-kept",
        "5",
    ])
    .await;
    client
        .put_object_bytes(
            "private",
            "before",
            Bytes::from(content("before", 4 * MIB)),
            &opts(),
        )
        .await
        .unwrap();
    let leader = cluster.wait_for_leader(ELECTION_WAIT).await;
    let lagging = cluster.nodes.iter().find(|n| n.id != leader).unwrap().id;
    let before_usage = {
        let dir = cluster.node(lagging).dir.join("data");
        wait_for_chunks(&dir, 4).await
    };
    cluster.node(lagging).stop();
    let after = content("after", 6 * MIB);
    client
        .put_object_bytes("private", "after", Bytes::from(after.clone()), &opts())
        .await
        .unwrap();
    let after_index = cluster.status(leader).await.unwrap().applied_index;
    // Enough entries that the leader snapshots and purges the log past the new
    // chunks, so the restarted node can only get them through a snapshot.
    client.create_namespace("filler").await.unwrap();
    for i in 0..60 {
        client
            .put("filler", format!("k{i}").as_bytes(), b"v")
            .await
            .unwrap();
    }
    eventually(ELECTION_WAIT, || async {
        let purged = cluster.status(leader).await.map_or(0, |s| s.purged_index);
        if purged >= after_index {
            Ok(())
        } else {
            Err(purged)
        }
    })
    .await;
    cluster.node(lagging).start();
    let node = cluster.nodes.iter().find(|n| n.id == lagging).unwrap();
    let reader = node.client();
    let got = eventually(ELECTION_WAIT, || reader.get_object("private", "after")).await;
    assert!(got.1 == after);
    assert_eq!(chunk_usage(&node.dir.join("data")).0, before_usage.0 + 6);
    // The snapshot install fetches the 6 new chunks, never the 4 the node already
    // had. The fetch logs once all its chunks are stored, which may be just after
    // a read already found them.
    let fetched_lines = |logs: &str| -> Vec<u64> {
        logs.lines()
            .filter_map(|l| l.split("fetched=").nth(1))
            .filter_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .collect()
    };
    let logs = eventually(ELECTION_WAIT, || {
        let logs = strip_ansi(&node.logs());
        let done = !fetched_lines(&logs).is_empty();
        async move {
            if done {
                Ok(logs)
            } else {
                Err("no fetch logged yet")
            }
        }
    })
    .await;
    assert!(logs.contains("installed snapshot"), "{logs}");
    let fetched: u64 = fetched_lines(&logs).iter().sum();
    assert_eq!(fetched, 6, "fetched chunks:\n{logs}");
    assert!(!logs.contains("failed=1"), "{logs}");
}
