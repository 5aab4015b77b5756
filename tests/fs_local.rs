//! Node-local storage (`--fs local`): served by the node a client talks to from its
//! own directory, never replicated, and kept across restarts of that node.

mod common;

use std::time::Duration;

use bytes::Bytes;
use cairn::client::{Client, Errno, UploadOptions};
use common::{content, eventually, TestCluster};

const WAIT: Duration = Duration::from_secs(60);

fn opts() -> UploadOptions {
    UploadOptions {
        parents: true,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_storage_stays_on_its_node_and_survives_a_restart() {
    let mut cluster = TestCluster::start(3, &[]);
    cluster.wait_for_leader(WAIT).await;
    let (one, two) = (cluster.nodes[0].grpc.clone(), cluster.nodes[1].grpc.clone());
    let local_one = Client::connect([one.clone()]).unwrap().fs("local");
    let local_two = Client::connect([two]).unwrap().fs("local");
    let data = content("scratch", 3 * 1024 * 1024 + 11);
    local_one
        .upload_bytes("/scratch/run 1/ü.bin", Bytes::from(data.clone()), &opts())
        .await
        .unwrap();
    local_one
        .mkdir("/scratch/empty", 0o755, true)
        .await
        .unwrap();
    local_one
        .write_at("/scratch/run 1/ü.bin", 2, b"XY")
        .await
        .unwrap();
    let mut expected = data.clone();
    expected[2..4].copy_from_slice(b"XY");
    assert!(local_one.read_file("/scratch/run 1/ü.bin").await.unwrap() == expected);
    let names: Vec<String> = local_one
        .list("/scratch")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["empty", "run 1"]);

    // Node 2 has its own, empty local storage; its disk holds none of the bytes.
    let err = local_two.stat("/scratch").await.unwrap_err();
    assert_eq!(err.errno(), Some(Errno::ENOENT));
    let on_disk = cluster.nodes[0].dir.join("data/local/scratch/run 1/ü.bin");
    assert!(
        std::fs::read(&on_disk).unwrap() == expected,
        "the file lives in node 1's local dir"
    );
    assert!(!cluster.nodes[1].dir.join("data/local/scratch").exists());
    // And nothing reached the replicated file system.
    let default = cluster.client().fs("default");
    assert_eq!(
        default.stat("/scratch").await.unwrap_err().errno(),
        Some(Errno::ENOENT)
    );

    cluster.node(1).stop();
    cluster.node(1).start();
    let local_one = Client::connect([one]).unwrap().fs("local");
    let got = eventually(WAIT, || local_one.read_file("/scratch/run 1/ü.bin")).await;
    assert!(
        got == expected,
        "local storage survives a restart of its node"
    );

    local_one
        .rename("/scratch/run 1", "/scratch/run 2")
        .await
        .unwrap();
    assert_eq!(local_one.remove_all("/scratch").await.unwrap(), 4);
    assert!(!cluster.nodes[0].dir.join("data/local/scratch").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_paths_never_leave_the_local_directory() {
    let cluster = TestCluster::dev();
    let node = &cluster.nodes[0];
    let local = Client::connect([node.grpc.clone()]).unwrap().fs("local");
    eventually(WAIT, || local.stat("/")).await;
    let root = node.dir.join("data/local");
    local
        .upload_bytes("../../../x", Bytes::from_static(b"inside"), &opts())
        .await
        .unwrap();
    assert_eq!(std::fs::read(root.join("x")).unwrap(), b"inside");
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("out")).unwrap();
    let err = local
        .upload_bytes("/out/f", Bytes::from_static(b"escape"), &opts())
        .await
        .unwrap_err();
    assert_eq!(err.errno(), Some(Errno::ENOTDIR), "{err:?}");
    assert_eq!(
        local.stat("/out/f").await.unwrap_err().errno(),
        Some(Errno::ENOTDIR)
    );
    assert!(
        std::fs::read_dir(outside.path()).unwrap().next().is_none(),
        "nothing was written outside"
    );
    let long = format!("/{}", "n".repeat(256));
    assert_eq!(
        local.mkdir(&long, 0o755, false).await.unwrap_err().errno(),
        Some(Errno::ENAMETOOLONG)
    );
    assert_eq!(
        local
            .mkdir("/a\0b", 0o755, false)
            .await
            .unwrap_err()
            .errno(),
        Some(Errno::EINVAL)
    );
    assert_eq!(
        local.stat_ino(5).await.unwrap_err().errno(),
        Some(Errno::EINVAL)
    );
}
