//! The Raft log and vote: openraft's log-storage traits over `wal::Wal`.
//!
//! Durability order, as openraft requires:
//! 1. `save_vote`: rewrite the meta file (temp, fsync, rename, fsync dir), then return.
//! 2. `append`: write the records (readable at once), `fdatasync` the segment, and
//!    only then report `log_io_completed`; the leader counts this node towards a
//!    quorum only after that.
//! 3. `truncate`: cut the segment and fsync before returning.
//! 4. `purge`: only up to what the durable snapshot covers (`snapshot_floor`): a
//!    purge past it — a follower's log purged for a snapshot it is still installing —
//!    is deferred until the install made the snapshot durable. Then sync the state
//!    machine (sled, same data dir), record the purge point in the meta file, and
//!    drop the records (`Wal::open` ignores records at or below the purge point, so a
//!    power cut between these steps is harmless).
//!
//! openraft serializes all write IO; reads (replication) may run concurrently and
//! share the WAL behind a mutex that is never held across an fsync of appended data.
//! Reads of the newest entries are served from `entry_cache` when it holds them.

// openraft's traits fix `StorageError` (large) as the error type; helpers share it.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, StorageIOError};
use serde::{Deserialize, Serialize};

use super::entry_cache::EntryCache;
use super::snapshot_floor::SnapshotFloor;
use super::types::{Entry, LogId, StorageError, TypeConfig, Vote};
use super::wal::{self, Wal};
use crate::disk::Disk;
use crate::metrics::FsyncFile;

/// Bytes of entries one `limited_get_log_entries` returns, which bounds one
/// AppendEntries message (the first entry is always returned, whatever its size).
/// openraft allows an AppendEntries only `heartbeat_interval_ms` to be sent and
/// fsynced by the follower, so one message carries about two object chunks: 4 MiB
/// measured ~10% faster uploads in release, but leaves less margin for a loaded
/// machine running debug builds.
const APPEND_ENTRIES_BYTES_MAX: usize = 2 * 1024 * 1024;
const _: () = assert!(APPEND_ENTRIES_BYTES_MAX * 2 < crate::limits::GRPC_MESSAGE_BYTES_MAX);
/// How long an append past a deferred purge waits for the snapshot install that
/// covers it (the log cannot hold a hole). The install runs on the state machine's
/// own task and does not need this one, so this is only a bound for a broken install.
const DEFERRED_PURGE_WAIT_MS_MAX: u64 = 120_000;

/// Counts log growth since the last snapshot, so the node can snapshot on bytes as
/// well as on entry count.
#[derive(Default, Debug)]
pub struct LogGrowth {
    pub bytes: AtomicU64,
    pub entries: AtomicU64,
}

/// What the meta file holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LogMeta {
    vote: Option<Vote>,
    last_purged: Option<LogId>,
}

#[derive(Clone)]
pub struct LogStore {
    wal: Arc<Mutex<Wal>>,
    meta: Arc<Mutex<LogMeta>>,
    disk: Disk,
    growth: Arc<LogGrowth>,
    floor: SnapshotFloor,
    /// A purge openraft asked for beyond the durable snapshot; done once covered.
    deferred_purge: Arc<Mutex<Option<LogId>>>,
    /// See `Config::unsafe_ack_before_fsync`.
    unsafe_ack_before_fsync: bool,
    /// The newest entries, decoded (lock order: `wal`, then this).
    cache: Arc<Mutex<EntryCache>>,
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_logs(&e).into()
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_logs(&e).into()
}

/// Writes the log of a restored data directory (`raft::restore`): no entries, the
/// log purged up to `last_purged` (the restored state's position), and `vote`. The
/// node then starts as one that installed a snapshot there and purged its log.
pub fn seed(data_dir: &std::path::Path, vote: Vote, last_purged: LogId) -> std::io::Result<()> {
    let meta = LogMeta {
        vote: Some(vote),
        last_purged: Some(last_purged),
    };
    let bytes = bincode::serialize(&meta).map_err(std::io::Error::other)?;
    let wal = Wal::open(&data_dir.join("raft-log"), Some(last_purged.index))?;
    assert_eq!(wal.last_index(), None, "a seeded log holds no entries");
    wal.write_meta(&bytes)
}

