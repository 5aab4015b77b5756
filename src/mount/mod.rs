//! `cairn mount`: a FUSE mount of one file system (or a subtree of it, `--from`)
//! on a local directory, through the SDK, so it works from any machine that
//! reaches the cluster and follows the leader by itself.
//!
//! Layout: `fuse` turns kernel requests into tasks, `ops` implements them on the
//! SDK, `writes` buffers writes until close/fsync, `reads` fetches and caches
//! whole blocks with prefetch, `disk_cache` keeps chunks on local disk by hash,
//! `attrs` translates inodes, attributes and errors,
//! `space` answers statfs, `stats` counts. Semantics are in docs/filesystem.md.

mod attrs;
mod disk_cache;
mod fuse;
mod ops;
mod reads;
mod space;
mod stats;
mod writes;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::client::{Client, FileKind};

/// Locks one of the mount's tables or caches. Each guards plain data (buffers,
/// caches, handle tables) that a panic elsewhere leaves consistent, so a poisoned
/// lock is still usable.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How long the request threads get to end after the unmount.
const SESSION_END_WAIT: Duration = Duration::from_secs(5);

pub struct MountOptions {
    pub fs: String,
    /// The directory of the file system the mount shows as its root.
    pub from: String,
    pub mountpoint: PathBuf,
    /// Bytes of file blocks kept in memory (the block cache).
    pub memory_cache_bytes: u64,
    /// The content-addressed chunk cache on disk, and its bound in bytes.
    pub cache_dir: Option<PathBuf>,
    pub cache_bytes: u64,
    /// A cluster node's chunk directory on this machine, read directly.
    pub node_chunks: Option<PathBuf>,
    pub read_only: bool,
    /// How long the kernel trusts attributes and names without asking again.
    pub attr_timeout: Duration,
    /// How long a request waits for the cluster before it fails with `EIO`.
    pub op_timeout: Duration,
    /// Let every user (not only the one who mounted) use the mount.
    pub allow_other: bool,
    /// FUSE request loops (each with its own /dev/fuse descriptor).
    pub threads: usize,
}

/// Mounts, serves until SIGTERM/SIGINT or an outside unmount, then sends every
/// buffered write and unmounts. SIGUSR1 logs the counters.
pub async fn run(client: Client, options: MountOptions) -> anyhow::Result<()> {
    // Node-local storage is addressed by path only (no inode numbers or handles);
    // the mount speaks inodes.
    anyhow::ensure!(
        options.fs != "local",
        "mounting node-local storage is not supported yet; reach it with `cairn storage --fs local`, \
         or use the node's --local-dir directly on that node"
    );
    let fs = client.fs(&options.fs);
    let root = fs.stat(&options.from).await.with_context(|| {
        format!(
            "the mount's root {} in file system {}",
            options.from, options.fs
        )
    })?;
    anyhow::ensure!(
        root.kind == FileKind::Dir,
        "{} in file system {} is not a directory",
        options.from,
        options.fs
    );
    let cache = match &options.cache_dir {
        Some(dir) => Some(
            disk_cache::DiskCache::open(dir, options.cache_bytes)
                .with_context(|| format!("the chunk cache in {}", dir.display()))?,
        ),
        None => None,
    };
    let local = reads::LocalChunks {
        cache,
        node_chunks: options.node_chunks.clone(),
    };
    let mount = Arc::new(ops::Mount::new(
        fs,
        attrs::InoMap::new(root.ino),
        &options,
        local,
    ));
    let glue = fuse::CairnFuse {
        mount: mount.clone(),
        runtime: tokio::runtime::Handle::current(),
    };
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName(format!("cairn:{}", options.fs)),
        fuser::MountOption::Subtype("cairn".into()),
        // The kernel checks permission bits against the attributes it has.
        fuser::MountOption::DefaultPermissions,
        fuser::MountOption::NoAtime,
    ];
    if options.read_only {
        config.mount_options.push(fuser::MountOption::RO);
    }
    if options.allow_other {
        config.acl = fuser::SessionACL::All;
    }
    config.n_threads = Some(options.threads.max(1));
    config.clone_fd = true;
    let mountpoint = options.mountpoint.clone();
    let session =
        tokio::task::spawn_blocking(move || fuser::Session::new(glue, &mountpoint, &config))
            .await?
            .with_context(|| format!("mounting on {}", options.mountpoint.display()))?;
    let _ = mount.notifier.set(session.notifier());
    let background = session.spawn()?;
    raise_readahead(&options.mountpoint);
    tracing::info!(
        fs = %options.fs,
        from = %options.from,
        mountpoint = %options.mountpoint.display(),
        "mounted"
    );
    wait_for_the_end(&mount, &background).await?;
    tracing::info!("unmounting: sending buffered writes");
    // Bounded like any request: a cluster that cannot be reached does not keep the
    // mount (and every program blocked on it) from going away.
    let flushed = tokio::time::timeout(options.op_timeout, mount.flush_all())
        .await
        .unwrap_or(Err(libc::EIO));
    unmount(&options.mountpoint)?;
    // A plain thread, not spawn_blocking: the runtime's shutdown would wait for it.
    let (done, ended) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = done.send(background.join());
    });
    let unmounted = tokio::time::timeout(SESSION_END_WAIT, ended).await;
    tracing::info!("{}", mount.stats.summary());
    match unmounted {
        Ok(joined) => joined?.context("unmounting")?,
        // The mount is gone but the kernel kept the connection (a copy of the mount
        // in another mount namespace, say); exiting closes it.
        Err(_) => tracing::warn!("the FUSE session did not end after the unmount; exiting"),
    }
    flushed.map_err(|errno| {
        anyhow::anyhow!(
            "some buffered writes could not be sent: {}",
            std::io::Error::from_raw_os_error(errno)
        )
    })
}

