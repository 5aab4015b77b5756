//! The file system service, transport-neutral: what the gRPC handlers and the
//! REST routes call.
//!
//! Requests name file systems by name. `local` is this node's scratch directory
//! (`local`), served from its own disk and never replicated; every other name is
//! a replicated file system whose changes are single Raft commands (`state::fs`)
//! and whose reads follow the read modes. Paths are parsed and checked here before
//! anything moves, and again in apply. Contents move through the shared chunk
//! pipeline (`content`).

pub mod content;
mod handles;
pub mod local;

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::api::error::ApiError;
use crate::clock::now_ns;
use crate::limits::{FS_REMOVE_TREE_STEP_MAX, FS_STAT_MANY_MAX};
use crate::raft::{Consistency, Node, Route};
use crate::state::fs::read::{self, DirPage};
use crate::state::fs::{
    admin, names, At, Entry, Failure, FsCommand, FsRecord, FsResponse, Kind, Name, Owner, LOCAL_FS,
};
use crate::state::{self, keys, ClientCommand, Command, ReadView, Response, SessionTag};

impl From<Failure> for ApiError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Rejected(e) => ApiError::State(e),
            Failure::Storage(e) => ApiError::Internal(e.to_string()),
        }
    }
}

/// What a read or write acts on, before parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Path(String),
    Ino(u64),
}

/// A directory entry, before parsing: a path, or a name in a directory inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    Path(String),
    Entry { dir: u64, name: String },
}

pub fn parse_target(target: &Target) -> Result<At, ApiError> {
    Ok(match target {
        Target::Path(path) => At::Path(names::parse_path(path)?),
        Target::Ino(ino) => At::Ino(*ino),
    })
}

pub fn parse_place(place: &Place) -> Result<Name, ApiError> {
    Ok(match place {
        Place::Path(path) => {
            let (dir, name) = names::split_last(names::parse_path(path)?)?;
            Name {
                dir: At::Path(dir),
                name,
            }
        }
        Place::Entry { dir, name } => {
            names::check_name(name)?;
            Name {
                dir: At::Ino(*dir),
                name: name.clone(),
            }
        }
    })
}

/// A name no file system may take: `/api/v1/storage/du` would hide it.
pub const RESERVED_FS_NAME: &str = "du";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveMode {
    Unlink,
    Rmdir,
    Recursive,
}

/// The service of one node.
#[derive(Clone)]
pub struct FsApi {
    pub node: Arc<Node>,
    /// Chunk bytes in flight for all uploads on this node (shared with objects).
    pub uploads: Arc<Semaphore>,
    pub local: local::LocalFs,
    /// How writes reach the leader (`Route::Forward` for the REST front).
    pub route: Route,
}

fn is_local(fs: &str) -> bool {
    fs == LOCAL_FS
}

fn removed_of(response: Response) -> Result<(u64, bool), ApiError> {
    match response {
        Response::Fs(FsResponse::Removed { entries, done }) => Ok((entries, done)),
        other => Err(ApiError::Internal(format!("unexpected fs reply {other:?}"))),
    }
}

fn entry_of(response: Response) -> Result<Entry, ApiError> {
    match response {
        Response::Fs(FsResponse::Entry(entry)) => Ok(*entry),
        other => Err(ApiError::Internal(format!("unexpected fs reply {other:?}"))),
    }
}

impl FsApi {
    pub fn new(node: Arc<Node>, uploads: Arc<Semaphore>, local: local::LocalFs) -> Self {
        FsApi {
            node,
            uploads,
            local,
            route: Route::Leader,
        }
    }

    /// The same service with writes on `route`.
    pub fn with_route(&self, route: Route) -> Self {
        FsApi {
            route,
            ..self.clone()
        }
    }

    /// Proposes one fs command; returns its response and log index.
    pub async fn propose(
        &self,
        session: Option<SessionTag>,
        command: FsCommand,
    ) -> Result<(Response, u64), ApiError> {
        let command = ClientCommand {
            session,
            command: Command::Fs(command),
        };
        let (outcome, log_index) = self.node.submit(command, self.route, false).await?;
        Ok((outcome?, log_index))
    }

    /// Whether the session table already holds the answer to `session` (a retried
    /// multi-step request whose last step was applied).
    fn answered(&self, session: Option<SessionTag>) -> Result<bool, ApiError> {
        let Some(tag) = session else {
            return Ok(false);
        };
        let key = keys::session_result(tag.client_id, tag.seq);
        Ok(self.node.store.tree().get(key)?.is_some())
    }

