//! Read-side queries of the file system state: stat, directory pages, block maps,
//! attributes and usage. They read the committed tree after the caller's read
//! barrier; none of them changes anything.

use super::data::blocks_from;
use super::tree::{self, inode, resolve, Fs};
use super::{refuse, At, BlockRef, DirEntry, Entry, FsRecord, Kind, Step};
use crate::errno::Errno;
use crate::limits::{fs_readdir_page, FS_BLOCK_BYTES};
use crate::state::{decode, keys, Txn};

pub fn open(txn: &Txn<'_>, fs: &str) -> Step<Fs> {
    Fs::open(txn, fs)
}

pub fn stat(txn: &Txn<'_>, fs: &Fs, at: &At) -> Step<Entry> {
    let (ino, inode) = resolve(txn, fs.id(), at)?;
    Ok(Entry { ino, inode })
}

/// The entry `name` of directory `dir` (a mount's lookup).
pub fn lookup(txn: &Txn<'_>, fs: &Fs, dir: &At, name: &str) -> Step<Entry> {
    super::names::check_name(name)?;
    let (dir_ino, _) = tree::resolve_dir(txn, fs.id(), dir)?;
    let Some(found) = tree::lookup(txn, fs.id(), dir_ino, name)? else {
        return refuse(
            Errno::ENOENT,
            format!("{}/{name} does not exist", tree::describe(dir)),
        );
    };
    let node = inode(txn, fs.id(), found.ino)?.expect("entries name live inodes");
    Ok(Entry {
        ino: found.ino,
        inode: node,
    })
}

/// One page of a directory listing, in name order.
#[derive(Debug, Default, PartialEq)]
pub struct DirPage {
    pub entries: Vec<(String, DirEntry, Option<Entry>)>,
    /// The name to continue after; `None` on the last page.
    pub next_after: Option<String>,
}

/// Entries of directory `dir` strictly after `after`. Stable under concurrent
/// changes: names are visited in order, so a page boundary never repeats or skips a
/// name that existed throughout. With `plus`, each entry carries its inode.
pub fn readdir(
    txn: &Txn<'_>,
    fs: &Fs,
    dir: &At,
    after: &str,
    limit: u32,
    plus: bool,
) -> Step<DirPage> {
    let (dir_ino, _) = tree::resolve_dir(txn, fs.id(), dir)?;
    let limit = fs_readdir_page(limit);
    let prefix = keys::fs_dir_prefix(fs.id(), dir_ino);
    let mut from = keys::fs_dirent(fs.id(), dir_ino, after);
    if !after.is_empty() {
        from.push(0);
    }
    let rows = txn.scan_from(&prefix, &from, limit + 1)?;
    let mut page = DirPage::default();
    for (key, value) in rows.iter().take(limit) {
        let name = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
        let entry: DirEntry = decode(value)?;
        let attrs = if plus {
            inode(txn, fs.id(), entry.ino)?.map(|inode| Entry {
                ino: entry.ino,
                inode,
            })
        } else {
            None
        };
        page.entries.push((name, entry, attrs));
    }
    if rows.len() > limit {
        page.next_after = page.entries.last().map(|(name, _, _)| name.clone());
    }
    Ok(page)
}

pub fn readlink(txn: &Txn<'_>, fs: &Fs, at: &At) -> Step<String> {
    let (_, node) = resolve(txn, fs.id(), at)?;
    if node.kind != Kind::Symlink {
        return refuse(
            Errno::EINVAL,
            format!("{} is not a symlink", tree::describe(at)),
        );
    }
    Ok(node.target)
}

/// The blocks of `ino` that overlap bytes `[offset, offset + length)`.
pub fn blocks(
    txn: &Txn<'_>,
    fs: &Fs,
    ino: u64,
    offset: u64,
    length: u64,
) -> sled::Result<Vec<(u64, BlockRef)>> {
    let first = offset / FS_BLOCK_BYTES;
    let end = offset.saturating_add(length);
    Ok(blocks_from(txn, fs.id(), ino, first)?
        .into_iter()
        .take_while(|(index, _)| index.saturating_mul(FS_BLOCK_BYTES) < end)
        .collect())
}

pub fn get_xattr(txn: &Txn<'_>, fs: &Fs, at: &At, name: &str) -> Step<Vec<u8>> {
    super::names::check_xattr(name, None)?;
    let (ino, _) = resolve(txn, fs.id(), at)?;
    match txn.get(&keys::fs_xattr(fs.id(), ino, name))? {
        Some(value) => Ok(value),
        None => refuse(Errno::ENODATA, format!("attribute {name:?} does not exist")),
    }
}

pub fn list_xattrs(txn: &Txn<'_>, fs: &Fs, at: &At) -> Step<Vec<String>> {
    let (ino, _) = resolve(txn, fs.id(), at)?;
    let prefix = keys::fs_xattr_prefix(fs.id(), ino);
    Ok(txn
        .scan_prefix(&prefix, usize::MAX)?
        .into_iter()
        .map(|(k, _)| String::from_utf8_lossy(&k[prefix.len()..]).into_owned())
        .collect())
}

pub fn usage(fs: &Fs) -> FsRecord {
    fs.record.clone()
}
