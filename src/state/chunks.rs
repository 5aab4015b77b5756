//! Chunk reference counts: which content-addressed chunks the state holds and how
//! many object manifests use each.
//!
//! A chunk (≤ `CHUNK_BYTES_MAX`, named by its BLAKE3 hash) is *staged* by its own
//! Raft entry before any manifest names it: staging records it with no references.
//! A manifest commit adds one reference per occurrence, an overwrite or delete drops
//! them. A chunk with no references is kept for a grace period (so an upload in
//! progress or a reader holding an old manifest keeps its data) and then collected
//! by the sweep. The chunk *files* are written and deleted by the caller of apply,
//! around the commit, from the lists this module leaves in the `Txn`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{decode, encode, keys, Txn};

pub use crate::chunk_ref::{ChunkRef, Hash};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRecord {
    pub len: u32,
    /// Manifest references (one per occurrence in each object).
    pub refs: u64,
    /// When `refs` last became 0 (or the chunk was staged); meaningless while referenced.
    pub unreferenced_since_ms: u64,
}

pub fn get(txn: &Txn<'_>, hash: &Hash) -> sled::Result<Option<ChunkRecord>> {
    txn.get(&keys::chunk(hash))?.map(|b| decode(&b)).transpose()
}

fn put(txn: &mut Txn<'_>, hash: &Hash, record: &ChunkRecord) {
    txn.put(keys::chunk(hash), encode(record));
}

fn mark_unreferenced(txn: &mut Txn<'_>, hash: &Hash, record: &mut ChunkRecord, now_ms: u64) {
    txn.remove(keys::chunk_unreferenced(record.unreferenced_since_ms, hash));
    record.unreferenced_since_ms = now_ms;
    txn.put(keys::chunk_unreferenced(now_ms, hash), Vec::new());
}

/// Applies a staged chunk: a new one is recorded (and its file queued for writing);
/// a known unreferenced one has its grace period restarted, so an upload that
/// reuses it is not raced by GC.
pub fn stage(txn: &mut Txn<'_>, now_ms: u64, hash: &Hash, data: &[u8]) -> sled::Result<()> {
    if record_staged(txn, now_ms, hash, data.len() as u32)? {
        txn.write_chunk_file(*hash, data.to_vec());
    }
    Ok(())
}

/// Applies a chunk a quorum already stores (pushed outside the log): recorded as
/// `stage` records it; the caller checks that this node holds the file.
pub fn stage_pushed(txn: &mut Txn<'_>, now_ms: u64, hash: &Hash, len: u32) -> sled::Result<()> {
    if record_staged(txn, now_ms, hash, len)? {
        txn.expect_chunk_file(*hash);
    }
    Ok(())
}

/// Records a staged chunk; whether it is new.
fn record_staged(txn: &mut Txn<'_>, now_ms: u64, hash: &Hash, len: u32) -> sled::Result<bool> {
    match get(txn, hash)? {
        Some(mut record) => {
            if record.refs == 0 && record.unreferenced_since_ms != now_ms {
                mark_unreferenced(txn, hash, &mut record, now_ms);
                put(txn, hash, &record);
            }
        }
        None => {
            let record = ChunkRecord {
                len,
                refs: 0,
                unreferenced_since_ms: now_ms,
            };
            txn.put(keys::chunk_unreferenced(now_ms, hash), Vec::new());
            put(txn, hash, &record);
            return Ok(true);
        }
    }
    Ok(false)
}

/// Restarts the grace period of every unreferenced chunk among `hashes`.
pub fn touch(txn: &mut Txn<'_>, now_ms: u64, hashes: &[Hash]) -> sled::Result<()> {
    for hash in hashes {
        if let Some(mut record) = get(txn, hash)? {
            if record.refs == 0 && record.unreferenced_since_ms != now_ms {
                mark_unreferenced(txn, hash, &mut record, now_ms);
                put(txn, hash, &record);
            }
        }
    }
    Ok(())
}

