//! `cairn admin`: operator tasks. `init-secret`, `verify` and `restore` work on
//! local files (no cluster call; `restore` wants no node running on its
//! directory); `probe` is a container health check (`admin_probe`); `backup`
//! streams a backup from one node over gRPC.
//!
//! `backup` writes the stream to a temp file beside FILE, fsyncs it, verifies it
//! as `verify` would, and only then renames it over FILE (and fsyncs the
//! directory): FILE is always either the previous file or a complete backup.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;

use super::Connection;
use crate::client::ReadConsistency;
use crate::config::Config;
use crate::durable;
use crate::peer_tls;
use crate::raft::restore::{self, RestoreTarget};
use crate::raft::types::NodeAddr;
use crate::state::backup::{Manifest, Summary};

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Write a new random cluster secret (mode 0600) for `--cluster-secret-file`.
    /// Every node of one cluster needs a copy of the same file.
    InitSecret {
        /// Where to write it; refused if it exists (unless --if-missing).
        file: PathBuf,
        /// Keep an existing file and exit 0 (for a container's first start).
        #[arg(long)]
        if_missing: bool,
    },
    /// GET a path on a node's HTTP port (plain HTTP) and exit 0 on a 2xx answer,
    /// 1 otherwise: a health check for images without curl.
    Probe {
        /// The node's HTTP address.
        #[arg(long, default_value = "127.0.0.1:7480")]
        addr: String,
        /// What to GET: /healthz (the process serves) or /readyz (ready for traffic).
        #[arg(long, default_value = "/healthz")]
        path: String,
    },
    /// Stream a point-in-time backup of the whole cluster's state and data from
    /// the first of `--endpoints` (any node; needs a token) into FILE.
    Backup {
        /// Where to write the backup (replaced atomically once complete).
        #[arg(long)]
        to: PathBuf,
        /// Copy what the node has applied, without asking the leader (for a
        /// cluster without a leader). Default: every write acknowledged before.
        #[arg(long)]
        stale: bool,
    },
    /// Check a backup file's structure and every checksum (no server needed).
    Verify { file: PathBuf },
    /// Seed a new single-node cluster from a backup file (offline: start
    /// `cairn server` on the directory afterwards, with the same addresses).
    Restore {
        file: PathBuf,
        /// The new node's data directory: must not exist or be empty.
        #[arg(long)]
        data_dir: PathBuf,
        /// The new node's id (start the server with the same `--id`).
        #[arg(long, default_value_t = 1)]
        node_id: u64,
        /// The new node's client gRPC address, as it will serve it.
        #[arg(long, default_value = "127.0.0.1:7400")]
        grpc_addr: String,
        /// The new node's HTTP address.
        #[arg(long, default_value = "127.0.0.1:7480")]
        http_addr: String,
        /// The new node's peer address [default: gRPC port + 1].
        #[arg(long)]
        peer_addr: Option<String>,
    },
}

pub(super) async fn run(command: AdminCommand, connection: &Connection) -> anyhow::Result<()> {
    match command {
        AdminCommand::InitSecret { file, if_missing } => {
            if if_missing && file.exists() {
                println!("keeping the cluster secret {}", file.display());
                return Ok(());
            }
            peer_tls::create_secret(&file)
                .with_context(|| format!("creating {}", file.display()))?;
            println!(
                "wrote a new cluster secret to {} (mode 0600); copy it to every node and start each with --cluster-secret-file",
                file.display()
            );
            Ok(())
        }
        AdminCommand::Probe { addr, path } => super::admin_probe::run(&addr, &path),
        AdminCommand::Backup { to, stale } => backup(connection, &to, stale).await,
        AdminCommand::Verify { file } => {
            let summary =
                tokio::task::spawn_blocking(move || restore::verify_file(&file)).await??;
            println!("ok: a complete backup, every checksum matches");
            print_summary(&summary);
            Ok(())
        }
        AdminCommand::Restore {
            file,
            data_dir,
            node_id,
            grpc_addr,
            http_addr,
            peer_addr,
        } => {
            let config = Config {
                grpc_addr,
                http_addr,
                peer_addr,
                ..Config::default()
            };
            let target = RestoreTarget {
                data_dir: data_dir.clone(),
                node_id,
                addr: NodeAddr {
                    peer_addr: config.peer_addr().map_err(anyhow::Error::msg)?,
                    grpc_addr: config.grpc_addr,
                    http_addr: config.http_addr,
                },
            };
            let addr = target.addr.clone();
            let summary =
                tokio::task::spawn_blocking(move || restore::restore(&file, &target)).await??;
            println!(
                "restored into {} as node {node_id} of a new single-node cluster",
                data_dir.display()
            );
            print_summary(&summary);
            println!(
                "start it with: cairn server --id {node_id} --data-dir {} --grpc-addr {} --http-addr {} --peer-addr {} --peers {node_id}={} --cluster-secret-file FILE",
                data_dir.display(),
                addr.grpc_addr,
                addr.http_addr,
                addr.peer_addr,
                addr.peer_addr
            );
            Ok(())
        }
    }
}

