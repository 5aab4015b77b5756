//! A running node: Raft, storage, the proposer and read batcher, background workers.
//!
//! Owns start-up (open storage, start openraft, bootstrap a brand-new cluster),
//! the write and read entry points the API layer calls, membership changes, and
//! shutdown. Bootstrap safety: only a node whose peers are all reachable and all
//! uninitialized initializes, and only the lowest id among them; a node that finds
//! an initialized peer waits to be added instead.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use openraft::{ChangeMembers, ServerState};
use tokio::sync::{watch, Mutex};
use tonic::transport::{Channel, ClientTlsConfig};

use super::chunk_fetch;
use super::error::NodeError;
use super::forward::{self, Forwarded, Route};
use super::log_store::{LogGrowth, LogStore};
use super::peer_client::{connect_peer, PeerNetwork};
use super::proposer::{Committed, Proposer};
use super::read_index::{LeaseConfig, ReadIndexBatcher, ReadIndexError};
use super::scrub::{self, ScrubStats};
use super::sm_adapter::StateMachine;
use super::snapshot_floor::SnapshotFloor;
use super::transfer::{self, Transfer};
use super::types::{Hello, NodeAddr, NodeId, Raft, RaftMetrics};
use crate::chunk_ref::Hash;
use crate::chunkstore::ChunkStore;
use crate::clock::now_ms;
use crate::config::Config;
use crate::disk::Disk;
use crate::limits::{
    Limits, BACKUPS_IN_FLIGHT_MAX, LOG_BYTES_SNAPSHOT_TRIGGER, SWEEP_INTERVAL_MS, SWEEP_ITEMS_MAX,
};
use crate::proto::raft::raft_peer_client::RaftPeerClient;
use crate::proto::raft::RaftPayload;
use crate::state::{sweep, ClientCommand, Command, Request, Response, Store};

/// How long a linearizable read waits for the local state to reach the read index.
const READ_APPLY_WAIT_MS_MAX: u64 = 5_000;
/// How long a follower waits for the leader's read index.
const READ_INDEX_RPC_TIMEOUT_MS: u64 = 3_000;
/// Pause between bootstrap probes of the peers.
const BOOTSTRAP_PROBE_INTERVAL_MS: u64 = 500;
/// How long one bootstrap probe waits for a peer's answer.
const BOOTSTRAP_PROBE_TIMEOUT_MS: u64 = 2_000;
/// How long `promote` waits for a learner to catch up before refusing.
const PROMOTE_CATCH_UP_WAIT_MS_MAX: u64 = 30_000;
/// First and longest pause between rounds of fetching chunks that are still missing.
const CHUNK_REPAIR_BACKOFF_MS_MIN: u64 = 500;
const CHUNK_REPAIR_BACKOFF_MS_MAX: u64 = 30_000;
/// The orphan chunk sweep runs at most this often (short test grace periods).
const ORPHAN_SWEEP_INTERVAL_MS_MIN: u64 = 1_000;
/// A learner within this many entries of the leader's log counts as caught up.
const PROMOTE_LAG_ENTRIES_MAX: u64 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    Linearizable,
    Stale,
}

/// One member as the status reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    pub id: NodeId,
    pub addr: NodeAddr,
    pub voter: bool,
}

