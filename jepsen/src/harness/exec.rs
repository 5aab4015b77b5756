//! Running the system tools the harness needs (`ip`, `iptables`, `gnuplot`): one call,
//! its output captured, a failure turned into a message that names the command.

use std::process::{Command, Stdio};

/// `iptables -w` argument: seconds to wait for the xtables lock (shared by every
/// namespace and by other tools such as Docker) before failing instead of hanging.
pub const XTABLES_WAIT_SECS: &str = "5";

/// Runs `program args...`, waits for it, and returns its stdout, or an error with the
/// command line and its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("{program}: {error}"))?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    Err(format!(
        "`{program} {}` failed ({}): {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    ))
}

/// Runs `program args...` inside network namespace `namespace`.
pub fn run_in(namespace: &str, program: &str, args: &[&str]) -> Result<String, String> {
    let mut full = vec!["netns", "exec", namespace, program];
    full.extend_from_slice(args);
    run("ip", &full)
}

/// True if `program args...` runs and exits 0 (for capability probes).
pub fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Sends `signal` to `pid`; false if there is no such process.
pub fn signal(pid: u32, signal: i32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill(2) has no memory-safety preconditions; a stale pid only yields ESRCH.
    unsafe { libc::kill(pid, signal) == 0 }
}
