//! Conversions between protobuf messages and domain types; handlers call these and
//! never build one from the other by hand.

use crate::proto::v1;
use crate::raft::{Consistency, MemberInfo, Node};
use crate::state::SessionTag;

use super::super::error::ApiError;

pub fn session(session: Option<v1::Session>) -> Option<SessionTag> {
    session.map(|s| SessionTag {
        client_id: s.client_id,
        seq: s.seq,
        lowest_unanswered_seq: s.lowest_unanswered_seq,
    })
}

pub fn consistency(value: i32) -> Result<Consistency, ApiError> {
    match v1::Consistency::try_from(value) {
        Ok(v1::Consistency::Linearizable) => Ok(Consistency::Linearizable),
        Ok(v1::Consistency::Stale) => Ok(Consistency::Stale),
        Err(_) => Err(crate::state::Error::invalid(
            "consistency",
            format!("unknown value {value}"),
        )
        .into()),
    }
}

pub fn member(info: &MemberInfo) -> v1::Member {
    v1::Member {
        id: info.id,
        grpc_addr: info.addr.grpc_addr.clone(),
        http_addr: info.addr.http_addr.clone(),
        voter: info.voter,
        peer_addr: info.addr.peer_addr.clone(),
    }
}

pub fn node_status(node: &Node) -> v1::NodeStatus {
    let metrics = node.metrics();
    let members = node.members();
    let role = node.role_name();
    v1::NodeStatus {
        id: node.id,
        role: role.to_string(),
        term: metrics.current_term,
        last_log_index: metrics.last_log_index.unwrap_or(0),
        applied_index: metrics.last_applied.map(|id| id.index).unwrap_or(0),
        leader_id: metrics.current_leader,
        members: members.iter().map(member).collect(),
        snapshot_index: metrics.snapshot.map(|id| id.index).unwrap_or(0),
        purged_index: metrics.purged.map(|id| id.index).unwrap_or(0),
        grpc_addr: node.addr.grpc_addr.clone(),
        http_addr: node.addr.http_addr.clone(),
        chunks_missing: node.chunks_missing(),
        peer_addr: node.addr.peer_addr.clone(),
        scrub_chunks_checked: node.scrub.checked(),
        scrub_chunks_damaged: node.scrub.damaged(),
        scrub_chunks_repaired: node.scrub.repaired(),
        scrub_passes: node.scrub.passes(),
    }
}
