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

/// The daemon's configuration. No `auth digest`: the default list lets old and
/// macOS clients negotiate md5.
fn render_config(settings: &RsyncSettings) -> String {
    let paths = Paths::new(&settings.run_dir);
    format!(
        "# Written by cairn at every start (src/rsync_daemon.rs); edits are lost.
pid file = {pid}
lock file = {lock}
max connections = {RSYNC_CONNECTIONS_MAX}
# Clients are known by their password, not their DNS name; lookups only add delay.
reverse lookup = no

[{RSYNC_MODULE}]
    path = {mountpoint}
    read only = false
    list = false
    # Inside a chroot rsync keeps symlinks verbatim instead of munging them.
    use chroot = true
    numeric ids = true
    # A root daemon would run transfers as nobody, whom the mount refuses.
    uid = root
    gid = root
    auth users = {user}:rw
    secrets file = {secrets}
    strict modes = true
    timeout = {RSYNC_IDLE_TIMEOUT_S}
",
        pid = paths.pid_file.display(),
        lock = paths.lock_file.display(),
        mountpoint = paths.mountpoint.display(),
        user = settings.workspace_id,
        secrets = paths.secrets.display(),
    )
}

/// The secrets file: one line, because rsync reads only the user's first.
fn render_secrets(workspace_id: &str, password: &str) -> String {
    format!("{workspace_id}:{password}\n")
}

/// Replaces `path` with `text`, mode 0600, through `tmp` and a rename, so rsync
/// reads the old file or the new one, never a torn one. Not fsynced on purpose:
/// both files are rewritten at every start, so a power cut loses nothing, and
/// `allow`/`retain` run on request paths.
fn write_private(path: &Path, tmp: &Path, text: &str) -> io::Result<()> {
    // A leftover temp file could have any mode; `create_new` makes ours fresh.
    match std::fs::remove_file(tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)?;
    // Set, not only asked for: `strict modes` refuses a file others can read.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(text.as_bytes())?;
    std::fs::rename(tmp, path)
}

fn new_password() -> anyhow::Result<String> {
    use rand::RngCore;
    let mut bytes = [0u8; PASSWORD_RANDOM_BYTES];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .context("reading the OS random number generator")?;
    Ok(hex::encode(bytes))
}

/// The current password and the tokens it was handed to.
struct Passwords {
    current: String,
    holders: Vec<[u8; 32]>,
}

/// The secrets file and the one password in it.
struct Secrets {
    path: PathBuf,
    tmp: PathBuf,
    workspace_id: String,
    passwords: Mutex<Passwords>,
}

impl Secrets {
    /// A new password, written out: whatever a previous run handed out is void.
    fn create(paths: &Paths, workspace_id: &str) -> anyhow::Result<Secrets> {
        let secrets = Secrets {
            path: paths.secrets.clone(),
            tmp: paths.secrets_tmp.clone(),
            workspace_id: workspace_id.to_owned(),
            passwords: Mutex::new(Passwords {
                current: new_password()?,
                holders: Vec::new(),
            }),
        };
        secrets.write(&secrets.lock().current)?;
        Ok(secrets)
    }

    /// The passwords hold plain data that is only assigned after a successful
    /// write, so a poisoned lock still guards a consistent value.
    fn lock(&self) -> std::sync::MutexGuard<'_, Passwords> {
        self.passwords.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, password: &str) -> anyhow::Result<()> {
        let text = render_secrets(&self.workspace_id, password);
        write_private(&self.path, &self.tmp, &text)
            .with_context(|| format!("writing {}", self.path.display()))
    }

    fn allow(&self, token_hash: [u8; 32]) -> anyhow::Result<String> {
        let mut passwords = self.lock();
        if passwords.holders.contains(&token_hash) {
            return Ok(passwords.current.clone());
        }
        if passwords.holders.len() >= RSYNC_PASSWORD_HOLDERS_MAX {
            let password = new_password()?;
            self.write(&password)?;
            tracing::warn!(
                holders = passwords.holders.len(),
                "rsync password rotated: too many tokens held it"
            );
            passwords.current = password;
            passwords.holders.clear();
        }
        passwords.holders.push(token_hash);
        assert!(passwords.holders.len() <= RSYNC_PASSWORD_HOLDERS_MAX);
        Ok(passwords.current.clone())
    }

    fn retain(&self, keep: impl Fn(&[u8; 32]) -> bool) -> anyhow::Result<()> {
        let mut passwords = self.lock();
        let kept: Vec<[u8; 32]> = passwords.holders.iter().copied().filter(keep).collect();
        if kept.len() == passwords.holders.len() {
            return Ok(());
        }
        let password = new_password()?;
        // On failure the revoked holders stay listed, so the next call tries again.
        self.write(&password)?;
        tracing::info!(
            revoked = passwords.holders.len() - kept.len(),
            "rsync password rotated: a token that held it was revoked"
        );
        passwords.current = password;
        passwords.holders = kept;
        Ok(())
    }
}

