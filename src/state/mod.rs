//! The replicated state machine: every service's data and the commands that change it.
//!
//! Owns the `Command` → `Response` contract and the store behind it (one sled tree,
//! layout in `keys`). Apply is pure: it reads no clock, randomness or network; the
//! leader stamps `now_ms` into each [`Request`]. Raft plumbing (log ids, membership
//! encoding, snapshots on the wire) belongs to `crate::raft`; this module only knows
//! sled, serde and `crate::limits`.

pub mod auth;
pub mod backup;
pub mod chunks;
pub mod error;
pub mod fs;
pub mod keys;
pub mod kv;
pub mod object;
pub mod queue;
pub mod sessions;
pub mod snapshot;
pub mod sweep;
pub mod txn;

use std::sync::{Arc, RwLock, RwLockReadGuard};

use serde::{Deserialize, Serialize};

pub use error::Error;
pub use txn::Txn;

use crate::limits::VERSION_POSITION_BITS;

/// One Raft entry's payload: a batch of client commands stamped with the leader's
/// clock when the batch was proposed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub now_ms: u64,
    pub commands: Vec<ClientCommand>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientCommand {
    /// `None` for commands the cluster proposes itself (sweeps).
    pub session: Option<SessionTag>,
    pub command: Command,
}

/// The exactly-once tag of a client write (see `sessions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionTag {
    pub client_id: u64,
    pub seq: u64,
    pub lowest_unanswered_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    Kv(kv::KvCommand),
    Queue(queue::QueueCommand),
    Object(object::ObjectCommand),
    Auth(auth::AuthCommand),
    Fs(fs::FsCommand),
    Sweep(sweep::Sweep),
}

impl Command {
    /// Whether this command stores new data (refused while a member's disk is
    /// below its reserve). Removals, acks, leases, renames, attribute changes,
    /// tokens and sweeps do not: they keep an operator able to make room.
    pub fn adds_data(&self) -> bool {
        use fs::FsCommand as F;
        use kv::KvCommand as K;
        use object::ObjectCommand as O;
        use queue::QueueCommand as Q;
        match self {
            Command::Kv(c) => matches!(c, K::Put { .. } | K::CreateNamespace { .. }),
            Command::Queue(c) => matches!(c, Q::Send { .. } | Q::Create { .. }),
            Command::Object(c) => matches!(
                c,
                O::PutChunk { .. }
                    | O::StageChunk { .. }
                    | O::Put(_)
                    | O::Copy { .. }
                    | O::CreateBucket { .. }
            ),
            Command::Fs(c) => matches!(
                c,
                F::CreateFs { .. }
                    | F::Make { .. }
                    | F::MakeDirs { .. }
                    | F::Link { .. }
                    | F::Write { .. }
                    | F::PutFile { .. }
                    | F::SetXattr { .. }
            ),
            Command::Auth(_) | Command::Sweep(_) => false,
        }
    }

    /// About how many bytes this command adds to a Raft entry, for group commit's
    /// byte bound (an estimate: bincode adds small length prefixes).
    pub fn size_bytes(&self) -> usize {
        use kv::KvCommand;
        use object::ObjectCommand;
        use queue::QueueCommand;
        let payload = match self {
            Command::Kv(KvCommand::Put {
                namespace,
                key,
                value,
                ..
            }) => namespace.len() + key.len() + value.len(),
            Command::Kv(KvCommand::Delete { namespace, key }) => namespace.len() + key.len(),
            Command::Kv(
                KvCommand::CreateNamespace { name, .. } | KvCommand::DeleteNamespace { name },
            ) => name.len(),
            Command::Queue(QueueCommand::Send { queue, messages }) => {
                queue.len() + messages.iter().map(Vec::len).sum::<usize>()
            }
            Command::Queue(_) => 128,
            Command::Object(ObjectCommand::PutChunk { data, .. }) => data.len(),
            Command::Object(ObjectCommand::StageChunk { .. }) => 36,
            Command::Object(ObjectCommand::TouchChunks { hashes }) => hashes.len() * 32,
            Command::Object(ObjectCommand::Put(put)) => {
                put.key.len() + put.chunks.len() * 36 + 128 + put.metadata.len() * 64
            }
            Command::Object(_) | Command::Auth(_) => 1024 + 128,
            Command::Fs(cmd) => cmd.size_bytes(),
            Command::Sweep(_) => 0,
        };
        payload + 64
    }

