//! What the node watches about its own Raft for `/metrics`: elections it
//! started, changes of leader, and when its log reached each index, from which
//! a leader tells how long ago the oldest entry a follower lacks was appended
//! (`replication_lag`). One task follows openraft's metrics channel; scrapes
//! only read what it kept.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::types::NodeId;
use super::Node;

/// Appends within this period of a sample are merged into it: the lag in time
/// is exact to within it.
pub const LOG_SAMPLE_INTERVAL_MS: u64 = 100;
/// Samples kept: with `LOG_SAMPLE_INTERVAL_MS` at least 5 minutes of appends. A
/// follower that lacks entries older than that shows the age of the oldest
/// sample (a lower bound), not its true lag.
pub const LOG_SAMPLES_MAX: usize = 3_000;

/// When the log reached which index. A sample `(at, index)` says: the entries
/// after the previous sample's index, up to `index`, were appended from `at`
/// to at most `LOG_SAMPLE_INTERVAL_MS` later.
#[derive(Debug, Default)]
pub struct LogTimeline {
    samples: Mutex<VecDeque<(Instant, u64)>>,
}

impl LogTimeline {
    /// Notes that the log's last index is `index` now.
    fn observe(&self, index: u64, now: Instant) {
        let mut samples = self.samples.lock().expect("never poisoned");
        // A truncated log: samples past the new end go; the one the end falls
        // in keeps its time for the entries that remain.
        while samples.back().is_some_and(|&(_, last)| last > index) {
            let previous = samples.len().checked_sub(2).map(|i| samples[i].1);
            if previous.is_some_and(|p| p >= index) {
                samples.pop_back();
            } else if let Some(back) = samples.back_mut() {
                back.1 = index;
            }
        }
        if let Some((at, last)) = samples.back_mut() {
            if *last == index {
                return;
            }
            if now.duration_since(*at) < Duration::from_millis(LOG_SAMPLE_INTERVAL_MS) {
                *last = index;
                return;
            }
        }
        if samples.len() == LOG_SAMPLES_MAX {
            samples.pop_front();
        }
        samples.push_back((now, index));
    }

    /// How long ago the log first held an entry past `matched`: the age of the
    /// oldest entry a follower at `matched` lacks (zero when it lacks none).
    /// High by less than `LOG_SAMPLE_INTERVAL_MS`; for entries older than the
    /// kept samples (or than this node's start), the age of the oldest sample.
    pub fn age_past(&self, matched: u64, last_log_index: u64, now: Instant) -> Duration {
        if matched >= last_log_index {
            return Duration::ZERO;
        }
        let samples = self.samples.lock().expect("never poisoned");
        match samples.iter().find(|(_, index)| *index > matched) {
            Some((at, _)) => now.saturating_duration_since(*at),
            // Appended after the watcher last looked: just now.
            None => Duration::ZERO,
        }
    }
}

/// One follower's replication lag, on the leader.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicationLag {
    pub peer: NodeId,
    pub entries: u64,
    pub age: Duration,
}

impl Node {
    /// On the leader: how far each other member's matched log index is behind
    /// the leader's last one, in entries and in time. Empty elsewhere.
    pub fn replication_lag(&self) -> Vec<ReplicationLag> {
        let metrics = self.metrics();
        let last = metrics.last_log_index.unwrap_or(0);
        let now = Instant::now();
        let Some(replication) = metrics.replication.as_ref() else {
            return Vec::new();
        };
        replication
            .iter()
            .filter(|(peer, _)| **peer != self.id)
            .map(|(peer, matched)| {
                let matched = matched.map(|id| id.index).unwrap_or(0);
                ReplicationLag {
                    peer: *peer,
                    entries: last.saturating_sub(matched),
                    age: self.log_timeline.age_past(matched, last, now),
                }
            })
            .collect()
    }

