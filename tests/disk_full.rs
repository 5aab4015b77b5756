//! A node whose data disk runs short: the cluster refuses new data with a named
//! error (`no_space`, gRPC `RESOURCE_EXHAUSTED`, HTTP 507) before that node's
//! disk is full, the node stays up and a member, reads and deletes still work,
//! and writes resume by themselves once there is room again. With the reserve
//! off, a node whose disk does fill stops (its log append fails) rather than
//! lingering as a member that can never work again.
//!
//! Method: three nodes, node 3's data on a small tmpfs; the disk is filled with
//! a file beside cairn's (deleted to make room again), or by cairn's own data.
//! Needs root for the mount; elsewhere it says SKIPPED (CI runs as root).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cairn::client::Client;
use cairn::proto::clients::KvClient;
use cairn::proto::v1;
use common::http::request;
use common::{eventually, TestCluster};

const ELECTION_WAIT: Duration = Duration::from_secs(60);
/// The leader hears of a member's disk within a second; this is ample.
const GUARD_WAIT: Duration = Duration::from_secs(30);
const MIB: u64 = 1024 * 1024;

/// Unmounts the tmpfs however the test ends.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status(); // best effort at teardown
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false)
}

/// Restarts node 3 of `cluster` on an empty tmpfs of `size_mib` as its data dir.
fn move_node3_to_tmpfs(cluster: &mut TestCluster, size_mib: u64) -> (PathBuf, Mount) {
    let data = cluster.node(3).dir.join("data");
    cluster.node(3).kill();
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
        .arg(&data)
        .status();
    assert!(
        mounted.map(|s| s.success()).unwrap_or(false),
        "mount a tmpfs"
    );
    let mount = Mount(data.clone());
    cluster.node(3).start();
    (data, mount)
}

fn free_bytes(dir: &Path) -> u64 {
    cairn::raft::disk_guard::free_bytes(dir).expect("statvfs")
}

/// Writes a filler file into `dir` until only about `leave` bytes stay free.
fn fill_leaving(dir: &Path, leave: u64) {
    let free = free_bytes(dir);
    assert!(free > leave, "the tmpfs has only {free} bytes free");
    let count = (free - leave) / MIB;
    let status = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", dir.join("filler").display()))
        .arg("bs=1M")
        .arg(format!("count={count}"))
        .arg("status=none")
        .status()
        .expect("run dd");
    assert!(status.success(), "dd wrote the filler");
}

