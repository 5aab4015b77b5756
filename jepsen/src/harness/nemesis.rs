//! The nemesis: a task of its own that flip-flops faults while the clients run.
//!
//! Every `interval` it starts a fault of a family picked (seeded) from the run's mix,
//! waits `interval`, and stops it; one fault is active at a time. Targets are a random
//! node or the current leader (asked over the SDK's `node_status`). Each start and stop
//! goes into the history as a `{"type":"nemesis"}` event and into `nemesis.log`.
//!
//! - `kill`: SIGKILL one node; the stop restarts it on the same data directory.
//! - `pause`: SIGSTOP one node; the stop sends SIGCONT.
//! - `partition`: isolate a random node, isolate the leader, cut the cluster in a
//!   minority and a majority, or (4+ nodes) a majorities ring; the stop heals.
//! - `clock`: move one node's wall clock by ±1 s to ±5 min (libfaketime); the stop
//!   resets it.
//! - `loss`: drop 20-40 % of the packets on every link of one node or on a random set
//!   of node pairs (iptables `statistic`, see [`super::faults`]); the stop heals.
//! - `member`: remove a non-leader voter and stop it; the stop brings its host back
//!   as a new id on an empty data directory, learner then voter (see [`super::member`]).
//! - `disk-full`: fill the tmpfs data directory of the disk-full node until ENOSPC;
//!   the stop deletes the filler and restarts the node (same data) if it exited. Its
//!   exit meanwhile is expected, recorded as `expected-exit`, not as a crash.
//! - `power`: a power cut on one node (the leader half the time), a random minority
//!   or every node, the scope picked from `--power-scope`. Every node's data
//!   directory is on a powerfs (see [`super::power`]): SIGSTOP the chosen nodes and
//!   wait until they stopped, freeze their mounts, SIGKILL them, cut the mounts back
//!   to what was fsynced (`--power-cut`: `torn`, seeded from the run seed and the
//!   cut's number, or `drop-all`), thaw; the stop restarts them on the same data. A
//!   node that then fails to start exits, and that is a crash like any other.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::{json, Value};

use super::cluster::Cluster;
use super::faults;
use super::grudge::{self, Grudge, NodeId};
use super::member::{self, Removal};
use super::net::Network;
use super::options::{FaultFamily, PowerCut, PowerScope};
use super::power;
use super::recorder::Recorder;
use crate::powerfs::CutMode;

/// Largest clock shift, in seconds (Jepsen's bumps reach about 290 s).
const CLOCK_SHIFT_SECS_MAX: i64 = 300;

/// A fault in effect, with what its stop needs.
enum Active {
    Killed(NodeId),
    Paused(NodeId),
    Partitioned,
    ClockShifted(NodeId),
    Lossy,
    Removed(Removal),
    DiskFull(NodeId),
    PowerCut(Vec<NodeId>),
}

/// Why a disk-full node's exit is no crash.
const DISK_FULL_EXIT: &str = "disk-full: ENOSPC";

pub struct Nemesis {
    pub families: Vec<FaultFamily>,
    pub interval: Duration,
    pub rng: StdRng,
    pub cluster: Arc<Cluster>,
    pub network: Arc<Network>,
    pub recorder: Arc<Recorder>,
    /// Per-node libfaketime offset files, by node id - 1 (clock fault only).
    pub clock_files: Vec<PathBuf>,
    pub log: File,
    /// The run's seed (torn power cuts derive theirs from it).
    pub seed: u64,
    /// `power`: the scopes a cut picks from, and what it keeps.
    pub power_scopes: Vec<PowerScope>,
    pub power_cut: PowerCut,
    /// Power cuts so far (numbers them for their seeds).
    pub power_cuts: u64,
}

impl Nemesis {
    /// Flip-flops faults until `deadline`; the last active fault is stopped by then.
    pub async fn run(&mut self, deadline: Instant) {
        loop {
            self.note_crashes();
            if !sleep_before(Instant::now() + self.interval, deadline).await {
                return;
            }
            let active = self.start_fault().await;
            let stop_at = (Instant::now() + self.interval).min(deadline);
            tokio::time::sleep_until(stop_at.into()).await;
            if let Some(active) = active {
                self.stop_fault(active).await;
            }
        }
    }

