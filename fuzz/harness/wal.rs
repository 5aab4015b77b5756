//! The Raft log's files read back at start: segment files through `Wal::open` (then
//! `first_index`, `last_index`, `read` of every index, each payload decoded as a log
//! entry the way `LogStore` does) and the `meta` file through `read_meta` and
//! `codec::decode_disk::<LogMeta>`, as `LogStore::open` reads them.
//!
//! Input: `[mode][rest]`. `mode & 3` places `rest`:
//! - 0: one segment file starting at index 1 (`seg-00000000000000000001.wal`);
//! - 1: `[first u64 LE][purged? u8][purged u64 LE][segment]`: one segment starting
//!   at `first`, opened with that purge point if `purged? & 1`;
//! - 2: the `meta` file alone, then an open with its purge point;
//! - 3: `[meta_len u16 LE][meta][segments]` (no meta file if `meta_len` is 0),
//!   the segments as repeated `[first u64 LE][len u32 LE][bytes]` (at most 4; the
//!   last takes what is left).
//!
//! `(mode >> 2) & 3` is what follows a successful open: nothing, an append, a
//! truncation or a purge at `first_index + ((mode >> 4) & 3)`; then the log is
//! opened again, which must give what the first open and the step left. A log that
//! opens holds every index from `first_index` to `last_index`. With `mode & 0x80`
//! the checksums of every batch and record the segment bytes frame are set right
//! before the files are written, so that the lengths, counts and indexes behind
//! them are explored too; with `mode & 0x40` as well, the first batch of each
//! segment starts at the index its file name says.
//!
//! Shared by `fuzz/fuzz_targets/wal.rs` and `tests/fuzz_regressions.rs`.

#![allow(dead_code)] // each user takes what it needs

use std::path::Path;

use cairn::codec::decode_disk;
use cairn::raft::log_store::LogMeta;
use cairn::raft::types::Entry;
use cairn::raft::wal::{read_meta, Wal};
use serde::Deserialize;

/// The fields of `LogMeta` (private there), in its order: bincode encodes a struct
/// as its fields in sequence, so this decodes exactly what `LogMeta` decodes.
#[derive(Deserialize)]
struct MetaFields {
    _vote: Option<openraft::Vote<u64>>,
    last_purged: Option<openraft::LogId<u64>>,
}

/// What an open showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub first: Option<u64>,
    pub last: Option<u64>,
    /// Records whose payload failed its checksum on `read` (a clean error).
    pub unreadable: u64,
    /// Records whose payload decoded as a log entry.
    pub entries: u64,
}

/// The segment file name for `first`, as `src/raft/wal.rs` names it.
pub fn segment_name(first: u64) -> String {
    format!("seg-{first:020}.wal")
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    if let Some(src) = bytes.get(at..) {
        let n = src.len().min(8);
        word[..n].copy_from_slice(&src[..n]);
    }
    u64::from_le_bytes(word)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).expect("write a fuzz input file");
}

fn u32_at(bytes: &[u8], at: usize) -> Option<usize> {
    let word = bytes.get(at..at + 4)?;
    Some(u32::from_le_bytes(word.try_into().expect("4 bytes")) as usize)
}

