//! The rsync endpoint behind `lep storage upload --rsync`: Debian's `rsync --daemon`
//! serving module `volume` from a FUSE mount of file system `default`, both run as
//! child processes of the node and restarted when they die.
//!
//! Owns, under `RsyncSettings::run_dir`: `rsyncd.conf`, `rsyncd.secrets` (0600),
//! rsync's pid and lock files, the children's logs (`rsyncd.log`, `mount.log`,
//! each trimmed at `CHILD_LOG_BYTES_MAX`) and the mountpoint `mnt/`. The mount is
//! an ordinary `cairn mount` speaking gRPC to this node, a cluster client like any
//! other; rsync sees only a directory. Left to the caller: handing the password
//! to clients, calling `retain` when tokens are revoked, and stopping this before
//! the gRPC listener, because the mount sends its buffered writes through it.
//!
//! One password at a time. rsync's `check_secret` (authenticate.c) stops at the
//! first secrets line naming the user ("Don't look for name again"): a second
//! `user:password` line never lets anyone in (checked against rsync 3.5.0). So
//! every token is handed the same daemon password, and revoking a token that was
//! handed it rotates the password. `lep` asks for the password before each upload,
//! so holders of live tokens pick up the new one on their next run; a session that
//! has already logged in is not cut.
//!
//! Needs root: `use chroot` does, and the transfers run as root because only the
//! user who mounted may use a FUSE mount without `allow_other`.

use std::ffi::OsString;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::process::{Child, Command};
use tokio::sync::watch;

use crate::limits::{NAME_CHARS_MAX, TOKENS_MAX};
use crate::state::fs::DEFAULT_FS;

/// Tokens that may hold the daemon password at once. One more rotates the password
/// (`Secrets::allow`): forgetting a holder would let it keep the password after
/// its token is revoked. Above the token table's bound, so only configured tokens
/// on top of a full table can cause that.
pub const RSYNC_PASSWORD_HOLDERS_MAX: usize = 1024;
const _: () = assert!(TOKENS_MAX < RSYNC_PASSWORD_HOLDERS_MAX as u64);
/// Random bytes in a password (hex-encoded: 48 characters that neither a shell nor
/// the secrets file reads specially).
const PASSWORD_RANDOM_BYTES: usize = 24;

/// First pause before restarting a child that died; it doubles up to the max.
const RESTART_DELAY_MS_MIN: u64 = 500;
const RESTART_DELAY_MS_MAX: u64 = 30_000;
/// A child that ran this long was healthy: its next restart waits the minimum again.
const RESTART_DELAY_RESET_UPTIME_MS: u64 = 60_000;
const _: () = assert!(RESTART_DELAY_MS_MIN < RESTART_DELAY_MS_MAX);
const _: () = assert!(RESTART_DELAY_MS_MAX < RESTART_DELAY_RESET_UPTIME_MS);

/// How long a new mount may take to show in /proc/self/mountinfo (it first checks
/// the file system exists, which needs the cluster).
const MOUNT_READY_WAIT_MS_MAX: u64 = 30_000;
const MOUNT_READY_POLL_MS: u64 = 100;
const _: () = assert!(MOUNT_READY_POLL_MS < MOUNT_READY_WAIT_MS_MAX);
/// SIGTERM to exit for rsync, which only closes its sessions.
const RSYNC_STOP_WAIT_MS_MAX: u64 = 5_000;
/// SIGTERM to exit for the mount: it sends its buffered writes first (bounded by
/// its 30 s op timeout), then waits up to 5 s for the FUSE session to end.
const MOUNT_STOP_WAIT_MS_MAX: u64 = 40_000;
/// SIGKILL to reaped.
const KILL_WAIT_MS_MAX: u64 = 2_000;
/// An unmount (the syscall or fusermount3) still running after this is given up.
const UNMOUNT_WAIT_MS_MAX: u64 = 10_000;
/// A child's log above this is copied to `<log>.1` and emptied: one old generation.
const CHILD_LOG_BYTES_MAX: u64 = 64 * 1024 * 1024;
const CHILD_LOG_CHECK_INTERVAL_MS: u64 = 60_000;

