//! Records of one file system and how names resolve to inodes.
//!
//! [`Fs`] is an open file system inside one command: its record (usage, quota,
//! next inode number) is read once and written back once if the command changed it.
//! The built-in `default` file system and every root directory exist before any
//! record does; the first change writes them.

use super::names::show;
use super::{
    refuse, At, DirEntry, Failure, FsRecord, Inode, Kind, Step, DEFAULT_FS, LOCAL_FS, ROOT_INO,
};
use crate::errno::Errno;
use crate::state::{decode, encode, keys, Error, Txn};

/// The id of the built-in `default` file system.
pub const DEFAULT_FS_ID: u64 = 1;

/// An open file system during one command.
pub struct Fs {
    pub name: String,
    pub record: FsRecord,
    dirty: bool,
}

fn default_record() -> FsRecord {
    FsRecord {
        id: DEFAULT_FS_ID,
        quota_bytes: 0,
        created_ms: 0,
        bytes_used: 0,
        inodes_used: 1,
        next_ino: ROOT_INO + 1,
    }
}

/// A file system's record by name (`default` included); `None` if there is none.
pub fn record(tree_txn: &Txn<'_>, name: &str) -> sled::Result<Option<FsRecord>> {
    match tree_txn.get(&keys::fs(name))? {
        Some(bytes) => Ok(Some(decode(&bytes)?)),
        None if name == DEFAULT_FS => Ok(Some(default_record())),
        None => Ok(None),
    }
}

/// The `NotFound` a missing file system gets.
pub fn no_such_fs(name: &str) -> Failure {
    if name == LOCAL_FS {
        return Failure::Rejected(Error::invalid(
            "fs",
            "\"local\" is node-local storage, served by each node itself",
        ));
    }
    Failure::Rejected(Error::NotFound {
        what: format!("file system {name:?}"),
    })
}

impl Fs {
    pub fn open(txn: &Txn<'_>, name: &str) -> Step<Fs> {
        match record(txn, name)? {
            Some(record) => Ok(Fs {
                name: name.to_string(),
                record,
                dirty: false,
            }),
            None => Err(no_such_fs(name)),
        }
    }

    pub fn id(&self) -> u64 {
        self.record.id
    }

    pub fn alloc_ino(&mut self) -> u64 {
        let ino = self.record.next_ino;
        self.record.next_ino += 1;
        self.record.inodes_used += 1;
        self.dirty = true;
        ino
    }

    pub fn inode_freed(&mut self) {
        assert!(self.record.inodes_used > 1, "the root is never freed");
        self.record.inodes_used -= 1;
        self.dirty = true;
    }

    /// Accounts `added` and `removed` chunk bytes; growth past the quota is
    /// refused with `ENOSPC` (shrinking is always allowed).
    pub fn account_bytes(&mut self, added: u64, removed: u64) -> Step<()> {
        assert!(
            removed <= self.record.bytes_used + added,
            "usage of {:?} would go negative: {} + {added} - {removed}",
            self.name,
            self.record.bytes_used
        );
        let used = self.record.bytes_used + added - removed;
        let quota = self.record.quota_bytes;
        if added > removed && quota > 0 && used > quota {
            return refuse(
                Errno::ENOSPC,
                format!(
                    "file system {:?} would use {used} bytes; its quota is {quota}",
                    self.name
                ),
            );
        }
        if used != self.record.bytes_used {
            self.record.bytes_used = used;
            self.dirty = true;
        }
        Ok(())
    }

    /// Writes the record back if the command changed it.
    pub fn save(&self, txn: &mut Txn<'_>) {
        if self.dirty {
            txn.put(keys::fs(&self.name), encode(&self.record));
        }
    }
}

/// A new directory's inode.
pub fn new_dir(mode: u32, uid: u32, gid: u32, parent: u64, now_ns: i64, version: u64) -> Inode {
    Inode {
        kind: Kind::Dir,
        mode: mode & 0o7777,
        uid,
        gid,
        size: 0,
        nlink: 2,
        atime_ns: now_ns,
        mtime_ns: now_ns,
        ctime_ns: now_ns,
        version,
        allocated_bytes: 0,
        parent,
        target: String::new(),
    }
}

