//! File contents: block writes, whole-file puts, truncation, attribute changes and
//! freeing an inode's data.
//!
//! Block `i` covers bytes `[i * FS_BLOCK_BYTES, (i + 1) * FS_BLOCK_BYTES)`. A block
//! holds a staged chunk and how many of its bytes are valid; bytes past a block's
//! valid length and below the file size read as zeros, as do absent blocks.
//! Invariant: every block ends at or below the file size. Chunk references are
//! taken before the replaced ones are dropped, so a chunk shared by both never
//! looks unreferenced.

use super::names::check_name;
use super::ops::make_dirs_inner;
use super::tree::{describe, inode, lookup, put_dirent, put_inode, resolve, resolve_dir, Fs};
use super::{
    refuse, At, BlockRef, DirEntry, Entry, FsResponse, Inode, Kind, PutFile, SetAttr, Step, TimeSet,
};
use crate::chunk_ref::ChunkRef;
use crate::errno::Errno;
use crate::limits::{FS_BLOCK_BYTES, FS_FILE_BYTES_MAX, FS_WRITE_BLOCKS_MAX};
use crate::state::{chunks, decode, encode, keys, ApplyContext, Error, Txn};

fn entry(ino: u64, inode: Inode) -> FsResponse {
    FsResponse::Entry(Box::new(Entry { ino, inode }))
}

fn block_index(key: &[u8]) -> u64 {
    keys::u64_at(key, 17).expect("block keys end in the index")
}

/// Blocks of `ino` with index `>= from`, in order.
pub fn blocks_from(
    txn: &Txn<'_>,
    fs_id: u64,
    ino: u64,
    from: u64,
) -> sled::Result<Vec<(u64, BlockRef)>> {
    let prefix = keys::fs_blocks_prefix(fs_id, ino);
    txn.scan_from(&prefix, &keys::fs_block(fs_id, ino, from), usize::MAX)?
        .into_iter()
        .map(|(k, v)| Ok((block_index(&k), decode(&v)?)))
        .collect()
}

fn check_size(size: u64) -> Step<()> {
    if size > FS_FILE_BYTES_MAX {
        return refuse(
            Errno::EFBIG,
            format!("a file of {size} bytes; the limit is {FS_FILE_BYTES_MAX}"),
        );
    }
    Ok(())
}

fn missing_chunk(txn: &Txn<'_>, refs: &[ChunkRef]) -> Step<()> {
    if let Some(hash) = chunks::first_missing(txn, refs)? {
        return Err(Error::ChunkMissing {
            hash: hex::encode(hash),
        }
        .into());
    }
    Ok(())
}

/// Cuts `node` (inode `ino`) to `size` bytes, dropping and shortening blocks.
fn shrink(
    txn: &mut Txn<'_>,
    ctx: ApplyContext,
    fs: &mut Fs,
    ino: u64,
    node: &mut Inode,
    size: u64,
) -> Step<()> {
    let keep_whole = size / FS_BLOCK_BYTES;
    let partial = size % FS_BLOCK_BYTES;
    let mut dropped = Vec::new();
    for (index, block) in blocks_from(txn, fs.id(), ino, keep_whole)? {
        if index == keep_whole && partial > 0 {
            if u64::from(block.len) > partial {
                let cut = BlockRef {
                    chunk: block.chunk,
                    len: partial as u32,
                };
                txn.put(keys::fs_block(fs.id(), ino, index), encode(&cut));
            }
            continue;
        }
        txn.remove(keys::fs_block(fs.id(), ino, index));
        dropped.push(block.chunk);
    }
    let freed: u64 = dropped.iter().map(|c| u64::from(c.len)).sum();
    chunks::drop_refs(txn, ctx.now_ms, &dropped)?;
    node.allocated_bytes -= freed;
    fs.account_bytes(0, freed)?;
    Ok(())
}

/// Only regular files have content: `EISDIR` for a directory, `EINVAL` for a symlink.
fn require_file(node: &Inode, target: &At) -> Step<()> {
    match node.kind {
        Kind::File => Ok(()),
        Kind::Dir => refuse(
            Errno::EISDIR,
            format!("{} is a directory", describe(target)),
        ),
        Kind::Symlink => refuse(Errno::EINVAL, format!("{} is a symlink", describe(target))),
    }
}

fn time(set: TimeSet, now_ns: i64) -> i64 {
    match set {
        TimeSet::Now => now_ns,
        TimeSet::At(t) => t,
    }
}

