//! Background clean-up, applied as an ordinary command so replicas stay identical.
//!
//! The leader proposes `Sweep` every `SWEEP_INTERVAL_MS`; apply removes, within
//! `items_max`: keys whose TTL passed (by the command's `now_ms`), keys of deleted
//! namespaces, and sessions of clients idle past `SESSION_IDLE_MS_MAX` (or the
//! idlest ones while more than `SESSIONS_MAX` clients are known), and chunks
//! unreferenced for longer than the grace period (see `chunks`).

use serde::{Deserialize, Serialize};

use super::kv::ValueRecord;
use super::queue;
use super::sessions::forget_client;
use super::{decode, encode, keys, meta_u64, ApplyContext, Outcome, Response, Txn};
use crate::limits::{SESSIONS_MAX, SESSION_IDLE_MS_MAX};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    pub items_max: u64,
    /// The leader's configured grace period for unreferenced chunks: carried in
    /// the command so every replica collects the same chunks.
    pub chunk_grace_ms: u64,
}

const META_CLIENT_COUNT: &str = "client_count";

pub fn add_client_count(txn: &mut Txn<'_>, delta: i64) -> sled::Result<()> {
    let count = client_count(txn)?;
    let updated = (count as i64 + delta).max(0) as u64;
    txn.put(keys::meta(META_CLIENT_COUNT), encode(&updated));
    Ok(())
}

fn client_count(txn: &Txn<'_>) -> sled::Result<u64> {
    meta_u64(txn, META_CLIENT_COUNT)
}

pub fn apply(txn: &mut Txn<'_>, ctx: ApplyContext, sweep: &Sweep) -> sled::Result<Outcome> {
    let mut budget = sweep.items_max;
    budget -= expire_keys(txn, ctx.now_ms, budget)?;
    budget -= purge_dropped(txn, keys::DROPPED, keys::kv_prefix, budget)?;
    budget -= purge_dropped(
        txn,
        keys::QUEUE_DROPPED,
        queue::dropped_messages_prefix,
        budget,
    )?;
    budget -= expire_sessions(txn, ctx.now_ms, budget)?;
    budget -= super::fs::handles::expire_leases(txn, ctx, budget)?;
    budget -= super::fs::admin::purge_dropped(txn, ctx, budget)?;
    budget -= super::chunks::collect_garbage(txn, ctx.now_ms, sweep.chunk_grace_ms, budget)?;
    Ok(Ok(Response::Swept {
        removed_count: sweep.items_max - budget,
    }))
}

fn expire_keys(txn: &mut Txn<'_>, now_ms: u64, budget: u64) -> sled::Result<u64> {
    let mut removed = 0;
    for (ttl_key, _) in txn.scan_prefix(&[keys::TTL], budget as usize)? {
        let Some((expires_at_ms, ns_id, key)) = keys::parse_ttl(&ttl_key) else {
            continue;
        };
        if expires_at_ms > now_ms {
            break; // the index is ordered by expiry
        }
        let kv_key = keys::kv(ns_id, key);
        if let Some(bytes) = txn.get(&kv_key)? {
            let record: ValueRecord = decode(&bytes)?;
            if record.expires_at_ms == expires_at_ms {
                txn.remove(kv_key);
            }
        }
        txn.remove(ttl_key);
        removed += 1;
    }
    Ok(removed)
}

/// Removes up to `budget` records of the first dropped id under `marker_prefix`
/// (a deleted namespace, or a purged or deleted queue); the marker goes once
/// nothing is left. `data_prefix` maps the id to the prefix of its records.
fn purge_dropped(
    txn: &mut Txn<'_>,
    marker_prefix: u8,
    data_prefix: fn(u64) -> Vec<u8>,
    budget: u64,
) -> sled::Result<u64> {
    let Some((marker, _)) = txn.scan_prefix(&[marker_prefix], 1)?.into_iter().next() else {
        return Ok(0);
    };
    let Some(id) = keys::u64_at(&marker, 1) else {
        txn.remove(marker);
        return Ok(0);
    };
    let doomed = txn.scan_prefix(&data_prefix(id), budget as usize)?;
    let removed = doomed.len() as u64;
    for (key, _) in doomed {
        txn.remove(key);
    }
    if removed < budget {
        txn.remove(marker);
    }
    Ok(removed)
}

fn expire_sessions(txn: &mut Txn<'_>, now_ms: u64, budget: u64) -> sled::Result<u64> {
    let mut count = client_count(txn)?;
    let mut removed = 0;
    for (idle_key, _) in txn.scan_prefix(&[keys::CLIENT_IDLE], budget as usize)? {
        let (Some(last_seen_ms), Some(client_id)) =
            (keys::u64_at(&idle_key, 1), keys::u64_at(&idle_key, 9))
        else {
            txn.remove(idle_key);
            continue;
        };
        let idle = last_seen_ms.saturating_add(SESSION_IDLE_MS_MAX) <= now_ms;
        if !idle && count <= SESSIONS_MAX {
            break; // ordered by last_seen: everyone after is younger
        }
        forget_client(txn, client_id, last_seen_ms)?;
        count = super::decrement(count, 1, "client sessions");
        removed += 1;
    }
    txn.put(keys::meta(META_CLIENT_COUNT), encode(&count));
    Ok(removed)
}

/// Whether a sweep would remove anything now (checked by the leader before
/// proposing one, so an idle cluster does not grow its log).
pub fn has_work(tree: &sled::Tree, now_ms: u64, chunk_grace_ms: u64) -> sled::Result<bool> {
    if super::chunks::has_garbage(tree, now_ms, chunk_grace_ms)? {
        return Ok(true);
    }
    if let Some((key, _)) = tree.scan_prefix([keys::TTL]).next().transpose()? {
        if keys::parse_ttl(&key).is_none_or(|(expires_at_ms, _, _)| expires_at_ms <= now_ms) {
            return Ok(true);
        }
    }
    if super::fs::handles::has_expired_lease(tree, now_ms)? {
        return Ok(true);
    }
    for dropped in [keys::DROPPED, keys::QUEUE_DROPPED, keys::FS_DROPPED] {
        if tree.scan_prefix([dropped]).next().transpose()?.is_some() {
            return Ok(true);
        }
    }
    if let Some((key, _)) = tree.scan_prefix([keys::CLIENT_IDLE]).next().transpose()? {
        let last_seen_ms = keys::u64_at(&key, 1).unwrap_or(0);
        if last_seen_ms.saturating_add(SESSION_IDLE_MS_MAX) <= now_ms {
            return Ok(true);
        }
    }
    let count = tree
        .get(keys::meta(META_CLIENT_COUNT))?
        .map(|b| decode::<u64>(&b))
        .transpose()?
        .unwrap_or(0);
    Ok(count > SESSIONS_MAX)
}
