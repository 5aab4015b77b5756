//! Objects over plain HTTP: `GET`/`HEAD`/`PUT`/`DELETE /o/<bucket>/<key>`.
//!
//! Who may: objects in public buckets are readable by anyone; anything else needs
//! `Authorization: Bearer <token>` or a presigned URL (`?expires=&signature=`, see
//! `auth`) for that method, bucket and key. Missing or unknown token → 401; a
//! presigned URL that is expired or altered → 403; no such object → 404. Any
//! node takes a `PUT` or `DELETE`: a follower forwards the writes to the leader
//! (the router hands these routes services on `Route::Forward`), so presigned
//! URLs work unchanged with HTTP clients that follow no redirects. Reads support
//! one `Range: bytes=` range and `If-None-Match`.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::StreamExt;
use serde::Deserialize;

use super::auth::{self, bearer, PresignError};
use super::error::ApiError;
use super::service::object::{ByteRange, PutHeader};
use super::service::Services;
use crate::raft::{Consistency, NodeError};
use crate::state::object::ObjectRecord;

/// Header prefix of user metadata, as S3's `x-amz-meta-`.
const META_HEADER_PREFIX: &str = "x-cairn-meta-";

pub fn routes() -> Router<Services> {
    Router::new().route(
        "/o/{bucket}/{*key}",
        get(get_object)
            .head(head_object)
            .put(put_object)
            .delete(delete_object),
    )
}

#[derive(Debug, Default, Deserialize)]
pub struct Presigned {
    expires: Option<u64>,
    signature: Option<String>,
}

pub fn token(headers: &HeaderMap) -> Option<&str> {
    bearer(
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    )
}

/// Allows `method` on `bucket/key` by presigned URL, public bucket (reads only) or token.
pub async fn authorize(
    services: &Services,
    method: &str,
    (bucket, key): (&str, &str),
    presigned: &Presigned,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    if let (Some(expires_s), Some(signature)) = (presigned.expires, &presigned.signature) {
        let secret = match auth::presign_secret_if_any(&services.node)? {
            Some(secret) => secret,
            None => {
                // A follower may not have applied the secret the leader just created.
                services
                    .node
                    .read_barrier(Consistency::Linearizable)
                    .await?;
                auth::presign_secret_if_any(&services.node)?.ok_or_else(|| {
                    ApiError::PermissionDenied("no presigned URL was ever issued".into())
                })?
            }
        };
        let now_s = crate::clock::now_ms() / 1000;
        return auth::verify(&secret, (method, bucket, key), expires_s, signature, now_s).map_err(
            |e| match e {
                PresignError::Expired | PresignError::BadSignature => {
                    ApiError::PermissionDenied(e.to_string())
                }
            },
        );
    }
    if method == "GET" && services.object.bucket(bucket)?.public {
        return Ok(());
    }
    services.auth.check_required_fresh(token(headers)).await
}

/// A `Range` that starts at or beyond the end of the object (416).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsatisfiable;

/// Parses a single `bytes=` range against `size`: `Ok(None)` means the whole object
/// (no header, or one we do not understand, which RFC 9110 lets us ignore).
pub fn parse_range(value: Option<&str>, size: u64) -> Result<Option<ByteRange>, Unsatisfiable> {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') || size == 0 {
        return Ok(None);
    }
    let Some((first, last)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (first, last) = (first.trim(), last.trim());
    let range = match (first.parse::<u64>(), last.parse::<u64>()) {
        (Ok(a), Ok(b)) if a <= b => (a, b.min(size - 1)),
        (Ok(a), Err(_)) if last.is_empty() => (a, size - 1),
        (Err(_), Ok(n)) if first.is_empty() && n > 0 => (size.saturating_sub(n), size - 1),
        _ => return Ok(None),
    };
    if range.0 >= size {
        return Err(Unsatisfiable);
    }
    Ok(Some(ByteRange {
        offset: range.0,
        length: range.1 - range.0 + 1,
    }))
}

fn quoted_etag(record: &ObjectRecord) -> String {
    format!("\"{}\"", record.etag)
}

fn object_headers(record: &ObjectRecord) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let mut put = |name: header::HeaderName, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    put(header::ETAG, quoted_etag(record));
    let modified =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(record.last_modified_ms);
    put(header::LAST_MODIFIED, httpdate::fmt_http_date(modified));
    let content_type = if record.content_type.is_empty() {
        "application/octet-stream".to_string()
    } else {
        record.content_type.clone()
    };
    put(header::CONTENT_TYPE, content_type);
    put(header::ACCEPT_RANGES, "bytes".into());
    for (name, value) in &record.metadata {
        if let (Ok(n), Ok(v)) = (
            header::HeaderName::from_bytes(format!("{META_HEADER_PREFIX}{name}").as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.insert(n, v);
        }
    }
    headers
}

