//! bincode with explicit size limits: the one way cairn decodes peer payloads and
//! records read back from disk.
//!
//! The encoding is bincode 1's legacy format (fixed-width integers, trailing bytes
//! allowed), so everything already on disk and on the wire reads back unchanged;
//! what changes is that a length prefix claiming more than the limit is refused
//! before anything is allocated for it.

use serde::de::DeserializeOwned;
use serde::Serialize;

use bincode::Options;

use crate::limits::{DISK_RECORD_BYTES_MAX, GRPC_MESSAGE_BYTES_MAX};

fn options(limit_bytes: u64) -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .allow_trailing_bytes()
        .with_limit(limit_bytes)
}

/// Decodes at most `limit_bytes` of `bytes`.
pub fn decode_bounded<T: DeserializeOwned>(bytes: &[u8], limit_bytes: u64) -> bincode::Result<T> {
    options(limit_bytes).deserialize(bytes)
}

/// Decodes a payload a peer sent (at most one gRPC message).
pub fn decode_peer<T: DeserializeOwned>(bytes: &[u8]) -> bincode::Result<T> {
    decode_bounded(bytes, GRPC_MESSAGE_BYTES_MAX as u64)
}

/// Decodes a record read back from this node's disk (a log entry, a meta file, a
/// state record, a snapshot header).
pub fn decode_disk<T: DeserializeOwned>(bytes: &[u8]) -> bincode::Result<T> {
    decode_bounded(bytes, DISK_RECORD_BYTES_MAX)
}

/// Encodes in the same format (unbounded: the value is our own).
pub fn encode<T: Serialize + ?Sized>(value: &T) -> bincode::Result<Vec<u8>> {
    bincode::serialize(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claimed_length_over_the_limit_is_refused() {
        // A Vec<u8> whose length prefix claims 4 GiB, followed by 8 bytes.
        let mut bytes = (4u64 << 30).to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0; 8]);
        let error = decode_bounded::<Vec<u8>>(&bytes, 1024).unwrap_err();
        assert!(matches!(*error, bincode::ErrorKind::SizeLimit), "{error}");
    }

    #[test]
    fn the_format_is_bincode_1_legacy() {
        let value = (7u64, "name".to_string(), vec![1u8, 2, 3]);
        let bytes = encode(&value).unwrap();
        assert_eq!(bytes, bincode::serialize(&value).unwrap());
        assert_eq!(
            decode_disk::<(u64, String, Vec<u8>)>(&bytes).unwrap(),
            value
        );
    }
}
