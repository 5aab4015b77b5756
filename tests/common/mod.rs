//! Test harness: real `cairn server` processes on loopback, each with its own temp
//! data dir and free ports, driven through the public SDK.
//!
//! Processes (not in-process nodes) so tests can `kill -9`, SIGSTOP and restart a
//! node exactly as an operator's machine would. Every wait is bounded and polls a
//! condition; none is a fixed sleep standing in for "long enough".

#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod chunks;
pub mod http;
pub mod mount;
pub mod python;
pub mod writers;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cairn::client::Client;
use cairn::proto::v1::NodeStatus;

pub const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");

/// Timing for tests: fast enough to fail over quickly, slow enough for a loaded
/// 2-core CI machine.
const TIMING_ARGS: [&str; 6] = [
    "--heartbeat-interval-ms",
    "100",
    "--election-timeout-ms-min",
    "700",
    "--election-timeout-ms-max",
    "1400",
];

/// A port nothing listens on now and that no other test of this process was given:
/// the kernel may hand the same free port to two `bind(0)` calls in a row before
/// either server has bound it.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..1_000 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = listener.local_addr().expect("local addr").port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
    panic!("1,000 ephemeral ports in a row were already given to this test process");
}

/// The cluster secret of the cluster whose nodes live under `base`, created
/// (mode 0600) on first use.
pub fn cluster_secret(base: &std::path::Path) -> PathBuf {
    let path = base.join("cluster.secret");
    if !path.exists() {
        let status = Command::new(CAIRN)
            .args(["admin", "init-secret"])
            .arg(&path)
            .stdout(Stdio::null())
            .status()
            .expect("run cairn admin init-secret");
        assert!(
            status.success() || path.exists(),
            "cairn admin init-secret failed"
        );
    }
    path
}

pub struct TestNode {
    pub id: u64,
    pub grpc: String,
    pub http: String,
    /// Peer RPCs (mutual TLS from the cluster secret).
    pub peer: String,
    pub dir: PathBuf,
    pub peers: String,
    pub extra_args: Vec<String>,
    /// Environment for the next starts (e.g. `FAILPOINTS` for crash points).
    pub env: Vec<(String, String)>,
    child: Option<Child>,
    starts: u32,
}

impl TestNode {
    pub fn new(id: u64, base: &std::path::Path, peers: String, extra_args: Vec<String>) -> Self {
        TestNode {
            id,
            grpc: format!("127.0.0.1:{}", free_port()),
            http: format!("127.0.0.1:{}", free_port()),
            peer: format!("127.0.0.1:{}", free_port()),
            dir: base.join(format!("node{id}")),
            peers,
            extra_args,
            env: Vec::new(),
            child: None,
            starts: 0,
        }
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "node {} is already running", self.id);
        std::fs::create_dir_all(&self.dir).expect("create node dir");
        self.starts += 1;
        let log = std::fs::File::create(self.dir.join(format!("log-{}.txt", self.starts)))
            .expect("log file");
        let mut command = Command::new(CAIRN);
        command
            .args(["server", "--id", &self.id.to_string()])
            .args([
                "--data-dir",
                self.dir.join("data").to_str().expect("utf-8 path"),
            ])
            .args(["--grpc-addr", &self.grpc, "--http-addr", &self.http])
            .args(["--peer-addr", &self.peer])
            .args(TIMING_ARGS)
            .args(&self.extra_args)
            .env("RUST_LOG", "info,openraft=info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .stdin(Stdio::null());
        if self.peers.is_empty() {
            command.arg("--dev");
        } else {
            // One secret per cluster, beside the nodes' directories.
            let secret =
                cluster_secret(self.dir.parent().expect("node dirs live in a cluster dir"));
            command.args(["--peers", &self.peers]);
            command.arg("--cluster-secret-file").arg(secret);
        }
        self.child = Some(command.spawn().expect("spawn cairn server"));
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("node is running").id()
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {} failed", self.pid());
    }

    /// `kill -9`: no shutdown, no flush.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // already exited is fine
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for a graceful exit (bounded), then SIGKILL.
    pub fn stop(&mut self) {
        if self.child.is_none() {
            return;
        }
        self.signal("-TERM");
        let mut child = self.child.take().expect("checked above");
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("node {} did not stop within 15 s of SIGTERM", self.id);
    }

    pub fn pause(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }

    pub fn client(&self) -> Client {
        Client::connect([self.grpc.clone()]).expect("client")
    }

    pub fn logs(&self) -> String {
        let mut out = String::new();
        for i in 1..=self.starts {
            if let Ok(text) = std::fs::read_to_string(self.dir.join(format!("log-{i}.txt"))) {
                out.push_str(&format!("--- node {} start {i} ---\n{text}", self.id));
            }
        }
        out
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A paused node must be resumed before it can die of SIGKILL's cleanup.
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
        }
        self.kill();
    }
}

