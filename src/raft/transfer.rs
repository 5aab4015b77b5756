//! Leadership transfer: the leader hands its role to a chosen voter, so that a
//! rolling restart or an upgrade stops a follower instead of the leader.
//!
//! openraft 0.9 has no transfer of its own (0.10 does). What it has is
//! `trigger().elect()`, which makes one node campaign at once, and a vote rule
//! that decides whether that campaign can win: a node whose vote is committed
//! (it follows a leader, or is one) refuses every vote request until its
//! *leader lease* (`election_timeout_max` since its vote last changed or was
//! refreshed by a heartbeat) has passed, and every node refuses a candidate
//! whose log is behind its own. A follower's lease is refreshed by each
//! heartbeat, so the other followers refuse; the leader's own vote is set once,
//! when it takes office, so a leader in office for longer than its lease grants
//! a vote to a candidate of a higher term whose log is as long as its own, and
//! steps down in doing so. The steps, in order:
//!
//! 1. wait until this leader has been in office for longer than its lease;
//! 2. hold new writes here (they wait in `Transfer::admit`, at most the hold
//!    bound: the lease, a heartbeat and `TRANSFER_ELECTION_MS_MAX`) and wait for
//!    the admitted ones to finish, so the log stops growing;
//! 3. wait until the target holds this leader's whole log (replication metrics);
//! 4. ask the target to campaign (`RaftPeer.Elect`, mutual TLS);
//! 5. wait until this node follows a new leader; then release the held writes,
//!    which now get `NotLeader` with the new leader's address (the SDK goes there).
//!    If none is known a lease and a heartbeat after step 4, ask the target once
//!    more.
//!
//! With 3 voters the leader's vote and the target's own are a majority: the new
//! leader is in office one round trip after step 4. With 5, the other followers
//! refuse until their leases pass: no heartbeat reaches them once the old leader
//! stepped down, so a lease later they grant any up-to-date candidate, while
//! their own election timers fire only `election_timeout_ms_min` after that. The
//! second request of step 5 falls in that window, and the target wins then: a
//! 5-voter transfer holds writes for about a lease (2 s by default)
//! instead of a round trip.
//! Every failure after step 2 is answered `Rejected`, never a retryable error,
//! so the SDK does not run a second transfer from the new leader.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::ServerState;

use super::error::NodeError;
use super::node::Node;
use super::types::NodeId;
use crate::proto::raft::RaftPayload;

/// Time the campaign gets beyond the lease and a heartbeat: writes are held at
/// most `election_timeout_ms_max + heartbeat_interval_ms` + this.
pub const TRANSFER_ELECTION_MS_MAX: u64 = 1_000;
/// How long the leader gives the target's `Elect` RPC.
const ELECT_RPC_TIMEOUT_MS: u64 = 2_000;
/// Pause between two looks at the replication metrics.
const TRANSFER_POLL_MS: u64 = 10;

/// The transfer state of one node.
pub struct Transfer {
    /// Whether a transfer holds writes, and how many writes were admitted and
    /// have not finished.
    gate: std::sync::Mutex<Gate>,
    /// Woken when the gate opens or the last admitted write finishes.
    changed: tokio::sync::Notify,
    /// One transfer at a time.
    running: tokio::sync::Mutex<()>,
    /// The term this node last led in, and when it first saw itself lead in it.
    leader_since: std::sync::Mutex<Option<(u64, Instant)>>,
    /// openraft's leader lease: `election_timeout_max`.
    lease: Duration,
    heartbeat: Duration,
    /// The longest a transfer holds writes.
    hold: Duration,
}

#[derive(Default)]
struct Gate {
    held: bool,
    writes_in_flight: u64,
}

/// A write admitted past the gate; the transfer waits until none is left.
pub struct Admitted<'a> {
    transfer: &'a Transfer,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        let mut gate = self.transfer.lock_gate();
        assert!(gate.writes_in_flight > 0, "an admitted write is counted");
        gate.writes_in_flight -= 1;
        if gate.writes_in_flight == 0 && gate.held {
            self.transfer.changed.notify_waiters();
        }
    }
}

impl Transfer {
    pub fn new(election_timeout_ms_max: u64, heartbeat_interval_ms: u64) -> Self {
        let lease = Duration::from_millis(election_timeout_ms_max);
        let heartbeat = Duration::from_millis(heartbeat_interval_ms);
        Transfer {
            gate: std::sync::Mutex::new(Gate::default()),
            changed: tokio::sync::Notify::new(),
            running: tokio::sync::Mutex::new(()),
            leader_since: std::sync::Mutex::new(None),
            lease,
            heartbeat,
            hold: lease + heartbeat + Duration::from_millis(TRANSFER_ELECTION_MS_MAX),
        }
    }

