//! openraft's state-machine traits over `crate::state::Store`, plus snapshot files.
//!
//! Apply writes an entry batch's data, sessions, `last_applied` and membership in one
//! atomic sled batch. It does not fsync: the entries are already durable in the log,
//! and a restart re-applies whatever sled lost (apply is deterministic). The log is
//! only purged behind a synced state (see `log_store::purge`).
//!
//! A snapshot is one file, `snapshots/current.snap`, in the `state::snapshot`
//! format (header = the openraft `SnapshotMeta`, records, a trailer with count and
//! checksum). Building and installing take the apply gate, so a snapshot is a
//! point-in-time view and never races an apply. A received snapshot is written to
//! an anonymous file (one per transfer, nothing to clean up after a crash);
//! installing verifies it, makes a copy durably current, raises the
//! `SnapshotFloor` (only now may the log be purged past it), then loads it; a node
//! that crashes mid-install reloads it at start (`recover`). The current file is
//! verified again before it is sent to a follower and at start.
//!
//! Chunk files (object data) live beside the tree in `chunkstore`. Apply writes the
//! files a batch stages durably before committing the batch and deletes collected
//! ones after. A snapshot carries the chunk *records*, not their data: installing
//! one deletes local chunks it does not name and fetches the ones this node lacks
//! from the snapshot's members (`chunk_fetch`), so a rejoining node copies only what
//! it is missing; chunks no member could give it yet are handed to the node's
//! repair worker (`chunks_wanted`), which keeps fetching until none is missing.

