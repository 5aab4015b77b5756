//! The pieces of the `power` fault that need no nemesis: the powerfs mounts under the
//! nodes' data directories, the choice of the nodes a cut hits, the cut's seed, and
//! the JSON of a cut for the history.
//!
//! - **Mounts.** When `power` is in the mix, every host's node directory `n<i>/` gets
//!   a powerfs at `n<i>/disk/` ([`DISK_DIR`]), mounted before any node starts, and the
//!   node's data directory is `n<i>/disk/data` (cairn creates it, durably). The mount
//!   sits one level above the data directory so that a `member` fault's new data
//!   directory `n<i>/disk/data-id<N>` (beside the old one) is on the same powerfs;
//!   the node's `server.log` (and the clock fault's offset file) stay in `n<i>/`, off
//!   the powerfs, so a cut never eats the evidence. Each mount is a [`PowerDisk`]: the
//!   handle plus a cleanup registry entry ([`super::cleanup::add_mount`]); whoever
//!   takes the entry unmounts (the run's end, the handle's `Drop` on a panic, or
//!   [`super::cleanup::cleanup_all`] with `umount`, then `umount -l`, on a signal).
//!   A SIGKILLed harness leaves its mounts disconnected; the next run or
//!   `cairn-jepsen clean` lazily unmounts every disconnected powerfs
//!   ([`unmount_disconnected`]).
//! - **A cut** (the nemesis, [`super::nemesis`]): SIGSTOP the chosen nodes and wait
//!   until every thread of each has stopped ([`wait_stopped`]), so no node runs a
//!   single instruction after the instant of the cut (it never sees an I/O error, and
//!   sends nothing more); freeze their mounts; SIGKILL them (no SIGCONT first) and
//!   reap; cut each mount (its seed from [`cut_seed`]); thaw. The stop restarts them
//!   on the same data.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::{json, Value};

use super::cleanup;
use super::cluster::Cluster;
use super::exec;
use super::grudge::NodeId;
use super::recorder::{Entry, EntryType};
use crate::powerfs::{CutMode, CutReport, PowerFs, PowerOptions, Stats};

/// The powerfs mount point inside a host's node directory; the data directory is
/// `data` inside it.
pub const DISK_DIR: &str = "disk";
/// Page memory one node's powerfs may hold (current data plus the durable versions a
/// cut restores); a write past it fails with ENOSPC.
pub const BYTES_MAX: u64 = 4 << 30;
/// Bound on waiting for every thread of a SIGSTOPped node to stop.
const STOP_WAIT_MS: u64 = 2_000;
/// Between two looks at the threads' states.
const STOP_POLL_MS: u64 = 2;

/// One host's powerfs, registered for cleanup.
pub struct PowerDisk {
    pub node: NodeId,
    fs: Option<PowerFs>,
    /// The canonical mount point, as registered in [`cleanup`].
    path: String,
}

impl PowerDisk {
    /// Creates `dir` (which must then be empty) and mounts a powerfs there.
    pub fn mount(node: NodeId, dir: &Path) -> Result<PowerDisk, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let options = PowerOptions {
            bytes_max: BYTES_MAX,
        };
        let fs = PowerFs::mount(dir, options)
            .map_err(|e| format!("mounting a powerfs at {}: {e}", dir.display()))?;
        let path = fs.mountpoint().display().to_string();
        cleanup::add_mount(&path);
        Ok(PowerDisk {
            node,
            fs: Some(fs),
            path,
        })
    }

    fn fs(&self) -> Option<&PowerFs> {
        self.fs.as_ref()
    }

    pub fn freeze(&self) {
        if let Some(fs) = self.fs() {
            fs.freeze();
        }
    }

    pub fn thaw(&self) {
        if let Some(fs) = self.fs() {
            fs.thaw();
        }
    }

    pub fn stats(&self) -> Option<Stats> {
        self.fs().map(PowerFs::stats)
    }

    pub fn cut(&self, mode: CutMode) -> Option<CutReport> {
        self.fs().map(|fs| fs.cut(mode))
    }

    pub fn mountpoint(&self) -> &str {
        &self.path
    }

    /// Copies the mount's content to `disk-final/` beside it (`--power-keep-data`);
    /// a line saying what was copied, or what failed.
    pub fn keep_copy(&self) -> String {
        let from = Path::new(&self.path);
        let to = from.with_file_name(KEPT_DIR);
        match copy_tree(from, &to) {
            Ok((files, bytes)) => format!(
                "power: node {}'s disk copied to {} ({files} files, {bytes} bytes)",
                self.node,
                to.display()
            ),
            Err(error) => format!("power: copying node {}'s disk: {error}", self.node),
        }
    }

    /// Unmounts (a lazy unmount if busy). If the cleanup registry no longer holds the
    /// mount, [`cleanup::cleanup_all`] has unmounted it already: the handle only ends
    /// its request thread then.
    pub fn unmount(&mut self) -> Result<(), String> {
        let Some(fs) = self.fs.take() else {
            return Ok(());
        };
        if !cleanup::forget_mount(&self.path) {
            drop(fs);
            return Ok(());
        }
        fs.unmount()
            .map_err(|e| format!("unmounting the powerfs at {}: {e}", self.path))
    }
}