    fn lock_gate(&self) -> std::sync::MutexGuard<'_, Gate> {
        self.gate
            .lock()
            .expect("transfer gate lock is never poisoned")
    }

    /// Admits a write (keep the guard until it is committed), after waiting
    /// while a transfer holds writes (at most the hold bound): a write must not
    /// lengthen the log the target is catching up on.
    pub async fn admit(&self) -> Admitted<'_> {
        let deadline = tokio::time::Instant::now() + self.hold;
        loop {
            let opened = self.changed.notified();
            tokio::pin!(opened);
            opened.as_mut().enable();
            {
                let mut gate = self.lock_gate();
                // Past the bound the write goes on: the transfer gives up by then too.
                if !gate.held || tokio::time::Instant::now() >= deadline {
                    gate.writes_in_flight += 1;
                    return Admitted { transfer: self };
                }
            }
            let _ = tokio::time::timeout_at(deadline, opened).await; // re-checked above
        }
    }

    /// Holds new writes until the returned guard is dropped.
    fn hold(&self) -> HoldGuard<'_> {
        self.lock_gate().held = true;
        HoldGuard { transfer: self }
    }

    /// Waits until no admitted write is left; false at `deadline`.
    async fn drained(&self, deadline: Instant) -> bool {
        let deadline = tokio::time::Instant::from_std(deadline);
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.lock_gate().writes_in_flight == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return false;
            }
        }
    }
}

struct HoldGuard<'a> {
    transfer: &'a Transfer,
}

impl Drop for HoldGuard<'_> {
    fn drop(&mut self) {
        self.transfer.lock_gate().held = false;
        self.transfer.changed.notify_waiters();
    }
}

/// Keeps `Transfer::leader_since` current. Runs until Raft stops.
pub async fn track_leadership(node: Arc<Node>) {
    let mut metrics = node.raft.metrics();
    loop {
        let (state, term) = {
            let m = metrics.borrow_and_update();
            (m.state, m.current_term)
        };
        if state == ServerState::Leader {
            let mut since = node
                .transfer
                .leader_since
                .lock()
                .expect("leader_since lock is never poisoned");
            if since.is_none_or(|(led, _)| led != term) {
                *since = Some((term, Instant::now()));
            }
        }
        if metrics.changed().await.is_err() {
            return; // Raft stopped
        }
    }
}

impl Node {
    /// Hands leadership to voter `to` (`None`: the voter with the most of the log)
    /// and returns the new leader's id. See the module doc for the steps.
    pub async fn transfer_leader(&self, to: Option<NodeId>) -> Result<NodeId, NodeError> {
        self.check_leader()?;
        let target = match to {
            Some(id) if id == self.id => return Ok(self.id),
            Some(id) => self.check_voter(id)?,
            None => self.most_caught_up_voter()?,
        };
        let Ok(_running) = self.transfer.running.try_lock() else {
            return Err(NodeError::Rejected(
                "a leadership transfer is already running here".into(),
            ));
        };
        self.wait_out_lease().await;
        self.check_leader()?;
        let started = Instant::now();
        let hold = self.transfer.hold();
        let outcome = self.hand_over(target).await;
        drop(hold);
        tracing::info!(
            target,
            held_ms = started.elapsed().as_millis() as u64,
            ?outcome,
            "leadership transfer"
        );
        outcome
    }

    /// Steps 3 to 5, with writes held.
    async fn hand_over(&self, target: NodeId) -> Result<NodeId, NodeError> {
        let hold_ms = self.transfer.hold.as_millis();
        let deadline = Instant::now() + self.transfer.hold;
        if !self.transfer.drained(deadline).await {
            return Err(NodeError::Rejected(format!(
                "writes in flight did not finish within {hold_ms} ms; leadership stays here"
            )));
        }
        self.wait_target_caught_up(target, deadline).await?;
        self.ask_to_campaign(target).await?;
        // Past this the other followers' leases are over (module doc).
        let mut again_at = Some(Instant::now() + self.transfer.lease + self.transfer.heartbeat);
        loop {
            if let Some(leader) = self.new_leader() {
                return if leader == target {
                    Ok(leader)
                } else {
                    Err(NodeError::Rejected(format!(
                        "node {leader} won the election instead of node {target}"
                    )))
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(NodeError::Rejected(format!(
                    "node {target} campaigned but no new leader was known within \
                     {hold_ms} ms; see `cairn cluster status`"
                )));
            }
            if again_at.is_some_and(|at| now >= at) {
                again_at = None;
                if let Err(e) = self.ask_to_campaign(target).await {
                    tracing::info!(error = %e, "second campaign request of a transfer");
                }
            }
            tokio::time::sleep(Duration::from_millis(TRANSFER_POLL_MS)).await;
        }
    }

    /// The leader this node follows, once it no longer leads itself.
    fn new_leader(&self) -> Option<NodeId> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        match metrics.current_leader {
            Some(id) if id != self.id && metrics.state != ServerState::Leader => Some(id),
            _ => None,
        }
    }