fn program_on_path(program: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
}

/// The pause before a child's next start.
struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: Duration::from_millis(RESTART_DELAY_MS_MIN),
        }
    }
}

impl Backoff {
    /// The pause after a child that ran for `uptime` (zero: it never started).
    fn after_exit(&mut self, uptime: Duration) -> Duration {
        if uptime >= Duration::from_millis(RESTART_DELAY_RESET_UPTIME_MS) {
            *self = Backoff::default();
        }
        let pause = self.next;
        self.next = (pause * 2).min(Duration::from_millis(RESTART_DELAY_MS_MAX));
        pause
    }
}

/// A running child and when it started.
struct Running {
    child: Child,
    since: Instant,
}

struct Supervisor {
    settings: RsyncSettings,
    listen: SocketAddr,
    paths: Paths,
    exe: PathBuf,
}

/// Whether the node is stopping: `stop` is true, or its sender is gone.
fn stopping(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

/// Resolves once the node stops. Returns nothing, so no borrow of `stop` (and no
/// lock on its value) outlives the wait.
async fn until_stopped(stop: &mut watch::Receiver<bool>) {
    // Err: the sender is gone, which means the node is going away too.
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Sleeps for `pause`, or less if the node stops meanwhile.
async fn pause_unless_stopped(pause: Duration, stop: &mut watch::Receiver<bool>) {
    tokio::select! {
        () = tokio::time::sleep(pause) => {}
        () = until_stopped(stop) => {}
    }
}

/// The children and the pauses before their next starts.
#[derive(Default)]
struct Children {
    mount: Option<Running>,
    rsync: Option<Running>,
    mount_delay: Backoff,
    rsync_delay: Backoff,
}

impl Supervisor {
    /// Runs until the node stops, then stops rsync, the mount, and unmounts.
    async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut children = Children::default();
        let log_check_interval = Duration::from_millis(CHILD_LOG_CHECK_INTERVAL_MS);
        let mut log_check = tokio::time::interval(log_check_interval);
        // Each pass starts what is missing, then waits for an exit; until the stop.
        while !stopping(&stop) {
            match self.start_missing(&mut children, &mut stop).await {
                Ok(()) => self.watch(&mut children, &mut log_check, &mut stop).await,
                Err(pause) => pause_unless_stopped(pause, &mut stop).await,
            }
        }
        // rsync first: its sessions hold files open on the mount.
        if let Some(rsync) = children.rsync {
            stop_child(rsync, "rsync", RSYNC_STOP_WAIT_MS_MAX).await;
        }
        if let Some(mount) = children.mount {
            stop_child(mount, "cairn mount", MOUNT_STOP_WAIT_MS_MAX).await;
        }
        if let Err(e) = unmount_if_mounted(&self.paths.mountpoint).await {
            tracing::error!(error = %format!("{e:#}"), "the rsync mount could not be unmounted");
        }
        tracing::info!("rsync daemon stopped");
    }

    /// Starts whichever child is missing, the mount before rsync (whose module
    /// it is). Err: the pause before the next try.
    async fn start_missing(
        &self,
        children: &mut Children,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), Duration> {
        if children.mount.is_none() {
            match self.start_mount(stop).await {
                Ok(running) => children.mount = Some(running),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "the rsync mount did not start");
                    return Err(children.mount_delay.after_exit(Duration::ZERO));
                }
            }
        }
        if children.rsync.is_none() {
            match self.start_rsync() {
                Ok(running) => children.rsync = Some(running),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "rsync --daemon did not start");
                    return Err(children.rsync_delay.after_exit(Duration::ZERO));
                }
            }
        }
        Ok(())
    }

    /// Waits for a child to exit (then pauses before its restart), for the log
    /// check, or for the stop.
    async fn watch(
        &self,
        children: &mut Children,
        log_check: &mut tokio::time::Interval,
        stop: &mut watch::Receiver<bool>,
    ) {
        let (Some(mount), Some(rsync)) = (children.mount.as_mut(), children.rsync.as_mut()) else {
            return; // `start_missing` just started both
        };
        let pause = tokio::select! {
            status = mount.child.wait() => {
                let uptime = mount.since.elapsed();
                log_exit("cairn mount", status, &self.paths.mount_log);
                children.mount = None;
                // rsync's module is the dead mount: stop it; both restart in order.
                if let Some(rsync) = children.rsync.take() {
                    stop_child(rsync, "rsync", RSYNC_STOP_WAIT_MS_MAX).await;
                }
                children.mount_delay.after_exit(uptime)
            }
            status = rsync.child.wait() => {
                let uptime = rsync.since.elapsed();
                log_exit("rsync", status, &self.paths.rsync_log);
                children.rsync = None;
                children.rsync_delay.after_exit(uptime)
            }
            _ = log_check.tick() => {
                trim_log(&self.paths.rsync_log).await;
                trim_log(&self.paths.mount_log).await;
                return;
            }
            () = until_stopped(stop) => return,
        };
        pause_unless_stopped(pause, stop).await;
    }

    /// Mounts `default` on the mountpoint and waits until the kernel lists it.
    async fn start_mount(&self, stop: &mut watch::Receiver<bool>) -> anyhow::Result<Running> {
        // A mount left by a crashed run fails every access (ENOTCONN), mkdir included.
        unmount_if_mounted(&self.paths.mountpoint).await?;
        crate::durable::create_dir_all(&self.paths.mountpoint)
            .with_context(|| format!("creating {}", self.paths.mountpoint.display()))?;
        let mut child = self
            .mount_command()?
            .spawn()
            .with_context(|| format!("starting {} mount", self.exe.display()))?;
        let since = Instant::now();
        let mounted = wait_until_mounted(&mut child, &self.paths, stop).await;
        let running = Running { child, since };
        match mounted {
            Ok(()) => {
                tracing::info!(
                    mountpoint = %self.paths.mountpoint.display(),
                    pid = running.child.id(),
                    "rsync mount up"
                );
                Ok(running)
            }
            Err(e) => {
                stop_child(running, "cairn mount", MOUNT_STOP_WAIT_MS_MAX).await;
                unmount_if_mounted(&self.paths.mountpoint).await?;
                Err(e)
            }
        }
    }

    fn mount_command(&self) -> anyhow::Result<Command> {
        let log = open_log(&self.paths.mount_log)?;
        let mut command = Command::new(&self.exe);
        command.arg("--endpoints").arg(&self.settings.grpc_addr);
        if let Some(ca) = &self.settings.ca {
            command.arg("--ca").arg(ca);
        }
        command
            .arg("mount")
            .arg(&self.paths.mountpoint)
            .arg("--fs")
            .arg(DEFAULT_FS);
        // The flags win over the environment, but the node's own CAIRN_TOKEN would not.
        for name in ["CAIRN_ENDPOINTS", "CAIRN_CA", "CAIRN_TOKEN"] {
            command.env_remove(name);
        }
        // In the environment, not argv: anyone on the machine can read argv.
        if !self.settings.mount_token.is_empty() {
            command.env("CAIRN_TOKEN", &self.settings.mount_token);
        }
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        own_child(&mut command);
        Ok(command)
    }

    fn start_rsync(&self) -> anyhow::Result<Running> {
        let log = open_log(&self.paths.rsync_log)?;
        let mut command = Command::new(RSYNC_PROGRAM);
        command
            .arg("--daemon")
            .arg("--no-detach")
            .arg(flag("--config=", &self.paths.config))
            .arg(format!("--address={}", self.listen.ip()))
            .arg(format!("--port={}", self.listen.port()))
            .arg(flag("--log-file=", &self.paths.rsync_log))
            .stdin(Stdio::null())
            // Errors before rsync opens its log file (a bad config) land here too.
            .stdout(log.try_clone()?)
            .stderr(log);
        own_child(&mut command);
        let child = command.spawn().context("starting rsync --daemon")?;
        tracing::info!(addr = %self.listen, pid = child.id(), "rsync daemon up");
        Ok(Running {
            child,
            since: Instant::now(),
        })
    }
}

