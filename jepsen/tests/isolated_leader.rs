//! Goal: a leader cut off from both followers stops taking writes within a few
//! election timeouts, so the SDK moves on to the majority side's new leader. openraft
//! 0.9 has no check-quorum step-down: the isolated leader keeps its role until it
//! hears a higher term. cairn's `Node::check_leader` (src/raft/node.rs) refuses a
//! write with UNAVAILABLE ("this leader has heard from no quorum for N ms") once
//! openraft's `millis_since_quorum_ack` exceeds the minimum election timeout; the SDK
//! retries UNAVAILABLE on its other endpoints (docs/consistency.md, "A leader cut off
//! from its quorum").
//!
//! Method: 3 `cairn server` nodes in network namespaces (the chaos harness's network,
//! cluster and timing: heartbeat 100 ms, election timeout 700-1400 ms). One SDK
//! client with all three endpoints puts unique keys one after another and records
//! each put's start, end and outcome. After a quiet baseline the leader is isolated
//! (it drops the followers' packets and they drop its packets; the test's client in
//! the root namespace still reaches every node). Meanwhile every 100 ms a probe put
//! goes to the old leader alone (400 ms deadline) to time when it starts refusing,
//! and the followers are polled for a new leader. Then the partition heals and every
//! acknowledged put is read back with linearizable gets.
//!
//! Asserts: the old leader refuses within 3 x the maximum election timeout of the
//! cut (generous for a loaded 2-core box, where ~0.7-1 s is typical, but it fails if
//! the refusal never comes), a follower becomes leader in a higher term, puts started
//! after the cut succeed while the partition holds, and every acknowledged put is
//! readable after healing. Prints the refusal delay and the write gap (longest time
//! between two successful puts around the cut) with `--nocapture`.
//!
//! `CAIRN_BIN=/path/to/cairn` runs another cairn binary (e.g. one built without the
//! refusal, for a before/after comparison); by default the workspace's debug binary
//! is used (built if stale). Needs root, `ip netns` and iptables; without them the
//! test prints a loud SKIPPED banner and passes (under CI it fails).

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn::client::{Client, Error};
use cairn_jepsen::harness::cleanup::CleanupGuard;
use cairn_jepsen::harness::cluster::Cluster;
use cairn_jepsen::harness::grudge::{self, NodeId};
use cairn_jepsen::harness::leftovers;
use cairn_jepsen::harness::net::Network;
use cairn_jepsen::harness::node::NodeSpec;
use cairn_jepsen::harness::store;

/// The same ports and Raft timing as the chaos harness (jepsen/src/harness/run.rs).
const GRPC_PORT: u16 = 7400;
const HTTP_PORT: u16 = 7480;
const HEARTBEAT_MS: u64 = 100;
const ELECTION_TIMEOUT_MS_MIN: u64 = 700;
const ELECTION_TIMEOUT_MS_MAX: u64 = 1400;
/// The SDK's per-attempt timeout (src/client/retry.rs, `ATTEMPT_TIMEOUT_MS`).
const ATTEMPT_TIMEOUT_MS: u64 = 3_000;
/// The old leader must refuse writes this soon after the cut.
const REFUSAL_BOUND_MS: u64 = 3 * ELECTION_TIMEOUT_MS_MAX;
/// What the refusal says (src/raft/node.rs, `check_leader`).
const REFUSAL_TEXT: &str = "heard from no quorum";

