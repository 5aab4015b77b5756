//! One object into the file system: skip it if it is already there, else stream
//! it through the file system service's upload (the shared chunk pipeline) and
//! record its ETag on the new file.
//!
//! The bytes travel as ranged GETs of at most `IMPORT_RANGE_BYTES`, one range in
//! memory at a time: a range fully read becomes one upload piece, so a range
//! tried again never sends a byte twice. The upload replaces the file whole, so
//! the name shows the old file or the whole new one. Only after the file is
//! committed does it get the `IMPORT_ETAG_XATTR` attribute, and then
//! `IMPORT_VERSION_XATTR`, the content version the upload made: a file without
//! them (an import stopped between the steps), or whose content changed since
//! (a write in place keeps attributes but moves the version), is copied again.

use std::sync::{Arc, Mutex};

use futures::stream::{self, StreamExt};

use super::paths::Landing;
use super::source::{Listed, SourceError};
use super::{JobContext, IMPORT_ETAG_XATTR, IMPORT_RANGE_BYTES, IMPORT_VERSION_XATTR};
use crate::api::chunk_upload::Piece;
use crate::api::error::ApiError;
use crate::api::service::fs::content::UploadHeader;
use crate::api::service::fs::{Place, Target};
use crate::raft::{Consistency, NodeError};
use crate::state;
use crate::state::fs::{Kind, Owner, XattrMode};

/// What happened to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Written (a file of this many bytes, or a directory with 0).
    Copied { bytes: u64 },
    /// Already there: a file of the same size and ETag, or the directory.
    Skipped,
}

/// Why an object was not copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyError {
    pub reason: String,
    /// Whether copying it again may succeed (a leader change, a timeout).
    pub transient: bool,
}

impl CopyError {
    fn of_source(e: &SourceError) -> Self {
        CopyError {
            reason: format!("reading the object: {e}"),
            transient: false,
        }
    }

    fn of_fs(what: &str, e: &ApiError) -> Self {
        let transient = matches!(
            e,
            ApiError::Node(
                NodeError::NotLeader { .. } | NodeError::Unavailable(_) | NodeError::Timeout(_)
            ) | ApiError::State(state::Error::ChunkMissing { .. } | state::Error::WriteRaced)
        );
        CopyError {
            reason: format!("{what}: {e}"),
            transient,
        }
    }
}

const FILE_OWNER: Owner = Owner {
    mode: 0o644,
    uid: 0,
    gid: 0,
};
const DIR_OWNER: Owner = Owner {
    mode: 0o755,
    uid: 0,
    gid: 0,
};

/// The ranges `(offset, length_bytes)` an object of `size_bytes` is read in.
pub fn ranges(size_bytes: u64) -> impl Iterator<Item = (u64, u64)> {
    (0..size_bytes.div_ceil(IMPORT_RANGE_BYTES)).map(move |index| {
        let offset = index * IMPORT_RANGE_BYTES;
        (offset, IMPORT_RANGE_BYTES.min(size_bytes - offset))
    })
}

/// Copies `object` to `landing`; counts its bytes in the job's progress as they
/// are handed to the pipeline (and takes them back if the copy fails).
pub async fn copy(
    ctx: &JobContext,
    object: &Listed,
    landing: &Landing,
) -> Result<Outcome, CopyError> {
    let path = landing.path();
    match landing {
        Landing::Dir(_) => make_dir(ctx, &path).await,
        Landing::File(_) => {
            if already_copied(ctx, &path, object).await? {
                return Ok(Outcome::Skipped);
            }
            let counted = Arc::new(Mutex::new(0u64));
            let result = write_file(ctx, object, &path, &counted).await;
            if result.is_err() {
                let counted = *counted.lock().expect("count lock is never poisoned");
                ctx.job.uncount_bytes(counted);
            }
            result
        }
    }
}

async fn make_dir(ctx: &JobContext, path: &str) -> Result<Outcome, CopyError> {
    let target = Target::Path(path.to_string());
    match ctx
        .fs
        .stat(&ctx.fs_name, &target, Consistency::Linearizable)
        .await
    {
        Ok((entry, _)) if entry.inode.kind == Kind::Dir => return Ok(Outcome::Skipped),
        Ok(_) => {
            return Err(CopyError {
                reason: format!("{path} exists and is not a directory"),
                transient: false,
            })
        }
        Err(ApiError::State(state::Error::Fs { .. })) => {}
        Err(e) => return Err(CopyError::of_fs("checking the directory", &e)),
    }
    let place = Place::Path(path.to_string());
    ctx.fs
        .make(
            None,
            &ctx.fs_name,
            &place,
            Kind::Dir,
            DIR_OWNER,
            (false, true),
            "",
        )
        .await
        .map_err(|e| CopyError::of_fs("making the directory", &e))?;
    Ok(Outcome::Copied { bytes: 0 })
}