/// Streams a backup into a temp file beside `to`, syncs and verifies it, then
/// renames it into place.
async fn backup(connection: &Connection, to: &Path, stale: bool) -> anyhow::Result<()> {
    let endpoint = connection
        .endpoints
        .first()
        .context("no endpoint to back up from (--endpoints)")?
        .clone();
    let client = super::client(connection)?;
    let to = std::path::absolute(to).with_context(|| format!("resolving {}", to.display()))?;
    let (dir, name) = match (to.parent(), to.file_name()) {
        (Some(dir), Some(name)) => (dir.to_path_buf(), name.to_string_lossy().into_owned()),
        _ => anyhow::bail!("{} names no file", to.display()),
    };
    let temp = dir.join(format!(".{name}.partial-{:08x}", rand::random::<u32>()));
    let consistency = if stale {
        ReadConsistency::Stale
    } else {
        ReadConsistency::Linearizable
    };
    let written = receive(&client, &endpoint, consistency, &temp).await;
    let result = match written {
        Ok(()) => {
            let (temp, to) = (temp.clone(), to.clone());
            tokio::task::spawn_blocking(move || -> anyhow::Result<Summary> {
                let summary = restore::verify_file(&temp)
                    .context("the backup received does not verify; nothing was written")?;
                durable::rename(&temp, &to)
                    .with_context(|| format!("renaming the backup to {}", to.display()))?;
                Ok(summary)
            })
            .await?
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(summary) => {
            println!("backup from {endpoint} written to {}", to.display());
            print_summary(&summary);
            Ok(())
        }
        Err(e) => {
            if let Err(cleanup) = std::fs::remove_file(&temp) {
                if cleanup.kind() != std::io::ErrorKind::NotFound {
                    eprintln!("warning: could not remove {}: {cleanup}", temp.display());
                }
            }
            Err(e)
        }
    }
}

/// Writes every piece of the stream to `temp`, then fsyncs it.
async fn receive(
    client: &crate::client::Client,
    endpoint: &str,
    consistency: ReadConsistency,
    temp: &Path,
) -> anyhow::Result<()> {
    let mut stream = client
        .backup(endpoint, consistency)
        .await
        .with_context(|| format!("asking {endpoint} for a backup"))?;
    let file =
        std::fs::File::create(temp).with_context(|| format!("creating {}", temp.display()))?;
    let mut out = std::io::BufWriter::new(file);
    while let Some(piece) = stream
        .next_piece()
        .await
        .with_context(|| format!("the backup stream from {endpoint} broke"))?
    {
        out.write_all(&piece)
            .with_context(|| format!("writing {}", temp.display()))?;
    }
    let file = out
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("writing {}", temp.display()))?;
    file.sync_all()
        .with_context(|| format!("syncing {}", temp.display()))?;
    Ok(())
}

fn print_summary(summary: &Summary) {
    let m: &Manifest = &summary.manifest;
    let created = chrono::DateTime::from_timestamp_millis(m.created_ms as i64)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| m.created_ms.to_string());
    println!(
        "  made by node {} of workspace {} at log index {} (term {}), {created}, cairn {}",
        m.node_id, m.workspace_id, m.applied.index, m.applied.term, m.cairn_version
    );
    println!("  {} state records:", m.state_records);
    for (kind, count) in &m.counts {
        println!("    {kind:<20} {count}");
    }
    println!(
        "  {} chunks, {} bytes of chunk data",
        m.chunks, m.chunk_bytes
    );
    println!(
        "  {} bytes in the file (format version {})",
        summary.file_bytes, m.format_version
    );
}
