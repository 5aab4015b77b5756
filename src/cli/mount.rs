//! `cairn mount`: mount a file system (or a subtree of it) on a local directory.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::client::Client;
use crate::mount::MountOptions;

#[derive(Debug, Args)]
pub struct MountArgs {
    /// Where to mount ("mount as").
    pub mountpoint: PathBuf,
    /// The file system to mount.
    #[arg(long, default_value = "default")]
    pub fs: String,
    /// The directory of the file system to show as the mount's root ("mount from").
    #[arg(long, default_value = "/")]
    pub from: String,
    /// Keep file chunks in this directory (content-addressed, verified when read,
    /// kept across remounts).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Bytes the chunk cache in --cache-dir may hold.
    #[arg(long, default_value_t = 10 * 1024 * 1024 * 1024)]
    pub cache_size: u64,
    /// Bytes of file blocks the mount keeps in memory.
    #[arg(long, default_value_t = 256 * 1024 * 1024)]
    pub memory_cache_size: u64,
    /// The chunk directory (<data-dir>/chunks) of a cluster node on this machine:
    /// chunks found there are read directly, never fetched.
    #[arg(long)]
    pub node_chunks: Option<PathBuf>,
    /// Refuse every change (EROFS).
    #[arg(long)]
    pub read_only: bool,
    /// How long the kernel caches attributes and names, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub attr_timeout_ms: u64,
    /// How long a request waits for the cluster before it fails with EIO.
    #[arg(long, default_value_t = 30_000)]
    pub op_timeout_ms: u64,
    /// Let every local user use the mount (FUSE's allow_other; needs root or
    /// user_allow_other in /etc/fuse.conf). The kernel still checks permissions.
    #[arg(long)]
    pub allow_other: bool,
    /// FUSE request loops.
    #[arg(long, default_value_t = 4)]
    pub threads: usize,
    /// Stay in the foreground and log to stderr (the default and only mode; run it
    /// under a service manager or `&` to detach).
    #[arg(long)]
    pub foreground: bool,
}

pub async fn run(client: Client, args: MountArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.attr_timeout_ms <= 60_000,
        "--attr-timeout-ms is at most 60000"
    );
    anyhow::ensure!(
        args.op_timeout_ms >= 1_000,
        "--op-timeout-ms is at least 1000"
    );
    anyhow::ensure!((1..=64).contains(&args.threads), "--threads is 1 to 64");
    crate::mount::run(
        client,
        MountOptions {
            fs: args.fs,
            from: args.from,
            mountpoint: args.mountpoint,
            memory_cache_bytes: args.memory_cache_size,
            cache_dir: args.cache_dir,
            cache_bytes: args.cache_size,
            node_chunks: args.node_chunks,
            read_only: args.read_only,
            attr_timeout: Duration::from_millis(args.attr_timeout_ms),
            op_timeout: Duration::from_millis(args.op_timeout_ms),
            allow_other: args.allow_other,
            threads: args.threads,
        },
    )
    .await
}
