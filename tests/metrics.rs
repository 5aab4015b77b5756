//! Observability on a live 3-node cluster: `/metrics` parses with the Python
//! Prometheus client's parsers and names only documented families, request
//! counters move with KV puts, the leader's replication lag for a follower
//! rises while that follower is paused under writes and falls back after it
//! resumes; `/readyz` follows membership and leadership; `/metrics` needs a
//! token once the cluster has one (unless `--metrics-public`); JSON logs.
//!
//! Method: real server processes (SIGSTOP pauses a node, `kill -9` kills one);
//! every scrape goes through `tests/metrics/parse.py` in the venv
//! `CAIRN_METRICS_VENV` (default `<repo>/target/metrics-venv`, created from
//! `tests/metrics/requirements.txt` when missing). Every wait polls a condition
//! with a bound; none is a fixed sleep.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use common::http::{request, HttpResponse};
use common::python::{create_token, read_lossy, repo, run_bounded, venv};
use common::{eventually, TestCluster, TestNode};

const WAIT: Duration = Duration::from_secs(60);
/// Puts of the write load while a follower is paused: at most this many…
const LOAD_PUTS_MAX: u64 = 5_000;
/// …and for at most this long.
const LOAD_TIME_MAX: Duration = Duration::from_secs(60);

/// The Python with `prometheus_client`, made once per test process.
fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let work = tempfile::tempdir().expect("temp dir");
        let requirements = "tests/metrics/requirements.txt";
        let venv = venv(
            "CAIRN_METRICS_VENV",
            "metrics-venv",
            requirements,
            "python3",
            work.path(),
        );
        let python = venv.join("bin").join("python3");
        // `python3` exists before pip has run: check for the package itself.
        let mut probe = Command::new(&python);
        probe.args(["-c", "import prometheus_client"]);
        let log = work.path().join("probe.log");
        if !run_bounded(probe, &log, Duration::from_secs(60), "import probe").success() {
            let mut install = Command::new(venv.join("bin").join("pip"));
            install
                .args(["install", "--disable-pip-version-check", "-r"])
                .arg(repo().join(requirements));
            let status = run_bounded(install, &log, common::python::VENV_CREATE_WAIT, "pip");
            assert!(
                status.success(),
                "pip install failed:\n{}",
                read_lossy(&log)
            );
        }
        python
    })
}

/// One scrape as the Python parser read it.
struct Scrape {
    families: serde_json::Map<String, serde_json::Value>,
    samples: Vec<(String, serde_json::Map<String, serde_json::Value>, f64)>,
}

impl Scrape {
    /// The value of sample `name` whose labels include `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).and_then(|x| x.as_str()) == Some(*v))
            })
            .map(|(_, _, v)| *v)
    }
}

async fn get(node: &TestNode, path: &str, token: Option<&str>) -> HttpResponse {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer
        .iter()
        .map(|b| ("authorization", b.as_str()))
        .collect();
    request("GET", &node.http, path, &headers, b"").await
}

/// `GET /metrics` on `node`, parsed by both Python parsers (panics if either
/// refuses the body).
async fn scrape(node: &TestNode, token: Option<&str>) -> Scrape {
    let response = get(node, "/metrics", token).await;
    assert_eq!(response.status, 200, "/metrics: {:?}", response.json());
    assert!(
        response
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/openmetrics-text")),
        "{:?}",
        response.headers
    );
    let work = tempfile::tempdir().expect("temp dir");
    let body = work.path().join("metrics.txt");
    std::fs::write(&body, &response.body).expect("write body");
    let out = work.path().join("parsed.json");
    let mut parse = Command::new(python());
    parse
        .arg(repo().join("tests/metrics/parse.py"))
        .arg(&body)
        .arg(&out);
    let log = work.path().join("parse.log");
    let status = run_bounded(parse, &log, Duration::from_secs(60), "parse.py");
    assert!(
        status.success(),
        "the Python parsers refused /metrics: {}\n{}",
        read_lossy(&log),
        String::from_utf8_lossy(&response.body)
    );
    let parsed: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out).expect("read parsed")).expect("json");
    let samples = parsed["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .map(|s| {
            let name = s[0].as_str().expect("name").to_string();
            let labels = s[1].as_object().expect("labels").clone();
            (name, labels, s[2].as_f64().expect("value"))
        })
        .collect();
    Scrape {
        families: parsed["families"].as_object().expect("families").clone(),
        samples,
    }
}