    /// Ends every fault: heal partitions and packet loss, delete the disk-full filler,
    /// resume paused nodes, restart dead ones, add and promote any host whose node is
    /// not a voter (`member`), reset clocks.
    pub async fn heal_all(&mut self) {
        self.note_crashes();
        let network = self.network.clone();
        let healed = tokio::task::spawn_blocking(move || network.heal()).await;
        let network_result = healed.unwrap_or_else(|e| Err(e.to_string()));
        let disk_result = self.unfill_disk();
        // A power cut never leaves a mount frozen; thawing again costs nothing.
        for id in self.cluster.ids() {
            self.cluster.with_power_disk(id, power::PowerDisk::thaw);
        }
        let cluster_result = self.cluster.heal();
        if self.families.contains(&FaultFamily::Member) {
            let joins = member::finish_joins(&self.cluster).await;
            self.event("heal-member", json!({ "fixed": joins }));
        }
        for path in &self.clock_files {
            // A missing file only means the clock fault was never armed for that node.
            let _ = std::fs::write(path, "+0\n");
        }
        let errors: Vec<String> = [network_result, disk_result, cluster_result]
            .into_iter()
            .filter_map(Result::err)
            .collect();
        self.event("heal-all", json!({ "errors": errors }));
    }

    fn note_crashes(&mut self) {
        for crash in self.cluster.poll_crashes() {
            let f = match crash.expected {
                Some(_) => "expected-exit",
                None => "crash",
            };
            self.event(
                f,
                json!({ "node": crash.node, "status": crash.status, "expected": crash.expected }),
            );
        }
    }

    fn event(&mut self, f: &str, value: Value) {
        self.recorder.nemesis(f, value.clone());
        let seconds = self.recorder.now_ns() as f64 / 1e9;
        // nemesis.log is a convenience copy of the history's nemesis events.
        let _ = writeln!(self.log, "{seconds:9.3} {f} {value}");
    }

    async fn start_fault(&mut self) -> Option<Active> {
        let family = *self.families.choose(&mut self.rng)?;
        // A node that exited since the last look is a crash; a fault that kills it
        // now would reap it and hide the exit.
        self.note_crashes();
        match family {
            FaultFamily::Kill => {
                let (node, target) = self.pick_target().await;
                let killed = self.cluster.kill(node);
                self.event(
                    "start-kill",
                    json!({ "node": node, "target": target, "killed": killed }),
                );
                Some(Active::Killed(node))
            }
            FaultFamily::Pause => {
                let (node, target) = self.pick_target().await;
                let paused = self.cluster.pause(node);
                self.event(
                    "start-pause",
                    json!({ "node": node, "target": target, "paused": paused }),
                );
                Some(Active::Paused(node))
            }
            FaultFamily::Partition => self.start_partition().await,
            FaultFamily::Clock => self.start_clock_shift(),
            FaultFamily::Loss => self.start_loss().await,
            FaultFamily::Member => self.start_member().await,
            FaultFamily::DiskFull => self.start_disk_full().await,
            FaultFamily::Power => self.start_power().await,
        }
    }

    async fn stop_fault(&mut self, active: Active) {
        match active {
            Active::Killed(node) => {
                let started = self.cluster.start(node);
                self.event(
                    "stop-kill",
                    json!({ "node": node, "restart": result_value(started) }),
                );
            }
            Active::Paused(node) => {
                self.cluster.resume(node);
                self.event("stop-pause", json!({ "node": node }));
            }
            Active::Partitioned => {
                let network = self.network.clone();
                let healed = tokio::task::spawn_blocking(move || network.heal()).await;
                let healed = healed.unwrap_or_else(|e| Err(e.to_string()));
                self.event("stop-partition", json!({ "result": result_value(healed) }));
            }
            Active::ClockShifted(node) => {
                let reset = self.write_clock(node, 0);
                self.event(
                    "stop-clock",
                    json!({ "node": node, "result": result_value(reset) }),
                );
            }
            Active::Lossy => {
                let healed = self.heal_network().await;
                self.event("stop-loss", json!({ "result": result_value(healed) }));
            }
            Active::Removed(removal) => {
                let joined = member::join(&self.cluster, removal).await;
                self.event("stop-member", joined);
            }
            Active::DiskFull(node) => self.stop_disk_full(node).await,
            Active::PowerCut(nodes) => {
                let restarts: Vec<Value> = nodes
                    .iter()
                    .map(|&node| {
                        let started = self.cluster.start(node);
                        json!({ "node": node, "restart": result_value(started) })
                    })
                    .collect();
                self.event(
                    "stop-power",
                    json!({ "nodes": nodes, "restarts": restarts }),
                );
            }
        }
    }

    /// The leader half the time (if there is one), else a random node.
    async fn pick_target(&mut self) -> (NodeId, &'static str) {
        if self.rng.gen_bool(0.5) {
            if let Some(leader) = self.cluster.leader().await {
                return (leader, "leader");
            }
        }
        let ids = self.cluster.ids();
        (ids[self.rng.gen_range(0..ids.len())], "random")
    }