use std::io::{self, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use tokio::sync::Mutex;

use super::chunk_fetch;
use super::log_store::LogGrowth;
use super::snapshot_floor::SnapshotFloor;
use super::types::{
    Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use crate::chunkstore::ChunkStore;
use crate::crash_point::{self, names};
use crate::disk::Disk;
use crate::durable;
use crate::state::{keys, snapshot, Reply, Store};

const META_LAST_APPLIED: &str = "raft_last_applied";
const META_MEMBERSHIP: &str = "raft_membership";
const CURRENT_FILE: &str = "current.snap";
/// Where a `current.snap` that failed verification is moved (kept for inspection).
const DAMAGED_FILE: &str = "current.snap.damaged";
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
    /// Raised once a snapshot is durably current (bounds log purges).
    floor: SnapshotFloor,
    /// Signalled when an install left chunks this node still has to fetch.
    chunks_wanted: Arc<tokio::sync::Notify>,
    /// How chunks are fetched from peers after an install.
    peer_tls: tonic::transport::ClientTlsConfig,
    /// Unnamed chunk files younger than this are kept (`remove_orphan_chunks`).
    orphan_age_min: std::time::Duration,
    /// Held exclusively while an install reloads the tree (when it names fewer
    /// chunks than it will), shared by the orphan sweep.
    reloading: Arc<std::sync::RwLock<()>>,
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
    pub fn open(
        disk: Disk,
        growth: Arc<LogGrowth>,
        floor: SnapshotFloor,
        peer_tls: tonic::transport::ClientTlsConfig,
        chunk_gc_grace_ms: u64,
    ) -> io::Result<Self> {
        let snapshots_dir = disk.dir().join("snapshots");
        durable::create_dir_all(&snapshots_dir)?;
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
            floor,
            chunks_wanted: Arc::new(tokio::sync::Notify::new()),
            peer_tls,
            orphan_age_min: std::time::Duration::from_millis(chunk_gc_grace_ms),
            reloading: Arc::new(std::sync::RwLock::new(())),
        };
        sm.recover()?;
        Ok(sm)
    }

    pub fn queue_activity(&self) -> Arc<tokio::sync::Notify> {
        self.queue_activity.clone()
    }

    /// Signalled whenever chunk files the state names may be missing here.
    pub fn chunks_wanted(&self) -> Arc<tokio::sync::Notify> {
        self.chunks_wanted.clone()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn chunks(&self) -> &ChunkStore {
        &self.chunks
    }

    /// Deletes chunk files no record names that are at least `age_min` old (not
    /// while an install reloads the tree).
    pub async fn sweep_orphans(&self, age_min: std::time::Duration) -> io::Result<()> {
        let (store, chunks, reloading) = (
            self.store.clone(),
            self.chunks.clone(),
            self.reloading.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let _not_reloading = reloading.read().unwrap_or_else(|e| e.into_inner());
            remove_orphan_chunks(&store, &chunks, age_min)
        })
        .await
        .map_err(io::Error::other)?
    }

    /// Copies the whole state tree, as of one applied index, into an anonymous
    /// file in `snapshots/` (gone when closed, or after a crash). Applies wait
    /// meanwhile, as while a snapshot is built: the copy is a local sequential
    /// write of the tree without its chunk data, and without an fsync.
    pub async fn spool_state(&self) -> io::Result<SpooledState> {
        let _gate = self.gate.lock().await;
        let started = std::time::Instant::now();
        let applied = self.last_applied()?;
        let membership = self.meta(META_MEMBERSHIP)?.unwrap_or_default();
        let (store, dir) = (self.store.clone(), self.snapshots_dir.clone());
        let file = tokio::task::spawn_blocking(move || -> io::Result<std::fs::File> {
            let mut file = tempfile::tempfile_in(dir)?;
            snapshot::dump(store.tree(), b"", &mut file)?;
            file.seek(SeekFrom::Start(0))?;
            Ok(file)
        })
        .await
        .map_err(io::Error::other)??;
        let gate_held_ms = started.elapsed().as_millis() as u64;
        tracing::info!(applied = ?applied, gate_held_ms, "copied the state for a backup");
        Ok(SpooledState {
            applied,
            membership,
            file,
        })
    }

    fn meta<T: serde::de::DeserializeOwned>(&self, name: &str) -> io::Result<Option<T>> {
        match self.store.meta(name).map_err(io::Error::other)? {
            Some(bytes) => crate::codec::decode_disk(&bytes)
                .map(Some)
                .map_err(io::Error::other),
            None => Ok(None),
        }
    }

    fn last_applied(&self) -> io::Result<Option<LogId>> {
        Ok(self.meta::<Option<LogId>>(META_LAST_APPLIED)?.flatten())
    }

    /// At start: checks `current.snap`, raises the floor to it and finishes an
    /// install that a crash interrupted (the snapshot is newer than what the tree
    /// says it has applied). A damaged snapshot the tree does not need any more is
    /// set aside; one it needs stops the node with a message naming the file.
    /// Also deletes chunk files no record names (deletions a crash lost).
    fn recover(&self) -> io::Result<()> {
        for leftover in [BUILDING_FILE, INSTALLING_FILE] {
            durable::remove_file(&self.snapshots_dir.join(leftover))?;
        }
        let path = self.snapshots_dir.join(CURRENT_FILE);
        let applied = self.last_applied()?;
        if path.exists() {
            match verify_file(&path) {
                Ok(meta) => {
                    self.floor.raise(meta.last_log_id.map(|id| id.index));
                    if meta.last_log_id > applied {
                        tracing::warn!(snapshot = ?meta.last_log_id, "reloading a snapshot whose install was interrupted");
                        load_snapshot_file(&self.store, &self.disk, &path, &meta)?;
                    }
                }
                Err(e) => {
                    let header = std::fs::File::open(&path)
                        .and_then(|f| decode_meta(&snapshot::read_header(f)?));
                    let needed = header.as_ref().map_or(true, |m| m.last_log_id > applied);
                    if needed {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!(
                                "{} is damaged ({e}) and the state machine (applied {applied:?}) needs it; \
                                 refusing to start: remove this node's data directory and re-add it to the cluster",
                                path.display()
                            ),
                        ));
                    }
                    tracing::error!(file = %path.display(), error = %e, "a damaged snapshot this node no longer needs is set aside; a new one is built when needed");
                    durable::rename(&path, &self.snapshots_dir.join(DAMAGED_FILE))?;
                }
            }
        }
        remove_orphan_chunks(&self.store, &self.chunks, self.orphan_age_min)?;
        Ok(())
    }
}

