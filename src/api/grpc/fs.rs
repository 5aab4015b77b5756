//! The `cairn.v1.Fs` gRPC service: decodes requests into the transport-neutral
//! calls of `api::service::fs` and encodes their answers. No file system logic lives here.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::convert;
use crate::api::chunk_upload::Piece;
use crate::api::error::ApiError;
use crate::api::service::fs::content::UploadHeader;
use crate::api::service::fs::{FsApi, Place, RemoveMode, Target};
use crate::chunk_ref::ChunkRef;
use crate::proto::v1::{self, fs_server::Fs};
use crate::raft::NodeError;
use crate::state::fs::{Entry, FsRecord, Kind, Owner, SetAttr, TimeSet, XattrMode};
use crate::state::Error;

pub struct FsGrpc {
    api: FsApi,
}

impl FsGrpc {
    pub fn new(api: FsApi) -> Self {
        FsGrpc { api }
    }
}

pub fn kind_to_proto(kind: Kind) -> v1::FileKind {
    match kind {
        Kind::File => v1::FileKind::File,
        Kind::Dir => v1::FileKind::Dir,
        Kind::Symlink => v1::FileKind::Symlink,
    }
}

fn kind_from_proto(value: i32) -> Result<Kind, ApiError> {
    match v1::FileKind::try_from(value) {
        Ok(v1::FileKind::File) => Ok(Kind::File),
        Ok(v1::FileKind::Dir) => Ok(Kind::Dir),
        Ok(v1::FileKind::Symlink) => Ok(Kind::Symlink),
        _ => Err(Error::invalid("kind", "must be FILE, DIR or SYMLINK").into()),
    }
}

pub fn attr(entry: &Entry) -> v1::Attr {
    let i = &entry.inode;
    v1::Attr {
        ino: entry.ino,
        kind: kind_to_proto(i.kind) as i32,
        mode: i.mode,
        uid: i.uid,
        gid: i.gid,
        size: i.size,
        nlink: i.nlink,
        atime_ns: i.atime_ns,
        mtime_ns: i.mtime_ns,
        ctime_ns: i.ctime_ns,
        version: i.version,
        allocated_bytes: i.allocated_bytes,
        target: i.target.clone(),
    }
}

fn fs_info(name: String, r: &FsRecord) -> v1::FsInfo {
    v1::FsInfo {
        name,
        quota_bytes: r.quota_bytes,
        bytes_used: r.bytes_used,
        inodes_used: r.inodes_used,
        created_ms: r.created_ms,
    }
}

fn target(t: Option<v1::Target>) -> Target {
    match t {
        Some(v1::Target { ino, .. }) if ino != 0 => Target::Ino(ino),
        Some(v1::Target { path, .. }) => Target::Path(path),
        None => Target::Path(String::new()),
    }
}

fn place(p: Option<v1::Place>) -> Result<Place, ApiError> {
    match p {
        Some(v1::Place { dir_ino, name, .. }) if dir_ino != 0 => {
            Ok(Place::Entry { dir: dir_ino, name })
        }
        Some(v1::Place { path, .. }) => Ok(Place::Path(path)),
        None => Err(Error::invalid("place", "a path or a directory and name is required").into()),
    }
}

fn attr_reply(entry: &Entry, applied_index: u64) -> v1::AttrReply {
    v1::AttrReply {
        attr: Some(attr(entry)),
        applied_index,
    }
}

fn chunk_ref(c: &v1::ChunkName) -> Result<ChunkRef, ApiError> {
    let hash: [u8; 32] = c
        .hash
        .as_ref()
        .try_into()
        .map_err(|_| ApiError::from(Error::invalid("hash", "a chunk hash is 32 bytes")))?;
    Ok(ChunkRef { hash, len: c.len })
}

fn written(log_index: u64) -> v1::FsWriteReply {
    v1::FsWriteReply { log_index }
}