/// Polls `check` on fresh scrapes of `node` until it returns `Some`, within `WAIT`.
async fn scrape_until<T>(node: &TestNode, what: &str, check: impl Fn(&Scrape) -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        let scraped = scrape(node, None).await;
        if let Some(found) = check(&scraped) {
            return found;
        }
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every family the node exports is in docs/operations.md.
fn assert_documented(scraped: &Scrape) {
    let docs = std::fs::read_to_string(repo().join("docs/operations.md")).expect("docs");
    let missing: Vec<&String> = scraped
        .families
        .iter()
        .filter(|(name, kind)| {
            let listed = |n: &str| docs.contains(&format!("`{n}`"));
            let total = kind.as_str() == Some("counter") && listed(&format!("{name}_total"));
            !listed(name) && !total
        })
        .map(|(name, _)| name)
        .collect();
    assert!(
        missing.is_empty(),
        "families missing from docs/operations.md: {missing:?}"
    );
}

/// Puts into `ns` until `stop` is set, at most `LOAD_PUTS_MAX` times and
/// `LOAD_TIME_MAX` long; counts the acknowledged ones.
fn write_load(
    client: cairn::client::Client,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let deadline = Instant::now() + LOAD_TIME_MAX;
        for i in 0..LOAD_PUTS_MAX {
            if stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
                return;
            }
            let key = format!("load-{i:05}");
            if client.put("m", key.as_bytes(), b"v").await.is_ok() {
                acked.fetch_add(1, Ordering::Relaxed);
            }
        }
    })
}

