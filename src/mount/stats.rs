//! Counters a mount prints on SIGUSR1 and at unmount: operations, errors, bytes
//! in and out, and the block cache's hit rate.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

pub struct Stats {
    started: Instant,
    ops: AtomicU64,
    errors: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    bytes_fetched: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    local_hits: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            started: Instant::now(),
            ops: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            bytes_fetched: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            local_hits: AtomicU64::new(0),
        }
    }
}

impl Stats {
    pub fn op(&self, failed: bool) {
        self.ops.fetch_add(1, Relaxed);
        if failed {
            self.errors.fetch_add(1, Relaxed);
        }
    }

    pub fn add_read(&self, bytes: usize) {
        self.bytes_read.fetch_add(bytes as u64, Relaxed);
    }

    pub fn add_written(&self, bytes: usize) {
        self.bytes_written.fetch_add(bytes as u64, Relaxed);
    }

    pub fn add_fetched(&self, bytes: usize) {
        self.bytes_fetched.fetch_add(bytes as u64, Relaxed);
    }

    pub fn cache_hit(&self) {
        self.cache_hits.fetch_add(1, Relaxed);
    }

    /// A block served from a chunk on this machine (disk cache or node files).
    pub fn local_hit(&self) {
        self.local_hits.fetch_add(1, Relaxed);
    }

    pub fn cache_miss(&self) {
        self.cache_misses.fetch_add(1, Relaxed);
    }

    /// One line for the log.
    pub fn summary(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        let ops = self.ops.load(Relaxed);
        let (hits, misses) = (
            self.cache_hits.load(Relaxed),
            self.cache_misses.load(Relaxed),
        );
        let hit_rate = if hits + misses == 0 {
            0.0
        } else {
            100.0 * hits as f64 / (hits + misses) as f64
        };
        format!(
            "{ops} ops ({:.1}/s), {} errors, {} bytes read by programs, {} bytes written, \
             {} bytes fetched from the cluster, block cache hit rate {hit_rate:.1}% \
             ({hits} hits, {misses} misses, {} of the misses served from local chunks)",
            ops as f64 / secs,
            self.errors.load(Relaxed),
            self.bytes_read.load(Relaxed),
            self.bytes_written.load(Relaxed),
            self.bytes_fetched.load(Relaxed),
            self.local_hits.load(Relaxed),
        )
    }
}