type Reply<T> = Result<Response<T>, Status>;
type DownloadStream = Pin<Box<dyn Stream<Item = Result<v1::DownloadReply, Status>> + Send>>;

#[tonic::async_trait]
impl Fs for FsGrpc {
    async fn create_fs(&self, request: Request<v1::CreateFsRequest>) -> Reply<v1::FsWriteReply> {
        let r = request.into_inner();
        let i = self
            .api
            .create_fs(convert::session(r.session), &r.name, r.quota_bytes)
            .await?;
        Ok(Response::new(written(i)))
    }

    async fn delete_fs(&self, request: Request<v1::FsNameRequest>) -> Reply<v1::FsWriteReply> {
        let r = request.into_inner();
        let i = self
            .api
            .delete_fs(convert::session(r.session), &r.name)
            .await?;
        Ok(Response::new(written(i)))
    }

    async fn set_quota(&self, request: Request<v1::SetQuotaRequest>) -> Reply<v1::FsWriteReply> {
        let r = request.into_inner();
        let i = self
            .api
            .set_quota(convert::session(r.session), &r.name, r.quota_bytes)
            .await?;
        Ok(Response::new(written(i)))
    }

    async fn list_fs(&self, request: Request<v1::ListFsRequest>) -> Reply<v1::ListFsReply> {
        let consistency = convert::consistency(request.into_inner().consistency)?;
        let list = self.api.list_fs(consistency).await?;
        Ok(Response::new(v1::ListFsReply {
            filesystems: list.into_iter().map(|(n, r)| fs_info(n, &r)).collect(),
        }))
    }

    async fn statfs(&self, request: Request<v1::StatfsRequest>) -> Reply<v1::StatfsReply> {
        let r = request.into_inner();
        let consistency = convert::consistency(r.consistency)?;
        let (record, disk) = self.api.statfs(&r.fs, consistency).await?;
        let (capacity_bytes, free_bytes) = disk.unwrap_or((0, 0));
        Ok(Response::new(v1::StatfsReply {
            info: Some(fs_info(r.fs, &record)),
            capacity_bytes,
            free_bytes,
        }))
    }

    async fn stat(&self, request: Request<v1::StatRequest>) -> Reply<v1::AttrReply> {
        let r = request.into_inner();
        let consistency = convert::consistency(r.consistency)?;
        let (entry, applied) = self.api.stat(&r.fs, &target(r.target), consistency).await?;
        Ok(Response::new(attr_reply(&entry, applied)))
    }

    async fn stat_many(&self, request: Request<v1::StatManyRequest>) -> Reply<v1::StatManyReply> {
        let r = request.into_inner();
        let consistency = convert::consistency(r.consistency)?;
        let (results, applied_index) = self.api.stat_many(&r.fs, &r.paths, consistency).await?;
        let results = results
            .into_iter()
            .map(|result| match result {
                Ok(entry) => v1::StatResult {
                    errno: String::new(),
                    attr: Some(attr(&entry)),
                },
                Err(e) => v1::StatResult {
                    errno: e.code().to_string(),
                    attr: None,
                },
            })
            .collect();
        Ok(Response::new(v1::StatManyReply {
            results,
            applied_index,
        }))
    }

    async fn lookup(&self, request: Request<v1::LookupRequest>) -> Reply<v1::AttrReply> {
        let r = request.into_inner();
        let consistency = convert::consistency(r.consistency)?;
        let (entry, applied) = self
            .api
            .lookup(&r.fs, &target(r.dir), &r.name, consistency)
            .await?;
        Ok(Response::new(attr_reply(&entry, applied)))
    }

