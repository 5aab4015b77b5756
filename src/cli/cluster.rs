//! `cairn cluster …`: status, online membership changes, leadership transfer,
//! and waiting for a restarted node to catch up (the steps of a rolling restart,
//! `cluster/rolling-restart.sh`).

use std::time::{Duration, Instant};

use clap::Subcommand;
use serde_json::json;

use crate::client::Client;
use crate::proto::v1::NodeStatus;

/// Pause between two looks of `wait-ready`.
const WAIT_READY_POLL_MS: u64 = 250;

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
    /// Hand leadership to another voter (before restarting the leader).
    TransferLeader {
        /// The voter to lead (default: the one holding the most of the log).
        #[arg(long)]
        to: Option<u64>,
    },
    /// Wait until node ID answers, knows a leader, holds every chunk and has
    /// applied everything the leader had logged when it was first seen back.
    WaitReady {
        id: u64,
        /// Give up (exit 1) after this many seconds.
        #[arg(long, default_value_t = 120)]
        timeout_s: u64,
    },
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
        ClusterCommand::TransferLeader { to } => {
            let leader = client.transfer_leader(to).await?;
            println!("node {leader} leads");
            Ok(())
        }
        ClusterCommand::WaitReady { id, timeout_s } => {
            // Short calls: a node that is down must not hold up the next look.
            let client = client.with_call_timeout(Duration::from_millis(2_000));
            wait_ready(&client, id, Duration::from_secs(timeout_s)).await
        }
    }
}

/// Polls until node `id` is ready (see `ClusterCommand::WaitReady`) or `timeout`.
async fn wait_ready(client: &Client, id: u64, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    // The leader's last log index when the node was first seen answering.
    let mut goal: Option<u64> = None;
    let mut last = String::from("not asked yet");
    while Instant::now() < deadline {
        match ready_step(client, id, &mut goal).await {
            Ok(Some(status)) => {
                println!(
                    "node {id} is ready: {}, term {}, applied {} (goal {})",
                    status.role,
                    status.term,
                    status.applied_index,
                    goal.unwrap_or(0)
                );
                return Ok(());
            }
            Ok(None) => {}
            Err(why) => last = why,
        }
        tokio::time::sleep(Duration::from_millis(WAIT_READY_POLL_MS)).await;
    }
    anyhow::bail!("node {id} not ready after {} s: {last}", timeout.as_secs())
}

/// One look: `Ok(Some)` when ready, `Ok(None)` when progressing, `Err` saying
/// what is missing.
async fn ready_step(
    client: &Client,
    id: u64,
    goal: &mut Option<u64>,
) -> Result<Option<NodeStatus>, String> {
    let any = client
        .any_status()
        .await
        .map_err(|e| format!("no node answers: {e}"))?;
    let member = any
        .members
        .iter()
        .find(|m| m.id == id)
        .ok_or_else(|| format!("node {id} is not a member"))?;
    let own = client
        .node_status(&member.grpc_addr)
        .await
        .map_err(|e| format!("node {id} does not answer: {e}"))?;
    if !matches!(own.role.as_str(), "leader" | "follower" | "learner") {
        return Err(format!("node {id} is {}", own.role));
    }
    let leader_id = own
        .leader_id
        .ok_or_else(|| format!("node {id} knows no leader"))?;
    let goal = match goal {
        Some(goal) => *goal,
        None => {
            let leader = any
                .members
                .iter()
                .find(|m| m.id == leader_id)
                .ok_or_else(|| format!("leader {leader_id} is not a member"))?;
            let leader = client
                .node_status(&leader.grpc_addr)
                .await
                .map_err(|e| format!("leader {leader_id} does not answer: {e}"))?;
            *goal.insert(leader.last_log_index)
        }
    };
    if own.applied_index < goal {
        return Err(format!("node {id} applied {} of {goal}", own.applied_index));
    }
    if own.chunks_missing > 0 {
        return Err(format!("node {id} lacks {} chunks", own.chunks_missing));
    }
    Ok(Some(own))
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
