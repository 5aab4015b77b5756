//! Code generated from `proto/` by `build.rs`.

#![allow(clippy::all, missing_docs)]

/// Peer-to-peer Raft RPCs (`proto/raft.proto`).
pub mod raft {
    tonic::include_proto!("cairn.raft");
}

/// The client API (`proto/cairn/v1/*.proto`).
pub mod v1 {
    tonic::include_proto!("cairn.v1");
}

impl v1::Consistency {
    pub fn from_stale(stale: bool) -> Self {
        if stale {
            v1::Consistency::Stale
        } else {
            v1::Consistency::Linearizable
        }
    }
}

/// Short names for the generated clients.
pub mod clients {
    pub type KvClient = super::v1::kv_client::KvClient<tonic::transport::Channel>;
    pub type QueueClient = super::v1::queue_client::QueueClient<tonic::transport::Channel>;
    pub type ObjectClient = super::v1::object_client::ObjectClient<tonic::transport::Channel>;
    pub type FsClient = super::v1::fs_client::FsClient<tonic::transport::Channel>;
    pub type TokensClient = super::v1::tokens_client::TokensClient<tonic::transport::Channel>;
    pub type ClusterClient = super::v1::cluster_client::ClusterClient<tonic::transport::Channel>;
}