pub struct TestCluster {
    pub nodes: Vec<TestNode>,
    pub dir: tempfile::TempDir,
}

impl TestCluster {
    /// A single `--dev` node.
    pub fn dev() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut node = TestNode::new(1, dir.path(), String::new(), Vec::new());
        node.start();
        TestCluster {
            nodes: vec![node],
            dir,
        }
    }

    /// `count` nodes started with the same `--peers`.
    pub fn start(count: u64, extra_args: &[&str]) -> Self {
        Self::start_with_env(count, extra_args, |_| Vec::new())
    }

    /// Like [`TestCluster::start`], with an environment per node id.
    pub fn start_with_env(
        count: u64,
        extra_args: &[&str],
        env: impl Fn(u64) -> Vec<(String, String)>,
    ) -> Self {
        let extra: Vec<String> = extra_args.iter().map(|s| s.to_string()).collect();
        Self::assemble(count, |_| extra.clone(), env)
    }

    /// Like [`TestCluster::start`], with arguments per node id (e.g. a port each).
    pub fn start_with_node_args(count: u64, args: impl Fn(u64) -> Vec<String>) -> Self {
        Self::assemble(count, args, |_| Vec::new())
    }

    /// Starts `count` initial members, each told of all the others.
    fn assemble(
        count: u64,
        args: impl Fn(u64) -> Vec<String>,
        env: impl Fn(u64) -> Vec<(String, String)>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut nodes: Vec<TestNode> = (1..=count)
            .map(|id| TestNode::new(id, dir.path(), String::new(), args(id)))
            .collect();
        let peers = nodes
            .iter()
            .map(|n| format!("{}={}", n.id, n.peer))
            .collect::<Vec<_>>()
            .join(",");
        for node in &mut nodes {
            node.peers = peers.clone();
            node.env = env(node.id);
            node.start();
        }
        TestCluster { nodes, dir }
    }

    /// A node that is not an initial member: it gets the current members as peers
    /// (so it never bootstraps) and waits to be added.
    pub fn spawn_joiner(&mut self, id: u64) -> usize {
        let peers = self
            .nodes
            .iter()
            .map(|n| format!("{}={}", n.id, n.peer))
            .collect::<Vec<_>>()
            .join(",");
        let extra = self.nodes[0].extra_args.clone();
        let mut node = TestNode::new(id, self.dir.path(), peers, extra);
        node.start();
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    pub fn node(&mut self, id: u64) -> &mut TestNode {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .expect("no node with that id")
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.grpc.clone()).collect()
    }

    pub fn client(&self) -> Client {
        Client::connect(self.endpoints()).expect("client")
    }

    pub async fn status(&self, id: u64) -> Option<NodeStatus> {
        let node = self.nodes.iter().find(|n| n.id == id)?;
        if !node.is_running() {
            return None;
        }
        let client = node.client().with_call_timeout(Duration::from_secs(2));
        client.node_status(&node.grpc).await.ok()
    }

    /// Waits until a running node reports itself leader and the others agree; returns its id.
    pub async fn wait_for_leader(&self, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            for node in self.nodes.iter().filter(|n| n.is_running()) {
                if let Some(status) = self.status(node.id).await {
                    if status.role == "leader" {
                        return status.id;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.dump_logs();
        panic!("no leader within {timeout:?}");
    }

    /// Waits until a leader other than `old` is elected.
    pub async fn wait_for_new_leader(&self, old: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            for node in self.nodes.iter().filter(|n| n.is_running() && n.id != old) {
                if let Some(status) = self.status(node.id).await {
                    if status.role == "leader" {
                        return status.id;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.dump_logs();
        panic!("no new leader within {timeout:?}");
    }

    /// Waits until node `id` has applied at least `index`.
    pub async fn wait_applied(&self, id: u64, index: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.status(id).await {
                if status.applied_index >= index {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.dump_logs();
        panic!("node {id} did not apply index {index} within {timeout:?}");
    }

    pub fn dump_logs(&self) {
        for node in &self.nodes {
            eprintln!("{}", node.logs());
        }
    }
}

/// Retries `f` until it succeeds or `timeout` passes (for setup steps during elections).
pub async fn eventually<T, E: std::fmt::Debug, F, Fut>(timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) if Instant::now() >= deadline => {
                panic!("still failing after {timeout:?}: {e:?}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

impl TestNode {
    /// The exit status if the process has ended on its own (without reaping a live one).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }
}

/// Deterministic incompressible bytes.
pub fn content(seed: &str, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new()
        .update(seed.as_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}

/// A finished command's exit status and output, for assertion messages.
pub fn output_text(output: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