fn flag(name: &str, path: &Path) -> OsString {
    let mut flag = OsString::from(name);
    flag.push(path);
    flag
}

/// Ties a child to the node: SIGKILL if its handle is dropped, its own process
/// group (so a stop reaches rsync's per-session processes too, and a Ctrl-C meant
/// for the node does not reach the children before the supervisor stops them in
/// order), and on Linux SIGTERM when the node dies.
fn own_child(command: &mut Command) {
    command.kill_on_drop(true).process_group(0);
    #[cfg(target_os = "linux")]
    {
        let parent = std::process::id();
        // SAFETY: the closure runs in the forked child before exec, where only
        // async-signal-safe calls are allowed: it calls prctl and getppid and
        // allocates nothing. The death signal follows the forking *thread*; tokio
        // spawns from a runtime worker, which lives as long as the runtime.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The node may have died before prctl: nobody would signal us then.
                if libc::getppid() as u32 != parent {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
    }
}

/// Waits until the mountpoint is listed, the child exits, the bound passes or the
/// node stops.
async fn wait_until_mounted(
    child: &mut Child,
    paths: &Paths,
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let polls = MOUNT_READY_WAIT_MS_MAX / MOUNT_READY_POLL_MS;
    for _ in 0..polls {
        if is_mounted(&paths.mountpoint)? {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            anyhow::bail!(
                "cairn mount exited before mounting ({status}); see {}",
                paths.mount_log.display()
            );
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(MOUNT_READY_POLL_MS)) => {}
            () = until_stopped(stop) => anyhow::bail!("stopping"),
        }
    }
    anyhow::bail!(
        "the mount did not appear within {MOUNT_READY_WAIT_MS_MAX} ms; see {}",
        paths.mount_log.display()
    )
}

