//! Imports from S3-compatible storage (AWS S3, Cloudflare R2) into a file
//! system, transport-neutral: the REST routes and the gRPC handler call it.
//!
//! A job runs on the node that received its start request, as a tokio task, and
//! writes through the file system service on `Route::Forward`, so any node can
//! run one. Before a start request returns, the source is opened and its first
//! page listed, so bad credentials or a missing bucket fail the request itself
//! and nothing is imported. The job then lists page by page and copies up to
//! `IMPORT_OBJECTS_IN_FLIGHT_MAX` objects at once (`job`), each streamed in
//! ranged GETs into the chunk pipeline (`copy`); keys map to paths in `paths`,
//! the S3 side is `source`.
//!
//! This registry lives in the node's memory only: a job's status, and the
//! credentials it was given, go when it ends or the node stops. Credentials are
//! never stored, logged, proposed through Raft or returned (see `source`). A
//! rerun resumes: a file already there with the object's size and ETag (recorded
//! as `IMPORT_ETAG_XATTR`), and the content the import wrote, is skipped.

mod copy;
mod job;
pub mod paths;
pub mod source;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use tokio::task::AbortHandle;

use super::fs::{FsApi, Place, Target};
use crate::api::error::ApiError;
use crate::clock::now_ms;
use crate::raft::{Consistency, Route};
use crate::state;
use crate::state::fs::{names, Kind, Owner, LOCAL_FS};
pub use source::{Secret, SourceSpec};

/// Jobs a node remembers, running or finished; when full, the oldest finished
/// one is forgotten to make room.
pub const IMPORT_JOBS_RETAINED_MAX: usize = 64;
/// Jobs running at once on one node; another start is refused (`limit_exceeded`).
pub const IMPORT_JOBS_RUNNING_MAX: usize = 4;
/// Objects one job copies at once. With `IMPORT_RANGE_BYTES` this bounds a job's
/// buffered source bytes (4 × 8 MiB); the chunk pipeline bounds the rest.
pub const IMPORT_OBJECTS_IN_FLIGHT_MAX: usize = 4;
/// Bytes one ranged GET asks for: big enough to amortize a request, small
/// enough that a retried range costs little and sits in memory.
pub const IMPORT_RANGE_BYTES: u64 = 8 * 1024 * 1024;
/// Tries of one S3 request (a listing page or a range) that failed for a
/// reason that may pass: no answer, 408, 429, 5xx.
pub const IMPORT_REQUEST_ATTEMPTS_MAX: u32 = 5;
/// Backoff between those tries: doubling from the first bound to the second.
pub const IMPORT_RETRY_BACKOFF_MS_MIN: u64 = 250;
pub const IMPORT_RETRY_BACKOFF_MS_MAX: u64 = 8_000;
/// One S3 request, its body included (8 MiB at ~70 KiB/s).
pub const IMPORT_REQUEST_MS_MAX: u64 = 120_000;
/// The start request's first listing, which the caller waits for.
pub const IMPORT_VALIDATE_MS_MAX: u64 = 20_000;
/// Keys asked for per listing page (S3's own maximum).
pub const IMPORT_LIST_PAGE_KEYS_MAX: usize = 1_000;
/// Tries of one object whose write failed for a reason that may pass (a leader
/// change, a timeout); the object is read again each time.
pub const IMPORT_OBJECT_ATTEMPTS_MAX: u32 = 3;
/// Failures a status lists by key and reason; later ones are only counted.
pub const IMPORT_FAILURES_LISTED_MAX: usize = 100;
/// The extended attribute holding the source ETag of an imported file.
pub const IMPORT_ETAG_XATTR: &str = "user.cairn.import.etag";
/// The extended attribute holding the content version the import wrote (a
/// write in place keeps attributes but moves the version).
pub const IMPORT_VERSION_XATTR: &str = "user.cairn.import.version";

// A running job is never evicted: there is always a finished one to forget.
const _: () = assert!(IMPORT_JOBS_RUNNING_MAX < IMPORT_JOBS_RETAINED_MAX);
const _: () = assert!(IMPORT_RETRY_BACKOFF_MS_MIN <= IMPORT_RETRY_BACKOFF_MS_MAX);
const _: () = assert!(IMPORT_REQUEST_ATTEMPTS_MAX >= 1 && IMPORT_OBJECT_ATTEMPTS_MAX >= 1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Running,
    /// Every listed object was copied or skipped.
    Succeeded,
    /// The listing failed, or at least one object did (see `failures`).
    Failed,
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
}

/// One object that was not imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectFailure {
    pub key: String,
    pub reason: String,
}

/// Where a job reads from, as shown (no credentials).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceInfo {
    pub url: String,
    pub endpoint: String,
    pub region: String,
}

