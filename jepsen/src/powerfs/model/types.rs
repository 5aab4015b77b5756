//! The model's public value types: attributes, listings, cut modes and reports, stats.

use std::ffi::OsString;
use std::time::SystemTime;

/// What an inode is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
}

/// The attributes of an inode, as `stat` shows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: Kind,
    pub size: u64,
    /// In 512-byte units.
    pub blocks: u64,
    /// The permission bits (mode & 0o7777).
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    pub crtime: SystemTime,
}

/// The changes of a `setattr`; `None` leaves a field alone.
#[derive(Clone, Copy, Debug, Default)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<SystemTime>,
    pub mtime: Option<SystemTime>,
}

/// One line of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: u64,
    pub kind: Kind,
    pub name: OsString,
}

/// How a cut treats what was not fsynced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutMode {
    /// Every unsynced page, size change and directory change is lost.
    DropAll,
    /// Each unsynced page and each unsynced directory name independently survives with
    /// probability 1/2; each file's size is its durable or its current size (1/2 each);
    /// pages past that size are dropped, and a page inside it that did not survive
    /// takes its durable version, or zeros if it had none. Reproducible per seed.
    Torn { seed: u64 },
}

/// What a cut threw away (and, torn, kept).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CutReport {
    /// Files that lost unsynced data or an unsynced size change.
    pub files_reverted: u64,
    /// Unsynced pages whose new content was lost.
    pub pages_dropped: u64,
    /// Unsynced pages whose new content survived (torn cuts only).
    pub pages_kept: u64,
    /// Bytes of the pre-cut files written since their last fsync and lost (counted
    /// per page from the first to the last byte changed).
    pub bytes_dropped: u64,
    /// Directory names put back to their durable value (or removed as a second name of
    /// a directory, see the module doc).
    pub dir_entries_reverted: u64,
    /// Unsynced directory names that survived (torn cuts only).
    pub dir_entries_kept: u64,
    /// Inodes no longer reachable from the root, freed.
    pub inodes_dropped: u64,
    /// Open file and directory handles invalidated.
    pub handles_closed: u64,
}

impl CutReport {
    /// True if the cut lost anything at all.
    pub fn lost_something(&self) -> bool {
        self.pages_dropped > 0
            || self.files_reverted > 0
            || self.dir_entries_reverted > 0
            || self.inodes_dropped > 0
    }
}

/// A snapshot of what the model holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Pages modified since their file's last fsync.
    pub unsynced_pages: u64,
    /// Bytes of the current files changed since their last fsync (per page, from the
    /// first to the last byte changed).
    pub unsynced_bytes: u64,
    /// Files with unsynced pages or an unsynced size.
    pub dirty_files: u64,
    /// Directories with names changed since their last fsync.
    pub dirty_dirs: u64,
    /// Directory names changed since their directory's last fsync.
    pub unsynced_dir_entries: u64,
    /// Inodes in the table (reachable, unlinked but open, or durably named).
    pub inodes: u64,
    /// Bytes of page memory held (current and durable versions), against the cap.
    pub bytes_held: u64,
    pub bytes_max: u64,
    pub open_handles: u64,
    pub frozen: bool,
}

/// Numbers for `statfs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsSpace {
    pub blocks: u64,
    pub blocks_free: u64,
    pub files: u64,
    pub files_free: u64,
}
