//! openraft type configuration for cairn, and short aliases for its generic types.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::state::{Reply, Request};

/// Where a node listens. Stored in the replicated membership, so every node knows
/// every other node's addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddr {
    /// Clients' gRPC.
    pub grpc_addr: String,
    pub http_addr: String,
    /// Peer RPCs (Raft, read index, chunk fetch): mutual TLS, peers only.
    pub peer_addr: String,
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "grpc={} http={} peer={}",
            self.grpc_addr, self.http_addr, self.peer_addr
        )
    }
}

/// A peer's answer to `Hello` (bootstrap): whether it belongs to a cluster yet,
/// and where it listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub initialized: bool,
    pub addr: NodeAddr,
}

pub type NodeId = u64;

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Request,
        R = Reply,
        NodeId = NodeId,
        Node = NodeAddr,
        SnapshotData = tokio::fs::File,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type StoredMembership = openraft::StoredMembership<NodeId, NodeAddr>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, NodeAddr>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type RaftError<E = openraft::error::Infallible> = openraft::error::RaftError<NodeId, E>;
pub type RpcError<E = openraft::error::Infallible> =
    openraft::error::RPCError<NodeId, NodeAddr, RaftError<E>>;
pub type ClientWriteError = openraft::error::ClientWriteError<NodeId, NodeAddr>;
pub type CheckIsLeaderError = openraft::error::CheckIsLeaderError<NodeId, NodeAddr>;
pub type ForwardToLeader = openraft::error::ForwardToLeader<NodeId, NodeAddr>;
pub type RaftMetrics = openraft::RaftMetrics<NodeId, NodeAddr>;
