//! The `cairn.v1.Import` gRPC service: decodes requests into the calls of
//! `api::service::import` and encodes job statuses. No import logic lives here.

use std::fmt;

use tonic::{Request, Response, Status};

use crate::api::error::ApiError;
use crate::api::service::import::{ImportService, JobStatus, Secret, SourceSpec, StartImport};
use crate::proto::v1::{self, import_server::Import};
use crate::state::Error;

pub struct ImportGrpc {
    service: ImportService,
}

impl ImportGrpc {
    pub fn new(service: ImportService) -> Self {
        ImportGrpc { service }
    }
}

/// Generated without `Debug` (build.rs): the credentials must never show.
impl fmt::Debug for v1::S3Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Source")
            .field("url", &self.url)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &"<redacted>")
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

fn start_request(r: v1::StartImportRequest) -> Result<StartImport, ApiError> {
    let Some(source) = r.source else {
        return Err(Error::invalid("source", "an S3 source is required").into());
    };
    let optional = |s: String| (!s.is_empty()).then_some(s);
    Ok(StartImport {
        source: SourceSpec {
            url: source.url,
            endpoint: optional(source.endpoint),
            region: optional(source.region),
            access_key_id: Secret::new(source.access_key_id),
            secret_access_key: Secret::new(source.secret_access_key),
        },
        dest: r.dest,
        fs: r.fs,
    })
}

pub fn job(s: JobStatus) -> v1::ImportJob {
    v1::ImportJob {
        id: s.id,
        state: s.state.as_str().to_string(),
        source_url: s.source.url,
        endpoint: s.source.endpoint,
        region: s.source.region,
        fs: s.fs,
        dest: s.dest,
        objects_listed: s.objects_listed,
        objects_copied: s.objects_copied,
        objects_skipped: s.objects_skipped,
        objects_failed: s.objects_failed,
        bytes_listed: s.bytes_listed,
        bytes_copied: s.bytes_copied,
        bytes_per_s: s.bytes_per_s,
        listing_done: s.listing_done,
        started_ms: s.started_ms,
        ended_ms: s.ended_ms.unwrap_or(0),
        error: s.error.unwrap_or_default(),
        failures: s
            .failures
            .into_iter()
            .map(|f| v1::ImportFailure {
                key: f.key,
                reason: f.reason,
            })
            .collect(),
        failures_unlisted: s.failures_unlisted,
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl Import for ImportGrpc {
    async fn start(&self, request: Request<v1::StartImportRequest>) -> Reply<v1::ImportJob> {
        let start = start_request(request.into_inner())?;
        Ok(Response::new(job(self.service.start(start).await?)))
    }

    async fn get(&self, request: Request<v1::ImportJobRequest>) -> Reply<v1::ImportJob> {
        let id = request.into_inner().id;
        Ok(Response::new(job(self.service.get(&id)?)))
    }

    async fn list(&self, _request: Request<v1::ListImportsRequest>) -> Reply<v1::ListImportsReply> {
        let jobs = self.service.list().into_iter().map(job).collect();
        Ok(Response::new(v1::ListImportsReply { jobs }))
    }

    async fn cancel(&self, request: Request<v1::ImportJobRequest>) -> Reply<v1::ImportJob> {
        let id = request.into_inner().id;
        Ok(Response::new(job(self.service.cancel(&id)?)))
    }
}
