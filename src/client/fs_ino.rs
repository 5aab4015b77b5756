//! Inode-addressed file system calls: what a mount needs, since the kernel names a
//! directory by inode number and an entry by its name in it. Each is the path call
//! of `fs.rs` with a different target.

use super::fs::{attr_of, ino_target, Attr, DirPage, FsClient, NewNode, OpenFile, SetAttrs};
use super::Error;
use crate::chunk_ref::{ChunkRef, Hash};
use crate::proto::v1;

/// Block `index` of a file (bytes `[index MiB, (index + 1) MiB)`) and its chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockInfo {
    pub index: u64,
    pub chunk: ChunkRef,
    /// How many of the chunk's bytes the block uses.
    pub valid_len: u32,
}

fn place_in(dir: u64, name: &str) -> Option<v1::Place> {
    Some(v1::Place {
        path: String::new(),
        dir_ino: dir,
        name: name.to_string(),
    })
}

impl FsClient {
    /// Creates `name` in directory `dir`.
    pub async fn make_in(&self, dir: u64, name: &str, new: &NewNode<'_>) -> Result<Attr, Error> {
        self.make_place(place_in(dir, name), new, false).await
    }

    /// unlink(2), or rmdir(2) with `rmdir`.
    pub async fn remove_in(&self, dir: u64, name: &str, rmdir: bool) -> Result<(), Error> {
        let mode = if rmdir {
            v1::RemoveMode::Rmdir
        } else {
            v1::RemoveMode::Unlink
        };
        self.remove_place(place_in(dir, name), mode)
            .await
            .map(|_| ())
    }

    pub async fn rename_in(
        &self,
        (dir, name): (u64, &str),
        (new_dir, new_name): (u64, &str),
        noreplace: bool,
    ) -> Result<(), Error> {
        self.rename_places(place_in(dir, name), place_in(new_dir, new_name), noreplace)
            .await
    }

    /// A hard link to inode `ino` named `name` in directory `dir`.
    pub async fn link_in(&self, ino: u64, dir: u64, name: &str) -> Result<Attr, Error> {
        self.link_to(ino_target(ino), place_in(dir, name)).await
    }

    pub async fn set_attr_ino(&self, ino: u64, set: &SetAttrs) -> Result<Attr, Error> {
        self.set_attr_target(ino_target(ino), set).await
    }

    pub async fn read_dir_ino(
        &self,
        dir: u64,
        after: &str,
        limit: u32,
        plus: bool,
    ) -> Result<DirPage, Error> {
        self.read_dir_target(ino_target(dir), after, limit, plus)
            .await
    }

    pub async fn readlink_ino(&self, ino: u64) -> Result<String, Error> {
        self.readlink_target(ino_target(ino)).await
    }

    /// Registers a handle on inode `ino` under this client's lease.
    pub async fn open_ino(&self, ino: u64) -> Result<OpenFile, Error> {
        self.open_target(ino_target(ino)).await
    }

    /// Returns once everything acknowledged for the inode is durable on a quorum
    /// (a linearizable barrier), with its current attributes.
    pub async fn fsync_ino(&self, ino: u64) -> Result<Attr, Error> {
        let request = v1::StatRequest {
            fs: self.name().to_string(),
            target: ino_target(ino),
            consistency: Self::consistency(),
        };
        attr_of(
            self.read(move |mut c| {
                let request = request.clone();
                async move { c.fsync(request).await }
            })
            .await?,
        )
    }

    /// Bytes `offset..offset+length` of inode `ino` and its attributes as served
    /// (their `version` names the content the bytes came from).
    pub async fn read_range_ino(
        &self,
        ino: u64,
        offset: u64,
        length: u64,
    ) -> Result<(Attr, Vec<u8>), Error> {
        let mut data = Vec::new();
        let attr = self
            .download_target(ino_target(ino), (offset, length), &mut data)
            .await?;
        Ok((attr, data))
    }

    /// Writes `data` (at most 16 MiB) at `offset` of inode `ino` only if the file's
    /// content version is still `if_version` (`Error::VersionMismatch` otherwise,
    /// and nothing is written).
    pub async fn write_ino_if(
        &self,
        ino: u64,
        offset: u64,
        data: bytes::Bytes,
        if_version: u64,
    ) -> Result<Attr, Error> {
        self.write_piece(ino_target(ino), offset, data, Some(if_version))
            .await
    }

    /// The chunk behind each block of `offset..offset+length` of inode `ino`
    /// (holes absent), and the attributes whose content they are.
    pub async fn block_map_ino(
        &self,
        ino: u64,
        offset: u64,
        length: u64,
    ) -> Result<(Attr, Vec<BlockInfo>), Error> {
        let request = v1::BlockMapRequest {
            fs: self.name().to_string(),
            target: ino_target(ino),
            offset,
            length,
            consistency: Self::consistency(),
        };
        let reply = self
            .read(move |mut c| {
                let request = request.clone();
                async move { c.block_map(request).await }
            })
            .await?;
        let attr = reply
            .attr
            .map(Attr::from)
            .ok_or_else(|| Error::Internal("a block map without attributes".into()))?;
        let mut blocks = Vec::with_capacity(reply.blocks.len());
        for b in reply.blocks {
            let chunk = b
                .chunk
                .ok_or_else(|| Error::Internal("a block without its chunk".into()))?;
            let hash: Hash = chunk.hash.as_ref().try_into().map_err(|_| {
                Error::Internal(format!("a chunk hash of {} bytes", chunk.hash.len()))
            })?;
            blocks.push(BlockInfo {
                index: b.index,
                chunk: ChunkRef {
                    hash,
                    len: chunk.len,
                },
                valid_len: b.valid_len,
            });
        }
        Ok((attr, blocks))
    }

    /// `(create, replace)`: `XATTR_CREATE` / `XATTR_REPLACE`.
    pub async fn set_xattr_ino(
        &self,
        ino: u64,
        name: &str,
        value: &[u8],
        flags: (bool, bool),
    ) -> Result<(), Error> {
        self.set_xattr_target(ino_target(ino), name, value, flags)
            .await
    }

    pub async fn get_xattr_ino(&self, ino: u64, name: &str) -> Result<Vec<u8>, Error> {
        self.get_xattr_target(ino_target(ino), name).await
    }

    pub async fn list_xattrs_ino(&self, ino: u64) -> Result<Vec<String>, Error> {
        self.list_xattrs_target(ino_target(ino)).await
    }

    pub async fn remove_xattr_ino(&self, ino: u64, name: &str) -> Result<(), Error> {
        self.remove_xattr_target(ino_target(ino), name).await
    }
}