/// Sets the checksums of the batches (and their records) that `segment` frames,
/// from the start, as far as the framing goes.
pub fn fix_checksums(segment: &mut [u8]) {
    let mut at = 0;
    while let Some(body_len) = u32_at(segment, at + 8) {
        let body_start = at + 24;
        let Some(body_end) = body_start.checked_add(body_len) else {
            return;
        };
        if body_end > segment.len() {
            return;
        }
        let mut pos = body_start;
        while let Some(len) = u32_at(segment, pos) {
            let (payload, end) = (pos + 8, pos + 8 + len);
            if end > body_end {
                break;
            }
            let crc = crc32fast::hash(&segment[payload..end]);
            segment[pos + 4..pos + 8].copy_from_slice(&crc.to_le_bytes());
            pos = end;
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(&segment[at..at + 20]);
        crc.update(&segment[body_start..body_end]);
        segment[at + 20..at + 24].copy_from_slice(&crc.finalize().to_le_bytes());
        at = body_end;
    }
}

fn write_segment(dir: &Path, first: u64, bytes: &[u8], fix: u8) {
    if fix & 0x80 != 0 {
        let mut bytes = bytes.to_vec();
        if fix & 0x40 != 0 && bytes.len() >= 20 {
            bytes[12..20].copy_from_slice(&first.to_le_bytes());
        }
        fix_checksums(&mut bytes);
        write(dir, &segment_name(first), &bytes);
    } else {
        write(dir, &segment_name(first), bytes);
    }
}

/// The meta file as `LogStore::open` reads it; `Ok(purge point)`.
fn meta_purge_point(dir: &Path) -> Result<Option<u64>, String> {
    let Some(bytes) = read_meta(dir).map_err(|e| format!("read_meta: {e}"))? else {
        return Ok(None);
    };
    let meta = decode_disk::<LogMeta>(&bytes);
    let fields = decode_disk::<MetaFields>(&bytes);
    assert_eq!(
        meta.is_ok(),
        fields.is_ok(),
        "MetaFields must mirror LogMeta"
    );
    meta.map_err(|e| format!("meta: {e}"))?;
    Ok(fields
        .expect("checked above")
        .last_purged
        .map(|id| id.index))
}

/// Opens the log and reads every record; `Err` is the first refusal.
fn open_and_read(dir: &Path, purged: Option<u64>) -> Result<(Wal, Opened), String> {
    let wal = Wal::open(dir, purged).map_err(|e| format!("open: {e}"))?;
    let (first, last) = (wal.first_index(), wal.last_index());
    assert_eq!(
        first.is_some(),
        last.is_some(),
        "first {first:?}, last {last:?}"
    );
    let mut opened = Opened {
        first,
        last,
        unreadable: 0,
        entries: 0,
    };
    if let (Some(first), Some(last)) = (first, last) {
        assert!(first <= last, "first {first} > last {last}");
        if let Some(purged) = purged {
            assert!(
                first > purged,
                "index {first} at or below the purge point {purged}"
            );
        }
        for index in first..=last {
            match wal.read(index) {
                Ok(Some(payload)) => {
                    if decode_disk::<Entry>(&payload).is_ok() {
                        opened.entries += 1;
                    }
                }
                Ok(None) => panic!("hole at {index} in an open log ({first}..={last})"),
                Err(_) => opened.unreadable += 1,
            }
        }
    }
    Ok((wal, opened))
}

/// Places the input's files in `dir`; `Ok(purge point)` to open with.
fn place(dir: &Path, mode: u8, rest: &[u8]) -> Result<Option<u64>, String> {
    let fix = mode & 0xc0;
    match mode & 3 {
        0 => {
            write_segment(dir, 1, rest, fix);
            Ok(None)
        }
        1 => {
            let first = u64_at(rest, 0);
            let purged = (rest.get(8).copied().unwrap_or(0) & 1 == 1).then(|| u64_at(rest, 9));
            write_segment(dir, first, rest.get(17..).unwrap_or(&[]), fix);
            Ok(purged)
        }
        2 => {
            write(dir, "meta", rest);
            meta_purge_point(dir)
        }
        _ => {
            let meta_len = (u64_at(rest, 0) & 0xffff) as usize;
            let meta = rest.get(2..).unwrap_or(&[]);
            let (meta, mut segments) = meta.split_at(meta_len.min(meta.len()));
            if !meta.is_empty() {
                write(dir, "meta", meta);
            }
            for n in 0..4 {
                if segments.is_empty() {
                    break;
                }
                let first = u64_at(segments, 0);
                let body = segments.get(12..).unwrap_or(&[]);
                let len = if n == 3 {
                    body.len()
                } else {
                    ((u64_at(segments, 8) & 0xffff_ffff) as usize).min(body.len())
                };
                write_segment(dir, first, &body[..len], fix);
                segments = &body[len..];
            }
            meta_purge_point(dir)
        }
    }
}

/// `Ok` with what the first open showed if the files were accepted, `Err` with the
/// refusal. Panics only on a bug.
pub fn run(data: &[u8]) -> Result<Opened, String> {
    let Some((&mode, rest)) = data.split_first() else {
        return Err("empty input".into());
    };
    let dir = tempfile::tempdir().expect("a temp dir");
    let dir = dir.path().join("raft-log");
    std::fs::create_dir(&dir).expect("create the log dir");
    let purged = place(&dir, mode, rest)?;
    let (mut wal, opened) = open_and_read(&dir, purged)?;
    let step_at = opened
        .first
        .and_then(|f| f.checked_add(u64::from((mode >> 4) & 3)));
    let (purged_after, expected) = match (mode >> 2) & 3 {
        1 => {
            let at = match (opened.last, purged) {
                (Some(last), _) => last.checked_add(1),
                (None, Some(p)) => p.checked_add(1),
                (None, None) => Some(1),
            };
            // Not at the largest index: `append` computes the index after it (a
            // log never gets there; openraft's indexes are u64 too).
            let Some(at) = at.filter(|at| *at < u64::MAX) else {
                return Ok(opened);
            };
            let payload = b"appended".to_vec();
            wal.append(at, std::slice::from_ref(&payload))
                .and_then(|file| file.sync_all())
                .map_err(|e| format!("append: {e}"))?;
            (purged, (Some(opened.first.unwrap_or(at)), Some(at)))
        }
        2 => {
            let Some(at) = step_at.filter(|at| Some(*at) <= opened.last) else {
                return Ok(opened);
            };
            wal.truncate_from(at)
                .map_err(|e| format!("truncate: {e}"))?;
            if Some(at) == opened.first {
                (purged, (None, None))
            } else {
                (purged, (opened.first, Some(at - 1)))
            }
        }
        3 => {
            let Some(at) = step_at.filter(|at| Some(*at) <= opened.last) else {
                return Ok(opened);
            };
            wal.purge_through(at).map_err(|e| format!("purge: {e}"))?;
            if Some(at) == opened.last {
                (Some(at), (None, None))
            } else {
                (Some(at), (Some(at + 1), opened.last))
            }
        }
        _ => (purged, (opened.first, opened.last)),
    };
    drop(wal);
    let (_, again) = open_and_read(&dir, purged_after)
        .unwrap_or_else(|e| panic!("a log that opened does not open again: {e}"));
    assert_eq!(
        (again.first, again.last),
        expected,
        "the second open differs from what the first open and the step left"
    );
    Ok(opened)
}

/// A segment file of `payloads` from index `first`, one batch (the format of
/// `src/raft/wal.rs`), for seeds and tests.
pub fn batch(first: u64, payloads: &[&[u8]]) -> Vec<u8> {
    let body: Vec<u8> = payloads
        .iter()
        .flat_map(|p| {
            let mut record = (p.len() as u32).to_le_bytes().to_vec();
            record.extend_from_slice(&crc32fast::hash(p).to_le_bytes());
            record.extend_from_slice(p);
            record
        })
        .collect();
    let mut out = b"CRNB".to_vec();
    out.extend_from_slice(&(payloads.len() as u32).to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&first.to_le_bytes());
    let mut covered = out.clone();
    covered.extend_from_slice(&body);
    out.extend_from_slice(&crc32fast::hash(&covered).to_le_bytes());
    out.extend_from_slice(&body);
    out
}
