//! openraft's state-machine traits over `crate::state::Store`, plus snapshot files.
//!
//! Apply writes an entry batch's data, sessions, `last_applied` and membership in one
//! atomic sled batch. It does not fsync: the entries are already durable in the log,
//! and a restart re-applies whatever sled lost (apply is deterministic). The log is
//! only purged behind a synced state (see `log_store::purge`).
//!
//! A snapshot is one file, `snapshots/current.snap`: a header with the openraft
//! `SnapshotMeta`, then `state::snapshot` records. Building and installing take the
//! apply gate, so a snapshot is a point-in-time view and never races an apply.
//! Installing first makes the received file current, then loads it; a node that
//! crashes mid-install reloads it at start (`recover`).
//!
//! Chunk files (object data) live beside the tree in `chunkstore`. Apply writes the
//! files a batch stages durably before committing the batch and deletes collected
//! ones after. A snapshot carries the chunk *records*, not their data: installing
//! one deletes local chunks it does not name and fetches the ones this node lacks
//! from the snapshot's members (`chunk_fetch`), so a rejoining node copies only what
//! it is missing.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use tokio::sync::Mutex;

use super::chunk_fetch;
use super::log_store::LogGrowth;
use super::types::{
    Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use crate::chunkstore::ChunkStore;
use crate::disk::Disk;
use crate::state::queue::QueueCommand;
use crate::state::{keys, snapshot, Command, Reply, Store};

const META_LAST_APPLIED: &str = "raft_last_applied";
const META_MEMBERSHIP: &str = "raft_membership";
const SNAPSHOT_MAGIC: &[u8; 8] = b"CAIRNSN1";
/// Largest snapshot header (the membership is the only variable part).
const SNAPSHOT_HEADER_BYTES_MAX: u32 = 1024 * 1024;
const CURRENT_FILE: &str = "current.snap";
const RECEIVING_FILE: &str = "receiving.snap";
const BUILDING_FILE: &str = "building.snap";
const INSTALLING_FILE: &str = "installing.snap";

#[derive(Clone)]
pub struct StateMachine {
    store: Store,
    disk: Disk,
    chunks: ChunkStore,
    snapshots_dir: PathBuf,
    /// Serializes apply with snapshot build and install (a consistent view).
    gate: Arc<Mutex<()>>,
    growth: Arc<LogGrowth>,
    /// Woken after applying queue sends, for long-polling receives.
    queue_activity: Arc<tokio::sync::Notify>,
}

fn sm_read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_state_machine(&e).into()
}

fn sm_write_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_state_machine(&e).into()
}

fn snap_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_snapshot(None, &e).into()
}

impl StateMachine {
    pub fn open(disk: Disk, growth: Arc<LogGrowth>) -> io::Result<Self> {
        let snapshots_dir = disk.dir().join("snapshots");
        std::fs::create_dir_all(&snapshots_dir)?;
        let store = Store::open(&disk.db).map_err(io::Error::other)?;
        let chunks = ChunkStore::open(&disk.dir().join("chunks"))?;
        let sm = StateMachine {
            store,
            disk,
            chunks,
            snapshots_dir,
            gate: Arc::new(Mutex::new(())),
            growth,
            queue_activity: Arc::new(tokio::sync::Notify::new()),
        };
        sm.recover()?;
        Ok(sm)
    }

    pub fn queue_activity(&self) -> Arc<tokio::sync::Notify> {
        self.queue_activity.clone()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn chunks(&self) -> &ChunkStore {
        &self.chunks
    }

    fn meta<T: serde::de::DeserializeOwned>(&self, name: &str) -> io::Result<Option<T>> {
        match self.store.meta(name).map_err(io::Error::other)? {
            Some(bytes) => bincode::deserialize(&bytes)
                .map(Some)
                .map_err(io::Error::other),
            None => Ok(None),
        }
    }

    fn last_applied(&self) -> io::Result<Option<LogId>> {
        Ok(self.meta::<Option<LogId>>(META_LAST_APPLIED)?.flatten())
    }

    /// Finishes an install that a crash interrupted: the current snapshot is newer
    /// than what the tree says it has applied.
    /// Also deletes chunk files no record names (deletions a crash lost).
    fn recover(&self) -> io::Result<()> {
        let path = self.snapshots_dir.join(CURRENT_FILE);
        if path.exists() {
            let meta = read_header(&mut std::fs::File::open(&path)?)?;
            if meta.last_log_id > self.last_applied()? {
                tracing::warn!(snapshot = ?meta.last_log_id, "reloading a snapshot whose install was interrupted");
                load_snapshot_file(&self.store, &self.disk, &path, &meta)?;
            }
        }
        remove_orphan_chunks(&self.store, &self.chunks)?;
        Ok(())
    }
}

fn write_header(out: &mut impl Write, meta: &SnapshotMeta) -> io::Result<()> {
    let header = bincode::serialize(meta).map_err(io::Error::other)?;
    out.write_all(SNAPSHOT_MAGIC)?;
    out.write_all(&(header.len() as u32).to_be_bytes())?;
    out.write_all(&header)
}

/// Reads the header and leaves `input` at the first record.
fn read_header(input: &mut impl Read) -> io::Result<SnapshotMeta> {
    let mut magic = [0u8; 8];
    input.read_exact(&mut magic)?;
    if &magic != SNAPSHOT_MAGIC {
        return Err(io::Error::other("not a cairn snapshot file"));
    }
    let mut len = [0u8; 4];
    input.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len);
    if len > SNAPSHOT_HEADER_BYTES_MAX {
        return Err(io::Error::other(format!(
            "snapshot header of {len} bytes is too large"
        )));
    }
    let mut header = vec![0u8; len as usize];
    input.read_exact(&mut header)?;
    bincode::deserialize(&header).map_err(io::Error::other)
}

