//! Moving object bytes: the upload pipeline and ranged downloads, shared by the
//! gRPC service and the HTTP routes.
//!
//! Upload: the body is cut into `CHUNK_BYTES_MAX` chunks; each is hashed (BLAKE3)
//! and, unless the cluster already holds it, proposed as its own Raft entry, with
//! up to `UPLOAD_CHUNKS_IN_FLIGHT_MAX` chunks replicating at once and the node's
//! uploads together holding at most `NODE_UPLOAD_BYTES_IN_FLIGHT_MAX` chunk bytes.
//! When every chunk is committed, the manifest is proposed; only then does the
//! object exist. Download: the manifest is read once, so a reader sees one whole
//! version even while the key is overwritten; chunks are read from this node's
//! chunk files one at a time.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::stream::{FuturesUnordered, Stream, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::api::error::ApiError;
use crate::chunkstore::ChunkStore;
use crate::clock::now_ms;
use crate::limits::{
    CHUNK_BYTES_MAX, NODE_UPLOAD_BYTES_IN_FLIGHT_MAX, OBJECT_BYTES_MAX, UPLOAD_CHUNKS_IN_FLIGHT_MAX,
};
use crate::raft::{Consistency, Node, NodeError};
use crate::state::chunks::{self, ChunkRef, Hash};
use crate::state::object::{self, ObjectCommand, ObjectRecord, ObjectResponse, PutObject};
use crate::state::{self, ClientCommand, Command, Response, SessionTag, Txn};

/// Bytes of chunk data all uploads on this node have proposed but not committed.
pub fn upload_budget() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(NODE_UPLOAD_BYTES_IN_FLIGHT_MAX))
}

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

/// Whether the cluster holds `hash` and will keep it long enough for this upload
/// to commit its manifest (referenced, or staged less than half a grace period ago).
fn already_stored(node: &Node, hash: &Hash) -> bool {
    let txn = Txn::new(node.store.tree());
    match chunks::get(&txn, hash) {
        Ok(Some(record)) => {
            record.refs > 0 || record.unreferenced_since_ms + node.chunk_gc_grace_ms / 2 > now_ms()
        }
        _ => false,
    }
}

/// A chunk proposal runs as its own task, so it replicates while the upload reads
/// more of the body; an abandoned upload's staged chunks are collected by GC.
type ChunkWrite = tokio::task::JoinHandle<Result<(), ApiError>>;

fn joined(result: Result<Result<(), ApiError>, tokio::task::JoinError>) -> Result<(), ApiError> {
    result.map_err(|e| ApiError::Internal(e.to_string()))?
}

/// Replicates one chunk; `permit` holds its bytes in the node's upload budget
/// until the entry is committed.
async fn propose_chunk(
    node: Arc<Node>,
    permit: OwnedSemaphorePermit,
    hash: Hash,
    data: Bytes,
) -> Result<(), ApiError> {
    let command = ClientCommand {
        session: None,
        command: Command::Object(ObjectCommand::PutChunk {
            hash,
            data: data.to_vec(),
        }),
    };
    drop(data);
    let (outcome, _) = node.write_alone(command).await?;
    drop(permit);
    outcome?;
    Ok(())
}

/// Hashes one touch command carries (32 bytes each).
const TOUCH_HASHES_MAX: usize = 4096;

/// Restarts the GC grace period of the chunks an upload has staged so far.
async fn touch(node: &Node, hashes: &[Hash]) -> Result<(), ApiError> {
    for batch in hashes.chunks(TOUCH_HASHES_MAX) {
        let command = ClientCommand {
            session: None,
            command: Command::Object(ObjectCommand::TouchChunks {
                hashes: batch.to_vec(),
            }),
        };
        node.write(command).await?.0?;
    }
    Ok(())
}