fn decode_meta(header: &[u8]) -> io::Result<SnapshotMeta> {
    crate::codec::decode_disk(header).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unreadable snapshot meta: {e}"),
        )
    })
}

/// Reads the whole snapshot file at `path`, checks its trailer; returns its meta.
fn verify_file(path: &Path) -> io::Result<SnapshotMeta> {
    let (header, _records) = snapshot::verify(std::fs::File::open(path)?)?;
    decode_meta(&header)
}

/// Replaces the state with the snapshot at `path` and makes it durable.
fn load_snapshot_file(
    store: &Store,
    disk: &Disk,
    path: &Path,
    meta: &SnapshotMeta,
) -> io::Result<()> {
    let file = std::fs::File::open(path)?;
    // The raft metadata is written only after every record: until then the tree
    // does not claim to hold the snapshot, and `recover` reloads it after a crash.
    let raft_keys = [keys::meta(META_LAST_APPLIED), keys::meta(META_MEMBERSHIP)];
    snapshot::load(store.tree(), file, |key| {
        raft_keys.iter().any(|k| k.as_slice() == key)
    })?;
    write_raft_keys(store.tree(), meta)?;
    disk.sync_blocking()
}

/// Records in the tree that it holds the state as of `meta`: last applied, membership.
fn write_raft_keys(tree: &sled::Tree, meta: &SnapshotMeta) -> io::Result<()> {
    let last_applied = bincode::serialize(&meta.last_log_id).map_err(io::Error::other)?;
    let membership = bincode::serialize(&meta.last_membership).map_err(io::Error::other)?;
    tree.insert(keys::meta(META_LAST_APPLIED), last_applied)
        .map_err(io::Error::other)?;
    tree.insert(keys::meta(META_MEMBERSHIP), membership)
        .map_err(io::Error::other)?;
    Ok(())
}

/// Whether `key` is one of the Raft layer's own records in the state tree (the
/// log position and membership it reflects), which a backup does not carry.
pub fn is_raft_key(key: &[u8]) -> bool {
    [META_LAST_APPLIED, META_MEMBERSHIP]
        .iter()
        .any(|name| keys::meta(name) == key)
}

/// Finishes a data directory whose state tree a restore filled (`raft::restore`):
/// records `meta` in the tree, syncs it, and writes `snapshots/current.snap` of
/// the whole tree, so the directory is exactly what a node holds right after it
/// installed a snapshot at `meta` (its log is then purged up to it).
pub fn seed_restored(disk: &Disk, meta: &SnapshotMeta) -> io::Result<()> {
    let store = Store::open(&disk.db).map_err(io::Error::other)?;
    write_raft_keys(store.tree(), meta)?;
    disk.sync_blocking()?;
    let dir = disk.dir().join("snapshots");
    durable::create_dir_all(&dir)?;
    let building = dir.join(BUILDING_FILE);
    let header = bincode::serialize(meta).map_err(io::Error::other)?;
    let mut file = std::fs::File::create(&building)?;
    snapshot::dump(store.tree(), &header, &mut file)?;
    file.sync_all()?;
    durable::rename(&building, &dir.join(CURRENT_FILE))
}

/// A point-in-time copy of the state tree in an anonymous file (snapshot format,
/// empty header), with the log position and membership it reflects.
pub struct SpooledState {
    pub applied: Option<LogId>,
    pub membership: StoredMembership,
    pub file: std::fs::File,
}

