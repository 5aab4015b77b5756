//! The crate's error type. Every malformed input (unreadable file, bad line, an operation
//! a model cannot interpret) becomes an [`Error`] naming the line; nothing panics on input.

use std::fmt;
use std::path::PathBuf;

/// Why a history could not be read or interpreted.
#[derive(Debug)]
pub enum Error {
    /// The history file could not be read.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A line of the file is not valid in its format.
    Parse { line_number: u64, message: String },
    /// The events are well-formed but do not make a history (a completion without an
    /// invocation, a value the model cannot interpret, ...).
    History { line_number: u64, message: String },
}

impl Error {
    pub(crate) fn parse(line_number: u64, message: impl Into<String>) -> Error {
        Error::Parse {
            line_number,
            message: message.into(),
        }
    }

    pub(crate) fn history(line_number: u64, message: impl Into<String>) -> Error {
        Error::History {
            line_number,
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, source } => {
                write!(formatter, "cannot read {}: {source}", path.display())
            }
            Error::Parse {
                line_number,
                message,
            } => write!(formatter, "line {line_number}: {message}"),
            Error::History {
                line_number,
                message,
            } => write!(formatter, "line {line_number}: {message}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