    async fn barrier(&self, consistency: Consistency) -> Result<u64, ApiError> {
        Ok(self.node.read_barrier(consistency).await?)
    }

    /// Reads of several keys see one committed state (see `state::ReadView`).
    fn txn(&self) -> ReadView<'_> {
        self.node.store.read_view()
    }

    pub async fn create_fs(
        &self,
        session: Option<SessionTag>,
        name: &str,
        quota_bytes: u64,
    ) -> Result<u64, ApiError> {
        names::check_fs_name(name)?;
        // `/api/v1/storage/du` is the usage route of the REST protocol.
        if name == RESERVED_FS_NAME {
            let why = format!("`{RESERVED_FS_NAME}` is reserved (the REST usage route)");
            return Err(state::Error::invalid("fs", why).into());
        }
        let command = FsCommand::CreateFs {
            name: name.to_string(),
            quota_bytes,
        };
        Ok(self.propose(session, command).await?.1)
    }

    pub async fn delete_fs(
        &self,
        session: Option<SessionTag>,
        name: &str,
    ) -> Result<u64, ApiError> {
        let command = FsCommand::DeleteFs {
            name: name.to_string(),
        };
        Ok(self.propose(session, command).await?.1)
    }

    pub async fn set_quota(
        &self,
        session: Option<SessionTag>,
        name: &str,
        quota_bytes: u64,
    ) -> Result<u64, ApiError> {
        let command = FsCommand::SetQuota {
            name: name.to_string(),
            quota_bytes,
        };
        Ok(self.propose(session, command).await?.1)
    }

    pub async fn list_fs(
        &self,
        consistency: Consistency,
    ) -> Result<Vec<(String, FsRecord)>, ApiError> {
        self.barrier(consistency).await?;
        Ok(admin::list(self.node.store.tree())?)
    }

    /// Usage of a file system; for `local`, also the disk's capacity and free bytes.
    pub async fn statfs(
        &self,
        fs: &str,
        consistency: Consistency,
    ) -> Result<(FsRecord, Option<(u64, u64)>), ApiError> {
        if is_local(fs) {
            return self.local.statfs().map(|(r, d)| (r, Some(d)));
        }
        self.barrier(consistency).await?;
        let open = read::open(&self.txn(), fs)?;
        Ok((read::usage(&open), None))
    }

    pub async fn stat(
        &self,
        fs: &str,
        target: &Target,
        consistency: Consistency,
    ) -> Result<(Entry, u64), ApiError> {
        if is_local(fs) {
            return Ok((self.local.stat(target)?, 0));
        }
        let at = parse_target(target)?;
        let applied = self.barrier(consistency).await?;
        let txn = self.txn();
        let open = read::open(&txn, fs)?;
        Ok((read::stat(&txn, &open, &at)?, applied))
    }

    /// Stats many paths after one barrier; each answer is its own result.
    pub async fn stat_many(
        &self,
        fs: &str,
        paths: &[String],
        consistency: Consistency,
    ) -> Result<(Vec<Result<Entry, ApiError>>, u64), ApiError> {
        if paths.len() > FS_STAT_MANY_MAX {
            let n = paths.len() as u64;
            return Err(state::Error::limit("paths", FS_STAT_MANY_MAX as u64, n, "paths").into());
        }
        if is_local(fs) {
            let results = paths
                .iter()
                .map(|p| self.local.stat(&Target::Path(p.clone())))
                .collect();
            return Ok((results, 0));
        }
        let applied = self.barrier(consistency).await?;
        let txn = self.txn();
        let open = read::open(&txn, fs)?;
        let results = paths
            .iter()
            .map(|path| {
                let at = parse_target(&Target::Path(path.clone()))?;
                Ok(read::stat(&txn, &open, &at)?)
            })
            .collect();
        Ok((results, applied))
    }

    pub async fn lookup(
        &self,
        fs: &str,
        dir: &Target,
        name: &str,
        consistency: Consistency,
    ) -> Result<(Entry, u64), ApiError> {
        if is_local(fs) {
            return Ok((self.local.lookup(dir, name)?, 0));
        }
        let at = parse_target(dir)?;
        let applied = self.barrier(consistency).await?;
        let txn = self.txn();
        let open = read::open(&txn, fs)?;
        Ok((read::lookup(&txn, &open, &at, name)?, applied))
    }

    pub async fn readdir(
        &self,
        fs: &str,
        dir: &Target,
        (after, limit, plus): (&str, u32, bool),
        consistency: Consistency,
    ) -> Result<(DirPage, u64), ApiError> {
        if is_local(fs) {
            return Ok((self.local.readdir(dir, after, limit, plus)?, 0));
        }
        let at = parse_target(dir)?;
        let applied = self.barrier(consistency).await?;
        let txn = self.txn();
        let open = read::open(&txn, fs)?;
        Ok((
            read::readdir(&txn, &open, &at, after, limit, plus)?,
            applied,
        ))
    }

    pub async fn readlink(
        &self,
        fs: &str,
        target: &Target,
        consistency: Consistency,
    ) -> Result<String, ApiError> {
        if is_local(fs) {
            return self.local.readlink(target);
        }
        let at = parse_target(target)?;
        self.barrier(consistency).await?;
        let txn = self.txn();
        let open = read::open(&txn, fs)?;
        Ok(read::readlink(&txn, &open, &at)?)
    }

    /// Creates a file, directory or symlink; with `parents`, missing parents too
    /// (and an existing directory is then no error, as `mkdir -p`).
    #[allow(clippy::too_many_arguments)]
    pub async fn make(
        &self,
        session: Option<SessionTag>,
        fs: &str,
        place: &Place,
        kind: Kind,
        owner: Owner,
        (exclusive, parents): (bool, bool),
        symlink_target: &str,
    ) -> Result<Entry, ApiError> {
        if kind == Kind::Symlink {
            names::check_symlink_target(symlink_target)?;
        }
        if is_local(fs) {
            return self
                .local
                .make(place, kind, owner, (exclusive, parents), symlink_target);
        }
        let at = parse_place(place)?;
        let now_ns = now_ns();
        if parents {
            if let At::Path(dir) = &at.dir {
                if kind == Kind::Dir {
                    let mut path = dir.clone();
                    path.push(at.name.clone());
                    let command = FsCommand::MakeDirs {
                        fs: fs.to_string(),
                        path,
                        owner,
                        now_ns,
                    };
                    return entry_of(self.propose(session, command).await?.0);
                }
                if !dir.is_empty() {
                    let command = FsCommand::MakeDirs {
                        fs: fs.to_string(),
                        path: dir.clone(),
                        owner: Owner {
                            mode: 0o755,
                            ..owner
                        },
                        now_ns,
                    };
                    self.propose(None, command).await?;
                }
            }
        }
        let command = FsCommand::Make {
            fs: fs.to_string(),
            at,
            kind,
            owner,
            exclusive,
            target: symlink_target.to_string(),
            now_ns,
        };
        entry_of(self.propose(session, command).await?.0)
    }

    /// unlink, rmdir, or `rm -r`; returns the entries removed. A recursive delete
    /// runs as bounded steps; only the step that finishes carries the session, so
    /// a retry after it replays its answer, and a retry before it carries on.
    pub async fn remove(
        &self,
        session: Option<SessionTag>,
        fs: &str,
        place: &Place,
        mode: RemoveMode,
    ) -> Result<(u64, u64), ApiError> {
        if is_local(fs) {
            return self.local.remove(place, mode).map(|n| (n, 0));
        }
        let at = parse_place(place)?;
        let fs = fs.to_string();
        match mode {
            RemoveMode::Unlink | RemoveMode::Rmdir => {
                let now_ns = now_ns();
                let command = if mode == RemoveMode::Unlink {
                    FsCommand::Unlink { fs, at, now_ns }
                } else {
                    FsCommand::Rmdir { fs, at, now_ns }
                };
                let (_, log_index) = self.propose(session, command).await?;
                Ok((1, log_index))
            }
            RemoveMode::Recursive => {
                let step = |keep_top: bool| FsCommand::RemoveTree {
                    fs: fs.clone(),
                    at: at.clone(),
                    step_max: FS_REMOVE_TREE_STEP_MAX,
                    keep_top,
                    now_ns: now_ns(),
                };
                let mut removed = 0;
                // The contents go in bounded steps without the session; the step
                // that removes the top carries it, so a retry after that step
                // replays its answer and a retry before it carries on.
                if !self.answered(session)? {
                    loop {
                        let (response, _) = self.propose(None, step(true)).await?;
                        let (entries, done) = removed_of(response)?;
                        removed += entries;
                        if done {
                            break;
                        }
                    }
                }
                let (response, log_index) = self.propose(session, step(false)).await?;
                let (entries, done) = removed_of(response)?;
                if !done {
                    return Err(state::Error::fs(
                        crate::errno::Errno::ENOTEMPTY,
                        "entries were added while the directory was being removed; remove it again",
                    )
                    .into());
                }
                Ok((removed + entries, log_index))
            }
        }
    }
}
