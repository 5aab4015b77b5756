//! powerfs: an in-process FUSE file system that simulates a power cut.
//!
//! The chaos harness mounts one powerfs at each node's data directory. powerfs keeps
//! everything a real disk would still have in its volatile cache — file data written
//! but not fsynced, and directory entries changed but not made durable by an fsync of
//! their directory — and can drop it on command. To simulate a power cut the harness
//! calls [`PowerFs::freeze`] (every FUSE request then fails with EIO, so the dying node
//! can persist nothing more), SIGKILLs the node, calls [`PowerFs::cut`] (the file system
//! reverts to its durable state), [`PowerFs::thaw`], and restarts the node on the same
//! directory.
//!
//! # The model
//!
//! An inode table; the root directory is inode 1 (FUSE's root id). Inode numbers are
//! never reused within one mount. Each inode is a file, a directory or a symlink, with
//! its mode, uid, gid and times, and:
//!
//! - A **file** holds its data as 4 KiB pages (absent = a hole, zeros) and a size, plus
//!   an *undo log*: for each page modified since the last fsync, the page's durable
//!   version (captured on its first modification only; none if it was a hole or past
//!   the end), and the durable size. `fsync`/`fdatasync` clears the undo log and makes
//!   the size durable, so it costs O(pages dirtied since the last one), not O(file):
//!   cairn's Raft WAL segments grow to 64 MiB and are fsynced on every append.
//! - A **directory** holds its names (name → inode) plus an undo log of the durable
//!   value of each name changed since its last `fsyncdir` (again captured on the first
//!   change; none if the name did not exist). `fsyncdir` clears it. So a new file's
//!   *name* becomes durable only when its parent directory is fsynced, as on a real
//!   disk: an fsync of the new file makes its data durable, not its directory entry.
//!   `rename` changes the entries of one or two directories, each made durable by its
//!   own fsyncdir; `link`, `unlink`, `rmdir`, `mkdir` and `symlink` likewise. A new
//!   directory's durable content is empty until it is fsynced itself.
//! - **Attributes** (mode, uid, gid, times) are always the current ones: a cut never
//!   reverts them. The size is data, not an attribute: it reverts.
//!
//! A **cut** ([`CutMode`]) reverts every inode to its durable state, then walks the
//! names from the root: inodes it does not reach are freed (a file created and fsynced
//! in a directory that never was fsynced is gone), link counts are recounted, and every
//! open handle is invalidated (a later request on one answers EBADF; the harness has
//! killed the process that held it). [`CutMode::DropAll`] loses every unsynced page,
//! size change and directory change. [`CutMode::Torn`] is a disk that persisted part of
//! the dirty data in any order: each unsynced page and each unsynced directory name
//! independently survives with probability 1/2; each dirty file's size is its durable
//! or its current size (1/2 each); pages past that size are dropped, and a page inside
//! it that did not survive takes its durable version, or zeros if it had none — so a
//! file can come back with later bytes present and earlier ones zero. Seeded
//! ([`rand::rngs::StdRng`]), so runs are reproducible. Since each directory reverts on
//! its own, a directory can end up named in two places (renamed from a directory that
//! was not fsynced into one that was): the walk keeps the first name it meets (names in
//! byte order, breadth first) and drops the others, so the tree stays a tree. Files may
//! legitimately come back with two names (the old and the new one of a rename).
//!
//! **Memory.** An inode's content is freed as soon as it has no current name, no name
//! in any directory's undo log (it is no longer in the durable state) and no open
//! handle: the model keeps link, undo-reference and open counts per inode (a cut
//! recomputes them from the walk). So an unlinked file that a reader still holds open
//! keeps working until its last handle is released (cairn unlinks WAL segments that
//! readers may still hold). [`PowerOptions::bytes_max`] caps the page memory, current
//! plus durable versions: a write past it fails with ENOSPC.
//!
//! # The FUSE side
//!
//! Entry and attribute TTLs are zero (the state changes under the kernel at a cut, so
//! the kernel must not cache names or attributes), and files are opened with
//! `FOPEN_DIRECT_IO` so the kernel page cache never holds data a cut reverted. The
//! price: writable shared `mmap` of powerfs files is not supported (cairn does not mmap
//! its data files), and every read or write is a round trip to this process. Mounted
//! with `default_permissions` (the kernel checks modes) and fsname `powerfs`, without
//! `allow_other` (only the mounting user, root for the harness, may use it); requests
//! are served by a background thread of the calling process (`fuser`, pure-Rust mount:
//! no libfuse). As root the mount is a plain mount(2), visible in the mount namespaces
//! that `ip netns exec` creates afterwards (slaves of the harness's). If the process
//! serving the mount dies, the mount stays behind, disconnected (ENOTCONN), until
//! someone runs `umount -l` on it.
//!
//! # Not simulated
//!
//! Reordering inside one fsync interval beyond what [`CutMode::Torn`] does per page,
//! torn writes inside a page, metadata (mode, times) loss, `sync(2)`/`syncfs(2)` (FUSE
//! does not forward them: only fsync and fsyncdir make anything durable), xattrs
//! (unsupported), special files (mknod of anything but a regular file is EPERM), locks
//! beyond what the kernel does locally, and `O_TMPFILE`.