pub fn set_attr(
    txn: &mut Txn<'_>,
    ctx: ApplyContext,
    fs: &mut Fs,
    target: &At,
    set: &SetAttr,
    now_ns: i64,
) -> Step<FsResponse> {
    let (ino, mut node) = resolve(txn, fs.id(), target)?;
    if let Some(size) = set.size {
        require_file(&node, target)?;
        check_size(size)?;
        if size < node.size {
            shrink(txn, ctx, fs, ino, &mut node, size)?;
        }
        if size != node.size {
            node.size = size;
            node.version = ctx.version();
        }
        node.mtime_ns = now_ns;
    }
    if let Some(mode) = set.mode {
        node.mode = mode & 0o7777;
    }
    if let Some(uid) = set.uid {
        node.uid = uid;
    }
    if let Some(gid) = set.gid {
        node.gid = gid;
    }
    if let Some(atime) = set.atime {
        node.atime_ns = time(atime, now_ns);
    }
    if let Some(mtime) = set.mtime {
        node.mtime_ns = time(mtime, now_ns);
    }
    node.ctime_ns = now_ns;
    put_inode(txn, fs.id(), ino, &node);
    Ok(entry(ino, node))
}

/// The blocks a write replaces and the offset its data ends at.
pub struct BlockWrite<'a> {
    pub blocks: &'a [(u64, BlockRef)],
    pub end: u64,
    pub if_version: Option<u64>,
}

pub fn write(
    txn: &mut Txn<'_>,
    ctx: ApplyContext,
    fs: &mut Fs,
    target: &At,
    write: &BlockWrite<'_>,
    now_ns: i64,
) -> Step<FsResponse> {
    let (ino, mut node) = resolve(txn, fs.id(), target)?;
    require_file(&node, target)?;
    if let Some(expected) = write.if_version {
        if expected != node.version {
            return Err(Error::WriteRaced.into());
        }
    }
    if write.blocks.len() > FS_WRITE_BLOCKS_MAX {
        return Err(Error::limit(
            "blocks",
            FS_WRITE_BLOCKS_MAX as u64,
            write.blocks.len() as u64,
            "blocks",
        )
        .into());
    }
    let mut end = write.end;
    for (index, block) in write.blocks {
        if block.len == 0
            || block.len > block.chunk.len
            || u64::from(block.chunk.len) > FS_BLOCK_BYTES
        {
            return Err(Error::invalid(
                "blocks",
                format!(
                    "block {index} has {} valid bytes of a {}-byte chunk",
                    block.len, block.chunk.len
                ),
            )
            .into());
        }
        end = end.max(
            index
                .saturating_mul(FS_BLOCK_BYTES)
                .saturating_add(u64::from(block.len)),
        );
    }
    check_size(end)?;
    let new_refs: Vec<ChunkRef> = write.blocks.iter().map(|(_, b)| b.chunk).collect();
    missing_chunk(txn, &new_refs)?;
    let mut old_refs = Vec::new();
    for (index, block) in write.blocks {
        let key = keys::fs_block(fs.id(), ino, *index);
        if let Some(old) = txn.get(&key)? {
            old_refs.push(decode::<BlockRef>(&old)?.chunk);
        }
        txn.put(key, encode(block));
    }
    let added: u64 = new_refs.iter().map(|c| u64::from(c.len)).sum();
    let removed: u64 = old_refs.iter().map(|c| u64::from(c.len)).sum();
    chunks::add_refs(txn, &new_refs)?;
    chunks::drop_refs(txn, ctx.now_ms, &old_refs)?;
    fs.account_bytes(added, removed)?;
    node.allocated_bytes = node.allocated_bytes + added - removed;
    node.size = node.size.max(end);
    node.version = ctx.version();
    node.mtime_ns = now_ns;
    node.ctime_ns = now_ns;
    put_inode(txn, fs.id(), ino, &node);
    Ok(entry(ino, node))
}

/// A `PutFile` carrying its chunk's bytes names exactly that one chunk.
pub fn check_inline_chunk(put: &PutFile) -> Result<(), Error> {
    match put.chunks.as_slice() {
        [only]
            if only.len as usize == put.chunk_data.len()
                && u64::from(only.len) <= FS_BLOCK_BYTES =>
        {
            Ok(())
        }
        _ => Err(Error::invalid(
            "chunk_data",
            format!(
                "inline bytes ({}) must be the file's only chunk ({} chunks)",
                put.chunk_data.len(),
                put.chunks.len()
            ),
        )),
    }
}

