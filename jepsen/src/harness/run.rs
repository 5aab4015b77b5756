//! One run, start to end: probe, run directory, network, cluster, clients and nemesis
//! for the time limit, heal, recover, final reads, stop, tear down, then check and
//! report ([`super::report`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cairn::client::{Client, Error};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::json;

use super::client::{run_slot, Pacer, Processes};
use super::cluster::Cluster;
use super::leftovers;
use super::nemesis::Nemesis;
use super::net::Network;
use super::node::NodeSpec;
use super::options::{FaultFamily, RunOptions};
use super::probe::{Capabilities, SkippedFault};
use super::recorder::Recorder;
use super::report::{self, RunSummary};
use super::store;
use super::workload::{Workload, NAMESPACE};
use crate::Verdict;

/// gRPC and HTTP ports of every node (each node has its own address).
const GRPC_PORT: u16 = 7400;
const HTTP_PORT: u16 = 7480;
/// Raft timing of every node, as cairn's own integration tests use it on this 2-core
/// machine: fail-over (openraft waits out a leader lease of the maximum election
/// timeout, then an election timeout) takes about 2-3 s instead of 3-4 s with the
/// defaults, so a 5 s fault sees a new leader at work.
const TIMING_ARGS: [&str; 6] = [
    "--heartbeat-interval-ms",
    "100",
    "--election-timeout-ms-min",
    "700",
    "--election-timeout-ms-max",
    "1400",
];
/// Bound on the first leader election and on re-election after healing.
const LEADER_WAIT_SECS: u64 = 30;
/// Bound on creating the workload's namespace (and queue) at start.
const SETUP_WRITE_SECS: u64 = 30;
/// Quiet time after healing before the final reads (Jepsen waits 10 s; 5 s suffices
/// with cairn's 1-2 s election timeout).
const RECOVERY_SECS: u64 = 5;
/// SIGTERM grace at the end, before SIGKILL.
const STOP_GRACE_SECS: u64 = 10;

/// Everything fixed before the cluster starts.
pub struct Prepared {
    pub options: RunOptions,
    pub seed: u64,
    pub run_id: String,
    pub run_dir: PathBuf,
    pub cairn_bin: PathBuf,
    pub capabilities: Capabilities,
    pub faults: Vec<FaultFamily>,
    pub skipped: Vec<SkippedFault>,
}

/// Runs the whole test; the verdict of its checkers (unknown if it could not run).
pub async fn run(options: RunOptions) -> Verdict {
    let prepared = match prepare(options) {
        Ok(prepared) => prepared,
        Err(error) => {
            println!("cannot run: {error}");
            println!("{}", Verdict::Unknown);
            return Verdict::Unknown;
        }
    };
    println!("run directory: {}", prepared.run_dir.display());
    for skipped in &prepared.skipped {
        println!(
            "note: fault {} skipped: {}",
            skipped.fault.name(),
            skipped.reason
        );
    }
    let started = Instant::now();
    let mut summary = RunSummary::default();
    if let Err(error) = execute(&prepared, &mut summary).await {
        println!("run aborted: {error}");
        summary.notes.push(format!("run aborted: {error}"));
        summary.aborted = true;
    }
    summary.duration = started.elapsed();
    leftovers::release(&prepared.run_id);
    report::analyse(&prepared, &summary)
}

fn prepare(options: RunOptions) -> Result<Prepared, String> {
    let capabilities = Capabilities::probe();
    if let Some(missing) = capabilities.missing_for_cluster() {
        return Err(missing);
    }
    let cairn_bin = match &options.cairn_bin {
        Some(path) => path.clone(),
        None => default_cairn_bin()?,
    };
    if !cairn_bin.is_file() {
        return Err(format!(
            "no cairn binary at {} (cargo build -p cairn)",
            cairn_bin.display()
        ));
    }
    let seed = options.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64
    });
    if options.nemesis.contains(&FaultFamily::Power)
        && options.nemesis.contains(&FaultFamily::DiskFull)
    {
        return Err(
            "faults power and disk-full cannot run together: both put the data directory \
             on a file system of their own (powerfs, tmpfs)"
                .into(),
        );
    }
    let (faults, skipped) = capabilities.usable_faults(&options.nemesis);
    for line in leftovers::clean_dead_runs() {
        println!("note: {line}");
    }
    let run_id = store::run_id();
    leftovers::claim(&run_id)?;
    let store_dir = options.store.clone().unwrap_or_else(store::default_store);
    let test_name = format!("{}-{}", options.workload_label(), options.nemesis_name());
    let run_dir = store::create_run_dir(&store_dir, &test_name, &run_id)?;
    let prepared = Prepared {
        options,
        seed,
        run_id,
        run_dir,
        cairn_bin,
        capabilities,
        faults,
        skipped,
    };
    write_options(&prepared)?;
    Ok(prepared)
}

