//! Handles and data: open, read, write, fsync, fallocate, readdir, release.

use std::time::SystemTime;

use super::{Body, DirEntry, Handle, Kind, Model, Res, MAX_FILE_SIZE};

impl Model {
    /// Opens a file (truncating it if asked); returns the handle.
    pub fn open(&mut self, ino: u64, truncate: bool) -> Res<u64> {
        if truncate {
            let (file, _, budget) = self.file_mut(ino)?;
            file.set_size(0, budget)?;
        } else {
            self.file_mut(ino)?;
        }
        Ok(self.new_handle(ino))
    }

    pub fn opendir(&mut self, ino: u64) -> Res<u64> {
        self.dir(ino)?;
        Ok(self.new_handle(ino))
    }

    fn new_handle(&mut self, ino: u64) -> u64 {
        let fh = self.next_fh;
        self.next_fh += 1;
        self.handles.insert(fh, Handle { ino, listing: None });
        if let Some(inode) = self.inodes.get_mut(&ino) {
            inode.open = inode.open.saturating_add(1);
        }
        fh
    }

    /// Closes a file or directory handle; an unknown one (closed by a cut) is ignored.
    pub fn release(&mut self, fh: u64) {
        let Some(handle) = self.handles.remove(&fh) else {
            return;
        };
        if let Some(inode) = self.inodes.get_mut(&handle.ino) {
            inode.open = inode.open.saturating_sub(1);
        }
        self.garbage.push(handle.ino);
        self.collect_garbage();
    }

    /// The inode of an open handle: EBADF if the handle is unknown (a cut closes all)
    /// or belongs to another inode.
    fn handle_ino(&self, fh: u64, ino: u64) -> Res<u64> {
        match self.handles.get(&fh) {
            Some(handle) if handle.ino == ino => Ok(ino),
            _ => Err(libc::EBADF),
        }
    }

    pub fn read(&mut self, fh: u64, ino: u64, offset: u64, len: u32) -> Res<Vec<u8>> {
        let ino = self.handle_ino(fh, ino)?;
        let (file, meta, _) = self.file_mut(ino)?;
        meta.atime = SystemTime::now();
        Ok(file.read(offset, len))
    }

    pub fn write(&mut self, fh: u64, ino: u64, offset: u64, data: &[u8]) -> Res<u32> {
        let ino = self.handle_ino(fh, ino)?;
        let written = u32::try_from(data.len()).map_err(|_| libc::EINVAL)?;
        let (file, meta, budget) = self.file_mut(ino)?;
        file.write(offset, data, budget)?;
        let now = SystemTime::now();
        meta.mtime = now;
        meta.ctime = now;
        Ok(written)
    }

    /// fsync/fdatasync of a file, fsyncdir of a directory: its current state becomes
    /// durable (for a directory: its names; never the names of the inode itself).
    pub fn fsync(&mut self, ino: u64) -> Res<()> {
        let inode = self.inodes.get_mut(&ino).ok_or(libc::ENOENT)?;
        match &mut inode.body {
            Body::File(file) => file.sync(&mut self.budget),
            Body::Dir(dir) => {
                for durable in std::mem::take(&mut dir.undo).into_values().flatten() {
                    if let Some(child) = self.inodes.get_mut(&durable) {
                        child.undo_refs = child.undo_refs.saturating_sub(1);
                    }
                    self.garbage.push(durable);
                }
                self.collect_garbage();
            }
            Body::Symlink(_) => {}
        }
        Ok(())
    }

    /// `fallocate`: mode 0 extends the size (zeros, not yet durable); KEEP_SIZE is a
    /// no-op (nothing is reserved); other modes are EOPNOTSUPP.
    pub fn fallocate(&mut self, ino: u64, offset: u64, len: u64, mode: i32) -> Res<()> {
        let end = offset.checked_add(len).ok_or(libc::EFBIG)?;
        let (file, _, budget) = self.file_mut(ino)?;
        match mode {
            0 if end > file.size() => file.set_size(end, budget),
            0 | libc::FALLOC_FL_KEEP_SIZE if end <= MAX_FILE_SIZE => Ok(()),
            0 | libc::FALLOC_FL_KEEP_SIZE => Err(libc::EFBIG),
            _ => Err(libc::EOPNOTSUPP),
        }
    }

    /// The listing of an open directory from `offset` (0: ".", 1: "..", then names).
    /// A read from offset 0 takes a new snapshot, so a listing in progress is stable.
    pub fn readdir(&mut self, fh: u64, ino: u64, offset: u64) -> Res<&[DirEntry]> {
        let ino = self.handle_ino(fh, ino)?;
        let stale = self
            .handles
            .get(&fh)
            .is_none_or(|handle| handle.listing.is_none());
        if offset == 0 || stale {
            let listing = self.listing(ino)?;
            if let Some(handle) = self.handles.get_mut(&fh) {
                handle.listing = Some(listing);
            }
        }
        let listing = self
            .handles
            .get(&fh)
            .and_then(|handle| handle.listing.as_deref())
            .unwrap_or(&[]);
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(listing.len());
        Ok(&listing[start..])
    }

    fn listing(&self, ino: u64) -> Res<Vec<DirEntry>> {
        let dir = self.dir(ino)?;
        let mut listing = vec![
            DirEntry {
                ino,
                kind: Kind::Dir,
                name: ".".into(),
            },
            DirEntry {
                ino: dir.parent,
                kind: Kind::Dir,
                name: "..".into(),
            },
        ];
        for (name, &child) in &dir.entries {
            if let Some(inode) = self.inodes.get(&child) {
                listing.push(DirEntry {
                    ino: child,
                    kind: inode.kind(),
                    name: name.clone(),
                });
            }
        }
        Ok(listing)
    }
}