fn log_exit(name: &'static str, status: io::Result<ExitStatus>, log: &Path) {
    match status {
        Ok(status) => {
            tracing::warn!(child = name, %status, log = %log.display(), "exited; restarting it")
        }
        Err(e) => tracing::warn!(child = name, error = %e, "lost; restarting it"),
    }
}

/// SIGTERM to the child's process group, SIGKILL after `wait_ms`, then reaps it.
async fn stop_child(mut running: Running, name: &'static str, wait_ms: u64) {
    // Until the child is reaped its pid, and so its group id, cannot be reused.
    if let Some(pid) = running.child.id() {
        signal_group(pid, libc::SIGTERM);
        let wait = Duration::from_millis(wait_ms);
        match tokio::time::timeout(wait, running.child.wait()).await {
            Ok(status) => {
                tracing::info!(child = name, status = ?status, "stopped");
                return;
            }
            Err(_) => {
                tracing::warn!(
                    child = name,
                    wait_ms,
                    "still running after SIGTERM; killing it"
                );
                signal_group(pid, libc::SIGKILL);
            }
        }
    }
    let wait = Duration::from_millis(KILL_WAIT_MS_MAX);
    if tokio::time::timeout(wait, running.child.wait())
        .await
        .is_err()
    {
        tracing::error!(child = name, "still running after SIGKILL");
    }
}

fn signal_group(pid: u32, signal: libc::c_int) {
    // kill(0) or kill(-1) would signal the node's own group or every process.
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    if pid <= 1 {
        return;
    }
    // SAFETY: kill takes plain integers. `-pid` is the group the child leads
    // (`process_group(0)`), and the caller has not reaped the child.
    if unsafe { libc::kill(-pid, signal) } != 0 {
        let error = io::Error::last_os_error();
        tracing::debug!(pid, signal, %error, "signalling a child's process group failed");
    }
}