    async fn read_dir(&self, request: Request<v1::ReadDirRequest>) -> Reply<v1::ReadDirReply> {
        let r = request.into_inner();
        let consistency = convert::consistency(r.consistency)?;
        let (page, applied_index) = self
            .api
            .readdir(
                &r.fs,
                &target(r.dir),
                (&r.after, r.limit, r.plus),
                consistency,
            )
            .await?;
        let entries = page
            .entries
            .iter()
            .map(|(name, entry, attrs)| v1::DirEntryInfo {
                name: name.clone(),
                ino: entry.ino,
                kind: kind_to_proto(entry.kind) as i32,
                attr: attrs.as_ref().map(attr),
            })
            .collect();
        Ok(Response::new(v1::ReadDirReply {
            entries,
            next_after: page.next_after.unwrap_or_default(),
            applied_index,
        }))
    }

    async fn read_link(&self, request: Request<v1::StatRequest>) -> Reply<v1::ReadLinkReply> {
        let r = request.into_inner();
        let consistency = convert::consistency(r.consistency)?;
        let target = self
            .api
            .readlink(&r.fs, &target(r.target), consistency)
            .await?;
        Ok(Response::new(v1::ReadLinkReply { target }))
    }

    async fn make(&self, request: Request<v1::MakeRequest>) -> Reply<v1::AttrReply> {
        let r = request.into_inner();
        let kind = kind_from_proto(r.kind)?;
        let owner = Owner {
            mode: r.mode,
            uid: r.uid,
            gid: r.gid,
        };
        let entry = self
            .api
            .make(
                convert::session(r.session),
                &r.fs,
                &place(r.place)?,
                kind,
                owner,
                (r.exclusive, r.parents),
                &r.symlink_target,
            )
            .await?;
        Ok(Response::new(attr_reply(&entry, 0)))
    }

    async fn remove(&self, request: Request<v1::RemoveRequest>) -> Reply<v1::RemoveReply> {
        let r = request.into_inner();
        let mode = match v1::RemoveMode::try_from(r.mode) {
            Ok(v1::RemoveMode::Unlink) => RemoveMode::Unlink,
            Ok(v1::RemoveMode::Rmdir) => RemoveMode::Rmdir,
            Ok(v1::RemoveMode::Recursive) => RemoveMode::Recursive,
            Err(_) => {
                return Err(ApiError::from(Error::invalid("mode", "unknown remove mode")).into())
            }
        };
        let (entries_removed, log_index) = self
            .api
            .remove(convert::session(r.session), &r.fs, &place(r.place)?, mode)
            .await?;
        Ok(Response::new(v1::RemoveReply {
            entries_removed,
            log_index,
        }))
    }

    async fn rename(&self, request: Request<v1::RenameRequest>) -> Reply<v1::FsWriteReply> {
        let r = request.into_inner();
        let (from, to) = (place(r.from)?, place(r.to)?);
        let i = self
            .api
            .rename(
                convert::session(r.session),
                &r.fs,
                (&from, &to),
                r.noreplace,
            )
            .await?;
        Ok(Response::new(written(i)))
    }

    async fn link(&self, request: Request<v1::LinkRequest>) -> Reply<v1::AttrReply> {
        let r = request.into_inner();
        let entry = self
            .api
            .link(
                convert::session(r.session),
                &r.fs,
                &target(r.target),
                &place(r.place)?,
            )
            .await?;
        Ok(Response::new(attr_reply(&entry, 0)))
    }

    async fn set_attr(&self, request: Request<v1::SetAttrRequest>) -> Reply<v1::AttrReply> {
        let r = request.into_inner();
        let time = |now: bool, at: Option<i64>| {
            if now {
                Some(TimeSet::Now)
            } else {
                at.map(TimeSet::At)
            }
        };
        let set = SetAttr {
            mode: r.mode,
            uid: r.uid,
            gid: r.gid,
            size: r.size,
            atime: time(r.atime_now, r.atime_ns),
            mtime: time(r.mtime_now, r.mtime_ns),
        };
        let entry = self
            .api
            .set_attr(convert::session(r.session), &r.fs, &target(r.target), set)
            .await?;
        Ok(Response::new(attr_reply(&entry, 0)))
    }

