//! How far the Raft log may be purged: no further than the last log index of the
//! snapshot file that is durably `current.snap`.
//!
//! Why: openraft purges a follower's log up to a received snapshot at the same time
//! as it queues the snapshot's install, without waiting for the install. If the log
//! lost those entries before the snapshot was durably current, a crash in between
//! would leave a node whose state machine is behind its log's start: it could never
//! start again. Every purge is therefore checked against this floor, which the state
//! machine raises only after `current.snap` was renamed into place and its directory
//! fsynced (a built or an installed snapshot). At start the state machine reloads
//! `current.snap` whenever its own state is older, so the snapshot covers everything
//! up to the floor whatever sled lost.

use tokio::sync::watch;

/// The durable snapshot's last log index, shared by the log store (reads, waits)
/// and the state machine (raises).
#[derive(Clone)]
pub struct SnapshotFloor {
    index: watch::Sender<Option<u64>>,
}

impl Default for SnapshotFloor {
    fn default() -> Self {
        SnapshotFloor {
            index: watch::Sender::new(None),
        }
    }
}

impl SnapshotFloor {
    /// The last index covered by the durable `current.snap`, if there is one.
    pub fn index(&self) -> Option<u64> {
        *self.index.borrow()
    }

    /// Whether a purge through `index` is covered.
    pub fn covers(&self, index: u64) -> bool {
        self.index().is_some_and(|floor| floor >= index)
    }

    /// Called once `current.snap` through `index` is durable. The floor never moves
    /// back: a snapshot is replaced only by a newer one.
    pub fn raise(&self, index: Option<u64>) {
        self.index.send_if_modified(|floor| {
            if index > *floor {
                *floor = index;
                true
            } else {
                false
            }
        });
    }

    /// Waits until the floor covers `index`.
    pub async fn wait_covers(&self, index: u64) {
        let mut rx = self.index.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|floor| floor.is_some_and(|f| f >= index)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_floor_only_rises_and_wakes_waiters() {
        let floor = SnapshotFloor::default();
        assert!(!floor.covers(1));
        floor.raise(Some(10));
        floor.raise(Some(5));
        assert_eq!(floor.index(), Some(10));
        let waiter = tokio::spawn({
            let floor = floor.clone();
            async move { floor.wait_covers(20).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        floor.raise(Some(20));
        waiter.await.unwrap();
        assert!(floor.covers(20) && !floor.covers(21));
    }
}
