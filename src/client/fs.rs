//! File system calls of the SDK: `client.fs("default")` gives an [`FsClient`] for
//! one named file system (or `"local"`, the node-local storage of the first
//! endpoint).
//!
//! Writes carry the client's session, so a retried create, rename or unlink after a
//! leader change takes effect once. Uploads cut the source into 1 MiB chunks; a
//! piece may instead name a chunk the cluster already holds (see
//! [`FsClient::missing_chunks`]), which is how incremental uploads send only what
//! changed. Open handles live under a lease the client renews in the background
//! while any handle is open.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{fs_client, Client, Error, ReadConsistency, Target, Timeouts};
use crate::chunk_ref::ChunkRef;
use crate::limits::{FS_LEASE_MS_DEFAULT, FS_WRITE_BYTES_MAX};
use crate::proto::v1;

const LOCAL_FS: &str = "local";
/// Time allowed per attempt of a transfer on top of the size allowance.
const TRANSFER_BASE_MS: u64 = 30_000;
/// Slowest transfer rate the SDK waits for before it tries again.
const TRANSFER_BYTES_PER_S_MIN: u64 = 2 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
}

/// A file's attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: FileKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub nlink: u32,
    pub atime_ns: i64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    /// Changes whenever the content changes.
    pub version: u64,
    pub allocated_bytes: u64,
    /// A symlink's target.
    pub target: String,
}

impl From<v1::Attr> for Attr {
    fn from(a: v1::Attr) -> Self {
        let kind = match v1::FileKind::try_from(a.kind) {
            Ok(v1::FileKind::Dir) => FileKind::Dir,
            Ok(v1::FileKind::Symlink) => FileKind::Symlink,
            _ => FileKind::File,
        };
        Attr {
            ino: a.ino,
            kind,
            mode: a.mode,
            uid: a.uid,
            gid: a.gid,
            size: a.size,
            nlink: a.nlink,
            atime_ns: a.atime_ns,
            mtime_ns: a.mtime_ns,
            ctime_ns: a.ctime_ns,
            version: a.version,
            allocated_bytes: a.allocated_bytes,
            target: a.target,
        }
    }
}

pub(super) fn attr_of(reply: v1::AttrReply) -> Result<Attr, Error> {
    reply
        .attr
        .map(Attr::from)
        .ok_or_else(|| Error::Internal("a reply without attributes".into()))
}

fn kind_proto(kind: FileKind) -> i32 {
    (match kind {
        FileKind::File => v1::FileKind::File,
        FileKind::Dir => v1::FileKind::Dir,
        FileKind::Symlink => v1::FileKind::Symlink,
    }) as i32
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub ino: u64,
    pub kind: FileKind,
    /// With `plus` only.
    pub attr: Option<Attr>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirPage {
    pub entries: Vec<DirEntry>,
    /// `None` on the last page.
    pub next_after: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsInfo {
    pub name: String,
    pub quota_bytes: u64,
    pub bytes_used: u64,
    pub inodes_used: u64,
    pub created_ms: u64,
}

impl From<v1::FsInfo> for FsInfo {
    fn from(i: v1::FsInfo) -> Self {
        FsInfo {
            name: i.name,
            quota_bytes: i.quota_bytes,
            bytes_used: i.bytes_used,
            inodes_used: i.inodes_used,
            created_ms: i.created_ms,
        }
    }
}

/// Attribute changes; `None` leaves one as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetAttrs {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime_ns: Option<i64>,
    pub mtime_ns: Option<i64>,
    /// Set the time to the cluster's clock (`utimensat` with `UTIME_NOW`).
    pub atime_now: bool,
    pub mtime_now: bool,
}

/// What a create makes (see [`FsClient::make_in`]).
#[derive(Debug, Clone, Copy)]
pub struct NewNode<'a> {
    pub kind: FileKind,
    pub mode: u32,
    pub owner: (u32, u32),
    /// `O_EXCL`: `EEXIST` if the name exists.
    pub exclusive: bool,
    pub symlink_target: &'a str,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadOptions {
    /// Create missing parent directories.
    pub parents: bool,
    /// Fail with `EEXIST` if the path exists.
    pub exclusive: bool,
    /// Permission bits; 0 means 0o644.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Keep this mtime; `None`: the cluster's time.
    pub mtime_ns: Option<i64>,
}

