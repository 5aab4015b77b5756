//! Stores a new chunk on a quorum of members outside the Raft log.
//!
//! The node taking an upload writes the chunk to its own store and pushes it to
//! every other member (`StoreChunk`) at once; each member checks the hash, writes
//! the file durably (temp, fsync, rename, fsync of the directory) and only then
//! answers. Once a majority of the voters (of each half of a joint configuration)
//! holds it durably, counting this node if it votes, the caller proposes a small
//! record naming the chunk (`ObjectCommand::StageChunk`), so the log carries
//! 36 bytes instead of the chunk. Members still sending when the quorum is reached
//! finish in the background within `CHUNK_PUSH_BACKGROUND_BYTES_MAX`; beyond that,
//! or if they fail, they fetch the chunk after applying its record (the repair
//! worker). Why this keeps every acknowledged chunk: docs/architecture.md
//! ("Chunks outside the log").

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::Semaphore;

use super::error::NodeError;
use super::node::Node;
use super::types::NodeId;
use crate::chunk_ref::Hash;
use crate::proto::raft::RaftPayload;

/// How long one member may take to store one chunk before it counts as missing it.
const STORE_CHUNK_TIMEOUT_MS: u64 = 10_000;
/// Chunk bytes a node keeps pushing to slow members after their quorum answered;
/// a push past it is dropped (that member fetches the chunk later).
pub const CHUNK_PUSH_BACKGROUND_BYTES_MAX: usize = 64 * 1024 * 1024;

/// The budget for [`CHUNK_PUSH_BACKGROUND_BYTES_MAX`], one per node.
pub fn background_budget() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(CHUNK_PUSH_BACKGROUND_BYTES_MAX))
}

/// The `StoreChunk` request: the hash, then the bytes.
pub fn encode_request(hash: &Hash, data: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(hash.len() + data.len());
    out.extend_from_slice(hash);
    out.extend_from_slice(data);
    out.freeze()
}

/// Splits a `StoreChunk` request; `None` if it is shorter than a hash.
pub fn decode_request(mut payload: Bytes) -> Option<(Hash, Bytes)> {
    if payload.len() < 32 {
        return None;
    }
    let data = payload.split_off(32);
    let hash: Hash = payload[..].try_into().ok()?;
    Some((hash, data))
}

/// Whether `acked` holds a majority of every configuration in `joint`.
fn is_quorum(joint: &[BTreeSet<NodeId>], acked: &BTreeSet<NodeId>) -> bool {
    joint
        .iter()
        .all(|voters| voters.intersection(acked).count() * 2 > voters.len())
}

/// Why one member did not store a chunk.
#[derive(Debug)]
struct PushError {
    /// Its disk is below its reserve or full: the operator's to fix, said as such.
    no_space: bool,
    message: String,
}

impl PushError {
    fn other(message: impl ToString) -> Self {
        PushError {
            no_space: false,
            message: message.to_string(),
        }
    }

    fn io(e: std::io::Error) -> Self {
        PushError {
            no_space: e.kind() == std::io::ErrorKind::StorageFull,
            message: e.to_string(),
        }
    }

    fn status(status: tonic::Status) -> Self {
        PushError {
            no_space: status.code() == tonic::Code::ResourceExhausted,
            message: status.message().to_string(),
        }
    }
}

type Push =
    std::pin::Pin<Box<dyn std::future::Future<Output = (NodeId, Result<(), PushError>)> + Send>>;