/// Lines of a node's log, but for the harness's headers and the start line on
/// stdout, are JSON objects with a timestamp, a level and a target (an event
/// with fields only has no `message`).
fn assert_json_logs(node: &TestNode) {
    let logs = node.logs();
    let mut objects = 0;
    for line in logs.lines() {
        if line.starts_with("--- node") || line.starts_with("cairn node") || line.is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {line}"));
        for key in ["timestamp", "level", "target"] {
            assert!(value[key].is_string(), "no {key} in {line}");
        }
        objects += 1;
    }
    assert!(objects > 0, "no JSON log line in:\n{logs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_parse_count_puts_and_show_a_paused_followers_lag_rise_and_fall() {
    let cluster = TestCluster::start(3, &["--log-format", "json"]);
    let leader_id = cluster.wait_for_leader(WAIT).await;
    let leader = cluster.nodes.iter().find(|n| n.id == leader_id).unwrap();
    let client = leader.client();
    eventually(WAIT, || client.create_namespace("m")).await;

    // Request counters move with puts; every family is documented.
    let put = [
        ("service", "cairn.v1.Kv"),
        ("method", "Put"),
        ("code", "OK"),
    ];
    let before = scrape(leader, None).await;
    assert_documented(&before);
    let puts_before = before.value("cairn_requests_total", &put).unwrap_or(0.0);
    for i in 0..20 {
        client
            .put("m", format!("k{i}").as_bytes(), b"v")
            .await
            .unwrap();
    }
    let after = scrape(leader, None).await;
    let puts_after = after.value("cairn_requests_total", &put).unwrap_or(0.0);
    assert!(
        puts_after >= puts_before + 20.0,
        "{puts_before} -> {puts_after}"
    );
    let timed = [("service", "cairn.v1.Kv"), ("method", "Put")];
    assert!(after.value("cairn_request_duration_seconds_count", &timed) >= Some(20.0));
    let scraped = [
        ("service", "http"),
        ("method", "GET /metrics"),
        ("code", "200"),
    ];
    assert!(after.value("cairn_requests_total", &scraped) >= Some(1.0));
    assert_eq!(
        after.value("cairn_raft_role", &[("role", "leader")]),
        Some(1.0)
    );
    assert!(
        after.value("cairn_raft_elections_total", &[]) >= Some(1.0),
        "the leader won one"
    );
    assert!(after
        .value("cairn_kv_keys", &[("namespace", "m")])
        .is_some());
    assert!(after.value("cairn_raft_proposal_batch_commands_count", &[]) >= Some(20.0));
    assert!(
        after.value(
            "cairn_fsync_duration_seconds_count",
            &[("file", "raft_log")]
        ) > Some(0.0)
    );

    // A paused follower's lag rises on the leader under writes…
    let follower = cluster.nodes.iter().find(|n| n.id != leader_id).unwrap();
    let peer = follower.id.to_string();
    let peer_label = [("peer", peer.as_str())];
    follower.pause();
    let (stop, acked) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let load = write_load(client.clone(), stop.clone(), acked.clone());
    let (entries, seconds) = scrape_until(leader, "the paused follower's lag to rise", |s| {
        let entries = s.value("cairn_raft_replication_lag_entries", &peer_label)?;
        let seconds = s.value("cairn_raft_replication_lag_seconds", &peer_label)?;
        (entries >= 100.0 && seconds >= 1.0).then_some((entries, seconds))
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    assert!(
        acked.load(Ordering::Relaxed) >= 100,
        "writes went on with two of three nodes"
    );
    eprintln!("lag while paused: {entries} entries, {seconds} s");

    // …and falls back once it resumes.
    follower.resume();
    scrape_until(leader, "the resumed follower's lag to fall", |s| {
        let entries = s.value("cairn_raft_replication_lag_entries", &peer_label)?;
        let seconds = s.value("cairn_raft_replication_lag_seconds", &peer_label)?;
        (entries == 0.0 && seconds == 0.0).then_some(())
    })
    .await;
    assert_json_logs(leader);
}

async fn readyz(node: &TestNode) -> (u16, serde_json::Value) {
    let response = get(node, "/readyz", None).await;
    (response.status, response.json())
}

/// Polls `/readyz` on `node` until `check` accepts the answer, within `WAIT`;
/// `/healthz` must answer 200 at every poll.
async fn readyz_until(
    node: &TestNode,
    what: &str,
    check: impl Fn(u16, &serde_json::Value) -> bool,
) {
    let deadline = Instant::now() + WAIT;
    loop {
        // A node just started may not listen yet.
        if tokio::net::TcpStream::connect(&node.http).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "node {}: HTTP not up within {WAIT:?}",
                node.id
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let (status, body) = readyz(node).await;
        if check(status, &body) {
            return;
        }
        let health = get(node, "/healthz", None).await;
        assert_eq!((health.status, health.body.as_slice()), (200, &b"ok"[..]));
        assert!(
            Instant::now() < deadline,
            "node {}: {what}: not within {WAIT:?}; last /readyz {status} {body}",
            node.id
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn reason_starts(status: u16, body: &serde_json::Value, prefix: &str) -> bool {
    status == 503
        && body["ready"] == false
        && body["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with(prefix))
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_needs_membership_a_leader_and_a_caught_up_log() {
    let public = |id: u64| match id {
        3 => vec!["--metrics-public".to_string()],
        _ => Vec::new(),
    };
    let mut cluster = TestCluster::start_with_node_args(3, public);
    cluster.wait_for_leader(WAIT).await;
    for node in &cluster.nodes {
        readyz_until(node, "ready", |status, body| {
            status == 200 && body["ready"] == true
        })
        .await;
    }

    // A node not yet added is not a member; added as a learner, it gets ready.
    let joiner = cluster.spawn_joiner(4);
    let node4 = &cluster.nodes[joiner];
    readyz_until(node4, "not a member", |s, b| {
        reason_starts(s, b, "not a member")
    })
    .await;
    let client = cluster.client();
    eventually(WAIT, || {
        client.add_learner(4, &node4.grpc, &node4.http, &node4.peer)
    })
    .await;
    readyz_until(
        &cluster.nodes[joiner],
        "ready as a learner",
        |status, body| status == 200 && body["role"] == "learner",
    )
    .await;

    // Once the cluster has a token, /metrics needs it (but on the node started
    // with --metrics-public); the probes never do. (Cluster status needs it
    // too: find the leader first.)
    let leader = cluster.wait_for_leader(WAIT).await;
    let work = tempfile::tempdir().expect("temp dir");
    let token = create_token(&cluster.nodes[0].grpc, "metrics", work.path());
    let locked = &cluster.nodes[0];
    assert_eq!(get(locked, "/metrics", None).await.status, 401);
    assert_eq!(
        get(locked, "/metrics", Some("not-a-token-at-all"))
            .await
            .status,
        401
    );
    scrape(locked, Some(&token)).await;
    scrape(&cluster.nodes[2], None).await;
    assert_eq!(readyz(locked).await.0, 200);

    // With the leader and another voter gone, the last voter knows no leader
    // (within an election timeout), and the learner cannot reach the leader it
    // knew.
    let other = (1..=3).find(|id| *id != leader).unwrap();
    let survivor = (1..=3).find(|id| *id != leader && *id != other).unwrap();
    cluster.node(leader).kill();
    cluster.node(other).kill();
    readyz_until(cluster.node(survivor), "no leader known", |s, b| {
        reason_starts(s, b, "no leader known")
    })
    .await;
    readyz_until(cluster.node(4), "leader unreachable", |s, b| {
        reason_starts(s, b, "leader unreachable")
    })
    .await;
}
