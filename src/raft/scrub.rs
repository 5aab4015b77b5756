//! The chunk scrubber: walks this node's chunk store at a bounded read rate,
//! checks every file against its BLAKE3 name, and has each damaged one fetched
//! again from a peer. Reads check the same way (`ChunkStore::read`), so the
//! scrubber's job is the data nobody reads: it finds rot before the last good
//! copy on another node is gone too.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::chunk_fetch;
use super::Node;
use crate::chunkstore::ChunkStore;

/// What the scrubber found since this node started.
#[derive(Debug, Default)]
pub struct ScrubStats {
    checked: AtomicU64,
    damaged: AtomicU64,
    repaired: AtomicU64,
    passes: AtomicU64,
}

impl ScrubStats {
    pub fn checked(&self) -> u64 {
        self.checked.load(Ordering::Relaxed)
    }
    pub fn damaged(&self) -> u64 {
        self.damaged.load(Ordering::Relaxed)
    }
    pub fn repaired(&self) -> u64 {
        self.repaired.load(Ordering::Relaxed)
    }
    pub fn passes(&self) -> u64 {
        self.passes.load(Ordering::Relaxed)
    }
}

/// How the scrubber paces itself.
#[derive(Debug, Clone, Copy)]
pub struct ScrubPace {
    /// Chunk bytes read per second at most; 0 turns the scrubber off.
    pub bytes_per_s: u64,
    /// Pause before each pass over the store.
    pub pass_interval_ms: u64,
}

/// Scrubs pass after pass until shutdown.
pub async fn worker(node: Arc<Node>, pace: ScrubPace, mut stop: watch::Receiver<bool>) {
    if pace.bytes_per_s == 0 {
        return;
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(pace.pass_interval_ms)) => {}
            _ = stop.changed() => return,
        }
        let chunks = node.chunks.clone();
        let hashes = match tokio::task::spawn_blocking(move || chunks.list()).await {
            Ok(Ok(hashes)) => hashes,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "scrub: listing the chunk store");
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "scrub: listing the chunk store");
                continue;
            }
        };
        let (mut damaged, mut repaired) = (0u64, 0u64);
        for hash in hashes {
            let chunks = node.chunks.clone();
            let read = tokio::task::spawn_blocking(move || chunks.read(&hash).map(|d| d.len()))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            let bytes = match read {
                Ok(len) => len as u64,
                // Collected since the listing.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) if ChunkStore::is_absent(&e) => {
                    damaged += 1;
                    node.scrub.damaged.fetch_add(1, Ordering::Relaxed);
                    let membership = node.metrics().membership_config.as_ref().clone();
                    if chunk_fetch::fetch_chunk(&node.chunks, &membership, &node.peer_tls, hash)
                        .await
                    {
                        repaired += 1;
                        node.scrub.repaired.fetch_add(1, Ordering::Relaxed);
                    } else {
                        node.wake_chunk_repair();
                    }
                    0
                }
                Err(e) => {
                    tracing::warn!(error = %e, chunk = %hex::encode(hash), "scrub: reading a chunk");
                    continue;
                }
            };
            node.scrub.checked.fetch_add(1, Ordering::Relaxed);
            let pause = Duration::from_micros(bytes.saturating_mul(1_000_000) / pace.bytes_per_s);
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.changed() => return,
            }
        }
        node.scrub.passes.fetch_add(1, Ordering::Relaxed);
        if damaged > 0 {
            tracing::warn!(damaged, repaired, "scrub pass found damaged chunk files");
        } else {
            tracing::debug!("scrub pass: every chunk file matches its hash");
        }
    }
}
