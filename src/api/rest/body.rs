//! Request bodies of the REST routes: bounded reads (a body over its limit is
//! refused with 413 naming the limit, after reading at most limit + 1 bytes),
//! streaming multipart fields, and draining bodies the protocol ignores.

use axum::body::Body;
use axum::http::{header, HeaderMap};
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};

use crate::api::error::ApiError;
use crate::api::http_serve::body_stream;
use crate::raft::NodeError;
use crate::state;

/// A body that broke off or went silent: the client's failure, but nothing was
/// stored, so it is reported as unavailable (retry).
fn broken(e: impl std::fmt::Display) -> ApiError {
    ApiError::Node(NodeError::Unavailable(format!("request body: {e}")))
}

/// The request body as a stream with the idle timeout of `http_serve`.
pub fn stream(body: Body) -> impl Stream<Item = Result<Bytes, ApiError>> + Send + Unpin + 'static {
    Box::pin(body_stream(body)).map(|piece| piece.map_err(broken))
}

/// Reads all of `body`, refusing (413) once it passes `limit` bytes; `field`
/// names the limit in the error.
pub async fn read_bounded(body: Body, field: &str, limit: u64) -> Result<Bytes, ApiError> {
    collect_bounded(stream(body), field, limit).await
}

async fn collect_bounded<S>(mut pieces: S, field: &str, limit: u64) -> Result<Bytes, ApiError>
where
    S: Stream<Item = Result<Bytes, ApiError>> + Unpin,
{
    let mut out = BytesMut::new();
    while let Some(piece) = pieces.next().await {
        let piece = piece?;
        let len = (out.len() + piece.len()) as u64;
        if len > limit {
            return Err(state::Error::limit(field, limit, len, "bytes").into());
        }
        out.extend_from_slice(&piece);
    }
    Ok(out.freeze())
}

/// Reads and discards a body (the presigned-PUT step gets the upload once more).
pub async fn drain(body: Body) -> Result<(), ApiError> {
    let mut pieces = stream(body);
    while let Some(piece) = pieces.next().await {
        piece?;
    }
    Ok(())
}

/// A multipart/form-data body, field by field.
pub fn multipart(headers: &HeaderMap, body: Body) -> Result<multer::Multipart<'static>, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let boundary = multer::parse_boundary(content_type).map_err(|_| {
        ApiError::from(state::Error::invalid(
            "content-type",
            "expected multipart/form-data with a boundary",
        ))
    })?;
    Ok(multer::Multipart::new(stream(body), boundary))
}

/// The field `name` of a multipart body, skipping others; refuses a body
/// without it.
pub async fn field(
    form: &mut multer::Multipart<'static>,
    name: &str,
) -> Result<multer::Field<'static>, ApiError> {
    loop {
        match form.next_field().await.map_err(multipart_error)? {
            Some(field) if field.name() == Some(name) => return Ok(field),
            Some(_) => {}
            None => {
                return Err(state::Error::invalid(
                    name,
                    format!("the multipart body has no `{name}` part"),
                )
                .into())
            }
        }
    }
}

/// Reads one multipart field whole, refusing (413) past `limit` bytes.
pub async fn field_bounded(
    field: multer::Field<'static>,
    name: &str,
    limit: u64,
) -> Result<Bytes, ApiError> {
    collect_bounded(field.map(|p| p.map_err(multipart_error)), name, limit).await
}

/// The bytes of a multipart field as a stream for the chunk pipeline.
pub fn field_stream(
    field: multer::Field<'static>,
) -> impl Stream<Item = Result<Bytes, ApiError>> + Send + Unpin + 'static {
    field.map(|p| p.map_err(multipart_error))
}

fn multipart_error(e: multer::Error) -> ApiError {
    match e {
        // The body stream's own failure (timeout, broken connection).
        multer::Error::StreamReadFailed(inner) => broken(inner),
        other => state::Error::invalid("body", format!("malformed multipart body: {other}")).into(),
    }
}