pub struct Node {
    pub id: NodeId,
    pub addr: NodeAddr,
    pub raft: Raft,
    pub store: Store,
    pub limits: Limits,
    pub proposer: Proposer,
    pub reads: ReadIndexBatcher,
    /// Woken whenever an applied entry sent queue messages (long polling).
    pub queue_activity: Arc<tokio::sync::Notify>,
    /// This node's object chunk files.
    pub chunks: ChunkStore,
    /// Signalled when chunk files may be missing here (see `chunk_repair_worker`).
    chunks_wanted: Arc<tokio::sync::Notify>,
    /// Chunks this node lacks: counted at start, then after every fetch round.
    chunks_missing: std::sync::atomic::AtomicU64,
    /// Grace period of unreferenced chunks, proposed with each sweep.
    pub chunk_gc_grace_ms: u64,
    pub(super) disk: Disk,
    growth: Arc<LogGrowth>,
    /// See `Config::unsafe_local_linearizable_reads`.
    unsafe_local_reads: bool,
    /// With read leases: votes are refused until then (see `read_index`).
    pub(super) refuse_votes_until: Option<std::time::Instant>,
    peer_clients: Mutex<HashMap<String, RaftPeerClient<Channel>>>,
    /// How this node dials its peers (mutual TLS).
    pub peer_tls: ClientTlsConfig,
    /// What the chunk scrubber found since start.
    pub scrub: Arc<ScrubStats>,
    /// The data disk's free-space reserve (`disk_guard`).
    pub disk_guard: super::disk_guard::DiskGuard,
    /// The last count of the chunk store (`report`).
    pub(super) chunk_usage: super::report::ChunkUsageCache,
    /// The leader's last log index as last asked (`leader_last_log_index`).
    pub(super) leader_index: super::report::LeaderIndexCache,
    /// When the log reached each index, sampled (`replication_lag`).
    pub(super) log_timeline: super::observe::LogTimeline,
    /// A leader that heard from no quorum for this long refuses writes.
    election_timeout_ms_min: u64,
    /// True while this node leads but heard from no quorum for that long.
    quorum_lost: watch::Sender<bool>,
    /// Leadership transfer (`transfer.rs`): holds writes while one runs.
    pub(super) transfer: Transfer,
    stop: watch::Sender<bool>,
    /// The state machine openraft drives, for point-in-time copies (`backup`).
    pub(super) state_machine: StateMachine,
    /// Backups this node may stream at once (`BACKUPS_IN_FLIGHT_MAX`).
    pub(super) backups: Arc<tokio::sync::Semaphore>,
    /// Chunk bytes still being pushed to slow members (`chunk_push`).
    pub(super) chunk_push_budget: Arc<tokio::sync::Semaphore>,
}

