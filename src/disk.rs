//! The node's sled database (the state machine) and the only way to make its
//! writes durable.
//!
//! sled 0.34's `flush` writes its buffers with `sync_file_range`, which neither
//! flushes the device cache nor syncs metadata, so [`Disk::sync`] follows every
//! flush with an `fdatasync` of the database file. sled also moves any serialized
//! page larger than a quarter of its segment size into a file of its own under
//! `sled/blobs/` that it never fsyncs. The threshold (4 MiB here) applies to a
//! whole page, and a B-tree leaf holds up to 16 values. Measured
//! (`blob_files_of_large_adjacent_values_are_made_durable` and a probe of other
//! patterns): 256 KiB values on adjacent keys, inserted, overwritten or batched,
//! made no blob file; 1 MiB values on adjacent keys (the configurable KV value
//! ceiling; large object manifests come close) made 15 for 64 keys written 4
//! times; a single value over 4 MiB always does. So `sync` also fsyncs every blob
//! file it has not synced before, and the blob directory. The Raft log lives beside it in its own write-ahead log
//! (`raft::wal`); apply does not sync sled, and the log is purged only after a sync
//! (see `raft::log_store`).

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::durable;
use crate::metrics::{self, FsyncFile};

/// sled's page cache; bounds the node's memory for storage (sled's default is 1 GiB).
const CACHE_BYTES_MAX: u64 = 128 * 1024 * 1024;
/// Segment size: sled writes any page above a quarter of it to a separate blob
/// file (which `sync` fsyncs). Must be a power of two (sled's rule).
const SEGMENT_BYTES: usize = 16 * 1024 * 1024;
const _: () = assert!(crate::limits::BATCH_BYTES_MAX <= SEGMENT_BYTES / 4);

/// Writes per round of epoch collection in [`reclaim_retired`]: a sled write
/// retires a few objects (the node version it replaced, now and then a write
/// buffer), and a round frees up to 8 bags of 64, so 16 writes a round leaves a
/// wide margin.
const RECLAIM_WRITES_PER_ROUND: usize = 16;
/// Most rounds one call runs (a batch of `SNAPSHOT_INSTALL_BATCH_RECORDS`).
const RECLAIM_ROUNDS_MAX: usize = 64;

/// Frees what sled has retired so far, after a batch of `writes` writes. sled 0.34
/// does not free a replaced version of a tree node, an evicted page or a sealed
/// write buffer (16 MiB here) itself: it hands them to `crossbeam-epoch`'s global
/// collector, which frees at most 8 bags of 64 objects each time a thread's pin
/// count reaches a multiple of 128. `apply_batch` pins once per batch, however
/// large, so a bulk load retires far more than that frees. Measured on a 1 M-key
/// install (256-byte values, cluster/bench-growth.sh): the learner held 1.7 GB,
/// nearly all of it retired node versions and write buffers (heaptrack). Each
/// round here pins afresh and flushes, so the epoch can advance between rounds
/// and the expired bags are freed.
pub fn reclaim_retired(writes: usize) {
    let rounds = writes
        .div_ceil(RECLAIM_WRITES_PER_ROUND)
        .clamp(1, RECLAIM_ROUNDS_MAX);
    for _ in 0..rounds {
        crossbeam_epoch::pin().flush();
    }
}

/// Hands the allocator's free pages back to the system (glibc's `malloc_trim`):
/// after a pass over the whole tree (a snapshot built or installed) the memory
/// sled paged in and out is free again but scattered over glibc's per-thread
/// arenas, which keep it. Measured on a 1 M-key node (cluster/bench-growth.sh):
/// each snapshot build left RSS about 150 MiB higher with a live heap of under
/// 300 MiB (heaptrack). A no-op with other C libraries.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory of the allocator to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[derive(Clone)]
pub struct Disk {
    pub db: sled::Db,
    db_file: Arc<File>,
    dir: PathBuf,
    /// Blob files already fsynced (sled never rewrites one; it deletes them).
    synced_blobs: Arc<Mutex<HashSet<std::ffi::OsString>>>,
}

