//! Moving trees between a local directory and a file system: `upload [-r] [-p]
//! [--rsync] [--delete]` and `download [-r]`.
//!
//! A tree upload puts LOCAL's contents under REMOTE: directories first (empty ones
//! included), then files, up to `TRANSFERS_IN_FLIGHT_MAX` at once, then symlinks,
//! then (with `-p`) directory modes and mtimes, deepest first, so writing into a
//! directory does not move its mtime again. `--rsync` (which implies `-r -p`)
//! skips files whose size and mtime (ns) match the remote ones; a file that
//! differs is cut into 1 MiB chunks and hashed, the cluster is asked which chunks
//! it lacks, and only those travel as data; the others are named by hash. Staged
//! chunks of an interrupted run count as held, so a rerun resumes. `--delete`
//! removes remote entries that are not in LOCAL.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bytes::BytesMut;
use clap::Args;
use futures::stream::{self, StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::io::AsyncReadExt;

use crate::chunk_ref::ChunkRef;
use crate::client::{Attr, Errno, FileKind, FsClient, SetAttrs, UploadOptions, UploadPiece};
use crate::limits::CHUNK_BYTES_MAX;

/// Files one tree transfer moves at once.
const TRANSFERS_IN_FLIGHT_MAX: usize = 64;

#[derive(Debug, Args)]
pub struct UploadArgs {
    local: PathBuf,
    remote: String,
    /// A directory's contents, recursively.
    #[arg(short = 'r')]
    recursive: bool,
    /// Keep modes and modification times.
    #[arg(short = 'p')]
    preserve: bool,
    /// Incremental: send only files that changed, and of those only the chunks the
    /// cluster lacks (implies -r and -p).
    #[arg(long)]
    rsync: bool,
    /// With --rsync: remove remote entries that are not in LOCAL.
    #[arg(long, requires = "rsync")]
    delete: bool,
}

#[derive(Debug, Args)]
pub struct DownloadArgs {
    remote: String,
    local: PathBuf,
    /// A directory's contents, recursively.
    #[arg(short = 'r')]
    recursive: bool,
}

/// One entry of a local tree, relative to its root.
#[derive(Debug, Clone)]
enum Local {
    Dir { mode: u32, mtime_ns: i64 },
    File { size: u64, mode: u32, mtime_ns: i64 },
    Symlink { target: String },
}

fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    meta.mtime() * 1_000_000_000 + meta.mtime_nsec()
}

fn utf8(path: &Path) -> anyhow::Result<String> {
    path.to_str()
        .map(str::to_string)
        .with_context(|| format!("{} is not UTF-8; cairn names are UTF-8", path.display()))
}

/// Every entry under `root`, keyed by its relative path ("a/b"), parents first.
fn local_tree(root: &Path) -> anyhow::Result<BTreeMap<String, Local>> {
    let mut out = BTreeMap::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        let dir = root.join(&rel);
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .collect::<Result<_, _>>()?;
        names.sort_by_key(|e| e.file_name());
        for entry in names {
            let child = rel.join(entry.file_name());
            let key = utf8(&child)?;
            let meta = std::fs::symlink_metadata(root.join(&child))?;
            let kind = meta.file_type();
            let item = if kind.is_symlink() {
                let target = std::fs::read_link(root.join(&child))?;
                Local::Symlink {
                    target: utf8(&target)?,
                }
            } else if kind.is_dir() {
                pending.push(child);
                Local::Dir {
                    mode: meta.permissions().mode() & 0o7777,
                    mtime_ns: mtime_ns(&meta),
                }
            } else if kind.is_file() {
                Local::File {
                    size: meta.len(),
                    mode: meta.permissions().mode() & 0o7777,
                    mtime_ns: mtime_ns(&meta),
                }
            } else {
                eprintln!(
                    "skipping {} (not a file, directory or symlink)",
                    root.join(&child).display()
                );
                continue;
            };
            out.insert(key, item);
        }
    }
    Ok(out)
}