/// rsyncd.conf `max connections`: each session is a process reading and writing
/// whole files through the mount.
const RSYNC_CONNECTIONS_MAX: u32 = 8;
/// rsyncd.conf `timeout`: a session silent this long is dropped.
const RSYNC_IDLE_TIMEOUT_S: u32 = 600;
/// The module `lep` names in its URL (`rsync://user@host:port/volume/...`).
const RSYNC_MODULE: &str = "volume";
const RSYNC_PROGRAM: &str = "rsync";

/// What the daemon needs to know; `start` checks it.
#[derive(Clone)]
pub struct RsyncSettings {
    /// IP:PORT the rsync daemon listens on.
    pub listen_addr: String,
    /// Holds rsyncd.conf, the secrets file, pid/lock/log files and `mnt/`.
    pub run_dir: PathBuf,
    /// This node's client gRPC address, which the mount connects to.
    pub grpc_addr: String,
    /// CA file when the client listener speaks TLS (`cairn --ca FILE mount`).
    pub ca: Option<PathBuf>,
    /// API token of the mount (env CAIRN_TOKEN); empty while the cluster is open.
    pub mount_token: String,
    /// The rsync user: `lep` logs in as the workspace id.
    pub workspace_id: String,
    /// The `cairn` binary to run `mount` with; `None`: this process's own.
    pub cairn_exe: Option<PathBuf>,
}

/// The running daemon: its password and the task supervising both children.
pub struct RsyncDaemon {
    secrets: Secrets,
    /// Taken by the first `stopped` call.
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl RsyncDaemon {
    /// Checks the settings, writes rsyncd.conf and a fresh secrets file, and starts
    /// the supervisor task; returns at once. The task runs until `stop` is true
    /// (or its sender is dropped).
    pub fn start(
        settings: RsyncSettings,
        stop: watch::Receiver<bool>,
    ) -> anyhow::Result<RsyncDaemon> {
        let listen = check_settings(&settings)?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        anyhow::ensure!(
            euid == 0,
            "the rsync daemon needs root (use chroot, and a mount only its owner may use)"
        );
        anyhow::ensure!(
            program_on_path(RSYNC_PROGRAM),
            "rsync is not installed (apt-get install rsync)"
        );
        let runtime = tokio::runtime::Handle::try_current()
            .context("the rsync daemon is started from inside a tokio runtime")?;
        let exe = match &settings.cairn_exe {
            Some(exe) => exe.clone(),
            None => std::env::current_exe().context("finding the cairn executable")?,
        };
        crate::durable::create_dir_all(&settings.run_dir)
            .with_context(|| format!("creating {}", settings.run_dir.display()))?;
        // rsyncd.conf holds the real path: rsync chroots into it after resolving.
        let run_dir = settings
            .run_dir
            .canonicalize()
            .with_context(|| format!("resolving {}", settings.run_dir.display()))?;
        check_conf_path(&run_dir)?;
        let settings = RsyncSettings {
            run_dir,
            ..settings
        };
        let paths = Paths::new(&settings.run_dir);
        write_private(&paths.config, &paths.config_tmp, &render_config(&settings))
            .with_context(|| format!("writing {}", paths.config.display()))?;
        let secrets = Secrets::create(&paths, &settings.workspace_id)?;
        let supervisor = Supervisor {
            settings,
            listen,
            paths,
            exe,
        };
        let task = runtime.spawn(supervisor.run(stop));
        Ok(RsyncDaemon {
            secrets,
            task: Mutex::new(Some(task)),
        })
    }

    /// Records that the token whose BLAKE3 hash is `token_hash` is handed the
    /// daemon password, and returns it (rsync accepts one password per user; see
    /// the module doc). The secrets file changes only if the holders overflow.
    pub fn allow(&self, token_hash: [u8; 32]) -> anyhow::Result<String> {
        self.secrets.allow(token_hash)
    }

    /// Forgets holders whose token fails `keep` (revoked tokens); if there were
    /// any, rotates the password and rewrites the secrets file.
    pub fn retain(&self, keep: impl Fn(&[u8; 32]) -> bool) -> anyhow::Result<()> {
        self.secrets.retain(keep)
    }

    /// Waits until both children have exited and the mount is gone (after `stop`).
    pub async fn stopped(&self) {
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "the rsync supervisor task failed");
            }
        }
    }
}

