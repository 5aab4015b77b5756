//! `cairn kv …`: namespaces and keys from the command line.

use std::io::{Read, Write};
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;

use crate::client::{Client, ListOptions, PutOptions, ReadConsistency};
use crate::limits::KV_VALUE_BYTES_MAX;

#[derive(Debug, Subcommand)]
pub enum KvCommand {
    /// Create a namespace (fails if it exists).
    Create { namespace: String },
    /// Delete a namespace and all its keys.
    Delete { namespace: String },
    /// List namespaces.
    List,
    /// Put a value; `-` reads it from stdin (binary-safe).
    Put {
        namespace: String,
        key: String,
        value: String,
        /// Expire the key after this many seconds.
        #[arg(long)]
        ttl: Option<f64>,
        /// Only if the current version is V (compare-and-swap).
        #[arg(long, conflicts_with = "if_absent")]
        if_version: Option<u64>,
        /// Only if the key does not exist.
        #[arg(long)]
        if_absent: bool,
    },
    /// Print a value (raw bytes on stdout).
    Get {
        namespace: String,
        key: String,
        /// Answer from the contacted node's state at once (may be behind).
        #[arg(long)]
        stale: bool,
        /// Print the version on stderr.
        #[arg(long)]
        show_version: bool,
    },
    /// Delete a key (succeeds if it is already gone).
    Rm { namespace: String, key: String },
    /// List keys, one per line.
    Keys {
        namespace: String,
        #[arg(long, default_value = "")]
        prefix: String,
        /// Stop after N keys (default: all).
        #[arg(long)]
        limit: Option<u64>,
    },
}

pub async fn run(client: Client, command: KvCommand) -> anyhow::Result<()> {
    match command {
        KvCommand::Create { namespace } => client.create_namespace(&namespace).await?,
        KvCommand::Delete { namespace } => client.delete_namespace(&namespace).await?,
        KvCommand::List => {
            for ns in client.list_namespaces().await? {
                println!("{}", ns.name);
            }
        }
        KvCommand::Put {
            namespace,
            key,
            value,
            ttl,
            if_version,
            if_absent,
        } => {
            let value = read_value(&value)?;
            let ttl = ttl
                .map(Duration::try_from_secs_f64)
                .transpose()
                .context("--ttl must be a positive number")?;
            let options = PutOptions {
                ttl,
                if_version,
                if_absent,
            };
            let version = client
                .put_with(&namespace, key.as_bytes(), &value, options)
                .await?;
            println!("{version}");
        }
        KvCommand::Get {
            namespace,
            key,
            stale,
            show_version,
        } => {
            let consistency = if stale {
                ReadConsistency::Stale
            } else {
                ReadConsistency::Linearizable
            };
            let value = client
                .get_with(&namespace, key.as_bytes(), consistency)
                .await?
                .ok_or_else(|| {
                    anyhow::anyhow!("key {key:?} not found in namespace {namespace:?}")
                })?;
            if show_version {
                eprintln!("version {}", value.version);
            }
            std::io::stdout().write_all(&value.value)?;
        }
        KvCommand::Rm { namespace, key } => {
            client.delete(&namespace, key.as_bytes()).await?;
        }
        KvCommand::Keys {
            namespace,
            prefix,
            limit,
        } => list_keys(&client, &namespace, prefix, limit).await?,
    }
    Ok(())
}

fn read_value(value: &str) -> anyhow::Result<Vec<u8>> {
    if value != "-" {
        return Ok(value.as_bytes().to_vec());
    }
    // Read one byte past the limit so an oversized value reaches the server and
    // gets its error naming the limit, without reading unbounded input.
    let mut buffer = Vec::new();
    std::io::stdin()
        .take(KV_VALUE_BYTES_MAX * 2 + 1)
        .read_to_end(&mut buffer)?;
    Ok(buffer)
}

async fn list_keys(
    client: &Client,
    namespace: &str,
    prefix: String,
    limit: Option<u64>,
) -> anyhow::Result<()> {
    let mut options = ListOptions {
        prefix: prefix.into_bytes(),
        ..Default::default()
    };
    let mut remaining = limit.unwrap_or(u64::MAX);
    let mut out = std::io::stdout().lock();
    while remaining > 0 {
        options.limit = remaining.min(1000) as u32;
        let page = client.list_keys(namespace, &options).await?;
        for key in &page.keys {
            out.write_all(key)?;
            out.write_all(b"\n")?;
        }
        remaining = remaining.saturating_sub(page.keys.len() as u64);
        match page.next_cursor {
            Some(cursor) => options.cursor = cursor,
            None => break,
        }
    }
    Ok(())
}