/// The first chunk of `chunks` the state does not hold (or holds with another length).
pub fn first_missing(txn: &Txn<'_>, chunks: &[ChunkRef]) -> sled::Result<Option<Hash>> {
    for chunk in chunks {
        match get(txn, &chunk.hash)? {
            Some(record) if record.len == chunk.len => {}
            _ => return Ok(Some(chunk.hash)),
        }
    }
    Ok(None)
}

fn occurrences(chunks: &[ChunkRef]) -> BTreeMap<Hash, u64> {
    let mut counts = BTreeMap::new();
    for chunk in chunks {
        *counts.entry(chunk.hash).or_insert(0) += 1;
    }
    counts
}

/// Adds one reference per occurrence. The caller checked `first_missing` first.
pub fn add_refs(txn: &mut Txn<'_>, chunks: &[ChunkRef]) -> sled::Result<()> {
    for (hash, count) in occurrences(chunks) {
        let Some(mut record) = get(txn, &hash)? else {
            continue;
        };
        if record.refs == 0 {
            txn.remove(keys::chunk_unreferenced(
                record.unreferenced_since_ms,
                &hash,
            ));
        }
        record.refs += count;
        put(txn, &hash, &record);
    }
    Ok(())
}

/// Drops one reference per occurrence; chunks left unreferenced start their grace period.
pub fn drop_refs(txn: &mut Txn<'_>, now_ms: u64, chunks: &[ChunkRef]) -> sled::Result<()> {
    for (hash, count) in occurrences(chunks) {
        let Some(mut record) = get(txn, &hash)? else {
            continue;
        };
        record.refs = super::decrement(record.refs, count, "chunk references");
        if record.refs == 0 {
            mark_unreferenced(txn, &hash, &mut record, now_ms);
        }
        put(txn, &hash, &record);
    }
    Ok(())
}

/// Removes up to `budget` chunks unreferenced for at least `grace_ms` (oldest first)
/// and queues their files for deletion. Returns how many were removed.
pub fn collect_garbage(
    txn: &mut Txn<'_>,
    now_ms: u64,
    grace_ms: u64,
    budget: u64,
) -> sled::Result<u64> {
    let mut removed = 0;
    for (index_key, _) in txn.scan_prefix(&[keys::CHUNK_UNREFERENCED], budget as usize)? {
        let Some((since_ms, hash)) = keys::parse_chunk_unreferenced(&index_key) else {
            txn.remove(index_key);
            continue;
        };
        if since_ms.saturating_add(grace_ms) > now_ms {
            break; // ordered by age: everything after is younger
        }
        txn.remove(index_key);
        if let Some(record) = get(txn, &hash)? {
            if record.refs == 0 && record.unreferenced_since_ms == since_ms {
                txn.remove(keys::chunk(&hash));
                txn.delete_chunk_file(hash);
            }
        }
        removed += 1;
    }
    Ok(removed)
}

/// Whether some chunk's grace period is over (the leader checks before proposing a sweep).
pub fn has_garbage(tree: &sled::Tree, now_ms: u64, grace_ms: u64) -> sled::Result<bool> {
    Ok(match tree.scan_prefix([keys::CHUNK_UNREFERENCED]).next() {
        Some(item) => {
            let (key, _) = item?;
            keys::parse_chunk_unreferenced(&key)
                .is_none_or(|(since_ms, _)| since_ms.saturating_add(grace_ms) <= now_ms)
        }
        None => false,
    })
}

/// Totals of the chunk table: `(chunks, bytes)` (for status and tests).
pub fn totals(tree: &sled::Tree) -> sled::Result<(u64, u64)> {
    let (mut count, mut bytes) = (0, 0);
    for item in tree.scan_prefix([keys::CHUNK]) {
        let (_, value) = item?;
        let record: ChunkRecord = decode(&value)?;
        count += 1;
        bytes += u64::from(record.len);
    }
    Ok((count, bytes))
}
