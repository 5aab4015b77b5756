//! The one upload pipeline for object and file bytes: cut a stream into chunks,
//! hash them, replicate the ones the cluster lacks, and hand back the chunk list a
//! manifest then commits.
//!
//! A body is a stream of [`Piece`]s: bytes, cut into `CHUNK_BYTES_MAX` chunks and
//! hashed with BLAKE3, or a reference to a whole chunk the sender knows the cluster
//! holds (incremental uploads send only what is missing). A chunk the cluster
//! already holds is not proposed again. A new large chunk is pushed to the members
//! outside the log and then named by a small record; a small one rides in the log
//! (`propose_chunk`). Up to `UPLOAD_CHUNKS_IN_FLIGHT_MAX` of one upload replicate
//! at once and all of
//! a node's uploads together holding at most `NODE_UPLOAD_BYTES_IN_FLIGHT_MAX`
//! chunk bytes. Staged chunks stay unreferenced (and collectable after the GC grace
//! period) until a manifest names them; a long upload touches them every quarter
//! of that period so GC never races it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::stream::{FuturesUnordered, Stream, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::api::error::ApiError;
use crate::chunk_ref::{ChunkRef, Hash};
use crate::clock::now_ms;
use crate::crash_point::{self, names};
use crate::limits::{
    CHUNK_BYTES_MAX, NODE_UPLOAD_BYTES_IN_FLIGHT_MAX, UPLOAD_CHUNKS_IN_FLIGHT_MAX,
};
use crate::raft::{chunk_push, Node, Route};
use crate::state::object::ObjectCommand;
use crate::state::{self, chunks, ClientCommand, Command, Txn};

/// Bytes of chunk data all uploads on this node have proposed but not committed.
pub fn upload_budget() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(NODE_UPLOAD_BYTES_IN_FLIGHT_MAX))
}

/// One message of an upload body.
#[derive(Debug, Clone)]
pub enum Piece {
    /// Bytes of any length; the pipeline cuts them into chunks.
    Data(Bytes),
    /// A whole chunk the cluster holds, sent by name. Must start at a chunk
    /// boundary (after a multiple of `CHUNK_BYTES_MAX` bytes of data, or another
    /// reference).
    Known(ChunkRef),
}

/// What a body became: the chunks in order and how much was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    pub chunks: Vec<ChunkRef>,
    pub size: u64,
    /// BLAKE3 of the whole content (hex), when every byte came as data.
    pub content_hash: Option<String>,
    /// Chunks this upload replicated (or leaves to the caller, `kept`); the others
    /// were already stored.
    pub chunks_sent: u64,
    /// With [`Keep::SoleSmallChunk`]: the bytes of a body that is one small chunk
    /// the cluster lacks, not proposed; the caller's command carries them.
    pub kept: Option<Bytes>,
}

/// What [`stage`] may leave unproposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    Nothing,
    /// A body of one chunk of at most `INLINE_CHUNK_BYTES_MAX`.
    SoleSmallChunk,
}

/// The largest chunk a command may carry inline instead of its own entry.
pub const INLINE_CHUNK_BYTES_MAX: usize = CHUNK_GROUP_COMMIT_BYTES_MAX;

/// Whether the cluster holds `hash` with length `len` and will keep it long enough
/// for an upload to commit its manifest (referenced, or staged less than half a
/// grace period ago).
pub fn already_stored(node: &Node, hash: &Hash, len: u32) -> bool {
    let txn = Txn::new(node.store.tree());
    match chunks::get(&txn, hash) {
        Ok(Some(record)) => {
            record.len == len
                && (record.refs > 0
                    || record.unreferenced_since_ms + node.chunk_gc_grace_ms / 2 > now_ms())
        }
        _ => false,
    }
}

/// [`already_stored`], and this node holds the file: a chunk whose record exists
/// but whose file this node lacks (a push it missed) is pushed again rather than
/// trusted, since the bytes are at hand and the copies elsewhere are not checked.
fn already_stored_here(node: &Node, chunk: &ChunkRef) -> bool {
    already_stored(node, &chunk.hash, chunk.len) && node.chunks.has(&chunk.hash)
}

