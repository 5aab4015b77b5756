//! The one mapping from internal errors to what clients see.
//!
//! gRPC: a status code, a one-line message naming the field and limit, and metadata
//! (`cairn-code` always; `cairn-field`/`cairn-limit` for limits; `cairn-leader-id`
//! and `cairn-leader-addr` when another node leads) from which the SDK rebuilds a
//! typed error.

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use crate::raft::NodeError;
use crate::state;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    State(#[from] state::Error),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<state::ReadError> for ApiError {
    fn from(e: state::ReadError) -> Self {
        match e {
            state::ReadError::Rejected(e) => ApiError::State(e),
            state::ReadError::Storage(e) => ApiError::Internal(e.to_string()),
        }
    }
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::State(e) => e.code(),
            ApiError::Node(NodeError::NotLeader { .. }) => "not_leader",
            ApiError::Node(NodeError::Unavailable(_)) => "unavailable",
            ApiError::Node(NodeError::Timeout(_)) => "timeout",
            ApiError::Node(NodeError::Rejected(_)) => "rejected",
            ApiError::Internal(_) => "internal",
        }
    }

    fn grpc_code(&self) -> Code {
        match self {
            ApiError::State(e) => match e {
                state::Error::NotFound { .. } => Code::NotFound,
                state::Error::AlreadyExists { .. } => Code::AlreadyExists,
                state::Error::LimitExceeded { .. } | state::Error::InvalidArgument { .. } => {
                    Code::InvalidArgument
                }
                state::Error::VersionMismatch { .. } | state::Error::SessionExpired { .. } => {
                    Code::FailedPrecondition
                }
                state::Error::SessionWindowExceeded { .. } => Code::ResourceExhausted,
            },
            ApiError::Node(NodeError::NotLeader { .. } | NodeError::Unavailable(_)) => {
                Code::Unavailable
            }
            ApiError::Node(NodeError::Timeout(_)) => Code::DeadlineExceeded,
            ApiError::Node(NodeError::Rejected(_)) => Code::FailedPrecondition,
            ApiError::Internal(_) => Code::Internal,
        }
    }

    pub fn into_status(self) -> Status {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "internal error");
        }
        let message = match &self {
            ApiError::Internal(_) => "internal error (details in the server log)".to_string(),
            other => other.to_string(),
        };
        let mut status = Status::new(self.grpc_code(), message);
        let metadata = status.metadata_mut();
        metadata.insert("cairn-code", MetadataValue::from_static(self.code()));
        match &self {
            ApiError::State(state::Error::LimitExceeded { field, limit, .. }) => {
                insert(metadata, "cairn-field", field);
                insert(metadata, "cairn-limit", &limit.to_string());
            }
            ApiError::State(state::Error::InvalidArgument { field, .. }) => {
                insert(metadata, "cairn-field", field)
            }
            ApiError::Node(NodeError::NotLeader { leader_id, leader }) => {
                if let Some(id) = leader_id {
                    insert(metadata, "cairn-leader-id", &id.to_string());
                }
                if let Some(leader) = leader {
                    insert(metadata, "cairn-leader-addr", &leader.grpc_addr);
                }
            }
            _ => {}
        }
        status
    }
}

fn insert(metadata: &mut tonic::metadata::MetadataMap, key: &'static str, value: &str) {
    // A value that is not valid metadata (non-ASCII field name) is left out; the
    // message still carries it.
    if let Ok(value) = value.parse() {
        metadata.insert(key, value);
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Self {
        e.into_status()
    }
}
