//! Typed errors of the Rust SDK, rebuilt from the `cairn-code` metadata a node sends.

use tonic::{Code, Status};

pub use crate::errno::Errno;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// A size or count limit; `field` names what was too large, `limit` the bound.
    #[error("{message}")]
    LimitExceeded {
        field: String,
        limit: u64,
        message: String,
    },
    #[error("{message}")]
    InvalidArgument { field: String, message: String },
    /// A compare-and-swap or put-if-absent found another version.
    #[error("{0}")]
    VersionMismatch(String),
    /// The node is not the leader; the SDK follows the hint by itself.
    #[error("not the leader (leader at {leader_addr:?})")]
    NotLeader { leader_addr: Option<String> },
    /// No node could serve the request right now (election, partition, node down).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The call's deadline passed; a write may or may not have taken effect.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The cluster refused the request for a reason given by `code`.
    #[error("{code}: {message}")]
    Rejected { code: String, message: String },
    #[error("internal error: {0}")]
    Internal(String),
    #[error("invalid endpoint {0:?}")]
    InvalidEndpoint(String),
    /// A file system call failed as the POSIX call would (`ENOENT`, `EEXIST`, ...).
    #[error("{message}")]
    Fs { errno: Errno, message: String },
}

fn metadata(status: &Status, key: &str) -> Option<String> {
    status
        .metadata()
        .get(key)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

impl Error {
    pub fn from_status(status: &Status) -> Self {
        let message = status.message().to_string();
        let Some(code) = metadata(status, "cairn-code") else {
            return Self::from_transport(status);
        };
        let field = || metadata(status, "cairn-field").unwrap_or_default();
        match code.as_str() {
            "not_found" => Error::NotFound(message),
            "already_exists" => Error::AlreadyExists(message),
            "limit_exceeded" => Error::LimitExceeded {
                field: field(),
                limit: metadata(status, "cairn-limit")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(0),
                message,
            },
            "invalid_argument" => Error::InvalidArgument {
                field: field(),
                message,
            },
            "version_mismatch" => Error::VersionMismatch(message),
            "not_leader" => Error::NotLeader {
                leader_addr: metadata(status, "cairn-leader-addr"),
            },
            // An upload whose chunk was collected meanwhile: sending it again works.
            "unavailable" | "chunk_missing" => Error::Unavailable(message),
            "timeout" => Error::Timeout(message),
            "internal" => Error::Internal(message),
            // A partial-block write raced another writer; the server gave up retrying.
            "write_raced" => Error::Unavailable(message),
            _ => match Errno::from_name(&code) {
                Some(errno) => Error::Fs { errno, message },
                None => Error::Rejected { code, message },
            },
        }
    }

    /// A status that did not come from cairn's handlers: connection trouble.
    fn from_transport(status: &Status) -> Self {
        match status.code() {
            Code::DeadlineExceeded => Error::Timeout(status.message().to_string()),
            Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Aborted => {
                Error::Unavailable(status.message().to_string())
            }
            _ => Error::Internal(format!("{:?}: {}", status.code(), status.message())),
        }
    }

    /// Whether another attempt (same seq for writes) may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::NotLeader { .. } | Error::Unavailable(_) | Error::Timeout(_)
        )
    }

    /// The errno of a file system error, if this is one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::Fs { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    /// Stable code, as the server sends it.
    pub fn code(&self) -> &str {
        match self {
            Error::NotFound(_) => "not_found",
            Error::AlreadyExists(_) => "already_exists",
            Error::LimitExceeded { .. } => "limit_exceeded",
            Error::InvalidArgument { .. } => "invalid_argument",
            Error::VersionMismatch(_) => "version_mismatch",
            Error::NotLeader { .. } => "not_leader",
            Error::Unavailable(_) => "unavailable",
            Error::Timeout(_) => "timeout",
            Error::Rejected { code, .. } => code,
            Error::Internal(_) => "internal",
            Error::InvalidEndpoint(_) => "invalid_endpoint",
            Error::Fs { errno, .. } => errno.name(),
        }
    }
}
