//! Namespace changes: create, mkdir (-p), unlink, rmdir, bounded recursive delete,
//! rename with POSIX semantics, hard links and extended attributes.
//!
//! Each function checks everything before it writes where it can; where a check
//! needs a write first, the refusal rolls the command back (see `fs::apply`).

use std::collections::BTreeMap;

use super::handles::drop_link;
use super::names::{check_name, check_symlink_target, check_xattr};
use super::tree::{
    self, describe, inode, lookup, put_dirent, put_inode, remove_dirent, resolve, resolve_dir, Fs,
};
use super::{
    refuse, At, DirEntry, Entry, FsResponse, Inode, Kind, Name, Owner, Step, XattrMode, ROOT_INO,
};
use crate::errno::Errno;
use crate::limits::{FS_LINKS_MAX, FS_REMOVE_TREE_STEP_MAX, FS_XATTR_BYTES_PER_INODE_MAX};
use crate::state::{keys, ApplyContext, Txn};

fn entry(ino: u64, inode: Inode) -> FsResponse {
    FsResponse::Entry(Box::new(Entry { ino, inode }))
}

fn touch_dir(dir: &mut Inode, now_ns: i64) {
    dir.mtime_ns = now_ns;
    dir.ctime_ns = now_ns;
}

fn add_link(node: &mut Inode, what: &str) -> Step<()> {
    if node.nlink >= FS_LINKS_MAX {
        return refuse(
            Errno::EMLINK,
            format!("{what} has {FS_LINKS_MAX} links, the limit"),
        );
    }
    node.nlink += 1;
    Ok(())
}

/// Creates directory `name` in `dir_ino` (whose inode the caller holds and writes).
fn new_dir_in(
    txn: &mut Txn<'_>,
    ctx: ApplyContext,
    fs: &mut Fs,
    (dir_ino, dir): (u64, &mut Inode),
    name: &str,
    owner: Owner,
    now_ns: i64,
) -> Step<(u64, Inode)> {
    add_link(dir, "the parent directory")?;
    let ino = fs.alloc_ino();
    let node = tree::new_dir(
        owner.mode,
        owner.uid,
        owner.gid,
        dir_ino,
        now_ns,
        ctx.version(),
    );
    put_dirent(
        txn,
        fs.id(),
        dir_ino,
        name,
        DirEntry {
            ino,
            kind: Kind::Dir,
        },
    );
    put_inode(txn, fs.id(), ino, &node);
    touch_dir(dir, now_ns);
    Ok((ino, node))
}

pub fn make(
    txn: &mut Txn<'_>,
    ctx: ApplyContext,
    fs: &mut Fs,
    at: &Name,
    (kind, owner, target): (Kind, Owner, &str),
    exclusive: bool,
    now_ns: i64,
) -> Step<FsResponse> {
    check_name(&at.name)?;
    if kind == Kind::Symlink {
        check_symlink_target(target)?;
    }
    let (dir_ino, mut dir) = resolve_dir(txn, fs.id(), &at.dir)?;
    if let Some(existing) = lookup(txn, fs.id(), dir_ino, &at.name)? {
        let what = format!("{}/{}", describe(&at.dir), at.name);
        return match (kind, existing.kind, exclusive) {
            (Kind::File, Kind::File, false) => {
                let node = inode(txn, fs.id(), existing.ino)?.expect("entries name live inodes");
                Ok(entry(existing.ino, node))
            }
            (Kind::File, Kind::Dir, false) => {
                refuse(Errno::EISDIR, format!("{what} is a directory"))
            }
            _ => refuse(Errno::EEXIST, format!("{what} exists")),
        };
    }
    if kind == Kind::Dir {
        let (ino, node) = new_dir_in(txn, ctx, fs, (dir_ino, &mut dir), &at.name, owner, now_ns)?;
        put_inode(txn, fs.id(), dir_ino, &dir);
        return Ok(entry(ino, node));
    }
    let ino = fs.alloc_ino();
    let node = Inode {
        kind,
        mode: if kind == Kind::Symlink {
            0o777
        } else {
            owner.mode & 0o7777
        },
        uid: owner.uid,
        gid: owner.gid,
        size: if kind == Kind::Symlink {
            target.len() as u64
        } else {
            0
        },
        nlink: 1,
        atime_ns: now_ns,
        mtime_ns: now_ns,
        ctime_ns: now_ns,
        version: ctx.version(),
        allocated_bytes: 0,
        parent: 0,
        target: if kind == Kind::Symlink {
            target.to_string()
        } else {
            String::new()
        },
    };
    put_dirent(txn, fs.id(), dir_ino, &at.name, DirEntry { ino, kind });
    put_inode(txn, fs.id(), ino, &node);
    touch_dir(&mut dir, now_ns);
    put_inode(txn, fs.id(), dir_ino, &dir);
    Ok(entry(ino, node))
}

