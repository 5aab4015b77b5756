//! Reading a byte range back from a list of chunks: the one reader under object
//! downloads and file reads.
//!
//! Content is a sorted list of [`Extent`]s (a chunk placed at an offset) and a total
//! size; bytes no extent covers (holes in a sparse file) read as zeros and cost no
//! chunk. Chunks are read from this node's chunk files one at a time, so a reader
//! holds at most one chunk in memory.

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{Stream, StreamExt};

use crate::api::error::ApiError;
use crate::chunk_ref::ChunkRef;
use crate::limits::CHUNK_BYTES_MAX;
use crate::raft::{Node, NodeError};

/// The first `len` bytes of a chunk, placed at byte `offset` of the content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub offset: u64,
    pub chunk: ChunkRef,
    pub len: u32,
}

/// A byte range, resolved against the content's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub offset: u64,
    pub length: u64,
}

/// Extents of chunks laid end to end (an object's manifest).
pub fn contiguous(chunks: &[ChunkRef]) -> Vec<Extent> {
    let mut offset = 0;
    chunks
        .iter()
        .map(|&chunk| {
            let extent = Extent {
                offset,
                chunk,
                len: chunk.len,
            };
            offset += u64::from(chunk.len);
            extent
        })
        .collect()
}

/// Refuses (UNAVAILABLE, so clients try another node) to serve content whose chunk
/// files this node does not hold yet: a node that installed a snapshot may still be
/// fetching them (`raft::chunk_fetch`).
pub fn check_chunks_here<'a>(
    node: &Node,
    chunks: impl IntoIterator<Item = &'a ChunkRef>,
) -> Result<(), ApiError> {
    match chunks.into_iter().find(|c| !node.chunks.has(&c.hash)) {
        None => Ok(()),
        Some(chunk) => Err(ApiError::Node(NodeError::Unavailable(format!(
            "this node is still fetching chunk {} of this content; retry or ask another node",
            hex::encode(chunk.hash)
        )))),
    }
}

/// One step of a read: bytes `from..to` of a chunk, or `len` zeros.
enum Step {
    Chunk(ChunkRef, usize, usize),
    Zeros(u64),
}

/// Plans the steps covering `range` of content of `size` bytes.
fn plan(extents: &[Extent], size: u64, range: ByteRange) -> Vec<Step> {
    let end = range.offset.saturating_add(range.length).min(size);
    let mut steps = Vec::new();
    let mut at = range.offset.min(end);
    for extent in extents {
        let chunk_end = extent.offset + u64::from(extent.len.min(extent.chunk.len));
        if chunk_end <= at || extent.offset >= end {
            continue;
        }
        if extent.offset > at {
            steps.push(Step::Zeros(extent.offset - at));
            at = extent.offset;
        }
        let from = (at - extent.offset) as usize;
        let to = (end.min(chunk_end) - extent.offset) as usize;
        steps.push(Step::Chunk(extent.chunk, from, to));
        at = extent.offset + to as u64;
    }
    if at < end {
        steps.push(Step::Zeros(end - at));
    }
    steps
}

/// The bytes `range` of the content, chunk by chunk from this node's files (each
/// checked against its hash; see `Node::read_chunk`). A chunk
/// that vanished (collected after the grace period during a very long read) ends
/// the stream with an error rather than with different data.
pub fn read(
    node: Arc<Node>,
    extents: &[Extent],
    size: u64,
    range: ByteRange,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    let steps = plan(extents, size, range);
    futures::stream::iter(steps)
        .flat_map(|step| match step {
            Step::Zeros(len) => {
                // Holes are sent in chunk-sized pieces so a huge hole is never one buffer.
                let pieces: Vec<Step> = (0..len)
                    .step_by(CHUNK_BYTES_MAX)
                    .map(|at| Step::Zeros((len - at).min(CHUNK_BYTES_MAX as u64)))
                    .collect();
                futures::stream::iter(pieces)
            }
            chunk => futures::stream::iter(vec![chunk]),
        })
        .then(move |step| {
            let node = node.clone();
            async move {
                match step {
                    Step::Zeros(len) => Ok(Bytes::from(vec![0u8; len as usize])),
                    Step::Chunk(chunk, from, to) => {
                        let data = node.read_chunk(chunk.hash).await?;
                        if data.len() < to {
                            return Err(std::io::Error::other(
                                "chunk file is shorter than its record",
                            ));
                        }
                        Ok(Bytes::from(data).slice(from..to))
                    }
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(len: u32, tag: u8) -> ChunkRef {
        ChunkRef {
            hash: [tag; 32],
            len,
        }
    }

    fn describe(steps: &[Step]) -> Vec<(u8, u64, u64)> {
        steps
            .iter()
            .map(|s| match s {
                Step::Chunk(c, from, to) => (c.hash[0], *from as u64, *to as u64),
                Step::Zeros(len) => (0, 0, *len),
            })
            .collect()
    }

    #[test]
    fn plans_holes_as_zeros_and_clips_to_the_range() {
        let extents = [
            Extent {
                offset: 10,
                chunk: chunk(10, 1),
                len: 10,
            },
            Extent {
                offset: 30,
                chunk: chunk(12, 2),
                len: 10,
            },
        ];
        let all = plan(
            &extents,
            50,
            ByteRange {
                offset: 0,
                length: 100,
            },
        );
        assert_eq!(
            describe(&all),
            vec![(0, 0, 10), (1, 0, 10), (0, 0, 10), (2, 0, 10), (0, 0, 10)]
        );
        let middle = plan(
            &extents,
            50,
            ByteRange {
                offset: 15,
                length: 20,
            },
        );
        assert_eq!(describe(&middle), vec![(1, 5, 10), (0, 0, 10), (2, 0, 5)]);
        let past_end = plan(
            &extents,
            50,
            ByteRange {
                offset: 60,
                length: 5,
            },
        );
        assert!(past_end.is_empty());
    }
}