/// Where everything lives under the run directory.
struct Paths {
    mountpoint: PathBuf,
    config: PathBuf,
    config_tmp: PathBuf,
    secrets: PathBuf,
    secrets_tmp: PathBuf,
    pid_file: PathBuf,
    lock_file: PathBuf,
    rsync_log: PathBuf,
    mount_log: PathBuf,
}

impl Paths {
    fn new(run_dir: &Path) -> Paths {
        Paths {
            mountpoint: run_dir.join("mnt"),
            config: run_dir.join("rsyncd.conf"),
            config_tmp: run_dir.join("rsyncd.conf.tmp"),
            secrets: run_dir.join("rsyncd.secrets"),
            secrets_tmp: run_dir.join("rsyncd.secrets.tmp"),
            pid_file: run_dir.join("rsyncd.pid"),
            lock_file: run_dir.join("rsyncd.lock"),
            rsync_log: run_dir.join("rsyncd.log"),
            mount_log: run_dir.join("mount.log"),
        }
    }
}

/// Refuses settings that would not survive rsyncd.conf or the secrets file.
fn check_settings(settings: &RsyncSettings) -> anyhow::Result<SocketAddr> {
    let listen: SocketAddr = settings.listen_addr.parse().with_context(|| {
        format!(
            "the rsync listen address {:?} is not IP:PORT",
            settings.listen_addr
        )
    })?;
    check_workspace_id(&settings.workspace_id)?;
    check_conf_path(&settings.run_dir)?;
    anyhow::ensure!(
        !settings.grpc_addr.is_empty(),
        "the mount needs a gRPC address"
    );
    Ok(listen)
}

/// The workspace id becomes `auth users = ID:rw` and the secrets line `ID:password`,
/// where `:` and `,` separate fields, `#` starts a comment and `@` a group.
fn check_workspace_id(id: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !id.is_empty() && id.len() as u64 <= NAME_CHARS_MAX,
        "the workspace id is 1 to {NAME_CHARS_MAX} characters"
    );
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    anyhow::ensure!(
        id.bytes().all(allowed),
        "the workspace id {id:?} may hold only letters, digits, '-', '_' and '.'"
    );
    Ok(())
}

/// rsyncd.conf is line-based, trims values and expands `%VAR%`.
fn check_conf_path(path: &Path) -> anyhow::Result<()> {
    let text = path
        .to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))?;
    anyhow::ensure!(
        !text.contains(['\n', '\r', '\0', '%']) && text.trim() == text,
        "the rsync run directory {text:?} has a newline, '%' or surrounding blanks"
    );
    Ok(())
}

fn program_on_path(program: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
}

mod conf;
mod mounts;
mod supervisor;

