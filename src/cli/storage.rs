//! `cairn storage …`: the file system from the command line, in the platform's
//! shape (`ls`, `upload`, `download`, `rm`, `mkdir`, `mv`, `du`, `stat`, `cat`,
//! `fs create|delete|list`), with `--fs NAME` everywhere (default `default`),
//! and `import` from S3-compatible storage.
//!
//! Owns argument parsing and output; tree transfers and `--rsync` live in
//! `storage_sync`, imports in `storage_import`. Every call goes through the SDK (`client::fs`).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use tokio::io::AsyncWriteExt;

use super::storage_import::{self, ImportArgs};
use super::storage_sync::{self, DownloadArgs, UploadArgs};
use crate::client::{Attr, Client, FileKind, FsClient};

#[derive(Debug, Args)]
pub struct StorageArgs {
    /// File system to use: `default`, a created one, or `local` (the first
    /// endpoint's node-local storage).
    #[arg(long, global = true, default_value = "default")]
    fs: String,
    #[command(subcommand)]
    command: StorageCommand,
}

#[derive(Debug, Subcommand)]
pub enum StorageCommand {
    /// List a directory (or show one file).
    Ls {
        /// Long format: mode, links, size, modification time (UTC), name.
        #[arg(short = 'l')]
        long: bool,
        #[arg(default_value = "/")]
        path: String,
    },
    /// Upload a file, or with -r a directory's contents, to REMOTE.
    Upload(UploadArgs),
    /// Download a file, or with -r a directory's contents, to LOCAL.
    Download(DownloadArgs),
    /// Remove a file (with -r: a directory and everything in it).
    Rm {
        #[arg(short = 'r')]
        recursive: bool,
        path: String,
    },
    /// Make a directory (with -p: and its missing parents; no error if it exists).
    Mkdir {
        #[arg(short = 'p')]
        parents: bool,
        path: String,
    },
    /// Rename FROM to TO (replacing a file or an empty directory there).
    Mv { from: String, to: String },
    /// Total size and allocated bytes under PATH.
    Du {
        #[arg(default_value = "/")]
        path: String,
    },
    /// Every attribute of PATH.
    Stat { path: String },
    /// Print a file to stdout.
    Cat { path: String },
    /// File systems: create, delete, list.
    #[command(subcommand)]
    Fs(FsCommand),
    /// Import a bucket (or a prefix of it) from S3-compatible storage (AWS S3,
    /// Cloudflare R2) into PATH; --status lists the jobs.
    Import(ImportArgs),
}

#[derive(Debug, Subcommand)]
pub enum FsCommand {
    /// Create a file system (with an optional quota in bytes).
    Create {
        name: String,
        #[arg(long, default_value_t = 0)]
        quota_bytes: u64,
    },
    /// Delete a file system and everything in it.
    Delete { name: String },
    /// List file systems with their usage and quota.
    List,
}

pub async fn run(client: Client, args: StorageArgs) -> anyhow::Result<()> {
    let fs = client.fs(&args.fs);
    match args.command {
        StorageCommand::Ls { long, path } => ls(&fs, &path, long).await,
        StorageCommand::Upload(upload) => storage_sync::upload(&fs, upload).await,
        StorageCommand::Download(download) => storage_sync::download(&fs, download).await,
        StorageCommand::Rm { recursive, path } => {
            let attr = fs.stat(&path).await?;
            if recursive {
                let removed = fs.remove_all(&path).await?;
                println!("removed {removed} entries");
            } else if attr.kind == FileKind::Dir {
                anyhow::bail!("{path} is a directory; use rm -r");
            } else {
                fs.unlink(&path).await?;
            }
            Ok(())
        }
        StorageCommand::Mkdir { parents, path } => {
            fs.mkdir(&path, 0o755, parents).await?;
            Ok(())
        }
        StorageCommand::Mv { from, to } => Ok(fs.rename(&from, &to).await?),
        StorageCommand::Du { path } => du(&fs, &path).await,
        StorageCommand::Stat { path } => {
            print!("{}", describe(&path, &fs.stat(&path).await?));
            Ok(())
        }
        StorageCommand::Cat { path } => {
            let mut out = tokio::io::stdout();
            fs.download_to(&path, (0, 0), &mut out).await?;
            out.flush().await?;
            Ok(())
        }
        StorageCommand::Fs(command) => fs_command(&client, command).await,
        StorageCommand::Import(import) => storage_import::run(&client, &args.fs, import).await,
    }
}

