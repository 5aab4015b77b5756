//! The node's sled database (the state machine) and the only way to make its
//! writes durable.
//!
//! sled 0.34's `flush` writes its buffers with `sync_file_range`, which neither
//! flushes the device cache nor syncs metadata, so [`Disk::sync`] follows every
//! flush with an `fdatasync` of the database file. The Raft log lives beside it in
//! its own write-ahead log (`raft::wal`); apply does not sync sled, and the log is
//! purged only after a sync (see `raft::log_store`).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// sled's page cache; bounds the node's memory for storage (sled's default is 1 GiB).
const CACHE_BYTES_MAX: u64 = 128 * 1024 * 1024;
/// Segment size: sled moves any value above a quarter of it into a separate blob file
/// that it never fsyncs, so keep it large enough for our biggest records. Must be a
/// power of two (sled's rule).
const SEGMENT_BYTES: usize = 16 * 1024 * 1024;
const _: () = assert!(crate::limits::BATCH_BYTES_MAX <= SEGMENT_BYTES / 4);

#[derive(Clone)]
pub struct Disk {
    pub db: sled::Db,
    db_file: Arc<File>,
    dir: PathBuf,
}

impl Disk {
    pub fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let sled_dir = dir.join("sled");
        let db = sled::Config::new()
            .path(&sled_dir)
            .cache_capacity(CACHE_BYTES_MAX)
            .segment_size(SEGMENT_BYTES)
            .open()
            .map_err(io::Error::other)?;
        let db_file = File::open(sled_dir.join("db"))?;
        Ok(Disk {
            db,
            db_file: Arc::new(db_file),
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes every write made so far durable: sled flush, then fsync.
    pub async fn sync(&self) -> io::Result<()> {
        self.db.flush_async().await.map_err(io::Error::other)?;
        let file = self.db_file.clone();
        tokio::task::spawn_blocking(move || file.sync_data())
            .await
            .map_err(io::Error::other)?
    }

    /// [`Disk::sync`] for callers already on a blocking thread.
    pub fn sync_blocking(&self) -> io::Result<()> {
        self.db.flush().map_err(io::Error::other)?;
        self.db_file.sync_data()
    }
}
