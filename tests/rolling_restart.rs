//! Leadership transfer and the rolling restart of nodes run as processes.
//!
//! `transfer-leader` moves leadership to the voter asked for (or the one the
//! leader picks) while writers keep writing, and no write fails; a non-voter is
//! refused and leadership stays. `cluster/rolling-restart.sh --restart-cmd` over
//! `cluster/local.sh restart {id}` restarts every node of a 3-node cluster, the
//! leader last, under writes: every node gets a new process, no write fails,
//! and every acknowledged write is read back.
//! Method: real server processes (the harness, and local.sh with this test's
//! binary in a temp directory), the SDK for writes, the CLI and scripts as an
//! operator runs them.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use cairn::client::Client;
use common::writers::{WriterLog, Writers};
use common::TestCluster;

const WAIT: Duration = Duration::from_secs(30);
const NAMESPACE: &str = "ns";

async fn assert_readable(client: &Client, log: &WriterLog) {
    for (key, value) in &log.acked {
        let got = client
            .get(NAMESPACE, key.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("reading {key}: {e}"))
            .unwrap_or_else(|| panic!("acknowledged {key} is missing"));
        assert_eq!(got.value, value.as_bytes(), "{key}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn transfer_leader_hands_leadership_to_the_chosen_voter_while_writes_go_on() {
    let cluster = TestCluster::start(3, &[]);
    let first = cluster.wait_for_leader(WAIT).await;
    let client = cluster.client();
    common::eventually(WAIT, || client.create_namespace(NAMESPACE)).await;
    let writers = Writers::start(&cluster.endpoints(), NAMESPACE, "w", 2);
    writers.wait_progress(50, WAIT, "before").await;

    let target = (1..=3).find(|id| *id != first).expect("a follower");
    let started = std::time::Instant::now();
    let leader = client.transfer_leader(Some(target)).await.unwrap();
    eprintln!("transfer to node {target} took {:?}", started.elapsed());
    assert_eq!(leader, target);
    assert_eq!(cluster.wait_for_leader(WAIT).await, target);
    writers
        .wait_progress(50, WAIT, "after the first transfer")
        .await;

    // Without a target the leader picks one of the others.
    let started = std::time::Instant::now();
    let picked = client.transfer_leader(None).await.unwrap();
    eprintln!("transfer to node {picked} took {:?}", started.elapsed());
    assert_ne!(picked, target);
    assert_eq!(cluster.wait_for_leader(WAIT).await, picked);
    writers
        .wait_progress(50, WAIT, "after the second transfer")
        .await;

    // A node that is not a voter is refused and leadership stays.
    let refused = client.transfer_leader(Some(99)).await.unwrap_err();
    assert!(refused.to_string().contains("not a voter"), "{refused}");
    assert_eq!(cluster.wait_for_leader(WAIT).await, picked);
    // Asking for the leader itself is a no-op.
    assert_eq!(client.transfer_leader(Some(picked)).await.unwrap(), picked);

    let log = writers.finish().await;
    assert!(
        log.errors.is_empty(),
        "writes failed around the transfers: {:?}",
        &log.errors[..log.errors.len().min(5)]
    );
    assert_readable(&client, &log).await;
}

/// Nine free ports in a row: three each for gRPC, HTTP and peers (local.sh numbers
/// its nodes' ports from a base). One run for all three, so that no two bases can
/// overlap: three runs checked one by one could (a port is only checked, not held,
/// until its node binds it).
fn free_port_run() -> u16 {
    for _ in 0..100 {
        let base = common::free_port();
        let rest_free = (1..9u16).all(|i| {
            base.checked_add(i)
                .is_some_and(|port| TcpListener::bind(("127.0.0.1", port)).is_ok())
        });
        if rest_free {
            return base;
        }
    }
    panic!("no nine free ports in a row in 100 tries");
}

/// A cluster run by `cluster/local.sh`, stopped with `down` when dropped.
struct LocalCluster {
    dir: tempfile::TempDir,
    env: Vec<(&'static str, String)>,
    grpc_base: u16,
}

impl LocalCluster {
    fn script(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("cluster")
            .join(name)
    }

    fn up(count: u32) -> LocalCluster {
        assert!(count <= 3, "free_port_run holds three ports per kind");
        let dir = tempfile::tempdir().expect("temp dir");
        let grpc_base = free_port_run();
        let env = vec![
            ("CAIRN_BIN", common::CAIRN.to_string()),
            ("CAIRN_CLUSTER_DIR", dir.path().display().to_string()),
            ("CAIRN_BASE_GRPC_PORT", grpc_base.to_string()),
            ("CAIRN_BASE_HTTP_PORT", (grpc_base + 3).to_string()),
            ("CAIRN_BASE_PEER_PORT", (grpc_base + 6).to_string()),
        ];
        let cluster = LocalCluster {
            dir,
            env,
            grpc_base,
        };
        let output =
            cluster.run(Command::new(Self::script("local.sh")).args(["up", &count.to_string()]));
        assert!(
            output.status.success(),
            "local.sh up: {}",
            common::output_text(&output)
        );
        cluster
    }

    fn run(&self, command: &mut Command) -> Output {
        let command = command
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("CAIRN_ENDPOINTS", self.endpoints().join(","));
        tokio::task::block_in_place(|| command.output()).expect("run a script")
    }

    fn endpoints(&self) -> Vec<String> {
        (0..3)
            .map(|i| format!("127.0.0.1:{}", self.grpc_base + i))
            .collect()
    }

    fn pid(&self, id: u32) -> String {
        let path = self.dir.path().join(format!("node{id}/node.pid"));
        std::fs::read_to_string(path)
            .expect("node.pid")
            .trim()
            .to_string()
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let script = Self::script("local.sh");
        let down = Command::new(script)
            .arg("down")
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .output();
        if !matches!(&down, Ok(out) if out.status.success()) {
            eprintln!("local.sh down failed: {down:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rolling_restart_of_processes_restarts_every_node_and_no_write_fails() {
    let cluster = LocalCluster::up(3);
    let client = Client::connect(cluster.endpoints()).expect("client");
    common::eventually(WAIT, || client.create_namespace(NAMESPACE)).await;
    let pids_before: Vec<String> = (1..=3).map(|id| cluster.pid(id)).collect();
    let writers = Writers::start(&cluster.endpoints(), NAMESPACE, "p", 2);
    writers.wait_progress(50, WAIT, "before").await;

    let restart = format!(
        "{} restart {{id}}",
        LocalCluster::script("local.sh").display()
    );
    let output = cluster.run(
        Command::new(LocalCluster::script("rolling-restart.sh")).args(["--restart-cmd", &restart]),
    );
    assert!(
        output.status.success(),
        "rolling restart: {}",
        common::output_text(&output)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("handing leadership over first"), "{stderr}");
    assert!(stderr.contains("restarted 3 nodes"), "{stderr}");
    writers.wait_progress(50, WAIT, "after").await;
    let log = writers.finish().await;

    for (id, before) in (1..=3).zip(&pids_before) {
        assert_ne!(&cluster.pid(id), before, "node {id} was not restarted");
    }
    assert!(
        log.errors.is_empty(),
        "writes failed during the rolling restart: {:?}",
        &log.errors[..log.errors.len().min(5)]
    );
    assert_readable(&client, &log).await;
}
