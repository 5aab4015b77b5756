//! Linearizable reads: one leadership check shared by every read waiting for it.
//!
//! A read that arrives while a round is in flight waits for the next round (its
//! index must be taken after it arrived). On the leader a round is openraft's
//! `get_read_log_id` (a heartbeat round to a quorum); the resulting index is the
//! point every waiting read may serve once the local state has applied it.
//! Followers get the index from the leader over the peer service (`ReadIndex`).

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::types::{CheckIsLeaderError, NodeAddr, NodeId, Raft, RaftError};
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

#[derive(Clone)]
pub struct ReadIndexBatcher {
    waiters: mpsc::Sender<Waiter>,
}

impl ReadIndexBatcher {
    pub fn spawn(raft: Raft) -> Self {
        let (tx, rx) = mpsc::channel(READ_QUEUE_MAX);
        tokio::spawn(run_rounds(raft, rx));
        ReadIndexBatcher { waiters: tx }
    }

    /// The leader's read index, confirmed by a quorum after this call began.
    pub async fn read_index(&self) -> Result<u64, ReadIndexError> {
        let (tx, rx) = oneshot::channel();
        let stopped = || ReadIndexError::Unavailable("node is shutting down".into());
        self.waiters.send(tx).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

/// Runs until every batcher handle is dropped (node shutdown).
async fn run_rounds(raft: Raft, mut waiters: mpsc::Receiver<Waiter>) {
    while let Some(first) = waiters.recv().await {
        let mut batch = vec![first];
        while batch.len() < READ_QUEUE_MAX {
            match waiters.try_recv() {
                Ok(waiter) => batch.push(waiter),
                Err(_) => break,
            }
        }
        let result = match raft.get_read_log_id().await {
            Ok((read_log_id, _applied)) => Ok(read_log_id.map(|id| id.index).unwrap_or(0)),
            Err(e) => Err(map_error(e)),
        };
        for waiter in batch {
            // A waiter that gave up (timeout) no longer listens; nothing to do.
            let _ = waiter.send(result.clone());
        }
    }
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