    /// Whether applying this command may make queue messages receivable, so that
    /// long-polling receivers must be woken.
    pub fn wakes_queue_receivers(&self) -> bool {
        matches!(
            self,
            Command::Queue(queue::QueueCommand::Send { .. } | queue::QueueCommand::Nack { .. })
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Kv(kv::KvResponse),
    Queue(queue::QueueResponse),
    Object(object::ObjectResponse),
    Auth(auth::AuthResponse),
    Fs(fs::FsResponse),
    Swept { removed_count: u64 },
}

pub type Outcome = Result<Response, Error>;

/// Whether an outcome left the state untouched in a way a retry may safely redo:
/// such outcomes are not kept in the session table, so a long poll can propose a
/// receive again under the same seq after finding the queue empty, and an upload
/// whose chunk went missing can be sent again under the same seq.
pub fn changed_nothing(outcome: &Outcome) -> bool {
    match outcome {
        Ok(Response::Queue(queue::QueueResponse::ReceivedMany(deliveries))) => {
            deliveries.is_empty()
        }
        other => matches!(
            other,
            Ok(Response::Queue(queue::QueueResponse::Received(None)))
                | Err(Error::ChunkMissing { .. } | Error::WriteRaced)
        ),
    }
}

/// The Raft response of one entry: one outcome per command, in order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub outcomes: Vec<Outcome>,
}

/// Where a command sits in the log; gives every write a unique, growing version.
#[derive(Debug, Clone, Copy)]
pub struct ApplyContext {
    pub now_ms: u64,
    pub log_index: u64,
    pub position: u64,
}

impl ApplyContext {
    /// `log_index << 12 | position`: strictly increasing over the whole log.
    pub fn version(&self) -> u64 {
        (self.log_index << VERSION_POSITION_BITS) | self.position
    }
}

/// A read failed: either the request was wrong or the disk was.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Rejected(#[from] Error),
    #[error("storage: {0}")]
    Storage(#[from] sled::Error),
}

const META_CLOCK_MS: &str = "clock_ms";

/// The state machine's data. Cheap to clone (sled handles are shared).
#[derive(Clone)]
pub struct Store {
    tree: sled::Tree,
    /// Held shared by a [`ReadView`] and exclusively by [`Store::commit`]: sled
    /// applies a batch atomically but has no snapshots, so a read of several keys
    /// (a path walk: entry, then inode) could otherwise see half of two batches.
    commits: Arc<RwLock<()>>,
}

/// Reads that see one committed state: no apply batch commits while it lives. Keep
/// it to synchronous, bounded work (it blocks apply); never hold it across `.await`.
pub struct ReadView<'a> {
    txn: Txn<'a>,
    _no_commit: RwLockReadGuard<'a, ()>,
}

impl<'a> std::ops::Deref for ReadView<'a> {
    type Target = Txn<'a>;

    fn deref(&self) -> &Txn<'a> {
        &self.txn
    }
}

impl Store {
    pub const TREE_NAME: &'static str = "state";

    pub fn open(db: &sled::Db) -> sled::Result<Self> {
        Ok(Store {
            tree: db.open_tree(Self::TREE_NAME)?,
            commits: Arc::default(),
        })
    }

    pub fn tree(&self) -> &sled::Tree {
        &self.tree
    }

