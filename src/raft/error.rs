//! What a node answers when it cannot serve a request: not the leader,
//! unavailable, timed out, rejected. Its own module so that the node and the
//! proposer (which both return it) do not depend on each other.

use super::read_index::ReadIndexError;
use super::types::{NodeAddr, NodeId};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum NodeError {
    #[error("not the leader (leader: {})", leader_id.map_or("unknown".to_string(), |id| format!("node {id}")))]
    NotLeader {
        leader_id: Option<NodeId>,
        leader: Option<NodeAddr>,
    },
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("rejected: {0}")]
    Rejected(String),
    /// A member's data disk is below its free-space reserve (`disk_guard`).
    #[error("no space: {0}")]
    NoSpace(String),
}

impl From<ReadIndexError> for NodeError {
    fn from(e: ReadIndexError) -> Self {
        match e {
            ReadIndexError::NotLeader { leader_id, leader } => {
                NodeError::NotLeader { leader_id, leader }
            }
            ReadIndexError::Unavailable(m) => NodeError::Unavailable(m),
        }
    }
}