use conf::*;
use mounts::*;
use supervisor::*;

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(run_dir: &Path) -> RsyncSettings {
        RsyncSettings {
            listen_addr: "127.0.0.1:8730".into(),
            run_dir: run_dir.to_path_buf(),
            grpc_addr: "127.0.0.1:7420".into(),
            ca: None,
            mount_token: String::new(),
            workspace_id: "ws-1".into(),
            cairn_exe: None,
        }
    }

    #[test]
    fn config_serves_the_mount_as_module_volume_to_the_workspace_only() {
        let text = render_config(&settings(Path::new("/run/cairn/rsync")));
        for line in [
            "pid file = /run/cairn/rsync/rsyncd.pid",
            "lock file = /run/cairn/rsync/rsyncd.lock",
            "max connections = 8",
            "[volume]",
            "    path = /run/cairn/rsync/mnt",
            "    read only = false",
            "    list = false",
            "    use chroot = true",
            "    numeric ids = true",
            "    uid = root",
            "    gid = root",
            "    auth users = ws-1:rw",
            "    secrets file = /run/cairn/rsync/rsyncd.secrets",
            "    strict modes = true",
            "    timeout = 600",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(!text.contains("auth digest"));
    }

    #[test]
    fn secrets_file_is_one_line_for_the_workspace() {
        assert_eq!(render_secrets("ws-1", "abc"), "ws-1:abc\n");
    }

    #[test]
    fn secrets_file_is_mode_0600_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (path, tmp) = (dir.path().join("s"), dir.path().join("s.tmp"));
        std::fs::write(&tmp, "left over").unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&path, &tmp, "a:1\n").unwrap();
        write_private(&path, &tmp, "a:2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a:2\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!tmp.exists());
    }

    #[test]
    fn every_token_gets_the_one_password_until_a_holder_is_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        let secrets = Secrets::create(&paths, "ws-1").unwrap();
        let first = secrets.allow([1; 32]).unwrap();
        assert_eq!(secrets.allow([2; 32]).unwrap(), first);
        let file = std::fs::read_to_string(&paths.secrets).unwrap();
        assert_eq!(file, render_secrets("ws-1", &first));
        secrets.retain(|_| true).unwrap();
        assert_eq!(secrets.allow([1; 32]).unwrap(), first, "nothing revoked");
        secrets.retain(|hash| *hash != [2; 32]).unwrap();
        let second = secrets.allow([1; 32]).unwrap();
        assert_ne!(second, first, "revoking a holder rotates the password");
        let file = std::fs::read_to_string(&paths.secrets).unwrap();
        assert_eq!(file, render_secrets("ws-1", &second));
    }

    #[test]
    fn one_holder_over_the_bound_rotates_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = Secrets::create(&Paths::new(dir.path()), "ws-1").unwrap();
        let hash = |i: usize| blake3::hash(&i.to_le_bytes()).into();
        let first = secrets.allow(hash(0)).unwrap();
        for i in 1..RSYNC_PASSWORD_HOLDERS_MAX {
            assert_eq!(secrets.allow(hash(i)).unwrap(), first);
        }
        let over = secrets.allow(hash(RSYNC_PASSWORD_HOLDERS_MAX)).unwrap();
        assert_ne!(over, first);
        assert_eq!(secrets.lock().holders.len(), 1);
    }

    #[test]
    fn settings_that_rsyncd_conf_cannot_carry_are_refused() {
        let good = settings(Path::new("/run/cairn/rsync"));
        assert!(check_settings(&good).is_ok());
        for id in [
            "",
            "a:b",
            "a,b",
            "a b",
            "#a",
            "@a",
            "a\nb",
            &"a".repeat(129),
        ] {
            let bad = RsyncSettings {
                workspace_id: id.into(),
                ..good.clone()
            };
            assert!(
                check_settings(&bad).is_err(),
                "accepted workspace id {id:?}"
            );
        }
        for dir in ["/run/%HOME%/x", "/run/a\nb", "/run/x "] {
            let bad = RsyncSettings {
                run_dir: dir.into(),
                ..good.clone()
            };
            assert!(check_settings(&bad).is_err(), "accepted run dir {dir:?}");
        }
        for addr in ["localhost:873", "127.0.0.1", "127.0.0.1:x"] {
            let bad = RsyncSettings {
                listen_addr: addr.into(),
                ..good.clone()
            };
            assert!(
                check_settings(&bad).is_err(),
                "accepted listen address {addr:?}"
            );
        }
    }

    #[test]
    fn mountinfo_match_is_exact_and_unescapes_blanks() {
        let table = "36 35 0:31 / /run/cairn/rsync/mnt rw,nosuid - fuse.cairn cairn:default rw\n\
                     37 35 0:32 / /tmp/a\\040b rw - tmpfs tmpfs rw\n";
        assert!(mountinfo_lists(table, Path::new("/run/cairn/rsync/mnt")));
        assert!(mountinfo_lists(table, Path::new("/tmp/a b")));
        assert!(!mountinfo_lists(table, Path::new("/run/cairn/rsync")));
        assert!(!mountinfo_lists(table, Path::new("/run/cairn/rsync/mnt/x")));
        assert_eq!(unescape_octal("a\\134b\\0"), b"a\\b\\0");
    }

    #[test]
    fn restart_delay_doubles_to_its_cap_and_resets_after_a_healthy_run() {
        let mut backoff = Backoff::default();
        let pauses: Vec<u64> = (0..8)
            .map(|_| backoff.after_exit(Duration::from_secs(1)).as_millis() as u64)
            .collect();
        assert_eq!(
            pauses,
            [500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]
        );
        let healthy = Duration::from_millis(RESTART_DELAY_RESET_UPTIME_MS);
        assert_eq!(backoff.after_exit(healthy), Duration::from_millis(500));
    }
}
