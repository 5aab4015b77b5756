//! What each member says about itself, gathered by any node: the cluster view
//! an operator's page shows (role, term, leader, log and applied index, chunk
//! store). Members are asked over the peer listener (mutual TLS), in parallel,
//! each with a bounded wait; one that does not answer is reported as such.
//! Readiness (`api::health`) uses the same report to learn the leader's last
//! log index on a follower (`leader_last_log_index`, cached briefly).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::node::{MemberInfo, Node};
use super::types::NodeId;
use crate::chunkstore::Usage;
use crate::proto::raft::RaftPayload;

/// How long a member has to answer before it is shown as unreachable.
pub const MEMBER_REPORT_TIMEOUT_MS: u64 = 1_000;
/// Counting the chunk store reads every file's metadata: reuse a count this recent.
const CHUNK_USAGE_CACHE_MS: u64 = 5_000;
/// A follower reuses the leader's last log index (and a failure to get it) this
/// long, so readiness probes cost the leader at most one status call per
/// follower per period, however often they come.
pub const LEADER_INDEX_CACHE_MS: u64 = 1_000;

/// One node's own account of itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReport {
    pub id: NodeId,
    pub role: String,
    pub term: u64,
    pub leader_id: Option<NodeId>,
    pub last_log_index: u64,
    pub applied_index: u64,
    pub snapshot_index: u64,
    pub chunks: u64,
    pub chunk_bytes: u64,
    pub chunks_missing: u64,
    /// Leader only: how long since a quorum acknowledged it.
    pub millis_since_quorum_ack: Option<u64>,
}

/// A member and what it answered.
#[derive(Debug, Clone)]
pub struct MemberReport {
    pub member: MemberInfo,
    pub report: Result<NodeReport, String>,
    /// Leader only: the highest log index known replicated to this member.
    pub matched_index: Option<u64>,
}

/// The cached chunk store count (see `CHUNK_USAGE_CACHE_MS`).
#[derive(Default)]
pub struct ChunkUsageCache(Mutex<Option<(Instant, Usage)>>);

/// The leader's last log index as this node last asked it (see
/// `LEADER_INDEX_CACHE_MS`). An async lock: it is held across the ask, so
/// probes that arrive together share one.
#[derive(Default)]
pub struct LeaderIndexCache(tokio::sync::Mutex<Option<LeaderIndexSeen>>);

struct LeaderIndexSeen {
    at: Instant,
    leader: NodeId,
    /// `None`: the leader did not answer.
    last_log_index: Option<u64>,
}

impl Node {
    /// The role as the status pages name it.
    pub fn role_name(&self) -> &'static str {
        let metrics = self.metrics();
        let members = self.members();
        let member = members.iter().find(|m| m.id == self.id);
        match (metrics.state, member) {
            (openraft::ServerState::Leader, _) => "leader",
            (openraft::ServerState::Candidate, _) => "candidate",
            (openraft::ServerState::Shutdown, _) => "shutdown",
            (_, None) => "joining",
            (_, Some(m)) if !m.voter => "learner",
            _ => "follower",
        }
    }

    /// This node's report.
    pub async fn report(&self) -> NodeReport {
        let metrics = self.metrics();
        let usage = self.chunk_usage().await;
        NodeReport {
            id: self.id,
            role: self.role_name().to_string(),
            term: metrics.current_term,
            leader_id: metrics.current_leader,
            last_log_index: metrics.last_log_index.unwrap_or(0),
            applied_index: metrics.last_applied.map(|id| id.index).unwrap_or(0),
            snapshot_index: metrics.snapshot.map(|id| id.index).unwrap_or(0),
            chunks: usage.chunks,
            chunk_bytes: usage.bytes,
            chunks_missing: self.chunks_missing(),
            millis_since_quorum_ack: metrics.millis_since_quorum_ack,
        }
    }

    /// Chunk files and bytes here, counted at most every `CHUNK_USAGE_CACHE_MS`.
    /// A count that fails reports zero rather than failing the whole report.
    async fn chunk_usage(&self) -> Usage {
        let fresh = Duration::from_millis(CHUNK_USAGE_CACHE_MS);
        if let Ok(cached) = self.chunk_usage.0.lock() {
            if let Some((at, usage)) = *cached {
                if at.elapsed() < fresh {
                    return usage;
                }
            }
        }
        let chunks = self.chunks.clone();
        let counted = tokio::task::spawn_blocking(move || chunks.usage()).await;
        let usage = match counted {
            Ok(Ok(usage)) => usage,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "counting the chunk store");
                Usage::default()
            }
            Err(e) => {
                tracing::warn!(error = %e, "counting the chunk store");
                Usage::default()
            }
        };
        if let Ok(mut cached) = self.chunk_usage.0.lock() {
            *cached = Some((Instant::now(), usage));
        }
        usage
    }

    /// The last log index of `leader` as its own report gives it: this node's
    /// own figure when it is `leader`; else asked over the peer listener
    /// (bounded by `MEMBER_REPORT_TIMEOUT_MS`) and reused for
    /// `LEADER_INDEX_CACHE_MS`. `None` when the leader is not a member or did
    /// not answer.
    pub async fn leader_last_log_index(&self, leader: NodeId) -> Option<u64> {
        if leader == self.id {
            return Some(self.metrics().last_log_index.unwrap_or(0));
        }
        let fresh = Duration::from_millis(LEADER_INDEX_CACHE_MS);
        let mut cached = self.leader_index.0.lock().await;
        if let Some(seen) = cached.as_ref() {
            if seen.leader == leader && seen.at.elapsed() < fresh {
                return seen.last_log_index;
            }
        }
        let member = self.members().into_iter().find(|m| m.id == leader)?;
        let last_log_index = match self.ask_report(&member.addr.peer_addr).await {
            Ok(report) => Some(report.last_log_index),
            Err(e) => {
                tracing::debug!(leader, error = %e, "the leader did not report its log index");
                None
            }
        };
        *cached = Some(LeaderIndexSeen {
            at: Instant::now(),
            leader,
            last_log_index,
        });
        last_log_index
    }

    /// Every member's report, asked in parallel.
    pub async fn member_reports(&self) -> Vec<MemberReport> {
        let metrics = self.metrics();
        let matched = metrics.replication.clone();
        let asks = self.members().into_iter().map(|member| async {
            let report = if member.id == self.id {
                Ok(self.report().await)
            } else {
                self.ask_report(&member.addr.peer_addr).await
            };
            let matched_index = matched
                .as_ref()
                .and_then(|m| m.get(&member.id).cloned())
                .map(|log_id| log_id.map(|id| id.index).unwrap_or(0));
            MemberReport {
                member,
                report,
                matched_index,
            }
        });
        futures::future::join_all(asks).await
    }

    async fn ask_report(&self, peer_addr: &str) -> Result<NodeReport, String> {
        let ask = async {
            let mut client = self
                .peer_client(peer_addr)
                .await
                .map_err(|e| e.to_string())?;
            let reply = client
                .status(RaftPayload::default())
                .await
                .map_err(|e| e.message().to_string())?;
            crate::codec::decode_peer::<NodeReport>(&reply.into_inner().data)
                .map_err(|e| format!("an undecodable report: {e}"))
        };
        let wait = Duration::from_millis(MEMBER_REPORT_TIMEOUT_MS);
        match tokio::time::timeout(wait, ask).await {
            Ok(answer) => answer,
            Err(_) => Err(format!("no answer within {MEMBER_REPORT_TIMEOUT_MS} ms")),
        }
    }
}
