//! Imports from S3-compatible storage over REST, for the dashboard: cairn's own
//! routes under `/api/v1/cairn/imports` (not part of the platform protocol).
//!
//! `POST` starts a job on this node and answers `202 Accepted` with its status
//! once the source's first page was listed (bad credentials: 400, field
//! `source.credentials`; a missing bucket: 404); `GET` lists this node's jobs
//! or shows one; `DELETE` cancels one. The request's credentials go to the job
//! and nowhere else: no status, log or error carries them.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::{body, Rest};
use crate::api::error::ApiError;
use crate::api::service::import::StartImport;
use crate::state;

/// A start request is a few URLs, names and keys.
const START_BODY_BYTES_MAX: u64 = 64 * 1024;

pub fn routes() -> Router<Rest> {
    Router::new()
        .route("/cairn/imports", get(list).post(start))
        .route("/cairn/imports/{id}", get(show).delete(cancel))
}

async fn start(State(rest): State<Rest>, request: Body) -> Result<Response, ApiError> {
    let bytes = body::read_bounded(request, "body", START_BODY_BYTES_MAX).await?;
    let start: StartImport = serde_json::from_slice(&bytes).map_err(json_error)?;
    let status = rest.services.import.start(start).await?;
    Ok((StatusCode::ACCEPTED, Json(status)).into_response())
}

/// serde's message, when it names only a field: others may quote a value
/// (`invalid type: string "…"`), which may be a secret.
fn json_error(e: serde_json::Error) -> ApiError {
    let message = e.to_string();
    let why = if message.starts_with("missing field") || message.starts_with("unknown field") {
        message
    } else {
        format!("line {} column {}", e.line(), e.column())
    };
    state::Error::invalid("body", format!("not the expected JSON: {why}")).into()
}

async fn list(State(rest): State<Rest>) -> Json<Value> {
    Json(json!({ "imports": rest.services.import.list() }))
}

async fn show(State(rest): State<Rest>, Path(id): Path<String>) -> Result<Response, ApiError> {
    Ok(Json(rest.services.import.get(&id)?).into_response())
}

async fn cancel(State(rest): State<Rest>, Path(id): Path<String>) -> Result<Response, ApiError> {
    Ok(Json(rest.services.import.cancel(&id)?).into_response())
}