/// Waits until a put is refused for lack of space; the error it gave.
async fn wait_for_refusal(client: &Client, key: &str) -> cairn::client::Error {
    let deadline = Instant::now() + GUARD_WAIT;
    loop {
        match client.put("ns", key.as_bytes(), b"v").await {
            Err(e) if e.code() == "no_space" => return e,
            Err(e) => panic!("a put failed with {e:?}, not no_space"),
            Ok(_) => {}
        }
        assert!(
            Instant::now() < deadline,
            "puts still accepted {GUARD_WAIT:?} after node 3's disk ran short"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_short_of_disk_stops_writes_stays_a_member_and_recovers() {
    if !is_root() {
        eprintln!("SKIPPED: mounting a tmpfs needs root");
        return;
    }
    // A 16 MiB reserve on every node; node 3 gets a 64 MiB disk.
    let mut cluster = TestCluster::start(3, &["--disk-reserve-bytes", "16777216"]);
    let (data, _mount) = move_node3_to_tmpfs(&mut cluster, 64);
    cluster.wait_for_leader(ELECTION_WAIT).await;
    let client = cluster.client();
    eventually(Duration::from_secs(60), || client.create_namespace("ns")).await;
    eventually(Duration::from_secs(60), || {
        client.put("ns", b"before", b"kept")
    })
    .await;
    let leader = cluster.wait_for_leader(ELECTION_WAIT).await;
    let applied = cluster
        .status(leader)
        .await
        .expect("the leader answers")
        .applied_index;
    cluster.wait_applied(3, applied, ELECTION_WAIT).await;

    fill_leaving(&data, 8 * MIB);
    let refused = wait_for_refusal(&client, "during").await;
    let message = refused.to_string();
    assert!(
        message.contains("node 3") && message.contains("reserve"),
        "the error names the node and the reserve: {message}"
    );

    // The node is up and still a member; reads and deletes work.
    assert!(cluster.node(3).exited().is_none(), "node 3 exited");
    let status = cluster.status(1).await.expect("node 1 answers");
    assert!(
        status.members.iter().any(|m| m.id == 3 && m.voter),
        "node 3 is still a voter: {:?}",
        status.members
    );
    let own = cluster.status(3).await.expect("node 3 answers");
    assert!(own.role == "follower" || own.role == "leader", "{own:?}");
    let read = client.get("ns", b"before").await.expect("a read works");
    assert_eq!(&read.expect("the key is there").value[..], b"kept");
    assert!(client
        .delete("ns", b"before")
        .await
        .expect("a delete works"));

    // Its readiness says why.
    let ready = request("GET", &cluster.node(3).http.clone(), "/readyz", &[], b"").await;
    assert_eq!(
        ready.status,
        503,
        "{}",
        String::from_utf8_lossy(&ready.body)
    );
    assert!(
        String::from_utf8_lossy(&ready.body).contains("disk space low"),
        "{}",
        String::from_utf8_lossy(&ready.body)
    );

    // In gRPC terms the refusal is RESOURCE_EXHAUSTED.
    let leader_grpc = cluster.node(leader).grpc.clone();
    let mut raw = KvClient::connect(format!("http://{leader_grpc}"))
        .await
        .expect("connect to the leader");
    let put = v1::PutRequest {
        namespace: "ns".into(),
        key: b"raw".to_vec().into(),
        value: b"v".to_vec().into(),
        ..Default::default()
    };
    let status = raw.put(put).await.expect_err("a raw put is refused");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");

    // Over HTTP (REST through node 3 itself), 507 with the named code. Tokens
    // are housekeeping, not data: one can be made while short of space.
    let (_, token) = client
        .create_token("disk")
        .await
        .expect("a token while short");
    let bearer = format!("Bearer {token}");
    let node3_http = cluster.node(3).http.clone();
    let got = request(
        "POST",
        &node3_http,
        "/api/v1/queue",
        &[
            ("Authorization", bearer.as_str()),
            ("Content-Type", "application/json"),
        ],
        br#"{"name": "q"}"#,
    )
    .await;
    assert_eq!(got.status, 507, "{}", String::from_utf8_lossy(&got.body));
    assert!(String::from_utf8_lossy(&got.body).contains("no_space"));
    let client = client.with_token(&token).expect("token");

    // Room again: writes resume by themselves.
    std::fs::remove_file(data.join("filler")).unwrap();
    eventually(GUARD_WAIT, || client.put("ns", b"after", b"v")).await;
    assert!(cluster.node(3).exited().is_none(), "node 3 exited");
    let node3_http = cluster.node(3).http.clone();
    eventually(GUARD_WAIT, || async {
        let ready = request("GET", &node3_http, "/readyz", &[], b"").await;
        (ready.status == 200).then_some(()).ok_or(ready.status)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_guard_stops_cairns_own_writes_before_the_disk_is_full() {
    if !is_root() {
        eprintln!("SKIPPED: mounting a tmpfs needs root");
        return;
    }
    // 48 MiB reserve on a 128 MiB disk: more than a second of this test's writes.
    let mut cluster = TestCluster::start(3, &["--disk-reserve-bytes", "50331648"]);
    let (_data, _mount) = move_node3_to_tmpfs(&mut cluster, 128);
    cluster.wait_for_leader(ELECTION_WAIT).await;
    let client = cluster.client();
    eventually(Duration::from_secs(60), || client.create_namespace("ns")).await;
    let value = vec![7u8; 64 * 1024];
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut accepted = 0u64;
    loop {
        match client
            .put("ns", format!("k{accepted}").as_bytes(), &value)
            .await
        {
            Ok(_) => accepted += 1,
            Err(e) if e.code() == "no_space" => break,
            Err(e) => panic!("put {accepted} failed with {e:?}, not no_space"),
        }
        assert!(
            cluster.node(3).exited().is_none(),
            "node 3 exited after {accepted} puts: the guard came too late"
        );
        assert!(
            Instant::now() < deadline,
            "{accepted} puts of 64 KiB accepted and no refusal yet"
        );
    }
    assert!(accepted > 0, "the disk was short from the start");
    // What was accepted is all there; the node is still up.
    for i in [0, accepted / 2, accepted - 1] {
        let got = client.get("ns", format!("k{i}").as_bytes()).await;
        assert_eq!(
            got.expect("read").expect("key").value[..],
            value[..],
            "k{i}"
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(cluster.node(3).exited().is_none(), "node 3 exited");
    eprintln!("{accepted} puts of 64 KiB accepted before the guard refused");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_reserve_off_a_node_whose_disk_fills_exits_instead_of_lingering() {
    if !is_root() {
        eprintln!("SKIPPED: mounting a tmpfs needs root");
        return;
    }
    let mut cluster = TestCluster::start(3, &["--disk-reserve-bytes", "0"]);
    let (data, _mount) = move_node3_to_tmpfs(&mut cluster, 64);
    cluster.wait_for_leader(ELECTION_WAIT).await;
    let client = cluster.client();
    eventually(Duration::from_secs(60), || client.create_namespace("ns")).await;
    // Fill the disk: writing the filler ends with ENOSPC, which is the point.
    let _ = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", data.join("filler").display()))
        .arg("bs=1M")
        .arg("status=none")
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