/// Bound on the first election and on creating the namespace.
const SETUP_SECS: u64 = 30;
/// Writes through the healthy cluster before the cut.
const BASELINE_MS: u64 = 2_000;
/// The partition holds until the refusal, a new leader and resumed writes were
/// seen, or this long.
const PARTITION_SECS_MAX: u64 = 20;
/// Puts started after the new leader was seen that must succeed before healing.
const RESUMED_PUTS: usize = 3;
/// Probes of the old leader: one started this often, each with this deadline.
const PROBE_INTERVAL_MS: u64 = 100;
const PROBE_CALL_MS: u64 = 400;
/// Bound on the old leader stepping down after healing.
const STEP_DOWN_SECS: u64 = 15;
/// Writes through the healed cluster before the writer stops.
const AFTER_HEAL_MS: u64 = 1_000;
/// Bound on the writer's last put after it was told to stop (SDK call deadline 10 s).
const WRITER_STOP_SECS: u64 = 15;
/// Between two puts of the writer.
const WRITER_PAUSE_MS: u64 = 10;
/// Gets in flight at once when reading back.
const READ_CONCURRENCY: usize = 8;
/// Bound on reading back every acknowledged put.
const READ_BACK_SECS: u64 = 30;
/// SIGTERM grace at the end, before SIGKILL.
const STOP_GRACE_SECS: u64 = 10;

const NAMESPACE: &str = "isolated";

/// One put of the writer.
struct PutRecord {
    key: String,
    value: String,
    start: Instant,
    end: Instant,
    outcome: Result<u64, String>,
}

/// How a probe put sent to the old leader alone ended.
enum Probe {
    Accepted,
    Refused(String),
    /// No answer in time, or another error: the write was proposed and hangs.
    Stalled(String),
}

/// Forgets the run's owner file (`leftovers`) however the test ends.
struct OwnerFile(String);

impl Drop for OwnerFile {
    fn drop(&mut self) {
        leftovers::release(&self.0);
    }
}

fn cairn_binary() -> PathBuf {
    match std::env::var_os("CAIRN_BIN") {
        Some(path) => {
            let path = PathBuf::from(path);
            assert!(path.is_file(), "CAIRN_BIN: no file at {}", path.display());
            path
        }
        None => common::cairn_binary(),
    }
}

/// The nodes' specs, as the harness's `run::node_specs` builds them (no faults).
fn node_specs(network: &Network, run_dir: &Path) -> Vec<NodeSpec> {
    let ids: Vec<NodeId> = vec![1, 2, 3];
    let grpc = |id: NodeId| format!("{}:{GRPC_PORT}", network.node_ip(id));
    let http = |id: NodeId| format!("{}:{HTTP_PORT}", network.node_ip(id));
    // Peers listen on the default peer address, the gRPC port + 1.
    let peers: Vec<String> = ids
        .iter()
        .map(|&id| format!("{id}={}:{}", network.node_ip(id), GRPC_PORT + 1))
        .collect();
    let peers = peers.join(",");
    let secret = run_dir.join("cluster.secret");
    cairn::peer_tls::create_secret(&secret).expect("write the cluster secret");
    let timing = [
        "--heartbeat-interval-ms".to_string(),
        HEARTBEAT_MS.to_string(),
        "--election-timeout-ms-min".to_string(),
        ELECTION_TIMEOUT_MS_MIN.to_string(),
        "--election-timeout-ms-max".to_string(),
        ELECTION_TIMEOUT_MS_MAX.to_string(),
    ];
    ids.iter()
        .map(|&id| {
            let dir = run_dir.join(format!("n{id}"));
            let data_dir = dir.join("data");
            let mut args: Vec<String> = vec!["server".into(), "--id".into(), id.to_string()];
            args.extend(["--data-dir".into(), data_dir.display().to_string()]);
            args.extend(["--grpc-addr".into(), grpc(id)]);
            args.extend(["--http-addr".into(), http(id)]);
            args.extend(["--peers".into(), peers.clone()]);
            args.extend(["--cluster-secret-file".into(), secret.display().to_string()]);
            args.extend(timing.iter().cloned());
            NodeSpec {
                id,
                namespace: network.namespace(id),
                grpc_addr: grpc(id),
                http_addr: http(id),
                data_dir,
                log_path: dir.join("server.log"),
                args,
                env: Vec::new(),
            }
        })
        .collect()
}

fn ms(duration: Duration) -> u64 {
    duration.as_millis() as u64
}

