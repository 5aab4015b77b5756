//! A node whose disk fills up must not linger as a member that can never work
//! again: its Raft core stops on the storage error, so the process exits non-zero
//! (a supervisor then restarts it on its data once space is free).
//! Method: three nodes, one with its data on a 64 MiB tmpfs that the test fills.
//! Needs root for the mount; elsewhere it says SKIPPED (CI runs as root).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{eventually, TestCluster};

/// Unmounts the tmpfs however the test ends.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status(); // best effort at teardown
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_that_runs_out_of_disk_exits_instead_of_lingering() {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    if !is_root {
        eprintln!("SKIPPED: mounting a tmpfs needs root");
        return;
    }
    let mut cluster = TestCluster::start(3, &[]);
    let data = cluster.node(3).dir.join("data");
    cluster.node(3).kill();
    std::fs::create_dir_all(&data).unwrap();
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"])
        .arg(&data)
        .status();
    assert!(
        mounted.map(|s| s.success()).unwrap_or(false),
        "mount a tmpfs"
    );
    let _mount = Mount(data.clone());
    cluster.node(3).start();
    cluster.wait_for_leader(Duration::from_secs(60)).await;
    let client = cluster.client();
    eventually(Duration::from_secs(60), || client.create_namespace("ns")).await;
    // Fill the disk: writing the filler ends with ENOSPC, which is the point.
    let _ = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", data.join("filler").display()))
        .arg("bs=1M")
        .status();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i = 0;
    let status = loop {
        if let Some(status) = cluster.node(3).exited() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "node 3 still running 60 s after its disk filled"
        );
        client
            .put("ns", format!("k{i}").as_bytes(), &[7u8; 4096])
            .await
            .expect("the majority keeps serving");
        i += 1;
    };
    assert!(
        !status.success(),
        "the node exits with an error status: {status}"
    );
    let log = cluster.node(3).logs();
    assert!(log.contains("raft stopped"), "the node says why it stopped");
}
