//! The `object` workload: whole-object put / get on a few keys of the `private`
//! bucket, checked with the versioned-KV linearizability model (the object's version
//! plays the KV version), one partition per key.
//!
//! Each put writes `OBJECT_BYTES` of its unique value repeated, so every object spans
//! two chunks and a torn read cannot hide: a get whose bytes are not one value
//! repeated is recorded as the value `torn:…`, which no put wrote, and the checker
//! rejects the history. Like the register workload, one process per node only reads
//! (through its own node) and keys rotate after `OPS_PER_KEY_MAX` operations.

use std::sync::Mutex;

use bytes::Bytes;
use cairn::client::PutObjectOptions;
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value};

use super::client::{read_error_outcome, write_error_outcome, Op, Outcome, Session};
use super::register::KeyCursor;

/// Operations per key before the generator moves to a new key.
pub const OPS_PER_KEY_MAX: u64 = 100;
/// Size of every object: a little over one chunk, so each spans two.
pub const OBJECT_BYTES: usize = 1024 * 1024 + 4096;
/// Share of reads among a writer process's operations, in percent.
const WRITER_READ_PERCENT: u32 = 30;
const BUCKET: &str = "private";

#[derive(Default)]
pub struct ObjectWorkload {
    cursor: Mutex<KeyCursor>,
}

pub fn key_name(index: u64) -> String {
    format!("o{index}")
}

/// `value` repeated (with a separator) to exactly `OBJECT_BYTES`.
pub fn content(value: &str) -> Vec<u8> {
    let unit = format!("{value};");
    unit.as_bytes()
        .iter()
        .copied()
        .cycle()
        .take(OBJECT_BYTES)
        .collect()
}

/// The value an object's bytes repeat, or `torn:<first>` if they are not one value.
pub fn decode(bytes: &[u8]) -> String {
    let first = bytes
        .split(|b| *b == b';')
        .next()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default();
    if bytes.len() == OBJECT_BYTES && content(&first) == bytes {
        first
    } else {
        format!("torn:{first}")
    }
}

impl ObjectWorkload {
    fn cursor(&self) -> std::sync::MutexGuard<'_, KeyCursor> {
        self.cursor
            .lock()
            .expect("object cursor lock is never poisoned")
    }

    /// Keys used so far, oldest first.
    pub fn keys(&self) -> Vec<String> {
        (0..=self.cursor().key_index).map(key_name).collect()
    }

    pub fn next_op(&self, rng: &mut StdRng, process: u64, reader: bool) -> Op {
        let mut cursor = self.cursor();
        cursor.advance(OPS_PER_KEY_MAX);
        let key = Some(key_name(cursor.key_index));
        if reader || rng.gen_range(0..100) < WRITER_READ_PERCENT {
            return Op {
                f: "get",
                key,
                value: Value::Null,
            };
        }
        Op {
            f: "put",
            key,
            value: json!(format!("{process}-{}", cursor.next_value)),
        }
    }

    pub async fn execute(&self, session: &Session, op: &Op) -> Outcome {
        let key = op.key.as_deref().unwrap_or_default();
        if op.f == "get" {
            return match session.reader.get_object(BUCKET, key).await {
                Ok((info, bytes)) => Outcome::Ok(json!([info.version, decode(&bytes)])),
                Err(error) if error.code() == "not_found" => Outcome::Ok(Value::Null),
                Err(error) => read_error_outcome(&error),
            };
        }
        let value = op.value.as_str().unwrap_or_default();
        let data = Bytes::from(content(value));
        let options = PutObjectOptions::default();
        match session
            .writer
            .put_object_bytes(BUCKET, key, data, &options)
            .await
        {
            Ok(put) => Outcome::Ok(json!([put.version, value])),
            Err(error) => write_error_outcome(&error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_objects_decode_to_their_value_and_torn_ones_do_not() {
        let a = content("3-17");
        assert_eq!(a.len(), OBJECT_BYTES);
        assert_eq!(decode(&a), "3-17");
        let mut torn = a.clone();
        torn[OBJECT_BYTES - 10..].copy_from_slice(&content("4-18")[..10]);
        assert!(decode(&torn).starts_with("torn:"));
        assert!(decode(&a[..100]).starts_with("torn:"));
    }
}
