//! rsyncd.conf and the secrets file: rendering, private atomic writes, and the
//! daemon password with the tokens that hold it.

use super::*;

/// The daemon's configuration. No `auth digest`: the default list lets old and
/// macOS clients negotiate md5.
pub(super) fn render_config(settings: &RsyncSettings) -> String {
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
pub(super) fn render_secrets(workspace_id: &str, password: &str) -> String {
    format!("{workspace_id}:{password}\n")
}

/// Replaces `path` with `text`, mode 0600, through `tmp` and a rename, so rsync
/// reads the old file or the new one, never a torn one. Not fsynced on purpose:
/// both files are rewritten at every start, so a power cut loses nothing, and
/// `allow`/`retain` run on request paths.
pub(super) fn write_private(path: &Path, tmp: &Path, text: &str) -> io::Result<()> {
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

pub(super) fn new_password() -> anyhow::Result<String> {
    use rand::RngCore;
    let mut bytes = [0u8; PASSWORD_RANDOM_BYTES];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .context("reading the OS random number generator")?;
    Ok(hex::encode(bytes))
}

/// The current password and the tokens it was handed to.
pub(super) struct Passwords {
    pub(super) current: String,
    pub(super) holders: Vec<[u8; 32]>,
}

/// The secrets file and the one password in it.
pub(super) struct Secrets {
    pub(super) path: PathBuf,
    pub(super) tmp: PathBuf,
    pub(super) workspace_id: String,
    pub(super) passwords: Mutex<Passwords>,
}

impl Secrets {
    /// A new password, written out: whatever a previous run handed out is void.
    pub(super) fn create(paths: &Paths, workspace_id: &str) -> anyhow::Result<Secrets> {
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
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Passwords> {
        self.passwords.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn write(&self, password: &str) -> anyhow::Result<()> {
        let text = render_secrets(&self.workspace_id, password);
        write_private(&self.path, &self.tmp, &text)
            .with_context(|| format!("writing {}", self.path.display()))
    }

    pub(super) fn allow(&self, token_hash: [u8; 32]) -> anyhow::Result<String> {
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

    pub(super) fn retain(&self, keep: impl Fn(&[u8; 32]) -> bool) -> anyhow::Result<()> {
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