/// A job's progress, as every front shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobStatus {
    pub id: String,
    pub state: JobState,
    pub source: SourceInfo,
    pub fs: String,
    pub dest: String,
    pub objects_listed: u64,
    pub objects_copied: u64,
    pub objects_skipped: u64,
    pub objects_failed: u64,
    pub bytes_listed: u64,
    pub bytes_copied: u64,
    /// `bytes_copied` over the time since the start (until the end, once ended).
    pub bytes_per_s: u64,
    /// Whether the whole listing has been read.
    pub listing_done: bool,
    pub started_ms: u64,
    pub ended_ms: Option<u64>,
    /// Why the job failed as a whole, when it did.
    pub error: Option<String>,
    /// The first `IMPORT_FAILURES_LISTED_MAX` failed objects.
    pub failures: Vec<ObjectFailure>,
    /// Failed objects beyond those listed.
    pub failures_unlisted: u64,
}

impl JobStatus {
    /// A job that starts now, with nothing counted yet.
    fn new(source: &source::Source, fs_name: &str, dest: &[String]) -> Self {
        JobStatus {
            id: format!("{:016x}", rand::random::<u64>()),
            state: JobState::Running,
            source: SourceInfo {
                url: format!("s3://{}/{}", source.bucket_name, source.prefix),
                endpoint: source.endpoint.clone(),
                region: source.region.clone(),
            },
            fs: fs_name.to_string(),
            dest: names::show(dest),
            objects_listed: 0,
            objects_copied: 0,
            objects_skipped: 0,
            objects_failed: 0,
            bytes_listed: 0,
            bytes_copied: 0,
            bytes_per_s: 0,
            listing_done: false,
            started_ms: now_ms(),
            ended_ms: None,
            error: None,
            failures: Vec::new(),
            failures_unlisted: 0,
        }
    }
}

/// A job in the registry: its status, and how to stop its task.
struct Job {
    status: Mutex<JobStatus>,
    abort: Mutex<Option<AbortHandle>>,
    started: Instant,
}

impl Job {
    fn update<T>(&self, f: impl FnOnce(&mut JobStatus) -> T) -> T {
        f(&mut self
            .status
            .lock()
            .expect("job status lock is never poisoned"))
    }

    fn snapshot(&self) -> JobStatus {
        let mut status = self.update(|s| s.clone());
        let elapsed_ms = match status.ended_ms {
            Some(end) => end.saturating_sub(status.started_ms),
            None => self.started.elapsed().as_millis() as u64,
        };
        status.bytes_per_s = status.bytes_copied * 1000 / elapsed_ms.max(1);
        status
    }

    fn is_running(&self) -> bool {
        self.update(|s| s.state == JobState::Running)
    }

    fn count_bytes(&self, bytes: u64) {
        self.update(|s| s.bytes_copied += bytes);
    }

    /// Takes back the bytes of an object whose copy failed.
    fn uncount_bytes(&self, bytes: u64) {
        self.update(|s| s.bytes_copied = s.bytes_copied.saturating_sub(bytes));
    }

    fn failed(&self, key: &str, reason: String) {
        self.update(|s| {
            s.objects_failed += 1;
            if s.failures.len() < IMPORT_FAILURES_LISTED_MAX {
                s.failures.push(ObjectFailure {
                    key: key.to_string(),
                    reason,
                });
            } else {
                s.failures_unlisted += 1;
            }
        });
    }

    /// Ends a running job; a job already ended (cancelled meanwhile) keeps its state.
    fn finish(&self, error: Option<String>) {
        self.update(|s| {
            if s.state != JobState::Running {
                return;
            }
            s.error = error.or_else(|| {
                (s.objects_failed > 0).then(|| {
                    format!(
                        "{} of {} objects failed",
                        s.objects_failed, s.objects_listed
                    )
                })
            });
            s.state = if s.error.is_some() {
                JobState::Failed
            } else {
                JobState::Succeeded
            };
            s.ended_ms = Some(now_ms());
        });
    }
}

/// What a running job's copies share.
pub(crate) struct JobContext {
    fs: FsApi,
    fs_name: String,
    /// The destination directory's components.
    dest: Vec<String>,
    source: source::Source,
    job: Arc<Job>,
}

/// A start request.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct StartImport {
    pub source: SourceSpec,
    /// Empty or absent: `/`.
    #[serde(default)]
    pub dest: String,
    /// Empty or absent: `default`.
    #[serde(default)]
    pub fs: String,
}

/// The import jobs of one node.
#[derive(Clone)]
pub struct ImportService {
    /// Always `Route::Forward`: a job may run on a node that does not lead.
    fs: FsApi,
    jobs: Arc<Mutex<VecDeque<Arc<Job>>>>,
}

