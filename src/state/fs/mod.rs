//! The file system service's state: named file systems, their inodes, directory
//! entries, block maps, extended attributes and open-handle leases.
//!
//! Every change is one command applied atomically; inode numbers are allocated in
//! apply, so every replica numbers alike. Timestamps come stamped in the command
//! by the leader's service (`now_ns`), never from the replica's clock. A file's
//! content is a map from 1 MiB block index to a [`BlockRef`] (a content-addressed,
//! reference-counted chunk shared with objects, and how much of it is valid);
//! absent blocks are holes and read as zeros. Layout of the keys in `super::keys`.
//!
//! Files: `names` (validation, pure), `tree` (records and lookups), `ops`
//! (namespace changes), `data` (content), `handles` (open handles, orphans, leases),
//! `admin` (file systems, usage, purge), `read` (queries).

pub mod admin;
pub mod data;
pub mod handles;
pub mod names;
pub mod ops;
pub mod read;
pub mod tree;

use serde::{Deserialize, Serialize};

use super::{ApplyContext, Error, Txn};
use crate::chunk_ref::ChunkRef;
use crate::errno::Errno;

/// The file system that always exists.
pub const DEFAULT_FS: &str = "default";
/// Node-local scratch storage: served by the API layer from a node's own disk,
/// never by the state machine; the name is reserved.
pub const LOCAL_FS: &str = "local";
/// Every file system's root directory.
pub const ROOT_INO: u64 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    File,
    Dir,
    Symlink,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsRecord {
    pub id: u64,
    /// 0: no quota.
    pub quota_bytes: u64,
    pub created_ms: u64,
    /// Bytes of chunks the file system's files reference (holes cost nothing).
    pub bytes_used: u64,
    pub inodes_used: u64,
    pub next_ino: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inode {
    pub kind: Kind,
    /// Permission bits (`0o7777`); the kind is separate.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// Directory entries naming this inode; a directory counts `.` and its
    /// subdirectories' `..` as Unix does (2 + subdirectories).
    pub nlink: u32,
    pub atime_ns: i64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    /// Changes whenever the content changes (unique across the cluster).
    pub version: u64,
    /// Bytes of chunks the block map references.
    pub allocated_bytes: u64,
    /// A directory's parent (the root is its own); 0 for other kinds.
    pub parent: u64,
    /// A symlink's target; empty for other kinds.
    pub target: String,
}

/// An inode with its number: what a lookup or a change returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub ino: u64,
    pub inode: Inode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirEntry {
    pub ino: u64,
    pub kind: Kind,
}

/// One block of a file: a chunk, of which the first `len` bytes are the file's
/// (a truncate shortens `len` without rewriting the chunk).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRef {
    pub chunk: ChunkRef,
    pub len: u32,
}

/// What a command acts on: a path from the root (already normalised into
/// components by `names::parse_path`), or an inode number (a mount's handle).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum At {
    Path(Vec<String>),
    Ino(u64),
}

impl At {
    pub fn root() -> At {
        At::Path(Vec::new())
    }
}

/// A directory entry named by its directory and its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Name {
    pub dir: At,
    pub name: String,
}

