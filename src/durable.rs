//! The durable file-system steps every on-disk structure of the node is built from:
//! creating directories, renaming and syncing directory entries so that they
//! survive a power cut, not only a crash of the process.
//!
//! On Linux (ext4, xfs) a new name — a created file or directory, a rename, an
//! unlink — is durable only once the directory holding it is fsynced; an fsync of
//! the file itself covers its data, not its name. Every writer in the node goes
//! through these helpers, so that rule lives in one place.

use std::fs::{self, File};
use std::io;
use std::path::Path;

/// fsyncs the directory `dir`, making the names in it durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` and any missing parents, each one durably: a new directory is
/// fsynced (so its own, still empty, entry table is on disk) and then its parent
/// (so its name is). Directories that exist are left alone; a directory found to
/// exist is assumed to have been made durable by whoever created it through here.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_all(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        // Created meanwhile by someone else (who syncs it the same way).
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
        Err(e) => return Err(e),
    }
    sync_dir(dir)?;
    match dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => sync_dir(parent),
        None => sync_dir(Path::new(".")),
    }
}

/// Renames `from` to `to` and fsyncs the directory of `to`, so the rename survives
/// a power cut. Both must be in the same directory (the only case the node needs:
/// a cross-directory rename would need both directories synced, in order).
pub fn rename(from: &Path, to: &Path) -> io::Result<()> {
    let dir = to
        .parent()
        .ok_or_else(|| io::Error::other(format!("{} has no directory", to.display())))?;
    debug_assert_eq!(
        from.parent(),
        Some(dir),
        "durable::rename within one directory"
    );
    fs::rename(from, to)?;
    sync_dir(dir)
}

/// Unlinks `path` and fsyncs its directory; a missing file is not an error.
pub fn remove_file(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    match path.parent() {
        Some(dir) => sync_dir(dir),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_nested_directories_and_tolerates_existing_ones() {
        let base = tempfile::tempdir().unwrap();
        let deep = base.path().join("a/b/c");
        create_dir_all(&deep).unwrap();
        assert!(deep.is_dir());
        create_dir_all(&deep).unwrap();
        let file = base.path().join("a/f");
        fs::write(&file, b"x").unwrap();
        assert!(create_dir_all(&file).is_err(), "a file is not a directory");
    }

    #[test]
    fn rename_and_remove() {
        let base = tempfile::tempdir().unwrap();
        let (from, to) = (base.path().join("t.tmp"), base.path().join("t"));
        fs::write(&from, b"x").unwrap();
        rename(&from, &to).unwrap();
        assert_eq!(fs::read(&to).unwrap(), b"x");
        remove_file(&to).unwrap();
        remove_file(&to).unwrap();
        assert!(!to.exists());
    }
}