    async fn write(&self, request: Request<v1::WriteRequest>) -> Reply<v1::AttrReply> {
        let r = request.into_inner();
        let entry = self
            .api
            .write(
                convert::session(r.session),
                &r.fs,
                &target(r.target),
                r.offset,
                r.data,
                r.if_version,
            )
            .await?;
        Ok(Response::new(attr_reply(&entry, 0)))
    }

    async fn upload(
        &self,
        request: Request<Streaming<v1::UploadRequest>>,
    ) -> Reply<v1::UploadReply> {
        let mut stream = request.into_inner();
        let header = match stream.next().await {
            Some(Ok(v1::UploadRequest {
                part: Some(v1::upload_request::Part::Header(h)),
            })) => h,
            Some(Err(status)) => return Err(status),
            _ => {
                return Err(ApiError::from(Error::invalid(
                    "header",
                    "the first message of an upload must carry the header",
                ))
                .into())
            }
        };
        let header = UploadHeader {
            session: convert::session(header.session),
            fs: header.fs,
            path: header.path,
            parents: header.parents,
            exclusive: header.exclusive,
            owner: Owner {
                mode: header.mode,
                uid: header.uid,
                gid: header.gid,
            },
            mtime_ns: header.mtime_ns,
        };
        let body = stream.map(|message| match message {
            Ok(v1::UploadRequest {
                part: Some(v1::upload_request::Part::Data(data)),
            }) => Ok(Piece::Data(data)),
            Ok(v1::UploadRequest {
                part: Some(v1::upload_request::Part::Chunk(chunk)),
            }) => Ok(Piece::Known(chunk_ref(&chunk)?)),
            Ok(_) => {
                Err(Error::invalid("data", "only the first message may carry a header").into())
            }
            Err(status) => Err(ApiError::Node(NodeError::Unavailable(format!(
                "upload stream broke: {}",
                status.message()
            )))),
        });
        let uploaded = self.api.upload(header, body).await?;
        Ok(Response::new(v1::UploadReply {
            attr: Some(attr(&uploaded.entry)),
            log_index: uploaded.log_index,
            chunks_sent: uploaded.chunks_sent,
            chunks_total: uploaded.chunks_total,
            bytes_received: uploaded.bytes_received,
        }))
    }

    type DownloadStream = DownloadStream;

