//! The read path: whole 1 MiB blocks fetched from the cluster, kept in a bounded
//! in-memory LRU keyed by (inode, block) and tagged with the content version they
//! came from, so a block of an older version is never served after the mount has
//! seen a newer one. A read that continues where the last one on its inode ended
//! starts fetching the next `PREFETCH_BLOCKS` in parallel, so a sequential reader
//! waits for one round trip per block at most, not one per kernel request.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt, Shared};
use tokio::sync::Semaphore;

use super::disk_cache::{read_node_chunk, DiskCache};
use super::lock;
use crate::chunk_ref::Hash;
use crate::client::{BlockInfo, FsClient};
use crate::limits::FS_BLOCK_BYTES;

/// Blocks fetched ahead of a sequential reader.
pub const PREFETCH_BLOCKS: u64 = 4;
/// Block fetches (reads and prefetches) in flight at once across the mount.
pub const FETCHES_IN_FLIGHT_MAX: usize = 16;
/// Inodes whose newest version and read position the mount remembers.
const INODES_TRACKED_MAX: usize = 65_536;
/// Blocks one block-map request covers (64 MiB of file).
const BLOCK_MAP_WINDOW_BLOCKS: u64 = 64;
/// Inodes whose block map the mount keeps.
const BLOCK_MAPS_MAX: usize = 4096;

/// Which chunk holds each block of a window of a file, at one content version.
struct BlockWindow {
    version: u64,
    size: u64,
    first: u64,
    blocks: HashMap<u64, BlockInfo>,
}

/// What the block map says of one block.
struct KnownBlock {
    version: u64,
    size: u64,
    /// `None`: a hole.
    info: Option<BlockInfo>,
}

/// Where chunks can come from without the network.
pub struct LocalChunks {
    pub cache: Option<DiskCache>,
    /// A cluster node's chunk directory on this machine.
    pub node_chunks: Option<std::path::PathBuf>,
}

impl LocalChunks {
    fn any(&self) -> bool {
        self.cache.is_some() || self.node_chunks.is_some()
    }

    fn get(&self, hash: &Hash) -> Option<Bytes> {
        if let Some(dir) = &self.node_chunks {
            if let Some(data) = read_node_chunk(dir, hash) {
                return Some(data);
            }
        }
        self.cache.as_ref().and_then(|c| c.get(hash))
    }
}

/// A fetched block: the content version it belongs to and its bytes (shorter
/// than a block only at the end of the file).
type Block = (u64, Bytes);
type Fetch = Shared<BoxFuture<'static, Result<Block, i32>>>;

#[derive(Default)]
struct InodeState {
    /// The newest content version this mount has seen for the inode.
    version: u64,
    size: u64,
    /// The block after the last one read, to spot sequential readers.
    next_block: u64,
}

pub struct Reads {
    fs: FsClient,
    blocks: Mutex<lru::LruCache<(u64, u64), Block>>,
    loading: Mutex<HashMap<(u64, u64), Fetch>>,
    /// Bounded too: an inode evicted here only loses its cached blocks' validity.
    inodes: Mutex<lru::LruCache<u64, InodeState>>,
    fetches: Arc<Semaphore>,
    local: Arc<LocalChunks>,
    maps: Mutex<lru::LruCache<u64, BlockWindow>>,
    pub stats: Arc<super::stats::Stats>,
}

