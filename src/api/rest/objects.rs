//! Object storage over REST, for the two buckets the protocol knows
//! (`private`, `public`). Uploads and downloads never pass through these
//! routes: a PUT to `…/{bucket}_presigned/{key}` answers 307 with the
//! presigned upload URL in `Location` and in a JSON `url` (the SDK reads
//! either), a GET of `…/private_presigned/{key}` or `…/public/{key}` answers
//! 307 to a presigned (900 s) or the permanent public URL — also for missing
//! keys, whose URL then answers 404. Deletes are idempotent; listings return
//! every key under the prefix at once.
//!
//! cairn's own additions, for the dashboard, live under `/cairn/`: a paged
//! listing folded at a delimiter, and an object's URL (presigned or public) as
//! JSON, so a browser can show it or send a body to it.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{body, Rest};
use crate::api::error::ApiError;
use crate::api::service::object::ListRequest;
use crate::limits::{OBJECT_LIST_PAGE_MAX, PRESIGN_EXPIRES_S_DEFAULT};
use crate::raft::Consistency;
use crate::state;
use crate::state::object::{PRIVATE_BUCKET, PUBLIC_BUCKET};

/// Objects one listing may return (the protocol has no paging).
pub const LIST_OBJECTS_MAX: usize = 100_000;

pub fn routes() -> Router<Rest> {
    Router::new()
        .route(
            "/object_storage/private_presigned/{*key}",
            put(upload_private).get(download_private),
        )
        .route(
            "/object_storage/public_presigned/{*key}",
            put(upload_public),
        )
        .route(
            "/object_storage/public/{*key}",
            get(download_public).delete(delete_public),
        )
        .route(
            "/object_storage/private/{*key}",
            axum::routing::delete(delete_private),
        )
        .route("/object_storage/private", get(list_private))
        .route("/object_storage/private/", get(list_private))
        .route("/object_storage/public", get(list_public))
        .route("/object_storage/public/", get(list_public))
        .route("/cairn/objects/{bucket}", get(list_page))
        .route("/cairn/objects/{bucket}/url", get(object_url))
}

#[derive(Debug, Default, Deserialize)]
struct PageQuery {
    prefix: Option<String>,
    delimiter: Option<String>,
    after: Option<String>,
    limit: Option<u32>,
}

/// One page of a bucket: objects and, with a delimiter, the folded prefixes.
async fn list_page(
    State(rest): State<Rest>,
    Path(bucket): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let request = ListRequest {
        bucket,
        prefix: q.prefix.unwrap_or_default(),
        delimiter: q.delimiter.unwrap_or_default(),
        after: q.after.unwrap_or_default(),
        limit: q.limit.unwrap_or(0),
    };
    let (listing, _) = rest
        .services
        .object
        .list(&request, Consistency::Linearizable)
        .await?;
    let objects: Vec<Value> = listing
        .objects
        .iter()
        .map(|(key, r)| {
            json!({"key": key, "size": r.size, "etag": r.etag,
                   "content_type": r.content_type, "last_modified_ms": r.last_modified_ms})
        })
        .collect();
    Ok(Json(json!({
        "objects": objects, "prefixes": listing.common_prefixes,
        "next_after": listing.next_after,
    })))
}

#[derive(Debug, Deserialize)]
struct UrlQuery {
    key: String,
    /// `GET` (default) or `PUT`.
    method: Option<String>,
    /// Presigned URLs only; 0 or absent: the default (900 s).
    expires_s: Option<u64>,
    /// The bucket's permanent public URL instead of a presigned one.
    #[serde(default)]
    public: bool,
}

/// `{"url", "path", "expires_at_s"}`: `path` is the URL without its origin, for
/// a page served by any node (the signature covers no host).
async fn object_url(
    State(rest): State<Rest>,
    Path(bucket): Path<String>,
    Query(q): Query<UrlQuery>,
) -> Result<Json<Value>, ApiError> {
    let objects = &rest.services.object;
    let (url, expires_at_s) = if q.public {
        state::object::validate_key(&q.key)?;
        if !objects.bucket(&bucket)?.public {
            return Err(state::Error::invalid(
                "public",
                format!("bucket {bucket} is private: ask for a presigned URL"),
            )
            .into());
        }
        (objects.public_object_url(&bucket, &q.key), None)
    } else {
        let method = q.method.unwrap_or_else(|| "GET".into());
        let expires_s = q.expires_s.unwrap_or(PRESIGN_EXPIRES_S_DEFAULT);
        let (url, at) = objects.presign(&method, &bucket, &q.key, expires_s).await?;
        (url, Some(at))
    };
    let path = crate::api::service::object::object_path(&bucket, &q.key);
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    let path = if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    };
    Ok(Json(
        json!({"url": url, "path": path, "expires_at_s": expires_at_s}),
    ))
}