/// One piece of an upload body.
#[derive(Debug, Clone)]
pub enum UploadPiece {
    Data(Bytes),
    /// A whole chunk the cluster holds, at a chunk boundary.
    Chunk(ChunkRef),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadReport {
    pub attr: Attr,
    /// Chunks the upload replicated; the rest were already stored.
    pub chunks_sent: u64,
    pub chunks_total: u64,
    /// Bytes sent as data (not counting chunks named by hash).
    pub bytes_sent: u64,
}

/// A handle registered with the cluster: the inode stays readable by number until
/// it is released, even if its last name is removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenFile {
    pub ino: u64,
    pub attr: Attr,
}

/// The lease under which an [`FsClient`] holds open handles.
struct Lease {
    id: u64,
    open_handles: AtomicUsize,
    keepalive_running: std::sync::Mutex<bool>,
}

/// Calls on one file system. Cheap to clone.
#[derive(Clone)]
pub struct FsClient {
    client: Client,
    fs: String,
    lease: Arc<Lease>,
}

impl Client {
    /// The file system `name` (`"default"` always exists; `"local"` is the
    /// node-local storage of the first endpoint).
    pub fn fs(&self, name: &str) -> FsClient {
        FsClient {
            client: self.clone(),
            fs: name.to_string(),
            lease: Arc::new(Lease {
                id: rand::random::<u64>() | 1,
                open_handles: AtomicUsize::new(0),
                keepalive_running: std::sync::Mutex::new(false),
            }),
        }
    }

    pub async fn create_fs(&self, name: &str, quota_bytes: u64) -> Result<(), Error> {
        let name = name.to_string();
        self.write_with(Duration::ZERO, move |channel, session| {
            let request = v1::CreateFsRequest {
                session: Some(session),
                name: name.clone(),
                quota_bytes,
            };
            async move { fs_client(channel).create_fs(request).await }
        })
        .await?;
        Ok(())
    }

    pub async fn delete_fs(&self, name: &str) -> Result<(), Error> {
        let name = name.to_string();
        self.write_with(Duration::ZERO, move |channel, session| {
            let request = v1::FsNameRequest {
                session: Some(session),
                name: name.clone(),
            };
            async move { fs_client(channel).delete_fs(request).await }
        })
        .await?;
        Ok(())
    }

    pub async fn set_fs_quota(&self, name: &str, quota_bytes: u64) -> Result<(), Error> {
        let name = name.to_string();
        self.write_with(Duration::ZERO, move |channel, session| {
            let request = v1::SetQuotaRequest {
                session: Some(session),
                name: name.clone(),
                quota_bytes,
            };
            async move { fs_client(channel).set_quota(request).await }
        })
        .await?;
        Ok(())
    }

    pub async fn list_fs(&self) -> Result<Vec<FsInfo>, Error> {
        let reply = self
            .call_on(Target::LeaderPreferred, fs_client, |mut c| async move {
                c.list_fs(v1::ListFsRequest::default()).await
            })
            .await?;
        Ok(reply.filesystems.into_iter().map(FsInfo::from).collect())
    }
}

pub(super) fn path_target(path: &str) -> Option<v1::Target> {
    Some(v1::Target {
        path: path.to_string(),
        ino: 0,
    })
}

pub(super) fn ino_target(ino: u64) -> Option<v1::Target> {
    Some(v1::Target {
        path: String::new(),
        ino,
    })
}

pub(super) fn path_place(path: &str) -> Option<v1::Place> {
    Some(v1::Place {
        path: path.to_string(),
        ..Default::default()
    })
}

impl FsClient {
    pub fn name(&self) -> &str {
        &self.fs
    }

    fn is_local(&self) -> bool {
        self.fs == LOCAL_FS
    }

    fn read_target(&self) -> Target {
        if self.is_local() {
            Target::First
        } else {
            Target::LeaderPreferred
        }
    }

    fn write_target(&self) -> Target {
        if self.is_local() {
            Target::First
        } else {
            Target::Leader
        }
    }

    fn timeouts(&self, size_bytes: u64) -> Timeouts {
        let allowance_ms = TRANSFER_BASE_MS + size_bytes * 1000 / TRANSFER_BYTES_PER_S_MIN;
        Timeouts::new(
            self.client
                .inner
                .call_timeout
                .max(Duration::from_millis(allowance_ms)),
            Duration::from_millis(allowance_ms),
        )
    }

