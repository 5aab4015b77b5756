//! `cairn queue …`: queues from the command line.

use std::io::{Read, Write};
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;

use crate::client::{Client, Message, ReceiveOptions};
use crate::limits::QUEUE_MESSAGE_BYTES_MAX;

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Create a queue (succeeds if it exists).
    Create { queue: String },
    /// Delete a queue and its messages.
    Delete { queue: String },
    /// List queues with their lengths.
    List,
    /// Print the number of messages stored (visible and leased).
    Length { queue: String },
    /// Send a message; `-` reads it from stdin (binary-safe).
    Send { queue: String, message: String },
    /// Receive the head message (or up to --max): pop it, or lease it with --lease.
    Receive {
        queue: String,
        /// Lease for S seconds (at-least-once; ack the printed receipt) instead of popping.
        #[arg(long)]
        lease: Option<f64>,
        /// Wait up to S seconds (at most 20) for a message.
        #[arg(long, default_value_t = 0.0)]
        wait: f64,
        /// Receive up to N messages (at most 256) from the head in one step; each
        /// body is printed followed by a newline. The cluster may return fewer.
        #[arg(long, default_value_t = 1)]
        max: u32,
    },
    /// Acknowledge (delete) a leased message.
    Ack { queue: String, receipt: String },
    /// Remove every message.
    Purge { queue: String },
}

fn seconds(flag: &str, value: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .with_context(|| format!("--{flag} must be a non-negative number of seconds"))
}

pub async fn run(client: Client, command: QueueCommand) -> anyhow::Result<()> {
    match command {
        QueueCommand::Create { queue } => client.create_queue(&queue).await?,
        QueueCommand::Delete { queue } => client.delete_queue(&queue).await?,
        QueueCommand::List => {
            for q in client.list_queues().await? {
                println!("{}\t{}", q.name, q.length);
            }
        }
        QueueCommand::Length { queue } => println!("{}", client.queue_length(&queue).await?),
        QueueCommand::Send { queue, message } => {
            let body = read_message(&message)?;
            println!("{}", client.send(&queue, &body).await?);
        }
        QueueCommand::Receive {
            queue,
            lease,
            wait,
            max,
        } => {
            let lease = lease.map(|l| seconds("lease", l)).transpose()?;
            let options = ReceiveOptions {
                lease,
                wait: seconds("wait", wait)?,
            };
            let messages = client.receive_batch(&queue, max, options).await?;
            anyhow::ensure!(!messages.is_empty(), "queue {queue:?} is empty");
            print_messages(&messages, max > 1)?;
        }
        QueueCommand::Ack { queue, receipt } => client.ack(&queue, &receipt).await?,
        QueueCommand::Purge { queue } => println!("{}", client.purge_queue(&queue).await?),
    }
    Ok(())
}

/// Bodies on stdout (binary-safe), receipts on stderr just before their body. A
/// batch ends each body with a newline to tell them apart; a single message is
/// printed as it is.
fn print_messages(messages: &[Message], batch: bool) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    for message in messages {
        if !message.receipt.is_empty() {
            // Flushed first, so a terminal shows each receipt next to its body.
            stdout.flush()?;
            eprintln!(
                "receipt {} (delivery {})",
                message.receipt, message.delivery_count
            );
        }
        stdout.write_all(&message.body)?;
        if batch {
            stdout.write_all(b"\n")?;
        }
    }
    stdout.flush()?;
    Ok(())
}

fn read_message(message: &str) -> anyhow::Result<Vec<u8>> {
    if message != "-" {
        return Ok(message.as_bytes().to_vec());
    }
    // One byte past the limit, so the server's error names the limit.
    let mut buffer = Vec::new();
    std::io::stdin()
        .take(QUEUE_MESSAGE_BYTES_MAX * 2 + 1)
        .read_to_end(&mut buffer)?;
    Ok(buffer)
}
