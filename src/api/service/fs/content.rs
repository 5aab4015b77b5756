//! File bytes: whole-file uploads, writes at an offset, ranged downloads.
//!
//! An upload stages its chunks through the shared pipeline and then commits one
//! `PutFile`, so the name shows the old file or the whole new one. A write at an
//! offset rewrites only the blocks it touches: a block it covers only in part is
//! read back, patched and staged as a new chunk, and the block map changes only if
//! the file's content version is still the one read (else it reads again). A
//! download reads the block map and re-checks the inode's version afterwards, so it
//! never mixes two versions' blocks.

use bytes::{Bytes, BytesMut};
use futures::stream::{Stream, StreamExt};

use super::{entry_of, is_local, parse_place, parse_target, FsApi, Target};
use crate::api::chunk_read::{self, ByteRange, Extent};
use crate::api::chunk_upload::{self, Keep, Piece};
use crate::api::error::ApiError;
use crate::clock::now_ns;
use crate::errno::Errno;
use crate::limits::{
    FS_BLOCK_BYTES, FS_BLOCK_MAP_BLOCKS_MAX, FS_FILE_BYTES_MAX, FS_READ_RETRIES_MAX,
    FS_WRITE_BYTES_MAX, FS_WRITE_RETRIES_MAX,
};
use crate::raft::Consistency;
use crate::state::fs::{read, At, BlockRef, Entry, FsCommand, Kind, Owner, PutFile};
use crate::state::{self, SessionTag};

/// What an upload declares before its bytes.
#[derive(Debug, Clone)]
pub struct UploadHeader {
    pub session: Option<SessionTag>,
    pub fs: String,
    pub path: String,
    pub parents: bool,
    pub exclusive: bool,
    pub owner: Owner,
    pub mtime_ns: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    pub entry: Entry,
    pub log_index: u64,
    pub chunks_sent: u64,
    pub chunks_total: u64,
    pub bytes_received: u64,
}

