//! The two deployment routes `lep storage upload --rsync` reads before running
//! rsync: `/deployments/storage-rsync-by-lepton` (the daemon's port and the
//! caller's password) and `…/replicas` (the address to connect to).
//!
//! rsync accepts one password per user, so every token is handed this node's
//! daemon password; the daemon remembers which tokens hold it and rotates it
//! when one of them is revoked (`rsync_daemon`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::Rest;
use crate::api::auth::token_hash;
use crate::api::error::ApiError;
use crate::api::http_objects::token;
use crate::state;

/// The deployment name the CLI asks for.
const DEPLOYMENT: &str = "storage-rsync-by-lepton";

/// Records that a token (by hash) is handed the daemon password; returns it.
pub type Allow = dyn Fn([u8; 32]) -> anyhow::Result<String> + Send + Sync;

pub struct RsyncEndpoint {
    /// Where the daemon listens (`HOST:PORT`).
    pub listen_addr: String,
    pub allow: Box<Allow>,
}

pub fn routes() -> Router<Rest> {
    Router::new()
        .route(&format!("/deployments/{DEPLOYMENT}"), get(deployment))
        .route(
            &format!("/deployments/{DEPLOYMENT}/replicas"),
            get(replicas),
        )
}

fn endpoint(rest: &Rest) -> Result<&Arc<RsyncEndpoint>, ApiError> {
    rest.rsync.as_ref().ok_or_else(|| {
        state::Error::NotFound {
            what: format!(
                "deployment {DEPLOYMENT}: this node runs no rsync daemon (start it with --rsync-addr)"
            ),
        }
        .into()
    })
}

fn port_of(addr: &str) -> Result<u16, ApiError> {
    addr.rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .ok_or_else(|| ApiError::Internal(format!("rsync address {addr} has no port")))
}

async fn deployment(State(rest): State<Rest>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let rsync = endpoint(&rest)?;
    // The auth layer let the request in, so the token is there and valid.
    let hash = token_hash(token(&headers).unwrap_or_default());
    let password = (rsync.allow)(hash)
        .map_err(|e| ApiError::Internal(format!("registering the rsync password: {e}")))?;
    let port = port_of(&rsync.listen_addr)?;
    Ok(Json(json!({
        "metadata": {"name": DEPLOYMENT, "id": DEPLOYMENT},
        "spec": {
            "container": {"ports": [{"container_port": port, "host_port": port}]},
            "envs": [{"name": "PASSWORD", "value": password}],
        },
        // No `status`: the SDK's model would then require endpoint fields that
        // mean nothing here.
    })))
}

/// One replica: this node's daemon, at the address the client reached this
/// node by when the daemon listens on every interface.
async fn replicas(State(rest): State<Rest>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let rsync = endpoint(&rest)?;
    let (host, _) = rsync
        .listen_addr
        .rsplit_once(':')
        .ok_or_else(|| ApiError::Internal("rsync address has no port".into()))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let public_ip = if host == "0.0.0.0" || host == "::" || host.is_empty() {
        request_host(&headers).unwrap_or_else(|| "127.0.0.1".to_string())
    } else {
        host.to_string()
    };
    Ok(Json(json!([{
        "id": format!("node-{}", rest.services.node.id),
        "metadata": {"id": format!("node-{}", rest.services.node.id)},
        "status": {"public_ip": public_ip},
    }])))
}

/// The host part of the request's `Host` header.
fn request_host(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    };
    Some(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
    )
}