impl Disk {
    pub fn open(dir: &Path) -> io::Result<Self> {
        let sled_dir = dir.join("sled");
        durable::create_dir_all(&sled_dir)?;
        let db = sled::Config::new()
            .path(&sled_dir)
            .cache_capacity(CACHE_BYTES_MAX)
            .segment_size(SEGMENT_BYTES)
            .open()
            .map_err(io::Error::other)?;
        let db_file = File::open(sled_dir.join("db"))?;
        // sled creates `db`, `conf` and `blobs/` without syncing their names.
        for name in ["conf", "db"] {
            File::open(sled_dir.join(name))?.sync_all()?;
        }
        let blobs = sled_dir.join("blobs");
        if blobs.is_dir() {
            durable::sync_dir(&blobs)?;
        }
        durable::sync_dir(&sled_dir)?;
        let disk = Disk {
            db,
            db_file: Arc::new(db_file),
            dir: dir.to_path_buf(),
            synced_blobs: Arc::new(Mutex::new(HashSet::new())),
        };
        disk.sync_blobs()?;
        Ok(disk)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes every write made so far durable: sled flush, then fsync of the
    /// database file and of any new blob file.
    pub async fn sync(&self) -> io::Result<()> {
        let started = Instant::now();
        self.db.flush_async().await.map_err(io::Error::other)?;
        let disk = self.clone();
        tokio::task::spawn_blocking(move || {
            disk.db_file.sync_data()?;
            disk.sync_blobs()?;
            metrics::global().record_fsync(FsyncFile::StateDb, started.elapsed());
            Ok(())
        })
        .await
        .map_err(io::Error::other)?
    }

    /// [`Disk::sync`] for callers already on a blocking thread.
    pub fn sync_blocking(&self) -> io::Result<()> {
        let started = Instant::now();
        self.db.flush().map_err(io::Error::other)?;
        self.db_file.sync_data()?;
        self.sync_blobs()?;
        metrics::global().record_fsync(FsyncFile::StateDb, started.elapsed());
        Ok(())
    }

    /// fsyncs blob files not synced before, then their directory.
    fn sync_blobs(&self) -> io::Result<()> {
        let dir = self.dir.join("sled").join("blobs");
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut synced = self.synced_blobs.lock().expect("never poisoned");
        let mut present = HashSet::new();
        let mut new = 0usize;
        for entry in entries {
            let name = entry?.file_name();
            if !synced.contains(&name) {
                match File::open(dir.join(&name)) {
                    Ok(file) => file.sync_data()?,
                    // sled collected it meanwhile.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
                new += 1;
            }
            present.insert(name);
        }
        if new > 0 {
            durable::sync_dir(&dir)?;
        }
        *synced = present;
        Ok(())
    }

    /// How many blob files sled holds now.
    pub fn blob_files(&self) -> io::Result<usize> {
        match std::fs::read_dir(self.dir.join("sled").join("blobs")) {
            Ok(entries) => Ok(entries.count()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values of the configurable KV ceiling (1 MiB) on adjacent keys, overwritten,
    /// make sled write blob files: a leaf page holds up to 16 of them. `sync` must
    /// make every one durable, which this checks by the set of files it synced.
    #[test]
    fn blob_files_of_large_adjacent_values_are_made_durable() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::open(dir.path()).unwrap();
        let value = vec![0x5au8; crate::limits::KV_ENTRY_BYTES_CEILING as usize];
        // One leaf holds up to 16 of them; overwrites make sled consolidate the
        // leaf into one page of over 4 MiB.
        for round in 0..4u8 {
            for i in 0..64u32 {
                let mut v = value.clone();
                v[0] = round;
                disk.db.insert(i.to_be_bytes(), v).unwrap();
            }
        }
        disk.sync_blocking().unwrap();
        let blobs = disk.blob_files().unwrap();
        assert!(
            blobs > 0,
            "expected sled to write blob files for 64 x 1 MiB adjacent values"
        );
        let synced = disk.synced_blobs.lock().unwrap().len();
        assert_eq!(synced, blobs, "every blob file is fsynced by sync");
        for i in 0..64u32 {
            let got = disk.db.get(i.to_be_bytes()).unwrap().unwrap();
            assert_eq!((got.len(), got[0]), (value.len(), 3));
        }
    }
}
