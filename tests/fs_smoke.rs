//! A first end-to-end pass over the file system service on a 3-node cluster.

mod common;

use std::time::Duration;

use bytes::Bytes;
use cairn::client::{Errno, UploadOptions};
use common::TestCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn files_round_trip_through_a_three_node_cluster() {
    let cluster = TestCluster::start(3, &[]);
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    let client = cluster.client();
    let fs = client.fs("default");
    fs.mkdir("/a/b", 0o755, true).await.unwrap();
    let data = common::content("smoke", 3 * 1024 * 1024 + 17);
    let report = fs
        .upload_bytes(
            "/a/b/file",
            Bytes::from(data.clone()),
            &UploadOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(report.attr.size, data.len() as u64);
    assert_eq!(fs.read_file("/a/b/file").await.unwrap(), data);
    fs.write_at("/a/b/file", 10, b"hello").await.unwrap();
    let mut expected = data.clone();
    expected[10..15].copy_from_slice(b"hello");
    assert_eq!(fs.read_file("/a/b/file").await.unwrap(), expected);
    let listing = fs.list("/a/b").await.unwrap();
    assert_eq!(listing.len(), 1);
    let err = fs.mkdir("/a", 0o755, false).await.unwrap_err();
    assert_eq!(err.errno(), Some(Errno::EEXIST));
    fs.rename("/a/b/file", "/a/moved").await.unwrap();
    assert_eq!(
        fs.stat("/a/b/file").await.unwrap_err().errno(),
        Some(Errno::ENOENT)
    );
    assert_eq!(fs.remove_all("/a").await.unwrap(), 3);
}
