//! Client writes that reach a node which does not lead: handed to the leader
//! over the peer link (mutual TLS) and answered with the leader's result.
//!
//! gRPC clients learn the leader from a `NotLeader` reply and go there
//! themselves; the REST front cannot ask that of unmodified HTTP clients, so it
//! writes with [`Route::Forward`]. The leader proposes a forwarded command
//! exactly as one of its own clients' commands. A forward is sent again only
//! when the node it reached refused it *before proposing* (it did not lead
//! either): such a command cannot have been applied, so resending it is safe
//! even without a session. Any other failure (a timeout, a broken connection)
//! may or may not have committed and is returned as it is.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::NodeError;
use super::proposer::Committed;
use crate::state::ClientCommand;

/// How a write reaches the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Only the leader writes; elsewhere the caller gets `NotLeader` with the
    /// leader's address (gRPC clients follow it).
    Leader,
    /// A node that does not lead forwards the write to the leader.
    Forward,
}

/// The payload of the `Propose` peer RPC.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Forwarded {
    pub command: ClientCommand,
    /// Propose as its own entry (large chunks), not through group commit.
    pub alone: bool,
}

/// Sends of one forward, counting the first: a leader change during the
/// forward costs one more round, two changes in a row give up.
pub const FORWARD_ATTEMPTS_MAX: u32 = 3;
/// How long one forwarded write may take on the leader (a 1 MiB chunk through
/// a slow quorum included).
pub const FORWARD_TIMEOUT_MS: u64 = 60_000;
/// How long a node with no known leader waits for one before a forward gives up.
pub const LEADER_WAIT_MS_MAX: u64 = 5_000;

pub fn timeout() -> Duration {
    Duration::from_millis(FORWARD_TIMEOUT_MS)
}

/// Whether a forward that failed with `error` may be sent again: only a refusal
/// that proves nothing was proposed.
pub fn retryable(error: &NodeError) -> bool {
    matches!(error, NodeError::NotLeader { .. })
}

/// Decodes the reply of `Propose`; an undecodable reply is the leader's fault
/// and the write's fate unknown.
pub fn decode_reply(data: &[u8]) -> Committed {
    crate::codec::decode_peer::<Committed>(data)
        .map_err(|e| NodeError::Unavailable(format!("undecodable forward reply: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_refusals_before_proposing_are_retried() {
        let not_leader = NodeError::NotLeader {
            leader_id: Some(2),
            leader: None,
        };
        assert!(retryable(&not_leader));
        assert!(!retryable(&NodeError::Timeout("t".into())));
        assert!(!retryable(&NodeError::Unavailable("u".into())));
    }

    #[test]
    fn a_damaged_reply_is_an_unknown_outcome_not_a_panic() {
        for reply in [
            &[][..],
            &[0xff; 16][..],
            &[1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff][..],
        ] {
            assert!(matches!(
                decode_reply(reply),
                Err(NodeError::Unavailable(_))
            ));
        }
        let answered: Committed = Err(NodeError::Timeout("t".into()));
        let bytes = bincode::serialize(&answered).unwrap();
        assert_eq!(decode_reply(&bytes), answered);
    }
}
