//! Shared by the chaos tests: the machine probe (with a loud skip), the `cairn` binary
//! (built if missing or older than cairn's sources), and one harness run as a
//! subprocess, exactly as a developer would start it.

#![allow(dead_code)] // each test binary uses a different part

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime};

use cairn_jepsen::harness::probe::Capabilities;

/// True if this machine can run the harness; otherwise prints a banner that cannot be
/// missed in the test output. Under CI (`CI` set) a machine that cannot run the harness
/// fails the test instead: CI runs as root, so a skip there would hide a broken setup.
pub fn harness_can_run(test: &str) -> bool {
    let Some(missing) = Capabilities::probe().missing_for_cluster() else {
        return true;
    };
    if std::env::var_os("CI").is_some() {
        panic!("{test}: the chaos harness cannot run under CI: {missing}");
    }
    let bar = "!".repeat(78);
    // Written to the stderr handle, not with eprintln!, which the test harness would
    // capture and hide for a passing test.
    let banner = format!(
        "\n{bar}\nSKIPPED {test}: {missing}\nThe chaos tests need root, iproute2 and iptables.\n{bar}\n"
    );
    // Nothing sensible is left to do if stderr itself is gone.
    let _ = std::io::stderr().write_all(banner.as_bytes());
    false
}

/// The workspace root (this package is `jepsen/` inside it).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("jepsen/ has a parent")
        .to_path_buf()
}

/// `target/debug/cairn`, found from this test executable (target/debug/deps/...), so it
/// also works with a custom CARGO_TARGET_DIR.
fn cairn_path() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("test executables live in deps/");
    deps.parent().expect("deps/ has a parent").join("cairn")
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The newest modification time of cairn's sources (src/, proto/, Cargo.toml).
fn newest_source(root: &Path) -> Option<SystemTime> {
    let mut newest = modified(&root.join("Cargo.toml"));
    let mut stack = vec![root.join("src"), root.join("proto")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                newest = newest.max(modified(&path));
            }
        }
    }
    newest
}

/// A current `cairn` debug binary. `cargo test --workspace` builds it already (cairn's
/// own integration tests need it); `cargo test -p cairn-jepsen` alone does not, so
/// it is built here (with the cargo running this test) when missing or stale.
pub fn cairn_binary() -> PathBuf {
    let binary = cairn_path();
    let root = workspace_root();
    let stale = match (modified(&binary), newest_source(&root)) {
        (Some(built), Some(source)) => source > built,
        (None, _) => true,
        (Some(_), None) => false,
    };
    if stale {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        // The same features as the README's test command, so that cairn's own
        // crash-point tests, sharing this binary, keep their crash points.
        eprintln!("building cairn: {cargo} build -p cairn --features failpoints");
        let status = Command::new(cargo)
            .args(["build", "-p", "cairn", "--features", "failpoints"])
            .current_dir(&root)
            .status()
            .expect("run cargo build -p cairn");
        assert!(status.success(), "cargo build -p cairn failed");
    }
    assert!(binary.is_file(), "no cairn binary at {}", binary.display());
    binary
}

/// What one `cairn-jepsen run` printed and returned.
pub struct RunOutcome {
    pub exit_code: i32,
    pub verdict_line: String,
    pub stdout: String,
}

/// Runs `cairn-jepsen run ARGS` (`args` split at spaces) with runs stored under the
/// target directory's temp space (one subdirectory per test, emptied first).
pub fn run_harness(test: &str, args: &str) -> RunOutcome {
    let args: Vec<&str> = args.split_whitespace().collect();
    let store = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("jepsen-store")
        .join(test);
    // Old runs of this test only take space; a missing directory is fine.
    let _ = std::fs::remove_dir_all(&store);
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_cairn-jepsen"))
        .arg("run")
        .args(&args)
        .arg("--cairn-bin")
        .arg(cairn_binary())
        .arg("--store")
        .arg(&store)
        .output()
        .expect("cairn-jepsen runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    eprintln!(
        "--- cairn-jepsen run {} ({:.1} s)\n{stdout}{}",
        args.join(" "),
        started.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&output.stderr)
    );
    RunOutcome {
        exit_code: output.status.code().unwrap_or(-1),
        verdict_line: stdout.lines().last().unwrap_or_default().to_string(),
        stdout,
    }
}

/// True if powerfs can mount here (root, /dev/fuse); otherwise prints a banner that
/// cannot be missed. Under CI a machine that cannot mount fails the test instead.
pub fn powerfs_can_run(test: &str) -> bool {
    let Err(reason) = cairn_jepsen::powerfs::probe_detail() else {
        return true;
    };
    if std::env::var_os("CI").is_some() {
        panic!("{test}: powerfs cannot mount under CI: {reason}");
    }
    let bar = "!".repeat(78);
    let banner = format!(
        "\n{bar}\nSKIPPED {test}: {reason}\nThe powerfs tests need root and /dev/fuse.\n{bar}\n"
    );
    // Written to the stderr handle, not with eprintln!, which the test harness would
    // capture and hide for a passing test.
    let _ = std::io::stderr().write_all(banner.as_bytes());
    false
}
