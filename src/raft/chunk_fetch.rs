//! Copies chunk files this node lacks from its peers.
//!
//! Runs after a snapshot install (the snapshot names chunks by hash but does not
//! carry their bytes), and from the node's repair worker at start and until
//! nothing is missing (an install a crash interrupted, peers that could not answer). Each
//! chunk is asked of the members in turn; the bytes are checked against the hash
//! before they are stored. A chunk no member has any more was collected by GC after
//! the snapshot was taken, so a later log entry drops its last reference.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use tonic::transport::{Channel, ClientTlsConfig};

use super::peer_client::connect_peer;
use super::types::StoredMembership;
use crate::chunk_ref::Hash;
use crate::chunkstore::ChunkStore;
use crate::proto::raft::raft_peer_client::RaftPeerClient;
use crate::proto::raft::RaftPayload;
use crate::state::{keys, Store};

/// Chunks fetched at the same time.
const FETCH_CONCURRENCY_MAX: usize = 4;
/// How long one peer may take to send one chunk.
const FETCH_TIMEOUT_MS: u64 = 10_000;

/// One fetch at a time per process (a node is one process): the fetch at start and
/// one after a snapshot install would otherwise ask for the same chunks at once.
static FETCHING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Fetches every chunk the state names but the store lacks; returns how many are
/// still missing afterwards.
pub async fn fetch_missing(
    store: &Store,
    chunks: &ChunkStore,
    membership: &StoredMembership,
    tls: &ClientTlsConfig,
) -> u64 {
    let _one_at_a_time = FETCHING.lock().await;
    let peers = peer_clients(membership, tls);
    let missing = missing_chunks(store, chunks);
    let peers = &peers;
    let results: Vec<bool> = futures::stream::iter(missing)
        .map(|hash| async move { fetch_one(peers, chunks, hash).await })
        .buffer_unordered(FETCH_CONCURRENCY_MAX)
        .collect()
        .await;
    let fetched = results.iter().filter(|ok| **ok).count();
    let failed = results.len() - fetched;
    if !results.is_empty() {
        tracing::info!(fetched, failed, "fetched missing chunks from peers");
    }
    failed as u64
}

/// A client for each member's peer address (ourselves included: asking our own
/// listener for a chunk we lack costs one refusal).
fn peer_clients(
    membership: &StoredMembership,
    tls: &ClientTlsConfig,
) -> HashMap<String, RaftPeerClient<Channel>> {
    let mut peers = HashMap::new();
    for (_, node) in membership.membership().nodes() {
        if let Ok(client) = connect_peer(&node.peer_addr, tls) {
            peers.insert(node.peer_addr.clone(), client);
        }
    }
    peers
}

/// Fetches one chunk from whichever member has it (a read found it missing or
/// damaged here); whether it is now stored.
pub async fn fetch_chunk(
    chunks: &ChunkStore,
    membership: &StoredMembership,
    tls: &ClientTlsConfig,
    hash: Hash,
) -> bool {
    fetch_one(&peer_clients(membership, tls), chunks, hash).await
}

/// Chunks the state names that the store lacks.
fn missing_chunks<'a>(store: &Store, chunks: &'a ChunkStore) -> impl Iterator<Item = Hash> + 'a {
    store
        .tree()
        .scan_prefix([keys::CHUNK])
        .filter_map(|item| item.ok())
        .filter_map(|(key, _)| <Hash>::try_from(&key[1..]).ok())
        .filter(|hash| !chunks.has(hash))
}

/// How many chunks the state names that the store lacks (a local walk).
pub fn count_missing(store: &Store, chunks: &ChunkStore) -> u64 {
    missing_chunks(store, chunks).count() as u64
}

async fn fetch_one(
    peers: &HashMap<String, RaftPeerClient<Channel>>,
    chunks: &ChunkStore,
    hash: Hash,
) -> bool {
    for (addr, client) in peers {
        let mut client = client.clone();
        let request = RaftPayload {
            data: hash.to_vec().into(),
        };
        let call = client.fetch_chunk(request);
        let data = match tokio::time::timeout(Duration::from_millis(FETCH_TIMEOUT_MS), call).await {
            Ok(Ok(reply)) => reply.into_inner().data,
            Ok(Err(status)) => {
                tracing::debug!(peer = %addr, %status, "chunk fetch");
                continue;
            }
            Err(_) => continue,
        };
        if blake3::hash(&data).as_bytes() != &hash {
            tracing::warn!(peer = %addr, chunk = %hex::encode(hash), "peer sent a chunk that does not match its hash");
            continue;
        }
        let chunks = chunks.clone();
        let stored =
            tokio::task::spawn_blocking(move || chunks.write_durable(&[(hash, data.to_vec())]))
                .await;
        match stored {
            Ok(Ok(())) => return true,
            Ok(Err(e)) => tracing::warn!(error = %e, "storing a fetched chunk"),
            Err(e) => tracing::warn!(error = %e, "storing a fetched chunk"),
        }
        return false;
    }
    tracing::warn!(chunk = %hex::encode(hash), "no member has this chunk");
    false
}
