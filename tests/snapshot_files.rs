//! Goal: snapshot files are never trusted unverified. A received snapshot lands in
//! a file of its own per transfer (an overlapping transfer used to truncate the
//! first one's shared `receiving.snap`); a damaged `current.snap` is never sent to
//! a follower; a node whose state needs a damaged snapshot refuses to start with a
//! message naming the file, and one that no longer needs it sets it aside.
//!
//! Method: cairn's state-machine adapter through openraft's storage traits, on
//! temp data directories.

use std::io::SeekFrom;
use std::path::Path;
use std::sync::Arc;

use cairn::disk::Disk;
use cairn::raft::log_store::LogGrowth;
use cairn::raft::sm_adapter::StateMachine;
use cairn::raft::snapshot_floor::SnapshotFloor;
use cairn::raft::types::Entry;
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload, LogId, RaftSnapshotBuilder};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

fn open(dir: &Path) -> std::io::Result<StateMachine> {
    let disk = Disk::open(dir)?;
    StateMachine::open(
        disk,
        Arc::new(LogGrowth::default()),
        SnapshotFloor::default(),
        tonic::transport::ClientTlsConfig::new(),
        0,
    )
}

fn blank(index: u64) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Blank,
    }
}

/// A state machine that applied entries 1..=5 and built a snapshot of them.
async fn with_snapshot(dir: &Path) -> StateMachine {
    let mut sm = open(dir).unwrap();
    sm.apply((1..=5).map(blank)).await.unwrap();
    let mut builder = sm.get_snapshot_builder().await;
    builder.build_snapshot().await.unwrap();
    sm
}

fn damage(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test]
async fn overlapping_transfers_never_share_a_receiving_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut sm = open(dir.path()).unwrap();
    let mut first = sm.begin_receiving_snapshot().await.unwrap();
    first.write_all(b"first transfer's bytes").await.unwrap();
    first.flush().await.unwrap();
    let mut second = sm.begin_receiving_snapshot().await.unwrap();
    second.write_all(b"second").await.unwrap();
    second.flush().await.unwrap();
    first.seek(SeekFrom::Start(0)).await.unwrap();
    let mut got = String::new();
    first.read_to_string(&mut got).await.unwrap();
    assert_eq!(got, "first transfer's bytes");
    // Nothing named is left behind in snapshots/ by a transfer.
    let names: Vec<_> = std::fs::read_dir(dir.path().join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

#[tokio::test]
async fn a_damaged_current_snapshot_is_never_sent() {
    let dir = tempfile::tempdir().unwrap();
    let mut sm = with_snapshot(dir.path()).await;
    assert!(sm.get_current_snapshot().await.unwrap().is_some());
    let current = dir.path().join("snapshots/current.snap");
    damage(&current);
    assert!(sm.get_current_snapshot().await.unwrap().is_none());
    assert!(!current.exists());
    assert!(dir.path().join("snapshots/current.snap.damaged").exists());
}

#[tokio::test]
async fn a_damaged_snapshot_the_state_needs_stops_the_node_naming_the_file() {
    let source = tempfile::tempdir().unwrap();
    drop(with_snapshot(source.path()).await);
    // A node whose state is older than its current snapshot (an install cut short)
    // needs that snapshot to start.
    let node = tempfile::tempdir().unwrap();
    drop(open(node.path()).unwrap());
    let current = node.path().join("snapshots/current.snap");
    std::fs::copy(source.path().join("snapshots/current.snap"), &current).unwrap();
    damage(&current);
    let error = open(node.path())
        .err()
        .expect("a damaged, needed snapshot is an error");
    let message = error.to_string();
    assert!(
        message.contains("current.snap") && message.contains("refusing to start"),
        "{message}"
    );
}

#[tokio::test]
async fn a_damaged_snapshot_the_state_no_longer_needs_is_set_aside_at_start() {
    let dir = tempfile::tempdir().unwrap();
    drop(with_snapshot(dir.path()).await);
    damage(&dir.path().join("snapshots/current.snap"));
    let mut sm = open(dir.path()).unwrap();
    assert!(sm.get_current_snapshot().await.unwrap().is_none());
    assert!(dir.path().join("snapshots/current.snap.damaged").exists());
    assert_eq!(
        sm.applied_state().await.unwrap().0.map(|id| id.index),
        Some(5)
    );
}
