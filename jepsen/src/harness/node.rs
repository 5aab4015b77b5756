//! One `cairn server` process inside its node's network namespace.
//!
//! `ip netns exec NS cairn server ...` execs the server in place, so the child's PID
//! is the server's PID and SIGKILL / SIGSTOP / SIGCONT hit the server directly. Each
//! start appends to the node's log file under a `=== start N ===` banner.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};

use super::cleanup;
use super::exec;
use super::grudge::NodeId;

/// Everything needed to (re)start one node.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub id: NodeId,
    pub namespace: String,
    pub grpc_addr: String,
    pub http_addr: String,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    /// `server` and its flags, after the binary.
    pub args: Vec<String>,
    /// Extra environment (libfaketime for the clock fault).
    pub env: Vec<(String, String)>,
}

/// A running server process. Not `Drop`-killed on its own: the cluster owns that.
pub struct NodeProcess {
    child: Child,
    pid: u32,
}

impl NodeProcess {
    /// Starts the server; `start_number` labels the log banner.
    pub fn spawn(
        binary: &std::path::Path,
        spec: &NodeSpec,
        start_number: u32,
    ) -> Result<Self, String> {
        if let Some(dir) = spec.log_path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log_path)
            .map_err(|e| format!("{}: {e}", spec.log_path.display()))?;
        // The banner is diagnostics only; a failed write shows up as a missing line.
        let _ = writeln!(log, "=== start {start_number} of node {} ===", spec.id);
        let stderr = log.try_clone().map_err(|e| format!("log file: {e}"))?;
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &spec.namespace])
            .arg(binary)
            .args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            // Its own process group: a terminal's Ctrl-C reaches only the harness, which
            // then stops the nodes itself (and the nemesis never mistakes that for a crash).
            .process_group(0)
            .stdout(log)
            .stderr(stderr);
        // SAFETY: the closure runs between fork and exec and only calls prctl(2),
        // which is async-signal-safe.
        unsafe {
            command.pre_exec(die_with_parent);
        }
        let child = command
            .spawn()
            .map_err(|e| format!("starting node {}: {e}", spec.id))?;
        let pid = child.id();
        cleanup::add_pid(pid);
        Ok(NodeProcess { child, pid })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The exit status if the process has ended (reaping it).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        match self.child.try_wait() {
            Ok(Some(status)) => {
                cleanup::remove_pid(self.pid);
                Some(status)
            }
            _ => None,
        }
    }

    pub fn pause(&self) {
        exec::signal(self.pid, libc::SIGSTOP);
    }

    pub fn resume(&self) {
        exec::signal(self.pid, libc::SIGCONT);
    }

    /// SIGKILL (after SIGCONT, in case it is paused) and reap.
    pub fn kill(mut self) -> Option<ExitStatus> {
        exec::signal(self.pid, libc::SIGCONT);
        exec::signal(self.pid, libc::SIGKILL);
        let status = self.child.wait().ok();
        cleanup::remove_pid(self.pid);
        status
    }

    /// SIGKILL without a SIGCONT first, and reap: a SIGSTOPped process dies without
    /// running another instruction (the `power` fault's cut).
    pub fn kill_stopped(mut self) -> Option<ExitStatus> {
        exec::signal(self.pid, libc::SIGKILL);
        let status = self.child.wait().ok();
        cleanup::remove_pid(self.pid);
        status
    }

    /// Asks for a graceful shutdown: SIGCONT (a paused process cannot handle
    /// signals), then SIGTERM. Poll [`NodeProcess::exited`] afterwards.
    pub fn terminate(&self) {
        exec::signal(self.pid, libc::SIGCONT);
        exec::signal(self.pid, libc::SIGTERM);
    }
}

/// Makes the kernel SIGKILL the server when the harness thread that started it dies,
/// so even a SIGKILLed harness leaves no server running. Survives `ip netns exec`'s
/// exec (only set-uid execs clear it). The threads that start nodes (the runtime's
/// main and worker threads) live until the run has stopped every node.
fn die_with_parent() -> std::io::Result<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes plain integers and touches no memory.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