/// A chunk proposal runs as its own task, so it replicates while the upload reads
/// more of the body; an abandoned upload's staged chunks are collected by GC.
type ChunkWrite = tokio::task::JoinHandle<Result<(), ApiError>>;

fn joined(result: Result<Result<(), ApiError>, tokio::task::JoinError>) -> Result<(), ApiError> {
    result.map_err(|e| ApiError::Internal(e.to_string()))?
}

/// Replicates one chunk; `permit` holds its bytes in the node's upload budget
/// until the record is committed.
///
/// Small chunks (small files, file tails) ride in the log and share entries
/// through group commit: one round for data and record. A large one is stored on
/// a quorum of members first (`chunk_push`: written once per node, never through
/// the log) and then named by a 36-byte record, which group commit packs too.
async fn propose_chunk(
    node: Arc<Node>,
    route: Route,
    permit: OwnedSemaphorePermit,
    hash: Hash,
    data: Bytes,
) -> Result<(), ApiError> {
    let command = if data.len() <= CHUNK_GROUP_COMMIT_BYTES_MAX {
        ObjectCommand::PutChunk {
            hash,
            data: data.to_vec(),
        }
    } else {
        if route == Route::Leader {
            // The record would be refused here: push nothing.
            node.check_leader()?;
        }
        chunk_push::store_on_quorum(&node, hash, data.clone()).await?;
        // Window: a quorum holds the chunk and no record names it (the orphan
        // sweep deletes it a grace period later).
        crash_point::crash_here(names::UPLOAD_AFTER_CHUNK_QUORUM);
        ObjectCommand::StageChunk {
            hash,
            len: u32::try_from(data.len()).expect("a chunk is at most CHUNK_BYTES_MAX"),
        }
    };
    drop(data);
    let command = ClientCommand {
        session: None,
        command: Command::Object(command),
    };
    let (outcome, _) = node.submit(command, route, false).await?;
    drop(permit);
    outcome?;
    Ok(())
}

/// Chunks up to this size go through group commit with other writes.
const CHUNK_GROUP_COMMIT_BYTES_MAX: usize = 256 * 1024;

/// Hashes one touch command carries (32 bytes each).
const TOUCH_HASHES_MAX: usize = 4096;

/// Restarts the GC grace period of the chunks an upload has staged so far.
async fn touch(node: &Node, route: Route, refs: &[ChunkRef]) -> Result<(), ApiError> {
    let hashes: Vec<Hash> = refs.iter().map(|r| r.hash).collect();
    for batch in hashes.chunks(TOUCH_HASHES_MAX) {
        let command = ClientCommand {
            session: None,
            command: Command::Object(ObjectCommand::TouchChunks {
                hashes: batch.to_vec(),
            }),
        };
        node.submit(command, route, false).await?.0?;
    }
    Ok(())
}

