//! The node's chunk files: object data, one file per BLAKE3-named chunk.
//!
//! Layout: `chunks/<first two hex digits>/<64 hex digits>`. All 256 shard
//! directories are created durably when the store is first opened, so a chunk's
//! directory entry never hangs off a directory a power cut could forget. A chunk is
//! written durably (temp file, fsync, rename, fsync of the directory) before the
//! state machine commits the record that names it, so a committed record always has
//! its file; a chunk found already present still has its directory fsynced, since
//! its writer (a concurrent fetch) may not have got that far. Files are immutable once renamed into place; reads open them directly.
//! Which chunks *should* exist is the state machine's business (`state::chunks`);
//! this module only stores, reads and lists bytes.
//!
//! A chunk pushed by an upload (`raft::chunk_push`) is stored *before* any record
//! names it, so a file no record names is not necessarily garbage: the orphan
//! sweep removes only files older than a grace period, and storing a chunk whose
//! file exists renews the file's modification time. Both run under one lock, so
//! a chunk this node just said it holds is never swept from under that answer.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::chunk_ref::Hash;
use crate::durable;

const TEMP_SUFFIX: &str = ".tmp";

#[derive(Clone, Debug)]
pub struct ChunkStore {
    dir: PathBuf,
    /// Held by the orphan sweep's check-and-delete and by a store's
    /// exists-and-renew (see the module comment).
    sweep: Arc<Mutex<()>>,
}

/// Files and bytes the store holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub chunks: u64,
    pub bytes: u64,
}

/// Where a store rooted at `dir` keeps chunk `hash` (readers outside the node, such
/// as a mount on the same machine, find chunk files by this alone).
pub fn chunk_path(dir: &Path, hash: &Hash) -> PathBuf {
    dir.join(hex::encode(&hash[..1])).join(hex::encode(hash))
}

impl ChunkStore {
    /// Opens `dir`, creating it and its shard directories durably, and removes
    /// temp files an interrupted write left behind.
    pub fn open(dir: &Path) -> io::Result<Self> {
        durable::create_dir_all(dir)?;
        let store = ChunkStore {
            dir: dir.to_path_buf(),
            sweep: Arc::new(Mutex::new(())),
        };
        let mut created = false;
        for first_byte in 0..=u8::MAX {
            let shard = store.dir.join(hex::encode([first_byte]));
            if !shard.is_dir() {
                fs::create_dir(&shard)?;
                durable::sync_dir(&shard)?;
                created = true;
            }
        }
        if created {
            durable::sync_dir(&store.dir)?;
        }
        for shard in store.shards()? {
            for entry in fs::read_dir(&shard)? {
                let path = entry?.path();
                if path.to_string_lossy().ends_with(TEMP_SUFFIX) {
                    fs::remove_file(&path)?;
                }
            }
        }
        Ok(store)
    }