impl Drop for PowerDisk {
    fn drop(&mut self) {
        if let Err(error) = self.unmount() {
            eprintln!("{error}");
        }
    }
}

/// Copy of a node's powerfs kept after the run (`--power-keep-data`), beside it.
pub const KEPT_DIR: &str = "disk-final";

/// Copies the tree at `from` to `to` (files, directories, symlinks); the files and
/// bytes copied.
fn copy_tree(from: &Path, to: &Path) -> Result<(u64, u64), String> {
    let mut totals = (0u64, 0u64);
    let mut pending = vec![(from.to_path_buf(), to.to_path_buf())];
    while let Some((source, target)) = pending.pop() {
        std::fs::create_dir_all(&target).map_err(|e| format!("{}: {e}", target.display()))?;
        let entries =
            std::fs::read_dir(&source).map_err(|e| format!("{}: {e}", source.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("{}: {e}", source.display()))?;
            let path = entry.path();
            let destination = target.join(entry.file_name());
            let kind = entry
                .file_type()
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if kind.is_dir() {
                pending.push((path, destination));
            } else if kind.is_symlink() {
                let link =
                    std::fs::read_link(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                std::os::unix::fs::symlink(link, &destination)
                    .map_err(|e| format!("{}: {e}", destination.display()))?;
            } else {
                let bytes = std::fs::copy(&path, &destination)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                totals = (totals.0 + 1, totals.1 + bytes);
            }
        }
    }
    Ok(totals)
}

/// A host's powerfs mount point, given its node directory `n<i>/`.
pub fn disk_dir(node_dir: &Path) -> PathBuf {
    node_dir.join(DISK_DIR)
}

/// Mounts a powerfs at every host's `n<i>/disk` (the parent of its data directory),
/// before any node starts, and hands them to the cluster. On an error the mounts
/// made so far are unmounted (dropped).
pub fn arm(cluster: &Cluster) -> Result<(), String> {
    let mut disks = Vec::new();
    for id in cluster.ids() {
        let data_dir = &cluster.spec(id).data_dir;
        let dir = data_dir
            .parent()
            .filter(|dir| dir.file_name() == Some(DISK_DIR.as_ref()))
            .ok_or_else(|| format!("{} is not in a powerfs directory", data_dir.display()))?;
        disks.push(PowerDisk::mount(id, dir)?);
    }
    cluster.set_power_disks(disks);
    Ok(())
}

/// A random minority of `ids`: (n - 1) / 2 nodes, at least one, in id order.
pub fn minority(rng: &mut impl Rng, ids: &[NodeId]) -> Vec<NodeId> {
    let count = ids.len().saturating_sub(1) / 2;
    let mut chosen: Vec<NodeId> = ids
        .choose_multiple(rng, count.max(1).min(ids.len()))
        .copied()
        .collect();
    chosen.sort_unstable();
    chosen
}

/// The torn cut's seed for node `node` in the run's `cut_number`th power fault: the
/// same run seed gives the same cuts.
pub fn cut_seed(run_seed: u64, cut_number: u64, node: NodeId) -> u64 {
    let mixed = run_seed ^ (cut_number << 8 | u64::from(node)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    splitmix64(mixed)
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// What was not yet durable on a mount just before its cut.
pub fn stats_value(stats: &Stats) -> Value {
    json!({
        "unsynced_pages": stats.unsynced_pages,
        "unsynced_bytes": stats.unsynced_bytes,
        "dirty_files": stats.dirty_files,
        "unsynced_dir_entries": stats.unsynced_dir_entries,
        "bytes_held": stats.bytes_held,
    })
}

/// Every field of a cut report.
pub fn report_value(report: &CutReport) -> Value {
    json!({
        "files_reverted": report.files_reverted,
        "pages_dropped": report.pages_dropped,
        "pages_kept": report.pages_kept,
        "bytes_dropped": report.bytes_dropped,
        "dir_entries_reverted": report.dir_entries_reverted,
        "dir_entries_kept": report.dir_entries_kept,
        "inodes_dropped": report.inodes_dropped,
        "handles_closed": report.handles_closed,
        "lost_something": report.lost_something(),
    })
}

/// The [`CutReport`] fields summed over a run's `start-power` events, by name.
pub const SUMMED_FIELDS: [&str; 6] = [
    "pages_dropped",
    "bytes_dropped",
    "dir_entries_reverted",
    "files_reverted",
    "inodes_dropped",
    "pages_kept",
];

/// The run's power cuts, from its `start-power` events: how many, per scope, nodes
/// cut, restarts that failed, and the [`SUMMED_FIELDS`] summed over every node's cut.
pub fn summarize(entries: &[Entry]) -> Value {
    let mut cuts = 0u64;
    let mut node_cuts = 0u64;
    let mut by_scope = serde_json::Map::new();
    let mut totals: Vec<u64> = vec![0; SUMMED_FIELDS.len()];
    let mut failed_restarts = 0u64;
    for entry in entries
        .iter()
        .filter(|e| e.entry_type == EntryType::Nemesis)
    {
        match entry.f.as_str() {
            "start-power" => {
                cuts += 1;
                let scope = entry.value["scope"].as_str().unwrap_or("?").to_string();
                let count = by_scope.entry(scope).or_insert(json!(0));
                *count = json!(count.as_u64().unwrap_or(0) + 1);
                for cut in entry.value["cuts"].as_array().into_iter().flatten() {
                    node_cuts += 1;
                    for (total, field) in totals.iter_mut().zip(SUMMED_FIELDS) {
                        *total += cut[field].as_u64().unwrap_or(0);
                    }
                }
            }
            "stop-power" => {
                let restarts = entry.value["restarts"].as_array().into_iter().flatten();
                failed_restarts += restarts.filter(|r| r["restart"] != json!("ok")).count() as u64;
            }
            _ => {}
        }
    }
    let mut value = json!({
        "cuts": cuts,
        "by_scope": by_scope,
        "node_cuts": node_cuts,
        "failed_restarts": failed_restarts,
    });
    if let Value::Object(map) = &mut value {
        for (field, total) in SUMMED_FIELDS.iter().zip(totals) {
            map.insert((*field).to_string(), json!(total));
        }
    }
    value
}

/// Waits (bounded) until every thread of process `pid` is stopped (or dead); whether
/// they all were in time.
pub async fn wait_stopped(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_millis(STOP_WAIT_MS);
    loop {
        if all_threads_stopped(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(STOP_POLL_MS)).await;
    }
}

/// Whether every thread of `pid` is in state `T` / `t` (stopped) or gone.
fn all_threads_stopped(pid: u32) -> bool {
    let tasks = Path::new("/proc").join(pid.to_string()).join("task");
    let Ok(entries) = std::fs::read_dir(&tasks) else {
        // No such process any more: nothing runs.
        return true;
    };
    entries.flatten().all(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return true;
        };
        // `tid (comm) S ...`: the comm may hold spaces and parentheses.
        let state = stat
            .rfind(')')
            .and_then(|end| stat[end + 1..].split_whitespace().next());
        matches!(state, Some("T" | "t" | "Z" | "X") | None)
    })
}

/// Lazily unmounts every powerfs whose serving process is gone (the mount answers
/// ENOTCONN): what a SIGKILLed harness leaves behind. A live mount, even frozen,
/// answers (EIO when frozen), so only dead ones are touched. One line per mount.
pub fn unmount_disconnected() -> Vec<String> {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return Vec::new();
    };
    let mut report = Vec::new();
    for line in mounts.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [source, target, fstype, ..] = fields[..] else {
            continue;
        };
        if source != "powerfs" || !fstype.starts_with("fuse") {
            continue;
        }
        let target = unescape_mount_path(target);
        let disconnected = std::fs::metadata(&target)
            .err()
            .is_some_and(|e| e.raw_os_error() == Some(libc::ENOTCONN));
        if !disconnected {
            continue;
        }
        match exec::run("umount", &["-l", &target]) {
            Ok(_) => report.push(format!("unmounted the dead powerfs at {target}")),
            Err(error) => report.push(format!("dead powerfs at {target}: {error}")),
        }
    }
    report
}