mod fuse;
mod model;

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

pub use model::{CutMode, CutReport, Stats};

/// Mount options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PowerOptions {
    /// The most page memory (current data plus durable versions kept for a cut) the
    /// file system holds; a write past it fails with ENOSPC. Default 4 GiB.
    pub bytes_max: u64,
}

impl Default for PowerOptions {
    fn default() -> PowerOptions {
        PowerOptions { bytes_max: 4 << 30 }
    }
}

type Shared = Arc<Mutex<model::Model>>;

fn lock(shared: &Shared) -> MutexGuard<'_, model::Model> {
    // No model operation panics; if one ever did, serving on beats failing every
    // later request of the mount.
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A mounted powerfs. Dropping it unmounts (see [`PowerFs::unmount`]).
#[derive(Debug)]
pub struct PowerFs {
    shared: Shared,
    session: Option<fuser::BackgroundSession>,
    mountpoint: PathBuf,
}

impl PowerFs {
    /// Mounts an empty powerfs at `mountpoint`, which must be an existing, empty
    /// directory. Needs root (or a working `fusermount3`) and /dev/fuse. Returns once
    /// the kernel has finished the FUSE handshake: the mount is usable at once.
    pub fn mount(mountpoint: &Path, options: PowerOptions) -> io::Result<PowerFs> {
        let mountpoint = mountpoint.canonicalize()?;
        if std::fs::read_dir(&mountpoint)?.next().is_some() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("powerfs: mount point {} is not empty", mountpoint.display()),
            ));
        }
        // SAFETY: geteuid and getegid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let shared: Shared = Arc::new(Mutex::new(model::Model::new(options.bytes_max, uid, gid)));
        let filesystem = fuse::PowerFuse::new(shared.clone());
        let mut config = fuser::Config::default();
        config.mount_options = vec![
            fuser::MountOption::FSName("powerfs".to_string()),
            fuser::MountOption::DefaultPermissions,
        ];
        let session = fuser::spawn_mount(filesystem, &mountpoint, &config)?;
        Ok(PowerFs {
            shared,
            session: Some(session),
            mountpoint,
        })
    }

    /// The (canonical) mount point.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// From now on every FUSE request answers EIO (reads, lookups and getattr too), so
    /// nothing more becomes durable. Handles are still released, so memory is freed.
    pub fn freeze(&self) {
        lock(&self.shared).set_frozen(true);
    }

    /// Requests are served again.
    pub fn thaw(&self) {
        lock(&self.shared).set_frozen(false);
    }

    /// Whether [`PowerFs::freeze`] is in force.
    pub fn is_frozen(&self) -> bool {
        lock(&self.shared).frozen()
    }

    /// The power cut: reverts the file system to its durable state (see the module
    /// doc) and invalidates every open handle. Works frozen or not, atomically with
    /// respect to FUSE requests; freeze first and kill the writers, or they see the
    /// state change under them and their next request on an old handle fails with
    /// EBADF.
    pub fn cut(&self, mode: CutMode) -> CutReport {
        lock(&self.shared).cut(mode)
    }

    /// What is unsynced and how much memory is held, now.
    pub fn stats(&self) -> Stats {
        lock(&self.shared).stats()
    }

    /// Unmounts and waits for the request thread to end. If the mount is busy (a
    /// process has its working directory or a file open in it), falls back to a lazy
    /// unmount: the mount disappears from the namespace at once and the request thread
    /// ends when the last user lets go.
    pub fn unmount(mut self) -> io::Result<()> {
        self.unmount_inner()
    }

    fn unmount_inner(&mut self) -> io::Result<()> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        let path = std::ffi::CString::new(self.mountpoint.as_os_str().as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: `path` is a valid NUL-terminated string that outlives the call.
        if unsafe { libc::umount2(path.as_ptr(), 0) } == 0 {
            return within(Duration::from_secs(10), move || session.join());
        }
        let error = io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::EBUSY) {
            // Not mounted any more (someone ran umount), or not ours to unmount: let
            // fuser try (it checks whether the connection is still alive first).
            return within(Duration::from_secs(10), move || session.umount_and_join());
        }
        // SAFETY: as above.
        if unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // The session ends when the kernel drops the connection; do not wait for that.
        std::thread::spawn(move || drop(session.join()));
        Ok(())
    }
}

