//! Nothing a run creates may outlive it: node processes, network namespaces, the
//! bridge, the host's FORWARD rule, tmpfs mounts (`disk-full`) and powerfs mounts
//! (`power`) are registered here as they are made, and [`cleanup_all`] undoes
//! whatever is still registered.
//!
//! The normal path tears everything down in order and unregisters it as it goes, so
//! the final [`CleanupGuard`] finds nothing left. On a panic the guard's `Drop` runs
//! the cleanup during unwinding; on SIGINT/SIGTERM/SIGHUP, [`wait_for_signal`]
//! returns, the run's future is dropped and the guard cleans up. The registry is
//! process-global so every path sees the same list.

use std::sync::Mutex;

use super::exec::{self, XTABLES_WAIT_SECS};

#[derive(Default)]
struct Registry {
    /// PIDs of running `cairn server` processes (each `ip netns exec` execs the server).
    pids: Vec<u32>,
    namespaces: Vec<String>,
    bridges: Vec<String>,
    /// Bridges for which `iptables -I FORWARD -i BR -o BR -j ACCEPT` was added.
    forward_rules: Vec<String>,
    /// tmpfs mount points (the `disk-full` node's data directory) and powerfs mount
    /// points (`power`: every node's `n<i>/disk`).
    mounts: Vec<String>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    pids: Vec::new(),
    namespaces: Vec::new(),
    bridges: Vec::new(),
    forward_rules: Vec::new(),
    mounts: Vec::new(),
});

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    // A panic while holding the lock leaves plain lists behind; keep using them.
    REGISTRY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn add_pid(pid: u32) {
    registry().pids.push(pid);
}

pub fn remove_pid(pid: u32) {
    registry().pids.retain(|&p| p != pid);
}

pub fn add_namespace(name: &str) {
    registry().namespaces.push(name.to_string());
}

pub fn add_bridge(name: &str) {
    registry().bridges.push(name.to_string());
}

pub fn add_forward_rule(bridge: &str) {
    registry().forward_rules.push(bridge.to_string());
}

/// The iptables arguments of the FORWARD rule for `bridge` (`-I`/`-D` prepended).
pub fn forward_rule(bridge: &str) -> [&str; 7] {
    ["FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"]
}

/// Deletes namespace `name` if registered (processes inside must be gone).
pub fn delete_namespace(name: &str) -> Result<(), String> {
    if !take(&mut registry().namespaces, name) {
        return Ok(());
    }
    exec::run("ip", &["netns", "del", name]).map(drop)
}

/// Deletes bridge `name` if registered.
pub fn delete_bridge(name: &str) -> Result<(), String> {
    if !take(&mut registry().bridges, name) {
        return Ok(());
    }
    exec::run("ip", &["link", "del", name]).map(drop)
}

/// Deletes the FORWARD rule of `bridge` if registered.
pub fn delete_forward_rule(bridge: &str) -> Result<(), String> {
    if !take(&mut registry().forward_rules, bridge) {
        return Ok(());
    }
    let mut args = vec!["-w", XTABLES_WAIT_SECS, "-D"];
    args.extend_from_slice(&forward_rule(bridge));
    exec::run("iptables", &args).map(drop)
}

pub fn add_mount(path: &str) {
    registry().mounts.push(path.to_string());
}

/// Unmounts `path` if registered: a plain unmount, else a lazy one (a process may
/// still hold files there; the memory goes when it lets go).
pub fn unmount(path: &str) -> Result<(), String> {
    if !take(&mut registry().mounts, path) {
        return Ok(());
    }
    exec::run("umount", &[path])
        .or_else(|_| exec::run("umount", &["-l", path]))
        .map(drop)
}

/// Unregisters `path` without unmounting it; whether it was registered. The owner of
/// a powerfs ([`super::power::PowerDisk`]) takes the entry this way and unmounts the
/// mount itself.
pub fn forget_mount(path: &str) -> bool {
    take(&mut registry().mounts, path)
}

/// Removes `name` from `list`; whether it was there. Whoever takes an item deletes
/// it, so the normal path and the cleanup path never delete the same thing twice.
fn take(list: &mut Vec<String>, name: &str) -> bool {
    let before = list.len();
    list.retain(|item| item != name);
    list.len() != before
}

/// Undoes everything still registered: processes first (SIGCONT so a paused one can
/// die, then SIGKILL), then namespaces, bridges, FORWARD rules and mounts. Returns the
/// failures, which are also printed.
pub fn cleanup_all() -> Vec<String> {
    let (pids, namespaces, bridges, rules) = {
        let registry = registry();
        (
            registry.pids.clone(),
            registry.namespaces.clone(),
            registry.bridges.clone(),
            registry.forward_rules.clone(),
        )
    };
    let mounts = registry().mounts.clone();
    for &pid in &pids {
        exec::signal(pid, libc::SIGCONT);
        exec::signal(pid, libc::SIGKILL);
        remove_pid(pid);
    }
    let mut failures = Vec::new();
    failures.extend(namespaces.iter().filter_map(|n| delete_namespace(n).err()));
    failures.extend(bridges.iter().filter_map(|b| delete_bridge(b).err()));
    failures.extend(rules.iter().filter_map(|b| delete_forward_rule(b).err()));
    failures.extend(mounts.iter().filter_map(|m| unmount(m).err()));
    for failure in &failures {
        eprintln!("cleanup: {failure}");
    }
    failures
}

/// Runs [`cleanup_all`] when dropped: at the end of a run, on early return, on panic.
pub struct CleanupGuard;

impl Drop for CleanupGuard {
    fn drop(&mut self) {
        cleanup_all();
    }
}

/// Resolves with the signal's name on SIGINT, SIGTERM or SIGHUP.
pub async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let streams = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    );
    let (Ok(mut interrupt), Ok(mut terminate), Ok(mut hangup)) = streams else {
        eprintln!("cannot install signal handlers; only the Drop guard cleans up");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = interrupt.recv() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
        _ = hangup.recv() => "SIGHUP",
    }
}