async fn fs_command(client: &Client, command: FsCommand) -> anyhow::Result<()> {
    match command {
        FsCommand::Create { name, quota_bytes } => Ok(client.create_fs(&name, quota_bytes).await?),
        FsCommand::Delete { name } => Ok(client.delete_fs(&name).await?),
        FsCommand::List => {
            println!(
                "{:<24} {:>16} {:>12} {:>16}",
                "NAME", "BYTES", "INODES", "QUOTA"
            );
            for info in client.list_fs().await? {
                let quota = match info.quota_bytes {
                    0 => "-".to_string(),
                    q => q.to_string(),
                };
                println!(
                    "{:<24} {:>16} {:>12} {:>16}",
                    info.name, info.bytes_used, info.inodes_used, quota
                );
            }
            Ok(())
        }
    }
}

/// `drwxr-xr-x` and friends.
pub fn mode_string(attr: &Attr) -> String {
    let kind = match attr.kind {
        FileKind::Dir => 'd',
        FileKind::Symlink => 'l',
        FileKind::File => '-',
    };
    let mut s = String::from(kind);
    for shift in [6, 3, 0] {
        let bits = (attr.mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

fn time_string(ns: i64) -> String {
    chrono::DateTime::from_timestamp(
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000) as u32,
    )
    .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
    .unwrap_or_else(|| ns.to_string())
}

fn long_line(name: &str, attr: &Attr) -> String {
    let shown = if attr.kind == FileKind::Symlink {
        format!("{name} -> {}", attr.target)
    } else {
        name.to_string()
    };
    format!(
        "{} {:>3} {:>12} {} {shown}",
        mode_string(attr),
        attr.nlink,
        attr.size,
        time_string(attr.mtime_ns)
    )
}

async fn ls(fs: &FsClient, path: &str, long: bool) -> anyhow::Result<()> {
    let attr = fs.stat(path).await?;
    if attr.kind != FileKind::Dir {
        let name = path.rsplit('/').next().unwrap_or(path);
        println!(
            "{}",
            if long {
                long_line(name, &attr)
            } else {
                name.to_string()
            }
        );
        return Ok(());
    }
    for entry in fs.list(path).await? {
        match (&entry.attr, long) {
            (Some(attr), true) => println!("{}", long_line(&entry.name, attr)),
            _ => println!("{}", entry.name),
        }
    }
    Ok(())
}

async fn du(fs: &FsClient, path: &str) -> anyhow::Result<()> {
    let tree = storage_sync::remote_tree(fs, path).await?;
    let (mut size, mut allocated, mut files) = (0u64, 0u64, 0u64);
    for attr in tree.values() {
        size += attr.size;
        allocated += attr.allocated_bytes;
        files += u64::from(attr.kind == FileKind::File);
    }
    println!("{size} bytes in {files} files ({allocated} bytes of chunks) under {path}");
    Ok(())
}

fn describe(path: &str, a: &Attr) -> String {
    let kind = match a.kind {
        FileKind::File => "file",
        FileKind::Dir => "directory",
        FileKind::Symlink => "symlink",
    };
    let mut out = format!(
        "path: {path}\nino: {}\nkind: {kind}\nmode: {:04o}\nuid: {}\ngid: {}\nsize: {}\nallocated_bytes: {}\nnlink: {}\natime_ns: {}\nmtime_ns: {}\nctime_ns: {}\nmtime: {}\nversion: {}\n",
        a.ino, a.mode, a.uid, a.gid, a.size, a.allocated_bytes, a.nlink, a.atime_ns, a.mtime_ns, a.ctime_ns, time_string(a.mtime_ns), a.version
    );
    if a.kind == FileKind::Symlink {
        out.push_str(&format!("target: {}\n", a.target));
    }
    out
}

/// Where a local path points, for messages.
pub fn shown(path: &std::path::Path) -> String {
    PathBuf::from(path).display().to_string()
}
