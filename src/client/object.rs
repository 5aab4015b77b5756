//! Object storage calls of the SDK: buckets, streamed uploads and downloads,
//! listings, presigned URLs, and the cluster's API tokens.
//!
//! An upload is one client stream to the leader. If it breaks (leader change,
//! network), the SDK opens the source again and re-sends it under the same session
//! seq: the leader skips chunks the cluster already holds, and the manifest commits
//! at most once. A download that breaks resumes at the byte it reached, on any
//! node, as long as the object's version has not changed.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{object_client, Client, Error, ReadConsistency, Target, Timeouts, TokensClient};
use crate::proto::v1;

/// Bytes the SDK reads from a file per upload message.
const UPLOAD_PIECE_BYTES: usize = 256 * 1024;
/// Times a download resumes after its stream broke.
const DOWNLOAD_RESUMES_MAX: u32 = 10;
/// Time allowed per attempt of a transfer on top of the size allowance.
const TRANSFER_BASE_MS: u64 = 30_000;
/// Slowest transfer rate the SDK waits for before it tries another node.
const TRANSFER_BYTES_PER_S_MIN: u64 = 2 * 1024 * 1024;

/// Called with the bytes transferred so far by the current attempt.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketInfo {
    pub name: String,
    pub public: bool,
    pub created_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    /// BLAKE3 of the content, hex.
    pub etag: String,
    pub content_type: String,
    pub last_modified_ms: u64,
    pub metadata: BTreeMap<String, String>,
    /// Unique and growing across the cluster; changes on every overwrite.
    pub version: u64,
}

