//! Names: lookup, create, mkdir, symlink, link, unlink, rmdir, rename. Every change of
//! a directory entry goes through [`Model::set_entry`], which keeps the directory's undo
//! log and the link, undo-reference and subdirectory counts.

use std::ffi::OsStr;
use std::time::SystemTime;

use super::{check_name, Attr, Body, Dir, FileData, Inode, Kind, Meta, Model, Res, ROOT};

impl Model {
    /// The inode named `name` in directory `parent`.
    fn child(&self, parent: u64, name: &OsStr) -> Res<u64> {
        self.dir(parent)?
            .entries
            .get(name)
            .copied()
            .ok_or(libc::ENOENT)
    }

    fn kind_of(&self, ino: u64) -> Option<Kind> {
        self.inodes.get(&ino).map(Inode::kind)
    }

    pub fn lookup(&self, parent: u64, name: &OsStr) -> Res<Attr> {
        let ino = self.child(parent, name)?;
        self.getattr(ino)
    }

    /// Points `name` in `dir` at `new` (None: removes it). Captures the durable value on
    /// the first change since the last fsyncdir, and forgets it again when the name is
    /// back at its durable value. Inodes that lose a reference become garbage
    /// candidates (freed by the caller's `collect_garbage`).
    fn set_entry(&mut self, dir: u64, name: &OsStr, new: Option<u64>) -> Res<()> {
        let new_is_dir = new.is_some_and(|ino| self.kind_of(ino) == Some(Kind::Dir));
        let inode = self.inodes.get_mut(&dir).ok_or(libc::ENOENT)?;
        let Body::Dir(entries) = &mut inode.body else {
            return Err(libc::ENOTDIR);
        };
        let old = entries.entries.get(name).copied();
        if old == new {
            return Ok(());
        }
        let captured = !entries.undo.contains_key(name);
        if captured {
            entries.undo.insert(name.to_owned(), old);
        }
        match new {
            Some(ino) => entries.entries.insert(name.to_owned(), ino),
            None => entries.entries.remove(name),
        };
        let collapsed = entries.undo.get(name) == Some(&new);
        if collapsed {
            entries.undo.remove(name);
        }
        let now = SystemTime::now();
        inode.meta.mtime = now;
        inode.meta.ctime = now;
        let old_is_dir = old.is_some_and(|ino| self.kind_of(ino) == Some(Kind::Dir));
        if let Some(Body::Dir(entries)) = self.inodes.get_mut(&dir).map(|inode| &mut inode.body) {
            if old_is_dir {
                entries.subdirs = entries.subdirs.saturating_sub(1);
            }
            if new_is_dir {
                entries.subdirs = entries.subdirs.saturating_add(1);
            }
        }
        if let Some(old) = old.and_then(|ino| self.inodes.get_mut(&ino)) {
            old.links = old.links.saturating_sub(1);
            old.meta.ctime = now;
            if captured {
                old.undo_refs = old.undo_refs.saturating_add(1);
            }
        }
        if let Some(new) = new.and_then(|ino| self.inodes.get_mut(&ino)) {
            new.links = new.links.saturating_add(1);
            new.meta.ctime = now;
            if collapsed {
                new.undo_refs = new.undo_refs.saturating_sub(1);
            }
        }
        self.garbage.extend(old);
        self.garbage.extend(new);
        Ok(())
    }

    /// A directory new names may go into: it exists and has not been removed.
    fn live_dir(&self, parent: u64) -> Res<&Dir> {
        let dir = self.dir(parent)?;
        if parent != ROOT && self.inodes.get(&parent).is_some_and(|p| p.links == 0) {
            return Err(libc::ENOENT);
        }
        Ok(dir)
    }

