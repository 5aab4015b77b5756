//! The workspace routes the CLI's login and `lep workspace status` call: the API
//! base (display name), `/tokens` (not offered: any non-2xx is fine) and
//! `/workspace` (WorkspaceInfo, all fields the SDK requires).

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::Rest;
use crate::api::error::ApiError;
use crate::raft::Consistency;
use crate::state;

pub async fn base(State(rest): State<Rest>) -> Json<Value> {
    Json(json!({ "display_name": &*rest.workspace_id }))
}

/// Token listings are not offered over REST (the store keeps only hashes);
/// the 0.26+ login treats any non-2xx here as "no expiry known".
pub async fn tokens() -> ApiError {
    state::Error::NotFound {
        what: "token listing (use `cairn token list`)".into(),
    }
    .into()
}

pub async fn info(State(rest): State<Rest>) -> Result<Json<Value>, ApiError> {
    let services = &rest.services;
    let (namespaces, _) = services.kv.list_namespaces(Consistency::Stale).await?;
    let (queues, _) = services.queue.list(Consistency::Stale).await?;
    let file_systems = services.fs.list_fs(Consistency::Stale).await?;
    let disk_bytes: u64 = file_systems.iter().map(|(_, r)| r.bytes_used).sum();
    let limits = &services.node.limits;
    let zero = json!({"cpu": 0.0, "memory": 0, "accelerator_num": 0.0});
    Ok(Json(json!({
        "build_time": "",
        "git_commit": env!("CARGO_PKG_VERSION"),
        "workspace_name": &*rest.workspace_id,
        "workspace_tier": "self-hosted",
        "workspace_state": "normal",
        "supported_shapes": {},
        "workspace_disk_usage_bytes": disk_bytes,
        "workloads": {
            "num_photons": 0, "num_deployments": 0, "num_jobs": 0,
            "num_pods": 0, "num_secrets": 0, "num_image_pull_secrets": 0,
        },
        "resource_quota": {"limit": zero, "used": zero},
        "service_quota": {
            "limit": {"kv_store_num": limits.namespaces_max, "queue_num": limits.queues_max},
            "used": {"kv_store_num": namespaces.len(), "queue_num": queues.len()},
        },
    })))
}
