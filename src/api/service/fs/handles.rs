//! Namespace changes, attributes and open handles of the file system service
//! (the rest of [`FsApi`]; reads and admin are in `mod.rs`, bytes in `content`).

use super::{entry_of, is_local, parse_place, parse_target, FsApi, Place, Target};
use crate::api::error::ApiError;
use crate::chunk_ref::ChunkRef;
use crate::clock::now_ns;
use crate::limits::FS_CHUNK_QUERY_MAX;
use crate::raft::Consistency;
use crate::state::fs::{read, Entry, FsCommand, SetAttr, XattrMode};
use crate::state::{self, SessionTag};

impl FsApi {
    pub async fn rename(
        &self,
        session: Option<SessionTag>,
        fs: &str,
        (from, to): (&Place, &Place),
        noreplace: bool,
    ) -> Result<u64, ApiError> {
        if is_local(fs) {
            return self.local.rename(from, to, noreplace).map(|_| 0);
        }
        let command = FsCommand::Rename {
            fs: fs.to_string(),
            from: parse_place(from)?,
            to: parse_place(to)?,
            noreplace,
            now_ns: now_ns(),
        };
        Ok(self.propose(session, command).await?.1)
    }

    pub async fn link(
        &self,
        session: Option<SessionTag>,
        fs: &str,
        target: &Target,
        place: &Place,
    ) -> Result<Entry, ApiError> {
        if is_local(fs) {
            return self.local.link(target, place);
        }
        let command = FsCommand::Link {
            fs: fs.to_string(),
            target: parse_target(target)?,
            at: parse_place(place)?,
            now_ns: now_ns(),
        };
        entry_of(self.propose(session, command).await?.0)
    }

    pub async fn set_attr(
        &self,
        session: Option<SessionTag>,
        fs: &str,
        target: &Target,
        set: SetAttr,
    ) -> Result<Entry, ApiError> {
        if let Some(size) = set.size {
            if size > crate::limits::FS_FILE_BYTES_MAX {
                return Err(state::Error::fs(
                    crate::errno::Errno::EFBIG,
                    format!(
                        "a file of {size} bytes; the limit is {}",
                        crate::limits::FS_FILE_BYTES_MAX
                    ),
                )
                .into());
            }
        }
        if is_local(fs) {
            return self.local.set_attr(target, &set);
        }
        let command = FsCommand::SetAttr {
            fs: fs.to_string(),
            target: parse_target(target)?,
            set,
            now_ns: now_ns(),
        };
        entry_of(self.propose(session, command).await?.0)
    }

    pub async fn set_xattr(
        &self,
        session: Option<SessionTag>,
        fs: &str,
        target: &Target,
        (name, value): (&str, &[u8]),
        mode: XattrMode,
    ) -> Result<u64, ApiError> {
        state::fs::names::check_xattr(name, Some(value))?;
        if is_local(fs) {
            return self.local.set_xattr(target, name, value, mode).map(|_| 0);
        }
        let command = FsCommand::SetXattr {
            fs: fs.to_string(),
            target: parse_target(target)?,
            name: name.to_string(),
            value: value.to_vec(),
            mode,
            now_ns: now_ns(),
        };
        Ok(self.propose(session, command).await?.1)
    }

    pub async fn remove_xattr(
        &self,
        session: Option<SessionTag>,
        fs: &str,
        target: &Target,
        name: &str,
    ) -> Result<u64, ApiError> {
        if is_local(fs) {
            return self.local.remove_xattr(target, name).map(|_| 0);
        }
        let command = FsCommand::RemoveXattr {
            fs: fs.to_string(),
            target: parse_target(target)?,
            name: name.to_string(),
            now_ns: now_ns(),
        };
        Ok(self.propose(session, command).await?.1)
    }

    pub async fn get_xattr(
        &self,
        fs: &str,
        target: &Target,
        name: &str,
        consistency: Consistency,
    ) -> Result<Vec<u8>, ApiError> {
        if is_local(fs) {
            return self.local.get_xattr(target, name);
        }
        let at = parse_target(target)?;
        self.barrier(consistency).await?;
        let txn = self.txn();
        let open = read::open(&txn, fs)?;
        Ok(read::get_xattr(&txn, &open, &at, name)?)
    }

    pub async fn list_xattrs(
        &self,
        fs: &str,
        target: &Target,
        consistency: Consistency,
    ) -> Result<Vec<String>, ApiError> {
        if is_local(fs) {
            return self.local.list_xattrs(target);
        }
        let at = parse_target(target)?;
        self.barrier(consistency).await?;
        let txn = self.txn();
        let open = read::open(&txn, fs)?;
        Ok(read::list_xattrs(&txn, &open, &at)?)
    }

    /// Registers an open handle under `lease` (node-local storage has no handles:
    /// the node's own kernel keeps unlinked open files).
    pub async fn open(
        &self,
        session: Option<SessionTag>,
        fs: &str,
        target: &Target,
        (lease, lease_ms): (u64, u64),
    ) -> Result<Entry, ApiError> {
        if is_local(fs) {
            return self.local.stat(target);
        }
        let command = FsCommand::Open {
            fs: fs.to_string(),
            target: parse_target(target)?,
            lease,
            lease_ms,
        };
        entry_of(self.propose(session, command).await?.0)
    }

    pub async fn release(
        &self,
        session: Option<SessionTag>,
        fs: &str,
        ino: u64,
        lease: u64,
    ) -> Result<u64, ApiError> {
        if is_local(fs) {
            return Ok(0);
        }
        let command = FsCommand::Release {
            fs: fs.to_string(),
            ino,
            lease,
        };
        Ok(self.propose(session, command).await?.1)
    }

    pub async fn renew_lease(
        &self,
        session: Option<SessionTag>,
        lease: u64,
        lease_ms: u64,
    ) -> Result<u64, ApiError> {
        let command = FsCommand::RenewLease { lease, lease_ms };
        Ok(self.propose(session, command).await?.1)
    }

    pub async fn end_lease(
        &self,
        session: Option<SessionTag>,
        lease: u64,
    ) -> Result<u64, ApiError> {
        Ok(self
            .propose(session, FsCommand::EndLease { lease })
            .await?
            .1)
    }

    /// Positions in `chunks` of those the cluster lacks (or will not keep long
    /// enough for an upload to name them).
    pub fn missing_chunks(&self, chunks: &[ChunkRef]) -> Result<Vec<u32>, ApiError> {
        if chunks.len() > FS_CHUNK_QUERY_MAX {
            let n = chunks.len() as u64;
            return Err(
                state::Error::limit("chunks", FS_CHUNK_QUERY_MAX as u64, n, "chunks").into(),
            );
        }
        self.node.check_route(self.route)?;
        Ok(chunks
            .iter()
            .enumerate()
            .filter(|(_, c)| !crate::api::chunk_upload::already_stored(&self.node, &c.hash, c.len))
            .map(|(i, _)| i as u32)
            .collect())
    }
}
