//! cairn: a Raft-replicated storage cluster — files, objects, key-value and queues
//! in one binary.
//!
//! # Layout
//! Dependencies point one way, left to right:
//! `limits` → `state` → `raft` → `api` → `cli`; `proto` is shared; `client` (the
//! SDK) uses only `proto`, `limits` and its own error codes.
//! - [`limits`]: every bound, in one place.
//! - [`metrics`]: the event counters and histograms every layer records into
//!   (`/metrics`; a leaf like `limits`).
//! - [`chunk_ref`]: a chunk's name (hash and length), shared by every layer.
//! - [`clock`]: the wall clock the leader stamps on proposals.
//! - [`codec`]: bincode with explicit bounds for peer payloads and disk records.
//! - [`peer_tls`]: the peer credential (mutual TLS derived from the cluster secret).
//! - [`config`]: a node's configuration (TOML + flags) and its validation.
//! - [`crash_point`]: named crash points for crash-consistency tests (test builds only).
//! - [`errno`]: the POSIX error numbers of the file system service.
//! - [`durable`]: durable file-system steps (directories, renames) every writer uses.
//! - [`disk`]: the node's sled database and how its writes become durable.
//! - [`state`]: the replicated state machine (commands, apply, reads, snapshots).
//! - [`raft`]: openraft wiring: log store, state-machine adapter, peer network,
//!   group-commit proposer, batched read index, node start-up.
//! - [`api`]: the transport-neutral services, and over them gRPC, HTTP objects and
//!   the platform REST protocol; the error mapping.
//! - [`rsync_daemon`]: the supervised rsync daemon and mount behind
//!   `lep storage upload --rsync`.
//! - [`client`]: the Rust SDK.
//! - [`cli`]: the `cairn` command.

pub mod api;
pub mod chunk_ref;
pub mod chunkstore;
pub mod cli;
pub mod client;
pub mod clock;
pub mod codec;
pub mod config;
pub mod crash_point;
pub mod disk;
pub mod durable;
pub mod errno;
pub mod limits;
pub mod metrics;
pub mod mount;
pub mod peer_tls;
pub mod proto;
pub mod raft;
pub mod rsync_daemon;
pub mod state;