/// `cairn` next to this executable, or one directory up (test binaries live in deps/).
fn default_cairn_bin() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current executable: {e}"))?;
    let dir = exe.parent().ok_or("the executable has no directory")?;
    let candidates = [dir.join("cairn"), dir.join("..").join("cairn")];
    candidates
        .into_iter()
        .find(|path| path.is_file())
        .ok_or_else(|| {
            format!(
                "no cairn binary next to {} (cargo build -p cairn, or --cairn-bin)",
                exe.display()
            )
        })
}

fn write_options(prepared: &Prepared) -> Result<(), String> {
    let value = json!({
        "options": prepared.options,
        "seed": prepared.seed,
        "concurrency": prepared.options.concurrency(),
        "run_id": prepared.run_id,
        "cairn_bin": prepared.cairn_bin,
        "capabilities": prepared.capabilities,
        "faults": prepared.faults,
        "skipped_faults": prepared.skipped,
    });
    let path = prepared.run_dir.join("options.json");
    let text = serde_json::to_string_pretty(&value).expect("options always serialize");
    std::fs::write(&path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))
}

/// Network and cluster up, workload and nemesis, heal, final reads, everything down.
async fn execute(prepared: &Prepared, summary: &mut RunSummary) -> Result<(), String> {
    let nodes = prepared.options.nodes;
    let network = Arc::new(Network::create(&prepared.run_id, nodes)?);
    summary.subnet = network.subnet();
    let clock_files = clock_files(prepared)?;
    let specs = node_specs(prepared, &network, &clock_files);
    let cluster = Arc::new(Cluster::new(prepared.cairn_bin.clone(), specs));
    summary.logs = cluster.log_paths();
    let recorder = Arc::new(Recorder::create(&prepared.run_dir.join("history.jsonl"))?);
    let outcome = drive(
        prepared,
        &network,
        &cluster,
        &recorder,
        clock_files,
        summary,
    )
    .await;
    if let Err(error) = recorder.flush() {
        summary.notes.push(format!("history.jsonl: {error}"));
    }
    let killed = cluster.stop_all(Duration::from_secs(STOP_GRACE_SECS)).await;
    if !killed.is_empty() {
        summary.notes.push(format!(
            "nodes {killed:?} ignored SIGTERM for {STOP_GRACE_SECS} s: SIGKILLed"
        ));
    }
    if prepared.options.power_keep_data {
        summary.notes.extend(cluster.copy_power_disks());
    }
    summary.notes.extend(cluster.unmount_power_disks());
    summary.crashes = cluster.crashes();
    for exit in cluster.expected_exits() {
        let reason = exit.expected.unwrap_or_default();
        let text = format!("node {} {} (expected: {reason})", exit.node, exit.status);
        summary.notes.push(text);
    }
    summary.entries = recorder.entries();
    drop(cluster);
    if let Ok(mut network) = Arc::try_unwrap(network) {
        summary.notes.extend(network.teardown());
    }
    outcome
}

