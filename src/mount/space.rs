//! What `df` shows for a mounted file system. With a quota the size is the quota;
//! without one the file system has no size of its own, and the mount reports the
//! bytes used plus `UNLIMITED_FREE_BYTES` free (1 TiB), so `df` and programs that
//! check free space before writing keep working (documented in filesystem.md).

use crate::client::FsInfo;

pub const BLOCK_BYTES: u64 = 4096;
pub const UNLIMITED_FREE_BYTES: u64 = 1 << 40;
/// Inodes shown free: the cluster sets no inode limit.
const FREE_INODES: u64 = 1 << 32;

#[derive(Debug, PartialEq, Eq)]
pub struct Space {
    pub blocks: u64,
    pub blocks_free: u64,
    pub files: u64,
    pub files_free: u64,
}

impl Space {
    pub fn of(info: &FsInfo) -> Space {
        let used = info.bytes_used.div_ceil(BLOCK_BYTES);
        let total = if info.quota_bytes > 0 {
            (info.quota_bytes / BLOCK_BYTES).max(used)
        } else {
            used + UNLIMITED_FREE_BYTES / BLOCK_BYTES
        };
        Space {
            blocks: total,
            blocks_free: total - used,
            files: info.inodes_used + FREE_INODES,
            files_free: FREE_INODES,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(quota_bytes: u64, bytes_used: u64) -> FsInfo {
        FsInfo {
            name: "default".into(),
            quota_bytes,
            bytes_used,
            inodes_used: 3,
            created_ms: 0,
        }
    }

    #[test]
    fn a_quota_is_the_size_and_usage_past_it_shows_full() {
        let s = Space::of(&info(40960, 4097));
        assert_eq!((s.blocks, s.blocks_free), (10, 8));
        let over = Space::of(&info(4096, 10 * 4096));
        assert_eq!((over.blocks, over.blocks_free), (10, 0));
        let unlimited = Space::of(&info(0, 4096));
        assert_eq!(unlimited.blocks_free, UNLIMITED_FREE_BYTES / BLOCK_BYTES);
        assert_eq!(unlimited.files - unlimited.files_free, 3);
    }
}