fn is_mounted(mountpoint: &Path) -> anyhow::Result<bool> {
    let table =
        std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    Ok(mountinfo_lists(&table, mountpoint))
}

/// Whether a mountinfo table has a mount on exactly `mountpoint` (field 5, with
/// blanks and backslashes written as `\ooo`).
fn mountinfo_lists(table: &str, mountpoint: &Path) -> bool {
    let wanted = mountpoint.as_os_str().as_bytes();
    table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|field| unescape_octal(field) == wanted)
}

fn unescape_octal(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match octal_escape(&bytes[i..]) {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

/// The byte of a `\ooo` escape at the start of `bytes`.
fn octal_escape(bytes: &[u8]) -> Option<u8> {
    let [b'\\', a, b, c, ..] = *bytes else {
        return None;
    };
    let digit = |d: u8| (b'0'..=b'7').contains(&d).then(|| u32::from(d - b'0'));
    u8::try_from(digit(a)? * 64 + digit(b)? * 8 + digit(c)?).ok()
}

/// Unmounts `mountpoint` if something is mounted there: plainly, detached if busy,
/// through fusermount3 if the kernel refuses (not root).
async fn unmount_if_mounted(mountpoint: &Path) -> anyhow::Result<()> {
    if !is_mounted(mountpoint)? {
        return Ok(());
    }
    tracing::info!(mountpoint = %mountpoint.display(), "unmounting");
    let path = mountpoint.to_path_buf();
    let wait = Duration::from_millis(UNMOUNT_WAIT_MS_MAX);
    let unmounted = tokio::time::timeout(wait, tokio::task::spawn_blocking(move || umount(&path)))
        .await
        .context("unmount timed out")?
        .context("the unmount task failed")?;
    match unmounted {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => fusermount_unmount(mountpoint).await,
        other => other.with_context(|| format!("unmounting {}", mountpoint.display())),
    }
}

fn umount(mountpoint: &Path) -> io::Result<()> {
    let path = std::ffi::CString::new(mountpoint.as_os_str().as_bytes())?;
    // SAFETY: `path` is a valid NUL-terminated string that outlives the call.
    if unsafe { libc::umount2(path.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        // Not a mount point (any more): someone else unmounted it.
        Some(libc::EINVAL) | Some(libc::ENOENT) => Ok(()),
        // An rsync session still has files open: detach; the kernel ends it later.
        Some(libc::EBUSY) => {
            // SAFETY: as above.
            if unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) } == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        }
        _ => Err(error),
    }
}

async fn fusermount_unmount(mountpoint: &Path) -> anyhow::Result<()> {
    let mut command = Command::new("fusermount3");
    command
        .arg("-u")
        .arg("-z")
        .arg(mountpoint)
        .kill_on_drop(true);
    let wait = Duration::from_millis(UNMOUNT_WAIT_MS_MAX);
    let status = tokio::time::timeout(wait, command.status())
        .await
        .context("fusermount3 -u timed out")?
        .context("running fusermount3 -u")?;
    anyhow::ensure!(status.success(), "fusermount3 -u -z failed ({status})");
    Ok(())
}

fn open_log(path: &Path) -> io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

/// Keeps a child's log bounded: past `CHILD_LOG_BYTES_MAX` it is copied to `.1`
/// and emptied in place. The children write with O_APPEND, so they go on at the
/// new end; lines written between copy and truncation are lost.
async fn trim_log(path: &Path) {
    let Ok(metadata) = tokio::fs::metadata(path).await else {
        return; // not created yet
    };
    if metadata.len() <= CHILD_LOG_BYTES_MAX {
        return;
    }
    let mut old = path.as_os_str().to_owned();
    old.push(".1");
    let trimmed = async {
        tokio::fs::copy(path, &old).await?;
        tokio::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .await?
            .set_len(0)
            .await
    };
    if let Err(e) = trimmed.await {
        tracing::warn!(log = %path.display(), error = %e, "could not trim a child's log");
    }
}

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
