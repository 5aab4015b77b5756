//! The container deployment (cluster/build-image.sh, cluster/compose.yaml,
//! cluster/rolling-restart.sh) with real containers: the image is built from this
//! test's own debug binary and three nodes run under docker-compose on a private
//! network, with a unique project name and free host ports. The host CLI writes
//! through one node; through the SDK on the host, KV writes go on while the leader's container is killed and started
//! again, while a node is cut off the network and reconnected, and while every
//! node is restarted in turn; every acknowledged write is then read back from
//! every node. Last, the whole cluster is stopped (SIGTERM) and started again: every
//! container exits 0 in time, the data is still on the volumes, and the health
//! checks (`/readyz` inside each container) report healthy again.
//!
//! Method: `docker`/`docker-compose` commands, the SDK for writes and reads, the
//! CLI for `wait-ready`. Skipped (with a message) where `docker info` fails;
//! under `CI` a present Docker that cannot run the test fails it. Torn down
//! (`down -v`, image removed) by a guard, whatever happens.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use cairn::client::{Client, ReadConsistency};
use common::writers::Writers;
use futures::StreamExt;

const NODES: u64 = 3;
const NAMESPACE: &str = "ns";
/// Acknowledged writes a phase waits for to call writes "going on".
const PROGRESS_WRITES: u64 = 50;
const PROGRESS_WAIT: Duration = Duration::from_secs(60);
const LEADER_WAIT: Duration = Duration::from_secs(60);
const READY_TIMEOUT_S: &str = "90";
/// compose.yaml's stop_grace_period; a node must be gone well before.
const STOP_GRACE: Duration = Duration::from_secs(30);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `command`, letting other tasks use this runtime thread meanwhile.
fn run(command: &mut Command) -> Output {
    tokio::task::block_in_place(|| command.output()).expect("spawn a docker command")
}

fn docker(args: &[&str]) -> Output {
    run(Command::new("docker").args(args))
}