/// The timed part: start, wait for a leader, run clients and nemesis, heal, read.
async fn drive(
    prepared: &Prepared,
    network: &Arc<Network>,
    cluster: &Arc<Cluster>,
    recorder: &Arc<Recorder>,
    clock_files: Vec<PathBuf>,
    summary: &mut RunSummary,
) -> Result<(), String> {
    if prepared.faults.contains(&FaultFamily::DiskFull) {
        let node = super::faults::arm_disk_full(cluster, prepared.seed)?;
        println!("disk-full: node {node}'s data directory is a tmpfs");
    }
    if prepared.faults.contains(&FaultFamily::Power) {
        super::power::arm(cluster)?;
        println!("power: every node's data directory is on a powerfs (n<i>/disk)");
    }
    cluster.start_all()?;
    cluster
        .wait_for_leader(Duration::from_secs(LEADER_WAIT_SECS))
        .await
        .ok_or(format!("no leader within {LEADER_WAIT_SECS} s"))?;
    create_namespace(cluster).await?;
    let options = &prepared.options;
    let workload = Arc::new(Workload::new(options.workload, options.queue_mode));
    let setup_deadline = Instant::now() + Duration::from_secs(SETUP_WRITE_SECS);
    workload.setup(cluster, setup_deadline).await?;
    let deadline = Instant::now() + Duration::from_secs(prepared.options.time_limit_secs);
    println!(
        "running {} for {} s",
        options.workload_label(),
        options.time_limit_secs
    );
    let log =
        std::fs::File::create(prepared.run_dir.join("nemesis.log")).map_err(|e| e.to_string())?;
    let mut nemesis = Nemesis {
        families: prepared.faults.clone(),
        interval: Duration::from_secs(prepared.options.nemesis_interval_secs.max(1)),
        rng: StdRng::seed_from_u64(prepared.seed.rotate_left(17)),
        cluster: cluster.clone(),
        network: network.clone(),
        recorder: recorder.clone(),
        clock_files,
        log,
        seed: prepared.seed,
        power_scopes: prepared.options.power_scope.clone(),
        power_cut: prepared.options.power_cut,
        power_cuts: 0,
    };
    let nemesis_task = tokio::spawn(async move {
        nemesis.run(deadline).await;
        nemesis
    });
    let processes = Arc::new(Processes {
        cluster: cluster.clone(),
        recorder: recorder.clone(),
        workload: workload.clone(),
        pacer: Pacer::new(prepared.options.rate),
        deadline,
        concurrency: prepared.options.concurrency(),
        seed: prepared.seed,
    });
    summary.notes.extend(run_processes(&processes).await);
    let mut nemesis = nemesis_task
        .await
        .map_err(|e| format!("nemesis task: {e}"))?;
    nemesis.heal_all().await;
    println!("healed; recovering for {RECOVERY_SECS} s, then final reads");
    tokio::time::sleep(Duration::from_secs(RECOVERY_SECS)).await;
    if cluster
        .wait_for_leader(Duration::from_secs(LEADER_WAIT_SECS))
        .await
        .is_none()
    {
        summary
            .notes
            .push(format!("no leader {LEADER_WAIT_SECS} s after healing"));
    }
    workload.final_reads(cluster, recorder).await
}

/// Runs every process slot to the deadline; returns notes on failed slots.
async fn run_processes(processes: &Arc<Processes>) -> Vec<String> {
    let mut tasks = tokio::task::JoinSet::new();
    for slot in 0..processes.concurrency {
        tasks.spawn(run_slot(processes.clone(), slot));
    }
    let mut notes = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => notes.push(format!("a client process stopped: {error}")),
            Err(error) => notes.push(format!("a client process panicked: {error}")),
        }
    }
    notes
}