    /// Bytes of the Raft log's segment files on disk.
    pub fn log_bytes_on_disk(&self) -> std::io::Result<u64> {
        let dir = self.disk.dir().join("raft-log");
        let mut bytes = 0;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("seg-") && name.ends_with(".wal") {
                bytes += entry.metadata()?.len();
            }
        }
        Ok(bytes)
    }
}

/// Starts following openraft's metrics until they end (Raft shut down):
/// counts elections this node started (each term in which its vote went to
/// itself: a candidacy, seen even if the candidate state itself was too short
/// to observe), changes of the known leader, and samples the log's last index.
/// Call it right after Raft starts: the vote it finds then was restored from
/// disk (an election of before this start) and is not counted.
pub fn spawn_watch(node: &Arc<Node>) {
    let mut metrics = node.raft.metrics();
    let restored = metrics.borrow_and_update().vote;
    let self_vote_term =
        (restored.leader_id().voted_for() == Some(node.id)).then_some(restored.leader_id().term);
    tokio::spawn(watch(node.clone(), metrics, self_vote_term));
}

async fn watch(
    node: Arc<Node>,
    mut metrics: tokio::sync::watch::Receiver<super::types::RaftMetrics>,
    mut self_vote_term: Option<u64>,
) {
    let events = crate::metrics::global();
    let mut last_leader = None::<NodeId>;
    loop {
        {
            let m = metrics.borrow_and_update();
            let term = m.vote.leader_id().term;
            if m.vote.leader_id().voted_for() == Some(node.id)
                && self_vote_term.is_none_or(|last| term > last)
            {
                events.elections.inc();
                self_vote_term = Some(term);
            }
            if let Some(leader) = m.current_leader {
                if last_leader.is_some_and(|last| last != leader) {
                    events.leader_changes.inc();
                }
                last_leader = Some(leader);
            }
            node.log_timeline
                .observe(m.last_log_index.unwrap_or(0), Instant::now());
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lag_in_time_is_the_age_of_the_first_entry_a_follower_lacks() {
        let timeline = LogTimeline::default();
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        timeline.observe(10, at(0));
        timeline.observe(20, at(50)); // within the interval: merged into the first
        timeline.observe(30, at(200));
        timeline.observe(40, at(400));
        // Caught up: no lag, whatever the history.
        assert_eq!(timeline.age_past(40, 40, at(1_000)), Duration::ZERO);
        // At 35 it lacks 36..40, appended from 400 ms on.
        assert_eq!(
            timeline.age_past(35, 40, at(1_000)),
            Duration::from_millis(600)
        );
        // At 15 it lacks 16..20, appended within 100 ms of the first sample.
        assert_eq!(
            timeline.age_past(15, 40, at(1_000)),
            Duration::from_millis(1_000)
        );
        // Entries newer than the last sample the watcher took: just now.
        assert_eq!(timeline.age_past(40, 41, at(1_000)), Duration::ZERO);
    }

    #[test]
    fn a_truncation_drops_the_samples_past_the_new_end() {
        let timeline = LogTimeline::default();
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        for (index, ms) in [(10, 0), (20, 200), (30, 400)] {
            timeline.observe(index, at(ms));
        }
        timeline.observe(15, at(500));
        assert_eq!(
            *timeline.samples.lock().unwrap(),
            VecDeque::from([(at(0), 10), (at(200), 15)])
        );
        timeline.observe(16, at(700));
        assert_eq!(
            timeline.age_past(15, 16, at(1_000)),
            Duration::from_millis(300)
        );
    }

    #[test]
    fn the_timeline_keeps_at_most_its_bound() {
        let timeline = LogTimeline::default();
        let start = Instant::now();
        for i in 0..(LOG_SAMPLES_MAX as u64 + 10) {
            timeline.observe(
                i + 1,
                start + Duration::from_millis(i * LOG_SAMPLE_INTERVAL_MS),
            );
        }
        assert_eq!(timeline.samples.lock().unwrap().len(), LOG_SAMPLES_MAX);
    }
}