impl FsApi {
    pub async fn upload<S>(&self, header: UploadHeader, body: S) -> Result<Uploaded, ApiError>
    where
        S: Stream<Item = Result<Piece, ApiError>> + Unpin + Send,
    {
        if is_local(&header.fs) {
            return self.local.upload(&header, body).await;
        }
        self.node.check_route(self.route)?;
        let at = parse_place(&super::Place::Path(header.path.clone()))?;
        crate::state::fs::read::open(&self.txn(), &header.fs)?;
        let received = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = received.clone();
        let body = body.map(move |piece| {
            if let Ok(Piece::Data(data)) = &piece {
                counter.fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
            }
            piece
        });
        let staged = chunk_upload::stage(
            (&self.node, self.route),
            &self.uploads,
            body,
            ("file", FS_FILE_BYTES_MAX),
            Keep::SoleSmallChunk,
        )
        .await?;
        let chunks_total = staged.chunks.len() as u64;
        let command = FsCommand::PutFile {
            fs: header.fs.clone(),
            put: Box::new(PutFile {
                at,
                parents: header.parents,
                exclusive: header.exclusive,
                chunks: staged.chunks,
                size: staged.size,
                owner: header.owner,
                mtime_ns: header.mtime_ns,
                chunk_data: staged.kept.map(Vec::from).unwrap_or_default(),
            }),
            now_ns: now_ns(),
        };
        let (response, log_index) = self.propose(header.session, command).await?;
        Ok(Uploaded {
            entry: entry_of(response)?,
            log_index,
            chunks_sent: staged.chunks_sent,
            chunks_total,
            bytes_received: received.load(std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// The current content of block `index` (its valid bytes) from this node's
    /// chunk files; a hole is empty.
    async fn block_bytes(&self, block: Option<BlockRef>) -> Result<BytesMut, ApiError> {
        let Some(block) = block else {
            return Ok(BytesMut::new());
        };
        chunk_read::check_chunks_here(&self.node, [&block.chunk])?;
        let data = self
            .node
            .read_chunk(block.chunk.hash)
            .await
            .map_err(|e| ApiError::Internal(format!("reading a chunk: {e}")))?;
        let valid = (block.len as usize).min(data.len());
        Ok(BytesMut::from(&data[..valid]))
    }

    /// Writes `data` at `offset` of an existing file.
    pub async fn write(
        &self,
        session: Option<SessionTag>,
        fs: &str,
        target: &Target,
        offset: u64,
        data: Bytes,
        if_version: Option<u64>,
    ) -> Result<Entry, ApiError> {
        if data.len() > FS_WRITE_BYTES_MAX {
            let n = data.len() as u64;
            return Err(state::Error::limit("data", FS_WRITE_BYTES_MAX as u64, n, "bytes").into());
        }
        let end = offset.saturating_add(data.len() as u64);
        if end > FS_FILE_BYTES_MAX {
            return Err(state::Error::fs(
                Errno::EFBIG,
                format!(
                    "a write ending at byte {end}; the largest file is {FS_FILE_BYTES_MAX} bytes"
                ),
            )
            .into());
        }
        if is_local(fs) {
            return self.local.write(target, offset, &data);
        }
        self.node.check_route(self.route)?;
        let at = parse_target(target)?;
        for _ in 0..FS_WRITE_RETRIES_MAX {
            let (ino, inode) = {
                let txn = self.txn();
                let open = read::open(&txn, fs)?;
                let entry = read::stat(&txn, &open, &at)?;
                (entry.ino, entry.inode)
            };
            if inode.kind != Kind::File {
                let errno = if inode.kind == Kind::Dir {
                    Errno::EISDIR
                } else {
                    Errno::EINVAL
                };
                return Err(state::Error::fs(errno, "only regular files can be written").into());
            }
            if if_version.is_some_and(|v| v != inode.version) {
                return Err(state::Error::VersionMismatch {
                    expected: if_version,
                    current: Some(inode.version),
                }
                .into());
            }
            if data.is_empty() {
                return Ok(Entry { ino, inode });
            }
            let existing = {
                let txn = self.txn();
                let open = read::open(&txn, fs)?;
                read::blocks(&txn, &open, ino, offset, data.len() as u64)?
            };
            let mut blocks = Vec::new();
            let first = offset / FS_BLOCK_BYTES;
            let last = (end - 1) / FS_BLOCK_BYTES;
            for index in first..=last {
                let start = index * FS_BLOCK_BYTES;
                let from = offset.max(start) - start;
                let to = end.min(start + FS_BLOCK_BYTES) - start;
                let piece =
                    data.slice((start + from - offset) as usize..(start + to - offset) as usize);
                let content = if from == 0 && (to == FS_BLOCK_BYTES || start + to >= inode.size) {
                    piece
                } else {
                    let old = existing.iter().find(|(i, _)| *i == index).map(|(_, b)| *b);
                    let mut content = self.block_bytes(old).await?;
                    if content.len() < to as usize {
                        content.resize(to as usize, 0);
                    }
                    content[from as usize..to as usize].copy_from_slice(&piece);
                    content.freeze()
                };
                let len = content.len() as u32;
                let (chunk, _) =
                    chunk_upload::stage_one((&self.node, self.route), &self.uploads, content)
                        .await?;
                blocks.push((index, BlockRef { chunk, len }));
            }
            let command = FsCommand::Write {
                fs: fs.to_string(),
                target: At::Ino(ino),
                blocks,
                end,
                if_version: Some(inode.version),
                now_ns: now_ns(),
            };
            match self.propose(session, command).await {
                // The caller's compare-and-set lost: another write came first.
                Err(ApiError::State(state::Error::WriteRaced)) if if_version.is_some() => {
                    return Err(state::Error::VersionMismatch {
                        expected: if_version,
                        current: None,
                    }
                    .into())
                }
                Err(ApiError::State(state::Error::WriteRaced)) => continue,
                other => return entry_of(other?.0),
            }
        }
        Err(ApiError::State(state::Error::WriteRaced))
    }

    /// The attributes of `target` and a stream of bytes `range` of its content.
    pub async fn download(
        &self,
        fs: &str,
        target: &Target,
        (offset, length): (u64, u64),
        consistency: Consistency,
    ) -> Result<(Entry, DownloadStream), ApiError> {
        if is_local(fs) {
            return self.local.download(target, (offset, length));
        }
        let at = parse_target(target)?;
        self.barrier(consistency).await?;
        for _ in 0..FS_READ_RETRIES_MAX {
            let txn = self.txn();
            let open = read::open(&txn, fs)?;
            let entry = read::stat(&txn, &open, &at)?;
            let not_a_file = match entry.inode.kind {
                Kind::File => None,
                Kind::Dir => Some((Errno::EISDIR, "a directory has no content to read")),
                Kind::Symlink => Some((Errno::EINVAL, "a symlink has no content; read its target")),
            };
            if let Some((errno, what)) = not_a_file {
                return Err(state::Error::fs(errno, what).into());
            }
            if offset > entry.inode.size {
                let size = entry.inode.size;
                return Err(state::Error::limit("offset", size, offset, "bytes").into());
            }
            let length = if length == 0 {
                entry.inode.size - offset
            } else {
                length
            };
            let blocks = read::blocks(&txn, &open, entry.ino, offset, length)?;
            // Blocks are read one by one from a tree that apply may change meanwhile:
            // keep them only if the content version did not move.
            let again = read::stat(&txn, &open, &At::Ino(entry.ino));
            if !matches!(again, Ok(e) if e.inode.version == entry.inode.version) {
                continue;
            }
            let extents: Vec<Extent> = blocks
                .iter()
                .map(|(index, block)| Extent {
                    offset: index * FS_BLOCK_BYTES,
                    chunk: block.chunk,
                    len: block.len,
                })
                .collect();
            chunk_read::check_chunks_here(&self.node, extents.iter().map(|e| &e.chunk))?;
            let size = entry.inode.size;
            let stream = chunk_read::read(
                self.node.clone(),
                &extents,
                size,
                ByteRange { offset, length },
            );
            return Ok((entry, Box::pin(stream)));
        }
        Err(state::Error::fs(
            Errno::ESTALE,
            "the file kept changing while being read; retry",
        )
        .into())
    }
}

impl FsApi {
    /// The chunk behind each block of `offset..offset+length` (holes absent), and
    /// the attributes of the content they belong to.
    pub async fn block_map(
        &self,
        fs: &str,
        target: &Target,
        (offset, length): (u64, u64),
        consistency: Consistency,
    ) -> Result<(Entry, Vec<(u64, BlockRef)>), ApiError> {
        if is_local(fs) {
            return Err(state::Error::fs(
                Errno::ENOTSUP,
                "node-local files are not stored as chunks",
            )
            .into());
        }
        let blocks_max = FS_BLOCK_MAP_BLOCKS_MAX * FS_BLOCK_BYTES;
        if length > blocks_max {
            return Err(state::Error::limit("length", blocks_max, length, "bytes").into());
        }
        let at = parse_target(target)?;
        self.barrier(consistency).await?;
        let txn = self.txn();
        let open = read::open(&txn, fs)?;
        let entry = read::stat(&txn, &open, &at)?;
        if entry.inode.kind != Kind::File {
            return Err(state::Error::fs(Errno::EINVAL, "only regular files have blocks").into());
        }
        let blocks = read::blocks(&txn, &open, entry.ino, offset, length)?;
        Ok((entry, blocks))
    }
}

/// Bytes of a download, piece by piece.
pub type DownloadStream = std::pin::Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;
