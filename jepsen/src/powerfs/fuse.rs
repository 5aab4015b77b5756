//! The `fuser::Filesystem` implementation: each FUSE request locks the model, checks the
//! freeze, runs one model operation and replies (an errno on any failure; nothing from
//! the kernel is trusted to be valid).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use super::model::{Attr, Kind, Model, Res, SetAttr, PAGE_SIZE};
use super::{lock, Shared};

/// Names and attributes change under the kernel at a cut: it must cache neither.
const TTL: Duration = Duration::ZERO;
/// Inode numbers are never reused within a mount, so one generation is enough.
const GENERATION: Generation = Generation(0);

pub(super) struct PowerFuse {
    shared: Shared,
}

impl PowerFuse {
    pub(super) fn new(shared: Shared) -> PowerFuse {
        PowerFuse { shared }
    }

    /// Runs `op` on the model unless it is frozen (then EIO).
    fn with<T>(&self, op: impl FnOnce(&mut Model) -> Res<T>) -> Result<T, Errno> {
        let mut model = lock(&self.shared);
        if model.frozen() {
            return Err(Errno::EIO);
        }
        op(&mut model).map_err(Errno::from_i32)
    }

    fn entry(&self, reply: ReplyEntry, op: impl FnOnce(&mut Model) -> Res<Attr>) {
        match self.with(op) {
            Ok(attr) => reply.entry(&TTL, &file_attr(&attr), GENERATION),
            Err(errno) => reply.error(errno),
        }
    }

    fn empty(&self, reply: ReplyEmpty, op: impl FnOnce(&mut Model) -> Res<()>) {
        match self.with(op) {
            Ok(()) => reply.ok(),
            Err(errno) => reply.error(errno),
        }
    }

    fn attr(&self, reply: ReplyAttr, op: impl FnOnce(&mut Model) -> Res<Attr>) {
        match self.with(op) {
            Ok(attr) => reply.attr(&TTL, &file_attr(&attr)),
            Err(errno) => reply.error(errno),
        }
    }

    /// Release and releasedir: the handle is dropped even while frozen (the kernel
    /// ignores the answer, and the memory of an unlinked file must still be freed).
    fn release_handle(&self, fh: FileHandle, reply: ReplyEmpty) {
        let mut model = lock(&self.shared);
        model.release(fh.0);
        if model.frozen() {
            reply.error(Errno::EIO);
        } else {
            reply.ok();
        }
    }
}

fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
    }
}

fn file_attr(attr: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(attr.ino),
        size: attr.size,
        blocks: attr.blocks,
        atime: attr.atime,
        mtime: attr.mtime,
        ctime: attr.ctime,
        crtime: attr.crtime,
        kind: file_type(attr.kind),
        perm: attr.perm,
        nlink: attr.nlink,
        uid: attr.uid,
        gid: attr.gid,
        rdev: 0,
        blksize: PAGE_SIZE as u32,
        flags: 0,
    }
}

fn time(time: Option<TimeOrNow>) -> Option<SystemTime> {
    time.map(|time| match time {
        TimeOrNow::SpecificTime(time) => time,
        TimeOrNow::Now => SystemTime::now(),
    })
}

/// The permission bits a new inode gets (the kernel has usually applied the umask
/// already; applying it twice changes nothing).
fn new_mode(mode: u32, umask: u32) -> u32 {
    mode & !umask & 0o7777
}

impl fuser::Filesystem for PowerFuse {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.entry(reply, |m| m.lookup(parent.0, name));
    }

    // forget: inodes are freed by the model's own rules, and inode numbers are never
    // reused, so the kernel's lookup counts need no bookkeeping (the default no-op).

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.attr(reply, |m| m.getattr(ino.0));
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let change = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: time(atime),
            mtime: time(mtime),
        };
        self.attr(reply, |m| m.setattr(ino.0, change));
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.with(|m| m.readlink(ino.0)) {
            Ok(target) => reply.data(&target),
            Err(errno) => reply.error(errno),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        let kind = mode & libc::S_IFMT;
        self.entry(reply, |m| {
            if kind != 0 && kind != libc::S_IFREG {
                return Err(libc::EPERM);
            }
            m.create_file(parent.0, name, new_mode(mode, umask), req.uid(), req.gid())
        });
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let mode = new_mode(mode, umask);
        self.entry(reply, |m| {
            m.mkdir(parent.0, name, mode, req.uid(), req.gid())
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.empty(reply, |m| m.unlink(parent.0, name));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.empty(reply, |m| m.rmdir(parent.0, name));
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let target = target.as_os_str().as_bytes();
        self.entry(reply, |m| {
            m.symlink(parent.0, link_name, target, req.uid(), req.gid())
        });
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        self.empty(reply, |m| {
            if !(flags - RenameFlags::RENAME_NOREPLACE).is_empty() {
                // RENAME_EXCHANGE, RENAME_WHITEOUT and unknown flags.
                return Err(libc::EINVAL);
            }
            let noreplace = flags.contains(RenameFlags::RENAME_NOREPLACE);
            m.rename(parent.0, name, newparent.0, newname, noreplace)
        });
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        self.entry(reply, |m| m.link(ino.0, newparent.0, newname));
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let truncate = flags.0 & libc::O_TRUNC != 0;
        match self.with(|m| m.open(ino.0, truncate)) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO),
            Err(errno) => reply.error(errno),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.with(|m| m.read(fh.0, ino.0, offset, size)) {
            Ok(data) => reply.data(&data),
            Err(errno) => reply.error(errno),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.with(|m| m.write(fh.0, ino.0, offset, data)) {
            Ok(written) => reply.written(written),
            Err(errno) => reply.error(errno),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2) makes nothing durable.
        self.empty(reply, |_| Ok(()));
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.release_handle(fh, reply);
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // fdatasync makes the size durable too (it is needed to read the data back).
        self.empty(reply, |m| m.fsync(ino.0));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.with(|m| m.opendir(ino.0)) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(errno) => reply.error(errno),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let mut model = lock(&self.shared);
        if model.frozen() {
            return reply.error(Errno::EIO);
        }
        match model.readdir(fh.0, ino.0, offset) {
            Ok(entries) => {
                for (i, entry) in entries.iter().enumerate() {
                    let next = offset.saturating_add(i as u64 + 1);
                    if reply.add(INodeNo(entry.ino), next, file_type(entry.kind), &entry.name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(errno) => reply.error(Errno::from_i32(errno)),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.release_handle(fh, reply);
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.empty(reply, |m| m.fsync(ino.0));
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.with(|m| Ok(m.space())) {
            Ok(space) => reply.statfs(
                space.blocks,
                space.blocks_free,
                space.blocks_free,
                space.files,
                space.files_free,
                PAGE_SIZE as u32,
                255,
                PAGE_SIZE as u32,
            ),
            Err(errno) => reply.error(errno),
        }
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // With default_permissions the kernel checks modes itself; this only says
        // whether the inode exists.
        self.empty(reply, |m| m.getattr(ino.0).map(drop));
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let mode = new_mode(mode, umask);
        let created = self.with(|m| {
            let attr = m.create_file(parent.0, name, mode, req.uid(), req.gid())?;
            let fh = m.open(attr.ino, false)?;
            Ok((attr, fh))
        });
        match created {
            Ok((attr, fh)) => reply.created(
                &TTL,
                &file_attr(&attr),
                GENERATION,
                FileHandle(fh),
                FopenFlags::FOPEN_DIRECT_IO,
            ),
            Err(errno) => reply.error(errno),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        self.empty(reply, |m| m.fallocate(ino.0, offset, length, mode));
    }
}
