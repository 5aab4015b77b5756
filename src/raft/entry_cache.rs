//! The newest log entries, decoded, in memory: replication to each follower and
//! apply read what was just appended, and serving them from here skips the WAL's
//! read, checksum and decode on every node.
//!
//! The cache mirrors the tail of the WAL: `append` adds what the WAL just took,
//! `truncate` and `purge` drop what the WAL drops, and an append that does not
//! follow the cached tail (after a snapshot install) starts the cache afresh. A
//! read the cache cannot answer whole falls back to the WAL; so does any read while
//! the cache's tail is not the WAL's (between a WAL append and the cache's).

use std::collections::VecDeque;

use super::types::Entry;

/// Bytes (encoded) of entries kept; the oldest go first.
pub const ENTRY_CACHE_BYTES_MAX: usize = 32 * 1024 * 1024;
/// Entries kept, whatever their size.
pub const ENTRY_CACHE_ENTRIES_MAX: usize = 16 * 1024;

#[derive(Default)]
pub struct EntryCache {
    /// Consecutive indexes, oldest first, each with its encoded size.
    entries: VecDeque<(Entry, usize)>,
    bytes: usize,
}

impl EntryCache {
    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|(e, _)| e.log_id.index)
    }

    pub fn last_index(&self) -> Option<u64> {
        self.entries.back().map(|(e, _)| e.log_id.index)
    }

    /// Adds entries the WAL just appended (consecutive, with their encoded sizes).
    pub fn append(&mut self, appended: impl IntoIterator<Item = (Entry, usize)>) {
        for (entry, size) in appended {
            if self
                .last_index()
                .is_some_and(|last| entry.log_id.index != last + 1)
            {
                // Not the next index (the log restarted after a snapshot install).
                self.clear();
            }
            self.bytes += size;
            self.entries.push_back((entry, size));
        }
        while self.bytes > ENTRY_CACHE_BYTES_MAX || self.entries.len() > ENTRY_CACHE_ENTRIES_MAX {
            let Some((_, size)) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= size;
        }
    }

    /// Drops entries at and after `index` (the WAL truncated there).
    pub fn truncate_from(&mut self, index: u64) {
        while self.last_index().is_some_and(|last| last >= index) {
            let (_, size) = self.entries.pop_back().expect("not empty");
            self.bytes -= size;
        }
    }

    /// Drops entries at and before `index` (the WAL purged through there).
    pub fn purge_through(&mut self, index: u64) {
        while self.first_index().is_some_and(|first| first <= index) {
            let (_, size) = self.entries.pop_front().expect("not empty");
            self.bytes -= size;
        }
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Entries in `[start, end)` as the WAL would return them (stopping before
    /// `bytes_max`, never empty), if the cache holds `start` and its tail is
    /// `wal_last`; `None` sends the reader to the WAL.
    pub fn get(&self, start: u64, end: u64, bytes_max: usize, wal_last: u64) -> Option<Vec<Entry>> {
        let first = self.first_index()?;
        if self.last_index()? != wal_last || start < first || start >= end {
            return None;
        }
        let skip = usize::try_from(start - first).ok()?;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for (entry, size) in self.entries.iter().skip(skip) {
            if entry.log_id.index >= end || (!out.is_empty() && bytes + size > bytes_max) {
                break;
            }
            bytes += size;
            out.push(entry.clone());
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload, LogId};

    fn entry(index: u64) -> (Entry, usize) {
        let entry = Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Blank,
        };
        (entry, 100)
    }

    fn indexes(entries: &[Entry]) -> Vec<u64> {
        entries.iter().map(|e| e.log_id.index).collect()
    }

    #[test]
    fn serves_ranges_it_holds_and_sends_the_rest_to_the_wal() {
        let mut cache = EntryCache::default();
        cache.append((5..10).map(entry));
        assert_eq!(indexes(&cache.get(6, 9, usize::MAX, 9).unwrap()), [6, 7, 8]);
        assert_eq!(indexes(&cache.get(8, 100, usize::MAX, 9).unwrap()), [8, 9]);
        // Bounded by bytes, but never empty.
        assert_eq!(indexes(&cache.get(5, 10, 250, 9).unwrap()), [5, 6]);
        assert_eq!(indexes(&cache.get(5, 10, 1, 9).unwrap()), [5]);
        assert!(
            cache.get(4, 10, usize::MAX, 9).is_none(),
            "older than the cache"
        );
        assert!(
            cache.get(5, 10, usize::MAX, 10).is_none(),
            "the WAL is ahead"
        );
        assert!(cache.get(7, 7, usize::MAX, 9).is_none());
    }

    #[test]
    fn follows_truncation_purge_and_a_restarted_log() {
        let mut cache = EntryCache::default();
        cache.append((1..=10).map(entry));
        cache.truncate_from(8);
        assert_eq!(cache.last_index(), Some(7));
        cache.purge_through(3);
        assert_eq!(
            indexes(&cache.get(4, 100, usize::MAX, 7).unwrap()),
            [4, 5, 6, 7]
        );
        assert!(cache.get(3, 100, usize::MAX, 7).is_none());
        // An append after a snapshot install does not follow: the cache restarts.
        cache.append([entry(50)]);
        assert_eq!(indexes(&cache.get(50, 51, usize::MAX, 50).unwrap()), [50]);
        assert!(cache.get(7, 8, usize::MAX, 50).is_none());
        assert_eq!(cache.bytes, 100);
    }

    #[test]
    fn keeps_within_its_bounds() {
        let mut cache = EntryCache::default();
        let count = ENTRY_CACHE_ENTRIES_MAX as u64 + 10;
        cache.append((1..=count).map(entry));
        assert_eq!(cache.entries.len(), ENTRY_CACHE_ENTRIES_MAX);
        assert_eq!(cache.first_index(), Some(11));
        let big = |i: u64| (entry(i).0, ENTRY_CACHE_BYTES_MAX / 2);
        cache.append([big(count + 1), big(count + 2), big(count + 3)]);
        assert!(cache.bytes <= ENTRY_CACHE_BYTES_MAX);
        assert_eq!(cache.last_index(), Some(count + 3));
    }
}
