//! The supervisor task: starts the mount and rsync as children, restarts them
//! with backoff when they die, stops them in order, and keeps their logs bounded.

use super::*;

/// The pause before a child's next start.
pub(super) struct Backoff {
    pub(super) next: Duration,
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
    pub(super) fn after_exit(&mut self, uptime: Duration) -> Duration {
        if uptime >= Duration::from_millis(RESTART_DELAY_RESET_UPTIME_MS) {
            *self = Backoff::default();
        }
        let pause = self.next;
        self.next = (pause * 2).min(Duration::from_millis(RESTART_DELAY_MS_MAX));
        pause
    }
}

/// A running child and when it started.
pub(super) struct Running {
    pub(super) child: Child,
    pub(super) since: Instant,
}

pub(super) struct Supervisor {
    pub(super) settings: RsyncSettings,
    pub(super) listen: SocketAddr,
    pub(super) paths: Paths,
    pub(super) exe: PathBuf,
}

/// Whether the node is stopping: `stop` is true, or its sender is gone.
pub(super) fn stopping(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

/// Resolves once the node stops. Returns nothing, so no borrow of `stop` (and no
/// lock on its value) outlives the wait.
pub(super) async fn until_stopped(stop: &mut watch::Receiver<bool>) {
    // Err: the sender is gone, which means the node is going away too.
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Sleeps for `pause`, or less if the node stops meanwhile.
pub(super) async fn pause_unless_stopped(pause: Duration, stop: &mut watch::Receiver<bool>) {
    tokio::select! {
        () = tokio::time::sleep(pause) => {}
        () = until_stopped(stop) => {}
    }
}

/// The children and the pauses before their next starts.
#[derive(Default)]
pub(super) struct Children {
    pub(super) mount: Option<Running>,
    pub(super) rsync: Option<Running>,
    pub(super) mount_delay: Backoff,
    pub(super) rsync_delay: Backoff,
}

impl Supervisor {
    /// Runs until the node stops, then stops rsync, the mount, and unmounts.
    pub(super) async fn run(self, mut stop: watch::Receiver<bool>) {
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
    pub(super) async fn start_missing(
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
    pub(super) async fn watch(
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
    pub(super) async fn start_mount(
        &self,
        stop: &mut watch::Receiver<bool>,
    ) -> anyhow::Result<Running> {
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

    pub(super) fn mount_command(&self) -> anyhow::Result<Command> {
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

    pub(super) fn start_rsync(&self) -> anyhow::Result<Running> {
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

pub(super) fn flag(name: &str, path: &Path) -> OsString {
    let mut flag = OsString::from(name);
    flag.push(path);
    flag
}

/// Ties a child to the node: SIGKILL if its handle is dropped, its own process
/// group (so a stop reaches rsync's per-session processes too, and a Ctrl-C meant
/// for the node does not reach the children before the supervisor stops them in
/// order), and on Linux SIGTERM when the node dies.
pub(super) fn own_child(command: &mut Command) {
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
pub(super) async fn wait_until_mounted(
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

pub(super) fn log_exit(name: &'static str, status: io::Result<ExitStatus>, log: &Path) {
    match status {
        Ok(status) => {
            tracing::warn!(child = name, %status, log = %log.display(), "exited; restarting it")
        }
        Err(e) => tracing::warn!(child = name, error = %e, "lost; restarting it"),
    }
}

/// SIGTERM to the child's process group, SIGKILL after `wait_ms`, then reaps it.
pub(super) async fn stop_child(mut running: Running, name: &'static str, wait_ms: u64) {
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

pub(super) fn signal_group(pid: u32, signal: libc::c_int) {
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

pub(super) fn open_log(path: &Path) -> io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

/// Keeps a child's log bounded: past `CHILD_LOG_BYTES_MAX` it is copied to `.1`
/// and emptied in place. The children write with O_APPEND, so they go on at the
/// new end; lines written between copy and truncation are lost.
pub(super) async fn trim_log(path: &Path) {
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