/// Creates the namespace, retrying through the first election (already-exists is fine).
async fn create_namespace(cluster: &Cluster) -> Result<(), String> {
    let client = Client::connect(cluster.endpoints_from(1)).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(SETUP_WRITE_SECS);
    loop {
        match client.create_namespace(NAMESPACE).await {
            Ok(()) | Err(Error::AlreadyExists(_)) => return Ok(()),
            Err(error) if Instant::now() >= deadline => {
                return Err(format!("creating namespace {NAMESPACE}: {error}"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// libfaketime offset files (`+0`), one per node, if the clock fault will run.
fn clock_files(prepared: &Prepared) -> Result<Vec<PathBuf>, String> {
    if !prepared.faults.contains(&FaultFamily::Clock) {
        return Ok(Vec::new());
    }
    (1..=prepared.options.nodes)
        .map(|id| {
            let path = node_dir(&prepared.run_dir, id).join("faketime");
            std::fs::create_dir_all(node_dir(&prepared.run_dir, id)).map_err(|e| e.to_string())?;
            std::fs::write(&path, "+0\n").map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(path)
        })
        .collect()
}

/// The run's cluster secret (one file every node is given), created on first use.
/// A run directory is new per run, so a failure here is a harness bug.
fn cluster_secret(run_dir: &Path) -> String {
    let path = run_dir.join("cluster.secret");
    if !path.exists() {
        cairn::peer_tls::create_secret(&path).expect("write the run's cluster secret");
    }
    path.display().to_string()
}

fn node_dir(run_dir: &Path, id: u8) -> PathBuf {
    run_dir.join(format!("n{id}"))
}

fn node_specs(prepared: &Prepared, network: &Network, clock_files: &[PathBuf]) -> Vec<NodeSpec> {
    let nodes = prepared.options.nodes;
    let power = prepared.faults.contains(&FaultFamily::Power);
    let grpc = |id: u8| format!("{}:{GRPC_PORT}", network.node_ip(id));
    // Peers listen on the default peer address, the gRPC port + 1.
    let peer = |id: u8| format!("{}:{}", network.node_ip(id), GRPC_PORT + 1);
    let peers: Vec<String> = (1..=nodes).map(|id| format!("{id}={}", peer(id))).collect();
    let peers = peers.join(",");
    let secret = cluster_secret(&prepared.run_dir);
    (1..=nodes)
        .map(|id| {
            let dir = node_dir(&prepared.run_dir, id);
            // With `power`, n<i>/disk is the node's powerfs (see `power`).
            let data_dir = match power {
                true => super::power::disk_dir(&dir).join("data"),
                false => dir.join("data"),
            };
            let mut args: Vec<String> = vec!["server".into(), "--id".into(), id.to_string()];
            args.extend(["--data-dir".into(), data_dir.display().to_string()]);
            args.extend(["--grpc-addr".into(), grpc(id)]);
            args.extend([
                "--http-addr".into(),
                format!("{}:{HTTP_PORT}", network.node_ip(id)),
            ]);
            args.extend(["--peers".into(), peers.clone()]);
            args.extend(["--cluster-secret-file".into(), secret.clone()]);
            args.extend(TIMING_ARGS.iter().map(|arg| arg.to_string()));
            if prepared.options.unsafe_local_reads {
                args.push("--unsafe-local-linearizable-reads".into());
            }
            if prepared.options.read_lease {
                args.push("--read-lease".into());
            }
            if prepared.options.unsafe_read_lease_never_expires {
                args.push("--unsafe-read-lease-never-expires".into());
            }
            if prepared.options.unsafe_ack_before_fsync {
                args.push("--unsafe-ack-before-fsync".into());
            }
            if prepared.faults.contains(&FaultFamily::DiskFull) {
                // The fault fills a 64 MiB tmpfs to ENOSPC at once, below any
                // reserve: it tests the backstop (a node whose disk fills stops
                // and is restarted on its data), not the guard, which would
                // refuse every write from the start (tests/disk_full.rs has it).
                args.extend(["--disk-reserve-bytes".into(), "0".into()]);
            }
            let env = faketime_env(prepared, clock_files.get(usize::from(id) - 1));
            NodeSpec {
                id,
                namespace: network.namespace(id),
                grpc_addr: grpc(id),
                http_addr: format!("{}:{HTTP_PORT}", network.node_ip(id)),
                data_dir,
                log_path: dir.join("server.log"),
                args,
                env,
            }
        })
        .collect()
}

/// libfaketime reading a per-node offset file at most once a second; monotonic time
/// stays real so Raft timers are untouched.
fn faketime_env(prepared: &Prepared, clock_file: Option<&PathBuf>) -> Vec<(String, String)> {
    let (Some(library), Some(file)) = (&prepared.capabilities.faketime_library, clock_file) else {
        return Vec::new();
    };
    vec![
        ("LD_PRELOAD".into(), library.display().to_string()),
        ("FAKETIME_TIMESTAMP_FILE".into(), file.display().to_string()),
        ("FAKETIME_CACHE_DURATION".into(), "1".into()),
        ("DONT_FAKE_MONOTONIC".into(), "1".into()),
    ]
}