    pub fn txn(&self) -> Txn<'_> {
        Txn::new(&self.tree)
    }

    /// A view for multi-key reads that must not straddle a commit.
    pub fn read_view(&self) -> ReadView<'_> {
        ReadView {
            txn: Txn::new(&self.tree),
            // The lock guards no data, so a poisoned one (a panic elsewhere while it
            // was held) leaves nothing inconsistent behind.
            _no_commit: self.commits.read().unwrap_or_else(|p| p.into_inner()),
        }
    }

    /// Commits an apply batch atomically (data, sessions and `last_applied` together),
    /// never while a [`ReadView`] is open.
    pub fn commit(&self, txn: Txn<'_>) -> sled::Result<()> {
        let writes = txn.write_count();
        let batch = txn.into_batch();
        {
            let _no_reads = self.commits.write().unwrap_or_else(|p| p.into_inner());
            self.tree.apply_batch(batch)?;
        }
        // Outside the lock: reads need not wait for sled's garbage.
        crate::disk::reclaim_retired(writes);
        Ok(())
    }

    pub fn meta(&self, name: &str) -> sled::Result<Option<Vec<u8>>> {
        Ok(self.tree.get(keys::meta(name))?.map(|v| v.to_vec()))
    }

    /// Applies every command of one entry, in order.
    pub fn apply_request(
        &self,
        txn: &mut Txn<'_>,
        log_index: u64,
        request: &Request,
    ) -> sled::Result<Reply> {
        // Leaders' clocks differ and batches may commit out of stamp order; the
        // state machine's clock never goes back, so TTLs and session ages are monotonic.
        let clock_key = keys::meta(META_CLOCK_MS);
        let clock_ms = match txn.get(&clock_key)? {
            Some(bytes) => decode::<u64>(&bytes)?,
            None => 0,
        };
        let now_ms = request.now_ms.max(clock_ms);
        if now_ms != clock_ms {
            txn.put(clock_key, encode(&now_ms));
        }
        let mut outcomes = Vec::with_capacity(request.commands.len());
        for (position, command) in request.commands.iter().enumerate() {
            let ctx = ApplyContext {
                now_ms,
                log_index,
                position: position as u64,
            };
            outcomes.push(sessions::apply_once(txn, ctx, command)?);
        }
        Ok(Reply { outcomes })
    }
}

/// Executes one command (after the session check).
pub(crate) fn execute(
    txn: &mut Txn<'_>,
    ctx: ApplyContext,
    command: &Command,
) -> sled::Result<Outcome> {
    match command {
        Command::Kv(cmd) => Ok(kv::apply(txn, ctx, cmd)?.map(Response::Kv)),
        Command::Queue(cmd) => Ok(queue::apply(txn, ctx, cmd)?.map(Response::Queue)),
        Command::Object(cmd) => Ok(object::apply(txn, ctx, cmd)?.map(Response::Object)),
        Command::Auth(cmd) => Ok(auth::apply(txn, ctx, cmd)?.map(Response::Auth)),
        Command::Fs(cmd) => Ok(fs::apply(txn, ctx, cmd)?.map(Response::Fs)),
        Command::Sweep(sweep) => sweep::apply(txn, ctx, sweep),
    }
}

/// A counter kept under `M<name>`; 0 when absent.
pub(crate) fn meta_u64(txn: &Txn<'_>, name: &str) -> sled::Result<u64> {
    Ok(txn
        .get(&keys::meta(name))?
        .map(|b| decode::<u64>(&b))
        .transpose()?
        .unwrap_or(0))
}

/// `value - by` for a count the state keeps (chunk references, namespaces, buckets,
/// queues, client sessions), which can never go below zero unless apply has a bug.
/// Debug builds (every test) fail loudly; a release build logs the bug and clamps
/// at zero, so one wrong count is contained to that count instead of stopping the
/// node or wrapping to 2^64.
pub(crate) fn decrement(value: u64, by: u64, what: &str) -> u64 {
    debug_assert!(value >= by, "{what}: count {value} cannot drop by {by}");
    value.checked_sub(by).unwrap_or_else(|| {
        tracing::error!(
            what,
            value,
            by,
            "a count went below zero (a bug); clamped at zero"
        );
        0
    })
}

/// bincode helpers for records stored in the tree. A record that fails to decode
/// is a corrupted store, reported as a storage error rather than a panic.
pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    bincode::serialize(value).expect("in-memory records always serialize")
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> sled::Result<T> {
    crate::codec::decode_disk(bytes)
        .map_err(|e| sled::Error::Unsupported(format!("corrupt record: {e}")))
}

#[cfg(test)]
mod object_tests;

#[cfg(test)]
mod queue_tests;

#[cfg(test)]
mod tests;