    pub(super) async fn read<T, F, Fut>(&self, attempt: F) -> Result<T, Error>
    where
        F: FnMut(super::FsGrpc) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.client
            .call_on(self.read_target(), fs_client, attempt)
            .await
    }

    pub(super) async fn write<T, F, Fut>(&self, mut attempt: F) -> Result<T, Error>
    where
        F: FnMut(super::FsGrpc, v1::Session) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let timeouts = Timeouts::new(self.client.inner.call_timeout, Duration::ZERO);
        self.client
            .write_on(self.write_target(), timeouts, move |channel, session| {
                attempt(fs_client(channel), session)
            })
            .await
    }

    pub(super) fn consistency() -> i32 {
        ReadConsistency::Linearizable as i32
    }

    pub async fn stat(&self, path: &str) -> Result<Attr, Error> {
        self.stat_target(path_target(path)).await
    }

    pub async fn stat_ino(&self, ino: u64) -> Result<Attr, Error> {
        self.stat_target(ino_target(ino)).await
    }

    async fn stat_target(&self, target: Option<v1::Target>) -> Result<Attr, Error> {
        let request = v1::StatRequest {
            fs: self.fs.clone(),
            target,
            consistency: Self::consistency(),
        };
        attr_of(
            self.read(move |mut c| {
                let request = request.clone();
                async move { c.stat(request).await }
            })
            .await?,
        )
    }

    /// Stats many paths in one round trip (at most 1000).
    pub async fn stat_many(&self, paths: &[String]) -> Result<Vec<Result<Attr, Error>>, Error> {
        let request = v1::StatManyRequest {
            fs: self.fs.clone(),
            paths: paths.to_vec(),
            consistency: Self::consistency(),
        };
        let reply = self
            .read(move |mut c| {
                let request = request.clone();
                async move { c.stat_many(request).await }
            })
            .await?;
        Ok(reply
            .results
            .into_iter()
            .zip(paths)
            .map(|(r, path)| match (r.errno.is_empty(), r.attr) {
                (true, Some(a)) => Ok(Attr::from(a)),
                _ => Err(match crate::errno::Errno::from_name(&r.errno) {
                    Some(errno) => Error::Fs {
                        errno,
                        message: format!("{errno}: {path}"),
                    },
                    None => Error::Rejected {
                        code: r.errno,
                        message: path.clone(),
                    },
                }),
            })
            .collect())
    }

    /// The entry `name` of directory inode `dir`.
    pub async fn lookup(&self, dir: u64, name: &str) -> Result<Attr, Error> {
        let request = v1::LookupRequest {
            fs: self.fs.clone(),
            dir: ino_target(dir),
            name: name.to_string(),
            consistency: Self::consistency(),
        };
        attr_of(
            self.read(move |mut c| {
                let request = request.clone();
                async move { c.lookup(request).await }
            })
            .await?,
        )
    }

    /// One page of a directory; `plus` adds attributes.
    pub async fn read_dir(
        &self,
        path: &str,
        after: &str,
        limit: u32,
        plus: bool,
    ) -> Result<DirPage, Error> {
        self.read_dir_target(path_target(path), after, limit, plus)
            .await
    }

    pub(super) async fn read_dir_target(
        &self,
        dir: Option<v1::Target>,
        after: &str,
        limit: u32,
        plus: bool,
    ) -> Result<DirPage, Error> {
        let request = v1::ReadDirRequest {
            fs: self.fs.clone(),
            dir,
            after: after.to_string(),
            limit,
            plus,
            consistency: Self::consistency(),
        };
        let reply = self
            .read(move |mut c| {
                let request = request.clone();
                async move { c.read_dir(request).await }
            })
            .await?;
        Ok(DirPage {
            entries: reply
                .entries
                .into_iter()
                .map(|e| DirEntry {
                    name: e.name,
                    ino: e.ino,
                    kind: match v1::FileKind::try_from(e.kind) {
                        Ok(v1::FileKind::Dir) => FileKind::Dir,
                        Ok(v1::FileKind::Symlink) => FileKind::Symlink,
                        _ => FileKind::File,
                    },
                    attr: e.attr.map(Attr::from),
                })
                .collect(),
            next_after: (!reply.next_after.is_empty()).then_some(reply.next_after),
        })
    }

    /// Every entry of a directory, with attributes (all pages).
    pub async fn list(&self, path: &str) -> Result<Vec<DirEntry>, Error> {
        let mut out = Vec::new();
        let mut after = String::new();
        loop {
            let page = self.read_dir(path, &after, 0, true).await?;
            out.extend(page.entries);
            match page.next_after {
                Some(next) => after = next,
                None => return Ok(out),
            }
        }
    }

    pub async fn readlink(&self, path: &str) -> Result<String, Error> {
        self.readlink_target(path_target(path)).await
    }

    pub(super) async fn readlink_target(
        &self,
        target: Option<v1::Target>,
    ) -> Result<String, Error> {
        let request = v1::StatRequest {
            fs: self.fs.clone(),
            target,
            consistency: Self::consistency(),
        };
        Ok(self
            .read(move |mut c| {
                let request = request.clone();
                async move { c.read_link(request).await }
            })
            .await?
            .target)
    }

    async fn make(
        &self,
        path: &str,
        kind: FileKind,
        mode: u32,
        (exclusive, parents): (bool, bool),
        symlink_target: &str,
    ) -> Result<Attr, Error> {
        let new = NewNode {
            kind,
            mode,
            owner: (0, 0),
            exclusive,
            symlink_target,
        };
        self.make_place(path_place(path), &new, parents).await
    }

    pub(super) async fn make_place(
        &self,
        place: Option<v1::Place>,
        new: &NewNode<'_>,
        parents: bool,
    ) -> Result<Attr, Error> {
        let (fs, symlink_target) = (self.fs.clone(), new.symlink_target.to_string());
        let (kind, mode, (uid, gid), exclusive) = (new.kind, new.mode, new.owner, new.exclusive);
        attr_of(
            self.write(move |mut c, session| {
                let request = v1::MakeRequest {
                    session: Some(session),
                    fs: fs.clone(),
                    place: place.clone(),
                    kind: kind_proto(kind),
                    mode,
                    uid,
                    gid,
                    exclusive,
                    parents,
                    symlink_target: symlink_target.clone(),
                };
                async move { c.make(request).await }
            })
            .await?,
        )
    }

    /// `mkdir` (with `parents`: `mkdir -p`).
    pub async fn mkdir(&self, path: &str, mode: u32, parents: bool) -> Result<Attr, Error> {
        self.make(path, FileKind::Dir, mode, (true, parents), "")
            .await
    }

    /// Creates an empty file (`exclusive`: `O_EXCL`).
    pub async fn create(&self, path: &str, mode: u32, exclusive: bool) -> Result<Attr, Error> {
        self.make(path, FileKind::File, mode, (exclusive, false), "")
            .await
    }

    pub async fn symlink(&self, target: &str, path: &str) -> Result<Attr, Error> {
        self.make(path, FileKind::Symlink, 0o777, (true, false), target)
            .await
    }

    async fn remove(&self, path: &str, mode: v1::RemoveMode) -> Result<u64, Error> {
        self.remove_place(path_place(path), mode).await
    }

    pub(super) async fn remove_place(
        &self,
        place: Option<v1::Place>,
        mode: v1::RemoveMode,
    ) -> Result<u64, Error> {
        let fs = self.fs.clone();
        Ok(self
            .write(move |mut c, session| {
                let request = v1::RemoveRequest {
                    session: Some(session),
                    fs: fs.clone(),
                    place: place.clone(),
                    mode: mode as i32,
                };
                async move { c.remove(request).await }
            })
            .await?
            .entries_removed)
    }

    pub async fn unlink(&self, path: &str) -> Result<(), Error> {
        self.remove(path, v1::RemoveMode::Unlink).await.map(|_| ())
    }

    pub async fn rmdir(&self, path: &str) -> Result<(), Error> {
        self.remove(path, v1::RemoveMode::Rmdir).await.map(|_| ())
    }

    /// `rm -r`: removes `path` and everything under it; returns the entries removed.
    pub async fn remove_all(&self, path: &str) -> Result<u64, Error> {
        self.remove(path, v1::RemoveMode::Recursive).await
    }

    /// POSIX rename: atomically replaces a file or an empty directory at `to`.
    pub async fn rename(&self, from: &str, to: &str) -> Result<(), Error> {
        self.rename_with(from, to, false).await
    }

    /// `RENAME_NOREPLACE`: `EEXIST` if `to` exists.
    pub async fn rename_noreplace(&self, from: &str, to: &str) -> Result<(), Error> {
        self.rename_with(from, to, true).await
    }

    async fn rename_with(&self, from: &str, to: &str, noreplace: bool) -> Result<(), Error> {
        self.rename_places(path_place(from), path_place(to), noreplace)
            .await
    }

    pub(super) async fn rename_places(
        &self,
        from: Option<v1::Place>,
        to: Option<v1::Place>,
        noreplace: bool,
    ) -> Result<(), Error> {
        let fs = self.fs.clone();
        self.write(move |mut c, session| {
            let request = v1::RenameRequest {
                session: Some(session),
                fs: fs.clone(),
                from: from.clone(),
                to: to.clone(),
                noreplace,
            };
            async move { c.rename(request).await }
        })
        .await?;
        Ok(())
    }

    /// A hard link `path` to the file at `existing`.
    pub async fn link(&self, existing: &str, path: &str) -> Result<Attr, Error> {
        self.link_to(path_target(existing), path_place(path)).await
    }

    pub(super) async fn link_to(
        &self,
        target: Option<v1::Target>,
        place: Option<v1::Place>,
    ) -> Result<Attr, Error> {
        let fs = self.fs.clone();
        attr_of(
            self.write(move |mut c, session| {
                let request = v1::LinkRequest {
                    session: Some(session),
                    fs: fs.clone(),
                    target: target.clone(),
                    place: place.clone(),
                };
                async move { c.link(request).await }
            })
            .await?,
        )
    }

    pub async fn set_attr(&self, path: &str, set: &SetAttrs) -> Result<Attr, Error> {
        self.set_attr_target(path_target(path), set).await
    }

    pub(super) async fn set_attr_target(
        &self,
        target: Option<v1::Target>,
        set: &SetAttrs,
    ) -> Result<Attr, Error> {
        let (fs, set) = (self.fs.clone(), set.clone());
        attr_of(
            self.write(move |mut c, session| {
                let request = v1::SetAttrRequest {
                    session: Some(session),
                    fs: fs.clone(),
                    target: target.clone(),
                    mode: set.mode,
                    uid: set.uid,
                    gid: set.gid,
                    size: set.size,
                    atime_ns: set.atime_ns,
                    mtime_ns: set.mtime_ns,
                    atime_now: set.atime_now,
                    mtime_now: set.mtime_now,
                };
                async move { c.set_attr(request).await }
            })
            .await?,
        )
    }

    pub async fn truncate(&self, path: &str, size: u64) -> Result<Attr, Error> {
        self.set_attr(
            path,
            &SetAttrs {
                size: Some(size),
                ..Default::default()
            },
        )
        .await
    }

    /// Writes `data` at `offset` of an existing file (split into calls of at most 16 MiB).
    pub async fn write_at(&self, path: &str, offset: u64, data: &[u8]) -> Result<Attr, Error> {
        self.write_target_at(path_target(path), offset, data).await
    }

    /// Like [`FsClient::write_at`], through an open handle's inode number.
    pub async fn write_ino(&self, ino: u64, offset: u64, data: &[u8]) -> Result<Attr, Error> {
        self.write_target_at(ino_target(ino), offset, data).await
    }

    async fn write_target_at(
        &self,
        target: Option<v1::Target>,
        offset: u64,
        data: &[u8],
    ) -> Result<Attr, Error> {
        let mut last = None;
        let pieces: Vec<&[u8]> = if data.is_empty() {
            vec![data]
        } else {
            data.chunks(FS_WRITE_BYTES_MAX).collect()
        };
        let mut at = offset;
        for piece in pieces {
            let bytes = Bytes::copy_from_slice(piece);
            last = Some(self.write_piece(target.clone(), at, bytes, None).await?);
            at += piece.len() as u64;
        }
        Ok(last.expect("at least one piece"))
    }

    /// One `Write` call (at most 16 MiB), a compare-and-set with `if_version`.
    pub(super) async fn write_piece(
        &self,
        target: Option<v1::Target>,
        offset: u64,
        data: Bytes,
        if_version: Option<u64>,
    ) -> Result<Attr, Error> {
        let fs = self.fs.clone();
        attr_of(
            self.write(move |mut c, session| {
                let request = v1::WriteRequest {
                    session: Some(session),
                    fs: fs.clone(),
                    target: target.clone(),
                    offset,
                    data: data.clone(),
                    if_version,
                };
                async move { c.write(request).await }
            })
            .await?,
        )
    }

    /// Uploads whatever `open` streams to `path`; `open` is called again for each
    /// retry and must yield the same pieces. The file appears whole, or not at all.
    pub async fn upload_from<O, F, S>(
        &self,
        path: &str,
        options: &UploadOptions,
        size_hint: u64,
        mut open: O,
    ) -> Result<UploadReport, Error>
    where
        O: FnMut() -> F,
        F: std::future::Future<Output = Option<S>> + Send + 'static,
        S: Stream<Item = UploadPiece> + Send + 'static,
    {
        let timeouts = self.timeouts(size_hint);
        let (fs, path, options) = (self.fs.clone(), path.to_string(), options.clone());
        let reply = self
            .client
            .write_on(self.write_target(), timeouts, move |channel, session| {
                let header = v1::UploadHeader {
                    session: Some(session),
                    fs: fs.clone(),
                    path: path.clone(),
                    parents: options.parents,
                    exclusive: options.exclusive,
                    mode: if options.mode == 0 {
                        0o644
                    } else {
                        options.mode
                    },
                    uid: options.uid,
                    gid: options.gid,
                    mtime_ns: options.mtime_ns,
                };
                let body = open();
                async move {
                    let body = body.await.ok_or_else(|| {
                        tonic::Status::cancelled("the upload source could not be opened")
                    })?;
                    let first = v1::UploadRequest {
                        part: Some(v1::upload_request::Part::Header(header)),
                    };
                    let data = body.map(|piece| v1::UploadRequest {
                        part: Some(match piece {
                            UploadPiece::Data(d) => v1::upload_request::Part::Data(d),
                            UploadPiece::Chunk(c) => {
                                v1::upload_request::Part::Chunk(v1::ChunkName {
                                    hash: Bytes::copy_from_slice(&c.hash),
                                    len: c.len,
                                })
                            }
                        }),
                    });
                    fs_client(channel)
                        .upload(futures::stream::once(async move { first }).chain(data))
                        .await
                }
            })
            .await?;
        Ok(UploadReport {
            attr: reply
                .attr
                .map(Attr::from)
                .ok_or_else(|| Error::Internal("an upload reply without attributes".into()))?,
            chunks_sent: reply.chunks_sent,
            chunks_total: reply.chunks_total,
            bytes_sent: reply.bytes_received,
        })
    }

    /// Uploads bytes held in memory.
    pub async fn upload_bytes(
        &self,
        path: &str,
        data: Bytes,
        options: &UploadOptions,
    ) -> Result<UploadReport, Error> {
        let size = data.len() as u64;
        self.upload_from(path, options, size, move || {
            let data = data.clone();
            async move {
                let pieces: Vec<UploadPiece> = (0..data.len())
                    .step_by(256 * 1024)
                    .map(|at| UploadPiece::Data(data.slice(at..(at + 256 * 1024).min(data.len()))))
                    .collect();
                Some(futures::stream::iter(pieces))
            }
        })
        .await
    }

    /// Which of `chunks` the cluster lacks (positions in `chunks`). Node-local
    /// storage keeps no chunks: every position comes back.
    pub async fn missing_chunks(&self, chunks: &[ChunkRef]) -> Result<Vec<u32>, Error> {
        if self.is_local() {
            return Ok((0..chunks.len() as u32).collect());
        }
        let mut missing = Vec::new();
        for (batch_index, batch) in chunks.chunks(crate::limits::FS_CHUNK_QUERY_MAX).enumerate() {
            let request = v1::MissingChunksRequest {
                chunks: batch
                    .iter()
                    .map(|c| v1::ChunkName {
                        hash: Bytes::copy_from_slice(&c.hash),
                        len: c.len,
                    })
                    .collect(),
            };
            let reply = self
                .client
                .call_on(Target::Leader, fs_client, move |mut c| {
                    let request = request.clone();
                    async move { c.missing_chunks(request).await }
                })
                .await?;
            let base = (batch_index * crate::limits::FS_CHUNK_QUERY_MAX) as u32;
            missing.extend(reply.missing.into_iter().map(|i| base + i));
        }
        Ok(missing)
    }

    /// Downloads bytes `[offset, offset + length)` (`length` 0 = to the end) of
    /// `path` into `out`. A stream that breaks is retried from the start of what
    /// is missing, as long as the content version stays the same.
    pub async fn download_to<W: AsyncWrite + Unpin>(
        &self,
        path: &str,
        range: (u64, u64),
        out: &mut W,
    ) -> Result<Attr, Error> {
        self.download_target(path_target(path), range, out).await
    }

    pub async fn download_target<W: AsyncWrite + Unpin>(
        &self,
        target: Option<v1::Target>,
        (offset, length): (u64, u64),
        out: &mut W,
    ) -> Result<Attr, Error> {
        let mut attr: Option<Attr> = None;
        let mut written = 0u64;
        for _ in 0..10 {
            let remaining = match (&attr, length) {
                (Some(a), 0) => a.size.saturating_sub(offset + written),
                (_, 0) => 0,
                (_, l) => l - written,
            };
            if attr.is_some() && remaining == 0 {
                break;
            }
            let request = v1::DownloadRequest {
                fs: self.fs.clone(),
                target: target.clone(),
                offset: offset + written,
                length: remaining,
                consistency: Self::consistency(),
            };
            let timeouts = self.timeouts(0);
            let (first, mut stream) = self
                .client
                .inner
                .router
                .call(self.read_target(), timeouts, |channel| {
                    let request = request.clone();
                    async move {
                        let mut stream = fs_client(channel).download(request).await?.into_inner();
                        let first = stream.message().await?;
                        Ok((first, stream))
                    }
                })
                .await?;
            let this = match first.and_then(|m| m.part) {
                Some(v1::download_reply::Part::Attr(a)) => Attr::from(a),
                _ => {
                    return Err(Error::Internal(
                        "a download did not start with attributes".into(),
                    ))
                }
            };
            match &attr {
                Some(a) if a.version != this.version => {
                    return Err(Error::Rejected {
                        code: "file_changed".into(),
                        message: "the file changed during the download".into(),
                    })
                }
                Some(_) => {}
                None => attr = Some(this.clone()),
            }
            let wanted = if length == 0 {
                this.size.saturating_sub(offset)
            } else {
                length.min(this.size.saturating_sub(offset))
            };
            let broke = loop {
                match stream.message().await {
                    Ok(Some(v1::DownloadReply {
                        part: Some(v1::download_reply::Part::Data(data)),
                    })) => {
                        out.write_all(&data)
                            .await
                            .map_err(|e| Error::Internal(format!("writing the download: {e}")))?;
                        written += data.len() as u64;
                    }
                    Ok(Some(_)) => {
                        break Some(Error::Internal("unexpected message in a download".into()))
                    }
                    Ok(None) => break None,
                    Err(status) => break Some(Error::from_status(&status)),
                }
            };
            match broke {
                None if written >= wanted => break,
                None => {}
                Some(e) if !e.is_retryable() => return Err(e),
                Some(_) => {}
            }
        }
        out.flush()
            .await
            .map_err(|e| Error::Internal(format!("writing the download: {e}")))?;
        attr.ok_or_else(|| Error::Unavailable("the download never started".into()))
    }

    /// A whole file in memory.
    pub async fn read_file(&self, path: &str) -> Result<Vec<u8>, Error> {
        let mut data = Vec::new();
        self.download_to(path, (0, 0), &mut data).await?;
        Ok(data)
    }

    /// Bytes of an open handle's inode (readable after its last name is removed).
    pub async fn read_ino(&self, ino: u64, offset: u64, length: u64) -> Result<Vec<u8>, Error> {
        let mut data = Vec::new();
        self.download_target(ino_target(ino), (offset, length), &mut data)
            .await?;
        Ok(data)
    }

    pub async fn set_xattr(&self, path: &str, name: &str, value: &[u8]) -> Result<(), Error> {
        self.set_xattr_target(path_target(path), name, value, (false, false))
            .await
    }

    /// `(create, replace)`: `XATTR_CREATE` / `XATTR_REPLACE`.
    pub(super) async fn set_xattr_target(
        &self,
        target: Option<v1::Target>,
        name: &str,
        value: &[u8],
        (create, replace): (bool, bool),
    ) -> Result<(), Error> {
        let (fs, name, value) = (
            self.fs.clone(),
            name.to_string(),
            Bytes::copy_from_slice(value),
        );
        self.write(move |mut c, session| {
            let request = v1::SetXattrRequest {
                session: Some(session),
                fs: fs.clone(),
                target: target.clone(),
                name: name.clone(),
                value: value.clone(),
                create,
                replace,
            };
            async move { c.set_xattr(request).await }
        })
        .await?;
        Ok(())
    }

    pub async fn get_xattr(&self, path: &str, name: &str) -> Result<Vec<u8>, Error> {
        self.get_xattr_target(path_target(path), name).await
    }

    pub(super) async fn get_xattr_target(
        &self,
        target: Option<v1::Target>,
        name: &str,
    ) -> Result<Vec<u8>, Error> {
        let request = v1::XattrRequest {
            session: None,
            fs: self.fs.clone(),
            target,
            name: name.to_string(),
            consistency: Self::consistency(),
        };
        Ok(self
            .read(move |mut c| {
                let request = request.clone();
                async move { c.get_xattr(request).await }
            })
            .await?
            .value
            .to_vec())
    }

    pub async fn list_xattrs(&self, path: &str) -> Result<Vec<String>, Error> {
        self.list_xattrs_target(path_target(path)).await
    }

    pub(super) async fn list_xattrs_target(
        &self,
        target: Option<v1::Target>,
    ) -> Result<Vec<String>, Error> {
        let request = v1::StatRequest {
            fs: self.fs.clone(),
            target,
            consistency: Self::consistency(),
        };
        Ok(self
            .read(move |mut c| {
                let request = request.clone();
                async move { c.list_xattrs(request).await }
            })
            .await?
            .names)
    }

    pub async fn remove_xattr(&self, path: &str, name: &str) -> Result<(), Error> {
        self.remove_xattr_target(path_target(path), name).await
    }

    pub(super) async fn remove_xattr_target(
        &self,
        target: Option<v1::Target>,
        name: &str,
    ) -> Result<(), Error> {
        let (fs, name) = (self.fs.clone(), name.to_string());
        self.write(move |mut c, session| {
            let request = v1::XattrRequest {
                session: Some(session),
                fs: fs.clone(),
                target: target.clone(),
                name: name.clone(),
                consistency: 0,
            };
            async move { c.remove_xattr(request).await }
        })
        .await?;
        Ok(())
    }

    /// Usage and quota of this file system.
    pub async fn statfs(&self) -> Result<FsInfo, Error> {
        let request = v1::StatfsRequest {
            fs: self.fs.clone(),
            consistency: Self::consistency(),
        };
        let reply = self
            .read(move |mut c| {
                let request = request.clone();
                async move { c.statfs(request).await }
            })
            .await?;
        reply
            .info
            .map(FsInfo::from)
            .ok_or_else(|| Error::Internal("statfs without info".into()))
    }

    /// Opens `path`: registers a handle under this client's lease (renewed in the
    /// background while any handle is open).
    pub async fn open(&self, path: &str) -> Result<OpenFile, Error> {
        self.open_target(path_target(path)).await
    }

    pub(super) async fn open_target(&self, target: Option<v1::Target>) -> Result<OpenFile, Error> {
        let (fs, lease) = (self.fs.clone(), self.lease.id);
        let attr = attr_of(
            self.write(move |mut c, session| {
                let request = v1::OpenRequest {
                    session: Some(session),
                    fs: fs.clone(),
                    target: target.clone(),
                    lease,
                    lease_ms: FS_LEASE_MS_DEFAULT,
                };
                async move { c.open(request).await }
            })
            .await?,
        )?;
        self.lease.open_handles.fetch_add(1, Ordering::SeqCst);
        self.start_keepalive();
        Ok(OpenFile {
            ino: attr.ino,
            attr,
        })
    }

    pub async fn release(&self, file: &OpenFile) -> Result<(), Error> {
        let (fs, ino, lease) = (self.fs.clone(), file.ino, self.lease.id);
        self.write(move |mut c, session| {
            let request = v1::ReleaseRequest {
                session: Some(session),
                fs: fs.clone(),
                ino,
                lease,
            };
            async move { c.release(request).await }
        })
        .await?;
        self.lease.open_handles.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }

    /// Renews the lease every third of its length while handles are open.
    fn start_keepalive(&self) {
        let mut running = self
            .lease
            .keepalive_running
            .lock()
            .expect("keepalive lock is never poisoned");
        if *running || self.is_local() {
            return;
        }
        *running = true;
        let weak: Weak<Lease> = Arc::downgrade(&self.lease);
        let client = self.client.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(FS_LEASE_MS_DEFAULT / 3)).await;
                let Some(lease) = weak.upgrade() else { return };
                if lease.open_handles.load(Ordering::SeqCst) == 0 {
                    *lease
                        .keepalive_running
                        .lock()
                        .expect("keepalive lock is never poisoned") = false;
                    return;
                }
                let id = lease.id;
                drop(lease);
                let _ = client
                    .write_with(Duration::ZERO, move |channel, session| {
                        let request = v1::LeaseRequest {
                            session: Some(session),
                            lease: id,
                            lease_ms: FS_LEASE_MS_DEFAULT,
                        };
                        async move { fs_client(channel).renew_lease(request).await }
                    })
                    .await;
            }
        });
    }
}
