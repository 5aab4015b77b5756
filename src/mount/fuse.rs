//! The `fuser::Filesystem` glue: each request copies what it needs out of the
//! kernel's buffers, runs the matching `ops::Mount` call as a tokio task (so no
//! FUSE thread ever waits on the network) under the mount's time limit, and sends
//! the reply from that task. Nothing from the kernel is trusted: names that are
//! not UTF-8 are `EINVAL`, unknown handles `EBADF`.

use std::ffi::OsStr;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileHandle, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow,
    WriteFlags,
};

use crate::client::{Attr, DirEntry, FileKind, NewNode, SetAttrs};

use super::attrs::{file_attr, file_type, ns_of};
use super::ops::{Mount, Res};

/// Inode numbers are never reused by the cluster, so one generation is enough.
const GENERATION: Generation = Generation(0);
/// Largest FUSE request the kernel accepts here (`max_pages_limit` 256 × 4 KiB).
const MAX_WRITE_BYTES: u32 = 1024 * 1024;
const MAX_READAHEAD_BYTES: u32 = 1024 * 1024;
/// Background requests (readahead, async reads) before the kernel calls the
/// mount congested and stops reading ahead (fuser's default is 16).
const MAX_BACKGROUND: u16 = 64;
const CONGESTION_THRESHOLD: u16 = 48;
/// Directory entries fetched per readdir request.
const READDIR_BATCH_ENTRIES: usize = 256;

pub struct CairnFuse {
    pub mount: Arc<Mount>,
    pub runtime: tokio::runtime::Handle,
}

/// Every reply kind can carry an errno.
trait Fail {
    fn fail(self, errno: Errno);
}

macro_rules! fail {
    ($($t:ty),*) => {$(
        impl Fail for $t {
            fn fail(self, errno: Errno) {
                self.error(errno)
            }
        }
    )*};
}
fail!(
    ReplyAttr,
    ReplyDirectoryPlus,
    ReplyCreate,
    ReplyData,
    ReplyDirectory,
    ReplyEmpty,
    ReplyEntry,
    ReplyOpen,
    ReplyStatfs,
    ReplyWrite,
    ReplyXattr
);

fn utf8(name: &OsStr) -> Res<String> {
    name.to_str().map(str::to_string).ok_or(libc::EINVAL)
}

fn time_ns(time: Option<TimeOrNow>) -> (Option<i64>, bool) {
    match time {
        None => (None, false),
        Some(TimeOrNow::Now) => (None, true),
        Some(TimeOrNow::SpecificTime(t)) => (Some(ns_of(t)), false),
    }
}

/// Errnos that are answers, not failures (a lookup of a name that is not there).
fn quiet(op: &str, errno: i32) -> bool {
    matches!(
        (op, errno),
        ("lookup", libc::ENOENT) | ("getxattr", libc::ENODATA) | ("getxattr", libc::ERANGE)
    )
}

