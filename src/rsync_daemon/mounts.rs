//! Whether the mountpoint is mounted (/proc/self/mountinfo) and unmounting it:
//! plain, lazy, then through fusermount3.

use super::*;

pub(super) fn is_mounted(mountpoint: &Path) -> anyhow::Result<bool> {
    let table =
        std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    Ok(mountinfo_lists(&table, mountpoint))
}

/// Whether a mountinfo table has a mount on exactly `mountpoint` (field 5, with
/// blanks and backslashes written as `\ooo`).
pub(super) fn mountinfo_lists(table: &str, mountpoint: &Path) -> bool {
    let wanted = mountpoint.as_os_str().as_bytes();
    table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|field| unescape_octal(field) == wanted)
}

pub(super) fn unescape_octal(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match octal_escape(&bytes[i..]) {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

/// The byte of a `\ooo` escape at the start of `bytes`.
pub(super) fn octal_escape(bytes: &[u8]) -> Option<u8> {
    let [b'\\', a, b, c, ..] = *bytes else {
        return None;
    };
    let digit = |d: u8| (b'0'..=b'7').contains(&d).then(|| u32::from(d - b'0'));
    u8::try_from(digit(a)? * 64 + digit(b)? * 8 + digit(c)?).ok()
}

/// Unmounts `mountpoint` if something is mounted there: plainly, detached if busy,
/// through fusermount3 if the kernel refuses (not root).
pub(super) async fn unmount_if_mounted(mountpoint: &Path) -> anyhow::Result<()> {
    if !is_mounted(mountpoint)? {
        return Ok(());
    }
    tracing::info!(mountpoint = %mountpoint.display(), "unmounting");
    let path = mountpoint.to_path_buf();
    let wait = Duration::from_millis(UNMOUNT_WAIT_MS_MAX);
    let unmounted = tokio::time::timeout(wait, tokio::task::spawn_blocking(move || umount(&path)))
        .await
        .context("unmount timed out")?
        .context("the unmount task failed")?;
    match unmounted {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => fusermount_unmount(mountpoint).await,
        other => other.with_context(|| format!("unmounting {}", mountpoint.display())),
    }
}

pub(super) fn umount(mountpoint: &Path) -> io::Result<()> {
    let path = std::ffi::CString::new(mountpoint.as_os_str().as_bytes())?;
    // SAFETY: `path` is a valid NUL-terminated string that outlives the call.
    if unsafe { libc::umount2(path.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        // Not a mount point (any more): someone else unmounted it.
        Some(libc::EINVAL) | Some(libc::ENOENT) => Ok(()),
        // An rsync session still has files open: detach; the kernel ends it later.
        Some(libc::EBUSY) => {
            // SAFETY: as above.
            if unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) } == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        }
        _ => Err(error),
    }
}

pub(super) async fn fusermount_unmount(mountpoint: &Path) -> anyhow::Result<()> {
    let mut command = Command::new("fusermount3");
    command
        .arg("-u")
        .arg("-z")
        .arg(mountpoint)
        .kill_on_drop(true);
    let wait = Duration::from_millis(UNMOUNT_WAIT_MS_MAX);
    let status = tokio::time::timeout(wait, command.status())
        .await
        .context("fusermount3 -u timed out")?
        .context("running fusermount3 -u")?;
    anyhow::ensure!(status.success(), "fusermount3 -u -z failed ({status})");
    Ok(())
}