/// Stores `data` (named `hash`, already checked by the caller) durably on a quorum
/// of voters. `Unavailable` if no quorum stored it; `NoSpace` if this node's disk
/// is below its reserve.
pub async fn store_on_quorum(node: &Arc<Node>, hash: Hash, data: Bytes) -> Result<(), NodeError> {
    node.disk_guard.check(node.id)?;
    let membership = node.metrics().membership_config.membership().clone();
    let joint: Vec<BTreeSet<NodeId>> = membership.get_joint_config().clone();
    if joint.is_empty() || joint.iter().any(BTreeSet::is_empty) {
        // No voters known yet (a node not yet in a cluster): no quorum to count.
        return Err(NodeError::Unavailable(
            "this node knows no voters yet".into(),
        ));
    }
    let members: BTreeMap<NodeId, String> = membership
        .nodes()
        .map(|(id, addr)| (*id, addr.peer_addr.clone()))
        .collect();
    let timeout = Duration::from_millis(STORE_CHUNK_TIMEOUT_MS);
    let mut pushes: FuturesUnordered<Push> = FuturesUnordered::new();
    for (id, addr) in members {
        if id == node.id {
            let (chunks, data) = (node.chunks.clone(), data.clone());
            pushes.push(Box::pin(async move {
                let stored = tokio::task::spawn_blocking(move || chunks.store_pushed(&hash, &data))
                    .await
                    .map_err(PushError::other)
                    .and_then(|r| r.map_err(PushError::io));
                (id, stored)
            }));
            continue;
        }
        let node = node.clone();
        let request = RaftPayload {
            data: encode_request(&hash, &data),
        };
        pushes.push(Box::pin(async move {
            let sent = async {
                let mut client = node.peer_client(&addr).await.map_err(PushError::other)?;
                client
                    .store_chunk(request)
                    .await
                    .map(|_| ())
                    .map_err(PushError::status)
            };
            match tokio::time::timeout(timeout, sent).await {
                Ok(result) => (id, result),
                Err(_) => (
                    id,
                    Err(PushError::other(format!(
                        "no answer within {STORE_CHUNK_TIMEOUT_MS} ms"
                    ))),
                ),
            }
        }));
    }
    let mut acked = BTreeSet::new();
    let mut failures = Vec::new();
    while !is_quorum(&joint, &acked) {
        let Some((id, result)) = pushes.next().await else {
            return Err(NodeError::Unavailable(format!(
                "chunk {} reached no quorum of members ({})",
                hex::encode(hash),
                failures.join("; ")
            )));
        };
        match result {
            Ok(()) => {
                acked.insert(id);
            }
            Err(e) if e.no_space => return Err(NodeError::NoSpace(e.message)),
            Err(e) => {
                tracing::debug!(member = id, chunk = %hex::encode(hash), error = %e.message, "chunk push");
                failures.push(format!("node {id}: {}", e.message));
            }
        }
    }
    crate::metrics::global().chunk_pushes.inc();
    if !pushes.is_empty() {
        // The rest finish in the background, within the node's budget; dropping
        // them cancels their calls, and those members fetch the chunk later.
        if let Ok(permit) = node
            .chunk_push_budget
            .clone()
            .try_acquire_many_owned(data.len() as u32)
        {
            tokio::spawn(async move {
                while pushes.next().await.is_some() {}
                drop(permit);
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_needs_a_majority_of_every_configuration() {
        let set = |ids: &[NodeId]| ids.iter().copied().collect::<BTreeSet<_>>();
        let one = vec![set(&[1, 2, 3])];
        assert!(!is_quorum(&one, &set(&[1])));
        assert!(is_quorum(&one, &set(&[1, 3])));
        // A learner's copy (4) does not count.
        assert!(!is_quorum(&one, &set(&[1, 4])));
        let joint = vec![set(&[1, 2, 3]), set(&[3, 4, 5])];
        assert!(!is_quorum(&joint, &set(&[1, 2])));
        assert!(is_quorum(&joint, &set(&[1, 3, 4])));
        // An empty configuration is a quorum vacuously: store_on_quorum refuses it first.
        assert!(
            is_quorum(&[], &set(&[])),
            "vacuous: why store_on_quorum checks first"
        );
    }

    #[test]
    fn requests_round_trip_and_short_ones_are_refused() {
        let hash = [7u8; 32];
        let payload = encode_request(&hash, b"chunk bytes");
        let (h, data) = decode_request(payload).unwrap();
        assert_eq!(h, hash);
        assert_eq!(&data[..], b"chunk bytes");
        assert!(decode_request(Bytes::from_static(&[1, 2, 3])).is_none());
    }
}