/// Deletes chunk files the state does not name and that are older than
/// `age_min`: an upload stores a chunk on its members before the record naming it
/// commits, and apply writes a logged chunk's file before committing its record,
/// so a young unnamed file may be about to be named.
fn remove_orphan_chunks(
    store: &Store,
    chunks: &ChunkStore,
    age_min: std::time::Duration,
) -> io::Result<()> {
    let tree = store.tree().clone();
    let removed = chunks.remove_orphans(
        |hash| {
            tree.contains_key(keys::chunk(hash))
                .map_err(io::Error::other)
        },
        age_min,
    )?;
    if removed > 0 {
        tracing::info!(removed, "deleted chunk files no object names");
    }
    Ok(())
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
        let started = std::time::Instant::now();
        let (records, bytes) = tokio::task::spawn_blocking(move || -> io::Result<(u64, u64)> {
            // The state must be on disk before the snapshot lets the log be purged.
            disk.sync_blocking()?;
            let header = bincode::serialize(&header).map_err(io::Error::other)?;
            let mut file = std::fs::File::create(&building)?;
            let records = snapshot::dump(store.tree(), &header, &mut file)?;
            file.sync_all()?;
            let bytes = file.metadata()?.len();
            durable::rename(&building, &current)?;
            crate::disk::release_free_memory();
            Ok((records, bytes))
        })
        .await
        .map_err(snap_err)?
        .map_err(snap_err)?;
        self.floor.raise(meta.last_log_id.map(|id| id.index));
        self.growth.bytes.store(0, Ordering::Relaxed);
        self.growth.entries.store(0, Ordering::Relaxed);
        let file = tokio::fs::File::open(self.snapshots_dir.join(CURRENT_FILE))
            .await
            .map_err(snap_err)?;
        let build_ms = started.elapsed().as_millis() as u64;
        tracing::info!(snapshot = %meta.snapshot_id, records, bytes, build_ms, "built snapshot");
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
                    sent_to_queue |= request
                        .commands
                        .iter()
                        .any(|c| c.command.wakes_queue_receivers());
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
            // Window: chunk files on disk that no committed record names yet (the
            // orphan sweep at start removes them; the log re-applies the batch).
            crash_point::crash_here(names::APPLY_AFTER_CHUNK_FILES);
        }
        self.store.commit(txn).map_err(sm_write_err)?;
        if !chunk_files.deletes.is_empty() {
            // A file an upload's push renewed within half a grace period is about
            // to be named again (`chunk_push`): kept, and swept as an orphan later
            // if that upload never commits. Half: a chunk never referenced was
            // written when it was staged, a full grace period before its GC.
            let deleted = self
                .chunks
                .delete_unrenewed(&chunk_files.deletes, self.orphan_age_min / 2)
                .map_err(sm_write_err)?;
            crate::metrics::global().chunk_files_deleted.inc_by(deleted);
        }
        if chunk_files
            .expected
            .iter()
            .any(|hash| !self.chunks.has(hash))
        {
            // This node missed the push: the repair worker fetches the chunk.
            self.chunks_wanted.notify_one();
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
        // An anonymous file of its own per transfer: two overlapping transfers never
        // share bytes, and a crash leaves nothing behind. Read as well as write:
        // install reads it back from this handle.
        let dir = self.snapshots_dir.clone();
        let file = tokio::task::spawn_blocking(move || tempfile::tempfile_in(dir))
            .await
            .map_err(snap_err)?
            .map_err(snap_err)?;
        Ok(Box::new(tokio::fs::File::from_std(file)))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        let _gate = self.gate.lock().await;
        let started = std::time::Instant::now();
        tracing::info!(snapshot = %meta.snapshot_id, "installing snapshot");
        let mut received = snapshot.into_std().await;
        let (store, disk, meta_owned) = (self.store.clone(), self.disk.clone(), meta.clone());
        let (chunks, floor) = (self.chunks.clone(), self.floor.clone());
        let dir = self.snapshots_dir.clone();
        let (orphan_age_min, reloading) = (self.orphan_age_min, self.reloading.clone());
        tokio::task::spawn_blocking(move || -> io::Result<()> {
            let _reloading = reloading.write().unwrap_or_else(|e| e.into_inner());
            // Copy from the handle rather than renaming a known path: the handle is
            // whatever openraft passes (normally our anonymous receiving file).
            received.seek(SeekFrom::Start(0))?;
            let (header, _records) = snapshot::verify(&mut received)
                .map_err(|e| io::Error::new(e.kind(), format!("received snapshot: {e}")))?;
            if decode_meta(&header)?.last_log_id != meta_owned.last_log_id {
                return Err(io::Error::other(
                    "received snapshot does not match its meta",
                ));
            }
            received.seek(SeekFrom::Start(0))?;
            let installing = dir.join(INSTALLING_FILE);
            let mut copy = std::fs::File::create(&installing)?;
            io::copy(&mut received, &mut copy)?;
            copy.sync_all()?;
            // Window: the log may already be purged up to this snapshot in
            // openraft's view, but the snapshot is not durable yet.
            crash_point::crash_here(names::INSTALL_BEFORE_RENAME);
            let current = dir.join(CURRENT_FILE);
            durable::rename(&installing, &current)?;
            floor.raise(meta_owned.last_log_id.map(|id| id.index));
            load_snapshot_file(&store, &disk, &current, &meta_owned)?;
            crate::disk::release_free_memory();
            remove_orphan_chunks(&store, &chunks, orphan_age_min)
        })
        .await
        .map_err(snap_err)?
        .map_err(snap_err)?;
        let install_ms = started.elapsed().as_millis() as u64;
        tracing::info!(snapshot = %meta.snapshot_id, install_ms, "installed snapshot");
        // Still under the gate: entries after the snapshot may name these chunks.
        let missing = chunk_fetch::fetch_missing(
            &self.store,
            &self.chunks,
            &meta.last_membership,
            &self.peer_tls,
        )
        .await;
        if missing > 0 {
            tracing::warn!(
                missing,
                "chunks still missing after the install; the repair worker keeps fetching them"
            );
            self.chunks_wanted.notify_one();
        }
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let path = self.snapshots_dir.join(CURRENT_FILE);
        // Only the open needs the gate (a build or install renames over the path);
        // the handle keeps this snapshot's bytes, so the check does not hold up apply.
        let opened = {
            let _gate = self.gate.lock().await;
            match std::fs::File::open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(sm_read_err(e)),
            }
        };
        let checked = tokio::task::spawn_blocking(move || {
            let mut file = opened;
            let checked = snapshot::verify(&mut file).and_then(|(header, _)| decode_meta(&header));
            file.seek(SeekFrom::Start(0)).map(|_| (checked, file))
        })
        .await
        .map_err(sm_read_err)?
        .map_err(sm_read_err)?;
        match checked {
            (Ok(meta), file) => Ok(Some(Snapshot {
                meta,
                snapshot: Box::new(tokio::fs::File::from_std(file)),
            })),
            (Err(e), file) => {
                // Never send a damaged snapshot; openraft builds a new one. Set it
                // aside unless a newer snapshot replaced it meanwhile.
                let _gate = self.gate.lock().await;
                use std::os::unix::fs::MetadataExt;
                let same = |f: &std::fs::File| -> io::Result<bool> {
                    Ok(std::fs::metadata(&path)?.ino() == f.metadata()?.ino())
                };
                if same(&file).unwrap_or(false) {
                    tracing::error!(file = %path.display(), error = %e, "current snapshot is damaged; set aside, not sent");
                    durable::rename(&path, &self.snapshots_dir.join(DAMAGED_FILE))
                        .map_err(sm_read_err)?;
                }
                Ok(None)
            }
        }
    }
}
