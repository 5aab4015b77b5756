//! Node-local storage: the `local` file system, a directory on this node's own disk
//! (`--local-dir`, default `<data-dir>/local`), served with the same API as the
//! replicated file systems and never replicated: scratch space, lost with the node.
//!
//! Paths are parsed as for every file system (`..` never leaves the root) and then
//! walked component by component: an intermediate component that is a symlink is
//! `ENOTDIR`, so no symlink can lead a request outside the directory. Uploads land
//! in a temp file beside the target, fsynced, then renamed over it. Addressing by
//! inode number, chunk references, handles and extended attributes are not offered
//! here (`EINVAL` / `ENOTSUP`): the node's own kernel keeps open files alive.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use futures::stream::{Stream, StreamExt};

use super::content::{DownloadStream, UploadHeader, Uploaded};
use super::{Place, RemoveMode, Target};
use crate::api::chunk_upload::Piece;
use crate::api::error::ApiError;
use crate::errno::Errno;
use crate::limits::{fs_readdir_page, CHUNK_BYTES_MAX, FS_FILE_BYTES_MAX};
use crate::state;
use crate::state::fs::read::DirPage;
use crate::state::fs::{
    names, DirEntry, Entry, FsRecord, Inode, Kind, Owner, SetAttr, TimeSet, XattrMode,
};

#[derive(Clone, Debug)]
pub struct LocalFs {
    root: PathBuf,
}

fn io_error(e: std::io::Error, what: &str) -> ApiError {
    match e.raw_os_error().and_then(Errno::from_raw) {
        Some(errno) => state::Error::fs(errno, format!("{what}: {e}")).into(),
        None => ApiError::Internal(format!("node-local storage, {what}: {e}")),
    }
}

fn refuse<T>(errno: Errno, what: impl Into<String>) -> Result<T, ApiError> {
    Err(state::Error::fs(errno, what).into())
}

fn by_path_only<T>() -> Result<T, ApiError> {
    refuse(
        Errno::EINVAL,
        "node-local storage is addressed by path, not by inode number",
    )
}

fn kind_of(meta: &fs::Metadata) -> Kind {
    let t = meta.file_type();
    if t.is_dir() {
        Kind::Dir
    } else if t.is_symlink() {
        Kind::Symlink
    } else {
        Kind::File
    }
}

fn entry_of(path: &Path, meta: &fs::Metadata) -> Entry {
    let ns = |s: i64, n: i64| s * 1_000_000_000 + n;
    let kind = kind_of(meta);
    Entry {
        ino: meta.ino(),
        inode: Inode {
            kind,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            size: meta.size(),
            nlink: meta.nlink() as u32,
            atime_ns: ns(meta.atime(), meta.atime_nsec()),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
            version: ns(meta.mtime(), meta.mtime_nsec()) as u64,
            allocated_bytes: meta.blocks() * 512,
            parent: 0,
            target: if kind == Kind::Symlink {
                fs::read_link(path)
                    .map(|t| t.to_string_lossy().into_owned())
                    .unwrap_or_default()
            } else {
                String::new()
            },
        },
    }
}

