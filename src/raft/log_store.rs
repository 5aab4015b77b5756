//! The Raft log and vote, in two sled trees of the node's database.
//!
//! Durability order, as openraft requires:
//! 1. `save_vote`: write the vote, sync (flush + fsync), then return.
//! 2. `append`: write the entries (readable at once), sync, and only then report
//!    `log_io_completed`; the leader counts this node towards a quorum only after it.
//! 3. `truncate` / `purge`: one atomic batch, then sync. `purge` first records the
//!    last purged id in the same batch, so the log never has a hole. It also syncs the
//!    state machine (same database), which must durably cover every purged entry.
//!
//! All write IO is serialized by openraft (it calls these methods one at a time).

// openraft's traits fix `StorageError` (large) as the error type; helpers share it.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, StorageIOError};

use super::types::{Entry, LogId, StorageError, TypeConfig, Vote};
use crate::disk::Disk;

/// Bytes of entries one `limited_get_log_entries` returns, which bounds one
/// AppendEntries message (the first entry is always returned, whatever its size).
const APPEND_ENTRIES_BYTES_MAX: usize = 8 * 1024 * 1024;
const _: () = assert!(APPEND_ENTRIES_BYTES_MAX * 2 < crate::limits::GRPC_MESSAGE_BYTES_MAX);

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";

/// Counts log growth since the last snapshot, so the node can snapshot on bytes as
/// well as on entry count.
#[derive(Default, Debug)]
pub struct LogGrowth {
    pub bytes: AtomicU64,
    pub entries: AtomicU64,
}

#[derive(Clone)]
pub struct LogStore {
    disk: Disk,
    log: sled::Tree,
    meta: sled::Tree,
    growth: Arc<LogGrowth>,
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_logs(&e).into()
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_logs(&e).into()
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

impl LogStore {
    pub fn open(disk: Disk, growth: Arc<LogGrowth>) -> sled::Result<Self> {
        Ok(LogStore {
            log: disk.db.open_tree("raft_log")?,
            meta: disk.db.open_tree("raft_meta")?,
            disk,
            growth,
        })
    }

    fn meta_get<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, StorageError> {
        match self.meta.get(key).map_err(read_err)? {
            Some(bytes) => bincode::deserialize(&bytes)
                .map(Some)
                .map_err(|e| read_err(*e)),
            None => Ok(None),
        }
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId>, StorageError> {
        match self.log.last().map_err(read_err)? {
            Some((_, bytes)) => {
                let entry: Entry = bincode::deserialize(&bytes).map_err(|e| read_err(*e))?;
                Ok(Some(entry.log_id))
            }
            None => Ok(None),
        }
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
    /// for a non-empty range).
    fn read_range(
        &self,
        start: u64,
        end: Option<u64>,
        bytes_max: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        let iter = match end {
            Some(end) if end <= start => return Ok(Vec::new()),
            Some(end) => self.log.range(index_key(start)..index_key(end)),
            None => self.log.range(index_key(start)..),
        };
        let mut entries = Vec::new();
        let mut bytes = 0usize;
        for item in iter {
            let (_, value) = item.map_err(read_err)?;
            if !entries.is_empty() && bytes + value.len() > bytes_max {
                break;
            }
            bytes += value.len();
            entries.push(bincode::deserialize(&value).map_err(|e| read_err(*e))?);
        }
        Ok(entries)
    }

    async fn sync(&self) -> Result<(), StorageError> {
        self.disk.sync().await.map_err(write_err)
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
        let last_purged_log_id: Option<LogId> = self.meta_get(KEY_LAST_PURGED)?;
        let last_log_id = self.last_entry_log_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let bytes = bincode::serialize(vote).map_err(|e| write_err(*e))?;
        self.meta.insert(KEY_VOTE, bytes).map_err(write_err)?;
        self.sync().await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.meta_get(KEY_VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not synced on purpose: losing it only means re-applying from last_applied
        // once the leader repeats the commit index.
        let bytes = bincode::serialize(&committed).map_err(|e| write_err(*e))?;
        self.meta.insert(KEY_COMMITTED, bytes).map_err(write_err)?;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.meta_get::<Option<LogId>>(KEY_COMMITTED)?.flatten())
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
        // 1. Write the entries in one batch: readable as soon as this returns.
        let mut batch = sled::Batch::default();
        let (mut bytes, mut count) = (0u64, 0u64);
        for entry in entries {
            let value = bincode::serialize(&entry).map_err(|e| write_err(*e))?;
            bytes += value.len() as u64;
            count += 1;
            batch.insert(&index_key(entry.log_id.index), value);
        }
        self.log.apply_batch(batch).map_err(write_err)?;
        self.growth.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.growth.entries.fetch_add(count, Ordering::Relaxed);
        // 2. Make them durable. 3. Only then tell openraft they are stored.
        let synced = self.disk.sync().await;
        let reported = synced
            .as_ref()
            .map(|_| ())
            .map_err(|e| std::io::Error::new(e.kind(), e.to_string()));
        callback.log_io_completed(reported);
        synced.map_err(write_err)
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        for item in self.log.range(index_key(log_id.index)..) {
            let (key, _) = item.map_err(read_err)?;
            batch.remove(key);
        }
        self.log.apply_batch(batch).map_err(write_err)?;
        self.sync().await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // The state machine shares this database: syncing first makes sure what it
        // applied from the purged entries is on disk before they disappear.
        self.sync().await?;
        // Record the purge point before deleting: a crash in between leaves extra
        // entries below it (ignored), never a hole above it.
        let last_purged = bincode::serialize(&log_id).map_err(|e| write_err(*e))?;
        self.meta
            .insert(KEY_LAST_PURGED, last_purged)
            .map_err(write_err)?;
        let mut batch = sled::Batch::default();
        for item in self.log.range(..=index_key(log_id.index)) {
            let (key, _) = item.map_err(read_err)?;
            batch.remove(key);
        }
        self.log.apply_batch(batch).map_err(write_err)?;
        self.sync().await
    }
}
