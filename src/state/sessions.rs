//! Exactly-once writes: the per-client table of answered requests.
//!
//! Every client write carries `(client_id, seq, lowest_unanswered_seq)`. The first
//! time a seq is applied its outcome is stored; a retry of the same seq (after a
//! timeout or a leader change) gets the stored outcome and changes nothing. Results
//! below the client's lowest unanswered seq are dropped, so a client keeps at most
//! `SESSION_WINDOW_SEQS_MAX` results. Idle clients are expired by the sweeper using
//! the leader-stamped clock (see `sweep`).

use serde::{Deserialize, Serialize};

use super::{decode, encode, execute, keys, ApplyContext, ClientCommand, Error, Outcome, Txn};
use crate::limits::SESSION_WINDOW_SEQS_MAX;

/// How stale a client's `last_seen_ms` may get before apply refreshes it.
const IDLE_INDEX_RESOLUTION_MS: u64 = 1_000;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClientRecord {
    pub last_seen_ms: u64,
    /// Results for seqs below this were dropped; such seqs cannot be replayed.
    pub lowest_unanswered_seq: u64,
}

/// Applies `command` unless its session says it already was; returns its outcome.
pub fn apply_once(
    txn: &mut Txn<'_>,
    ctx: ApplyContext,
    command: &ClientCommand,
) -> sled::Result<Outcome> {
    let Some(tag) = command.session else {
        return execute(txn, ctx, &command.command);
    };
    let record_key = keys::client(tag.client_id);
    let existing = txn.get(&record_key)?;
    let is_new_client = existing.is_none();
    let mut record: ClientRecord = match existing {
        Some(bytes) => decode(&bytes)?,
        None => ClientRecord::default(),
    };
    if tag.seq < record.lowest_unanswered_seq {
        return Ok(Err(Error::SessionExpired { seq: tag.seq }));
    }
    let result_key = keys::session_result(tag.client_id, tag.seq);
    if let Some(stored) = txn.get(&result_key)? {
        return decode::<Outcome>(&stored);
    }
    let lowest = tag.lowest_unanswered_seq.max(record.lowest_unanswered_seq);
    if tag.seq >= lowest.saturating_add(SESSION_WINDOW_SEQS_MAX) {
        return Ok(Err(Error::SessionWindowExceeded {
            seq: tag.seq,
            lowest,
        }));
    }
    let outcome = execute(txn, ctx, &command.command)?;
    if super::changed_nothing(&outcome) {
        return Ok(outcome);
    }
    txn.put(result_key, encode(&outcome));
    forget_results_below(
        txn,
        tag.client_id,
        record.lowest_unanswered_seq,
        lowest.min(tag.seq),
    )?;
    // The idle index only needs second precision; skipping its rewrite on most
    // writes saves two tree updates per command.
    let idle_stale = ctx.now_ms >= record.last_seen_ms.saturating_add(IDLE_INDEX_RESOLUTION_MS);
    if is_new_client {
        super::sweep::add_client_count(txn, 1)?;
    } else if idle_stale {
        txn.remove(keys::client_idle(record.last_seen_ms, tag.client_id));
    }
    if is_new_client || idle_stale {
        record.last_seen_ms = ctx.now_ms;
        txn.put(
            keys::client_idle(record.last_seen_ms, tag.client_id),
            Vec::new(),
        );
    }
    record.lowest_unanswered_seq = lowest.min(tag.seq);
    txn.put(record_key, encode(&record));
    Ok(outcome)
}

/// Drops stored results for seqs in `[from, to)`.
fn forget_results_below(txn: &mut Txn<'_>, client_id: u64, from: u64, to: u64) -> sled::Result<()> {
    if to <= from {
        return Ok(());
    }
    if to - from <= SESSION_WINDOW_SEQS_MAX {
        for seq in from..to {
            txn.remove(keys::session_result(client_id, seq));
        }
        return Ok(());
    }
    // A jump wider than the window: only stored results can exist, and there are at
    // most a window's worth of them.
    let prefix = keys::session_results_prefix(client_id);
    for (key, _) in txn.scan_prefix(&prefix, SESSION_WINDOW_SEQS_MAX as usize)? {
        match keys::u64_at(&key, prefix.len()) {
            Some(seq) if seq < to => txn.remove(key),
            _ => {}
        }
    }
    Ok(())
}

/// Removes every trace of a client (used by the sweeper on idle clients).
pub fn forget_client(txn: &mut Txn<'_>, client_id: u64, last_seen_ms: u64) -> sled::Result<()> {
    let prefix = keys::session_results_prefix(client_id);
    for (key, _) in txn.scan_prefix(&prefix, SESSION_WINDOW_SEQS_MAX as usize)? {
        txn.remove(key);
    }
    txn.remove(keys::client_idle(last_seen_ms, client_id));
    txn.remove(keys::client(client_id));
    Ok(())
}
