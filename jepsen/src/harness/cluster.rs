//! The cluster under test: the nodes' specs, their processes, and the operations the
//! nemesis and the orchestrator need (kill, restart, pause, resume, leader lookup,
//! graceful stop), and the `power` fault's powerfs mounts (one per host, held here for
//! the run and unmounted after the nodes stopped, or when the cluster is dropped).
//! Exits the nemesis did not cause are remembered as crashes; exits the nemesis
//! allowed (a node that stops on ENOSPC during `disk-full`) are remembered as
//! expected exits.
//!
//! A [`NodeId`] here is a *host*: a namespace, an address and a log file. Its cairn
//! node id (the Raft id) is the host's number until the `member` fault replaces the
//! node with a new id on an empty data directory ([`Cluster::replace`]); every later
//! start of that host starts the new node.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cairn::client::Client;
use cairn::proto::v1::NodeStatus;

use super::grudge::NodeId;
use super::node::{NodeProcess, NodeSpec};
use super::power::PowerDisk;

/// Deadline of one status call (a paused node never answers).
const STATUS_TIMEOUT_MS: u64 = 1_000;
/// Between two polls while waiting for a leader or for processes to exit.
const POLL_INTERVAL_MS: u64 = 100;

#[derive(Default)]
struct Slot {
    process: Option<NodeProcess>,
    paused: bool,
    starts: u32,
    /// The cairn (Raft) id of the node this host runs now.
    raft_id: u64,
    /// The spec of a replacement node (`member`), used instead of the original.
    replacement: Option<NodeSpec>,
    /// Why an exit of this node would be expected now (`disk-full`), if it would.
    exit_expected: Option<String>,
}

/// A node that exited without being told to.
#[derive(Clone, Debug)]
pub struct Crash {
    pub node: NodeId,
    pub status: String,
    /// Why the exit was expected (the nemesis allowed it), if it was.
    pub expected: Option<String>,
}

pub struct Cluster {
    binary: PathBuf,
    specs: Vec<NodeSpec>,
    slots: Mutex<Vec<Slot>>,
    crashes: Mutex<Vec<Crash>>,
    expected_exits: Mutex<Vec<Crash>>,
    /// The next cairn id a replacement node gets (never reused).
    next_raft_id: std::sync::atomic::AtomicU64,
    /// The host whose data directory is a tmpfs (`disk-full`), if any.
    disk_full_host: Mutex<Option<NodeId>>,
    /// Every host's powerfs (`power`), empty without that fault. A field, so it is
    /// dropped (unmounted) after [`Drop`] killed the processes.
    power_disks: Mutex<Vec<PowerDisk>>,
}