impl Reads {
    pub fn new(
        fs: FsClient,
        cache_bytes: u64,
        local: LocalChunks,
        stats: Arc<super::stats::Stats>,
    ) -> Self {
        let blocks = (cache_bytes / FS_BLOCK_BYTES).max(PREFETCH_BLOCKS * 2) as usize;
        Reads {
            fs,
            blocks: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(blocks).expect("at least one block"),
            )),
            loading: Mutex::default(),
            inodes: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(INODES_TRACKED_MAX).expect("non-zero"),
            )),
            fetches: Arc::new(Semaphore::new(FETCHES_IN_FLIGHT_MAX)),
            local: Arc::new(local),
            maps: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(BLOCK_MAPS_MAX).expect("non-zero"),
            )),
            stats,
        }
    }

    /// Records the inode's current content (from an open, a stat or a write):
    /// cached blocks of other versions stop being served.
    pub fn saw(&self, ino: u64, version: u64, size: u64) {
        let mut inodes = lock(&self.inodes);
        let state = inodes.get_or_insert_mut(ino, InodeState::default);
        if version >= state.version {
            state.version = version;
            state.size = size;
        }
    }

    /// The content version the cache is based on for the inode, if it has one.
    pub fn version(&self, ino: u64) -> Option<u64> {
        lock(&self.inodes)
            .peek(&ino)
            .map(|s| s.version)
            .filter(|&v| v > 0)
    }

    /// A compare-and-set write of `data` at `offset` turned content `base` into
    /// `attr.version`: cached blocks of `base` become blocks of the new version
    /// with the bytes written (and zeros where the file grew past its old end).
    pub fn patch(&self, ino: u64, base: u64, attr: &crate::client::Attr, offset: u64, data: &[u8]) {
        let mut blocks = lock(&self.blocks);
        let end = offset + data.len() as u64;
        let cached: Vec<u64> = blocks
            .iter()
            .filter(|((i, _), (v, _))| *i == ino && *v == base)
            .map(|((_, index), _)| *index)
            .collect();
        for index in cached {
            let Some((_, old)) = blocks.pop(&(ino, index)) else {
                continue;
            };
            let start = index * FS_BLOCK_BYTES;
            if start >= attr.size {
                continue;
            }
            let len = (attr.size - start).min(FS_BLOCK_BYTES) as usize;
            let mut bytes = old.to_vec();
            // A write never shrinks a file: the block can only grow.
            debug_assert!(bytes.len() <= len, "a write shrank block {index}");
            bytes.resize(len, 0);
            if start < end && offset < start + FS_BLOCK_BYTES {
                let from = offset.max(start);
                let to = end.min(start + len as u64);
                if from < to {
                    let src = &data[(from - offset) as usize..(to - offset) as usize];
                    bytes[(from - start) as usize..(to - start) as usize].copy_from_slice(src);
                }
            }
            blocks.put((ino, index), (attr.version, Bytes::from(bytes)));
        }
        drop(blocks);
        self.saw(ino, attr.version, attr.size);
    }

    /// Bytes `offset..offset+size` of the inode, shorter at the end of the file.
    pub async fn read(self: &Arc<Self>, ino: u64, offset: u64, size: u32) -> Result<Vec<u8>, i32> {
        let end = offset.saturating_add(u64::from(size));
        let mut out = Vec::with_capacity(size as usize);
        if size == 0 {
            return Ok(out);
        }
        let (first, last) = (offset / FS_BLOCK_BYTES, (end - 1) / FS_BLOCK_BYTES);
        let sequential = {
            let mut inodes = lock(&self.inodes);
            let state = inodes.get_or_insert_mut(ino, InodeState::default);
            let sequential = first == state.next_block || first + 1 == state.next_block;
            state.next_block = last + 1;
            sequential
        };
        if sequential {
            self.prefetch(ino, last + 1..=last + PREFETCH_BLOCKS);
        }
        for index in first..=last {
            let (_, data) = self.block(ino, index).await?;
            let start = index * FS_BLOCK_BYTES;
            let from = (offset.max(start) - start) as usize;
            let to = ((end.min(start + FS_BLOCK_BYTES) - start) as usize).min(data.len());
            if from >= to {
                break;
            }
            out.extend_from_slice(&data[from..to]);
            if (data.len() as u64) < FS_BLOCK_BYTES {
                break;
            }
        }
        self.stats.add_read(out.len());
        Ok(out)
    }

    fn current(&self, ino: u64) -> (u64, u64) {
        lock(&self.inodes)
            .peek(&ino)
            .map_or((0, u64::MAX), |s| (s.version, s.size))
    }

    /// Block `index` of the inode at its current version, from the cache or fetched.
    async fn block(self: &Arc<Self>, ino: u64, index: u64) -> Result<Block, i32> {
        let (version, _) = self.current(ino);
        if let Some(block) = lock(&self.blocks).get(&(ino, index)) {
            if block.0 == version {
                self.stats.cache_hit();
                return Ok(block.clone());
            }
        }
        self.stats.cache_miss();
        let block = self.fetch(ino, index).await?;
        if block.0 < version {
            // Fetched from a node behind the version this mount already saw; ask again.
            return self.fetch(ino, index).await;
        }
        Ok(block)
    }

    /// One fetch per (inode, block) at a time: concurrent readers share it.
    fn fetch(self: &Arc<Self>, ino: u64, index: u64) -> Fetch {
        let mut loading = lock(&self.loading);
        if let Some(fetch) = loading.get(&(ino, index)) {
            return fetch.clone();
        }
        let this = self.clone();
        let fetch = async move {
            let result = this.fetch_now(ino, index).await;
            lock(&this.loading).remove(&(ino, index));
            result
        }
        .boxed()
        .shared();
        loading.insert((ino, index), fetch.clone());
        fetch
    }

    /// The block map's word on block `index` at the inode's current version.
    async fn known_block(&self, ino: u64, index: u64) -> Result<KnownBlock, i32> {
        let (version, _) = self.current(ino);
        if let Some(w) = lock(&self.maps).get(&ino) {
            if w.version == version && (w.first..w.first + BLOCK_MAP_WINDOW_BLOCKS).contains(&index)
            {
                let (version, size, info) = (w.version, w.size, w.blocks.get(&index).copied());
                return Ok(KnownBlock {
                    version,
                    size,
                    info,
                });
            }
        }
        let (offset, length) = (
            index * FS_BLOCK_BYTES,
            BLOCK_MAP_WINDOW_BLOCKS * FS_BLOCK_BYTES,
        );
        let (attr, blocks) = self
            .fs
            .block_map_ino(ino, offset, length)
            .await
            .map_err(|e| super::attrs::errno_of(&e))?;
        self.saw(ino, attr.version, attr.size);
        let window = BlockWindow {
            version: attr.version,
            size: attr.size,
            first: index,
            blocks: blocks.into_iter().map(|b| (b.index, b)).collect(),
        };
        let info = window.blocks.get(&index).copied();
        lock(&self.maps).put(ino, window);
        Ok(KnownBlock {
            version: attr.version,
            size: attr.size,
            info,
        })
    }

    /// The block from a chunk on this machine (cache or node), if there is one.
    async fn local_block(&self, known: &KnownBlock, index: u64) -> Option<Block> {
        let start = index * FS_BLOCK_BYTES;
        if start >= known.size {
            return Some((known.version, Bytes::new()));
        }
        let len = (known.size - start).min(FS_BLOCK_BYTES) as usize;
        let data = match known.info {
            // A hole reads as zeros.
            None => Vec::new(),
            Some(b) if b.chunk.len == b.valid_len => {
                let (local, hash) = (self.local.clone(), b.chunk.hash);
                let chunk = tokio::task::spawn_blocking(move || local.get(&hash))
                    .await
                    .ok()??;
                chunk[..(b.valid_len as usize).min(chunk.len())].to_vec()
            }
            Some(_) => return None,
        };
        let mut data = data;
        data.resize(len.max(data.len()), 0);
        data.truncate(len);
        Some((known.version, Bytes::from(data)))
    }

    async fn fetch_now(&self, ino: u64, index: u64) -> Result<Block, i32> {
        let _permit = self.fetches.acquire().await.map_err(|_| libc::EIO)?;
        // Without a block map (a node too old to serve one), the block is fetched.
        let known = match self.local.any() {
            true => self.known_block(ino, index).await.ok(),
            false => None,
        };
        if let Some(known) = &known {
            if let Some(block) = self.local_block(known, index).await {
                self.stats.local_hit();
                lock(&self.blocks).put((ino, index), block.clone());
                return Ok(block);
            }
        }
        let offset = index * FS_BLOCK_BYTES;
        let (attr, data) = match self.fs.read_range_ino(ino, offset, FS_BLOCK_BYTES).await {
            Ok(got) => got,
            // A block past the end (the file shrank): empty, as a read at EOF is.
            Err(crate::client::Error::LimitExceeded { field, .. }) if field == "offset" => {
                return Ok((0, Bytes::new()))
            }
            Err(e) => return Err(super::attrs::errno_of(&e)),
        };
        self.stats.add_fetched(data.len());
        self.saw(ino, attr.version, attr.size);
        if let Some(KnownBlock {
            version,
            info: Some(b),
            ..
        }) = known
        {
            // Cache the chunk only if these bytes are the one the map named.
            let whole = b.chunk.len == b.valid_len && data.len() >= b.valid_len as usize;
            if version == attr.version && whole && self.local.cache.is_some() {
                let (local, chunk) = (self.local.clone(), data[..b.valid_len as usize].to_vec());
                tokio::task::spawn_blocking(move || {
                    if let Some(cache) = &local.cache {
                        cache.put(&b.chunk.hash, &chunk);
                    }
                });
            }
        }
        let block = (attr.version, Bytes::from(data));
        lock(&self.blocks).put((ino, index), block.clone());
        Ok(block)
    }

    /// Starts fetching blocks not cached yet, if fetch slots are free.
    fn prefetch(self: &Arc<Self>, ino: u64, blocks: std::ops::RangeInclusive<u64>) {
        let (version, size) = self.current(ino);
        for index in blocks {
            if index * FS_BLOCK_BYTES >= size {
                return;
            }
            let cached = lock(&self.blocks)
                .peek(&(ino, index))
                .is_some_and(|b| b.0 == version);
            if cached || lock(&self.loading).contains_key(&(ino, index)) {
                continue;
            }
            if self.fetches.available_permits() == 0 {
                return;
            }
            let fetch = self.fetch(ino, index);
            tokio::spawn(async move {
                let _ = fetch.await;
            });
        }
    }
}
