//! Imports from S3-compatible storage (`cairn.v1.Import`): start a job, watch
//! it, cancel it.
//!
//! A job runs on the node that received its start, so every call here goes to
//! the client's first endpoint. The start is sent once, without retries: a
//! retried start whose first attempt did reach the node would run the import
//! twice. Reading a job's status is retried as usual.

use std::fmt;
use std::time::Duration;

use super::{Client, Error, Target};
use crate::proto::v1;

/// How long a start may take: the node lists the source's first page (at most
/// 20 s on its side) and makes the destination directory.
const IMPORT_START_MS_MAX: u64 = 60_000;

type ImportGrpc = v1::import_client::ImportClient<super::Conn>;

fn import_client(channel: super::Conn) -> ImportGrpc {
    // A list of jobs, each with up to 100 failures, may pass tonic's 4 MiB default.
    ImportGrpc::new(channel)
        .max_decoding_message_size(super::MESSAGE_BYTES_MAX)
        .max_encoding_message_size(super::MESSAGE_BYTES_MAX)
}

/// Where an import reads from. `Debug` shows no credentials.
#[derive(Clone, Default)]
pub struct ImportSource {
    /// `s3://BUCKET` or `s3://BUCKET/PREFIX`.
    pub url: String,
    /// Empty: AWS (`https://s3.REGION.amazonaws.com`).
    pub endpoint: String,
    /// Empty: `us-east-1`; Cloudflare R2: `auto`.
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl fmt::Debug for ImportSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportSource")
            .field("url", &self.url)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// One object that was not imported, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportFailure {
    pub key: String,
    pub reason: String,
}

/// A job's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportJob {
    pub id: String,
    /// `running`, `succeeded`, `failed` or `cancelled`.
    pub state: String,
    pub source_url: String,
    pub endpoint: String,
    pub region: String,
    pub fs: String,
    pub dest: String,
    pub objects_listed: u64,
    pub objects_copied: u64,
    pub objects_skipped: u64,
    pub objects_failed: u64,
    pub bytes_listed: u64,
    pub bytes_copied: u64,
    pub bytes_per_s: u64,
    pub listing_done: bool,
    pub started_ms: u64,
    /// `None` while running.
    pub ended_ms: Option<u64>,
    pub error: Option<String>,
    pub failures: Vec<ImportFailure>,
    pub failures_unlisted: u64,
}

impl ImportJob {
    pub fn is_running(&self) -> bool {
        self.state == "running"
    }
}

impl From<v1::ImportJob> for ImportJob {
    fn from(j: v1::ImportJob) -> Self {
        ImportJob {
            id: j.id,
            state: j.state,
            source_url: j.source_url,
            endpoint: j.endpoint,
            region: j.region,
            fs: j.fs,
            dest: j.dest,
            objects_listed: j.objects_listed,
            objects_copied: j.objects_copied,
            objects_skipped: j.objects_skipped,
            objects_failed: j.objects_failed,
            bytes_listed: j.bytes_listed,
            bytes_copied: j.bytes_copied,
            bytes_per_s: j.bytes_per_s,
            listing_done: j.listing_done,
            started_ms: j.started_ms,
            ended_ms: (j.ended_ms != 0).then_some(j.ended_ms),
            error: (!j.error.is_empty()).then_some(j.error),
            failures: j
                .failures
                .into_iter()
                .map(|f| ImportFailure {
                    key: f.key,
                    reason: f.reason,
                })
                .collect(),
            failures_unlisted: j.failures_unlisted,
        }
    }
}

impl Client {
    /// Starts importing `source` into directory `dest` of file system `fs`
    /// (`""`: `default`) on the first endpoint's node. Fails, importing nothing,
    /// when the source refuses the credentials or has no such bucket.
    pub async fn start_import(
        &self,
        source: &ImportSource,
        fs: &str,
        dest: &str,
    ) -> Result<ImportJob, Error> {
        let request = v1::StartImportRequest {
            source: Some(v1::S3Source {
                url: source.url.clone(),
                endpoint: source.endpoint.clone(),
                region: source.region.clone(),
                access_key_id: source.access_key_id.clone(),
                secret_access_key: source.secret_access_key.clone(),
            }),
            fs: fs.to_string(),
            dest: dest.to_string(),
        };
        let addr = self.inner.router.first().to_string();
        let mut client = import_client(self.inner.router.channel(&addr)?);
        let wait = Duration::from_millis(IMPORT_START_MS_MAX);
        match tokio::time::timeout(wait, client.start(request)).await {
            Ok(Ok(reply)) => Ok(reply.into_inner().into()),
            Ok(Err(status)) => Err(Error::from_status(&status)),
            Err(_) => Err(Error::Timeout(format!(
                "{addr} did not answer the import start within {} s",
                IMPORT_START_MS_MAX / 1000
            ))),
        }
    }

    /// The status of job `id` on the first endpoint's node.
    pub async fn import_job(&self, id: &str) -> Result<ImportJob, Error> {
        let request = v1::ImportJobRequest { id: id.to_string() };
        let reply = self
            .call_on(Target::First, import_client, move |mut c| {
                let request = request.clone();
                async move { c.get(request).await }
            })
            .await?;
        Ok(reply.into())
    }

    /// The jobs of the first endpoint's node, oldest first.
    pub async fn list_imports(&self) -> Result<Vec<ImportJob>, Error> {
        let reply = self
            .call_on(Target::First, import_client, |mut c| async move {
                c.list(v1::ListImportsRequest {}).await
            })
            .await?;
        Ok(reply.jobs.into_iter().map(ImportJob::from).collect())
    }

    /// Cancels job `id` (files already written stay); returns its status.
    pub async fn cancel_import(&self, id: &str) -> Result<ImportJob, Error> {
        let request = v1::ImportJobRequest { id: id.to_string() };
        let reply = self
            .call_on(Target::First, import_client, move |mut c| {
                let request = request.clone();
                async move { c.cancel(request).await }
            })
            .await?;
        Ok(reply.into())
    }
}
