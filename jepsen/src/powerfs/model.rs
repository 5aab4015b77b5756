//! The pure in-memory model of powerfs: an inode table whose files and directories
//! remember their durable state (see the module doc of [`super`]). No FUSE here: every
//! operation is a method answering `Err(errno)` (a `libc::E*` code) on bad input, so
//! the model is unit-tested directly and the FUSE layer only translates.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::time::SystemTime;

mod cut;
mod file;
mod io;
mod namespace;
#[cfg(test)]
mod tests;
mod types;

pub(crate) use file::PAGE_SIZE;
use file::{Budget, FileData};
pub use types::{Attr, CutMode, CutReport, DirEntry, FsSpace, Kind, SetAttr, Stats};

/// The root directory's inode number (FUSE's `FUSE_ROOT_ID`).
pub const ROOT: u64 = 1;
/// No file grows past 8 TiB (EFBIG), which keeps every offset computation far from
/// overflow.
pub(crate) const MAX_FILE_SIZE: u64 = 1 << 43;
const NAME_MAX: usize = 255;

/// A model result: `Err` holds a `libc::E*` errno.
pub type Res<T> = Result<T, i32>;

#[derive(Debug)]
struct Meta {
    perm: u16,
    uid: u32,
    gid: u32,
    atime: SystemTime,
    mtime: SystemTime,
    ctime: SystemTime,
    crtime: SystemTime,
}

impl Meta {
    fn new(perm: u32, uid: u32, gid: u32) -> Meta {
        let now = SystemTime::now();
        Meta {
            perm: (perm & 0o7777) as u16,
            uid,
            gid,
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
        }
    }
}

#[derive(Debug)]
struct Dir {
    entries: BTreeMap<OsString, u64>,
    /// The durable value of each name changed since the last fsyncdir.
    undo: BTreeMap<OsString, Option<u64>>,
    /// The directory holding this one's current name (itself for the root).
    parent: u64,
    /// Current entries that are directories (for nlink).
    subdirs: u32,
}

impl Dir {
    fn new(parent: u64) -> Dir {
        Dir {
            entries: BTreeMap::new(),
            undo: BTreeMap::new(),
            parent,
            subdirs: 0,
        }
    }
}

#[derive(Debug)]
enum Body {
    File(FileData),
    Dir(Dir),
    Symlink(Vec<u8>),
}

#[derive(Debug)]
struct Inode {
    meta: Meta,
    /// Current directory entries naming this inode.
    links: u32,
    /// Directory undo entries naming this inode (it is in the durable state).
    undo_refs: u32,
    /// Open handles.
    open: u32,
    body: Body,
}

impl Inode {
    fn kind(&self) -> Kind {
        match self.body {
            Body::File(_) => Kind::File,
            Body::Dir(_) => Kind::Dir,
            Body::Symlink(_) => Kind::Symlink,
        }
    }
}

#[derive(Debug)]
struct Handle {
    ino: u64,
    /// A directory handle's listing, taken when a read starts at offset 0.
    listing: Option<Vec<DirEntry>>,
}

/// The whole file system state. Not thread-safe by itself: powerfs keeps it behind one
/// mutex.
#[derive(Debug)]
pub struct Model {
    inodes: BTreeMap<u64, Inode>,
    /// Inode numbers are never reused within one model (one mount).
    next_ino: u64,
    handles: BTreeMap<u64, Handle>,
    next_fh: u64,
    budget: Budget,
    frozen: bool,
    /// Inodes that may have lost their last reference, freed at the end of each op.
    garbage: Vec<u64>,
}

impl Model {
    /// An empty file system whose root belongs to `uid`/`gid`, holding at most
    /// `bytes_max` bytes of pages.
    pub fn new(bytes_max: u64, uid: u32, gid: u32) -> Model {
        let root = Inode {
            meta: Meta::new(0o755, uid, gid),
            links: 1,
            undo_refs: 0,
            open: 0,
            body: Body::Dir(Dir::new(ROOT)),
        };
        Model {
            inodes: BTreeMap::from([(ROOT, root)]),
            next_ino: ROOT + 1,
            handles: BTreeMap::new(),
            next_fh: 1,
            budget: Budget {
                held: 0,
                max: bytes_max,
            },
            frozen: false,
            garbage: Vec::new(),
        }
    }

    pub fn frozen(&self) -> bool {
        self.frozen
    }

    pub fn set_frozen(&mut self, frozen: bool) {
        self.frozen = frozen;
    }

    fn inode(&self, ino: u64) -> Res<&Inode> {
        self.inodes.get(&ino).ok_or(libc::ENOENT)
    }

    fn inode_mut(&mut self, ino: u64) -> Res<&mut Inode> {
        self.inodes.get_mut(&ino).ok_or(libc::ENOENT)
    }

    fn dir(&self, ino: u64) -> Res<&Dir> {
        match &self.inode(ino)?.body {
            Body::Dir(dir) => Ok(dir),
            _ => Err(libc::ENOTDIR),
        }
    }

    fn file_mut(&mut self, ino: u64) -> Res<(&mut FileData, &mut Meta, &mut Budget)> {
        let inode = self.inodes.get_mut(&ino).ok_or(libc::ENOENT)?;
        match &mut inode.body {
            Body::File(file) => Ok((file, &mut inode.meta, &mut self.budget)),
            Body::Dir(_) => Err(libc::EISDIR),
            Body::Symlink(_) => Err(libc::EINVAL),
        }
    }

