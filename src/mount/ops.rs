//! The mount's operations as async calls on the SDK, one per FUSE request kind,
//! in cluster terms (inode numbers already translated, names already UTF-8).
//! `fuse.rs` runs each on the tokio runtime and sends the reply.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::client::{
    Attr, DirEntry, Error, FileKind, FsClient, FsInfo, NewNode, OpenFile, SetAttrs,
};

use super::attrs::{errno_of, InoMap};
use super::lock;
use super::reads::Reads;
use super::stats::Stats;
use super::writes::Writes;

pub type Res<T> = Result<T, i32>;

/// Entries fetched per directory page while listing.
const READDIR_PAGE_ENTRIES: u32 = 512;

/// What one open directory handle has listed so far.
pub struct Listing {
    pub entries: Vec<DirEntry>,
    /// `None` once the last page is in.
    pub after: Option<String>,
}

pub enum Handle {
    File {
        ino: u64,
        open: OpenFile,
    },
    Dir {
        ino: u64,
        listing: tokio::sync::Mutex<Listing>,
    },
}

pub struct Mount {
    pub fs: FsClient,
    pub map: InoMap,
    pub ttl: Duration,
    pub read_only: bool,
    /// Longest a request waits for the cluster before the program gets `EIO`.
    pub op_timeout: Duration,
    pub writes: Writes,
    pub reads: Arc<Reads>,
    pub stats: Arc<Stats>,
    handles: Mutex<HashMap<u64, Arc<Handle>>>,
    next_fh: AtomicU64,
    /// The content version whose pages the kernel may hold, per inode: an open
    /// keeps the page cache only when the version is still this one.
    kernel_versions: Mutex<HashMap<u64, u64>>,
    pub notifier: OnceLock<fuser::Notifier>,
}

fn err(e: Error) -> i32 {
    errno_of(&e)
}

impl Mount {
    pub fn new(
        fs: FsClient,
        map: InoMap,
        options: &super::MountOptions,
        local: super::reads::LocalChunks,
    ) -> Self {
        let stats = Arc::new(Stats::default());
        let reads = Reads::new(fs.clone(), options.memory_cache_bytes, local, stats.clone());
        Mount {
            reads: Arc::new(reads),
            fs,
            map,
            ttl: options.attr_timeout,
            read_only: options.read_only,
            op_timeout: options.op_timeout,
            writes: Writes::default(),
            stats,
            handles: Mutex::default(),
            next_fh: AtomicU64::new(1),
            kernel_versions: Mutex::default(),
            notifier: OnceLock::new(),
        }
    }

    fn writable(&self) -> Res<()> {
        if self.read_only {
            Err(libc::EROFS)
        } else {
            Ok(())
        }
    }

    /// The size the kernel should see: buffered writes may extend the file.
    pub fn size_of(&self, attr: &Attr) -> u64 {
        if attr.kind == FileKind::File {
            attr.size.max(self.writes.dirty_end(attr.ino))
        } else {
            attr.size
        }
    }

    fn handle(&self, fh: u64) -> Res<Arc<Handle>> {
        lock(&self.handles).get(&fh).cloned().ok_or(libc::EBADF)
    }

