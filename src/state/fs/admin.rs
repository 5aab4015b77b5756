//! Named file systems: create (with a quota), change the quota, delete, list, and
//! the sweeper's purge of a deleted one's records in bounded steps.

use super::names::check_fs_name;
use super::tree::{self, no_such_fs, Fs};
use super::{BlockRef, FsRecord, FsResponse, Step, DEFAULT_FS, LOCAL_FS, ROOT_INO};
use crate::limits::FILESYSTEMS_MAX;
use crate::state::{chunks, decode, encode, keys, meta_u64, ApplyContext, Error, Txn};

const META_NEXT_FS_ID: &str = "fs_next_id";
const META_FS_COUNT: &str = "fs_count";
const FIRST_CREATED_FS_ID: u64 = 16;

pub fn create(
    txn: &mut Txn<'_>,
    ctx: ApplyContext,
    name: &str,
    quota_bytes: u64,
) -> Step<FsResponse> {
    check_fs_name(name)?;
    if name == LOCAL_FS {
        return Err(no_such_fs(name));
    }
    if tree::record(txn, name)?.is_some() {
        return Err(Error::AlreadyExists {
            what: format!("file system {name:?}"),
        }
        .into());
    }
    let count = meta_u64(txn, META_FS_COUNT)?;
    if count + 1 >= FILESYSTEMS_MAX {
        return Err(Error::limit("filesystems", FILESYSTEMS_MAX, count + 2, "file systems").into());
    }
    let id = meta_u64(txn, META_NEXT_FS_ID)?.max(FIRST_CREATED_FS_ID);
    txn.put(keys::meta(META_NEXT_FS_ID), encode(&(id + 1)));
    txn.put(keys::meta(META_FS_COUNT), encode(&(count + 1)));
    let record = FsRecord {
        id,
        quota_bytes,
        created_ms: ctx.now_ms,
        bytes_used: 0,
        inodes_used: 1,
        next_ino: ROOT_INO + 1,
    };
    txn.put(keys::fs(name), encode(&record));
    let now_ns = i64::try_from(ctx.now_ms).unwrap_or(i64::MAX / 1_000_000) * 1_000_000;
    let root = tree::new_dir(0o755, 0, 0, ROOT_INO, now_ns, ctx.version());
    tree::put_inode(txn, id, ROOT_INO, &root);
    Ok(FsResponse::Done)
}

pub fn set_quota(txn: &mut Txn<'_>, name: &str, quota_bytes: u64) -> Step<FsResponse> {
    let fs = Fs::open(txn, name)?;
    let mut record = fs.record;
    record.quota_bytes = quota_bytes;
    txn.put(keys::fs(name), encode(&record));
    Ok(FsResponse::Done)
}

/// Deletes a file system at once (its name is free again); the sweeper then frees
/// its records and chunk references in steps.
pub fn delete(txn: &mut Txn<'_>, name: &str) -> Step<FsResponse> {
    if name == DEFAULT_FS {
        return Err(Error::invalid("fs", "\"default\" is built in and cannot be deleted").into());
    }
    let fs = Fs::open(txn, name)?;
    txn.remove(keys::fs(name));
    txn.put(keys::fs_dropped(fs.id()), Vec::new());
    let count = meta_u64(txn, META_FS_COUNT)?;
    assert!(count > 0, "a created file system is counted");
    txn.put(keys::meta(META_FS_COUNT), encode(&(count - 1)));
    Ok(FsResponse::Done)
}

/// Every file system: `default` first, then the created ones by name.
pub fn list(tree: &sled::Tree) -> sled::Result<Vec<(String, FsRecord)>> {
    let txn = Txn::new(tree);
    let mut out = vec![(
        DEFAULT_FS.to_string(),
        tree::record(&txn, DEFAULT_FS)?.expect("default always exists"),
    )];
    for item in tree.scan_prefix([keys::FS]) {
        let (key, value) = item?;
        let name = String::from_utf8_lossy(&key[1..]).into_owned();
        if name != DEFAULT_FS {
            out.push((name, decode(&value)?));
        }
    }
    Ok(out)
}

/// Removes up to `budget` records of the first deleted file system (dropping the
/// chunk references of its blocks); its marker goes once nothing is left.
pub fn purge_dropped(txn: &mut Txn<'_>, ctx: ApplyContext, budget: u64) -> sled::Result<u64> {
    let Some((marker, _)) = txn.scan_prefix(&[keys::FS_DROPPED], 1)?.into_iter().next() else {
        return Ok(0);
    };
    let Some(fs_id) = keys::u64_at(&marker, 1) else {
        txn.remove(marker);
        return Ok(0);
    };
    let mut removed = 0u64;
    for prefix in keys::fs_record_prefixes(fs_id).iter() {
        let left = (budget - removed) as usize;
        if left == 0 {
            return Ok(removed);
        }
        let doomed = txn.scan_prefix(prefix, left)?;
        let mut refs = Vec::new();
        for (key, value) in doomed {
            if key[0] == keys::FS_BLOCK {
                refs.push(decode::<BlockRef>(&value)?.chunk);
            }
            txn.remove(key);
            removed += 1;
        }
        chunks::drop_refs(txn, ctx.now_ms, &refs)?;
    }
    if removed < budget {
        txn.remove(marker);
    }
    Ok(removed)
}