impl CairnFuse {
    /// Runs `work` as a task; its result goes to `reply` through `ok`, or as an errno.
    fn spawn<T, R, W, K>(&self, op: &'static str, what: String, reply: R, work: W, ok: K)
    where
        T: Send + 'static,
        R: Fail + Send + 'static,
        W: Future<Output = Res<T>> + Send + 'static,
        K: FnOnce(&Mount, R, T) + Send + 'static,
    {
        let mount = self.mount.clone();
        self.runtime.spawn(async move {
            let result = match tokio::time::timeout(mount.op_timeout, work).await {
                Ok(result) => result,
                Err(_) => Err(libc::EIO),
            };
            mount.stats.op(result.is_err());
            match result {
                Ok(value) => ok(&mount, reply, value),
                Err(errno) => {
                    if !quiet(op, errno) {
                        let name = std::io::Error::from_raw_os_error(errno);
                        tracing::warn!(op, %what, errno, "{name}");
                    }
                    reply.fail(Errno::from_i32(errno));
                }
            }
        });
    }

    /// [`CairnFuse::spawn`] for requests whose answer is success or an errno.
    fn empty<W>(&self, op: &'static str, what: String, reply: ReplyEmpty, work: W)
    where
        W: Future<Output = Res<()>> + Send + 'static,
    {
        self.spawn(op, what, reply, work, |_, r, ()| r.ok());
    }

    fn m(&self) -> Arc<Mount> {
        self.mount.clone()
    }

    fn reply_entry(mount: &Mount, reply: ReplyEntry, attr: Attr) {
        let size = mount.size_of(&attr);
        reply.entry(&mount.ttl, &file_attr(&mount.map, &attr, size), GENERATION);
    }

    fn reply_attr(mount: &Mount, reply: ReplyAttr, attr: Attr) {
        let size = mount.size_of(&attr);
        reply.attr(&mount.ttl, &file_attr(&mount.map, &attr, size));
    }

    /// Creates a node of `kind` named `name` in `parent`, answering with its entry.
    fn make(&self, req: &Request, parent: INodeNo, name: &OsStr, node: Node, reply: ReplyEntry) {
        let (m, dir) = (self.m(), self.mount.map.cluster(parent));
        let (uid, gid) = (req.uid(), req.gid());
        let what = format!("{}/{}", parent.0, name.to_string_lossy());
        let name = utf8(name);
        self.spawn(
            "make",
            what,
            reply,
            async move {
                let new = NewNode {
                    kind: node.kind,
                    mode: node.mode,
                    owner: (uid, gid),
                    exclusive: true,
                    symlink_target: &node.target,
                };
                m.make(dir, &name?, new).await
            },
            Self::reply_entry,
        );
    }
}

struct Node {
    kind: FileKind,
    mode: u32,
    target: String,
}

/// The permission bits a new inode gets (the kernel usually applied the umask
/// already; applying it twice changes nothing).
fn new_mode(mode: u32, umask: u32) -> u32 {
    mode & !umask & 0o7777
}

impl fuser::Filesystem for CairnFuse {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Each knob is best effort: the kernel may offer less, which is still correct.
        let _ = config.set_max_write(MAX_WRITE_BYTES);
        let _ = config.set_max_readahead(MAX_READAHEAD_BYTES);
        let _ = config.set_max_background(MAX_BACKGROUND);
        let _ = config.set_congestion_threshold(CONGESTION_THRESHOLD);
        for flag in [
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_AUTO_INVAL_DATA,
            InitFlags::FUSE_CACHE_SYMLINKS,
            // Listings carry attributes: `ls -l` and `find` need no lookup per entry.
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
        ] {
            let _ = config.add_capabilities(flag);
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let (m, dir) = (self.m(), self.mount.map.cluster(parent));
        let what = format!("{}/{}", parent.0, name.to_string_lossy());
        let name = utf8(name);
        self.spawn(
            "lookup",
            what,
            reply,
            async move { m.lookup(dir, &name?).await },
            Self::reply_entry,
        );
    }

    // forget: cluster inode numbers are stable and never reused, so the kernel's
    // lookup counts need no bookkeeping here (the default no-op).

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let (m, ino_c) = (self.m(), self.mount.map.cluster(ino));
        self.spawn(
            "getattr",
            ino.0.to_string(),
            reply,
            async move { m.getattr(ino_c).await },
            Self::reply_attr,
        );
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
        let (m, ino_c) = (self.m(), self.mount.map.cluster(ino));
        let ((atime_ns, atime_now), (mtime_ns, mtime_now)) = (time_ns(atime), time_ns(mtime));
        let set = SetAttrs {
            mode: mode.map(|m| m & 0o7777),
            uid,
            gid,
            size,
            atime_ns,
            mtime_ns,
            atime_now,
            mtime_now,
        };
        self.spawn(
            "setattr",
            ino.0.to_string(),
            reply,
            async move {
                if set == SetAttrs::default() {
                    // Only the change time: the cluster keeps it itself.
                    return m.getattr(ino_c).await;
                }
                m.setattr(ino_c, set).await
            },
            Self::reply_attr,
        );
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let (m, ino_c) = (self.m(), self.mount.map.cluster(ino));
        self.spawn(
            "readlink",
            ino.0.to_string(),
            reply,
            async move { m.readlink(ino_c).await },
            |_, r, target| r.data(target.as_bytes()),
        );
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
        if kind != 0 && kind != libc::S_IFREG {
            // Device nodes, FIFOs and sockets: the file system keeps none.
            return reply.error(Errno::EPERM);
        }
        let node = Node {
            kind: FileKind::File,
            mode: new_mode(mode, umask),
            target: String::new(),
        };
        self.make(req, parent, name, node, reply);
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
        let node = Node {
            kind: FileKind::Dir,
            mode: new_mode(mode, umask),
            target: String::new(),
        };
        self.make(req, parent, name, node, reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let (m, dir) = (self.m(), self.mount.map.cluster(parent));
        let what = format!("{}/{}", parent.0, name.to_string_lossy());
        let name = utf8(name);
        self.empty("unlink", what, reply, async move {
            m.remove(dir, &name?, false).await
        });
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let (m, dir) = (self.m(), self.mount.map.cluster(parent));
        let what = format!("{}/{}", parent.0, name.to_string_lossy());
        let name = utf8(name);
        self.empty("rmdir", what, reply, async move {
            m.remove(dir, &name?, true).await
        });
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let Some(target) = target.to_str() else {
            return reply.error(Errno::EINVAL);
        };
        let node = Node {
            kind: FileKind::Symlink,
            mode: 0o777,
            target: target.to_string(),
        };
        self.make(req, parent, link_name, node, reply);
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
        if !(flags - RenameFlags::RENAME_NOREPLACE).is_empty() {
            // RENAME_EXCHANGE, RENAME_WHITEOUT and unknown flags.
            return reply.error(Errno::EINVAL);
        }
        let noreplace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        let m = self.m();
        let (from, to) = (
            self.mount.map.cluster(parent),
            self.mount.map.cluster(newparent),
        );
        let what = format!(
            "{}/{} -> {}/{}",
            parent.0,
            name.to_string_lossy(),
            newparent.0,
            newname.to_string_lossy()
        );
        let (name, newname) = (utf8(name), utf8(newname));
        self.empty("rename", what, reply, async move {
            m.rename((from, &name?), (to, &newname?), noreplace).await
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
        let m = self.m();
        let (ino_c, dir) = (
            self.mount.map.cluster(ino),
            self.mount.map.cluster(newparent),
        );
        let what = format!("{} -> {}/{}", ino.0, newparent.0, newname.to_string_lossy());
        let name = utf8(newname);
        self.spawn(
            "link",
            what,
            reply,
            async move { m.link(ino_c, dir, &name?).await },
            Self::reply_entry,
        );
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let (m, ino_c) = (self.m(), self.mount.map.cluster(ino));
        let write = flags.0 & libc::O_ACCMODE != libc::O_RDONLY;
        self.spawn(
            "open",
            ino.0.to_string(),
            reply,
            async move { m.open(ino_c, write).await },
            |_, r, (fh, keep)| {
                let flags = if keep {
                    FopenFlags::FOPEN_KEEP_CACHE
                } else {
                    FopenFlags::empty()
                };
                r.opened(FileHandle(fh), flags)
            },
        );
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        if mode & libc::S_IFMT != 0 && mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(Errno::EPERM);
        }
        let (m, dir) = (self.m(), self.mount.map.cluster(parent));
        let (uid, gid) = (req.uid(), req.gid());
        let what = format!("{}/{}", parent.0, name.to_string_lossy());
        let name = utf8(name);
        let mode = new_mode(mode, umask);
        let exclusive = flags & libc::O_EXCL != 0;
        self.spawn(
            "create",
            what,
            reply,
            async move {
                let new = NewNode {
                    kind: FileKind::File,
                    mode,
                    owner: (uid, gid),
                    exclusive,
                    symlink_target: "",
                };
                m.create(dir, &name?, new).await
            },
            |m, r, (attr, fh)| {
                let size = m.size_of(&attr);
                r.created(
                    &m.ttl,
                    &file_attr(&m.map, &attr, size),
                    GENERATION,
                    FileHandle(fh),
                    FopenFlags::empty(),
                )
            },
        );
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let (m, ino_c) = (self.m(), self.mount.map.cluster(ino));
        self.spawn(
            "read",
            ino.0.to_string(),
            reply,
            async move { m.read(ino_c, offset, size).await },
            |_, r, data| r.data(&data),
        );
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let (m, ino_c) = (self.m(), self.mount.map.cluster(ino));
        let data = data.to_vec();
        self.spawn(
            "write",
            ino.0.to_string(),
            reply,
            async move { m.write(ino_c, offset, &data).await },
            |_, r, n| r.written(n),
        );
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2): what this mount buffered for the file reaches the cluster, so an
        // open on another mount that starts after the close sees it (close-to-open).
        let (m, ino_c) = (self.m(), self.mount.map.cluster(ino));
        self.empty("flush", ino.0.to_string(), reply, async move {
            m.flush_writes(ino_c).await
        });
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let m = self.m();
        self.empty("release", ino.0.to_string(), reply, async move {
            m.release(fh.0).await
        });
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let (m, ino_c) = (self.m(), self.mount.map.cluster(ino));
        self.empty("fsync", ino.0.to_string(), reply, async move {
            m.fsync(ino_c).await
        });
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let fh = self.mount.opendir(self.mount.map.cluster(ino));
        reply.opened(FileHandle(fh), FopenFlags::empty());
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        let m = self.m();
        // Positions: 0 is ".", 1 is "..", then the listing; an entry's offset is
        // the position after it, where the next readdir resumes.
        let from = usize::try_from(offset).unwrap_or(usize::MAX);
        self.spawn(
            "readdir",
            ino.0.to_string(),
            reply,
            async move {
                m.readdir(fh.0, from.saturating_sub(2), READDIR_BATCH_ENTRIES)
                    .await
            },
            move |m, mut r, entries| {
                for (next, slot) in slots(from, entries) {
                    let full = match &slot {
                        Slot::Dot(name) => r.add(ino, next, fuser::FileType::Directory, name),
                        Slot::Entry(e) => {
                            r.add(m.map.kernel(e.ino), next, file_type(e.kind), &e.name)
                        }
                    };
                    if full {
                        break;
                    }
                }
                r.ok()
            },
        );
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectoryPlus,
    ) {
        let m = self.m();
        let from = usize::try_from(offset).unwrap_or(usize::MAX);
        self.spawn(
            "readdirplus",
            ino.0.to_string(),
            reply,
            async move {
                m.readdir(fh.0, from.saturating_sub(2), READDIR_BATCH_ENTRIES)
                    .await
            },
            move |m, mut r, entries| {
                for (next, slot) in slots(from, entries) {
                    let full = match &slot {
                        // The kernel makes no entries for "." and ".." from a readdirplus
                        // answer; the attributes only have to be well formed.
                        Slot::Dot(name) => {
                            r.add(ino, next, name, &Duration::ZERO, &dot_attr(ino), GENERATION)
                        }
                        Slot::Entry(e) => {
                            // Listed without attributes: it vanished meanwhile; leave it out.
                            let Some(attr) = &e.attr else { continue };
                            let fattr = file_attr(&m.map, attr, m.size_of(attr));
                            r.add(fattr.ino, next, &e.name, &m.ttl, &fattr, GENERATION)
                        }
                    };
                    if full {
                        break;
                    }
                }
                r.ok()
            },
        );
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        let m = self.m();
        self.empty("releasedir", String::new(), reply, async move {
            m.release(fh.0).await
        });
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Every namespace change was committed on a quorum before it was answered;
        // the barrier makes sure of it.
        let (m, ino_c) = (self.m(), self.mount.map.cluster(ino));
        self.empty("fsyncdir", ino.0.to_string(), reply, async move {
            m.fsync(ino_c).await
        });
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let m = self.m();
        self.spawn(
            "statfs",
            String::new(),
            reply,
            async move { m.statfs().await },
            |_, r, info| {
                let space = super::space::Space::of(&info);
                r.statfs(
                    space.blocks,
                    space.blocks_free,
                    space.blocks_free,
                    space.files,
                    space.files_free,
                    super::space::BLOCK_BYTES as u32,
                    crate::limits::FS_NAME_BYTES_MAX as u32,
                    super::space::BLOCK_BYTES as u32,
                )
            },
        );
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let (m, ino_c) = (self.m(), self.mount.map.cluster(ino));
        let what = format!("{} {}", ino.0, name.to_string_lossy());
        let (name, value) = (utf8(name), value.to_vec());
        self.empty("setxattr", what, reply, async move {
            m.set_xattr(ino_c, &name?, &value, flags).await
        });
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let (m, ino_c) = (self.m(), self.mount.map.cluster(ino));
        let what = format!("{} {}", ino.0, name.to_string_lossy());
        let name = utf8(name);
        self.spawn(
            "getxattr",
            what,
            reply,
            async move {
                let value = m.get_xattr(ino_c, &name?).await?;
                fits(value, size)
            },
            |_, r, answer| answer.send(r),
        );
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let (m, ino_c) = (self.m(), self.mount.map.cluster(ino));
        self.spawn(
            "listxattr",
            ino.0.to_string(),
            reply,
            async move {
                let mut list = Vec::new();
                for name in m.list_xattrs(ino_c).await? {
                    list.extend_from_slice(name.as_bytes());
                    list.push(0);
                }
                fits(list, size)
            },
            |_, r, answer| answer.send(r),
        );
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let (m, ino_c) = (self.m(), self.mount.map.cluster(ino));
        let what = format!("{} {}", ino.0, name.to_string_lossy());
        let name = utf8(name);
        self.empty("removexattr", what, reply, async move {
            m.remove_xattr(ino_c, &name?).await
        });
    }
}

/// One item of a directory answer.
enum Slot {
    Dot(&'static str),
    Entry(DirEntry),
}

/// The items from position `from` of a directory (0 is ".", 1 is "..", then the
/// listing's `entries`, fetched from position `from - 2`), each with the offset the
/// next readdir resumes at.
fn slots(from: usize, entries: Vec<DirEntry>) -> impl Iterator<Item = (u64, Slot)> {
    let dots = [".", ".."]
        .into_iter()
        .enumerate()
        .filter(move |(pos, _)| *pos >= from)
        .map(|(pos, name)| (pos as u64 + 1, Slot::Dot(name)));
    let first = from.max(2) as u64;
    let listed = entries
        .into_iter()
        .enumerate()
        .map(move |(i, e)| (first + i as u64 + 1, Slot::Entry(e)));
    dots.chain(listed)
}

/// Well-formed attributes for the "." and ".." of a readdirplus answer.
fn dot_attr(ino: INodeNo) -> fuser::FileAttr {
    fuser::FileAttr {
        ino,
        size: 0,
        blocks: 0,
        atime: SystemTime::UNIX_EPOCH,
        mtime: SystemTime::UNIX_EPOCH,
        ctime: SystemTime::UNIX_EPOCH,
        crtime: SystemTime::UNIX_EPOCH,
        kind: fuser::FileType::Directory,
        perm: 0o755,
        nlink: 2,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

/// An xattr answer: the size when the caller asked for it (`size` 0), else the bytes.
enum XattrAnswer {
    Size(u32),
    Data(Vec<u8>),
}

impl XattrAnswer {
    fn send(self, reply: ReplyXattr) {
        match self {
            XattrAnswer::Size(n) => reply.size(n),
            XattrAnswer::Data(data) => reply.data(&data),
        }
    }
}

fn fits(value: Vec<u8>, size: u32) -> Res<XattrAnswer> {
    let len = u32::try_from(value.len()).map_err(|_| libc::E2BIG)?;
    if size == 0 {
        Ok(XattrAnswer::Size(len))
    } else if len > size {
        Err(libc::ERANGE)
    } else {
        Ok(XattrAnswer::Data(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str) -> DirEntry {
        DirEntry {
            name: name.into(),
            ino: 9,
            kind: FileKind::File,
            attr: None,
        }
    }

    fn names(from: usize, listed: &[&str]) -> Vec<(u64, String)> {
        slots(from, listed.iter().map(|n| entry(n)).collect())
            .map(|(next, slot)| match slot {
                Slot::Dot(n) => (next, n.to_string()),
                Slot::Entry(e) => (next, e.name),
            })
            .collect()
    }

    #[test]
    fn directory_offsets_resume_where_the_last_answer_ended() {
        let all = names(0, &["a", "b"]);
        assert_eq!(
            all,
            [
                (1, ".".into()),
                (2, "..".into()),
                (3, "a".into()),
                (4, "b".into())
            ]
        );
        assert_eq!(names(1, &["a"]), [(2, "..".into()), (3, "a".into())]);
        // Resuming at 4: the listing was fetched from its third entry (index 2).
        assert_eq!(names(4, &["c"]), [(5, "c".into())]);
    }
}
