//! The validators of names, keys and paths in `src/state`: KV namespace names and
//! keys (`kv::validate_name`, `kv::validate_key`, `KvCommand::validate`), queue
//! commands (`QueueCommand::validate`), bucket names, object keys and attributes
//! (`object::validate_*`), file-system names, paths, symlink targets, attribute
//! names and file-system names (`fs::names`), and the key parsers of `keys`.
//!
//! Input: `[selector][rest]`; `rest` is the string (lossy UTF-8) or the bytes. Each
//! accepted value is checked against what the validator promises (only allowed
//! characters, paths that never leave the root, names that round-trip).
//!
//! Shared by `fuzz/fuzz_targets/names.rs` and `tests/fuzz_regressions.rs`.

#![allow(dead_code)] // each user takes what it needs

use std::collections::BTreeMap;

use cairn::codec::decode_peer;
use cairn::limits::{Limits, FS_PATH_BYTES_MAX};
use cairn::state::fs::names;
use cairn::state::fs::Failure;
use cairn::state::kv::{self, KvCommand};
use cairn::state::object;
use cairn::state::queue::QueueCommand;
use cairn::state::{keys, Error};

/// The validators, in the order of the selector byte (modulo their count).
pub const VALIDATORS: [&str; 13] = [
    "kv::validate_name",
    "kv::validate_key",
    "object::validate_bucket_name",
    "object::validate_key",
    "fs::names::check_name",
    "fs::names::parse_path",
    "fs::names::check_symlink_target",
    "fs::names::check_xattr",
    "fs::names::check_fs_name",
    "KvCommand::validate",
    "QueueCommand::validate",
    "object::validate_attributes",
    "keys::parse_*",
];

fn refused(e: Error) -> String {
    e.to_string()
}

fn failed(f: Failure) -> String {
    match f {
        Failure::Rejected(e) => e.to_string(),
        Failure::Storage(e) => panic!("a pure check touched storage: {e}"),
    }
}

fn kv_name_chars(name: &str) -> bool {
    name.bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// `Ok` if the value was accepted, `Err` with the refusal. Panics only on a bug.
pub fn run(data: &[u8]) -> Result<(), String> {
    let Some((&selector, bytes)) = data.split_first() else {
        return Err("empty input".into());
    };
    let text = String::from_utf8_lossy(bytes);
    let s: &str = &text;
    let limits = Limits::default();
    match selector as usize % VALIDATORS.len() {
        0 => {
            kv::validate_name("namespace", s, &limits).map_err(refused)?;
            assert!(!s.is_empty() && kv_name_chars(s), "accepted name {s:?}");
            assert!(
                s.len() as u64 <= limits.name_chars_max,
                "accepted name {s:?}"
            );
            Ok(())
        }
        1 => {
            kv::validate_key(bytes, &limits).map_err(refused)?;
            assert!(!bytes.is_empty() && bytes.len() as u64 <= limits.kv_key_bytes_max);
            let full = keys::kv(7, bytes);
            assert_eq!(keys::kv_user_key(&full), bytes);
            Ok(())
        }
        2 => {
            object::validate_bucket_name(s).map_err(refused)?;
            assert!((3..=63).contains(&s.len()), "accepted bucket {s:?}");
            assert!(
                !s.starts_with('-') && !s.ends_with('-'),
                "accepted bucket {s:?}"
            );
            // A bucket name is also a valid KV-style name.
            kv::validate_name("bucket", s, &limits)
                .unwrap_or_else(|e| panic!("bucket {s:?} accepted but not a name: {e}"));
            Ok(())
        }
        3 => {
            object::validate_key(s).map_err(refused)?;
            assert!(!s.is_empty() && !s.chars().any(char::is_control));
            Ok(())
        }
        4 => {
            names::check_name(s).map_err(failed)?;
            assert!(!s.contains('/') && !s.contains('\0') && s != "." && s != "..");
            Ok(())
        }
        5 => {
            let parts = names::parse_path(s).map_err(failed)?;
            for part in &parts {
                names::check_name(part)
                    .unwrap_or_else(|e| panic!("{s:?} gave component {part:?}: {e:?}"));
            }
            let shown = names::show(&parts);
            assert!(shown.len() <= s.len() + 1, "{s:?} grew to {shown:?}");
            if shown.len() <= FS_PATH_BYTES_MAX {
                let again = names::parse_path(&shown)
                    .unwrap_or_else(|e| panic!("{s:?} resolved to {shown:?}, refused: {e:?}"));
                assert_eq!(again, parts, "{s:?} resolved to {shown:?}");
            }
            match names::split_last(parts.clone()) {
                Ok((dir, last)) => assert_eq!(dir.len() + 1, parts.len(), "{last:?}"),
                Err(e) => assert!(parts.is_empty(), "{e:?}"),
            }
            Ok(())
        }
        6 => names::check_symlink_target(s).map_err(failed),
        7 => {
            // `[name] 0xff [value]`: no value without the separator.
            let (name, value) = match bytes.iter().position(|&b| b == 0xff) {
                Some(at) => (&bytes[..at], Some(&bytes[at + 1..])),
                None => (bytes, None),
            };
            let name = String::from_utf8_lossy(name);
            names::check_xattr(&name, value).map_err(failed)
        }
        8 => {
            names::check_fs_name(s).map_err(failed)?;
            kv::validate_name("fs", s, &limits)
                .unwrap_or_else(|e| panic!("fs name {s:?} accepted but not a name: {e}"));
            Ok(())
        }
        9 => {
            let command: KvCommand = decode_peer(bytes).map_err(|e| e.to_string())?;
            command.validate(&limits).map_err(refused)
        }
        10 => {
            let command: QueueCommand = decode_peer(bytes).map_err(|e| e.to_string())?;
            command.validate(&limits).map_err(refused)
        }
        11 => {
            let (content_type, metadata): (String, BTreeMap<String, String>) =
                decode_peer(bytes).map_err(|e| e.to_string())?;
            object::validate_attributes(&content_type, &metadata).map_err(refused)
        }
        _ => {
            if let Some((expires, ns, key)) = keys::parse_ttl(bytes) {
                assert_eq!(keys::ttl(expires, ns, key), bytes);
            }
            if let Some((since, hash)) = keys::parse_chunk_unreferenced(bytes) {
                assert_eq!(keys::chunk_unreferenced(since, &hash), bytes);
            }
            for offset in 0..bytes.len().min(16) {
                let _ = keys::u64_at(bytes, offset);
            }
            Ok(())
        }
    }
}
