//! bincode with explicit size limits: the one way cairn decodes peer payloads and
//! records read back from disk.
//!
//! The encoding is bincode 1's legacy format (fixed-width integers, trailing bytes
//! allowed), so everything already on disk and on the wire reads back unchanged.
//! The bound: input longer than the limit is refused outright. Within it, bincode
//! decoding from a slice checks every claimed length against the bytes that are
//! actually left before it allocates (a byte string claiming 4 GiB in a 1 KiB
//! payload fails at once), and serde caps what a sequence reserves up front, so
//! memory stays proportional to the input, never to what the input claims.
//! (bincode's own `with_limit` is ignored for slices, hence the length check.)

use serde::de::DeserializeOwned;
use serde::Serialize;

use bincode::Options;

use crate::limits::{DISK_RECORD_BYTES_MAX, GRPC_MESSAGE_BYTES_MAX};

fn options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .allow_trailing_bytes()
}

/// Decodes `bytes`, refusing more than `limit_bytes` of them.
pub fn decode_bounded<T: DeserializeOwned>(bytes: &[u8], limit_bytes: u64) -> bincode::Result<T> {
    if bytes.len() as u64 > limit_bytes {
        return Err(Box::new(bincode::ErrorKind::SizeLimit));
    }
    options().deserialize(bytes)
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
        // A byte string whose length prefix claims 4 GiB, followed by 8 bytes: refused
        // before anything of that size is read or allocated.
        let mut bytes = (4u64 << 30).to_le_bytes().to_vec();
        bytes.extend_from_slice(&[b'a'; 8]);
        assert!(decode_bounded::<serde_bytes::ByteBuf>(&bytes, 1024).is_err());
        assert!(decode_bounded::<String>(&bytes, 1024).is_err());
        // Within the input but over the limit: refused by the limit itself.
        let mut small = 16u64.to_le_bytes().to_vec();
        small.extend_from_slice(&[b'a'; 16]);
        let error = decode_bounded::<serde_bytes::ByteBuf>(&small, 12).unwrap_err();
        assert!(matches!(*error, bincode::ErrorKind::SizeLimit), "{error}");
        assert_eq!(
            decode_bounded::<serde_bytes::ByteBuf>(&small, 24)
                .unwrap()
                .len(),
            16
        );
        // A sequence claiming 4 Gi elements fails at its end of input; serde caps
        // what it reserves up front, so nothing of the claimed size is allocated.
        assert!(decode_bounded::<Vec<u64>>(&bytes, 1 << 20).is_err());
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