/// Runs `end` (which joins the session thread) but waits at most `limit` for it: after
/// a successful umount the kernel ends the connection at once, unless another mount
/// namespace still holds a copy of the mount; then the thread is left to end later.
fn within(
    limit: Duration,
    end: impl FnOnce() -> io::Result<()> + Send + 'static,
) -> io::Result<()> {
    let (done, wait) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(end());
    });
    wait.recv_timeout(limit).unwrap_or(Ok(()))
}

impl Drop for PowerFs {
    fn drop(&mut self) {
        // Nothing to report to from a destructor.
        let _ = self.unmount_inner();
    }
}

/// Whether this machine can mount a powerfs: root, /dev/fuse, and a scratch mount in a
/// temporary directory that serves a write and a read and unmounts.
pub fn probe() -> bool {
    probe_detail().is_ok()
}

/// [`probe`] with the reason it failed.
pub fn probe_detail() -> Result<(), String> {
    // SAFETY: geteuid cannot fail and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        return Err("powerfs needs root (to mount FUSE directly)".to_string());
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .map_err(|e| format!("cannot open /dev/fuse: {e}"))?;
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("powerfs-probe-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let outcome = probe_in(&dir);
    let _ = std::fs::remove_dir(&dir);
    outcome
}

fn probe_in(dir: &Path) -> Result<(), String> {
    let fs = PowerFs::mount(dir, PowerOptions { bytes_max: 1 << 20 })
        .map_err(|e| format!("cannot mount a FUSE file system: {e}"))?;
    let file = fs.mountpoint().join("probe");
    let served = std::fs::write(&file, b"powerfs").and_then(|()| std::fs::read(&file));
    let unmounted = fs.unmount();
    match served {
        Ok(bytes) if bytes == b"powerfs" => {}
        Ok(bytes) => return Err(format!("the probe mount read back {bytes:?}")),
        Err(e) => {
            return Err(format!(
                "the probe mount did not serve a write and a read: {e}"
            ))
        }
    }
    unmounted.map_err(|e| format!("cannot unmount the probe mount: {e}"))
}
