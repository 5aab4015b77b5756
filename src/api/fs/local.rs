//! Node-local storage: the `local` file system, a directory on this node's own disk
//! (`--local-dir`), served with the same API and never replicated.

use std::path::PathBuf;

use futures::stream::Stream;

use super::content::{DownloadStream, UploadHeader, Uploaded};
use super::{Place, RemoveMode, Target};
use crate::api::chunk_upload::Piece;
use crate::api::error::ApiError;
use crate::errno::Errno;
use crate::state;
use crate::state::fs::read::DirPage;
use crate::state::fs::{Entry, FsRecord, Kind, Owner, SetAttr, XattrMode};

#[derive(Clone, Debug)]
pub struct LocalFs {
    root: PathBuf,
}

fn unsupported<T>() -> Result<T, ApiError> {
    Err(state::Error::fs(
        Errno::ENOTSUP,
        "node-local storage does not support this yet",
    )
    .into())
}

impl LocalFs {
    pub fn open(root: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&root)?;
        Ok(LocalFs { root })
    }

    /// A `local` file system whose directory could not be created: every call
    /// fails (the node still serves everything else).
    pub fn unavailable(root: PathBuf) -> Self {
        LocalFs { root }
    }

    pub fn root(&self) -> &std::path::Path {
        &self.root
    }

    pub fn statfs(&self) -> Result<(FsRecord, (u64, u64)), ApiError> {
        unsupported()
    }
    pub fn stat(&self, _target: &Target) -> Result<Entry, ApiError> {
        unsupported()
    }
    pub fn lookup(&self, _dir: &Target, _name: &str) -> Result<Entry, ApiError> {
        unsupported()
    }
    pub fn readdir(
        &self,
        _dir: &Target,
        _after: &str,
        _limit: u32,
        _plus: bool,
    ) -> Result<DirPage, ApiError> {
        unsupported()
    }
    pub fn readlink(&self, _target: &Target) -> Result<String, ApiError> {
        unsupported()
    }
    pub fn make(
        &self,
        _place: &Place,
        _kind: Kind,
        _owner: Owner,
        _flags: (bool, bool),
        _target: &str,
    ) -> Result<Entry, ApiError> {
        unsupported()
    }
    pub fn remove(&self, _place: &Place, _mode: RemoveMode) -> Result<u64, ApiError> {
        unsupported()
    }
    pub fn rename(&self, _from: &Place, _to: &Place, _noreplace: bool) -> Result<(), ApiError> {
        unsupported()
    }
    pub fn link(&self, _target: &Target, _place: &Place) -> Result<Entry, ApiError> {
        unsupported()
    }
    pub fn set_attr(&self, _target: &Target, _set: &SetAttr) -> Result<Entry, ApiError> {
        unsupported()
    }
    pub fn set_xattr(
        &self,
        _target: &Target,
        _name: &str,
        _value: &[u8],
        _mode: XattrMode,
    ) -> Result<(), ApiError> {
        unsupported()
    }
    pub fn remove_xattr(&self, _target: &Target, _name: &str) -> Result<(), ApiError> {
        unsupported()
    }
    pub fn get_xattr(&self, _target: &Target, _name: &str) -> Result<Vec<u8>, ApiError> {
        unsupported()
    }
    pub fn list_xattrs(&self, _target: &Target) -> Result<Vec<String>, ApiError> {
        unsupported()
    }
    pub async fn upload<S>(&self, _header: &UploadHeader, _body: S) -> Result<Uploaded, ApiError>
    where
        S: Stream<Item = Result<Piece, ApiError>> + Unpin + Send,
    {
        unsupported()
    }
    pub fn write(&self, _target: &Target, _offset: u64, _data: &[u8]) -> Result<Entry, ApiError> {
        unsupported()
    }
    pub fn download(
        &self,
        _target: &Target,
        _range: (u64, u64),
    ) -> Result<(Entry, DownloadStream), ApiError> {
        unsupported()
    }
}