/// Resolves `path`, creating every missing directory (`mkdir -p`). An existing
/// component that is not a directory is `ENOTDIR` (`EEXIST` if it is the last).
pub fn make_dirs_inner(
    txn: &mut Txn<'_>,
    ctx: ApplyContext,
    fs: &mut Fs,
    path: &[String],
    owner: Owner,
    now_ns: i64,
) -> Step<(u64, Inode)> {
    let mut ino = ROOT_INO;
    let mut node = inode(txn, fs.id(), ino)?.expect("the root always exists");
    for (depth, part) in path.iter().enumerate() {
        check_name(part)?;
        match lookup(txn, fs.id(), ino, part)? {
            Some(existing) if existing.kind == Kind::Dir => {
                ino = existing.ino;
                node = inode(txn, fs.id(), ino)?.expect("entries name live inodes");
            }
            Some(_) => {
                let shown = super::names::show(&path[..=depth]);
                let errno = if depth + 1 == path.len() {
                    Errno::EEXIST
                } else {
                    Errno::ENOTDIR
                };
                return refuse(errno, format!("{shown} exists and is not a directory"));
            }
            None => {
                let (child, child_node) =
                    new_dir_in(txn, ctx, fs, (ino, &mut node), part, owner, now_ns)?;
                put_inode(txn, fs.id(), ino, &node);
                ino = child;
                node = child_node;
            }
        }
    }
    Ok((ino, node))
}

pub fn make_dirs(
    txn: &mut Txn<'_>,
    ctx: ApplyContext,
    fs: &mut Fs,
    path: &[String],
    owner: Owner,
    now_ns: i64,
) -> Step<FsResponse> {
    let (ino, node) = make_dirs_inner(txn, ctx, fs, path, owner, now_ns)?;
    Ok(entry(ino, node))
}

/// The directory of `at` and the entry `at` names (`ENOENT` if none).
fn existing(txn: &Txn<'_>, fs: &Fs, at: &Name) -> Step<(u64, Inode, DirEntry)> {
    check_name(&at.name)?;
    let (dir_ino, dir) = resolve_dir(txn, fs.id(), &at.dir)?;
    match lookup(txn, fs.id(), dir_ino, &at.name)? {
        Some(found) => Ok((dir_ino, dir, found)),
        None => refuse(
            Errno::ENOENT,
            format!("{}/{} does not exist", describe(&at.dir), at.name),
        ),
    }
}

pub fn unlink(
    txn: &mut Txn<'_>,
    ctx: ApplyContext,
    fs: &mut Fs,
    at: &Name,
    now_ns: i64,
) -> Step<FsResponse> {
    let (dir_ino, mut dir, found) = existing(txn, fs, at)?;
    if found.kind == Kind::Dir {
        return refuse(
            Errno::EISDIR,
            format!("{}/{} is a directory", describe(&at.dir), at.name),
        );
    }
    remove_dirent(txn, fs.id(), dir_ino, &at.name);
    touch_dir(&mut dir, now_ns);
    put_inode(txn, fs.id(), dir_ino, &dir);
    let node = inode(txn, fs.id(), found.ino)?.expect("entries name live inodes");
    drop_link(txn, ctx, fs, found.ino, node, now_ns)?;
    Ok(FsResponse::Done)
}

/// Removes the empty directory `name` of `dir_ino` (whose inode the caller holds).
fn remove_empty_dir(
    txn: &mut Txn<'_>,
    ctx: ApplyContext,
    fs: &mut Fs,
    (dir_ino, dir): (u64, &mut Inode),
    (name, ino): (&str, u64),
    now_ns: i64,
) -> Step<()> {
    remove_dirent(txn, fs.id(), dir_ino, name);
    assert!(
        dir.nlink > 2,
        "a directory with a subdirectory has nlink > 2"
    );
    dir.nlink -= 1;
    touch_dir(dir, now_ns);
    let mut node = inode(txn, fs.id(), ino)?.expect("entries name live inodes");
    node.nlink = 1; // `.` only: drop_link takes it to 0
    drop_link(txn, ctx, fs, ino, node, now_ns)
}