fn docker_ok(args: &[&str]) -> String {
    let output = docker(args);
    assert!(
        output.status.success(),
        "docker {args:?}: {}",
        common::output_text(&output)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Why the test cannot run here, if it cannot. `Err` is a failure (under CI, a
/// Docker that answers but lacks what the test needs).
fn missing_tools() -> Result<Option<String>, String> {
    let info = Command::new("docker").arg("info").output();
    match info {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            return Ok(Some(format!(
                "`docker info` failed: {}",
                common::output_text(&out)
            )))
        }
        Err(e) => return Ok(Some(format!("no docker command: {e}"))),
    }
    let compose = Command::new("docker-compose").arg("version").output();
    let compose_ok = matches!(&compose, Ok(out) if out.status.success());
    if !compose_ok {
        let why = "Docker runs but docker-compose is missing (apt install docker-compose)";
        return if std::env::var_os("CI").is_some() {
            Err(why.into())
        } else {
            Ok(Some(why.into()))
        };
    }
    Ok(None)
}

struct NodePorts {
    id: u64,
    grpc: String,
    http: String,
}

/// One compose project: its image, its containers, network and volumes, all
/// removed when dropped.
struct Project {
    name: String,
    image: String,
    env: Vec<(String, String)>,
    nodes: Vec<NodePorts>,
}

impl Project {
    /// Builds the image from this test's binary; `Err` if that fails.
    fn build(pid: u32) -> Result<Project, String> {
        let image = format!("cairn-test-{pid}:debug");
        let output = run(Command::new(root().join("cluster/build-image.sh")).args([
            "--binary",
            common::CAIRN,
            "--tag",
            &image,
        ]));
        if !output.status.success() {
            return Err(format!(
                "cluster/build-image.sh failed: {}",
                common::output_text(&output)
            ));
        }
        eprintln!("{}", String::from_utf8_lossy(&output.stderr).trim());
        let nodes: Vec<NodePorts> = (1..=NODES)
            .map(|id| NodePorts {
                id,
                grpc: format!("127.0.0.1:{}", common::free_port()),
                http: format!("127.0.0.1:{}", common::free_port()),
            })
            .collect();
        let mut env = vec![
            ("CAIRN_IMAGE".to_string(), image.clone()),
            // The test kills and starts containers itself.
            ("CAIRN_RESTART".to_string(), "no".to_string()),
        ];
        for node in &nodes {
            let port = |addr: &str| addr.rsplit(':').next().expect("host:port").to_string();
            env.push((format!("CAIRN_GRPC_PORT_{}", node.id), port(&node.grpc)));
            env.push((format!("CAIRN_HTTP_PORT_{}", node.id), port(&node.http)));
        }
        Ok(Project {
            name: format!("cairn-test-{pid}"),
            image,
            env,
            nodes,
        })
    }

    fn compose_command(&self) -> Command {
        let mut command = Command::new("docker-compose");
        command
            .args(["-p", &self.name, "-f"])
            .arg(root().join("cluster/compose.yaml"))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        command
    }

    fn compose(&self, args: &[&str]) -> String {
        let output = run(self.compose_command().args(args));
        assert!(
            output.status.success(),
            "docker-compose {args:?}: {}",
            common::output_text(&output)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    fn container(&self, id: u64) -> String {
        let container = self.compose(&["ps", "-q", &format!("cairn{id}")]);
        assert!(!container.is_empty(), "no container for node {id}");
        container
    }

    fn network(&self) -> String {
        format!("{}_cairn", self.name)
    }

    fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.grpc.clone()).collect()
    }

    fn grpc(&self, id: u64) -> String {
        self.nodes[(id - 1) as usize].grpc.clone()
    }

    /// The CLI against this cluster.
    fn cairn(&self, args: &[&str]) -> Output {
        run(Command::new(common::CAIRN)
            .args(args)
            .env("CAIRN_ENDPOINTS", self.endpoints().join(",")))
    }

    fn wait_ready(&self, id: u64) {
        let started = Instant::now();
        let output = self.cairn(&[
            "cluster",
            "wait-ready",
            &id.to_string(),
            "--timeout-s",
            READY_TIMEOUT_S,
        ]);
        assert!(
            output.status.success(),
            "node {id}: {}",
            common::output_text(&output)
        );
        eprintln!(
            "node {id} ready after {:.1} s: {}",
            started.elapsed().as_secs_f64(),
            String::from_utf8_lossy(&output.stdout).trim()
        );
    }

    /// Waits until Docker reports every node's container healthy (compose's
    /// health check: `cairn admin probe --path /readyz` inside the container).
    async fn wait_healthy(&self) {
        let deadline = Instant::now() + LEADER_WAIT;
        for id in 1..=NODES {
            let container = self.container(id);
            loop {
                let health = docker_ok(&[
                    "inspect",
                    "--format",
                    "{{.State.Health.Status}}",
                    &container,
                ]);
                if health == "healthy" {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "node {id} is {health}: {}",
                    docker_ok(&["inspect", "--format", "{{json .State.Health}}", &container])
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }

    /// The id of the node that reports itself leader.
    async fn leader(&self, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            for node in &self.nodes {
                let client = Client::connect([node.grpc.clone()])
                    .expect("client")
                    .with_call_timeout(Duration::from_secs(2));
                if let Ok(status) = client.node_status(&node.grpc).await {
                    if status.role == "leader" {
                        return status.id;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("no leader within {timeout:?}");
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Ok(out) = self
                .compose_command()
                .args(["logs", "--tail", "60"])
                .output()
            {
                eprintln!("{}", String::from_utf8_lossy(&out.stdout));
            }
        }
        let down = self
            .compose_command()
            .args(["down", "-v", "--remove-orphans", "-t", "10"])
            .output();
        if !matches!(&down, Ok(out) if out.status.success()) {
            eprintln!("docker-compose down failed for {}: {down:?}", self.name);
        }
        let _ = Command::new("docker")
            .args(["image", "rm", "-f", &self.image])
            .output(); // best effort: a leftover image is only disk space
    }
}

/// Waits until every node applied the leader's whole log, then reads every
/// acknowledged key from each node's own state.
async fn check_every_node_has(project: &Project, acked: &BTreeMap<String, String>) {
    let leader = project.leader(LEADER_WAIT).await;
    let client = Client::connect([project.grpc(leader)]).expect("client");
    let goal = client
        .node_status(&project.grpc(leader))
        .await
        .expect("leader status")
        .last_log_index;
    for node in &project.nodes {
        let client = Client::connect([node.grpc.clone()]).expect("client");
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            let applied = client
                .node_status(&node.grpc)
                .await
                .map(|s| s.applied_index)
                .unwrap_or(0);
            if applied >= goal {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {} applied {applied} of {goal}",
                node.id
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let wrong: Vec<String> = futures::stream::iter(acked.iter())
            .map(|(key, value)| {
                let client = client.clone();
                async move {
                    let got = client
                        .get_with(NAMESPACE, key.as_bytes(), ReadConsistency::Stale)
                        .await;
                    match got {
                        Ok(Some(v)) if v.value == value.as_bytes() => None,
                        other => Some(format!("{key}: {other:?}")),
                    }
                }
            })
            .buffer_unordered(32)
            .filter_map(|x| async move { x })
            .collect()
            .await;
        assert!(
            wrong.is_empty(),
            "node {} lost or changed {} of {} acknowledged writes, e.g. {:?}",
            node.id,
            wrong.len(),
            acked.len(),
            &wrong[..wrong.len().min(5)]
        );
        eprintln!(
            "node {}: all {} acknowledged writes present",
            node.id,
            acked.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compose_cluster_keeps_acknowledged_writes_through_kill_partition_and_rolling_restart() {
    let started = Instant::now();
    match missing_tools() {
        Ok(None) => {}
        Ok(Some(why)) => {
            eprintln!("SKIPPED compose test: {why}");
            return;
        }
        Err(why) => panic!("compose test cannot run under CI: {why}"),
    }
    let project = match Project::build(std::process::id()) {
        Ok(project) => project,
        Err(why) if std::env::var_os("CI").is_some() => panic!("{why}"),
        Err(why) => {
            eprintln!("SKIPPED compose test: {why}");
            return;
        }
    };

    // 1. Up: three nodes elect a leader and turn healthy (ready).
    project.compose(&["up", "-d"]);
    project.leader(LEADER_WAIT).await;
    project.wait_healthy().await;
    let client = Client::connect(project.endpoints()).expect("client");
    common::eventually(LEADER_WAIT, || client.create_namespace(NAMESPACE)).await;
    let mut acked: BTreeMap<String, String> = BTreeMap::new();

    // The host CLI writes through one node (node 1, whatever its role).
    let cli_value = "written by the host CLI through node 1";
    let output = run(Command::new(common::CAIRN)
        .args(["kv", "put", NAMESPACE, "cli-key", cli_value])
        .env("CAIRN_ENDPOINTS", project.grpc(1)));
    assert!(
        output.status.success(),
        "cairn kv put: {}",
        common::output_text(&output)
    );
    acked.insert("cli-key".to_string(), cli_value.to_string());

    // 2. Faults under writes: kill the leader's container, start it again;
    //    cut the (new) leader off the network, reconnect it.
    let writers = Writers::start(&project.endpoints(), NAMESPACE, "a", 2);
    writers
        .wait_progress(PROGRESS_WRITES, PROGRESS_WAIT, "before faults")
        .await;
    let killed = project.leader(LEADER_WAIT).await;
    let container = project.container(killed);
    docker_ok(&["kill", &container]);
    eprintln!("killed node {killed}");
    writers
        .wait_progress(PROGRESS_WRITES, PROGRESS_WAIT, "with the old leader killed")
        .await;
    docker_ok(&["start", &container]);
    project.wait_ready(killed);

    let cut = project.leader(LEADER_WAIT).await;
    let container = project.container(cut);
    docker_ok(&["network", "disconnect", &project.network(), &container]);
    eprintln!("disconnected node {cut}");
    writers
        .wait_progress(PROGRESS_WRITES, PROGRESS_WAIT, "with the leader cut off")
        .await;
    let alias = format!("cairn{cut}");
    docker_ok(&[
        "network",
        "connect",
        "--alias",
        &alias,
        &project.network(),
        &container,
    ]);
    project.wait_ready(cut);
    writers
        .wait_progress(PROGRESS_WRITES, PROGRESS_WAIT, "after reconnecting")
        .await;
    let log = writers.finish().await;
    eprintln!(
        "faults: {} writes acknowledged, {} SDK errors (retried)",
        log.acked.len(),
        log.errors.len()
    );
    acked.extend(log.acked);
    check_every_node_has(&project, &acked).await;

    // 3. Rolling restart of all nodes under a steady load: no write fails.
    let writers = Writers::start(&project.endpoints(), NAMESPACE, "b", 3);
    writers
        .wait_progress(PROGRESS_WRITES, PROGRESS_WAIT, "before the rolling restart")
        .await;
    let restart_started = Instant::now();
    let output = run(Command::new(root().join("cluster/rolling-restart.sh"))
        .args(["--compose", "-p", &project.name, "-f"])
        .arg(root().join("cluster/compose.yaml"))
        .env("CAIRN_BIN", common::CAIRN)
        .env("CAIRN_ENDPOINTS", project.endpoints().join(","))
        .envs(project.env.iter().map(|(k, v)| (k.as_str(), v.as_str()))));
    assert!(
        output.status.success(),
        "rolling restart: {}",
        common::output_text(&output)
    );
    let restart_took = restart_started.elapsed();
    writers
        .wait_progress(PROGRESS_WRITES, PROGRESS_WAIT, "after the rolling restart")
        .await;
    let log = writers.finish().await;
    eprintln!(
        "rolling restart: {:.1} s, {} writes acknowledged, {} errors",
        restart_took.as_secs_f64(),
        log.acked.len(),
        log.errors.len()
    );
    assert!(
        log.errors.is_empty(),
        "writes failed during the rolling restart: {:?}",
        &log.errors[..log.errors.len().min(5)]
    );
    acked.extend(log.acked);
    check_every_node_has(&project, &acked).await;

    // 4. Stop everything (SIGTERM): each node exits 0 within the grace period;
    //    started again, the cluster has every write from its volumes alone.
    let stop_started = Instant::now();
    project.compose(&["stop", "-t", &STOP_GRACE.as_secs().to_string()]);
    let stop_took = stop_started.elapsed();
    for id in 1..=NODES {
        let container = project.container(id);
        let code = docker_ok(&["inspect", "--format", "{{.State.ExitCode}}", &container]);
        assert_eq!(code, "0", "node {id} exited with status {code} on SIGTERM");
        let logs = docker(&["logs", "--tail", "20", &container]);
        let logs = String::from_utf8_lossy(&logs.stderr).to_string()
            + &String::from_utf8_lossy(&logs.stdout);
        assert!(logs.contains("shutting down"), "node {id} logs: {logs}");
    }
    assert!(
        stop_took < STOP_GRACE,
        "stopping took {stop_took:?}, past the grace period"
    );
    eprintln!(
        "all nodes stopped cleanly in {:.1} s",
        stop_took.as_secs_f64()
    );
    project.compose(&["start"]);
    for id in 1..=NODES {
        project.wait_ready(id);
    }
    project.wait_healthy().await;
    check_every_node_has(&project, &acked).await;
    eprintln!("compose test took {:.0} s", started.elapsed().as_secs_f64());
}