fn redirect(url: &str) -> Result<Response, ApiError> {
    let location = HeaderValue::from_str(url)
        .map_err(|e| ApiError::Internal(format!("an object URL is not a header value: {e}")))?;
    Ok((
        StatusCode::TEMPORARY_REDIRECT,
        [(header::LOCATION, location)],
        Json(json!({ "url": url })),
    )
        .into_response())
}

/// 307 + the presigned PUT URL. The body (the v1 client sends the file here
/// first) is read and dropped, so the connection stays usable.
async fn presigned_upload(
    rest: &Rest,
    bucket: &str,
    key: &str,
    body: Body,
) -> Result<Response, ApiError> {
    body::drain(body).await?;
    let (url, _) = rest
        .services
        .object
        .presign("PUT", bucket, key, PRESIGN_EXPIRES_S_DEFAULT)
        .await?;
    redirect(&url)
}

async fn upload_private(
    State(rest): State<Rest>,
    Path(key): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    presigned_upload(&rest, PRIVATE_BUCKET, &key, body).await
}

async fn upload_public(
    State(rest): State<Rest>,
    Path(key): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    presigned_upload(&rest, PUBLIC_BUCKET, &key, body).await
}

async fn download_private(
    State(rest): State<Rest>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let (url, _) = rest
        .services
        .object
        .presign("GET", PRIVATE_BUCKET, &key, PRESIGN_EXPIRES_S_DEFAULT)
        .await?;
    redirect(&url)
}

async fn download_public(
    State(rest): State<Rest>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    state::object::validate_key(&key)?;
    redirect(&rest.services.object.public_object_url(PUBLIC_BUCKET, &key))
}

async fn delete(rest: &Rest, bucket: &str, key: String) -> Result<Response, ApiError> {
    let done = rest
        .services
        .object
        .delete(None, bucket.to_string(), key)
        .await?;
    Ok(Json(json!({"existed": done.existed})).into_response())
}

async fn delete_private(
    State(rest): State<Rest>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    delete(&rest, PRIVATE_BUCKET, key).await
}

async fn delete_public(
    State(rest): State<Rest>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    delete(&rest, PUBLIC_BUCKET, key).await
}

#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    prefix: Option<String>,
}

/// Every object under the prefix, one list (the SDK sends no continuation).
async fn list(rest: &Rest, bucket: &str, prefix: String) -> Result<Json<Value>, ApiError> {
    let objects = &rest.services.object;
    let mut request = ListRequest {
        bucket: bucket.to_string(),
        prefix: prefix.clone(),
        delimiter: String::new(),
        after: String::new(),
        limit: OBJECT_LIST_PAGE_MAX,
    };
    let mut items = Vec::new();
    loop {
        let (listing, _) = objects.list(&request, Consistency::Linearizable).await?;
        for (key, record) in listing.objects {
            if items.len() >= LIST_OBJECTS_MAX {
                let max = LIST_OBJECTS_MAX as u64;
                return Err(state::Error::limit("objects", max, max + 1, "objects").into());
            }
            items.push(json!({
                "key": key, "size": record.size, "last_modified": record.last_modified_ms,
            }));
        }
        match listing.next_after {
            Some(after) => request.after = after,
            None => break,
        }
    }
    Ok(Json(json!({
        "items": items, "prefix": prefix, "nextContinuationToken": "",
    })))
}

async fn list_private(
    State(rest): State<Rest>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    list(&rest, PRIVATE_BUCKET, q.prefix.unwrap_or_default()).await
}

async fn list_public(
    State(rest): State<Rest>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    list(&rest, PUBLIC_BUCKET, q.prefix.unwrap_or_default()).await
}