    async fn download(&self, request: Request<v1::DownloadRequest>) -> Reply<DownloadStream> {
        let r = request.into_inner();
        let consistency = convert::consistency(r.consistency)?;
        let (entry, data) = self
            .api
            .download(&r.fs, &target(r.target), (r.offset, r.length), consistency)
            .await?;
        let info = v1::DownloadReply {
            part: Some(v1::download_reply::Part::Attr(attr(&entry))),
        };
        let data = data.map(|piece| match piece {
            Ok(data) => Ok(v1::DownloadReply {
                part: Some(v1::download_reply::Part::Data(data)),
            }),
            Err(e) => Err(Status::unavailable(format!(
                "file data is not readable on this node ({e}); retry"
            ))),
        });
        let stream = futures::stream::once(async move { Ok(info) }).chain(data);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn block_map(&self, request: Request<v1::BlockMapRequest>) -> Reply<v1::BlockMapReply> {
        let r = request.into_inner();
        let consistency = convert::consistency(r.consistency)?;
        let (entry, blocks) = self
            .api
            .block_map(&r.fs, &target(r.target), (r.offset, r.length), consistency)
            .await?;
        Ok(Response::new(v1::BlockMapReply {
            attr: Some(attr(&entry)),
            blocks: blocks
                .into_iter()
                .map(|(index, block)| v1::BlockInfo {
                    index,
                    chunk: Some(v1::ChunkName {
                        hash: block.chunk.hash.to_vec().into(),
                        len: block.chunk.len,
                    }),
                    valid_len: block.len,
                })
                .collect(),
        }))
    }

    async fn missing_chunks(
        &self,
        request: Request<v1::MissingChunksRequest>,
    ) -> Reply<v1::MissingChunksReply> {
        let r = request.into_inner();
        let chunks = r
            .chunks
            .iter()
            .map(chunk_ref)
            .collect::<Result<Vec<_>, _>>()?;
        let missing = self.api.missing_chunks(&chunks)?;
        Ok(Response::new(v1::MissingChunksReply { missing }))
    }

    async fn fsync(&self, request: Request<v1::StatRequest>) -> Reply<v1::AttrReply> {
        let r = request.into_inner();
        let (entry, applied) = self
            .api
            .stat(
                &r.fs,
                &target(r.target),
                crate::raft::Consistency::Linearizable,
            )
            .await?;
        Ok(Response::new(attr_reply(&entry, applied)))
    }

    async fn set_xattr(&self, request: Request<v1::SetXattrRequest>) -> Reply<v1::FsWriteReply> {
        let r = request.into_inner();
        let mode = match (r.create, r.replace) {
            (true, true) => {
                return Err(ApiError::from(Error::fs(
                    crate::errno::Errno::EINVAL,
                    "create and replace exclude each other",
                ))
                .into())
            }
            (true, false) => XattrMode::Create,
            (false, true) => XattrMode::Replace,
            (false, false) => XattrMode::Any,
        };
        let i = self
            .api
            .set_xattr(
                convert::session(r.session),
                &r.fs,
                &target(r.target),
                (&r.name, &r.value),
                mode,
            )
            .await?;
        Ok(Response::new(written(i)))
    }

    async fn get_xattr(&self, request: Request<v1::XattrRequest>) -> Reply<v1::GetXattrReply> {
        let r = request.into_inner();
        let consistency = convert::consistency(r.consistency)?;
        let value = self
            .api
            .get_xattr(&r.fs, &target(r.target), &r.name, consistency)
            .await?;
        Ok(Response::new(v1::GetXattrReply {
            value: value.into(),
        }))
    }

    async fn list_xattrs(&self, request: Request<v1::StatRequest>) -> Reply<v1::ListXattrsReply> {
        let r = request.into_inner();
        let consistency = convert::consistency(r.consistency)?;
        let names = self
            .api
            .list_xattrs(&r.fs, &target(r.target), consistency)
            .await?;
        Ok(Response::new(v1::ListXattrsReply { names }))
    }

    async fn remove_xattr(&self, request: Request<v1::XattrRequest>) -> Reply<v1::FsWriteReply> {
        let r = request.into_inner();
        let i = self
            .api
            .remove_xattr(
                convert::session(r.session),
                &r.fs,
                &target(r.target),
                &r.name,
            )
            .await?;
        Ok(Response::new(written(i)))
    }

    async fn open(&self, request: Request<v1::OpenRequest>) -> Reply<v1::AttrReply> {
        let r = request.into_inner();
        let entry = self
            .api
            .open(
                convert::session(r.session),
                &r.fs,
                &target(r.target),
                (r.lease, r.lease_ms),
            )
            .await?;
        Ok(Response::new(attr_reply(&entry, 0)))
    }

    async fn release(&self, request: Request<v1::ReleaseRequest>) -> Reply<v1::FsWriteReply> {
        let r = request.into_inner();
        let i = self
            .api
            .release(convert::session(r.session), &r.fs, r.ino, r.lease)
            .await?;
        Ok(Response::new(written(i)))
    }

    async fn renew_lease(&self, request: Request<v1::LeaseRequest>) -> Reply<v1::FsWriteReply> {
        let r = request.into_inner();
        let i = self
            .api
            .renew_lease(convert::session(r.session), r.lease, r.lease_ms)
            .await?;
        Ok(Response::new(written(i)))
    }

    async fn end_lease(&self, request: Request<v1::LeaseRequest>) -> Reply<v1::FsWriteReply> {
        let r = request.into_inner();
        let i = self
            .api
            .end_lease(convert::session(r.session), r.lease)
            .await?;
        Ok(Response::new(written(i)))
    }
}
