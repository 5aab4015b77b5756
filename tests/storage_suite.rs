//! openraft's storage conformance suite on cairn's log store and state machine.
//! Method: `openraft::testing::Suite::test_all` builds a fresh store pair in a
//! new temp dir for every case.

use std::sync::Arc;

use cairn::disk::Disk;
use cairn::raft::log_store::{LogGrowth, LogStore};
use cairn::raft::sm_adapter::StateMachine;
use cairn::raft::snapshot_floor::SnapshotFloor;
use cairn::raft::types::{StorageError, TypeConfig};
use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageIOError;
use tonic::transport::ClientTlsConfig;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| StorageIOError::write(&e))?;
        let disk = Disk::open(dir.path()).map_err(|e| StorageIOError::write(&e))?;
        let growth = Arc::new(LogGrowth::default());
        // The suite checks openraft's storage contract, which lets a purge run at
        // once; cairn's own rule on top (no purge past the durable snapshot) is
        // tested with real crashes in tests/crash_windows.rs.
        let floor = SnapshotFloor::default();
        floor.raise(Some(u64::MAX));
        let log = LogStore::open(disk.clone(), growth.clone(), floor.clone(), false)
            .map_err(|e| StorageIOError::write(&e))?;
        let sm = StateMachine::open(disk, growth, floor, ClientTlsConfig::new(), 0)
            .map_err(|e| StorageIOError::write(&e))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite_passes() {
    if let Err(e) = Suite::test_all(Builder) {
        panic!("storage suite failed: {e}");
    }
}
