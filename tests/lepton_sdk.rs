//! The official Lepton SDK and CLI (`leptonai` 0.27.3, unmodified) against a 3-node
//! cairn, through a follower's `/api/v1`: runs the pytest suite in `tests/lepton/`.
//!
//! Owns the setup the suite cannot do itself: nodes started with a workspace id and
//! each its own rsync port (`TestCluster::start_with_node_args`), the API token (`cairn token create`), the
//! choice of a follower, the Python venv (`CAIRN_LEPTON_VENV`, default
//! `<repo>/target/lepton-venv`, created from `tests/lepton/requirements.txt` when
//! missing) and `lep login` into a temp `LEPTON_CACHE_DIR`. What is asserted lives
//! in the pytest files; this test asserts that pytest exits 0 and prints its output.
//!
//! Needs python3, rsync (the CLI's `--rsync` runs it) and, for the node's rsync
//! daemon, root and /dev/fuse. `CAIRN_LEPTON_SKIP_LARGE=1` skips the 512 MiB upload;
//! `CAIRN_LEPTON_PYTEST_ARGS` appends pytest arguments (e.g. `--maxfail=100 -k kv`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use common::http::wait_for_ok;
use common::python::{create_token, read_lossy, repo, run_bounded};
use common::{free_port, TestCluster, TestNode, CAIRN};

const NODE_COUNT: u64 = 3;
/// Not the default (`cairn`), so a node that ignored `--workspace-id` is caught: the
/// rsync daemon's user and the CLI's record both carry it.
const WORKSPACE_ID: &str = "cairn-lepton-test";
const ELECTION_WAIT: Duration = Duration::from_secs(60);
const READY_WAIT: Duration = Duration::from_secs(60);
/// `lep login` retries a 401 twenty times, 3 s apart, on top of its own calls.
const LOGIN_WAIT: Duration = Duration::from_secs(150);
const PYTEST_WAIT: Duration = Duration::from_secs(30 * 60);
const LOG_TAIL_LINES: usize = 150;

/// The venv with the pinned SDK: `CAIRN_LEPTON_VENV`, else `<repo>/target/lepton-venv`,
/// created from `tests/lepton/requirements.txt` when it has no `lep`.
fn venv(work: &Path) -> PathBuf {
    common::python::venv(
        "CAIRN_LEPTON_VENV",
        "lepton-venv",
        "tests/lepton/requirements.txt",
        "lep",
        work,
    )
}

/// Three nodes, each with `--workspace-id` and its own `--rsync-addr`.
fn start_cluster() -> TestCluster {
    TestCluster::start_with_node_args(NODE_COUNT, |_| {
        vec![
            "--workspace-id".to_string(),
            WORKSPACE_ID.to_string(),
            "--rsync-addr".to_string(),
            format!("127.0.0.1:{}", free_port()),
        ]
    })
}

fn log_tails(cluster: &TestCluster) -> String {
    let mut out = String::new();
    for node in &cluster.nodes {
        let logs = node.logs();
        let lines: Vec<&str> = logs.lines().collect();
        let start = lines.len().saturating_sub(LOG_TAIL_LINES);
        out.push_str(&format!(
            "--- node {} (last {LOG_TAIL_LINES} lines) ---\n",
            node.id
        ));
        out.push_str(&lines[start..].join("\n"));
        out.push('\n');
    }
    out
}

/// Copies every node's logs and the pytest output out of the temp dirs, which are
/// removed when the test ends; returns where they went.
fn keep_logs(cluster: &TestCluster, pytest_log: &Path) -> PathBuf {
    let kept = std::env::temp_dir().join(format!("lepton-sdk-logs-{}", std::process::id()));
    std::fs::create_dir_all(&kept).expect("create the log dir");
    for node in &cluster.nodes {
        std::fs::write(kept.join(format!("node{}.log", node.id)), node.logs()).expect("write");
    }
    std::fs::copy(pytest_log, kept.join("pytest.log")).expect("copy the pytest log");
    kept
}

/// The environment every `lep` and pytest run gets: the temp login record, no
/// `LEPTON_WORKSPACE_*` overrides (the record must be what works), no bytecode files
/// in the source tree.
fn lepton_env(command: &mut Command, cache: &Path) {
    command
        .env("LEPTON_CACHE_DIR", cache)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("LEPTON_WORKSPACE_ID")
        .env_remove("LEPTON_WORKSPACE_TOKEN")
        .env_remove("LEPTON_WORKSPACE_URL");
}