/// Returns on SIGTERM or SIGINT, or when the session ended (an outside `umount`).
async fn wait_for_the_end(
    mount: &ops::Mount,
    session: &fuser::BackgroundSession,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut poll = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            _ = usr1.recv() => tracing::info!("{}", mount.stats.summary()),
            _ = poll.tick() => {
                if session.guard.is_finished() {
                    tracing::info!("the mount was unmounted from outside");
                    return Ok(());
                }
            }
        }
    }
}

/// Unmounts; if a process still uses the mount (its working directory or an open
/// file), detaches it instead: it disappears from the namespace at once and the
/// kernel ends the session when the last user lets go. Not mounted (someone ran
/// umount) is no error.
fn unmount(mountpoint: &Path) -> anyhow::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(mountpoint.as_os_str().as_bytes())?;
    // SAFETY: `path` is a valid NUL-terminated string that outlives the call.
    if unsafe { libc::umount2(path.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    let error = std::io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOENT) => Ok(()),
        Some(libc::EBUSY) => {
            tracing::warn!("the mount is busy; detaching it (umount -l)");
            // SAFETY: as above.
            if unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) } == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error()).context("detaching the mount")
            }
        }
        // Not root: the setuid helper unmounts for the user who mounted.
        Some(libc::EPERM) => {
            let status = std::process::Command::new("fusermount3")
                .arg("-u")
                .arg("-z")
                .arg(mountpoint)
                .status()
                .context("running fusermount3 -u")?;
            anyhow::ensure!(status.success(), "fusermount3 -u failed ({status})");
            Ok(())
        }
        _ => Err(error).context("unmounting"),
    }
}

/// Raises the kernel's readahead for the mount to 1 MiB (it stays at 128 KiB
/// otherwise, whatever the mount asked for in `init`). Needs root; best effort.
fn raise_readahead(mountpoint: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(mountpoint) else {
        return;
    };
    let dev = meta.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let path = format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb");
    if let Err(e) = std::fs::write(&path, "1024") {
        tracing::debug!(%path, "readahead stays at the kernel's default: {e}");
    }
}