/// Streams `body` into the cluster as `header.bucket/header.key`. Returns once the
/// manifest is committed; on any error nothing becomes visible. An upload longer
/// than a quarter of the GC grace period touches its chunks every such quarter.
pub async fn put<S>(
    node: &Arc<Node>,
    budget: &Arc<Semaphore>,
    header: PutHeader,
    mut body: S,
) -> Result<Stored, ApiError>
where
    S: Stream<Item = Result<Bytes, ApiError>> + Unpin,
{
    node.check_leader()?;
    check_put_header(node, &header)?;
    let mut buffer = BytesMut::with_capacity(CHUNK_BYTES_MAX);
    let mut whole = blake3::Hasher::new();
    let mut refs: Vec<ChunkRef> = Vec::new();
    let mut in_flight: FuturesUnordered<ChunkWrite> = FuturesUnordered::new();
    let mut size = 0u64;
    let mut chunks_sent = 0u64;
    let mut finished = false;
    let touch_every = std::time::Duration::from_millis(node.chunk_gc_grace_ms / 4);
    let mut touched_at = std::time::Instant::now();
    while !finished {
        if touched_at.elapsed() >= touch_every {
            let hashes: Vec<Hash> = refs.iter().map(|r| r.hash).collect();
            touch(node, &hashes).await?;
            touched_at = std::time::Instant::now();
        }
        match body.next().await {
            Some(piece) => {
                let piece = piece?;
                size += piece.len() as u64;
                if size > OBJECT_BYTES_MAX {
                    return Err(
                        state::Error::limit("object", OBJECT_BYTES_MAX, size, "bytes").into(),
                    );
                }
                buffer.extend_from_slice(&piece);
            }
            None => finished = true,
        }
        while buffer.len() >= CHUNK_BYTES_MAX || (finished && !buffer.is_empty()) {
            let take = buffer.len().min(CHUNK_BYTES_MAX);
            let chunk = buffer.split_to(take).freeze();
            whole.update(&chunk);
            let hash = *blake3::hash(&chunk).as_bytes();
            refs.push(ChunkRef {
                hash,
                len: chunk.len() as u32,
            });
            if already_stored(node, &hash) {
                continue;
            }
            while in_flight.len() >= UPLOAD_CHUNKS_IN_FLIGHT_MAX {
                joined(in_flight.next().await.expect("not empty"))?;
            }
            // Waiting here, before the chunk is handed off, stops reading the body:
            // the node's uploads together hold at most the budget in chunk bytes.
            let permit = budget
                .clone()
                .acquire_many_owned(chunk.len() as u32)
                .await
                .map_err(|_| ApiError::Internal("upload budget closed".into()))?;
            chunks_sent += 1;
            in_flight.push(tokio::spawn(propose_chunk(
                node.clone(),
                permit,
                hash,
                chunk,
            )));
        }
    }
    while let Some(result) = in_flight.next().await {
        joined(result)?;
    }
    if touched_at.elapsed() >= touch_every {
        let hashes: Vec<Hash> = refs.iter().map(|r| r.hash).collect();
        touch(node, &hashes).await?;
    }
    let chunks_total = refs.len() as u64;
    let put = PutObject {
        bucket: header.bucket,
        key: header.key,
        chunks: refs,
        size,
        etag: whole.finalize().to_hex().to_string(),
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
            chunks_sent,
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

/// A byte range of an object, resolved against its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub offset: u64,
    pub length: u64,
}

/// Refuses (UNAVAILABLE, so clients try another node) to serve an object whose
/// chunk files this node does not hold yet: a node that installed a snapshot may
/// still be fetching them (`raft::chunk_fetch`).
pub fn check_chunks_here(node: &Node, record: &ObjectRecord) -> Result<(), ApiError> {
    match record.chunks.iter().find(|c| !node.chunks.has(&c.hash)) {
        None => Ok(()),
        Some(chunk) => Err(ApiError::Node(NodeError::Unavailable(format!(
            "this node is still fetching chunk {} of this object; retry or ask another node",
            hex::encode(chunk.hash)
        )))),
    }
}

/// The bytes `range` of the object `record`, chunk by chunk from this node's files.
/// A chunk that vanished (collected after the grace period during a very long read)
/// ends the stream with an error rather than with different data.
pub fn read(
    chunks: ChunkStore,
    record: &ObjectRecord,
    range: ByteRange,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    let end = range.offset.saturating_add(range.length).min(record.size);
    let mut pieces = Vec::new();
    let mut chunk_start = 0u64;
    for chunk in &record.chunks {
        let chunk_end = chunk_start + u64::from(chunk.len);
        if chunk_end > range.offset && chunk_start < end {
            let from = range.offset.saturating_sub(chunk_start) as usize;
            let to = (end.min(chunk_end) - chunk_start) as usize;
            pieces.push((chunk.hash, from, to));
        }
        chunk_start = chunk_end;
    }
    futures::stream::iter(pieces).then(move |(hash, from, to)| {
        let chunks = chunks.clone();
        async move {
            let data = tokio::task::spawn_blocking(move || chunks.read(&hash))
                .await
                .map_err(std::io::Error::other)??;
            if data.len() < to {
                return Err(std::io::Error::other(
                    "chunk file is shorter than its record",
                ));
            }
            Ok(Bytes::from(data).slice(from..to))
        }
    })
}
