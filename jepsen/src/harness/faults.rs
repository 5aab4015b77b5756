//! Pieces of the `loss` and `disk-full` faults that need no cluster: the loss shapes
//! (which node pairs lose packets), the tmpfs under the disk-full node's data
//! directory and its filler file, and the capability probes for both.
//!
//! - `loss`: iptables `-m statistic --mode random --probability P -j DROP` rules in
//!   both namespaces of each chosen pair ([`super::net::Network::lose_packets`]); no
//!   netem needed. The stop flushes them with the partition rules.
//! - `disk-full`: one minority node's data directory is a tmpfs of
//!   [`TMPFS_SIZE_MIB`] MiB, mounted before the node first starts. The start fills it
//!   with [`FILLER_NAME`] until ENOSPC; the stop deletes the filler.

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::Rng;

use super::cleanup;
use super::cluster::Cluster;
use super::exec::{self, XTABLES_WAIT_SECS};
use super::grudge::NodeId;

/// Size of the disk-full node's tmpfs.
pub const TMPFS_SIZE_MIB: u64 = 64;
/// The file that fills the tmpfs, in the node's data directory.
pub const FILLER_NAME: &str = "jepsen-filler";
/// One write of the filler.
const FILL_CHUNK_BYTES: usize = 1 << 20;
/// Bound on the filler's writes (well above the tmpfs size in chunks).
const FILL_CHUNKS_MAX: u64 = 4 * TMPFS_SIZE_MIB;
/// Drop probability range of the loss fault, in percent.
const LOSS_PERCENT_MIN: u32 = 20;
const LOSS_PERCENT_MAX: u32 = 40;

/// A loss fault: which links lose packets, how likely, and the shape's name.
#[derive(Clone, Debug)]
pub struct LossPlan {
    pub shape: &'static str,
    pub links: Vec<(NodeId, NodeId)>,
    pub probability: f64,
}

/// `one-node` (every link of a random node) or `pairs` (a random non-empty subset of
/// all node pairs), with a drop probability of 20-40 %.
pub fn plan_loss(rng: &mut impl Rng, ids: &[NodeId]) -> LossPlan {
    let probability = f64::from(rng.gen_range(LOSS_PERCENT_MIN..=LOSS_PERCENT_MAX)) / 100.0;
    let pairs: Vec<(NodeId, NodeId)> = ids
        .iter()
        .enumerate()
        .flat_map(|(i, &a)| ids[i + 1..].iter().map(move |&b| (a, b)))
        .collect();
    if rng.gen_bool(0.5) {
        let node = *ids.choose(rng).unwrap_or(&1);
        let links = pairs
            .into_iter()
            .filter(|&(a, b)| a == node || b == node)
            .collect();
        return LossPlan {
            shape: "one-node",
            links,
            probability,
        };
    }
    let mut links: Vec<(NodeId, NodeId)> = pairs
        .iter()
        .copied()
        .filter(|_| rng.gen_bool(0.5))
        .collect();
    if links.is_empty() {
        links.extend(pairs.choose(rng).copied());
    }
    LossPlan {
        shape: "pairs",
        links,
        probability,
    }
}

/// Picks the disk-full node (a minority of one, never node 1, which bootstraps the
/// cluster) and mounts a tmpfs at its data directory, before any node starts.
pub fn arm_disk_full(cluster: &Cluster, seed: u64) -> Result<NodeId, String> {
    let ids = cluster.ids();
    let node = match ids.len() {
        0 => return Err("no nodes".into()),
        1 => ids[0],
        n => ids[1 + (seed % (n as u64 - 1)) as usize],
    };
    mount_tmpfs(&cluster.spec(node).data_dir)?;
    cluster.set_disk_full_host(node);
    Ok(node)
}

/// Mounts a tmpfs of [`TMPFS_SIZE_MIB`] MiB at `dir` (created if needed) and
/// registers it for cleanup.
pub fn mount_tmpfs(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.display().to_string();
    let size = format!("size={TMPFS_SIZE_MIB}m");
    exec::run("mount", &["-t", "tmpfs", "-o", &size, "tmpfs", &path])?;
    cleanup::add_mount(&path);
    Ok(())
}

/// Writes [`FILLER_NAME`] in `dir` until the file system is full; the bytes written.
/// ENOSPC ends it normally; any other error is returned.
pub fn fill(dir: &Path) -> Result<u64, String> {
    let path = filler_path(dir);
    let mut file = File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let chunk = vec![0u8; FILL_CHUNK_BYTES];
    let mut written = 0u64;
    for _ in 0..FILL_CHUNKS_MAX {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(count) => written += count as u64,
            Err(e) if is_no_space(&e) => break,
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
    }
    // tmpfs writes need no flush; a short write or ENOSPC means the disk is full.
    match file.flush() {
        Err(e) if !is_no_space(&e) => Err(format!("{}: {e}", path.display())),
        _ => Ok(written),
    }
}

/// Deletes the filler (missing is fine: the fault may never have filled).
pub fn unfill(dir: &Path) -> Result<(), String> {
    let path = filler_path(dir);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn filler_path(dir: &Path) -> PathBuf {
    dir.join(FILLER_NAME)
}

fn is_no_space(error: &std::io::Error) -> bool {
    error.raw_os_error() == Some(libc::ENOSPC)
}

/// Whether `iptables -m statistic --mode random` works, tried in a scratch network
/// namespace (so the host's tables are never touched).
pub fn probe_statistic_match() -> bool {
    let namespace = format!("cj-probe-{}", std::process::id());
    if exec::run("ip", &["netns", "add", &namespace]).is_err() {
        return false;
    }
    let rule = [
        "-w",
        XTABLES_WAIT_SECS,
        "-A",
        "INPUT",
        "-m",
        "statistic",
        "--mode",
        "random",
        "--probability",
        "0.5",
        "-j",
        "DROP",
    ];
    let works = exec::run_in(&namespace, "iptables", &rule).is_ok();
    // A namespace that cannot be deleted only leaves an empty namespace behind.
    let _ = exec::run("ip", &["netns", "del", &namespace]);
    works
}

/// Whether a tmpfs can be mounted (and unmounted) here.
pub fn probe_tmpfs() -> bool {
    let dir = std::env::temp_dir().join(format!("cairn-jepsen-probe-{}", std::process::id()));
    if std::fs::create_dir_all(&dir).is_err() {
        return false;
    }
    let path = dir.display().to_string();
    let mounted = exec::run("mount", &["-t", "tmpfs", "-o", "size=1m", "tmpfs", &path]).is_ok();
    let unmounted = mounted && exec::run("umount", &[&path]).is_ok();
    let _ = std::fs::remove_dir(&dir);
    unmounted
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn loss_plans_pick_existing_links_with_20_to_40_percent() {
        let mut rng = StdRng::seed_from_u64(5);
        for _ in 0..200 {
            let plan = plan_loss(&mut rng, &[1, 2, 3, 4, 5]);
            assert!(!plan.links.is_empty());
            assert!((0.2..=0.4).contains(&plan.probability));
            for &(a, b) in &plan.links {
                assert!(a < b && (1..=5).contains(&a) && (1..=5).contains(&b));
            }
            if plan.shape == "one-node" {
                assert_eq!(plan.links.len(), 4);
            }
        }
    }

    #[test]
    fn unfilling_a_directory_without_a_filler_is_fine() {
        let dir = std::env::temp_dir().join(format!("cj-fill-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(unfill(&dir).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