impl LogStore {
    pub fn open(
        disk: Disk,
        growth: Arc<LogGrowth>,
        floor: SnapshotFloor,
        unsafe_ack_before_fsync: bool,
    ) -> std::io::Result<Self> {
        let dir = disk.dir().join("raft-log");
        let meta: LogMeta = match wal::read_meta(&dir)? {
            Some(bytes) => crate::codec::decode_disk(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "{}: unreadable vote and purge point: {e}",
                        dir.join("meta").display()
                    ),
                )
            })?,
            None => LogMeta::default(),
        };
        // Records at or below the purge point may survive a crash mid-purge.
        let wal = Wal::open(&dir, meta.last_purged.map(|p| p.index))?;
        if unsafe_ack_before_fsync {
            tracing::warn!("UNSAFE: log appends are acknowledged without fsync (test double)");
        }
        Ok(LogStore {
            wal: Arc::new(Mutex::new(wal)),
            meta: Arc::new(Mutex::new(meta)),
            disk,
            growth,
            floor,
            deferred_purge: Arc::new(Mutex::new(None)),
            unsafe_ack_before_fsync,
            cache: Arc::new(Mutex::new(EntryCache::default())),
        })
    }

    fn wal(&self) -> std::sync::MutexGuard<'_, Wal> {
        self.wal.lock().expect("the WAL lock is never poisoned")
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, EntryCache> {
        self.cache
            .lock()
            .expect("the entry cache lock is never poisoned")
    }

    fn meta(&self) -> LogMeta {
        self.meta
            .lock()
            .expect("the meta lock is never poisoned")
            .clone()
    }

    /// Replaces the meta file, then the in-memory copy.
    async fn write_meta(&self, meta: LogMeta) -> Result<(), StorageError> {
        let bytes = bincode::serialize(&meta).map_err(|e| write_err(*e))?;
        let wal = self.wal.clone();
        tokio::task::spawn_blocking(move || {
            wal.lock()
                .expect("the WAL lock is never poisoned")
                .write_meta(&bytes)
        })
        .await
        .map_err(write_err)?
        .map_err(write_err)?;
        *self.meta.lock().expect("the meta lock is never poisoned") = meta;
        Ok(())
    }

    fn range_bounds(range: &impl RangeBounds<u64>) -> (u64, Option<u64>) {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => Some(i.saturating_add(1)),
            Bound::Excluded(i) => Some(*i),
            Bound::Unbounded => None,
        };
        (start, end)
    }

    /// Entries in `[start, end)`, stopping once `bytes_max` is reached (never empty
    /// for a non-empty range that has entries).
    fn read_range(
        &self,
        start: u64,
        end: Option<u64>,
        bytes_max: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        let wal = self.wal();
        let (Some(first), Some(last)) = (wal.first_index(), wal.last_index()) else {
            return Ok(Vec::new());
        };
        let end = end.unwrap_or(last + 1).min(last + 1);
        // Records a deferred purge keeps on disk are already gone for openraft.
        let first = match *self.deferred() {
            Some(purged) => first.max(purged.index + 1),
            None => first,
        };
        if let Some(entries) = self.cache().get(start.max(first), end, bytes_max, last) {
            crate::metrics::global().log_cache_reads.inc();
            return Ok(entries);
        }
        crate::metrics::global().log_wal_reads.inc();
        let mut entries = Vec::new();
        let mut bytes = 0usize;
        for index in start.max(first)..end {
            let Some(payload) = wal.read(index).map_err(read_err)? else {
                break;
            };
            if !entries.is_empty() && bytes + payload.len() > bytes_max {
                break;
            }
            bytes += payload.len();
            entries.push(crate::codec::decode_disk(&payload).map_err(|e| read_err(*e))?);
        }
        Ok(entries)
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId>, StorageError> {
        let wal = self.wal();
        let Some(last) = wal.last_index() else {
            return Ok(None);
        };
        let payload = wal
            .read(last)
            .map_err(read_err)?
            .ok_or_else(|| read_err(std::io::Error::other("last entry vanished")))?;
        let entry: Entry = crate::codec::decode_disk(&payload).map_err(|e| read_err(*e))?;
        Ok(Some(entry.log_id))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let (start, end) = Self::range_bounds(&range);
        self.read_range(start, end, usize::MAX)
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        self.read_range(start, Some(end), APPEND_ENTRIES_BYTES_MAX)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_entry = self.last_entry_log_id()?;
        let (last_purged_log_id, last_log_id) = match *self.deferred() {
            // Records a deferred purge keeps are gone for openraft.
            Some(deferred) => (Some(deferred), last_entry.max(Some(deferred))),
            None => (
                self.meta().last_purged,
                last_entry.or(self.meta().last_purged),
            ),
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let meta = LogMeta {
            vote: Some(*vote),
            ..self.meta()
        };
        self.write_meta(meta).await
    }

    /// The saved vote, always as *not committed*. openraft (0.9, `Engine::startup`)
    /// restores a node whose saved vote is its own committed one as leader at once,
    /// with its commit index taken from the state machine — which, after a power
    /// cut, may be behind entries the cluster committed and acknowledged. Such a
    /// leader served linearizable reads from that older state (the chaos suite's
    /// `power` fault on all nodes found it). Read back as uncommitted, the vote
    /// still forbids voting for anyone else in its term, but the node must win an
    /// election in a new term, whose first entry commits everything before it.
    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.meta().vote.map(|vote| Vote {
            committed: false,
            ..vote
        }))
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // 1. Write the records: readable as soon as this returns.
        let mut first = None;
        let mut payloads = Vec::new();
        let mut cached = Vec::new();
        for entry in entries {
            first.get_or_insert(entry.log_id.index);
            let payload = bincode::serialize(&entry).map_err(|e| write_err(*e))?;
            cached.push((entry, payload.len()));
            payloads.push(payload);
        }
        let Some(first) = first else {
            callback.log_io_completed(Ok(()));
            return Ok(());
        };
        self.finish_deferred_purge(Some(first)).await?;
        let bytes: u64 = payloads.iter().map(|p| p.len() as u64).sum();
        let file = self.wal().append(first, &payloads).map_err(write_err)?;
        self.cache().append(cached);
        self.growth.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.growth
            .entries
            .fetch_add(payloads.len() as u64, Ordering::Relaxed);
        if self.unsafe_ack_before_fsync {
            callback.log_io_completed(Ok(()));
            return Ok(());
        }
        // 2. Make them durable. 3. Only then tell openraft they are stored.
        let synced = tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let synced = file.sync_data();
            crate::metrics::global().record_fsync(FsyncFile::RaftLog, started.elapsed());
            synced
        })
        .await
        .map_err(write_err)?;
        let reported = synced
            .as_ref()
            .map(|_| ())
            .map_err(|e| std::io::Error::new(e.kind(), e.to_string()));
        callback.log_io_completed(reported);
        synced.map_err(write_err)
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.finish_deferred_purge(None).await?;
        self.cache().truncate_from(log_id.index);
        let wal = self.wal.clone();
        tokio::task::spawn_blocking(move || {
            wal.lock()
                .expect("the WAL lock is never poisoned")
                .truncate_from(log_id.index)
        })
        .await
        .map_err(write_err)?
        .map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        if !self.floor.covers(log_id.index) {
            // A follower asked to purge for a snapshot it is still installing: the
            // entries stay until that snapshot is durable (see `snapshot_floor`).
            tracing::info!(purge = %log_id, floor = ?self.floor.index(), "purge deferred until the snapshot covering it is durable");
            *self.deferred() = Some(log_id);
            return Ok(());
        }
        *self.deferred() = None;
        self.purge_now(log_id).await
    }
}

