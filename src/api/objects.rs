//! Moving object bytes: puts and ranged gets, shared by the gRPC service and the
//! HTTP routes, on the chunk pipeline every service shares (`chunk_upload`,
//! `chunk_read`).
//!
//! A put's body is staged chunk by chunk; only when every chunk is committed is the
//! manifest proposed, and only then does the object exist. A get reads the manifest
//! once, so a reader sees one whole version even while the key is overwritten.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{Stream, StreamExt};
use tokio::sync::Semaphore;

use super::chunk_read;
pub use super::chunk_read::ByteRange;
pub use super::chunk_upload::upload_budget;
use super::chunk_upload::{self, Keep, Piece};
use crate::api::error::ApiError;
use crate::limits::OBJECT_BYTES_MAX;
use crate::raft::{Consistency, Node};
use crate::state::object::{self, ObjectCommand, ObjectRecord, ObjectResponse, PutObject};
use crate::state::{self, ClientCommand, Command, Response, SessionTag, Txn};

/// What a put declares before its bytes.
#[derive(Debug, Clone)]
pub struct PutHeader {
    pub session: Option<SessionTag>,
    pub bucket: String,
    pub key: String,
    pub content_type: String,
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub version: u64,
    pub etag: String,
    pub size: u64,
    pub log_index: u64,
    pub chunks_sent: u64,
    pub chunks_total: u64,
}

/// Checks a put's header against the limits and the bucket, before any data moves.
pub fn check_put_header(node: &Node, header: &PutHeader) -> Result<(), ApiError> {
    object::validate_key(&header.key)?;
    object::validate_attributes(&header.content_type, &header.metadata)?;
    object::existing_bucket(&Txn::new(node.store.tree()), &header.bucket)??;
    Ok(())
}

/// Streams `body` into the cluster as `header.bucket/header.key`. Returns once the
/// manifest is committed; on any error nothing becomes visible.
pub async fn put<S>(
    node: &Arc<Node>,
    budget: &Arc<Semaphore>,
    header: PutHeader,
    body: S,
) -> Result<Stored, ApiError>
where
    S: Stream<Item = Result<Bytes, ApiError>> + Unpin,
{
    node.check_leader()?;
    check_put_header(node, &header)?;
    let body = body.map(|piece| piece.map(Piece::Data));
    let staged = chunk_upload::stage(
        node,
        budget,
        body,
        ("object", OBJECT_BYTES_MAX),
        Keep::Nothing,
    )
    .await?;
    let chunks_total = staged.chunks.len() as u64;
    let size = staged.size;
    let put = PutObject {
        bucket: header.bucket,
        key: header.key,
        chunks: staged.chunks,
        size,
        etag: staged
            .content_hash
            .ok_or_else(|| ApiError::Internal("object bodies are all data".into()))?,
        content_type: header.content_type,
        metadata: header.metadata,
    };
    let command = ClientCommand {
        session: header.session,
        command: Command::Object(ObjectCommand::Put(Box::new(put))),
    };
    let (outcome, log_index) = node.write(command).await?;
    match outcome? {
        Response::Object(ObjectResponse::Stored { version, etag }) => Ok(Stored {
            version,
            etag,
            size,
            log_index,
            chunks_sent: staged.chunks_sent,
            chunks_total,
        }),
        other => Err(ApiError::Internal(format!(
            "unexpected put reply {other:?}"
        ))),
    }
}

/// The manifest of `bucket/key` after the `consistency` barrier, and the applied
/// index it reflects.
pub async fn head(
    node: &Node,
    bucket: &str,
    key: &str,
    consistency: Consistency,
) -> Result<(ObjectRecord, u64), ApiError> {
    let applied_index = node.read_barrier(consistency).await?;
    let txn = Txn::new(node.store.tree());
    object::existing_bucket(&txn, bucket)??;
    match object::object(&txn, bucket, key)? {
        Some(record) => Ok((record, applied_index)),
        None => Err(state::Error::NotFound {
            what: format!("object {bucket}/{key}"),
        }
        .into()),
    }
}

/// Refuses (UNAVAILABLE) to serve an object whose chunk files this node does not
/// hold yet.
pub fn check_chunks_here(node: &Node, record: &ObjectRecord) -> Result<(), ApiError> {
    chunk_read::check_chunks_here(node, &record.chunks)
}

/// The bytes `range` of the object `record`, chunk by chunk from this node's files.
pub fn read(
    node: Arc<Node>,
    record: &ObjectRecord,
    range: ByteRange,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    chunk_read::read(
        node,
        &chunk_read::contiguous(&record.chunks),
        record.size,
        range,
    )
}
