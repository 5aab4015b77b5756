//! Goal: the node's own disk structures survive a power cut, not only `kill -9`. Each
//! test builds one of cairn's on-disk structures — the Raft log (`raft::wal`), the
//! chunk store, the sled database (`disk::Disk`) — on a fresh powerfs mount, makes
//! it durable the way the node does, cuts the power (unsynced file data and
//! directory entries are dropped, or torn) and reopens it.
//!
//! Why on powerfs: a directory whose entry was never fsynced into its parent
//! survives every process crash, but not a power cut. These tests failed before
//! the node created its directories durably (`cairn::durable`): a fresh node's
//! `raft-log/` — and with it its vote — vanished.
//!
//! Needs root and /dev/fuse; without them each test prints a loud SKIPPED banner
//! (under CI it fails instead).

mod common;

use std::path::PathBuf;

use cairn::chunkstore::ChunkStore;
use cairn::disk::Disk;
use cairn::raft::wal::{self, Wal};
use cairn_jepsen::powerfs::{CutMode, PowerFs, PowerOptions};
use common::powerfs_can_run;

/// A powerfs mounted on a fresh directory; unmounted and removed when dropped.
struct Mount {
    fs: Option<PowerFs>,
    dir: PathBuf,
}

impl Mount {
    fn new(test: &str) -> Mount {
        let dir = std::env::temp_dir().join(format!("cairn-power-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fs = PowerFs::mount(&dir, PowerOptions::default()).unwrap();
        Mount { fs: Some(fs), dir }
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// A power cut: nothing more is written, then everything not fsynced is lost.
    fn cut(&self, mode: CutMode) {
        let fs = self.fs.as_ref().unwrap();
        fs.freeze();
        fs.cut(mode);
        fs.thaw();
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(fs) = self.fs.take() {
            let _ = fs.unmount();
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn payloads(range: std::ops::Range<u64>) -> Vec<Vec<u8>> {
    range
        .map(|i| format!("entry-{i}").repeat(50).into_bytes())
        .collect()
}

fn append_synced(wal: &mut Wal, first: u64, payloads: &[Vec<u8>]) {
    wal.append(first, payloads).unwrap().sync_data().unwrap();
}

#[test]
fn a_fresh_nodes_log_and_vote_survive_a_power_cut() {
    let test = "a_fresh_nodes_log_and_vote_survive_a_power_cut";
    if !powerfs_can_run(test) {
        return;
    }
    let mount = Mount::new("log");
    let dir = mount.data().join("raft-log");
    let mut log = Wal::open(&dir, None).unwrap();
    log.write_meta(b"voted for 2 in term 7").unwrap();
    append_synced(&mut log, 1, &payloads(1..4));
    drop(log);
    mount.cut(CutMode::DropAll);
    assert_eq!(
        wal::read_meta(&dir).unwrap().as_deref(),
        Some(&b"voted for 2 in term 7"[..]),
        "the vote was lost: a node could vote twice in one term"
    );
    let log = Wal::open(&dir, None).unwrap();
    assert_eq!((log.first_index(), log.last_index()), (Some(1), Some(3)));
    assert_eq!(log.read(2).unwrap(), Some(payloads(2..3).remove(0)));
}

/// The WAL's torn-batch rule on a disk that tears: whatever part of the last,
/// unsynced batch persists, every synced batch is there and the node starts.
#[test]
fn a_torn_unsynced_batch_never_stops_the_log_from_opening() {
    let test = "a_torn_unsynced_batch_never_stops_the_log_from_opening";
    if !powerfs_can_run(test) {
        return;
    }
    let mount = Mount::new("torn");
    let dir = mount.data().join("raft-log");
    let mut next = 1u64;
    for seed in 0..20u64 {
        let mut log = Wal::open(&dir, None).unwrap();
        assert_eq!(
            log.last_index(),
            (next > 1).then(|| next - 1),
            "seed {seed}"
        );
        append_synced(&mut log, next, &payloads(next..next + 3));
        next += 3;
        // An unsynced batch of several pages, then the power goes.
        log.append(next, &payloads(next..next + 40)).unwrap();
        drop(log);
        mount.cut(CutMode::Torn { seed });
        let log = Wal::open(&dir, None).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let last = log.last_index().unwrap();
        assert!(
            last == next - 1 || last == next + 39,
            "seed {seed}: last {last}"
        );
        next = last + 1;
    }
}

#[test]
fn chunk_files_in_new_shard_directories_survive_a_power_cut() {
    let test = "chunk_files_in_new_shard_directories_survive_a_power_cut";
    if !powerfs_can_run(test) {
        return;
    }
    let mount = Mount::new("chunks");
    let dir = mount.data().join("chunks");
    let store = ChunkStore::open(&dir).unwrap();
    let chunks: Vec<_> = (0..8u8)
        .map(|i| {
            // Reads check the bytes against the name, so the names are real hashes.
            let data = vec![i; 10_000];
            (*blake3::hash(&data).as_bytes(), data)
        })
        .collect();
    store.write_durable(&chunks).unwrap();
    drop(store);
    mount.cut(CutMode::DropAll);
    let store = ChunkStore::open(&dir).unwrap();
    for (hash, data) in &chunks {
        assert_eq!(&store.read(hash).unwrap(), data, "chunk {}", hex(hash));
    }
}

#[test]
fn the_state_machine_database_survives_a_power_cut_after_a_sync() {
    let test = "the_state_machine_database_survives_a_power_cut_after_a_sync";
    if !powerfs_can_run(test) {
        return;
    }
    let mount = Mount::new("sled");
    let disk = Disk::open(&mount.data()).unwrap();
    for i in 0..100u32 {
        disk.db.insert(i.to_be_bytes(), vec![7u8; 2_000]).unwrap();
    }
    disk.sync_blocking().unwrap();
    drop(disk);
    mount.cut(CutMode::DropAll);
    // sled's background threads let go of the database's file lock a moment after
    // the handle is dropped (a restarted node is a new process and never waits).
    let mut attempts = 0;
    let disk = loop {
        match Disk::open(&mount.data()) {
            Ok(disk) => break disk,
            Err(e) if attempts < 50 && e.to_string().contains("could not acquire lock") => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(e) => panic!("reopening the database after the cut: {e}"),
        }
    };
    assert_eq!(disk.db.len(), 100);
}

fn hex(hash: &[u8]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}
