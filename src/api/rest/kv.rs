//! Key-value over REST: namespaces (`status.redis_url` is required by the SDK
//! and empty here), raw-bytes values in and out (multipart `value` part),
//! idempotent deletes, and key listings whose integer cursor counts the keys
//! already returned (null once nothing is left).
//!
//! cairn's additions, for the dashboard: a value's answer carries its expiry
//! (`x-cairn-expires-at-ms`, 0 = none) and its write's log index
//! (`x-cairn-version`), and a put may set a TTL (`?ttl_ms=`).

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{body, Rest};
use crate::api::error::ApiError;
use crate::api::service::kv::Put;
use crate::limits::LIST_PAGE_KEYS_MAX;
use crate::raft::Consistency;
use crate::state;
use crate::state::kv::{NamespaceInfo, PutCondition};

pub fn routes() -> Router<Rest> {
    Router::new()
        .route("/kv/namespaces", get(list_namespaces))
        .route(
            "/kv/namespaces/{ns}",
            get(get_namespace)
                .post(create_namespace)
                .delete(delete_namespace),
        )
        .route("/kv/namespaces/{ns}/keys", get(list_keys))
        .route(
            "/kv/namespaces/{ns}/values/{*key}",
            get(get_value).post(put_value).delete(delete_value),
        )
}

fn namespace(info: &NamespaceInfo) -> Value {
    json!({
        "name": info.name,
        "metadata": {"id": info.name, "name": info.name, "created_at": info.created_ms},
        "status": {"redis_url": ""},
    })
}

async fn list_namespaces(State(rest): State<Rest>) -> Result<Json<Value>, ApiError> {
    let (list, _) = rest
        .services
        .kv
        .list_namespaces(Consistency::Linearizable)
        .await?;
    Ok(Json(Value::Array(list.iter().map(namespace).collect())))
}

async fn get_namespace(
    State(rest): State<Rest>,
    Path(ns): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (info, _) = rest
        .services
        .kv
        .get_namespace(&ns, Consistency::Linearizable)
        .await?;
    Ok(Json(namespace(&info)))
}

/// 409 when the namespace exists.
async fn create_namespace(
    State(rest): State<Rest>,
    Path(ns): Path<String>,
) -> Result<Response, ApiError> {
    rest.services.kv.create_namespace(None, ns.clone()).await?;
    Ok((StatusCode::OK, Json(json!({"metadata": {"name": ns}}))).into_response())
}

async fn delete_namespace(
    State(rest): State<Rest>,
    Path(ns): Path<String>,
) -> Result<StatusCode, ApiError> {
    rest.services.kv.delete_namespace(None, ns).await?;
    Ok(StatusCode::OK)
}

/// The value's bytes as stored; 404 for a missing key (the SDK's `KeyError`).
async fn get_value(
    State(rest): State<Rest>,
    Path((ns, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (found, _) = rest
        .services
        .kv
        .get(&ns, key.as_bytes(), Consistency::Linearizable)
        .await?;
    let Some(found) = found else {
        return Err(state::Error::NotFound {
            what: format!("key {key} in namespace {ns}"),
        }
        .into());
    };
    let content_type = HeaderValue::from_static("application/octet-stream");
    let headers = [
        (header::CONTENT_TYPE, content_type),
        (
            header::HeaderName::from_static(EXPIRES_HEADER),
            HeaderValue::from(found.expires_at_ms),
        ),
        (
            header::HeaderName::from_static(VERSION_HEADER),
            HeaderValue::from(found.version),
        ),
    ];
    Ok((headers, found.value).into_response())
}

const EXPIRES_HEADER: &str = "x-cairn-expires-at-ms";
const VERSION_HEADER: &str = "x-cairn-version";

#[derive(Debug, Default, Deserialize)]
struct PutQuery {
    /// Expire the key this long after the write (0 or absent: never).
    ttl_ms: Option<u64>,
}

async fn put_value(
    State(rest): State<Rest>,
    Path((ns, key)): Path<(String, String)>,
    Query(q): Query<PutQuery>,
    request: Request,
) -> Result<StatusCode, ApiError> {
    let limits = &rest.services.node.limits;
    // The key travels in the URL: check it before reading any body.
    state::kv::validate_key(key.as_bytes(), limits)?;
    let value_max = limits.kv_value_bytes_max;
    let (parts, request_body) = request.into_parts();
    let mut form = body::multipart(&parts.headers, request_body)?;
    let field = body::field(&mut form, "value").await?;
    let value = body::field_bounded(field, "value", value_max).await?;
    // Later parts are not read: the response ends the exchange.
    let put = Put {
        namespace: ns,
        key: key.into_bytes(),
        value: value.to_vec(),
        condition: PutCondition::Always,
        ttl_ms: q.ttl_ms.unwrap_or(0),
    };
    rest.services.kv.put(None, put).await?;
    Ok(StatusCode::OK)
}

/// Deleting a missing key is not an error.
async fn delete_value(
    State(rest): State<Rest>,
    Path((ns, key)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    rest.services.kv.delete(None, ns, key.into_bytes()).await?;
    Ok(StatusCode::OK)
}

#[derive(Debug, Default, Deserialize)]
struct KeysQuery {
    cursor: Option<u64>,
    limit: Option<u64>,
    prefix: Option<String>,
}

/// Keys after the first `cursor` matching ones, at most `limit` (0: up to
/// `LIST_PAGE_KEYS_MAX`). The cursor counts keys, so keys added or removed
/// between pages can shift a page by that many.
async fn list_keys(
    State(rest): State<Rest>,
    Path(ns): Path<String>,
    Query(q): Query<KeysQuery>,
) -> Result<Json<Value>, ApiError> {
    let kv = &rest.services.kv;
    let skip = q.cursor.unwrap_or(0);
    let page_max = u64::from(LIST_PAGE_KEYS_MAX);
    let want = match q.limit.unwrap_or(0) {
        0 => page_max,
        n => n.min(page_max),
    };
    let prefix = q.prefix.unwrap_or_default();
    let mut seen = 0u64;
    let mut keys: Vec<String> = Vec::new();
    let mut cursor = String::new();
    let mut more = false;
    loop {
        let (page, _) = kv
            .list_keys(
                &ns,
                prefix.as_bytes(),
                &cursor,
                LIST_PAGE_KEYS_MAX,
                Consistency::Linearizable,
            )
            .await?;
        for key in page.keys {
            if seen < skip {
                seen += 1;
                continue;
            }
            if keys.len() as u64 == want {
                more = true;
                break;
            }
            keys.push(String::from_utf8_lossy(&key).into_owned());
        }
        if more || page.next_cursor.is_empty() {
            break;
        }
        cursor = page.next_cursor;
    }
    let next = more.then_some(skip + want);
    Ok(Json(json!({ "keys": keys, "cursor": next })))
}
