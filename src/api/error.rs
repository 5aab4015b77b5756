//! The one mapping from internal errors to what clients see.
//!
//! gRPC: a status code, a one-line message naming the field and limit, and metadata
//! (`cairn-code` always; `cairn-field`/`cairn-limit` for limits; `cairn-leader-id`
//! and `cairn-leader-addr` when another node leads) from which the SDK rebuilds a
//! typed error.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use crate::errno::Errno;
use crate::raft::NodeError;
use crate::state;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    State(#[from] state::Error),
    #[error(transparent)]
    Node(#[from] NodeError),
    /// No token, or one the cluster does not know.
    #[error("{0}")]
    Unauthenticated(String),
    /// A presigned URL that is expired or altered.
    #[error("{0}")]
    PermissionDenied(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// A failed read of the state tree is the node's fault, never the request's.
impl From<sled::Error> for ApiError {
    fn from(e: sled::Error) -> Self {
        ApiError::Internal(e.to_string())
    }
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
            ApiError::Node(NodeError::NoSpace(_)) => "no_space",
            ApiError::Unauthenticated(_) => "unauthenticated",
            ApiError::PermissionDenied(_) => "permission_denied",
            ApiError::Internal(_) => "internal",
        }
    }

    /// The HTTP status of this error (object routes and the REST front).
    pub fn http_status(&self) -> u16 {
        // A body over its limit is 413 and a key (in the URL) over its limit 414,
        // as HTTP clients and proxies expect; other limits are plain 400s.
        if let ApiError::State(state::Error::LimitExceeded { field, .. }) = self {
            return match field.as_str() {
                "key" => 414,
                "value" | "message" | "messages" | "body" | "object" | "file" => 413,
                _ => 400,
            };
        }
        if let ApiError::Node(NodeError::NoSpace(_)) = self {
            return 507; // Insufficient Storage
        }
        match self.grpc_code() {
            Code::NotFound => 404,
            Code::AlreadyExists => 409,
            Code::InvalidArgument => 400,
            Code::FailedPrecondition => 412,
            Code::ResourceExhausted => 429,
            Code::Unauthenticated => 401,
            Code::PermissionDenied => 403,
            Code::Unavailable => 503,
            Code::DeadlineExceeded => 504,
            _ => 500,
        }
    }

    /// The JSON body of an HTTP error: code, message, and field/limit when known.
    pub fn http_body(&self) -> serde_json::Value {
        let mut body = serde_json::json!({ "code": self.code(), "message": self.public_message() });
        match self {
            ApiError::State(state::Error::LimitExceeded { field, limit, .. }) => {
                body["field"] = field.clone().into();
                body["limit"] = (*limit).into();
            }
            ApiError::State(state::Error::InvalidArgument { field, .. }) => {
                body["field"] = field.clone().into();
            }
            _ => {}
        }
        body
    }

    fn public_message(&self) -> String {
        match self {
            ApiError::Internal(_) => "internal error (details in the server log)".to_string(),
            other => other.to_string(),
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
                state::Error::ChunkMissing { .. } | state::Error::WriteRaced => Code::Unavailable,
                state::Error::Fs { errno, .. } => match errno {
                    Errno::ENOENT | Errno::ESTALE | Errno::ENODATA => Code::NotFound,
                    Errno::EEXIST => Code::AlreadyExists,
                    Errno::ENOSPC => Code::ResourceExhausted,
                    Errno::EINVAL | Errno::ENAMETOOLONG | Errno::EFBIG | Errno::E2BIG => {
                        Code::InvalidArgument
                    }
                    _ => Code::FailedPrecondition,
                },
            },
            ApiError::Node(NodeError::NotLeader { .. } | NodeError::Unavailable(_)) => {
                Code::Unavailable
            }
            ApiError::Node(NodeError::Timeout(_)) => Code::DeadlineExceeded,
            ApiError::Node(NodeError::Rejected(_)) => Code::FailedPrecondition,
            ApiError::Node(NodeError::NoSpace(_)) => Code::ResourceExhausted,
            ApiError::Unauthenticated(_) => Code::Unauthenticated,
            ApiError::PermissionDenied(_) => Code::PermissionDenied,
            ApiError::Internal(_) => Code::Internal,
        }
    }

    pub fn into_status(self) -> Status {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "internal error");
        }
        let message = self.public_message();
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

/// HTTP: the status of [`ApiError::http_status`] and the JSON body of
/// [`ApiError::http_body`] (`{"code", "message"}`, plus field and limit).
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::warn!(error = %self, "http request failed");
        }
        (status, axum::Json(self.http_body())).into_response()
    }
}
