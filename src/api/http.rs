//! The HTTP side of a node: health and readiness (`health`), status as JSON,
//! the dashboard (`dashboard`), objects (`http_objects`). Every route here that writes is served by any node:
//! it gets the services on `Route::Forward`.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::grpc::convert::node_status;
use super::service::Services;
use super::{dashboard, health, http_objects};
use crate::raft::Route;

pub fn router(services: Services) -> Router {
    let services = services.with_route(Route::Forward);
    let status_routes = Router::new()
        .merge(dashboard::routes())
        .merge(health::routes())
        .route("/api/status", get(status))
        .with_state(services.clone());
    status_routes.merge(http_objects::routes().with_state(services))
}

/// Like gRPC `Cluster.Status`: open while the cluster has no tokens, then only
/// with one (membership and addresses are not for anyone on the network).
async fn status(State(services): State<Services>, headers: HeaderMap) -> Response {
    if let Err(e) = services.auth.check_call(http_objects::token(&headers)) {
        return e.into_response();
    }
    let s = node_status(&services.node);
    let members: Vec<_> = s
        .members
        .iter()
        .map(|m| json!({"id": m.id, "grpc_addr": m.grpc_addr, "http_addr": m.http_addr, "peer_addr": m.peer_addr, "voter": m.voter}))
        .collect();
    Json(json!({
        "id": s.id, "role": s.role, "term": s.term, "leader": s.leader_id,
        "last_log_index": s.last_log_index, "applied_index": s.applied_index,
        "snapshot_index": s.snapshot_index, "purged_index": s.purged_index,
        "chunks_missing": s.chunks_missing,
        "scrub": {"checked": s.scrub_chunks_checked, "damaged": s.scrub_chunks_damaged,
                  "repaired": s.scrub_chunks_repaired, "passes": s.scrub_passes},
        "grpc_addr": s.grpc_addr, "http_addr": s.http_addr, "members": members,
    }))
    .into_response()
}