impl Node {
    /// Opens storage, starts Raft and the workers, and bootstraps if appropriate.
    pub async fn start(
        config: &Config,
        addr: NodeAddr,
        peer_tls: ClientTlsConfig,
    ) -> anyhow::Result<Arc<Node>> {
        config.validate().map_err(anyhow::Error::msg)?;
        let raft_config = Arc::new(config.raft_config().map_err(anyhow::Error::msg)?);
        let dir = config.data_dir.display();
        let disk = Disk::open(&config.data_dir)
            .with_context(|| format!("opening the state database in {dir}/sled"))?;
        let growth = Arc::new(LogGrowth::default());
        let floor = SnapshotFloor::default();
        let log_store = LogStore::open(
            disk.clone(),
            growth.clone(),
            floor.clone(),
            config.unsafe_ack_before_fsync,
        )
        .with_context(|| format!("opening the Raft log in {dir}/raft-log"))?;
        let state_machine = StateMachine::open(
            disk.clone(),
            growth.clone(),
            floor,
            peer_tls.clone(),
            config.chunk_gc_grace_ms,
        )
        .with_context(|| format!("opening the state machine in {dir}"))?;
        let store = state_machine.store().clone();
        let chunks = state_machine.chunks().clone();
        let queue_activity = state_machine.queue_activity();
        let chunks_wanted = state_machine.chunks_wanted();
        let chunks_missing = chunk_fetch::count_missing(&store, &chunks);
        let spare_state_machine = state_machine.clone();
        let raft = Raft::new(
            config.id,
            raft_config,
            PeerNetwork::new(peer_tls.clone()),
            log_store,
            state_machine,
        )
        .await?;
        let (stop, _) = watch::channel(false);
        if config.unsafe_local_linearizable_reads {
            tracing::warn!("UNSAFE: linearizable reads are served from local state (test double)");
        }
        let lease = (config.read_lease || config.unsafe_read_lease_never_expires).then(|| {
            LeaseConfig::new(
                config.election_timeout_ms_max,
                config.unsafe_read_lease_never_expires,
            )
        });
        if config.unsafe_read_lease_never_expires {
            tracing::warn!("UNSAFE: the read lease never expires (test double)");
        }
        // A restarted node forgot which leader's heartbeats it accepted; a leader
        // holding a lease counts on it refusing votes that long (`read_index`).
        let refuse_votes_until = lease.map(|_| {
            std::time::Instant::now() + Duration::from_millis(config.election_timeout_ms_max)
        });
        let node = Arc::new(Node {
            id: config.id,
            addr,
            proposer: Proposer::spawn(raft.clone()),
            reads: ReadIndexBatcher::spawn(raft.clone(), lease),
            refuse_votes_until,
            queue_activity,
            chunks,
            chunks_wanted,
            chunks_missing: std::sync::atomic::AtomicU64::new(chunks_missing),
            chunk_gc_grace_ms: config.chunk_gc_grace_ms,
            raft,
            store,
            limits: config.limits.clone(),
            disk,
            growth,
            unsafe_local_reads: config.unsafe_local_linearizable_reads,
            peer_clients: Mutex::new(HashMap::new()),
            peer_tls,
            scrub: Arc::new(ScrubStats::default()),
            chunk_usage: Default::default(),
            disk_guard: super::disk_guard::DiskGuard::new(
                config.data_dir.clone(),
                config.disk_reserve_bytes,
            ),
            leader_index: Default::default(),
            log_timeline: Default::default(),
            election_timeout_ms_min: config.election_timeout_ms_min,
            quorum_lost: watch::channel(false).0,
            transfer: Transfer::new(config.election_timeout_ms_max, config.heartbeat_interval_ms),
            stop,
            state_machine: spare_state_machine,
            backups: Arc::new(tokio::sync::Semaphore::new(BACKUPS_IN_FLIGHT_MAX)),
            chunk_push_budget: super::chunk_push::background_budget(),
        });
        // Before bootstrap, so that the first election is seen.
        super::observe::spawn_watch(&node);
        node.bootstrap(config).await?;
        tokio::spawn(sweep_worker(node.clone()));
        tokio::spawn(disk_watch_worker(node.clone()));
        tokio::spawn(snapshot_worker(node.clone()));
        tokio::spawn(chunk_repair_worker(node.clone()));
        tokio::spawn(orphan_sweep_worker(node.clone()));
        tokio::spawn(quorum_watch(node.clone(), config.heartbeat_interval_ms));
        tokio::spawn(transfer::track_leadership(node.clone()));
        let pace = scrub::ScrubPace {
            bytes_per_s: config.scrub_bytes_per_s,
            pass_interval_ms: config.scrub_pass_interval_ms,
        };
        tokio::spawn(scrub::worker(node.clone(), pace, node.stop.subscribe()));
        Ok(node)
    }

    async fn bootstrap(self: &Arc<Self>, config: &Config) -> anyhow::Result<()> {
        if self.raft.is_initialized().await? {
            return Ok(());
        }
        if config.dev {
            let members = BTreeMap::from([(self.id, self.addr.clone())]);
            self.raft.initialize(members).await?;
            return Ok(());
        }
        if config.peers.keys().next() == Some(&self.id) {
            tokio::spawn(bootstrap_when_peers_ready(
                self.clone(),
                config.peers.clone(),
            ));
        }
        Ok(())
    }

    pub fn metrics(&self) -> RaftMetrics {
        self.raft.metrics().borrow().clone()
    }