    fn shards(&self) -> io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                out.push(entry.path());
            }
        }
        Ok(out)
    }

    fn shard_dir(&self, hash: &Hash) -> PathBuf {
        self.dir.join(hex::encode(&hash[..1]))
    }

    pub fn path(&self, hash: &Hash) -> PathBuf {
        chunk_path(&self.dir, hash)
    }

    pub fn has(&self, hash: &Hash) -> bool {
        self.path(hash).exists()
    }

    fn sweep_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.sweep.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores one chunk pushed by an upload (its hash checked here: a peer may
    /// send anything), durably, renewing the file's age if it exists.
    pub fn store_pushed(&self, hash: &Hash, data: &[u8]) -> io::Result<()> {
        if data.len() > crate::limits::CHUNK_BYTES_MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a chunk holds at most {} bytes, got {}",
                    crate::limits::CHUNK_BYTES_MAX,
                    data.len()
                ),
            ));
        }
        if blake3::hash(data).as_bytes() != hash {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the chunk's bytes do not match its hash",
            ));
        }
        self.write_durable(&[(*hash, data)])
    }

    /// Writes every chunk not already present, durably: all temp files are written
    /// and fsynced, renamed into place, then each touched directory is fsynced. A
    /// chunk already present has its modification time renewed (the orphan sweep
    /// spares young files).
    pub fn write_durable<D: AsRef<[u8]>>(&self, chunks: &[(Hash, D)]) -> io::Result<()> {
        let mut renames = Vec::new();
        let mut dirs = BTreeSet::new();
        for (hash, data) in chunks {
            let data = data.as_ref();
            let path = self.path(hash);
            if self.renew_if_present(&path)? {
                // Its data was fsynced before its rename; its name may not be yet.
                dirs.insert(self.shard_dir(hash));
                continue;
            }
            // A temp name of its own: a chunk fetched from a peer and the same chunk
            // applied from the log may be written at once; each rename is atomic and
            // both carry the same bytes.
            let temp = path.with_extension(format!("{:016x}{TEMP_SUFFIX}", rand::random::<u64>()));
            let mut file = File::create(&temp)?;
            file.write_all(data)?;
            file.sync_data()?;
            renames.push((temp, path));
        }
        for (temp, path) in renames {
            fs::rename(&temp, &path)?;
            if let Some(dir) = path.parent() {
                dirs.insert(dir.to_path_buf());
            }
        }
        for dir in dirs {
            durable::sync_dir(&dir)?;
        }
        Ok(())
    }

    /// Deletes chunk files; a missing one is not an error. Not synced: a deletion
    /// lost in a crash leaves an orphan that `remove_orphans` finds later.
    pub fn delete(&self, hashes: &[Hash]) -> io::Result<()> {
        for hash in hashes {
            match fs::remove_file(self.path(hash)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// The chunk's bytes, checked against its name. A file whose bytes do not hash
    /// to its name (bit rot, a torn copy, an operator's mistake) is deleted, so the
    /// chunk counts as missing and is fetched again from a peer, and the read fails
    /// with `InvalidData`; damaged bytes are never returned.
    pub fn read(&self, hash: &Hash) -> io::Result<Vec<u8>> {
        let path = self.path(hash);
        let data = fs::read(&path)?;
        if blake3::hash(&data).as_bytes() == hash {
            return Ok(data);
        }
        tracing::error!(file = %path.display(), "chunk file does not match its hash; deleted, to be fetched again from a peer");
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("chunk {} was damaged on disk", hex::encode(hash)),
        ))
    }

    /// Whether `error` (from `read`) means the chunk is not usable here, so a
    /// reader should fetch it from a peer: missing, or found damaged and deleted.
    pub fn is_absent(error: &io::Error) -> bool {
        matches!(
            error.kind(),
            io::ErrorKind::NotFound | io::ErrorKind::InvalidData
        )
    }

    /// Every chunk file's hash (walks the whole store).
    pub fn list(&self) -> io::Result<Vec<Hash>> {
        let mut out = Vec::new();
        for shard in self.shards()? {
            for entry in fs::read_dir(&shard)? {
                let name = entry?.file_name();
                let mut hash = [0u8; 32];
                if hex::decode_to_slice(name.to_string_lossy().as_bytes(), &mut hash).is_ok() {
                    out.push(hash);
                }
            }
        }
        Ok(out)
    }

    /// Deletes the files of chunks GC collected, except those written or renewed
    /// less than `age_min` ago (an upload pushed them again); returns how many it
    /// deleted. Not synced, like `delete`.
    pub fn delete_unrenewed(&self, hashes: &[Hash], age_min: Duration) -> io::Result<u64> {
        let mut deleted = 0;
        for hash in hashes {
            let _sweep = self.sweep_lock();
            match self.age(hash)? {
                Some(age) if age >= age_min => {
                    self.delete(std::slice::from_ref(hash))?;
                    deleted += 1;
                }
                _ => {}
            }
        }
        Ok(deleted)
    }

    /// How long ago the chunk's file was written or renewed; `None` if absent. A
    /// clock set back makes a file look young (kept until a later sweep); one set
    /// forward by more than the grace period makes a renewed file look old.
    fn age(&self, hash: &Hash) -> io::Result<Option<Duration>> {
        let modified = match fs::metadata(self.path(hash)).and_then(|m| m.modified()) {
            Ok(modified) => modified,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(
            SystemTime::now()
                .duration_since(modified)
                .unwrap_or_default(),
        ))
    }

    /// Whether the file at `path` exists; if so its modification time is set to now.
    fn renew_if_present(&self, path: &Path) -> io::Result<bool> {
        let _sweep = self.sweep_lock();
        match File::options().write(true).open(path) {
            Ok(file) => {
                file.set_modified(SystemTime::now())?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes files for which `wanted` is false (chunks the state does not name)
    /// and that were last written or renewed at least `age_min` ago.
    pub fn remove_orphans(
        &self,
        wanted: impl Fn(&Hash) -> io::Result<bool>,
        age_min: Duration,
    ) -> io::Result<u64> {
        let mut removed = 0;
        for hash in self.list()? {
            if wanted(&hash)? {
                continue;
            }
            let _sweep = self.sweep_lock();
            if self.age(&hash)?.is_some_and(|age| age >= age_min) {
                self.delete(&[hash])?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    pub fn usage(&self) -> io::Result<Usage> {
        let mut usage = Usage::default();
        for hash in self.list()? {
            usage.chunks += 1;
            usage.bytes += fs::metadata(self.path(&hash))?.len();
        }
        Ok(usage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_delete_and_orphans() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        let a = (*blake3::hash(b"a").as_bytes(), b"a".to_vec());
        let b = (*blake3::hash(b"bb").as_bytes(), b"bb".to_vec());
        store.write_durable(&[a.clone(), b.clone()]).unwrap();
        store.write_durable(std::slice::from_ref(&a)).unwrap(); // present: skipped
        assert_eq!(store.read(&a.0).unwrap(), b"a");
        assert_eq!(
            store.usage().unwrap(),
            Usage {
                chunks: 2,
                bytes: 3
            }
        );
        // Young orphans stay: an upload may have pushed them before their record.
        let hour = Duration::from_secs(3600);
        assert_eq!(store.remove_orphans(|h| Ok(h == &a.0), hour).unwrap(), 0);
        assert!(store.has(&b.0));
        let removed = store
            .remove_orphans(|h| Ok(h == &a.0), Duration::ZERO)
            .unwrap();
        assert_eq!(removed, 1);
        assert!(store.has(&a.0) && !store.has(&b.0));
        store.delete(&[a.0, b.0]).unwrap();
        assert_eq!(store.usage().unwrap(), Usage::default());
        // A temp file left by a crash is removed at open.
        let shard = dir.path().join("ab");
        fs::create_dir_all(&shard).unwrap();
        fs::write(shard.join("x.tmp"), b"partial").unwrap();
        ChunkStore::open(dir.path()).unwrap();
        assert!(!shard.join("x.tmp").exists());
    }

    #[test]
    fn a_pushed_chunk_is_checked_and_renews_an_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        let hash = *blake3::hash(b"pushed").as_bytes();
        let refused = store.store_pushed(&hash, b"other bytes").unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::InvalidData);
        assert!(!store.has(&hash));
        store.store_pushed(&hash, b"pushed").unwrap();
        let old = SystemTime::now() - Duration::from_secs(7200);
        File::options()
            .write(true)
            .open(store.path(&hash))
            .unwrap()
            .set_modified(old)
            .unwrap();
        // Pushed again (a retried upload): the old orphan becomes young again.
        store.store_pushed(&hash, b"pushed").unwrap();
        let hour = Duration::from_secs(3600);
        assert_eq!(store.remove_orphans(|_| Ok(false), hour).unwrap(), 0);
        assert_eq!(store.read(&hash).unwrap(), b"pushed");
    }

    #[test]
    fn concurrent_writers_of_one_chunk_both_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        let chunk = (*blake3::hash(b"same").as_bytes(), b"same".to_vec());
        let writers: Vec<_> = (0..4)
            .map(|_| {
                let (store, chunk) = (store.clone(), chunk.clone());
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        store.write_durable(std::slice::from_ref(&chunk)).unwrap();
                        store.delete(&[chunk.0]).unwrap();
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        store.write_durable(std::slice::from_ref(&chunk)).unwrap();
        assert_eq!(store.read(&chunk.0).unwrap(), b"same");
    }

    #[test]
    fn a_damaged_file_is_never_returned_and_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        let chunk = (
            *blake3::hash(b"good bytes").as_bytes(),
            b"good bytes".to_vec(),
        );
        store.write_durable(std::slice::from_ref(&chunk)).unwrap();
        fs::write(store.path(&chunk.0), b"good byteS").unwrap();
        let error = store.read(&chunk.0).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(ChunkStore::is_absent(&error));
        assert!(!store.has(&chunk.0), "the damaged file is gone");
    }
}