impl From<v1::ObjectInfo> for ObjectInfo {
    fn from(i: v1::ObjectInfo) -> Self {
        ObjectInfo {
            key: i.key,
            size: i.size,
            etag: i.etag,
            content_type: i.content_type,
            last_modified_ms: i.last_modified_ms,
            metadata: i.metadata.into_iter().collect(),
            version: i.version,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutObjectOptions {
    pub content_type: String,
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    pub version: u64,
    pub etag: String,
    pub size: u64,
    /// Chunks the last attempt replicated; the rest were already stored.
    pub chunks_sent: u64,
    pub chunks_total: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListObjectsOptions {
    pub prefix: String,
    pub delimiter: String,
    pub continuation_token: String,
    /// 0 = the largest page (1000).
    pub limit: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectPage {
    pub objects: Vec<ObjectInfo>,
    pub common_prefixes: Vec<String>,
    /// `None` on the last page.
    pub next_continuation_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: u64,
    pub name: String,
    pub created_ms: u64,
}

fn transfer_timeouts(call: Duration, size_bytes: u64) -> Timeouts {
    let allowance_ms = TRANSFER_BASE_MS + size_bytes * 1000 / TRANSFER_BYTES_PER_S_MIN;
    Timeouts::new(call, Duration::from_millis(allowance_ms))
}

/// Reads `path` as a stream of pieces, reporting progress.
fn file_stream(
    file: tokio::fs::File,
    progress: Option<Progress>,
) -> impl Stream<Item = Bytes> + Send {
    futures::stream::unfold((file, 0u64), move |(mut file, sent)| {
        let progress = progress.clone();
        async move {
            let mut buffer = BytesMut::zeroed(UPLOAD_PIECE_BYTES);
            let n = match file.read(&mut buffer).await {
                Ok(0) | Err(_) => return None, // a read error shows as a short upload: size check below
                Ok(n) => n,
            };
            buffer.truncate(n);
            let sent = sent + n as u64;
            if let Some(p) = &progress {
                p(sent);
            }
            Some((buffer.freeze(), (file, sent)))
        }
    })
}

impl Client {
    pub async fn create_bucket(&self, name: &str, public: bool) -> Result<(), Error> {
        let name = name.to_string();
        self.write_with(Duration::ZERO, move |channel, session| {
            let request = v1::CreateBucketRequest {
                session: Some(session),
                name: name.clone(),
                public,
            };
            async move { object_client(channel).create_bucket(request).await }
        })
        .await?;
        Ok(())
    }

    pub async fn delete_bucket(&self, name: &str) -> Result<(), Error> {
        let name = name.to_string();
        self.write_with(Duration::ZERO, move |channel, session| {
            let request = v1::BucketRequest {
                session: Some(session),
                name: name.clone(),
            };
            async move { object_client(channel).delete_bucket(request).await }
        })
        .await?;
        Ok(())
    }

    pub async fn list_buckets(&self) -> Result<Vec<BucketInfo>, Error> {
        let reply = self
            .call_object(Target::LeaderPreferred, |mut c| async move {
                c.list_buckets(v1::ListBucketsRequest::default()).await
            })
            .await?;
        Ok(reply
            .buckets
            .into_iter()
            .map(|b| BucketInfo {
                name: b.name,
                public: b.public,
                created_ms: b.created_ms,
            })
            .collect())
    }

    /// Uploads a file. `progress` sees the bytes sent by the current attempt.
    pub async fn put_object_file(
        &self,
        bucket: &str,
        key: &str,
        path: &Path,
        options: &PutObjectOptions,
        progress: Option<Progress>,
    ) -> Result<Uploaded, Error> {
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|e| Error::InvalidArgument {
                field: "file".into(),
                message: format!("{}: {e}", path.display()),
            })?
            .len();
        let path = path.to_path_buf();
        let uploaded = self
            .put_object_from(bucket, key, options, size, move || {
                let path = path.clone();
                let progress = progress.clone();
                async move {
                    let file = tokio::fs::File::open(&path).await.ok()?;
                    Some(file_stream(file, progress))
                }
            })
            .await?;
        if uploaded.size != size {
            return Err(Error::Internal(format!(
                "the file changed while uploading: sent {} of {size} bytes",
                uploaded.size
            )));
        }
        Ok(uploaded)
    }

    /// Uploads bytes held in memory.
    pub async fn put_object_bytes(
        &self,
        bucket: &str,
        key: &str,
        data: Bytes,
        options: &PutObjectOptions,
    ) -> Result<Uploaded, Error> {
        let size = data.len() as u64;
        self.put_object_from(bucket, key, options, size, move || {
            let data = data.clone();
            async move {
                let pieces: Vec<Bytes> = (0..data.len())
                    .step_by(UPLOAD_PIECE_BYTES)
                    .map(|at| data.slice(at..(at + UPLOAD_PIECE_BYTES).min(data.len())))
                    .collect();
                Some(futures::stream::iter(pieces))
            }
        })
        .await
    }

    /// Uploads whatever `open` streams; `open` is called again for each retry and
    /// must yield the same bytes. `size_hint` sizes the per-attempt deadline.
    pub async fn put_object_from<O, F, S>(
        &self,
        bucket: &str,
        key: &str,
        options: &PutObjectOptions,
        size_hint: u64,
        mut open: O,
    ) -> Result<Uploaded, Error>
    where
        O: FnMut() -> F,
        F: std::future::Future<Output = Option<S>> + Send + 'static,
        S: Stream<Item = Bytes> + Send + 'static,
    {
        let timeouts = transfer_timeouts(self.inner.call_timeout, size_hint);
        let (bucket, key, options) = (bucket.to_string(), key.to_string(), options.clone());
        let reply = self
            .write_timed(timeouts, move |channel, session| {
                let header = v1::PutObjectHeader {
                    session: Some(session),
                    bucket: bucket.clone(),
                    key: key.clone(),
                    content_type: options.content_type.clone(),
                    metadata: options.metadata.clone().into_iter().collect(),
                };
                let body = open();
                async move {
                    let body = body.await.ok_or_else(|| {
                        tonic::Status::cancelled("the upload source could not be opened")
                    })?;
                    let first = v1::PutObjectRequest {
                        part: Some(v1::put_object_request::Part::Header(header)),
                    };
                    let data = body.map(|d| v1::PutObjectRequest {
                        part: Some(v1::put_object_request::Part::Data(d)),
                    });
                    let requests = futures::stream::once(async move { first }).chain(data);
                    object_client(channel).put(requests).await
                }
            })
            .await?;
        Ok(Uploaded {
            version: reply.version,
            etag: reply.etag,
            size: reply.size,
            chunks_sent: reply.chunks_sent,
            chunks_total: reply.chunks_total,
        })
    }

    pub async fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectInfo, Error> {
        let request = v1::HeadObjectRequest {
            bucket: bucket.into(),
            key: key.into(),
            consistency: ReadConsistency::Linearizable as i32,
        };
        let info = self
            .call_object(Target::LeaderPreferred, move |mut c| {
                let request = request.clone();
                async move { c.head(request).await }
            })
            .await?;
        Ok(info.into())
    }

    /// Downloads bytes `[offset, offset + length)` (`length` 0 = to the end) into
    /// `out`, resuming where it stopped if the stream breaks. Fails with code
    /// `object_changed` if the object is overwritten meanwhile.
    pub async fn get_object_to<W: AsyncWrite + Unpin>(
        &self,
        bucket: &str,
        key: &str,
        (offset, length): (u64, u64),
        out: &mut W,
        progress: Option<Progress>,
    ) -> Result<ObjectInfo, Error> {
        let mut info: Option<ObjectInfo> = None;
        let mut written = 0u64;
        let mut resumes = 0;
        loop {
            let remaining = match (&info, length) {
                (Some(i), 0) => i.size.saturating_sub(offset + written),
                (_, 0) => 0,
                (_, l) => l - written,
            };
            if info.is_some() && remaining == 0 {
                break;
            }
            let request = v1::GetObjectRequest {
                bucket: bucket.into(),
                key: key.into(),
                offset: offset + written,
                length: remaining,
                consistency: ReadConsistency::Linearizable as i32,
            };
            let timeouts = transfer_timeouts(self.inner.call_timeout, 0);
            let mut stream = self
                .inner
                .router
                .call(Target::LeaderPreferred, timeouts, |channel| {
                    let request = request.clone();
                    async move {
                        let mut stream = object_client(channel).get(request).await?.into_inner();
                        let first = stream.message().await?;
                        Ok((first, stream))
                    }
                })
                .await?;
            let this = match stream.0.take().and_then(|m| m.part) {
                Some(v1::get_object_reply::Part::Info(i)) => ObjectInfo::from(i),
                _ => {
                    return Err(Error::Internal(
                        "a download did not start with the object's info".into(),
                    ))
                }
            };
            match &info {
                Some(first) if first.version != this.version => {
                    return Err(Error::Rejected {
                        code: "object_changed".into(),
                        message: format!("{bucket}/{key} was overwritten during the download"),
                    })
                }
                Some(_) => {}
                None => info = Some(this),
            }
            let broke = loop {
                match stream.1.message().await {
                    Ok(Some(v1::GetObjectReply {
                        part: Some(v1::get_object_reply::Part::Data(data)),
                    })) => {
                        out.write_all(&data)
                            .await
                            .map_err(|e| Error::Internal(format!("writing the download: {e}")))?;
                        written += data.len() as u64;
                        if let Some(p) = &progress {
                            p(written);
                        }
                    }
                    Ok(Some(_)) => {
                        break Some(Error::Internal("unexpected message in a download".into()))
                    }
                    Ok(None) => break None,
                    Err(status) => break Some(Error::from_status(&status)),
                }
            };
            match broke {
                None => {
                    let size = info.as_ref().map_or(0, |i| i.size);
                    let wanted = if length == 0 {
                        size.saturating_sub(offset)
                    } else {
                        length.min(size.saturating_sub(offset))
                    };
                    if written >= wanted {
                        break;
                    }
                    // The server ended early: resume like a broken stream.
                }
                Some(e) if !e.is_retryable() => return Err(e),
                Some(_) => {}
            }
            resumes += 1;
            if resumes > DOWNLOAD_RESUMES_MAX {
                return Err(Error::Unavailable(format!(
                    "download broke {DOWNLOAD_RESUMES_MAX} times; giving up"
                )));
            }
        }
        out.flush()
            .await
            .map_err(|e| Error::Internal(format!("writing the download: {e}")))?;
        Ok(info.expect("set by the first attempt"))
    }

    /// Downloads a whole object into memory.
    pub async fn get_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<(ObjectInfo, Vec<u8>), Error> {
        let mut data = Vec::new();
        let info = self
            .get_object_to(bucket, key, (0, 0), &mut data, None)
            .await?;
        Ok((info, data))
    }

    /// Deletes an object; `Ok(false)` if it did not exist.
    pub async fn delete_object(&self, bucket: &str, key: &str) -> Result<bool, Error> {
        let (bucket, key) = (bucket.to_string(), key.to_string());
        let reply = self
            .write_with(Duration::ZERO, move |channel, session| {
                let request = v1::DeleteObjectRequest {
                    session: Some(session),
                    bucket: bucket.clone(),
                    key: key.clone(),
                };
                async move { object_client(channel).delete(request).await }
            })
            .await?;
        Ok(reply.existed)
    }

    pub async fn copy_object(
        &self,
        (from_bucket, from_key): (&str, &str),
        (to_bucket, to_key): (&str, &str),
    ) -> Result<Uploaded, Error> {
        let names = [from_bucket, from_key, to_bucket, to_key].map(str::to_string);
        let reply = self
            .write_with(Duration::ZERO, move |channel, session| {
                let [from_bucket, from_key, to_bucket, to_key] = names.clone();
                let request = v1::CopyObjectRequest {
                    session: Some(session),
                    from_bucket,
                    from_key,
                    to_bucket,
                    to_key,
                };
                async move { object_client(channel).copy(request).await }
            })
            .await?;
        Ok(Uploaded {
            version: reply.version,
            etag: reply.etag,
            size: reply.size,
            chunks_sent: 0,
            chunks_total: 0,
        })
    }

    /// One page of a bucket listing.
    pub async fn list_objects(
        &self,
        bucket: &str,
        options: &ListObjectsOptions,
    ) -> Result<ObjectPage, Error> {
        let request = v1::ListObjectsRequest {
            bucket: bucket.into(),
            prefix: options.prefix.clone(),
            delimiter: options.delimiter.clone(),
            continuation_token: options.continuation_token.clone(),
            limit: options.limit,
            consistency: ReadConsistency::Linearizable as i32,
        };
        let reply = self
            .call_object(Target::LeaderPreferred, move |mut c| {
                let request = request.clone();
                async move { c.list(request).await }
            })
            .await?;
        Ok(ObjectPage {
            objects: reply.objects.into_iter().map(ObjectInfo::from).collect(),
            common_prefixes: reply.common_prefixes,
            next_continuation_token: Some(reply.next_continuation_token).filter(|t| !t.is_empty()),
        })
    }

    /// A URL allowing `method` ("GET" or "PUT") on the object without a token for
    /// `expires_s` seconds (0 = 900). Returns the URL and its expiry (Unix seconds).
    pub async fn presign(
        &self,
        bucket: &str,
        key: &str,
        method: &str,
        expires_s: u64,
    ) -> Result<(String, u64), Error> {
        let request = v1::PresignRequest {
            bucket: bucket.into(),
            key: key.into(),
            method: method.into(),
            expires_s,
        };
        // The first URL ever signed creates the cluster's secret through Raft.
        let reply = self
            .call_object(Target::Leader, move |mut c| {
                let request = request.clone();
                async move { c.presign(request).await }
            })
            .await?;
        Ok((reply.url, reply.expires_at_s))
    }

    /// Creates an API token; the returned token is shown only this once.
    pub async fn create_token(&self, name: &str) -> Result<(u64, String), Error> {
        let name = name.to_string();
        let reply = self
            .write_with(Duration::ZERO, move |channel, session| {
                let request = v1::CreateTokenRequest {
                    session: Some(session),
                    name: name.clone(),
                };
                async move { TokensClient::new(channel).create(request).await }
            })
            .await?;
        Ok((reply.id, reply.token))
    }

    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>, Error> {
        let reply = self
            .call_on(
                Target::LeaderPreferred,
                TokensClient::new,
                |mut c| async move { c.list(v1::ListTokensRequest {}).await },
            )
            .await?;
        Ok(reply
            .tokens
            .into_iter()
            .map(|t| TokenInfo {
                id: t.id,
                name: t.name,
                created_ms: t.created_ms,
            })
            .collect())
    }

    /// Revokes a token; `Ok(false)` if no token had that id.
    pub async fn revoke_token(&self, id: u64) -> Result<bool, Error> {
        let reply = self
            .write_with(Duration::ZERO, move |channel, session| {
                let request = v1::RevokeTokenRequest {
                    session: Some(session),
                    id,
                };
                async move { TokensClient::new(channel).revoke(request).await }
            })
            .await?;
        Ok(reply.existed)
    }

    async fn call_object<T, F, Fut>(&self, target: Target, attempt: F) -> Result<T, Error>
    where
        F: FnMut(super::ObjectClient) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.call_on(target, object_client, attempt).await
    }
}