pub fn put_file(
    txn: &mut Txn<'_>,
    ctx: ApplyContext,
    fs: &mut Fs,
    put: &PutFile,
    now_ns: i64,
) -> Step<FsResponse> {
    check_name(&put.at.name)?;
    check_size(put.size)?;
    let sum: u64 = put.chunks.iter().map(|c| u64::from(c.len)).sum();
    if sum != put.size {
        return Err(Error::invalid(
            "size",
            format!("chunks add up to {sum} bytes, not {}", put.size),
        )
        .into());
    }
    if let Some(short) = put
        .chunks
        .iter()
        .rev()
        .skip(1)
        .find(|c| u64::from(c.len) != FS_BLOCK_BYTES)
    {
        return Err(Error::invalid(
            "chunks",
            format!(
                "every chunk but the last must be {FS_BLOCK_BYTES} bytes, not {}",
                short.len
            ),
        )
        .into());
    }
    missing_chunk(txn, &put.chunks)?;
    let fs_id = fs.id();
    let (dir_ino, mut dir) = match (&put.at.dir, put.parents) {
        (At::Path(path), true) => {
            let owner = super::Owner {
                mode: 0o755,
                ..put.owner
            };
            make_dirs_inner(txn, ctx, fs, path, owner, now_ns)?
        }
        (at, _) => resolve_dir(txn, fs_id, at)?,
    };
    if let Some(existing) = lookup(txn, fs_id, dir_ino, &put.at.name)? {
        let shown = format!("{}/{}", describe(&put.at.dir), put.at.name);
        if put.exclusive {
            return refuse(Errno::EEXIST, format!("{shown} exists"));
        }
        if existing.kind == Kind::Dir {
            return refuse(Errno::EISDIR, format!("{shown} is a directory"));
        }
        let old = inode(txn, fs_id, existing.ino)?.expect("entries name live inodes");
        super::handles::drop_link(txn, ctx, fs, existing.ino, old, now_ns)?;
    }
    let ino = fs.alloc_ino();
    for (index, chunk) in put.chunks.iter().enumerate() {
        let block = BlockRef {
            chunk: *chunk,
            len: chunk.len,
        };
        txn.put(keys::fs_block(fs_id, ino, index as u64), encode(&block));
    }
    chunks::add_refs(txn, &put.chunks)?;
    fs.account_bytes(sum, 0)?;
    let mtime = put.mtime_ns.unwrap_or(now_ns);
    let node = Inode {
        kind: Kind::File,
        mode: put.owner.mode & 0o7777,
        uid: put.owner.uid,
        gid: put.owner.gid,
        size: put.size,
        nlink: 1,
        atime_ns: mtime,
        mtime_ns: mtime,
        ctime_ns: now_ns,
        version: ctx.version(),
        allocated_bytes: sum,
        parent: 0,
        target: String::new(),
    };
    put_inode(txn, fs_id, ino, &node);
    put_dirent(
        txn,
        fs_id,
        dir_ino,
        &put.at.name,
        DirEntry {
            ino,
            kind: Kind::File,
        },
    );
    dir.mtime_ns = now_ns;
    dir.ctime_ns = now_ns;
    put_inode(txn, fs_id, dir_ino, &dir);
    Ok(entry(ino, node))
}

/// Removes an inode with no links and no open handles, with its blocks and
/// attributes; its chunks lose their references (GC collects them after the grace
/// period, so a reader still streaming an old version finishes).
pub fn free_inode(
    txn: &mut Txn<'_>,
    ctx: ApplyContext,
    fs: &mut Fs,
    ino: u64,
    node: &Inode,
) -> Step<()> {
    assert_eq!(node.nlink, 0, "only unlinked inodes are freed");
    let fs_id = fs.id();
    let mut refs = Vec::new();
    for (index, block) in blocks_from(txn, fs_id, ino, 0)? {
        txn.remove(keys::fs_block(fs_id, ino, index));
        refs.push(block.chunk);
    }
    chunks::drop_refs(txn, ctx.now_ms, &refs)?;
    for (key, _) in txn.scan_prefix(&keys::fs_xattr_prefix(fs_id, ino), usize::MAX)? {
        txn.remove(key);
    }
    txn.remove(keys::fs_orphan(fs_id, ino));
    txn.remove(keys::fs_inode(fs_id, ino));
    fs.account_bytes(0, node.allocated_bytes)?;
    fs.inode_freed();
    Ok(())
}