/// Owner and permissions of something new.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimeSet {
    Now,
    At(i64),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeSet>,
    pub mtime: Option<TimeSet>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum XattrMode {
    /// Create or replace.
    Any,
    /// `XATTR_CREATE`: `EEXIST` if present.
    Create,
    /// `XATTR_REPLACE`: `ENODATA` if absent.
    Replace,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PutFile {
    pub at: Name,
    /// Create missing parent directories (`mkdir -p`) in the same command.
    pub parents: bool,
    /// `EEXIST` if the name exists.
    pub exclusive: bool,
    pub chunks: Vec<ChunkRef>,
    pub size: u64,
    pub owner: Owner,
    /// The mtime to keep (an upload with `-p`); `None`: now.
    pub mtime_ns: Option<i64>,
    /// A small file's only chunk, carried in this command and staged by its apply
    /// (empty: every chunk is staged already). Saves the small file a Raft entry
    /// and a round trip of its own.
    #[serde(with = "serde_bytes")]
    pub chunk_data: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FsCommand {
    CreateFs {
        name: String,
        quota_bytes: u64,
    },
    SetQuota {
        name: String,
        quota_bytes: u64,
    },
    /// Removes the file system at once; the sweeper frees its data in steps.
    DeleteFs {
        name: String,
    },
    /// Creates a file, directory or symlink. A file created without `exclusive`
    /// over an existing file returns that file (`O_CREAT` without `O_EXCL`).
    Make {
        fs: String,
        at: Name,
        kind: Kind,
        owner: Owner,
        exclusive: bool,
        /// Symlinks only.
        target: String,
        now_ns: i64,
    },
    /// `mkdir -p`: creates every missing directory of `path`.
    MakeDirs {
        fs: String,
        path: Vec<String>,
        owner: Owner,
        now_ns: i64,
    },
    Unlink {
        fs: String,
        at: Name,
        now_ns: i64,
    },
    Rmdir {
        fs: String,
        at: Name,
        now_ns: i64,
    },
    /// One bounded step of a recursive delete (`rm -r`): removes up to `step_max`
    /// entries under (and finally) `at`, deepest first.
    RemoveTree {
        fs: String,
        at: Name,
        step_max: u64,
        /// Remove only what is inside `at` (done once it is empty).
        keep_top: bool,
        now_ns: i64,
    },
    Rename {
        fs: String,
        from: Name,
        to: Name,
        /// `RENAME_NOREPLACE`: `EEXIST` if `to` exists.
        noreplace: bool,
        now_ns: i64,
    },
    Link {
        fs: String,
        target: At,
        at: Name,
        now_ns: i64,
    },
    SetAttr {
        fs: String,
        target: At,
        set: SetAttr,
        now_ns: i64,
    },
    /// Replaces blocks of a file (whose chunks are staged) and grows it to at least
    /// `end`. With `if_version`, only if the content did not change meanwhile.
    Write {
        fs: String,
        target: At,
        blocks: Vec<(u64, BlockRef)>,
        end: u64,
        if_version: Option<u64>,
        now_ns: i64,
    },
    /// Makes `at` a new file with these chunks, in one step: readers of the name see
    /// the old file or the new one, never a part.
    PutFile {
        fs: String,
        put: Box<PutFile>,
        now_ns: i64,
    },
    SetXattr {
        fs: String,
        target: At,
        name: String,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        mode: XattrMode,
        now_ns: i64,
    },
    RemoveXattr {
        fs: String,
        target: At,
        name: String,
        now_ns: i64,
    },
    /// Registers an open handle of `lease` on the inode; while a live lease holds
    /// it, an inode whose last link goes stays readable.
    Open {
        fs: String,
        target: At,
        lease: u64,
        lease_ms: u64,
    },
    Release {
        fs: String,
        ino: u64,
        lease: u64,
    },
    /// Extends a lease; `ESTALE` if it expired (its handles are gone).
    RenewLease {
        lease: u64,
        lease_ms: u64,
    },
    /// Releases every handle of a lease (a mount unmounting).
    EndLease {
        lease: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FsResponse {
    Done,
    Entry(Box<Entry>),
    Removed { entries: u64, done: bool },
}

impl FsCommand {
    /// About how many bytes the command adds to a Raft entry.
    pub fn size_bytes(&self) -> usize {
        let names = |at: &Name| at.name.len() + at_bytes(&at.dir);
        match self {
            FsCommand::PutFile { put, .. } => {
                names(&put.at)
                    + put.chunks.len() * std::mem::size_of::<ChunkRef>()
                    + put.chunk_data.len()
                    + 128
            }
            FsCommand::Write { blocks, .. } => blocks.len() * 48 + 128,
            FsCommand::SetXattr { name, value, .. } => name.len() + value.len() + 128,
            FsCommand::Make { at, target, .. } => names(at) + target.len() + 128,
            FsCommand::MakeDirs { path, .. } => path.iter().map(String::len).sum::<usize>() + 128,
            FsCommand::Rename { from, to, .. } => names(from) + names(to) + 128,
            FsCommand::Unlink { at, .. }
            | FsCommand::Rmdir { at, .. }
            | FsCommand::RemoveTree { at, .. }
            | FsCommand::Link { at, .. } => names(at) + 128,
            _ => 256,
        }
    }
}

fn at_bytes(at: &At) -> usize {
    match at {
        At::Path(parts) => parts.iter().map(|p| p.len() + 1).sum(),
        At::Ino(_) => 8,
    }
}

pub type FsOutcome = Result<FsResponse, Error>;

/// Why an fs step stopped: the request was refused (nothing may change), or the
/// disk failed.
#[derive(Debug)]
pub enum Failure {
    Rejected(Error),
    Storage(sled::Error),
}

impl From<sled::Error> for Failure {
    fn from(e: sled::Error) -> Self {
        Failure::Storage(e)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Rejected(e)
    }
}

pub type Step<T> = Result<T, Failure>;

/// A refusal with a POSIX errno.
pub fn refuse<T>(errno: Errno, what: impl Into<String>) -> Step<T> {
    Err(Failure::Rejected(Error::fs(errno, what)))
}

/// Applies one fs command. A refused command leaves the batch as it found it:
/// its writes are rolled back, so a rejected request changes nothing.
pub fn apply(txn: &mut Txn<'_>, ctx: ApplyContext, command: &FsCommand) -> sled::Result<FsOutcome> {
    // A chunk carried inline is staged before the mark (chunk files cannot be
    // rolled back): if the command is then refused, the chunk is an unreferenced
    // one like any staged by an upload that failed, and GC collects it.
    if let FsCommand::PutFile { put, .. } = command {
        if !put.chunk_data.is_empty() {
            if let Err(e) = data::check_inline_chunk(put) {
                return Ok(Err(e));
            }
            super::chunks::stage(txn, ctx.now_ms, &put.chunks[0].hash, &put.chunk_data)?;
        }
    }
    let mark = txn.mark();
    let result = apply_step(txn, ctx, command);
    match result {
        Ok(response) => {
            txn.release(mark);
            Ok(Ok(response))
        }
        Err(Failure::Rejected(e)) => {
            txn.rollback(mark);
            Ok(Err(e))
        }
        Err(Failure::Storage(e)) => Err(e),
    }
}

fn apply_step(txn: &mut Txn<'_>, ctx: ApplyContext, command: &FsCommand) -> Step<FsResponse> {
    use FsCommand as C;
    match command {
        C::CreateFs { name, quota_bytes } => admin::create(txn, ctx, name, *quota_bytes),
        C::SetQuota { name, quota_bytes } => admin::set_quota(txn, name, *quota_bytes),
        C::DeleteFs { name } => admin::delete(txn, name),
        C::Make {
            fs,
            at,
            kind,
            owner,
            exclusive,
            target,
            now_ns,
        } => in_fs(txn, fs, |txn, fs| {
            ops::make(
                txn,
                ctx,
                fs,
                at,
                (*kind, *owner, target),
                *exclusive,
                *now_ns,
            )
        }),
        C::MakeDirs {
            fs,
            path,
            owner,
            now_ns,
        } => in_fs(txn, fs, |txn, fs| {
            ops::make_dirs(txn, ctx, fs, path, *owner, *now_ns)
        }),
        C::Unlink { fs, at, now_ns } => {
            in_fs(txn, fs, |txn, fs| ops::unlink(txn, ctx, fs, at, *now_ns))
        }
        C::Rmdir { fs, at, now_ns } => {
            in_fs(txn, fs, |txn, fs| ops::rmdir(txn, ctx, fs, at, *now_ns))
        }
        C::RemoveTree {
            fs,
            at,
            step_max,
            keep_top,
            now_ns,
        } => in_fs(txn, fs, |txn, fs| {
            ops::remove_tree(txn, ctx, fs, at, (*step_max, *keep_top), *now_ns)
        }),
        C::Rename {
            fs,
            from,
            to,
            noreplace,
            now_ns,
        } => in_fs(txn, fs, |txn, fs| {
            ops::rename(txn, ctx, fs, from, to, *noreplace, *now_ns)
        }),
        C::Link {
            fs,
            target,
            at,
            now_ns,
        } => in_fs(txn, fs, |txn, fs| ops::link(txn, fs, target, at, *now_ns)),
        C::SetAttr {
            fs,
            target,
            set,
            now_ns,
        } => in_fs(txn, fs, |txn, fs| {
            data::set_attr(txn, ctx, fs, target, set, *now_ns)
        }),
        C::Write {
            fs,
            target,
            blocks,
            end,
            if_version,
            now_ns,
        } => in_fs(txn, fs, |txn, fs| {
            let write = data::BlockWrite {
                blocks,
                end: *end,
                if_version: *if_version,
            };
            data::write(txn, ctx, fs, target, &write, *now_ns)
        }),
        C::PutFile { fs, put, now_ns } => in_fs(txn, fs, |txn, fs| {
            data::put_file(txn, ctx, fs, put, *now_ns)
        }),
        C::SetXattr {
            fs,
            target,
            name,
            value,
            mode,
            now_ns,
        } => in_fs(txn, fs, |txn, fs| {
            ops::set_xattr(txn, fs, target, (name, value), *mode, *now_ns)
        }),
        C::RemoveXattr {
            fs,
            target,
            name,
            now_ns,
        } => in_fs(txn, fs, |txn, fs| {
            ops::remove_xattr(txn, fs, target, name, *now_ns)
        }),
        C::Open {
            fs,
            target,
            lease,
            lease_ms,
        } => in_fs(txn, fs, |txn, fs| {
            handles::open(txn, ctx, fs, target, *lease, *lease_ms)
        }),
        C::Release { fs, ino, lease } => handles::release(txn, ctx, fs, *ino, *lease),
        C::RenewLease { lease, lease_ms } => handles::renew(txn, ctx, *lease, *lease_ms),
        C::EndLease { lease } => {
            handles::end_lease(txn, ctx, *lease, u64::MAX)?;
            Ok(FsResponse::Done)
        }
    }
}

/// Runs `op` on the open file system `name` and writes its record back.
fn in_fs(
    txn: &mut Txn<'_>,
    name: &str,
    op: impl FnOnce(&mut Txn<'_>, &mut tree::Fs) -> Step<FsResponse>,
) -> Step<FsResponse> {
    let mut fs = tree::Fs::open(txn, name)?;
    let response = op(txn, &mut fs)?;
    fs.save(txn);
    Ok(response)
}

#[cfg(test)]
mod tests;