    async fn start_partition(&mut self) -> Option<Active> {
        let mut ids = self.cluster.ids();
        let mut shapes = vec!["isolate-random", "isolate-leader", "halves"];
        if ids.len() >= 4 {
            shapes.push("majorities-ring");
        }
        let shape = *shapes.choose(&mut self.rng)?;
        ids.shuffle(&mut self.rng);
        let grudge: Grudge = match shape {
            "isolate-leader" => {
                let leader = self.cluster.leader().await.unwrap_or(ids[0]);
                grudge::isolate(leader, &ids)
            }
            "halves" => grudge::halves(&ids),
            "majorities-ring" => grudge::majorities_ring(&ids),
            _ => grudge::isolate(ids[0], &ids),
        };
        let network = self.network.clone();
        let cut = grudge.clone();
        let applied = tokio::task::spawn_blocking(move || network.partition(&cut)).await;
        let applied = applied.unwrap_or_else(|e| Err(e.to_string()));
        let value = json!({
            "shape": shape,
            "grudge": grudge::describe(&grudge),
            "result": result_value(applied),
        });
        self.event("start-partition", value);
        Some(Active::Partitioned)
    }

    fn start_clock_shift(&mut self) -> Option<Active> {
        let ids = self.cluster.ids();
        let node = ids[self.rng.gen_range(0..ids.len())];
        let magnitude = self.rng.gen_range(1..=CLOCK_SHIFT_SECS_MAX);
        let shift = if self.rng.gen_bool(0.5) {
            magnitude
        } else {
            -magnitude
        };
        let written = self.write_clock(node, shift);
        self.event(
            "start-clock",
            json!({ "node": node, "shift_secs": shift, "result": result_value(written) }),
        );
        Some(Active::ClockShifted(node))
    }

    async fn heal_network(&self) -> Result<(), String> {
        let network = self.network.clone();
        let healed = tokio::task::spawn_blocking(move || network.heal()).await;
        healed.unwrap_or_else(|e| Err(e.to_string()))
    }

    async fn start_loss(&mut self) -> Option<Active> {
        let plan = faults::plan_loss(&mut self.rng, &self.cluster.ids());
        let network = self.network.clone();
        let (links, probability) = (plan.links.clone(), plan.probability);
        let applied =
            tokio::task::spawn_blocking(move || network.lose_packets(&links, probability)).await;
        let applied = applied.unwrap_or_else(|e| Err(e.to_string()));
        let value = json!({
            "shape": plan.shape,
            "links": plan.links,
            "probability": plan.probability,
            "result": result_value(applied),
        });
        self.event("start-loss", value);
        Some(Active::Lossy)
    }

    async fn start_member(&mut self) -> Option<Active> {
        let exclude = self.cluster.disk_full_host();
        match member::remove_voter(&self.cluster, &mut self.rng, exclude).await {
            Ok((removal, value)) => {
                self.event("start-member", value);
                Some(Active::Removed(removal))
            }
            Err(error) => {
                self.event("skip-member", json!({ "reason": error }));
                None
            }
        }
    }

    async fn start_disk_full(&mut self) -> Option<Active> {
        let Some(node) = self.cluster.disk_full_host() else {
            self.event("skip-disk-full", json!({ "reason": "no tmpfs node" }));
            return None;
        };
        self.cluster.expect_exit(node, Some(DISK_FULL_EXIT));
        let dir = self.cluster.current_spec(node).data_dir;
        let filled = tokio::task::spawn_blocking(move || faults::fill(&dir)).await;
        let filled = filled.unwrap_or_else(|e| Err(e.to_string()));
        let value = match filled {
            Ok(bytes) => json!({ "node": node, "filled_bytes": bytes }),
            Err(error) => json!({ "node": node, "error": error }),
        };
        self.event("start-disk-full", value);
        Some(Active::DiskFull(node))
    }

    /// Deletes the filler; restarts the node on the same data if it exited meanwhile,
    /// or if it runs but its Raft core stopped on the storage error (role `shutdown`:
    /// cairn does not exit then, and never recovers by itself).
    async fn stop_disk_full(&mut self, node: NodeId) {
        self.note_crashes();
        let unfilled = self.unfill_disk();
        let role = match self.cluster.is_running(node) {
            true => self.cluster.status(node).await.map(|s| s.role),
            false => None,
        };
        let restart = match (self.cluster.is_running(node), role.as_deref()) {
            (false, _) => Some("exited"),
            (true, Some("shutdown")) => Some("raft core stopped (role shutdown)"),
            _ => None,
        };
        if restart.is_some() {
            self.cluster.kill(node);
        }
        let started = self.cluster.start(node);
        let value = json!({
            "node": node,
            "unfill": result_value(unfilled),
            "role": role,
            "restart": restart,
            "start": result_value(started),
        });
        self.event("stop-disk-full", value);
    }