/// Replaces the state with the snapshot at `path` and makes it durable.
fn load_snapshot_file(
    store: &Store,
    disk: &Disk,
    path: &Path,
    meta: &SnapshotMeta,
) -> io::Result<()> {
    let mut file = std::fs::File::open(path)?;
    read_header(&mut file)?;
    // The raft metadata is written only after every record: until then the tree
    // does not claim to hold the snapshot, and `recover` reloads it after a crash.
    let raft_keys = [keys::meta(META_LAST_APPLIED), keys::meta(META_MEMBERSHIP)];
    snapshot::load(store.tree(), file, |key| {
        raft_keys.iter().any(|k| k.as_slice() == key)
    })?;
    let tree = store.tree();
    let last_applied = bincode::serialize(&meta.last_log_id).map_err(io::Error::other)?;
    let membership = bincode::serialize(&meta.last_membership).map_err(io::Error::other)?;
    tree.insert(keys::meta(META_LAST_APPLIED), last_applied)
        .map_err(io::Error::other)?;
    tree.insert(keys::meta(META_MEMBERSHIP), membership)
        .map_err(io::Error::other)?;
    disk.sync_blocking()
}

/// Deletes chunk files the state does not name. Only while no apply runs: apply
/// writes a chunk's file before committing its record.
fn remove_orphan_chunks(store: &Store, chunks: &ChunkStore) -> io::Result<()> {
    let tree = store.tree().clone();
    let removed = chunks.remove_orphans(|hash| {
        tree.contains_key(keys::chunk(hash))
            .map_err(io::Error::other)
    })?;
    if removed > 0 {
        tracing::info!(removed, "deleted chunk files no object names");
    }
    Ok(())
}

