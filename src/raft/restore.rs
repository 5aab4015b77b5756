//! Restoring a backup file into a new data directory, offline (no node runs).
//!
//! The directory becomes a single-node cluster whose state is the backup's, as
//! if that node had just installed a snapshot at the backup's log position: the
//! state tree and the chunk files, `snapshots/current.snap` of that state, the
//! membership of this one node (a voter), and a log purged up to that position
//! with the backup's term as vote. So its next entries follow the backup's log
//! index (versions keep growing) and, started with `cairn server`, it elects
//! itself in a later term and serves; it grows like any cluster (add-learner,
//! promote), the learners receiving that snapshot and fetching its chunks.
//!
//! Order: the target must be absent or an empty directory; the whole file is
//! verified; only then is anything written, into a staging directory beside
//! the target, which is renamed into place (durably) once complete and synced.
//! A failure at any step removes the staging directory: the target is never
//! left half-restored.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use openraft::{CommittedLeaderId, Membership};

use super::chunk_fetch;
use super::log_store;
use super::sm_adapter;
use super::types::{LogId, NodeAddr, NodeId, SnapshotMeta, StoredMembership, Vote};
use crate::chunkstore::ChunkStore;
use crate::disk::Disk;
use crate::durable;
use crate::limits::SNAPSHOT_INSTALL_BATCH_RECORDS;
use crate::state::backup::{self, Item, Manifest, Summary};
use crate::state::Store;

/// Where and as whom a backup is restored.
#[derive(Debug, Clone)]
pub struct RestoreTarget {
    pub data_dir: PathBuf,
    /// The restored cluster's only member.
    pub node_id: NodeId,
    /// Where that node will listen (stored in the membership, as at bootstrap).
    pub addr: NodeAddr,
}

/// Checks the whole file; an error names what is wrong.
pub fn verify_file(file: &Path) -> anyhow::Result<Summary> {
    let input = File::open(file).with_context(|| format!("opening {}", file.display()))?;
    backup::verify(input).with_context(|| format!("{} is not a usable backup", file.display()))
}

/// Restores `file` into `target` (see the module doc); returns what it held.
pub fn restore(file: &Path, target: &RestoreTarget) -> anyhow::Result<Summary> {
    anyhow::ensure!(target.node_id > 0, "the node id must be 1 or more");
    let data_dir = std::path::absolute(&target.data_dir)
        .with_context(|| format!("resolving {}", target.data_dir.display()))?;
    refuse_used(&data_dir)?;
    let summary = verify_file(file)?;
    let staging = staging_dir(&data_dir)?;
    let seeded = seed(file, &staging, target, &summary.manifest);
    if let Err(e) = seeded.and_then(|()| {
        durable::rename(&staging, &data_dir)
            .with_context(|| format!("moving the restored data to {}", data_dir.display()))
    }) {
        if let Err(cleanup) = fs::remove_dir_all(&staging) {
            tracing::warn!(dir = %staging.display(), error = %cleanup, "could not remove the staging directory");
        }
        return Err(e);
    }
    Ok(summary)
}

/// Refuses a target that exists and is not an empty directory.
fn refuse_used(dir: &Path) -> anyhow::Result<()> {
    match fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{} is not empty: restore only into a new or empty directory",
                    dir.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("checking {}", dir.display())),
    }
}

/// A new directory beside `dir` (an absolute path), on the same file system, so
/// that the final rename is atomic.
fn staging_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    let (Some(name), Some(parent)) = (dir.file_name(), dir.parent()) else {
        bail!("{} names no directory to restore into", dir.display());
    };
    let name = name.to_string_lossy().into_owned();
    durable::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let staging = parent.join(format!(".{name}.restoring-{:08x}", rand::random::<u32>()));
    fs::create_dir(&staging).with_context(|| format!("creating {}", staging.display()))?;
    Ok(staging)
}

/// The snapshot meta the restored directory holds: the backup's log position,
/// with this node as the only member.
fn restored_meta(manifest: &Manifest, target: &RestoreTarget) -> SnapshotMeta {
    let applied = manifest.applied;
    let last = LogId::new(
        CommittedLeaderId::new(applied.term, applied.leader_node_id),
        applied.index,
    );
    let membership = Membership::new(
        vec![BTreeSet::from([target.node_id])],
        BTreeMap::from([(target.node_id, target.addr.clone())]),
    );
    SnapshotMeta {
        last_log_id: Some(last),
        last_membership: StoredMembership::new(Some(last), membership),
        snapshot_id: format!("restored-{}-{:08x}", applied.index, rand::random::<u32>()),
    }
}

fn seed(
    file: &Path,
    staging: &Path,
    target: &RestoreTarget,
    manifest: &Manifest,
) -> anyhow::Result<()> {
    let disk = Disk::open(staging).context("creating the state database")?;
    let store = Store::open(&disk.db).context("opening the state tree")?;
    let chunks = ChunkStore::open(&staging.join("chunks")).context("creating the chunk store")?;
    load(file, &store, &chunks, manifest)?;
    let missing = chunk_fetch::count_missing(&store, &chunks);
    anyhow::ensure!(
        missing == 0,
        "{missing} chunks the state names were not restored"
    );
    let meta = restored_meta(manifest, target);
    sm_adapter::seed_restored(&disk, &meta).context("writing the restored snapshot")?;
    let last = meta.last_log_id.expect("restored_meta sets it");
    // The backup's term: the node's first election is in a later one, so its
    // entries follow the backup's in term order as well as in index order.
    let vote = Vote::new(manifest.applied.term, target.node_id);
    log_store::seed(staging, vote, last).context("writing the Raft log")?;
    disk.sync_blocking().context("syncing the state database")?;
    drop((store, disk));
    durable::sync_dir(staging).context("syncing the restored directory")?;
    Ok(())
}

/// Loads every record and chunk of `file`, checking it again on the way.
fn load(
    file: &Path,
    store: &Store,
    chunks: &ChunkStore,
    manifest: &Manifest,
) -> anyhow::Result<()> {
    let input = File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let mut reader = backup::Reader::open(input)?;
    anyhow::ensure!(
        reader.manifest() == manifest,
        "{} changed while it was being restored",
        file.display()
    );
    let tree = store.tree();
    let mut batch = sled::Batch::default();
    let mut in_batch = 0usize;
    let in_file = |e: std::io::Error| anyhow::anyhow!("{}: {e}", file.display());
    while let Some(item) = reader.next_item().map_err(in_file)? {
        match item {
            Item::Record { key, value } => {
                batch.insert(key, value);
                in_batch += 1;
                if in_batch == SNAPSHOT_INSTALL_BATCH_RECORDS {
                    tree.apply_batch(std::mem::take(&mut batch))?;
                    crate::disk::reclaim_retired(in_batch);
                    in_batch = 0;
                }
            }
            Item::Chunk { hash, data } => {
                if in_batch > 0 {
                    tree.apply_batch(std::mem::take(&mut batch))?;
                    crate::disk::reclaim_retired(in_batch);
                    in_batch = 0;
                }
                chunks
                    .write_durable(&[(hash, data)])
                    .context("writing a chunk file")?;
            }
        }
    }
    tree.apply_batch(batch)?;
    crate::disk::reclaim_retired(in_batch);
    Ok(())
}