pub fn rmdir(
    txn: &mut Txn<'_>,
    ctx: ApplyContext,
    fs: &mut Fs,
    at: &Name,
    now_ns: i64,
) -> Step<FsResponse> {
    let (dir_ino, mut dir, found) = existing(txn, fs, at)?;
    if found.kind != Kind::Dir {
        return refuse(
            Errno::ENOTDIR,
            format!("{}/{} is not a directory", describe(&at.dir), at.name),
        );
    }
    if !tree::is_empty_dir(txn, fs.id(), found.ino)? {
        return refuse(
            Errno::ENOTEMPTY,
            format!("{}/{} is not empty", describe(&at.dir), at.name),
        );
    }
    remove_empty_dir(
        txn,
        ctx,
        fs,
        (dir_ino, &mut dir),
        (&at.name, found.ino),
        now_ns,
    )?;
    put_inode(txn, fs.id(), dir_ino, &dir);
    Ok(FsResponse::Done)
}

/// The first entry of directory `dir`: `(name, entry)`.
fn first_child(txn: &Txn<'_>, fs_id: u64, dir: u64) -> sled::Result<Option<(String, DirEntry)>> {
    let prefix = keys::fs_dir_prefix(fs_id, dir);
    let Some((key, value)) = txn.scan_prefix(&prefix, 1)?.into_iter().next() else {
        return Ok(None);
    };
    let name = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
    Ok(Some((name, crate::state::decode(&value)?)))
}

pub fn remove_tree(
    txn: &mut Txn<'_>,
    ctx: ApplyContext,
    fs: &mut Fs,
    at: &Name,
    (step_max, keep_top): (u64, bool),
    now_ns: i64,
) -> Step<FsResponse> {
    check_name(&at.name)?;
    let step_max = step_max.clamp(1, FS_REMOVE_TREE_STEP_MAX);
    let (dir_ino, _) = resolve_dir(txn, fs.id(), &at.dir)?;
    let Some(top) = lookup(txn, fs.id(), dir_ino, &at.name)? else {
        return refuse(
            Errno::ENOENT,
            format!("{}/{} does not exist", describe(&at.dir), at.name),
        );
    };
    if top.kind != Kind::Dir {
        if keep_top {
            return Ok(FsResponse::Removed {
                entries: 0,
                done: true,
            });
        }
        unlink(txn, ctx, fs, at, now_ns)?;
        return Ok(FsResponse::Removed {
            entries: 1,
            done: true,
        });
    }
    let mut removed = 0;
    while removed < step_max {
        // Descend to a directory whose first entry is a file or an empty directory.
        let mut parent = top.ino;
        let (name, child) = loop {
            match first_child(txn, fs.id(), parent)? {
                None => break (String::new(), None),
                Some((_, child))
                    if child.kind == Kind::Dir && !tree::is_empty_dir(txn, fs.id(), child.ino)? =>
                {
                    parent = child.ino;
                }
                Some((name, child)) => break (name, Some(child)),
            }
        };
        let Some(child) = child else {
            if keep_top {
                return Ok(FsResponse::Removed {
                    entries: removed,
                    done: true,
                });
            }
            // `top` is empty: remove it and finish.
            let (dir_ino, mut dir) = resolve_dir(txn, fs.id(), &at.dir)?;
            remove_empty_dir(
                txn,
                ctx,
                fs,
                (dir_ino, &mut dir),
                (&at.name, top.ino),
                now_ns,
            )?;
            put_inode(txn, fs.id(), dir_ino, &dir);
            return Ok(FsResponse::Removed {
                entries: removed + 1,
                done: true,
            });
        };
        let mut dir = inode(txn, fs.id(), parent)?.expect("a directory we descended into");
        if child.kind == Kind::Dir {
            remove_empty_dir(txn, ctx, fs, (parent, &mut dir), (&name, child.ino), now_ns)?;
        } else {
            remove_dirent(txn, fs.id(), parent, &name);
            touch_dir(&mut dir, now_ns);
            let node = inode(txn, fs.id(), child.ino)?.expect("entries name live inodes");
            drop_link(txn, ctx, fs, child.ino, node, now_ns)?;
        }
        put_inode(txn, fs.id(), parent, &dir);
        removed += 1;
    }
    Ok(FsResponse::Removed {
        entries: removed,
        done: false,
    })
}