fn join(remote: &str, rel: &str) -> String {
    let base = remote.trim_end_matches('/');
    if rel.is_empty() {
        if base.is_empty() {
            "/".into()
        } else {
            base.to_string()
        }
    } else {
        format!("{base}/{rel}")
    }
}

/// Every entry under remote directory `root` (relative paths → attributes); empty
/// if `root` does not exist.
pub async fn remote_tree(fs: &FsClient, root: &str) -> anyhow::Result<BTreeMap<String, Attr>> {
    let mut out = BTreeMap::new();
    match fs.stat(root).await {
        Ok(attr) if attr.kind == FileKind::Dir => {}
        Ok(attr) => {
            out.insert(String::new(), attr);
            return Ok(out);
        }
        Err(e) if e.errno() == Some(Errno::ENOENT) => return Ok(out),
        Err(e) => return Err(e.into()),
    }
    let mut pending = vec![String::new()];
    while let Some(rel) = pending.pop() {
        for entry in fs.list(&join(root, &rel)).await? {
            let child = if rel.is_empty() {
                entry.name.clone()
            } else {
                format!("{rel}/{}", entry.name)
            };
            if entry.kind == FileKind::Dir {
                pending.push(child.clone());
            }
            if let Some(attr) = entry.attr {
                out.insert(child, attr);
            }
        }
    }
    Ok(out)
}

/// What an upload run did.
#[derive(Debug, Default)]
struct Report {
    files_sent: AtomicU64,
    bytes_sent: AtomicU64,
    chunks_sent: AtomicU64,
    skipped: AtomicU64,
    deleted: AtomicU64,
}

fn progress_bar(total_bytes: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() || total_bytes == 0 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{bytes:>10} / {total_bytes} [{wide_bar}] {binary_bytes_per_sec} eta {eta}",
    )
    .expect("the progress template is valid")
    .progress_chars("=> ");
    bar.set_style(style);
    bar
}

/// Reads `path` as whole chunks (the last may be short), hashing each.
async fn chunk_refs(path: PathBuf) -> anyhow::Result<Vec<ChunkRef>> {
    tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<ChunkRef>> {
        let mut file =
            std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let mut refs = Vec::new();
        let mut buffer = vec![0u8; CHUNK_BYTES_MAX];
        loop {
            let n = read_full(&mut file, &mut buffer)?;
            if n == 0 {
                return Ok(refs);
            }
            refs.push(ChunkRef::of(&buffer[..n]));
            if n < CHUNK_BYTES_MAX {
                return Ok(refs);
            }
        }
    })
    .await?
}