    /// `id` if it is a voter other than this node.
    fn check_voter(&self, id: NodeId) -> Result<NodeId, NodeError> {
        let is_voter = self.members().iter().any(|m| m.id == id && m.voter);
        if !is_voter {
            return Err(NodeError::Rejected(format!(
                "node {id} is not a voter of this cluster"
            )));
        }
        Ok(id)
    }

    /// The voter other than this node that holds the most of the log.
    fn most_caught_up_voter(&self) -> Result<NodeId, NodeError> {
        let voters: Vec<NodeId> = self
            .members()
            .into_iter()
            .filter(|m| m.voter && m.id != self.id)
            .map(|m| m.id)
            .collect();
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let matched = |id: &NodeId| -> u64 {
            metrics
                .replication
                .as_ref()
                .and_then(|r| r.get(id).cloned().flatten())
                .map_or(0, |log_id| log_id.index)
        };
        voters
            .iter()
            .max_by_key(|id| (matched(id), std::cmp::Reverse(**id)))
            .copied()
            .ok_or_else(|| NodeError::Rejected("this cluster has no other voter".into()))
    }

    /// Step 1: a leader in office for less than its lease would refuse the
    /// target's vote request, and the failed campaign would depose it anyway.
    async fn wait_out_lease(&self) {
        let since = *self
            .transfer
            .leader_since
            .lock()
            .expect("leader_since lock is never poisoned");
        let Some((_, since)) = since else { return };
        // One heartbeat of margin: `leader_since` is when this node noticed.
        let ready = since + self.transfer.lease + self.transfer.heartbeat;
        let now = Instant::now();
        if ready > now {
            tokio::time::sleep(ready - now).await;
        }
    }

    /// Step 3: the target's matched log id equals this leader's last log id.
    async fn wait_target_caught_up(
        &self,
        target: NodeId,
        deadline: Instant,
    ) -> Result<(), NodeError> {
        loop {
            let (last_log, matched) = {
                let m = self.raft.metrics();
                let m = m.borrow();
                let matched = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&target).cloned().flatten())
                    .map_or(0, |log_id| log_id.index);
                (m.last_log_index.unwrap_or(0), matched)
            };
            if matched >= last_log {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(NodeError::Rejected(format!(
                    "node {target} did not catch up within {} ms \
                     (at {matched} of {last_log}); leadership stays here",
                    self.transfer.hold.as_millis()
                )));
            }
            tokio::time::sleep(Duration::from_millis(TRANSFER_POLL_MS)).await;
        }
    }

    /// Step 4: the `Elect` peer RPC to the target.
    async fn ask_to_campaign(&self, target: NodeId) -> Result<(), NodeError> {
        let peer_addr = self
            .members()
            .into_iter()
            .find(|m| m.id == target)
            .map(|m| m.addr.peer_addr)
            .ok_or_else(|| NodeError::Rejected(format!("node {target} left the cluster")))?;
        let refused =
            |why: String| NodeError::Rejected(format!("node {target} did not campaign: {why}"));
        let mut client = self
            .peer_client(&peer_addr)
            .await
            .map_err(|e| refused(e.to_string()))?;
        let call = client.elect(RaftPayload::default());
        let reply = tokio::time::timeout(Duration::from_millis(ELECT_RPC_TIMEOUT_MS), call)
            .await
            .map_err(|_| refused("no answer in time".into()))?
            .map_err(|s| refused(s.message().to_string()))?;
        let result: Result<(), NodeError> = crate::codec::decode_peer(&reply.into_inner().data)
            .map_err(|e| refused(format!("undecodable answer: {e}")))?;
        result.map_err(|e| refused(e.to_string()))
    }

    /// The target's side of step 4: campaign now, if this node is a voter that
    /// does not lead.
    pub async fn campaign(&self) -> Result<(), NodeError> {
        if self.metrics().state == ServerState::Leader {
            return Ok(());
        }
        if !self.members().iter().any(|m| m.id == self.id && m.voter) {
            return Err(NodeError::Rejected("this node is not a voter".into()));
        }
        tracing::info!("the leader hands over: campaigning now");
        self.raft
            .trigger()
            .elect()
            .await
            .map_err(|e| NodeError::Unavailable(e.to_string()))
    }
}