/// Whether directory `ancestor` is `dir` or one of its ancestors.
fn is_ancestor(txn: &Txn<'_>, fs_id: u64, ancestor: u64, dir: u64) -> sled::Result<bool> {
    let mut up = dir;
    loop {
        if up == ancestor {
            return Ok(true);
        }
        if up == ROOT_INO {
            return Ok(false);
        }
        up = inode(txn, fs_id, up)?.expect("ancestors exist").parent;
    }
}

/// Directory inodes a rename reads and writes, each once even when two roles name
/// the same directory.
struct Dirs(BTreeMap<u64, Inode>);

impl Dirs {
    fn get(&mut self, txn: &Txn<'_>, fs_id: u64, ino: u64) -> sled::Result<&mut Inode> {
        Ok(match self.0.entry(ino) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(inode(txn, fs_id, ino)?.expect("resolved directories exist"))
            }
        })
    }

    fn save(self, txn: &mut Txn<'_>, fs_id: u64) {
        for (ino, node) in self.0 {
            put_inode(txn, fs_id, ino, &node);
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub fn rename(
    txn: &mut Txn<'_>,
    ctx: ApplyContext,
    fs: &mut Fs,
    from: &Name,
    to: &Name,
    noreplace: bool,
    now_ns: i64,
) -> Step<FsResponse> {
    check_name(&from.name)?;
    check_name(&to.name)?;
    let fs_id = fs.id();
    let (from_dir, _) = resolve_dir(txn, fs_id, &from.dir)?;
    let (to_dir, _) = resolve_dir(txn, fs_id, &to.dir)?;
    let shown = |n: &Name| format!("{}/{}", describe(&n.dir), n.name);
    let Some(source) = lookup(txn, fs_id, from_dir, &from.name)? else {
        return refuse(Errno::ENOENT, format!("{} does not exist", shown(from)));
    };
    // A directory cannot move into its own subtree.
    if source.kind == Kind::Dir && is_ancestor(txn, fs_id, source.ino, to_dir)? {
        return refuse(
            Errno::EINVAL,
            format!("{} cannot move into itself", shown(from)),
        );
    }
    let replaced = lookup(txn, fs_id, to_dir, &to.name)?;
    if let Some(target) = replaced {
        if target.ino == source.ino {
            return Ok(FsResponse::Done); // both names are links to one inode: POSIX does nothing
        }
        // Replacing a directory that contains the source (Linux checks this first).
        if target.kind == Kind::Dir && is_ancestor(txn, fs_id, target.ino, from_dir)? {
            return refuse(Errno::ENOTEMPTY, format!("{} is not empty", shown(to)));
        }
        if noreplace {
            return refuse(Errno::EEXIST, format!("{} exists", shown(to)));
        }
        match (source.kind == Kind::Dir, target.kind == Kind::Dir) {
            (true, false) => {
                return refuse(Errno::ENOTDIR, format!("{} is not a directory", shown(to)))
            }
            (false, true) => return refuse(Errno::EISDIR, format!("{} is a directory", shown(to))),
            (true, true) if !tree::is_empty_dir(txn, fs_id, target.ino)? => {
                return refuse(Errno::ENOTEMPTY, format!("{} is not empty", shown(to)))
            }
            _ => {}
        }
    }
    let mut dirs = Dirs(BTreeMap::new());
    remove_dirent(txn, fs_id, from_dir, &from.name);
    put_dirent(txn, fs_id, to_dir, &to.name, source);
    touch_dir(dirs.get(txn, fs_id, from_dir)?, now_ns);
    touch_dir(dirs.get(txn, fs_id, to_dir)?, now_ns);
    let mut moved = inode(txn, fs_id, source.ino)?.expect("entries name live inodes");
    moved.ctime_ns = now_ns;
    if source.kind == Kind::Dir && from_dir != to_dir {
        dirs.get(txn, fs_id, from_dir)?.nlink -= 1;
        add_link(dirs.get(txn, fs_id, to_dir)?, "the target directory")?;
        moved.parent = to_dir;
    }
    put_inode(txn, fs_id, source.ino, &moved);
    if let Some(target) = replaced {
        let mut node = inode(txn, fs_id, target.ino)?.expect("entries name live inodes");
        if target.kind == Kind::Dir {
            dirs.get(txn, fs_id, to_dir)?.nlink -= 1;
            node.nlink = 1;
        }
        drop_link(txn, ctx, fs, target.ino, node, now_ns)?;
    }
    dirs.save(txn, fs_id);
    Ok(FsResponse::Done)
}

pub fn link(
    txn: &mut Txn<'_>,
    fs: &mut Fs,
    target: &At,
    at: &Name,
    now_ns: i64,
) -> Step<FsResponse> {
    check_name(&at.name)?;
    let fs_id = fs.id();
    let (ino, mut node) = resolve(txn, fs_id, target)?;
    // Linux's order: the new name's directory and the name itself, then the kind.
    let (dir_ino, mut dir) = resolve_dir(txn, fs_id, &at.dir)?;
    if lookup(txn, fs_id, dir_ino, &at.name)?.is_some() {
        return refuse(
            Errno::EEXIST,
            format!("{}/{} exists", describe(&at.dir), at.name),
        );
    }
    if node.kind == Kind::Dir {
        return refuse(
            Errno::EPERM,
            format!(
                "{} is a directory; directories cannot be hard-linked",
                describe(target)
            ),
        );
    }
    if node.nlink == 0 {
        return refuse(
            Errno::ENOENT,
            format!("{} has been removed", describe(target)),
        );
    }
    add_link(&mut node, &describe(target))?;
    node.ctime_ns = now_ns;
    put_dirent(
        txn,
        fs_id,
        dir_ino,
        &at.name,
        DirEntry {
            ino,
            kind: node.kind,
        },
    );
    put_inode(txn, fs_id, ino, &node);
    touch_dir(&mut dir, now_ns);
    put_inode(txn, fs_id, dir_ino, &dir);
    Ok(entry(ino, node))
}

/// Bytes the extended attributes of an inode take (names plus values).
fn xattr_bytes(txn: &Txn<'_>, fs_id: u64, ino: u64) -> sled::Result<u64> {
    let prefix = keys::fs_xattr_prefix(fs_id, ino);
    Ok(txn
        .scan_prefix(&prefix, usize::MAX)?
        .iter()
        .map(|(k, v)| (k.len() - prefix.len() + v.len()) as u64)
        .sum())
}

pub fn set_xattr(
    txn: &mut Txn<'_>,
    fs: &mut Fs,
    target: &At,
    (name, value): (&str, &[u8]),
    mode: XattrMode,
    now_ns: i64,
) -> Step<FsResponse> {
    check_xattr(name, Some(value))?;
    let fs_id = fs.id();
    let (ino, mut node) = resolve(txn, fs_id, target)?;
    let key = keys::fs_xattr(fs_id, ino, name);
    let old = txn.get(&key)?;
    match (mode, &old) {
        (XattrMode::Create, Some(_)) => {
            return refuse(Errno::EEXIST, format!("attribute {name:?} exists"))
        }
        (XattrMode::Replace, None) => {
            return refuse(Errno::ENODATA, format!("attribute {name:?} does not exist"))
        }
        _ => {}
    }
    let old_bytes = old.map(|v| (name.len() + v.len()) as u64).unwrap_or(0);
    let total = xattr_bytes(txn, fs_id, ino)? - old_bytes + (name.len() + value.len()) as u64;
    if total > FS_XATTR_BYTES_PER_INODE_MAX {
        return refuse(
            Errno::ENOSPC,
            format!("attributes of {} would take {total} bytes; the limit is {FS_XATTR_BYTES_PER_INODE_MAX}", describe(target)),
        );
    }
    txn.put(key, value.to_vec());
    node.ctime_ns = now_ns;
    put_inode(txn, fs_id, ino, &node);
    Ok(FsResponse::Done)
}

pub fn remove_xattr(
    txn: &mut Txn<'_>,
    fs: &mut Fs,
    target: &At,
    name: &str,
    now_ns: i64,
) -> Step<FsResponse> {
    check_xattr(name, None)?;
    let fs_id = fs.id();
    let (ino, mut node) = resolve(txn, fs_id, target)?;
    let key = keys::fs_xattr(fs_id, ino, name);
    if txn.get(&key)?.is_none() {
        return refuse(Errno::ENODATA, format!("attribute {name:?} does not exist"));
    }
    txn.remove(key);
    node.ctime_ns = now_ns;
    put_inode(txn, fs_id, ino, &node);
    Ok(FsResponse::Done)
}