    /// Chunk files this node still has to fetch (0 when it holds all it should).
    pub fn chunks_missing(&self) -> u64 {
        self.chunks_missing
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn applied_index(&self) -> u64 {
        self.raft
            .metrics()
            .borrow()
            .last_applied
            .map(|id| id.index)
            .unwrap_or(0)
    }

    /// Proposes a client write through the group-commit proposer (leader only).
    pub async fn write(&self, command: ClientCommand) -> Committed {
        let _admitted = self.transfer.admit().await;
        self.check_leader()?;
        self.check_room(&command)?;
        self.unless_quorum_lost(self.proposer.propose(command))
            .await
    }

    /// `Err(NoSpace)` for a command that adds data while a member is short of
    /// disk space (`disk_guard`).
    fn check_room(&self, command: &ClientCommand) -> Result<(), NodeError> {
        if command.command.adds_data() {
            self.disk_guard.check(self.id)?;
        }
        Ok(())
    }

    /// Proposes one large command as its own entry, bypassing group commit: object
    /// chunks (1 MiB each) gain nothing from batching, and several in flight at once
    /// pipeline the leader's append with the followers' (the caller bounds how many).
    pub async fn write_alone(&self, command: ClientCommand) -> Committed {
        let _admitted = self.transfer.admit().await;
        self.check_leader()?;
        self.check_room(&command)?;
        let request = Request {
            now_ms: now_ms(),
            commands: vec![command],
        };
        let response = self
            .unless_quorum_lost(async {
                self.raft
                    .client_write(request)
                    .await
                    .map_err(NodeError::from_write_error)
            })
            .await?;
        let outcome = response.data.outcomes.into_iter().next().ok_or_else(|| {
            NodeError::Unavailable("apply returned no outcome for the command".into())
        })?;
        Ok((outcome, response.log_id.index))
    }

    /// Proposes a client write on the route the caller serves: on the leader as
    /// `write` / `write_alone` (`alone` for large chunks); elsewhere either
    /// `NotLeader` (`Route::Leader`) or a forward to the leader (`Route::Forward`).
    pub async fn submit(&self, command: ClientCommand, route: Route, alone: bool) -> Committed {
        if route == Route::Leader {
            return if alone {
                self.write_alone(command).await
            } else {
                self.write(command).await
            };
        }
        let forwarded = Forwarded { command, alone };
        let mut payload = None;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let leader = match self.check_leader() {
                Ok(()) => {
                    let Forwarded { command, alone } = forwarded;
                    return if alone {
                        self.write_alone(command).await
                    } else {
                        self.write(command).await
                    };
                }
                Err(NodeError::NotLeader {
                    leader: Some(leader),
                    ..
                }) => leader,
                Err(e @ NodeError::NotLeader { leader: None, .. }) => {
                    if attempt >= forward::FORWARD_ATTEMPTS_MAX {
                        return Err(e);
                    }
                    self.wait_for_leader().await?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let data = match &payload {
                Some(data) => bytes::Bytes::clone(data),
                None => {
                    let data =
                        bytes::Bytes::from(bincode::serialize(&forwarded).map_err(|e| {
                            NodeError::Unavailable(format!("encoding a forward: {e}"))
                        })?);
                    payload = Some(data.clone());
                    data
                }
            };
            match self.forward_once(&leader.peer_addr, data).await {
                Err(e) if forward::retryable(&e) && attempt < forward::FORWARD_ATTEMPTS_MAX => {
                    // The node we reached does not lead (any more): wait until this
                    // node learns of a leader other than the one that refused.
                    self.wait_for_leader_change(&leader.peer_addr).await?;
                }
                result => return result,
            }
        }
    }

    /// `Ok` where this node may write on `route`: the leader, or any node when
    /// writes are forwarded.
    pub fn check_route(&self, route: Route) -> Result<(), NodeError> {
        match route {
            Route::Leader => self.check_leader(),
            Route::Forward => Ok(()),
        }
    }

    async fn forward_once(&self, leader_peer_addr: &str, data: bytes::Bytes) -> Committed {
        let mut client = self.peer_client(leader_peer_addr).await?;
        let call = client.propose(RaftPayload { data });
        let reply = tokio::time::timeout(forward::timeout(), call)
            .await
            .map_err(|_| {
                NodeError::Timeout("the leader did not answer a forwarded write in time".into())
            })?
            .map_err(|s| {
                NodeError::Unavailable(format!("forward to the leader: {}", s.message()))
            })?;
        forward::decode_reply(&reply.into_inner().data)
    }

    /// Waits (bounded) until some node is known to lead.
    async fn wait_for_leader(&self) -> Result<(), NodeError> {
        self.wait_for_leader_change("").await
    }

    /// Waits (bounded) until this node leads or knows a leader whose peer address
    /// is not `refused`.
    async fn wait_for_leader_change(&self, refused: &str) -> Result<(), NodeError> {
        let mut metrics = self.raft.metrics();
        let wait = Duration::from_millis(forward::LEADER_WAIT_MS_MAX);
        let changed = tokio::time::timeout(wait, async {
            loop {
                let known = {
                    let m = metrics.borrow_and_update();
                    m.current_leader.is_some_and(|id| {
                        id == self.id
                            || m.membership_config
                                .membership()
                                .get_node(&id)
                                .is_some_and(|addr| addr.peer_addr != refused)
                    })
                };
                if known || metrics.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        changed.map_err(|_| NodeError::Unavailable("no leader is known; retry".into()))
    }

    /// Waits for `write`, unless this leader loses contact with its quorum first
    /// (see `check_leader`): then the write is answered UNAVAILABLE at once, so
    /// the client retries on the new leader instead of waiting out its attempt
    /// timeout here. The entry may still commit if the partition heals, exactly
    /// as after a timeout; the client's retry carries the same session seq and
    /// is applied at most once.
    async fn unless_quorum_lost<T>(
        &self,
        write: impl std::future::Future<Output = Result<T, NodeError>>,
    ) -> Result<T, NodeError> {
        // One watcher per node flips this flag (`quorum_watch`), so a pending write
        // is woken only when the leader loses its quorum, not at every apply.
        let mut lost = self.quorum_lost.subscribe();
        tokio::select! {
            result = write => result,
            Ok(_) = lost.wait_for(|lost| *lost) => Err(match self.check_leader() {
                Err(e @ NodeError::Unavailable(_)) => e,
                _ => NodeError::Unavailable(
                    "this leader lost its quorum; a write in flight here may or may not commit"
                        .into(),
                ),
            }),
        }
    }

    /// `Err(NotLeader)` with the leader's address when this node does not lead.
    pub fn check_leader(&self) -> Result<(), NodeError> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        if metrics.state == ServerState::Leader {
            // openraft 0.9 has no check-quorum: a leader cut off from its quorum
            // keeps its role until it hears a higher term. Refusing writes once no
            // quorum acknowledged it for an election timeout sends clients on to
            // the side that can elect a new leader, instead of letting them wait
            // out their attempt timeout here.
            let silent_ms = metrics.millis_since_quorum_ack.unwrap_or(0);
            if silent_ms > self.election_timeout_ms_min {
                return Err(NodeError::Unavailable(format!(
                    "this leader has heard from no quorum for {silent_ms} ms; \
                     a write in flight here may or may not commit"
                )));
            }
            return Ok(());
        }
        let leader_id = metrics.current_leader;
        let leader = leader_id.and_then(|id| {
            metrics
                .membership_config
                .membership()
                .get_node(&id)
                .cloned()
        });
        Err(NodeError::NotLeader { leader_id, leader })
    }

    /// Waits until local state may serve a read of `consistency`; returns the
    /// applied index the read will reflect.
    pub async fn read_barrier(&self, consistency: Consistency) -> Result<u64, NodeError> {
        if consistency == Consistency::Stale || self.unsafe_local_reads {
            return Ok(self.applied_index());
        }
        let read_index = if self.metrics().state == ServerState::Leader {
            self.reads.read_index().await?
        } else {
            self.read_index_from_leader().await?
        };
        let wait = Duration::from_millis(READ_APPLY_WAIT_MS_MAX);
        self.raft
            .wait(Some(wait))
            .applied_index_at_least(Some(read_index), "linearizable read")
            .await
            .map_err(|e| NodeError::Timeout(e.to_string()))?;
        Ok(self.applied_index().max(read_index))
    }

    async fn read_index_from_leader(&self) -> Result<u64, NodeError> {
        let leader = match self.check_leader() {
            Err(NodeError::NotLeader {
                leader: Some(leader),
                ..
            }) => leader,
            _ => return Err(NodeError::Unavailable("no known leader".into())),
        };
        let mut client = self.peer_client(&leader.peer_addr).await?;
        let call = client.read_index(RaftPayload::default());
        let reply = tokio::time::timeout(Duration::from_millis(READ_INDEX_RPC_TIMEOUT_MS), call)
            .await
            .map_err(|_| NodeError::Timeout("leader did not answer the read index request".into()))?
            .map_err(|s| {
                NodeError::Unavailable(format!("read index from leader: {}", s.message()))
            })?;
        let result: Result<u64, ReadIndexError> =
            crate::codec::decode_peer(&reply.into_inner().data).map_err(|e| {
                NodeError::Unavailable(format!("undecodable read index reply: {e}"))
            })?;
        Ok(result?)
    }

    pub(super) async fn peer_client(
        &self,
        addr: &str,
    ) -> Result<RaftPeerClient<Channel>, NodeError> {
        let mut clients = self.peer_clients.lock().await;
        if let Some(client) = clients.get(addr) {
            return Ok(client.clone());
        }
        let client = connect_peer(addr, &self.peer_tls)
            .map_err(|e| NodeError::Unavailable(e.to_string()))?;
        clients.insert(addr.to_string(), client.clone());
        Ok(client)
    }

    /// A chunk's bytes from this node's store, checked against its hash. A chunk
    /// missing here or found damaged (and so deleted) is fetched from a peer,
    /// rewritten, and read again; the repair worker is told if that fails.
    pub async fn read_chunk(&self, hash: Hash) -> std::io::Result<Vec<u8>> {
        let chunks = self.chunks.clone();
        let first = tokio::task::spawn_blocking(move || chunks.read(&hash))
            .await
            .map_err(std::io::Error::other)?;
        match first {
            Err(e) if ChunkStore::is_absent(&e) => {}
            done => return done,
        }
        let membership = self.metrics().membership_config.as_ref().clone();
        if !chunk_fetch::fetch_chunk(&self.chunks, &membership, &self.peer_tls, hash).await {
            self.wake_chunk_repair();
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "chunk {} is missing or damaged here and no peer could send it",
                    hex::encode(hash)
                ),
            ));
        }
        let chunks = self.chunks.clone();
        tokio::task::spawn_blocking(move || chunks.read(&hash))
            .await
            .map_err(std::io::Error::other)?
    }

    /// Has the repair worker look for missing chunk files again.
    pub fn wake_chunk_repair(&self) {
        self.chunks_wanted.notify_one();
    }

    pub fn members(&self) -> Vec<MemberInfo> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, addr)| MemberInfo {
                id: *id,
                addr: addr.clone(),
                voter: voters.contains(id),
            })
            .collect()
    }

    pub async fn add_learner(&self, id: NodeId, addr: NodeAddr) -> Result<u64, NodeError> {
        self.check_leader()?;
        let response = self
            .raft
            .add_learner(id, addr, true)
            .await
            .map_err(NodeError::from_write_error)?;
        Ok(response.log_id.index)
    }

    pub async fn promote(&self, id: NodeId) -> Result<u64, NodeError> {
        self.check_leader()?;
        self.wait_learner_caught_up(id).await?;
        let change = ChangeMembers::AddVoterIds(BTreeSet::from([id]));
        let response = self
            .raft
            .change_membership(change, false)
            .await
            .map_err(NodeError::from_write_error)?;
        Ok(response.log_id.index)
    }

    /// Waits (bounded) until the leader has replicated to `id` nearly all of its
    /// log, so a promotion never adds a voter that would stall the quorum.
    async fn wait_learner_caught_up(&self, id: NodeId) -> Result<(), NodeError> {
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(PROMOTE_CATCH_UP_WAIT_MS_MAX);
        loop {
            let (last_log, matched) = {
                let metrics = self.raft.metrics();
                let metrics = metrics.borrow();
                let matched = metrics
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&id).cloned());
                (metrics.last_log_index.unwrap_or(0), matched)
            };
            let matched = match matched {
                Some(m) => m.map(|log_id| log_id.index).unwrap_or(0),
                None => {
                    return Err(NodeError::Rejected(format!(
                        "node {id} is not a learner of this cluster"
                    )))
                }
            };
            if matched + PROMOTE_LAG_ENTRIES_MAX >= last_log {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(NodeError::Rejected(format!(
                    "node {id} has not caught up (at {matched} of {last_log}); try again later"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn remove(&self, id: NodeId) -> Result<u64, NodeError> {
        self.check_leader()?;
        let is_voter = self.members().iter().any(|m| m.id == id && m.voter);
        let change = if is_voter {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        let response = self
            .raft
            .change_membership(change, false)
            .await
            .map_err(NodeError::from_write_error)?;
        Ok(response.log_id.index)
    }

    /// Stops Raft and the workers, then makes everything durable.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true); // no receiver left only means the workers already ended
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        if let Err(e) = self.disk.sync().await {
            tracing::error!(error = %e, "final sync failed");
        }
    }
}

/// Probes the peers until the cluster is initialized (by us or by someone else).
/// `token` authenticates the probes when the config file sets tokens (every node
/// of a new cluster is started with the same ones).
async fn bootstrap_when_peers_ready(node: Arc<Node>, peers: BTreeMap<u64, String>) {
    let mut stop = node.stop.subscribe();
    loop {
        match node.raft.is_initialized().await {
            Ok(false) => {}
            _ => return,
        }
        if let Some(members) = probe_peers(&node, &peers).await {
            match node.raft.initialize(members).await {
                Ok(()) => tracing::info!("initialized a new cluster"),
                Err(e) => tracing::warn!(error = %e, "initialize"),
            }
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(BOOTSTRAP_PROBE_INTERVAL_MS)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// The initial membership if every peer answers and none is initialized; `None`
/// to try again later. Asked over the peer listener (mutual TLS): a node that
/// does not hold the cluster secret cannot take part.
async fn probe_peers(
    node: &Node,
    peers: &BTreeMap<u64, String>,
) -> Option<BTreeMap<NodeId, NodeAddr>> {
    let mut members = BTreeMap::new();
    for (id, peer_addr) in peers {
        if *id == node.id {
            members.insert(*id, node.addr.clone());
            continue;
        }
        let probe = async {
            let mut client = node.peer_client(peer_addr).await.ok()?;
            let reply = client.hello(RaftPayload::default()).await.ok()?;
            crate::codec::decode_peer::<Hello>(&reply.into_inner().data).ok()
        };
        let timeout = Duration::from_millis(BOOTSTRAP_PROBE_TIMEOUT_MS);
        let hello = tokio::time::timeout(timeout, probe).await.ok()??;
        if hello.initialized {
            tracing::info!(
                peer = id,
                "a peer is already initialized; waiting to be added"
            );
            return None;
        }
        members.insert(*id, hello.addr);
    }
    Some(members)
}

/// While leading, asks the members how much disk space they have, so writes
/// stop before any of them runs out (`disk_guard`). Runs until shutdown.
async fn disk_watch_worker(node: Arc<Node>) {
    let mut stop = node.stop.subscribe();
    let poll = Duration::from_millis(super::disk_guard::DISK_GUARD_POLL_MS);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = stop.changed() => return,
        }
        if node.metrics().state != ServerState::Leader {
            node.disk_guard.set_short_members(BTreeMap::new());
            continue;
        }
        let short = node
            .member_reports()
            .await
            .into_iter()
            .filter_map(|m| m.report.ok())
            .map(|r| (r.id, r.room()))
            .filter(|(_, room)| room.is_short())
            .collect();
        node.disk_guard.set_short_members(short);
    }
}

/// While leading, proposes a sweep whenever there is something to sweep. Runs
/// until shutdown.
async fn sweep_worker(node: Arc<Node>) {
    let mut stop = node.stop.subscribe();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(SWEEP_INTERVAL_MS)) => {}
            _ = stop.changed() => return,
        }
        if node.metrics().state != ServerState::Leader {
            continue;
        }
        match sweep::has_work(node.store.tree(), now_ms(), node.chunk_gc_grace_ms) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "sweep check");
                continue;
            }
        }
        let command = ClientCommand {
            session: None,
            command: Command::Sweep(sweep::Sweep {
                items_max: SWEEP_ITEMS_MAX,
                chunk_grace_ms: node.chunk_gc_grace_ms,
            }),
        };
        // Counted like client writes, so a leadership transfer waits for it.
        let admitted = node.transfer.admit().await;
        match node.proposer.propose(command).await {
            Ok((Ok(Response::Swept { removed_count }), _)) => {
                let metrics = crate::metrics::global();
                metrics.sweeps.inc();
                metrics.sweep_items_removed.inc_by(removed_count);
            }
            Ok((outcome, _)) => tracing::warn!(?outcome, "a sweep answered something else"),
            Err(e) => tracing::debug!(error = %e, "sweep not proposed"),
        }
        drop(admitted);
    }
}