    /// Deletes the disk-full node's filler (if any) and ends its expected-exit period.
    fn unfill_disk(&mut self) -> Result<(), String> {
        let Some(node) = self.cluster.disk_full_host() else {
            return Ok(());
        };
        let unfilled = faults::unfill(&self.cluster.current_spec(node).data_dir);
        self.cluster.expect_exit(node, None);
        unfilled
    }

    /// A power cut on the nodes of a scope drawn from `--power-scope`: stop them, wait
    /// until every thread stopped, freeze their mounts, SIGKILL them, cut, thaw.
    async fn start_power(&mut self) -> Option<Active> {
        if !self.cluster.has_power_disks() {
            self.event("skip-power", json!({ "reason": "no powerfs mounts" }));
            return None;
        }
        let scope = self
            .power_scopes
            .choose(&mut self.rng)
            .copied()
            .unwrap_or(PowerScope::All);
        let ids = self.cluster.ids();
        let (nodes, target) = match scope {
            PowerScope::One => {
                let (node, target) = self.pick_target().await;
                (vec![node], target)
            }
            PowerScope::Minority => (power::minority(&mut self.rng, &ids), "random"),
            PowerScope::All => (ids, "all"),
        };
        self.power_cuts += 1;
        let cut_number = self.power_cuts;
        // 1. The instant of the cut: no chosen node runs another instruction.
        let mut running = Vec::new();
        for &node in &nodes {
            running.push(self.cluster.pause(node));
        }
        let mut stopped = Vec::new();
        for &node in &nodes {
            let pid = self.cluster.pid(node);
            stopped.push(match pid {
                Some(pid) => power::wait_stopped(pid).await,
                None => true,
            });
        }
        // 2. Nothing more reaches the disks; 3. the nodes die where they stand.
        for &node in &nodes {
            self.cluster.with_power_disk(node, power::PowerDisk::freeze);
        }
        let killed: Vec<bool> = nodes
            .iter()
            .map(|&node| self.cluster.kill_stopped(node))
            .collect();
        // 4. The disks lose what was not durable; 5. power is back.
        let mut cuts = Vec::new();
        for (index, &node) in nodes.iter().enumerate() {
            let seed = power::cut_seed(self.seed, cut_number, node);
            let mode = match self.power_cut {
                PowerCut::DropAll => CutMode::DropAll,
                PowerCut::Torn => CutMode::Torn { seed },
            };
            let outcome = self.cluster.with_power_disk(node, |disk| {
                let before = disk.stats();
                let report = disk.cut(mode);
                disk.thaw();
                (before, report)
            });
            let mut value = json!({
                "node": node,
                "running": running[index],
                "stopped": stopped[index],
                "killed": killed[index],
            });
            if let (Value::Object(map), Some((Some(before), Some(report)))) = (&mut value, outcome)
            {
                if self.power_cut == PowerCut::Torn {
                    map.insert("seed".into(), json!(seed));
                }
                map.insert("unsynced".into(), power::stats_value(&before));
                if let Value::Object(fields) = power::report_value(&report) {
                    map.extend(fields);
                }
            }
            cuts.push(value);
        }
        let value = json!({
            "scope": scope.name(),
            "target": target,
            "mode": self.power_cut.name(),
            "cut": cut_number,
            "nodes": nodes,
            "cuts": cuts,
        });
        self.event("start-power", value);
        Some(Active::PowerCut(nodes))
    }

    fn write_clock(&self, node: NodeId, shift_secs: i64) -> Result<(), String> {
        let path = self
            .clock_files
            .get(usize::from(node) - 1)
            .ok_or("the clock fault is not armed")?;
        std::fs::write(path, format!("{shift_secs:+}\n")).map_err(|e| e.to_string())
    }
}

/// Sleeps until `until` unless that is past `deadline`; false if it is.
async fn sleep_before(until: Instant, deadline: Instant) -> bool {
    if until >= deadline {
        return false;
    }
    tokio::time::sleep_until(until.into()).await;
    true
}

fn result_value(result: Result<(), String>) -> Value {
    match result {
        Ok(()) => json!("ok"),
        Err(error) => json!({ "error": error }),
    }
}