/// /proc/self/mounts writes space, tab, newline and backslash as `\ooo`.
fn unescape_mount_path(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let octal = bytes.get(index + 1..index + 4).filter(|digits| {
            bytes[index] == b'\\' && digits.iter().all(|d| (b'0'..=b'7').contains(d))
        });
        match octal {
            Some(digits) => {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                out.push(value as u8);
                index += 4;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn a_minority_is_n_minus_1_over_2_nodes_and_at_least_one() {
        let mut rng = StdRng::seed_from_u64(9);
        for (n, expected) in [(1, 1), (2, 1), (3, 1), (4, 1), (5, 2), (7, 3), (9, 4)] {
            let ids: Vec<NodeId> = (1..=n).collect();
            for _ in 0..20 {
                let chosen = minority(&mut rng, &ids);
                assert_eq!(chosen.len(), expected, "{n} nodes");
                assert!(chosen.windows(2).all(|w| w[0] < w[1]));
                assert!(chosen.iter().all(|id| ids.contains(id)));
            }
        }
    }

    #[test]
    fn cut_seeds_repeat_per_run_seed_and_differ_per_cut_and_node() {
        assert_eq!(cut_seed(7, 1, 2), cut_seed(7, 1, 2));
        assert_ne!(cut_seed(7, 1, 2), cut_seed(7, 2, 2));
        assert_ne!(cut_seed(7, 1, 2), cut_seed(7, 1, 3));
        assert_ne!(cut_seed(7, 1, 2), cut_seed(8, 1, 2));
    }

    #[test]
    fn the_summary_counts_cuts_by_scope_and_sums_what_they_dropped() {
        let event = |f: &str, value: Value| Entry {
            index: 0,
            process: None,
            entry_type: EntryType::Nemesis,
            f: f.to_string(),
            key: None,
            value,
            error: None,
            time_ns: 0,
            node: None,
        };
        let cut = |pages: u64, entries: u64| {
            json!({ "node": 1, "pages_dropped": pages, "bytes_dropped": pages * 100,
                    "dir_entries_reverted": entries })
        };
        let entries = [
            event(
                "start-power",
                json!({ "scope": "all", "cuts": [cut(3, 1), cut(4, 0)] }),
            ),
            event(
                "stop-power",
                json!({ "restarts": [{ "restart": "ok" }, { "restart": { "error": "x" } }] }),
            ),
            event(
                "start-power",
                json!({ "scope": "one", "cuts": [cut(5, 2)] }),
            ),
            event("start-kill", json!({ "node": 2 })),
        ];
        let summary = summarize(&entries);
        assert_eq!(summary["cuts"], 2);
        assert_eq!(summary["by_scope"], json!({ "all": 1, "one": 1 }));
        assert_eq!(summary["node_cuts"], 3);
        assert_eq!(summary["failed_restarts"], 1);
        assert_eq!(summary["pages_dropped"], 12);
        assert_eq!(summary["bytes_dropped"], 1200);
        assert_eq!(summary["dir_entries_reverted"], 3);
        assert_eq!(summary["inodes_dropped"], 0);
    }

    #[test]
    fn a_tree_is_copied_with_its_files_directories_and_links() {
        let root = std::env::temp_dir().join(format!("cj-copy-tree-{}", std::process::id()));
        let from = root.join("disk");
        std::fs::create_dir_all(from.join("data/raft-log")).unwrap();
        std::fs::write(from.join("data/raft-log/seg"), b"12345").unwrap();
        std::fs::write(from.join("data/meta"), b"ab").unwrap();
        std::os::unix::fs::symlink("meta", from.join("data/link")).unwrap();
        let to = root.join(KEPT_DIR);
        assert_eq!(copy_tree(&from, &to), Ok((2, 7)));
        assert_eq!(
            std::fs::read(to.join("data/raft-log/seg")).unwrap(),
            b"12345"
        );
        assert_eq!(
            std::fs::read_link(to.join("data/link")).unwrap(),
            Path::new("meta")
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn mount_paths_are_unescaped() {
        assert_eq!(unescape_mount_path(r"/a\040b/c"), "/a b/c");
        assert_eq!(unescape_mount_path(r"/plain"), "/plain");
        assert_eq!(unescape_mount_path(r"/tail\"), r"/tail\");
    }

    #[test]
    fn this_process_is_running_not_stopped() {
        assert!(!all_threads_stopped(std::process::id()));
        assert!(all_threads_stopped(u32::MAX));
    }
}