fn system_time(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

impl LocalFs {
    pub fn open(root: PathBuf) -> std::io::Result<Self> {
        crate::durable::create_dir_all(&root)?;
        Ok(LocalFs { root })
    }

    /// A `local` file system whose directory could not be created: every call
    /// fails (the node still serves everything else).
    pub fn unavailable(root: PathBuf) -> Self {
        LocalFs { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The local path of checked components, refusing symlinks on the way.
    fn walk(&self, parts: &[String]) -> Result<PathBuf, ApiError> {
        let mut path = self.root.clone();
        for (depth, part) in parts.iter().enumerate() {
            if depth > 0 {
                match fs::symlink_metadata(&path) {
                    Ok(meta) if meta.is_dir() => {}
                    Ok(_) => {
                        return refuse(
                            Errno::ENOTDIR,
                            format!("{} is not a directory", names::show(&parts[..depth])),
                        )
                    }
                    Err(e) => return Err(io_error(e, &names::show(&parts[..depth]))),
                }
            }
            path.push(part);
        }
        Ok(path)
    }

    fn target(&self, target: &Target) -> Result<(PathBuf, String), ApiError> {
        match target {
            Target::Path(p) => {
                let parts = names::parse_path(p)?;
                Ok((self.walk(&parts)?, names::show(&parts)))
            }
            Target::Ino(_) => by_path_only(),
        }
    }

    /// The directory path, the name, and the full path of a place.
    fn place(&self, place: &Place) -> Result<(PathBuf, PathBuf, String), ApiError> {
        match place {
            Place::Path(p) => {
                let (dir, name) = names::split_last(names::parse_path(p)?)?;
                let dir_path = self.walk(&dir)?;
                if !dir.is_empty() {
                    match fs::symlink_metadata(&dir_path) {
                        Ok(meta) if meta.is_dir() => {}
                        Ok(_) => {
                            return refuse(
                                Errno::ENOTDIR,
                                format!("{} is not a directory", names::show(&dir)),
                            )
                        }
                        Err(e) => return Err(io_error(e, &names::show(&dir))),
                    }
                }
                let full = dir_path.join(&name);
                let mut shown = dir;
                shown.push(name);
                Ok((dir_path, full, names::show(&shown)))
            }
            Place::Entry { .. } => by_path_only(),
        }
    }

    fn stat_path(&self, path: &Path, shown: &str) -> Result<Entry, ApiError> {
        let meta = fs::symlink_metadata(path).map_err(|e| io_error(e, shown))?;
        Ok(entry_of(path, &meta))
    }

    pub fn statfs(&self) -> Result<(FsRecord, (u64, u64)), ApiError> {
        let c_path = std::ffi::CString::new(self.root.as_os_str().as_encoded_bytes())
            .map_err(|_| ApiError::Internal("local dir path contains NUL".into()))?;
        let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: c_path is a valid C string and stats a writable statvfs.
        if unsafe { libc::statvfs(c_path.as_ptr(), &mut stats) } != 0 {
            return Err(io_error(std::io::Error::last_os_error(), "statfs"));
        }
        let block = stats.f_frsize as u64;
        let capacity = stats.f_blocks as u64 * block;
        let free = stats.f_bavail as u64 * block;
        let record = FsRecord {
            id: 0,
            quota_bytes: 0,
            created_ms: 0,
            bytes_used: capacity.saturating_sub(stats.f_bfree as u64 * block),
            inodes_used: (stats.f_files as u64).saturating_sub(stats.f_ffree as u64),
            next_ino: 0,
        };
        Ok((record, (capacity, free)))
    }

    pub fn stat(&self, target: &Target) -> Result<Entry, ApiError> {
        let (path, shown) = self.target(target)?;
        self.stat_path(&path, &shown)
    }

    pub fn lookup(&self, dir: &Target, name: &str) -> Result<Entry, ApiError> {
        names::check_name(name)?;
        let (path, shown) = self.target(dir)?;
        self.stat_path(&path.join(name), &format!("{shown}/{name}"))
    }

    pub fn readdir(
        &self,
        dir: &Target,
        after: &str,
        limit: u32,
        plus: bool,
    ) -> Result<DirPage, ApiError> {
        let (path, shown) = self.target(dir)?;
        let limit = fs_readdir_page(limit);
        let mut names: Vec<String> = fs::read_dir(&path)
            .map_err(|e| io_error(e, &shown))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.as_str() > after)
            .collect();
        names.sort();
        let mut page = DirPage::default();
        for name in names.iter().take(limit) {
            let child = path.join(name);
            let Ok(meta) = fs::symlink_metadata(&child) else {
                continue; // removed meanwhile
            };
            let entry = entry_of(&child, &meta);
            let dirent = DirEntry {
                ino: entry.ino,
                kind: entry.inode.kind,
            };
            page.entries
                .push((name.clone(), dirent, plus.then_some(entry)));
        }
        if names.len() > limit {
            page.next_after = page.entries.last().map(|(n, _, _)| n.clone());
        }
        Ok(page)
    }

    pub fn readlink(&self, target: &Target) -> Result<String, ApiError> {
        let (path, shown) = self.target(target)?;
        let link = fs::read_link(&path).map_err(|e| io_error(e, &shown))?;
        Ok(link.to_string_lossy().into_owned())
    }

    pub fn make(
        &self,
        place: &Place,
        kind: Kind,
        owner: Owner,
        (exclusive, parents): (bool, bool),
        target: &str,
    ) -> Result<Entry, ApiError> {
        if parents {
            if let Place::Path(p) = place {
                let (dir, _) = names::split_last(names::parse_path(p)?)?;
                self.make_dirs(&dir)?;
            }
        }
        let (_, full, shown) = self.place(place)?;
        let made = match kind {
            Kind::Dir => fs::create_dir(&full).and_then(|_| {
                fs::set_permissions(&full, fs::Permissions::from_mode(owner.mode & 0o7777))
            }),
            Kind::Symlink => std::os::unix::fs::symlink(target, &full),
            Kind::File => OpenOptions::new()
                .write(true)
                .create(!exclusive)
                .create_new(exclusive)
                .mode(owner.mode & 0o7777)
                .open(&full)
                .map(|_| ()),
        };
        match made {
            Err(e)
                if parents
                    && kind == Kind::Dir
                    && e.kind() == std::io::ErrorKind::AlreadyExists
                    && full.is_dir() => {}
            other => other.map_err(|e| io_error(e, &shown))?,
        }
        self.stat_path(&full, &shown)
    }

    /// Creates every missing directory of `parts` (`mkdir -p`).
    fn make_dirs(&self, parts: &[String]) -> Result<(), ApiError> {
        for depth in 1..=parts.len() {
            let path = self.walk(&parts[..depth])?;
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    return refuse(
                        Errno::ENOTDIR,
                        format!("{} is not a directory", names::show(&parts[..depth])),
                    )
                }
                Err(_) => match fs::create_dir(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io_error(e, &names::show(&parts[..depth]))),
                },
            }
        }
        Ok(())
    }

    pub fn remove(&self, place: &Place, mode: RemoveMode) -> Result<u64, ApiError> {
        let (_, full, shown) = self.place(place)?;
        match mode {
            RemoveMode::Unlink => fs::remove_file(&full).map(|_| 1),
            RemoveMode::Rmdir => fs::remove_dir(&full).map(|_| 1),
            RemoveMode::Recursive => {
                let meta = fs::symlink_metadata(&full).map_err(|e| io_error(e, &shown))?;
                if meta.is_dir() {
                    let count = count_entries(&full);
                    fs::remove_dir_all(&full).map(|_| count)
                } else {
                    fs::remove_file(&full).map(|_| 1)
                }
            }
        }
        .map_err(|e| io_error(e, &shown))
    }

    pub fn rename(&self, from: &Place, to: &Place, noreplace: bool) -> Result<(), ApiError> {
        let (_, from_path, from_shown) = self.place(from)?;
        let (_, to_path, to_shown) = self.place(to)?;
        if noreplace && fs::symlink_metadata(&to_path).is_ok() {
            return refuse(Errno::EEXIST, format!("{to_shown} exists"));
        }
        fs::rename(&from_path, &to_path)
            .map_err(|e| io_error(e, &format!("{from_shown} -> {to_shown}")))
    }

    pub fn link(&self, target: &Target, place: &Place) -> Result<Entry, ApiError> {
        let (source, source_shown) = self.target(target)?;
        let (_, full, shown) = self.place(place)?;
        fs::hard_link(&source, &full)
            .map_err(|e| io_error(e, &format!("{source_shown} -> {shown}")))?;
        self.stat_path(&full, &shown)
    }

    pub fn set_attr(&self, target: &Target, set: &SetAttr) -> Result<Entry, ApiError> {
        let (path, shown) = self.target(target)?;
        let fail = |e| io_error(e, &shown);
        if let Some(mode) = set.mode {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o7777)).map_err(fail)?;
        }
        if set.uid.is_some() || set.gid.is_some() {
            std::os::unix::fs::lchown(&path, set.uid, set.gid).map_err(fail)?;
        }
        if let Some(size) = set.size {
            OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_len(size))
                .map_err(fail)?;
        }
        if set.atime.is_some() || set.mtime.is_some() {
            let now = SystemTime::now();
            let at = |t: TimeSet| match t {
                TimeSet::Now => now,
                TimeSet::At(ns) => system_time(ns),
            };
            let mut times = fs::FileTimes::new();
            if let Some(t) = set.atime {
                times = times.set_accessed(at(t));
            }
            if let Some(t) = set.mtime {
                times = times.set_modified(at(t));
            }
            File::open(&path)
                .and_then(|f| f.set_times(times))
                .map_err(fail)?;
        }
        self.stat_path(&path, &shown)
    }

    pub fn set_xattr(
        &self,
        _target: &Target,
        _name: &str,
        _value: &[u8],
        _mode: XattrMode,
    ) -> Result<(), ApiError> {
        refuse(
            Errno::ENOTSUP,
            "node-local storage keeps no extended attributes",
        )
    }

    pub fn remove_xattr(&self, _target: &Target, _name: &str) -> Result<(), ApiError> {
        refuse(
            Errno::ENOTSUP,
            "node-local storage keeps no extended attributes",
        )
    }

    pub fn get_xattr(&self, _target: &Target, _name: &str) -> Result<Vec<u8>, ApiError> {
        refuse(
            Errno::ENOTSUP,
            "node-local storage keeps no extended attributes",
        )
    }

    pub fn list_xattrs(&self, target: &Target) -> Result<Vec<String>, ApiError> {
        self.stat(target).map(|_| Vec::new())
    }

    pub async fn upload<S>(&self, header: &UploadHeader, mut body: S) -> Result<Uploaded, ApiError>
    where
        S: Stream<Item = Result<Piece, ApiError>> + Unpin + Send,
    {
        let place = Place::Path(header.path.clone());
        if header.parents {
            let (dir, _) = names::split_last(names::parse_path(&header.path)?)?;
            self.make_dirs(&dir)?;
        }
        let (dir, full, shown) = self.place(&place)?;
        if header.exclusive && fs::symlink_metadata(&full).is_ok() {
            return refuse(Errno::EEXIST, format!("{shown} exists"));
        }
        if fs::metadata(&full).is_ok_and(|m| m.is_dir()) {
            return refuse(Errno::EISDIR, format!("{shown} is a directory"));
        }
        let temp = dir.join(format!(
            ".{}.cairn-tmp-{:016x}",
            full.file_name().unwrap_or_default().to_string_lossy(),
            rand::random::<u64>()
        ));
        let result = self.receive(&temp, header, &mut body, &shown).await;
        let received = match result {
            Ok(n) => n,
            Err(e) => {
                let _ = fs::remove_file(&temp);
                return Err(e);
            }
        };
        let renamed = fs::rename(&temp, &full).and_then(|_| crate::durable::sync_dir(&dir));
        if let Err(e) = renamed {
            let _ = fs::remove_file(&temp);
            return Err(io_error(e, &shown));
        }
        Ok(Uploaded {
            entry: self.stat_path(&full, &shown)?,
            log_index: 0,
            chunks_sent: 0,
            chunks_total: 0,
            bytes_received: received,
        })
    }

    /// Writes the body into `temp`, fsyncs it and sets its mode and mtime.
    async fn receive<S>(
        &self,
        temp: &Path,
        header: &UploadHeader,
        body: &mut S,
        shown: &str,
    ) -> Result<u64, ApiError>
    where
        S: Stream<Item = Result<Piece, ApiError>> + Unpin + Send,
    {
        let fail = |e| io_error(e, shown);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(temp)
            .map_err(fail)?;
        let mut received = 0u64;
        while let Some(piece) = body.next().await {
            match piece? {
                Piece::Data(data) => {
                    received += data.len() as u64;
                    if received > FS_FILE_BYTES_MAX {
                        return refuse(
                            Errno::EFBIG,
                            format!("{shown}: the largest file is {FS_FILE_BYTES_MAX} bytes"),
                        );
                    }
                    file.write_all(&data).map_err(fail)?;
                }
                Piece::Known(_) => {
                    return refuse(
                        Errno::EINVAL,
                        "node-local storage keeps no chunks; send the data",
                    )
                }
            }
        }
        file.sync_all().map_err(fail)?;
        file.set_permissions(fs::Permissions::from_mode(header.owner.mode & 0o7777))
            .map_err(fail)?;
        if let Some(ns) = header.mtime_ns {
            file.set_times(fs::FileTimes::new().set_modified(system_time(ns)))
                .map_err(fail)?;
        }
        Ok(received)
    }

    pub fn write(&self, target: &Target, offset: u64, data: &[u8]) -> Result<Entry, ApiError> {
        let (path, shown) = self.target(target)?;
        let fail = |e| io_error(e, &shown);
        let file = OpenOptions::new().write(true).open(&path).map_err(fail)?;
        file.write_all_at(data, offset).map_err(fail)?;
        file.sync_data().map_err(fail)?;
        self.stat_path(&path, &shown)
    }

    pub fn download(
        &self,
        target: &Target,
        (offset, length): (u64, u64),
    ) -> Result<(Entry, DownloadStream), ApiError> {
        let (path, shown) = self.target(target)?;
        let entry = self.stat_path(&path, &shown)?;
        match entry.inode.kind {
            Kind::File => {}
            Kind::Dir => return refuse(Errno::EISDIR, format!("{shown} is a directory")),
            Kind::Symlink => return refuse(Errno::EINVAL, format!("{shown} is a symlink")),
        }
        let size = entry.inode.size;
        if offset > size {
            return Err(state::Error::limit("offset", size, offset, "bytes").into());
        }
        let end = if length == 0 {
            size
        } else {
            offset.saturating_add(length).min(size)
        };
        let mut file = File::open(&path).map_err(|e| io_error(e, &shown))?;
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| io_error(e, &shown))?;
        let stream = futures::stream::unfold((Some(file), offset), move |(file, at)| async move {
            let mut file = file?;
            if at >= end {
                return None;
            }
            let want = ((end - at) as usize).min(CHUNK_BYTES_MAX);
            let read = tokio::task::spawn_blocking(move || {
                let mut buffer = BytesMut::zeroed(want);
                let n = file.read(&mut buffer)?;
                buffer.truncate(n);
                Ok::<_, std::io::Error>((file, buffer.freeze()))
            })
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r);
            match read {
                Ok((_, data)) if data.is_empty() => Some((
                    Err(std::io::Error::other("the file shrank while being read")),
                    (None, end),
                )),
                Ok((file, data)) => {
                    let next = at + data.len() as u64;
                    Some((Ok::<Bytes, std::io::Error>(data), (Some(file), next)))
                }
                Err(e) => Some((Err(e), (None, end))),
            }
        });
        Ok((entry, Box::pin(stream)))
    }
}

/// Entries under `dir`, itself included (what `rm -r` reports).
fn count_entries(dir: &Path) -> u64 {
    let mut count = 1;
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => count += count_entries(&entry.path()),
                _ => count += 1,
            }
        }
    }
    count
}