/// `lep login -c ID:TOKEN -u URL` into `cache`, with a fresh version-check time so
/// the CLI never asks the package index for newer releases.
fn lep_login(python: &Path, cache: &Path, token: &str, base_url: &str, work: &Path) {
    std::fs::create_dir_all(cache).expect("cache dir");
    std::fs::write(cache.join("latest_version_check"), "9999999999").expect("write");
    let log = work.join("login.log");
    let mut login = Command::new(python.join("bin").join("lep"));
    login
        .args([
            "login",
            "-c",
            &format!("{WORKSPACE_ID}:{token}"),
            "-u",
            base_url,
        ])
        .env("COLUMNS", "200");
    lepton_env(&mut login, cache);
    let status = run_bounded(login, &log, LOGIN_WAIT, "lep login");
    assert!(status.success(), "lep login failed:\n{}", read_lossy(&log));
}

/// What pytest is told about the node under test.
struct Target<'a> {
    base_url: &'a str,
    token: &'a str,
    grpc: &'a str,
    pid: u32,
}

/// `python -m pytest tests/lepton -q -x` (plus `CAIRN_LEPTON_PYTEST_ARGS`); returns
/// its exit status and where its output went.
fn run_pytest(python: &Path, cache: &Path, target: &Target, work: &Path) -> (ExitStatus, PathBuf) {
    let log = work.join("pytest.log");
    let mut pytest = Command::new(python.join("bin").join("python"));
    pytest
        .args([
            "-m",
            "pytest",
            "tests/lepton",
            "-q",
            "-x",
            "-rfEs",
            "--durations=15",
        ])
        .arg(format!("--basetemp={}", work.join("pytest").display()))
        .args(
            std::env::var("CAIRN_LEPTON_PYTEST_ARGS")
                .unwrap_or_default()
                .split_whitespace(),
        )
        .current_dir(repo())
        .env("CAIRN_URL", target.base_url)
        .env("CAIRN_TOKEN", target.token)
        .env("CAIRN_WORKSPACE_ID", WORKSPACE_ID)
        .env("CAIRN_BIN", CAIRN)
        .env("CAIRN_GRPC_ADDR", target.grpc)
        .env("CAIRN_NODE_PID", target.pid.to_string());
    lepton_env(&mut pytest, cache);
    (
        run_bounded(pytest, &log, PYTEST_WAIT, "pytest tests/lepton"),
        log,
    )
}

/// The role node `node` reports (cluster calls need the token once one exists).
async fn role(node: &TestNode, token: &str) -> String {
    match node.client().with_token(token) {
        Ok(client) => client
            .with_call_timeout(Duration::from_secs(5))
            .node_status(&node.grpc)
            .await
            .map_or_else(|e| format!("unreachable ({e})"), |s| s.role),
        Err(e) => format!("unknown ({e})"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_lepton_sdk_and_cli_work_against_a_follower() {
    let work = tempfile::tempdir().expect("temp dir");
    let python = venv(work.path());
    let cluster = start_cluster();
    let leader_id = cluster.wait_for_leader(ELECTION_WAIT).await;
    let leader = cluster.nodes.iter().find(|n| n.id == leader_id);
    let leader_grpc = leader.expect("the leader is a node").grpc.clone();
    let follower = cluster
        .nodes
        .iter()
        .find(|n| n.id != leader_id)
        .expect("a 3-node cluster has followers");
    let token = create_token(&leader_grpc, "lepton-sdk", work.path());
    wait_for_ok(&follower.http, "/api/v1/workspace", &token, READY_WAIT).await;
    let base_url = format!("http://{}/api/v1", follower.http);
    eprintln!(
        "leader {leader_id}; testing follower {} at {base_url} (pid {})",
        follower.id,
        follower.pid()
    );
    let cache = work.path().join("lepton-cache");
    lep_login(&python, &cache, &token, &base_url, work.path());

    let target = Target {
        base_url: &base_url,
        token: &token,
        // The cross-checks read through another node than the one written to.
        grpc: &leader_grpc,
        pid: follower.pid(),
    };
    let started = Instant::now();
    let (status, log) = run_pytest(&python, &cache, &target, work.path());
    println!("{}", read_lossy(&log));
    println!(
        "pytest finished in {:.0} s with {status}; node {} is now {}",
        started.elapsed().as_secs_f64(),
        follower.id,
        role(follower, &token).await
    );
    if !status.success() {
        eprintln!("{}", log_tails(&cluster));
        eprintln!("full logs kept in {}", keep_logs(&cluster, &log).display());
    }
    assert!(
        status.success(),
        "the Lepton SDK suite failed ({status}); its output is above"
    );
}