    fn add_handle(&self, handle: Handle) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        lock(&self.handles).insert(fh, Arc::new(handle));
        fh
    }

    pub async fn lookup(&self, dir: u64, name: &str) -> Res<Attr> {
        self.fs.lookup(dir, name).await.map_err(err)
    }

    pub async fn getattr(&self, ino: u64) -> Res<Attr> {
        // stat after write shows that write's size and times: buffered writes go first.
        self.flush_writes(ino).await?;
        self.fs.stat_ino(ino).await.map_err(err)
    }

    pub async fn setattr(&self, ino: u64, set: SetAttrs) -> Res<Attr> {
        self.writable()?;
        if set.size.is_some() {
            // A truncate lands after every write made before it.
            self.writes
                .flush(&self.fs, &self.reads, ino)
                .await
                .map_err(err)?;
        }
        let attr = self.fs.set_attr_ino(ino, &set).await.map_err(err)?;
        self.reads.saw(ino, attr.version, attr.size);
        Ok(attr)
    }

    pub async fn readlink(&self, ino: u64) -> Res<String> {
        self.fs.readlink_ino(ino).await.map_err(err)
    }

    pub async fn make(&self, dir: u64, name: &str, new: NewNode<'_>) -> Res<Attr> {
        self.writable()?;
        self.fs.make_in(dir, name, &new).await.map_err(err)
    }

    pub async fn remove(&self, dir: u64, name: &str, rmdir: bool) -> Res<()> {
        self.writable()?;
        self.fs.remove_in(dir, name, rmdir).await.map_err(err)
    }

    pub async fn rename(&self, from: (u64, &str), to: (u64, &str), noreplace: bool) -> Res<()> {
        self.writable()?;
        self.fs.rename_in(from, to, noreplace).await.map_err(err)
    }

    pub async fn link(&self, ino: u64, dir: u64, name: &str) -> Res<Attr> {
        self.writable()?;
        self.fs.link_in(ino, dir, name).await.map_err(err)
    }

    /// Registers a handle with the cluster (so the inode outlives an unlink while
    /// open) and decides whether the kernel may keep its cached pages.
    pub async fn open(&self, ino: u64, write: bool) -> Res<(u64, bool)> {
        if write {
            self.writable()?;
        }
        let open = self.fs.open_ino(ino).await.map_err(err)?;
        let version = open.attr.version;
        self.reads.saw(ino, version, open.attr.size);
        let previous = lock(&self.kernel_versions).insert(ino, version);
        let keep = previous == Some(version);
        if previous.is_some() && !keep {
            // Close-to-open: the kernel's attributes (its idea of the size) are from
            // before another writer's close; drop them with the pages. Outside the
            // lock: the kernel may wait for reads in flight, which take it to flush.
            if let Some(notifier) = self.notifier.get() {
                let _ = notifier.inval_inode(self.map.kernel(ino), 0, 0);
            }
        }
        Ok((self.add_handle(Handle::File { ino, open }), keep))
    }

    /// Creates and opens a file (`exclusive`: `O_EXCL`).
    pub async fn create(&self, dir: u64, name: &str, new: NewNode<'_>) -> Res<(Attr, u64)> {
        self.writable()?;
        let attr = self.fs.make_in(dir, name, &new).await.map_err(err)?;
        let (fh, _) = self.open(attr.ino, true).await?;
        Ok((attr, fh))
    }

    pub async fn read(&self, ino: u64, offset: u64, size: u32) -> Res<Vec<u8>> {
        // Read-your-writes: anything this mount buffered reaches the cluster first.
        self.flush_writes(ino).await?;
        self.reads.read(ino, offset, size).await
    }

    pub async fn write(&self, ino: u64, offset: u64, data: &[u8]) -> Res<u32> {
        self.writable()?;
        self.writes
            .write(&self.fs, &self.reads, ino, offset, data)
            .await
            .map_err(err)?;
        self.stats.add_written(data.len());
        Ok(data.len() as u32)
    }

    /// Sends the inode's buffered writes. If every range won its compare-and-set,
    /// the kernel's pages (which saw the same writes) hold the new version; if not,
    /// another mount's writes came between and those pages are dropped.
    pub async fn flush_writes(&self, ino: u64) -> Res<()> {
        let flushed = self
            .writes
            .flush(&self.fs, &self.reads, ino)
            .await
            .map_err(err)?;
        if let Some(done) = flushed {
            self.reads.saw(ino, done.attr.version, done.attr.size);
            if done.compare_and_set {
                lock(&self.kernel_versions).insert(ino, done.attr.version);
            } else {
                lock(&self.kernel_versions).remove(&ino);
                if let Some(notifier) = self.notifier.get().cloned() {
                    // Not awaited: this may run inside a read of the same inode, whose
                    // pages the kernel keeps locked until that read is answered.
                    let kernel_ino = self.map.kernel(ino);
                    tokio::task::spawn_blocking(move || notifier.inval_inode(kernel_ino, 0, 0));
                }
            }
        }
        Ok(())
    }

    pub async fn fsync(&self, ino: u64) -> Res<()> {
        self.flush_writes(ino).await?;
        self.fs.fsync_ino(ino).await.map_err(err)?;
        Ok(())
    }

    pub async fn release(&self, fh: u64) -> Res<()> {
        let handle = lock(&self.handles).remove(&fh);
        match handle.as_deref() {
            Some(Handle::File { ino, open }) => {
                let flushed = self.flush_writes(*ino).await;
                let released = self.fs.release(open).await.map_err(err);
                flushed.and(released)
            }
            Some(Handle::Dir { .. }) | None => Ok(()),
        }
    }

    pub fn opendir(&self, ino: u64) -> u64 {
        self.add_handle(Handle::Dir {
            ino,
            listing: tokio::sync::Mutex::new(Listing {
                entries: Vec::new(),
                after: Some(String::new()),
            }),
        })
    }

    /// Entries from position `from` of the listing (pages fetched as needed);
    /// `None` past the end.
    pub async fn readdir(&self, fh: u64, from: usize, want: usize) -> Res<Vec<DirEntry>> {
        let handle = self.handle(fh)?;
        let Handle::Dir { ino, listing } = &*handle else {
            return Err(libc::ENOTDIR);
        };
        let mut listing = listing.lock().await;
        while listing.entries.len() < from + want {
            let Some(after) = listing.after.clone() else {
                break;
            };
            let page = self
                .fs
                // With attributes: the kernel asks for readdirplus and caches them.
                .read_dir_ino(*ino, &after, READDIR_PAGE_ENTRIES, true)
                .await
                .map_err(err)?;
            listing.entries.extend(page.entries);
            listing.after = page.next_after;
        }
        let end = listing.entries.len().min(from + want);
        Ok(listing.entries.get(from..end).unwrap_or_default().to_vec())
    }

    pub async fn statfs(&self) -> Res<FsInfo> {
        self.fs.statfs().await.map_err(err)
    }

    pub async fn set_xattr(&self, ino: u64, name: &str, value: &[u8], flags: i32) -> Res<()> {
        self.writable()?;
        if name.starts_with("security.") {
            return Err(libc::ENOTSUP);
        }
        let create = flags & libc::XATTR_CREATE != 0;
        let replace = flags & libc::XATTR_REPLACE != 0;
        self.fs
            .set_xattr_ino(ino, name, value, (create, replace))
            .await
            .map_err(err)
    }

    pub async fn get_xattr(&self, ino: u64, name: &str) -> Res<Vec<u8>> {
        if name.starts_with("security.") {
            // The kernel asks for security.capability before every write; the
            // mount keeps no security labels, so it answers without a round trip.
            return Err(libc::ENODATA);
        }
        self.fs.get_xattr_ino(ino, name).await.map_err(err)
    }

    pub async fn list_xattrs(&self, ino: u64) -> Res<Vec<String>> {
        self.fs.list_xattrs_ino(ino).await.map_err(err)
    }

    pub async fn remove_xattr(&self, ino: u64, name: &str) -> Res<()> {
        self.writable()?;
        self.fs.remove_xattr_ino(ino, name).await.map_err(err)
    }

    /// Sends every buffered write (at unmount).
    pub async fn flush_all(&self) -> Res<()> {
        let mut result = Ok(());
        for ino in self.writes.dirty_inodes() {
            if let Err(e) = self.flush_writes(ino).await {
                tracing::warn!(ino, errno = e, "flush at unmount failed");
                result = Err(e);
            }
        }
        result
    }
}
