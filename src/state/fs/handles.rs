//! Open handles, orphans and the leases that keep them.
//!
//! A client (a mount, any SDK user) takes a lease and registers each open handle
//! under it. When an inode loses its last link while a handle holds it, it becomes
//! an orphan: no name reaches it, but the handle still reads it by number. It is
//! freed when its last handle is released, or when its lease expires by the
//! leader-stamped clock (the sweeper ends expired leases in bounded steps).

use serde::{Deserialize, Serialize};

use super::data::free_inode;
use super::tree::{inode, put_inode, resolve, Fs};
use super::{refuse, At, Entry, FsResponse, Inode, Step};
use crate::errno::Errno;
use crate::limits::{FS_LEASE_MS_DEFAULT, FS_LEASE_MS_MAX};
use crate::state::{decode, encode, keys, ApplyContext, Txn};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub expires_ms: u64,
}

pub fn is_open(txn: &Txn<'_>, fs_id: u64, ino: u64) -> sled::Result<bool> {
    Ok(!txn
        .scan_prefix(&keys::fs_handles_prefix(fs_id, ino), 1)?
        .is_empty())
}

/// Removes one link of `node`: written back if links or handles remain, kept as
/// an orphan if only handles do, freed otherwise.
pub fn drop_link(
    txn: &mut Txn<'_>,
    ctx: ApplyContext,
    fs: &mut Fs,
    ino: u64,
    mut node: Inode,
    now_ns: i64,
) -> Step<()> {
    assert!(node.nlink >= 1, "inode {ino} has no link to drop");
    node.nlink -= 1;
    node.ctime_ns = now_ns;
    if node.nlink > 0 {
        put_inode(txn, fs.id(), ino, &node);
    } else if is_open(txn, fs.id(), ino)? {
        put_inode(txn, fs.id(), ino, &node);
        txn.put(keys::fs_orphan(fs.id(), ino), Vec::new());
    } else {
        free_inode(txn, ctx, fs, ino, &node)?;
    }
    Ok(())
}

fn lease_ms(requested: u64) -> u64 {
    if requested == 0 {
        FS_LEASE_MS_DEFAULT
    } else {
        requested.min(FS_LEASE_MS_MAX)
    }
}

fn set_lease(txn: &mut Txn<'_>, lease: u64, old: Option<LeaseRecord>, expires_ms: u64) {
    if let Some(old) = old {
        txn.remove(keys::fs_lease_expiry(old.expires_ms, lease));
    }
    txn.put(keys::fs_lease(lease), encode(&LeaseRecord { expires_ms }));
    txn.put(keys::fs_lease_expiry(expires_ms, lease), Vec::new());
}

fn lease_record(txn: &Txn<'_>, lease: u64) -> sled::Result<Option<LeaseRecord>> {
    txn.get(&keys::fs_lease(lease))?
        .map(|b| decode(&b))
        .transpose()
}

pub fn open(
    txn: &mut Txn<'_>,
    ctx: ApplyContext,
    fs: &mut Fs,
    target: &At,
    lease: u64,
    requested_ms: u64,
) -> Step<FsResponse> {
    let (ino, node) = resolve(txn, fs.id(), target)?;
    let key = keys::fs_handle(fs.id(), ino, lease);
    let count = match txn.get(&key)? {
        Some(b) => decode::<u32>(&b)?,
        None => 0,
    };
    txn.put(key, encode(&(count + 1)));
    txn.put(
        keys::fs_lease_handle(lease, fs.id(), ino),
        fs.name.as_bytes().to_vec(),
    );
    let old = lease_record(txn, lease)?;
    set_lease(txn, lease, old, ctx.now_ms + lease_ms(requested_ms));
    Ok(FsResponse::Entry(Box::new(Entry { ino, inode: node })))
}

/// Releases one handle of `lease` on `ino` (a handle not held is not an error: a
/// retried release, or one after the lease expired).
fn release_one(
    txn: &mut Txn<'_>,
    ctx: ApplyContext,
    fs: &mut Fs,
    ino: u64,
    lease: u64,
    all: bool,
) -> Step<()> {
    let key = keys::fs_handle(fs.id(), ino, lease);
    let Some(bytes) = txn.get(&key)? else {
        return Ok(());
    };
    let count: u32 = decode(&bytes)?;
    if count > 1 && !all {
        txn.put(key, encode(&(count - 1)));
        return Ok(());
    }
    txn.remove(key);
    txn.remove(keys::fs_lease_handle(lease, fs.id(), ino));
    if let Some(node) = inode(txn, fs.id(), ino)? {
        if node.nlink == 0 && !is_open(txn, fs.id(), ino)? {
            free_inode(txn, ctx, fs, ino, &node)?;
        }
    }
    Ok(())
}

