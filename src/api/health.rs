//! Probes for supervisors and load balancers: `/healthz` (the process serves
//! HTTP) and `/readyz` (this node can take part in the cluster now); beside
//! them `/metrics` (`api::metrics`), for the scraper that watches the same.
//!
//! Both are unauthenticated: they reveal only ready or not and a reason, and
//! reasons name node ids and index figures, never addresses. [`readiness`] is
//! the one place that decides; a new condition (a disk-space guard, say) is one
//! more step in it returning `Err(reason)`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use openraft::ServerState;
use serde_json::json;

use super::service::Services;
use crate::raft::report::MEMBER_REPORT_TIMEOUT_MS;
use crate::raft::types::NodeId;
use crate::raft::{Node, NodeError};

/// A node whose applied index is more than this many entries behind the
/// leader's last log index is not ready: it would serve linearizable reads only
/// after catching up (each waits for the apply), and stale reads far behind.
/// 1,000 entries is a fraction of a second of writes on a healthy node, and well
/// under what a snapshot install covers (`snapshot_log_entries`).
pub const READY_LAG_ENTRIES_MAX: u64 = 1_000;

pub fn routes() -> Router<Services> {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(super::metrics::metrics))
}

/// What a ready node reports beside `"ready": true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    pub role: &'static str,
    pub leader_id: NodeId,
    pub applied_index: u64,
    pub leader_last_log_index: u64,
}

impl Ready {
    pub fn lag_entries(&self) -> u64 {
        self.leader_last_log_index
            .saturating_sub(self.applied_index)
    }
}

async fn readyz(State(services): State<Services>) -> Response {
    match readiness(&services.node).await {
        Ok(ready) => Json(json!({
            "ready": true,
            "role": ready.role,
            "leader_id": ready.leader_id,
            "applied_index": ready.applied_index,
            "leader_last_log_index": ready.leader_last_log_index,
            "lag_entries": ready.lag_entries(),
        }))
        .into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "reason": reason})),
        )
            .into_response(),
    }
}

/// Whether this node is ready, and if not, why (a sentence for the 503 body).
/// In order:
/// 1. it is a member (voter or learner) of an initialized cluster;
/// 2. a leader is known (a leader that heard from no quorum for an election
///    timeout does not count: it refuses writes);
/// 3. its applied index is within `READY_LAG_ENTRIES_MAX` of the leader's last
///    log index (the leader's own figure on the leader; on a follower, the
///    leader's report over the peer listener, bounded and cached briefly).
pub async fn readiness(node: &Node) -> Result<Ready, String> {
    let facts = Facts::of(node);
    let leader_id = facts.leader()?;
    let leader_last_log_index = node.leader_last_log_index(leader_id).await.ok_or_else(|| {
        format!(
            "leader unreachable: node {leader_id} did not report its log index \
                 within {MEMBER_REPORT_TIMEOUT_MS} ms"
        )
    })?;
    let ready = facts.caught_up(leader_id, leader_last_log_index)?;
    // Further conditions go here, each returning `Err(reason)`.
    Ok(ready)
}

/// What readiness reads from the node at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Facts {
    role: &'static str,
    state: ServerState,
    member: bool,
    current_leader: Option<NodeId>,
    /// The leader's own refusal (no quorum heard lately), on the leader only.
    leader_refusal: Option<String>,
    applied_index: u64,
}

impl Facts {
    fn of(node: &Node) -> Facts {
        let metrics = node.metrics();
        let member = metrics
            .membership_config
            .membership()
            .get_node(&node.id)
            .is_some();
        let leader_refusal = match node.check_leader() {
            Err(NodeError::Unavailable(reason)) => Some(reason),
            _ => None,
        };
        Facts {
            role: node.role_name(),
            state: metrics.state,
            member,
            current_leader: metrics.current_leader,
            leader_refusal,
            applied_index: metrics.last_applied.map(|id| id.index).unwrap_or(0),
        }
    }

    /// Steps 1 and 2: the leader this node follows (or itself).
    fn leader(&self) -> Result<NodeId, String> {
        if self.state == ServerState::Shutdown {
            return Err("not a member: raft is shut down".into());
        }
        if !self.member {
            return Err(format!(
                "not a member of an initialized cluster (role {}): waiting to be \
                 initialized or added",
                self.role
            ));
        }
        if let Some(refusal) = &self.leader_refusal {
            return Err(format!("no leader known: {refusal}"));
        }
        self.current_leader
            .ok_or_else(|| format!("no leader known (role {})", self.role))
    }

    /// Step 3: caught up with the leader's log.
    fn caught_up(&self, leader_id: NodeId, leader_last_log_index: u64) -> Result<Ready, String> {
        let ready = Ready {
            role: self.role,
            leader_id,
            applied_index: self.applied_index,
            leader_last_log_index,
        };
        let lag = ready.lag_entries();
        if lag > READY_LAG_ENTRIES_MAX {
            return Err(format!(
                "applied {lag} entries behind the leader (index {} of {leader_last_log_index}; \
                 ready within {READY_LAG_ENTRIES_MAX})",
                self.applied_index
            ));
        }
        Ok(ready)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn follower() -> Facts {
        Facts {
            role: "follower",
            state: ServerState::Follower,
            member: true,
            current_leader: Some(1),
            leader_refusal: None,
            applied_index: 5_000,
        }
    }

    #[test]
    fn a_caught_up_member_with_a_leader_is_ready() {
        let facts = follower();
        assert_eq!(facts.leader(), Ok(1));
        let ready = facts.caught_up(1, 5_000 + READY_LAG_ENTRIES_MAX).unwrap();
        assert_eq!(ready.lag_entries(), READY_LAG_ENTRIES_MAX);
        // A report taken a moment before our own apply can be behind it.
        assert_eq!(facts.caught_up(1, 4_990).unwrap().lag_entries(), 0);
    }

    #[test]
    fn one_entry_past_the_lag_bound_is_not_ready() {
        let reason = follower()
            .caught_up(1, 5_000 + READY_LAG_ENTRIES_MAX + 1)
            .unwrap_err();
        assert!(
            reason.starts_with("applied 1001 entries behind"),
            "{reason}"
        );
    }

    #[test]
    fn a_node_outside_the_membership_is_not_a_member() {
        let facts = Facts {
            role: "joining",
            member: false,
            current_leader: None,
            ..follower()
        };
        let reason = facts.leader().unwrap_err();
        assert!(reason.starts_with("not a member"), "{reason}");
    }

    #[test]
    fn no_leader_and_a_leader_without_quorum_both_mean_no_leader_known() {
        let candidate = Facts {
            role: "candidate",
            state: ServerState::Candidate,
            current_leader: None,
            ..follower()
        };
        assert!(candidate
            .leader()
            .unwrap_err()
            .starts_with("no leader known"));
        let cut_off = Facts {
            role: "leader",
            state: ServerState::Leader,
            leader_refusal: Some("this leader has heard from no quorum for 900 ms".into()),
            ..follower()
        };
        let reason = cut_off.leader().unwrap_err();
        assert!(
            reason.starts_with("no leader known: this leader"),
            "{reason}"
        );
    }
}
