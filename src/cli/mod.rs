//! The `cairn` command: one subcommand group per file.
//!
//! Data commands go through `crate::client`; only `server` wires `raft` and `api`
//! together. Errors print one line on stderr and exit non-zero (see `main.rs`).

pub mod admin;
pub mod admin_probe;
pub mod bench;
#[cfg(feature = "etcd-bench")]
mod bench_etcd;
#[cfg(feature = "nats-bench")]
mod bench_nats;
pub mod bench_object;
pub mod bench_queue;
pub mod cluster;
pub mod kv;
pub mod logging;
pub mod mount;
pub mod object;
pub mod proc_cpu;
pub mod queue;
pub mod server;
pub mod server_config;
pub mod storage;
mod storage_import;
mod storage_sync;
pub mod token;

use clap::{Parser, Subcommand};

use anyhow::Context;

use crate::client::Client;

#[derive(Debug, Parser)]
#[command(
    name = "cairn",
    version,
    about = "A Raft-replicated storage cluster: files, objects, key-value and queues"
)]
pub struct Cli {
    /// gRPC addresses of any cluster nodes, comma-separated.
    #[arg(
        long,
        global = true,
        env = "CAIRN_ENDPOINTS",
        default_value = "127.0.0.1:7400",
        value_delimiter = ','
    )]
    pub endpoints: Vec<String>,
    /// API token sent with every call (needed once the cluster has tokens).
    #[arg(long, global = true, env = "CAIRN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Speak TLS to the nodes, trusting this CA certificate (PEM).
    #[arg(long, global = true, env = "CAIRN_CA")]
    pub ca: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a cluster node.
    Server(Box<server::ServerArgs>),
    /// Key-value store: namespaces and keys.
    #[command(subcommand)]
    Kv(kv::KvCommand),
    /// Queues: send, receive (pop or lease/ack), length.
    #[command(subcommand)]
    Queue(queue::QueueCommand),
    /// File systems: upload, download, ls, rm, mkdir, mv, du, stat, cat, fs.
    Storage(storage::StorageArgs),
    /// Mount a file system on a local directory (FUSE).
    Mount(mount::MountArgs),
    /// Object storage: objects, buckets and presigned URLs.
    #[command(subcommand)]
    Object(object::ObjectCommand),
    /// API tokens: create, list, revoke.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Cluster status and membership.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Load generators.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Operator tasks: cluster secret, backup, verify, restore.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
}

/// How the CLI reaches the cluster.
struct Connection {
    endpoints: Vec<String>,
    token: Option<String>,
    ca: Option<std::path::PathBuf>,
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let command = cli.command;
    let cli = &Connection {
        endpoints: cli.endpoints,
        token: cli.token,
        ca: cli.ca,
    };
    match command {
        Command::Server(args) => server::run(*args).await,
        Command::Kv(command) => kv::run(client(cli)?, command).await,
        Command::Queue(command) => queue::run(client(cli)?, command).await,
        Command::Object(command) => object::run(client(cli)?, command).await,
        Command::Storage(args) => storage::run(client(cli)?, args).await,
        Command::Mount(args) => mount::run(client(cli)?, args).await,
        Command::Token(command) => token::run(client(cli)?, command).await,
        Command::Cluster(command) => cluster::run(client(cli)?, command).await,
        Command::Bench(command) => {
            // The load generators build their own clients, without TLS.
            anyhow::ensure!(
                cli.ca.is_none(),
                "cairn bench does not speak TLS: run it against listeners without --tls-cert"
            );
            bench::run(&cli.endpoints, cli.token.as_deref(), command).await
        }
        Command::Admin(command) => admin::run(command, cli).await,
    }
}

fn client(cli: &Connection) -> anyhow::Result<Client> {
    let mut client = Client::connect(cli.endpoints.iter().cloned())?;
    if let Some(ca) = &cli.ca {
        let pem = std::fs::read(ca)
            .with_context(|| format!("reading the CA certificate {}", ca.display()))?;
        client = client.with_ca(&pem);
    }
    Ok(match &cli.token {
        Some(token) => client.with_token(token)?,
        None => client,
    })
}