    fn add_node(&mut self, parent: u64, name: &OsStr, meta: Meta, body: Body) -> Res<Attr> {
        check_name(name)?;
        if self.live_dir(parent)?.entries.contains_key(name) {
            return Err(libc::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let inode = Inode {
            meta,
            links: 0,
            undo_refs: 0,
            open: 0,
            body,
        };
        self.inodes.insert(ino, inode);
        self.set_entry(parent, name, Some(ino))?;
        self.collect_garbage();
        self.getattr(ino)
    }

    /// A new empty regular file (mknod S_IFREG and create).
    pub fn create_file(
        &mut self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Res<Attr> {
        let body = Body::File(FileData::default());
        self.add_node(parent, name, Meta::new(mode, uid, gid), body)
    }

    pub fn mkdir(&mut self, parent: u64, name: &OsStr, mode: u32, uid: u32, gid: u32) -> Res<Attr> {
        let body = Body::Dir(Dir::new(parent));
        self.add_node(parent, name, Meta::new(mode, uid, gid), body)
    }

    pub fn symlink(
        &mut self,
        parent: u64,
        name: &OsStr,
        target: &[u8],
        uid: u32,
        gid: u32,
    ) -> Res<Attr> {
        if target.is_empty() || target.len() > libc::PATH_MAX as usize {
            return Err(libc::ENOENT);
        }
        let body = Body::Symlink(target.to_vec());
        self.add_node(parent, name, Meta::new(0o777, uid, gid), body)
    }

    /// A new name for an existing non-directory.
    pub fn link(&mut self, ino: u64, parent: u64, name: &OsStr) -> Res<Attr> {
        check_name(name)?;
        let inode = self.inode(ino)?;
        if inode.kind() == Kind::Dir {
            return Err(libc::EPERM);
        }
        if inode.links == 0 {
            return Err(libc::ENOENT);
        }
        if self.live_dir(parent)?.entries.contains_key(name) {
            return Err(libc::EEXIST);
        }
        self.set_entry(parent, name, Some(ino))?;
        self.collect_garbage();
        self.getattr(ino)
    }

    pub fn unlink(&mut self, parent: u64, name: &OsStr) -> Res<()> {
        let ino = self.child(parent, name)?;
        if self.kind_of(ino) == Some(Kind::Dir) {
            return Err(libc::EISDIR);
        }
        self.set_entry(parent, name, None)?;
        self.collect_garbage();
        Ok(())
    }

    pub fn rmdir(&mut self, parent: u64, name: &OsStr) -> Res<()> {
        let ino = self.child(parent, name)?;
        if !self.dir(ino)?.entries.is_empty() {
            return Err(libc::ENOTEMPTY);
        }
        if ino == ROOT {
            return Err(libc::EBUSY);
        }
        self.set_entry(parent, name, None)?;
        self.collect_garbage();
        Ok(())
    }

    /// rename(2) and renameat2 with RENAME_NOREPLACE (`noreplace`).
    pub fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        noreplace: bool,
    ) -> Res<()> {
        check_name(new_name)?;
        let src = self.child(parent, name)?;
        let target = self.live_dir(new_parent)?.entries.get(new_name).copied();
        let src_is_dir = self.kind_of(src) == Some(Kind::Dir);
        if let Some(dst) = target {
            if noreplace {
                return Err(libc::EEXIST);
            }
            if dst == src {
                return Ok(());
            }
            match (src_is_dir, self.kind_of(dst) == Some(Kind::Dir)) {
                (true, false) => return Err(libc::ENOTDIR),
                (false, true) => return Err(libc::EISDIR),
                (true, true) if !self.dir(dst)?.entries.is_empty() => return Err(libc::ENOTEMPTY),
                _ => {}
            }
        }
        if src_is_dir && self.is_within(new_parent, src) {
            return Err(libc::EINVAL);
        }
        self.set_entry(new_parent, new_name, Some(src))?;
        self.set_entry(parent, name, None)?;
        if let Some(Body::Dir(dir)) = self.inodes.get_mut(&src).map(|inode| &mut inode.body) {
            dir.parent = new_parent;
        }
        self.collect_garbage();
        Ok(())
    }

    /// True if directory `ino` is `ancestor` or below it.
    fn is_within(&self, mut ino: u64, ancestor: u64) -> bool {
        for _ in 0..=self.inodes.len() {
            if ino == ancestor {
                return true;
            }
            match self.dir(ino) {
                Ok(dir) if ino != ROOT => ino = dir.parent,
                _ => return false,
            }
        }
        // A parent chain longer than the table is a loop: refuse the rename.
        true
    }
}