impl LogStore {
    fn deferred(&self) -> std::sync::MutexGuard<'_, Option<LogId>> {
        self.deferred_purge
            .lock()
            .expect("the deferred-purge lock is never poisoned")
    }

    /// Carries out a deferred purge once the snapshot covers it. An append that
    /// does not follow the records on disk (it starts after the snapshot) waits for
    /// that, since the log cannot hold a hole.
    async fn finish_deferred_purge(&self, next_append: Option<u64>) -> Result<(), StorageError> {
        let Some(pending) = *self.deferred() else {
            return Ok(());
        };
        if !self.floor.covers(pending.index) {
            let follows = match (next_append, self.wal().last_index()) {
                (None, _) => true,
                (Some(first), Some(last)) => first == last + 1,
                (Some(_), None) => false,
            };
            if follows {
                return Ok(());
            }
            let wait = std::time::Duration::from_millis(DEFERRED_PURGE_WAIT_MS_MAX);
            tokio::time::timeout(wait, self.floor.wait_covers(pending.index))
                .await
                .map_err(|_| {
                    write_err(std::io::Error::other(format!(
                        "the snapshot covering the deferred purge through {pending} was not installed within {DEFERRED_PURGE_WAIT_MS_MAX} ms"
                    )))
                })?;
        }
        *self.deferred() = None;
        self.purge_now(pending).await
    }

    async fn purge_now(&self, log_id: LogId) -> Result<(), StorageError> {
        // The state machine lives in sled beside this log and is not synced on
        // apply: make what it applied from the purged entries durable first.
        self.disk.sync().await.map_err(write_err)?;
        // Record the purge point before dropping records: a crash in between
        // leaves extra records below it (ignored at open), never a hole above it.
        let meta = LogMeta {
            last_purged: Some(log_id),
            ..self.meta()
        };
        self.write_meta(meta).await?;
        self.cache().purge_through(log_id.index);
        let wal = self.wal.clone();
        tokio::task::spawn_blocking(move || {
            wal.lock()
                .expect("the WAL lock is never poisoned")
                .purge_through(log_id.index)
        })
        .await
        .map_err(write_err)?
        .map_err(write_err)
    }
}