/// Whether `path` is a file of the object's size carrying its ETag, with the
/// content the import wrote (its version unchanged).
async fn already_copied(ctx: &JobContext, path: &str, object: &Listed) -> Result<bool, CopyError> {
    if object.etag.is_empty() {
        return Ok(false);
    }
    let target = Target::Path(path.to_string());
    let entry = match ctx
        .fs
        .stat(&ctx.fs_name, &target, Consistency::Linearizable)
        .await
    {
        Ok((entry, _)) => entry,
        // Absent, or a parent is not a directory: the upload says which.
        Err(ApiError::State(state::Error::Fs { .. })) => return Ok(false),
        Err(e) => return Err(CopyError::of_fs("checking the file", &e)),
    };
    if entry.inode.kind != Kind::File || entry.inode.size != object.size_bytes {
        return Ok(false);
    }
    let version = entry.inode.version.to_string();
    for (name, expected) in [
        (IMPORT_ETAG_XATTR, object.etag.as_bytes()),
        (IMPORT_VERSION_XATTR, version.as_bytes()),
    ] {
        let ino = Target::Ino(entry.ino);
        let consistency = Consistency::Linearizable;
        match ctx
            .fs
            .get_xattr(&ctx.fs_name, &ino, name, consistency)
            .await
        {
            Ok(value) if value == expected => {}
            Ok(_) | Err(ApiError::State(state::Error::Fs { .. })) => return Ok(false),
            Err(e) => return Err(CopyError::of_fs("reading what the import recorded", &e)),
        }
    }
    Ok(true)
}

async fn write_file(
    ctx: &JobContext,
    object: &Listed,
    path: &str,
    counted: &Arc<Mutex<u64>>,
) -> Result<Outcome, CopyError> {
    // The reason a range failed, which the upload's own error would only wrap.
    let source_failure: Mutex<Option<SourceError>> = Mutex::new(None);
    let body = stream::iter(ranges(object.size_bytes))
        .then(|(offset, length_bytes)| {
            let source_failure = &source_failure;
            async move {
                match ctx.source.read_range(object, offset, length_bytes).await {
                    Ok(data) => {
                        *counted.lock().expect("count lock is never poisoned") += length_bytes;
                        ctx.job.count_bytes(length_bytes);
                        Ok(Piece::Data(data))
                    }
                    Err(e) => {
                        let shown = e.to_string();
                        *source_failure
                            .lock()
                            .expect("failure lock is never poisoned") = Some(e);
                        Err(ApiError::from(state::Error::invalid("source", shown)))
                    }
                }
            }
        })
        .boxed();
    let header = UploadHeader {
        session: None,
        fs: ctx.fs_name.clone(),
        path: path.to_string(),
        parents: true,
        exclusive: false,
        owner: FILE_OWNER,
        mtime_ns: object.mtime_ns,
    };
    let uploaded = ctx.fs.upload(header, body).await;
    if let Some(e) = source_failure
        .lock()
        .expect("failure lock is never poisoned")
        .take()
    {
        return Err(CopyError::of_source(&e));
    }
    let uploaded = uploaded.map_err(|e| CopyError::of_fs("writing the file", &e))?;
    assert_eq!(
        uploaded.entry.inode.size, object.size_bytes,
        "the pipeline stored every byte handed to it"
    );
    if !object.etag.is_empty() {
        let version = uploaded.entry.inode.version.to_string();
        // The ETag first: a file with only the ETag is copied again.
        for (name, value) in [
            (IMPORT_ETAG_XATTR, object.etag.as_bytes()),
            (IMPORT_VERSION_XATTR, version.as_bytes()),
        ] {
            let ino = Target::Ino(uploaded.entry.ino);
            ctx.fs
                .set_xattr(None, &ctx.fs_name, &ino, (name, value), XattrMode::Any)
                .await
                .map_err(|e| CopyError::of_fs("recording the ETag", &e))?;
        }
    }
    Ok(Outcome::Copied {
        bytes: object.size_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_read_in_bounded_ranges_that_cover_them() {
        assert_eq!(ranges(0).count(), 0);
        assert_eq!(ranges(1).collect::<Vec<_>>(), [(0, 1)]);
        let r = IMPORT_RANGE_BYTES;
        assert_eq!(ranges(r).collect::<Vec<_>>(), [(0, r)]);
        assert_eq!(ranges(r + 1).collect::<Vec<_>>(), [(0, r), (r, 1)]);
        let size = 65 * 1024 * 1024 + 123;
        let all: Vec<_> = ranges(size).collect();
        assert_eq!(all.len(), 9);
        assert!(all.iter().all(|(_, len)| *len <= r && *len > 0));
        assert_eq!(all.iter().map(|(_, len)| len).sum::<u64>(), size);
    }
}
