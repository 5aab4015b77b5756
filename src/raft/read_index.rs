//! Linearizable reads: one leadership check shared by every read waiting for it,
//! and, when enabled, a leader lease that answers without one.
//!
//! A read that arrives while a round is in flight waits for the next round (its
//! index must be taken after it arrived). On the leader a round is openraft's
//! `get_read_log_id` (a heartbeat round to a quorum); the resulting index is the
//! point every waiting read may serve once the local state has applied it.
//! Followers get the index from the leader over the peer service (`ReadIndex`).
//!
//! **Lease** (`Config::read_lease`; docs/consistency.md, "Leader lease"). A round
//! that succeeds proves that a quorum accepted this leader's heartbeat sent after
//! the round *started* (`t0`). openraft 0.9 makes each of those followers refuse
//! any vote for `election_timeout_max` after it last heard from its leader
//! (`Engine::handle_vote_req`, `leader_lease`), so no other leader can be elected
//! before `t0 + election_timeout_max` by any clock running at the same rate. The
//! lease ends earlier, at `t0 + LEASE_FRACTION × election_timeout_max` on this
//! node's monotonic clock, and only while RaftCore still reports this node as
//! leader with the same vote and membership as when the round began. Within it a
//! batch of reads takes its index from RaftCore's own state (one in-process round
//! trip, no network): `max(committed, the round's index)`. A lease past half its
//! length is renewed by the next batch's round. A restarted node forgets the
//! heartbeats it accepted, so with leases on it refuses votes for
//! `election_timeout_max` after it starts (`peer_service::vote`).
use std::time::{Duration, Instant};

use openraft::ServerState;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::types::{CheckIsLeaderError, LogId, NodeAddr, NodeId, Raft, RaftError, Vote};
use crate::limits::READ_QUEUE_MAX;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ReadIndexError {
    #[error("not the leader")]
    NotLeader {
        leader_id: Option<NodeId>,
        leader: Option<NodeAddr>,
    },
    #[error("unavailable: {0}")]
    Unavailable(String),
}

type Waiter = oneshot::Sender<Result<u64, ReadIndexError>>;

/// The part of `election_timeout_max` a lease lasts: the rest is the margin for
/// the nodes' clocks running at different rates (TiKV uses 9 s of 10 s).
pub const LEASE_FRACTION: f64 = 0.9;

/// How the leader may answer reads without a quorum round.
#[derive(Debug, Clone, Copy)]
pub struct LeaseConfig {
    /// `LEASE_FRACTION` × `election_timeout_max`.
    pub length: Duration,
    /// TEST DOUBLE (`unsafe_read_lease_never_expires`): the lease never ends, so a
    /// deposed leader cut off from the others keeps serving old values.
    pub never_expires: bool,
}

impl LeaseConfig {
    pub fn new(election_timeout_ms_max: u64, never_expires: bool) -> Self {
        let length_ms = (election_timeout_ms_max as f64 * LEASE_FRACTION) as u64;
        LeaseConfig {
            length: Duration::from_millis(length_ms),
            never_expires,
        }
    }
}

/// What a round proved: this node leads, with `vote` and `membership`, until `until`.
#[derive(Debug, Clone, Copy)]
struct Lease {
    vote: Vote,
    membership: Option<LogId>,
    /// The round's read index (at least the leader's first entry of its term).
    index: u64,
    granted: Instant,
    until: Instant,
}

/// The leadership facts a lease is checked against, read inside RaftCore.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Leading {
    leader: bool,
    vote: Vote,
    membership: Option<LogId>,
    committed: u64,
}

async fn leading(raft: &Raft) -> Option<Leading> {
    raft.with_raft_state(|s| Leading {
        leader: s.server_state == ServerState::Leader,
        vote: *s.vote_ref(),
        membership: *s.membership_state.effective().log_id(),
        committed: s.committed.map(|id| id.index).unwrap_or(0),
    })
    .await
    .ok()
}

