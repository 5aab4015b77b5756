//! Replication: openraft wired to cairn's storage and network.
//!
//! `types` declares the type config; `log_store` and `sm_adapter` are the storage
//! half (`snapshot_floor` bounds how far the log may be purged); `peer_client` / `peer_service` the network half; `proposer` (group commit)
//! and `read_index` (batched linearizable reads) sit in front of openraft; `node`
//! starts and stops it all; `observe` keeps what `/metrics` shows of Raft over time;
//! `chunk_fetch` copies object chunks a node lacks; `forward` hands writes from
//! a node that does not lead to the leader; `backup` streams a point-in-time copy and
//! `restore` seeds a new data directory from one; `disk_guard` keeps the free-space
//! reserve; `transfer` hands leadership to another voter. The API layer talks to `node` only.

pub mod backup;
pub mod chunk_fetch;
pub mod chunk_push;
pub mod disk_guard;
pub mod entry_cache;
pub mod error;
pub mod forward;
pub mod log_store;
pub mod node;
pub mod observe;
pub mod peer_client;
pub mod peer_service;
pub mod proposer;
pub mod read_index;
pub mod report;
pub mod restore;
pub mod scrub;
pub mod sm_adapter;
pub mod snapshot_floor;
pub mod transfer;
pub mod types;
pub mod wal;

pub use error::NodeError;
pub use forward::Route;
pub use node::{Consistency, MemberInfo, Node};
