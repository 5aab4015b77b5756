//! `cairn cluster …`: status and online membership changes.

use clap::Subcommand;
use serde_json::json;

use crate::client::Client;

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Members with role, term, last log index and applied index.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Add a node as a learner (it starts receiving the log).
    AddLearner {
        id: u64,
        /// The new node's gRPC address.
        addr: String,
        /// The new node's HTTP address.
        #[arg(long, default_value = "")]
        http_addr: String,
        /// The new node's peer address (default: its gRPC port + 1).
        #[arg(long, default_value = "")]
        peer_addr: String,
    },
    /// Promote a learner to voter.
    Promote { id: u64 },
    /// Remove a node from the cluster.
    Remove { id: u64 },
}

pub async fn run(client: Client, command: ClusterCommand) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Status { json } => status(&client, json).await,
        ClusterCommand::AddLearner {
            id,
            addr,
            http_addr,
            peer_addr,
        } => {
            let reply = client
                .add_learner(id, &addr, &http_addr, &peer_addr)
                .await?;
            println!(
                "node {id} added as learner at log index {}",
                reply.log_index
            );
            Ok(())
        }
        ClusterCommand::Promote { id } => {
            let reply = client.promote(id).await?;
            println!(
                "node {id} promoted to voter at log index {}",
                reply.log_index
            );
            Ok(())
        }
        ClusterCommand::Remove { id } => {
            let reply = client.remove_node(id).await?;
            println!("node {id} removed at log index {}", reply.log_index);
            Ok(())
        }
    }
}

/// Asks one node for the membership, then every member for its own view.
async fn status(client: &Client, as_json: bool) -> anyhow::Result<()> {
    let first = client.any_status().await?;
    let mut rows = Vec::new();
    for member in &first.members {
        let own = client.node_status(&member.grpc_addr).await.ok();
        rows.push((member.clone(), own));
    }
    let leader = rows
        .iter()
        .find_map(|(_, s)| s.as_ref().filter(|s| s.role == "leader").map(|s| s.id));
    let term = rows
        .iter()
        .filter_map(|(_, s)| s.as_ref().map(|s| s.term))
        .max()
        .unwrap_or(first.term);
    if as_json {
        let members: Vec<_> = rows
            .iter()
            .map(|(m, s)| {
                json!({
                    "id": m.id, "grpc_addr": m.grpc_addr, "http_addr": m.http_addr,
                    "peer_addr": m.peer_addr, "voter": m.voter,
                    "role": s.as_ref().map(|s| s.role.as_str()).unwrap_or("unreachable"),
                    "term": s.as_ref().map(|s| s.term),
                    "last_log_index": s.as_ref().map(|s| s.last_log_index),
                    "applied_index": s.as_ref().map(|s| s.applied_index),
                    "snapshot_index": s.as_ref().map(|s| s.snapshot_index),
                    "chunks_missing": s.as_ref().map(|s| s.chunks_missing),
                    "scrub_chunks_checked": s.as_ref().map(|s| s.scrub_chunks_checked),
                    "scrub_chunks_damaged": s.as_ref().map(|s| s.scrub_chunks_damaged),
                    "scrub_chunks_repaired": s.as_ref().map(|s| s.scrub_chunks_repaired),
                    "scrub_passes": s.as_ref().map(|s| s.scrub_passes),
                    "reachable": s.is_some(),
                })
            })
            .collect();
        println!(
            "{}",
            json!({"leader": leader, "term": term, "members": members})
        );
        return Ok(());
    }
    println!(
        "leader: {}  term: {term}",
        leader
            .map(|l| l.to_string())
            .unwrap_or_else(|| "none".into())
    );
    println!(
        "{:<4} {:<22} {:<22} {:<12} {:>6} {:>10} {:>10} {:>14}",
        "ID", "GRPC", "HTTP", "ROLE", "TERM", "LAST_LOG", "APPLIED", "SCRUB_BAD/FIX"
    );
    for (m, s) in rows {
        let (role, term, last, applied, scrub) = match &s {
            Some(s) => (
                s.role.clone(),
                s.term.to_string(),
                s.last_log_index.to_string(),
                s.applied_index.to_string(),
                format!("{}/{}", s.scrub_chunks_damaged, s.scrub_chunks_repaired),
            ),
            None => (
                "unreachable".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ),
        };
        println!(
            "{:<4} {:<22} {:<22} {:<12} {:>6} {:>10} {:>10} {:>14}",
            m.id, m.grpc_addr, m.http_addr, role, term, last, applied, scrub
        );
    }
    Ok(())
}