async fn read_object(
    services: Services,
    method: Method,
    (bucket, key): (String, String),
    presigned: Presigned,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&services, "GET", (&bucket, &key), &presigned, &headers).await?;
    let objects = &services.object;
    let (record, _) = objects
        .head(&bucket, &key, Consistency::Linearizable)
        .await?;
    let mut response_headers = object_headers(&record);
    let etag = quoted_etag(&record);
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        return Ok((StatusCode::NOT_MODIFIED, response_headers).into_response());
    }
    let range_header = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, range) = match parse_range(range_header, record.size) {
        Ok(Some(range)) => {
            let last = range.offset + range.length - 1;
            let content_range = format!("bytes {}-{last}/{}", range.offset, record.size);
            if let Ok(v) = HeaderValue::from_str(&content_range) {
                response_headers.insert(header::CONTENT_RANGE, v);
            }
            (StatusCode::PARTIAL_CONTENT, range)
        }
        Ok(None) => (
            StatusCode::OK,
            ByteRange {
                offset: 0,
                length: record.size,
            },
        ),
        Err(Unsatisfiable) => {
            let value = format!("bytes */{}", record.size);
            if let Ok(v) = HeaderValue::from_str(&value) {
                response_headers.insert(header::CONTENT_RANGE, v);
            }
            return Ok((StatusCode::RANGE_NOT_SATISFIABLE, response_headers).into_response());
        }
    };
    response_headers.insert(header::CONTENT_LENGTH, HeaderValue::from(range.length));
    if method == Method::HEAD {
        return Ok((status, response_headers).into_response());
    }
    objects.check_chunks_here(&record)?;
    let body = Body::from_stream(objects.read(&record, range));
    Ok((status, response_headers, body).into_response())
}

async fn get_object(
    State(services): State<Services>,
    Path(path): Path<(String, String)>,
    Query(presigned): Query<Presigned>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    read_object(services, Method::GET, path, presigned, headers).await
}

async fn head_object(
    State(services): State<Services>,
    Path(path): Path<(String, String)>,
    Query(presigned): Query<Presigned>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    read_object(services, Method::HEAD, path, presigned, headers).await
}

async fn put_object(
    State(services): State<Services>,
    Path((bucket, key)): Path<(String, String)>,
    Query(presigned): Query<Presigned>,
    request: Request,
) -> Result<Response, ApiError> {
    let headers = request.headers().clone();
    authorize(&services, "PUT", (&bucket, &key), &presigned, &headers).await?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let mut metadata = BTreeMap::new();
    for (name, value) in &headers {
        if let Some(meta) = name.as_str().strip_prefix(META_HEADER_PREFIX) {
            metadata.insert(
                meta.to_string(),
                value.to_str().unwrap_or_default().to_string(),
            );
        }
    }
    let header = PutHeader {
        session: None,
        bucket,
        key,
        content_type,
        metadata,
    };
    let body = Box::pin(super::http_serve::body_stream(request.into_body())).map(|piece| {
        piece.map_err(|e| ApiError::Node(NodeError::Unavailable(format!("request body: {e}"))))
    });
    let stored = services.object.put(header, body).await?;
    let etag = format!("\"{}\"", stored.etag);
    let body = serde_json::json!({
        "etag": stored.etag, "size": stored.size, "version": stored.version,
    });
    Ok((StatusCode::OK, [(header::ETAG, etag)], axum::Json(body)).into_response())
}

async fn delete_object(
    State(services): State<Services>,
    Path((bucket, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    services.auth.check_required_fresh(token(&headers)).await?;
    services.object.delete(None, bucket, key).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        let r = |offset, length| Ok(Some(ByteRange { offset, length }));
        assert_eq!(parse_range(Some("bytes=0-9"), 100), r(0, 10));
        assert_eq!(parse_range(Some("bytes=90-"), 100), r(90, 10));
        assert_eq!(parse_range(Some("bytes=-10"), 100), r(90, 10));
        assert_eq!(parse_range(Some("bytes=-500"), 100), r(0, 100));
        assert_eq!(parse_range(Some("bytes=95-200"), 100), r(95, 5));
        assert_eq!(parse_range(Some("bytes=100-"), 100), Err(Unsatisfiable));
        assert_eq!(parse_range(Some("bytes=5-2"), 100), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), Ok(None));
        assert_eq!(parse_range(Some("items=0-1"), 100), Ok(None));
        assert_eq!(parse_range(None, 100), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-"), 0), Ok(None));
    }
}
