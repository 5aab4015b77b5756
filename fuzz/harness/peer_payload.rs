//! Every payload a peer sends or answers (forwarded writes and their results
//! included), through `codec::decode_peer` as
//! `peer_service` and `peer_client` decode them. The first byte picks the type, the
//! rest is the payload. A payload that decodes must encode again and decode to the
//! same bytes (what one node encodes, the other reads back unchanged).
//!
//! Shared by `fuzz/fuzz_targets/peer_payload.rs` and `tests/fuzz_regressions.rs`.

#![allow(dead_code)] // each user takes what it needs

use cairn::codec::{decode_peer, encode};
use cairn::raft::forward::Forwarded;
use cairn::raft::proposer::Committed;
use cairn::raft::read_index::ReadIndexError;
use cairn::raft::report::NodeReport;
use cairn::raft::types::{Hello, RaftError, TypeConfig};
use openraft::error::InstallSnapshotError;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The type names, in the order of the selector byte (modulo their count).
pub const TYPES: [&str; 11] = [
    "AppendEntriesRequest",
    "VoteRequest",
    "InstallSnapshotRequest",
    "Result<AppendEntriesResponse, RaftError>",
    "Result<VoteResponse, RaftError>",
    "Result<InstallSnapshotResponse, RaftError<InstallSnapshotError>>",
    "Result<u64, ReadIndexError>",
    "Hello",
    "Forwarded",
    "Committed",
    "NodeReport",
];

/// Decodes `bytes` as `T`; if that works, checks the round trip.
fn check<T: DeserializeOwned + Serialize>(bytes: &[u8]) -> Result<(), String> {
    let value: T = decode_peer(bytes).map_err(|e| e.to_string())?;
    let encoded = encode(&value).expect("a decoded value encodes");
    let again: T = decode_peer(&encoded)
        .unwrap_or_else(|e| panic!("a re-encoded payload does not decode: {e}"));
    let encoded_again = encode(&again).expect("a decoded value encodes");
    assert_eq!(encoded, encoded_again, "the round trip changed the payload");
    Ok(())
}

/// `Ok(type name)` if the payload decoded (and round-tripped), `Err` with the
/// decoder's message if it was refused. Panics only on a bug.
pub fn run(data: &[u8]) -> Result<&'static str, String> {
    let Some((&selector, bytes)) = data.split_first() else {
        return Err("empty input".into());
    };
    let which = selector as usize % TYPES.len();
    match which {
        0 => check::<AppendEntriesRequest<TypeConfig>>(bytes),
        1 => check::<VoteRequest<u64>>(bytes),
        2 => check::<InstallSnapshotRequest<TypeConfig>>(bytes),
        3 => check::<Result<AppendEntriesResponse<u64>, RaftError>>(bytes),
        4 => check::<Result<VoteResponse<u64>, RaftError>>(bytes),
        5 => check::<Result<InstallSnapshotResponse<u64>, RaftError<InstallSnapshotError>>>(bytes),
        6 => check::<Result<u64, ReadIndexError>>(bytes),
        7 => check::<Hello>(bytes),
        8 => check::<Forwarded>(bytes),
        9 => check::<Committed>(bytes),
        _ => check::<NodeReport>(bytes),
    }
    .map(|()| TYPES[which])
}

/// A valid payload of each type (selector byte first), for seeds and tests.
pub fn samples() -> Vec<Vec<u8>> {
    use cairn::raft::types::NodeAddr;
    use openraft::{CommittedLeaderId, LogId, SnapshotMeta, Vote};
    let vote = Vote::new(3, 1);
    let log_id = LogId::new(CommittedLeaderId::new(3, 1), 7);
    let mut out = Vec::new();
    let mut push = |selector: u8, bytes: Vec<u8>| {
        let mut v = vec![selector];
        v.extend(bytes);
        out.push(v);
    };
    let append = AppendEntriesRequest::<TypeConfig> {
        vote,
        prev_log_id: Some(log_id),
        leader_commit: Some(log_id),
        entries: vec![openraft::Entry::<TypeConfig> {
            log_id: LogId::new(CommittedLeaderId::new(3, 1), 8),
            payload: openraft::EntryPayload::Blank,
        }],
    };
    push(0, encode(&append).unwrap());
    push(
        1,
        encode(&VoteRequest::<u64>::new(vote, Some(log_id))).unwrap(),
    );
    let install = InstallSnapshotRequest::<TypeConfig> {
        vote,
        meta: SnapshotMeta {
            last_log_id: Some(log_id),
            last_membership: Default::default(),
            snapshot_id: "3-1-7".into(),
        },
        offset: 0,
        data: vec![1, 2, 3],
        done: true,
    };
    push(2, encode(&install).unwrap());
    let ok: Result<AppendEntriesResponse<u64>, RaftError> = Ok(AppendEntriesResponse::Success);
    push(3, encode(&ok).unwrap());
    let ok: Result<VoteResponse<u64>, RaftError> = Ok(VoteResponse::new(vote, Some(log_id), true));
    push(4, encode(&ok).unwrap());
    let ok: Result<InstallSnapshotResponse<u64>, RaftError<InstallSnapshotError>> =
        Ok(InstallSnapshotResponse { vote });
    push(5, encode(&ok).unwrap());
    let ok: Result<u64, ReadIndexError> = Err(ReadIndexError::NotLeader {
        leader_id: Some(2),
        leader: Some(NodeAddr::default()),
    });
    push(6, encode(&ok).unwrap());
    let hello = Hello {
        initialized: true,
        addr: NodeAddr {
            grpc_addr: "127.0.0.1:7400".into(),
            http_addr: "127.0.0.1:7480".into(),
            peer_addr: "127.0.0.1:7401".into(),
        },
    };
    push(7, encode(&hello).unwrap());
    let forwarded = Forwarded {
        command: cairn::state::ClientCommand {
            session: None,
            command: cairn::state::Command::Queue(cairn::state::queue::QueueCommand::Send {
                queue: "q".into(),
                messages: vec![b"m".to_vec()],
            }),
        },
        alone: false,
    };
    push(8, encode(&forwarded).unwrap());
    let committed: Committed = Err(cairn::raft::NodeError::NotLeader {
        leader_id: Some(2),
        leader: Some(NodeAddr::default()),
    });
    push(9, encode(&committed).unwrap());
    let report = NodeReport {
        id: 2,
        role: "follower".into(),
        term: 3,
        leader_id: Some(1),
        last_log_index: 9,
        applied_index: 8,
        snapshot_index: 0,
        chunks: 4,
        chunk_bytes: 4096,
        chunks_missing: 0,
        millis_since_quorum_ack: None,
        disk_free_bytes: 1 << 30,
        disk_reserve_bytes: 256 << 20,
    };
    push(10, encode(&report).unwrap());
    out
}