/// Fetches chunks an interrupted snapshot install left missing, once the
/// membership (who to ask) is known.
/// Fetches chunk files the state names but this node lacks — once at start (an
/// install a crash interrupted, a fetch that failed before) and whenever a snapshot
/// install leaves some missing — and keeps at it, backing off, until none is
/// missing. Runs until shutdown.
async fn chunk_repair_worker(node: Arc<Node>) {
    let mut stop = node.stop.subscribe();
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(BOOTSTRAP_PROBE_INTERVAL_MS)) => {}
        _ = stop.changed() => return,
    }
    loop {
        let mut backoff_ms = CHUNK_REPAIR_BACKOFF_MS_MIN;
        loop {
            let membership = node.metrics().membership_config.as_ref().clone();
            let missing =
                chunk_fetch::fetch_missing(&node.store, &node.chunks, &membership, &node.peer_tls)
                    .await;
            node.chunks_missing
                .store(missing, std::sync::atomic::Ordering::Relaxed);
            if missing == 0 {
                break;
            }
            tracing::warn!(
                missing,
                retry_in_ms = backoff_ms,
                "chunks still missing; fetching again"
            );
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(backoff_ms)) => {}
                _ = stop.changed() => return,
            }
            backoff_ms = (backoff_ms * 2).min(CHUNK_REPAIR_BACKOFF_MS_MAX);
        }
        tokio::select! {
            _ = node.chunks_wanted.notified() => {}
            _ = stop.changed() => return,
        }
    }
}