fn read_full(file: &mut impl std::io::Read, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// The body of a file upload: chunk `i` is sent as data unless `known[i]` names a
/// chunk the cluster holds. Buffers are sized by the file's expected `size` (a small
/// file does not cost a 1 MiB allocation) and grow if it grew.
fn file_pieces(
    path: PathBuf,
    size: u64,
    known: Arc<Vec<Option<ChunkRef>>>,
    bar: ProgressBar,
) -> impl futures::Stream<Item = UploadPiece> + Send {
    stream::unfold(
        (None::<tokio::fs::File>, 0usize, false),
        move |(file, index, done)| {
            let (path, known, bar) = (path.clone(), known.clone(), bar.clone());
            async move {
                if done {
                    return None;
                }
                let mut file = match file {
                    Some(f) => f,
                    None => tokio::fs::File::open(&path).await.ok()?,
                };
                let expected = size.saturating_sub((index * CHUNK_BYTES_MAX) as u64);
                // One byte more than expected, so a grown file shows without a realloc.
                let capacity = (expected.saturating_add(1)).min(CHUNK_BYTES_MAX as u64);
                let mut buffer = BytesMut::with_capacity(capacity as usize);
                while buffer.len() < CHUNK_BYTES_MAX {
                    let room = (CHUNK_BYTES_MAX - buffer.len()) as u64;
                    match (&mut file).take(room).read_buf(&mut buffer).await {
                        Ok(0) => break,
                        Ok(_) => {}
                        // A read error shows as a short upload: the size check catches it.
                        Err(_) => return None,
                    }
                }
                let filled = buffer.len();
                if filled == 0 {
                    return None;
                }
                bar.inc(filled as u64);
                let last = filled < CHUNK_BYTES_MAX;
                let piece = match known.get(index).copied().flatten() {
                    Some(chunk) if chunk.len as usize == filled => UploadPiece::Chunk(chunk),
                    _ => UploadPiece::Data(buffer.freeze()),
                };
                Some((piece, (Some(file), index + 1, last)))
            }
        },
    )
}

/// Uploads one local file to `remote`; with `incremental`, only chunks the cluster
/// lacks travel as data.
async fn upload_file(
    fs: &FsClient,
    (local, remote): (&Path, &str),
    (size, options): (u64, &UploadOptions),
    incremental: bool,
    (report, bar): (&Report, &ProgressBar),
) -> anyhow::Result<()> {
    let known: Vec<Option<ChunkRef>> = if incremental && size > 0 {
        let refs = chunk_refs(local.to_path_buf()).await?;
        let missing: BTreeSet<u32> = fs.missing_chunks(&refs).await?.into_iter().collect();
        refs.iter()
            .enumerate()
            .map(|(i, r)| (!missing.contains(&(i as u32))).then_some(*r))
            .collect()
    } else {
        Vec::new()
    };
    let known = Arc::new(known);
    let path = local.to_path_buf();
    let bar = bar.clone();
    let uploaded = fs
        .upload_from(remote, options, size, move || {
            let body = file_pieces(path.clone(), size, known.clone(), bar.clone());
            async move { Some(body) }
        })
        .await
        .with_context(|| format!("uploading {}", local.display()))?;
    if uploaded.attr.size != size {
        anyhow::bail!(
            "{} changed while uploading: sent {} of {size} bytes",
            local.display(),
            uploaded.attr.size
        );
    }
    report.files_sent.fetch_add(1, Ordering::Relaxed);
    report
        .bytes_sent
        .fetch_add(uploaded.bytes_sent, Ordering::Relaxed);
    report
        .chunks_sent
        .fetch_add(uploaded.chunks_sent, Ordering::Relaxed);
    Ok(())
}

fn file_options(preserve: bool, mode: u32, mtime: i64) -> UploadOptions {
    UploadOptions {
        parents: true,
        mode: if preserve { mode } else { 0o644 },
        mtime_ns: preserve.then_some(mtime),
        ..Default::default()
    }
}

pub async fn upload(fs: &FsClient, args: UploadArgs) -> anyhow::Result<()> {
    let meta = std::fs::metadata(&args.local)
        .with_context(|| format!("reading {}", args.local.display()))?;
    let recursive = args.recursive || args.rsync;
    let preserve = args.preserve || args.rsync;
    let report = Report::default();
    if !meta.is_dir() {
        // One file: to REMOTE, or into REMOTE if that is a directory.
        let remote = match fs.stat(&args.remote).await {
            Ok(a) if a.kind == FileKind::Dir => {
                let name = args.local.file_name().context("the file has no name")?;
                join(&args.remote, &utf8(Path::new(name))?)
            }
            _ => args.remote.clone(),
        };
        let skip = args.rsync
            && matches!(fs.stat(&remote).await, Ok(a) if a.kind == FileKind::File && a.size == meta.len() && a.mtime_ns == mtime_ns(&meta));
        if skip {
            report.skipped.fetch_add(1, Ordering::Relaxed);
        } else {
            let bar = progress_bar(meta.len());
            let options = file_options(
                preserve,
                meta.permissions().mode() & 0o7777,
                mtime_ns(&meta),
            );
            upload_file(
                fs,
                (&args.local, &remote),
                (meta.len(), &options),
                args.rsync,
                (&report, &bar),
            )
            .await?;
            bar.finish_and_clear();
        }
        print_report(&report);
        return Ok(());
    }
    if !recursive {
        anyhow::bail!("{} is a directory; use -r", args.local.display());
    }
    let local = local_tree(&args.local)?;
    let remote = if args.rsync {
        remote_tree(fs, &args.remote).await?
    } else {
        BTreeMap::new()
    };
    fs.mkdir(&args.remote, 0o755, true).await?;
    // Directories, parents first (the map is ordered by path, so "a" before "a/b").
    for (rel, item) in &local {
        if let Local::Dir { mode, .. } = item {
            let path = join(&args.remote, rel);
            match remote.get(rel) {
                Some(a) if a.kind == FileKind::Dir => {}
                Some(_) => {
                    fs.remove_all(&path).await?;
                    fs.mkdir(&path, if preserve { *mode } else { 0o755 }, true)
                        .await?;
                }
                None => {
                    fs.mkdir(&path, if preserve { *mode } else { 0o755 }, true)
                        .await?;
                }
            }
        }
    }
    // Files, in parallel. A skipped file whose mode alone changed gets the new mode.
    let mut modes: Vec<(String, u32)> = Vec::new();
    let files: Vec<(String, u64, u32, i64)> = local
        .iter()
        .filter_map(|(rel, item)| match item {
            Local::File {
                size,
                mode,
                mtime_ns,
            } => Some((rel.clone(), *size, *mode, *mtime_ns)),
            _ => None,
        })
        .filter(|(rel, size, mode, mtime)| match remote.get(rel) {
            Some(a) if a.kind == FileKind::File && a.size == *size && a.mtime_ns == *mtime => {
                report.skipped.fetch_add(1, Ordering::Relaxed);
                if a.mode & 0o7777 != *mode {
                    modes.push((rel.clone(), *mode));
                }
                false
            }
            _ => true,
        })
        .collect();
    for (rel, mode) in modes {
        let set = SetAttrs {
            mode: Some(mode),
            ..Default::default()
        };
        fs.set_attr(&join(&args.remote, &rel), &set).await?;
    }
    let bar = progress_bar(files.iter().map(|f| f.1).sum());
    stream::iter(files.into_iter().map(|(rel, size, mode, mtime)| {
        let (report, bar, remote_map) = (&report, &bar, &remote);
        let local_path = args.local.join(&rel);
        let remote_path = join(&args.remote, &rel);
        async move {
            if matches!(remote_map.get(&rel), Some(a) if a.kind != FileKind::File) {
                fs.remove_all(&remote_path).await?;
            }
            let options = file_options(preserve, mode, mtime);
            upload_file(
                fs,
                (&local_path, &remote_path),
                (size, &options),
                args.rsync,
                (report, bar),
            )
            .await
        }
    }))
    .buffer_unordered(TRANSFERS_IN_FLIGHT_MAX)
    .try_collect::<Vec<()>>()
    .await?;
    bar.finish_and_clear();
    // Symlinks.
    for (rel, item) in &local {
        if let Local::Symlink { target } = item {
            let path = join(&args.remote, rel);
            match remote.get(rel) {
                Some(a) if a.kind == FileKind::Symlink && &a.target == target => {
                    report.skipped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Some(_) => {
                    fs.remove_all(&path).await?;
                }
                None => {}
            }
            match fs.symlink(target, &path).await {
                Err(e) if e.errno() == Some(Errno::EEXIST) && !args.rsync => {
                    fs.unlink(&path).await?;
                    fs.symlink(target, &path).await?;
                }
                other => {
                    other?;
                }
            }
        }
    }
    if args.delete {
        // Remote entries not in LOCAL; an absent directory goes with its contents.
        // Entries under a path whose kind changed went when it was replaced.
        let replaced = |rel: &str| {
            rel.match_indices('/').any(|(i, _)| {
                matches!(local.get(&rel[..i]), Some(item) if !matches!(item, Local::Dir { .. }))
            })
        };
        let mut gone: Vec<&String> = Vec::new();
        for rel in remote.keys() {
            if local.contains_key(rel)
                || replaced(rel)
                || gone.iter().any(|g| rel.starts_with(&format!("{g}/")))
            {
                continue;
            }
            gone.push(rel);
        }
        for rel in gone {
            fs.remove_all(&join(&args.remote, rel)).await?;
            report.deleted.fetch_add(1, Ordering::Relaxed);
        }
    }
    if preserve {
        // Directory modes and mtimes, deepest first.
        for (rel, item) in local.iter().rev() {
            if let Local::Dir { mode, mtime_ns } = item {
                let set = SetAttrs {
                    mode: Some(*mode),
                    mtime_ns: Some(*mtime_ns),
                    ..Default::default()
                };
                fs.set_attr(&join(&args.remote, rel), &set).await?;
            }
        }
    }
    print_report(&report);
    Ok(())
}

fn print_report(report: &Report) {
    let chunks = report.chunks_sent.load(Ordering::Relaxed);
    println!(
        "sent {} files, {} bytes ({chunks} chunks); skipped {} files; deleted {} entries",
        report.files_sent.load(Ordering::Relaxed),
        report.bytes_sent.load(Ordering::Relaxed),
        report.skipped.load(Ordering::Relaxed),
        report.deleted.load(Ordering::Relaxed),
    );
}

fn system_time(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

/// Sets a local file's or directory's mode and mtime.
fn keep_attrs(path: &Path, attr: &Attr) -> anyhow::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(attr.mode & 0o7777))?;
    let file = std::fs::File::open(path)?;
    file.set_times(
        std::fs::FileTimes::new()
            .set_modified(system_time(attr.mtime_ns))
            .set_accessed(system_time(attr.atime_ns)),
    )?;
    Ok(())
}

/// Downloads one remote file to `local`, through a temp file renamed into place.
async fn download_file(
    fs: &FsClient,
    remote: &str,
    local: &Path,
    attr: &Attr,
) -> anyhow::Result<()> {
    let name = local
        .file_name()
        .context("a download target needs a file name")?;
    let temp = local.with_file_name(format!(".{}.cairn-part", name.to_string_lossy()));
    let mut file = tokio::fs::File::create(&temp)
        .await
        .with_context(|| format!("creating {}", temp.display()))?;
    fs.download_to(remote, (0, 0), &mut file)
        .await
        .with_context(|| format!("downloading {remote}"))?;
    file.sync_all().await?;
    drop(file);
    tokio::fs::rename(&temp, local).await?;
    keep_attrs(local, attr)
}

pub async fn download(fs: &FsClient, args: DownloadArgs) -> anyhow::Result<()> {
    let top = fs.stat(&args.remote).await?;
    if top.kind != FileKind::Dir {
        let local = if args.local.is_dir() {
            let name = args.remote.rsplit('/').next().unwrap_or("file");
            args.local.join(name)
        } else {
            args.local.clone()
        };
        download_file(fs, &args.remote, &local, &top).await?;
        println!("received 1 files, {} bytes", top.size);
        return Ok(());
    }
    if !args.recursive {
        anyhow::bail!("{} is a directory; use -r", args.remote);
    }
    let tree = remote_tree(fs, &args.remote).await?;
    std::fs::create_dir_all(&args.local)?;
    for (rel, attr) in &tree {
        if attr.kind == FileKind::Dir {
            std::fs::create_dir_all(args.local.join(rel))?;
        }
    }
    let files: Vec<(&String, &Attr)> = tree
        .iter()
        .filter(|(_, a)| a.kind == FileKind::File)
        .collect();
    let bytes: u64 = files.iter().map(|(_, a)| a.size).sum();
    let count = files.len();
    stream::iter(files.into_iter().map(|(rel, attr)| {
        let remote = join(&args.remote, rel);
        let local = args.local.join(rel);
        async move { download_file(fs, &remote, &local, attr).await }
    }))
    .buffer_unordered(TRANSFERS_IN_FLIGHT_MAX)
    .try_collect::<Vec<()>>()
    .await?;
    for (rel, attr) in &tree {
        if attr.kind == FileKind::Symlink {
            let path = args.local.join(rel);
            let _ = std::fs::remove_file(&path);
            std::os::unix::fs::symlink(&attr.target, &path)?;
        }
    }
    // Directory modes and mtimes last, deepest first.
    for (rel, attr) in tree.iter().rev() {
        if attr.kind == FileKind::Dir {
            keep_attrs(&args.local.join(rel), attr)?;
        }
    }
    keep_attrs(&args.local, &top)?;
    println!("received {count} files, {bytes} bytes");
    Ok(())
}