pub fn release(
    txn: &mut Txn<'_>,
    ctx: ApplyContext,
    fs_name: &str,
    ino: u64,
    lease: u64,
) -> Step<FsResponse> {
    let Ok(mut fs) = Fs::open(txn, fs_name) else {
        return Ok(FsResponse::Done); // the file system was deleted: nothing is held
    };
    release_one(txn, ctx, &mut fs, ino, lease, false)?;
    fs.save(txn);
    Ok(FsResponse::Done)
}

pub fn renew(
    txn: &mut Txn<'_>,
    ctx: ApplyContext,
    lease: u64,
    requested_ms: u64,
) -> Step<FsResponse> {
    let Some(old) = lease_record(txn, lease)? else {
        return refuse(
            Errno::ESTALE,
            format!("lease {lease} expired; its handles were released"),
        );
    };
    set_lease(txn, lease, Some(old), ctx.now_ms + lease_ms(requested_ms));
    Ok(FsResponse::Done)
}

/// Releases up to `budget` handles of `lease`, and the lease itself once none is
/// left. Returns how many handles were released.
pub fn end_lease(txn: &mut Txn<'_>, ctx: ApplyContext, lease: u64, budget: u64) -> Step<u64> {
    let prefix = keys::fs_lease_handles_prefix(lease);
    let held = txn.scan_prefix(
        &prefix,
        usize::try_from(budget)
            .unwrap_or(usize::MAX)
            .saturating_add(1),
    )?;
    let mut released = 0;
    for (key, name) in &held {
        if released == budget {
            return Ok(released);
        }
        let (Some(fs_id), Some(ino)) = (keys::u64_at(key, 9), keys::u64_at(key, 17)) else {
            txn.remove(key.clone());
            continue;
        };
        let name = String::from_utf8_lossy(name).into_owned();
        match Fs::open(txn, &name) {
            Ok(mut fs) if fs.id() == fs_id => {
                release_one(txn, ctx, &mut fs, ino, lease, true)?;
                fs.save(txn);
            }
            // Deleted (or deleted and its name reused): its handles went with it.
            _ => {
                txn.remove(key.clone());
                txn.remove(keys::fs_handle(fs_id, ino, lease));
            }
        }
        released += 1;
    }
    if let Some(old) = lease_record(txn, lease)? {
        txn.remove(keys::fs_lease_expiry(old.expires_ms, lease));
        txn.remove(keys::fs_lease(lease));
    }
    Ok(released)
}

/// Ends leases whose time passed, releasing at most `budget` handles. Returns the
/// work done (handles released plus leases ended).
pub fn expire_leases(txn: &mut Txn<'_>, ctx: ApplyContext, budget: u64) -> sled::Result<u64> {
    let mut done = 0;
    for (key, _) in txn.scan_prefix(&[keys::FS_LEASE_EXPIRY], budget as usize)? {
        let (Some(expires_ms), Some(lease)) = (keys::u64_at(&key, 1), keys::u64_at(&key, 9)) else {
            txn.remove(key);
            continue;
        };
        if expires_ms > ctx.now_ms || done >= budget {
            break;
        }
        match end_lease(txn, ctx, lease, budget - done) {
            Ok(released) => done += released + 1,
            Err(super::Failure::Storage(e)) => return Err(e),
            Err(super::Failure::Rejected(e)) => {
                return Err(sled::Error::Unsupported(format!(
                    "releasing an expired lease was refused: {e}"
                )))
            }
        }
    }
    Ok(done)
}

/// Whether some lease's time passed (the leader checks before proposing a sweep).
pub fn has_expired_lease(tree: &sled::Tree, now_ms: u64) -> sled::Result<bool> {
    Ok(match tree.scan_prefix([keys::FS_LEASE_EXPIRY]).next() {
        Some(item) => keys::u64_at(&item?.0, 1).is_none_or(|expires_ms| expires_ms <= now_ms),
        None => false,
    })
}