/// Deletes chunk files no record names once they are a grace period old: pushes
/// of uploads that never committed, deletions a crash lost. Runs every half grace
/// period (at least `ORPHAN_SWEEP_INTERVAL_MS_MIN`) until shutdown.
async fn orphan_sweep_worker(node: Arc<Node>) {
    let mut stop = node.stop.subscribe();
    let grace = Duration::from_millis(node.chunk_gc_grace_ms);
    let every = (grace / 2).max(Duration::from_millis(ORPHAN_SWEEP_INTERVAL_MS_MIN));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = node.state_machine.sweep_orphans(grace).await {
            tracing::warn!(error = %e, "orphan chunk sweep");
        }
    }
}

/// Keeps `Node::quorum_lost` current: checks once per heartbeat interval whether
/// this node leads without a quorum (see `check_leader`). Runs until shutdown.
async fn quorum_watch(node: Arc<Node>, heartbeat_interval_ms: u64) {
    let mut stop = node.stop.subscribe();
    let mut tick = tokio::time::interval(Duration::from_millis(heartbeat_interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let lost = matches!(node.check_leader(), Err(NodeError::Unavailable(_)));
        node.quorum_lost.send_if_modified(|flag| {
            let changed = *flag != lost;
            *flag = lost;
            changed
        });
    }
}

/// Triggers a snapshot when the log grew by `LOG_BYTES_SNAPSHOT_TRIGGER` bytes
/// (openraft's own policy counts entries only). Runs until shutdown.
async fn snapshot_worker(node: Arc<Node>) {
    let mut stop = node.stop.subscribe();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
        let bytes = node.growth.bytes.load(std::sync::atomic::Ordering::Relaxed);
        if bytes >= LOG_BYTES_SNAPSHOT_TRIGGER {
            node.growth
                .bytes
                .store(0, std::sync::atomic::Ordering::Relaxed);
            if let Err(e) = node.raft.trigger().snapshot().await {
                tracing::warn!(error = %e, "snapshot trigger");
            }
        }
    }
}
