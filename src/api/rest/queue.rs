//! Queues over REST: list, idempotent create, delete (404 if missing),
//! length, send (`{"message": str}`), and receive, which pops the oldest
//! visible message and answers a JSON list of at most one.
//!
//! cairn's additions, for the dashboard: `/cairn/queues` (with lengths) and
//! `/cairn/queues/{name}/peek` (the first messages, taking none).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{body, Rest};
use crate::api::error::ApiError;
use crate::raft::Consistency;
use crate::state;

/// JSON may escape each byte of a message as `\uXXXX` (six bytes), plus the
/// object around it.
const JSON_ESCAPE_FACTOR: u64 = 6;
const JSON_FRAME_BYTES_MAX: u64 = 1024;

pub fn routes() -> Router<Rest> {
    Router::new()
        .route("/queue", get(list).post(create))
        .route("/queue/{name}", delete(remove))
        .route("/queue/{name}/length", get(length))
        .route("/queue/{name}/messages", get(receive).post(send))
        .route("/cairn/queues", get(list_detailed))
        .route("/cairn/queues/{name}/peek", get(peek))
}

async fn list_detailed(State(rest): State<Rest>) -> Result<Json<Value>, ApiError> {
    let (queues, _) = rest.services.queue.list(Consistency::Linearizable).await?;
    let list: Vec<Value> = queues
        .iter()
        .map(|q| json!({"name": q.name, "length": q.length, "created_ms": q.created_ms}))
        .collect();
    Ok(Json(json!({ "queues": list })))
}

#[derive(Debug, Default, Deserialize)]
struct PeekQuery {
    limit: Option<usize>,
}

const PEEK_DEFAULT: usize = 20;

async fn peek(
    State(rest): State<Rest>,
    Path(name): Path<String>,
    axum::extract::Query(q): axum::extract::Query<PeekQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(PEEK_DEFAULT);
    let (messages, _) = rest
        .services
        .queue
        .peek(&name, limit, Consistency::Linearizable)
        .await?;
    let list: Vec<Value> = messages
        .iter()
        .map(|m| {
            json!({"seq": m.seq, "message": String::from_utf8_lossy(&m.body),
                   "sent_ms": m.sent_ms, "delivery_count": m.delivery_count,
                   "leased_until_ms": m.leased_until_ms})
        })
        .collect();
    Ok(Json(json!({ "messages": list })))
}

async fn list(State(rest): State<Rest>) -> Result<Json<Value>, ApiError> {
    let (queues, _) = rest.services.queue.list(Consistency::Linearizable).await?;
    let names = queues.iter().map(|q| json!({"name": q.name})).collect();
    Ok(Json(Value::Array(names)))
}

#[derive(Debug, Deserialize)]
struct NameBody {
    name: String,
}

#[derive(Debug, Deserialize)]
struct MessageBody {
    message: String,
}

fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| state::Error::invalid("body", format!("not the expected JSON: {e}")).into())
}

/// Creating a queue that exists succeeds (the protocol documents it idempotent).
async fn create(State(rest): State<Rest>, request: Body) -> Result<StatusCode, ApiError> {
    let bytes = body::read_bounded(request, "body", JSON_FRAME_BYTES_MAX * 4).await?;
    let NameBody { name } = parse_json(&bytes)?;
    rest.services.queue.create(None, name).await?;
    Ok(StatusCode::OK)
}

async fn remove(
    State(rest): State<Rest>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    rest.services.queue.delete(None, name).await?;
    Ok(StatusCode::OK)
}

async fn length(
    State(rest): State<Rest>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (info, _) = rest
        .services
        .queue
        .get(&name, Consistency::Linearizable)
        .await?;
    Ok(Json(json!({"length": info.length})))
}

async fn send(
    State(rest): State<Rest>,
    Path(name): Path<String>,
    request: Body,
) -> Result<StatusCode, ApiError> {
    let message_max = rest.services.node.limits.queue_message_bytes_max;
    let body_max = message_max * JSON_ESCAPE_FACTOR + JSON_FRAME_BYTES_MAX;
    let bytes = body::read_bounded(request, "body", body_max).await?;
    let MessageBody { message } = parse_json(&bytes)?;
    // The service checks the message against its limit in UTF-8 bytes.
    rest.services
        .queue
        .send(None, name, vec![message.into_bytes()])
        .await?;
    Ok(StatusCode::OK)
}

/// Pops one message: `[]` when the queue is empty, else `[{"message": …}]`.
async fn receive(
    State(rest): State<Rest>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let delivery = rest.services.queue.receive(None, name, 0, 0).await?;
    let list = match delivery {
        // Messages sent over gRPC may be any bytes; the protocol carries text.
        Some(d) => vec![json!({"message": String::from_utf8_lossy(&d.body)})],
        None => Vec::new(),
    };
    Ok(Json(Value::Array(list)))
}
