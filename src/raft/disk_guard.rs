//! The free-space reserve of the data disk. Below it a node would soon fail to
//! append to its log, and a node whose log append fails stops; so before that,
//! the cluster stops taking new data: the leader refuses every write that adds
//! data (`NodeError::NoSpace`) while its own disk, or that of any member it
//! heard from, is below its reserve. Deletes, acks, GC sweeps, token and lease
//! housekeeping still pass, so an operator can make room; writes resume by
//! themselves once every member is above its reserve again. Like etcd's
//! space alarm, one short member stops writes for the whole cluster: otherwise
//! it would fall out and the cluster would lose a copy without anyone noticing.
//!
//! Each node measures its own disk (statvfs of the data dir, cached for
//! `DISK_FREE_CACHE_MS`); the leader learns the members' figures from their
//! reports (`report`), asked every `DISK_GUARD_POLL_MS`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::error::NodeError;
use super::types::NodeId;

/// A node's own free bytes are measured at most this often.
const DISK_FREE_CACHE_MS: u64 = 200;
/// How often a leader asks the members how much room they have.
pub const DISK_GUARD_POLL_MS: u64 = 1_000;

/// A disk's free bytes against the reserve it must keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Room {
    pub free_bytes: u64,
    pub reserve_bytes: u64,
}

impl Room {
    pub fn is_short(&self) -> bool {
        self.free_bytes < self.reserve_bytes
    }
}

pub struct DiskGuard {
    dir: PathBuf,
    reserve_bytes: u64,
    measured: Mutex<Option<(Instant, u64)>>,
    /// Members (the leader's view) last seen below their reserve.
    short_members: Mutex<BTreeMap<NodeId, Room>>,
}

impl DiskGuard {
    pub fn new(dir: PathBuf, reserve_bytes: u64) -> Self {
        DiskGuard {
            dir,
            reserve_bytes,
            measured: Mutex::new(None),
            short_members: Mutex::new(BTreeMap::new()),
        }
    }

    /// This node's room. A disk that cannot be measured counts as having room:
    /// the guard is a warning ahead of the real error, not a second failure.
    pub fn own_room(&self) -> Room {
        let fresh = Duration::from_millis(DISK_FREE_CACHE_MS);
        let mut measured = self.measured.lock().unwrap_or_else(|e| e.into_inner());
        let free_bytes = match *measured {
            Some((at, free)) if at.elapsed() < fresh => free,
            _ => match free_bytes(&self.dir) {
                Ok(free) => {
                    *measured = Some((Instant::now(), free));
                    free
                }
                Err(e) => {
                    tracing::warn!(dir = %self.dir.display(), error = %e, "measuring free space");
                    u64::MAX
                }
            },
        };
        Room {
            free_bytes,
            reserve_bytes: self.reserve_bytes,
        }
    }

    /// Why this node is short of room, if it is (for readiness and errors).
    pub fn own_shortage(&self, id: NodeId) -> Option<String> {
        let room = self.own_room();
        room.is_short().then(|| shortage(id, room))
    }

    /// What the leader last heard from the members (replaces the old view).
    pub fn set_short_members(&self, short: BTreeMap<NodeId, Room>) {
        *self.short_members.lock().unwrap_or_else(|e| e.into_inner()) = short;
    }

    /// `Err(NoSpace)` naming the first node short of room: this one, or a member.
    pub fn check(&self, id: NodeId) -> Result<(), NodeError> {
        if let Some(why) = self.own_shortage(id) {
            return Err(NodeError::NoSpace(why));
        }
        let short = self.short_members.lock().unwrap_or_else(|e| e.into_inner());
        match short.iter().find(|(member, _)| **member != id) {
            Some((member, room)) => Err(NodeError::NoSpace(shortage(*member, *room))),
            None => Ok(()),
        }
    }
}

fn shortage(id: NodeId, room: Room) -> String {
    format!(
        "node {id}'s data disk has {} free, below its reserve of {} (disk_reserve_bytes): \
         delete data or free space; writes resume by themselves",
        mib(room.free_bytes),
        mib(room.reserve_bytes)
    )
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Bytes an unprivileged writer may still use on the file system holding `dir`.
pub fn free_bytes(dir: &std::path::Path) -> std::io::Result<u64> {
    let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::other("the data dir path holds a NUL byte"))?;
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid C string and `stats` a writable statvfs.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stats) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((stats.f_bavail as u64).saturating_mul(stats.f_frsize as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_member_refuses_writes_until_it_has_room_again() {
        let dir = tempfile::tempdir().unwrap();
        let guard = DiskGuard::new(dir.path().to_path_buf(), 0);
        assert_eq!(guard.check(1), Ok(()));
        let short = Room {
            free_bytes: 10,
            reserve_bytes: 20,
        };
        guard.set_short_members(BTreeMap::from([(2, short)]));
        let Err(NodeError::NoSpace(why)) = guard.check(1) else {
            panic!("a short member must refuse writes");
        };
        assert!(why.contains("node 2"), "{why}");
        guard.set_short_members(BTreeMap::new());
        assert_eq!(guard.check(1), Ok(()));
    }

    #[test]
    fn a_reserve_above_the_disk_refuses_writes_here() {
        let dir = tempfile::tempdir().unwrap();
        let guard = DiskGuard::new(dir.path().to_path_buf(), u64::MAX - 1);
        assert!(guard.own_shortage(1).is_some());
        assert!(matches!(guard.check(1), Err(NodeError::NoSpace(_))));
    }
}