impl Cluster {
    pub fn new(binary: PathBuf, specs: Vec<NodeSpec>) -> Cluster {
        let slots = specs
            .iter()
            .map(|spec| Slot {
                raft_id: u64::from(spec.id),
                ..Slot::default()
            })
            .collect();
        let next_raft_id = specs.len() as u64 + 1;
        Cluster {
            binary,
            specs,
            slots: Mutex::new(slots),
            crashes: Mutex::new(Vec::new()),
            expected_exits: Mutex::new(Vec::new()),
            next_raft_id: next_raft_id.into(),
            disk_full_host: Mutex::new(None),
            power_disks: Mutex::new(Vec::new()),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        self.slots.lock().expect("cluster lock is never poisoned")
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.specs.iter().map(|spec| spec.id).collect()
    }

    pub fn spec(&self, id: NodeId) -> &NodeSpec {
        &self.specs[usize::from(id) - 1]
    }

    pub fn grpc_addr(&self, id: NodeId) -> &str {
        &self.spec(id).grpc_addr
    }

    /// Every node's gRPC address, starting with `first`'s.
    pub fn endpoints_from(&self, first: NodeId) -> Vec<String> {
        let mut endpoints = vec![self.grpc_addr(first).to_string()];
        endpoints.extend(
            self.specs
                .iter()
                .filter(|spec| spec.id != first)
                .map(|spec| spec.grpc_addr.clone()),
        );
        endpoints
    }

    pub fn log_paths(&self) -> Vec<(NodeId, PathBuf)> {
        self.specs
            .iter()
            .map(|s| (s.id, s.log_path.clone()))
            .collect()
    }

    pub fn start_all(&self) -> Result<(), String> {
        self.ids().into_iter().try_for_each(|id| self.start(id))
    }

    /// Starts node `id` if it is not running.
    pub fn start(&self, id: NodeId) -> Result<(), String> {
        let mut slots = self.slots();
        let slot = &mut slots[usize::from(id) - 1];
        if slot.process.is_some() {
            return Ok(());
        }
        slot.starts += 1;
        let spec = slot.replacement.as_ref().unwrap_or(self.spec(id));
        slot.process = Some(NodeProcess::spawn(&self.binary, spec, slot.starts)?);
        slot.paused = false;
        Ok(())
    }

    /// SIGKILLs node `id`; false if it was not running.
    pub fn kill(&self, id: NodeId) -> bool {
        let process = self.slots()[usize::from(id) - 1].process.take();
        process.map(NodeProcess::kill).is_some()
    }

    /// SIGKILLs node `id` without resuming it first (a paused node dies paused) and
    /// reaps it; false if it was not running.
    pub fn kill_stopped(&self, id: NodeId) -> bool {
        let process = self.slots()[usize::from(id) - 1].process.take();
        process.map(NodeProcess::kill_stopped).is_some()
    }

    /// The PID of node `id`'s server, if it runs.
    pub fn pid(&self, id: NodeId) -> Option<u32> {
        self.slots()[usize::from(id) - 1]
            .process
            .as_ref()
            .map(NodeProcess::pid)
    }

    pub fn pause(&self, id: NodeId) -> bool {
        let mut slots = self.slots();
        let slot = &mut slots[usize::from(id) - 1];
        let Some(process) = &slot.process else {
            return false;
        };
        process.pause();
        slot.paused = true;
        true
    }

    pub fn resume(&self, id: NodeId) {
        let mut slots = self.slots();
        let slot = &mut slots[usize::from(id) - 1];
        if let Some(process) = &slot.process {
            process.resume();
        }
        slot.paused = false;
    }

    /// Resumes every paused node and starts every stopped one.
    pub fn heal(&self) -> Result<(), String> {
        for id in self.ids() {
            self.resume(id);
            self.start(id)?;
        }
        Ok(())
    }

    /// Reaps nodes that exited on their own; returns the new exits, expected ones
    /// (see [`Cluster::expect_exit`]) marked as such.
    pub fn poll_crashes(&self) -> Vec<Crash> {
        let mut found = Vec::new();
        for (index, slot) in self.slots().iter_mut().enumerate() {
            let Some(status) = slot.process.as_mut().and_then(NodeProcess::exited) else {
                continue;
            };
            slot.process = None;
            found.push(Crash {
                node: self.specs[index].id,
                status: describe_status(status),
                expected: slot.exit_expected.clone(),
            });
        }
        let (expected, unexpected): (Vec<Crash>, Vec<Crash>) =
            found.iter().cloned().partition(|c| c.expected.is_some());
        self.crashes
            .lock()
            .expect("crash list lock is never poisoned")
            .extend(unexpected);
        self.expected_exits
            .lock()
            .expect("exit list lock is never poisoned")
            .extend(expected);
        found
    }

    /// From now on an exit of `id` is expected, for `reason`; `None` ends that.
    pub fn expect_exit(&self, id: NodeId, reason: Option<&str>) {
        self.slots()[usize::from(id) - 1].exit_expected = reason.map(str::to_string);
    }

    /// Exits the nemesis allowed (not crashes).
    pub fn expected_exits(&self) -> Vec<Crash> {
        self.expected_exits
            .lock()
            .expect("exit list lock is never poisoned")
            .clone()
    }

    pub fn is_running(&self, id: NodeId) -> bool {
        self.slots()[usize::from(id) - 1].process.is_some()
    }

    /// The cairn (Raft) id host `id` runs now.
    pub fn raft_id(&self, id: NodeId) -> u64 {
        self.slots()[usize::from(id) - 1].raft_id
    }

    /// The host running cairn node `raft_id`, if any.
    pub fn host_of(&self, raft_id: u64) -> Option<NodeId> {
        let slots = self.slots();
        let index = slots.iter().position(|slot| slot.raft_id == raft_id)?;
        Some(self.specs[index].id)
    }

    /// The spec host `id` starts now (its replacement's, after a `member` fault).
    pub fn current_spec(&self, id: NodeId) -> NodeSpec {
        let slots = self.slots();
        let slot = &slots[usize::from(id) - 1];
        slot.replacement
            .clone()
            .unwrap_or_else(|| self.spec(id).clone())
    }

    /// A cairn id never used in this cluster.
    pub fn new_raft_id(&self) -> u64 {
        self.next_raft_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// From now on host `id` runs cairn node `raft_id` with `spec` (which must not be
    /// running: stop the old node first).
    pub fn replace(&self, id: NodeId, raft_id: u64, spec: NodeSpec) {
        let mut slots = self.slots();
        let slot = &mut slots[usize::from(id) - 1];
        slot.raft_id = raft_id;
        slot.replacement = Some(spec);
    }

    pub fn set_disk_full_host(&self, id: NodeId) {
        *self.disk_full_host.lock().expect("lock is never poisoned") = Some(id);
    }

    pub fn disk_full_host(&self) -> Option<NodeId> {
        *self.disk_full_host.lock().expect("lock is never poisoned")
    }

    /// Hands the cluster its powerfs mounts (`power`), one per host.
    pub fn set_power_disks(&self, disks: Vec<PowerDisk>) {
        *self.power_disks.lock().expect("lock is never poisoned") = disks;
    }

    /// Whether the hosts' data directories are on powerfs.
    pub fn has_power_disks(&self) -> bool {
        !self
            .power_disks
            .lock()
            .expect("lock is never poisoned")
            .is_empty()
    }

    /// Runs `f` on host `id`'s powerfs, if it has one.
    pub fn with_power_disk<T>(&self, id: NodeId, f: impl FnOnce(&PowerDisk) -> T) -> Option<T> {
        let disks = self.power_disks.lock().expect("lock is never poisoned");
        disks.iter().find(|disk| disk.node == id).map(f)
    }

    /// Copies every host's powerfs to `disk-final/` beside it; a note per copy.
    pub fn copy_power_disks(&self) -> Vec<String> {
        let disks = self.power_disks.lock().expect("lock is never poisoned");
        disks.iter().map(PowerDisk::keep_copy).collect()
    }

    /// Unmounts every powerfs (after the nodes stopped); the failures.
    pub fn unmount_power_disks(&self) -> Vec<String> {
        let disks = std::mem::take(&mut *self.power_disks.lock().expect("lock is never poisoned"));
        disks
            .into_iter()
            .filter_map(|mut disk| disk.unmount().err())
            .collect()
    }

    pub fn crashes(&self) -> Vec<Crash> {
        self.crashes
            .lock()
            .expect("crash list lock is never poisoned")
            .clone()
    }

    /// SIGTERM to every node, wait up to `grace` for all to exit, SIGKILL the rest.
    /// Returns the nodes that needed SIGKILL.
    pub async fn stop_all(&self, grace: Duration) -> Vec<NodeId> {
        self.poll_crashes();
        let mut running: Vec<(NodeId, NodeProcess)> = Vec::new();
        for (index, slot) in self.slots().iter_mut().enumerate() {
            if let Some(process) = slot.process.take() {
                process.terminate();
                running.push((self.specs[index].id, process));
            }
        }
        let deadline = Instant::now() + grace;
        while !running.is_empty() && Instant::now() < deadline {
            running.retain_mut(|(_, process)| process.exited().is_none());
            tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
        }
        running
            .into_iter()
            .map(|(id, process)| {
                process.kill();
                id
            })
            .collect()
    }

    /// Node `id`'s own view (role, term, leader), or `None` if it does not answer.
    pub async fn status(&self, id: NodeId) -> Option<NodeStatus> {
        status_of(self.grpc_addr(id).to_string()).await
    }

    /// The node that claims leadership with the highest term, asking all at once.
    pub async fn leader(&self) -> Option<NodeId> {
        let mut tasks = tokio::task::JoinSet::new();
        for id in self.ids() {
            let addr = self.grpc_addr(id).to_string();
            tasks.spawn(async move { (id, status_of(addr).await) });
        }
        let mut best: Option<(u64, NodeId)> = None;
        while let Some(joined) = tasks.join_next().await {
            let Ok((id, Some(status))) = joined else {
                continue;
            };
            if status.role == "leader" && best.is_none_or(|(term, _)| status.term > term) {
                best = Some((status.term, id));
            }
        }
        best.map(|(_, id)| id)
    }

    /// Polls until some node leads, or `timeout` passes.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Option<NodeId> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(leader) = self.leader().await {
                return Some(leader);
            }
            tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
        }
        None
    }
}

async fn status_of(addr: String) -> Option<NodeStatus> {
    let client = Client::connect([addr.clone()])
        .ok()?
        .with_call_timeout(Duration::from_millis(STATUS_TIMEOUT_MS));
    client.node_status(&addr).await.ok()
}

fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => status.to_string(),
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let slots = self.slots.get_mut().unwrap_or_else(|p| p.into_inner());
        for slot in slots.iter_mut() {
            if let Some(process) = slot.process.take() {
                process.kill();
            }
        }
        let disk_full_host = *self
            .disk_full_host
            .get_mut()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(id) = disk_full_host {
            let dir = self.spec(id).data_dir.display().to_string();
            if let Err(error) = super::cleanup::unmount(&dir) {
                eprintln!("unmounting the disk-full tmpfs: {error}");
            }
        }
    }
}