/// Milliseconds from `origin` to `at` (negative if before).
fn offset_ms(origin: Instant, at: Instant) -> i64 {
    match at.checked_duration_since(origin) {
        Some(after) => ms(after) as i64,
        None => -(ms(origin.duration_since(at)) as i64),
    }
}

async fn create_namespace(client: &Client) {
    let deadline = Instant::now() + Duration::from_secs(SETUP_SECS);
    loop {
        match client.create_namespace(NAMESPACE).await {
            Ok(()) | Err(Error::AlreadyExists(_)) => return,
            Err(error) if Instant::now() >= deadline => {
                panic!("creating namespace {NAMESPACE}: {error}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// One put sent to `addr` only, with a deadline of `PROBE_CALL_MS`. The deadline is
/// the SDK's attempt limit too, so a put the node proposed (and that then hangs) gets
/// no second attempt: a refusal means the node refused when the probe started.
async fn probe(addr: &str, number: u64) -> Probe {
    let client = Client::connect([addr.to_string()])
        .expect("probe client")
        .with_call_timeout(Duration::from_millis(PROBE_CALL_MS));
    let key = format!("probe-{number:06}");
    match client.put(NAMESPACE, key.as_bytes(), b"probe").await {
        Ok(_) => Probe::Accepted,
        Err(error) => {
            let text = error.to_string();
            match text.contains(REFUSAL_TEXT) {
                true => Probe::Refused(text),
                false => Probe::Stalled(text),
            }
        }
    }
}

/// Sequential puts of unique keys until `stop` (or `deadline`), each recorded.
async fn write_until(
    client: Client,
    stop: Arc<AtomicBool>,
    deadline: Instant,
    log: Arc<Mutex<Vec<PutRecord>>>,
) {
    let mut number = 0u64;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let key = format!("k{number:06}");
        let value = format!("v{number}");
        let start = Instant::now();
        let outcome = client
            .put(NAMESPACE, key.as_bytes(), value.as_bytes())
            .await
            .map_err(|e| e.to_string());
        let end = Instant::now();
        log.lock().expect("log lock").push(PutRecord {
            key,
            value,
            start,
            end,
            outcome,
        });
        number += 1;
        tokio::time::sleep(Duration::from_millis(WRITER_PAUSE_MS)).await;
    }
}

/// A follower that leads in a term above `old_term`, if one does.
async fn new_leader(
    cluster: &Cluster,
    followers: &[NodeId],
    old_term: u64,
) -> Option<(NodeId, u64)> {
    for &id in followers {
        if let Some(status) = cluster.status(id).await {
            if status.role == "leader" && status.term > old_term {
                return Some((id, status.term));
            }
        }
    }
    None
}

/// Reads back every acknowledged put; one line per put that is not there.
async fn read_back(client: &Client, acked: Vec<(String, String)>) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(READ_BACK_SECS);
    let mut problems = Vec::new();
    for batch in acked.chunks(READ_CONCURRENCY) {
        if Instant::now() >= deadline {
            problems.push(format!("read-back not finished within {READ_BACK_SECS} s"));
            break;
        }
        let mut tasks = tokio::task::JoinSet::new();
        for pair in batch {
            let (key, value) = pair.clone();
            let client = client.clone();
            tasks.spawn(async move {
                let read = client.get(NAMESPACE, key.as_bytes()).await;
                match read {
                    Ok(Some(found)) if found.value == value.as_bytes() => None,
                    Ok(Some(found)) => Some(format!(
                        "{key}: read {:?}, acknowledged {value:?}",
                        String::from_utf8_lossy(&found.value)
                    )),
                    Ok(None) => Some(format!("{key}: acknowledged {value:?}, now missing")),
                    Err(error) => Some(format!("{key}: linearizable get failed: {error}")),
                }
            });
        }
        while let Some(joined) = tasks.join_next().await {
            problems.extend(joined.expect("read task"));
        }
    }
    problems
}

/// The longest time between two successive successful puts (by completion) where
/// the later one completed after `cut`: (gap, its start and end relative to `cut`).
fn longest_gap(records: &[PutRecord], cut: Instant) -> (u64, i64, i64) {
    let mut ends: Vec<Instant> = records
        .iter()
        .filter(|r| r.outcome.is_ok())
        .map(|r| r.end)
        .collect();
    ends.sort();
    ends.windows(2)
        .filter(|pair| pair[1] >= cut)
        .map(|pair| {
            (
                ms(pair[1] - pair[0]),
                offset_ms(cut, pair[0]),
                offset_ms(cut, pair[1]),
            )
        })
        .max()
        .unwrap_or((0, 0, 0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_refuses_writes_and_clients_move_to_the_majority() {
    let test = "an_isolated_leader_refuses_writes_and_clients_move_to_the_majority";
    if !common::harness_can_run(test) {
        return;
    }
    // Kills the nodes and deletes the namespaces however the test ends.
    let _cleanup = CleanupGuard;
    let binary = cairn_binary();
    eprintln!("cairn binary: {}", binary.display());
    for line in leftovers::clean_dead_runs() {
        eprintln!("note: {line}");
    }
    let run_id = store::run_id();
    leftovers::claim(&run_id).expect("claim the run");
    let _owner = OwnerFile(run_id.clone());
    let store_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("isolated_leader");
    // Old runs only take space; a missing directory is fine.
    let _ = std::fs::remove_dir_all(&store_dir);
    let run_dir = store_dir.join(&run_id);
    std::fs::create_dir_all(&run_dir).expect("run directory");
    eprintln!("run directory: {}", run_dir.display());

    let network = Network::create(&run_id, 3).expect("build the network");
    let cluster = Cluster::new(binary, node_specs(&network, &run_dir));
    cluster.start_all().expect("start the nodes");
    let leader = cluster
        .wait_for_leader(Duration::from_secs(SETUP_SECS))
        .await
        .unwrap_or_else(|| panic!("no leader within {SETUP_SECS} s"));
    let client = Client::connect(cluster.endpoints_from(1)).expect("client");
    create_namespace(&client).await;
    // The leader may have changed during the first election: take the one that now
    // accepts a probe, so the probes and the cut are aimed at a working leader.
    let setup_deadline = Instant::now() + Duration::from_secs(SETUP_SECS);
    let (leader, old_term) = loop {
        let leader = cluster.leader().await.unwrap_or(leader);
        let term = cluster.status(leader).await.map(|s| s.term);
        if let (Probe::Accepted, Some(term)) = (probe(cluster.grpc_addr(leader), 0).await, term) {
            break (leader, term);
        }
        assert!(
            Instant::now() < setup_deadline,
            "no leader accepted a write within {SETUP_SECS} s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let followers: Vec<NodeId> = cluster
        .ids()
        .into_iter()
        .filter(|&id| id != leader)
        .collect();
    eprintln!("leader n{leader} in term {old_term}; followers {followers:?}");

    let log = Arc::new(Mutex::new(Vec::<PutRecord>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer_deadline = Instant::now() + Duration::from_secs(90);
    let writer = tokio::spawn(write_until(
        client.clone(),
        stop.clone(),
        writer_deadline,
        log.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(BASELINE_MS)).await;
    let baseline_ok = log
        .lock()
        .expect("log lock")
        .iter()
        .filter(|r| r.outcome.is_ok())
        .count();
    assert!(baseline_ok > 0, "no put succeeded on the healthy cluster");

    // The cut: the leader and the followers drop each other's packets. The rules
    // match node addresses only; the client (the bridge's address) reaches all.
    let cut = Instant::now();
    network
        .partition(&grudge::isolate(leader, &cluster.ids()))
        .expect("install the partition");
    let installed_ms = ms(cut.elapsed());
    let leader_addr = cluster.grpc_addr(leader).to_string();
    let probes: Arc<Mutex<Vec<(Instant, Probe)>>> = Arc::new(Mutex::new(Vec::new()));
    let mut probe_tasks = tokio::task::JoinSet::new();
    let mut next_probe = Instant::now();
    let mut probe_number = 1u64;
    let mut refusal: Option<(Instant, String)> = None;
    let mut elected: Option<(NodeId, u64, Instant)> = None;
    let partition_deadline = cut + Duration::from_secs(PARTITION_SECS_MAX);
    loop {
        let now = Instant::now();
        if refusal.is_none() && now >= next_probe {
            let (addr, probes, number) = (leader_addr.clone(), probes.clone(), probe_number);
            probe_tasks.spawn(async move {
                let started = Instant::now();
                let outcome = probe(&addr, number).await;
                probes.lock().expect("probe lock").push((started, outcome));
            });
            probe_number += 1;
            next_probe = now + Duration::from_millis(PROBE_INTERVAL_MS);
        }
        refusal = probes
            .lock()
            .expect("probe lock")
            .iter()
            .filter_map(|(started, outcome)| match outcome {
                Probe::Refused(text) => Some((*started, text.clone())),
                _ => None,
            })
            .min_by_key(|(started, _)| *started);
        if elected.is_none() {
            if let Some((id, term)) = new_leader(&cluster, &followers, old_term).await {
                elected = Some((id, term, Instant::now()));
            }
        }
        let resumed = elected.is_some_and(|(_, _, at)| {
            let log = log.lock().expect("log lock");
            log.iter()
                .filter(|r| r.start >= at && r.outcome.is_ok())
                .count()
                >= RESUMED_PUTS
        });
        let refusal_settled =
            refusal.is_some() || now >= cut + Duration::from_millis(REFUSAL_BOUND_MS + 1_000);
        if (refusal_settled && resumed) || now >= partition_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The old leader's own view while cut off: openraft keeps it leader.
    let isolated_view = cluster.status(leader).await;
    let heal = Instant::now();
    network.heal().expect("heal the partition");
    // Probes still in flight end within their deadline.
    while probe_tasks.join_next().await.is_some() {}

    let step_down_deadline = Instant::now() + Duration::from_secs(STEP_DOWN_SECS);
    let mut stepped_down = None;
    while Instant::now() < step_down_deadline {
        if let Some(status) = cluster.status(leader).await {
            if status.role != "leader" || status.term > old_term {
                stepped_down = Some(Instant::now());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(AFTER_HEAL_MS)).await;
    stop.store(true, Ordering::Relaxed);
    tokio::time::timeout(Duration::from_secs(WRITER_STOP_SECS), writer)
        .await
        .expect("the writer stops after its last put")
        .expect("writer task");

    let records = std::mem::take(&mut *log.lock().expect("log lock"));
    let acked: Vec<(String, String)> = records
        .iter()
        .filter(|r| r.outcome.is_ok())
        .map(|r| (r.key.clone(), r.value.clone()))
        .collect();
    let problems = read_back(&client, acked.clone()).await;
    let crashes = cluster.poll_crashes();

    // The numbers, before any assertion, so a failing run still reports them.
    let refusal_ms = refusal.as_ref().map(|(at, _)| offset_ms(cut, *at));
    let (gap_ms, gap_from, gap_to) = longest_gap(&records, cut);
    let slow: Vec<&PutRecord> = records
        .iter()
        .filter(|r| ms(r.end - r.start) > ATTEMPT_TIMEOUT_MS)
        .collect();
    let failed = records.iter().filter(|r| r.outcome.is_err()).count();
    let resumed_during_partition = records
        .iter()
        .filter(|r| r.start >= cut && r.end < heal && r.outcome.is_ok())
        .count();
    let (probe_count, stalled) = {
        let probes = probes.lock().expect("probe lock");
        let stalled = probes.iter().find_map(|(_, outcome)| match outcome {
            Probe::Stalled(text) => Some(text.clone()),
            _ => None,
        });
        (probes.len(), stalled)
    };
    eprintln!("--- isolated leader n{leader} (term {old_term}); election timeout {ELECTION_TIMEOUT_MS_MIN}-{ELECTION_TIMEOUT_MS_MAX} ms, heartbeat {HEARTBEAT_MS} ms");
    eprintln!(
        "partition installed in {installed_ms} ms; healed {} ms after the cut",
        ms(heal - cut)
    );
    match &refusal {
        Some((_, text)) => eprintln!(
            "refusal delay: {} ms after the cut (first refusing probe; {probe_count} probes every {PROBE_INTERVAL_MS} ms): {text}",
            refusal_ms.unwrap_or_default()
        ),
        None => eprintln!(
            "refusal delay: never ({probe_count} probes every {PROBE_INTERVAL_MS} ms over {} ms; none refused)",
            ms(heal - cut)
        ),
    }
    if let Some(text) = &stalled {
        eprintln!("a probe the old leader took but never answered: {text}");
    }
    match &isolated_view {
        Some(status) => eprintln!(
            "old leader's own view before healing: role {}, term {}",
            status.role, status.term
        ),
        None => eprintln!("old leader's own view before healing: no answer"),
    }
    match elected {
        Some((id, term, at)) => eprintln!(
            "new leader: n{id} in term {term}, seen {} ms after the cut",
            offset_ms(cut, at)
        ),
        None => eprintln!("new leader: none seen"),
    }
    match stepped_down {
        Some(at) => eprintln!("old leader stepped down {} ms after healing", ms(at - heal)),
        None => eprintln!("old leader did not step down within {STEP_DOWN_SECS} s of healing"),
    }
    eprintln!(
        "write gap: {gap_ms} ms (successful puts ending {gap_from} ms and {gap_to} ms after the cut)"
    );
    eprintln!(
        "puts: {} total, {} acknowledged, {failed} failed (ambiguous), {} took longer than {ATTEMPT_TIMEOUT_MS} ms, {resumed_during_partition} started after the cut and succeeded before healing",
        records.len(),
        acked.len(),
        slow.len()
    );
    for record in &slow {
        eprintln!(
            "  slow put {}: {} ms, started {} ms after the cut, {}",
            record.key,
            ms(record.end - record.start),
            offset_ms(cut, record.start),
            match &record.outcome {
                Ok(version) => format!("ok (version {version})"),
                Err(error) => format!("failed: {error}"),
            }
        );
    }
    eprintln!(
        "read-back: {} of {} acknowledged puts readable",
        acked.len() - problems.len().min(acked.len()),
        acked.len()
    );
    eprintln!(
        "SUMMARY refusal_ms={} write_gap_ms={gap_ms} puts_over_{ATTEMPT_TIMEOUT_MS}ms={} failed_puts={failed}",
        refusal_ms.map_or("never".to_string(), |v| v.to_string()),
        slow.len()
    );

    let killed = cluster.stop_all(Duration::from_secs(STOP_GRACE_SECS)).await;
    drop(cluster);
    drop(network);

    assert!(crashes.is_empty(), "nodes exited on their own: {crashes:?}");
    assert!(
        killed.is_empty(),
        "nodes {killed:?} ignored SIGTERM for {STOP_GRACE_SECS} s"
    );
    match refusal_ms {
        Some(delay) => assert!(
            delay <= REFUSAL_BOUND_MS as i64,
            "the old leader refused writes only {delay} ms after the cut (bound {REFUSAL_BOUND_MS} ms)"
        ),
        None => panic!(
            "the isolated leader never refused a write in {} ms (bound {REFUSAL_BOUND_MS} ms)",
            ms(heal - cut)
        ),
    }
    assert!(
        elected.is_some(),
        "no follower became leader in a term above {old_term} within {PARTITION_SECS_MAX} s"
    );
    assert!(
        resumed_during_partition >= RESUMED_PUTS,
        "only {resumed_during_partition} puts started after the cut succeeded before healing"
    );
    assert!(
        stepped_down.is_some(),
        "the old leader still led term {old_term} {STEP_DOWN_SECS} s after healing"
    );
    assert!(
        problems.is_empty(),
        "acknowledged puts not readable after healing:\n{}",
        problems.join("\n")
    );
}