    pub fn getattr(&self, ino: u64) -> Res<Attr> {
        let inode = self.inode(ino)?;
        let (size, pages, nlink) = match &inode.body {
            Body::File(file) => (file.size(), file.allocated_pages(), inode.links),
            Body::Dir(dir) => {
                let nlink = match inode.links {
                    0 => 0,
                    _ => dir.subdirs.saturating_add(2),
                };
                (PAGE_SIZE as u64, 1, nlink)
            }
            Body::Symlink(target) => (target.len() as u64, 0, inode.links),
        };
        let meta = &inode.meta;
        Ok(Attr {
            ino,
            kind: inode.kind(),
            size,
            blocks: pages * (PAGE_SIZE as u64 / 512),
            perm: meta.perm,
            nlink,
            uid: meta.uid,
            gid: meta.gid,
            atime: meta.atime,
            mtime: meta.mtime,
            ctime: meta.ctime,
            crtime: meta.crtime,
        })
    }

    pub fn setattr(&mut self, ino: u64, change: SetAttr) -> Res<Attr> {
        if let Some(size) = change.size {
            let (file, meta, budget) = self.file_mut(ino)?;
            file.set_size(size, budget)?;
            meta.mtime = SystemTime::now();
        }
        let meta = &mut self.inode_mut(ino)?.meta;
        if let Some(mode) = change.mode {
            meta.perm = (mode & 0o7777) as u16;
        }
        if let Some(uid) = change.uid {
            meta.uid = uid;
        }
        if let Some(gid) = change.gid {
            meta.gid = gid;
        }
        if let Some(atime) = change.atime {
            meta.atime = atime;
        }
        if let Some(mtime) = change.mtime {
            meta.mtime = mtime;
        }
        meta.ctime = SystemTime::now();
        self.getattr(ino)
    }

    pub fn readlink(&self, ino: u64) -> Res<Vec<u8>> {
        match &self.inode(ino)?.body {
            Body::Symlink(target) => Ok(target.clone()),
            _ => Err(libc::EINVAL),
        }
    }

    pub fn space(&self) -> FsSpace {
        let page = PAGE_SIZE as u64;
        FsSpace {
            blocks: self.budget.max / page,
            blocks_free: self.budget.max.saturating_sub(self.budget.held) / page,
            files: u64::from(u32::MAX),
            files_free: u64::from(u32::MAX).saturating_sub(self.inodes.len() as u64),
        }
    }

    pub fn stats(&self) -> Stats {
        let mut stats = Stats {
            inodes: self.inodes.len() as u64,
            bytes_held: self.budget.held,
            bytes_max: self.budget.max,
            open_handles: self.handles.len() as u64,
            frozen: self.frozen,
            ..Stats::default()
        };
        for inode in self.inodes.values() {
            match &inode.body {
                Body::File(file) => {
                    stats.unsynced_pages += file.dirty_pages();
                    stats.unsynced_bytes += file.unsynced_bytes();
                    stats.dirty_files += u64::from(file.is_dirty());
                }
                Body::Dir(dir) => {
                    stats.dirty_dirs += u64::from(!dir.undo.is_empty());
                    stats.unsynced_dir_entries += dir.undo.len() as u64;
                }
                Body::Symlink(_) => {}
            }
        }
        stats
    }

    /// Frees every garbage candidate with no current name, no durable name and no open
    /// handle; a freed directory drops its references in turn.
    fn collect_garbage(&mut self) {
        while let Some(ino) = self.garbage.pop() {
            let free = self.inodes.get(&ino).is_some_and(|inode| {
                ino != ROOT && inode.links == 0 && inode.undo_refs == 0 && inode.open == 0
            });
            if !free {
                continue;
            }
            let Some(inode) = self.inodes.remove(&ino) else {
                continue;
            };
            match inode.body {
                Body::File(file) => self.budget.release(file.held_bytes()),
                Body::Dir(dir) => {
                    for child in dir.undo.into_values().flatten() {
                        if let Some(child_inode) = self.inodes.get_mut(&child) {
                            child_inode.undo_refs = child_inode.undo_refs.saturating_sub(1);
                        }
                        self.garbage.push(child);
                    }
                    for child in dir.entries.into_values() {
                        if let Some(child_inode) = self.inodes.get_mut(&child) {
                            child_inode.links = child_inode.links.saturating_sub(1);
                        }
                        self.garbage.push(child);
                    }
                }
                Body::Symlink(_) => {}
            }
        }
    }

    /// Recounts the page memory from scratch (after a cut; tests compare).
    fn recount_held(&self) -> u64 {
        self.inodes
            .values()
            .map(|inode| match &inode.body {
                Body::File(file) => file.held_bytes(),
                _ => 0,
            })
            .sum()
    }
}

fn check_name(name: &OsStr) -> Res<()> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes == b"." || bytes == b".." || bytes.contains(&b'/') {
        return Err(libc::EINVAL);
    }
    if bytes.len() > NAME_MAX {
        return Err(libc::ENAMETOOLONG);
    }
    Ok(())
}
