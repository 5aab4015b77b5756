//! Snapshot files (`src/state/snapshot.rs`): `verify`, `read_header` and `load` (the
//! record iteration) over the input as a file, and the header as the Raft layer
//! reads it, `codec::decode_disk::<SnapshotMeta>`.
//!
//! Input: `[mode][rest]`; `mode % 4`:
//! - 0: `rest` is a whole file: `verify`, `read_header`, `load` into a scratch tree,
//!   and the header decoded. `load` must refuse exactly what `verify` refuses;
//! - 1: `rest` is a header: decoded as `SnapshotMeta`; one that decodes is written
//!   into a file (`dump` of an empty tree) that must verify and give it back;
//! - 2: `[at u16 LE][flip u8][records]`: a valid file is dumped from the records
//!   (`[key_len u8][key][value_len u8][value]`…) and must verify with their count;
//!   then one byte is changed (`flip != 0`: xor at `at`) or the file is cut at `at`,
//!   and `verify` and `load` must both refuse it;
//! - 3: `rest` as in 0, with its magic, record count and digest set right first
//!   (a trailer is added if it ends at a record boundary), so that files that pass
//!   the checksum but are odd in every other way are explored too.
//!
//! Shared by `fuzz/fuzz_targets/snapshot.rs` and `tests/fuzz_regressions.rs`.

#![allow(dead_code)] // each user takes what it needs

use std::sync::{Mutex, OnceLock};

use cairn::codec::{decode_disk, encode};
use cairn::raft::types::SnapshotMeta;
use cairn::state::snapshot::{dump, load, read_header, verify};

/// A temporary sled database for `load` and `dump` (one per process).
fn db() -> std::sync::MutexGuard<'static, sled::Db> {
    static DB: OnceLock<Mutex<sled::Db>> = OnceLock::new();
    DB.get_or_init(|| {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .expect("a temporary sled database");
        Mutex::new(db)
    })
    .lock()
    .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a file showed: its header and record count, or the refusal.
pub type Checked = Result<(Vec<u8>, u64), String>;

/// `verify`, `read_header` and `load` of `file`; they must agree.
fn check_file(file: &[u8]) -> Checked {
    let verified = verify(file).map_err(|e| e.to_string());
    let header = read_header(file).map_err(|e| e.to_string());
    let db = db();
    let tree = db.open_tree("load").expect("open a sled tree");
    let loaded = load(&tree, file, |key| key.first() == Some(&0xff)).map_err(|e| e.to_string());
    tree.clear().expect("clear the sled tree");
    match &verified {
        Ok((h, records)) => {
            assert_eq!(header.as_ref(), Ok(h), "read_header disagrees with verify");
            let loaded = loaded.unwrap_or_else(|e| panic!("verified, but load failed: {e}"));
            assert!(loaded <= *records, "loaded {loaded} of {records} records");
        }
        Err(_) => assert!(loaded.is_err(), "load accepted a file that verify refused"),
    }
    if let Ok(h) = &header {
        let _ = decode_disk::<SnapshotMeta>(h);
    }
    verified
}

/// A snapshot file of `header` and `records` (as the node writes one).
pub fn file_of(header: &[u8], records: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let db = db();
    let tree = db.open_tree("dump").expect("open a sled tree");
    tree.clear().expect("clear the sled tree");
    for (key, value) in records {
        tree.insert(key, value.as_slice()).expect("insert");
    }
    let mut file = Vec::new();
    dump(&tree, header, &mut file).expect("dump to memory");
    tree.clear().expect("clear the sled tree");
    file
}

fn records_of(mut bytes: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let field = |bytes: &mut &[u8]| -> Option<Vec<u8>> {
        let (&len, rest) = bytes.split_first()?;
        let len = (len as usize).min(rest.len());
        let (field, rest) = rest.split_at(len);
        *bytes = rest;
        Some(field.to_vec())
    };
    let mut records = Vec::new();
    while let (Some(key), Some(value)) = (field(&mut bytes), field(&mut bytes)) {
        records.push((key, value));
    }
    records
}

fn u32_be(bytes: &[u8], at: usize) -> Option<usize> {
    let word = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes(word.try_into().expect("4 bytes")) as usize)
}

/// Sets the magic, and the trailer's count and digest where the framing puts the
/// trailer; adds a trailer if the records end at the end of `file`.
pub fn fix_trailer(file: &mut Vec<u8>) {
    const MAGIC: &[u8; 8] = b"CAIRNSN2";
    if file.len() < 8 {
        return;
    }
    file[..8].copy_from_slice(MAGIC);
    let Some(header_len) = u32_be(file, 8) else {
        return;
    };
    let mut at = 12 + header_len;
    let mut records = 0u64;
    loop {
        if at == file.len() {
            let digest = blake3::hash(file);
            file.extend_from_slice(&u32::MAX.to_be_bytes());
            file.extend_from_slice(&records.to_be_bytes());
            file.extend_from_slice(digest.as_bytes());
            return;
        }
        let Some(key_len) = u32_be(file, at) else {
            return;
        };
        if key_len == u32::MAX as usize {
            if file.len() >= at + 44 {
                let digest = blake3::hash(&file[..at]);
                file[at + 4..at + 12].copy_from_slice(&records.to_be_bytes());
                file[at + 12..at + 44].copy_from_slice(digest.as_bytes());
            }
            return;
        }
        let Some(value_len) = u32_be(file, at + 4 + key_len) else {
            return;
        };
        at += 8 + key_len + value_len;
        if at > file.len() {
            return;
        }
        records += 1;
    }
}

/// `Ok((header, records))` if the (main) file was accepted, `Err` with the refusal.
/// Panics only on a bug.
pub fn run(data: &[u8]) -> Checked {
    let Some((&mode, rest)) = data.split_first() else {
        return Err("empty input".into());
    };
    match mode % 4 {
        0 => check_file(rest),
        3 => {
            let mut file = rest.to_vec();
            fix_trailer(&mut file);
            check_file(&file)
        }
        1 => {
            let meta = decode_disk::<SnapshotMeta>(rest).map_err(|e| e.to_string())?;
            let header = encode(&meta).expect("encode a decoded meta");
            let file = file_of(&header, &[]);
            let checked = check_file(&file);
            assert_eq!(checked, Ok((header.clone(), 0)), "a dumped header");
            let again = decode_disk::<SnapshotMeta>(&header).expect("decode a written meta");
            assert_eq!(again, meta, "the header changed on the way");
            checked
        }
        _ => {
            let at = rest.first().copied().unwrap_or(0) as usize
                | (rest.get(1).copied().unwrap_or(0) as usize) << 8;
            let flip = rest.get(2).copied().unwrap_or(0);
            let mut records = records_of(rest.get(3..).unwrap_or(&[]));
            let file = file_of(b"header", &records);
            records.sort();
            records.dedup_by(|a, b| a.0 == b.0);
            let count = records.len() as u64;
            let checked = check_file(&file);
            assert_eq!(checked, Ok((b"header".to_vec(), count)), "a dumped file");
            let at = at % file.len();
            let mut bad = file;
            if flip == 0 {
                bad.truncate(at);
            } else {
                bad[at] ^= flip;
            }
            let refused = check_file(&bad);
            assert!(
                refused.is_err(),
                "a damaged file verified (at {at}, flip {flip})"
            );
            checked
        }
    }
}
