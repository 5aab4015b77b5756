//! cairn's cluster view over REST, for the dashboard: `/cairn/node` (the node
//! that serves the page) and `/cairn/cluster` (every member's own report,
//! gathered by this node over the peer listener, with its lag behind the
//! leader). Behind the token check like every REST route.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::Rest;
use crate::raft::report::MemberReport;

pub fn routes() -> Router<Rest> {
    Router::new()
        .route("/cairn/node", get(node))
        .route("/cairn/cluster", get(cluster))
}

async fn node(State(rest): State<Rest>) -> Json<Value> {
    let node = &rest.services.node;
    Json(json!({
        "id": node.id,
        "workspace_id": &*rest.workspace_id,
        "version": env!("CARGO_PKG_VERSION"),
        "http_addr": node.addr.http_addr,
        "grpc_addr": node.addr.grpc_addr,
        "limits": {
            "kv_key_bytes_max": node.limits.kv_key_bytes_max,
            "kv_value_bytes_max": node.limits.kv_value_bytes_max,
            "queue_message_bytes_max": node.limits.queue_message_bytes_max,
        },
    }))
}

async fn cluster(State(rest): State<Rest>) -> Json<Value> {
    let node = &rest.services.node;
    let reports = node.member_reports().await;
    let own = node.report().await;
    // The leader's last log index, as its own report gives it; without one,
    // the furthest any member got.
    let leader_report = reports
        .iter()
        .filter_map(|m| m.report.as_ref().ok())
        .find(|r| r.role == "leader" && Some(r.id) == own.leader_id);
    let head = match leader_report {
        Some(r) => r.last_log_index,
        None => reports
            .iter()
            .filter_map(|m| m.report.as_ref().ok())
            .map(|r| r.last_log_index)
            .max()
            .unwrap_or(0),
    };
    let members: Vec<Value> = reports.iter().map(|m| member(m, head)).collect();
    Json(json!({
        "node_id": node.id,
        "leader_id": own.leader_id,
        "term": own.term,
        "leader_last_log_index": head,
        "members": members,
    }))
}

fn member(m: &MemberReport, head: u64) -> Value {
    let addr = &m.member.addr;
    let base = json!({
        "id": m.member.id, "voter": m.member.voter,
        "grpc_addr": addr.grpc_addr, "http_addr": addr.http_addr, "peer_addr": addr.peer_addr,
        "matched_index": m.matched_index,
    });
    let mut out = base;
    match &m.report {
        Ok(r) => {
            // Reports are taken at slightly different moments: a member may
            // show an index past the leader's figure read a moment earlier.
            let lag = head.saturating_sub(r.applied_index);
            out["health"] = json!("ok");
            out["role"] = json!(r.role);
            out["term"] = json!(r.term);
            out["leader_id"] = json!(r.leader_id);
            out["last_log_index"] = json!(r.last_log_index);
            out["applied_index"] = json!(r.applied_index);
            out["snapshot_index"] = json!(r.snapshot_index);
            out["lag_entries"] = json!(lag);
            out["chunks"] = json!(r.chunks);
            out["chunk_bytes"] = json!(r.chunk_bytes);
            out["chunks_missing"] = json!(r.chunks_missing);
        }
        Err(e) => {
            out["health"] = json!("unreachable");
            out["error"] = json!(e);
        }
    }
    out
}
