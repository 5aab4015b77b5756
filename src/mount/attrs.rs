//! Translations between the kernel's view and the cluster's: inode numbers (the
//! mount's root is the `--from` directory), attributes, and errors as errnos.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType, INodeNo};

use crate::client::{Attr, Error, FileKind};
use crate::state::fs::ROOT_INO;

/// The kernel's inode 1 is the mount's root, the cluster's inode `root`. The map
/// swaps the two numbers, so it is its own inverse and every other number passes
/// through unchanged.
#[derive(Debug, Clone, Copy)]
pub struct InoMap {
    root: u64,
}

impl InoMap {
    pub fn new(root: u64) -> Self {
        InoMap { root }
    }

    fn swap(&self, ino: u64) -> u64 {
        if ino == ROOT_INO {
            self.root
        } else if ino == self.root {
            ROOT_INO
        } else {
            ino
        }
    }

    /// The cluster's number for a kernel inode.
    pub fn cluster(&self, kernel: INodeNo) -> u64 {
        self.swap(kernel.0)
    }

    /// The kernel's number for a cluster inode.
    pub fn kernel(&self, cluster: u64) -> INodeNo {
        INodeNo(self.swap(cluster))
    }
}

pub fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::File => FileType::RegularFile,
        FileKind::Dir => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
    }
}

fn time_of(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

/// Nanoseconds since the epoch (negative before it), saturating far outside
/// the ±292 years an i64 holds.
pub fn ns_of(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_nanos()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_nanos()).map_or(i64::MIN, |n| -n),
    }
}

/// `st_blksize`: one block of the file system, so `cp` and stdio move whole blocks.
const BLKSIZE: u32 = crate::limits::FS_BLOCK_BYTES as u32;

pub fn file_attr(map: &InoMap, attr: &Attr, size: u64) -> FileAttr {
    FileAttr {
        ino: map.kernel(attr.ino),
        size,
        blocks: attr.allocated_bytes.div_ceil(512),
        atime: time_of(attr.atime_ns),
        mtime: time_of(attr.mtime_ns),
        ctime: time_of(attr.ctime_ns),
        crtime: time_of(attr.ctime_ns),
        kind: file_type(attr.kind),
        perm: (attr.mode & 0o7777) as u16,
        nlink: attr.nlink,
        uid: attr.uid,
        gid: attr.gid,
        rdev: 0,
        blksize: BLKSIZE,
        flags: 0,
    }
}

/// The errno a failed call gives the program. A cluster that cannot answer in
/// time is `EIO`, as a disk that fails is.
pub fn errno_of(error: &Error) -> i32 {
    match error {
        Error::Fs { errno, .. } => errno.raw(),
        Error::NotFound(_) => libc::ENOENT,
        Error::AlreadyExists(_) => libc::EEXIST,
        Error::LimitExceeded { field, .. } => match field.as_str() {
            "name" | "path" => libc::ENAMETOOLONG,
            "value" => libc::E2BIG,
            _ => libc::EFBIG,
        },
        Error::InvalidArgument { .. } => libc::EINVAL,
        Error::Rejected { code, .. }
            if code == "permission_denied" || code == "unauthenticated" =>
        {
            libc::EACCES
        }
        Error::Rejected { code, .. } if code == "no_space" => libc::ENOSPC,
        Error::VersionMismatch(_) => libc::EAGAIN,
        Error::NotLeader { .. }
        | Error::Unavailable(_)
        | Error::Timeout(_)
        | Error::Rejected { .. }
        | Error::Internal(_)
        | Error::InvalidEndpoint(_) => libc::EIO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ino_map_swaps_root_and_is_its_own_inverse() {
        let map = InoMap::new(42);
        assert_eq!(map.kernel(42), INodeNo(1));
        assert_eq!(map.cluster(INodeNo(1)), 42);
        assert_eq!(map.kernel(1), INodeNo(42));
        for ino in [1, 2, 7, 42, 43, u64::MAX] {
            assert_eq!(map.cluster(map.kernel(ino)), ino);
        }
        let identity = InoMap::new(ROOT_INO);
        assert_eq!(identity.kernel(5), INodeNo(5));
        assert_eq!(identity.cluster(INodeNo(1)), 1);
    }

    #[test]
    fn times_round_trip_around_the_epoch() {
        for ns in [0, 1, 1_700_000_000_123_456_789, -1, -86_400_000_000_000] {
            assert_eq!(ns_of(time_of(ns)), ns);
        }
    }
}
