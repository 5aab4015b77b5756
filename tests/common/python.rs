//! What tests that drive Python suites share: bounded child processes with
//! their output in a file, venvs created from a pinned requirements file when
//! missing, and an API token made with the CLI.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::CAIRN;

/// A venv is created and filled at most this long (pip downloads included).
pub const VENV_CREATE_WAIT: Duration = Duration::from_secs(15 * 60);
/// `cairn token create` is retried this long while a new cluster settles.
const TOKEN_WAIT: Duration = Duration::from_secs(60);

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn read_lossy(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

/// Runs `command` with stdout and stderr in `log`, killing it after `timeout`.
pub fn run_bounded(mut command: Command, log: &Path, timeout: Duration, what: &str) -> ExitStatus {
    let file = std::fs::File::create(log).expect("create log file");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("clone log file"))
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill(); // this child only, by its handle
            let _ = child.wait();
            panic!(
                "{what} did not finish within {timeout:?}; output:\n{}",
                read_lossy(log)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A venv: `$env_var` if set, else `<repo>/target/<default_name>`; created
/// (`python3 -m venv` + `pip install -r requirements`) when it lacks `bin/<probe>`.
pub fn venv(
    env_var: &str,
    default_name: &str,
    requirements: &str,
    probe: &str,
    work: &Path,
) -> PathBuf {
    let venv = std::env::var_os(env_var)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target").join(default_name));
    if venv.join("bin").join(probe).exists() {
        return venv;
    }
    let log = work.join("venv.log");
    let mut create = Command::new("python3");
    create.arg("-m").arg("venv").arg(&venv);
    let status = run_bounded(create, &log, VENV_CREATE_WAIT, "python3 -m venv");
    assert!(
        status.success(),
        "python3 -m venv failed:\n{}",
        read_lossy(&log)
    );
    let mut install = Command::new(venv.join("bin").join("pip"));
    install
        .args(["install", "--disable-pip-version-check", "-r"])
        .arg(repo().join(requirements));
    let status = run_bounded(install, &log, VENV_CREATE_WAIT, "pip install");
    assert!(
        status.success(),
        "pip install failed:\n{}",
        read_lossy(&log)
    );
    assert!(
        venv.join("bin").join(probe).exists(),
        "the venv has no {probe}"
    );
    venv
}

/// `cairn token create --name NAME` against `grpc` (retried while the cluster
/// settles); the token it printed.
pub fn create_token(grpc: &str, name: &str, work: &Path) -> String {
    let log = work.join("token.log");
    let deadline = Instant::now() + TOKEN_WAIT;
    loop {
        let mut command = Command::new(CAIRN);
        command
            .args(["--endpoints", grpc, "token", "create", "--name", name])
            .env_remove("CAIRN_TOKEN");
        let status = run_bounded(command, &log, Duration::from_secs(30), "cairn token create");
        let output = read_lossy(&log);
        if status.success() {
            return output
                .lines()
                .find_map(|l| l.strip_prefix("token "))
                .unwrap_or_else(|| panic!("no token line in {output:?}"))
                .trim()
                .to_string();
        }
        assert!(
            Instant::now() < deadline,
            "cairn token create kept failing: {output}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
