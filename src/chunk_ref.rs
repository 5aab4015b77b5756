//! What names a piece of content: a chunk's BLAKE3 hash and its length.
//!
//! A leaf module: the chunk store, the state machine, the upload pipeline and the
//! peer network all speak of chunks by these, and none of them owns the others.

use serde::{Deserialize, Serialize};

/// A BLAKE3 hash: a chunk's name.
pub type Hash = [u8; 32];

/// One piece of content (≤ `limits::CHUNK_BYTES_MAX` bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    pub hash: Hash,
    pub len: u32,
}

impl ChunkRef {
    /// The reference of `data`.
    pub fn of(data: &[u8]) -> Self {
        ChunkRef {
            hash: *blake3::hash(data).as_bytes(),
            len: u32::try_from(data.len()).expect("chunks are at most a few MiB"),
        }
    }
}