#[derive(Clone)]
pub struct ReadIndexBatcher {
    waiters: mpsc::Sender<Waiter>,
}

impl ReadIndexBatcher {
    /// `lease`: `None` keeps every read on a quorum round.
    pub fn spawn(raft: Raft, lease: Option<LeaseConfig>) -> Self {
        let (tx, rx) = mpsc::channel(READ_QUEUE_MAX);
        tokio::spawn(run_rounds(raft, rx, lease));
        ReadIndexBatcher { waiters: tx }
    }

    /// The leader's read index, confirmed by a quorum (or by a lease) after this
    /// call began.
    pub async fn read_index(&self) -> Result<u64, ReadIndexError> {
        let (tx, rx) = oneshot::channel();
        let stopped = || ReadIndexError::Unavailable("node is shutting down".into());
        self.waiters.send(tx).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

/// Runs until every batcher handle is dropped (node shutdown).
async fn run_rounds(raft: Raft, mut waiters: mpsc::Receiver<Waiter>, config: Option<LeaseConfig>) {
    let mut lease: Option<Lease> = None;
    while let Some(first) = waiters.recv().await {
        let mut batch = vec![first];
        while batch.len() < READ_QUEUE_MAX {
            match waiters.try_recv() {
                Ok(waiter) => batch.push(waiter),
                Err(_) => break,
            }
        }
        let result = match (config, lease) {
            (Some(config), Some(held)) => match from_lease(&raft, config, held).await {
                Some(index) => {
                    crate::metrics::global().lease_reads.inc();
                    Ok(index)
                }
                None => {
                    lease = None;
                    round(&raft, Some(config), &mut lease).await
                }
            },
            (config, _) => round(&raft, config, &mut lease).await,
        };
        for waiter in batch {
            // A waiter that gave up (timeout) no longer listens; nothing to do.
            let _ = waiter.send(result.clone());
        }
    }
}

/// The read index the lease gives now, or `None` if the lease is over (or past
/// half its length: the caller renews it with a round).
async fn from_lease(raft: &Raft, config: LeaseConfig, held: Lease) -> Option<u64> {
    let fresh = |now: Instant| config.never_expires || now < held.granted + config.length / 2;
    if !fresh(Instant::now()) {
        return None;
    }
    let now = leading(raft).await?;
    let same = now.leader && now.vote == held.vote && now.membership == held.membership;
    // The index is taken from the state just read, so the time that counts is now.
    let live = config.never_expires || Instant::now() < held.until;
    (same && live).then(|| now.committed.max(held.index))
}

/// One quorum round; with leases on, a success also grants a lease.
async fn round(
    raft: &Raft,
    config: Option<LeaseConfig>,
    lease: &mut Option<Lease>,
) -> Result<u64, ReadIndexError> {
    let before = match config {
        Some(_) => leading(raft).await,
        None => None,
    };
    // Taken before the heartbeats go out: every follower that acknowledges them
    // heard from this leader after it.
    let started = Instant::now();
    let index = match raft.get_read_log_id().await {
        Ok((read_log_id, _applied)) => read_log_id.map(|id| id.index).unwrap_or(0),
        Err(e) => return Err(map_error(e)),
    };
    if let (Some(config), Some(before)) = (config, before) {
        // Granted only if nothing changed while the round ran.
        let after = leading(raft).await;
        let unchanged = after.is_some_and(|after| {
            after.leader && after.vote == before.vote && after.membership == before.membership
        });
        if before.leader && unchanged {
            *lease = Some(Lease {
                vote: before.vote,
                membership: before.membership,
                index,
                granted: started,
                until: started + config.length,
            });
        }
    }
    Ok(index)
}

fn map_error(e: RaftError<CheckIsLeaderError>) -> ReadIndexError {
    match e {
        RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => ReadIndexError::NotLeader {
            leader_id: f.leader_id,
            leader: f.leader_node,
        },
        other => ReadIndexError::Unavailable(other.to_string()),
    }
}
