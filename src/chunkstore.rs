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

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::chunk_ref::Hash;
use crate::durable;

const TEMP_SUFFIX: &str = ".tmp";

#[derive(Clone, Debug)]
pub struct ChunkStore {
    dir: PathBuf,
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

    /// Writes every chunk not already present, durably: all temp files are written
    /// and fsynced, renamed into place, then each touched directory is fsynced.
    pub fn write_durable(&self, chunks: &[(Hash, Vec<u8>)]) -> io::Result<()> {
        let mut renames = Vec::new();
        let mut dirs = BTreeSet::new();
        for (hash, data) in chunks {
            let path = self.path(hash);
            if path.exists() {
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

    /// Deletes files for which `wanted` is false (chunks the state no longer names).
    pub fn remove_orphans(&self, wanted: impl Fn(&Hash) -> io::Result<bool>) -> io::Result<u64> {
        let mut removed = 0;
        for hash in self.list()? {
            if !wanted(&hash)? {
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
        let removed = store.remove_orphans(|h| Ok(h == &a.0)).unwrap();
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
