//! Errors the state machine returns as part of a command's result.
//!
//! They are deterministic (every replica computes the same one), travel inside the
//! Raft response, and are turned into gRPC/HTTP statuses by `api::error` only.

use serde::{Deserialize, Serialize};

pub use crate::errno::Errno;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Error {
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("{what} already exists")]
    AlreadyExists { what: String },
    #[error("{field} is {actual} {unit}; the limit is {limit}")]
    LimitExceeded {
        field: String,
        limit: u64,
        actual: u64,
        /// What `limit` and `actual` count: "bytes", "characters", "namespaces"...
        unit: String,
    },
    #[error("invalid {field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    #[error(
        "version mismatch: expected {}, found {}",
        show_version(expected),
        show_version(current)
    )]
    VersionMismatch {
        expected: Option<u64>,
        current: Option<u64>,
    },
    /// A manifest names a chunk the state does not hold (collected by GC while a
    /// stalled upload waited, or never staged). Nothing changed; uploading again
    /// stages it anew.
    #[error("chunk {hash} of the upload is no longer stored; upload again")]
    ChunkMissing { hash: String },
    #[error("session expired: seq {seq} was answered and forgotten; retry with a new seq")]
    SessionExpired { seq: u64 },
    #[error("too many writes in flight for this client: seq {seq}, lowest unanswered {lowest}")]
    SessionWindowExceeded { seq: u64, lowest: u64 },
    /// A partial-block write found the file changed since it read the block; the
    /// service reads again and retries (nothing changed).
    #[error("the file changed during the write; retry")]
    WriteRaced,
    /// A file system call failed the way a POSIX call would.
    #[error("{errno}: {what}")]
    Fs { errno: Errno, what: String },
}

impl Error {
    /// Stable machine-readable code, shared by gRPC metadata, HTTP bodies and the SDK.
    pub fn code(&self) -> &'static str {
        match self {
            Error::NotFound { .. } => "not_found",
            Error::AlreadyExists { .. } => "already_exists",
            Error::LimitExceeded { .. } => "limit_exceeded",
            Error::InvalidArgument { .. } => "invalid_argument",
            Error::VersionMismatch { .. } => "version_mismatch",
            Error::ChunkMissing { .. } => "chunk_missing",
            Error::SessionExpired { .. } => "session_expired",
            Error::SessionWindowExceeded { .. } => "session_window_exceeded",
            Error::WriteRaced => "write_raced",
            Error::Fs { errno, .. } => errno.name(),
        }
    }

    pub fn limit(field: &str, limit: u64, actual: u64, unit: &str) -> Self {
        Error::LimitExceeded {
            field: field.to_string(),
            limit,
            actual,
            unit: unit.to_string(),
        }
    }

    pub fn fs(errno: Errno, what: impl Into<String>) -> Self {
        Error::Fs {
            errno,
            what: what.into(),
        }
    }

    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field: field.to_string(),
            reason: reason.into(),
        }
    }
}

fn show_version(version: &Option<u64>) -> String {
    match version {
        Some(v) => format!("version {v}"),
        None => "no key".to_string(),
    }
}