pub fn inode(txn: &Txn<'_>, fs_id: u64, ino: u64) -> sled::Result<Option<Inode>> {
    match txn.get(&keys::fs_inode(fs_id, ino))? {
        Some(bytes) => Ok(Some(decode(&bytes)?)),
        None if ino == ROOT_INO => Ok(Some(new_dir(0o755, 0, 0, ROOT_INO, 0, 0))),
        None => Ok(None),
    }
}

pub fn put_inode(txn: &mut Txn<'_>, fs_id: u64, ino: u64, inode: &Inode) {
    txn.put(keys::fs_inode(fs_id, ino), encode(inode));
}

pub fn lookup(txn: &Txn<'_>, fs_id: u64, dir: u64, name: &str) -> sled::Result<Option<DirEntry>> {
    txn.get(&keys::fs_dirent(fs_id, dir, name))?
        .map(|b| decode(&b))
        .transpose()
}

pub fn put_dirent(txn: &mut Txn<'_>, fs_id: u64, dir: u64, name: &str, entry: DirEntry) {
    txn.put(keys::fs_dirent(fs_id, dir, name), encode(&entry));
}

pub fn remove_dirent(txn: &mut Txn<'_>, fs_id: u64, dir: u64, name: &str) {
    txn.remove(keys::fs_dirent(fs_id, dir, name));
}

pub fn is_empty_dir(txn: &Txn<'_>, fs_id: u64, dir: u64) -> sled::Result<bool> {
    Ok(txn
        .scan_prefix(&keys::fs_dir_prefix(fs_id, dir), 1)?
        .is_empty())
}

/// Walks `parts` from the root. An intermediate component that is not a directory
/// (symlinks included: paths given to the service never follow them) is `ENOTDIR`.
fn walk(txn: &Txn<'_>, fs_id: u64, parts: &[String]) -> Step<(u64, Inode)> {
    let mut ino = ROOT_INO;
    let mut node = inode(txn, fs_id, ino)?.expect("the root always exists");
    for (depth, part) in parts.iter().enumerate() {
        if node.kind != Kind::Dir {
            return refuse(
                Errno::ENOTDIR,
                format!("{} is not a directory", show(&parts[..depth])),
            );
        }
        let Some(entry) = lookup(txn, fs_id, ino, part)? else {
            return refuse(
                Errno::ENOENT,
                format!("{} does not exist", show(&parts[..=depth])),
            );
        };
        ino = entry.ino;
        node = match inode(txn, fs_id, ino)? {
            Some(n) => n,
            None => {
                return Err(Failure::Storage(sled::Error::Unsupported(format!(
                    "entry {} names inode {ino}, which is missing",
                    show(&parts[..=depth])
                ))))
            }
        };
    }
    Ok((ino, node))
}

/// The inode `at` names: `ENOENT` for a missing path, `ESTALE` for an inode number
/// that no longer exists.
pub fn resolve(txn: &Txn<'_>, fs_id: u64, at: &At) -> Step<(u64, Inode)> {
    match at {
        At::Path(parts) => walk(txn, fs_id, parts),
        At::Ino(ino) => match inode(txn, fs_id, *ino)? {
            Some(node) => Ok((*ino, node)),
            None => refuse(Errno::ESTALE, format!("inode {ino} no longer exists")),
        },
    }
}

/// Like [`resolve`], for a directory (`ENOTDIR` otherwise).
pub fn resolve_dir(txn: &Txn<'_>, fs_id: u64, at: &At) -> Step<(u64, Inode)> {
    let (ino, node) = resolve(txn, fs_id, at)?;
    if node.kind != Kind::Dir {
        return refuse(
            Errno::ENOTDIR,
            format!("{} is not a directory", describe(at)),
        );
    }
    Ok((ino, node))
}

pub fn describe(at: &At) -> String {
    match at {
        At::Path(parts) => show(parts),
        At::Ino(ino) => format!("inode {ino}"),
    }
}
