//! Backup files (`src/state/backup.rs`): the reader over any input, and over
//! valid files cut or changed anywhere.
//!
//! Input: `[mode][rest]`; `mode % 2`:
//! - 0: `rest` is a whole file: `verify`, and the item-by-item reader must agree
//!   with it;
//! - 1: `[at u16 LE][flip u8][records]`: a valid file is written from the records
//!   (`[key_len u8][key][value_len u8][value]`…, sorted and deduplicated; keys
//!   starting with `H`, chunk records, are replaced by one real chunk and its
//!   record) and must verify with their count; then one byte is changed
//!   (`flip != 0`: xor at `at`) or the file is cut at `at`, and `verify` must
//!   refuse it.
//!
//! Shared by `fuzz/fuzz_targets/backup.rs` and `tests/fuzz_regressions.rs`.

#![allow(dead_code)] // each user takes what it needs

use std::collections::BTreeMap;

use cairn::codec::encode;
use cairn::state::backup::{
    verify, LogPosition, Manifest, Reader, Writer, FORMAT_NAME, FORMAT_VERSION,
};
use cairn::state::chunks::ChunkRecord;

/// `records chunks` of an accepted file, or the refusal.
pub type Checked = Result<String, String>;

/// `verify` and the item reader of `file`; they must agree.
fn check_file(file: &[u8]) -> Checked {
    let verified = verify(file).map_err(|e| e.to_string());
    let mut items = 0u64;
    let read = Reader::open(file).and_then(|mut reader| {
        while reader.next_item()?.is_some() {
            items += 1;
        }
        Ok(())
    });
    match &verified {
        Ok(summary) => {
            read.unwrap_or_else(|e| panic!("verified, but the reader refused: {e}"));
            let m = &summary.manifest;
            assert_eq!(items, m.state_records + m.chunks, "items read");
            Ok(format!("{} {}", m.state_records, m.chunks))
        }
        Err(message) => {
            assert!(read.is_err(), "the reader accepted a file verify refused");
            Err(message.clone())
        }
    }
}

fn records_of(mut bytes: &[u8]) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let field = |bytes: &mut &[u8]| -> Option<Vec<u8>> {
        let (&len, rest) = bytes.split_first()?;
        let len = (len as usize).min(rest.len());
        let (field, rest) = rest.split_at(len);
        *bytes = rest;
        Some(field.to_vec())
    };
    let mut records = BTreeMap::new();
    while let (Some(key), Some(value)) = (field(&mut bytes), field(&mut bytes)) {
        if key.first() != Some(&b'H') {
            records.insert(key, value);
        }
    }
    records
}

fn manifest(records: u64, chunks: u64, chunk_bytes: u64) -> Manifest {
    Manifest {
        format: FORMAT_NAME.into(),
        format_version: FORMAT_VERSION,
        cairn_version: "fuzz".into(),
        created_ms: 0,
        workspace_id: "fuzz".into(),
        node_id: 1,
        members: Vec::new(),
        applied: LogPosition {
            term: 1,
            leader_node_id: 1,
            index: 1,
        },
        state_records: records,
        chunks,
        chunk_bytes,
        counts: BTreeMap::new(),
    }
}

/// A valid backup of `records` plus one chunk (`data`) and its record.
pub fn file_of(records: &BTreeMap<Vec<u8>, Vec<u8>>, data: &[u8]) -> Vec<u8> {
    let hash = *blake3::hash(data).as_bytes();
    let mut all = records.clone();
    let mut key = vec![b'H'];
    key.extend_from_slice(&hash);
    let record = ChunkRecord {
        len: data.len() as u32,
        refs: 1,
        unreferenced_since_ms: 0,
    };
    all.insert(key, encode(&record).expect("encode a chunk record"));
    let mut file = Vec::new();
    let summary = manifest(all.len() as u64, 1, data.len() as u64);
    let mut writer = Writer::new(&mut file, &summary).expect("write to memory");
    for (key, value) in &all {
        writer.record(key, value).expect("write to memory");
    }
    writer.end_state().expect("write to memory");
    writer.chunk(&hash, data).expect("write to memory");
    writer.finish().expect("write to memory");
    file
}

/// `Ok` with what the (main) file held, `Err` with the refusal. Panics only on a bug.
pub fn run(data: &[u8]) -> Checked {
    let Some((&mode, rest)) = data.split_first() else {
        return Err("empty input".into());
    };
    if mode % 2 == 0 {
        return check_file(rest);
    }
    let at = rest.first().copied().unwrap_or(0) as usize
        | (rest.get(1).copied().unwrap_or(0) as usize) << 8;
    let flip = rest.get(2).copied().unwrap_or(0);
    let records = records_of(rest.get(3..).unwrap_or(&[]));
    let file = file_of(&records, rest);
    let checked = check_file(&file);
    let expected = format!("{} 1", records.len() + 1);
    assert_eq!(checked.as_deref(), Ok(expected.as_str()), "a written file");
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