/// Streams `body` into the cluster's chunk store. `size_max` bounds the content
/// (`field` names it in the error). On any error nothing refers to what was
/// staged, and GC collects it.
pub async fn stage<S>(
    (node, route): (&Arc<Node>, Route),
    budget: &Arc<Semaphore>,
    mut body: S,
    (field, size_max): (&str, u64),
    keep: Keep,
) -> Result<Staged, ApiError>
where
    S: Stream<Item = Result<Piece, ApiError>> + Unpin,
{
    let mut buffer = BytesMut::with_capacity(CHUNK_BYTES_MAX);
    let mut whole = Some(blake3::Hasher::new());
    let mut refs: Vec<ChunkRef> = Vec::new();
    let mut in_flight: FuturesUnordered<ChunkWrite> = FuturesUnordered::new();
    let mut size = 0u64;
    let mut chunks_sent = 0u64;
    let mut finished = false;
    let mut kept = None;
    let touch_every = Duration::from_millis(node.chunk_gc_grace_ms / 4);
    let mut touched_at = Instant::now();
    while !finished {
        if touched_at.elapsed() >= touch_every {
            touch(node, route, &refs).await?;
            touched_at = Instant::now();
        }
        match body.next().await {
            Some(piece) => match piece? {
                Piece::Data(data) => {
                    size += data.len() as u64;
                    if size > size_max {
                        return Err(state::Error::limit(field, size_max, size, "bytes").into());
                    }
                    buffer.extend_from_slice(&data);
                }
                Piece::Known(chunk) => {
                    if !buffer.is_empty() {
                        return Err(state::Error::invalid(
                            "chunk",
                            "a chunk reference must start at a chunk boundary",
                        )
                        .into());
                    }
                    if chunk.len == 0 || chunk.len as usize > CHUNK_BYTES_MAX {
                        let len = u64::from(chunk.len);
                        return Err(state::Error::limit(
                            "chunk",
                            CHUNK_BYTES_MAX as u64,
                            len,
                            "bytes",
                        )
                        .into());
                    }
                    if !already_stored(node, &chunk.hash, chunk.len) {
                        return Err(state::Error::ChunkMissing {
                            hash: hex::encode(chunk.hash),
                        }
                        .into());
                    }
                    size += u64::from(chunk.len);
                    if size > size_max {
                        return Err(state::Error::limit(field, size_max, size, "bytes").into());
                    }
                    whole = None;
                    refs.push(chunk);
                }
            },
            None => finished = true,
        }
        while buffer.len() >= CHUNK_BYTES_MAX || (finished && !buffer.is_empty()) {
            let take = buffer.len().min(CHUNK_BYTES_MAX);
            let chunk = buffer.split_to(take).freeze();
            if let Some(h) = whole.as_mut() {
                h.update(&chunk);
            }
            let chunk_ref = ChunkRef::of(&chunk);
            refs.push(chunk_ref);
            if already_stored_here(node, &chunk_ref) {
                continue;
            }
            if keep == Keep::SoleSmallChunk
                && finished
                && refs.len() == 1
                && chunk.len() <= INLINE_CHUNK_BYTES_MAX
            {
                chunks_sent += 1;
                kept = Some(chunk);
                continue;
            }
            while in_flight.len() >= UPLOAD_CHUNKS_IN_FLIGHT_MAX {
                joined(in_flight.next().await.expect("not empty"))?;
            }
            // Waiting here, before the chunk is handed off, stops reading the body:
            // the node's uploads together hold at most the budget in chunk bytes.
            let permit = budget
                .clone()
                .acquire_many_owned(chunk_ref.len)
                .await
                .map_err(|_| ApiError::Internal("upload budget closed".into()))?;
            chunks_sent += 1;
            in_flight.push(tokio::spawn(propose_chunk(
                node.clone(),
                route,
                permit,
                chunk_ref.hash,
                chunk,
            )));
        }
    }
    while let Some(result) = in_flight.next().await {
        joined(result)?;
    }
    if touched_at.elapsed() >= touch_every {
        touch(node, route, &refs).await?;
    }
    Ok(Staged {
        chunks: refs,
        size,
        content_hash: whole.map(|h| h.finalize().to_hex().to_string()),
        chunks_sent,
        kept,
    })
}

/// Stages one whole chunk held in memory (a partial-block rewrite), unless the
/// cluster already holds it.
pub async fn stage_one(
    (node, route): (&Arc<Node>, Route),
    budget: &Arc<Semaphore>,
    data: Bytes,
) -> Result<(ChunkRef, bool), ApiError> {
    let chunk_ref = ChunkRef::of(&data);
    if already_stored_here(node, &chunk_ref) {
        return Ok((chunk_ref, false));
    }
    let permit = budget
        .clone()
        .acquire_many_owned(chunk_ref.len)
        .await
        .map_err(|_| ApiError::Internal("upload budget closed".into()))?;
    propose_chunk(node.clone(), route, permit, chunk_ref.hash, data).await?;
    Ok((chunk_ref, true))
}