/// Renames `from` to `to` and syncs the directory, so the rename survives a crash.
fn durable_rename(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::rename(from, to)?;
    let dir = to
        .parent()
        .ok_or_else(|| io::Error::other("snapshot path has no directory"))?;
    std::fs::File::open(dir)?.sync_all()
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let _gate = self.gate.lock().await;
        let last_log_id = self.last_applied().map_err(sm_read_err)?;
        let last_membership: StoredMembership = self
            .meta(META_MEMBERSHIP)
            .map_err(sm_read_err)?
            .unwrap_or_default();
        let snapshot_id = match last_log_id {
            Some(id) => format!("{}-{}-{}", id.leader_id, id.index, rand::random::<u32>()),
            None => format!("empty-{}", rand::random::<u32>()),
        };
        let meta = SnapshotMeta {
            last_log_id,
            last_membership,
            snapshot_id,
        };
        let (store, disk, dir, header) = (
            self.store.clone(),
            self.disk.clone(),
            self.snapshots_dir.clone(),
            meta.clone(),
        );
        let building = dir.join(BUILDING_FILE);
        let current = dir.join(CURRENT_FILE);
        tokio::task::spawn_blocking(move || -> io::Result<()> {
            // The state must be on disk before the snapshot lets the log be purged.
            disk.sync_blocking()?;
            let mut file = std::fs::File::create(&building)?;
            write_header(&mut file, &header)?;
            snapshot::dump(store.tree(), &mut file)?;
            file.sync_all()?;
            durable_rename(&building, &current)
        })
        .await
        .map_err(snap_err)?
        .map_err(snap_err)?;
        self.growth.bytes.store(0, Ordering::Relaxed);
        self.growth.entries.store(0, Ordering::Relaxed);
        let file = tokio::fs::File::open(self.snapshots_dir.join(CURRENT_FILE))
            .await
            .map_err(snap_err)?;
        tracing::info!(snapshot = %meta.snapshot_id, "built snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(file),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let applied = self.last_applied().map_err(sm_read_err)?;
        let membership = self
            .meta(META_MEMBERSHIP)
            .map_err(sm_read_err)?
            .unwrap_or_default();
        Ok((applied, membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Reply>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let _gate = self.gate.lock().await;
        let mut txn = self.store.txn();
        let mut replies = Vec::new();
        let mut last = None;
        let mut sent_to_queue = false;
        for entry in entries {
            let reply = match &entry.payload {
                EntryPayload::Blank => Reply::default(),
                EntryPayload::Normal(request) => {
                    sent_to_queue |= request.commands.iter().any(|c| {
                        matches!(
                            c.command,
                            Command::Queue(QueueCommand::Send { .. } | QueueCommand::Nack { .. })
                        )
                    });
                    self.store
                        .apply_request(&mut txn, entry.log_id.index, request)
                        .map_err(sm_write_err)?
                }
                EntryPayload::Membership(membership) => {
                    let stored = StoredMembership::new(Some(entry.log_id), membership.clone());
                    let bytes = bincode::serialize(&stored).map_err(|e| sm_write_err(*e))?;
                    txn.put(keys::meta(META_MEMBERSHIP), bytes);
                    Reply::default()
                }
            };
            last = Some(entry.log_id);
            replies.push(reply);
        }
        if last.is_some() {
            let bytes = bincode::serialize(&last).map_err(|e| sm_write_err(*e))?;
            txn.put(keys::meta(META_LAST_APPLIED), bytes);
        }
        let chunk_files = txn.take_chunk_files();
        if !chunk_files.writes.is_empty() {
            let chunks = self.chunks.clone();
            let writes = chunk_files.writes;
            tokio::task::spawn_blocking(move || chunks.write_durable(&writes))
                .await
                .map_err(sm_write_err)?
                .map_err(sm_write_err)?;
        }
        self.store.commit(txn).map_err(sm_write_err)?;
        if !chunk_files.deletes.is_empty() {
            self.chunks
                .delete(&chunk_files.deletes)
                .map_err(sm_write_err)?;
        }
        if sent_to_queue {
            self.queue_activity.notify_waiters();
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        let path = self.snapshots_dir.join(RECEIVING_FILE);
        // Read as well as write: install reads the header back from this handle.
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .await
            .map_err(snap_err)?;
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        let _gate = self.gate.lock().await;
        let mut received = snapshot.into_std().await;
        let (store, disk, meta_owned) = (self.store.clone(), self.disk.clone(), meta.clone());
        let chunks = self.chunks.clone();
        let dir = self.snapshots_dir.clone();
        tokio::task::spawn_blocking(move || -> io::Result<()> {
            // Copy from the handle rather than renaming a known path: the handle is
            // whatever openraft passes (normally our receiving file, but not always).
            received.seek(SeekFrom::Start(0))?;
            let header = read_header(&mut received)?;
            if header.last_log_id != meta_owned.last_log_id {
                return Err(io::Error::other(
                    "received snapshot does not match its meta",
                ));
            }
            received.seek(SeekFrom::Start(0))?;
            let installing = dir.join(INSTALLING_FILE);
            let mut copy = std::fs::File::create(&installing)?;
            io::copy(&mut received, &mut copy)?;
            copy.sync_all()?;
            let current = dir.join(CURRENT_FILE);
            durable_rename(&installing, &current)?;
            load_snapshot_file(&store, &disk, &current, &meta_owned)?;
            remove_orphan_chunks(&store, &chunks)?;
            match std::fs::remove_file(dir.join(RECEIVING_FILE)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        })
        .await
        .map_err(snap_err)?
        .map_err(snap_err)?;
        tracing::info!(snapshot = %meta.snapshot_id, "installed snapshot");
        // Still under the gate: entries after the snapshot may name these chunks.
        chunk_fetch::fetch_missing(&self.store, &self.chunks, &meta.last_membership).await;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let path = self.snapshots_dir.join(CURRENT_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let mut file = std::fs::File::open(&path).map_err(sm_read_err)?;
        let meta = read_header(&mut file).map_err(sm_read_err)?;
        file.seek(SeekFrom::Start(0)).map_err(sm_read_err)?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(tokio::fs::File::from_std(file)),
        }))
    }
}