impl ImportService {
    pub fn new(fs: &FsApi) -> Self {
        ImportService {
            fs: fs.with_route(Route::Forward),
            jobs: Arc::new(Mutex::new(VecDeque::new())),
        }
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Job>>> {
        self.jobs
            .lock()
            .expect("job registry lock is never poisoned")
    }

    fn running(&self) -> usize {
        self.jobs().iter().filter(|j| j.is_running()).count()
    }

    fn refuse_if_busy(&self, running: usize) -> Result<(), ApiError> {
        if running >= IMPORT_JOBS_RUNNING_MAX {
            let limit = IMPORT_JOBS_RUNNING_MAX as u64;
            let actual = running as u64 + 1;
            return Err(state::Error::limit("imports", limit, actual, "running imports").into());
        }
        Ok(())
    }

    /// Validates the request and the source (first page listed), makes the
    /// destination directory, and starts the job; returns its first status.
    pub async fn start(&self, request: StartImport) -> Result<JobStatus, ApiError> {
        self.refuse_if_busy(self.running())?;
        let fs_name = match request.fs.trim() {
            "" => state::fs::DEFAULT_FS.to_string(),
            name => name.to_string(),
        };
        names::check_fs_name(&fs_name)?;
        if fs_name == LOCAL_FS {
            let why = "imports write replicated file systems; `local` is not one";
            return Err(state::Error::invalid("fs", why).into());
        }
        let dest = names::parse_path(&request.dest)?;
        let source = source::Source::open(&request.source)?;
        let first = source.validate().await?;
        self.make_dest(&fs_name, &dest).await?;
        let status = JobStatus::new(&source, &fs_name, &dest);
        let job = Arc::new(Job {
            status: Mutex::new(status),
            abort: Mutex::new(None),
            started: Instant::now(),
        });
        self.register(job.clone())?;
        tracing::info!(
            id = %job.update(|s| s.id.clone()),
            bucket = %source.bucket_name,
            prefix = %source.prefix,
            endpoint = %source.endpoint,
            fs = %fs_name,
            "import started"
        );
        let context = Arc::new(JobContext {
            fs: self.fs.clone(),
            fs_name,
            dest,
            source,
            job: job.clone(),
        });
        let task = tokio::spawn(job::run(context, first));
        // Under the lock a cancel takes too: a cancel that came first finds no
        // handle, has already marked the job, and the task is stopped here.
        let mut abort = job.abort.lock().expect("abort lock is never poisoned");
        if job.is_running() {
            *abort = Some(task.abort_handle());
        } else {
            task.abort();
        }
        drop(abort);
        Ok(job.snapshot())
    }

    /// `mkdir -p` of the destination (the root only has to exist), so a
    /// destination that is a file, or a missing file system, fails the start.
    async fn make_dest(&self, fs_name: &str, dest: &[String]) -> Result<(), ApiError> {
        if dest.is_empty() {
            let root = Target::Path("/".to_string());
            self.fs
                .stat(fs_name, &root, Consistency::Linearizable)
                .await?;
            return Ok(());
        }
        let owner = Owner {
            mode: 0o755,
            uid: 0,
            gid: 0,
        };
        let place = Place::Path(names::show(dest));
        self.fs
            .make(None, fs_name, &place, Kind::Dir, owner, (false, true), "")
            .await?;
        Ok(())
    }

    /// Adds `job`, forgetting the oldest finished jobs beyond the bound.
    fn register(&self, job: Arc<Job>) -> Result<(), ApiError> {
        let mut jobs = self.jobs();
        let running = jobs.iter().filter(|j| j.is_running()).count();
        self.refuse_if_busy(running)?;
        while jobs.len() >= IMPORT_JOBS_RETAINED_MAX {
            let oldest_finished = jobs
                .iter()
                .position(|j| !j.is_running())
                .expect("fewer jobs run than are retained");
            jobs.remove(oldest_finished);
        }
        jobs.push_back(job);
        assert!(jobs.len() <= IMPORT_JOBS_RETAINED_MAX);
        Ok(())
    }

    fn find(&self, id: &str) -> Result<Arc<Job>, ApiError> {
        self.jobs()
            .iter()
            .find(|j| j.update(|s| s.id == id))
            .cloned()
            .ok_or_else(|| {
                state::Error::NotFound {
                    what: format!("import job {id:?} on this node"),
                }
                .into()
            })
    }

    pub fn get(&self, id: &str) -> Result<JobStatus, ApiError> {
        Ok(self.find(id)?.snapshot())
    }

    /// This node's jobs, oldest first.
    pub fn list(&self) -> Vec<JobStatus> {
        let jobs: Vec<Arc<Job>> = self.jobs().iter().cloned().collect();
        jobs.iter().map(|j| j.snapshot()).collect()
    }

    /// Stops a running job (files already written stay); a finished job is
    /// returned as it is.
    pub fn cancel(&self, id: &str) -> Result<JobStatus, ApiError> {
        let job = self.find(id)?;
        // Marked and stopped under the lock `start` stores the handle under.
        let mut abort = job.abort.lock().expect("abort lock is never poisoned");
        let cancelled = job.update(|s| {
            if s.state != JobState::Running {
                return false;
            }
            s.state = JobState::Cancelled;
            s.ended_ms = Some(now_ms());
            true
        });
        if let Some(abort) = abort.take() {
            abort.abort();
        }
        drop(abort);
        if cancelled {
            tracing::info!(%id, "import cancelled");
        }
        Ok(job.snapshot())
    }
}
