//! The mount's content-addressed chunk cache on local disk (`--cache-dir`), and
//! reads of the chunk files of a cluster node on the same machine
//! (`--node-chunks`). Chunks are immutable and named by their BLAKE3 hash, so a
//! cached chunk is never stale; each is verified against its name when read, and a
//! file that fails (torn by a crash, damaged on disk) is deleted and fetched again.
//!
//! The cache is bounded by `--cache-size` bytes, least recently used first out. It
//! survives remounts: at start it indexes the files already there. Files are
//! written to a temp name and renamed, without fsync: a file lost or torn in a
//! crash only costs a fetch.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;

use super::lock;
use crate::chunk_ref::Hash;
use crate::chunkstore::chunk_path;

const TEMP_SUFFIX: &str = ".tmp";
/// Chunk files the index can hold (the byte bound usually binds first).
const CACHED_CHUNKS_MAX: usize = 1 << 22;

struct Index {
    chunks: lru::LruCache<Hash, u64>,
    bytes: u64,
}

pub struct DiskCache {
    dir: PathBuf,
    limit_bytes: u64,
    index: Mutex<Index>,
}

/// Reads a chunk file and checks it is the chunk its name says.
fn read_verified(path: &Path, hash: &Hash) -> Option<Bytes> {
    let data = std::fs::read(path).ok()?;
    (blake3::hash(&data).as_bytes() == hash).then(|| Bytes::from(data))
}

impl DiskCache {
    /// Opens (creating) the cache in `dir` and indexes the chunks already there.
    pub fn open(dir: &Path, limit_bytes: u64) -> std::io::Result<DiskCache> {
        std::fs::create_dir_all(dir)?;
        let cache = DiskCache {
            dir: dir.to_path_buf(),
            limit_bytes,
            index: Mutex::new(Index {
                chunks: lru::LruCache::new(NonZeroUsize::new(CACHED_CHUNKS_MAX).expect("non-zero")),
                bytes: 0,
            }),
        };
        for shard in std::fs::read_dir(dir)? {
            let shard = shard?.path();
            if !shard.is_dir() {
                continue;
            }
            for entry in std::fs::read_dir(&shard)? {
                let entry = entry?;
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                let mut hash = [0u8; 32];
                if name.ends_with(TEMP_SUFFIX) || hex::decode_to_slice(&name, &mut hash).is_err() {
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
                cache.note(hash, entry.metadata()?.len());
            }
        }
        Ok(cache)
    }

    /// Adds a chunk to the index and evicts the oldest past the bound.
    fn note(&self, hash: Hash, len: u64) {
        let mut evicted = Vec::new();
        {
            let mut index = lock(&self.index);
            if let Some(old) = index.chunks.put(hash, len) {
                index.bytes -= old;
            }
            index.bytes += len;
            while index.bytes > self.limit_bytes {
                let Some((gone, gone_len)) = index.chunks.pop_lru() else {
                    break;
                };
                index.bytes -= gone_len;
                evicted.push(gone);
            }
        }
        for gone in evicted {
            let _ = std::fs::remove_file(chunk_path(&self.dir, &gone));
        }
    }

    /// The chunk, if cached and intact.
    pub fn get(&self, hash: &Hash) -> Option<Bytes> {
        // Looked up (and made most recent) in the index first: no file read for a miss.
        lock(&self.index).chunks.get(hash)?;
        let path = chunk_path(&self.dir, hash);
        match read_verified(&path, hash) {
            Some(data) => Some(data),
            None => {
                tracing::warn!(chunk = %hex::encode(hash), "a cached chunk failed verification; dropped");
                let mut index = lock(&self.index);
                if let Some(len) = index.chunks.pop(hash) {
                    index.bytes -= len;
                }
                drop(index);
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Caches `data` as chunk `hash` (ignored unless it is that chunk).
    pub fn put(&self, hash: &Hash, data: &[u8]) {
        if lock(&self.index).chunks.contains(hash) || blake3::hash(data).as_bytes() != hash {
            return;
        }
        let path = chunk_path(&self.dir, hash);
        let temp = path.with_extension(format!("{:016x}{TEMP_SUFFIX}", rand::random::<u64>()));
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&temp, data))
            .and_then(|()| std::fs::rename(&temp, &path));
        match written {
            Ok(()) => self.note(*hash, data.len() as u64),
            Err(e) => {
                let _ = std::fs::remove_file(&temp);
                tracing::warn!(dir = %self.dir.display(), "caching a chunk failed: {e}");
            }
        }
    }
}

/// A cluster node's chunk files on this machine, read-only.
pub fn read_node_chunk(dir: &Path, hash: &Hash) -> Option<Bytes> {
    read_verified(&chunk_path(dir, hash), hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_round_trip_survive_reopen_are_verified_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let a = vec![1u8; 1000];
        let b = vec![2u8; 1000];
        let (ha, hb) = (*blake3::hash(&a).as_bytes(), *blake3::hash(&b).as_bytes());
        let cache = DiskCache::open(dir.path(), 1500).unwrap();
        cache.put(&ha, &a);
        assert_eq!(cache.get(&ha).as_deref(), Some(&a[..]));
        // Bytes that are not the named chunk are not cached.
        cache.put(&hb, &a);
        assert!(cache.get(&hb).is_none());
        // A second chunk evicts the first (1,500-byte bound).
        cache.put(&hb, &b);
        assert!(cache.get(&ha).is_none());
        assert_eq!(cache.get(&hb).as_deref(), Some(&b[..]));
        drop(cache);
        let again = DiskCache::open(dir.path(), 1500).unwrap();
        assert_eq!(again.get(&hb).as_deref(), Some(&b[..]));
        // A damaged file is dropped, not served.
        std::fs::write(chunk_path(dir.path(), &hb), b"torn").unwrap();
        assert!(again.get(&hb).is_none());
        assert!(!chunk_path(dir.path(), &hb).exists());
    }
}
