//! Leftovers of runs whose harness died without cleaning up (SIGKILL, power loss of
//! the harness only). Each run writes an owner file `/run/cairn-jepsen/<run id>`
//! holding its pid; [`clean_dead_runs`] removes the namespaces, bridge and FORWARD rule
//! of every run whose owner is gone, and leaves live runs alone (a reused pid only makes
//! it keep a dead run's leftovers, never delete a live run's). Every run does this
//! first, and `cairn-jepsen clean` does it on demand. Node processes need no owner
//! file: they get SIGKILL when the harness dies (`PR_SET_PDEATHSIG`, see `node.rs`).
//! A dead harness's powerfs mounts (`power`) need none either: a powerfs whose
//! serving process is gone answers ENOTCONN, and every such mount is unmounted lazily
//! ([`super::power::unmount_disconnected`]).

use std::path::{Path, PathBuf};

use super::exec::{self, XTABLES_WAIT_SECS};

/// Owner files live here (tmpfs: gone after a reboot, like the namespaces).
const OWNER_DIR: &str = "/run/cairn-jepsen";
/// Namespaces per run, at most (node ids 1..=9).
const NODES_MAX: u8 = 9;

fn owner_file(run_id: &str) -> PathBuf {
    Path::new(OWNER_DIR).join(run_id)
}

/// Records this process as the owner of run `run_id`.
pub fn claim(run_id: &str) -> Result<(), String> {
    std::fs::create_dir_all(OWNER_DIR).map_err(|e| format!("{OWNER_DIR}: {e}"))?;
    let path = owner_file(run_id);
    std::fs::write(&path, format!("{}\n", std::process::id()))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Forgets run `run_id` after its own cleanup.
pub fn release(run_id: &str) {
    // Already gone is fine: nothing is left to describe.
    let _ = std::fs::remove_file(owner_file(run_id));
}

fn is_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Removes what dead runs left behind; returns a line per run cleaned or failure.
pub fn clean_dead_runs() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(OWNER_DIR) else {
        return super::power::unmount_disconnected();
    };
    let mut report = Vec::new();
    for entry in entries.flatten() {
        let run_id = entry.file_name().to_string_lossy().into_owned();
        let owner = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let owner: Option<u32> = owner.trim().parse().ok();
        if owner.is_some_and(is_alive) {
            continue;
        }
        let failures = remove_run(&run_id);
        if failures.is_empty() {
            release(&run_id);
            report.push(format!("removed the leftovers of dead run {run_id}"));
        } else {
            report.extend(failures.into_iter().map(|f| format!("run {run_id}: {f}")));
        }
    }
    report.extend(super::power::unmount_disconnected());
    report
}

/// Deletes run `run_id`'s namespaces, bridge and rule, whichever still exist.
fn remove_run(run_id: &str) -> Vec<String> {
    let mut failures = Vec::new();
    let namespaces = exec::run("ip", &["netns", "list"]).unwrap_or_default();
    for id in 1..=NODES_MAX {
        let namespace = format!("cj-{run_id}-n{id}");
        let exists = namespaces
            .lines()
            .any(|line| line.split_whitespace().next() == Some(namespace.as_str()));
        if exists {
            failures.extend(exec::run("ip", &["netns", "del", &namespace]).err());
        }
    }
    let bridge = format!("cj{run_id}");
    if exec::succeeds("ip", &["link", "show", &bridge]) {
        failures.extend(exec::run("ip", &["link", "del", &bridge]).err());
    }
    let rule = ["FORWARD", "-i", &bridge, "-o", &bridge, "-j", "ACCEPT"];
    let mut check = vec!["-w", XTABLES_WAIT_SECS, "-C"];
    check.extend_from_slice(&rule);
    if exec::succeeds("iptables", &check) {
        let mut delete = vec!["-w", XTABLES_WAIT_SECS, "-D"];
        delete.extend_from_slice(&rule);
        failures.extend(exec::run("iptables", &delete).err());
    }
    failures
}
